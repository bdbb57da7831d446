//! The engine compiled to wasm32-unknown-unknown, run by wasm-bindgen-test
//! under Node: the golden bucket vectors and the decision table must give
//! the same answers as natively (Envoy runs the same code as wasm).
#![cfg(target_arch = "wasm32")]

use graylane::config::Config;
use graylane::engine::{bucket, process, HeaderList};
use graylane::testvectors::{DECISION_TABLE, GOLDEN_BUCKETS, TABLE_CONFIG};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn golden_buckets_in_wasm() {
    for &(salt, key, _, want) in GOLDEN_BUCKETS {
        assert_eq!(bucket(salt, key.as_bytes()), want, "{salt}:{key}");
    }
}

#[wasm_bindgen_test]
fn decision_table_in_wasm() {
    let config = Config::from_json(TABLE_CONFIG.as_bytes()).unwrap();
    let mut n = 0u64;
    let mut rng = move || {
        n += 1;
        n
    };
    for (pairs, want) in DECISION_TABLE {
        let out = process(&config, &HeaderList::from_strs(pairs), &mut rng);
        assert_eq!(config.lane_name(out.decision.lane), *want, "{pairs:?}");
    }
}

#[wasm_bindgen_test]
fn config_errors_in_wasm() {
    let e =
        Config::from_json(br#"{"lanes": [{"name": "g", "match": {"header": "a", "regex": "("}}]}"#)
            .unwrap_err();
    assert_eq!(e.first().path, "lanes[0].match.regex");
    assert_eq!(e.first().kind, graylane::config::ErrorKind::Regex);
}
