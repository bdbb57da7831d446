/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/graylane-1073ae98cbf6e367.d: /work/main/src/lib.rs /work/main/src/baggage.rs /work/main/src/config/mod.rs /work/main/src/config/cond.rs /work/main/src/config/de.rs /work/main/src/config/error.rs /work/main/src/config/lint.rs /work/main/src/config/names.rs /work/main/src/config/path.rs /work/main/src/config/raw.rs /work/main/src/config/split.rs /work/main/src/continuity.rs /work/main/src/engine/mod.rs /work/main/src/engine/compiled.rs /work/main/src/engine/rules.rs /work/main/src/engine/split.rs /work/main/src/engine/view.rs /work/main/src/metric_names.rs /work/main/src/testvectors.rs /work/main/src/filter/mod.rs /work/main/src/filter/abi.rs /work/main/src/filter/headers.rs /work/main/src/filter/metrics.rs /work/main/src/filter/plugin.rs /work/main/src/filter/stages.rs /work/main/src/filter/trace_table.rs

/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/libgraylane-1073ae98cbf6e367.rmeta: /work/main/src/lib.rs /work/main/src/baggage.rs /work/main/src/config/mod.rs /work/main/src/config/cond.rs /work/main/src/config/de.rs /work/main/src/config/error.rs /work/main/src/config/lint.rs /work/main/src/config/names.rs /work/main/src/config/path.rs /work/main/src/config/raw.rs /work/main/src/config/split.rs /work/main/src/continuity.rs /work/main/src/engine/mod.rs /work/main/src/engine/compiled.rs /work/main/src/engine/rules.rs /work/main/src/engine/split.rs /work/main/src/engine/view.rs /work/main/src/metric_names.rs /work/main/src/testvectors.rs /work/main/src/filter/mod.rs /work/main/src/filter/abi.rs /work/main/src/filter/headers.rs /work/main/src/filter/metrics.rs /work/main/src/filter/plugin.rs /work/main/src/filter/stages.rs /work/main/src/filter/trace_table.rs

/work/main/src/lib.rs:
/work/main/src/baggage.rs:
/work/main/src/config/mod.rs:
/work/main/src/config/cond.rs:
/work/main/src/config/de.rs:
/work/main/src/config/error.rs:
/work/main/src/config/lint.rs:
/work/main/src/config/names.rs:
/work/main/src/config/path.rs:
/work/main/src/config/raw.rs:
/work/main/src/config/split.rs:
/work/main/src/continuity.rs:
/work/main/src/engine/mod.rs:
/work/main/src/engine/compiled.rs:
/work/main/src/engine/rules.rs:
/work/main/src/engine/split.rs:
/work/main/src/engine/view.rs:
/work/main/src/metric_names.rs:
/work/main/src/testvectors.rs:
/work/main/src/filter/mod.rs:
/work/main/src/filter/abi.rs:
/work/main/src/filter/headers.rs:
/work/main/src/filter/metrics.rs:
/work/main/src/filter/plugin.rs:
/work/main/src/filter/stages.rs:
/work/main/src/filter/trace_table.rs:
