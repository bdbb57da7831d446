#!/usr/bin/env bash
# Runs the demo gateway in the foreground: builds the filter, installs Envoy
# if missing, and serves envoy/demo.yaml on 127.0.0.1:10000 (admin :9901).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_envoy
build_wasm
cat <<'TXT'

graylane demo gateway on http://127.0.0.1:10000 (admin http://127.0.0.1:9901). Try:

  curl -H 'location: cn-shenzhen' localhost:10000/     # -> backend=gray
  curl localhost:10000/                                # -> backend=base
  curl -H 'cookie: canary=beta' localhost:10000/       # -> backend=beta
  curl -H 'x-user-id: user-7' localhost:10000/         # -> canary for ~10 % of user ids, sticky
  curl -H 'x-graylane: gray' localhost:10000/          # -> base: clients cannot pick a lane
  curl -H 'location: cn-shenzhen' -H 'x-envoy-fault-abort-request: 503' localhost:10000/   # -> 503 from gray: a failing version
  curl -s localhost:9901/stats/prometheus | grep graylane_

Ctrl-C stops it.
TXT
if [ "${ENVOY_RUN[0]}" = "func-e" ]; then
    exec func-e run -c envoy/demo.yaml --disable-hot-restart "$@"
else
    exec "$ENVOY_BIN" -c envoy/demo.yaml --disable-hot-restart "$@"
fi
