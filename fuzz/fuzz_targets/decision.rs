//! A structured request against fixed rich configs: `process` and `explain`
//! agree, the effects are well-formed, and at an edge client-sent tags never
//! change the decision. With `GRAYLANE_FUZZ_DUMP=1` the request is printed
//! as the JSON of `fuzz/regressions/decision/*.json` before it is checked.
#![no_main]

use graylane_fuzz::{checks, regression_json, DecisionInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DecisionInput| {
    let req = input.request();
    if std::env::var_os("GRAYLANE_FUZZ_DUMP").is_some() {
        eprintln!("{}", regression_json(&req, input.seed));
    }
    checks::check_decision(&req, input.seed);
});
