//! graylane: full-link traffic lanes for Envoy and Istio, as a proxy-wasm
//! HTTP filter. Everything outside `filter` is plain Rust, tested natively.
// `unsafe` only where the filter meets the host (src/filter/abi.rs; the
// exports of src/filter/ are `#[no_mangle]`), each block with its SAFETY
// comment.
#![deny(unsafe_code)]

pub mod baggage;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod config;
pub mod continuity;
pub mod engine;
#[cfg(not(target_arch = "wasm32"))]
pub mod istio;
pub mod metric_names;
#[cfg(not(target_os = "wasi"))]
pub mod report;
#[cfg(not(target_arch = "wasm32"))]
pub mod rollout;
pub mod testvectors;

// The bench's proxy-wasm SDK build (scripts/bench/sdk-filter) brings its
// own exports and builds this library with `--cfg graylane_sdk_bench`.
#[cfg(all(target_arch = "wasm32", target_os = "wasi", not(graylane_sdk_bench)))]
#[allow(unsafe_code)]
mod filter;
