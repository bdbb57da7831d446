#![cfg(not(target_arch = "wasm32"))]
//! Zero-downtime fallback across the full-link chain: gray requests under
//! load while every gray instance of C goes away and comes back. B's sidecar
//! runs `envoy/fulllink/sidecar-b-failover.yaml` (graylane's cluster for the
//! lane is an aggregate of the gray instances and base, health-checked, with
//! retries); no request may fail, gray traffic must go to C[base] while gray
//! is down and back to C[gray] after it returns.
//!
//! Sizes: `GRAYLANE_FAILOVER_REQUESTS` (default 3000),
//! `GRAYLANE_FAILOVER_CONNECTIONS` (default 6) and `GRAYLANE_FAILOVER_RATE`
//! (requests per second, default 500); C[gray] is down from 25 % to 50 % of
//! the requests. `scripts/soak.sh` runs the full size.

use graylane_wasm_tests::load;

use graylane_wasm_tests::chain::{app, fulllink_config};
use graylane_wasm_tests::harness::{free_port, poll, request, Envoy, Server};
use load::{App, AppHandler, AppRequest, Plan, Reply, Target};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const GRAY_UP: &str = "A[gray] -> B[base] -> C[gray]";
const GRAY_DOWN: &str = "A[gray] -> B[base] -> C[base]";
const BASE: &str = "A[base] -> B[base] -> C[base]";

/// The C[gray] app, killable: answers like the chain's leaf apps.
fn c_gray() -> AppHandler {
    Arc::new(|req: &AppRequest| {
        let body = serde_json::json!({"trace": "C[gray]", "baggage": req.header("baggage")});
        (200, vec![], body.to_string().into_bytes())
    })
}

/// The chain of `envoy/fulllink/` with B's sidecar on the failover config,
/// and C[gray] an [`App`] that can be killed and brought back.
struct FailoverChain {
    edge: Envoy,
    sidecar_b: Envoy,
    edge_port: u16,
    c_gray: Option<App>,
    c_gray_port: u16,
    _sidecar_a: Envoy,
    _apps: Vec<Server>,
}

impl FailoverChain {
    fn start() -> FailoverChain {
        let mut ports = BTreeMap::new();
        for p in [10100, 10120, 10130] {
            ports.insert(p, free_port());
        }
        let (sa, sb) = (ports[&10120], ports[&10130]);
        let mut apps = Vec::new();
        for (default, server) in [
            (10111, app("A", "base", Some((sa, "svc-b")))),
            (10112, app("A", "gray", Some((sa, "svc-b")))),
            (10121, app("B", "base", Some((sb, "svc-c")))),
            (10122, app("B", "gray", Some((sb, "svc-c")))),
            (10131, app("C", "base", None)),
            (10133, app("C", "android", None)),
        ] {
            ports.insert(default, server.port);
            apps.push(server);
        }
        let c_gray = App::start(c_gray());
        ports.insert(10132, c_gray.port);
        let start = |file: &str| {
            let mut yaml = fulllink_config(file, &ports);
            for admin in [9910, 9920, 9930] {
                yaml = yaml.replace(&format!("port_value: {admin} "), "port_value: {{ADMIN}} ");
            }
            Envoy::start_with(&yaml, &[], 1)
        };
        let sidecar_b = start("sidecar-b-failover.yaml");
        let sidecar_a = start("sidecar-a.yaml");
        let edge = start("edge.yaml");
        FailoverChain {
            edge,
            sidecar_b,
            edge_port: ports[&10100],
            c_gray_port: c_gray.port,
            c_gray: Some(c_gray),
            _sidecar_a: sidecar_a,
            _apps: apps,
        }
    }

    fn trace(&self, headers: &[(&str, &[u8])]) -> String {
        let mut raw = headers.to_vec();
        raw.push(("host", b"svc-a"));
        let r = request(self.edge_port, "GET", "/", &raw).expect("edge request");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["trace"].as_str().unwrap_or_default().to_string()
    }

    /// Every instance of C[gray] goes away.
    fn kill_gray(&mut self) {
        if let Some(mut c) = self.c_gray.take() {
            c.kill();
        }
    }

    /// A new C[gray] instance on the same port.
    fn restore_gray(&mut self) {
        let port = self.c_gray_port;
        let app = poll(Duration::from_secs(5), Duration::from_millis(50), || {
            App::start_on(port, c_gray()).map_err(|e| {
                eprintln!("rebinding C[gray] on {port}: {e}");
                e.to_string()
            })
        })
        .unwrap_or_else(|e| panic!("cannot bring C[gray] back on {port}: {e}"));
        self.c_gray = Some(app);
    }
}

fn is_gray_request(i: usize) -> bool {
    i % 5 != 4
}

/// Kills and brings back C[gray] under load; every response must be 200 and
/// carry the right trace.
#[test]
fn gray_goes_to_base_while_its_instances_are_gone_with_no_failed_request() {
    let requests = load::env_usize("GRAYLANE_FAILOVER_REQUESTS", 3000);
    let connections = load::env_usize("GRAYLANE_FAILOVER_CONNECTIONS", 6);
    // Paced (6 s by default): each phase, up, down and back, lasts long
    // enough next to the health check interval (200 ms).
    let rate = load::env_usize("GRAYLANE_FAILOVER_RATE", 500).max(1) as f64;
    let mut chain = FailoverChain::start();
    assert_eq!(chain.trace(&[("location", b"cn-shenzhen")]), GRAY_UP);
    assert_eq!(chain.trace(&[]), BASE);

    let plan = Plan {
        port: chain.edge_port,
        connections,
        requests,
        rate: Some(rate),
        keep_samples: true,
    };
    let load = load::start(
        &plan,
        Arc::new(|i| {
            if is_gray_request(i) {
                Target::new("/", &[("host", "svc-a"), ("location", "cn-shenzhen")])
            } else {
                Target::new("/", &[("host", "svc-a")])
            }
        }),
        Arc::new(|_, r: &Reply| {
            if r.status != 200 {
                return format!("{} {}", r.status, r.text());
            }
            serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["trace"].as_str().map(str::to_string))
                .unwrap_or_else(|| r.text())
        }),
    );
    load.wait_done(requests / 4);
    let killed_at = load.now();
    chain.kill_gray();
    let killed = load.now();
    load.wait_done(requests / 2);
    let restore_at = load.now();
    chain.restore_gray();
    let report = load.join();

    // Counts for the record (printed with --nocapture, or when failing).
    let stats = chain.sidecar_b.stats();
    let stat = |n: &str| stats.get(n).copied().unwrap_or(0);
    let summary = format!(
        "failover: {} requests at {connections} connections in {:.1} s ({:.0}/s): statuses {:?}, \
         traces {:?}; C[gray] killed at {:.2}s, back at {:.2}s; sidecar-b: \
         c-gray retries {}, c-gray-pods health check failures {}, ejections {}, \
         upstream_rq c-gray-pods {} c-base {}",
        report.requests,
        report.elapsed.as_secs_f64(),
        report.per_second(),
        report.statuses,
        report.labels,
        killed_at.as_secs_f64(),
        restore_at.as_secs_f64(),
        stat("cluster.c-gray.upstream_rq_retry"),
        stat("cluster.c-gray-pods.health_check.failure"),
        stat("cluster.c-gray-pods.outlier_detection.ejections_enforced_total"),
        stat("cluster.c-gray-pods.upstream_rq_total"),
        stat("cluster.c-base.upstream_rq_total"),
    );
    println!("{summary}");

    assert_eq!(report.requests, requests, "{summary}");
    assert_eq!(
        report.failed(),
        0,
        "failed requests: {:?}\n{summary}",
        report.errors
    );
    for s in &report.samples {
        if !is_gray_request(s.index) {
            assert_eq!(s.label, BASE, "request {}: {summary}", s.index);
            continue;
        }
        assert!(
            s.label == GRAY_UP || s.label == GRAY_DOWN,
            "request {}: {}\n{summary}",
            s.index,
            s.label
        );
        if s.end < killed_at {
            assert_eq!(s.label, GRAY_UP, "before the kill: {summary}");
        }
        if s.start > killed && s.end < restore_at {
            assert_eq!(s.label, GRAY_DOWN, "while gray is down: {summary}");
        }
    }
    let gray = |from: Duration, to: Duration| {
        report
            .samples
            .iter()
            .filter(|s| is_gray_request(s.index) && s.start > from && s.end < to)
            .count()
    };
    let served_by_base_while_down = gray(killed, restore_at);
    assert!(
        served_by_base_while_down >= 20,
        "too few gray requests while gray was down ({served_by_base_while_down}): {summary}"
    );
    // Back to C[gray] within a few seconds, and then for good.
    let back = report
        .samples
        .iter()
        .filter(|s| is_gray_request(s.index) && s.start > restore_at && s.label == GRAY_UP)
        .map(|s| s.end)
        .min()
        .unwrap_or_else(|| panic!("gray traffic never came back to C[gray]: {summary}"));
    let recovery = back - restore_at;
    println!(
        "failover: {served_by_base_while_down} gray requests served by C[base] while C[gray] was down; \
         back on C[gray] {:.0} ms after it returned",
        recovery.as_secs_f64() * 1000.0
    );
    assert!(recovery < Duration::from_secs(3), "{summary}");
    let settled = back + Duration::from_millis(500);
    let late: Vec<&load::Sample> = report
        .samples
        .iter()
        .filter(|s| is_gray_request(s.index) && s.start > settled)
        .collect();
    assert!(
        late.len() >= 20,
        "too few requests after recovery: {summary}"
    );
    assert!(
        late.iter().all(|s| s.label == GRAY_UP),
        "gray traffic not all back on C[gray]: {summary}"
    );
    // The edge saw only 200s too.
    assert_eq!(chain.edge.counter("http.edge.downstream_rq_5xx"), 0);
}
