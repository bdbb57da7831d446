#!/usr/bin/env bash
# Where a request's time goes inside the gateway: each stage of graylane's
# request callback timed in real Envoy, under load, per request kind.
#
#   scripts/bench/stages.sh                 # 10 s of load per kind
#   STAGES_SECONDS=20 scripts/bench/stages.sh
#
# Builds the filter with `--features stage-timing` (src/filter/stages.rs;
# never shipped) into target/stages/. For each request kind of the cost
# meter (scripts/bench/configs.py cost: base, edge-lane, hop, base-1000) it
# starts Envoy with one worker pinned to CPU 0, the kind's config on a
# direct_response listener, and loads it with wrk pinned to CPU 1, every
# request carrying the kind's headers. The filter logs the mean of each stage
# every 20,000 requests; the first window (warm-up) is dropped and the median
# of the others is reported, in ns per request:
#   read     proxy_get_header_map_pairs, with the host's call back into the VM
#            (proxy_on_memory_allocate) for the buffer
#   index    finding the header pairs in the buffer
#   decide   the lane decision (docs/decision.md "How a request is decided")
#   effects  the header changes (docs/decision.md "How a request is decided")
#   apply    header writes and the filter state (host calls)
#   record   the counters (accumulated in the VM)
#   engine_hot  decide + effects repeated 200 times in a row: the same work
#            with warm caches; (decide + effects) / engine_hot is what running
#            between Envoy's own work costs the engine.
# The clock read's own cost is taken off every stage. These are means over
# whole windows, so they move little with machine noise; the VM entries
# themselves (context create, the callbacks, delete) are outside them.
# Output: printed, and target/bench/stages.md.
#
# Settings: STAGES_SECONDS (default 10), STAGES_PORT (default 19480; uses +0, +1),
# STAGES_KINDS (default "base edge-lane hop base-1000").
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

SECONDS_PER_KIND="${STAGES_SECONDS:-10}"
PORT="${STAGES_PORT:-19480}"
for n in "$SECONDS_PER_KIND" "$PORT"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "stages: settings must be whole numbers (got '$n')" >&2; exit 2; }
done
OUT="$ROOT/target/stages"
RESULTS="$ROOT/target/bench/stages.md"

ENVOY_PID="" WRK_PID=""
cleanup() {
    local pid
    for pid in $WRK_PID $ENVOY_PID; do kill "$pid" 2>/dev/null || true; done
    for pid in $WRK_PID $ENVOY_PID; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

apt_install wrk wrk
apt_install curl curl
ensure_envoy
ensure_rust
log "building the stage-timing filter (--features stage-timing)"
CARGO_TARGET_DIR="$OUT" cargo build --quiet --release --target wasm32-wasip1 --lib --features stage-timing
finish_wasm "$OUT/wasm32-wasip1/release/graylane.wasm" "$OUT/graylane-stages.wasm"
mkdir -p "$OUT/run" "$(dirname "$RESULTS")"

# Per kind: an Envoy bootstrap and the wrk arguments (headers, path).
python3 scripts/bench/stages_configs.py "$OUT/run" "$OUT/graylane-stages.wasm" "$PORT"

read -r -a KINDS <<<"${STAGES_KINDS:-base edge-lane hop base-1000}"
for kind in "${KINDS[@]}"; do
    [ -f "$OUT/run/$kind.json" ] || { echo "stages: no request kind '$kind' (see scripts/bench/configs.py)" >&2; exit 2; }
done
for kind in "${KINDS[@]}"; do
    log "stage timing: $kind, ${SECONDS_PER_KIND} s of load"
    logf="$OUT/run/$kind.log"
    setsid taskset -c 0 "${ENVOY_RUN[@]}" -c "$OUT/run/$kind.json" --concurrency 1 -l warn \
        --base-id "$PORT" >"$logf" 2>&1 &
    ENVOY_PID=$!
    wait_ready "stages: $kind" "$ENVOY_PID" "$((PORT + 1))" "$logf"
    mapfile -t args <"$OUT/run/$kind.args"
    status="$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}")"
    [ "$status" = 200 ] || { echo "stages: $kind answered $status; Envoy's log:" >&2; tail -20 "$logf" >&2; exit 1; }
    setsid taskset -c 1 wrk -t1 -c16 -d"${SECONDS_PER_KIND}s" "${args[@]}" >"$OUT/run/$kind.wrk" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { echo "stages: wrk failed:" >&2; cat "$OUT/run/$kind.wrk" >&2; exit 1; }
    WRK_PID=""
    kill "$ENVOY_PID" 2>/dev/null || true
    wait "$ENVOY_PID" 2>/dev/null || true
    ENVOY_PID=""
done

python3 scripts/bench/stages_report.py "$OUT/run" "$RESULTS" "${KINDS[@]}"
