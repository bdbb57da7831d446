//! Test support for graylane's end-to-end tests: real Envoy processes
//! running the built filter, echo backends and services, an HTTP client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(not(target_arch = "wasm32"))]
pub mod chain;
#[cfg(not(target_arch = "wasm32"))]
pub mod configs;
#[cfg(not(target_arch = "wasm32"))]
pub mod costhost;
#[cfg(not(target_arch = "wasm32"))]
pub mod examples;
#[cfg(not(target_arch = "wasm32"))]
pub mod h2;
#[cfg(not(target_arch = "wasm32"))]
pub mod harness;
#[cfg(not(target_arch = "wasm32"))]
pub mod load;
#[cfg(not(target_arch = "wasm32"))]
pub mod manifests;
#[cfg(not(target_arch = "wasm32"))]
pub mod outage;
#[cfg(not(target_arch = "wasm32"))]
pub mod prometheus;
#[cfg(not(target_arch = "wasm32"))]
pub mod trace_chain;
