//! The full-link chain edge -> A -> B -> C for lane continuity from trace
//! context (docs/full-link.md "Lane continuity from trace context"): apps that
//! forward only a trace header (`traceparent`, with a new span id per hop
//! as a tracer does, or `x-request-id`), never `baggage`, and one sidecar
//! Envoy per service holding its inbound listeners (one per version, as
//! each version's pod has its own) and the outbound listener its apps call
//! out through, all in one Envoy with two workers, so one plugin VM id and
//! one shared table.

use crate::configs::{bootstrap, cluster, listener, wasm_filter};
use crate::harness::{free_port, poll, request, Envoy, Received, Server};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The trace header the apps forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    Traceparent,
    RequestId,
}

/// How the chain is built.
#[derive(Clone, Debug)]
pub struct Options {
    pub forward: Forward,
    /// B has a gray version.
    pub b_gray: bool,
    /// The apps forward `baggage` too.
    pub forward_baggage: bool,
    /// `continuity` of the sidecars (JSON object text, without `side`).
    pub continuity: String,
    /// Listeners carry no `traffic_direction`; each listener's plugin
    /// config sets `continuity.side` instead.
    pub side_from_config: bool,
}

impl Options {
    pub fn new(forward: Forward) -> Options {
        Options {
            forward,
            b_gray: true,
            forward_baggage: false,
            continuity:
                r#"{"from": ["traceparent", "x-request-id"], "ttl": "60s", "slots": 65536}"#.into(),
            side_from_config: false,
        }
    }
}

/// A random u64 (a fresh SipHash key each time).
pub fn random_u64() -> u64 {
    RandomState::new().hash_one(0u8)
}

/// A new `traceparent` for trace `trace_id` with a fresh span id.
pub fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{:016x}-01", random_u64() | 1)
}

/// A new random trace id (32 hex).
pub fn new_trace_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64() | 1)
}

/// Holds requests marked `x-hold: 1` at app A until released: a trace
/// whose app is still working when something else happens.
#[derive(Default)]
pub struct Hold {
    pub held: AtomicBool,
    pub released: AtomicBool,
}

impl Hold {
    /// Waits until a request is held at A; `ended` says whether the call
    /// meant to be held has already returned (it never reached A's hold:
    /// its answer says where it went).
    pub fn wait_held(&self, ended: impl Fn() -> bool) {
        poll(Duration::from_secs(20), Duration::from_millis(5), || {
            if self.held.load(Ordering::SeqCst) || ended() {
                Ok(())
            } else {
                Err("no request held at A".to_string())
            }
        })
        .expect("held");
    }

    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

/// The trace id an app saw: `traceparent`'s trace id, or `x-request-id`.
fn seen_id(req: &Received, forward: Forward) -> String {
    match forward {
        Forward::Traceparent => req
            .header("traceparent")
            .and_then(|t| t.get(3..35))
            .unwrap_or("-")
            .to_string(),
        Forward::RequestId => req.header("x-request-id").unwrap_or("-").to_string(),
    }
}

/// An app version: answers `{"trace": "A[gray] -> B[gray] -> C[gray]",
/// "ids": ["<id A saw>", "<id B saw>", ...]}`, calling the next service
/// through its sidecar's outbound listener with only the trace header
/// (and `baggage` when asked).
pub fn app(
    name: &str,
    version: &str,
    next: Option<(u16, &str)>,
    opts: &Options,
    hold: Option<Arc<Hold>>,
) -> Server {
    let me = format!("{name}[{version}]");
    let next = next.map(|(port, host)| (port, host.to_string()));
    let (forward, with_baggage) = (opts.forward, opts.forward_baggage);
    Server::start(Arc::new(move |req: &Received| {
        let id = seen_id(req, forward);
        if let Some(hold) = &hold {
            if req.header("x-hold").is_some() {
                hold.held.store(true, Ordering::SeqCst);
                poll(Duration::from_secs(30), Duration::from_millis(5), || {
                    if hold.released.load(Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err(String::new())
                    }
                })
                .expect("released");
            }
        }
        let Some((port, host)) = &next else {
            let body = serde_json::json!({"trace": me, "ids": [id]});
            return (200, vec![], body.to_string().into_bytes());
        };
        let mut out: Vec<(&str, String)> = vec![("host", host.clone())];
        match forward {
            // A tracer continues the incoming trace with a new span, or
            // starts one when none came in.
            Forward::Traceparent => {
                let trace = match req.header("traceparent").and_then(|t| t.get(3..35)) {
                    Some(t) => t.to_string(),
                    None => new_trace_id(),
                };
                out.push(("traceparent", traceparent(&trace)));
            }
            Forward::RequestId => {
                if let Some(r) = req.header("x-request-id") {
                    out.push(("x-request-id", r.to_string()));
                }
            }
        }
        if with_baggage {
            if let Some(b) = req.header("baggage") {
                out.push(("baggage", b.to_string()));
            }
        }
        let raw: Vec<(&str, &[u8])> = out.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        crate::chain::call_next(&me, *port, &req.path, &raw, |trace, down| {
            let mut ids = vec![serde_json::Value::String(id)];
            ids.extend(down["ids"].as_array().cloned().unwrap_or_default());
            serde_json::json!({"trace": trace, "ids": ids})
        })
    }))
}

/// The sidecar plugin config: a hop that trusts incoming tags, knows the
/// next service's versions, and remembers and restores lanes.
pub fn sidecar_plugin(next: Option<(&str, bool)>, continuity: &str) -> String {
    let services = match next {
        Some((svc, true)) => format!(
            r#"{{"{svc}": {{"base": "{svc}-base-in", "lanes": {{"gray": "{svc}-gray-in"}}}}}}"#
        ),
        Some((svc, false)) => format!(r#"{{"{svc}": {{"base": "{svc}-base-in"}}}}"#),
        None => "{}".into(),
    };
    format!(
        r#"{{"incoming": "trust", "propagate": ["gray"], "services": {services}, "continuity": {continuity}}}"#
    )
}

/// A listener with a traffic direction (`INBOUND`, `OUTBOUND`).
pub fn directed_listener(
    name: &str,
    port: u16,
    direction: &str,
    filters: &str,
    hosts: &str,
) -> String {
    listener(name, port, filters, hosts).replacen(
        "\n    filter_chains:",
        &format!("\n    traffic_direction: {direction}\n    filter_chains:"),
        1,
    )
}

/// A virtual host sending everything to one cluster.
pub fn to_cluster(cluster: &str) -> String {
    format!(
        r#"
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: "{cluster}" }}"#
    )
}

/// A virtual host routing by the cluster header graylane sets.
pub fn by_cluster_header() -> String {
    r#"
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster_header: x-graylane-cluster }"#
        .to_string()
}

/// The edge as docs/full-link.md recommends for continuity: clients cannot
/// choose trace ids. Envoy treats every client as external
/// (`use_remote_address`, no internal addresses) and so replaces any
/// client `x-request-id` with its own (`generate_request_id`,
/// `preserve_external_request_id: false`); an early header mutation
/// removes a client's `traceparent` and `tracestate` before Envoy's tracer
/// reads them, and the tracer (OpenTelemetry, every request sampled)
/// starts a new trace. `collector` is where it sends its spans.
pub fn edge_listener(port: u16, plugin: &str, collector: &str) -> String {
    let hosts = r#"
            - name: edge
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster_header: x-graylane-cluster }"#;
    let hcm = format!(
        r#"          stat_prefix: edge
          use_remote_address: true
          generate_request_id: true
          preserve_external_request_id: false
          internal_address_config: {{ cidr_ranges: [ {{ address_prefix: 192.0.2.1, prefix_len: 32 }} ] }}
          early_header_mutation_extensions:
          - name: envoy.http.early_header_mutation.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation
              mutations:
              - remove: traceparent
              - remove: tracestate
          tracing:
            random_sampling: {{ value: 100 }}
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                service_name: edge
                http_service:
                  http_uri: {{ uri: "http://127.0.0.1/v1/traces", cluster: {collector}, timeout: 1s }}
"#
    );
    listener("edge", port, &wasm_filter(plugin), hosts).replacen(
        "          stat_prefix: edge\n",
        &hcm,
        1,
    )
}

/// The edge's plugin: gray for `location: cn-shenzhen`, A's versions.
pub const EDGE_PLUGIN: &str = r#"{"incoming": "ignore",
  "services": {"svc-a": {"base": "svc-a-base-in", "lanes": {"gray": "svc-a-gray-in"}}},
  "lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}]}"#;

/// The running chain.
pub struct TraceChain {
    pub edge: Envoy,
    pub sidecar_a: Envoy,
    pub sidecar_b: Envoy,
    pub sidecar_c: Envoy,
    pub edge_port: u16,
    /// A's outbound listener (what A's apps call).
    pub a_out: u16,
    pub hold: Arc<Hold>,
    _apps: Vec<Server>,
}

/// One call's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub trace: String,
    /// The trace id each app saw, A first.
    pub ids: Vec<String>,
}

impl TraceChain {
    pub fn start(opts: &Options) -> TraceChain {
        let hold = Arc::new(Hold::default());
        let mut apps = Vec::new();
        // (service, version) -> inbound listener port.
        let port = |_: &str| free_port();
        let (a_base_in, a_gray_in, a_out) = (port("a"), port("a"), port("a"));
        let (b_base_in, b_gray_in, b_out) = (port("b"), port("b"), port("b"));
        let (c_base_in, c_gray_in) = (port("c"), port("c"));

        let mut start_app = |name: &str, version: &str, next: Option<(u16, &str)>| {
            let h = (name == "A").then(|| Arc::clone(&hold));
            let s = app(name, version, next, opts, h);
            let p = s.port;
            apps.push(s);
            p
        };
        let a_base = start_app("A", "base", Some((a_out, "svc-b")));
        let a_gray = start_app("A", "gray", Some((a_out, "svc-b")));
        let b_base = start_app("B", "base", Some((b_out, "svc-c")));
        let b_gray = opts
            .b_gray
            .then(|| start_app("B", "gray", Some((b_out, "svc-c"))));
        let c_base = start_app("C", "base", None);
        let c_gray = start_app("C", "gray", None);

        // With directions, one plugin config for both sides (as an Istio
        // WasmPlugin in CLIENT_AND_SERVER mode); without, one per side.
        let with_side = |plugin: &str, side: &str| -> (String, &'static str) {
            if opts.side_from_config {
                let sided = plugin.replacen(
                    r#""continuity": {"#,
                    &format!(r#""continuity": {{"side": "{side}", "#),
                    1,
                );
                (wasm_filter(&sided), "UNSPECIFIED")
            } else if side == "inbound" {
                (wasm_filter(plugin), "INBOUND")
            } else {
                (wasm_filter(plugin), "OUTBOUND")
            }
        };
        let sidecar =
            |plugin: &str, inbound: &[(&str, u16, u16)], out: Option<(u16, &[(&str, u16)])>| {
                let mut listeners = String::new();
                let mut clusters = String::new();
                for (name, listen, app_port) in inbound {
                    let (filter, direction) = with_side(plugin, "inbound");
                    listeners += &directed_listener(
                        &format!("{name}-in"),
                        *listen,
                        direction,
                        &filter,
                        &to_cluster(&format!("app-{name}")),
                    );
                    clusters += &cluster(&format!("app-{name}"), *app_port);
                }
                if let Some((listen, next)) = out {
                    let (filter, direction) = with_side(plugin, "outbound");
                    listeners +=
                        &directed_listener("out", listen, direction, &filter, &by_cluster_header());
                    for (name, p) in next {
                        clusters += &cluster(name, *p);
                    }
                }
                Envoy::start_with(&bootstrap(&listeners, &clusters), &[], 2)
            };
        let sidecar_c = sidecar(
            &sidecar_plugin(None, &opts.continuity),
            &[
                ("svc-c-base", c_base_in, c_base),
                ("svc-c-gray", c_gray_in, c_gray),
            ],
            None,
        );
        let mut b_inbound = vec![("svc-b-base", b_base_in, b_base)];
        if let Some(b_gray) = b_gray {
            b_inbound.push(("svc-b-gray", b_gray_in, b_gray));
        }
        let sidecar_b = sidecar(
            &sidecar_plugin(Some(("svc-c", true)), &opts.continuity),
            &b_inbound,
            Some((
                b_out,
                &[("svc-c-base-in", c_base_in), ("svc-c-gray-in", c_gray_in)],
            )),
        );
        let sidecar_a = sidecar(
            &sidecar_plugin(Some(("svc-b", opts.b_gray)), &opts.continuity),
            &[
                ("svc-a-base", a_base_in, a_base),
                ("svc-a-gray", a_gray_in, a_gray),
            ],
            Some((
                a_out,
                &[("svc-b-base-in", b_base_in), ("svc-b-gray-in", b_gray_in)],
            )),
        );
        let edge_port = free_port();
        let collector = Server::echo("collector");
        let edge = Envoy::start_with(
            &bootstrap(
                &edge_listener(edge_port, EDGE_PLUGIN, "collector"),
                &(cluster("svc-a-base-in", a_base_in)
                    + &cluster("svc-a-gray-in", a_gray_in)
                    + &cluster("collector", collector.port)),
            ),
            &[],
            2,
        );
        TraceChain {
            edge,
            sidecar_a,
            sidecar_b,
            sidecar_c,
            edge_port,
            a_out,
            hold,
            _apps: {
                apps.push(collector);
                apps
            },
        }
    }

    /// Sends a request to the edge; the trace and the ids the apps saw.
    pub fn call(&self, headers: &[(&str, &str)]) -> Answer {
        call_at(self.edge_port, "svc-a", headers)
    }

    /// Calls svc-b as app A does, through A's outbound listener.
    pub fn call_as_a(&self, headers: &[(&str, &str)]) -> Answer {
        call_at(self.a_out, "svc-b", headers)
    }
}

/// A call to `host` through a listener; the trace and the ids the apps saw.
pub fn call_at(port: u16, host: &str, headers: &[(&str, &str)]) -> Answer {
    {
        let mut raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        raw.push(("host", host.as_bytes()));
        let r = request(port, "GET", "/", &raw).expect("request");
        assert_eq!(r.status, 200, "chain failed: {}", r.text());
        let v = r.json();
        Answer {
            trace: v["trace"].as_str().unwrap_or_default().to_string(),
            ids: v["ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl TraceChain {
    /// A gray call (`location: cn-shenzhen`) or a base one.
    pub fn call_lane(&self, gray: bool, extra: &[(&str, &str)]) -> Answer {
        let mut h = extra.to_vec();
        if gray {
            h.push(("location", "cn-shenzhen"));
        }
        self.call(&h)
    }
}

/// The lanes of a trace string: `A[gray] -> B[base]` -> `["gray", "base"]`.
pub fn lanes(trace: &str) -> Vec<&str> {
    trace
        .split(" -> ")
        .filter_map(|hop| hop.split_once('[')?.1.strip_suffix(']'))
        .collect()
}
