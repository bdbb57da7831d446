//! A real Prometheus (Debian's `prometheus`) for the tests: its own process,
//! config and storage in a scratch directory, scraping the Envoys' admin
//! `/stats/prometheus` every second; killed by PID when dropped.

use crate::harness::{free_port, get, poll, scratch_dir, stop_process};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Prometheus process, killed by PID when dropped.
pub struct Prometheus {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `/stats/prometheus` of each (job, admin port).
    pub fn start(targets: &[(&str, u16)]) -> Prometheus {
        let dir = scratch_dir("prometheus");
        let mut config = String::from(
            "global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }\nscrape_configs:\n",
        );
        for (job, port) in targets {
            config.push_str(&format!(
                "- job_name: {job}\n  metrics_path: /stats/prometheus\n  static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\n"
            ));
        }
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let port = free_port();
        let bin = std::env::var_os("GRAYLANE_PROMETHEUS").unwrap_or_else(|| "prometheus".into());
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {bin:?} ({e}): install Debian's prometheus (scripts/test.sh does) or set GRAYLANE_PROMETHEUS"
                )
            });
        let mut p = Prometheus {
            child: Some(child),
            port,
            log,
        };
        let ready = poll(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                p.child = None;
                panic!("Prometheus exited during start ({status})");
            }
            if get(port, "/-/ready").is_ok_and(|r| r.status == 200) {
                Ok(())
            } else {
                Err(String::new())
            }
        });
        assert!(ready.is_ok(), "Prometheus not ready after 30 s");
        p
    }

    /// GET on the HTTP API; the parsed JSON answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
            .collect();
        let r = get(self.port, &format!("{path}?{}", query.join("&"))).expect("Prometheus API");
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("Prometheus answered {} ({e}): {}", r.status, r.text()))
    }

    /// An instant query: Ok(result series) or Err(what went wrong).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api("/api/v1/query", &[("query", expr)]);
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop_process(&mut self.child, "Prometheus", &self.log);
    }
}
