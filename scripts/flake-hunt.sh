#!/usr/bin/env bash
# The flake hunt: runs the end-to-end suite (as scripts/test.sh runs it)
# N times alone, then N times with a CPU hog busy on the last core, and
# prints per test its passes and failures in each mode, with the failure
# messages. A test that fails here without a reason is what CI would trip
# on. CI does not run this; scripts/test.sh must have run once (it
# installs Envoy and the tools).
#
# Usage: scripts/flake-hunt.sh [N] [CARGO TEST ARGS...]
#   N (default 10): runs per mode.
#   CARGO TEST ARGS: narrow the suite, e.g. `--test rollout --test gateway`.
# Environment: FLAKE_MODES="alone loaded" (default both, in that order).
# Logs: .tools/flake-hunt/<mode>-<i>.log; the failing tests' files (Envoy
# logs, configs) under .tools/flake-hunt/evidence/<mode>-<i>/.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

N="${1:-10}"
[ $# -gt 0 ] && shift
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/flake-hunt.sh [N] [CARGO TEST ARGS...]" >&2; exit 2; }
SELECT=("$@")
MODES="${FLAKE_MODES:-alone loaded}"
OUT="$TOOLS/flake-hunt"
rm -rf "$OUT"
mkdir -p "$OUT"

ensure_envoy
ensure_grpc
build_wasm
cargo build --quiet --bin graylane
# Built once; every run uses these copies, so the code can change while
# the hunt goes on.
mkdir -p "$OUT/bin"
cp "$WASM" "$OUT/bin/graylane.wasm"
cp target/debug/graylane "$OUT/bin/graylane"
export GRAYLANE_WASM="$OUT/bin/graylane.wasm" GRAYLANE_BIN="$OUT/bin/graylane"
mapfile -t BINARIES < <(cargo test -p graylane-wasm-tests "${SELECT[@]}" --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["src_path"] + " " + m["executable"])' | sort)
[ ${#BINARIES[@]} -gt 0 ] || { echo "no test binary built" >&2; exit 1; }
for entry in "${BINARIES[@]}"; do
    cp "${entry#* }" "$OUT/bin/"
done

# One run of the suite: each test binary (a copy) as cargo test runs it,
# with the "Running" line that names it.
run_suite() {
    local entry src exe rc=0
    for entry in "${BINARIES[@]}"; do
        src="${entry%% *}" exe="$OUT/bin/$(basename "${entry#* }")"
        echo "     Running ${src#"$ROOT/wasm-tests/"} ($exe)"
        (cd "$ROOT/wasm-tests" && "$exe" --test-threads 2) || rc=1
    done
    return "$rc"
}

HOG=""
stop_hog() {
    [ -z "$HOG" ] || kill "$HOG" 2>/dev/null || true
    HOG=""
}
trap stop_hog EXIT

START=$(date +%s)
for mode in $MODES; do
    if [ "$mode" = loaded ]; then
        # One busy process on the last core: the suite keeps the others.
        last=$(($(nproc) - 1))
        if command -v taskset >/dev/null 2>&1; then
            taskset -c "$last" sh -c 'while :; do :; done' &
        else
            sh -c 'while :; do :; done' &
        fi
        HOG=$!
    fi
    for i in $(seq 1 "$N"); do
        log "flake hunt: $mode run $i of $N (+$(($(date +%s) - START))s)"
        GRAYLANE_EVIDENCE="$OUT/evidence/$mode-$i" run_suite >"$OUT/$mode-$i.log" 2>&1 || true
        grep -E '^test result: ' "$OUT/$mode-$i.log" | awk '{p += $4; f += $6} END {printf "  %d passed, %d failed\n", p, f}' >&2
    done
    stop_hog
done

python3 scripts/flake_report.py "$OUT"/*.log
