//! `graylane rollout` against real Envoy (docs/rollout.md "Staged rollout"): a
//! gateway whose graylane filter comes by ECDS from a file, lane and base
//! backends the test can make fail or slow, steady traffic from many user
//! ids, and the real `graylane` binary driving the release.

use graylane_wasm_tests::configs::cluster;
use graylane_wasm_tests::harness::{
    self, free_port, json_string_value, poll, repo_root, scratch_dir, wasm_path, Envoy, Received,
    Server,
};
use graylane_wasm_tests::prometheus::Prometheus;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SALT: &str = "gray-rollout";

/// The latency check of every plan but the slow lane's: lane and base are
/// the same in-process backend here, so their p99s differ only by
/// scheduling noise, which on a loaded machine can pass the default 25 ms.
/// Only a difference of a second fails (the slow lane test sets its own).
const QUIET_LATENCY: &str = "  latency: { p99MaxRatio: 1.5, minDiffMs: 1000 }\n";
/// A window with fewer than minRequests lane requests (a loaded machine
/// sends fewer) extends its step; the tests that do not test the deadline
/// give a step 60 windows (`interval` is the plan's, e.g. "2.5s") instead
/// of pausing at the default 10.
fn patient_deadline(interval: &str) -> String {
    let seconds: f64 = interval.trim_end_matches('s').parse().unwrap();
    format!("deadline: {}s\n", (seconds * 60.0).ceil())
}
/// How long a test lets one `graylane rollout` run.
const ROLLOUT_LIMIT: Duration = Duration::from_secs(300);
/// minRequests of the tests' plans.
const MIN_REQUESTS: usize = 20;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The `graylane` binary (`cargo build --bin graylane`; scripts/test.sh
/// builds it), or `$GRAYLANE_BIN`.
fn graylane_bin() -> PathBuf {
    let bin = std::env::var_os("GRAYLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/graylane"));
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bin graylane` (scripts/test.sh does) or set GRAYLANE_BIN",
        bin.display()
    );
    bin
}

/// A version's backend: answers 200, or 503 to a share of its requests
/// (`failing`, in 1/10,000ths, spread evenly: request n fails when
/// ⌊n·r⌋ > ⌊(n−1)·r⌋, so 2,500 is every 4th and 150 three in 200), after
/// `delay_ms`.
struct Backend {
    server: Server,
    failing: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let failing = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (f, d) = (Arc::clone(&failing), Arc::clone(&delay_ms));
        let server = Server::start(Arc::new(move |_req: &Received| {
            let n = served.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = d.load(Ordering::SeqCst);
            if delay > 0 {
                thread::sleep(Duration::from_millis(delay));
            }
            let r = f.load(Ordering::SeqCst);
            let status = if n * r / 10_000 > (n - 1) * r / 10_000 {
                503
            } else {
                200
            };
            (
                status,
                vec![("x-backend".into(), name.into())],
                name.as_bytes().to_vec(),
            )
        }));
        Backend {
            server,
            failing,
            delay_ms,
        }
    }

    /// Fails `per_10k` of its requests from now on.
    fn fail(&self, per_10k: u64) {
        self.failing.store(per_10k, Ordering::SeqCst);
    }
}

/// One request the traffic sent: when, whose, where it went.
#[derive(Debug, Clone)]
struct Sent {
    at: f64,
    user: String,
    backend: String,
    status: u16,
}

/// Steady traffic from `users` user ids, from two client threads.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    threads: Vec<thread::JoinHandle<()>>,
    started: Instant,
    users: u64,
}

impl Traffic {
    fn start(port: u16, users: u64) -> Traffic {
        Traffic::paced(port, users, None)
    }

    /// [`Traffic::start`], each client waiting `pace` after each request
    /// (a few requests a second: a low-traffic service).
    fn paced(port: u16, users: u64, pace: Option<Duration>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..2u64)
            .map(|t| {
                let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
                thread::spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                    while !stop.load(Ordering::SeqCst) {
                        x = graylane_wasm_tests::load::mix(x.wrapping_add(1));
                        let user = format!("user-{}", x % users);
                        let at = now();
                        match harness::request(port, "GET", "/", &[("x-user-id", user.as_bytes())])
                        {
                            Ok(r) => sent.lock().unwrap().push(Sent {
                                at,
                                user,
                                backend: r.header("x-backend").unwrap_or("-").to_string(),
                                status: r.status,
                            }),
                            Err(_) => thread::sleep(Duration::from_millis(20)),
                        }
                        if let Some(p) = pace {
                            thread::sleep(p);
                        }
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            sent,
            threads,
            started: Instant::now(),
            users,
        }
    }

    /// The requests per second this machine sends now: measured over the
    /// first 400 answers (waited for, not timed).
    fn rate(&self) -> f64 {
        let answered = poll(Duration::from_secs(60), Duration::from_millis(20), || {
            let n = self.sent.lock().unwrap().len();
            if n >= 400 {
                Ok(n)
            } else {
                Err(format!("{n} answers"))
            }
        });
        let n = answered.unwrap_or_else(|e| panic!("the traffic does not flow: {e}"));
        n as f64 / self.started.elapsed().as_secs_f64()
    }

    /// An analysis window long enough that the lane's requests in it, at
    /// `percent` of this traffic, number 2 x minRequests on average, and at
    /// least `floor` seconds. A window then falls short of minRequests
    /// (and is only insufficient data, extending the step) with
    /// probability about 2e-4 (Poisson, mean 40, below 20), whatever the
    /// machine's speed: the tests wait for the requests they need.
    fn interval_for(&self, percent: f64, floor: f64) -> String {
        let share = population_share(self.users, percent) / 100.0;
        let rate = self.rate();
        let seconds = (2.0 * MIN_REQUESTS as f64 / (share * rate)).max(floor);
        let interval = format!("{:.1}s", (seconds * 10.0).ceil() / 10.0);
        eprintln!(
            "traffic: {rate:.0} requests/s; {percent} % admits {:.2} % of them: windows of {interval}",
            share * 100.0
        );
        interval
    }

    fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let sent = self.sent.lock().unwrap().clone();
        sent
    }
}

/// The gateway on ECDS, its backends and the plan's files.
struct Lab {
    envoy: Envoy,
    gateway: u16,
    dir: PathBuf,
    ecds: PathBuf,
    lane: Backend,
    /// Lane `android`'s backend, in a lab of two rolled-out lanes.
    android: Option<Backend>,
    /// Base's backend.
    base: Backend,
}

impl Drop for Lab {
    /// A failing test keeps the plan, state, report and ECDS file.
    fn drop(&mut self) {
        harness::keep_evidence(&self.dir, "rollout lab");
    }
}

fn plugin_config(percent: f64) -> String {
    serde_json::json!({
        "incoming": "ignore",
        "lanes": [
            { "name": "gray", "priority": 10,
              "split": { "key": { "header": "x-user-id" }, "percent": percent, "salt": SALT,
                         "onMissingKey": "exclude" } },
            { "name": "blue", "priority": 20,
              "match": { "header": "x-release", "exact": "blue" } }
        ]
    })
    .to_string()
}

/// The salt of lane `android` (another population than gray's).
const ANDROID_SALT: &str = "android-rollout";

/// The two-lane configuration: gray as in [`plugin_config`], blue, and
/// `android`, split on the same user ids with its own salt, below gray.
fn two_lane_config() -> String {
    serde_json::json!({
        "incoming": "ignore",
        "lanes": [
            { "name": "gray", "priority": 10,
              "split": { "key": { "header": "x-user-id" }, "percent": 0, "salt": SALT,
                         "onMissingKey": "exclude" } },
            { "name": "blue", "priority": 20,
              "match": { "header": "x-release", "exact": "blue" } },
            { "name": "android", "priority": 30,
              "split": { "key": { "header": "x-user-id" }, "percent": 0, "salt": ANDROID_SALT,
                         "onMissingKey": "exclude" } }
        ]
    })
    .to_string()
}

fn ecds_file(plugin_json: &str) -> String {
    format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: graylane\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n    config:\n      name: graylane\n      root_id: graylane\n      failure_policy: FAIL_RELOAD\n      vm_config:\n        runtime: envoy.wasm.runtime.v8\n        code: {{ local: {{ filename: \"{}\" }} }}\n      configuration:\n        \"@type\": type.googleapis.com/google.protobuf.StringValue\n        value: {}\n",
        wasm_path().display(),
        json_string_value(plugin_json)
    )
}

impl Lab {
    fn start() -> Lab {
        Lab::start_with(&plugin_config(0.0), false)
    }

    /// A lab whose configuration has lanes gray and android, both split.
    fn start_two_lanes() -> Lab {
        Lab::start_with(&two_lane_config(), true)
    }

    fn start_with(config: &str, android: bool) -> Lab {
        let dir = scratch_dir("rollout");
        std::fs::write(dir.join("config.json"), config).unwrap();
        let ecds = dir.join("filter.yaml");
        std::fs::write(&ecds, ecds_file(config)).unwrap();
        let (lane, base) = (Backend::start("gray"), Backend::start("base"));
        let android = android.then(|| Backend::start("android"));
        let android_route = if android.is_some() {
            "\n              - match: { prefix: \"/\", headers: [ { name: x-graylane, string_match: { exact: android } } ] }\n                route: { cluster: backend-android }"
        } else {
            ""
        };
        let android_cluster = android
            .as_ref()
            .map(|b| cluster("backend-android", b.server.port))
            .unwrap_or_default();
        let gateway = free_port();
        let yaml = format!(
            r#"node: {{ id: rollout, cluster: rollout }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{{{ADMIN}}}} }} }}
stats_flush_interval: 1s
stats_config:
  stats_tags:
  - {{ tag_name: source, regex: '^wasmcustom\.graylane\.requests(\.source\.([a-z]+))\.lane\.' }}
  - {{ tag_name: lane, regex: '^wasmcustom\.graylane\.requests\.source\.[a-z]+(\.lane\.(.+))$' }}
static_resources:
  listeners:
  - name: gateway
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {gateway} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          http_filters:
          - name: graylane
            config_discovery:
              config_source:
                path_config_source:
                  path: "{ecds}"
                  watched_directory: {{ path: "{dir}" }}
                initial_fetch_timeout: 10s
              type_urls: [ type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm ]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: gateway
              domains: ["*"]
              routes:
              - match: {{ prefix: "/", headers: [ {{ name: x-graylane, string_match: {{ exact: gray }} }} ] }}
                route: {{ cluster: backend-gray }}{android_route}
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend-base }}
  clusters:{}{}{android_cluster}
"#,
            cluster("backend-gray", lane.server.port),
            cluster("backend-base", base.server.port),
            ecds = ecds.display(),
            dir = dir.display(),
        );
        let envoy = Envoy::start(&yaml, &[]);
        Lab {
            envoy,
            gateway,
            dir,
            ecds,
            lane,
            android,
            base,
        }
    }

    fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.envoy.admin)
    }

    /// Writes a plan beside the config; `extra` is appended YAML.
    fn plan(&self, steps: &str, interval: &str, extra: &str) -> PathBuf {
        self.plan_as("plan.yaml", steps, interval, extra)
    }

    /// [`Lab::plan`] into a file of another name.
    fn plan_as(&self, name: &str, steps: &str, interval: &str, extra: &str) -> PathBuf {
        let source = format!("{{ envoy: [\"{}\"] }}", self.admin_url());
        self.plan_with(name, steps, interval, &source, extra)
    }

    /// A plan with its own `analysis.source`; `extra` is appended YAML
    /// (indented: under `analysis`). Unless `extra` sets them, the plan
    /// has [`QUIET_LATENCY`] and a [`patient_deadline`].
    fn plan_with(
        &self,
        name: &str,
        steps: &str,
        interval: &str,
        source: &str,
        extra: &str,
    ) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(
            &p,
            format!(
                "config: config.json\nlane: gray\ndeliver:\n- ecds: filter.yaml\nsteps: {steps}\ninterval: {interval}\nminRequests: 20\nfailureThreshold: 2\nanalysis:\n  source: {source}\n{}{extra}{}",
                if extra.contains("latency:") { "" } else { QUIET_LATENCY },
                if extra.contains("deadline:") {
                    String::new()
                } else {
                    patient_deadline(interval)
                },
            ),
        )
        .unwrap();
        p
    }

    /// The percent of lane gray in the ECDS file now (the file must hold a
    /// complete configuration the filter accepts).
    fn ecds_percent(&self) -> f64 {
        percent_in_ecds(&std::fs::read_to_string(&self.ecds).unwrap())
    }
}

fn percent_in_ecds(text: &str) -> f64 {
    let doc: Value = serde_norway::from_str(text).expect("ECDS file is YAML");
    let value = doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("plugin configuration value");
    graylane::config::Config::from_json(value.as_bytes())
        .expect("a configuration the filter accepts");
    let config: Value = serde_json::from_str(value).unwrap();
    config["lanes"][0]["split"]["percent"].as_f64().unwrap()
}

/// Prints every window's verdict with its checks' reasons, and how long
/// the rollback (if any) took after the first failed window ended.
fn print_windows(what: &str, out: &Outcome) {
    for w in out.windows() {
        eprintln!(
            "{what}: window at {} %: {} -> {}",
            w["percent"], w["verdict"], w["action"]
        );
        for c in w["checks"].as_array().into_iter().flatten() {
            eprintln!("    {} {}: {}", c["name"], c["verdict"], c["reason"]);
        }
    }
    let first_bad_end = out
        .windows()
        .iter()
        .find(|w| w["verdict"] == "fail")
        .and_then(|w| w["end"].as_f64());
    let rollback = out
        .of("deliver")
        .iter()
        .find(|d| d["why"] == "rollback")
        .and_then(|d| d["time"].as_f64());
    if let (Some(bad), Some(back)) = (first_bad_end, rollback) {
        eprintln!(
            "{what}: rolled back {:.1} s after the first failed window ended",
            back - bad
        );
    }
}

/// A finished `graylane rollout` run.
struct Outcome {
    code: i32,
    events: Vec<Value>,
    stderr: String,
}

impl Outcome {
    fn of(&self, event: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }

    fn windows(&self) -> Vec<&Value> {
        self.of("window")
    }

    fn delivered(&self) -> Vec<f64> {
        self.of("deliver")
            .iter()
            .map(|e| e["percent"].as_f64().unwrap())
            .collect()
    }

    fn dump(&self) -> String {
        format!(
            "exit {}\nstderr:\n{}\nevents:\n{}",
            self.code,
            self.stderr,
            self.events
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

fn rollout(args: &[&str], timeout: Duration) -> Outcome {
    rollout_env(args, timeout, &[])
}

/// [`rollout`] with environment variables set (the crash switch).
fn rollout_env(args: &[&str], timeout: Duration, env: &[(&str, &str)]) -> Outcome {
    let mut child = Command::new(graylane_bin())
        .arg("rollout")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run graylane");
    // Read both pipes as the run goes, so a long run never blocks on them.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            panic!("graylane rollout {args:?} still running after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let events = String::from_utf8_lossy(&stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}")))
        .collect();
    Outcome {
        code: status.code().unwrap_or(-1),
        events,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Waits until the rollout's state file satisfies `ok` (what it waits for
/// is `what`); fails after [`ROLLOUT_LIMIT`] with the last state seen.
fn wait_state(file: &std::path::Path, what: &str, ok: impl Fn(&Value) -> bool) {
    let reached = poll(ROLLOUT_LIMIT, Duration::from_millis(50), || {
        let s: Value = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| "no state yet".to_string())?;
        if ok(&s) {
            Ok(())
        } else {
            Err(format!(
                "state: step {}, {} windows",
                s["step"],
                s["windows"].as_array().map_or(0, Vec::len)
            ))
        }
    });
    assert!(reached.is_ok(), "{what}: {reached:?}");
}

/// How long after its `deliver` event the previous percent may still
/// decide requests (Envoy swaps the filter's configuration when it sees
/// the rename; a loaded machine may take a moment).
const SWAP: f64 = 3.0;

/// The percents delivered, in order, each with the span of send times in
/// which it may decide a request: from the decision that led to it (the
/// last `window` or `promote` event before its `deliver` event, or the
/// rollout's first event for the first step), printed before any file is
/// written, so however slow the writes and syncs, and across a kill and a
/// `resume`, the rename comes after it; to [`SWAP`] after the next
/// delivery's event. The configuration before the first delivery holds 0 %.
fn in_force_spans(out: &Outcome) -> Vec<(f64, f64, f64)> {
    let time = |e: &Value| e["time"].as_f64().unwrap();
    // (written no earlier than, deliver event, percent)
    let mut deliveries: Vec<(f64, f64, f64)> = vec![(f64::MIN, f64::MIN, 0.0)];
    let mut decided = out.events.first().map_or(f64::MIN, time);
    for e in &out.events {
        if e["event"] == "window" || e["event"] == "promote" {
            decided = time(e);
        } else if e["event"] == "deliver" {
            deliveries.push((decided, time(e), e["percent"].as_f64().unwrap()));
        }
    }
    deliveries
        .iter()
        .enumerate()
        .map(|(i, (from, _, p))| {
            let until = deliveries.get(i + 1).map_or(f64::MAX, |d| d.1 + SWAP);
            (*p, *from, until)
        })
        .collect()
}

/// The bucket rule at `percent`: where user `user` goes.
fn rule(user: &str, percent: f64) -> &'static str {
    let bucket = graylane::engine::split::bucket(SALT, user.as_bytes());
    if f64::from(bucket) < percent * 100.0 {
        "gray"
    } else {
        "base"
    }
}

/// Every request went where the bucket rule sends its user at one of the
/// percents that may have been in force when it was sent
/// ([`in_force_spans`]). Exact: no share, no sample, no chance; a request
/// near a delivery may follow either side of it.
fn assert_every_request_follows_the_rule(out: &Outcome, sent: &[Sent]) {
    let spans = in_force_spans(out);
    for s in sent.iter().filter(|s| s.status != 0) {
        let candidates: Vec<f64> = spans
            .iter()
            .filter(|(_, from, until)| s.at >= *from && s.at < *until)
            .map(|(p, _, _)| *p)
            .collect();
        assert!(
            candidates.iter().any(|p| rule(&s.user, *p) == s.backend),
            "{} (bucket {}) sent at {:.2} went to {}; the percents in force then: {candidates:?}\n{}",
            s.user,
            graylane::engine::split::bucket(SALT, s.user.as_bytes()),
            s.at,
            s.backend,
            out.dump()
        );
    }
}

/// Sticky: a user once sent to gray is sent to gray ever after (the
/// percent only grows). Only around a delivery may an Envoy worker that has
/// not swapped yet still send them to base: within [`SWAP`] of it.
fn assert_sticky(sent: &[Sent]) {
    let mut by_time: Vec<&Sent> = sent.iter().collect();
    by_time.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut admitted_at: std::collections::BTreeMap<&str, f64> = Default::default();
    for s in by_time {
        if let Some(first) = admitted_at.get(s.user.as_str()) {
            assert!(
                s.backend == "gray" || s.at < first + SWAP,
                "{} was admitted at {first:.2} and sent to {} at {:.2}: it left the lane",
                s.user,
                s.backend,
                s.at
            );
        } else if s.backend == "gray" {
            admitted_at.insert(&s.user, s.at);
        }
    }
}

/// After the rollback's `deliver` event (and [`SWAP`]), no request went
/// to gray.
fn assert_none_to_gray_after(rollback: &Value, sent: &[Sent]) {
    let at = rollback["time"].as_f64().unwrap();
    let late = sent
        .iter()
        .filter(|s| s.at > at + SWAP && s.backend == "gray")
        .count();
    assert_eq!(
        late, 0,
        "requests reached gray after the rollback {rollback}"
    );
}

/// The requests sent while `percent` (the `i`-th delivery) may have been
/// in force.
fn sent_during<'s>(out: &Outcome, sent: &'s [Sent], i: usize) -> (f64, Vec<&'s Sent>) {
    let (p, from, until) = in_force_spans(out)[i + 1];
    (
        p,
        sent.iter()
            .filter(|s| s.at >= from && s.at < until)
            .collect(),
    )
}

/// The users admitted to gray among those seen (`Sent`s of one step).
fn admitted(sent: &[&Sent]) -> (BTreeSet<String>, BTreeSet<String>) {
    let seen: BTreeSet<String> = sent.iter().map(|s| s.user.clone()).collect();
    let gray: BTreeSet<String> = sent
        .iter()
        .filter(|s| s.backend == "gray")
        .map(|s| s.user.clone())
        .collect();
    (seen, gray)
}

/// The share of the traffic's population (`user-0 .. user-{users-1}`)
/// that the bucket rule admits at `percent`: fixed by the ids and the
/// salt, so comparing it with the percent guards the hash's spread without
/// any chance involved.
fn population_share(users: u64, percent: f64) -> f64 {
    let admitted = (0..users)
        .filter(|i| rule(&format!("user-{i}"), percent) == "gray")
        .count();
    admitted as f64 * 100.0 / users as f64
}

/// Healthy lane: every step is taken in order, each admits its share of
/// user ids (the exact bucket rule, checked per request), the admitted set
/// only grows, and the rollout ends promoted with the ECDS file at 100.
#[test]
fn healthy_lane_is_promoted_step_by_step_and_sticky() {
    let lab = Lab::start();
    let traffic = Traffic::start(lab.gateway, 5000);
    let plan = lab.plan("[5, 25, 50, 100]", &traffic.interval_for(5.0, 2.0), "");
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let sent = traffic.stop();
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.delivered(),
        vec![5.0, 25.0, 50.0, 100.0],
        "{}",
        out.dump()
    );
    assert_eq!(lab.ecds_percent(), 100.0);
    let end = out.of("end");
    assert_eq!(end.len(), 1);
    assert_eq!(end[0]["outcome"], "promoted");
    assert_every_request_follows_the_rule(&out, &sent);
    for i in 0..out.delivered().len() {
        let (percent, during) = sent_during(&out, &sent, i);
        let (seen, gray) = admitted(&during);
        eprintln!(
            "step {percent} %: {} of {} users admitted ({:.1} %; {:.2} % of the 5,000 ids), {} requests",
            gray.len(),
            seen.len(),
            gray.len() as f64 * 100.0 / seen.len().max(1) as f64,
            population_share(5000, percent),
            during.len()
        );
        // Not vacuous: the step passed a window of at least minRequests
        // lane requests, all sent while this percent was in force.
        let lane_requests = during.iter().filter(|s| s.backend == "gray").count();
        assert!(
            lane_requests >= MIN_REQUESTS,
            "{percent} %: {lane_requests} lane requests seen in the step"
        );
        // The population's share: deterministic (fixed ids and salt).
        let share = population_share(5000, percent);
        assert!(
            (share - percent).abs() <= 1.0,
            "{percent} %: the bucket rule admits {share:.2} % of the 5,000 ids"
        );
    }
    assert_sticky(&sent);
    print_windows("healthy lane", &out);
    for w in out.windows() {
        eprintln!(
            "window step {} {} %: {} -> {}; lane {} req {} 5xx p99 {}; base {} req {} 5xx p99 {}",
            w["step"],
            w["percent"],
            w["verdict"],
            w["action"],
            w["lane"]["requests"],
            w["lane"]["errors"],
            w["lane"]["p99Ms"],
            w["base"]["requests"],
            w["base"]["errors"],
            w["base"]["p99Ms"]
        );
        assert_ne!(w["verdict"], "fail", "{w}");
    }
}

/// Failing lane: every 4th of gray's answers is a 503 (25 %, against none
/// from base). The step's evidence crosses the fail boundary as soon as it
/// holds minRequests (20) lane requests (their lower bound is above 2 %
/// from 40 requests, base's upper bound under 1.1 % from its ~760), and
/// stays past it, so the rollout rolls back at the failureThreshold-th
/// (2nd) window end past it, at the first step, and no request reaches
/// gray but those the bucket rule admits at the percent in force.
#[test]
fn failing_lane_is_rolled_back() {
    let lab = Lab::start();
    lab.lane.fail(2500);
    let traffic = Traffic::start(lab.gateway, 5000);
    let plan = lab.plan("[5, 25, 50, 100]", &traffic.interval_for(5.0, 2.0), "");
    let t0 = now();
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let elapsed = now() - t0;
    let sent = traffic.stop();
    print_windows("failing lane", &out);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 0.0);
    assert_eq!(out.delivered(), vec![5.0, 0.0], "{}", out.dump());
    let windows = out.windows();
    let judged: Vec<&&Value> = windows
        .iter()
        .filter(|w| w["verdict"] != "insufficient")
        .collect();
    let verdicts: Vec<&str> = judged
        .iter()
        .map(|w| w["verdict"].as_str().unwrap())
        .collect();
    assert!(
        verdicts.ends_with(&["fail", "fail"])
            && verdicts[..verdicts.len() - 2]
                .iter()
                .all(|v| *v == "continue"),
        "the evidence crosses the fail boundary and stays: {verdicts:?}\n{}",
        out.dump()
    );
    assert_eq!(windows.last().unwrap()["action"], "rollback");
    for w in judged.iter().filter(|w| w["verdict"] == "fail") {
        let check = check_of(w, "errorRate");
        assert_eq!(check["verdict"], "fail", "{w}");
    }
    let decisive = decisive_check(&out, "errorRate");
    assert!(decisive["lower"].as_f64().unwrap() > 1.0, "{decisive}");
    assert!(
        decisive["reason"]
            .as_str()
            .unwrap()
            .ends_with("shown above (fail)"),
        "{decisive}"
    );
    // What reached the failing version: only the users the bucket rule
    // admits at the percent in force, and nobody after the rollback.
    assert_every_request_follows_the_rule(&out, &sent);
    let reached: usize = sent.iter().filter(|s| s.backend == "gray").count();
    let failed: usize = sent.iter().filter(|s| s.status == 503).count();
    eprintln!(
        "failing lane: {} requests in {elapsed:.1} s; {reached} reached gray, {failed} failed; \
         rolled back after {} windows ({} judged)",
        sent.len(),
        windows.len(),
        judged.len()
    );
    assert_none_to_gray_after(out.of("deliver").last().unwrap(), &sent);
}

/// Slow lane: 100 ms more on gray. The latency check (p99 at most 1.5 x
/// base's and 25 ms above it) rolls it back: base answers in about 1 ms,
/// so the limit lies in Envoy's bucket ending at 50 ms at most, and every
/// lane request (100 ms or more) is above it: the share of slow lane
/// requests is shown above 1 % as soon as the step has minRequests.
#[test]
fn slow_lane_is_rolled_back_by_latency() {
    let lab = Lab::start();
    lab.lane.delay_ms.store(100, Ordering::SeqCst);
    let traffic = Traffic::start(lab.gateway, 5000);
    // Measured before the lane slows the clients down; at least 4 s, as
    // each lane request then holds a client thread for 100 ms.
    let interval = traffic.interval_for(10.0, 4.0);
    let plan = lab.plan(
        "[10, 50, 100]",
        &interval,
        "  latency: { p99MaxRatio: 1.5, minDiffMs: 25 }\n",
    );
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    drop(traffic.stop());
    print_windows("slow lane", &out);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 0.0);
    let failed: Vec<&Value> = out
        .windows()
        .into_iter()
        .filter(|w| w["verdict"] == "fail")
        .collect();
    assert!(!failed.is_empty());
    for w in &failed {
        let latency = check_of(w, "latency");
        assert_eq!(latency["verdict"], "fail", "{w}");
        // Every lane request took 100 ms or more: the p99, interpolated in
        // Envoy's histogram bucket (50, 100] ms or above, is above 50 ms.
        assert!(latency["laneValue"].as_f64().unwrap() > 50.0, "{latency}");
        eprintln!("slow lane window: {}", latency["reason"]);
    }
    let errors = check_of(failed[0], "errorRate");
    assert_ne!(
        errors["verdict"], "fail",
        "the error check is not what failed"
    );
    let decisive = decisive_check(&out, "latency");
    assert_eq!(decisive["verdict"], "fail", "{decisive}");
    assert!(
        decisive["reason"]
            .as_str()
            .unwrap()
            .ends_with("shown above (fail)"),
        "{decisive}"
    );
}

/// No traffic: never promoted, never rolled back; paused at the deadline
/// with exit 3, saying the data was insufficient.
#[test]
fn no_traffic_pauses_at_the_deadline() {
    let lab = Lab::start();
    let plan = lab.plan("[5, 100]", "1s", "deadline: 3s\n");
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    assert_eq!(out.code, 3, "{}", out.dump());
    assert_eq!(out.delivered(), vec![5.0], "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 5.0);
    let windows = out.windows();
    assert_eq!(windows.len(), 3, "{}", out.dump());
    for w in &windows {
        assert_eq!(w["verdict"], "insufficient", "{w}");
    }
    let paused = out.of("paused");
    assert_eq!(paused.len(), 1);
    let message = paused[0]["message"].as_str().unwrap();
    assert!(message.contains("insufficient data"), "{message}");
    // Too little traffic is the same: a trickle below minRequests.
    let lab2 = Lab::start();
    let plan = lab2.plan("[5, 100]", "1s", "deadline: 3s\n");
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let (stop, port) = (Arc::clone(&stop), lab2.gateway);
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let _ = harness::request(
                    port,
                    "GET",
                    "/",
                    &[("x-user-id", format!("u{i}").as_bytes())],
                );
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    stop.store(true, Ordering::SeqCst);
    let _ = trickle.join();
    assert_eq!(out.code, 3, "{}", out.dump());
    assert_eq!(lab2.ecds_percent(), 5.0);
    assert!(
        out.windows().iter().all(|w| w["verdict"] == "insufficient"),
        "{}",
        out.dump()
    );
    assert!(
        out.windows()
            .iter()
            .any(|w| w["base"]["requests"].as_u64().unwrap() > 0),
        "the trickle reached base: {}",
        out.dump()
    );
}

/// SIGKILL during step 2: the ECDS file holds a complete configuration,
/// `resume` goes on at step 2, and every step is delivered once.
#[test]
fn killed_rollout_resumes_at_its_step() {
    let lab = Lab::start();
    let traffic = Traffic::start(lab.gateway, 5000);
    let plan = lab.plan("[5, 25, 50, 100]", &traffic.interval_for(5.0, 2.0), "");
    let mut child = Command::new(graylane_bin())
        .args(["rollout", plan.to_str().unwrap(), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state_file = lab.dir.join("plan.yaml.state.json");
    // Killed once step 2's delivery is saved: during that step, or a
    // later one if this thread was slow to see it; what is checked is
    // read from the state the kill left.
    wait_state(&state_file, "step 2", |s| s["step"] == 1);
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let killed: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let step = killed["step"].as_u64().unwrap();
    assert!(step < 3, "killed before the last step was judged: {killed}");
    assert_eq!(
        lab.ecds_percent(),
        [5.0, 25.0, 50.0][step as usize],
        "a complete, valid config at the step in force"
    );
    let out = rollout(&["resume", plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    drop(traffic.stop());
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.of("resume").len(), 1);
    assert_eq!(out.of("resume")[0]["step"], step, "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 100.0);
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let steps: Vec<u64> = state["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["why"] == "step")
        .map(|d| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 1, 2, 3], "{state}");
    let report = std::fs::read_to_string(lab.dir.join("plan.yaml.report.md")).unwrap();
    for step in [
        "| 1 | 5 | step |",
        "| 2 | 25 | step |",
        "| 3 | 50 | step |",
        "| 4 | 100 | step |",
    ] {
        assert_eq!(report.matches(step).count(), 1, "{step} in:\n{report}");
    }
}

/// Bad plans exit 2 before anything is delivered: the ECDS file stays
/// byte-identical.
#[test]
fn bad_plans_exit_2_and_deliver_nothing() {
    let lab = Lab::start();
    let before = std::fs::read(&lab.ecds).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    // A valid plan with one thing replaced.
    let edited = |name: &str, from: &str, to: &str| {
        let p = lab.plan_as(name, "[5, 100]", "1s", "");
        let t = std::fs::read_to_string(&p).unwrap().replace(from, to);
        std::fs::write(&p, t).unwrap();
        p.display().to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown field",
            lab.plan_as("field.yaml", "[5, 100]", "1s", "minRequets: 3\n")
                .display()
                .to_string(),
            "minRequets",
        ),
        (
            "steps not increasing",
            lab.plan_as("steps.yaml", "[25, 5, 100]", "1s", "")
                .display()
                .to_string(),
            "steps[1]",
        ),
        (
            "unknown lane",
            edited("lane.yaml", "lane: gray", "lane: grey"),
            "grey",
        ),
        (
            "lane without a percent split",
            edited("split.yaml", "lane: gray", "lane: blue"),
            "has no split",
        ),
        (
            "unreachable metrics source",
            edited("source.yaml", &lab.admin_url(), &dead),
            "unreachable",
        ),
    ];
    for (what, plan, says) in cases {
        let out = rollout(&[&plan, "--json"], Duration::from_secs(30));
        assert_eq!(out.code, 2, "{what}: {}", out.dump());
        let said = out.dump();
        assert!(
            said.contains(says),
            "{what}: the error names {says}: {said}"
        );
        assert_eq!(
            std::fs::read(&lab.ecds).unwrap(),
            before,
            "{what}: ECDS file changed"
        );
        assert!(out.of("deliver").is_empty(), "{what}");
        assert!(
            !PathBuf::from(format!("{plan}.state.json")).exists(),
            "{what}: no state"
        );
    }
}

/// The Prometheus source: a healthy rollout read through a real
/// Prometheus's HTTP API, with one `queries` check (the lane really gets
/// traffic), is promoted like the embedded source's, on numbers that match
/// the traffic sent.
#[test]
fn healthy_rollout_through_prometheus() {
    let lab = Lab::start();
    let prom = Prometheus::start(&[("gateway", lab.envoy.admin)]);
    let traffic = Traffic::start(lab.gateway, 5000);
    let scraped = poll(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match prom
            .query("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend-base\"} > 0")
        {
            Ok(r) if !r.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(
        scraped.is_ok(),
        "Prometheus never scraped the gateway: {scraped:?}"
    );
    let source = format!("{{ prometheus: \"http://127.0.0.1:{}\" }}", prom.port);
    let queries = "  queries:\n  - name: lane-traffic\n    query: 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend-$lane\"}[5s]))'\n    min: 1\n";
    let interval = traffic.interval_for(10.0, 3.0);
    let plan = lab.plan_with("prom.yaml", "[10, 50, 100]", &interval, &source, queries);
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let sent = traffic.stop();
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.delivered(), vec![10.0, 50.0, 100.0], "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 100.0);
    let windows = out.windows();
    let judged: u64 = windows
        .iter()
        .map(|w| w["lane"]["requests"].as_u64().unwrap() + w["base"]["requests"].as_u64().unwrap())
        .sum();
    eprintln!(
        "Prometheus source: {} windows judged {judged} requests of {} sent",
        windows.len(),
        sent.len()
    );
    assert!(
        judged > 0 && judged as usize <= sent.len(),
        "{judged} of {}",
        sent.len()
    );
    for w in &windows {
        assert_ne!(w["verdict"], "fail", "{w}");
        let q = check_of(w, "lane-traffic");
        assert_ne!(q["verdict"], "fail", "{q}");
    }
    assert!(
        windows
            .iter()
            .any(|w| check_of(w, "lane-traffic")["verdict"] == "pass"),
        "the query check passed at least once: {}",
        out.dump()
    );
}

/// The manifest targets and a manual step. The rollout also writes an Istio
/// `WasmPlugin` and an Envoy Gateway `EnvoyExtensionPolicy`, each with an
/// `apply` command (here: one that keeps a copy of every manifest it is
/// given). It pauses after the manual step's analysis (exit 3) until
/// `promote`. Then, for every manifest applied, its plugin configuration as
/// Istio and Envoy Gateway hand it to Envoy (`google.protobuf.Struct` as
/// JSON; `apiextensionsv1.JSON`), written into the gateway's ECDS file the
/// way istio-agent does, decides every probe user id as the ECDS file of the
/// same step did.
#[test]
fn manifests_follow_the_ecds_file_and_a_manual_step_waits_for_promote() {
    use graylane_wasm_tests::manifests::{apiextensions_json, jsonpb_struct_json};
    let lab = Lab::start();
    let traffic = Traffic::start(lab.gateway, 3000);
    let applied = lab.dir.join("applied");
    std::fs::create_dir_all(&applied).unwrap();
    // The committed manifests, without their plugin configuration: the
    // first delivery writes the plan's in (docs/rollout.md "Several rollouts, one
    // gateway").
    let without_config = |from: &str, to: &str, pointer: &str| {
        let text = std::fs::read_to_string(repo_root().join(from)).unwrap();
        let mut doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(key)
            .unwrap_or_else(|| panic!("{from} has {pointer}"));
        std::fs::write(lab.dir.join(to), serde_norway::to_string(&doc).unwrap()).unwrap();
    };
    without_config(
        "envoy/istio/gateway-wasmplugin.yaml",
        "wasmplugin.yaml",
        "/spec/pluginConfig",
    );
    without_config(
        "envoy/envoy-gateway/policy.yaml",
        "policy.yaml",
        "/spec/wasm/0/config",
    );
    let keep = |kind: &str| {
        format!(
            "[sh, -c, 'cat > {}/{kind}-$(date +%s%N).yaml']",
            applied.display()
        )
    };
    let interval = traffic.interval_for(10.0, 1.0);
    let plan = lab.dir.join("manual.yaml");
    std::fs::write(
        &plan,
        format!(
            "config: config.json\nlane: gray\ndeliver:\n- ecds: filter.yaml\n- {{ wasmPlugin: wasmplugin.yaml, name: graylane-edge, apply: {} }}\n- {{ envoyExtensionPolicy: policy.yaml, wasm: graylane, apply: {} }}\nsteps: [10, {{ percent: 50, pause: true }}, 100]\ninterval: {interval}\nminRequests: 20\nanalysis:\n  source: {{ envoy: [\"{}\"] }}\n{QUIET_LATENCY}{}",
            keep("wasmplugin"),
            keep("policy"),
            lab.admin_url(),
            patient_deadline(&interval),
        ),
    )
    .unwrap();
    let first = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    assert_eq!(first.code, 3, "{}", first.dump());
    assert_eq!(first.delivered(), vec![10.0, 50.0], "{}", first.dump());
    assert_eq!(lab.ecds_percent(), 50.0);
    let status = rollout(
        &["status", plan.to_str().unwrap(), "--json"],
        Duration::from_secs(30),
    );
    // `status` exits 0 whatever the state; the state is in its output.
    assert_eq!(status.code, 0, "{}", status.dump());
    assert_eq!(status.events[0]["status"], "paused", "{}", status.dump());
    assert_eq!(status.events[0]["step"], 1, "{}", status.dump());
    assert_eq!(status.events[0]["driven"], false, "{}", status.dump());
    let again = rollout(
        &["resume", plan.to_str().unwrap(), "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(again.code, 3, "still waiting for promote: {}", again.dump());
    let promoted = rollout(
        &["promote", plan.to_str().unwrap(), "--json"],
        ROLLOUT_LIMIT,
    );
    drop(traffic.stop());
    assert_eq!(promoted.code, 0, "{}", promoted.dump());
    assert_eq!(promoted.of("promote").len(), 1, "{}", promoted.dump());
    assert_eq!(lab.ecds_percent(), 100.0);

    // Every manifest applied, in order, carries the percent of its step.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&applied)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let percents = |kind: &str| -> Vec<(f64, String)> {
        files
            .iter()
            .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(kind))
            .map(|f| {
                let doc: serde_norway::Value =
                    serde_norway::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
                let json = if kind == "wasmplugin" {
                    assert_eq!(doc["kind"], "WasmPlugin");
                    jsonpb_struct_json(&doc["spec"]["pluginConfig"], "spec.pluginConfig")
                } else {
                    assert_eq!(doc["kind"], "EnvoyExtensionPolicy");
                    apiextensions_json(&doc["spec"]["wasm"][0]["config"], "spec.wasm[0].config")
                };
                let v: Value = serde_json::from_str(&json).unwrap();
                (v["lanes"][0]["split"]["percent"].as_f64().unwrap(), json)
            })
            .collect()
    };
    let (wasmplugins, policies) = (percents("wasmplugin"), percents("policy"));
    let steps: Vec<f64> = wasmplugins.iter().map(|p| p.0).collect();
    // Each step applied once: `promote`'s resume finds nothing pending and
    // goes on to the next step.
    assert_eq!(steps, vec![10.0, 50.0, 100.0], "{files:?}");
    assert_eq!(
        policies.iter().map(|p| p.0).collect::<Vec<_>>(),
        steps,
        "{files:?}"
    );
    // In Envoy: each manifest's configuration decides like the step's.
    for ((percent, wp_json), (_, eep_json)) in wasmplugins.iter().zip(&policies) {
        for json in [wp_json, eep_json] {
            let tmp = lab.dir.join(".filter.yaml.parity");
            std::fs::write(&tmp, ecds_file(json)).unwrap();
            std::fs::rename(&tmp, &lab.ecds).unwrap();
            let probe = |user: &str| {
                harness::request(lab.gateway, "GET", "/", &[("x-user-id", user.as_bytes())])
                    .map(|r| r.header("x-backend").unwrap_or("-").to_string())
                    .unwrap_or_default()
            };
            let expected = |user: &str| {
                let b = graylane::engine::split::bucket(SALT, user.as_bytes());
                if f64::from(b) < percent * 100.0 {
                    "gray"
                } else {
                    "base"
                }
            };
            let users: Vec<String> = (0..200).map(|i| format!("probe-{i}")).collect();
            let settled = poll(Duration::from_secs(30), Duration::from_millis(100), || {
                let wrong: Vec<&String> =
                    users.iter().filter(|u| probe(u) != expected(u)).collect();
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of 200 probes decided otherwise at {percent} %",
                        wrong.len()
                    ))
                }
            });
            assert!(settled.is_ok(), "{settled:?}: {json}");
        }
    }
}

/// `abort` during a running rollout: the lane goes to 0 % at once, and
/// the running rollout stops with exit 1.
#[test]
fn abort_rolls_a_running_rollout_back() {
    let lab = Lab::start();
    let traffic = Traffic::start(lab.gateway, 3000);
    let plan = lab.plan("[5, 25, 50, 100]", &traffic.interval_for(5.0, 2.0), "");
    let plan_arg = plan.to_str().unwrap().to_string();
    let running = thread::spawn(move || rollout(&[&plan_arg, "--json"], ROLLOUT_LIMIT));
    let state_file = lab.dir.join("plan.yaml.state.json");
    wait_state(&state_file, "step 2", |s| s["step"] == 1);
    let aborted = rollout(
        &["abort", plan.to_str().unwrap(), "--json"],
        Duration::from_secs(30),
    );
    // `abort` exits 0 once the lane is at 0 %.
    assert_eq!(aborted.code, 0, "{}", aborted.dump());
    assert_eq!(lab.ecds_percent(), 0.0);
    let out = running.join().unwrap();
    drop(traffic.stop());
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(out.of("end")[0]["outcome"], "aborted", "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 0.0, "nothing delivered after the abort");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["status"], "aborted");
}

/// An interrupt (SIGINT, as Ctrl-C sends; SIGTERM alike) leaves the step in
/// force and the state saved, says how to go on, exits 3; `resume` then
/// finishes the rollout.
#[test]
fn interrupt_keeps_the_step_and_resume_finishes() {
    let lab = Lab::start();
    let traffic = Traffic::start(lab.gateway, 3000);
    let plan = lab.plan("[10, 50, 100]", &traffic.interval_for(10.0, 2.0), "");
    let child = Command::new(graylane_bin())
        .args(["rollout", plan.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state_file = lab.dir.join("plan.yaml.state.json");
    wait_state(&state_file, "step 2", |s| s["step"] == 1);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("graylane rollout resume"), "{stderr}");
    assert!(stderr.contains("graylane rollout abort"), "{stderr}");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["status"], "interrupted");
    assert_eq!(lab.ecds_percent(), 50.0, "the step stays in force");
    let resumed = rollout(&["resume", plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    drop(traffic.stop());
    assert_eq!(resumed.code, 0, "{}", resumed.dump());
    assert_eq!(lab.ecds_percent(), 100.0);
}

/// A metrics source that fails mid-rollout counts as insufficient data,
/// never as a failure, and says so: Prometheus is stopped during the
/// rollout, which then pauses at its deadline without rolling back.
#[test]
fn a_failing_metrics_source_is_insufficient_data_not_a_failure() {
    let lab = Lab::start();
    let prom = Prometheus::start(&[("gateway", lab.envoy.admin)]);
    let traffic = Traffic::start(lab.gateway, 3000);
    let source = format!("{{ prometheus: \"http://127.0.0.1:{}\" }}", prom.port);
    let plan = lab.plan_with(
        "failing-source.yaml",
        "[10, 100]",
        "1s",
        &source,
        "deadline: 4s\n",
    );
    let plan_arg = plan.to_str().unwrap().to_string();
    let running = thread::spawn(move || rollout(&[&plan_arg, "--json"], ROLLOUT_LIMIT));
    let state_file = lab.dir.join("failing-source.yaml.state.json");
    wait_state(&state_file, "a window judged", |s| {
        s["windows"].as_array().is_some_and(|w| !w.is_empty())
    });
    drop(prom);
    let out = running.join().unwrap();
    drop(traffic.stop());
    assert_eq!(out.code, 3, "{}", out.dump());
    assert!(
        !out.delivered().contains(&0.0),
        "never rolled back: {}",
        out.dump()
    );
    let failing: Vec<&Value> = out
        .windows()
        .into_iter()
        .filter(|w| w["notes"].to_string().contains("metrics source failed"))
        .collect();
    assert!(!failing.is_empty(), "{}", out.dump());
    for w in failing {
        assert_eq!(w["verdict"], "insufficient", "{w}");
        assert!(w["notes"].to_string().contains("not as a failure"), "{w}");
        // Insufficient because the source failed, whatever the step has
        // counted so far: every check says so.
        for c in w["checks"].as_array().unwrap() {
            assert_eq!(c["verdict"], "insufficient", "{c}");
            assert!(
                c["reason"]
                    .as_str()
                    .unwrap()
                    .contains("metrics source failed"),
                "{c}"
            );
        }
    }
}

/// The percent of lane `lane` in an ECDS file's text.
fn lane_percent_in_ecds(text: &str, lane: &str) -> f64 {
    let doc: Value = serde_norway::from_str(text).expect("ECDS file is YAML");
    let value = doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("plugin configuration value");
    graylane::config::Config::from_json(value.as_bytes())
        .expect("a configuration the filter accepts");
    let config: Value = serde_json::from_str(value).unwrap();
    config["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == lane)
        .and_then(|l| l["split"]["percent"].as_f64())
        .unwrap()
}

/// Where the bucket rules send `user` with gray at `gray` % and android at
/// `android` % (gray first: its priority is higher).
fn two_lane_rule(user: &str, gray: f64, android: f64) -> &'static str {
    let b = |salt: &str| f64::from(graylane::engine::split::bucket(salt, user.as_bytes()));
    if b(SALT) < gray * 100.0 {
        "gray"
    } else if b(ANDROID_SALT) < android * 100.0 {
        "android"
    } else {
        "base"
    }
}

/// The percents one rollout may have had in force at `at`.
fn candidates(spans: &[(f64, f64, f64)], at: f64) -> Vec<f64> {
    spans
        .iter()
        .filter(|(_, from, until)| at >= *from && at < *until)
        .map(|(p, _, _)| *p)
        .collect()
}

/// Two rollouts of two lanes at once on one gateway's ECDS file: gray
/// (healthy) and android (every 4th answer a 503), split on the same user
/// ids with different salts. Each sees and keeps the other's percent, and a
/// hand edit of a third lane during the run survives: gray is promoted,
/// android rolled back, and every request in between went where the two
/// bucket rules send it at the percents the two rollouts had in force.
#[test]
fn two_lanes_rolled_out_at_once_on_one_gateway_compose() {
    let lab = Lab::start_two_lanes();
    lab.android.as_ref().unwrap().fail(2500);
    let traffic = Traffic::start(lab.gateway, 5000);
    let interval = traffic.interval_for(10.0, 2.0);
    let gray = lab.plan_as("plan-gray.yaml", "[10, 50, 100]", &interval, "");
    let android_plan = lab.plan_as("plan-android.yaml", "[10, 50, 100]", &interval, "");
    let text = std::fs::read_to_string(&android_plan)
        .unwrap()
        .replace("lane: gray", "lane: android");
    std::fs::write(&android_plan, text).unwrap();
    let (g, a) = (
        gray.to_str().unwrap().to_string(),
        android_plan.to_str().unwrap().to_string(),
    );
    let gray_run = thread::spawn(move || rollout(&[&g, "--json"], ROLLOUT_LIMIT));
    let android_run = thread::spawn(move || rollout(&[&a, "--json"], ROLLOUT_LIMIT));
    // A hand edit of another lane's rule while both run, written as an
    // operator's tool would: whole, by rename, under the file's lock.
    wait_state(
        &lab.dir.join("plan-gray.yaml.state.json"),
        "gray's first window",
        |s| s["windows"].as_array().is_some_and(|w| !w.is_empty()),
    );
    graylane::rollout::delivery::with_target_lock(&lab.ecds, || {
        let text = std::fs::read_to_string(&lab.ecds).unwrap();
        let edited = text.replace(r#""exact":"blue""#, r#""exact":"blue-2""#);
        assert_ne!(edited, text, "the hand edit changes the file");
        graylane::rollout::delivery::atomic_write(&lab.ecds, &edited).unwrap();
    })
    .unwrap();
    let (gray_out, android_out) = (gray_run.join().unwrap(), android_run.join().unwrap());
    let sent = traffic.stop();
    assert_eq!(gray_out.code, 0, "gray: {}", gray_out.dump());
    assert_eq!(android_out.code, 1, "android: {}", android_out.dump());
    let text = std::fs::read_to_string(&lab.ecds).unwrap();
    assert_eq!(lane_percent_in_ecds(&text, "gray"), 100.0);
    assert_eq!(lane_percent_in_ecds(&text, "android"), 0.0);
    assert!(text.contains("blue-2"), "the hand edit survived: {text}");
    // Every request, against both rules at the percents in force.
    let (gs, as_) = (in_force_spans(&gray_out), in_force_spans(&android_out));
    for s in &sent {
        let (gc, ac) = (candidates(&gs, s.at), candidates(&as_, s.at));
        assert!(
            gc.iter().any(|g| ac
                .iter()
                .any(|a| two_lane_rule(&s.user, *g, *a) == s.backend)),
            "{} sent at {:.2} went to {}; gray's percents then {gc:?}, android's {ac:?}",
            s.user,
            s.at,
            s.backend
        );
    }
    // Each step's admitted share (the bucket rule over the 5,000 ids,
    // which every request above followed) and the requests sent then.
    for (lane, salt, out) in [
        ("gray", SALT, &gray_out),
        ("android", ANDROID_SALT, &android_out),
    ] {
        for i in 0..out.delivered().len() {
            let (percent, during) = sent_during(out, &sent, i);
            let admitted = (0..5000)
                .filter(|u| {
                    let b = graylane::engine::split::bucket(salt, format!("user-{u}").as_bytes());
                    f64::from(b) < percent * 100.0
                })
                .count();
            let went = during.iter().filter(|s| s.backend == lane).count();
            eprintln!(
                "two lanes: {lane} at {percent} %: the rule admits {admitted} of 5000 ids ({:.2} %); {} requests sent meanwhile, {went} went to {lane}",
                admitted as f64 / 50.0,
                during.len()
            );
        }
    }
}

/// An admin endpoint in front of Envoy's that can hold `/stats` reads
/// (`delay` ms): the end-of-window read of a rollout takes that long.
struct SlowAdmin {
    server: Server,
    delay_ms: Arc<AtomicU64>,
    /// Reads held so far.
    held: Arc<AtomicU64>,
}

impl SlowAdmin {
    fn start(admin: u16) -> SlowAdmin {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        let (d, h) = (Arc::clone(&delay_ms), Arc::clone(&held));
        let server = Server::start(Arc::new(move |req: &Received| {
            let delay = d.load(Ordering::SeqCst);
            if delay > 0 {
                h.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(delay));
            }
            match harness::get(admin, &req.path) {
                Ok(r) => (r.status, Vec::new(), r.body.clone()),
                Err(e) => (502, Vec::new(), e.to_string().into_bytes()),
            }
        }));
        SlowAdmin {
            server,
            delay_ms,
            held,
        }
    }
}

/// An `abort` that lands while the running rollout reads its end-of-window
/// counters (held 3 s) wins: `abort` exits 0 with the file at 0 %, the
/// running rollout ends with exit 1, and nothing above 0 is delivered
/// afterwards.
#[test]
fn an_abort_during_the_end_of_window_read_wins() {
    let lab = Lab::start();
    let admin = SlowAdmin::start(lab.envoy.admin);
    let traffic = Traffic::start(lab.gateway, 3000);
    let interval = traffic.interval_for(5.0, 2.0);
    let source = format!("{{ envoy: [\"http://127.0.0.1:{}\"] }}", admin.server.port);
    let plan = lab.plan_with("slow.yaml", "[5, 25, 50, 100]", &interval, &source, "");
    let plan_arg = plan.to_str().unwrap().to_string();
    let running = thread::spawn(move || rollout(&[&plan_arg, "--json"], ROLLOUT_LIMIT));
    let state_file = lab.dir.join("slow.yaml.state.json");
    wait_state(&state_file, "the first step delivered", |s| {
        s["deliveries"].as_array().is_some_and(|d| !d.is_empty())
    });
    // From now on every read is held; wait until one is (the window's end,
    // or the next window's start).
    admin.delay_ms.store(3000, Ordering::SeqCst);
    let held = poll(ROLLOUT_LIMIT, Duration::from_millis(20), || {
        match admin.held.load(Ordering::SeqCst) {
            0 => Err("no read held yet".to_string()),
            n => Ok(n),
        }
    });
    assert!(held.is_ok(), "{held:?}");
    let t_abort = now();
    let aborted = rollout(&["abort", plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    assert_eq!(aborted.code, 0, "{}", aborted.dump());
    assert_eq!(lab.ecds_percent(), 0.0);
    admin.delay_ms.store(0, Ordering::SeqCst);
    let out = running.join().unwrap();
    drop(traffic.stop());
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(lab.ecds_percent(), 0.0, "nothing delivered after the abort");
    let late: Vec<String> = out
        .of("deliver")
        .iter()
        .filter(|d| d["time"].as_f64().unwrap() > t_abort && d["percent"].as_f64() != Some(0.0))
        .map(|d| d.to_string())
        .collect();
    assert!(late.is_empty(), "delivered after the abort: {late:?}");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["status"], "aborted", "{state}");
}

/// SIGKILL right after step 2 reached the ECDS file, before the state
/// recorded it (the crash switch `GRAYLANE_ROLLOUT_CRASH_AT`): `resume`
/// finishes that delivery forward, and no admitted user ever leaves the
/// lane.
#[test]
fn killed_right_after_a_delivery_resume_finishes_it_forward() {
    let lab = Lab::start();
    let traffic = Traffic::start(lab.gateway, 5000);
    let plan = lab.plan("[5, 25, 50, 100]", &traffic.interval_for(5.0, 2.0), "");
    let first = rollout_env(
        &[plan.to_str().unwrap(), "--json"],
        ROLLOUT_LIMIT,
        &[("GRAYLANE_ROLLOUT_CRASH_AT", "after-target-0#2")],
    );
    assert_eq!(first.code, -1, "killed by a signal: {}", first.dump());
    assert_eq!(lab.ecds_percent(), 25.0, "step 2 reached the file");
    let state: Value =
        serde_json::from_slice(&std::fs::read(lab.dir.join("plan.yaml.state.json")).unwrap())
            .unwrap();
    assert_eq!(state["pending"]["percent"], 25.0, "{state}");
    assert_eq!(state["percent"], 5.0, "{state}");
    let resumed = rollout(&["resume", plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let sent = traffic.stop();
    assert_eq!(resumed.code, 0, "{}", resumed.dump());
    assert_eq!(
        resumed.delivered(),
        vec![25.0, 50.0, 100.0],
        "{}",
        resumed.dump()
    );
    // Both runs' deliveries, in order: never down.
    let mut all = Outcome {
        code: 0,
        events: first.events.clone(),
        stderr: String::new(),
    };
    all.events.extend(resumed.events.clone());
    // The first run was killed before it could announce 25 %.
    assert_eq!(all.delivered(), vec![5.0, 25.0, 50.0, 100.0]);
    assert_every_request_follows_the_rule(&all, &sent);
    assert_sticky(&sent);
}

/// SIGKILL right after a rollback was decided (recorded), before it was
/// delivered: `resume` delivers the rollback; the failing step's percent
/// is never delivered again.
#[test]
fn killed_right_after_a_rollback_decision_resume_delivers_it() {
    let lab = Lab::start();
    lab.lane.fail(2500);
    let traffic = Traffic::start(lab.gateway, 5000);
    let plan = lab.plan("[5, 25, 50, 100]", &traffic.interval_for(5.0, 2.0), "");
    let first = rollout_env(
        &[plan.to_str().unwrap(), "--json"],
        ROLLOUT_LIMIT,
        &[("GRAYLANE_ROLLOUT_CRASH_AT", "decided-rollback")],
    );
    assert_eq!(first.code, -1, "killed by a signal: {}", first.dump());
    assert_eq!(
        lab.ecds_percent(),
        5.0,
        "the rollback was decided, not delivered"
    );
    let resumed = rollout(&["resume", plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let sent = traffic.stop();
    assert_eq!(resumed.code, 1, "{}", resumed.dump());
    assert_eq!(resumed.delivered(), vec![0.0], "{}", resumed.dump());
    assert_eq!(lab.ecds_percent(), 0.0);
    assert!(
        resumed.windows().is_empty(),
        "no window judged after the decision"
    );
    assert_none_to_gray_after(resumed.of("deliver")[0], &sent);
}

/// Two gateways in two waves: each step goes to the first gateway, is
/// judged on its counters, and only then to the second. A fault on the
/// first gateway's lane rolls both back before the second ever gets the
/// step.
#[test]
fn a_fault_in_the_first_wave_rolls_back_before_the_second_gets_the_step() {
    let (one, two) = (Lab::start(), Lab::start());
    one.lane.fail(2500);
    let (t1, t2) = (
        Traffic::start(one.gateway, 5000),
        Traffic::start(two.gateway, 5000),
    );
    let interval = t1.interval_for(10.0, 2.0);
    let plan = one.dir.join("waves.yaml");
    std::fs::write(
        &plan,
        format!(
            "config: config.json\nlane: gray\ndeliver:\n- ecds: filter.yaml\n- ecds: {}\nsteps: [10, 50, 100]\ninterval: {interval}\nminRequests: 20\nanalysis:\n  source: {{ envoy: [\"{}\", \"{}\"] }}\n{QUIET_LATENCY}waves:\n- targets: [0]\n  source: {{ envoy: [\"{}\"] }}\n- targets: [1]\n  source: {{ envoy: [\"{}\"] }}\n{}",
            two.ecds.display(),
            one.admin_url(),
            two.admin_url(),
            one.admin_url(),
            two.admin_url(),
            patient_deadline(&interval)
        ),
    )
    .unwrap();
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    drop((t1.stop(), t2.stop()));
    assert_eq!(out.code, 1, "{}", out.dump());
    let deliveries: Vec<(f64, Vec<u64>)> = out
        .of("deliver")
        .iter()
        .map(|d| {
            (
                d["percent"].as_f64().unwrap(),
                d["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().contains(two.dir.to_str().unwrap()) as u64)
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        vec![(10.0, vec![0]), (0.0, vec![0, 1])],
        "step 1 to the first wave only, then the rollback to both: {}",
        out.dump()
    );
    assert_eq!(one.ecds_percent(), 0.0);
    assert_eq!(two.ecds_percent(), 0.0);
    assert!(
        out.windows().iter().all(|w| w["wave"] == 0),
        "{}",
        out.dump()
    );
}

/// The check `name` of the decisive window: the last one, whose verdict the
/// action followed.
fn decisive_check<'o>(out: &'o Outcome, name: &str) -> &'o Value {
    let windows = out.windows();
    let last = windows
        .last()
        .unwrap_or_else(|| panic!("no window: {}", out.dump()));
    check_of(last, name)
}

/// A window's check `name` (a test fails when the window has none).
fn check_of<'w>(window: &'w Value, name: &str) -> &'w Value {
    window["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {window}"))
}

/// `graylane rollout plan PLAN --rps RPS --base-errors PCT --json`: the
/// planner's steps.
fn planner(plan: &std::path::Path, rps: f64, base_errors: f64) -> Vec<Value> {
    let out = rollout(
        &[
            "plan",
            plan.to_str().unwrap(),
            "--rps",
            &format!("{rps:.1}"),
            "--base-errors",
            &base_errors.to_string(),
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let event = out.of("plan");
    eprintln!("planner: {}", event[0]["message"].as_str().unwrap_or(""));
    event[0]["steps"].as_array().unwrap().clone()
}

/// Lane requests counted in the windows of step `step` (0-based).
fn lane_requests_in_step(out: &Outcome, step: u64) -> u64 {
    out.windows()
        .iter()
        .filter(|w| w["step"] == step)
        .map(|w| w["lane"]["requests"].as_u64().unwrap())
        .sum()
}

/// A rollout of `[10, 50, 100]` with base and lane answering 503 to
/// `base` and `lane` of 10,000 requests, at `tolerance` pp; and the
/// planner's steps for it at the traffic measured and base's 1.5 %.
fn with_errors(base: u64, lane: u64, tolerance: f64, what: &str) -> (Outcome, Vec<Value>) {
    let lab = Lab::start();
    lab.base.fail(base);
    lab.lane.fail(lane);
    let traffic = Traffic::start(lab.gateway, 5000);
    let rate = traffic.rate();
    let interval = traffic.interval_for(10.0, 2.0);
    let extra = format!("  errorRate: {{ tolerance: {tolerance} }}\n");
    let plan = lab.plan("[10, 50, 100]", &interval, &extra);
    let steps = planner(&plan, rate, base as f64 / 100.0);
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    drop(traffic.stop());
    print_windows(what, &out);
    (out, steps)
}

/// Base and lane both answer 503 to 1.5 % of their requests: a version as
/// good as base. Every step passes once its evidence suffices (tolerance
/// 2 pp here, so that the steps fit the test's traffic), none fails, and
/// at 100 %, where base serves nothing, the lane is judged against base's
/// rate as recorded at 50 % (never against a fixed 1 %, which 1.5 % would
/// exceed).
#[test]
fn a_version_as_good_as_base_at_1_5_percent_5xx_is_promoted() {
    let (out, steps) = with_errors(150, 150, 2.0, "1.5 % on both");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.delivered(), vec![10.0, 50.0, 100.0], "{}", out.dump());
    for w in out.windows() {
        assert_ne!(w["verdict"], "fail", "{w}");
    }
    let last = decisive_check(&out, "errorRate");
    assert_eq!(last["verdict"], "pass", "{last}");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("vs base as recorded earlier in this rollout 1."),
        "{reason}"
    );
    assert!(reason.ends_with("shown within (pass)"), "{reason}");
    // The first step needed about what the planner said (the errors are
    // spread evenly, as the planner's expected counts are).
    let needed = lane_requests_in_step(&out, 0);
    let planned = steps[0]["passRequests"]
        .as_u64()
        .expect("the planner's step 1");
    eprintln!("step 1 passed after {needed} lane requests; planner: {planned}");
    assert!(
        (needed as f64) <= planned as f64 * 1.5 + 2.0 * MIN_REQUESTS as f64 * 2.0,
        "step 1 took {needed} lane requests, the planner said {planned}"
    );
}

/// A lane 5 pp worse than base (6.5 % against 1.5 %) is rolled back at the
/// first step, within the lane requests the planner predicts (±50 %); with
/// tolerance 2.5 pp, 5 pp is the planner's "worse by 2t".
#[test]
fn a_lane_5_points_worse_is_rolled_back_within_the_planned_requests() {
    let (out, steps) = with_errors(150, 650, 2.5, "5 pp worse");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(out.delivered(), vec![10.0, 0.0], "{}", out.dump());
    let check = decisive_check(&out, "errorRate");
    assert_eq!(check["verdict"], "fail", "{check}");
    assert!(check["lower"].as_f64().unwrap() > 2.5, "{check}");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .ends_with("shown above (fail)"),
        "{check}"
    );
    let needed = lane_requests_in_step(&out, 0) as f64;
    let planned = steps[0]["rollbackRequests"]
        .as_u64()
        .expect("the planner's step 1") as f64;
    eprintln!("rolled back after {needed} lane requests; planner: {planned}");
    assert!(
        needed >= planned * 0.5 && needed <= planned * 1.5,
        "rolled back after {needed} lane requests, the planner said {planned}"
    );
}

/// A version as good as base on a service with a few requests a second:
/// the step continues while the evidence is short, and pauses at its
/// deadline (or passes); it is never rolled back.
#[test]
fn a_version_as_good_as_base_at_low_traffic_is_never_rolled_back() {
    let lab = Lab::start();
    lab.base.fail(150);
    lab.lane.fail(150);
    // Two clients, each pausing 250 ms: about 8 requests a second.
    let traffic = Traffic::paced(lab.gateway, 5000, Some(Duration::from_millis(250)));
    let plan = lab.plan("[50, 100]", "2s", "deadline: 30s\n");
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let sent = traffic.stop();
    print_windows("low traffic", &out);
    eprintln!("low traffic: {} requests sent", sent.len());
    assert!(out.code == 3 || out.code == 0, "{}", out.dump());
    assert!(!out.delivered().contains(&0.0), "{}", out.dump());
    let verdicts: Vec<&str> = out
        .windows()
        .iter()
        .map(|w| w["verdict"].as_str().unwrap())
        .collect();
    assert!(!verdicts.contains(&"fail"), "{verdicts:?}");
    assert!(
        verdicts.contains(&"continue"),
        "the evidence was short at first: {verdicts:?}"
    );
}

/// A query check at low traffic: a query whose value breaks its bound
/// (`vector(5)` against max 1) is judged only in windows where the lane
/// served minRequests; below that it is insufficient data, so a
/// low-traffic rollout pauses at its deadline and is never rolled back.
#[test]
fn a_query_check_at_low_traffic_never_rolls_back() {
    let lab = Lab::start();
    let prom = Prometheus::start(&[("gateway", lab.envoy.admin)]);
    let traffic = Traffic::paced(lab.gateway, 5000, Some(Duration::from_millis(500)));
    let source = format!("{{ prometheus: \"http://127.0.0.1:{}\" }}", prom.port);
    let queries =
        "  queries:\n  - name: always-high\n    query: 'vector(5)'\n    max: 1\ndeadline: 6s\n";
    let plan = lab.plan_with("query.yaml", "[10, 100]", "2s", &source, queries);
    let out = rollout(&[plan.to_str().unwrap(), "--json"], ROLLOUT_LIMIT);
    let sent = traffic.stop();
    print_windows("query at low traffic", &out);
    eprintln!("query at low traffic: {} requests sent", sent.len());
    assert_eq!(out.code, 3, "{}", out.dump());
    assert!(!out.delivered().contains(&0.0), "{}", out.dump());
    for w in out.windows() {
        let q = check_of(w, "always-high");
        let lane = w["lane"]["requests"].as_u64().unwrap();
        assert!(lane < MIN_REQUESTS as u64, "the traffic was low: {w}");
        assert_eq!(q["verdict"], "insufficient", "{q}");
        assert!(
            q["reason"]
                .as_str()
                .unwrap()
                .contains("fewer than minRequests"),
            "{q}"
        );
    }
}
