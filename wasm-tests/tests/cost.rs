//! The deterministic cost of the shipped filter per request kind (fuel =
//! Wasm instructions executed, host calls by name), measured in an embedded
//! proxy-wasm host (`graylane_wasm_tests::costhost`) and compared with the
//! committed baseline `wasm-tests/cost-baseline.json`.
//!
//! Fails when fuel per request of any kind grows more than 10 %, or host
//! calls per request grow at all. Rewrite the baseline after an intended
//! change with:
//!
//!   GRAYLANE_COST_UPDATE=1 cargo test -p graylane-wasm-tests --test cost
#![cfg(not(target_arch = "wasm32"))]

use graylane_wasm_tests::costhost::{
    check, deserialize_map, markdown, measure, measure_all, serialize_map, to_json, BenchSpec,
    CostHost, Figures,
};
use graylane_wasm_tests::harness::{repo_root, wasm_path};
use serde_json::Value;

/// Fuel per request may grow by this much before the test fails.
const FUEL_TOLERANCE: f64 = 1.10;

fn baseline_path() -> std::path::PathBuf {
    repo_root().join("wasm-tests/cost-baseline.json")
}

fn load() -> (Vec<u8>, BenchSpec) {
    let path = wasm_path();
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "filter {} not readable ({e}): run scripts/test.sh (it builds it) or set GRAYLANE_WASM",
            path.display()
        )
    });
    let spec = BenchSpec::load(&repo_root()).expect("scripts/bench/configs.py");
    (wasm, spec)
}

fn figure(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

#[test]
fn cost_per_request_within_baseline() {
    let (wasm, spec) = load();
    let figures = measure_all(&wasm, &spec).unwrap_or_else(|e| panic!("cost meter: {e}"));
    println!(
        "Deterministic cost of {} ({} bytes):\n\n{}",
        wasm_path().display(),
        wasm.len(),
        markdown(&figures)
    );
    let current = to_json(&figures, wasm.len());
    if std::env::var("GRAYLANE_COST_UPDATE").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&current).unwrap() + "\n";
        std::fs::write(baseline_path(), text).unwrap();
        println!("baseline rewritten: {}", baseline_path().display());
        return;
    }
    let baseline: Value = serde_json::from_str(
        &std::fs::read_to_string(baseline_path()).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; create it with GRAYLANE_COST_UPDATE=1 cargo test -p graylane-wasm-tests --test cost",
                baseline_path().display()
            )
        }),
    )
    .expect("baseline JSON");
    let mut failures = Vec::new();
    println!("| kind | fuel / request | baseline | ratio | host calls / request | baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    for f in &figures {
        let Some(base) = baseline.get("kinds").and_then(|k| k.get(&f.kind)) else {
            failures.push(format!("{}: not in the baseline", f.kind));
            continue;
        };
        let (Some(base_fuel), Some(base_calls)) =
            (figure(base, "fuel"), figure(base, "host_calls"))
        else {
            failures.push(format!("{}: baseline lacks fuel or host_calls", f.kind));
            continue;
        };
        let ratio = f.fuel / base_fuel;
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {} | {} |",
            f.kind, f.fuel, base_fuel, ratio, f.host_calls_total, base_calls
        );
        if ratio > FUEL_TOLERANCE {
            failures.push(format!(
                "{}: fuel per request {:.0} is {:.1} % above the baseline {:.0} (limit {:.0} %)",
                f.kind,
                f.fuel,
                (ratio - 1.0) * 100.0,
                base_fuel,
                (FUEL_TOLERANCE - 1.0) * 100.0
            ));
        } else if ratio < 1.0 / FUEL_TOLERANCE {
            println!(
                "  {}: {:.1} % below the baseline; rewrite it to keep the guard tight",
                f.kind,
                (1.0 - ratio) * 100.0
            );
        }
        if f.host_calls_total > base_calls + 1e-9 {
            let by_name = base.get("host_calls_by_name");
            let changed: Vec<String> = f
                .host_calls
                .iter()
                .filter_map(|(name, n)| {
                    let was = by_name
                        .and_then(|b| b.get(name.as_str()))
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0);
                    (*n != was).then(|| format!("{name} {n} (baseline {was})"))
                })
                .collect();
            failures.push(format!(
                "{}: {} host calls per request, baseline {} (by name: {})",
                f.kind,
                f.host_calls_total,
                base_calls,
                if changed.is_empty() {
                    "as in the baseline".to_string()
                } else {
                    changed.join(", ")
                }
            ));
        }
        if let (Some(t), Some(base_tick)) = (&f.tick, figure(base, "tick_fuel")) {
            if t.fuel as f64 > base_tick * FUEL_TOLERANCE {
                failures.push(format!(
                    "{}: tick fuel {} is more than 10 % above the baseline {base_tick:.0}",
                    f.kind, t.fuel
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "cost regressed against {}:\n  {}\nIf the change is intended, rewrite the baseline: \
         GRAYLANE_COST_UPDATE=1 cargo test -p graylane-wasm-tests --test cost",
        baseline_path().display(),
        failures.join("\n  ")
    );
}

fn same_cost(a: &Figures, b: &Figures) -> bool {
    a.fuel == b.fuel
        && a.fuel_min == b.fuel_min
        && a.fuel_max == b.fuel_max
        && a.host_calls == b.host_calls
        && a.allocations == b.allocations
        && a.last.request_headers == b.last.request_headers
}

/// Two fresh VMs give the same figures, request for request.
#[test]
fn figures_are_deterministic() {
    let (wasm, spec) = load();
    for kind in spec.kinds.iter().filter(|k| k.config != "e") {
        let a = measure(&wasm, &spec, kind, 5, 10).unwrap();
        let b = measure(&wasm, &spec, kind, 5, 10).unwrap();
        check(kind, &a).unwrap();
        assert!(same_cost(&a, &b), "{}: {a:?}\nvs\n{b:?}", kind.name);
    }
}

/// The sanity check catches a filter that did not do the kind's job, so the
/// figures cannot come from a host that silently broke the filter.
#[test]
fn check_rejects_a_wrong_outcome() {
    let (wasm, spec) = load();
    let edge = spec.kinds.iter().find(|k| k.name == "edge-lane").unwrap();
    let base = spec.kinds.iter().find(|k| k.name == "base").unwrap();
    let f = measure(&wasm, &spec, edge, 1, 1).unwrap();
    check(edge, &f).unwrap();
    assert_eq!(f.last.request_header("x-graylane"), Some("hdr-3"));
    let mut wrong = edge.clone();
    wrong.lane = None;
    assert!(check(&wrong, &f).is_err());
    let f = measure(&wasm, &spec, base, 1, 1).unwrap();
    check(base, &f).unwrap();
    assert_eq!(f.last.request_header("x-graylane"), None);
    let mut wrong = base.clone();
    wrong.lane = Some("hdr-3".into());
    assert!(check(&wrong, &f).is_err());
}

/// Per-request counts the filter keeps in the VM reach the host on a tick
/// and when the root stops, none lost; a tick with nothing counted makes no
/// host call; a configuration is counted at once.
#[test]
fn counts_kept_in_the_vm_reach_the_host() {
    let (wasm, spec) = load();
    let base = spec.kinds.iter().find(|k| k.name == "base").unwrap();
    let config = &spec.configs[&base.config];
    let requests = "graylane.requests.source.default.lane.base";
    let mut host = CostHost::new(&wasm, config.as_bytes()).unwrap();
    assert_eq!(host.state().metric("graylane.config_accepted"), Some(1));
    assert_eq!(host.tick_period_ms(), 1000);
    let send = |host: &mut CostHost, n: usize| {
        for _ in 0..n {
            let trace = host.request(&base.request, &spec.response).unwrap();
            assert_eq!(trace.cost.host_calls.get("proxy_increment_metric"), None);
        }
    };
    // Before the first tick: kept in the VM.
    send(&mut host, 3);
    assert_eq!(host.state().metric(requests), Some(0));
    let tick = host.tick().unwrap().expect("a tick");
    assert_eq!(tick.host_calls.get("proxy_increment_metric"), Some(&1));
    assert_eq!(host.state().metric(requests), Some(3));
    // Nothing counted since: the tick does not call the host.
    let idle = host.tick().unwrap().expect("a tick");
    assert_eq!(idle.total_host_calls(), 0, "{idle:?}");
    // Counted after the last tick: sent when the root stops.
    send(&mut host, 2);
    host.stop().unwrap();
    assert_eq!(host.state().metric(requests), Some(5));
}

/// The header map serialization of the proxy-wasm ABI.
#[test]
fn header_map_serialization() {
    let map = vec![
        (":path".to_string(), "/a".to_string()),
        ("x".to_string(), String::new()),
    ];
    let bytes = serialize_map(&map);
    let mut want = Vec::new();
    for n in [2u32, 5, 2, 1, 0] {
        want.extend_from_slice(&n.to_le_bytes());
    }
    want.extend_from_slice(b":path\0/a\0x\0\0");
    assert_eq!(bytes, want);
    assert_eq!(deserialize_map(&bytes), Some(map));
    assert_eq!(deserialize_map(&bytes[..bytes.len() - 3]), None);
}
