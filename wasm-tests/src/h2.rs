//! HTTP/2 and gRPC for the end-to-end tests: a raw HTTP/2 (h2c) client, and
//! a real gRPC client and server (Python `grpcio` with generic handlers, no
//! protoc step), all in `wasm-tests/py/`, run by `python3` with the
//! packages `scripts/lib.sh` `ensure_grpc` installs (`.tools/grpc-py`, or
//! `$GRAYLANE_PY_PATH`).

use crate::harness::{repo_root, unwatch, watch, Response};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `python3` with the packages of `scripts/lib.sh` `ensure_grpc` on its
/// path; fails with how to install them when they are missing.
pub fn python() -> Command {
    let dir = std::env::var_os("GRAYLANE_PY_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/grpc-py"));
    assert!(
        dir.join("grpc").is_dir() && dir.join("h2").is_dir(),
        "grpcio and h2 not found in {}: the HTTP/2 and gRPC tests need them; \
         install them with `bash -c 'source scripts/lib.sh; ensure_grpc'` \
         (scripts/test.sh does) or set GRAYLANE_PY_PATH",
        dir.display()
    );
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", dir);
    cmd
}

fn script(name: &str) -> PathBuf {
    repo_root().join("wasm-tests/py").join(name)
}

/// Runs a script of `wasm-tests/py/` with `job` as JSON on stdin; its JSON
/// output.
pub fn run_script(name: &str, job: &serde_json::Value) -> serde_json::Value {
    let mut child = python()
        .arg(script(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("write the job");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{name} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        crate::harness::exits_report()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Sends HTTP/2 requests (prior knowledge, on one connection, one stream
/// each, in order). Each request is the exact list of header fields of its
/// HEADERS frame, pseudo-headers included; a name given twice is sent as
/// two fields.
pub fn h2_requests(port: u16, requests: &[Vec<(&str, &str)>]) -> Vec<Response> {
    let job = serde_json::json!({"port": port, "requests": requests});
    let out = run_script("h2client.py", &job);
    out.as_array()
        .expect("a list of responses")
        .iter()
        .map(|r| Response {
            status: u16::try_from(r["status"].as_u64().unwrap_or(0)).unwrap_or(0),
            headers: r["headers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or_default().to_string(),
                        h[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: r["body"].as_str().unwrap_or_default().as_bytes().to_vec(),
        })
        .collect()
}

/// A gRPC server process (`py/grpc_server.py`): answers every unary method
/// with the metadata it received, as JSON; killed by PID when dropped.
pub struct GrpcServer {
    pub name: String,
    pub port: u16,
    child: Arc<Mutex<Option<Child>>>,
}

impl GrpcServer {
    pub fn start(name: &str) -> GrpcServer {
        Self::start_all(&[name]).remove(0)
    }

    /// Starts one server per name, all at once; returns when all serve.
    pub fn start_all(names: &[&str]) -> Vec<GrpcServer> {
        let started: Vec<(GrpcServer, std::process::ChildStdout, PathBuf)> = names
            .iter()
            .map(|name| {
                let port = crate::harness::free_port();
                let log = crate::harness::scratch_dir("grpc").join("server.log");
                let mut child = python()
                    .arg(script("grpc_server.py"))
                    .args([name.to_string(), port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(std::fs::File::create(&log).expect("log"))
                    .spawn()
                    .expect("spawn the gRPC server");
                let stdout = child.stdout.take().expect("stdout");
                let child = watch(&format!("gRPC server {name}"), child, &log);
                let server = GrpcServer {
                    name: name.to_string(),
                    port,
                    child,
                };
                (server, stdout, log)
            })
            .collect();
        started
            .into_iter()
            .map(|(server, stdout, log)| {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                assert_eq!(
                    line.trim(),
                    "READY",
                    "gRPC server {} did not start: {}",
                    server.name,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                server
            })
            .collect()
    }

    /// Stops the server (its port is closed from then on).
    pub fn kill(&mut self) {
        unwatch(&self.child);
        let taken = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut c) = taken {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The method the tests call (any name works: the server is generic).
pub const METHOD: &str = "/graylane.test.Echo/Call";

/// One gRPC call's outcome, as `py/grpc_client.py` reports it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Seconds since the client started.
    pub t: f64,
    /// The status code name: `OK`, `UNAVAILABLE`, ...
    pub code: String,
    pub details: String,
    pub initial_metadata: Vec<(String, String)>,
    /// The server's answer: `{"backend", "method", "metadata"}`.
    pub response: serde_json::Value,
}

impl Call {
    /// The backend that answered ("" when none did).
    pub fn backend(&self) -> &str {
        self.response["backend"].as_str().unwrap_or_default()
    }

    /// Every value of a metadata key the server received.
    pub fn received(&self, key: &str) -> Vec<String> {
        self.response["metadata"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m[0] == key)
            .filter_map(|m| m[1].as_str().map(str::to_string))
            .collect()
    }

    /// A key of the initial metadata the client received.
    pub fn initial(&self, key: &str) -> Option<&str> {
        self.initial_metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a gRPC client run does: calls to `port` (with `authority` as
/// `:authority` when given), each with its metadata, in order.
#[derive(Debug, Clone, Default)]
pub struct GrpcJob<'a> {
    pub port: u16,
    pub authority: Option<&'a str>,
    pub calls: Vec<Vec<(&'a str, &'a str)>>,
    /// Cycle through `calls` for this long instead of once.
    pub repeat_for: Option<Duration>,
    /// Between calls.
    pub pause: Option<Duration>,
}

/// Runs the gRPC client (`py/grpc_client.py`) on one channel.
pub fn grpc_calls(job: &GrpcJob<'_>) -> Vec<Call> {
    grpc_calls_stopped_by(job, None)
}

/// [`grpc_calls`], ending (after the call under way) once `stop_file`
/// exists, when given; `repeat_for` is then only a backstop.
pub fn grpc_calls_stopped_by(job: &GrpcJob<'_>, stop_file: Option<&std::path::Path>) -> Vec<Call> {
    let json = serde_json::json!({
        "port": job.port,
        "authority": job.authority,
        "method": METHOD,
        "calls": job.calls,
        "repeat_for": job.repeat_for.map(|d| d.as_secs_f64()),
        "stop_file": stop_file.map(|p| p.display().to_string()),
        "pause": job.pause.map(|d| d.as_secs_f64()).unwrap_or(0.0),
    });
    let out = run_script("grpc_client.py", &json);
    let pairs = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m[0].as_str().unwrap_or_default().to_string(),
                    m[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    out.as_array()
        .expect("a list of calls")
        .iter()
        .map(|c| Call {
            t: c["t"].as_f64().unwrap_or(0.0),
            code: c["code"].as_str().unwrap_or_default().to_string(),
            details: c["details"].as_str().unwrap_or_default().to_string(),
            initial_metadata: pairs(&c["initial_metadata"]),
            response: c["response"].clone(),
        })
        .collect()
}
