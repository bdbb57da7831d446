//! Hostile input through a real Envoy (docs/decision.md "Behaviour details"): header values of 60 KiB,
//! 100 `cookie` headers, bytes that are not UTF-8, a 64 KiB `baggage`
//! header, 1,000 baggage members, empty and duplicate members. Each request
//! is answered 200 by the lane its rules select (or base), what the backend
//! receives carries that lane and baggage within the W3C limits, and the
//! filter's VM is never reloaded: the next normal request still lands in
//! its lane.
#![cfg(not(target_arch = "wasm32"))]

use graylane::baggage::{self as w3c, Item};

/// The W3C Baggage limits (W3C Baggage, "Limits"), written out here rather
/// than taken from the crate, so that a change to the crate's constants
/// fails this test: at most 180 list-members and 8,192 bytes.
const W3C_MAX_MEMBERS: usize = 180;
const W3C_MAX_BYTES: usize = 8192;
use graylane_wasm_tests::configs::Gateway;
use graylane_wasm_tests::harness::{Envoy, Received};
use std::collections::BTreeMap;

const PLUGIN: &str = r#"{
  "services": { "svc-b": { "base": "base", "lanes": { "gray": "lane-gray" } } },
  "lanes": [
    { "name": "gray", "priority": 10, "match": { "header": "location", "exact": "cn-shenzhen" } },
    { "name": "beta", "priority": 20, "match": { "cookie": "beta", "exact": "yes" } },
    { "name": "tenant", "priority": 30, "match": { "baggage": "tenant", "prefix": "acme" } },
    { "name": "big", "priority": 40, "match": { "header": "x-big", "prefix": "big" } },
    { "name": "cn", "priority": 50, "match": { "header": "x-name", "exact": "中文" } }
  ]
}"#;
const LANES: &[&str] = &["gray", "beta", "tenant", "big", "cn"];

/// Envoy's defaults (60 KiB of request headers, 100 headers) refuse some of
/// these requests before any filter runs; raised so they reach graylane.
const HCM_LIMITS: &str = "
          max_request_headers_kb: 256
          common_http_protocol_options: { max_headers_count: 500 }";

/// A gateway with the header limits raised.
fn start_gateway() -> Gateway {
    Gateway::start_with_options(PLUGIN, LANES, &["svc-b"], HCM_LIMITS)
}

struct Case {
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    want: &'static str,
}

fn case(name: &'static str, want: &'static str, headers: Vec<(&'static str, Vec<u8>)>) -> Case {
    Case {
        name,
        headers,
        want,
    }
}

fn kib(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n * 1024]
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn members(n: usize) -> String {
    (0..n)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn cases() -> Vec<Case> {
    let mut hundred_cookies: Vec<(&str, Vec<u8>)> = (0..99)
        .map(|i| ("cookie", format!("c{i}={i}; beta=no").into_bytes()))
        .collect();
    hundred_cookies.push(("cookie", b"beta=yes".to_vec()));
    let hundred_other_cookies: Vec<(&str, Vec<u8>)> = (0..100)
        .map(|i| ("cookie", format!("c{i}={i}; beta=maybe").into_bytes()))
        .collect();
    let many_small = {
        let mut s = String::from("tenant=acme");
        let mut i = 0;
        while s.len() < 64 * 1024 {
            s.push_str(&format!(",key{i}=value{i}"));
            i += 1;
        }
        s
    };
    vec![
        // 60 KiB header values.
        case(
            "60 KiB unrelated header; the rule still matches",
            "gray",
            vec![
                ("x-junk", kib(60, b'a')),
                ("location", b"cn-shenzhen".to_vec()),
            ],
        ),
        case(
            "60 KiB value of the matched header",
            "base",
            vec![("location", cat(&[b"cn-shenzhen", &kib(60, b'x')]))],
        ),
        case(
            "60 KiB value with the matching prefix: oversized never matches",
            "base",
            vec![("x-big", cat(&[b"big", &kib(60, b'g')]))],
        ),
        case(
            "60 KiB forged x-graylane",
            "base",
            vec![("x-graylane", cat(&[b"gray", &kib(60, b'y')]))],
        ),
        case(
            "60 KiB forged x-graylane-cluster on a service",
            "base",
            vec![
                (":authority", b"svc-b".to_vec()),
                ("x-graylane-cluster", cat(&[b"lane-gray", &kib(60, b'y')])),
            ],
        ),
        case(
            "60 KiB cookie header with the lane cookie last",
            "beta",
            vec![("cookie", cat(&[b"junk=", &kib(60, b'j'), b"; beta=yes"]))],
        ),
        // Many cookie headers.
        case(
            "100 cookie headers, the lane cookie in the last",
            "beta",
            hundred_cookies,
        ),
        case(
            "100 cookie headers, none matching",
            "base",
            hundred_other_cookies,
        ),
        case(
            "one cookie header of 1,000 pairs, the lane cookie last",
            "beta",
            vec![(
                "cookie",
                format!(
                    "{}; beta=yes",
                    (0..1000)
                        .map(|i| format!("c{i}={i}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
                .into_bytes(),
            )],
        ),
        // Bytes that are not UTF-8.
        case(
            "matched header with a trailing 0xff",
            "base",
            vec![("location", b"cn-shenzhen\xff".to_vec())],
        ),
        case(
            "invalid UTF-8 elsewhere; the rule still matches",
            "gray",
            vec![
                ("user-agent", b"\xff\xfe\x80\xc3(".to_vec()),
                ("location", b"cn-shenzhen".to_vec()),
            ],
        ),
        case(
            "UTF-8 value matches",
            "cn",
            vec![("x-name", "中文".as_bytes().to_vec())],
        ),
        case(
            "truncated UTF-8 sequence",
            "base",
            vec![("x-name", b"\xe4\xb8\xad\xe6".to_vec())],
        ),
        case(
            "forged x-graylane that is not UTF-8",
            "base",
            vec![("x-graylane", b"gray\xff".to_vec())],
        ),
        case(
            "baggage that is not UTF-8",
            "base",
            vec![("baggage", b"tenant=acme\xff,x=1".to_vec())],
        ),
        case(
            "cookie that is not UTF-8",
            "base",
            vec![("cookie", b"beta=yes\xff".to_vec())],
        ),
        // Big baggage.
        case(
            "64 KiB baggage: one huge member, then the tenant",
            "tenant",
            vec![(
                "baggage",
                cat(&[b"a=", &kib(64, b'x'), b",tenant=acme,lane=gray"]),
            )],
        ),
        case(
            "64 KiB baggage of small members, tenant first",
            "tenant",
            vec![("baggage", many_small.into_bytes())],
        ),
        case(
            "1,000 baggage members, tenant first",
            "tenant",
            vec![(
                "baggage",
                format!("tenant=acme,{}", members(999)).into_bytes(),
            )],
        ),
        // The limits bound what is forwarded, not what is read (docs/decision.md "Behaviour details").
        case(
            "1,000 baggage members, tenant past the 180-member limit",
            "tenant",
            vec![(
                "baggage",
                format!("{},tenant=acme", members(999)).into_bytes(),
            )],
        ),
        case(
            "1,000 baggage members and a forged lane",
            "gray",
            vec![
                ("location", b"cn-shenzhen".to_vec()),
                (
                    "baggage",
                    format!("lane=beta,{}", members(999)).into_bytes(),
                ),
            ],
        ),
        case(
            "64 KiB baggage on a service in a lane",
            "gray",
            vec![
                (":authority", b"svc-b:8080".to_vec()),
                ("location", b"cn-shenzhen".to_vec()),
                ("baggage", cat(&[b"a=", &kib(64, b'x'), b",b=1"])),
            ],
        ),
        // Empty and duplicate members.
        case(
            "empty and duplicate members",
            "tenant",
            vec![(
                "baggage",
                b",,tenant=acme,, ,tenant=globex,lane=gray,lane=gray,".to_vec(),
            )],
        ),
        case(
            "only duplicate forged lanes",
            "base",
            vec![("baggage", b"lane=gray,lane=gray,lane=beta".to_vec())],
        ),
        case(
            "only empty members",
            "base",
            vec![("baggage", b", ,\t,,".to_vec())],
        ),
        case(
            "empty value, empty key, bare key",
            "base",
            vec![("baggage", b"lane=,=gray,lane,tenant=".to_vec())],
        ),
        case(
            "several baggage headers",
            "tenant",
            vec![
                ("baggage", b"a=1".to_vec()),
                ("baggage", b"".to_vec()),
                ("baggage", b"lane=gray, tenant=acme-eu".to_vec()),
            ],
        ),
    ]
}

/// What is wrong with what the backend received, if anything.
fn check_received(got: &Received, want: &str, service: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let values = |name: &str| got.headers_named(name);
    let lane = values("x-graylane");
    let want_lane: Vec<&str> = if want == "base" { vec![] } else { vec![want] };
    if lane != want_lane {
        errors.push(format!("x-graylane received {lane:?}, want {want_lane:?}"));
    }
    let bags = values("baggage");
    if bags.len() > 1 {
        errors.push(format!("{} baggage headers received", bags.len()));
    }
    let joined = bags.join(",");
    if joined.len() > W3C_MAX_BYTES {
        errors.push(format!("baggage of {} bytes received", joined.len()));
    }
    // Read without limits, so that too many members shows.
    let all: Vec<Item<'_>> = if joined.is_empty() {
        Vec::new()
    } else {
        w3c::members([joined.as_bytes()]).collect()
    };
    let valid: Vec<_> = all
        .iter()
        .filter_map(|i| match i {
            Item::Valid(m) => Some(*m),
            Item::Invalid => None,
        })
        .collect();
    let invalid = all.len() - valid.len();
    if valid.len() > W3C_MAX_MEMBERS || invalid > 0 {
        errors.push(format!(
            "baggage received: {} members, {invalid} invalid",
            valid.len()
        ));
    }
    let tags: Vec<&str> = valid
        .iter()
        .filter(|m| m.key == "lane")
        .map(|m| m.value)
        .collect();
    if tags != want_lane {
        errors.push(format!("baggage lane members {tags:?}, want {want_lane:?}"));
    }
    let cluster = values("x-graylane-cluster");
    let want_cluster: Vec<String> = match (service, want) {
        (false, _) => vec![],
        (true, "gray") => vec!["lane-gray".into()],
        (true, _) => vec!["base".into()],
    };
    if cluster != want_cluster {
        errors.push(format!(
            "x-graylane-cluster received {cluster:?}, want {want_cluster:?}"
        ));
    }
    errors
}

/// Counters that move when a filter VM fails or is replaced.
fn vm_failure_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("wasm.graylane.vm_reload") || k == "wasm.envoy.wasm.runtime.v8.created"
        })
        .collect()
}

#[test]
fn hostile_requests_are_answered_by_their_lane_and_the_vm_survives() {
    let gw = start_gateway();
    // Warm up (every worker creates its VM), then take the baseline.
    for _ in 0..4 {
        assert_eq!(gw.lane_of(&[("location", "cn-shenzhen")]), "gray");
    }
    let before = vm_failure_stats(&gw.envoy);
    assert!(
        before.contains_key("wasm.graylane.vm_reload"),
        "no VM reload counters in /stats: {before:?}"
    );
    assert!(
        before.keys().any(|k| k.ends_with("v8.created")),
        "{before:?}"
    );
    for (k, v) in &before {
        if k.starts_with("wasm.graylane.vm_reload") {
            assert_eq!(*v, 0, "{k} before the hostile requests");
        }
    }

    let mut failures = Vec::new();
    let all = cases();
    for c in &all {
        let headers: Vec<(&str, &[u8])> =
            c.headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let service = c
            .headers
            .iter()
            .any(|(k, v)| *k == ":authority" && v.starts_with(b"svc-b"));
        for server in gw.backends.values() {
            server.take();
        }
        let r = gw.send(&headers);
        let backend = r.header("x-backend").unwrap_or("none").to_string();
        if r.status != 200 || backend != c.want {
            failures.push(format!(
                "{}: status {} from backend {backend}, want 200 from {} ({})",
                c.name,
                r.status,
                c.want,
                r.text().chars().take(200).collect::<String>()
            ));
            continue;
        }
        let received = gw.backends[c.want].take();
        let Some(got) = received.last() else {
            failures.push(format!("{}: backend {} received nothing", c.name, c.want));
            continue;
        };
        for e in check_received(got, c.want, service) {
            failures.push(format!("{}: {e}", c.name));
        }
    }

    // The VM is healthy: normal requests still land in their lanes.
    assert_eq!(gw.lane_of(&[("location", "cn-shenzhen")]), "gray");
    assert_eq!(gw.lane_of(&[("cookie", "beta=yes")]), "beta");
    assert_eq!(gw.lane_of(&[]), "base");
    let after = vm_failure_stats(&gw.envoy);
    assert_eq!(
        after, before,
        "the filter VM failed or was replaced during the hostile requests"
    );
    let log = gw.envoy.log_text();
    for needle in [
        "panicked",
        "RuntimeError",
        "Wasm VM failed",
        "failed: Uncaught",
    ] {
        assert!(!log.contains(needle), "Envoy log mentions {needle:?}");
    }
    // Bad input is counted (docs/observability.md "Metrics").
    let malformed = gw
        .envoy
        .wait_counter("wasmcustom.graylane.malformed_baggage", 5);
    assert!(malformed >= 5, "malformed_baggage = {malformed}");

    assert!(
        failures.is_empty(),
        "{} of {} hostile requests went wrong:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

/// A hop (`incoming: trust`) finds the lane member wherever it stands in
/// the incoming baggage, and forwards baggage within the W3C limits that
/// still carries it (docs/decision.md "Behaviour details").
#[test]
fn a_hop_finds_the_lane_member_past_the_member_limit() {
    const HOP: &str = r#"{
      "incoming": "trust",
      "propagate": ["beta"],
      "lanes": [
        { "name": "gray", "priority": 10, "match": { "header": "location", "exact": "cn-shenzhen" } }
      ]
    }"#;
    let gw = Gateway::start_with_options(HOP, &["gray", "beta"], &[], HCM_LIMITS);
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "last of 1,000 members",
            "beta",
            format!("{},lane=beta", members(999)),
        ),
        (
            "first of 1,000 members",
            "beta",
            format!("lane=beta,{}", members(999)),
        ),
        (
            "after 64 KiB of members",
            "beta",
            format!("{},lane=beta", members(6000)),
        ),
        (
            "an undeclared lane last",
            "base",
            format!("{},lane=nope", members(999)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, want, bag) in &cases {
        for server in gw.backends.values() {
            server.take();
        }
        let r = gw.send(&[("baggage", bag.as_bytes())]);
        let backend = r.header("x-backend").unwrap_or("none").to_string();
        if r.status != 200 || backend != *want {
            failures.push(format!(
                "{name}: status {} from backend {backend}, want 200 from {want}",
                r.status
            ));
            continue;
        }
        let received = gw.backends[*want].take();
        let Some(got) = received.last() else {
            failures.push(format!("{name}: backend {want} received nothing"));
            continue;
        };
        for e in check_received(got, want, false) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
