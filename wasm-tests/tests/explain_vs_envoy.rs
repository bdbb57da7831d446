//! `graylane explain` cannot disagree with Envoy: for a table of requests,
//! the CLI's answer (lane and header changes) equals what the backend
//! behind a real Envoy running the filter received.
#![cfg(not(target_arch = "wasm32"))]

use graylane::testvectors::{DECISION_TABLE, TABLE_CONFIG};
use graylane_wasm_tests::configs::Gateway;
use graylane_wasm_tests::harness::scratch_dir;

const TABLE_LANES: &[&str] = &[
    "gray", "beta", "android", "api-v2", "vip", "writes", "tenant", "sticky",
];

/// Runs `graylane explain CONFIG <args> --json` (the CLI's own entry point).
fn explain(config: &std::path::Path, pairs: &[(&str, &str)]) -> serde_json::Value {
    let mut args: Vec<String> = vec![
        "explain".into(),
        config.display().to_string(),
        "--json".into(),
    ];
    for (k, v) in pairs {
        match *k {
            ":path" => args.extend(["--path".into(), (*v).into()]),
            ":method" => args.extend(["--method".into(), (*v).into()]),
            ":authority" => args.extend(["--host".into(), (*v).into()]),
            _ => args.extend(["-H".into(), format!("{k}: {v}")]),
        }
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = graylane::cli::run(&args, &mut out, &mut err);
    assert_eq!(code, 0, "{args:?}: {}", String::from_utf8_lossy(&err));
    serde_json::from_slice(&out).expect("explain --json prints JSON")
}

#[test]
fn cli_explain_equals_envoy() {
    let dir = scratch_dir("explain");
    let config = dir.join("config.json");
    // svc-b's clusters renamed to the gateway's backends: base and lane-gray.
    let plugin = TABLE_CONFIG
        .replace("\"b-base\"", "\"base\"")
        .replace("\"b-gray\"", "\"lane-gray\"");
    std::fs::write(&config, &plugin).unwrap();
    let gw = Gateway::start_with_hosts(&plugin, TABLE_LANES, &["svc-b"]);

    let mut rows: Vec<Vec<(&str, &str)>> = DECISION_TABLE.iter().map(|(p, _)| p.to_vec()).collect();
    // The same requests addressed to a service with a `services` entry: the
    // cluster (lane version or base fallback) must agree too.
    for (pairs, _) in DECISION_TABLE {
        if !pairs.iter().any(|(k, _)| *k == ":authority") {
            let mut p = pairs.to_vec();
            p.push((":authority", "svc-b:8080"));
            rows.push(p);
        }
    }
    assert!(rows.len() > 40);
    for pairs in &rows {
        let cli = explain(&config, pairs);
        let envoy = gw.send_str(pairs).json();
        let received = &envoy["headers"];
        let lane = cli["lane"].as_str().unwrap();
        // Which backend answered: the lane's, or base.
        let backend = envoy["backend"].as_str().unwrap();
        let routed_by_cluster = pairs
            .iter()
            .any(|(k, v)| *k == ":authority" && v.starts_with("svc-b"));
        if !routed_by_cluster {
            assert_eq!(backend, lane, "{pairs:?}: CLI {cli}");
        }
        // Every header the CLI says it sets, the backend received with that value;
        // every header it removes, the backend did not receive.
        let sets = cli["headers"].as_object().unwrap();
        for (name, value) in sets {
            match value.as_str() {
                Some(v) => assert_eq!(
                    received[name.as_str()],
                    v,
                    "{pairs:?} header {name}: CLI {cli}"
                ),
                None => assert!(
                    received.get(name.as_str()).is_none(),
                    "{pairs:?} header {name}: CLI {cli}"
                ),
            }
        }
        if routed_by_cluster {
            let cluster = cli["cluster"].as_str().unwrap();
            assert_eq!(received["x-graylane-cluster"], cluster, "{pairs:?}");
            let expected = if cluster == "lane-gray" {
                "gray"
            } else {
                "base"
            };
            assert_eq!(backend, expected, "{pairs:?}: CLI {cli}");
            // svc-b has only a gray version: every other lane falls back to base.
            assert_eq!(
                cli["fallback"].is_string(),
                lane != "base" && lane != "gray",
                "{cli}"
            );
        }
    }
}
