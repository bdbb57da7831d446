/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/graylane_bench_sdk_filter-a93b83304257cf18.d: src/lib.rs src/abi.rs src/../../../../src/filter/headers.rs src/../../../../src/filter/metrics.rs src/../../../../src/filter/plugin.rs src/../../../../src/filter/stages.rs src/../../../../src/filter/trace_table.rs

/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/libgraylane_bench_sdk_filter-a93b83304257cf18.rmeta: src/lib.rs src/abi.rs src/../../../../src/filter/headers.rs src/../../../../src/filter/metrics.rs src/../../../../src/filter/plugin.rs src/../../../../src/filter/stages.rs src/../../../../src/filter/trace_table.rs

src/lib.rs:
src/abi.rs:
src/../../../../src/filter/headers.rs:
src/../../../../src/filter/metrics.rs:
src/../../../../src/filter/plugin.rs:
src/../../../../src/filter/stages.rs:
src/../../../../src/filter/trace_table.rs:
