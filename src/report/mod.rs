//! What `graylane check` and `graylane explain` print, apart from where the
//! text goes: the native CLI (`cli`) and the browser playground
//! (`playground/`, compiled to `wasm32-unknown-unknown`) run this same code,
//! so the page shows the CLI's text. Never part of the filter (`wasm32-wasip1`).

pub mod buckets;
pub mod check;
pub mod explain;
pub mod input;
