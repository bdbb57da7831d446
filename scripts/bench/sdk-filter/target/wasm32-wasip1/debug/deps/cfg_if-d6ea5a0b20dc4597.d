/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/cfg_if-d6ea5a0b20dc4597.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/libcfg_if-d6ea5a0b20dc4597.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs:
