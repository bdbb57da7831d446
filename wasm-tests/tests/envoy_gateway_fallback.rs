#![cfg(not(target_arch = "wasm32"))]
//! The lane fallback of `envoy/envoy-gateway/fallback/` in real Envoy: the
//! cluster, routes and outlier detection Envoy Gateway generates from the
//! recipe's `Backend`s, `HTTPRoute` and `BackendTrafficPolicy` (with the
//! `EnvoyPatchPolicy` applied), graylane as the `EnvoyExtensionPolicy`
//! gives it, under steady load while the gray version loses its endpoints,
//! fails, and comes back.
//!
//! What Envoy Gateway generates, following envoyproxy/gateway (v1.9):
//! - `internal/gatewayapi/route.go`: a rule's backendRef `i` is the
//!   destination setting `httproute/NS/NAME/rule/N/backend/i`
//!   (`irDestinationSettingName`, `helpers.go`); a `Backend` with
//!   `fallback: true` gets `Priority = 1` (`processBackendDestinationSetting`),
//!   and a rule with a fallback backend keeps all its backends in one
//!   cluster, `httproute/NS/NAME/rule/N` (`isFallbackBackend`,
//!   `weightedRuleBackendsMustBeInOneCluster`); the route sends to it with
//!   `route.cluster`;
//! - `internal/xds/translator/cluster.go`: `buildXdsClusterLoadAssignment` /
//!   `buildWeightedLocalities` write one locality per destination setting
//!   (`region` = its name, weight 1, its priority); `buildXdsCluster` sets
//!   `ignore_health_on_host_removal`, an empty `common_lb_config` (so no
//!   `update_merge_window`: Envoy's 1 s), the least-request
//!   `load_balancing_policy` with locality-weighted LB, and
//!   `buildXdsOutlierDetection` for `healthCheck.passive`
//!   (`internal/gatewayapi/clustersettings.go`, `buildPassiveHealthCheck`;
//!   the API server fills the CRD defaults of
//!   `api/v1alpha1/healthcheck_types.go` for fields not given);
//! - `internal/xds/translator/jsonpatch.go`: an `EnvoyPatchPolicy` JSON
//!   patch is applied to the resource's JSON with proto field names.
//!
//! Where the test differs: the Backends name headless Services by FQDN, so
//! Envoy Gateway's cluster resolves them by DNS (`envoy.cluster.dns`); here
//! the same two localities come from a watched EDS file, which the test
//! rewrites as DNS would answer (no ready pod: no address). The filter's
//! code is a local file (its remote fetch is covered by
//! `envoy_gateway_parity`). The ejection time is 2 s instead of the
//! recipe's 30 s, so that gray comes back within the test.

use graylane_wasm_tests::harness::{free_port, repo_root, scratch_dir, wasm_path, Envoy};
use graylane_wasm_tests::load::{self, App};
use graylane_wasm_tests::manifests::{apiextensions_json, objects_in, Object};
use graylane_wasm_tests::outage::{
    self, bursts, check_outage, check_return, describe_bursts, end_while_ejected, failed, in_lane,
    version_app, wait_hosts, Counter, Phase, Phases, LATENCY,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONNECTIONS: usize = 4;
const RATE: f64 = 300.0;
const LANE: &str = "httproute/demo/svc-a/rule/0";
const DEFAULT: &str = "httproute/demo/svc-a/rule/1";
const EJECTION: &str = "2s";
/// [`EJECTION`] as a duration.
const EJECTION_TIME: Duration = Duration::from_secs(2);
/// The recipe's outlier detection interval (checked in `eg_gateway`).
const INTERVAL: Duration = Duration::from_secs(1);
/// Requests of each kind (lane, other) in the phases without an outage:
/// 2 s of the load, as the fixed phases had.
const PER_KIND: usize = 300;
/// At least, in the outage phases, which also last until their ejections.
const PER_KIND_OUTAGE: usize = 100;
/// Envoy's default `update_merge_window`, which Envoy Gateway keeps.
const MERGE_WINDOW: Duration = Duration::from_secs(1);

/// `kubectl apply -f envoy/envoy-gateway/` then `-f fallback/`: objects of
/// the second replace those of the first with the same kind and name.
fn recipe() -> Vec<Object> {
    let root = repo_root().join("envoy/envoy-gateway");
    let fallback = objects_in(&root.join("fallback"), &root);
    let mut all: Vec<Object> = objects_in(&root, &root)
        .into_iter()
        .filter(|o| {
            !fallback
                .iter()
                .any(|f| f.kind() == o.kind() && f.name() == o.name())
        })
        .collect();
    all.extend(fallback);
    all
}

fn object<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the recipe"))
}

fn to_json(y: &serde_norway::Value) -> Value {
    serde_json::to_value(y).unwrap()
}

/// `buildPassiveHealthCheck` + `buildXdsOutlierDetection`, with the CRD
/// defaults the API server fills in.
fn eg_outlier_detection(passive: &Value) -> Value {
    let mut p = json!({
        "splitExternalLocalOriginErrors": false, "interval": "3s",
        "consecutiveLocalOriginFailures": 5, "consecutive5XxErrors": 5,
        "baseEjectionTime": "30s", "maxEjectionPercent": 10,
    });
    for (k, v) in passive.as_object().unwrap() {
        p[k] = v.clone();
    }
    let mut od = json!({
        "base_ejection_time": p["baseEjectionTime"],
        "interval": p["interval"],
        "split_external_local_origin_errors": p["splitExternalLocalOriginErrors"],
        "consecutive_local_origin_failure": p["consecutiveLocalOriginFailures"],
        "consecutive_5xx": p["consecutive5XxErrors"],
    });
    if p["maxEjectionPercent"].as_u64().unwrap_or(0) > 0 {
        od["max_ejection_percent"] = p["maxEjectionPercent"].clone();
    }
    if let Some(n) = p.get("consecutiveGatewayErrors") {
        od["consecutive_gateway_failure"] = n.clone();
        od["enforcing_consecutive_gateway_failure"] = json!(100);
    }
    if let Some(b) = p.get("alwaysEjectOneEndpoint") {
        od["always_eject_one_host"] = b.clone();
    }
    od
}

fn eg_cluster(name: &str, outlier: &Value, eds_dir: &Path) -> Value {
    json!({
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": eds_file(eds_dir, name).display().to_string(),
                    "watched_directory": {"path": eds_dir.display().to_string()},
                },
            },
        },
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": 32768,
        "ignore_health_on_host_removal": true,
        "common_lb_config": {},
        "outlier_detection": outlier,
        "load_balancing_policy": {"policies": [{"typed_extension_config": {
            "name": "envoy.load_balancing_policies.least_request",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
                "locality_lb_config": {"locality_weighted_lb_config": {}},
            },
        }}]},
    })
}

fn eds_file(eds_dir: &Path, cluster: &str) -> PathBuf {
    eds_dir.join(format!("{}.json", cluster.replace('/', "_")))
}

/// The endpoints of a cluster, one locality per backendRef (its ports and
/// priority), moved whole into the watched directory.
fn set_endpoints(eds_dir: &Path, cluster: &str, backends: &[(&[u16], u32)]) {
    let localities: Vec<Value> = backends
        .iter()
        .enumerate()
        .map(|(i, (ports, priority))| {
            let eps: Vec<Value> = ports
                .iter()
                .map(|p| json!({
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}},
                    "load_balancing_weight": 1,
                }))
                .collect();
            json!({
                "locality": {"region": format!("{cluster}/backend/{i}")},
                "lb_endpoints": eps,
                "load_balancing_weight": 1,
                "priority": priority,
            })
        })
        .collect();
    let doc = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster,
        "endpoints": localities,
    }]});
    let file = eds_file(eds_dir, cluster);
    let tmp = eds_dir.with_extension(format!("{}.tmp", cluster.replace('/', "_")));
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// An RFC 6902 `add` on the JSON of a resource (what `jsonpatch.go` does
/// for `op: add`): the parent must exist.
fn json_patch_add(doc: &mut Value, path: &str, value: Value) {
    let (parent, key) = path.rsplit_once('/').unwrap();
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("JSON patch: {parent} is not in the cluster"));
    target[key] = value;
}

/// The gateway's listener and clusters, as Envoy Gateway writes them for
/// the recipe (see the module comment).
/// `patch`: with the recipe's `EnvoyPatchPolicy` applied.
fn eg_gateway(objects: &[Object], listen: u16, eds_dir: &Path, patch: bool) -> Value {
    // The lane rule: two Backends, the second the fallback.
    let route = object(objects, "HTTPRoute", "svc-a");
    let rules = to_json(&route.spec()["rules"]);
    let refs = rules[0]["backendRefs"].as_array().unwrap();
    let kinds: Vec<(&str, bool)> = refs
        .iter()
        .map(|r| {
            assert_eq!(r["kind"], "Backend", "{r}");
            let b = object(objects, "Backend", r["name"].as_str().unwrap());
            (b.name(), b.spec()["fallback"].as_bool() == Some(true))
        })
        .collect();
    assert_eq!(kinds, [("svc-a-gray", false), ("svc-a-base", true)]);
    assert!(rules[1].get("matches").is_none(), "rule 1 is the default");

    let btp = object(objects, "BackendTrafficPolicy", "svc-a-health");
    assert_eq!(to_json(&btp.spec()["targetRefs"][0]["name"]), "svc-a");
    let mut passive = to_json(&btp.spec()["healthCheck"]["passive"]);
    assert_eq!(
        passive["interval"],
        format!("{}s", INTERVAL.as_secs()),
        "the interval the tests' bounds assume"
    );
    passive["baseEjectionTime"] = json!(EJECTION);
    let outlier = eg_outlier_detection(&passive);
    let mut lane = eg_cluster(LANE, &outlier, eds_dir);
    let default = eg_cluster(DEFAULT, &outlier, eds_dir);

    let epp = object(objects, "EnvoyPatchPolicy", "svc-a-fallback-merge-window");
    for p in to_json(&epp.spec()["jsonPatches"]).as_array().unwrap() {
        assert_eq!(
            p["type"],
            "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        );
        assert_eq!(p["name"], LANE, "the patch names the lane rule's cluster");
        assert_eq!(p["operation"]["op"], "add");
        if !patch {
            continue;
        }
        json_patch_add(
            &mut lane,
            p["operation"]["path"].as_str().unwrap(),
            p["operation"]["value"].clone(),
        );
    }

    let policy = object(objects, "EnvoyExtensionPolicy", "graylane-edge");
    let wasm = &policy.spec()["wasm"][0];
    let config = apiextensions_json(&wasm["config"], "spec.wasm[0].config");
    let filter = "envoy.filters.http.wasm/envoyextensionpolicy/demo/graylane-edge/wasm/0";
    let on = json!({filter: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}});
    let header = &rules[0]["matches"][0]["headers"][0];
    let routes = json!([
        {
            "name": format!("{LANE}/match/0/shop_example_com"),
            "match": {"prefix": "/", "headers": [{
                "name": header["name"], "string_match": {"exact": header["value"]},
            }]},
            "route": {"cluster": LANE, "upgrade_configs": [{"upgrade_type": "websocket"}]},
            "typed_per_filter_config": on,
        },
        {
            "name": format!("{DEFAULT}/match/0/shop_example_com"),
            "match": {"prefix": "/"},
            "route": {"cluster": DEFAULT, "upgrade_configs": [{"upgrade_type": "websocket"}]},
            "typed_per_filter_config": on,
        },
    ]);
    let wasm_filter = json!({
        "name": filter,
        "disabled": true,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": wasm["name"].as_str().unwrap(),
                "root_id": wasm["rootID"].as_str().unwrap(),
                "vm_config": {
                    "vm_id": "envoyextensionpolicy/demo/graylane-edge/wasm/0",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path().display().to_string()}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config,
                },
            },
        },
    });
    json!({
        // A gateway Envoy's node (the pod's name as id).
        "node": {"id": "envoy-demo-graylane-gateway-0", "cluster": "demo/graylane-gateway"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{{ADMIN}}"}}},
        "static_resources": {
            "listeners": [{
                "name": "demo/graylane-gateway/http",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "per_connection_buffer_limit_bytes": 32768,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "http-80",
                        "use_remote_address": true,
                        "normalize_path": true,
                        "merge_slashes": true,
                        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                        "server_header_transformation": "PASS_THROUGH",
                        "http_filters": [
                            wasm_filter,
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                "suppress_envoy_headers": true,
                            }},
                        ],
                        "route_config": {
                            "name": "demo/graylane-gateway/http",
                            "ignore_port_in_host_matching": true,
                            "virtual_hosts": [{
                                "name": "demo/graylane-gateway/http/shop_example_com",
                                "domains": ["shop.example.com"],
                                "routes": routes,
                            }],
                        },
                    },
                }]}],
            }],
            "clusters": [lane, default],
        },
    })
}

/// Steady load on the gateway: even requests in the gray lane (the header
/// of the policy's lane rule), odd ones in none; each labelled with the
/// version that answered, else the status.
fn start_load(listen: u16) -> load::Running {
    outage::start_load(
        listen,
        CONNECTIONS,
        RATE,
        &[("host", "shop.example.com"), ("location", "cn-shenzhen")],
        &[("host", "shop.example.com")],
    )
}

#[test]
fn a_lane_without_healthy_endpoints_falls_back_to_base_in_envoy_gateways_shape() {
    let objects = recipe();
    let eds_dir = scratch_dir("eg-eds");
    let listen = free_port();
    let gray_failing = Arc::new(AtomicBool::new(false));
    let gray = App::start(version_app("gray", Arc::clone(&gray_failing)));
    let base = App::start(version_app("base", Arc::new(AtomicBool::new(false))));
    let refused = free_port(); // nothing listens there
    set_endpoints(&eds_dir, LANE, &[(&[gray.port], 0), (&[base.port], 1)]);
    set_endpoints(&eds_dir, DEFAULT, &[(&[base.port], 0)]);

    let config = eg_gateway(&objects, listen, &eds_dir, true);
    let lane_cluster = &config["static_resources"]["clusters"][0];
    assert_eq!(
        lane_cluster["common_lb_config"]["update_merge_window"],
        "0s"
    );
    assert_eq!(
        lane_cluster["outlier_detection"]["max_ejection_percent"],
        100
    );
    let envoy = Envoy::start_with(&serde_json::to_string_pretty(&config).unwrap(), &[], 1);
    wait_hosts(&envoy, LANE, &[gray.port, base.port]);
    wait_hosts(&envoy, DEFAULT, &[base.port]);
    let one = |lane: bool| {
        let mut h: Vec<(&str, &[u8])> = vec![("host", b"shop.example.com")];
        if lane {
            h.push(("location", b"cn-shenzhen"));
        }
        let r = graylane_wasm_tests::harness::request(listen, "GET", "/", &h).unwrap();
        (
            r.status,
            r.json()["version"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(one(true), (200, "gray".into()));
    assert_eq!(one(false), (200, "base".into()));

    let running = start_load(listen);
    let mut phases = Phases::new(&running);
    let local_failures = Counter::new(
        &envoy,
        &running,
        &format!(
            "cluster.{LANE}.outlier_detection.ejections_enforced_consecutive_local_origin_failure"
        ),
    );
    let answered_5xx = Counter::new(
        &envoy,
        &running,
        &format!("cluster.{LANE}.outlier_detection.ejections_enforced_consecutive_5xx"),
    );

    // (1) gray healthy: a window of PER_KIND requests of each kind.
    phases.begin();
    phases.wait_requests(PER_KIND);
    phases.end("1 gray healthy");
    // (2) no gray pod ready: the name resolves to no address. Starts once
    // Envoy has the new endpoints: it posts them to its worker before
    // `/clusters` shows them, so every request sent after sees them.
    set_endpoints(&eds_dir, LANE, &[(&[], 0), (&[base.port], 1)]);
    wait_hosts(&envoy, LANE, &[base.port]);
    phases.begin();
    phases.wait_requests(PER_KIND);
    phases.end("2 gray has no endpoints");
    // (3a) a gray pod that refuses connections: until it is ejected, then
    // a while after.
    phases.begin();
    let before_3a = local_failures.now();
    set_endpoints(&eds_dir, LANE, &[(&[refused], 0), (&[base.port], 1)]);
    wait_hosts(&envoy, LANE, &[refused, base.port]);
    let ejected_3a = local_failures.wait_above(&before_3a);
    let refusing = end_while_ejected(
        &mut phases,
        "3a every gray endpoint refuses connections",
        &local_failures,
        ejected_3a,
        EJECTION_TIME,
        PER_KIND_OUTAGE,
    );
    // (3b) the gray pod answers again, 500 to everything: until it has been
    // ejected twice (the second time after its first ejection ended), then
    // a while after. Starts once Envoy has the endpoint (see (2)).
    gray_failing.store(true, Ordering::SeqCst);
    let before_3b = answered_5xx.now();
    set_endpoints(&eds_dir, LANE, &[(&[gray.port], 0), (&[base.port], 1)]);
    wait_hosts(&envoy, LANE, &[gray.port, base.port]);
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
        "cluster.{LANE}.outlier_detection.ejections_enforced_consecutive_5xx"
    ));
    let ejections_local = stat(&format!(
        "cluster.{LANE}.outlier_detection.ejections_enforced_consecutive_local_origin_failure"
    ));
    let summary = format!(
        "envoy gateway fallback: {}; gray ejections: {ejections_5xx} for 5xx, {ejections_local} \
         for connection failures",
        report.summary(CONNECTIONS),
    );
    println!("{summary}");

    let in_phase = |p: &Phase, gray: bool| p.samples(&report, gray);
    let count = |p: &Phase, gray: bool, label: &str| p.count(&report, gray, label);
    let total = |p: &Phase, gray: bool| in_phase(p, gray).len();
    // (5) base requests are never affected, in any phase.
    outage::check_phases("envoy gateway fallback", &report, &phases, &summary);
    let [healthy, empty, refusing_phase, erroring_phase, back] = phases.as_slice() else {
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
    // (3a) refused connections fail (Envoy Gateway sets no retry) until
    // the endpoint is ejected, at its first failure; then base.
    let failed_3a = in_phase(refusing_phase, true)
        .into_iter()
        .filter(|s| failed(s))
        .count();
    assert!(ejections_local >= 1, "{summary}");
    check_outage(
        "refused",
        &in_phase(refusing_phase, true),
        &refusing.seen,
        ejections_local,
        EJECTION_TIME,
        &summary,
    );
    // (3b) 500s fail until 3 in a row eject the endpoint; an ejection
    // lasts 2 s times the number of ejections, then 3 more fail.
    let failed_3b = count(erroring_phase, true, "500");
    assert!(ejections_5xx >= 2, "{summary}");
    // At least the second ejection's failures are in the phase.
    assert!(failed_3b >= 1, "500 phase: no request failed: {summary}");
    let seen_3b: Vec<_> = [first_3b].into_iter().chain(erroring.seen).collect();
    check_outage(
        "500",
        &in_phase(erroring_phase, true),
        &seen_3b,
        ejections_5xx,
        EJECTION_TIME,
        &summary,
    );
    // Every other gray request went to base: the phase's requests all ended
    // before gray recovered, so none was answered by a recovered gray.
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
        "envoy gateway fallback: refused phase: {failed_3a} failed in bursts {}; 500 phase: \
         {failed_3b} failed in bursts {}; gray traffic back {:.0} ms after gray recovered",
        describe_bursts(&bursts(&in_phase(refusing_phase, true), failed, LATENCY)),
        describe_bursts(&bursts(&in_phase(erroring_phase, true), failed, LATENCY)),
        returned_after.as_secs_f64() * 1000.0
    );
}

/// The same 500 outage without the `EnvoyPatchPolicy`: Envoy's 1 s
/// `update_merge_window` holds back an ejection that comes within 1 s of
/// the previous health change of gray (as the ejection that follows the
/// end of an ejection does), and the gray requests keep failing meanwhile,
/// after Envoy has enforced the ejection. Shows why the recipe has the
/// patch.
#[test]
fn without_the_merge_window_patch_an_ejection_waits() {
    let objects = recipe();
    let eds_dir = scratch_dir("eg-eds-no-patch");
    let listen = free_port();
    let gray_failing = Arc::new(AtomicBool::new(false));
    let gray = App::start(version_app("gray", Arc::clone(&gray_failing)));
    let base = App::start(version_app("base", Arc::new(AtomicBool::new(false))));
    set_endpoints(&eds_dir, LANE, &[(&[gray.port], 0), (&[base.port], 1)]);
    set_endpoints(&eds_dir, DEFAULT, &[(&[base.port], 0)]);
    let config = eg_gateway(&objects, listen, &eds_dir, false);
    assert!(
        config["static_resources"]["clusters"][0]["common_lb_config"]
            .get("update_merge_window")
            .is_none()
    );
    let envoy = Envoy::start_with(&serde_json::to_string_pretty(&config).unwrap(), &[], 1);
    wait_hosts(&envoy, LANE, &[gray.port, base.port]);
    wait_hosts(&envoy, DEFAULT, &[base.port]);
    let running = start_load(listen);
    // The load under way (was a 500 ms sleep; nothing depends on how long).
    running.wait_done(100);
    let ejected = Counter::new(
        &envoy,
        &running,
        &format!("cluster.{LANE}.outlier_detection.ejections_enforced_consecutive_5xx"),
    );
    let merged = Counter::new(
        &envoy,
        &running,
        "cluster_manager.cluster_updated_via_merge",
    );
    let before = ejected.now();
    // Gray fails from `from` on: stored first, so that no request started
    // at or after `from` is answered by a gray that still works.
    gray_failing.store(true, Ordering::SeqCst);
    let from = running.now();
    // Envoy delivers a host's health change to its worker at once if the
    // last change of that priority was more than the merge window (1 s)
    // before; else it holds it until the window's timer. Ejection 1 may
    // come either way; it ends 2-3 s later (delivered at once) and the
    // ejection that follows, 3 failures later, is held: the window.
    let first = ejected.wait_above(&before);
    let second = ejected.wait_above(&first);
    let merges = merged.now();
    // Ejection 2 came after `second.before`; its merged delivery, at least
    // MERGE_WINDOW after it, comes after this read unless the test thread
    // stalled for 4 LATENCY (false failure < 1e-6 per run, see LATENCY).
    assert!(
        merges.after < second.before + MERGE_WINDOW,
        "the test thread stalled: read the merges {:?} after the ejection",
        merges.after - second.before
    );
    // The held ejection reaches the worker: Envoy counts the merged update.
    let delivered = merged.wait_above(&merges);
    // Then a while with gray ejected on the worker too (for the check
    // that no request fails once it is).
    let quiet = delivered.after + 2 * LATENCY;
    if let Some(wait) = quiet.checked_sub(running.now()) {
        std::thread::sleep(wait);
    }
    let to = running.now();
    running.stop();
    let report = running.join();
    let ejections = envoy.counter(&format!(
        "cluster.{LANE}.outlier_detection.ejections_enforced_consecutive_5xx"
    ));
    let gray_samples: Vec<_> = report
        .samples
        .iter()
        .filter(|s| in_lane(s.index) && s.start >= from && s.start < to)
        .collect();
    let failed_all = gray_samples.iter().filter(|s| s.label == "500").count();
    let to_base = gray_samples.iter().filter(|s| s.label == "base").count();
    let held: Vec<_> = gray_samples
        .iter()
        .filter(|s| s.label == "500" && s.start >= second.after)
        .collect();
    let found = bursts(&gray_samples, failed, MERGE_WINDOW + LATENCY);
    println!(
        "envoy gateway fallback without the merge window patch: 500 phase {:.1} s: gray requests \
         {}: failed {failed_all} in bursts {}, to base {to_base}; {ejections} ejections; {} \
         failed after the second ejection was enforced (before the merged update {:.0} ms \
         later); {}",
        (to - from).as_secs_f64(),
        gray_samples.len(),
        describe_bursts(&found),
        held.len(),
        (delivered.after - second.after).as_secs_f64() * 1000.0,
        report.summary(CONNECTIONS)
    );
    assert!(ejections >= 2);
    assert_eq!(failed_all + to_base, gray_samples.len());
    // The window let requests through after the ejection: requests started
    // after Envoy had enforced ejection 2 (seen in its stats) still reached
    // gray and failed (with the patch none does, see `check_outage`). Gray
    // gets a lane request every 7 ms and the window holds the ejection back
    // for 1 s after it: no such request in that second would take a stall
    // of the load of 3 LATENCY (false failure < 1e-6 per run). (Before:
    // more than 3 + C failures, a count that depends on the load's rate.)
    assert!(
        !held.is_empty(),
        "no request failed after the second ejection was enforced: {found:?}"
    );
    // At most a burst per ejection, each over within the window and
    // LATENCY of its first failure (Envoy's timer delivers a held update
    // MERGE_WINDOW after it); no failure once the held update is delivered
    // (exact: see `check_outage`). (Before: (3 + C + 200) failures per
    // ejection, 200 being the window's worth of requests at the load's
    // rate, which a load catching up after a stall exceeds.)
    assert!(
        found.len() as u64 <= ejections,
        "{} bursts of failures {} but {ejections} ejections",
        found.len(),
        describe_bursts(&found)
    );
    let after_delivery: Vec<_> = gray_samples
        .iter()
        .filter(|s| s.label == "500" && s.start >= delivered.after)
        .map(|s| (s.index, s.start.as_secs_f64()))
        .collect();
    assert!(
        after_delivery.is_empty(),
        "failed after the merged update was delivered at {:.3} s: {after_delivery:?}",
        delivered.after.as_secs_f64()
    );
    // Base requests are never affected.
    assert!(report
        .samples
        .iter()
        .filter(|s| !in_lane(s.index))
        .all(|s| s.label == "base"));
}
