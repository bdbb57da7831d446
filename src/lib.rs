//! graylane: full-link traffic lanes for Envoy and Istio, as a proxy-wasm
//! HTTP filter. Everything outside `filter` is plain Rust, tested natively.

pub mod analysis;
pub mod baggage;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod config;
pub mod engine;
#[cfg(test)]
mod engine_tests;
#[cfg(not(target_arch = "wasm32"))]
pub mod istio;
pub mod metric_names;
#[cfg(not(target_os = "wasi"))]
pub mod report;
#[cfg(not(target_arch = "wasm32"))]
pub mod rollout;
pub mod testvectors;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
