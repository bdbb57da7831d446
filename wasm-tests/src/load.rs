//! Bounded load for the hardening tests and the soak: a multi-connection
//! HTTP/1.1 keep-alive load generator that counts what it gets back, a small
//! app server that can be killed (listener closed, open connections cut) and
//! brought back on the same port, and the RSS of a process.
//!
//! Self-contained (std and serde_json only), so the tests can include it
//! with `#[path]` as well as through the library.

use crate::harness::{poll, read_body, read_head, response_bytes, with_exits};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request of the load: path and headers (`host` included, or
/// `localhost` is sent).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Target {
    pub fn new(path: &str, headers: &[(&str, &str)]) -> Target {
        Target {
            path: path.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A response as the load generator read it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// (lower-case name, value) in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How much load, and how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    pub port: u16,
    /// Keep-alive connections, one thread each.
    pub connections: usize,
    /// Requests in all (the load ends sooner only if stopped).
    pub requests: usize,
    /// Requests per second in all; `None` = as fast as the connections go.
    /// Request `i` starts no earlier than `i / rate` seconds after the start.
    pub rate: Option<f64>,
    /// Keep one [`Sample`] per request (timings and label); off for long soaks.
    pub keep_samples: bool,
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: usize,
    /// Since the start of the load.
    pub start: Duration,
    pub end: Duration,
    /// 0 when the request failed without a response (connect or I/O error).
    pub status: u16,
    pub label: String,
}

/// The outcome of a load run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub requests: usize,
    pub elapsed: Duration,
    /// Status -> count; 0 counts requests that got no response.
    pub statuses: BTreeMap<u16, usize>,
    /// Label -> count.
    pub labels: BTreeMap<String, usize>,
    /// New connections opened after the first one of each thread (the
    /// server closed the connection, or an error).
    pub reconnects: usize,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
    /// Per request, ordered by index, when [`Plan::keep_samples`] is set.
    pub samples: Vec<Sample>,
}

impl Report {
    /// The report in one line, for a test's printed summary: `N requests
    /// on C keep-alive connections in S s (R/s), statuses {..}, answers
    /// {..}, reconnects N`.
    pub fn summary(&self, connections: usize) -> String {
        format!(
            "{} requests on {connections} keep-alive connections in {:.1} s ({:.0}/s), \
             statuses {:?}, answers {:?}, reconnects {}",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.statuses,
            self.labels,
            self.reconnects,
        )
    }

    /// Requests that did not get a 200.
    pub fn failed(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests that got a 5xx or no response at all.
    pub fn server_errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s == 0 || **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Report) {
        self.requests += other.requests;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.labels {
            *self.labels.entry(k).or_default() += v;
        }
        self.reconnects += other.reconnects;
        for e in other.errors {
            if self.errors.len() < 10 {
                self.errors.push(e);
            }
        }
        self.samples.extend(other.samples);
    }
}

/// Builds request `i`.
pub type MakeTarget = Arc<dyn Fn(usize) -> Target + Send + Sync>;
/// Names an answer, for [`Report::labels`] (e.g. which backend answered).
pub type Label = Arc<dyn Fn(usize, &Reply) -> String + Send + Sync>;

/// A load run in progress.
pub struct Running {
    start: Instant,
    /// Requests per second of the plan, if paced.
    rate: Option<f64>,
    /// Requests of the plan.
    requests: usize,
    /// Indices handed out to the connection threads.
    next: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    ended: Arc<Mutex<Ended>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Report>>,
}

/// Which requests have ended, as a low-water mark: every request with an
/// index below `below` has ended; `above` holds the ended ones above it.
#[derive(Debug, Default)]
struct Ended {
    below: usize,
    above: BTreeSet<usize>,
}

impl Ended {
    fn end(&mut self, i: usize) {
        self.above.insert(i);
        while self.above.remove(&self.below) {
            self.below += 1;
        }
    }
}

/// How long the load may go without a request ending before a wait on it
/// fails (plus one request's interval when paced): every request ends
/// within its connection's 20 s read timeout (a connection to 127.0.0.1 is
/// accepted or refused at once), so 60 s without one means the load is
/// stuck, and waiting longer would only hang the test.
const STALL: Duration = Duration::from_secs(60);

/// Starts the load in the background.
pub fn start(plan: &Plan, make: MakeTarget, label: Label) -> Running {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let ended: Arc<Mutex<Ended>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..plan.connections.max(1))
        .map(|_| {
            let worker = Worker {
                plan: plan.clone(),
                start,
                next: Arc::clone(&next),
                done: Arc::clone(&done),
                ended: Arc::clone(&ended),
                stop: Arc::clone(&stop),
                make: Arc::clone(&make),
                label: Arc::clone(&label),
            };
            thread::spawn(move || worker.run())
        })
        .collect();
    Running {
        start,
        rate: plan.rate,
        requests: plan.requests,
        next,
        done,
        ended,
        stop,
        threads,
    }
}

/// Runs the load to the end.
pub fn run(plan: &Plan, make: MakeTarget, label: Label) -> Report {
    start(plan, make, label).join()
}

impl Running {
    /// Requests finished so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Time since the load started (the clock of [`Sample`]).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// True once every connection thread has ended.
    pub fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Requests started so far, by index: each request with an index at or
    /// above the value read takes its start time ([`Sample::start`]) after
    /// the read (indices are handed out in order, each before its request's
    /// start time is taken), and each request that took its start time
    /// before the read has an index below it.
    pub fn started(&self) -> usize {
        self.next.load(Ordering::SeqCst).min(self.requests)
    }

    /// Every request with an index below this has ended (its
    /// [`Sample::end`] taken before the read).
    pub fn ended_below(&self) -> usize {
        lock(&self.ended).below
    }

    /// Waits until `n` requests are done or the load ended; fails if no
    /// request ends for [`STALL`] (the load is stuck).
    pub fn wait_done(&self, n: usize) {
        self.wait_for(&format!("{n} requests done"), || self.done(), n);
    }

    /// Waits until every request with an index below `n` has ended, or the
    /// load ended; fails like [`Running::wait_done`].
    pub fn wait_ended_below(&self, n: usize) {
        let n = n.min(self.requests);
        self.wait_for(
            &format!("every request below index {n} ended"),
            || self.ended_below(),
            n,
        );
    }

    /// Waits until `count()` reaches `n` or the load ended, failing only
    /// when `count()` stops moving for [`STALL`] (and one request's
    /// interval): the wait is as long as the load takes, not a guess of it.
    fn wait_for(&self, what: &str, count: impl Fn() -> usize, n: usize) {
        let interval = self
            .rate
            .filter(|r| *r > 0.0)
            .map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
        let limit = STALL + interval;
        let mut last = count();
        loop {
            let reached = poll(limit, Duration::from_millis(2), || {
                let c = count();
                if c >= n || self.finished() {
                    Ok(())
                } else {
                    Err(format!("{c}"))
                }
            });
            let now = count();
            match reached {
                Ok(()) => return,
                Err(_) if now > last => last = now,
                Err(c) => panic!(
                    "load: waiting for {what}: stuck at {c} for {limit:?} ({} requests done)",
                    self.done()
                ),
            }
        }
    }

    /// Ends the load after the requests in flight.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the end; the report.
    pub fn join(self) -> Report {
        let mut report = Report::default();
        for t in self.threads {
            report.merge(t.join().expect("load thread panicked"));
        }
        report.elapsed = self.start.elapsed();
        report.samples.sort_by_key(|s| s.index);
        report
    }
}

fn lock(m: &Mutex<Ended>) -> std::sync::MutexGuard<'_, Ended> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Worker {
    plan: Plan,
    start: Instant,
    next: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    ended: Arc<Mutex<Ended>>,
    stop: Arc<AtomicBool>,
    make: MakeTarget,
    label: Label,
}

impl Worker {
    fn run(self) -> Report {
        let mut report = Report::default();
        let mut conn: Option<Conn> = None;
        let mut opened = 0usize;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.plan.requests {
                break;
            }
            if let Some(rate) = self.plan.rate {
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                    thread::sleep(wait);
                }
            }
            let target = (self.make)(i);
            let started = self.start.elapsed();
            let outcome = match conn.take() {
                Some(c) => Ok(c),
                None => {
                    opened += 1;
                    Conn::open(self.plan.port)
                }
            }
            .and_then(|mut c| {
                let reply = c.exchange(&target)?;
                Ok((c, reply))
            });
            let (status, label) = match outcome {
                Ok((c, reply)) => {
                    let close = reply
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if !close {
                        conn = Some(c);
                    }
                    let label = (self.label)(i, &reply);
                    if reply.status != 200 && report.errors.len() < 10 {
                        report.errors.push(format!(
                            "request {i}: {} {}",
                            reply.status,
                            reply.text().chars().take(300).collect::<String>()
                        ));
                    }
                    (reply.status, label)
                }
                Err(e) => {
                    let kind = e.kind();
                    if report.errors.len() < 10 {
                        // Names an Envoy of this test process that exited.
                        report
                            .errors
                            .push(format!("request {i}: {}", with_exits(e)));
                    }
                    (0, format!("error: {kind}"))
                }
            };
            let ended = self.start.elapsed();
            report.requests += 1;
            *report.statuses.entry(status).or_default() += 1;
            if self.plan.keep_samples {
                report.samples.push(Sample {
                    index: i,
                    start: started,
                    end: ended,
                    status,
                    label: label.clone(),
                });
            }
            *report.labels.entry(label).or_default() += 1;
            self.done.fetch_add(1, Ordering::SeqCst);
            lock(&self.ended).end(i);
        }
        report.reconnects = opened.saturating_sub(1);
        report
    }
}

/// A keep-alive client connection.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::new(s),
        })
    }

    fn exchange(&mut self, target: &Target) -> std::io::Result<Reply> {
        let mut req = format!("GET {} HTTP/1.1\r\n", target.path);
        if !target
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            req.push_str("host: localhost\r\n");
        }
        for (k, v) in &target.headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.writer.write_all(req.as_bytes())?;
        let (line, headers) = read_head(&mut self.reader)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = read_body(&mut self.reader, &headers, false)?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// A request an [`App`] received.
#[derive(Debug, Clone)]
pub struct AppRequest {
    pub path: String,
    /// (lower-case name, value) in order.
    pub headers: Vec<(String, String)>,
}

impl AppRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An [`App`]'s answer to a request: status, extra headers, body.
pub type AppHandler =
    Arc<dyn Fn(&AppRequest) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync>;

/// A small keep-alive HTTP/1.1 app on 127.0.0.1 that keeps nothing of what
/// it serves (so it can run a soak) and can be killed like a crashed
/// instance: [`App::kill`] closes its listener (new connections are
/// refused) and cuts every open connection, even mid-request.
pub struct App {
    pub port: u16,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<BTreeMap<u64, TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl App {
    /// On a free port.
    pub fn start(handler: AppHandler) -> App {
        Self::start_on(0, handler).expect("bind an app")
    }

    /// On a given port (to bring a killed instance back where it was).
    pub fn start_on(port: u16, handler: AppHandler) -> std::io::Result<App> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<BTreeMap<u64, TcpStream>>> = Arc::default();
        let (served2, stop2, conns2) = (Arc::clone(&served), Arc::clone(&stop), Arc::clone(&conns));
        let acceptor = thread::spawn(move || {
            let mut id = 0u64;
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                id += 1;
                let Ok(clone) = conn.try_clone() else {
                    continue;
                };
                conns2.lock().expect("lock").insert(id, clone);
                let (h, served, conns, stop) = (
                    Arc::clone(&handler),
                    Arc::clone(&served2),
                    Arc::clone(&conns2),
                    Arc::clone(&stop2),
                );
                thread::spawn(move || {
                    serve_conn(conn, &h, &served, &stop);
                    conns.lock().expect("lock").remove(&id);
                });
            }
            // The listener closes here: new connections are refused.
        });
        Ok(App {
            port,
            served,
            stop,
            conns,
            acceptor: Some(acceptor),
        })
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Like a crashed instance: refuse new connections, cut the open ones.
    pub fn kill(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the acceptor so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for (_, c) in std::mem::take(&mut *self.conns.lock().expect("lock")) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve_conn(conn: TcpStream, handler: &AppHandler, served: &AtomicU64, stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    while !stop.load(Ordering::SeqCst) {
        let Ok((line, headers)) = read_head(&mut r) else {
            return;
        };
        if read_body(&mut r, &headers, false).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let (status, extra, body) = handler(&AppRequest { path, headers });
        let bytes = response_bytes(status, &extra, &body);
        if stop.load(Ordering::SeqCst) || writer.write_all(&bytes).is_err() {
            return;
        }
        served.fetch_add(1, Ordering::SeqCst);
        if close {
            return;
        }
    }
}

/// The resident set size of a process, in kB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A fixed pseudo-random function of `x` (splitmix64), for reproducible
/// "random" request attributes.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `usize` from the environment, or the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}
