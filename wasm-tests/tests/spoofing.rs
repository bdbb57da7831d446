//! Spoofing at the edge (`incoming: ignore`, docs/decision.md "How a request is decided"), in a real
//! Envoy: no combination of client-sent `x-graylane`, `x-graylane-cluster`
//! and `baggage` tags, in any spelling, puts a request in a lane its rules
//! did not admit, takes it out of the lane they did, or picks its cluster.
//! The combinations are a full product of the variants below; each request
//! is checked at the backend it reached and in the headers that backend
//! received (what the next hop would trust).
#![cfg(not(target_arch = "wasm32"))]

use graylane::baggage::Baggage;
use graylane_wasm_tests::configs::Gateway;
use graylane_wasm_tests::harness::Received;

const PLUGIN: &str = r#"{
  "incoming": "ignore",
  "services": { "svc-b": { "base": "base", "lanes": { "gray": "lane-gray", "blue": "lane-blue" } } },
  "lanes": [
    { "name": "gray", "priority": 10, "match": { "header": "location", "exact": "cn-shenzhen" } },
    { "name": "blue", "priority": 20, "match": { "cookie": "blue", "exact": "1" } }
  ]
}"#;
const LANES: &[&str] = &["gray", "blue"];

/// What the rules admit: (request headers, the lane).
const ADMITTED: &[(&[(&str, &str)], &str)] = &[
    (&[], "base"),
    (&[("location", "cn-shenzhen")], "gray"),
    (&[("cookie", "blue=1")], "blue"),
];

/// The lanes a client tries to force (`base` tries to leave its lane).
const FORGED: &[&str] = &["gray", "blue", "base"];

/// Percent-encodes every byte of a lane name (`gray` -> `%67%72%61%79`)
/// except the first, so it still looks like a word.
fn encoded(lane: &str) -> String {
    lane.bytes()
        .enumerate()
        .map(|(i, b)| {
            if i == 0 {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Ways to send the lane header: (name, value) pairs for lane `l`.
fn lane_header_variants(l: &str) -> Vec<Vec<(String, String)>> {
    vec![
        vec![],
        vec![("x-graylane".into(), l.into())],
        vec![("X-Graylane".into(), l.into())],
        vec![("X-GRAYLANE".into(), l.into())],
        vec![
            ("x-graylane".into(), l.into()),
            ("x-graylane".into(), l.into()),
        ],
        vec![
            ("x-graylane".into(), "pink".into()),
            ("X-Graylane".into(), l.into()),
        ],
        vec![("x-graylane".into(), format!("{l}, {l}"))],
    ]
}

/// Ways to send the cluster header: the cluster of lane `l` on svc-b.
fn cluster_header_variants(l: &str) -> Vec<Vec<(String, String)>> {
    let c = if l == "base" {
        "base".to_string()
    } else {
        format!("lane-{l}")
    };
    vec![
        vec![],
        vec![("x-graylane-cluster".into(), c.clone())],
        vec![("X-Graylane-Cluster".into(), c.clone())],
        vec![
            ("x-graylane-cluster".into(), c.clone()),
            ("x-graylane-cluster".into(), c),
        ],
    ]
}

/// Ways to carry lane `l` in baggage: each variant is a list of `baggage`
/// header values.
fn baggage_variants(l: &str) -> Vec<Vec<String>> {
    vec![
        vec![],
        vec![format!("lane={l}")],
        vec![format!("x=1;lane={l}")],
        vec![format!("LANE={l}")],
        vec![format!("Lane={l}")],
        vec![format!("lane={l},lane={l}")],
        vec![format!("lane={}", encoded(l))],
        vec![format!(" lane = {l} ")],
        vec![format!("\tlane\t=\t{l}\t;p=1")],
        vec![format!("a=1,lane={l};prop=x,b=2")],
        vec!["a=1".into(), format!("lane={l}")],
        vec![format!("lane={l}"), format!("lane={l}")],
        vec![format!("lane={l}"), "lane=pink".into()],
        vec![format!("lane=pink,lane={l}")],
        vec![format!("tenant=x,lane={l},tenant=y")],
    ]
}

/// Hosts: two without a `services` entry (routed on `x-graylane`), and the
/// service in several spellings (routed on `x-graylane-cluster`).
const AUTHORITIES: &[(&str, bool)] = &[
    ("gateway.test", false),
    ("gateway.test:8080", false),
    ("svc-b", true),
    ("svc-b:8080", true),
    ("SVC-B", true),
];

/// What is wrong with what the backend received, for a request in `want`.
fn check_received(got: &Received, want: &str, service: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let values = |name: &str| got.headers_named(name);
    let want_lane: Vec<&str> = if want == "base" { vec![] } else { vec![want] };
    let lane = values("x-graylane");
    if lane != want_lane {
        errors.push(format!("x-graylane received {lane:?}"));
    }
    let bags = values("baggage");
    if bags.len() > 1 {
        errors.push(format!("{} baggage headers received: {bags:?}", bags.len()));
    }
    let joined = bags.join(",");
    let b = Baggage::parse([joined.as_bytes()]);
    // What a trusting hop would read: the decoded `lane` members.
    let tags: Vec<String> = b
        .members
        .iter()
        .filter(|m| m.key == "lane")
        .map(|m| m.decoded_value().unwrap_or_else(|| m.value.to_string()))
        .collect();
    if tags != want_lane {
        errors.push(format!("baggage lane members {tags:?} in {joined:?}"));
    }
    let cluster = values("x-graylane-cluster");
    let want_cluster: Vec<String> = match (service, want) {
        (false, _) => vec![],
        (true, "base") => vec!["base".into()],
        (true, l) => vec![format!("lane-{l}")],
    };
    if cluster != want_cluster {
        errors.push(format!(
            "x-graylane-cluster received {cluster:?}, want {want_cluster:?}"
        ));
    }
    errors
}

#[test]
fn no_client_tag_combination_picks_a_lane_or_a_cluster() {
    let gw = Gateway::start_with_hosts(PLUGIN, LANES, &["svc-b"]);
    let mut failures = Vec::new();
    let mut total = 0usize;
    for (admit, want) in ADMITTED {
        for forged in FORGED {
            for lane_hdr in lane_header_variants(forged) {
                for cluster_hdr in cluster_header_variants(forged) {
                    for bag in baggage_variants(forged) {
                        for (authority, service) in AUTHORITIES {
                            total += 1;
                            let mut headers: Vec<(String, Vec<u8>)> =
                                vec![(":authority".into(), authority.as_bytes().to_vec())];
                            headers.extend(
                                admit
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
                            );
                            headers.extend(
                                lane_hdr
                                    .iter()
                                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
                            );
                            headers.extend(
                                cluster_hdr
                                    .iter()
                                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
                            );
                            headers.extend(
                                bag.iter()
                                    .map(|v| ("baggage".to_string(), v.clone().into_bytes())),
                            );
                            let refs: Vec<(&str, &[u8])> = headers
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_slice()))
                                .collect();
                            let what = format!(
                                "admitted {want}, forged {forged}: {:?}",
                                summary(&headers)
                            );

                            let r = gw.send(&refs);
                            let backend = r.header("x-backend").unwrap_or("none").to_string();
                            if r.status != 200 || backend != *want {
                                failures.push(format!(
                                    "{what}: status {} from backend {backend}",
                                    r.status
                                ));
                                gw.backends.values().for_each(|s| drop(s.take()));
                                continue;
                            }
                            let received = gw.backends[*want].take();
                            match received.last() {
                                Some(got) => {
                                    for e in check_received(got, want, *service) {
                                        failures.push(format!("{what}: {e}"));
                                    }
                                }
                                None => failures.push(format!("{what}: backend received nothing")),
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(total > 4000, "only {total} combinations");
    let base_requests = gw
        .envoy
        .wait_counter("wasmcustom.graylane.requests.source.default.lane.base", 1);
    assert!(base_requests > 0, "no request counted as base");
    assert_eq!(gw.envoy.counter("wasm.graylane.vm_reload"), 0);
    let shown: Vec<&String> = failures.iter().take(40).collect();
    assert!(
        failures.is_empty(),
        "{} of {total} spoofing combinations got through; the first ones:\n{}",
        failures.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn summary(headers: &[(String, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v)))
        .collect()
}
