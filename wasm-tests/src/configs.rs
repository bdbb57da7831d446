//! Envoy configs for the tests, built from the pieces every test shares.

use crate::harness::json_string_value;

/// The graylane HTTP filter with a plugin configuration (JSON text),
/// delivered as Istio does: a `google.protobuf.StringValue`.
pub fn wasm_filter(plugin_json: &str) -> String {
    wasm_filter_with(
        plugin_json,
        "FAIL_RELOAD",
        r#"{ local: { filename: "{{WASM}}" } }"#,
    )
}

/// [`wasm_filter`] with another `failure_policy` and another
/// `vm_config.code` (`code_yaml`: a one-line YAML flow mapping, such as
/// `{ remote: { ... } }`).
pub fn wasm_filter_with(plugin_json: &str, failure_policy: &str, code_yaml: &str) -> String {
    format!(
        r#"
          - name: graylane
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: graylane
                root_id: graylane
                failure_policy: {failure_policy}
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {code_yaml}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {}"#,
        json_string_value(plugin_json)
    )
}

/// The `stats_tags` that turn graylane's counter names into Prometheus labels.
pub const STATS_TAGS: &str = r#"
stats_config:
  stats_tags:
  - tag_name: source
    regex: '^wasmcustom\.graylane\.requests(\.source\.([a-z]+))\.lane\.'
  - tag_name: lane
    regex: '^wasmcustom\.graylane\.requests\.source\.[a-z]+(\.lane\.(.+))$'
  - tag_name: service
    regex: '^wasmcustom\.graylane\.fallbacks(\.service\.(.+))$'
  - tag_name: rule
    regex: '^wasmcustom\.graylane\.rule_wins(\.rule\.(.+))$'
"#;

/// A static cluster to one 127.0.0.1 port.
pub fn cluster(name: &str, port: u16) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"#
    )
}

/// An HTTP listener running `filters` (already rendered) then the router,
/// with the given routes (already rendered YAML list items).
pub fn listener(name: &str, port: u16, filters: &str, virtual_hosts: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
              log_format:
                text_format_source:
                  inline_string: "ACCESS {name} %REQ(:AUTHORITY)% %RESPONSE_CODE% lane=%FILTER_STATE(wasm.graylane.lane:PLAIN)% cluster=%UPSTREAM_CLUSTER%\n"
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            name: {name}
            virtual_hosts:{virtual_hosts}"#
    )
}

/// A virtual host routing on the lane header: one route per lane to the
/// cluster `lane-<name>`, and base as the default route (the fallback).
pub fn lane_routes(domains: &str, lane_header: &str, lanes: &[&str], base_cluster: &str) -> String {
    let mut routes = String::new();
    for lane in lanes {
        routes.push_str(&format!(
            r#"
              - match: {{ prefix: "/", headers: [ {{ name: {lane_header}, string_match: {{ exact: "{lane}" }} }} ] }}
                route: {{ cluster: "lane-{lane}" }}"#
        ));
    }
    format!(
        r#"
            - name: lanes-{base_cluster}
              domains: [{domains}]
              routes:{routes}
              - match: {{ prefix: "/" }}
                route: {{ cluster: "{base_cluster}" }}"#
    )
}

/// A virtual host routing with `cluster_header` (the `services` map).
pub fn cluster_header_routes(domains: &str, cluster_header: &str) -> String {
    format!(
        r#"
            - name: by-cluster-header
              domains: [{domains}]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster_header: "{cluster_header}" }}"#
    )
}

/// A whole bootstrap: admin on `{{ADMIN}}`, the stats tags, listeners, clusters.
pub fn bootstrap(listeners: &str, clusters: &str) -> String {
    format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{{{ADMIN}}}} }} }}
{STATS_TAGS}
static_resources:
  listeners:{listeners}
  clusters:{clusters}
"#
    )
}

use crate::harness::{free_port, request, Envoy, Response, Server};
use std::collections::BTreeMap;

/// An edge gateway: Envoy with graylane, one echo backend per lane plus
/// `base`, routes on `x-graylane`. Hosts named in `services` route with
/// `cluster_header` instead, to clusters named after the lanes' backends.
pub struct Gateway {
    pub envoy: Envoy,
    pub port: u16,
    pub backends: BTreeMap<String, Server>,
}

impl Gateway {
    /// `lanes`: the lane names that get a backend (cluster `lane-<name>`);
    /// the base backend's cluster is `base`.
    pub fn start(plugin_json: &str, lanes: &[&str]) -> Gateway {
        Self::start_with_hosts(plugin_json, lanes, &[])
    }

    /// Like [`Gateway::start`], with hosts routed by `x-graylane-cluster`.
    pub fn start_with_hosts(
        plugin_json: &str,
        lanes: &[&str],
        cluster_header_hosts: &[&str],
    ) -> Gateway {
        Self::start_with_options(plugin_json, lanes, cluster_header_hosts, "")
    }

    /// Like [`Gateway::start_with_hosts`]; `hcm_options` (YAML lines at the
    /// HttpConnectionManager's indentation) are added to its config.
    pub fn start_with_options(
        plugin_json: &str,
        lanes: &[&str],
        cluster_header_hosts: &[&str],
        hcm_options: &str,
    ) -> Gateway {
        let port = free_port();
        let mut backends = BTreeMap::new();
        let mut clusters = String::new();
        for name in std::iter::once("base").chain(lanes.iter().copied()) {
            let server = Server::echo(name);
            let cluster_name = if name == "base" {
                "base".to_string()
            } else {
                format!("lane-{name}")
            };
            clusters.push_str(&cluster(&cluster_name, server.port));
            backends.insert(name.to_string(), server);
        }
        let mut vhosts = String::new();
        if !cluster_header_hosts.is_empty() {
            let domains: Vec<String> = cluster_header_hosts
                .iter()
                .map(|h| format!("\"{h}\", \"{h}:*\""))
                .collect();
            vhosts.push_str(&cluster_header_routes(
                &domains.join(", "),
                "x-graylane-cluster",
            ));
        }
        vhosts.push_str(&lane_routes("\"*\"", "x-graylane", lanes, "base"));
        let hcm = listener("gateway", port, &wasm_filter(plugin_json), &vhosts);
        let anchor = "stat_prefix: gateway";
        let hcm = hcm.replacen(anchor, &format!("{anchor}{hcm_options}"), 1);
        let yaml = bootstrap(&hcm, &clusters);
        let envoy = Envoy::start(&yaml, &[]);
        Gateway {
            envoy,
            port,
            backends,
        }
    }

    /// Sends a request; `:path`, `:method` and `:authority` pseudo-header
    /// pairs become the request line and the host header.
    pub fn send(&self, headers: &[(&str, &[u8])]) -> Response {
        let mut path = "/";
        let mut method = "GET";
        let mut rest: Vec<(&str, &[u8])> = Vec::new();
        let mut host: Option<&[u8]> = None;
        for (k, v) in headers {
            match *k {
                ":path" => path = std::str::from_utf8(v).unwrap(),
                ":method" => method = std::str::from_utf8(v).unwrap(),
                ":authority" => host = Some(v),
                _ => rest.push((k, v)),
            }
        }
        rest.push(("host", host.unwrap_or(b"gateway.test")));
        request(self.port, method, path, &rest).expect("request to the gateway")
    }

    /// [`Gateway::send`] with text values.
    pub fn send_str(&self, headers: &[(&str, &str)]) -> Response {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.send(&raw)
    }

    /// Which backend answered (the `x-backend` header of the echo backends).
    pub fn lane_of(&self, headers: &[(&str, &str)]) -> String {
        let r = self.send_str(headers);
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("x-backend").unwrap_or("none").to_string()
    }
}

/// The protocol options Istio gives a cluster it reaches over HTTP/2 (a
/// gRPC or HTTP/2 port, or `h2UpgradePolicy: UPGRADE`): explicit HTTP/2,
/// with its large stream limit. YAML at a cluster's indentation.
pub const H2_PROTOCOL_OPTIONS: &str = r#"
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: { max_concurrent_streams: 1073741824 }"#;

/// [`cluster`] reached over HTTP/2 ([`H2_PROTOCOL_OPTIONS`]).
pub fn h2_cluster(name: &str, port: u16) -> String {
    cluster(name, port) + H2_PROTOCOL_OPTIONS
}

/// [`listener`] whose access log lines also say the downstream protocol
/// (`protocol=HTTP/2`, `protocol=HTTP/1.1`).
pub fn listener_logging_protocol(
    name: &str,
    port: u16,
    filters: &str,
    virtual_hosts: &str,
) -> String {
    listener(name, port, filters, virtual_hosts).replacen(
        r"cluster=%UPSTREAM_CLUSTER%\n",
        r"cluster=%UPSTREAM_CLUSTER% protocol=%PROTOCOL%\n",
        1,
    )
}
