//! Downstream HTTP/2 (h2c, prior knowledge) at the edge, in a real Envoy: a
//! raw HTTP/2 client sends exactly the header fields of each test (several
//! `cookie` fields, `:authority` with a port, forged tags); Envoy's stats
//! prove the requests arrived as HTTP/2. And the full-link chain with
//! HTTP/2 between the sidecars, as Istio runs it.
#![cfg(not(target_arch = "wasm32"))]

use graylane::engine::bucket;
use graylane_wasm_tests::chain::app;
use graylane_wasm_tests::configs::{
    bootstrap, cluster, h2_cluster, listener_logging_protocol, wasm_filter, Gateway,
};
use graylane_wasm_tests::h2::h2_requests;
use graylane_wasm_tests::harness::{free_port, Envoy, Response, Server};

const EDGE_PLUGIN: &str = r#"{
  "incoming": "ignore",
  "responseHeader": true,
  "services": {"shop.example": {"base": "base", "lanes": {"tenant": "lane-tenant"}}},
  "lanes": [
    {"name": "gold", "priority": 10, "match": {"all": [
      {"cookie": "region", "exact": "sz"}, {"cookie": "tier", "exact": "gold"}]}},
    {"name": "tenant", "priority": 20, "match": {"host": true, "exact": "shop.example"}},
    {"name": "canary", "priority": 30, "split": {"key": {"header": "x-user-id"},
      "percent": 40, "salt": "h2-release", "onMissingKey": "exclude"}}
  ]
}"#;

/// A GET with these extra fields (several of one name: several fields),
/// to `:authority` `gateway.test`.
fn get<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "gateway.test"),
    ];
    for (k, v) in extra {
        // A pseudo-header replaces the default; any other field is added.
        if let Some(f) = fields
            .iter_mut()
            .find(|(n, _)| n == k && k.starts_with(':'))
        {
            f.1 = v;
        } else {
            fields.push((k, v));
        }
    }
    fields
}

/// The echo backend's answer: which backend, and a header it received.
fn backend(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["backend"].as_str().unwrap_or_default().to_string()
}

fn received(r: &Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

/// The stats that say how the gateway's requests arrived.
fn assert_all_http2(gw: &Gateway, requests: u64) {
    let stats = gw.envoy.stats();
    let stat = |n: &str| stats.get(n).copied().unwrap_or(0);
    assert_eq!(
        stat("http.gateway.downstream_rq_http2_total"),
        requests,
        "HTTP/2 requests"
    );
    assert_eq!(stat("http.gateway.downstream_rq_http1_total"), 0);
    assert!(stat("http.gateway.downstream_cx_http2_total") >= 1);
}

#[test]
fn cookie_crumbs_authority_with_port_and_forged_tags_over_http2() {
    let gw = Gateway::start_with_hosts(
        EDGE_PLUGIN,
        &["gold", "tenant", "canary"],
        &["shop.example"],
    );
    let requests = vec![
        // 0: the two cookies of the rule in two of three `cookie` fields.
        get(&[
            ("cookie", "a=1"),
            ("cookie", "region=sz"),
            ("cookie", "tier=gold; b=2"),
        ]),
        // 1: only one of them: not gold.
        get(&[("cookie", "region=sz"), ("cookie", "b=2")]),
        // 2: the host rule through `:authority` with a port; `services`
        // keyed on the host without port.
        get(&[(":authority", "shop.example:8443")]),
        // 3: another host with a port: no rule, no service.
        get(&[(":authority", "other.example:8443")]),
        // 4: forged tags from the client, on a request no rule takes.
        get(&[
            ("x-graylane", "gold"),
            ("baggage", "lane=gold,userId=alice;prop=1"),
            ("x-graylane-cluster", "lane-tenant"),
        ]),
        // 5: forged tags on a request a rule takes: the rule's lane replaces them.
        get(&[
            ("x-graylane", "canary"),
            ("baggage", "userId=bob,lane=canary"),
            ("cookie", "region=sz"),
            ("cookie", "tier=gold"),
        ]),
    ];
    let r = h2_requests(gw.port, &requests);
    assert_eq!(r.len(), requests.len());

    assert_eq!(backend(&r[0]), "gold");
    // Envoy joins the crumbs into one header for the HTTP/1.1 upstream.
    assert_eq!(
        received(&r[0], "cookie").as_deref(),
        Some("a=1; region=sz; tier=gold; b=2")
    );
    assert_eq!(received(&r[0], "x-graylane").as_deref(), Some("gold"));
    assert_eq!(received(&r[0], "baggage").as_deref(), Some("lane=gold"));
    // `responseHeader`: the lane on the HTTP/2 response.
    assert_eq!(r[0].header("x-graylane"), Some("gold"));

    assert_eq!(backend(&r[1]), "base");
    assert_eq!(r[1].header("x-graylane"), Some("base"));

    assert_eq!(backend(&r[2]), "tenant");
    assert_eq!(
        received(&r[2], "x-graylane-cluster").as_deref(),
        Some("lane-tenant")
    );
    assert_eq!(
        received(&r[2], "host").as_deref(),
        Some("shop.example:8443")
    );
    assert_eq!(backend(&r[3]), "base");
    assert_eq!(received(&r[3], "x-graylane-cluster"), None);

    assert_eq!(backend(&r[4]), "base");
    assert_eq!(received(&r[4], "x-graylane"), None);
    assert_eq!(received(&r[4], "x-graylane-cluster"), None);
    assert_eq!(
        received(&r[4], "baggage").as_deref(),
        Some("userId=alice;prop=1")
    );

    assert_eq!(backend(&r[5]), "gold");
    assert_eq!(received(&r[5], "x-graylane").as_deref(), Some("gold"));
    assert_eq!(
        received(&r[5], "baggage").as_deref(),
        Some("userId=bob,lane=gold")
    );

    assert_all_http2(&gw, requests.len() as u64);
}

/// `xxh64("h2-release:" + id, seed 0) % 10000` for these ids, computed
/// with another xxHash implementation (Python `xxhash`), and the lane that
/// `percent: 40` (buckets 0-3999) gives each.
const SPLIT_TABLE: &[(&str, u16, &str)] = &[
    ("user-0", 5853, "base"),
    ("user-1", 5814, "base"),
    ("user-2", 9589, "base"),
    ("user-3", 1207, "canary"),
    ("user-4", 2468, "canary"),
    ("user-5", 3378, "canary"),
    ("user-6", 1874, "canary"),
    ("user-7", 8587, "base"),
    ("user-8", 4936, "base"),
    ("user-9", 6465, "base"),
    ("user-10", 5367, "base"),
    ("user-11", 8769, "base"),
    ("user-12", 6680, "base"),
    ("user-13", 6572, "base"),
    ("user-14", 3488, "canary"),
    ("user-15", 7099, "base"),
    ("user-16", 8171, "base"),
    ("user-17", 9349, "base"),
    ("user-18", 1991, "canary"),
    ("user-19", 1834, "canary"),
    ("user-20", 4278, "base"),
    ("user-21", 8702, "base"),
    ("user-22", 4298, "base"),
    ("user-23", 6390, "base"),
];

#[test]
fn split_over_http2_is_the_exact_formula() {
    let gw = Gateway::start(EDGE_PLUGIN, &["gold", "tenant", "canary"]);
    let requests: Vec<Vec<(&str, &str)>> = SPLIT_TABLE
        .iter()
        .map(|(id, _, _)| get(&[("x-user-id", id)]))
        .collect();
    let r = h2_requests(gw.port, &requests);
    for ((id, want_bucket, want), r) in SPLIT_TABLE.iter().zip(&r) {
        // The native engine agrees with the table...
        let native = bucket("h2-release", id.as_bytes());
        assert_eq!(native, *want_bucket, "{id}: native bucket");
        let native_lane = if native < 4000 { "canary" } else { "base" };
        assert_eq!(native_lane, *want, "{id}");
        // ...and Envoy, over HTTP/2, with both.
        assert_eq!(backend(r), *want, "{id} (bucket {want_bucket})");
        assert_eq!(r.header("x-graylane"), Some(*want), "{id}");
    }
    assert_all_http2(&gw, SPLIT_TABLE.len() as u64);
}

/// One pod's sidecar as Istio runs it: inbound listeners (one per version
/// of the pod's app, HTTP/2 from the previous hop, HTTP/1.1 to the app) and
/// an outbound listener for the app's calls (HTTP/1.1 from the app, HTTP/2
/// to the next pod's inbound). graylane runs on both, as a `WasmPlugin`
/// without `match.mode` does in Istio.
struct Pod {
    /// (version, inbound port, the app's server).
    versions: Vec<(String, u16, Server)>,
    outbound: u16,
}

/// The hop's plugin: trust the edge's tags; `services` for the next pod.
fn hop_plugin(services: &str) -> String {
    format!(
        r#"{{"incoming": "trust", "services": {{{services}}}, "propagate": ["gray", "android"]}}"#
    )
}

impl Pod {
    /// `service`: the app's name (A, B, C); `next`: the service it calls
    /// (its host) through this pod's outbound listener.
    fn new(service: &str, versions: &[&str], next: Option<&str>) -> Pod {
        let outbound = free_port();
        let versions = versions
            .iter()
            .map(|v| {
                let server = app(service, v, next.map(|host| (outbound, host)));
                (v.to_string(), free_port(), server)
            })
            .collect();
        Pod { versions, outbound }
    }

    fn inbound(&self, version: &str) -> u16 {
        self.versions
            .iter()
            .find(|(v, _, _)| v == version)
            .map(|(_, port, _)| *port)
            .unwrap_or_else(|| panic!("no version {version}"))
    }

    /// The sidecar's bootstrap; `outbound_services`: what the outbound
    /// plugin routes (JSON members), `next`: (cluster, port) of the next
    /// pod's inbound listeners.
    fn sidecar(&self, name: &str, outbound_services: &str, next: &[(&str, u16)]) -> String {
        let inbound_plugin = wasm_filter(&hop_plugin(""));
        let mut listeners = String::new();
        let mut clusters = String::new();
        for (version, port, server) in &self.versions {
            let app_cluster = format!("{name}-app-{version}");
            let routes = format!(
                r#"
            - name: inbound
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: "{app_cluster}" }}"#
            );
            listeners.push_str(&listener_logging_protocol(
                &format!("inbound-{name}-{version}"),
                *port,
                &inbound_plugin,
                &routes,
            ));
            // To the app: plain HTTP/1.1, as Istio's inbound clusters for an
            // HTTP port.
            clusters.push_str(&cluster(&app_cluster, server.port));
        }
        if !next.is_empty() {
            let routes = r#"
            - name: outbound
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster_header: x-graylane-cluster }"#;
            listeners.push_str(&listener_logging_protocol(
                &format!("outbound-{name}"),
                self.outbound,
                &wasm_filter(&hop_plugin(outbound_services)),
                routes,
            ));
            for (cluster_name, port) in next {
                clusters.push_str(&h2_cluster(cluster_name, *port));
            }
        }
        bootstrap(&listeners, &clusters)
    }
}

/// The chain of `envoy/fulllink/` with HTTP/2 on every hop between
/// proxies: client -(h2)-> edge -(h2)-> A's sidecar -> A -> A's sidecar
/// -(h2)-> B's sidecar -> B -> B's sidecar -(h2)-> C's sidecar -> C.
struct H2Chain {
    edge: Envoy,
    edge_port: u16,
    sidecars: Vec<Envoy>,
    _pods: Vec<Pod>,
}

impl H2Chain {
    fn start() -> H2Chain {
        let c = Pod::new("C", &["base", "gray", "android"], None);
        let b = Pod::new("B", &["base"], Some("svc-c"));
        let a = Pod::new("A", &["base", "gray"], Some("svc-b"));
        let edge_port = free_port();
        let edge_plugin = r#"{"incoming": "ignore", "lanes": [
            {"name": "gray", "priority": 10, "match": {"header": "location", "exact": "cn-shenzhen"}},
            {"name": "android", "priority": 20, "match": {"header": "x-os", "exact": "android"}}]}"#;
        let edge_routes = r#"
            - name: svc-a
              domains: ["*"]
              routes:
              - match: { prefix: "/", headers: [ { name: x-graylane, string_match: { exact: gray } } ] }
                route: { cluster: a-gray }
              - match: { prefix: "/" }
                route: { cluster: a-base }"#;
        let edge = bootstrap(
            &listener_logging_protocol("edge", edge_port, &wasm_filter(edge_plugin), edge_routes),
            &(h2_cluster("a-base", a.inbound("base")) + &h2_cluster("a-gray", a.inbound("gray"))),
        );
        let configs = [
            edge,
            a.sidecar(
                "a",
                r#""svc-b": {"base": "b-base"}"#,
                &[("b-base", b.inbound("base"))],
            ),
            b.sidecar(
                "b",
                r#""svc-c": {"base": "c-base", "lanes": {"gray": "c-gray", "android": "c-android"}}"#,
                &[
                    ("c-base", c.inbound("base")),
                    ("c-gray", c.inbound("gray")),
                    ("c-android", c.inbound("android")),
                ],
            ),
            c.sidecar("c", "", &[]),
        ];
        // One after the other (like the HTTP/1.1 chain): started at once,
        // four filter compilations compete for the machine.
        let mut envoys: Vec<Envoy> = configs
            .iter()
            .map(|yaml| Envoy::start_with(yaml, &[], 1))
            .collect();
        let edge = envoys.remove(0);
        H2Chain {
            edge,
            edge_port,
            sidecars: envoys,
            _pods: vec![a, b, c],
        }
    }

    /// Sends HTTP/2 requests to the edge (`:authority` svc-a, these extra
    /// fields); the trace of each, and the baggage C received.
    fn call(&self, requests: &[&[(&str, &str)]]) -> Vec<(String, Option<String>)> {
        let fields: Vec<Vec<(&str, &str)>> = requests
            .iter()
            .map(|extra| {
                let mut f = get(&[(":authority", "svc-a")]);
                f.extend_from_slice(extra);
                f
            })
            .collect();
        h2_requests(self.edge_port, &fields)
            .iter()
            .map(|r| {
                assert_eq!(r.status, 200, "chain failed: {}", r.text());
                let v = r.json();
                (
                    v["trace"].as_str().unwrap_or_default().to_string(),
                    v["baggage"].as_str().map(str::to_string),
                )
            })
            .collect()
    }
}

#[test]
fn full_link_chain_with_http2_between_sidecars() {
    let chain = H2Chain::start();
    let got = chain.call(&[
        &[("location", "cn-shenzhen")],
        &[],
        &[("x-os", "android")],
        &[
            ("baggage", "userId=alice;prop=1"),
            ("location", "cn-shenzhen"),
        ],
        &[("baggage", "userId=alice;prop=1")],
        // Forged at the edge: removed there.
        &[("x-graylane", "gray"), ("baggage", "lane=gray,shadow=1")],
    ]);
    let want: [(&str, Option<&str>); 6] = [
        // B has no gray version: base at B, gray again at C.
        ("A[gray] -> B[base] -> C[gray]", Some("lane=gray")),
        ("A[base] -> B[base] -> C[base]", None),
        // A has no android version: the edge's default route is base.
        ("A[base] -> B[base] -> C[android]", Some("lane=android")),
        (
            "A[gray] -> B[base] -> C[gray]",
            Some("userId=alice;prop=1,lane=gray"),
        ),
        ("A[base] -> B[base] -> C[base]", Some("userId=alice;prop=1")),
        ("A[base] -> B[base] -> C[base]", Some("shadow=1")),
    ];
    for (i, ((trace, baggage), (want_trace, want_baggage))) in got.iter().zip(&want).enumerate() {
        assert_eq!(trace, want_trace, "request {i}");
        assert_eq!(baggage.as_deref(), *want_baggage, "request {i}");
    }

    // On the wire: every request reached each sidecar's inbound listener
    // over HTTP/2, and the edge got HTTP/2 from the client.
    let n = want.len() as u64;
    assert_eq!(chain.edge.counter("http.edge.downstream_rq_http2_total"), n);
    let [sa, sb, sc] = &chain.sidecars[..] else {
        panic!("three sidecars")
    };
    let inbound = |envoy: &Envoy, names: &[&str]| -> u64 {
        names
            .iter()
            .map(|l| envoy.counter(&format!("http.{l}.downstream_rq_http2_total")))
            .sum()
    };
    assert_eq!(inbound(sa, &["inbound-a-base", "inbound-a-gray"]), n);
    assert_eq!(inbound(sb, &["inbound-b-base"]), n);
    assert_eq!(
        inbound(
            sc,
            &["inbound-c-base", "inbound-c-gray", "inbound-c-android"]
        ),
        n
    );
    // The apps' outbound calls are HTTP/1.1; their sidecars send HTTP/2.
    assert_eq!(sa.counter("http.outbound-a.downstream_rq_http1_total"), n);
    assert!(sa.counter("cluster.b-base.upstream_cx_http2_total") >= 1);
    assert!(sb.counter("cluster.c-gray.upstream_cx_http2_total") >= 1);
    // The fallbacks at B (two gray requests, one android) are counted by
    // A's outbound sidecar; C's sidecar kept the propagated tags.
    assert_eq!(
        sa.wait_counter("wasmcustom.graylane.fallbacks.service.svc-b", 3),
        3
    );
    assert_eq!(
        sc.wait_counter(
            "wasmcustom.graylane.requests.source.propagated.lane.gray",
            2
        ),
        2
    );
}
