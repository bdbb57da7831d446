#!/usr/bin/env bash
# The staged-rollout demo (docs/rollout.md "Staged rollout"): builds the filter and
# the CLI, starts the demo gateway of envoy/rollout/ from a copy in
# .tools/rollout-demo/ (the rollout rewrites its filter file), sends steady
# traffic from many user ids, and runs `graylane rollout` on the demo plan.
#
#   scripts/rollout-demo.sh                 # a healthy version: promoted, exit 0
#   ROLLOUT_DEMO_FAULT=abort scripts/rollout-demo.sh   # gray answers 503 to 10 %: rolled back, exit 1
#   ROLLOUT_DEMO_FAULT=delay scripts/rollout-demo.sh   # gray is 50 ms slower: rolled back, exit 1
#   scripts/rollout-demo.sh --json          # arguments go to graylane rollout
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

build_wasm
cargo build --quiet --bin graylane
ensure_envoy
DEMO="$TOOLS/rollout-demo"
rm -rf "$DEMO"
mkdir -p "$DEMO"
cp envoy/rollout/config.json envoy/rollout/plan.yaml envoy/rollout/filter.yaml "$DEMO/"
sed -i "s#target/graylane.wasm#$WASM#" "$DEMO/filter.yaml"
sed -e "s#path: envoy/rollout/filter.yaml#path: $DEMO/filter.yaml#" \
    -e "s#watched_directory: { path: envoy/rollout }#watched_directory: { path: $DEMO }#" \
    envoy/rollout/bootstrap.yaml >"$DEMO/bootstrap.yaml"

"${ENVOY_RUN[@]}" -c "$DEMO/bootstrap.yaml" --disable-hot-restart -l warning >"$DEMO/envoy.log" 2>&1 &
ENVOY_PID=$!
TRAFFIC_PIDS=()
cleanup() {
    kill "${TRAFFIC_PIDS[@]}" "$ENVOY_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
wait_ready demo "$ENVOY_PID" 9904 "$DEMO/envoy.log"

FAULT=()
case "${ROLLOUT_DEMO_FAULT:-}" in
    abort) FAULT=(-H 'x-envoy-fault-abort-request: 503' -H 'x-envoy-fault-abort-request-percentage: 10') ;;
    delay) FAULT=(-H 'x-envoy-fault-delay-request: 50') ;;
    "") ;;
    *) echo "ROLLOUT_DEMO_FAULT is abort, delay or empty" >&2; exit 2 ;;
esac
# Two clients, each a stream of requests from 5,000 user ids; the fault
# headers only matter to the gray version (its listener has the fault filter).
for c in 1 2; do
    (while true; do
        curl -s -o /dev/null "${FAULT[@]}" -H "x-user-id: user-$((RANDOM % 5000))" http://127.0.0.1:10400/ || sleep 0.1
    done) &
    TRAFFIC_PIDS+=($!)
done
log "demo gateway on 127.0.0.1:10400 (admin :9904), traffic flowing; rolling out lane gray"
set +e
target/debug/graylane rollout "$DEMO/plan.yaml" "$@"
code=$?
log "graylane rollout exited $code; state and report in $DEMO/"
exit "$code"
