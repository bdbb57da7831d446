#![cfg(not(target_arch = "wasm32"))]
//! Configuration updates by ECDS (Envoy's Extension Config Discovery
//! Service), the way Istio delivers a `WasmPlugin`: the gateway of
//! `envoy/ecds/` names graylane in its filter chain (`config_discovery`),
//! and the filter itself comes from a file Envoy watches. While a keep-alive
//! load runs on several connections, the test renames new filter files into
//! place: valid ones (lanes added, removed, re-prioritised, a split percent
//! changed) and invalid ones (an unknown field, a bad regex, a lane named
//! `base`). No request may fail; a valid update must decide the next
//! requests of connections opened before it (no listener drain); an invalid
//! one must be rejected (Envoy's `config_fail`, graylane's log line with the
//! JSON path) while the previous configuration keeps deciding. Every answer
//! of the load is checked against the native engine's decision under the
//! configuration in effect.
//!
//! Then the faults: a file that is neither YAML nor JSON, a file with two
//! resources, the same rejected content again, a misspelt Envoy field, what
//! `/config_dump` shows, a rejected first configuration; and the module
//! fetched over HTTP in an ECDS update (`code.remote`, with and without
//! `nack_on_code_cache_miss`).

use graylane::config::Config;
use graylane::engine::{self, HeaderList};
use graylane_wasm_tests::examples::{
    self, backend_in, backend_of, fill_plugin as fill, split_plugin,
};
use graylane_wasm_tests::harness::{
    free_port, poll, read_body, read_head, request, scratch_dir, wait_until, wasm_path, with_exits,
    Envoy,
};
use graylane_wasm_tests::load::{self, Plan, Reply, Sample, Target};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Envoy's counters of the ECDS subscription of the filter named `graylane`.
/// `config_reload` of an accepted configuration is counted once every
/// worker thread has taken it (Envoy's `FilterConfigSubscription`: the
/// update is posted to all threads, and the count made on the main thread
/// when the last one is done), so it is the sign that no worker decides
/// with the previous configuration any more.
const CONFIG_RELOAD: &str = "extension_config_discovery.http_filter.graylane.config_reload";
const CONFIG_FAIL: &str = "extension_config_discovery.http_filter.graylane.config_fail";
const UPDATE_REJECTED: &str = "extension_config_discovery.http_filter.graylane.update_rejected";
const UPDATE_FAILURE: &str = "extension_config_discovery.http_filter.graylane.update_failure";
const UPDATE_SUCCESS: &str = "extension_config_discovery.http_filter.graylane.update_success";
const GRAYLANE_REJECTED: &str = "wasmcustom.graylane.config_rejected";

fn read_example(file: &str) -> String {
    examples::read_example("envoy/ecds", file)
}

/// The committed `envoy/ecds/` gateway on free ports, its filter file in a
/// scratch directory.
struct EcdsGateway {
    envoy: Envoy,
    port: u16,
    filter: PathBuf,
    /// filter.yaml with `{{PLUGIN}}` in place of the plugin configuration.
    template: String,
    /// The plugin configuration of the committed filter.yaml.
    initial: String,
}

impl EcdsGateway {
    fn start() -> EcdsGateway {
        let gw = Self::start_with(None);
        wait_until(
            "the ECDS gateway serving",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || backend_of(gw.port, &[]).is_some(),
        );
        gw
    }

    /// Starts it with the committed plugin configuration, or `first`.
    fn start_with(first: Option<&str>) -> EcdsGateway {
        Self::start_full(
            |template, initial| fill(template, first.unwrap_or(initial)),
            "",
            false,
        )
    }

    /// Starts it with the filter file `first(template, initial)` makes, and
    /// `extra_clusters` (YAML list items) added to the bootstrap's clusters.
    /// With `warm_up`, the bootstrap also has a static listener with
    /// graylane (code local), so that a Wasm VM starts at bootstrap: the
    /// workaround for the Envoy 1.36/1.37 crash (docs/compatibility.md "Supported Envoy
    /// versions").
    fn start_full(
        first: impl FnOnce(&str, &str) -> String,
        extra_clusters: &str,
        warm_up: bool,
    ) -> EcdsGateway {
        let (port, backends) = (free_port(), free_port());
        let dir = scratch_dir("ecds");
        let filter = dir.join("filter.yaml");
        let (initial, template) = split_plugin(
            &read_example("filter.yaml").replace(
                "filename: target/graylane.wasm",
                &format!("filename: {}", wasm_path().display()),
            ),
            "filter.yaml",
        );
        let mut bootstrap = read_example("bootstrap.yaml");
        for (from, to) in [
            ("port_value: 10300 ", format!("port_value: {port} ")),
            ("port_value: 10301 ", format!("port_value: {backends} ")),
            ("port_value: 9903 ", "port_value: {{ADMIN}} ".to_string()),
            (
                "path: envoy/ecds/filter.yaml",
                format!("path: {}", filter.display()),
            ),
            (
                "watched_directory: { path: envoy/ecds }",
                format!("watched_directory: {{ path: {} }}", dir.display()),
            ),
        ] {
            assert!(bootstrap.contains(from), "bootstrap.yaml: no `{from}`");
            bootstrap = bootstrap.replace(from, &to);
        }
        // `clusters:` is the bootstrap's last list.
        bootstrap.push_str(extra_clusters);
        if warm_up {
            assert!(
                bootstrap.contains("\n  listeners:\n"),
                "bootstrap.yaml: no listeners"
            );
            bootstrap = bootstrap.replacen(
                "\n  listeners:\n",
                &format!("\n  listeners:\n{}", warm_up_listener(free_port())),
                1,
            );
        }
        // The filter file must exist when Envoy starts.
        std::fs::write(&filter, first(&template, &initial)).expect("write filter");
        EcdsGateway {
            envoy: Envoy::start_with(&bootstrap, &[], 2),
            port,
            filter,
            template,
            initial,
        }
    }

    /// Puts a new filter file in place as an operator should: written next
    /// to it, then renamed over it.
    fn write_raw(&self, text: &str) {
        let tmp = self.filter.with_file_name(".filter.yaml.new");
        std::fs::write(&tmp, text).expect("write filter");
        std::fs::rename(&tmp, &self.filter).expect("rename filter");
    }

    fn update(&self, plugin_json: &str) {
        self.write_raw(&fill(&self.template, plugin_json));
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.counter(name)
    }

    /// The ECDS part of `/config_dump`: (version_info, plugin configuration).
    fn dumped_filter(&self) -> (String, String) {
        let r = request(
            self.envoy.admin,
            "GET",
            "/config_dump?resource=ecds_filters",
            &[],
        )
        .expect("config_dump");
        let dump: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("config_dump ({e}): {}", r.text()));
        let configs = dump["configs"].as_array().cloned().unwrap_or_default();
        assert_eq!(configs.len(), 1, "one ECDS filter: {dump:#}");
        let c = &configs[0];
        let value = c["ecds_filter"]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no plugin configuration in the dump: {c:#}"))
            .to_string();
        (c["version_info"].as_str().unwrap_or("").to_string(), value)
    }
}

/// One keep-alive connection, opened before any update.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect: {}", with_exits(e)));
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// The backend that answered; panics if the connection was closed (the
    /// point is that it stays open).
    fn backend(&mut self, t: &Target) -> String {
        let mut req = String::from("GET / HTTP/1.1\r\nhost: localhost\r\n");
        for (k, v) in &t.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let broken = |what: &str, e: std::io::Error| -> ! { panic!("{what}: {}", with_exits(e)) };
        if let Err(e) = self.writer.write_all(req.as_bytes()) {
            broken("write on the kept connection", e)
        }
        let (line, headers) =
            read_head(&mut self.reader).unwrap_or_else(|e| broken("kept connection: response", e));
        let body =
            read_body(&mut self.reader, &headers, false).unwrap_or_else(|e| broken("body", e));
        assert!(line.contains(" 200 "), "{line}");
        assert!(
            !headers
                .iter()
                .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")),
            "Envoy closed the kept connection"
        );
        backend_in(&String::from_utf8_lossy(&body))
    }
}

const SALT: &str = "ecds-test";

/// A lane rule as JSON.
fn lane(name: &str, priority: u32, condition: &str, split: Option<f64>) -> String {
    let split = split
        .map(|p| {
            format!(
                r#", "split": {{"key": {{"header": "x-user-id"}}, "percent": {p}, "salt": "{SALT}", "onMissingKey": "exclude"}}"#
            )
        })
        .unwrap_or_default();
    format!(r#"{{"name": "{name}", "priority": {priority}, "match": {condition}{split}}}"#)
}

fn plugin(lanes: &[String]) -> String {
    format!(
        r#"{{"incoming": "ignore", "responseHeader": true, "lanes": [{}]}}"#,
        lanes.join(", ")
    )
}

const SHENZHEN: &str = r#"{"header": "location", "exact": "cn-shenzhen"}"#;
const BEIJING: &str = r#"{"header": "location", "exact": "cn-beijing"}"#;
const RELEASE: &str = r#"{"header": "x-release", "exact": "r1"}"#;
const GOLD: &str = r#"{"header": "x-tier", "exact": "gold"}"#;

/// The seven valid configurations rolled out after the committed one
/// (gray on Shenzhen, blue on `x-release: r0`), and what each changes.
fn valid_updates() -> Vec<(&'static str, String)> {
    vec![
        (
            "blue moves to x-release: r1",
            plugin(&[
                lane("gray", 10, SHENZHEN, None),
                lane("blue", 20, RELEASE, None),
            ]),
        ),
        (
            "lane green added",
            plugin(&[
                lane("gray", 10, SHENZHEN, None),
                lane("blue", 20, RELEASE, None),
                lane("green", 30, GOLD, None),
            ]),
        ),
        (
            "green re-prioritised above gray",
            plugin(&[
                lane("gray", 10, SHENZHEN, None),
                lane("blue", 20, RELEASE, None),
                lane("green", 5, GOLD, None),
            ]),
        ),
        (
            "blue split at 30 %",
            plugin(&[
                lane("gray", 10, SHENZHEN, None),
                lane("blue", 20, RELEASE, Some(30.0)),
                lane("green", 5, GOLD, None),
            ]),
        ),
        (
            "blue split percent 30 -> 70",
            plugin(&[
                lane("gray", 10, SHENZHEN, None),
                lane("blue", 20, RELEASE, Some(70.0)),
                lane("green", 5, GOLD, None),
            ]),
        ),
        (
            "lane gray removed",
            plugin(&[
                lane("blue", 20, RELEASE, Some(70.0)),
                lane("green", 5, GOLD, None),
            ]),
        ),
        (
            "gray back on Beijing, blue re-prioritised above green",
            plugin(&[
                lane("gray", 10, BEIJING, None),
                lane("blue", 1, RELEASE, Some(70.0)),
                lane("green", 5, GOLD, None),
            ]),
        ),
    ]
}

/// The three invalid configurations, and the JSON path graylane logs.
fn invalid_updates() -> Vec<(&'static str, String, &'static str)> {
    let gray = lane("gray", 10, SHENZHEN, None);
    vec![
        (
            "an unknown field",
            format!(r#"{{"lanes": [{gray}, {{"name": "blue", "priorty": 20}}]}}"#),
            "lanes[1].priorty",
        ),
        (
            "a bad regex",
            plugin(&[
                gray.clone(),
                lane(
                    "blue",
                    20,
                    r#"{"header": "x-release", "regex": "(r1"}"#,
                    None,
                ),
            ]),
            "lanes[1].match.regex",
        ),
        (
            "a lane named base",
            plugin(&[lane("base", 10, SHENZHEN, None), gray.clone()]),
            "lanes[0].name",
        ),
    ]
}

/// A user id whose bucket (for [`SALT`]) is admitted at 70 % and not at
/// 30 %, so that the split change is visible.
fn user_between_30_and_70() -> String {
    (0..10_000)
        .map(|n| format!("user-{n}"))
        .find(|u| (3000..7000).contains(&engine::bucket(SALT, u.as_bytes())))
        .expect("a user in buckets 3000..7000")
}

/// The requests of the load: each configuration decides some of them
/// differently from the one before.
fn probes() -> Vec<Target> {
    let user = user_between_30_and_70();
    vec![
        Target::new("/", &[("location", "cn-shenzhen")]),
        Target::new("/", &[("x-release", "r0")]),
        Target::new("/", &[("x-release", "r1"), ("x-user-id", &user)]),
        Target::new("/", &[("x-tier", "gold")]),
        Target::new("/", &[("location", "cn-shenzhen"), ("x-tier", "gold")]),
        Target::new("/", &[("location", "cn-beijing")]),
        Target::new(
            "/",
            &[
                ("x-release", "r1"),
                ("x-user-id", &user),
                ("x-tier", "gold"),
            ],
        ),
        Target::new("/", &[]),
        // Forged by the client: removed at the edge.
        Target::new("/", &[("x-graylane", "gray"), ("baggage", "lane=blue")]),
    ]
}

/// The lane of each probe of [`probes`] under the committed configuration
/// and each of [`valid_updates`], in order, written out by hand from the
/// rules (lower priority number first; the user's bucket is admitted at
/// 70 %, not at 30 %). The test takes its expectations from the native
/// engine, and checks the engine against this table first, so that a
/// decision bug the filter and the engine share still fails.
const FIXED_ANSWERS: [[&str; 9]; 8] = [
    // gray@10 Shenzhen, blue@20 r0 (envoy/ecds/filter.yaml)
    [
        "gray", "blue", "base", "base", "gray", "base", "base", "base", "base",
    ],
    // blue moves to r1
    [
        "gray", "base", "blue", "base", "gray", "base", "blue", "base", "base",
    ],
    // green@30 gold added
    [
        "gray", "base", "blue", "green", "gray", "base", "blue", "base", "base",
    ],
    // green@5, above gray
    [
        "gray", "base", "blue", "green", "green", "base", "green", "base", "base",
    ],
    // blue split at 30 %: the user is out
    [
        "gray", "base", "base", "green", "green", "base", "green", "base", "base",
    ],
    // blue at 70 %: the user is in
    [
        "gray", "base", "blue", "green", "green", "base", "green", "base", "base",
    ],
    // gray removed
    [
        "base", "base", "blue", "green", "green", "base", "green", "base", "base",
    ],
    // gray@10 Beijing, blue@1, green@5
    [
        "base", "base", "blue", "green", "green", "gray", "blue", "base", "base",
    ],
];

#[test]
fn the_engine_agrees_with_the_fixed_table() {
    let probes = probes();
    let initial = examples::read_example("envoy/ecds", "filter.yaml");
    let (json, _) = split_plugin(&initial, "filter.yaml");
    let mut configs = vec![json];
    configs.extend(valid_updates().into_iter().map(|(_, j)| j));
    assert_eq!(configs.len(), FIXED_ANSWERS.len());
    for (k, (json, want)) in configs.iter().zip(FIXED_ANSWERS).enumerate() {
        let config = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(answers(&config, &probes), want, "configuration {k}");
    }
}

/// The lane the native engine decides for a probe under a configuration.
fn expected(config: &Config, t: &Target) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![
        (":path", &t.path),
        (":method", "GET"),
        (":authority", "localhost"),
    ];
    for (k, v) in &t.headers {
        pairs.push((k, v));
    }
    let outcome = engine::process(config, &HeaderList::from_strs(&pairs), &mut || 0);
    config.lane_name(outcome.decision.lane).to_string()
}

fn answers(config: &Config, probes: &[Target]) -> Vec<String> {
    probes.iter().map(|t| expected(config, t)).collect()
}

fn wait_for(what: &str, limit: Duration, ok: impl FnMut() -> bool) -> Duration {
    wait_until(what, limit, Duration::from_millis(2), ok)
}

/// A counter graylane moves when a filter VM configures (on the main thread
/// and on each worker, not in step with Envoy's own counters): polled.
fn wait_counter_above(gw: &EcdsGateway, name: &str, before: u64, what: &str) {
    wait_for(what, Duration::from_secs(5), || gw.counter(name) > before);
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
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
fn wait_requests(running: &load::Running, n: usize, rate: f64) {
    let limit = Duration::from_secs_f64(n as f64 / rate) + LOAD_SLACK;
    let reached = poll(limit, Duration::from_millis(5), || {
        let done = running.done();
        if done >= n {
            Ok(())
        } else if running.finished() {
            panic!("the load ended after {done} requests, before {n}");
        } else {
            Err(format!("{done} requests done, waiting for {n}"))
        }
    });
    if let Err(last) = reached {
        panic!("{last} after {limit:?}");
    }
}

/// One configuration of the load: put in place at `from` (no worker can
/// have it before), in effect on every worker from `settled` on (Envoy
/// counted its reload: see [`CONFIG_RELOAD`]); `answers`, its lane for each
/// probe. Times on the load's clock ([`load::Running::now`]).
struct Period {
    from: Duration,
    settled: Duration,
    answers: Vec<String>,
}

#[test]
fn ecds_updates_under_load_apply_to_open_connections_or_are_rejected() {
    let gw = EcdsGateway::start();
    let probes = Arc::new(probes());
    let initial = Config::from_json(gw.initial.as_bytes()).expect("committed filter.yaml");
    let mut in_effect = answers(&initial, &probes);
    assert_eq!(
        in_effect, FIXED_ANSWERS[0],
        "the engine against the fixed table"
    );
    // The committed example decides as the engine does.
    for (t, want) in probes.iter().zip(&in_effect) {
        let h: Vec<(&str, &str)> = t
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            backend_of(gw.port, &h).as_deref(),
            Some(want.as_str()),
            "{t:?}"
        );
    }
    // The first configuration's reload is counted once every worker took
    // it, which can be after the first request was served: waited for,
    // then exact.
    gw.envoy.wait_counter(CONFIG_RELOAD, 1);
    assert_eq!(gw.counter(CONFIG_RELOAD), 1, "the first configuration");
    assert_eq!(gw.counter(CONFIG_FAIL), 0);

    // The witness: one connection, opened now, used after every update.
    let mut witness = Conn::open(gw.port);
    for (t, want) in probes.iter().zip(&in_effect) {
        assert_eq!(&witness.backend(t), want);
    }

    let rate = load::env_usize("GRAYLANE_ECDS_RATE", 400) as f64;
    let connections = 4;
    let plan = Plan {
        port: gw.port,
        connections,
        // 10 minutes at the rate: far beyond what the updates take, so that
        // the load cannot end before them; it is stopped after them.
        requests: (rate * 600.0) as usize,
        rate: Some(rate),
        keep_samples: true,
    };
    let n_probes = probes.len();
    let load_probes = Arc::clone(&probes);
    let running = load::start(
        &plan,
        Arc::new(move |i| load_probes[i % n_probes].clone()),
        Arc::new(|_, r: &Reply| {
            if r.status == 200 {
                backend_in(&r.text())
            } else {
                format!("status {}", r.status)
            }
        }),
    );
    wait_requests(&running, 200, rate);
    // Each update's phase: as many requests as 0.4 s of the load.
    let per_step = ((rate * 0.4) as usize).max(100);
    let listeners_modified = gw.counter("listener_manager.listener_modified");

    let mut periods = vec![Period {
        from: Duration::ZERO,
        settled: Duration::ZERO,
        answers: in_effect.clone(),
    }];
    let mut applied: Vec<(&str, Duration)> = Vec::new();
    let mut rejected: Vec<(&str, Duration)> = Vec::new();
    let valid = valid_updates();
    let invalid = invalid_updates();
    // 10 updates: every third one invalid, so each invalid one is followed
    // by a valid one that must apply.
    let order = [0, 1, 100, 2, 3, 101, 4, 5, 102, 6];
    for step in order {
        let reloads = gw.counter(CONFIG_RELOAD);
        let fails = gw.counter(CONFIG_FAIL);
        if step < 100 {
            let (what, json) = &valid[step];
            let config =
                Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let want = answers(&config, &probes);
            assert_eq!(
                want,
                FIXED_ANSWERS[step + 1],
                "{what}: the engine against the fixed table"
            );
            assert_ne!(want, in_effect, "{what}: no probe sees the change");
            let changed: Vec<usize> = (0..n_probes).filter(|&i| want[i] != in_effect[i]).collect();
            let from = running.now();
            let t0 = Instant::now();
            gw.update(json);
            // In effect on the witness connection, opened before the update.
            wait_for(what, Duration::from_secs(5), || {
                changed
                    .iter()
                    .all(|&i| witness.backend(&probes[i]) == want[i])
            });
            let took = t0.elapsed();
            for (t, w) in probes.iter().zip(&want) {
                assert_eq!(&witness.backend(t), w, "{what}: {t:?}");
            }
            // Every worker has it once the reload is counted: from here
            // on, no request of the load gets the previous answers.
            wait_for(
                &format!("{what}: config_reload"),
                Duration::from_secs(5),
                || gw.counter(CONFIG_RELOAD) > reloads,
            );
            assert_eq!(gw.counter(CONFIG_FAIL), fails, "{what}");
            periods.push(Period {
                from,
                // Taken after the reload was counted.
                settled: running.now(),
                answers: want.clone(),
            });
            in_effect = want;
            applied.push((what, took));
        } else {
            let (what, json, path) = &invalid[step - 100];
            let graylane_rejected = gw.counter(GRAYLANE_REJECTED);
            let update_rejected = gw.counter(UPDATE_REJECTED);
            let log_before = gw.envoy.log_text().len();
            let t0 = Instant::now();
            gw.update(json);
            wait_for(
                &format!("{what}: config_fail"),
                Duration::from_secs(5),
                || gw.counter(CONFIG_FAIL) > fails,
            );
            let took = t0.elapsed();
            // Envoy counts a configuration the filter refused as a reload
            // too (it got as far as building the filter), and as rejected.
            assert_eq!(gw.counter(CONFIG_RELOAD), reloads + 1, "{what}");
            assert_eq!(gw.counter(UPDATE_REJECTED), update_rejected + 1, "{what}");
            let needle = format!("configuration rejected: {path}: ");
            wait_for(
                &format!("{what}: `{needle}` in the log"),
                Duration::from_secs(5),
                || gw.envoy.logged_since(log_before, &needle),
            );
            wait_counter_above(
                &gw,
                GRAYLANE_REJECTED,
                graylane_rejected,
                &format!("{what}: graylane_config_rejected"),
            );
            // The previous configuration keeps deciding, on the old
            // connection and on a new one.
            for (t, w) in probes.iter().zip(&in_effect) {
                assert_eq!(&witness.backend(t), w, "{what}: {t:?}");
                let h: Vec<(&str, &str)> = t
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(
                    backend_of(gw.port, &h).as_deref(),
                    Some(w.as_str()),
                    "{what}"
                );
            }
            // /config_dump shows the rejected configuration, not the one
            // in effect.
            assert_eq!(&gw.dumped_filter().1, json, "{what}: config_dump");
            rejected.push((what, took));
        }
        // Let the load run on each configuration for a while: counted in
        // requests, so that a busy machine cannot shorten it.
        wait_requests(&running, running.done() + per_step, rate);
    }
    assert!(!running.finished(), "the load ended before the last update");
    wait_requests(&running, running.done() + per_step, rate);
    running.stop();
    let report = running.join();

    // Every answer of the load, against the configurations that can have
    // decided it. Configuration j decides no request before `from` of j
    // (it was put in place then) and none after `settled` of j + 1 (every
    // worker had the next one then); a request is decided while it is in
    // Envoy, within its [start, end] on the same clock. So its answer must
    // be that of a configuration whose [from of j, settled of j + 1]
    // overlaps [start, end]: whenever the request was sent and handled
    // relative to an update (started before it and handled after it
    // included), the check cannot fail by chance, and needs no margin.
    let window_overlaps = |j: usize, start: Duration, end: Duration| {
        periods[j].from <= end && periods.get(j + 1).is_none_or(|next| start <= next.settled)
    };
    let mut wrong = Vec::new();
    // Per update k, the end of the last request answered as before it,
    // since it was put in place (for the summary).
    let mut last_old: Vec<Duration> = vec![Duration::ZERO; periods.len()];
    for s in &report.samples {
        let Sample {
            index,
            start,
            end,
            status,
            label,
        } = s;
        assert_eq!(*status, 200, "request {index}: {label}");
        let p = index % n_probes;
        let fitting: Vec<usize> = (0..periods.len())
            .filter(|&j| window_overlaps(j, *start, *end))
            .collect();
        match fitting
            .iter()
            .rev()
            .find(|&&j| periods[j].answers[p] == *label)
        {
            Some(&j) => {
                // The latest configuration put in place before the end.
                let latest = fitting.last().copied().unwrap_or(0);
                if j < latest && periods[latest].answers[p] != *label {
                    let k = j + 1;
                    last_old[k] = last_old[k].max(end.saturating_sub(periods[k].from));
                }
            }
            None => wrong.push(format!(
                "request {index} (probe {p}) in [{start:?}, {end:?}]: {label}, want one of {:?} \
                 (configurations {fitting:?})",
                fitting
                    .iter()
                    .map(|&j| periods[j].answers[p].as_str())
                    .collect::<Vec<_>>()
            )),
        }
    }
    let ecds_reloads = gw.counter(CONFIG_RELOAD);
    let ecds_fails = gw.counter(CONFIG_FAIL);
    let summary = format!(
        "ecds: {}; {} valid updates in effect on an open connection after {} ms \
         (last old answer on the load's connections at +{} ms); {} invalid updates rejected after {} ms; \
         config_reload {ecds_reloads} config_fail {ecds_fails}",
        report.summary(connections),
        applied.len(),
        applied.iter().map(|(_, d)| ms(*d)).collect::<Vec<_>>().join("/"),
        last_old[1..].iter().map(|d| ms(*d)).collect::<Vec<_>>().join("/"),
        rejected.len(),
        rejected.iter().map(|(_, d)| ms(*d)).collect::<Vec<_>>().join("/"),
    );
    println!("{summary}");
    for (what, d) in &applied {
        println!("  applied  {:>7} ms  {what}", ms(*d));
    }
    for (what, d) in &rejected {
        println!("  rejected {:>7} ms  {what}", ms(*d));
    }
    assert!(
        wrong.is_empty(),
        "{}\n{summary}",
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert_eq!(report.failed(), 0, "{:?}\n{summary}", report.errors);
    assert_eq!(report.reconnects, 0, "{summary}");
    // Cannot fail by chance: the phases are counted in requests (200
    // before the first update, then `per_step` >= 100 after each of the 10
    // updates and before the end), so the load made at least 1300 (1800
    // at the default rate).
    assert!(report.requests >= 1000, "{summary}");
    assert_eq!((applied.len(), rejected.len()), (7, 3));
    assert_eq!(ecds_reloads, 1 + 7 + 3, "{summary}");
    assert_eq!(ecds_fails, 3, "{summary}");
    // No listener was replaced or drained: the same connections served
    // every configuration.
    assert_eq!(
        gw.counter("listener_manager.listener_modified"),
        listeners_modified
    );
    assert_eq!(gw.counter("listener_manager.total_listeners_draining"), 0);
}

/// Counters of one fault step, as differences from before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delta {
    reload: u64,
    fail: u64,
    rejected: u64,
    failure: u64,
    success: u64,
}

fn ecds_counters(gw: &EcdsGateway) -> [u64; 5] {
    [
        gw.counter(CONFIG_RELOAD),
        gw.counter(CONFIG_FAIL),
        gw.counter(UPDATE_REJECTED),
        gw.counter(UPDATE_FAILURE),
        gw.counter(UPDATE_SUCCESS),
    ]
}

/// The changes of the ECDS counters since `before` ([`ecds_counters`]).
fn delta_since(gw: &EcdsGateway, before: [u64; 5]) -> Delta {
    let a = ecds_counters(gw);
    Delta {
        reload: a[0] - before[0],
        fail: a[1] - before[1],
        rejected: a[2] - before[2],
        failure: a[3] - before[3],
        success: a[4] - before[4],
    }
}

/// How long [`put`] watches the counters once they reached what it wants,
/// for a count too many. Waiting for something NOT to happen: its length
/// decides only how late an extra count can come and still be seen, never
/// whether a correct run passes.
const PUT_SETTLE: Duration = Duration::from_millis(250);

/// Puts a file in place and waits until Envoy has handled it: until the
/// counters' changes reach `want` (each at least its value: an ECDS update
/// is counted in steps, the reload of an accepted one only once every
/// worker took it, which can be well after the file was read; so once they
/// are reached, new connections and open ones are served by the outcome);
/// then, after [`PUT_SETTLE`], they must be exactly `want`, not more. The
/// changes; `what` names the step in a failure.
fn put(gw: &EcdsGateway, text: &str, what: &str, want: Delta) -> Delta {
    let attempts = "extension_config_discovery.http_filter.graylane.update_attempt";
    let before_attempts = gw.counter(attempts);
    let b = ecds_counters(gw);
    gw.write_raw(text);
    let reached = poll(Duration::from_secs(20), Duration::from_millis(5), || {
        let d = delta_since(gw, b);
        let attempted = gw.counter(attempts) > before_attempts;
        if attempted
            && d.reload >= want.reload
            && d.fail >= want.fail
            && d.rejected >= want.rejected
            && d.failure >= want.failure
            && d.success >= want.success
        {
            Ok(())
        } else {
            Err(format!("update attempted: {attempted}, counters {d:?}"))
        }
    });
    if let Err(last) = reached {
        panic!("{what}: want {want:?}; after 20 s, {last}");
    }
    thread::sleep(PUT_SETTLE);
    let d = delta_since(gw, b);
    assert_eq!(d, want, "{what}");
    d
}

const fn delta(reload: u64, fail: u64, rejected: u64, failure: u64, success: u64) -> Delta {
    Delta {
        reload,
        fail,
        rejected,
        failure,
        success,
    }
}

#[test]
fn bad_ecds_files_are_rejected_while_serving_goes_on() {
    let gw = EcdsGateway::start();
    let probes = Arc::new(probes());
    let n_probes = probes.len();
    // A light load all along: no request may fail.
    let load_probes = Arc::clone(&probes);
    let running = load::start(
        &Plan {
            port: gw.port,
            connections: 2,
            requests: 100_000,
            rate: Some(200.0),
            keep_samples: false,
        },
        Arc::new(move |i| load_probes[i % n_probes].clone()),
        Arc::new(|_, r: &Reply| format!("{}", r.status)),
    );
    let serves = |json: &str, what: &str| {
        let config = Config::from_json(json.as_bytes()).unwrap();
        for (t, want) in probes.iter().zip(answers(&config, &probes)) {
            let h: Vec<(&str, &str)> = t
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(backend_of(gw.port, &h), Some(want), "{what}: {t:?}");
        }
    };
    let graylane_rejected = || gw.counter(GRAYLANE_REJECTED);
    let (a, b) = (gw.initial.clone(), valid_updates()[0].1.clone());
    let (_, bad, path) = invalid_updates().remove(2);
    let bad_file = fill(&gw.template, &bad);
    let mut seen = Vec::new();

    // A configuration graylane refuses: Envoy counts it as reloaded,
    // failed and rejected; graylane logs the JSON path; A keeps serving;
    // /config_dump shows the rejected configuration.
    let d = put(&gw, &bad_file, "refused by graylane", delta(1, 1, 1, 0, 0));
    wait_counter_above(&gw, GRAYLANE_REJECTED, 0, "graylane_config_rejected");
    let log = gw
        .envoy
        .wait_log(&format!("configuration rejected: {path}: "));
    assert!(log.contains(&format!("configuration rejected: {path}: ")));
    assert!(
        log.contains("Filesystem config update rejected: Unable to create Wasm plugin graylane")
    );
    serves(&a, "after a refused configuration");
    assert_eq!(gw.dumped_filter().1, bad, "config_dump after a rejection");
    seen.push(format!("refused: {d:?}"));

    // The same content again, right after: Envoy compares it with the last
    // configuration it received (the rejected one), finds it identical and
    // skips it -- counted as a successful update, nothing re-checked.
    let d = put(
        &gw,
        &bad_file,
        "the same rejected content again",
        delta(0, 0, 0, 0, 1),
    );
    serves(&a, "after the same rejected content again");
    assert_eq!(graylane_rejected(), 1);
    seen.push(format!("same rejected again: {d:?}"));

    // A valid configuration applies after a rejected one.
    put(
        &gw,
        &fill(&gw.template, &b),
        "valid after rejected",
        delta(1, 0, 0, 0, 1),
    );
    // Cannot fail by chance: `put` returned once the reload was counted,
    // i.e. once every worker had B (so for the `serves` after each valid
    // `put` below); after a rejected or failed one, no worker changed.
    serves(&b, "valid after a rejected one");
    assert_eq!(gw.dumped_filter().1, b);
    // The same valid content again: skipped.
    let d = put(
        &gw,
        &fill(&gw.template, &b),
        "the same valid content again",
        delta(0, 0, 0, 0, 1),
    );
    seen.push(format!("same valid again: {d:?}"));

    // The rejected content once more, now after a valid one: rejected
    // again, but Envoy's Wasm plugin cache remembers that this
    // configuration failed and does not ask graylane (no new log line from
    // graylane, graylane_config_rejected unchanged).
    let log_before = gw.envoy.log_text().len();
    let d = put(
        &gw,
        &bad_file,
        "a refused configuration again",
        delta(1, 1, 1, 0, 0),
    );
    serves(&b, "after a refused configuration again");
    let log = gw.envoy.wait_log("Plugin graylane failed to load");
    let new_log = log.get(log_before..).unwrap_or_default();
    assert!(
        new_log.contains("Plugin graylane failed to load"),
        "{new_log}"
    );
    assert!(!new_log.contains("configuration rejected"), "{new_log}");
    assert_eq!(graylane_rejected(), 1);
    seen.push(format!("refused again later: {d:?}"));

    // Neither YAML nor JSON (cut off in the middle): a failed update (not a
    // rejected one).
    let dump_before = gw.dumped_filter();
    let d = put(
        &gw,
        r#"{"resources": [{"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", "name": "graylane""#,
        "not YAML",
        delta(0, 1, 0, 1, 0),
    );
    assert!(gw
        .envoy
        .wait_log("Filesystem config update failure")
        .contains("Filesystem config update failure"));
    serves(&b, "after a file that is not YAML");
    assert_eq!(gw.dumped_filter(), dump_before);
    seen.push(format!("not YAML: {d:?}"));

    // Two resources in one file: rejected.
    let two = format!(
        "{}{}",
        fill(&gw.template, &b),
        fill(&gw.template, &a)
            .split_once("resources:\n")
            .map(|(_, r)| r.to_string())
            .unwrap()
    );
    let d = put(&gw, &two, "two resources", delta(0, 1, 1, 0, 0));
    assert!(gw
        .envoy
        .wait_log("Unexpected number of resources in ExtensionConfigDS response: 2")
        .contains("Unexpected number of resources"));
    serves(&b, "after a file with two resources");
    seen.push(format!("two resources: {d:?}"));

    // And a valid one still applies after all that.
    let c = valid_updates()[1].1.clone();
    put(
        &gw,
        &fill(&gw.template, &c),
        "a valid configuration after the faults",
        delta(1, 0, 0, 0, 1),
    );
    serves(&c, "a valid configuration after the faults");

    // A misspelt Envoy field in the filter resource (not in graylane's
    // JSON, where it would be an error): Envoy only warns about it in a
    // dynamic resource, and applies the rest.
    let e = valid_updates()[2].1.clone();
    let typo = fill(&gw.template, &e).replacen(
        "root_id: graylane",
        "root_id: graylane\n      failure_polcy: FAIL_OPEN",
        1,
    );
    assert!(typo.contains("failure_polcy"));
    let d = put(&gw, &typo, "a misspelt Envoy field", delta(1, 0, 0, 0, 1));
    assert!(gw
        .envoy
        .wait_log("failure_polcy")
        .lines()
        .any(|l| l.contains("Unknown field") && l.contains("failure_polcy")));
    serves(&e, "with a misspelt Envoy field");
    seen.push(format!("misspelt Envoy field: {d:?}"));

    running.stop();
    let report = running.join();
    println!(
        "ecds faults: {} requests on 2 keep-alive connections, statuses {:?}, reconnects {}; {}",
        report.requests,
        report.statuses,
        report.reconnects,
        seen.join("; ")
    );
    assert_eq!(report.failed(), 0, "{:?}", report.errors);
    assert_eq!(report.reconnects, 0);
}

#[test]
fn a_rejected_first_configuration_fails_requests_until_a_valid_one_arrives() {
    // Envoy does not wait for a valid configuration: the rejected one
    // counts as the end of the initial fetch, the listener starts, and the
    // filter, having no configuration, answers every request 500.
    let (_, bad, path) = invalid_updates().remove(0);
    let gw = EcdsGateway::start_with(Some(&bad));
    assert!(gw
        .envoy
        .wait_log(&format!("configuration rejected: {path}: "))
        .contains(&format!("configuration rejected: {path}: ")));
    assert_eq!(gw.counter(CONFIG_FAIL), 1);
    let r = request(gw.port, "GET", "/", &[("location", b"cn-shenzhen")]).expect("request");
    assert_eq!(r.status, 500, "{}", r.text());
    let r = request(gw.port, "GET", "/", &[]).expect("request");
    assert_eq!(r.status, 500, "{}", r.text());
    // The first valid configuration brings it up.
    put(
        &gw,
        &fill(&gw.template, &gw.initial),
        "the first valid configuration",
        delta(1, 0, 0, 0, 1),
    );
    // Cannot fail by chance: `put` returned once the reload was counted,
    // i.e. once every worker had the configuration.
    assert_eq!(
        backend_of(gw.port, &[("location", "cn-shenzhen")]).as_deref(),
        Some("gray")
    );
    assert_eq!(backend_of(gw.port, &[]).as_deref(), Some("base"));
    println!("ecds, rejected first configuration: requests answered 500 until a valid one arrived");
}

/// The filter file with the module fetched over HTTP instead of read from
/// a local file (`code.remote`, with its sha256), optionally with
/// `nack_on_code_cache_miss`.
fn with_remote_code(file: &str, server: u16, name: &str, sha256: &str, nack: bool) -> String {
    let line = file
        .lines()
        .find(|l| l.trim_start().starts_with("code: { local:"))
        .expect("filter.yaml: a `code: { local: ... }` line");
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut code = format!(
        "{indent}code: {{ remote: {{ http_uri: {{ uri: \"http://127.0.0.1:{server}/{name}\", \
         cluster: graylane_module, timeout: 5s }}, sha256: \"{sha256}\", \
         retry_policy: {{ num_retries: 2 }} }} }}"
    );
    if nack {
        code.push_str(&format!("\n{indent}nack_on_code_cache_miss: true"));
    }
    file.replace(line, &code)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Serves `/v1.wasm` (the built filter) and `/v2.wasm` (the same module
/// with a custom section added: another sha256, the same behaviour) and
/// counts the fetches.
fn module_server(v1: &[u8], v2: &[u8]) -> load::App {
    let (v1, v2) = (v1.to_vec(), v2.to_vec());
    load::App::start(Arc::new(move |req: &load::AppRequest| {
        match req.path.as_str() {
            "/v1.wasm" => (200, Vec::new(), v1.clone()),
            "/v2.wasm" => (200, Vec::new(), v2.clone()),
            _ => (404, Vec::new(), Vec::new()),
        }
    }))
}

/// A static listener on 127.0.0.1 with graylane (code local, a one-lane
/// configuration) answering with a direct response: a Wasm VM at bootstrap.
fn warm_up_listener(port: u16) -> String {
    format!(
        r#"  - name: warm-up
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: warm_up
          route_config:
            virtual_hosts:
            - name: warm-up
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200 }}
          http_filters:
          - name: graylane-warm-up
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: graylane-warm-up
                root_id: graylane
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {wasm} }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{{"lanes": [{{"name": "warm-up", "match": {{"header": "x-warm-up", "present": true}}}}]}}'
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        wasm = wasm_path().display()
    )
}

fn module_cluster(port: u16) -> String {
    format!(
        r#"
  - name: graylane_module
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: graylane_module
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
    )
}

/// Valid configuration `k`: gray on Shenzhen, blue on `x-release: r<k>`.
fn release(k: usize) -> String {
    plugin(&[
        lane("gray", 10, SHENZHEN, None),
        lane(
            "blue",
            20,
            &format!(r#"{{"header": "x-release", "exact": "r{k}"}}"#),
            None,
        ),
    ])
}

#[test]
fn remote_code_in_ecds_updates() {
    remote_code_in_ecds_updates_run(false);
}

/// The same with a Wasm VM started at bootstrap (a static listener with
/// graylane): the workaround for Envoy 1.36 and 1.37, which crash when the
/// first Wasm VM starts after the worker threads (here, once the remote
/// module arrives); `scripts/compat.sh` runs it in place of the test above
/// on those versions.
#[test]
fn remote_code_in_ecds_updates_with_the_warm_up_listener() {
    remote_code_in_ecds_updates_run(true);
}

fn remote_code_in_ecds_updates_run(warm_up: bool) {
    let v1 = std::fs::read(wasm_path()).expect("the built filter");
    // A custom section (id 0, 2 bytes: a 1-byte name "x") at the end.
    let mut v2 = v1.clone();
    v2.extend_from_slice(&[0, 2, 1, b'x']);
    let (sha1, sha2) = (sha256_hex(&v1), sha256_hex(&v2));
    let lane_of = |gw: &EcdsGateway, h: &[(&str, &str)]| backend_of(gw.port, h);
    let waits = |what: &str, f: &dyn Fn() -> bool| {
        wait_for(what, Duration::from_secs(10), f);
    };

    // Without nack_on_code_cache_miss (the default).
    let server = module_server(&v1, &v2);
    let sp = server.port;
    let gw = EcdsGateway::start_full(
        |t, _| with_remote_code(&fill(t, &release(1)), sp, "v1.wasm", &sha1, false),
        &module_cluster(sp),
        warm_up,
    );
    // At start-up, the listener waits for the module: fetched, working.
    waits("first configuration", &|| {
        lane_of(&gw, &[("x-release", "r1")]).is_some()
    });
    // That answer came from one worker; the other has the configuration
    // too once the reload is counted (see CONFIG_RELOAD): waited for, so
    // that the next request, on either worker, cannot miss it by chance.
    gw.envoy.wait_counter(CONFIG_RELOAD, 1);
    assert_eq!(
        lane_of(&gw, &[("x-release", "r1")]).as_deref(),
        Some("blue")
    );
    assert_eq!(server.served(), 1);
    // A new module version by an ECDS update: accepted, never fetched, and
    // requests go through WITHOUT the filter (whatever failure_policy
    // says): a forged lane header reaches its route.
    // Accepted. The reload is counted once every worker has the filter
    // (without its module), which can be well after the file was read:
    // `put` waits for it, so the requests below cannot meet a worker with
    // the previous filter by chance.
    put(
        &gw,
        &with_remote_code(
            &fill(&gw.template, &release(2)),
            sp,
            "v2.wasm",
            &sha2,
            false,
        ),
        "a new module by ECDS",
        delta(1, 0, 0, 0, 1),
    );
    // Waiting for something NOT to happen (a fetch of v2).
    thread::sleep(Duration::from_secs(2));
    assert_eq!(server.served(), 1, "the new module was fetched");
    let reload_after_new_module = gw.counter(CONFIG_RELOAD);
    let skipped = [
        lane_of(&gw, &[("x-graylane", "gray")]),
        lane_of(&gw, &[("x-release", "r2")]),
        lane_of(&gw, &[("location", "cn-shenzhen")]),
    ];
    assert_eq!(
        skipped,
        [
            Some("gray".into()),
            Some("base".into()),
            Some("base".into())
        ],
        "graylane ran"
    );
    // Back to the module Envoy has (its cache is keyed by sha256): works.
    // `put` returns once the reload is counted: every worker has it.
    put(
        &gw,
        &with_remote_code(
            &fill(&gw.template, &release(3)),
            sp,
            "v1.wasm",
            &sha1,
            false,
        ),
        "back to the cached module",
        delta(1, 0, 0, 0, 1),
    );
    waits("back to the cached module", &|| {
        lane_of(&gw, &[("x-release", "r3")]).as_deref() == Some("blue")
    });
    // Cannot fail by chance: every worker has had configuration 3 since
    // `put` returned (a new connection can no longer reach one with the
    // filter skipped).
    assert_eq!(
        lane_of(&gw, &[("x-graylane", "gray")]).as_deref(),
        Some("base")
    );
    drop(gw);
    drop(server);

    // With nack_on_code_cache_miss: true, a module not in the cache NACKs
    // the update and is fetched in the background; a later, different
    // update applies it.
    let server = module_server(&v1, &v2);
    let sp = server.port;
    let gw = EcdsGateway::start_full(
        |t, _| with_remote_code(&fill(t, &release(1)), sp, "v1.wasm", &sha1, true),
        &module_cluster(sp),
        warm_up,
    );
    // Even the first configuration: rejected, so the filter answers 500.
    assert_eq!(gw.counter(CONFIG_FAIL), 1);
    let r = request(gw.port, "GET", "/", &[]).expect("request");
    assert_eq!(r.status, 500);
    waits("background fetch of v1", &|| server.served() == 1);
    // Applied once the VMs are built from the cached module: the reload
    // is counted then, not when the file is read (`put` waits for it, then
    // checks that it is one reload, no failure).
    let [reloads, fails, ..] = ecds_counters(&gw);
    put(
        &gw,
        &with_remote_code(&fill(&gw.template, &release(2)), sp, "v1.wasm", &sha1, true),
        "v1 from the cache",
        delta(1, 0, 0, 0, 1),
    );
    waits("v1 from the cache", &|| {
        lane_of(&gw, &[("x-release", "r2")]).as_deref() == Some("blue")
    });
    // Cannot fail by chance: `put` waited for the reload, and saw no
    // further one.
    assert_eq!(gw.counter(CONFIG_RELOAD), reloads + 1, "v1 from the cache");
    assert_eq!(gw.counter(CONFIG_FAIL), fails, "v1 from the cache");
    // A new module: NACKed, the previous configuration keeps serving.
    let v2_file = with_remote_code(&fill(&gw.template, &release(3)), sp, "v2.wasm", &sha2, true);
    put(&gw, &v2_file, "v2 not in the cache", delta(1, 1, 1, 0, 0));
    assert_eq!(
        lane_of(&gw, &[("x-release", "r2")]).as_deref(),
        Some("blue")
    );
    assert_eq!(
        lane_of(&gw, &[("x-graylane", "gray")]).as_deref(),
        Some("base")
    );
    waits("background fetch of v2", &|| server.served() == 2);
    // The same file again is skipped (identical to the last one received)...
    put(&gw, &v2_file, "the same file again", delta(0, 0, 0, 0, 1));
    assert_eq!(
        lane_of(&gw, &[("x-release", "r3")]).as_deref(),
        Some("base")
    );
    // ...a changed one applies v2.
    // Applied once the VMs are built from the cached module: the reload
    // is counted then, not when the file is read (`put` waits for it).
    let [reloads, fails, ..] = ecds_counters(&gw);
    put(
        &gw,
        &with_remote_code(&fill(&gw.template, &release(4)), sp, "v2.wasm", &sha2, true),
        "v2 from the cache",
        delta(1, 0, 0, 0, 1),
    );
    waits("v2 from the cache", &|| {
        lane_of(&gw, &[("x-release", "r4")]).as_deref() == Some("blue")
    });
    // Cannot fail by chance: `put` waited for the reload, and saw no
    // further one.
    assert_eq!(gw.counter(CONFIG_RELOAD), reloads + 1, "v2 from the cache");
    assert_eq!(gw.counter(CONFIG_FAIL), fails, "v2 from the cache");
    assert_eq!(server.served(), 2);
    println!(
        "ecds remote code: a new module by ECDS without nack_on_code_cache_miss: accepted, not \
         fetched, filter skipped (forged x-graylane -> {:?}); with it: NACKed, fetched in the \
         background, applied by the next different update (config_reload after the new \
         module: {reload_after_new_module})",
        skipped[0]
    );
}
