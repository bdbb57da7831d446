#![cfg(not(target_arch = "wasm32"))]
//! Live configuration reload under load: the gateway listener of
//! `envoy/reload/` comes from a file (file-based LDS); the test replaces the
//! file (write a new one, rename it over the old: Envoy reloads on a move)
//! with new graylane configurations, some invalid, while a load runs. No
//! request may fail; a valid configuration must be in effect within 2 s; an
//! invalid one must be rejected (Envoy counts the rejected listener update,
//! graylane its rejected configuration and logs the JSON path) while the
//! previous configuration keeps serving.
//!
//! Sizes: `GRAYLANE_RELOAD_SWAPS` (default 10, every third one invalid) and
//! `GRAYLANE_RELOAD_RATE` (requests per second on 4 connections, default
//! 500, for as long as the swaps take); `scripts/soak.sh` runs more swaps.

use graylane_wasm_tests::load;

use graylane_wasm_tests::examples::{
    self, backend_in, backend_of, fill_plugin as fill, split_plugin,
};
use graylane_wasm_tests::harness::{free_port, poll, scratch_dir, wait_until, wasm_path, Envoy};
use load::{Plan, Reply, Target};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Worker threads of the gateway's Envoy.
const WORKERS: u64 = 2;

/// Envoy's count of listener versions added to a worker thread: +1 per
/// worker and per listener (or in-place filter chain) update, counted on
/// the main thread once that worker has taken the new version (the
/// worker's completion is posted back to the main thread, which counts it;
/// `ListenerManagerImpl::addListenerToWorker`). So once it has grown by
/// [`WORKERS`] after an update, every worker serves new connections with
/// the new version.
const LISTENER_CREATED: &str = "listener_manager.listener_create_success";

/// The committed example (`envoy/reload/`), moved to free ports, with its
/// listener file in a scratch directory.
struct ReloadGateway {
    envoy: Envoy,
    port: u16,
    lds: PathBuf,
    /// listeners.yaml with `{{PLUGIN}}` in place of the plugin configuration.
    template: String,
}

fn read_example(file: &str) -> String {
    examples::read_example("envoy/reload", file)
}

impl ReloadGateway {
    fn start() -> ReloadGateway {
        let (port, backends) = (free_port(), free_port());
        let lds = scratch_dir("reload").join("listeners.yaml");
        let (initial, template) = split_plugin(
            &read_example("listeners.yaml")
                .replace("port_value: 10200 ", &format!("port_value: {port} "))
                .replace(
                    "filename: target/graylane.wasm",
                    &format!("filename: {}", wasm_path().display()),
                ),
            "listeners.yaml",
        );
        let bootstrap = read_example("bootstrap.yaml")
            .replace("port_value: 10201 ", &format!("port_value: {backends} "))
            .replace("port_value: 9902 ", "port_value: {{ADMIN}} ")
            .replace(
                "path: envoy/reload/listeners.yaml",
                &format!("path: {}", lds.display()),
            );
        assert!(
            bootstrap.contains(&lds.display().to_string()),
            "bootstrap.yaml: no `path: envoy/reload/listeners.yaml`"
        );
        // The listener file must exist when Envoy starts.
        std::fs::write(&lds, fill(&template, &initial)).expect("write listeners");
        let gw = ReloadGateway {
            envoy: Envoy::start_with(&bootstrap, &[], WORKERS as u32),
            port,
            lds,
            template,
        };
        gw.wait_serving();
        gw
    }

    /// Waits until the gateway listener answers.
    fn wait_serving(&self) {
        wait_until(
            "the LDS listener serving",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || backend_of(self.port, &[]).is_some(),
        );
    }

    /// Replaces the listener file as an operator should: a new file next to
    /// it, renamed over it (Envoy reloads on a move into the path).
    fn swap(&self, plugin_json: &str) {
        let tmp = self.lds.with_file_name(".listeners.yaml.new");
        std::fs::write(&tmp, fill(&self.template, plugin_json)).expect("write listeners");
        std::fs::rename(&tmp, &self.lds).expect("rename listeners");
    }
}

/// Valid configuration `k`: gray on `location`, blue on `x-release: r<k>`.
fn valid(k: usize) -> String {
    format!(
        r#"{{"incoming": "ignore", "responseHeader": true, "lanes": [{{"name": "gray", "priority": 10, "match": {{"header": "location", "exact": "cn-shenzhen"}}}}, {{"name": "blue", "priority": 20, "match": {{"header": "x-release", "exact": "r{k}"}}}}]}}"#
    )
}

/// Invalid configuration `n`, and the JSON path graylane must log. Each `n`
/// gives a different text: Envoy does not hand graylane a configuration
/// identical to one it already failed to load (see the end of the test).
fn invalid(n: usize) -> (String, &'static str) {
    let gray = r#"{"name": "gray", "priority": 10, "match": {"header": "location", "exact": "cn-shenzhen"}}"#;
    match n % 3 {
        0 => (
            format!(
                r#"{{"lanes": [{gray}, {{"name": "blue", "priority": 20, "match": {{"header": "x-release", "regex": "(r{n}"}}}}]}}"#
            ),
            "lanes[1].match.regex",
        ),
        1 => (
            format!(r#"{{"lanes": [{gray}, {{"name": "blue", "priorty": {n}}}]}}"#),
            "lanes[1].priorty",
        ),
        _ => (
            format!(
                r#"{{"lanes": [{gray}, {{"name": "blue", "split": {{"percent": {}}}}}]}}"#,
                150 + n
            ),
            "lanes[1].split.percent",
        ),
    }
}

/// The load: lane decisions that hold under every configuration of the
/// test, so each answer can be checked; and one request in five matching
/// only the first configuration's blue rule (`x-release: r0`), which shows
/// which configuration served it.
fn load_target(i: usize) -> (Target, &'static str) {
    if i % 5 == 4 {
        return (Target::new("/", &[("x-release", "r0")]), "blue or base");
    }
    match i % 4 {
        0 => (
            Target::new("/", &[("location", "cn-shenzhen"), ("x-user-id", "u1")]),
            "gray",
        ),
        1 => (Target::new("/", &[]), "base"),
        2 => (Target::new("/", &[("x-release", "none")]), "base"),
        _ => (
            Target::new("/", &[("baggage", "lane=blue"), ("x-graylane", "blue")]),
            "base",
        ),
    }
}

fn wait_for(what: &str, limit: Duration, ok: impl FnMut() -> bool) -> Duration {
    wait_until(what, limit, Duration::from_millis(10), ok)
}

/// How long the load may take to finish a batch of requests it is waited
/// for by count, beyond its schedule: the load is paced (request `i` is
/// due at `i / rate` s) on local connections to an Envoy that answers in
/// milliseconds, so only a process stalled for a minute misses this.
const LOAD_SLACK: Duration = Duration::from_secs(60);

/// Waits until the load has finished `n` requests in all: a phase of the
/// test measured in requests, not in time, so that a slow or busy machine
/// makes it last longer instead of making it smaller. Fails if the load
/// ended first (it is bounded far beyond what the test needs) or after
/// `n / rate` s plus [`LOAD_SLACK`].
fn wait_requests(load: &load::Running, n: usize, rate: f64) {
    let limit = Duration::from_secs_f64(n as f64 / rate) + LOAD_SLACK;
    let reached = poll(limit, Duration::from_millis(5), || {
        let done = load.done();
        if done >= n {
            Ok(())
        } else if load.finished() {
            panic!("the load ended after {done} requests, before {n}");
        } else {
            Err(format!("{done} requests done, waiting for {n}"))
        }
    });
    if let Err(last) = reached {
        panic!("{last} after {limit:?}");
    }
}

#[test]
fn config_swaps_under_load_apply_or_are_rejected_with_no_failed_request() {
    let swaps = load::env_usize("GRAYLANE_RELOAD_SWAPS", 10);
    let rate = load::env_usize("GRAYLANE_RELOAD_RATE", 500) as f64;
    let gw = ReloadGateway::start();
    // The committed example: blue is reached with x-release: r0.
    assert_eq!(
        backend_of(gw.port, &[("x-release", "r0")]).as_deref(),
        Some("blue")
    );
    assert_eq!(
        backend_of(gw.port, &[("location", "cn-shenzhen")]).as_deref(),
        Some("gray")
    );
    assert_eq!(backend_of(gw.port, &[]).as_deref(), Some("base"));

    let plan = Plan {
        port: gw.port,
        connections: 4,
        // Bounded (10 minutes at the rate: far beyond what the swaps take,
        // so that it cannot end before them); in practice the load is
        // stopped when the swaps are done.
        requests: (rate * 600.0) as usize,
        rate: Some(rate),
        keep_samples: false,
    };
    let load = load::start(
        &plan,
        Arc::new(|i| load_target(i).0),
        Arc::new(|i, r: &Reply| {
            let want = load_target(i).1;
            let got = backend_in(&r.text());
            if r.status == 200 && want == "blue or base" && (got == "blue" || got == "base") {
                format!("r0 -> {got}")
            } else if r.status == 200 && got == want {
                format!("ok {want}")
            } else {
                format!("WRONG {} {got} (want {want})", r.status)
            }
        }),
    );
    // Some load on the first configuration.
    wait_requests(&load, 200, rate);
    // Each swap's phase: as many requests as half a second of the load.
    let per_swap = ((rate * 0.5) as usize).max(100);

    let counter = |n: &str| gw.envoy.counter(n);
    // Every listener of the bootstrap is on every worker before the first
    // swap (workers take them after Envoy reports ready), so that from
    // here on LISTENER_CREATED moves only by the swaps.
    let listeners = counter("listener_manager.total_listeners_active");
    wait_for(
        "the listeners on every worker",
        Duration::from_secs(10),
        || counter(LISTENER_CREATED) >= WORKERS * listeners,
    );
    assert_eq!(counter(LISTENER_CREATED), WORKERS * listeners);
    // From the first accepted swap on, no configuration has the first one's
    // blue rule: a new connection must get base for `x-release: r0` on
    // every probe until the end (the load's own keep-alive connections may
    // keep the old filter chain while Envoy drains them, so they cannot
    // tell). Started once the first swap is in effect.
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probes_done = Arc::new(AtomicUsize::new(0));
    let mut prober: Option<thread::JoinHandle<(usize, Vec<String>)>> = None;
    let mut current = 0usize; // the valid configuration in effect
    let mut applied = Vec::new();
    let mut rejected = Vec::new();
    for n in 1..=swaps {
        let before_success = counter("listener_manager.lds.update_success");
        let before_rejected = counter("listener_manager.lds.update_rejected");
        let before_config_rejected = counter("wasmcustom.graylane.config_rejected");
        let before_created = counter(LISTENER_CREATED);
        let before_in_place = counter("listener_manager.listener_in_place_updated");
        let log_before = gw.envoy.log_text().len();
        if n % 3 == 0 {
            let (json, path) = invalid(n / 3 - 1);
            gw.swap(&json);
            let took = wait_for(
                &format!("swap {n}: listener update rejected"),
                Duration::from_secs(5),
                || counter("listener_manager.lds.update_rejected") > before_rejected,
            );
            assert!(
                counter("wasmcustom.graylane.config_rejected") > before_config_rejected,
                "swap {n}: graylane did not count the rejected configuration"
            );
            let needle = format!("configuration rejected: {path}");
            wait_for(
                &format!("swap {n}: `{needle}` in the log"),
                Duration::from_secs(5),
                || gw.envoy.logged_since(log_before, &needle),
            );
            assert_eq!(
                counter("listener_manager.lds.update_success"),
                before_success
            );
            // The previous configuration keeps serving.
            assert_eq!(
                backend_of(gw.port, &[("x-release", &format!("r{current}"))]).as_deref(),
                Some("blue"),
                "swap {n}: the previous configuration no longer serves"
            );
            rejected.push((path, took));
        } else {
            let k = current + 1;
            gw.swap(&valid(k));
            let took = wait_for(
                &format!("swap {n}: configuration {k} in effect"),
                Duration::from_secs(2),
                || {
                    backend_of(gw.port, &[("x-release", &format!("r{k}"))]).as_deref()
                        == Some("blue")
                },
            );
            // That new connection went to one of the two workers, which
            // take the update one after the other: the other one may still
            // hand new connections the old configuration. Wait until both
            // have it (LISTENER_CREATED moved by WORKERS: counted once a
            // worker has taken it), so that the check below and the prober
            // cannot meet the old configuration by chance. The update is
            // in place (only the filter chain changed; counted by Envoy as
            // soon as it takes the update, before the workers do): a worker
            // swaps its listener's filter chains in one step, and has no
            // second listener that could still accept with the old ones.
            assert_eq!(
                counter("listener_manager.listener_in_place_updated"),
                before_in_place + 1,
                "swap {n}: an in-place filter chain update"
            );
            wait_for(
                &format!("swap {n}: configuration {k} on every worker"),
                Duration::from_secs(10),
                || counter(LISTENER_CREATED) >= before_created + WORKERS,
            );
            // Cannot fail by chance: this new connection is accepted after
            // both workers took configuration k (the wait above), and every
            // later configuration is rejected or has no r{current} rule.
            assert_eq!(
                backend_of(gw.port, &[("x-release", &format!("r{current}"))]).as_deref(),
                Some("base"),
                "swap {n}: the old rule still applies to new connections"
            );
            assert!(counter("listener_manager.lds.update_success") > before_success);
            current = k;
            applied.push(took);
            if prober.is_none() {
                let (port, stop, done) =
                    (gw.port, Arc::clone(&probe_stop), Arc::clone(&probes_done));
                prober = Some(thread::spawn(move || {
                    let (mut probes, mut wrong) = (0usize, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        probes += 1;
                        let got = backend_of(port, &[("x-release", "r0")]);
                        if got.as_deref() != Some("base") && wrong.len() < 10 {
                            wrong.push(format!("probe {probes}: r0 -> {got:?}"));
                        }
                        done.store(probes, Ordering::SeqCst);
                        // Pacing (a probe every 50 ms), not a wait for an
                        // event.
                        thread::sleep(Duration::from_millis(50));
                    }
                    (probes, wrong)
                }));
            }
        }
        // Let the load run on each configuration for a while: counted in
        // requests, so that a busy machine cannot shorten it.
        wait_requests(&load, load.done() + per_swap, rate);
    }
    // An invalid configuration identical to one already rejected: Envoy
    // rejects the listener update again, without asking graylane. Observed
    // from both sides: Envoy's update_rejected moves; graylane's
    // config_rejected and config_accepted (counted at once, in
    // on_configure) stay, and its log has no new `configuration` line.
    let before_rejected = counter("listener_manager.lds.update_rejected");
    let before_config_rejected = counter("wasmcustom.graylane.config_rejected");
    let before_config_accepted = counter("wasmcustom.graylane.config_accepted");
    let log_before = gw.envoy.log_text().len();
    gw.swap(&invalid(0).0);
    wait_for(
        "repeated invalid configuration rejected",
        Duration::from_secs(5),
        || counter("listener_manager.lds.update_rejected") > before_rejected,
    );
    // Past the point where a consulted graylane would have logged and
    // counted (it does both before it returns to Envoy).
    gw.envoy.settle_counters();
    let repeat_counted_by_graylane =
        counter("wasmcustom.graylane.config_rejected") > before_config_rejected;
    assert!(
        !repeat_counted_by_graylane,
        "graylane counted the repeated invalid configuration: Envoy asked it again"
    );
    assert_eq!(
        counter("wasmcustom.graylane.config_accepted"),
        before_config_accepted,
        "no VM was configured for the repeated invalid configuration"
    );
    assert!(
        !gw.envoy.logged_since(log_before, "configuration rejected")
            && !gw.envoy.logged_since(log_before, "configuration accepted"),
        "graylane logged a configuration after the repeated invalid swap:\n{}",
        gw.envoy.log_text().get(log_before..).unwrap_or_default()
    );
    assert_eq!(
        backend_of(gw.port, &[("x-release", &format!("r{current}"))]).as_deref(),
        Some("blue"),
        "after a repeated invalid swap, the previous configuration no longer serves"
    );
    assert!(!load.finished(), "the load ended before the last swap");
    // Some load on the last configuration (counted, as for every swap).
    wait_requests(&load, load.done() + per_swap, rate);
    load.stop();
    let report = load.join();
    // The prober's share, counted too: at least 10 probes (one every
    // 50 ms; normally many more have run by now).
    let probing = poll(LOAD_SLACK, Duration::from_millis(10), || match probes_done
        .load(Ordering::SeqCst)
    {
        p if p >= 10 => Ok(()),
        p => Err(format!("{p} probes")),
    });
    if let Err(last) = probing {
        panic!("the prober made only {last} in {LOAD_SLACK:?}");
    }
    probe_stop.store(true, Ordering::SeqCst);
    let (probes, wrong_probes) = prober
        .expect("a valid swap started the prober")
        .join()
        .expect("prober");
    // Cannot fail by chance: the prober started once both workers had the
    // first accepted configuration (see LISTENER_CREATED above), and no
    // later configuration has an r0 rule.
    assert!(
        wrong_probes.is_empty(),
        "the first configuration's rule still served new connections after the first swap: {wrong_probes:?}"
    );
    // Cannot fail by chance: the prober was waited for until it had made
    // 10 probes (the count checks that wait).
    assert!(probes >= 10, "only {probes} probes on new connections");

    let ms = |d: &Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    let summary = format!(
        "reload: {}; {} valid swaps in effect after {} ms; {} invalid swaps rejected after {} ms; \
         lds update_success {} update_rejected {} (in place {}), graylane config_accepted {} config_rejected {}; \
         a repeat of the first invalid configuration rejected too (graylane consulted: {}); \
         r0 on {} new connections after the first swap: base every time; r0 on the load's \
         connections: {} blue (old filter chain), {} base",
        report.summary(plan.connections),
        applied.len(),
        applied.iter().map(ms).collect::<Vec<_>>().join("/"),
        rejected.len(),
        rejected
            .iter()
            .map(|(_, d)| ms(d))
            .collect::<Vec<_>>()
            .join("/"),
        counter("listener_manager.lds.update_success"),
        counter("listener_manager.lds.update_rejected"),
        counter("listener_manager.listener_in_place_updated"),
        counter("wasmcustom.graylane.config_accepted"),
        counter("wasmcustom.graylane.config_rejected"),
        repeat_counted_by_graylane,
        probes,
        report.labels.get("r0 -> blue").copied().unwrap_or(0),
        report.labels.get("r0 -> base").copied().unwrap_or(0),
    );
    println!("{summary}");
    assert_eq!(report.failed(), 0, "{:?}\n{summary}", report.errors);
    assert!(
        report
            .labels
            .keys()
            .all(|l| l.starts_with("ok ") || l.starts_with("r0 -> ")),
        "{summary}"
    );
    // Cannot fail by chance: the phases are counted in requests (200
    // before the first swap, then `per_swap` >= 100 after each of the
    // swaps and before the end), so the load made at least
    // 200 + 100 * (swaps + 1) requests: 1300 with the default 10 swaps
    // (2950 at the default rate).
    assert!(report.requests >= 1000, "{summary}");
}
