//! The filter at the edge, in a real Envoy: lane selection for every
//! attribute and operator, priorities, splits, stripping of client tags,
//! config errors, counters.
#![cfg(not(target_arch = "wasm32"))]

use graylane::testvectors::{DECISION_TABLE, TABLE_CONFIG};
use graylane_wasm_tests::configs::{bootstrap, cluster, listener, wasm_filter, Gateway};
use graylane_wasm_tests::harness::{
    free_port, poll, request, request_str, wasm_path, Envoy, Server,
};
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

const TABLE_LANES: &[&str] = &[
    "gray", "beta", "android", "api-v2", "vip", "writes", "tenant", "sticky",
];

#[test]
fn decision_table_in_envoy() {
    let gw = Gateway::start(TABLE_CONFIG, TABLE_LANES);
    for (pairs, want) in DECISION_TABLE {
        let r = gw.send_str(pairs);
        assert_eq!(r.status, 200, "{pairs:?}: {}", r.text());
        let body = r.json();
        assert_eq!(body["backend"], *want, "{pairs:?} -> {body}");
        // What the backend received carries the lane (or nothing for base).
        let got = &body["headers"];
        if *want == "base" {
            assert!(got.get("x-graylane").is_none(), "{pairs:?}: {got}");
            let baggage = got.get("baggage").and_then(|b| b.as_str()).unwrap_or("");
            assert!(
                !baggage.split(',').any(|m| m.starts_with("lane=")),
                "{pairs:?}: {got}"
            );
        } else {
            assert_eq!(got["x-graylane"], *want, "{pairs:?}");
            let baggage = got["baggage"].as_str().unwrap();
            assert!(
                baggage.split(',').any(|m| m == format!("lane={want}")),
                "{baggage}"
            );
        }
    }
}

#[test]
fn edge_strips_client_tags_and_cluster() {
    let plugin = r#"{"services": {"svc-b": {"base": "base", "lanes": {"gray": "lane-gray"}}},
        "lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}]}"#;
    let gw = Gateway::start_with_hosts(plugin, &["gray"], &["svc-b"]);
    // Forged tags on a request that matches no lane: all removed, base.
    let r = gw.send_str(&[
        ("x-graylane", "gray"),
        ("baggage", "lane=gray,userId=alice;prop=1"),
        ("x-graylane-cluster", "lane-gray"),
    ]);
    let body = r.json();
    assert_eq!(body["backend"], "base");
    assert!(body["headers"].get("x-graylane").is_none());
    assert!(body["headers"].get("x-graylane-cluster").is_none());
    assert_eq!(body["headers"]["baggage"], "userId=alice;prop=1");
    // A forged cluster header cannot pick the cluster of a service either.
    let r = gw.send_str(&[
        (":authority", "svc-b"),
        ("x-graylane-cluster", "lane-gray"),
        ("x-graylane", "gray"),
    ]);
    let body = r.json();
    assert_eq!(body["backend"], "base", "{body}");
    assert_eq!(body["headers"]["x-graylane-cluster"], "base");
    // The rule admits: the service's lane cluster is chosen through clusterHeader.
    let r = gw.send_str(&[(":authority", "svc-b:8080"), ("location", "cn-shenzhen")]);
    let body = r.json();
    assert_eq!(body["backend"], "gray", "{body}");
    assert_eq!(body["headers"]["x-graylane-cluster"], "lane-gray");
}

fn split_plugin(salt: &str) -> String {
    format!(
        r#"{{"lanes": [{{"name": "canary", "split": {{"key": {{"header": "x-user-id"}}, "percent": 20, "salt": "{salt}", "onMissingKey": "exclude"}}}}]}}"#
    )
}

fn admitted_ids(gw: &Gateway, n: usize) -> BTreeSet<usize> {
    (0..n)
        .filter(|i| gw.lane_of(&[("x-user-id", &format!("user-{i}"))]) == "canary")
        .collect()
}

/// The ids among `user-0 .. user-{n-1}` that the bucket rule admits at
/// `percent` with `salt` (docs/configuration.md "Configuration reference": buckets
/// `0 .. percent*100-1`).
fn bucket_rule(salt: &str, n: usize, percent: f64) -> BTreeSet<usize> {
    (0..n)
        .filter(|i| {
            let b = graylane::engine::split::bucket(salt, format!("user-{i}").as_bytes());
            f64::from(b) < percent * 100.0
        })
        .collect()
}

#[test]
fn split_share_stickiness_and_salt() {
    let gw = Gateway::start(&split_plugin("release-1"), &["canary"]);
    let first = admitted_ids(&gw, 1000);
    // Exactly the bucket rule, id by id (no chance involved: fixed ids).
    assert_eq!(first, bucket_rule("release-1", 1000, 20.0));
    // 20 % of 1,000 ids, within ±4 points: deterministic for these ids and
    // this salt, so it guards the hash's spread, not luck.
    assert!(
        (160..=240).contains(&first.len()),
        "{} admitted",
        first.len()
    );
    // Sticky: the same ids again give the same answers.
    assert_eq!(admitted_ids(&gw, 1000), first);
    // Anonymous requests are excluded by this config.
    assert!((0..50).all(|_| gw.lane_of(&[]) == "base"));
    drop(gw);

    let gw = Gateway::start(&split_plugin("release-2"), &["canary"]);
    let second = admitted_ids(&gw, 1000);
    assert_eq!(second, bucket_rule("release-2", 1000, 20.0));
    assert!(
        (160..=240).contains(&second.len()),
        "{} admitted",
        second.len()
    );
    let overlap = first.intersection(&second).count();
    // A new salt picks an independent population: about 20 % of 20 % overlap.
    assert!(overlap < 90, "overlap {overlap} of {}", first.len());
}

#[test]
fn random_split_for_anonymous_users() {
    let plugin = r#"{"lanes": [{"name": "canary", "split": {"key": {"header": "x-user-id"}, "percent": 30}}]}"#;
    let gw = Gateway::start(plugin, &["canary"]);
    let n = (0..2000).filter(|_| gw.lane_of(&[]) == "canary").count();
    // Each anonymous request is admitted with probability 0.3 on its own,
    // so n ~ Binomial(2000, 0.3) (mean 600, sd 20.5). 477..=727 is the
    // exact two-sided binomial interval with P(outside) = 8.6e-10: this
    // fails by chance about once in a billion runs, while a share off by
    // 6 points or more (24 % or 36.4 %) fails it.
    assert!(
        (477..=727).contains(&n),
        "{n} of 2000 anonymous requests admitted at 30 % (expected 477..=727, exact binomial at p < 1e-9)"
    );
}

/// Starts Envoy with a gateway running `plugin`, which must be refused;
/// returns Envoy's log.
fn refused(plugin: &str) -> String {
    let yaml = bootstrap(
        &listener(
            "gateway",
            free_port(),
            &wasm_filter(plugin),
            &graylane_wasm_tests::configs::lane_routes("\"*\"", "x-graylane", &[], "base"),
        ),
        &graylane_wasm_tests::configs::cluster("base", free_port()),
    );
    let (code, log) = Envoy::start_expect_exit(&yaml, &[]);
    assert_ne!(code, Some(0), "Envoy must refuse the config:\n{log}");
    log
}

#[test]
fn bad_config_is_refused_with_its_json_path() {
    let log = refused(
        r#"{"lanes": [{"name": "gray"}, {"name": "blue", "match": {"any": [{"header": "a", "regex": "(unclosed"}]}}]}"#,
    );
    assert!(
        log.contains(
            "configuration rejected: lanes[1].match.any[0].regex: invalid regular expression"
        ),
        "{log}"
    );
    let log = refused(r#"{"lanes": [{"name": "gray", "priorty": 1}]}"#);
    assert!(
        log.contains("lanes[0].priorty: unknown field `priorty`, expected one of"),
        "{log}"
    );
    // Every independent error, one line each: a misspelt field and a bad
    // regex in one lane, a bad lane name in another.
    let log = refused(
        r#"{"lanes": [{"name": "gray", "priorty": 1, "match": {"header": "a", "regex": "("}}, {"name": "Blue"}]}"#,
    );
    let rejected: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("configuration rejected: ").map(|(_, e)| e))
        .map(|e| e.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        rejected,
        ["lanes[0].priorty", "lanes[0].match.regex", "lanes[1].name"],
        "{log}"
    );
    // Malformed JSON a lenient reader would take, and nesting far past the
    // parser's limit of 128: refused with a message, never a crashed VM.
    let log = refused(r#"{"lanes": [{"name": "gray", "split": {"percent": 2.}}]}"#);
    assert!(
        log.contains("configuration rejected: lanes[0].split.percent: invalid JSON at line 1")
            && log.contains("invalid number"),
        "{log}"
    );
    let leaf = r#"{"header": "a", "exact": "b"}"#;
    let deep = r#"{"not": "#.repeat(10_000) + leaf + &"}".repeat(10_000);
    let log = refused(&format!(
        r#"{{"lanes": [{{"name": "gray", "match": {deep}}}]}}"#
    ));
    assert!(
        log.contains("configuration rejected: lanes[0].match.not.not.not.")
            && log.contains("recursion limit exceeded"),
        "{}",
        &log[log.len().saturating_sub(4000)..]
    );
    let log = refused(&("[".repeat(10_000) + &"]".repeat(10_000)));
    assert!(
        log.contains("configuration rejected: invalid type: sequence, expected an object"),
        "{log}"
    );
}

#[test]
fn counters_in_prometheus_and_lane_in_access_log() {
    let plugin = r#"{"incoming": "trust", "services": {"svc-b": {"base": "base"}},
        "lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}, {"name": "blue"}]}"#;
    let gw = Gateway::start_with_hosts(plugin, &["gray", "blue"], &["svc-b"]);
    for _ in 0..3 {
        assert_eq!(gw.lane_of(&[("location", "cn-shenzhen")]), "gray");
    }
    assert_eq!(gw.lane_of(&[("baggage", "lane=gray")]), "gray");
    assert_eq!(gw.lane_of(&[("baggage", "lane=pink")]), "blue");
    assert_eq!(gw.lane_of(&[("baggage", "ok=1,bad key=2")]), "blue");
    // svc-b has no gray version: fallback to its base, counted.
    let r = gw.send_str(&[(":authority", "svc-b"), ("location", "cn-shenzhen")]);
    assert_eq!(r.json()["backend"], "base");
    // Per-request counts reach Envoy with the filter's next flush.
    let prom = gw.envoy.wait_prometheus(&[
        "graylane_requests{source=\"rule\",lane=\"gray\"} 4",
        "graylane_requests{source=\"propagated\",lane=\"gray\"} 1",
        "graylane_requests{source=\"rule\",lane=\"blue\"} 2",
        "graylane_invalid_tags{} 1",
        "graylane_malformed_baggage{} 1",
        "graylane_fallbacks{service=\"svc-b\"} 1",
        "graylane_rule_wins{rule=\"gray\"} 4",
        "graylane_rule_wins{rule=\"blue\"} 2",
        "graylane_config_rejected{} 0",
    ]);
    assert!(
        prom.lines()
            .any(|l| l.starts_with("graylane_config_accepted{} ") && !l.ends_with(" 0")),
        "{prom}"
    );
    // Access logs are flushed about once a second, by each worker on its
    // own: wait for each lane's line.
    gw.envoy.wait_log("lane=gray cluster=lane-gray");
    let log = gw.envoy.wait_log("lane=blue cluster=lane-blue");
    assert!(log.contains("lane=gray cluster=lane-gray"), "{log}");
    assert!(log.contains("lane=blue cluster=lane-blue"), "{log}");
}

#[test]
fn response_header_when_enabled() {
    let plugin = r#"{"responseHeader": true, "lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}]}"#;
    let gw = Gateway::start(plugin, &["gray"]);
    let r = gw.send_str(&[("location", "cn-shenzhen")]);
    assert_eq!(r.header("x-graylane"), Some("gray"));
    let r = gw.send_str(&[]);
    assert_eq!(r.header("x-graylane"), Some("base"));
}

#[test]
fn anonymous_browsers_get_a_sticky_assigned_cookie() {
    let plugin = r#"{"lanes": [{"name": "canary", "split": {"key": {"cookie": "gl-id", "assign": true, "maxAge": 3600}, "percent": 50}}]}"#;
    let gw = Gateway::start(plugin, &["canary"]);
    let mut canary = 0;
    for _ in 0..200 {
        // A new browser: no cookie. The filter draws an id and sets it.
        let first = gw.send_str(&[]);
        let set = first.headers_named("set-cookie");
        assert_eq!(set.len(), 1, "{:?}", first.headers);
        let cookie = set[0];
        assert!(cookie.starts_with("gl-id="), "{cookie}");
        assert!(
            cookie.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        let id = cookie.split(';').next().unwrap();
        let lane = first.json()["backend"].as_str().unwrap().to_string();
        // The drawn id is hashed like any key (src/engine/split.rs `apply`):
        // its bucket with the lane's salt (no "salt" given: the lane name)
        // decides, buckets 0..4999 being canary at 50 %. Exact for every
        // browser, whatever ids were drawn: no chance involved.
        let value = id.strip_prefix("gl-id=").unwrap();
        let bucket = graylane::engine::split::bucket("canary", value.as_bytes());
        let want = if bucket < 5000 { "canary" } else { "base" };
        assert_eq!(lane, want, "{id}: bucket {bucket}");
        canary += usize::from(lane == "canary");
        // The same browser comes back with the cookie: same lane, no new cookie.
        for _ in 0..2 {
            let again = gw.send_str(&[("cookie", &format!("other=1; {id}"))]);
            assert_eq!(again.json()["backend"], lane.as_str(), "{id}");
            assert!(again.headers_named("set-cookie").is_empty());
        }
    }
    // Each browser's lane is its bucket's (checked above), so this bounds
    // how the drawn ids spread: 128 random bits each, hashed to a bucket
    // that is canary with probability 1/2, so canary ~ Binomial(200, 0.5).
    // 57..=143 is the exact two-sided interval with P(outside) = 4.0e-10:
    // it fails by chance about once in 2.5 billion runs, while ids that
    // land in canary 28 % of the time or less (or 72 % or more: drawn ids
    // that repeat or cluster) fail it more often than not.
    assert!(
        (57..=143).contains(&canary),
        "{canary} of 200 browsers in canary at 50 % (expected 57..=143, exact binomial at p < 1e-9)"
    );
    gw.envoy
        .wait_prometheus(&["graylane_cookies_assigned{} 200"]);
}

/// Two listeners whose graylane filters have the same `vm_config` share one
/// VM per thread (each plugin is a root context in it); every stream is
/// decided by its own plugin's configuration, with requests interleaved.
#[test]
fn plugins_sharing_a_vm_keep_their_own_configs() {
    let one = r#"{"lanes": [{"name": "one", "match": {"header": "x-pick", "present": true}}]}"#;
    let two = r#"{"lanes": [{"name": "two", "match": {"header": "x-pick", "present": true}}],
                  "laneHeader": "x-lane-two"}"#;
    let (p1, p2) = (free_port(), free_port());
    let backend = Server::echo("backend");
    let routes = |header: &str, lane: &str| {
        format!(
            r#"
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/", headers: [ {{ name: {header}, string_match: {{ exact: "{lane}" }} }} ] }}
                route: {{ cluster: backend }}
                request_headers_to_add: [ {{ header: {{ key: x-routed, value: "{lane}" }} }} ]
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
                request_headers_to_add: [ {{ header: {{ key: x-routed, value: base }} }} ]"#
        )
    };
    let listeners = format!(
        "{}{}",
        listener("one", p1, &wasm_filter(one), &routes("x-graylane", "one")),
        listener("two", p2, &wasm_filter(two), &routes("x-lane-two", "two"))
    );
    let envoy = Envoy::start_with(
        &bootstrap(&listeners, &cluster("backend", backend.port)),
        &[("WASM", wasm_path().display().to_string())],
        1,
    );
    for i in 0..40 {
        let (port, want) = if i % 2 == 0 { (p1, "one") } else { (p2, "two") };
        let pick = if i % 3 == 0 {
            None
        } else {
            Some(("x-pick", "1"))
        };
        let headers: Vec<(&str, &str)> = pick.into_iter().collect();
        let r = request_str(port, "/", &headers);
        assert_eq!(r.status, 200, "{}", envoy.log_text());
        let got = backend.take();
        let routed = got
            .last()
            .and_then(|g| g.header("x-routed"))
            .unwrap_or("none");
        let want = if pick.is_some() { want } else { "base" };
        assert_eq!(routed, want, "request {i} on port {port}");
    }
    // The two plugins run in as many VMs as one plugin alone does.
    let active = |e: &Envoy| e.counter("wasm.envoy.wasm.runtime.v8.active");
    let alone = Envoy::start_with(
        &bootstrap(
            &listener(
                "one",
                free_port(),
                &wasm_filter(one),
                &routes("x-graylane", "one"),
            ),
            &cluster("backend", backend.port),
        ),
        &[("WASM", wasm_path().display().to_string())],
        1,
    );
    // Read until the two agree: just after a start, a VM Envoy has let go
    // of is still counted until its deferred delete runs, so one read can
    // catch the two Envoys apart by chance. Agreement within the limit is
    // certain when the VMs are shared (a deferred delete runs on the main
    // thread's next loop turns: milliseconds, even on a busy machine, not
    // 30 s). Not sharing lasts: two plugins in separate VMs hold twice
    // the VMs of one alone (6 against 3 with one worker, measured), more
    // than `alone` ever creates (4), so no transient makes them agree and
    // the poll fails with the last two values.
    let limit = Duration::from_secs(30);
    let shared = poll(limit, Duration::from_millis(50), || {
        let (two, one) = (active(&envoy), active(&alone));
        if two == one {
            Ok(())
        } else {
            Err(format!(
                "{two} active VMs for the two plugins, {one} for one alone"
            ))
        }
    });
    if let Err(last) = shared {
        panic!("the two plugins did not share their VMs: {last} after {limit:?}");
    }
    // Each plugin's configuration was accepted in each VM it runs in.
    assert_eq!(
        envoy.counter("wasmcustom.graylane.config_accepted"),
        2 * alone.counter("wasmcustom.graylane.config_accepted")
    );
}

/// An Envoy that dies during a test says so: the client request after the
/// crash fails with how Envoy exited and its crash report, not only with
/// "connection refused". Envoy's handler reports a SIGSEGV sent by `kill`
/// as it does a crash of its own, then dies of it.
#[test]
fn a_crashed_envoy_is_named_in_the_client_error() {
    let gw = Gateway::start(
        r#"{"lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}]}"#,
        &["gray"],
    );
    assert_eq!(gw.lane_of(&[("location", "cn-shenzhen")]), "gray");
    let pid = gw.envoy.pid().expect("Envoy's pid");
    let kill = Command::new("kill")
        .args(["-SEGV", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        gw.envoy.try_wait().ok_or_else(String::new)
    })
    .expect("Envoy exits on SIGSEGV");
    assert_eq!(status.signal(), Some(11), "{status}");
    let e = request(gw.port, "GET", "/", &[]).expect_err("Envoy is gone");
    let msg = e.to_string();
    assert!(msg.contains("; Envoy exited: signal 11 (SIGSEGV)"), "{msg}");
    assert!(
        msg.contains("started by test a_crashed_envoy_is_named_in_the_client_error"),
        "{msg}"
    );
    assert!(msg.contains("Caught Segmentation fault"), "{msg}");
}
