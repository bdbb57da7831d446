//! The full-link chain of `envoy/fulllink/`: small apps that answer with
//! their name and version, call the next service through their sidecar and
//! forward only the `baggage` header (as an OpenTelemetry-instrumented app
//! does), and the three Envoys between them.

use crate::harness::{free_port, repo_root, request, Envoy, Received, Server};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An app version: answers JSON `{"trace": "A[gray] -> B[base] -> C[gray]", "baggage": <what the last app received>}`.
pub fn app(name: &str, version: &str, next: Option<(u16, &str)>) -> Server {
    let me = format!("{name}[{version}]");
    let next = next.map(|(port, host)| (port, host.to_string()));
    Server::start(Arc::new(move |req: &Received| {
        let baggage = req.header("baggage").map(str::to_string);
        let Some((port, host)) = &next else {
            let body = serde_json::json!({"trace": me, "baggage": baggage});
            return (200, vec![], body.to_string().into_bytes());
        };
        let mut headers: Vec<(&str, &[u8])> = vec![("host", host.as_bytes())];
        if let Some(b) = &baggage {
            headers.push(("baggage", b.as_bytes()));
        }
        call_next(
            &me,
            *port,
            &req.path,
            &headers,
            |trace, down| serde_json::json!({"trace": trace, "baggage": down["baggage"]}),
        )
    }))
}

/// An app's call to the next service: on a 200, its answer is `body(trace,
/// the next service's JSON)`, where `trace` is `me -> ` the next one's
/// trace; otherwise a 502 that says what the call got.
pub fn call_next(
    me: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &[u8])],
    body: impl FnOnce(String, &serde_json::Value) -> serde_json::Value,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    match request(port, "GET", path, headers) {
        Ok(r) if r.status == 200 => {
            let down: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let trace = format!("{me} -> {}", down["trace"].as_str().unwrap_or("?"));
            (200, vec![], body(trace, &down).to_string().into_bytes())
        }
        Ok(r) => (
            502,
            vec![],
            format!("{me} -> {} {}", r.status, r.text()).into_bytes(),
        ),
        Err(e) => (502, vec![], format!("{me} -> error {e}").into_bytes()),
    }
}

/// Reads an `envoy/fulllink/` config and moves its ports to the given ones.
pub fn fulllink_config(file: &str, ports: &BTreeMap<u16, u16>) -> String {
    let path = repo_root().join("envoy/fulllink").join(file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in ports {
        text = text.replace(
            &format!("port_value: {from} "),
            &format!("port_value: {to} "),
        );
    }
    text
}

/// The running chain.
pub struct Chain {
    pub edge: Envoy,
    pub sidecar_a: Envoy,
    pub sidecar_b: Envoy,
    pub edge_port: u16,
    _apps: Vec<Server>,
}

impl Chain {
    /// Starts the chain; `b_gray` switches to the config where B has a gray version.
    pub fn start(b_gray: bool) -> Chain {
        // Default port in the committed configs -> free port now.
        let mut ports = BTreeMap::new();
        for p in [10100, 10120, 10130] {
            ports.insert(p, free_port());
        }
        let (sa, sb) = (ports[&10120], ports[&10130]);
        let mut apps = Vec::new();
        let mut add = |default: u16, server: Server, ports: &mut BTreeMap<u16, u16>| {
            ports.insert(default, server.port);
            apps.push(server);
        };
        add(10111, app("A", "base", Some((sa, "svc-b"))), &mut ports);
        add(10112, app("A", "gray", Some((sa, "svc-b"))), &mut ports);
        add(10121, app("B", "base", Some((sb, "svc-c"))), &mut ports);
        add(10122, app("B", "gray", Some((sb, "svc-c"))), &mut ports);
        add(10131, app("C", "base", None), &mut ports);
        add(10132, app("C", "gray", None), &mut ports);
        add(10133, app("C", "android", None), &mut ports);
        let start = |file: &str| {
            let mut yaml = fulllink_config(file, &ports);
            for admin in [9910, 9920, 9930] {
                yaml = yaml.replace(&format!("port_value: {admin} "), "port_value: {{ADMIN}} ");
            }
            Envoy::start_with(&yaml, &[], 1)
        };
        let sidecar_b = start("sidecar-b.yaml");
        let sidecar_a = start(if b_gray {
            "sidecar-a-b-gray.yaml"
        } else {
            "sidecar-a.yaml"
        });
        let edge = start("edge.yaml");
        Chain {
            edge,
            sidecar_a,
            sidecar_b,
            edge_port: ports[&10100],
            _apps: apps,
        }
    }

    /// Sends a request to the edge; returns the trace and the baggage C received.
    pub fn call(&self, headers: &[(&str, &str)]) -> (String, Option<String>) {
        let mut raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        raw.push(("host", b"svc-a"));
        let r = request(self.edge_port, "GET", "/", &raw).expect("edge request");
        assert_eq!(r.status, 200, "chain failed: {}", r.text());
        let v = r.json();
        (
            v["trace"].as_str().unwrap_or_default().to_string(),
            v["baggage"].as_str().map(str::to_string),
        )
    }
}
