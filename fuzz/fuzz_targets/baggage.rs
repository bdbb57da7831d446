//! `Baggage::parse`, `with_member(s)` and a re-parse of the output: valid,
//! bounded, the edits applied and unrelated members kept (input format in
//! `graylane_fuzz::checks::baggage_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graylane_fuzz::checks::check_baggage(data));
