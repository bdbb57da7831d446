/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/equivalent-1eb93e09a285261d.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/equivalent-1.0.3/src/lib.rs

/work/main/scripts/bench/sdk-filter/target/wasm32-wasip1/debug/deps/libequivalent-1eb93e09a285261d.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/equivalent-1.0.3/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/equivalent-1.0.3/src/lib.rs:
