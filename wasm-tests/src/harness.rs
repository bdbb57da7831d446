//! Runs real processes for the end-to-end tests: Envoy with the built
//! filter, echo backends, and a plain HTTP/1.1 client. Everything listens on
//! 127.0.0.1; Envoy is killed by PID when its handle drops (including on a
//! failed assertion), and its log is printed when the test failed.
//!
//! An Envoy that dies during a test says so: while it runs, its handle is in
//! a registry of this test process, and a client request that cannot
//! connect, or whose connection breaks, names every Envoy of the registry
//! that has exited, how (`Envoy exited: signal 11 (SIGSEGV)`, or its exit
//! code) and the end of its log (a crash's backtrace), instead of only
//! "connection refused" (see [`with_exits`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often the filter sends the counts it keeps in the VM to Envoy (at
/// most; docs/observability.md "Metrics").
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);
/// How long [`Envoy::wait_counter`] waits for a per-request counter.
pub const COUNTER_WAIT: Duration = Duration::from_secs(5);

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Envoy binary: `$GRAYLANE_ENVOY`, else the one `scripts/lib.sh` installs.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("GRAYLANE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/pip/envoy/_bin/envoy"))
}

/// The filter: `$GRAYLANE_WASM`, else `target/graylane.wasm`.
pub fn wasm_path() -> PathBuf {
    std::env::var_os("GRAYLANE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/graylane.wasm"))
}

static NEXT_PORT: AtomicU64 = AtomicU64::new(0);

/// Ports handed out by [`free_port`]: 12,000 to 29,999, below the kernel's
/// ephemeral ports, in blocks of this many.
const PORT_BLOCK: u64 = 500;
const PORT_BLOCKS: u64 = 36;

/// This process's block of ports, held for its lifetime by a lock on
/// `graylane-ports/block-N` in the temp dir (released when the process
/// exits), so no two test processes on this machine share a block.
/// Envoy binds its listeners with `SO_REUSEPORT`: two processes that
/// picked the same free port would both bind it and the kernel would split
/// their connections between them (two checkouts' tests at once, the
/// flake hunt next to a test run).
fn port_block() -> u64 {
    static BLOCK: std::sync::OnceLock<(u64, Option<std::fs::File>)> = std::sync::OnceLock::new();
    BLOCK
        .get_or_init(|| {
            let dir = std::env::temp_dir().join("graylane-ports");
            let _ = std::fs::create_dir_all(&dir);
            let start = u64::from(std::process::id()) % PORT_BLOCKS;
            for i in 0..PORT_BLOCKS {
                let block = (start + i) % PORT_BLOCKS;
                let Ok(file) = std::fs::File::create(dir.join(format!("block-{block}"))) else {
                    continue;
                };
                if file.try_lock().is_ok() {
                    return (block, Some(file));
                }
            }
            // Every block taken: share one, as before blocks existed.
            (start, None)
        })
        .0
}

/// A port that is free now on 127.0.0.1, from this process's block (see
/// [`port_block`]), so a port handed to Envoy is not meanwhile given to a
/// `bind(0)`, an outgoing connection or another test process.
pub fn free_port() -> u16 {
    let base = 12_000 + port_block() * PORT_BLOCK;
    for _ in 0..PORT_BLOCK * 4 {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(base + n % PORT_BLOCK).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free port in 12000 + {}..+{PORT_BLOCK}",
        port_block() * PORT_BLOCK
    )
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A process's log file, opened in append mode for both its stdout and its
/// stderr. Append mode matters: Envoy's access log to `/dev/stdout` opens
/// the file anew, with an offset of its own. Without `O_APPEND` on every
/// description, the application log on stderr writes at its own, older
/// offset and overwrites access-log lines already written.
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path)
        .and_then(|_| std::fs::OpenOptions::new().append(true).open(path))
        .expect("log file")
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("graylane-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Calls `probe` every `every` until it gives `Ok`; after `limit`, the
/// last `Err` it gave (what the caller reports or uses). The one polling
/// loop of the tests.
pub fn poll<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let t0 = Instant::now();
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(last) if t0.elapsed() >= limit => return Err(last),
            Err(_) => thread::sleep(every),
        }
    }
}

/// Polls `ok` every `every` until it holds; fails after `limit`. The time
/// it took.
pub fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut ok: impl FnMut() -> bool,
) -> Duration {
    let t0 = Instant::now();
    if poll(
        limit,
        every,
        || if ok() { Ok(()) } else { Err(String::new()) },
    )
    .is_err()
    {
        panic!("{what}: not within {limit:?}");
    }
    t0.elapsed()
}

/// Indents text so it reads as a nested JSON string inside YAML.
pub fn json_string_value(json: &str) -> String {
    serde_json::to_string(json).expect("json string")
}

/// A running Envoy.
pub struct Envoy {
    /// Shared with the registry of running processes ([`watch`]).
    child: Arc<Mutex<Option<Child>>>,
    pub admin: u16,
    pub dir: PathBuf,
    log: PathBuf,
}

/// A process the tests started and watch: whose handle, log and test.
struct Watched {
    name: String,
    /// The test (thread) that started it.
    test: String,
    log: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
}

/// The processes of this test process that [`with_exits`] looks at.
static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

fn watched() -> std::sync::MutexGuard<'static, Vec<Watched>> {
    WATCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers a started process (`name`, e.g. "Envoy", logging to `log`), so
/// that client errors report it if it exits; returns the handle to keep and
/// to give to [`unwatch`] when the test stops it.
pub fn watch(name: &str, child: Child, log: &Path) -> Arc<Mutex<Option<Child>>> {
    let child = Arc::new(Mutex::new(Some(child)));
    watched().push(Watched {
        name: name.to_string(),
        test: thread::current().name().unwrap_or("?").to_string(),
        log: log.to_path_buf(),
        child: Arc::clone(&child),
    });
    child
}

/// Takes a process off the registry (before the test stops it).
pub fn unwatch(child: &Arc<Mutex<Option<Child>>>) {
    watched().retain(|w| !Arc::ptr_eq(&w.child, child));
}

/// How a process ended, as a person says it: `exit code 1`, `signal 11
/// (SIGSEGV)`, `signal 6 (SIGABRT), core dumped`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    let Some(signal) = status.signal() else {
        return status.to_string();
    };
    let name = match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        3 => " (SIGQUIT)",
        4 => " (SIGILL)",
        5 => " (SIGTRAP)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    };
    let core = if status.core_dumped() {
        ", core dumped"
    } else {
        ""
    };
    format!("signal {signal}{name}{core}")
}

/// How many lines of a log [`log_end`] gives at most.
const LOG_END_LINES: usize = 40;

/// The end of a process's log that tells why it died: from Envoy's crash
/// report on (the first line with `Caught ` — "Caught Segmentation fault",
/// "Caught Aborted" — and the backtrace after it) when there is one, else
/// its last lines; at most [`LOG_END_LINES`] lines either way.
pub fn log_end(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let from = lines
        .iter()
        .position(|l| l.contains("Caught "))
        .unwrap_or(lines.len().saturating_sub(LOG_END_LINES / 2));
    lines
        .iter()
        .skip(from)
        .take(LOG_END_LINES)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// What [`with_exits`] adds: for each watched process that has exited, how,
/// and the end of its log; empty when none has.
pub fn exits_report() -> String {
    let mut out = String::new();
    for w in watched().iter() {
        let status = w
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = status {
            let log = std::fs::read_to_string(&w.log).unwrap_or_default();
            out.push_str(&format!(
                "; {} exited: {} (started by test {}, log {}); the end of its log:\n{}",
                w.name,
                describe_exit(status),
                w.test,
                w.log.display(),
                log_end(&log)
            ));
        }
    }
    out
}

/// A client's I/O error (cannot connect, connection broken, no answer),
/// with what [`exits_report`] says appended when a watched process (an
/// Envoy of this test process) has exited: `connection refused; Envoy
/// exited: signal 11 (SIGSEGV) ...`. The kind stays the same.
pub fn with_exits(e: std::io::Error) -> std::io::Error {
    let report = exits_report();
    if report.is_empty() {
        e
    } else {
        std::io::Error::new(e.kind(), format!("{e}{report}"))
    }
}

/// Substitutes `{{NAME}}` placeholders; `{{WASM}}` is always the filter.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.replace("{{WASM}}", &wasm_path().display().to_string());
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(
        !out.contains("{{"),
        "unfilled placeholder in config:\n{out}"
    );
    out
}

impl Envoy {
    /// Starts Envoy on a rendered config (it must use `{{ADMIN}}` as admin
    /// port, which this fills) and waits until it is ready.
    pub fn start(template: &str, vars: &[(&str, String)]) -> Envoy {
        Self::start_with(template, vars, 2)
    }

    /// [`Envoy::start`] with a number of worker threads.
    pub fn start_with(template: &str, vars: &[(&str, String)], workers: u32) -> Envoy {
        Self::start_logging(template, vars, workers, "debug")
    }

    /// [`Envoy::start_with`] at a given log level of the `wasm` component
    /// (the others' is info; [`Envoy::start`] uses debug).
    pub fn start_logging(
        template: &str,
        vars: &[(&str, String)],
        workers: u32,
        wasm_level: &str,
    ) -> Envoy {
        let envoy = Self::spawn(template, vars, workers, true, wasm_level);
        envoy.wait_ready();
        envoy
    }

    /// Starts Envoy (2 workers) without waiting for it to be ready: for a
    /// test that acts while Envoy starts, then calls [`Envoy::wait_ready`].
    pub fn launch(template: &str, vars: &[(&str, String)]) -> Envoy {
        Self::spawn(template, vars, 2, true, "debug")
    }

    /// Waits until Envoy's admin `/ready` answers 200 (30 s at most); fails
    /// with its log if it exits first or is not ready by then.
    pub fn wait_ready(&self) {
        let envoy = self;
        let ready = poll(Duration::from_secs(30), Duration::from_millis(50), || {
            if let Some(status) = envoy.try_wait() {
                panic!(
                    "Envoy exited during start: {}:\n{}",
                    describe_exit(status),
                    envoy.log_text()
                );
            }
            match get(envoy.admin, "/ready") {
                Ok(r) if r.status == 200 => Ok(()),
                _ => Err(String::new()),
            }
        });
        if ready.is_err() {
            panic!("Envoy not ready after 30 s:\n{}", envoy.log_text());
        }
    }

    /// Starts Envoy on a config that must be refused; returns the exit
    /// status code and the log.
    pub fn start_expect_exit(template: &str, vars: &[(&str, String)]) -> (Option<i32>, String) {
        // Not watched: its exit is what the test waits for.
        let envoy = Self::spawn(template, vars, 1, false, "debug");
        let exited = poll(Duration::from_secs(30), Duration::from_millis(50), || {
            envoy.try_wait().ok_or_else(String::new)
        });
        match exited {
            Ok(status) => {
                envoy.lock_child().take();
                (status.code(), envoy.log_text())
            }
            Err(_) => panic!("Envoy did not exit on a bad config:\n{}", envoy.log_text()),
        }
    }

    /// Starts Envoy; `watched`: registered for [`with_exits`].
    fn spawn(
        template: &str,
        vars: &[(&str, String)],
        workers: u32,
        watched: bool,
        wasm_level: &str,
    ) -> Envoy {
        let admin = free_port();
        let mut all: Vec<(&str, String)> = vars.to_vec();
        all.push(("ADMIN", admin.to_string()));
        let config = render(template, &all);
        let dir = scratch_dir("envoy");
        let cfg = dir.join("envoy.yaml");
        std::fs::write(&cfg, config).expect("write config");
        let log = dir.join("envoy.log");
        let log_file = log_file(&log);
        let err_file = log_file.try_clone().expect("log file");
        let bin = envoy_bin();
        assert!(
            bin.exists(),
            "Envoy binary {} not found: run scripts/test.sh (it installs Envoy) or set GRAYLANE_ENVOY",
            bin.display()
        );
        assert!(
            wasm_path().exists(),
            "filter {} not found: run scripts/test.sh (it builds it) or set GRAYLANE_WASM",
            wasm_path().display()
        );
        let child = Command::new(bin)
            .arg("-c")
            .arg(&cfg)
            .args(["--concurrency", &workers.to_string()])
            .args(["--disable-hot-restart", "-l", "info"])
            .args(["--component-log-level", &format!("wasm:{wasm_level}")])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .expect("spawn envoy");
        let child = if watched {
            watch("Envoy", child, &log)
        } else {
            Arc::new(Mutex::new(Some(child)))
        };
        Envoy {
            child,
            admin,
            dir,
            log,
        }
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How Envoy exited, once it has (it is still running: `None`).
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.lock_child()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything Envoy has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the log, from byte `from` on (a length of [`Envoy::log_text`]
    /// taken before), holds `needle`.
    pub fn logged_since(&self, from: usize, needle: &str) -> bool {
        self.log_text()
            .get(from..)
            .is_some_and(|l| l.contains(needle))
    }

    /// Waits up to 10 s for `needle` to appear in the log; returns the log.
    pub fn wait_log(&self, needle: &str) -> String {
        let found = poll(Duration::from_secs(10), Duration::from_millis(100), || {
            let log = self.log_text();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(log)
            }
        });
        found.unwrap_or_else(|log| log)
    }

    /// `/stats` as a name -> value map (counters and gauges).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.try_stats().expect("admin /stats")
    }

    /// [`Envoy::stats`], or the error of an admin endpoint that does not
    /// answer (yet: while Envoy starts).
    pub fn try_stats(&self) -> std::io::Result<BTreeMap<String, u64>> {
        let r = get(self.admin, "/stats")?;
        Ok(r.text()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }

    /// A counter from `/stats`. Fails when Envoy has no such stat: a
    /// misspelt or never-defined name must not read as 0.
    pub fn counter(&self, name: &str) -> u64 {
        let stats = self.stats();
        match stats.get(name) {
            Some(v) => *v,
            None => {
                let tail = name.rsplit('.').next().unwrap_or(name);
                let near: Vec<&String> =
                    stats.keys().filter(|k| k.contains(tail)).take(10).collect();
                panic!("Envoy has no stat {name:?} (stats ending alike: {near:?})")
            }
        }
    }

    /// A counter from `/stats`, `None` when Envoy has no such stat (for a
    /// stat that is defined only later, or must not exist).
    pub fn counter_opt(&self, name: &str) -> Option<u64> {
        self.stats().get(name).copied()
    }

    /// Waits for a counter the filter counts per request to reach `want`:
    /// the filter keeps those counts in the VM and sends them to Envoy at
    /// least once a second (docs/observability.md "Metrics"). Polls every 50 ms for up to
    /// [`COUNTER_WAIT`]; fails with the last value seen, and returns the value
    /// once it is at least `want` (a test that needs it exact asserts that).
    pub fn wait_counter(&self, name: &str, want: u64) -> u64 {
        self.wait_counter_where(name, &format!("{want}"), |v| v >= want)
    }

    /// Waits for a counter's value to satisfy `ok` (described by `want` in
    /// the failure message); returns that value.
    pub fn wait_counter_where(&self, name: &str, want: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let reached = poll(COUNTER_WAIT, Duration::from_millis(50), || {
            match self.counter_opt(name) {
                Some(v) if ok(v) => Ok(v),
                Some(v) => Err(format!("counter {name} is {v}, not {want}")),
                None => Err(format!("Envoy has no stat {name:?} (want {want})")),
            }
        });
        reached.unwrap_or_else(|last| {
            panic!(
                "{last} after {COUNTER_WAIT:?} (the filter flushes its counts to Envoy at \
                 least once a second)"
            )
        })
    }

    /// Waits until the filter's per-request counts of what ran so far have
    /// surely reached Envoy: one full flush period and a margin. For tests
    /// that assert a counter did *not* move; prefer waiting for a counter
    /// that must move in the same flush.
    pub fn settle_counters(&self) {
        thread::sleep(FLUSH_PERIOD + Duration::from_millis(400));
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        get(self.admin, "/stats/prometheus")
            .expect("prometheus")
            .text()
    }

    /// `/stats/prometheus` once it holds every one of `lines` (whole lines),
    /// polled as [`Envoy::wait_counter`] does; fails naming those missing.
    pub fn wait_prometheus(&self, lines: &[&str]) -> String {
        let complete = poll(COUNTER_WAIT, Duration::from_millis(50), || {
            let prom = self.prometheus();
            let missing: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|want| !prom.lines().any(|l| l == *want))
                .collect();
            if missing.is_empty() {
                Ok(prom)
            } else {
                Err(format!("missing {missing:?} after {COUNTER_WAIT:?} (the filter flushes its counts to Envoy at least once a second) in:\n{prom}"))
            }
        });
        complete.unwrap_or_else(|last| panic!("{last}"))
    }

    /// Writes a file next to the config (for file-based dynamic resources).
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// The PID of the Envoy process.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        unwatch(&self.child);
        let mut child = self.lock_child().take();
        stop_process(&mut child, "Envoy", &self.log);
    }
}

/// What a process handle does when it drops: kills the process by PID (if
/// it still has it) and waits for it; during a panic, prints the process's
/// log (`name` says whose) and, when the process had exited before, how
/// (`Envoy exited: signal 11 (SIGSEGV) before the test stopped it`).
pub fn stop_process(child: &mut Option<Child>, name: &str, log: &Path) {
    let mut exited = None;
    if let Some(mut c) = child.take() {
        exited = c.try_wait().ok().flatten();
        if exited.is_none() {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
    if thread::panicking() {
        if let Some(dir) = log.parent() {
            keep_evidence(dir, name);
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        eprintln!("----- {name} log ({}) -----\n{text}", log.display());
        if let Some(status) = exited {
            eprintln!(
                "----- {name} exited: {} before the test stopped it; the end of its log:\n{}",
                describe_exit(status),
                log_end(&text)
            );
        }
    }
}

/// Where a failing test's files are kept: `$GRAYLANE_EVIDENCE` (scripts/
/// test.sh sets it under `.tools/evidence/`), else `.tools/evidence/` of the
/// repository; below it, the test binary's name and the test's.
pub fn evidence_dir() -> PathBuf {
    let root = std::env::var_os("GRAYLANE_EVIDENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/evidence"));
    // The test binary is `NAME-HASH`; libtest names each test's thread.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_else(|| "tests".into());
    let test = thread::current()
        .name()
        .unwrap_or("main")
        .replace("::", ".");
    root.join(binary).join(test)
}

/// Copies `dir` (a process's or a test's scratch directory: its config,
/// its log, the files it was given) into [`evidence_dir`] when the test is
/// failing, and says where; a passing test keeps nothing. `what` names it
/// ("Envoy", "rollout lab").
pub fn keep_evidence(dir: &Path, what: &str) {
    if !thread::panicking() {
        return;
    }
    let Some(leaf) = dir.file_name() else { return };
    let to = evidence_dir().join(leaf);
    match copy_tree(dir, &to) {
        Ok(()) => eprintln!("----- {what}: files kept in {}", to.display()),
        Err(e) => eprintln!("----- {what}: could not keep {}: {e}", dir.display()),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The values of header `name` (lower case) in a parsed header list.
fn header_values<'h, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    headers
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// (lower-case name, value) in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }

    /// The body as JSON (what an echo backend or service answered).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

/// GET with no extra headers.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(port, "GET", path, &[])
}

/// One HTTP/1.1 request on a new connection; header values are raw bytes so
/// tests can send anything a client could.
/// When it fails, the error names an Envoy of this test process that has
/// exited ([`with_exits`]).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> std::io::Result<Response> {
    exchange(port, method, path, headers).map_err(with_exits)
}

fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.extend_from_slice(b"host: localhost\r\n");
    }
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"connection: close\r\ncontent-length: 0\r\n\r\n");
    s.write_all(&req)?;
    let mut r = BufReader::new(s);
    read_response(&mut r)
}

/// Headers as text pairs, for the common case.
pub fn request_str(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    request(port, "GET", path, &raw).expect("request")
}

/// Reads a status or request line and the headers (names lower-cased).
pub fn read_head<R: BufRead>(r: &mut R) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let mut headers = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the headers",
            ));
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

/// Reads a body framed by `transfer-encoding: chunked` or `content-length`;
/// with neither, to the end of the stream when `until_eof` (responses), else
/// none (requests).
pub fn read_body<R: BufRead>(
    r: &mut R,
    headers: &[(String, String)],
    until_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if until_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_response<R: BufRead>(r: &mut R) -> std::io::Result<Response> {
    let (status_line, headers) = read_head(r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = read_body(r, &headers, true)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// What a backend received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// Every value of a header, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }
}

/// The handler of a [`Server`]: request in, (status, extra headers, body) out.
pub type Handler = Arc<dyn Fn(&Received) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync>;

/// A small threaded HTTP/1.1 server on 127.0.0.1 (keep-alive aware).
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop2, rec2) = (Arc::clone(&stop), Arc::clone(&received));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, rec) = (Arc::clone(&handler), Arc::clone(&rec2));
                thread::spawn(move || serve_conn(conn, &h, &rec));
            }
        });
        Server {
            port,
            stop,
            received,
        }
    }

    /// An echo backend: answers 200 with JSON `{"backend": NAME, "headers": {...}}`
    /// (repeated headers joined with ", ") and `x-backend: NAME`.
    pub fn echo(name: &str) -> Server {
        let name = name.to_string();
        Server::start(Arc::new(move |req: &Received| {
            let mut headers = serde_json::Map::new();
            for (k, v) in &req.headers {
                let joined = match headers.get(k).and_then(|x| x.as_str()) {
                    Some(prev) => format!("{prev}, {v}"),
                    None => v.clone(),
                };
                headers.insert(k.clone(), serde_json::Value::String(joined));
            }
            let body = serde_json::json!({"backend": name, "path": req.path, "headers": headers});
            (
                200,
                vec![("x-backend".into(), name.clone())],
                body.to_string().into_bytes(),
            )
        }))
    }

    /// Everything received so far.
    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().expect("lock"))
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_conn(conn: TcpStream, handler: &Handler, received: &Mutex<Vec<Received>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = conn.set_nodelay(true);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let Ok((line, headers)) = read_head(&mut r) else {
            return;
        };
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        if read_body(&mut r, &headers, false).is_err() {
            return;
        }
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let req = Received {
            method,
            path,
            headers,
        };
        let (status, extra, body) = handler(&req);
        received.lock().expect("lock").push(req);
        let bytes = response_bytes(status, &extra, &body);
        if writer.write_all(&bytes).is_err() || close {
            return;
        }
    }
}

/// An HTTP/1.1 response with a JSON content type, ready to write.
pub fn response_bytes(status: u16, extra: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod poll_tests {
    use super::poll;
    use std::time::{Duration, Instant};

    #[test]
    fn returns_the_first_ok() {
        let mut calls = 0;
        let got = poll(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn gives_the_last_error_after_the_limit() {
        let (limit, every) = (Duration::from_millis(30), Duration::from_millis(5));
        let mut at: Vec<Instant> = Vec::new();
        let t0 = Instant::now();
        let got: Result<(), String> = poll(limit, every, || {
            at.push(Instant::now());
            Err(format!("call {}", at.len()))
        });
        let elapsed = t0.elapsed();
        // Only what `poll` guarantees, whatever the scheduler does (a stall
        // of any length anywhere cannot fail these): it gives up no sooner
        // than `limit` after it started (its clock starts after `t0`), with
        // the error of its last call, and sleeps `every` between two calls.
        // How many calls fit in the limit is left open: a thread stalled
        // through the first call makes it the only one.
        let last = got.expect_err("never ok");
        assert_eq!(last, format!("call {}", at.len()));
        assert!(elapsed >= limit, "gave up after {elapsed:?}");
        assert!(
            at.windows(2).all(|w| w[1] - w[0] >= every),
            "calls less than {every:?} apart: {at:?}"
        );
    }
}

#[cfg(test)]
mod exit_tests {
    use super::{free_port, get, poll, scratch_dir, unwatch, watch, Child, Command, Stdio};
    use std::io::ErrorKind;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// `sh -c SCRIPT` as a watched "Envoy" whose output is its log.
    fn watched_sh(script: &str) -> Arc<Mutex<Option<Child>>> {
        let dir = scratch_dir("exit");
        let log = dir.join("envoy.log");
        let out = super::log_file(&log);
        let child = Command::new("sh")
            .args(["-c", script])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        watch("Envoy", child, &log)
    }

    fn wait_exit(child: &Arc<Mutex<Option<Child>>>) {
        let exited = poll(Duration::from_secs(10), Duration::from_millis(10), || {
            let mut c = child.lock().unwrap();
            match c.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(_))) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        assert!(exited.is_ok(), "{exited:?}");
    }

    /// A request to a port nothing listens on: refused, with what the
    /// registry adds.
    fn refused(port: u16) -> String {
        let e = get(port, "/").expect_err("nothing listens there");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        e.to_string()
    }

    /// The one test of the registry (which is process-wide): each step
    /// depends on what the steps before it left watched.
    #[test]
    fn client_errors_name_the_envoys_that_exited() {
        let port = free_port();
        let alive = watched_sh("sleep 60");
        let msg = refused(port);
        assert!(
            !msg.contains("exited"),
            "a running process is not named: {msg}"
        );

        // Dies of a signal, after a crash report: the signal, and the log
        // from the report on.
        let crashed = watched_sh(
            "echo 'info: starting'; \
             echo '[critical][backtrace] Caught Segmentation fault, suspect faulting address 0x0'; \
             echo '[critical][backtrace] #0: [0x7f00]'; \
             kill -SEGV $$",
        );
        wait_exit(&crashed);
        let msg = refused(port);
        assert!(msg.starts_with("Connection refused"), "{msg}");
        assert!(msg.contains("; Envoy exited: signal 11 (SIGSEGV)"), "{msg}");
        assert!(
            msg.contains("(started by test harness::exit_tests::client_errors_name_the_envoys_that_exited, log "),
            "{msg}"
        );
        assert!(msg.contains("Caught Segmentation fault"), "{msg}");
        assert!(msg.contains("#0: [0x7f00]"), "{msg}");
        assert!(
            !msg.contains("info: starting"),
            "from the crash report on: {msg}"
        );

        // Exits with a code, no crash report: the code, and its last lines.
        unwatch(&crashed);
        let failed = watched_sh("echo 'error: bad config'; exit 3");
        wait_exit(&failed);
        let msg = refused(port);
        assert!(msg.contains("; Envoy exited: exit code 3"), "{msg}");
        assert!(msg.contains("error: bad config"), "{msg}");
        assert!(
            !msg.contains("signal 11"),
            "the first one is no longer watched: {msg}"
        );

        // Killed (SIGKILL) from outside.
        unwatch(&failed);
        if let Some(c) = alive.lock().unwrap().as_mut() {
            c.kill().unwrap();
        }
        wait_exit(&alive);
        let msg = refused(port);
        assert!(msg.contains("; Envoy exited: signal 9 (SIGKILL)"), "{msg}");
        unwatch(&alive);
        assert!(!refused(port).contains("exited"));
    }
}
