#![cfg(not(target_arch = "wasm32"))]
//! The lane fallback of `graylane istio` in real Envoy: an Envoy config in
//! the shape Istio generates for a sidecar calling `svc-b` (port 9080,
//! subsets `base` and `gray`), with the recipe's `EnvoyFilter` patches
//! applied to it the way istiod applies them, under steady load while the
//! gray subset loses its endpoints, fails, and comes back.
//!
//! What istiod would generate is built here from the recipe's
//! `DestinationRule` and `VirtualService`, following istio/istio:
//! - cluster names `outbound|PORT|SUBSET|FQDN` (`pilot/pkg/model/service.go`,
//!   `BuildSubsetKey`), EDS, with a subset's `outlierDetection` translated as
//!   `pilot/pkg/networking/core/cluster_traffic_policy.go`
//!   (`applyOutlierDetection`: enforcing 100 %, success rate off, panic
//!   threshold 0);
//! - the sidecar's outbound HTTP listener for the port, its route
//!   configuration named `9080` (`pilot/pkg/networking/core/listener.go`,
//!   `buildSidecarOutboundHTTPListenerOpts`), the virtual host
//!   `FQDN:9080` (`httproute.go`, `util.DomainName`), one route per
//!   `VirtualService` route with its `name` and, for one destination,
//!   `route.cluster` (`pilot/pkg/networking/core/route/route.go`,
//!   `translateRoute`, `processDestination`), and the retry policy of
//!   `route/retry/retry.go` (`ConvertPolicy`: 2 retries on
//!   `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`,
//!   `previous_hosts`, 5 host selection attempts, and `previous_priorities`
//!   with update frequency 2 for `retryRemoteLocalities`).
//!
//! The patches are applied as `pilot/pkg/networking/core/envoyfilter/`
//! does: `cluster_patch.go` (`InsertedClusters`: a `CLUSTER` `ADD` whose
//! context matches is appended to the proxy's clusters; `ApplyClusterMerge`
//! and `clusterMatch`: a `MERGE` into the clusters it names) and `rc_patch.go`
//! (`ApplyRouteConfigurationPatches` → `patchVirtualHosts` →
//! `patchHTTPRoute`: `routeConfigurationMatch` on the route configuration's
//! name and port, `virtualHostMatch` on the virtual host's name and
//! domains, `routeMatch` on the route's name and action; `MERGE` is
//! `proto.Merge`: scalars replaced, messages merged, lists appended, and
//! setting one member of a `oneof` clears the others). Every patch must
//! apply somewhere, or the test fails: a patch that matches nothing in
//! Istio's shape would do nothing in Istio either.

use graylane_wasm_tests::harness::{free_port, scratch_dir, wasm_path, Envoy};
use graylane_wasm_tests::load::App;
use graylane_wasm_tests::manifests::jsonpb_struct_json;
use graylane_wasm_tests::outage::{
    self, bursts, check_outage, check_return, describe_bursts, end_while_ejected, failed, in_lane,
    start_load, version_app, Counter, Phase, Phases, LATENCY,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FQDN: &str = "svc-b.default.svc.cluster.local";
const PORT: u16 = 9080;
const CONNECTIONS: usize = 4;
const RATE: f64 = 300.0;
/// `baseEjectionTime` of [`MESH`].
const EJECTION_TIME: Duration = Duration::from_secs(2);
/// `interval` of [`MESH`].
const INTERVAL: Duration = Duration::from_millis(500);
/// Requests of each kind (lane, other) in the phases without an outage:
/// 2 s of the load, as the fixed phases had.
const PER_KIND: usize = 300;
/// At least, in the outage phases, which also last until their ejections.
const PER_KIND_OUTAGE: usize = 100;

const CONFIG: &str = r#"{"lanes": [{"name": "gray", "match": {"header": "x-test-lane", "exact": "gray"}}],
  "services": {"svc-b": {"base": "outbound|9080|base|svc-b.default.svc.cluster.local",
                         "lanes": {"gray": "outbound|9080|gray|svc-b.default.svc.cluster.local"}}}}"#;

/// The mesh of the test: svc-b in `default`, the ejection time short so the
/// test sees gray come back within seconds.
const MESH: &str = "
namespace: default
image: oci://registry.test/graylane:0.1.0
outlierDetection:
  consecutive5xxErrors: 3
  consecutiveLocalOriginFailures: 1
  interval: 500ms
  baseEjectionTime: 2s
services:
  svc-b: {port: 9080}
";

/// The recipe's objects, every document of every file.
fn recipe() -> Vec<Value> {
    let mesh = graylane::istio::parse_mesh(MESH.as_bytes()).unwrap();
    let files = graylane::istio::generate(CONFIG.as_bytes(), &mesh).unwrap();
    let mut out = Vec::new();
    for f in files {
        for de in serde_norway::Deserializer::from_str(&f.text) {
            let v = Value::deserialize(de).unwrap();
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    out
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the recipe"))
}

fn subset_cluster(subset: &str) -> String {
    format!("outbound|{PORT}|{subset}|{FQDN}")
}

/// `applyOutlierDetection` of Istio for a `DestinationRule` outlierDetection.
fn istio_outlier_detection(o: &Value) -> Value {
    let mut out = json!({"enforcing_success_rate": 0});
    if let Some(v) = o["consecutive5xxErrors"].as_u64() {
        out["consecutive_5xx"] = json!(v);
        out["enforcing_consecutive_5xx"] = json!(if v > 0 { 100 } else { 0 });
    }
    for (from, to) in [
        ("interval", "interval"),
        ("baseEjectionTime", "base_ejection_time"),
    ] {
        if let Some(d) = o[from].as_str() {
            out[to] = json!(d);
        }
    }
    if let Some(p) = o["maxEjectionPercent"].as_u64().filter(|p| *p > 0) {
        out["max_ejection_percent"] = json!(p);
    }
    if o["splitExternalLocalOriginErrors"] == true {
        out["split_external_local_origin_errors"] = json!(true);
        if let Some(n) = o["consecutiveLocalOriginFailures"]
            .as_u64()
            .filter(|n| *n > 0)
        {
            out["consecutive_local_origin_failure"] = json!(n);
            out["enforcing_consecutive_local_origin_failure"] = json!(100);
        }
        out["enforcing_local_origin_success_rate"] = json!(0);
    }
    out
}

/// The EDS cluster istiod writes for a subset; endpoints come from a file
/// here (istiod's EDS in a mesh).
fn istio_cluster(subset: &str, policy: Option<&Value>, eds_dir: &Path) -> Value {
    let name = subset_cluster(subset);
    let max = 4294967295u32;
    let mut c = json!({
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": eds_dir.join(format!("{subset}.json")).display().to_string(),
                    "watched_directory": {"path": eds_dir.display().to_string()},
                },
            },
        },
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{
            "max_connections": max, "max_pending_requests": max,
            "max_requests": max, "max_retries": max,
        }]},
        "common_lb_config": {},
    });
    if let Some(o) = policy
        .map(|p| &p["outlierDetection"])
        .filter(|o| o.is_object())
    {
        c["outlier_detection"] = istio_outlier_detection(o);
        c["common_lb_config"]["healthy_panic_threshold"] = json!({"value": 0});
    }
    c
}

/// `retry.ConvertPolicy` of Istio for a `VirtualService` route's `retries`.
fn istio_retry_policy(retries: &Value) -> Value {
    let mut p = json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
        }],
        "host_selection_retry_max_attempts": 5,
    });
    if let Some(n) = retries["attempts"].as_u64() {
        p["num_retries"] = json!(n);
    }
    if retries["retryRemoteLocalities"] == true {
        p["retry_priority"] = json!({
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 2,
            },
        });
    }
    p
}

/// A `VirtualService` http route as istiod translates it for the sidecar.
fn istio_route(r: &Value) -> Value {
    let mut headers = Vec::new();
    for m in r["match"].as_array().into_iter().flatten() {
        for (name, h) in m["headers"].as_object().into_iter().flatten() {
            let exact = h["exact"].as_str().expect("exact header match");
            headers.push(json!({"name": name, "string_match": {"exact": exact}}));
        }
    }
    let dests = r["route"].as_array().expect("destinations");
    assert_eq!(
        dests.len(),
        1,
        "one destination: Istio writes route.cluster"
    );
    let subset = dests[0]["destination"]["subset"].as_str().unwrap();
    let mut m = json!({"prefix": "/"});
    if !headers.is_empty() {
        m["headers"] = json!(headers);
    }
    json!({
        "name": r["name"],
        "match": m,
        "route": {
            "cluster": subset_cluster(subset),
            "timeout": "0s",
            "retry_policy": istio_retry_policy(&r["retries"]),
            "max_grpc_timeout": "0s",
        },
    })
}

/// The sidecar of a caller of svc-b, as istiod configures it (before the
/// `EnvoyFilter`s).
fn istio_sidecar(objects: &[Value], listen: u16, eds_dir: &Path) -> Value {
    let dr = object(objects, "DestinationRule", "svc-b");
    let vs = object(objects, "VirtualService", "svc-b");
    let hop = object(objects, "WasmPlugin", "graylane-hop");
    let plugin_json = jsonpb_struct_json(
        &serde_norway::to_value(&hop["spec"]["pluginConfig"]).unwrap(),
        "pluginConfig",
    );
    let clusters: Vec<Value> = dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| istio_cluster(s["name"].as_str().unwrap(), s.get("trafficPolicy"), eds_dir))
        .collect();
    let routes: Vec<Value> = vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(istio_route)
        .collect();
    let domains: Vec<String> = [
        FQDN.to_string(),
        "svc-b".into(),
        "svc-b.default.svc".into(),
        "svc-b.default".into(),
    ]
    .iter()
    .flat_map(|d| [d.clone(), format!("{d}:{PORT}")])
    .collect();
    json!({
        // istio-agent's node: `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN`.
        "node": {"id": "sidecar~10.0.0.7~caller-0.default~default.svc.cluster.local", "cluster": "caller.default"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{{ADMIN}}"}}},
        "static_resources": {
            "listeners": [{
                "name": format!("0.0.0.0_{PORT}"),
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": format!("outbound_0.0.0.0_{PORT}"),
                        "http_filters": [
                            {
                                "name": "graylane",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "default.graylane-hop",
                                        "root_id": "graylane",
                                        "failure_policy": "FAIL_OPEN",
                                        "vm_config": {
                                            "runtime": "envoy.wasm.runtime.v8",
                                            "code": {"local": {"filename": wasm_path().display().to_string()}},
                                        },
                                        "configuration": {
                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                            "value": plugin_json,
                                        },
                                    },
                                },
                            },
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                        "route_config": {
                            "name": PORT.to_string(),
                            "validate_clusters": false,
                            "virtual_hosts": [{
                                "name": format!("{FQDN}:{PORT}"),
                                "domains": domains,
                                "routes": routes,
                            }],
                        },
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    })
}

/// `proto.Merge(dst, src)` on the JSON form of an Envoy message.
fn proto_merge(dst: &mut Value, src: &Value) {
    // The route action's cluster specifier is a oneof: setting one member
    // clears the others.
    const CLUSTER_SPECIFIER: &[&str] = &[
        "cluster",
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ];
    let (Some(d), Some(s)) = (dst.as_object_mut(), src.as_object()) else {
        *dst = src.clone();
        return;
    };
    if s.keys().any(|k| CLUSTER_SPECIFIER.contains(&k.as_str())) {
        for k in CLUSTER_SPECIFIER {
            if !s.contains_key(*k) {
                d.remove(*k);
            }
        }
    }
    for (k, v) in s {
        match (d.get_mut(k), v) {
            (Some(Value::Array(old)), Value::Array(new)) => old.extend(new.iter().cloned()),
            (Some(old @ Value::Object(_)), Value::Object(_)) => proto_merge(old, v),
            _ => {
                d.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `routeConfigurationMatch` for a sidecar (not a gateway).
fn route_configuration_matches(m: &Value, rc: &Value) -> bool {
    let rc_name = rc["name"].as_str().unwrap_or_default();
    if let Some(name) = m["name"].as_str().filter(|n| !n.is_empty()) {
        if name != rc_name {
            return false;
        }
    }
    if let Some(port) = m["portNumber"].as_u64().filter(|p| *p != 0) {
        if rc_name.parse::<u64>().ok() != Some(port) {
            return false;
        }
    }
    true
}

fn virtual_host_matches(m: &Value, vh: &Value) -> bool {
    let name_ok = m["name"]
        .as_str()
        .is_none_or(|n| n.is_empty() || vh["name"] == n);
    let domain_ok = m["domainName"].as_str().is_none_or(|d| {
        d.is_empty()
            || vh["domains"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|x| x == d))
    });
    name_ok && domain_ok
}

fn route_matches(m: &Value, r: &Value) -> bool {
    if let Some(name) = m["name"].as_str().filter(|n| !n.is_empty()) {
        if r["name"] != name {
            return false;
        }
    }
    match m["action"].as_str().unwrap_or("ANY") {
        "ANY" => true,
        "ROUTE" => r.get("route").is_some(),
        "REDIRECT" => r.get("redirect").is_some(),
        "DIRECT_RESPONSE" => r.get("direct_response").is_some(),
        other => panic!("route action {other}"),
    }
}

/// Applies an `EnvoyFilter`'s patches for `context` to an Envoy config, as
/// istiod does (see the module comment); panics on a patch it does not
/// model and on a patch that applies nowhere.
fn apply_envoy_filter(envoy: &mut Value, filter: &Value, context: &str) {
    for (i, p) in filter["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let ctx = p["match"]["context"].as_str().unwrap_or("ANY");
        if ctx != "ANY" && ctx != context {
            continue;
        }
        let op = p["patch"]["operation"].as_str().unwrap();
        let value = &p["patch"]["value"];
        let mut applied = 0;
        match (p["applyTo"].as_str().unwrap(), op) {
            ("CLUSTER", "ADD") => {
                envoy["static_resources"]["clusters"]
                    .as_array_mut()
                    .unwrap()
                    .push(value.clone());
                applied += 1;
            }
            ("CLUSTER", "MERGE") => {
                // `ApplyClusterMerge` with `clusterMatch`: by name, or by
                // the parts of `outbound|PORT|SUBSET|HOST`.
                let m = &p["match"]["cluster"];
                for c in envoy["static_resources"]["clusters"]
                    .as_array_mut()
                    .unwrap()
                {
                    let name = c["name"].as_str().unwrap_or_default().to_string();
                    let parts: Vec<&str> = name.split('|').collect();
                    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
                    let ok = match m["name"].as_str().filter(|n| !n.is_empty()) {
                        Some(n) => n == name,
                        None => {
                            m["subset"]
                                .as_str()
                                .is_none_or(|s| s.is_empty() || s == part(2))
                                && m["service"]
                                    .as_str()
                                    .is_none_or(|s| s.is_empty() || s == part(3))
                                && m["portNumber"]
                                    .as_u64()
                                    .is_none_or(|p| p == 0 || part(1) == p.to_string())
                        }
                    };
                    if ok {
                        proto_merge(c, value);
                        applied += 1;
                    }
                }
            }
            ("HTTP_ROUTE", "MERGE") => {
                let rm = &p["match"]["routeConfiguration"];
                let vm = &rm["vhost"];
                let routes_m = &vm["route"];
                for l in envoy["static_resources"]["listeners"]
                    .as_array_mut()
                    .unwrap()
                {
                    for fc in l["filter_chains"].as_array_mut().unwrap() {
                        for f in fc["filters"].as_array_mut().unwrap() {
                            let rc = &mut f["typed_config"]["route_config"];
                            if rc.is_null() || !route_configuration_matches(rm, rc) {
                                continue;
                            }
                            for vh in rc["virtual_hosts"].as_array_mut().unwrap() {
                                if !virtual_host_matches(vm, vh) {
                                    continue;
                                }
                                for r in vh["routes"].as_array_mut().unwrap() {
                                    if route_matches(routes_m, r) {
                                        proto_merge(r, value);
                                        applied += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (to, op) => panic!("configPatches[{i}]: {to} {op} is not modelled by this test"),
        }
        assert!(
            applied > 0,
            "configPatches[{i}] of {} applies to nothing in the Istio-shaped config: {p}",
            filter["metadata"]["name"]
        );
    }
}

/// The endpoints of a subset, written the way a file-based EDS update
/// reaches Envoy (a whole file moved into the watched directory).
fn set_endpoints(eds_dir: &Path, subset: &str, ports: &[u16]) {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}))
        .collect();
    let doc = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": subset_cluster(subset),
        "endpoints": if endpoints.is_empty() { json!([]) } else { json!([{"lb_endpoints": endpoints}]) },
    }]});
    let tmp: PathBuf = eds_dir.with_extension(format!("{subset}.tmp"));
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, eds_dir.join(format!("{subset}.json"))).unwrap();
}

/// Waits until Envoy's `/clusters` lists exactly these hosts for a subset.
/// Waits until the subset's cluster has exactly `ports` as hosts.
fn wait_hosts(envoy: &Envoy, subset: &str, ports: &[u16]) {
    outage::wait_hosts(envoy, &subset_cluster(subset), ports);
}

#[test]
fn a_lane_without_healthy_endpoints_falls_back_to_base_in_istios_shape() {
    let objects = recipe();
    let eds_dir = scratch_dir("istio-eds");
    let listen = free_port();
    let gray_failing = Arc::new(AtomicBool::new(false));
    let gray = App::start(version_app("gray", Arc::clone(&gray_failing)));
    let base = App::start(version_app("base", Arc::new(AtomicBool::new(false))));
    let refused = free_port(); // nothing listens there
    set_endpoints(&eds_dir, "base", &[base.port]);
    set_endpoints(&eds_dir, "gray", &[gray.port]);

    let mut config = istio_sidecar(&objects, listen, &eds_dir);
    let filter = object(&objects, "EnvoyFilter", "svc-b-graylane-fallback");
    assert_eq!(filter["metadata"]["namespace"], "default");
    apply_envoy_filter(&mut config, filter, "SIDECAR_OUTBOUND");
    let aggregate = graylane::istio::fallback_cluster_name(PORT, "gray", FQDN);
    let routes = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
    assert_eq!(
        routes[0]["route"]["cluster"],
        aggregate.as_str(),
        "{routes}"
    );
    assert_eq!(
        routes[1]["route"]["cluster"],
        subset_cluster("base").as_str()
    );
    // The merge kept what Istio generated around the cluster.
    assert_eq!(
        routes[0]["route"]["retry_policy"]["retry_priority"]["typed_config"]["update_frequency"],
        2
    );

    // What the bounds of the outage phases assume of the gray cluster.
    let gray_config = config["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == subset_cluster("gray").as_str())
        .unwrap();
    let od = &gray_config["outlier_detection"];
    assert_eq!(
        (&od["interval"], &od["base_ejection_time"]),
        (&json!("0.5s"), &json!("2s")),
        "{gray_config}"
    );
    assert_eq!(
        gray_config["common_lb_config"]["update_merge_window"], "0s",
        "{gray_config}"
    );
    let envoy = Envoy::start_with(&serde_json::to_string_pretty(&config).unwrap(), &[], 1);
    wait_hosts(&envoy, "gray", &[gray.port]);
    wait_hosts(&envoy, "base", &[base.port]);
    let one = |lane: bool| {
        let mut h: Vec<(&str, &[u8])> = vec![("host", b"svc-b:9080")];
        if lane {
            h.push(("baggage", b"lane=gray"));
        }
        let r = graylane_wasm_tests::harness::request(listen, "GET", "/", &h).unwrap();
        (
            r.status,
            r.json()["version"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(one(true), (200, "gray".into()));
    assert_eq!(one(false), (200, "base".into()));

    let running = start_load(
        listen,
        CONNECTIONS,
        RATE,
        &[("host", "svc-b:9080"), ("baggage", "lane=gray")],
        &[("host", "svc-b:9080")],
    );
    let gray_cluster = subset_cluster("gray");
    let local_failures = Counter::new(
        &envoy,
        &running,
        &format!(
            "cluster.{gray_cluster}.outlier_detection.ejections_enforced_consecutive_local_origin_failure"
        ),
    );
    let answered_5xx = Counter::new(
        &envoy,
        &running,
        &format!("cluster.{gray_cluster}.outlier_detection.ejections_enforced_consecutive_5xx"),
    );
    let mut phases = Phases::new(&running);

    // (1) gray healthy: a window of PER_KIND requests of each kind.
    phases.begin();
    phases.wait_requests(PER_KIND);
    phases.end("1 gray healthy");
    // (2) the gray subset has no endpoints (scaled to zero). Starts once
    // Envoy has the new endpoints: it posts them to its worker before
    // `/clusters` shows them, so every request sent after sees them.
    let change = running.now();
    set_endpoints(&eds_dir, "gray", &[]);
    wait_hosts(&envoy, "gray", &[]);
    phases.begin();
    let switch_2 = phases.from() - change;
    phases.wait_requests(PER_KIND);
    phases.end("2 gray has no endpoints");
    // (3a) a gray endpoint that refuses connections: until it is ejected,
    // then a while after. Each phase's requests have all ended before the
    // next change (`Phases::end`), so none sent just before a change counts
    // against its phase (what a 200 ms sleep stood for before 3b).
    phases.begin();
    let before_3a = local_failures.now();
    set_endpoints(&eds_dir, "gray", &[refused]);
    wait_hosts(&envoy, "gray", &[refused]);
    let ejected_3a = local_failures.wait_above(&before_3a);
    end_while_ejected(
        &mut phases,
        "3a every gray endpoint refuses connections",
        &local_failures,
        ejected_3a,
        EJECTION_TIME,
        PER_KIND_OUTAGE,
    );
    // (3b) the gray endpoint is back and answers 500 to everything: until
    // it has been ejected twice (the second time after its first ejection
    // ended), then a while after. Starts once Envoy has the endpoint.
    gray_failing.store(true, Ordering::SeqCst);
    let before_3b = answered_5xx.now();
    set_endpoints(&eds_dir, "gray", &[gray.port]);
    wait_hosts(&envoy, "gray", &[gray.port]);
    // (4) gray recovers; its ejection ends by itself. The recovery comes
    // while gray is still ejected (see `outage::end_while_ejected`), so no
    // request that reaches gray before it counts towards another ejection.
    let (first_3b, erroring) = outage::erroring_then_recovering(
        &mut phases,
        &answered_5xx,
        before_3b,
        &gray_failing,
        &gray,
        outage::Sizes {
            ejection: EJECTION_TIME,
            per_kind_outage: PER_KIND_OUTAGE,
            per_kind: PER_KIND,
        },
    );
    let phases = std::mem::take(&mut phases.list);
    running.stop();
    let report = running.join();

    let stats = envoy.stats();
    let stat = |n: &str| stats.get(n).copied().unwrap_or(0);
    let ejections_5xx = stat(&format!(
        "cluster.{gray_cluster}.outlier_detection.ejections_enforced_consecutive_5xx"
    ));
    let ejections_local = stat(&format!(
        "cluster.{gray_cluster}.outlier_detection.ejections_enforced_consecutive_local_origin_failure"
    ));
    let retries = stat(&format!("cluster.{aggregate}.upstream_rq_retry"));
    let summary = format!(
        "istio fallback: {}; gray ejections: {ejections_5xx} for 5xx, {ejections_local} for \
         connection failures; retries on the aggregate {retries}; EDS to empty gray took {:.0} ms",
        report.summary(CONNECTIONS),
        switch_2.as_secs_f64() * 1000.0
    );
    println!("{summary}");

    let count = |p: &Phase, gray: bool, label: &str| p.count(&report, gray, label);
    let total = |p: &Phase, gray: bool| p.samples(&report, gray).len();
    // (5) base requests are never affected, in any phase.
    outage::check_phases("istio fallback", &report, &phases, &summary);
    for p in &phases {
        let mut line = String::new();
        let mut t = p.from;
        while t < p.to {
            let e = t + Duration::from_millis(250);
            let in_slot: Vec<_> = report
                .samples
                .iter()
                .filter(|s| in_lane(s.index) && s.start >= t && s.start < e.min(p.to))
                .collect();
            let c = |l: &str| in_slot.iter().filter(|s| s.label == l).count();
            line.push_str(&format!(
                " {}/{}/{}",
                c("gray"),
                c("base"),
                in_slot.len() - c("gray") - c("base")
            ));
            t = e;
        }
        println!(
            "istio fallback: gray requests per 250 ms (to gray/to base/failed), phase {}:{line}",
            p.name
        );
    }
    let [healthy, empty, refusing, erroring_phase, back] = phases.as_slice() else {
        unreachable!()
    };
    // (1) every gray request reaches gray.
    assert_eq!(
        count(healthy, true, "gray"),
        total(healthy, true),
        "{summary}"
    );
    // (2) no endpoint: base, and not one failed request.
    assert_eq!(count(empty, true, "base"), total(empty, true), "{summary}");
    // (3a) refused connections: retried on base (previous_priorities) and
    // the endpoint ejected at its first failure: none fails.
    let failed_3a =
        total(refusing, true) - count(refusing, true, "gray") - count(refusing, true, "base");
    assert_eq!(failed_3a, 0, "refused: {summary}");
    assert!(ejections_local >= 1, "{summary}");
    // (3b) 500s are answers, not retried: they fail until outlier
    // detection ejects the endpoint (3 in a row), then base serves. The
    // ejection lasts 2 s, then the endpoint gets traffic again, fails 3
    // more and is ejected for twice as long. Bound: a burst of failures per
    // ejection, each over within LATENCY, and none while an ejection seen
    // in the stats lasts (see `check_outage`; before: 3 + C failures per
    // ejection, C the connections, which a stall of Envoy's main thread
    // exceeds at the load's rate).
    let lane_3b = erroring_phase.samples(&report, true);
    let failed_3b = count(erroring_phase, true, "500");
    assert!(ejections_5xx >= 2, "{summary}");
    // At least the second ejection's failures are in the phase.
    assert!(failed_3b >= 1, "500 phase: no request failed: {summary}");
    let seen_3b: Vec<_> = [first_3b].into_iter().chain(erroring.seen).collect();
    check_outage(
        "500",
        &lane_3b,
        &seen_3b,
        ejections_5xx,
        EJECTION_TIME,
        &summary,
    );
    // Every other gray request went to base. No allowance for gray requests
    // of the phase answered by a recovered gray (the Envoy Gateway test had
    // one): the phase's requests have all ended before gray recovers
    // (`Phases::end`), so there are none.
    assert_eq!(
        failed_3b + count(erroring_phase, true, "base"),
        total(erroring_phase, true),
        "500 phase: every other gray request on base: {summary}"
    );
    // (4) gray traffic returns once the ejection ends, and stays.
    let returned_after = check_return(
        back,
        &report,
        ejections_5xx,
        EJECTION_TIME,
        INTERVAL,
        &summary,
    );
    println!(
        "istio fallback: 500 phase: {failed_3b} failed requests before base took over, in bursts \
         {}; gray traffic back {:.0} ms after gray recovered",
        describe_bursts(&bursts(&lane_3b, failed, LATENCY)),
        returned_after.as_secs_f64() * 1000.0
    );
    assert_eq!(
        count(back, true, "500") + count(back, true, "gray") + count(back, true, "base"),
        total(back, true)
    );
}

/// Without the patches, Istio's shape does what istio/istio#41787 reports:
/// a lane subset with no endpoint answers 503, and no route falls back.
#[test]
fn without_the_patches_a_lane_without_endpoints_fails() {
    let objects = recipe();
    let eds_dir = scratch_dir("istio-eds-control");
    let listen = free_port();
    let base = App::start(version_app("base", Arc::new(AtomicBool::new(false))));
    set_endpoints(&eds_dir, "base", &[base.port]);
    set_endpoints(&eds_dir, "gray", &[]);
    let config = istio_sidecar(&objects, listen, &eds_dir);
    let envoy = Envoy::start_with(&serde_json::to_string_pretty(&config).unwrap(), &[], 1);
    wait_hosts(&envoy, "base", &[base.port]);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let r = graylane_wasm_tests::harness::request(
            listen,
            "GET",
            "/",
            &[("host", b"svc-b:9080"), ("baggage", b"lane=gray")],
        )
        .unwrap();
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    println!(
        "istio fallback: without the patches, 20 gray requests with no gray endpoint: {statuses:?}"
    );
    assert_eq!(statuses, [(503, 20)].into_iter().collect());
}
