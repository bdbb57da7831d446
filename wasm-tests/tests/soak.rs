#![cfg(not(target_arch = "wasm32"))]
//! Soak (ignored; `scripts/soak.sh` runs it): a long run of requests with
//! randomized headers through graylane at an edge gateway — several lanes'
//! rules hit, random user ids, cookies, paths, queries and baggage (valid,
//! percent-encoded, malformed, forged lane tags). Every request must be
//! answered 200 by the backend of the lane the native engine decides for the
//! same headers, and Envoy's memory must stay flat after warm-up: the RSS
//! (`VmRSS` of `/proc/PID/status`) and the heap of Envoy's `/memory`.
//!
//! Sizes: `GRAYLANE_SOAK_REQUESTS` (default 1,000,000),
//! `GRAYLANE_SOAK_CONNECTIONS` (default 8).

use graylane_wasm_tests::load;

use graylane::config::Config;
use graylane::engine::{self, HeaderList};
use graylane_wasm_tests::configs::{bootstrap, cluster, lane_routes, listener, wasm_filter};
use graylane_wasm_tests::harness::{free_port, get, Envoy};
use load::{mix, App, Plan, Reply, Target};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const LANES: &[&str] = &[
    "gray", "beta", "android", "api-v2", "vip", "canary", "preview", "region",
];

/// Every split keyed, with `onMissingKey: exclude`: the decision is a
/// function of the headers, so the native engine predicts it exactly.
const PLUGIN: &str = r#"{
  "incoming": "ignore",
  "lanes": [
    {"name": "gray", "priority": 10, "match": {"header": "location", "exact": "cn-shenzhen"}},
    {"name": "beta", "priority": 20, "match": {"cookie": "canary", "exact": "beta"}},
    {"name": "android", "priority": 30,
     "match": {"header": "x-os", "exact": "android", "ignoreCase": true},
     "split": {"key": {"header": "x-user-id"}, "percent": 50, "salt": "android-1", "onMissingKey": "exclude"}},
    {"name": "api-v2", "priority": 40, "match": {"path": true, "prefix": "/api/v2/"}},
    {"name": "vip", "priority": 50, "match": {"baggage": "tier", "in": ["vip", "gold"]}},
    {"name": "canary", "priority": 60,
     "split": {"key": {"header": "x-user-id"}, "percent": 10, "salt": "canary-7", "onMissingKey": "exclude"}},
    {"name": "preview", "priority": 70, "match": {"query": "preview", "exact": "1"}},
    {"name": "region", "priority": 80, "match": {"header": "location", "regex": "cn-(beijing|hangzhou)"}}
  ]
}"#;

fn pick<'a>(r: u64, shift: u32, choices: &[&'a str]) -> &'a str {
    let n = choices.len().max(1) as u64;
    choices
        .get(((r >> shift) % n) as usize)
        .copied()
        .unwrap_or_default()
}

/// Request `i`: its path and headers, "random" but reproducible.
fn target(i: usize) -> Target {
    let r = mix(i as u64);
    let s = mix(r);
    let path = format!(
        "{}{}",
        pick(
            r,
            0,
            &[
                "/api/v1/orders",
                "/api/v2/orders",
                "/static/app.js",
                "/",
                "/api/v2"
            ]
        ),
        pick(
            r,
            3,
            &[
                "",
                "",
                "?preview=1",
                "?preview=0&x=1",
                "?q=%20a&preview=%31"
            ]
        )
    );
    let mut headers: Vec<(String, String)> = vec![("host".into(), "shop.example".into())];
    let mut add = |k: &str, v: String| headers.push((k.to_string(), v));
    if !(r >> 8).is_multiple_of(10) {
        add("x-user-id", format!("u{}", s % 200_000));
    }
    let location = pick(
        r,
        12,
        &[
            "",
            "",
            "",
            "cn-shenzhen",
            "cn-beijing",
            "cn-hangzhou",
            "us-east",
            "CN-SHENZHEN",
        ],
    );
    if !location.is_empty() {
        add("location", location.to_string());
    }
    let cookie = pick(
        r,
        16,
        &[
            "",
            "",
            "",
            "",
            "",
            "canary=beta",
            "sid=abc; canary=beta",
            "canary=alpha",
        ],
    );
    if !cookie.is_empty() {
        add("cookie", cookie.to_string());
    }
    let os = pick(r, 20, &["", "", "android", "Android", "ios"]);
    if !os.is_empty() {
        add("x-os", os.to_string());
    }
    let baggage = match (r >> 24) % 12 {
        0 => format!("userId=u{},tier=vip", s % 1000),
        1 => "tier=gold;ttl=3".to_string(),
        2 => "tier=free,lane=gray".to_string(),
        3 => "tier=v%69p".to_string(),
        4 => "bad key=1,tier=vip".to_string(),
        5 => "lane=vip,,,tier".to_string(),
        6 => (0..40)
            .map(|m| format!("k{m}=v{}", s % 97))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    if !baggage.is_empty() {
        add("baggage", baggage);
    }
    if (r >> 28).is_multiple_of(20) {
        // Forged at the client: removed by the edge.
        add("x-graylane", "gray".to_string());
    }
    Target { path, headers }
}

/// The lane the native engine decides for request `i`.
fn expected(config: &Config, i: usize) -> String {
    lane_of(config, &target(i))
}

fn lane_of(config: &Config, t: &Target) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![(":path", &t.path), (":method", "GET")];
    for (k, v) in &t.headers {
        pairs.push((if k == "host" { ":authority" } else { k }, v));
    }
    let req = HeaderList::from_strs(&pairs);
    let outcome = engine::process(config, &req, &mut || 0);
    config.lane_name(outcome.decision.lane).to_string()
}

/// The soak checks Envoy's answers against the native engine; this fixed
/// table of probes checks the engine, so that a decision bug the filter
/// and the engine share still fails a test.
#[test]
fn the_engine_the_soak_trusts_decides_a_fixed_table() {
    let config = Config::from_json(PLUGIN.as_bytes()).expect("soak config");
    // (path, headers, lane)
    type Probe = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let table: &[Probe] = &[
        ("/", &[], "base"),
        ("/", &[("location", "cn-shenzhen")], "gray"),
        (
            "/",
            &[("location", "cn-shenzhen"), ("cookie", "canary=beta")],
            "gray",
        ),
        ("/", &[("cookie", "a=1; canary=beta")], "beta"),
        ("/api/v2/items", &[], "api-v2"),
        ("/api/v20", &[], "base"),
        ("/", &[("baggage", "tier=gold")], "vip"),
        ("/", &[("baggage", "tier=silver")], "base"),
        ("/?preview=1", &[], "preview"),
        ("/", &[("location", "cn-hangzhou")], "region"),
        // Split lanes keyed on x-user-id exclude a request without one.
        ("/", &[("x-os", "ANDROID")], "base"),
        // Forged at the client: never a lane at the edge.
        ("/", &[("x-graylane", "gray")], "base"),
        ("/", &[("baggage", "lane=gray")], "base"),
    ];
    for (path, headers, lane) in table {
        let t = Target::new(path, headers);
        assert_eq!(lane_of(&config, &t), *lane, "{path} {headers:?}");
    }
}

fn memory(envoy: &Envoy) -> String {
    let r = get(envoy.admin, "/memory")
        .map(|r| r.text())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&r).unwrap_or_default();
    format!(
        "allocated {} B, heap_size {} B",
        v["allocated"].as_str().unwrap_or("?"),
        v["heap_size"].as_str().unwrap_or("?")
    )
}

fn allocated(envoy: &Envoy) -> u64 {
    get(envoy.admin, "/memory")
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.text()).ok())
        .and_then(|v| v["allocated"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn soak_randomized_headers_no_5xx_and_flat_memory() {
    let requests = load::env_usize("GRAYLANE_SOAK_REQUESTS", 1_000_000);
    let connections = load::env_usize("GRAYLANE_SOAK_CONNECTIONS", 8);
    let config = Arc::new(Config::from_json(PLUGIN.as_bytes()).expect("soak config"));

    let mut backends = Vec::new();
    let mut clusters = String::new();
    for name in std::iter::once("base").chain(LANES.iter().copied()) {
        let tag = name.to_string();
        let app = App::start(Arc::new(move |_| {
            (
                200,
                vec![("x-backend".to_string(), tag.clone())],
                b"ok".to_vec(),
            )
        }));
        let cluster_name = if name == "base" {
            "base".to_string()
        } else {
            format!("lane-{name}")
        };
        clusters.push_str(&cluster(&cluster_name, app.port));
        backends.push(app);
    }
    let port = free_port();
    let yaml = bootstrap(
        &listener(
            "gateway",
            port,
            &wasm_filter(PLUGIN),
            &lane_routes("\"*\"", "x-graylane", LANES, "base"),
        ),
        &clusters,
    )
    // No access log line per request in a soak.
    .replace("path: /dev/stdout", "path: /dev/null");
    let envoy = Envoy::start(&yaml, &[]);
    let pid = envoy.pid().expect("envoy pid");

    let start_rss = load::rss_kb(pid).unwrap_or(0);
    let start_mem = memory(&envoy);
    let plan = Plan {
        port,
        connections,
        requests,
        rate: None,
        keep_samples: false,
    };
    let check = Arc::clone(&config);
    let run = load::start(
        &plan,
        Arc::new(target),
        Arc::new(move |i, r: &Reply| {
            let want = expected(&check, i);
            let got = r.header("x-backend").unwrap_or("none");
            if r.status == 200 && got == want {
                format!("ok {want}")
            } else {
                format!("WRONG {} {got} (want {want})", r.status)
            }
        }),
    );

    // RSS and heap over time; warm-up ends at 10 % of the requests.
    let warm_at = requests / 10;
    let mut series: Vec<(usize, u64, u64)> = Vec::new();
    let mut warm: Option<(u64, u64)> = None;
    let mut next_sample = Instant::now();
    while !run.finished() {
        if Instant::now() >= next_sample {
            let done = run.done();
            let (rss, heap) = (load::rss_kb(pid).unwrap_or(0), allocated(&envoy));
            series.push((done, rss, heap));
            if warm.is_none() && done >= warm_at {
                warm = Some((rss, heap));
            }
            next_sample += Duration::from_secs(5);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let report = run.join();
    let (end_rss, end_heap) = (load::rss_kb(pid).unwrap_or(0), allocated(&envoy));
    let (warm_rss, warm_heap) = warm.unwrap_or((end_rss, end_heap));
    // The filter's per-request counts reach Envoy with its next flush.
    envoy.settle_counters();
    let wasm_stats: Vec<String> = envoy
        .stats()
        .into_iter()
        .filter(|(k, _)| k.starts_with("wasm.") || k.starts_with("wasmcustom.graylane.requests"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let max_rss = series.iter().map(|s| s.1).max().unwrap_or(0);
    let summary = format!(
        "soak: {} requests at {connections} connections in {:.0} s ({:.0}/s); statuses {:?} \
         (5xx or no answer: {}); lanes {:?}\n\
         Envoy RSS: start {start_rss} kB, after warm-up ({warm_at} requests) {warm_rss} kB, \
         end {end_rss} kB, max {max_rss} kB; heap allocated: warm {warm_heap} B, end {end_heap} B\n\
         /memory start: {start_mem}; end: {}\n\
         RSS series (requests done, kB, heap B): {:?}\n\
         wasm stats: {}",
        report.requests,
        report.elapsed.as_secs_f64(),
        report.per_second(),
        report.statuses,
        report.server_errors(),
        report.labels,
        memory(&envoy),
        series,
        wasm_stats.join(" "),
    );
    println!("{summary}");
    assert_eq!(report.requests, requests, "{summary}");
    assert_eq!(report.server_errors(), 0, "{:?}\n{summary}", report.errors);
    assert_eq!(report.failed(), 0, "{:?}\n{summary}", report.errors);
    assert!(
        report.labels.keys().all(|l| l.starts_with("ok ")),
        "answers that differ from the native engine:\n{summary}"
    );
    // Several lanes' rules hit.
    assert!(report.labels.len() >= 6, "{summary}");
    // Flat after warm-up: a leak of even 16 bytes a request would be 14 MB
    // over 900,000 requests.
    let rss_growth = end_rss.saturating_sub(warm_rss);
    assert!(
        rss_growth < 8 * 1024 + warm_rss / 20,
        "Envoy RSS grew by {rss_growth} kB after warm-up:\n{summary}"
    );
    let heap_growth = end_heap.saturating_sub(warm_heap);
    assert!(
        heap_growth < 8 << 20,
        "Envoy heap grew by {heap_growth} B after warm-up:\n{summary}"
    );
    drop(backends);
}
