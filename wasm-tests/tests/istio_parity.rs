#![cfg(not(target_arch = "wasm32"))]
//! The Istio manifests of `envoy/istio/` against the real filter: the
//! `pluginConfig` of every `WasmPlugin` is turned into JSON text the way
//! Istio does it and delivered to a real Envoy running graylane the way
//! Istio delivers it -- by ECDS, in the filter resource istio-agent passes
//! on -- and the lanes the `VirtualService`s route on must be lanes the
//! `WasmPlugin`s declare. Also what a proxy does when the image cannot be
//! pulled (the RBAC filter istio-agent sends in graylane's place).

use graylane::config::{Config, Incoming};
use graylane_wasm_tests::configs::{cluster, lane_routes, listener};
use graylane_wasm_tests::harness::{free_port, request_str, scratch_dir, wasm_path, Envoy, Server};
use graylane_wasm_tests::manifests::{
    jsonpb_struct_json, of_kind, repo_objects, Object, RENDERED_ALIKE,
};
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Every object in every `*.yaml` file of `envoy/istio/` (what
/// `kubectl apply -f envoy/istio/` applies).
fn manifests() -> Vec<Object> {
    repo_objects("envoy/istio")
}

/// The JSON text Istio gives the filter for a `WasmPlugin.spec.pluginConfig`.
///
/// istio/istio, `pilot/pkg/model/extensions.go` (`WasmPluginWrapper.buildPluginConfig`
/// in 1.27 to 1.29; from 1.30 on a `WasmPlugin` is translated into a
/// `TrafficExtension`, `pilot/pkg/config/kube/extensions/translate.go`, and
/// `TrafficExtensionWrapper.buildWasmConfig` does the same):
///
/// ```go
/// if plugin.PluginConfig != nil && len(plugin.PluginConfig.Fields) > 0 {
///     cfgJSON, err := protomarshal.ToJSON(plugin.PluginConfig)
///     ...
///     cfg = protoconv.MessageToAny(&wrapperspb.StringValue{Value: cfgJSON})
/// }
/// ... &wasmextensions.PluginConfig{Name: ns + "." + name, RootId: plugin.PluginName, Configuration: cfg, ...}
/// ```
///
/// `pluginConfig` is a `google.protobuf.Struct`, so every number in it is a
/// double; `protomarshal.ToJSON` (`pkg/util/protomarshal`) is the legacy
/// `github.com/golang/protobuf/jsonpb` Marshaler with no indent, which
/// writes a Struct as compact JSON with its keys sorted (jsonpb/encode.go,
/// `marshalValue`, map case) and its numbers and strings through Go's
/// `encoding/json` (`marshalSingularValue`). [`jsonpb_struct_json`] writes the
/// same bytes.
fn istio_plugin_json(plugin: &Object) -> String {
    let config = &plugin.spec()["pluginConfig"];
    assert!(
        config.as_mapping().is_some_and(|m| !m.is_empty()),
        "{}: no pluginConfig (Istio would then give the filter no configuration)",
        plugin.label()
    );
    jsonpb_struct_json(config, "pluginConfig")
}

fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap()
}

fn go_json_of(text: &str) -> String {
    jsonpb_struct_json(&yaml(text), "test")
}

#[test]
fn plugin_config_is_written_as_istio_writes_it() {
    // Sorted keys, compact, integers without `.0` (they are doubles), Go's
    // float format and HTML-safe string escaping.
    for (yaml, json) in RENDERED_ALIKE {
        assert_eq!(go_json_of(yaml), *json, "{yaml}");
    }
    // A double cannot hold every 64-bit integer: past 2^53 it rounds, in
    // Istio too. (A `range` bound that large does not survive a WasmPlugin.)
    assert_eq!(
        go_json_of("[9007199254740993, 123456789012345678]"),
        "[9007199254740992,123456789012345680]"
    );
}

/// A `WasmPlugin`'s lanes, as the filter compiles them.
struct Plugin<'a> {
    object: &'a Object,
    json: String,
    config: Config,
}

fn plugins(objects: &[Object]) -> Vec<Plugin<'_>> {
    of_kind(objects, "WasmPlugin")
        .into_iter()
        .map(|object| {
            let json = istio_plugin_json(object);
            let config = Config::from_json(json.as_bytes()).unwrap_or_else(|e| {
                panic!("{}: pluginConfig rejected: {e}\n{json}", object.label())
            });
            Plugin {
                object,
                json,
                config,
            }
        })
        .collect()
}

fn lane_names(config: &Config) -> BTreeSet<String> {
    config.rules.lanes.iter().map(|l| l.name.clone()).collect()
}

fn edge_and_hop<'a, 'b>(plugins: &'b [Plugin<'a>]) -> (&'b Plugin<'a>, &'b Plugin<'a>) {
    let edge: Vec<_> = plugins
        .iter()
        .filter(|p| p.config.incoming == Incoming::Ignore)
        .collect();
    let hop: Vec<_> = plugins
        .iter()
        .filter(|p| p.config.incoming == Incoming::Trust)
        .collect();
    assert_eq!(
        (edge.len(), hop.len()),
        (1, 1),
        "one edge (incoming: ignore) and one hop (incoming: trust) WasmPlugin"
    );
    (edge[0], hop[0])
}

/// `(service host, lanes routed on, subsets routed to)` of each `VirtualService`,
/// checking its shape: lane routes match the lane header exactly, and the
/// last route matches everything and goes to `base`.
fn virtual_service_lanes(
    vs: &Object,
    lane_header: &str,
) -> (String, BTreeSet<String>, BTreeSet<String>) {
    let http = vs.spec()["http"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no http routes", vs.label()));
    let mut lanes = BTreeSet::new();
    let mut subsets = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for (i, route) in http.iter().enumerate() {
        for dest in route["route"].as_sequence().into_iter().flatten() {
            hosts.insert(dest["destination"]["host"].as_str().unwrap().to_string());
            subsets.insert(dest["destination"]["subset"].as_str().unwrap().to_string());
        }
        let to: Vec<_> = route["route"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|d| d["destination"]["subset"].as_str().unwrap_or_default())
            .collect();
        let matches = route["match"].as_sequence();
        if i + 1 == http.len() {
            assert!(
                matches.is_none(),
                "{}: the last route must match every request (the default)",
                vs.label()
            );
            assert_eq!(
                to,
                ["base"],
                "{}: the default route must go to base (the fallback)",
                vs.label()
            );
            continue;
        }
        let matches = matches.unwrap_or_else(|| {
            panic!(
                "{}: route {i} before the default matches everything",
                vs.label()
            )
        });
        for m in matches {
            let headers = m["headers"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{}: route {i} matches no header", vs.label()));
            let lane = headers.get(lane_header).unwrap_or_else(|| {
                panic!(
                    "{}: route {i} does not match the lane header {lane_header}",
                    vs.label()
                )
            });
            let exact = lane["exact"].as_str().unwrap_or_else(|| {
                panic!(
                    "{}: route {i}: match {lane_header} with `exact: <lane>`",
                    vs.label()
                )
            });
            assert_eq!(
                to,
                [exact],
                "{}: the {exact} route must go to the {exact} subset",
                vs.label()
            );
            lanes.insert(exact.to_string());
        }
    }
    assert_eq!(hosts.len(), 1, "{}: routes to one service", vs.label());
    (hosts.into_iter().next().unwrap(), lanes, subsets)
}

#[test]
fn manifests_are_consistent() {
    let objects = manifests();
    let plugins = plugins(&objects);
    let (edge, hop) = edge_and_hop(&plugins);

    for p in &plugins {
        let spec = p.object.spec();
        let name = p.object.label();
        assert_eq!(
            p.object.doc["apiVersion"].as_str(),
            Some("extensions.istio.io/v1alpha1"),
            "{name}"
        );
        let url = spec["url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with("oci://") && url.contains("/graylane:"),
            "{name}: url {url}"
        );
        assert_eq!(spec["pluginName"].as_str(), Some("graylane"), "{name}");
        assert_eq!(spec["type"].as_str(), Some("HTTP"), "{name}");
        // After authentication, so that rules can read what it wrote.
        assert_eq!(spec["phase"].as_str(), Some("AUTHZ"), "{name}");
        assert!(
            ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]
                .contains(&spec["failStrategy"].as_str().unwrap_or_default()),
            "{name}"
        );
        // Nothing the filter warns about (shadowed rules, percent 0, ...).
        assert!(
            p.config.warnings.is_empty(),
            "{name}: {:?}",
            p.config.warnings
        );
    }

    // The edge: client tags removed; never fails open (a client's forged
    // x-graylane would reach the routes).
    assert_eq!(
        edge.object.spec()["selector"]["matchLabels"]["istio"].as_str(),
        Some("ingressgateway")
    );
    assert_ne!(
        edge.object.spec()["failStrategy"].as_str(),
        Some("FAIL_OPEN")
    );
    // The hops: outbound traffic only, no `services` (routing is the
    // VirtualServices' job), and every lane the edge decides is declared,
    // or the hops would drop its tag.
    let modes: Vec<_> = hop.object.spec()["match"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|m| m["mode"].as_str().unwrap_or("CLIENT_AND_SERVER"))
        .collect();
    assert_eq!(modes, ["CLIENT"], "{}", hop.object.label());
    assert!(hop.config.services.is_empty(), "{}", hop.object.label());
    assert!(
        lane_names(&edge.config).is_subset(&lane_names(&hop.config)),
        "every lane of the edge is declared at the hops"
    );
    assert_eq!(edge.config.lane_header, hop.config.lane_header);

    // Every VirtualService routes on the lane header, only lanes the
    // WasmPlugins declare, to subsets its DestinationRule defines with
    // `version: <subset>`; the default route is base.
    let mut subsets_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for dr in of_kind(&objects, "DestinationRule") {
        let host = dr.spec()["host"].as_str().unwrap().to_string();
        for s in dr.spec()["subsets"].as_sequence().into_iter().flatten() {
            let name = s["name"].as_str().unwrap();
            assert_eq!(
                s["labels"]["version"].as_str(),
                Some(name),
                "{}: subset {name}",
                dr.label()
            );
            subsets_of
                .entry(host.clone())
                .or_default()
                .insert(name.to_string());
        }
    }
    let declared = lane_names(&edge.config);
    let mut routed = BTreeMap::new();
    for vs in of_kind(&objects, "VirtualService") {
        let (host, lanes, subsets) = virtual_service_lanes(vs, &edge.config.lane_header);
        for lane in &lanes {
            assert!(
                declared.contains(lane),
                "{}: routes lane {lane}, which no WasmPlugin declares ({declared:?})",
                vs.label()
            );
        }
        let defined = subsets_of.get(&host).cloned().unwrap_or_default();
        assert!(
            subsets.is_subset(&defined),
            "{}: subsets {subsets:?}, DestinationRule of {host} has {defined:?}",
            vs.label()
        );
        routed.insert(host, lanes);
    }
    // The example chain of envoy/fulllink/: A and C have a gray version, B
    // only base (gray requests fall back there).
    let want: BTreeMap<String, BTreeSet<String>> = [
        ("svc-a", &["gray"][..]),
        ("svc-b", &[][..]),
        ("svc-c", &["gray"][..]),
    ]
    .iter()
    .map(|(h, l)| (h.to_string(), l.iter().map(ToString::to_string).collect()))
    .collect();
    assert_eq!(routed, want);
    assert_eq!(subsets_of.get("svc-b").map(BTreeSet::len), Some(1));
}

/// The lanes the `VirtualService`s route on: the backends a test gateway needs.
fn routed_lanes(objects: &[Object], lane_header: &str) -> Vec<String> {
    let mut all = BTreeSet::new();
    for vs in of_kind(objects, "VirtualService") {
        all.extend(virtual_service_lanes(vs, lane_header).1);
    }
    all.into_iter().collect()
}

/// Istio's `failStrategy` as the Envoy `failure_policy` it sets (Istio
/// 1.25 and later; 1.27 for `FAIL_RELOAD`).
fn failure_policy(strategy: &str) -> &'static str {
    match strategy {
        "FAIL_OPEN" => "FAIL_OPEN",
        "FAIL_RELOAD" => "FAIL_RELOAD",
        // FAIL_CLOSE, and the default.
        _ => "FAIL_CLOSED",
    }
}

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The ECDS resource name of a `WasmPlugin`, which is also the name of the
/// HTTP filter that points at it: `<namespace>.<name>`.
fn resource_name(plugin: &Plugin<'_>) -> String {
    let meta = &plugin.object.doc["metadata"];
    format!(
        "{}.{}",
        meta["namespace"].as_str().unwrap(),
        meta["name"].as_str().unwrap()
    )
}

/// The ECDS resource Envoy receives for a `WasmPlugin`, as JSON.
///
/// istiod builds it (`pilot/pkg/model/extensions.go`, `buildPluginConfig` /
/// `buildWasmConfig`): an `envoy.config.core.v3.TypedExtensionConfig`
/// named `<namespace>.<name>` holding the Wasm filter: config `name` the
/// same, `root_id` from `pluginName`, `failure_policy` from `failStrategy`,
/// the plugin configuration a `google.protobuf.StringValue` of JSON text,
/// the code `remote` with the `oci://` url and the VM's environment holding
/// `ISTIO_META_*` variables for the agent (resource version, pull policy).
/// istio-agent (`pkg/wasm/convert.go`) pulls the image, rewrites the code to
/// `local.filename` and strips every `ISTIO_META_` variable (an environment
/// left empty is removed) before passing it on to Envoy -- this is that
/// form, with the built filter as the file.
fn ecds_wasm_resource(plugin: &Plugin<'_>) -> serde_json::Value {
    let name = resource_name(plugin);
    let spec = plugin.object.spec();
    serde_json::json!({
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": name,
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": name,
                "root_id": spec["pluginName"].as_str().unwrap(),
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path().display().to_string() } },
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin.json,
                },
                "failure_policy": failure_policy(spec["failStrategy"].as_str().unwrap_or_default()),
            },
        },
    })
}

/// What istio-agent (1.25 and later) sends in place of the Wasm filter when
/// it cannot fetch the module: an RBAC filter with the plugin's name, that
/// allows everything for `FAIL_OPEN` and denies everything otherwise
/// (`pkg/wasm/convert.go`, `createHTTPDefaultFilter`).
fn ecds_fallback_resource(plugin: &Plugin<'_>) -> serde_json::Value {
    let fail_open = plugin.object.spec()["failStrategy"].as_str() == Some("FAIL_OPEN");
    let rbac = if fail_open {
        serde_json::json!({ "@type": RBAC_TYPE, "rules_stat_prefix": "wasm-default-allow" })
    } else {
        serde_json::json!({ "@type": RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny" })
    };
    serde_json::json!({
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": resource_name(plugin),
        "typed_config": rbac,
    })
}

/// The HTTP filter istiod puts in the listener for a `WasmPlugin`
/// (`pilot/pkg/networking/core/extension/extensionfilter.go`): only a name
/// and `config_discovery` accepting the Wasm filter or the RBAC fallback.
/// istiod's config source is ADS with `initial_fetch_timeout: 0s`; here it
/// is the file `path` (renamed into a watched directory to update it).
fn ecds_http_filter(name: &str, path: &Path) -> String {
    format!(
        r#"
          - name: {name}
            config_discovery:
              config_source:
                path_config_source:
                  path: {path}
                  watched_directory: {{ path: {dir} }}
                resource_api_version: V3
                initial_fetch_timeout: 0s
              type_urls:
              - {WASM_TYPE}
              - {RBAC_TYPE}"#,
        path = path.display(),
        dir = path.parent().unwrap().display(),
    )
}

/// An Envoy with one listener per `WasmPlugin`, each getting its filter by
/// ECDS from a file, routing on the lane header to one echo backend per
/// lane (`lane-<name>`) and base.
struct IstioProxy {
    envoy: Envoy,
    ports: Vec<u16>,
    files: Vec<PathBuf>,
    _backends: Vec<Server>,
}

impl IstioProxy {
    /// `resources`: the first ECDS resource of each listener's filter.
    /// With `warm_up`, one more listener carries the first plugin's Wasm
    /// filter inline, so that a Wasm VM starts at bootstrap: the workaround
    /// for the Envoy 1.36/1.37 crash when the first VM starts after the
    /// worker threads (docs/compatibility.md "Supported Envoy versions").
    fn start(
        plugins: &[&Plugin<'_>],
        resources: &[serde_json::Value],
        lanes: &[&str],
        stats_config: &str,
        warm_up: bool,
    ) -> IstioProxy {
        let dir = scratch_dir("istio-ecds");
        let mut backends = Vec::new();
        let mut clusters = String::new();
        for l in std::iter::once("base").chain(lanes.iter().copied()) {
            let s = Server::echo(l);
            let name = if l == "base" {
                l.to_string()
            } else {
                format!("lane-{l}")
            };
            clusters.push_str(&cluster(&name, s.port));
            backends.push(s);
        }
        let lane_header = &plugins[0].config.lane_header;
        let routes = lane_routes("\"*\"", lane_header, lanes, "base");
        let (mut listeners, mut ports, mut files) = (String::new(), Vec::new(), Vec::new());
        for (i, (p, resource)) in plugins.iter().zip(resources).enumerate() {
            let name = resource_name(p);
            let file = dir.join(format!("{name}.json"));
            std::fs::write(
                &file,
                serde_json::json!({ "resources": [resource] }).to_string(),
            )
            .unwrap();
            let port = free_port();
            listeners.push_str(&listener(
                &format!("l{i}"),
                port,
                &ecds_http_filter(&name, &file),
                &routes,
            ));
            ports.push(port);
            files.push(file);
        }
        if warm_up {
            let mut wasm = ecds_wasm_resource(plugins[0]);
            wasm["typed_config"]["config"]["name"] = "graylane-warm-up".into();
            let filter = format!(
                "\n          - {{ name: graylane-warm-up, typed_config: {} }}",
                wasm["typed_config"]
            );
            listeners.push_str(&listener("warm-up", free_port(), &filter, &routes));
        }
        let yaml = format!(
            "node: {{ id: istio-proxy, cluster: demo }}\n\
             admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{{{ADMIN}}}} }} }}\n{stats_config}\
             static_resources:\n  listeners:{listeners}\n  clusters:{clusters}\n",
        );
        IstioProxy {
            envoy: Envoy::start(&yaml, &[]),
            ports,
            files,
            _backends: backends,
        }
    }

    /// Replaces listener `i`'s ECDS resource (written next to it, renamed).
    fn update(&self, i: usize, resource: &serde_json::Value) {
        let tmp = self.files[i].with_extension("json.new");
        std::fs::write(
            &tmp,
            serde_json::json!({ "resources": [resource] }).to_string(),
        )
        .unwrap();
        std::fs::rename(&tmp, &self.files[i]).unwrap();
    }

    /// (status, backend that answered or "-", the backend's JSON if any).
    fn send(&self, i: usize, headers: &[(&str, &str)]) -> (u16, String, serde_json::Value) {
        let mut h = headers.to_vec();
        h.push(("host", "shop.example.com"));
        let r = request_str(self.ports[i], "/", &h);
        let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (
            r.status,
            r.header("x-backend").unwrap_or("-").to_string(),
            body,
        )
    }

    fn lane_of(&self, i: usize, headers: &[(&str, &str)]) -> String {
        let (status, backend, body) = self.send(i, headers);
        assert_eq!(status, 200, "{body}");
        backend
    }

    /// The ECDS filters in `/config_dump`: name -> the Wasm plugin
    /// configuration Envoy holds (the `StringValue`'s text).
    fn dumped_plugin_configs(&self) -> BTreeMap<String, String> {
        let r = request_str(self.envoy.admin, "/config_dump?resource=ecds_filters", &[]);
        let dump: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let f = &c["ecds_filter"];
                let cfg = &f["typed_config"]["config"];
                assert_eq!(
                    cfg["configuration"]["@type"],
                    "type.googleapis.com/google.protobuf.StringValue",
                    "{f}"
                );
                (
                    f["name"].as_str().unwrap().to_string(),
                    cfg["configuration"]["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// The edge and hop plugins of the manifests, and the lanes routed on.
struct Mesh {
    objects: Vec<Object>,
}

impl Mesh {
    fn load() -> Mesh {
        Mesh {
            objects: manifests(),
        }
    }
}

fn with_plugin<T>(incoming: Incoming, f: impl FnOnce(&Plugin<'_>, &[&str]) -> T) -> T {
    let mesh = Mesh::load();
    let plugins = plugins(&mesh.objects);
    let (edge, hop) = edge_and_hop(&plugins);
    let p = if incoming == Incoming::Ignore {
        edge
    } else {
        hop
    };
    let lanes = routed_lanes(&mesh.objects, &p.config.lane_header);
    let lanes: Vec<&str> = lanes.iter().map(String::as_str).collect();
    f(p, &lanes)
}

/// A proxy running one `WasmPlugin`, delivered by ECDS as Istio does.
fn proxy_for(p: &Plugin<'_>, lanes: &[&str]) -> IstioProxy {
    let proxy = IstioProxy::start(&[p], &[ecds_wasm_resource(p)], lanes, "", false);
    // What Envoy holds is the pluginConfig as Istio writes it.
    assert_eq!(
        proxy.dumped_plugin_configs(),
        BTreeMap::from([(resource_name(p), p.json.clone())])
    );
    proxy
}

#[test]
fn gateway_plugin_config_in_envoy() {
    with_plugin(Incoming::Ignore, |p, lanes| {
        let gw = proxy_for(p, lanes);
        // The gray rule (the same as envoy/demo.yaml's).
        let (_, backend, body) = gw.send(
            0,
            &[("location", "cn-shenzhen"), ("baggage", "userId=alice")],
        );
        assert_eq!(backend, "gray", "{body}");
        assert_eq!(body["headers"]["x-graylane"], "gray");
        assert_eq!(body["headers"]["baggage"], "userId=alice,lane=gray");
        assert_eq!(gw.lane_of(0, &[("location", "cn-beijing")]), "base");
        assert_eq!(gw.lane_of(0, &[]), "base");
        // Forged tags are removed before the routes see them.
        let (_, backend, body) = gw.send(
            0,
            &[
                ("x-graylane", "gray"),
                ("baggage", "lane=gray,userId=alice"),
            ],
        );
        assert_eq!(backend, "base", "{body}");
        assert!(body["headers"].get("x-graylane").is_none(), "{body}");
        assert_eq!(body["headers"]["baggage"], "userId=alice");
        // A forged tag does not keep a matching request out of its lane either.
        assert_eq!(
            gw.lane_of(0, &[("x-graylane", "base"), ("location", "cn-shenzhen")]),
            "gray"
        );
        assert_eq!(gw.envoy.counter("wasmcustom.graylane.config_rejected"), 0);
    });
}

#[test]
fn sidecar_plugin_config_in_envoy() {
    with_plugin(Incoming::Trust, |p, lanes| {
        let gw = proxy_for(p, lanes);
        // The tag the edge decided, forwarded by the app in baggage, is kept
        // and written into the lane header for the VirtualService.
        let (_, backend, body) = gw.send(0, &[("baggage", "userId=alice,lane=gray")]);
        assert_eq!(backend, "gray", "{body}");
        assert_eq!(body["headers"]["x-graylane"], "gray");
        assert_eq!(body["headers"]["baggage"], "userId=alice,lane=gray");
        assert_eq!(gw.lane_of(0, &[("x-graylane", "gray")]), "gray");
        // A lane no WasmPlugin declares is dropped (and counted): base.
        let (_, backend, body) = gw.send(0, &[("baggage", "lane=pink,userId=alice")]);
        assert_eq!(backend, "base", "{body}");
        assert!(body["headers"].get("x-graylane").is_none(), "{body}");
        assert_eq!(body["headers"]["baggage"], "userId=alice");
        assert_eq!(
            gw.envoy.wait_counter("wasmcustom.graylane.invalid_tags", 1),
            1
        );
        // Hops never decide by rule: an untagged request stays base even when
        // the app forwarded what the edge's rule looks at.
        assert_eq!(gw.lane_of(0, &[("location", "cn-shenzhen")]), "base");
        assert_eq!(gw.lane_of(0, &[]), "base");
    });
}

/// When the image cannot be pulled, istio-agent (1.25 and later) sends an
/// RBAC filter in graylane's place: deny-all for the edge (`FAIL_RELOAD`),
/// allow-all for the hops (`FAIL_OPEN`). What that does to the traffic, and
/// that the Wasm filter takes its place once the image can be pulled.
#[test]
fn image_pull_failure_fallbacks() {
    image_pull_failure_fallbacks_run(false);
}

/// The same with a Wasm VM started at bootstrap (a listener with graylane
/// inline): on Envoy 1.36 and 1.37 the Wasm filter that replaces the RBAC
/// fallback is the first VM otherwise, and Envoy crashes when it starts;
/// `scripts/compat.sh` runs this in place of the test above there.
#[test]
fn image_pull_failure_fallbacks_with_the_warm_up_listener() {
    image_pull_failure_fallbacks_run(true);
}

fn image_pull_failure_fallbacks_run(warm_up: bool) {
    let mesh = Mesh::load();
    let plugins = plugins(&mesh.objects);
    let (edge, hop) = edge_and_hop(&plugins);
    let lanes = routed_lanes(&mesh.objects, &edge.config.lane_header);
    let lanes: Vec<&str> = lanes.iter().map(String::as_str).collect();
    let proxy = IstioProxy::start(
        &[edge, hop],
        &[ecds_fallback_resource(edge), ecds_fallback_resource(hop)],
        &lanes,
        "",
        warm_up,
    );
    let strategy = |p: &Plugin<'_>| {
        p.object.spec()["failStrategy"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The edge never fails open: every request is denied.
    assert_ne!(strategy(edge), "FAIL_OPEN");
    for location in ["cn-shenzhen", "cn-beijing"] {
        let r = request_str(
            proxy.ports[0],
            "/",
            &[("location", location), ("host", "shop.example.com")],
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, "RBAC: access denied"),
            "edge, {} without its module",
            strategy(edge)
        );
    }
    // Counted under the RBAC filter's stat prefix: the listener's (l0) on
    // Envoy 1.38 and later, the ECDS resource's on 1.36 and 1.37. Exactly
    // one of the two exists.
    let rbac_stat = |listener: &str, resource: &str, rule: &str| {
        let names = [
            format!("http.{listener}.rbac.{rule}"),
            format!("extension_config_discovery.http_filter.{resource}.rbac.{rule}"),
        ];
        let stats = proxy.envoy.stats();
        let found: Vec<&String> = names.iter().filter(|n| stats.contains_key(*n)).collect();
        assert_eq!(found.len(), 1, "one of {names:?} (found {found:?})");
        proxy.envoy.counter(found[0])
    };
    let edge_resource = format!("{}.{}", edge.object.namespace(), edge.object.name());
    assert_eq!(
        rbac_stat("l0", &edge_resource, "wasm-default-deny.denied"),
        2
    );
    // The hops fail open: calls go through without graylane, so tagged
    // calls take the default route (base) and the lane header is not set.
    assert_eq!(strategy(hop), "FAIL_OPEN");
    let (status, backend, body) = proxy.send(1, &[("baggage", "lane=gray")]);
    assert_eq!((status, backend.as_str()), (200, "base"), "{body}");
    assert!(body["headers"].get("x-graylane").is_none(), "{body}");
    // The allow-all filter has no rules, and counts nothing.
    assert!(
        proxy.envoy.stats().iter().all(|(k, v)| {
            let hop_rbac = k.starts_with("http.l1.rbac")
                || k.starts_with(&format!(
                    "extension_config_discovery.http_filter.{}.{}.rbac",
                    hop.object.namespace(),
                    hop.object.name()
                ));
            !hop_rbac || *v == 0
        }),
        "the allow-all filter counted something"
    );
    // The image can be pulled again: the Wasm filter replaces the RBAC one,
    // for new requests, with no restart.
    proxy.update(0, &ecds_wasm_resource(edge));
    proxy.update(1, &ecds_wasm_resource(hop));
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.send(0, &[("location", "cn-shenzhen")]).1 != "gray"
        || proxy.send(1, &[("baggage", "lane=gray")]).1 != "gray"
    {
        assert!(
            Instant::now() < deadline,
            "the Wasm filters never replaced the fallbacks"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.dumped_plugin_configs().len(), 2);
    println!(
        "istio fallbacks: edge ({}) without its module: 403 for every request; hop ({}): \
         calls pass to base; both replaced by the Wasm filter by ECDS",
        strategy(edge),
        strategy(hop)
    );
}

/// The `stats_matcher` of Istio's proxy bootstrap
/// (istio/istio `tools/packaging/common/envoy_bootstrap.json`, with the
/// inclusions `pkg/bootstrap/config.go` always adds): Envoy keeps only these
/// stats.
const ISTIO_STATS_CONFIG: &str = r#"
stats_config:
  use_all_default_tags: false
  stats_matcher:
    inclusion_list:
      patterns:
      - prefix: "reporter="
      - prefix: cluster_manager
      - prefix: listener_manager
      - prefix: server
      - prefix: cluster.xds-grpc
      - prefix: wasm
      - suffix: rbac.allowed
      - suffix: rbac.denied
      - suffix: shadow_allowed
      - suffix: shadow_denied
      - safe_regex: { regex: 'vhost\..*\.route\..*' }
      - prefix: component
      - prefix: istio
"#;

#[test]
fn istio_shaped_filters_and_their_counters() {
    let objects = manifests();
    let plugins = plugins(&objects);
    let (edge, hop) = edge_and_hop(&plugins);
    let lanes = routed_lanes(&objects, &edge.config.lane_header);
    let lanes: Vec<&str> = lanes.iter().map(String::as_str).collect();
    let proxy = IstioProxy::start(
        &[edge, hop],
        &[ecds_wasm_resource(edge), ecds_wasm_resource(hop)],
        &lanes,
        ISTIO_STATS_CONFIG,
        false,
    );
    assert_eq!(
        proxy.dumped_plugin_configs(),
        BTreeMap::from([
            (resource_name(edge), edge.json.clone()),
            (resource_name(hop), hop.json.clone()),
        ])
    );
    // client -> edge -> (app forwards baggage) -> hop, twice in gray, once base.
    for location in ["cn-shenzhen", "cn-shenzhen", "cn-beijing"] {
        let (_, backend, body) = proxy.send(0, &[("location", location)]);
        let baggage = body["headers"]["baggage"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let want = if location == "cn-shenzhen" {
            "gray"
        } else {
            "base"
        };
        assert_eq!(backend, want);
        assert_eq!(proxy.lane_of(1, &[("baggage", &baggage)]), want);
    }
    // Istio's stats matcher keeps graylane's counters (they start with
    // `wasm`); without graylane's stats_tags they are flat names in
    // /stats/prometheus, which is what a mesh's Prometheus scrapes. The VMs
    // send their per-request counts with their next flush: polled. The
    // request counters cover all six requests, so `invalid_tags` is read
    // after every one of them was flushed.
    let prom = proxy.envoy.wait_prometheus(&[
        "graylane_requests_source_rule_lane_gray{} 2",
        "graylane_requests_source_propagated_lane_gray{} 2",
        "graylane_requests_source_default_lane_base{} 2",
        "graylane_invalid_tags{} 0",
        "graylane_config_rejected{} 0",
        "graylane_config_warnings{} 0",
    ]);
    // Accepted once per VM (main thread and each worker, both plugins).
    assert!(
        prom.lines()
            .any(|l| l.starts_with("graylane_config_accepted{} ") && !l.ends_with(" 0")),
        "{prom}"
    );
    // And the matcher is really there: the listeners' own stats are gone.
    assert!(!prom.contains("downstream_rq_total"), "{prom}");
}
