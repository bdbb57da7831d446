#!/usr/bin/env bash
# Fuzzes graylane with cargo-fuzz: each target under fuzz/fuzz_targets for
# SECONDS (default 60), one after another, at the lowest CPU priority.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Corpora grow in fuzz/corpus/<target> (git-ignored), seeded read-only from
# fuzz/seeds/<target>; crashing inputs land in fuzz/artifacts/<target>. After
# a crash the target is restarted for the time left (at most 5 crashes per
# target). Ends with a table of executions, exec/s and crashes per target,
# and exits non-zero when something crashed. Needs the nightly toolchain;
# installs cargo-fuzz into .tools/cargo when missing.
source "$(dirname "$0")/lib.sh"
cd "$ROOT/fuzz"

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config baggage trace_context decision)
MAX_CRASHES=5

toolchains="$(rustup toolchain list)"
[[ "$toolchains" == *nightly* ]] || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz into .tools/cargo"
    cargo +nightly install --quiet --locked cargo-fuzz --root "$TOOLS/cargo"
fi

# Built once, then run directly: the binaries stay the same for the whole
# session even when src/ changes meanwhile.
log "building the fuzz targets"
nice -n 19 cargo +nightly fuzz build
BIN_DIR="$ROOT/fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

# libFuzzer's own output, live: target/fuzz-logs/<target>.log.
LOG_DIR="$ROOT/target/fuzz-logs"
mkdir -p "$LOG_DIR"
declare -A max_len=([config]=16384 [baggage]=32768 [decision]=8192)
SUMMARY=()
TOTAL_CRASHES=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    corpora=("corpus/$t")
    [ -d "seeds/$t" ] && corpora+=("seeds/$t")
    flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -max_len="${max_len[$t]:-4096}")
    [ -f "dicts/$t.dict" ] && flags+=(-dict="dicts/$t.dict")
    marker="$(mktemp)"
    : >"$LOG_DIR/$t.log"
    log "libFuzzer output: $LOG_DIR/$t.log"
    start=$(date +%s)
    execs=0 crashes=0 rate=0 runs=0
    while :; do
        left=$(( SECONDS_PER_TARGET - ($(date +%s) - start) ))
        [ "$left" -ge 5 ] || break
        runs=$(( runs + 1 ))
        log "fuzzing $t for ${left}s (run $runs)"
        out="$LOG_DIR/$t.run$runs.log"
        nice -n 19 "$BIN_DIR/$t" -artifact_prefix="artifacts/$t/" "${flags[@]}" \
            -max_total_time="$left" "${corpora[@]}" 2>&1 | tee "$out" >>"$LOG_DIR/$t.log" \
            && status=0 || status=$?
        # Executions: the final stats, else the last status line.
        n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out" | tail -1 || true)
        [ -n "$n" ] || n=$(grep -oE '^#[0-9]+' "$out" | tail -1 | tr -d '#' || true)
        execs=$(( execs + ${n:-0} ))
        r=$(grep -oE 'exec/s: [0-9]+' "$out" | tail -1 | grep -oE '[0-9]+' || true)
        [ -z "$r" ] || rate=$r
        grep -E '^(#[0-9]+.*(INITED|DONE)|Done [0-9]+ runs)' "$out" || true
        if [ "$status" -ne 0 ]; then
            crashes=$(( crashes + 1 ))
            echo "---- $t: crash (exit $status), libFuzzer output:" >&2
            grep -vE '^#[0-9]+' "$out" | tail -80 >&2
            [ "$crashes" -lt "$MAX_CRASHES" ] || { rm -f "$out"; break; }
        fi
        rm -f "$out"
    done
    artifacts=$(find "artifacts/$t" -type f -newer "$marker" | sort)
    rm -f "$marker"
    elapsed=$(( $(date +%s) - start ))
    avg=$(( execs / (elapsed > 0 ? elapsed : 1) ))
    SUMMARY+=("$(printf '%-10s %7ss %13s execs %8s exec/s (last %s) %3s crashes %s' \
        "$t" "$elapsed" "$execs" "$avg" "$rate" "$crashes" "$(echo $artifacts)")")
    TOTAL_CRASHES=$(( TOTAL_CRASHES + crashes ))
done

log "fuzz summary (${SECONDS_PER_TARGET}s per target; corpora in fuzz/corpus)"
printf '%s\n' "${SUMMARY[@]}"
[ "$TOTAL_CRASHES" -eq 0 ]
