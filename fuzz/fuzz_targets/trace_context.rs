//! `traceparent` parsing against a plain reference, whole-value trace ids,
//! and the continuity table's slot values and slots (checks in
//! `graylane_fuzz::checks::check_trace_context`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graylane_fuzz::checks::check_trace_context(data));
