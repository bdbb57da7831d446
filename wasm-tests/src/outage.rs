//! Lane-outage scenarios, shared by the fallback tests of the Istio and
//! Envoy Gateway recipes (README "Istio recipe", "Envoy Gateway recipe"):
//! app versions that answer with their name or fail on demand, steady load
//! in which every even request is in the lane, and counts per phase.

use crate::harness::{get, poll, Envoy};
use crate::load::{self, AppHandler, AppRequest, Plan, Reply, Report, Sample, Target};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An app version: answers `{"version", "lane"}` with 200, or 500 to
/// everything while `failing` is set.
pub fn version_app(version: &'static str, failing: Arc<AtomicBool>) -> AppHandler {
    Arc::new(move |req: &AppRequest| {
        if failing.load(Ordering::SeqCst) {
            return (500, vec![], b"broken".to_vec());
        }
        let body = json!({"version": version, "lane": req.header("x-graylane")});
        (200, vec![], body.to_string().into_bytes())
    })
}

/// Waits until Envoy's `/clusters` lists exactly `ports` (on 127.0.0.1) as
/// the hosts of `cluster`.
pub fn wait_hosts(envoy: &Envoy, cluster: &str, ports: &[u16]) {
    let mut want: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    want.sort();
    let prefix = format!("{cluster}::");
    poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let text = get(envoy.admin, "/clusters")
            .map(|r| r.text())
            .unwrap_or_default();
        let mut hosts: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| l.split_once("::cx_active::").map(|(h, _)| h.to_string()))
            .collect();
        hosts.sort();
        if hosts == want {
            Ok(())
        } else {
            Err(format!("{cluster}: hosts {hosts:?}, want {want:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Whether the load's request `i` is one of the lane's (every even one).
pub fn in_lane(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// Steady load on `listen`: `rate` requests a second over `connections`,
/// the lane's requests with `lane_headers`, the others with `base_headers`;
/// each labelled with the version that answered, else its status.
pub fn start_load(
    listen: u16,
    connections: usize,
    rate: f64,
    lane_headers: &'static [(&'static str, &'static str)],
    base_headers: &'static [(&'static str, &'static str)],
) -> load::Running {
    let plan = Plan {
        port: listen,
        connections,
        requests: 1_000_000,
        rate: Some(rate),
        keep_samples: true,
    };
    load::start(
        &plan,
        Arc::new(move |i| {
            let headers = if in_lane(i) {
                lane_headers
            } else {
                base_headers
            };
            Target::new("/", headers)
        }),
        Arc::new(|_, r: &Reply| {
            if r.status != 200 {
                return format!("{}", r.status);
            }
            serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| r.text())
        }),
    )
}

/// One stretch of the run: requests started in `[from, to)`.
pub struct Phase {
    pub name: &'static str,
    pub from: Duration,
    pub to: Duration,
}

impl Phase {
    /// The lane's requests (`lane`) or the others started in this phase.
    pub fn samples<'a>(&self, report: &'a Report, lane: bool) -> Vec<&'a Sample> {
        report
            .samples
            .iter()
            .filter(|s| in_lane(s.index) == lane && s.start >= self.from && s.start < self.to)
            .collect()
    }

    /// How many of [`Phase::samples`] carry `label`.
    pub fn count(&self, report: &Report, lane: bool, label: &str) -> usize {
        self.samples(report, lane)
            .iter()
            .filter(|s| s.label == label)
            .count()
    }
}

/// Prints each phase's counts (`what`: the test's name for its lines), and
/// checks what holds in every phase: enough requests of both kinds, and
/// every base request answered by base (base is never affected by the
/// lane's outage). `summary` goes into every failure message.
pub fn check_phases(what: &str, report: &Report, phases: &[Phase], summary: &str) {
    for p in phases {
        let (g, b) = (
            p.samples(report, true).len(),
            p.samples(report, false).len(),
        );
        let (to_gray, to_base) = (p.count(report, true, "gray"), p.count(report, true, "base"));
        let base_ok = p.count(report, false, "base");
        println!(
            "{what}: phase {:<45} {:>5.2}-{:>5.2}s: gray requests {g}: to gray {to_gray}, \
             to base {to_base}, failed {}; base requests {b}: to base {base_ok}, failed {}",
            p.name,
            p.from.as_secs_f64(),
            p.to.as_secs_f64(),
            g - to_gray - to_base,
            b - base_ok,
        );
        assert!(
            g >= 100 && b >= 100,
            "phase {}: too few requests: {summary}",
            p.name
        );
        assert_eq!(base_ok, b, "phase {}: base requests: {summary}", p.name);
    }
}
