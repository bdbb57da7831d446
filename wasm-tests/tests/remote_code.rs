#![cfg(not(target_arch = "wasm32"))]
//! The module delivered over HTTP: Envoy loads `graylane.wasm` through
//! `vm_config.code.remote` (an `http_uri` to a local server, the file's
//! `sha256`, a `retry_policy`), the way plain Envoy users deliver it.
//!
//! - the right sha256: the filter works;
//! - a wrong sha256: Envoy refuses the module. It does not exit: it retries
//!   the fetch as if it had failed, then starts the listener with the filter
//!   unloaded -- every request is answered 503 (`FAIL_RELOAD` or
//!   `FAIL_CLOSED`), or passes without graylane (`FAIL_OPEN`);
//! - the server down at start-up: Envoy retries per `retry_policy`, stays
//!   not ready (and the listener closed) meanwhile, and the filter works
//!   once the server answers.

use graylane_wasm_tests::configs::{bootstrap, cluster, lane_routes, listener, wasm_filter_with};
use graylane_wasm_tests::harness::{free_port, get, poll, request_str, wasm_path, Envoy, Server};
use graylane_wasm_tests::load::{App, AppRequest};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PLUGIN: &str =
    r#"{"lanes": [{"name": "gray", "match": {"header": "location", "exact": "cn-shenzhen"}}]}"#;

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn module() -> Vec<u8> {
    std::fs::read(wasm_path()).expect("the built filter")
}

/// A server that hands out `body` at `/graylane.wasm` and counts the fetches.
fn module_server(port: u16, body: Vec<u8>) -> App {
    let body = Arc::new(body);
    App::start_on(
        port,
        Arc::new(move |req: &AppRequest| {
            if req.path == "/graylane.wasm" {
                (200, Vec::new(), body.as_ref().clone())
            } else {
                (404, Vec::new(), Vec::new())
            }
        }),
    )
    .expect("bind the module server")
}

/// The graylane filter with its code fetched from `http://127.0.0.1:PORT`.
fn remote_filter(server_port: u16, sha256: &str, retries: u32, policy: &str) -> String {
    let code = format!(
        "{{ remote: {{ \
           http_uri: {{ uri: \"http://127.0.0.1:{server_port}/graylane.wasm\", \
                       cluster: graylane_module, timeout: 5s }}, \
           sha256: \"{sha256}\", \
           retry_policy: {{ retry_back_off: {{ base_interval: 0.1s, max_interval: 0.5s }}, \
                           num_retries: {retries} }} }} }}"
    );
    wasm_filter_with(PLUGIN, policy, &code)
}

struct RemoteGateway {
    envoy: Envoy,
    port: u16,
    _backends: Vec<Server>,
}

/// Starts Envoy (waiting until it is ready) with the module at
/// `server_port`; the listener routes on `x-graylane` to echo backends.
fn start_gateway(server_port: u16, sha256: &str, retries: u32, policy: &str) -> RemoteGateway {
    let gw = launch_gateway(server_port, sha256, retries, policy);
    gw.envoy.wait_ready();
    gw
}

/// [`start_gateway`] without waiting for Envoy to be ready.
fn launch_gateway(server_port: u16, sha256: &str, retries: u32, policy: &str) -> RemoteGateway {
    let port = free_port();
    let (base, gray) = (Server::echo("base"), Server::echo("gray"));
    let clusters = format!(
        "{}{}{}",
        cluster("base", base.port),
        cluster("lane-gray", gray.port),
        cluster("graylane_module", server_port)
    );
    let yaml = bootstrap(
        &listener(
            "gateway",
            port,
            &remote_filter(server_port, sha256, retries, policy),
            &lane_routes("\"*\"", "x-graylane", &["gray"], "base"),
        ),
        &clusters,
    );
    RemoteGateway {
        envoy: Envoy::launch(&yaml, &[]),
        port,
        _backends: vec![base, gray],
    }
}

impl RemoteGateway {
    /// (status, backend that answered or "-").
    fn send(&self, headers: &[(&str, &str)]) -> (u16, String) {
        let r = request_str(self.port, "/", headers);
        (r.status, r.header("x-backend").unwrap_or("-").to_string())
    }
}

#[test]
fn module_over_http_with_the_right_sha256_works() {
    let wasm = module();
    let server_port = free_port();
    let server = module_server(server_port, wasm.clone());
    let gw = start_gateway(server_port, &sha256_hex(&wasm), 3, "FAIL_RELOAD");
    assert_eq!(
        gw.send(&[("location", "cn-shenzhen")]),
        (200, "gray".into())
    );
    assert_eq!(gw.send(&[]), (200, "base".into()));
    // A forged tag does not pass.
    assert_eq!(gw.send(&[("x-graylane", "gray")]), (200, "base".into()));
    // Fetched once, on the main thread; every worker's VM uses that copy.
    assert_eq!(server.served(), 1);
    assert_eq!(gw.envoy.counter("wasm.remote_load_fetch_successes"), 1);
    assert_eq!(gw.envoy.counter("wasm.remote_load_fetch_failures"), 0);
    println!(
        "remote code, right sha256: fetched {} time(s), lanes decided",
        server.served()
    );
}

#[test]
fn module_over_http_with_a_wrong_sha256_is_refused() {
    let wasm = module();
    let wrong = sha256_hex(b"not the module");
    let retries = 2;
    for (policy, want) in [
        // The filter is missing and configured not to be skipped: 503.
        ("FAIL_RELOAD", (503, "-".to_string())),
        ("FAIL_CLOSED", (503, "-".to_string())),
        // The filter is skipped: the request passes unchecked, so a
        // client's own x-graylane reaches the lane route.
        ("FAIL_OPEN", (200, "gray".to_string())),
    ] {
        let server_port = free_port();
        let server = module_server(server_port, wasm.clone());
        let t0 = Instant::now();
        let gw = start_gateway(server_port, &wrong, retries, policy);
        let ready_after = t0.elapsed();
        // Envoy did not exit: it started, without the filter.
        let forged = gw.send(&[("x-graylane", "gray")]);
        assert_eq!(forged, want, "{policy}");
        let decided = gw.send(&[("location", "cn-shenzhen")]);
        assert_ne!(decided, (200, "gray".to_string()), "{policy}: graylane ran");
        // A digest mismatch is retried like a failed fetch: 1 + retries.
        assert_eq!(server.served(), 1 + u64::from(retries), "{policy}");
        assert_eq!(gw.envoy.counter("wasm.remote_load_fetch_failures"), 1);
        assert_eq!(gw.envoy.counter("wasm.remote_load_fetch_successes"), 0);
        assert_eq!(
            gw.envoy.counter("listener_manager.total_listeners_active"),
            1,
            "{policy}: the listener is up"
        );
        let log = gw.envoy.log_text();
        for line in [
            "Retry limit exceeded for fetching data from remote data source",
            "Plugin graylane failed to load",
        ] {
            assert!(log.contains(line), "{policy}: no `{line}` in the log");
        }
        assert!(
            !log.contains("configuration accepted"),
            "{policy}: graylane was loaded"
        );
        println!(
            "remote code, wrong sha256, {policy}: ready after {:.1} s, {} fetches, \
             forged x-graylane -> {forged:?}, location: cn-shenzhen -> {decided:?}, \
             wasm.remote_load_fetch_failures 1",
            ready_after.as_secs_f64(),
            server.served()
        );
    }
}

/// The module server is down when Envoy starts: Envoy retries the fetch
/// and stays not ready. The server is started only once Envoy has been
/// refused twice (its counter says so), so the retries are what the test
/// waits for, however slowly the machine starts Envoy.
#[test]
fn module_server_down_at_start_up_is_retried() {
    let wasm = module();
    let server_port = free_port();
    let gw = launch_gateway(server_port, &sha256_hex(&wasm), 30, "FAIL_RELOAD");
    let stat = "cluster.graylane_module.upstream_cx_connect_fail";
    let refused_twice = poll(Duration::from_secs(30), Duration::from_millis(50), || {
        if let Some(status) = gw.envoy.try_wait() {
            panic!("Envoy exited: {status:?}\n{}", gw.envoy.log_text());
        }
        match gw.envoy.try_stats().map(|s| s.get(stat).copied()) {
            Ok(Some(n)) if n >= 2 => Ok(n),
            other => Err(format!("{stat}: {other:?}")),
        }
    });
    assert!(
        refused_twice.is_ok(),
        "Envoy did not retry: {refused_twice:?}"
    );
    // Not ready while the module cannot be fetched.
    let ready = get(gw.envoy.admin, "/ready").map(|r| r.status);
    assert!(
        matches!(ready, Ok(s) if s != 200),
        "/ready answered {ready:?} before the module was fetched"
    );
    let server = module_server(server_port, wasm);
    let t0 = Instant::now();
    gw.envoy.wait_ready();
    let ready_after = t0.elapsed();
    assert_eq!(
        gw.send(&[("location", "cn-shenzhen")]),
        (200, "gray".into())
    );
    assert_eq!(gw.send(&[]), (200, "base".into()));
    assert_eq!(server.served(), 1);
    let refused = gw.envoy.counter(stat);
    assert!(
        refused >= 2,
        "{refused} failed connections to the module server"
    );
    assert_eq!(gw.envoy.counter("wasm.remote_load_fetch_successes"), 1);
    assert_eq!(gw.envoy.counter("wasm.remote_load_fetch_failures"), 0);
    println!(
        "remote code, server down at start-up: {refused} refused connections (retries), \
         Envoy ready {:.1} s after the server came up, fetched {} time(s), lanes decided",
        ready_after.as_secs_f64(),
        server.served()
    );
}
