//! `Config::from_json` on arbitrary bytes: never panics; an accepted config
//! decides consistently and writes well-formed headers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graylane_fuzz::checks::check_config(data));
