//! The playground in a real browser: headless Chromium driven through
//! chromedriver's W3C WebDriver HTTP API, the page served from
//! `target/playground/` (built by `scripts/playground.sh`) on 127.0.0.1.
//!
//! Checks: a permalink (docs/playground.md "Playground", the link) decides the expected lane in
//! `#lane`, also for a WasmPlugin YAML; an invalid config typed into the
//! editor shows its JSON path in `#errors`, and the page's own link
//! reproduces it; the page's decision (lane, source, rule, bucket) and its
//! explain text agree with the `graylane explain` binary for every case
//! (keyed splits landing in each lane, random splits with a fixed draw);
//! the bucket picture, saved as `target/playground-buckets.png`, has every
//! split lane in its SVG and in its pixels.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use graylane::engine::bucket;
use graylane_wasm_tests::harness::{free_port, repo_root, scratch_dir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

// ---- the page's files, served on 127.0.0.1 -------------------------------

struct StaticServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    fn start(root: PathBuf) -> StaticServer {
        let port = free_port();
        let server = tiny_http::Server::http(("127.0.0.1", port)).expect("static server");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let path = req
                    .url()
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("/")
                    .to_string();
                let rel = if path == "/" {
                    "index.html"
                } else {
                    path.trim_start_matches('/')
                };
                let file = root.join(rel);
                let served = (!rel.contains(".."))
                    .then(|| std::fs::read(&file).ok())
                    .flatten();
                let _ = match served {
                    Some(body) => {
                        let kind = match file.extension().and_then(|e| e.to_str()) {
                            Some("html") => "text/html; charset=utf-8",
                            Some("js") => "text/javascript; charset=utf-8",
                            Some("css") => "text/css; charset=utf-8",
                            Some("wasm") => "application/wasm",
                            _ => "application/octet-stream",
                        };
                        let header =
                            tiny_http::Header::from_bytes("Content-Type", kind).expect("header");
                        req.respond(tiny_http::Response::from_data(body).with_header(header))
                    }
                    None => req.respond(tiny_http::Response::empty(404)),
                };
            }
        });
        StaticServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- chromedriver and the browser ---------------------------------------

/// Child processes of `pid`, recursively, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces; ppid follows ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

struct Browser {
    driver: Child,
    base: String,
    session: Option<String>,
    agent: ureq::Agent,
    _profile: PathBuf,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let dir = scratch_dir("chromium");
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("log file");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(90)))
            .build()
            .into();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            agent,
            _profile: dir.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = browser
                .agent
                .get(format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            thread::sleep(Duration::from_millis(100));
        }
        let profile = dir.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--force-color-profile=srgb",
                    "--hide-scrollbars", "--window-size=1400,1500",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let v = browser.call("POST", "/session", Some(caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        browser.session = Some(id);
        browser
    }

    /// One WebDriver command; returns its `value`, panics on an error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let v: Value = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(status == 200, "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap_or(""))
    }

    fn navigate(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        );
    }

    fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_string()
    }

    fn text(&self, element: &str) -> String {
        let v = self.call(
            "GET",
            &self.session_path(&format!("/element/{element}/text")),
            None,
        );
        v.as_str().unwrap_or_default().to_string()
    }

    fn clear(&self, element: &str) {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/clear")),
            None,
        );
    }

    fn type_text(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, element: Option<&str>) -> Vec<u8> {
        let path = match element {
            Some(e) => self.session_path(&format!("/element/{e}/screenshot")),
            None => self.session_path("/screenshot"),
        };
        let v = self.call("GET", &path, None);
        STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64 PNG")
    }

    /// Waits until `script` (a function body) returns true.
    fn wait_until(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.execute(script, json!([])) != Value::Bool(true) {
            let failed = self.execute("return document.body.dataset.failed || null", json!([]));
            assert!(failed.is_null(), "the page failed: {failed}");
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's processes are chromedriver's children: note them first,
        // end the session, then kill whatever is left, by PID.
        let children = descendants(self.driver.id());
        if self.session.is_some() {
            let path = self.session_path("");
            let _ = self.agent.delete(format!("{}{path}", self.base)).call();
        }
        let alive: Vec<String> = children
            .iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .map(u32::to_string)
            .collect();
        if !alive.is_empty() {
            let _ = Command::new("kill")
                .arg("-9")
                .args(&alive)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromium_binary() -> String {
    ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map_or_else(|| "chromium".to_string(), |p| (*p).to_string())
}

// ---- the cases ----------------------------------------------------------

/// Plugin config with matches of every attribute, keyed splits sharing a
/// salt (one overlap), a random split and a cookie-keyed one.
fn splits_config() -> Value {
    json!({"lanes": [
        {"name": "beta", "priority": 1, "match": {"header": "x-beta", "exact": "on"}},
        {"name": "mobile", "priority": 2, "match": {"all": [
            {"header": "user-agent", "contains": "Mobile"},
            {"method": true, "in": ["GET", "HEAD"]}]}},
        {"name": "tenant", "priority": 3, "match": {"cookie": "tenant", "prefix": "acme"}},
        {"name": "search", "priority": 4, "match": {"path": true, "prefix": "/search"},
         "split": {"percent": 50}},
        {"name": "qa", "priority": 5, "match": {"query": "qa", "exact": "1"}},
        {"name": "internal", "priority": 6, "match": {"host": true, "suffix": ".internal"}},
        {"name": "canary-a", "priority": 10, "split": {"key": {"header": "x-user"},
         "salt": "release-7", "buckets": ["0-1999"], "onMissingKey": "exclude"}},
        {"name": "canary-b", "priority": 11, "split": {"key": {"header": "x-user"},
         "salt": "release-7", "buckets": ["2000-3999"], "onMissingKey": "exclude"}},
        {"name": "canary-c", "priority": 12, "split": {"key": {"header": "x-user"},
         "salt": "release-7", "buckets": ["3000-5999"], "onMissingKey": "exclude"}},
        {"name": "anon", "priority": 20, "split": {"key": {"cookie": "uid"}, "percent": 10}}
    ]})
}

/// A hop: trusts incoming tags, routes through services, reads baggage.
fn hop_config() -> Value {
    json!({"incoming": "trust",
    "services": {"svc-b": {"base": "svc-b", "lanes": {"gray": "svc-b-gray"}}},
    "lanes": [
        {"name": "gray", "priority": 5, "match": {"baggage": "tenant", "exact": "acme"}},
        {"name": "blue", "split": {"key": {"query": "uid"}, "percent": 30}}
    ]})
}

const YAML: &str = "apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: edge
spec:
  pluginConfig:
    lanes:
    - name: gray
      priority: 10
      match:
        all:
        - header: location
          exact: cn-shenzhen
      split:
        key: {header: x-app-id}
        percent: 12.5
        salt: gray-2026-11
";

/// A user id whose bucket under `salt` falls in `lo..=hi`.
fn user_in(salt: &str, lo: u16, hi: u16) -> String {
    (0..100_000)
        .map(|i| format!("user-{i}"))
        .find(|u| (lo..=hi).contains(&bucket(salt, u.as_bytes())))
        .expect("a user in range")
}

struct Case {
    config: Value,
    headers: Vec<(String, String)>,
    random: Option<u64>,
}

fn case(config: &Value, headers: &[(&str, &str)], random: Option<u64>) -> Case {
    Case {
        config: config.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        random,
    }
}

fn cases() -> Vec<Case> {
    let s = splits_config();
    let h = hop_config();
    let in_a = user_in("release-7", 0, 1999);
    let in_b = user_in("release-7", 2000, 2999);
    let in_overlap = user_in("release-7", 3000, 3999);
    let in_c = user_in("release-7", 4000, 5999);
    let out = user_in("release-7", 6000, 9999);
    let uid_in = user_in("anon", 0, 999);
    let uid_out = user_in("anon", 1000, 9999);
    let blue = format!("/?uid={}", user_in("blue", 0, 2999));
    let mut list = vec![
        case(&s, &[(":path", "/"), ("x-beta", "on")], None),
        case(
            &s,
            &[(":path", "/"), ("X-Beta", "off"), ("x-user", &in_a)],
            None,
        ),
        case(
            &s,
            &[
                (":path", "/"),
                ("user-agent", "Mozilla/5.0 (iPhone) Mobile"),
                (":method", "GET"),
            ],
            None,
        ),
        case(
            &s,
            &[
                (":path", "/"),
                ("user-agent", "Mobile"),
                (":method", "POST"),
                ("x-user", &in_b),
            ],
            None,
        ),
        case(
            &s,
            &[(":path", "/cart"), ("cookie", "theme=dark; tenant=acme-eu")],
            None,
        ),
        case(
            &s,
            &[(":path", "/search?q=x"), ("x-user", &in_a)],
            Some(1234),
        ),
        case(
            &s,
            &[(":path", "/search?q=x"), ("x-user", &in_a)],
            Some(7777),
        ),
        case(&s, &[(":path", "/search/more")], None),
        case(&s, &[(":path", "/list?page=2&qa=1")], None),
        case(
            &s,
            &[(":path", "/"), (":authority", "db.internal:8080")],
            None,
        ),
        case(&s, &[(":path", "/"), ("x-user", &in_a)], None),
        case(&s, &[(":path", "/"), ("x-user", &in_b)], None),
        case(&s, &[(":path", "/"), ("x-user", &in_overlap)], None),
        case(&s, &[(":path", "/"), ("x-user", &in_c)], None),
        case(
            &s,
            &[
                (":path", "/"),
                ("x-user", &out),
                ("cookie", &format!("uid={uid_in}")),
            ],
            None,
        ),
        case(
            &s,
            &[
                (":path", "/"),
                ("x-user", &out),
                ("cookie", &format!("uid={uid_out}")),
            ],
            None,
        ),
        case(&s, &[(":path", "/"), ("x-user", &out)], Some(500)),
        case(&s, &[(":path", "/"), ("x-user", &out)], Some(9500)),
        case(&s, &[(":path", "/")], Some(42)),
        case(&s, &[(":path", "/")], None),
        case(
            &h,
            &[
                (":path", "/"),
                (":authority", "svc-b"),
                ("baggage", "lane=blue"),
            ],
            None,
        ),
        case(
            &h,
            &[
                (":path", "/"),
                (":authority", "svc-b:80"),
                ("x-graylane", "gray"),
            ],
            None,
        ),
        case(
            &h,
            &[
                (":path", "/"),
                (":authority", "svc-b"),
                ("baggage", "lane=nope,tenant=acme"),
            ],
            None,
        ),
        case(&h, &[(":path", &blue), (":authority", "svc-c")], None),
        case(
            &h,
            &[(":path", "/?uid=u18"), (":authority", "svc-b")],
            Some(3),
        ),
    ];
    let yaml = Value::String(YAML.to_string());
    list.push(case(
        &yaml,
        &[
            (":path", "/"),
            ("location", "cn-shenzhen"),
            ("x-app-id", "app-3"),
        ],
        None,
    ));
    list.push(case(
        &yaml,
        &[(":path", "/"), ("location", "cn-shenzhen")],
        Some(1249),
    ));
    list.push(case(
        &yaml,
        &[(":path", "/"), ("location", "cn-beijing")],
        None,
    ));
    list
}

/// `#` + base64url (no padding) of the state JSON (docs/playground.md "Playground").
fn fragment(c: &Case) -> String {
    let headers: Vec<Value> = c.headers.iter().map(|(k, v)| json!([k, v])).collect();
    let mut state = json!({"config": c.config, "headers": headers});
    if let Some(r) = c.random {
        state["random"] = json!(r);
    }
    URL_SAFE_NO_PAD.encode(state.to_string())
}

/// The `graylane` binary, built by cargo for this workspace.
fn cli_binary() -> PathBuf {
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "graylane", "--bin", "graylane"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build --bin graylane failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug/graylane")
}

/// `graylane explain` of one case: (the `--json` object, the text).
fn cli_explain(bin: &Path, dir: &Path, c: &Case) -> (Value, String) {
    let file = dir.join("config");
    let text = match &c.config {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    std::fs::write(&file, text).unwrap();
    let mut args: Vec<String> = vec!["explain".into(), file.display().to_string()];
    for (k, v) in &c.headers {
        args.push("-H".into());
        args.push(format!("{k}: {v}"));
    }
    if let Some(r) = c.random {
        args.push(format!("--random={r}"));
    }
    let run = |json: bool| {
        let mut cmd = Command::new(bin);
        cmd.args(&args);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("graylane explain");
        assert!(
            out.status.success(),
            "graylane {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    (serde_json::from_str(&run(true)).unwrap(), run(false))
}

/// What the page shows: #lane, #source, #rule, #bucket, #explain.
fn page_decision(b: &Browser) -> Value {
    b.execute(
        "const t = (id) => document.getElementById(id).textContent;
         return {lane: t('lane'), source: t('source'), rule: t('rule'), bucket: t('bucket'),
                 explain: t('explain'), errors: t('errors')};",
        json!([]),
    )
}

/// Opens the link of a case in a fresh page load.
fn load(b: &Browser, page: &str, frag: &str) {
    b.navigate("about:blank");
    b.navigate(&format!("{page}#{frag}"));
    b.wait_until(
        &format!("return document.body.dataset.ready === '1' && document.body.dataset.loaded === '{frag}';"),
        "the page to load the case",
    );
}

/// `(r, g, b)` of `#rrggbb`.
fn rgb(hex: &str) -> (u8, u8, u8) {
    let n = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    ((n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// How many pixels of the PNG have each colour.
fn count_colours(png_bytes: &[u8], colours: &[(u8, u8, u8)]) -> (u32, u32, Vec<usize>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut counts = vec![0usize; colours.len()];
    for px in buf[..info.buffer_size()].chunks_exact(step) {
        let c = (px[0], px[1], px[2]);
        if let Some(i) = colours.iter().position(|&k| k == c) {
            counts[i] += 1;
        }
    }
    (info.width, info.height, counts)
}

#[test]
fn playground_in_chromium() {
    let root = repo_root();
    let site = root.join("target/playground");
    assert!(
        site.join("index.html").exists() && site.join("graylane_playground_bg.wasm").exists(),
        "build the playground first: scripts/playground.sh"
    );
    let bin = cli_binary();
    let server = StaticServer::start(site);
    let page = format!("http://127.0.0.1:{}/", server.port);
    let browser = Browser::start();
    let b = &browser;

    // (a) A permalink in the docs/playground.md "Playground" form decides the expected lane.
    let beta = case(&splits_config(), &[(":path", "/"), ("x-beta", "on")], None);
    load(b, &page, &fragment(&beta));
    let lane = b.text(&b.find("#lane"));
    assert_eq!(lane, "beta");
    // Everything the page loaded is its own: no CDN, nothing else fetched.
    let loaded = b.execute(
        "return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];",
        json!([]),
    );
    let loaded: Vec<&str> = loaded
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        loaded.len() >= 5,
        "page, script, glue, wasm, style: {loaded:?}"
    );
    assert!(loaded.iter().all(|u| u.starts_with(&page)), "{loaded:?}");
    println!("the page loaded only its own files: {}", loaded.len());
    println!("permalink: #lane = {lane:?}");
    let app = user_in("gray-2026-11", 0, 1249);
    let yaml = case(
        &Value::String(YAML.into()),
        &[
            (":path", "/"),
            ("location", "cn-shenzhen"),
            ("x-app-id", &app),
        ],
        None,
    );
    load(b, &page, &fragment(&yaml));
    assert_eq!(b.text(&b.find("#lane")), "gray");
    println!("permalink with a WasmPlugin YAML (x-app-id {app}): #lane = \"gray\"");
    // A shadowed lane's warning names the lane that shadows it.
    let shadowed = case(
        &json!({"lanes": [{"name": "all", "priority": 1},
            {"name": "beta", "priority": 2, "match": {"header": "x-beta", "exact": "on"}}]}),
        &[(":path", "/"), ("x-beta", "on")],
        None,
    );
    load(b, &page, &fragment(&shadowed));
    let warnings = b.text(&b.find("#warnings"));
    assert!(
        warnings.contains("lane \"beta\" can never win") && warnings.contains("shadowed by all"),
        "{warnings}"
    );
    assert_eq!(b.text(&b.find("#lane")), "all");
    println!("shadowed lane: #warnings = {warnings:?}");
    // Two WasmPlugins: the link's "plugin" chooses the one that decides.
    let two = format!(
        "{YAML}---\nkind: WasmPlugin\nmetadata: {{name: hop}}\nspec:\n  pluginConfig:\n    incoming: trust\n    lanes: [{{name: blue}}]\n"
    );
    let headers = json!([
        [":path", "/"],
        ["location", "cn-shenzhen"],
        ["x-app-id", app]
    ]);
    for (plugin, want) in [("edge", "gray"), ("hop", "blue")] {
        let state = json!({"config": two, "headers": headers, "plugin": plugin});
        load(b, &page, &URL_SAFE_NO_PAD.encode(state.to_string()));
        assert_eq!(b.text(&b.find("#lane")), want, "plugin {plugin}");
        let chosen = b.execute("return document.getElementById('plugin').value", json!([]));
        assert_eq!(chosen, json!(plugin));
    }
    println!(
        "two WasmPlugins in one YAML: \"plugin\" in the link chooses edge (gray) or hop (blue)"
    );

    // (b) An invalid config typed into the editor shows its JSON path.
    let config = b.find("#config");
    b.clear(&config);
    b.type_text(
        &config,
        r#"{"lanes": [{"name": "gray", "match": {"any": []}}, {"name": "blue", "split": {"percent": 101}}]}"#,
    );
    b.wait_until(
        "return document.getElementById('errors').textContent.includes('lanes[0].match.any');",
        "the error in #errors",
    );
    let errors = b.text(&b.find("#errors"));
    println!("invalid config: #errors = {errors:?}");
    assert!(errors.contains("lanes[0].match.any"), "{errors}");
    assert_eq!(b.text(&b.find("#lane")), "—");
    // The page's own link reproduces the case.
    let link = b
        .execute("return location.href", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    let frag = link.split_once('#').map(|(_, f)| f.to_string()).unwrap();
    load(b, &page, &frag);
    let again = b.text(&b.find("#errors"));
    assert!(again.contains("lanes[0].match.any"), "{again}");
    assert!(b
        .execute("return document.getElementById('config').value", json!([]))
        .as_str()
        .unwrap()
        .contains("101"));
    println!("the page's own link reproduces the invalid config");

    // (c) The page decides as `graylane explain` does.
    let dir = scratch_dir("playground-cli");
    let list = cases();
    let mut lanes_seen = std::collections::BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        load(b, &page, &fragment(c));
        let shown = page_decision(b);
        let (cli, text) = cli_explain(&bin, &dir, c);
        let dash = |v: &Value| match v {
            Value::Null => "—".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let want = json!({
            "lane": dash(&cli["lane"]), "source": dash(&cli["source"]),
            "rule": dash(&cli["rule"]), "bucket": dash(&cli["bucket"]),
        });
        let got = json!({
            "lane": shown["lane"], "source": shown["source"],
            "rule": shown["rule"], "bucket": shown["bucket"],
        });
        assert_eq!(
            got, want,
            "case {i}: headers {:?} random {:?}",
            c.headers, c.random
        );
        assert_eq!(
            shown["explain"].as_str().unwrap(),
            text,
            "case {i}: explain text"
        );
        assert_eq!(shown["errors"], "", "case {i}: errors");
        lanes_seen.insert(dash(&cli["lane"]));
        println!(
            "case {i:2}: lane {:<9} source {:<10} rule {:<9} bucket {}",
            want["lane"].as_str().unwrap(),
            want["source"].as_str().unwrap(),
            want["rule"].as_str().unwrap(),
            want["bucket"].as_str().unwrap()
        );
    }
    for lane in [
        "canary-a", "canary-b", "canary-c", "anon", "search", "base", "blue", "gray",
    ] {
        assert!(
            lanes_seen.contains(lane),
            "no case decided {lane}: {lanes_seen:?}"
        );
    }
    println!(
        "{} cases: the page and graylane explain agree (lane, source, rule, bucket, text)",
        list.len()
    );

    // (d) The bucket picture has every split lane, in its SVG and its pixels.
    let user = user_in("release-7", 3000, 3999);
    let shot = case(
        &splits_config(),
        &[
            (":method", "GET"),
            (":authority", "shop.example.com"),
            (":path", "/search?q=shoes"),
            ("x-user", &user),
            ("cookie", "uid=u-42"),
        ],
        Some(2400),
    );
    load(b, &page, &fragment(&shot));
    let svg = b.execute(
        "const s = document.querySelector('#buckets svg');
         const lanes = {};
         for (const r of s.querySelectorAll('rect[data-lane]')) lanes[r.dataset.lane] = r.getAttribute('fill');
         return {lanes,
                 bars: [...s.querySelectorAll('g.bar')].map((g) => g.dataset.salt),
                 overlaps: [...s.querySelectorAll('rect[data-overlap]')].map((r) => r.dataset.overlap + ' ' + r.dataset.range),
                 pointers: [...s.querySelectorAll('[data-request-bucket]')].map((p) => Number(p.dataset.requestBucket))};",
        json!([]),
    );
    println!("bucket picture: {svg}");
    let lanes = svg["lanes"].as_object().unwrap();
    let mut names: Vec<&str> = lanes.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["anon", "canary-a", "canary-b", "canary-c", "search"]
    );
    assert_eq!(svg["bars"], json!(["search", "release-7", "anon"]));
    assert_eq!(svg["overlaps"], json!(["canary-b,canary-c 3000-3999"]));
    let pointers: Vec<u64> = svg["pointers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let keyed = u64::from(bucket("release-7", user.as_bytes()));
    assert!(
        pointers.contains(&keyed),
        "the request's bucket {keyed} is pointed at: {pointers:?}"
    );
    assert!(
        pointers.contains(&2400),
        "the random draw 2400 is pointed at: {pointers:?}"
    );
    let colours: Vec<(u8, u8, u8)> = names
        .iter()
        .map(|n| rgb(lanes[*n].as_str().unwrap()))
        .collect();
    let distinct: std::collections::BTreeSet<_> = colours.iter().collect();
    assert_eq!(distinct.len(), colours.len(), "distinct lane colours");
    let png = b.screenshot(Some(&b.find("#buckets")));
    let out = root.join("target/playground-buckets.png");
    std::fs::write(&out, &png).unwrap();
    let (w, h, counts) = count_colours(&png, &colours);
    println!(
        "{} ({w}x{h} px): pixels per lane colour {:?}",
        out.display(),
        names.iter().zip(&counts).collect::<Vec<_>>()
    );
    for (name, n) in names.iter().zip(&counts) {
        assert!(
            *n >= 30,
            "lane {name} has {n} pixels of its colour in the picture"
        );
    }

    // The page as a first visitor sees it (its example), for the README.
    b.navigate("about:blank");
    b.navigate(&page);
    b.wait_until("return document.body.dataset.ready === '1';", "the example");
    assert!(b.execute("return location.hash.length > 1", json!([])) == Value::Bool(true));
    let page_png = b.screenshot(None);
    std::fs::write(root.join("target/playground-page.png"), &page_png).unwrap();
    println!(
        "page screenshot: target/playground-page.png, lane {:?}",
        b.text(&b.find("#lane"))
    );
}
