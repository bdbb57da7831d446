//! Envoy calls every callback graylane exports. The host skips a callback
//! the module exports but it does not call, without a word; a future Envoy
//! that stopped calling one (a renamed export in a new ABI, a callback
//! moved) would leave graylane silently not doing that part of its job.
//! The list is read from the module's own exports, so a callback added
//! later is checked too: each one logs a trace line when entered
//! (src/filter/mod.rs `entered`), and this test waits for every one.
#![cfg(not(target_arch = "wasm32"))]

use graylane_wasm_tests::configs::{bootstrap, cluster, lane_routes, listener, wasm_filter};
use graylane_wasm_tests::harness::{poll, request_str, wasm_path, Envoy, Server};
use std::time::Duration;

/// The `proxy_on_*` callbacks the module at `GRAYLANE_WASM` exports.
fn exported_callbacks() -> Vec<String> {
    let wasm = std::fs::read(wasm_path()).expect("read the filter");
    let module =
        wasmi::Module::new(&wasmi::Engine::default(), &wasm[..]).expect("parse the filter");
    let names: Vec<String> = module
        .exports()
        .map(|e| e.name().to_string())
        .filter(|n| n.starts_with("proxy_on_"))
        .collect();
    // Not a check that passes on an empty list: these are graylane's job.
    for needed in [
        "proxy_on_request_headers",
        "proxy_on_memory_allocate",
        "proxy_on_tick",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} not exported: {names:?}"
        );
    }
    names
}

#[test]
fn envoy_calls_every_exported_callback() {
    let callbacks = exported_callbacks();
    let backend = Server::echo("base");
    let gray = Server::echo("gray");
    let port = graylane_wasm_tests::harness::free_port();
    let plugin = r#"{"responseHeader": true,
        "lanes": [{"name": "gray", "match": {"header": "x-user", "exact": "alice"}}]}"#;
    let yaml = bootstrap(
        &listener(
            "gateway",
            port,
            &wasm_filter(plugin),
            &lane_routes("\"*\"", "x-graylane", &["gray"], "base"),
        ),
        &(cluster("base", backend.port) + &cluster("lane-gray", gray.port)),
    );
    let envoy = Envoy::start_logging(&yaml, &[], 1, "trace");
    let r = request_str(port, "/", &[("host", "gateway.test"), ("x-user", "alice")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-graylane"),
        Some("gray"),
        "the lane in the response"
    );
    assert_eq!(gray.count(), 1, "the request went to its lane");
    // The tick comes once a second; the stream's delete after its response.
    let seen = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let log = envoy.log_text();
        let missing: Vec<&String> = callbacks
            .iter()
            .filter(|c| !log.contains(&format!("callback {c} #")))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{missing:?}"))
        }
    });
    if let Err(missing) = seen {
        panic!(
            "exported callbacks {missing} never entered by this Envoy (of {callbacks:?}); its log:\n{}",
            envoy.log_text()
        );
    }
    println!("entered by Envoy: {callbacks:?}");
}
