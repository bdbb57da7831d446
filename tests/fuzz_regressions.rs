//! Replays every input under `fuzz/regressions/` through the same checks the
//! fuzz targets run (`fuzz/src/checks.rs`), natively, in `cargo test`:
//! `config/*` raw bytes, `trace_context/*` raw bytes, `baggage/*` raw bytes in the baggage target's
//! format, `decision/*.json` a request as `{"seed": N, "headers": [[name,
//! value], ...]}` (a value is text, or an array of bytes when not UTF-8).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../fuzz/src/checks.rs"]
mod checks;

use graylane::engine::HeaderList;
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

/// Runs `check` on every input, naming the file that fails.
fn replay(target: &str, check: impl Fn(&Path)) {
    for file in inputs(target) {
        let name = file.display().to_string();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&file)));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: {msg}");
        }
    }
}

fn decision_request(text: &str) -> (HeaderList, u64) {
    let v: serde_json::Value = serde_json::from_str(text).expect("decision regression JSON");
    let seed = v["seed"].as_u64().unwrap_or(0);
    let headers = v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| {
            let name = pair[0].as_str().expect("header name").to_ascii_lowercase();
            let value = match &pair[1] {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                serde_json::Value::Array(bytes) => bytes
                    .iter()
                    .map(|b| b.as_u64().expect("byte") as u8)
                    .collect(),
                other => panic!("header value {other}"),
            };
            (name, value)
        })
        .collect();
    (HeaderList(headers), seed)
}

#[test]
fn config_regressions() {
    replay("config", |f| {
        checks::check_config(&std::fs::read(f).unwrap())
    });
}

#[test]
fn baggage_regressions() {
    replay("baggage", |f| {
        checks::check_baggage(&std::fs::read(f).unwrap())
    });
}

#[test]
fn trace_context_regressions() {
    replay("trace_context", |f| {
        checks::check_trace_context(&std::fs::read(f).unwrap())
    });
}

#[test]
fn decision_regressions() {
    replay("decision", |f| {
        let (req, seed) = decision_request(&std::fs::read_to_string(f).unwrap());
        checks::check_decision(&req, seed);
    });
}

/// The checks catch what they claim to: a request whose forged tag an edge
/// obeyed would differ from the same request without the tag.
#[test]
fn tag_stripping_is_same_length() {
    let config =
        graylane::config::Config::from_json(graylane::testvectors::TABLE_CONFIG.as_bytes())
            .unwrap();
    let req = HeaderList::from_strs(&[
        ("x-graylane", "gray"),
        ("baggage", "a=1, LANE = gray ;p=1,lane=gray,x=lane"),
        ("x-graylane-cluster", "b-gray"),
    ]);
    let clean = checks::without_tags(&config, &req);
    assert_eq!(
        clean,
        HeaderList::from_strs(&[("baggage", "a=1, zzzz = gray ;p=1,zzzz=gray,x=lane")])
    );
}
