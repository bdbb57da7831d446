#!/usr/bin/env bash
# Gateway CPU and throughput of graylane in real Envoy, next to no filter, an
# empty proxy-wasm filter and an Envoy Lua filter doing the same job.
#
#   scripts/bench.sh                              # 5 rounds x 5 s, both modes
#   BENCH_ROUNDS=3 BENCH_SECONDS=3 scripts/bench.sh
#
# Settings (environment):
#   BENCH_ROUNDS       alternating rounds per mode (default 5)
#   BENCH_SECONDS      seconds of load per variant per round (default 5)
#   BENCH_WARMUP       seconds of unmeasured load per variant before the rounds (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 32; one wrk thread)
#   BENCH_MODES        "direct proxy" (default), or one of them
#   BENCH_PORT_BASE    first local port used (default 19400; uses +0..+20, +90, +91)
#   BENCH_ALT_WASM     a graylane .wasm to run as variant (g) next to the shipped one
#   BENCH_ALT_UNCHECKED  1: skip (g)'s lane checks, for a breakdown build that
#                      leaves out part of the work (the engine, a write) on purpose
#   BENCH_NICE         scheduling priority of the Envoys and wrk (default 0). Each runs
#                      in its own session (setsid), so with the kernel's autogroup
#                      scheduling a value here is written to its autogroup as well as
#                      its nice level: -10 keeps other sessions' builds and tests off
#                      the gateway's CPU on a shared machine (needs root).
#
# Layout. ONE gateway Envoy, one worker (--concurrency 1), pinned to CPU 0;
# every variant is a listener of it, so only the HTTP filter differs:
#   (a) no filter            (b) empty proxy-wasm filter (scripts/bench/empty-filter)
#   (c) graylane, 20 lanes   (d) Envoy Lua filter doing (c)'s job
#   (e) graylane, 1,000 lanes (990 exact-header lanes, 9 regex lanes, 1 split)
#   (f) the empty filter with only its callbacks exported (strip-exports.py)
#   (g) graylane as (c), another build of it: $BENCH_ALT_WASM when set (to
#       compare a candidate change in the same run), else the linker's
#       output without wasm-opt: (c) vs (g) is what wasm-opt saves
# Two modes, each its own set of listeners:
#   direct  the gateway answers with a direct_response (isolates the filter)
#   proxy   the gateway proxies to a backend: a second, small Envoy pinned to
#           CPU 1 (next to wrk) whose one listener answers with direct_response.
# Both route tables match on x-graylane (exact "hdr-3" -> body "lane:hdr-3",
# present -> "lane:other", default -> "base"); before measuring, curl checks
# that every variant's lane decision actually changes the route taken.
# Load: wrk, one thread pinned to CPU 1, 127.0.0.1 only, bounded by -d. Every
# request carries a 5-member baggage, a cookie, a query string and one of
# 1,000 x-user-id values (wrk Lua script, requests pre-built); one in 8 selects
# lane hdr-3 by header, about 10 % of the rest enter the sticky split lane,
# the rest are base. On a machine shared with other sessions, use
# BENCH_NICE=-10 and read the 'gateway busy' and 'other load' columns.
# Gateway CPU: utime+stime of the Envoy process from /proc/<pid>/stat before
# and after each round, divided by the requests wrk completed.
# Output: target/bench/results.md (also printed), raw rounds in
# target/bench/rounds.tsv, wrk output in target/bench/wrk.log. results.md ends
# with the deterministic cost per request (graylane-cost: fuel and host calls
# per request kind, no load involved; also in target/bench/cost.md).
# The graylane configs and the request headers come from scripts/bench/configs.py;
# scripts/bench/gateway.py writes the Envoy configs, scripts/bench/lanes.lua is
# variant (d), scripts/bench/load.lua the wrk script, scripts/bench/report.py
# writes results.md.
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

ROUNDS="${BENCH_ROUNDS:-5}"
DURATION="${BENCH_SECONDS:-5}"
WARMUP="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNECTIONS:-32}"
MODES="${BENCH_MODES:-direct proxy}"
PORT_BASE="${BENCH_PORT_BASE:-19400}"
NICE="${BENCH_NICE:-0}"
GW_CPU=0
LOAD_CPU=1
VARIANTS=(a b c d e f g)
OUT="$ROOT/target/bench"
CMDLINE="BENCH_ROUNDS=$ROUNDS BENCH_SECONDS=$DURATION BENCH_WARMUP=$WARMUP BENCH_CONNECTIONS=$CONNS BENCH_MODES=\"$MODES\" BENCH_NICE=$NICE scripts/bench.sh"
CLK_TCK="$(getconf CLK_TCK)"

for n in "$ROUNDS" "$DURATION" "$WARMUP" "$CONNS" "$PORT_BASE"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "bench: settings must be whole numbers (got '$n')" >&2; exit 2; }
done
for m in $MODES; do
    [[ "$m" == direct || "$m" == proxy ]] || { echo "bench: BENCH_MODES takes direct and/or proxy (got '$m')" >&2; exit 2; }
done
[[ "$NICE" =~ ^-?[0-9]+$ ]] || { echo "bench: BENCH_NICE must be an integer (got '$NICE')" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 CPUs (gateway on 0, load on 1)" >&2; exit 2; }

# --- every process we start, killed by PID on any exit ---------------------
GW_PID="" BE_PID="" WRK_PID=""
cleanup() {
    local pid
    for pid in $WRK_PID $GW_PID $BE_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $WRK_PID $GW_PID $BE_PID; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port() { # variant index in VARIANTS + mode -> port
    local mode="$1" i="$2"
    if [ "$mode" = direct ]; then echo $((PORT_BASE + i)); else echo $((PORT_BASE + 10 + i)); fi
}
GW_ADMIN=$((PORT_BASE + 90))
BE_ADMIN=$((PORT_BASE + 91))
BE_PORT=$((PORT_BASE + 20))

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- tools and artifacts ----------------------------------------------------
apt_install wrk wrk
apt_install curl curl
ensure_envoy
build_wasm
mkdir -p "$OUT"

# --- deterministic cost per request (no Envoy, no load) ----------------------
# Fuel (Wasm instructions) and host calls per request kind, in an embedded
# proxy-wasm host (wasm-tests/src/costhost/); same configs and request.
log "deterministic cost per request (graylane-cost)"
{
    printf '## Deterministic cost per request (does not move with load)\n\n'
    cargo run --quiet -p graylane-wasm-tests --bin graylane-cost
} >"$OUT/cost.md" || { cat "$OUT/cost.md" >&2; echo "bench: the cost meter failed" >&2; exit 1; }
log "building the empty proxy-wasm filter (scripts/bench/empty-filter)"
cargo build --quiet --release --target wasm32-wasip1 \
    --manifest-path "$ROOT/scripts/bench/empty-filter/Cargo.toml" --target-dir "$OUT/empty-filter"
EMPTY_RAW="$OUT/empty-filter/wasm32-wasip1/release/graylane_bench_empty_filter.wasm"
EMPTY_WASM="$OUT/empty.wasm"
optimize_wasm "$EMPTY_RAW" "$EMPTY_WASM"
# (f) the empty filter with only its callbacks exported: what keeping only
# the callbacks a filter implements saves per request. (g) graylane as (c),
# another build: $BENCH_ALT_WASM, else the linker's output (no wasm-opt).
EMPTY_STRIPPED="$OUT/empty-stripped.wasm"
GRAYLANE_ALL_EXPORTS="$OUT/graylane-g.wasm"
finish_wasm "$EMPTY_RAW" "$EMPTY_STRIPPED"
if [ -n "${BENCH_ALT_WASM:-}" ]; then
    cp "$BENCH_ALT_WASM" "$GRAYLANE_ALL_EXPORTS"
else
    cp "$WASM_RAW" "$GRAYLANE_ALL_EXPORTS"
fi

# --- configs ----------------------------------------------------------------
log "generating configs into target/bench/"
python3 "$ROOT/scripts/bench/gateway.py" "$OUT" --port-base "$PORT_BASE" --wasm "$WASM" \
    --empty-wasm "$EMPTY_WASM" --empty-stripped "$EMPTY_STRIPPED" --alt-wasm "$GRAYLANE_ALL_EXPORTS"

# --- start the Envoys ---------------------------------------------------------
for p in $(for m in direct proxy; do for i in "${!VARIANTS[@]}"; do port "$m" "$i"; done; done) "$BE_PORT" "$GW_ADMIN" "$BE_ADMIN"; do
    if port_busy "$p"; then
        echo "bench: port $p on 127.0.0.1 is in use; set BENCH_PORT_BASE" >&2
        exit 1
    fi
done

for cfg in gateway backend; do
    "$GRAYLANE_ENVOY" --mode validate -c "$OUT/$cfg.yaml" -l error --disable-hot-restart >/dev/null 2>"$OUT/$cfg.validate.log" \
        || { cat "$OUT/$cfg.validate.log" >&2; echo "bench: $cfg config invalid" >&2; exit 1; }
done

# With autogroup scheduling, CPU time is shared between sessions first and
# nice only orders processes within one: give our sessions the priority too.
boost() {
    [ "$NICE" = 0 ] && return 0
    if [ -w "/proc/$1/autogroup" ]; then
        echo "$NICE" >"/proc/$1/autogroup" 2>/dev/null || log "cannot set the autogroup nice of $1"
    fi
}
log "starting the gateway Envoy (CPU $GW_CPU, 1 worker) and the backend Envoy (CPU $LOAD_CPU)"
nice -n "$NICE" setsid taskset -c "$GW_CPU" "$GRAYLANE_ENVOY" -c "$OUT/gateway.yaml" --concurrency 1 --disable-hot-restart \
    -l warning --log-path "$OUT/gateway.log" &
GW_PID=$!
nice -n "$NICE" setsid taskset -c "$LOAD_CPU" "$GRAYLANE_ENVOY" -c "$OUT/backend.yaml" --concurrency 1 --disable-hot-restart \
    -l warning --log-path "$OUT/backend.log" &
BE_PID=$!
for pid in "$GW_PID" "$BE_PID"; do
    # CPU is read from this PID: it must be Envoy itself (setsid and taskset exec).
    sleep 0.1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = envoy ] || { echo "bench: PID $pid is not envoy" >&2; exit 1; }
    boost "$pid"
done
wait_ready "bench: gateway" "$GW_PID" "$GW_ADMIN" "$OUT/gateway.log"
wait_ready "bench: backend" "$BE_PID" "$BE_ADMIN" "$OUT/backend.log"

# --- check that lane decisions change the route --------------------------------
FAILED=0
expect() { # description want port curl-args...
    local what="$1" want="$2" p="$3"
    shift 3
    local got
    got="$(curl -s --max-time 5 "$@" "http://127.0.0.1:$p/api/v1/orders?page=2" 2>/dev/null || true)"
    if [ "$got" != "$want" ]; then
        echo "  FAIL :$p $what: got '$got', want '$want'" >&2
        FAILED=1
    fi
}
sticky_share() { # port -> how many of 100 user ids take a lane route
    local p="$1" i n=0
    for i in $(seq 1 100); do
        [ "$(curl -s --max-time 5 -H "x-user-id: user-$((i * 7919 % 100000))" "http://127.0.0.1:$p/" 2>/dev/null)" = "lane:other" ] && n=$((n + 1))
    done
    echo "$n"
}
log "checking that each variant's lane decision takes effect on the route"
for mode in $MODES; do
    for i in "${!VARIANTS[@]}"; do
        v="${VARIANTS[$i]}"
        p="$(port "$mode" "$i")"
        if [ "$v" = g ] && [ "${BENCH_ALT_UNCHECKED:-0}" = 1 ]; then
            echo "  $mode/g: lane checks skipped (BENCH_ALT_UNCHECKED=1: a breakdown build)" >&2
            continue
        fi
        case "$v" in
        a | b | f)
            expect "no filter: base" base "$p"
            expect "no filter: x-region ignored" base "$p" -H 'x-region: region-3'
            ;;
        *)
            expect "no lane: base" base "$p"
            expect "x-region: region-3 -> hdr-3" lane:hdr-3 "$p" -H 'x-region: region-3'
            expect "forged x-graylane is dropped" base "$p" -H 'x-graylane: hdr-3'
            expect "forged baggage lane is dropped" base "$p" -H 'baggage: lane=hdr-3,a=1'
            if [ "$v" != e ]; then
                expect "cookie canary=beta-2 -> ck-2" lane:other "$p" -H 'cookie: theme=dark; canary=beta-2'
                expect "query lane=q-1 -> q-1" lane:other "$p" --url-query lane=q-1
                expect "Android 9.x -> ua-android" lane:other "$p" -H 'user-agent: x Android y' -H 'x-app-version: 9.1'
            else
                expect "x-region: region-989 -> hdr-989" lane:other "$p" -H 'x-region: region-989'
                expect "iPhone OS 13 regex -> re-3" lane:other "$p" -H 'user-agent: Mozilla/5.0 (iPhone; CPU iPhone OS 13_2 like Mac OS X)'
            fi
            share="$(sticky_share "$p")"
            if [ "$share" -lt 3 ] || [ "$share" -gt 25 ]; then
                echo "  FAIL :$p sticky split admitted $share of 100 user ids, want about 10" >&2
                FAILED=1
            fi
            echo "  $mode/$v: lanes route as configured; sticky split admitted $share/100 user ids" >&2
            ;;
        esac
    done
done
[ "$FAILED" = 0 ] || { echo "bench: lane checks failed; see above and $OUT/gateway.log" >&2; exit 1; }

# --- measure ---------------------------------------------------------------------
proc_ticks() { # utime+stime of a process, in clock ticks
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }" # fields after "(comm) "; utime and stime are the 12th and 13th of these
    awk '{ print $12 + $13 }' <<<"$stat"
}
cpu_busy() { # busy ticks of one CPU (all processes), from /proc/stat
    awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
kv() { sed -n "s/.* $1=\([0-9][0-9]*\).*/\1/p" <<<" $2"; } # key line -> value in wrk's BENCH line
run_wrk() { # port seconds -> WRK_LINE, the BENCH line of wrk's output
    local p="$1" secs="$2"
    # Not in a subshell, so that the EXIT trap knows WRK_PID.
    BENCH_REQUEST="$OUT/request.txt" nice -n "$NICE" setsid taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency -s "$ROOT/scripts/bench/load.lua" \
        "http://127.0.0.1:$p/api/v1/orders" >"$OUT/wrk.last" 2>&1 &
    WRK_PID=$!
    boost "$WRK_PID"
    wait "$WRK_PID" || { cat "$OUT/wrk.last" >&2; echo "bench: wrk failed" >&2; exit 1; }
    WRK_PID=""
    cat "$OUT/wrk.last" >>"$OUT/wrk.log"
    WRK_LINE="$(grep '^BENCH ' "$OUT/wrk.last" || true)"
    [ -n "$WRK_LINE" ] || { cat "$OUT/wrk.last" >&2; echo "bench: no result from wrk" >&2; exit 1; }
}

: >"$OUT/wrk.log"
printf 'mode\tround\tvariant\trequests\tduration_us\tp50_us\tp99_us\terrors\tnon2xx\tgw_ticks\tbe_ticks\tcpu0_busy_ticks\n' >"$OUT/rounds.tsv"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for mode in $MODES; do
    log "$mode: warm-up, ${WARMUP}s per variant"
    if [ "$WARMUP" -gt 0 ]; then
        for i in "${!VARIANTS[@]}"; do run_wrk "$(port "$mode" "$i")" "$WARMUP"; done
    fi
    for r in $(seq 1 "$ROUNDS"); do
        log "$mode: round $r/$ROUNDS (${DURATION}s per variant)"
        for i in "${!VARIANTS[@]}"; do
            v="${VARIANTS[$i]}"
            g0=$(proc_ticks "$GW_PID") b0=$(proc_ticks "$BE_PID") c0=$(cpu_busy "$GW_CPU")
            run_wrk "$(port "$mode" "$i")" "$DURATION"
            line="$WRK_LINE"
            g1=$(proc_ticks "$GW_PID") b1=$(proc_ticks "$BE_PID") c1=$(cpu_busy "$GW_CPU")
            requests=$(kv requests "$line") duration_us=$(kv duration_us "$line")
            p50_us=$(kv p50_us "$line") p99_us=$(kv p99_us "$line")
            errors=$(kv errors "$line") non2xx=$(kv non2xx "$line")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$r" "$v" \
                "$requests" "$duration_us" "$p50_us" "$p99_us" "$errors" "$non2xx" \
                $((g1 - g0)) $((b1 - b0)) $((c1 - c0)) >>"$OUT/rounds.tsv"
            printf '  %s/%s: %s req, %s µs CPU/req\n' "$mode" "$v" "$requests" \
                "$(awk -v t=$((g1 - g0)) -v n="$requests" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')" >&2
        done
    done
done
ELAPSED=$(( $(date +%s) - START ))
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
grep -q 'wasm log' "$OUT/gateway.log" 2>/dev/null && log "note: the gateway logged wasm messages (target/bench/gateway.log)"

# --- report ---------------------------------------------------------------------
python3 "$ROOT/scripts/bench/report.py" "$OUT/rounds.tsv" --clk-tck "$CLK_TCK" --cmdline "$CMDLINE" \
    --elapsed "$ELAPSED" --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" \
    --envoy-version "$("$GRAYLANE_ENVOY" --version | grep -o '[0-9a-f]\{40\}/[^ ]*' | head -1)" \
    --cpu-model "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    --wasm-sizes "graylane $(stat -c %s "$WASM") B, empty $(stat -c %s "$EMPTY_WASM") B" \
    --alt-wasm "${BENCH_ALT_WASM:-}" | tee "$OUT/results.md"
tee -a "$OUT/results.md" <"$OUT/cost.md"
log "results: target/bench/results.md (raw rounds: target/bench/rounds.tsv)"
