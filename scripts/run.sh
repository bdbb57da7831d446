#!/usr/bin/env bash
# Runs the demo gateway in the foreground: builds the filter, installs Envoy
# if missing, and serves envoy/demo.yaml on 127.0.0.1:10000 (admin :9901).
#
#   scripts/run.sh                          # the demo's own plugin configuration
#   scripts/run.sh --config my-config.json  # yours instead: checked with
#                                           # `graylane check` first; lanes named
#                                           # gray, beta and canary have backends
#                                           # (any other lane is routed to base)
# Other arguments go to Envoy.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG=""
if [ "${1:-}" = "--config" ]; then
    CONFIG="${2:?--config needs a plugin configuration file (JSON)}"
    shift 2
fi
ensure_envoy
build_wasm
DEMO_YAML=envoy/demo.yaml
if [ -n "$CONFIG" ]; then
    cargo build --quiet --bin graylane
    target/debug/graylane check "$CONFIG" || exit 2
    mkdir -p "$TOOLS/run"
    DEMO_YAML="$TOOLS/run/demo.yaml"
    # The demo with the plugin configuration's value replaced by the file's
    # JSON (the filter reads JSON; the demo's wasm path stays relative to the
    # repository, where Envoy runs).
    python3 - "$CONFIG" envoy/demo.yaml "$DEMO_YAML" <<'PY' || exit 2
import json, sys
config, demo, out = sys.argv[1:4]
try:
    value = json.load(open(config))
except ValueError as e:
    sys.exit(f"{config}: scripts/run.sh --config takes JSON ({e})")
lines = open(demo).read().split("\n")
start = next(i for i, l in enumerate(lines) if l.strip() == "value: |")
indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 2)
end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(indent))
body = [indent + l for l in json.dumps(value, indent=2).split("\n")]
open(out, "w").write("\n".join(lines[: start + 1] + body + lines[end:]))
PY
    echo "demo gateway with the plugin configuration of $CONFIG ($DEMO_YAML)"
fi
cat <<'TXT'

graylane demo gateway on http://127.0.0.1:10000 (admin http://127.0.0.1:9901). Try:

  curl -H 'location: cn-shenzhen' localhost:10000/     # -> backend=gray
  curl localhost:10000/                                # -> backend=base
  curl -H 'cookie: canary=beta' localhost:10000/       # -> backend=beta
  curl -H 'x-user-id: user-2' localhost:10000/         # -> canary (10 % of user ids are, sticky; user-1 is not)
  curl -H 'x-graylane: gray' localhost:10000/          # -> base: clients cannot pick a lane
  curl -H 'location: cn-shenzhen' -H 'x-envoy-fault-abort-request: 503' localhost:10000/   # -> 503 from gray: a failing version
  curl -s localhost:9901/stats/prometheus | grep graylane_

Ctrl-C stops it.
TXT
if [ "${ENVOY_RUN[0]}" = "func-e" ]; then
    exec func-e run -c "$DEMO_YAML" --disable-hot-restart "$@"
else
    exec "$ENVOY_BIN" -c "$DEMO_YAML" --disable-hot-restart "$@"
fi
