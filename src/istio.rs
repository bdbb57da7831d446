//! `graylane istio`: the whole Istio recipe (docs/recipes/istio.md "Istio recipe") from a
//! plugin configuration with `services` and a short mesh description.
//!
//! For each service: a `DestinationRule` with a subset per version, a
//! `VirtualService` whose lane routes match the lane header and whose last
//! route is base, and, for each lane, `EnvoyFilter` patches that make the
//! lane's route fall back to base when the lane's subset has no healthy
//! endpoint (Istio's subset load balancer never falls back by itself):
//!
//! - `CLUSTER` `ADD` of an aggregate cluster `[lane subset, base subset]`,
//!   named `graylane-fallback|PORT|LANE|FQDN` (Istio's own clusters are
//!   `outbound|…`, `inbound|…`, `outbound_.…` or fixed names such as
//!   `BlackHoleCluster`: none starts with `graylane`);
//! - `HTTP_ROUTE` `MERGE` of `route.cluster` on the lane's route. Istio
//!   writes a single-destination route as `route.cluster:
//!   outbound|PORT|LANE|FQDN` (`pilot/pkg/networking/core/route/route.go`,
//!   `processDestination`), so replacing that one field keeps the rest of
//!   what Istio generated (match, retries, timeouts). The match names the
//!   virtual host (`FQDN:PORT` on sidecars, `HOST:PORT` on gateways:
//!   `util.DomainName`) and the route (the `VirtualService` route's name),
//!   not the route configuration, whose name on sidecars is `PORT` or, for a
//!   protocol-sniffed port, `FQDN:PORT` (`buildSidecarOutboundHTTPListenerOpts`).
//!
//! The lane subsets get outlier detection (Istio has no active health
//! check) so that a lane whose every endpoint fails is ejected and its
//! traffic moves to base; the lane routes retry with
//! `retryRemoteLocalities` (Envoy's `previous_priorities`), so a request
//! whose connection to the lane fails is retried on base.
//!
//! Output is deterministic: the same input gives the same bytes.

use crate::config::{self, de, ConfigError, ConfigErrors, ErrorKind, RawConfig};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The mesh description (`graylane istio CONFIG MESH`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMesh {
    /// Namespace of the services (a service may set its own), of the
    /// sidecars' `WasmPlugin` and of the sidecar `EnvoyFilter`s.
    pub namespace: String,
    /// Where graylane's image is: `WasmPlugin.url` (`oci://…`, `https://…`, `file://…`).
    pub image: String,
    /// The image's manifest digest (`WasmPlugin.sha256`), as `scripts/package.sh` prints it.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The Kubernetes cluster domain (`svc.<domain>` in service names). Default `cluster.local`.
    #[serde(default)]
    pub cluster_domain: Option<String>,
    /// Namespace of the sidecar `EnvoyFilter`s: they apply to the callers'
    /// sidecars in it, or to every sidecar from the root namespace
    /// (`istio-system`). Default `namespace`.
    #[serde(default)]
    pub envoy_filter_namespace: Option<String>,
    /// The ingress gateway; absent = no edge `WasmPlugin`, `Gateway` or gateway patches.
    #[serde(default)]
    pub gateway: Option<RawGateway>,
    /// Outlier detection of the lane subsets (base is never ejected).
    #[serde(default)]
    pub outlier_detection: Option<RawOutlier>,
    /// The services by name (the Kubernetes `Service`, as the apps call it).
    pub services: BTreeMap<String, RawMeshService>,
    /// Lane continuity from trace context for apps that forward
    /// `traceparent` or `x-request-id` but not `baggage` (the plugin
    /// config's `continuity`, without `side`: Istio sets every sidecar
    /// listener's direction). Written into the sidecars' `WasmPlugin`, which
    /// then runs on both sides (`mode: CLIENT_AND_SERVER`). Absent = off.
    #[serde(default)]
    pub continuity: Option<crate::config::raw::RawContinuity>,
}

/// The ingress gateway the edge `WasmPlugin` runs on.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGateway {
    /// Name of the `Gateway` written (in `namespace` of the mesh). Default `graylane-gateway`.
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace of the gateway's pods (of the edge `WasmPlugin` and the gateway `EnvoyFilter`s). Default `istio-system`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the gateway's pods. Default `{istio: ingressgateway}`.
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// The gateway's HTTP port. Default 80.
    #[serde(default)]
    pub port: Option<u16>,
}

/// Outlier detection of the lane subsets (`DestinationRule` `outlierDetection`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOutlier {
    /// 5xx answers in a row that eject an endpoint. Default 3.
    #[serde(default, rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Connection failures (refused, reset, timeout) in a row that eject an endpoint. Default 1.
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<u32>,
    /// How often ejections are reviewed (`1s`, `500ms`). Default `1s`.
    #[serde(default)]
    pub interval: Option<String>,
    /// First ejection time, longer on each new ejection. Default `15s`.
    #[serde(default)]
    pub base_ejection_time: Option<String>,
}

/// One service of the mesh.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMeshService {
    /// The service's HTTP port.
    pub port: u16,
    /// Its namespace. Default: the mesh's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The lanes that have a version of it. Default: the lanes of the
    /// plugin configuration's `services.<name>` (none when absent there).
    #[serde(default)]
    pub lanes: Option<Vec<String>>,
    /// Pod labels of each subset (`base` and each lane). Default `{version: <subset>}`.
    #[serde(default)]
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Hosts under which the ingress gateway serves it (`shop.example.com`).
    #[serde(default)]
    pub gateway_hosts: Vec<String>,
}

/// The JSON Schema of the mesh description.
pub fn schema() -> Value {
    schemars::schema_for!(RawMesh).to_value()
}

/// Reads a mesh description (YAML or JSON); errors name the field path.
pub fn parse_mesh(text: &[u8]) -> Result<RawMesh, ConfigError> {
    let json = de::json_of_yaml_or_json(text)?;
    de::from_slice::<RawMesh>(&json)
}

/// One file of the recipe: its name and its YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub text: String,
}

/// Where a recipe error is: in the plugin configuration or the mesh description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Every error of the plugin configuration, as `graylane check` finds them.
    Config(ConfigErrors),
    Mesh(ConfigError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "\n" };
                    write!(f, "{sep}config: {e}")?;
                }
                Ok(())
            }
            Error::Mesh(e) => write!(f, "mesh: {e}"),
        }
    }
}

fn mesh_err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, Error> {
    Err(Error::Mesh(ConfigError {
        path: path.into(),
        kind: ErrorKind::Mesh,
        message: message.into(),
    }))
}

/// The patch contexts the recipe writes `EnvoyFilter`s for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Gateway,
    SidecarOutbound,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Gateway => "GATEWAY",
            Context::SidecarOutbound => "SIDECAR_OUTBOUND",
        }
    }
}

/// A service with everything resolved.
struct Service {
    name: String,
    namespace: String,
    fqdn: String,
    port: u16,
    lanes: Vec<String>,
    labels: BTreeMap<String, BTreeMap<String, String>>,
    gateway_hosts: Vec<String>,
}

impl Service {
    /// Istio's cluster of a subset (`model.BuildSubsetKey`).
    fn subset_cluster(&self, subset: &str) -> String {
        format!("outbound|{}|{subset}|{}", self.port, self.fqdn)
    }
}

/// The aggregate cluster of a lane of a service.
pub fn fallback_cluster_name(port: u16, lane: &str, fqdn: &str) -> String {
    format!("graylane-fallback|{port}|{lane}|{fqdn}")
}

/// The name of the `VirtualService` route of a subset (a lane or `base`).
pub fn route_name(subset: &str) -> String {
    format!("graylane-{subset}")
}

const DEFAULT_GATEWAY_NAME: &str = "graylane-gateway";

/// Generates the recipe. `config_json` is the plugin configuration's JSON
/// text (as `graylane check` reads it).
pub fn generate(config_json: &[u8], mesh: &RawMesh) -> Result<Vec<File>, Error> {
    let plugin = read_plugin_config(config_json)?;
    check_name("namespace", &mesh.namespace)?;
    let image = mesh.image.as_str();
    if !["oci://", "https://", "http://", "file://"]
        .iter()
        .any(|s| image.starts_with(s))
    {
        return mesh_err(
            "image",
            format!("{image:?}: expected an oci://, https://, http:// or file:// URL"),
        );
    }
    let ef_namespace = mesh
        .envoy_filter_namespace
        .clone()
        .unwrap_or_else(|| mesh.namespace.clone());
    check_name("envoyFilterNamespace", &ef_namespace)?;
    let outlier = outlier_detection(mesh.outlier_detection.as_ref())?;
    if let Some(c) = &mesh.continuity {
        if c.side.is_some() {
            return mesh_err(
                "continuity.side",
                "Istio gives every sidecar listener its direction; leave side out".to_string(),
            );
        }
        // The sidecars' continuity compiles, or its errors name the field.
        let probe = json!({"propagate": ["x"], "continuity": {"from": c.from, "ttl": c.ttl, "slots": c.slots}});
        if let Err(errors) = config::Config::from_json(probe.to_string().as_bytes()) {
            return mesh_err("continuity", errors.to_string());
        }
    }
    let services = services(mesh, &plugin)?;
    let gateway = gateway(mesh)?;

    let mut files = Vec::new();
    if let Some(gw) = &gateway {
        files.extend(edge_files(mesh, &plugin, gw));
    }
    files.push(hop_file(mesh, &plugin));
    for svc in &services {
        files.push(service_file(
            svc,
            &plugin.raw.lane_header,
            &outlier,
            &ef_namespace,
            gateway.as_ref(),
        ));
    }
    Ok(files)
}

/// The plugin configuration, checked as `graylane check` checks it: its
/// fields, its JSON (kept as written for the plugins), and every lane it
/// declares (`lanes`, then `propagate`).
struct PluginConfig {
    raw: RawConfig,
    json: Value,
    declared: Vec<String>,
}

fn read_plugin_config(config_json: &[u8]) -> Result<PluginConfig, Error> {
    config::Config::from_json(config_json).map_err(Error::Config)?;
    let raw: RawConfig =
        de::from_slice(config_json).map_err(|e| Error::Config(ConfigErrors::from(e)))?;
    let json: Value = serde_json::from_slice(config_json).map_err(|e| {
        Error::Config(ConfigErrors::from(ConfigError {
            path: String::new(),
            kind: ErrorKind::Syntax,
            message: e.to_string(),
        }))
    })?;
    let mut declared: Vec<String> = raw.lanes.iter().map(|l| l.name.clone()).collect();
    for p in &raw.propagate {
        if !declared.contains(p) {
            declared.push(p.clone());
        }
    }
    Ok(PluginConfig {
        raw,
        json,
        declared,
    })
}

/// Every service of the mesh description, checked against the plugin
/// configuration's `services` and lanes.
fn services(mesh: &RawMesh, plugin: &PluginConfig) -> Result<Vec<Service>, Error> {
    for host in plugin.raw.services.keys() {
        if !mesh.services.contains_key(host) {
            return Err(Error::Config(ConfigErrors::from(ConfigError {
                path: format!("services.{host}"),
                kind: ErrorKind::Mesh,
                message: format!(
                    "the mesh description has no service {host:?} (it has {:?})",
                    mesh.services.keys().collect::<Vec<_>>()
                ),
            })));
        }
    }
    if mesh.services.is_empty() {
        return mesh_err("services", "no service: name at least one");
    }
    mesh.services
        .iter()
        .map(|(name, ms)| service(mesh, plugin, name, ms))
        .collect()
}

fn service(
    mesh: &RawMesh,
    plugin: &PluginConfig,
    name: &str,
    ms: &RawMeshService,
) -> Result<Service, Error> {
    let path = format!("services.{name}");
    check_name(&path, name)?;
    if ms.port == 0 {
        return mesh_err(format!("{path}.port"), "a port from 1 to 65535");
    }
    let namespace = ms
        .namespace
        .clone()
        .unwrap_or_else(|| mesh.namespace.clone());
    check_name(&format!("{path}.namespace"), &namespace)?;
    let lanes = service_lanes(plugin, &path, name, ms)?;
    let labels = subset_labels(&path, name, ms, &lanes)?;
    if !ms.gateway_hosts.is_empty() && mesh.gateway.is_none() {
        return mesh_err(
            format!("{path}.gatewayHosts"),
            "needs a `gateway` in the mesh description",
        );
    }
    for (i, h) in ms.gateway_hosts.iter().enumerate() {
        if h.is_empty() || h.contains(':') || h.contains('/') || h.contains(' ') {
            return mesh_err(
                format!("{path}.gatewayHosts[{i}]"),
                format!("{h:?}: a host name without port"),
            );
        }
    }
    let domain = mesh.cluster_domain.as_deref().unwrap_or("cluster.local");
    Ok(Service {
        fqdn: format!("{name}.{namespace}.svc.{domain}"),
        name: name.to_string(),
        namespace,
        port: ms.port,
        lanes,
        labels,
        gateway_hosts: ms.gateway_hosts.clone(),
    })
}

/// A service's lanes: the mesh description's, the plugin configuration's
/// `services`, or both when they agree; each a declared lane, once.
fn service_lanes(
    plugin: &PluginConfig,
    path: &str,
    name: &str,
    ms: &RawMeshService,
) -> Result<Vec<String>, Error> {
    let from_config: Option<Vec<String>> = plugin
        .raw
        .services
        .get(name)
        .map(|s| s.lanes.keys().cloned().collect());
    let lanes = match (&ms.lanes, &from_config) {
        (Some(mine), Some(theirs)) => {
            let a: BTreeSet<&String> = mine.iter().collect();
            let b: BTreeSet<&String> = theirs.iter().collect();
            if a != b {
                return mesh_err(
                    format!("{path}.lanes"),
                    format!(
                        "{mine:?} differs from the plugin configuration's services.{name}.lanes {theirs:?}"
                    ),
                );
            }
            mine.clone()
        }
        (Some(mine), None) => mine.clone(),
        (None, Some(theirs)) => theirs.clone(),
        (None, None) => Vec::new(),
    };
    let declared = &plugin.declared;
    let mut seen = BTreeSet::new();
    for (i, lane) in lanes.iter().enumerate() {
        if !declared.contains(lane) {
            return mesh_err(
                format!("{path}.lanes[{i}]"),
                format!(
                    "{lane:?} is not a lane of the plugin configuration (lanes and propagate: {declared:?})"
                ),
            );
        }
        if !seen.insert(lane) {
            return mesh_err(format!("{path}.lanes[{i}]"), format!("{lane:?} twice"));
        }
    }
    Ok(lanes)
}

/// The pod labels of each subset (base and the lanes); `version: SUBSET`
/// unless the mesh description says otherwise.
fn subset_labels(
    path: &str,
    name: &str,
    ms: &RawMeshService,
    lanes: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
    let mut labels = BTreeMap::new();
    for subset in std::iter::once("base").chain(lanes.iter().map(String::as_str)) {
        let l = ms
            .labels
            .get(subset)
            .cloned()
            .unwrap_or_else(|| BTreeMap::from([("version".to_string(), subset.to_string())]));
        if l.is_empty() {
            return mesh_err(
                format!("{path}.labels.{subset}"),
                "no label: a subset needs at least one",
            );
        }
        labels.insert(subset.to_string(), l);
    }
    for key in ms.labels.keys() {
        if !labels.contains_key(key) {
            return mesh_err(
                format!("{path}.labels.{key}"),
                format!("{key:?} is neither base nor a lane of {name} ({lanes:?})"),
            );
        }
    }
    Ok(labels)
}

/// The ingress gateway of the mesh description, with its defaults.
struct Gateway {
    name: String,
    namespace: String,
    selector: BTreeMap<String, String>,
    port: u16,
}

fn gateway(mesh: &RawMesh) -> Result<Option<Gateway>, Error> {
    let Some(g) = &mesh.gateway else {
        return Ok(None);
    };
    let name = g
        .name
        .clone()
        .unwrap_or_else(|| DEFAULT_GATEWAY_NAME.into());
    check_name("gateway.name", &name)?;
    let namespace = g.namespace.clone().unwrap_or_else(|| "istio-system".into());
    check_name("gateway.namespace", &namespace)?;
    let selector = g
        .selector
        .clone()
        .unwrap_or_else(|| BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]));
    if selector.is_empty() {
        return mesh_err("gateway.selector", "no label: name the gateway's pods");
    }
    let port = g.port.unwrap_or(80);
    if port == 0 {
        return mesh_err("gateway.port", "a port from 1 to 65535");
    }
    Ok(Some(Gateway {
        name,
        namespace,
        selector,
        port,
    }))
}

/// A `WasmPlugin` of graylane (with the image's digest when given).
fn wasm_plugin(mesh: &RawMesh, name: &str, namespace: &str, spec: Value) -> Value {
    let mut spec = spec;
    if let (Some(map), Some(sha)) = (spec.as_object_mut(), &mesh.sha256) {
        map.insert("sha256".into(), json!(sha));
    }
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// The edge's `WasmPlugin` and the `Gateway`.
fn edge_files(mesh: &RawMesh, plugin: &PluginConfig, gw: &Gateway) -> [File; 2] {
    let mut edge = plugin.json.as_object().cloned().unwrap_or_default();
    edge.remove("services");
    edge.insert("incoming".into(), json!("ignore"));
    let doc = wasm_plugin(
        mesh,
        "graylane-edge",
        &gw.namespace,
        json!({
            "selector": {"matchLabels": gw.selector},
            "url": mesh.image,
            "imagePullPolicy": "IfNotPresent",
            "pluginName": "graylane",
            "type": "HTTP",
            "phase": "AUTHZ",
            "priority": 1000,
            "failStrategy": "FAIL_RELOAD",
            "pluginConfig": Value::Object(edge),
        }),
    );
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": gw.name, "namespace": mesh.namespace},
        "spec": {
            "selector": gw.selector,
            "servers": [{
                "port": {"number": gw.port, "name": "http", "protocol": "HTTP"},
                "hosts": ["*"],
            }],
        },
    });
    [
        file(
            "gateway-wasmplugin.yaml",
            "graylane at the edge: the ingress gateway decides each request's lane from\n\
             the rules (incoming: ignore removes client-sent tags first). FAIL_RELOAD\n\
             (Istio 1.27+; FAIL_CLOSE before): an edge without graylane would let a\n\
             client's own lane header reach the lane routes.",
            &[doc],
        ),
        file(
            "gateway.yaml",
            "The ingress gateway's HTTP port; the VirtualServices with gatewayHosts bind to it.",
            &[gateway],
        ),
    ]
}

/// The sidecars' `WasmPlugin`.
fn hop_file(mesh: &RawMesh, plugin: &PluginConfig) -> File {
    let mut hop = Map::new();
    hop.insert("incoming".into(), json!("trust"));
    hop.insert("propagate".into(), json!(plugin.declared));
    for key in ["laneHeader", "baggageKey", "shadow"] {
        if let Some(v) = plugin.json.get(key) {
            hop.insert(key.into(), v.clone());
        }
    }
    // With continuity the sidecars' inbound side remembers each trace's
    // lane, so the plugin runs on both sides.
    let mode = match &mesh.continuity {
        Some(c) => {
            hop.insert(
                "continuity".into(),
                json!({"from": c.from, "ttl": c.ttl, "slots": c.slots}),
            );
            "CLIENT_AND_SERVER"
        }
        None => "CLIENT",
    };
    let doc = wasm_plugin(
        mesh,
        "graylane-hop",
        &mesh.namespace,
        json!({
            "url": mesh.image,
            "imagePullPolicy": "IfNotPresent",
            "pluginName": "graylane",
            "type": "HTTP",
            "match": [{"mode": mode}],
            "phase": "AUTHZ",
            "priority": 1000,
            "failStrategy": "FAIL_OPEN",
            "pluginConfig": Value::Object(hop),
        }),
    );
    file(
        "sidecar-wasmplugin.yaml",
        "graylane at every hop (the sidecars' outbound calls): keeps the lane the\n\
         edge decided, read from the W3C baggage the app forwarded (incoming: trust),\n\
         and writes it into the lane header the VirtualServices route on. Every lane\n\
         is declared in propagate. FAIL_OPEN: a hop without graylane sends its calls\n\
         to base instead of failing them.",
        &[doc],
    )
}

/// A service's `DestinationRule`, `VirtualService` and fallback
/// `EnvoyFilter`s (sidecars, and the gateway when it routes to it).
fn service_file(
    svc: &Service,
    lane_header: &str,
    outlier: &Value,
    ef_namespace: &str,
    gateway: Option<&Gateway>,
) -> File {
    let mut docs = vec![
        destination_rule(svc, outlier),
        virtual_service(svc, lane_header, gateway.map(|g| g.name.as_str())),
    ];
    if !svc.lanes.is_empty() {
        let mesh_hosts = vec![format!("{}:{}", svc.fqdn, svc.port)];
        docs.push(envoy_filter(
            svc,
            &format!("{}-graylane-fallback", svc.name),
            ef_namespace,
            None,
            Context::SidecarOutbound,
            &mesh_hosts,
        ));
        if let (Some(gw), false) = (gateway, svc.gateway_hosts.is_empty()) {
            let hosts: Vec<String> = svc
                .gateway_hosts
                .iter()
                .map(|h| format!("{h}:{}", gw.port))
                .collect();
            docs.push(envoy_filter(
                svc,
                &format!("{}-graylane-fallback-gateway", svc.name),
                &gw.namespace,
                Some(&gw.selector),
                Context::Gateway,
                &hosts,
            ));
        }
    }
    let lanes = if svc.lanes.is_empty() {
        "base only: every lane takes the default route to base.".to_string()
    } else {
        format!(
            "versions base and {}.\nA lane whose subset has no healthy endpoint falls back to base\n\
             (the EnvoyFilters: an aggregate cluster per lane, and its route).",
            svc.lanes.join(", ")
        )
    };
    file(
        &format!("{}.yaml", svc.name),
        &format!("{} ({}): {lanes}", svc.name, svc.fqdn),
        &docs,
    )
}

/// The whole recipe as one YAML stream (stdout).
pub fn stream(files: &[File]) -> String {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&format!("# {}\n", f.name));
        out.push_str(&f.text);
    }
    out
}

const HEADER: &str =
    "# Generated by `graylane istio` (README \"Istio recipe\"); edit its input, not this file.\n";

fn file(name: &str, comment: &str, docs: &[Value]) -> File {
    let mut text = String::from(HEADER);
    for line in comment.lines() {
        text.push_str("# ");
        text.push_str(line.trim_start());
        text.push('\n');
    }
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        text.push_str(&yaml(d));
    }
    File {
        name: name.into(),
        text,
    }
}

/// YAML of a value (keys sorted, as serde_json's map keeps them). Strings
/// that YAML 1.1 (kubectl) would read as booleans or numbers are quoted by
/// serde_norway.
fn yaml(v: &Value) -> String {
    serde_norway::to_string(v).unwrap_or_default()
}

fn check_name(path: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        mesh_err(
            path,
            format!("{name:?}: a DNS label (1-63 of a-z 0-9 -, not starting or ending with -)"),
        )
    }
}

/// A duration as `1s`, `500ms`, `2m` or `1h`, written back in seconds
/// (`0.5s`): the JSON form of a `google.protobuf.Duration`, which every
/// reader of the `DestinationRule` accepts.
fn duration(path: &str, text: &str) -> Result<String, Error> {
    let (num, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        ("", 0.0)
    };
    let value = if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        num.parse::<f64>().ok().map(|v| v * scale)
    } else {
        None
    };
    match value {
        // Whole milliseconds, so the text is exact.
        Some(v) if (0.001..=315_576_000_000.0).contains(&v) => {
            let ms = (v * 1000.0).round() as u64;
            let text = if ms.is_multiple_of(1000) {
                format!("{}s", ms / 1000)
            } else {
                let frac = format!("{:03}", ms % 1000);
                format!("{}.{}s", ms / 1000, frac.trim_end_matches('0'))
            };
            Ok(text)
        }
        _ => mesh_err(path, format!("{text:?}: a duration such as 1s, 500ms, 2m")),
    }
}

fn outlier_detection(o: Option<&RawOutlier>) -> Result<Value, Error> {
    let c5 = o.and_then(|o| o.consecutive_5xx_errors).unwrap_or(3);
    let local = o
        .and_then(|o| o.consecutive_local_origin_failures)
        .unwrap_or(1);
    let interval = o.and_then(|o| o.interval.clone()).unwrap_or("1s".into());
    let base = o
        .and_then(|o| o.base_ejection_time.clone())
        .unwrap_or("15s".into());
    if c5 == 0 {
        return mesh_err("outlierDetection.consecutive5xxErrors", "at least 1");
    }
    if local == 0 {
        return mesh_err(
            "outlierDetection.consecutiveLocalOriginFailures",
            "at least 1",
        );
    }
    let interval = duration("outlierDetection.interval", &interval)?;
    let base = duration("outlierDetection.baseEjectionTime", &base)?;
    Ok(json!({
        "consecutive5xxErrors": c5,
        "splitExternalLocalOriginErrors": true,
        "consecutiveLocalOriginFailures": local,
        "interval": interval,
        "baseEjectionTime": base,
        // Every endpoint of a lane may be ejected: then the lane is empty
        // and the aggregate cluster sends its traffic to base.
        "maxEjectionPercent": 100,
    }))
}

fn destination_rule(svc: &Service, outlier: &Value) -> Value {
    let mut subsets = Vec::new();
    for (subset, labels) in std::iter::once("base")
        .chain(svc.lanes.iter().map(String::as_str))
        .filter_map(|s| svc.labels.get(s).map(|l| (s, l)))
    {
        // Only lane subsets: base has nowhere to fall back to, and ejecting
        // all of it would fail requests that its failing endpoints might
        // still answer.
        subsets.push(if subset == "base" {
            json!({"name": subset, "labels": labels})
        } else {
            json!({"name": subset, "labels": labels, "trafficPolicy": {"outlierDetection": outlier}})
        });
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": svc.name, "namespace": svc.namespace},
        "spec": {"host": svc.name, "subsets": subsets},
    })
}

fn virtual_service(svc: &Service, lane_header: &str, gateway: Option<&str>) -> Value {
    let destination = |subset: &str| json!([{"destination": {"host": svc.name, "subset": subset, "port": {"number": svc.port}}}]);
    let mut http = Vec::new();
    for lane in &svc.lanes {
        http.push(json!({
            "name": route_name(lane),
            "match": [{"headers": {lane_header: {"exact": lane}}}],
            "route": destination(lane),
            // Istio's default retry policy, plus previous_priorities
            // (retryRemoteLocalities): a retry of a failed connection to
            // the lane goes to the next priority of the aggregate, base.
            "retries": {"attempts": 2, "retryRemoteLocalities": true},
        }));
    }
    http.push(json!({"name": route_name("base"), "route": destination("base")}));
    let mut hosts = vec![svc.name.clone()];
    let mut spec = Map::new();
    if let (Some(gw), false) = (gateway, svc.gateway_hosts.is_empty()) {
        hosts = svc.gateway_hosts.clone();
        hosts.push(svc.name.clone());
        spec.insert("gateways".into(), json!([gw, "mesh"]));
    }
    spec.insert("hosts".into(), json!(hosts));
    spec.insert("http".into(), json!(http));
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": svc.name, "namespace": svc.namespace},
        "spec": spec,
    })
}

fn envoy_filter(
    svc: &Service,
    name: &str,
    namespace: &str,
    selector: Option<&BTreeMap<String, String>>,
    context: Context,
    vhosts: &[String],
) -> Value {
    let mut patches = Vec::new();
    for lane in &svc.lanes {
        let aggregate = fallback_cluster_name(svc.port, lane, &svc.fqdn);
        patches.push(json!({
            "applyTo": "CLUSTER",
            "match": {"context": context.as_str()},
            "patch": {
                "operation": "ADD",
                "value": {
                    "name": aggregate,
                    "connect_timeout": "10s",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "cluster_type": {
                        "name": "envoy.clusters.aggregate",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig",
                            "clusters": [svc.subset_cluster(lane), svc.subset_cluster("base")],
                        },
                    },
                    // The route's cluster holds the retry budget: when the
                    // last endpoint of a lane goes, every request in flight
                    // may retry at once (Envoy's default allows 3; Istio's
                    // own clusters have no limit either).
                    "circuit_breakers": {"thresholds": [{"max_retries": 4294967295u32}]},
                },
            },
        }));
        // Envoy delays host health changes by `update_merge_window` (1 s by
        // default, which Istio keeps): an ejected lane endpoint would go on
        // taking requests that long. At 0 an ejection moves the lane's
        // traffic to base at once.
        patches.push(json!({
            "applyTo": "CLUSTER",
            "match": {"context": context.as_str(), "cluster": {"name": svc.subset_cluster(lane)}},
            "patch": {
                "operation": "MERGE",
                "value": {"common_lb_config": {"update_merge_window": "0s"}},
            },
        }));
        for vhost in vhosts {
            patches.push(json!({
                "applyTo": "HTTP_ROUTE",
                "match": {
                    "context": context.as_str(),
                    "routeConfiguration": {
                        "vhost": {
                            "name": vhost,
                            "route": {"name": route_name(lane), "action": "ROUTE"},
                        },
                    },
                },
                "patch": {"operation": "MERGE", "value": {"route": {"cluster": aggregate}}},
            }));
        }
    }
    let mut spec = Map::new();
    if let Some(labels) = selector {
        spec.insert("workloadSelector".into(), json!({"labels": labels}));
    }
    spec.insert("configPatches".into(), json!(patches));
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}],
        "services": {"svc-a": {"base": "a", "lanes": {"gray": "a-gray"}}}}"#;

    fn mesh(text: &str) -> RawMesh {
        parse_mesh(text.as_bytes()).unwrap()
    }

    fn err(config: &str, mesh_text: &str) -> String {
        generate(config.as_bytes(), &mesh(mesh_text))
            .unwrap_err()
            .to_string()
    }

    const MESH: &str = "namespace: demo\nimage: oci://r/graylane:1\ngateway: {}\nservices:\n  svc-a: {port: 9080, gatewayHosts: [shop.example.com]}\n  svc-b: {port: 9080}\n";

    #[test]
    fn same_input_same_bytes_and_names_as_istio() {
        let a = generate(CONFIG.as_bytes(), &mesh(MESH)).unwrap();
        let b = generate(CONFIG.as_bytes(), &mesh(MESH)).unwrap();
        assert_eq!(stream(&a), stream(&b));
        let text = stream(&a);
        for want in [
            "graylane-fallback|9080|gray|svc-a.demo.svc.cluster.local",
            "outbound|9080|gray|svc-a.demo.svc.cluster.local",
            "outbound|9080|base|svc-a.demo.svc.cluster.local",
            "name: svc-a.demo.svc.cluster.local:9080",
            "name: shop.example.com:80",
            "context: GATEWAY",
            "context: SIDECAR_OUTBOUND",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        let names: Vec<&str> = a.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gateway-wasmplugin.yaml",
                "gateway.yaml",
                "sidecar-wasmplugin.yaml",
                "svc-a.yaml",
                "svc-b.yaml"
            ]
        );
        // svc-b has no lane: no EnvoyFilter.
        assert!(!a[4].text.contains("EnvoyFilter"), "{}", a[4].text);
    }

    #[test]
    fn continuity_runs_the_sidecar_plugin_on_both_sides() {
        let plain = generate(CONFIG.as_bytes(), &mesh(MESH)).unwrap();
        assert!(
            plain[2].text.contains("mode: CLIENT\n"),
            "{}",
            plain[2].text
        );
        assert!(!plain[2].text.contains("continuity"), "{}", plain[2].text);
        let with = format!("{MESH}continuity: {{from: [traceparent], ttl: 30s}}\n");
        let files = generate(CONFIG.as_bytes(), &mesh(&with)).unwrap();
        let hop = &files[2].text;
        assert!(hop.contains("mode: CLIENT_AND_SERVER"), "{hop}");
        assert!(hop.contains("continuity:"), "{hop}");
        assert!(hop.contains("- traceparent"), "{hop}");
        assert!(hop.contains("ttl: 30s"), "{hop}");
        assert!(hop.contains("slots: 65536"), "{hop}");
        // The edge is unchanged.
        assert_eq!(files[0].text, plain[0].text);
        let bad = format!("{MESH}continuity: {{ttl: soon}}\n");
        assert!(
            err(CONFIG, &bad).contains("mesh: continuity: continuity.ttl:"),
            "{}",
            err(CONFIG, &bad)
        );
        let sided = format!("{MESH}continuity: {{side: inbound}}\n");
        assert!(
            err(CONFIG, &sided).contains("mesh: continuity.side:"),
            "{}",
            err(CONFIG, &sided)
        );
    }

    #[test]
    fn durations_in_seconds() {
        for (text, want) in [
            ("1s", "1s"),
            ("500ms", "0.5s"),
            ("2m", "120s"),
            ("1.25s", "1.25s"),
            ("1h", "3600s"),
        ] {
            assert_eq!(duration("p", text).unwrap(), want);
        }
        for bad in ["", "s", "1", "-1s", "0s", "1d", "1.2.3s"] {
            assert!(duration("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (CONFIG, "namespace: demo\nimage: x\nservices: {svc-a: {port: 1}}\n", "mesh: image:"),
            (CONFIG, "namespace: demo\nimage: oci://x\nservices: {svc-a: {port: 1, lanes: [blue]}}\n", "mesh: services.svc-a.lanes:"),
            (CONFIG, "namespace: demo\nimage: oci://x\nservices: {svc-a: {port: 0}}\n", "mesh: services.svc-a.port:"),
            (CONFIG, "namespace: demo\nimage: oci://x\nservices: {svc-b: {port: 1}}\n", "config: services.svc-a:"),
            (CONFIG, "namespace: Demo\nimage: oci://x\nservices: {svc-a: {port: 1}}\n", "mesh: namespace:"),
            (CONFIG, "namespace: demo\nimage: oci://x\nservices: {svc-a: {port: 1, gatewayHosts: [a]}}\n", "mesh: services.svc-a.gatewayHosts:"),
            (CONFIG, "namespace: demo\nimage: oci://x\nservices: {svc-a: {port: 1, labels: {blue: {v: b}}}}\n", "mesh: services.svc-a.labels.blue:"),
            (CONFIG, "namespace: demo\nimage: oci://x\noutlierDetection: {interval: soon}\nservices: {svc-a: {port: 1}}\n", "mesh: outlierDetection.interval:"),
            (r#"{"lanes": []}"#, MESH, "config: "),
        ];
        for (config, mesh_text, want) in cases {
            let e = err(config, mesh_text);
            assert!(e.starts_with(want), "{want} <- {e}");
        }
        let e =
            parse_mesh(b"namespace: demo\nimage: oci://x\nservices: {svc-a: {port: 1, prot: 2}}\n")
                .unwrap_err();
        assert_eq!(e.path, "services.svc-a.prot", "{e}");
    }
}
