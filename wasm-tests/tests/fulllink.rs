//! Full-link lanes across a real chain: edge gateway -> A -> A's sidecar ->
//! B -> B's sidecar -> C, every proxy a real Envoy running graylane, the
//! apps forwarding only `baggage`.
#![cfg(not(target_arch = "wasm32"))]

use graylane_wasm_tests::chain::Chain;

#[test]
fn gray_falls_back_at_b_and_stays_gray_at_c() {
    let chain = Chain::start(false);
    let (trace, _) = chain.call(&[("location", "cn-shenzhen")]);
    assert_eq!(trace, "A[gray] -> B[base] -> C[gray]");
    let (trace, _) = chain.call(&[]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
    // The fallback at B is counted by A's sidecar, per service.
    assert_eq!(
        chain
            .sidecar_a
            .wait_counter("wasmcustom.graylane.fallbacks.service.svc-b", 1),
        1
    );
    // Hops keep the propagated tag.
    assert_eq!(
        chain.sidecar_b.wait_counter(
            "wasmcustom.graylane.requests.source.propagated.lane.gray",
            1
        ),
        1
    );
    // B's sidecar (one worker) counted that request, fallback included, in
    // the flush just seen: no fallback at C.
    assert_eq!(
        chain
            .sidecar_b
            .counter("wasmcustom.graylane.fallbacks.service.svc-c"),
        0
    );
}

#[test]
fn b_with_a_gray_version_takes_gray_traffic() {
    let chain = Chain::start(true);
    let (trace, _) = chain.call(&[("location", "cn-shenzhen")]);
    assert_eq!(trace, "A[gray] -> B[gray] -> C[gray]");
    let (trace, _) = chain.call(&[]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
}

#[test]
fn forged_tags_at_the_edge_stay_base_and_foreign_baggage_travels() {
    let chain = Chain::start(false);
    // A client-sent lane tag, in baggage or in the lane header, is removed at the edge.
    let (trace, baggage) = chain.call(&[("baggage", "lane=gray")]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
    assert_eq!(baggage, None);
    let (trace, _) = chain.call(&[("x-graylane", "gray"), ("baggage", "lane=gray,shadow=1")]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
    // An unrelated member reaches C unchanged, next to the lane member.
    let (trace, baggage) = chain.call(&[
        ("baggage", "userId=alice;prop=1"),
        ("location", "cn-shenzhen"),
    ]);
    assert_eq!(trace, "A[gray] -> B[base] -> C[gray]");
    assert_eq!(baggage.as_deref(), Some("userId=alice;prop=1,lane=gray"));
    let (_, baggage) = chain.call(&[("baggage", "userId=alice;prop=1")]);
    assert_eq!(baggage.as_deref(), Some("userId=alice;prop=1"));
}

#[test]
fn two_lanes_at_once_each_request_in_its_own_lane() {
    let chain = Chain::start(false);
    for _ in 0..5 {
        let (gray, _) = chain.call(&[("location", "cn-shenzhen")]);
        let (android, _) = chain.call(&[("x-os", "android")]);
        let (both, _) = chain.call(&[("x-os", "android"), ("location", "cn-shenzhen")]);
        let (none, _) = chain.call(&[]);
        assert_eq!(gray, "A[gray] -> B[base] -> C[gray]");
        // A has no android version: the edge's default route is base.
        assert_eq!(android, "A[base] -> B[base] -> C[android]");
        // gray has the lower priority number: it wins.
        assert_eq!(both, "A[gray] -> B[base] -> C[gray]");
        assert_eq!(none, "A[base] -> B[base] -> C[base]");
    }
}

use graylane_wasm_tests::configs::{bootstrap, cluster, listener, wasm_filter};
use graylane_wasm_tests::harness::{free_port, request, Envoy, Server};

/// The edge mirrors every request (Envoy's `request_mirror_policies`, which
/// appends `-shadow` to the host); the mirrored copy reaches a hop running
/// graylane, which marks it `shadow=1` in baggage. The primary is not marked.
#[test]
fn mirrored_requests_are_marked_shadow_by_the_next_hop() {
    let lanes =
        r#""lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}]"#;
    let edge_plugin = format!(r#"{{"incoming": "ignore", "shadow": {{}}, {lanes}}}"#);
    let hop_plugin = format!(r#"{{"incoming": "trust", "shadow": {{}}, {lanes}}}"#);
    let primary = Server::echo("primary");
    let shadow = Server::echo("shadow");
    let (edge_port, hop_port) = (free_port(), free_port());
    let edge_routes = r#"
            - name: edge
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route:
                  cluster: primary
                  request_mirror_policies:
                  - cluster: shadow-hop
                    runtime_fraction: { default_value: { numerator: 100, denominator: HUNDRED } }"#;
    let hop_routes = r#"
            - name: hop
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: shadow-app }"#;
    let listeners = listener("edge", edge_port, &wasm_filter(&edge_plugin), edge_routes)
        + &listener("hop", hop_port, &wasm_filter(&hop_plugin), hop_routes);
    let clusters = cluster("primary", primary.port)
        + &cluster("shadow-hop", hop_port)
        + &cluster("shadow-app", shadow.port);
    let envoy = Envoy::start(&bootstrap(&listeners, &clusters), &[]);

    let r = request(
        edge_port,
        "GET",
        "/",
        &[
            ("host", b"svc-a"),
            ("location", b"cn-shenzhen"),
            ("baggage", b"userId=alice"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let r = request(
        edge_port,
        "GET",
        "/",
        &[("host", b"svc-a"), ("baggage", b"shadow=1")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // Mirrored requests are sent in the background: wait for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shadow.count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let primary_got = primary.take();
    let shadow_got = shadow.take();
    assert_eq!(primary_got.len(), 2);
    assert_eq!(shadow_got.len(), 2, "{shadow_got:?}");
    // Primary: lane carried, never marked shadow (a client-sent mark is removed at the edge).
    assert_eq!(
        primary_got[0].header("baggage"),
        Some("userId=alice,lane=gray")
    );
    assert_eq!(primary_got[1].header("baggage"), None);
    // Mirrored copy: host ends in -shadow, marked by the hop, lane kept.
    let mut marked: Vec<(String, String)> = shadow_got
        .iter()
        .map(|r| {
            (
                r.header("host").unwrap_or("").to_string(),
                r.header("baggage").unwrap_or("").to_string(),
            )
        })
        .collect();
    marked.sort();
    assert_eq!(
        marked[0],
        ("svc-a-shadow".to_string(), "shadow=1".to_string())
    );
    assert_eq!(
        marked[1],
        (
            "svc-a-shadow".to_string(),
            "userId=alice,lane=gray,shadow=1".to_string()
        )
    );
    assert_eq!(
        envoy.wait_counter("wasmcustom.graylane.shadow_requests", 2),
        2
    );
}

/// A trusting hop (sidecar A of the full-link configs, in front of svc-b's
/// base version) keeps a valid tag as it arrived: the lane member's
/// properties reach the app (W3C: they belong to the member), and so do
/// the other members; a tag naming an undeclared lane is dropped with its
/// properties.
#[test]
fn a_hop_forwards_the_lane_members_properties() {
    use graylane_wasm_tests::chain::fulllink_config;
    use graylane_wasm_tests::harness::{free_port, request, Envoy, Server};
    use std::collections::BTreeMap;

    let b_base = Server::echo("b-base");
    let hop_port = free_port();
    let ports = BTreeMap::from([(10120, hop_port), (10121, b_base.port)]);
    let yaml = fulllink_config("sidecar-a.yaml", &ports)
        .replace("port_value: 9920 ", "port_value: {{ADMIN}} ");
    let hop = Envoy::start_with(&yaml, &[], 1);
    let forwarded = |baggage: &str| {
        let r = request(
            hop_port,
            "GET",
            "/",
            &[("host", b"svc-b"), ("baggage", baggage.as_bytes())],
        )
        .expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        (
            body["headers"]["baggage"].as_str().map(str::to_string),
            body["headers"]["x-graylane"].as_str().map(str::to_string),
        )
    };
    assert_eq!(
        forwarded("lane=gray;p=x,a=1"),
        (Some("lane=gray;p=x,a=1".into()), Some("gray".into()))
    );
    assert_eq!(
        forwarded("a=1,lane=gray;p=x;flag,lane=blue;q"),
        (Some("a=1,lane=gray;p=x;flag".into()), Some("gray".into()))
    );
    assert_eq!(
        forwarded("lane=no-such-lane;p=x,a=1"),
        (Some("a=1".into()), None)
    );
    hop.wait_counter("wasmcustom.graylane.invalid_tags", 1);
}
