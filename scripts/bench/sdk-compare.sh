#!/usr/bin/env bash
# graylane on the proxy-wasm Rust SDK vs graylane's own ABI layer (the
# shipped build), side by side: the decision behind src/filter/abi.rs
# (docs/performance.md "The proxy-wasm Rust SDK, measured").
#
#   scripts/bench/sdk-compare.sh                  # 3 bench runs of 7 rounds, both modes
#   SDK_RUNS=3 BENCH_ROUNDS=7 BENCH_MODES=direct BENCH_NICE=-10 scripts/bench/sdk-compare.sh
#
# Builds scripts/bench/sdk-filter (the same engine, counters and request work,
# behind the SDK's dispatcher) into target/graylane-sdk.wasm, with the
# shipped build's export stripping and wasm-opt (finish_wasm); then prints
#   - shipped bytes of both;
#   - fuel and host calls per request kind of both (graylane-cost);
#   - SDK_RUNS runs of scripts/bench.sh with the SDK build as variant (g),
#     each run's (g−a)/(c−a): the SDK build's gateway CPU above no filter,
#     relative to the shipped build's (median of paired differences).
# Settings: SDK_RUNS (default 3); the BENCH_* settings of scripts/bench.sh
# (BENCH_ROUNDS defaults to 7 here). Output: printed, and
# target/bench/sdk-compare/ (each run's results.md and rounds.tsv).
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

RUNS="${SDK_RUNS:-3}"
export BENCH_ROUNDS="${BENCH_ROUNDS:-7}"
[[ "$RUNS" =~ ^[0-9]+$ ]] || { echo "sdk-compare: SDK_RUNS must be a whole number" >&2; exit 2; }
OUT="$ROOT/target/bench/sdk-compare"
SDK_WASM="$ROOT/target/graylane-sdk.wasm"
mkdir -p "$OUT"

build_wasm
log "building graylane on the proxy-wasm SDK (scripts/bench/sdk-filter)"
# --cfg graylane_sdk_bench: the graylane library without its own exports
# (src/lib.rs); the SDK crate brings the SDK's.
RUSTFLAGS="--cfg graylane_sdk_bench" cargo build --quiet --release --target wasm32-wasip1 \
    --manifest-path "$ROOT/scripts/bench/sdk-filter/Cargo.toml" --target-dir "$ROOT/target/bench/sdk-filter"
finish_wasm "$ROOT/target/bench/sdk-filter/wasm32-wasip1/release/graylane_bench_sdk_filter.wasm" "$SDK_WASM"

{
    printf '# graylane: own ABI layer (shipped) vs the proxy-wasm Rust SDK\n\n'
    printf 'Shipped bytes: ABI %s, SDK %s\n\n' "$(stat -c %s "$WASM")" "$(stat -c %s "$SDK_WASM")"
    printf '## ABI (shipped)\n\n'
    GRAYLANE_WASM="$WASM" cargo run --quiet -p graylane-wasm-tests --bin graylane-cost
    printf '\n## SDK\n\n'
    GRAYLANE_WASM="$SDK_WASM" cargo run --quiet -p graylane-wasm-tests --bin graylane-cost
} | tee "$OUT/cost.md"

for run in $(seq 1 "$RUNS"); do
    log "bench run $run/$RUNS (SDK build as variant g)"
    BENCH_ALT_WASM="$SDK_WASM" "$ROOT/scripts/bench.sh" >"$OUT/bench-$run.log" 2>&1 ||
        { tail -30 "$OUT/bench-$run.log" >&2; echo "sdk-compare: bench run $run failed" >&2; exit 1; }
    mkdir -p "$OUT/run-$run"
    cp "$ROOT/target/bench/results.md" "$ROOT/target/bench/rounds.tsv" "$OUT/run-$run/"
done

python3 "$ROOT/scripts/bench/sdk_ratio.py" "$OUT" "$RUNS" | tee "$OUT/ratio.md"
log "results: $OUT/cost.md, $OUT/ratio.md, $OUT/run-*/results.md"
