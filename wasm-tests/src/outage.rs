//! Lane-outage scenarios, shared by the fallback tests of the Istio and
//! Envoy Gateway recipes (docs/recipes/istio.md "Istio recipe", docs/recipes/envoy-gateway.md
//! "Envoy Gateway recipe"):
//! app versions that answer with their name or fail on demand, steady load
//! in which every even request is in the lane, and counts per phase.
//!
//! No check of these tests depends on how fast the machine is, but for one
//! assumption, [`LATENCY`]: phases end after counts of requests and after
//! events seen in Envoy's stats, not after fixed sleeps, and each phase's
//! requests have all ended before the next change is made.

use crate::harness::{get, poll, Envoy};
use crate::load::{self, AppHandler, AppRequest, Plan, Reply, Report, Sample, Target};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The one timing assumption of the outage tests: no step on the way of a
/// request or of an ejection is held up longer than this. That covers a
/// request from the time the load takes its start time to Envoy's worker
/// routing it, and an ejection from the first failed request that leads to
/// it to the worker applying it (the failures, the worker's post to the
/// main thread, the ejection there, the post back; Envoy has one worker
/// here). Each step is a thread waking on a socket or a post and running
/// for microseconds: on an idle machine a burst of failures (first failure
/// to the ejection applied) lasts 0-15 ms; measured on a 2-core machine
/// with these tests running 2 at once alongside other builds and 3 CPU
/// hogs (load average 9), 20 ms at most, and with 8 at once and 6 hogs
/// (load average 13 to 17, the load generator itself up to 25 % behind
/// its schedule), 76 ms at most. 250 ms is over 3 times that worst case,
/// which had 8 runnable threads per core. Exceeding it takes a thread of
/// Envoy or of the load kept off the CPU for a quarter of a second, which
/// the scheduler does not do to a runnable thread short of hundreds of
/// threads competing for the 2 cores, a stopped process or a stalled VM.
/// The chance of a false failure from it is put at well below 1e-6 per run
/// (an engineering bound from these measurements, not a derived one).
pub const LATENCY: Duration = Duration::from_millis(250);

/// An app version: answers `{"version", "lane"}` with 200, or 500 to
/// everything while `failing` is set.
pub fn version_app(version: &'static str, failing: Arc<AtomicBool>) -> AppHandler {
    Arc::new(move |req: &AppRequest| {
        if failing.load(Ordering::SeqCst) {
            return (500, vec![], b"broken".to_vec());
        }
        let body = json!({"version": version, "lane": req.header("x-graylane")});
        (200, vec![], body.to_string().into_bytes())
    })
}

/// Waits until Envoy's `/clusters` lists exactly `ports` (on 127.0.0.1) as
/// the hosts of `cluster`.
pub fn wait_hosts(envoy: &Envoy, cluster: &str, ports: &[u16]) {
    let mut want: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    want.sort();
    let prefix = format!("{cluster}::");
    poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let text = get(envoy.admin, "/clusters")
            .map(|r| r.text())
            .unwrap_or_default();
        let mut hosts: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| l.split_once("::cx_active::").map(|(h, _)| h.to_string()))
            .collect();
        hosts.sort();
        if hosts == want {
            Ok(())
        } else {
            Err(format!("{cluster}: hosts {hosts:?}, want {want:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Whether the load's request `i` is one of the lane's (every even one).
pub fn in_lane(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// Steady load on `listen`: `rate` requests a second over `connections`,
/// the lane's requests with `lane_headers`, the others with `base_headers`;
/// each labelled with the version that answered, else its status.
pub fn start_load(
    listen: u16,
    connections: usize,
    rate: f64,
    lane_headers: &'static [(&'static str, &'static str)],
    base_headers: &'static [(&'static str, &'static str)],
) -> load::Running {
    let plan = Plan {
        port: listen,
        connections,
        requests: 1_000_000,
        rate: Some(rate),
        keep_samples: true,
    };
    load::start(
        &plan,
        Arc::new(move |i| {
            let headers = if in_lane(i) {
                lane_headers
            } else {
                base_headers
            };
            Target::new("/", headers)
        }),
        Arc::new(|_, r: &Reply| {
            if r.status != 200 {
                return format!("{}", r.status);
            }
            serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| r.text())
        }),
    )
}

/// One stretch of the run: requests started in `[from, to)`.
pub struct Phase {
    pub name: &'static str,
    pub from: Duration,
    pub to: Duration,
}

impl Phase {
    /// The lane's requests (`lane`) or the others started in this phase.
    pub fn samples<'a>(&self, report: &'a Report, lane: bool) -> Vec<&'a Sample> {
        report
            .samples
            .iter()
            .filter(|s| in_lane(s.index) == lane && s.start >= self.from && s.start < self.to)
            .collect()
    }

    /// How many of [`Phase::samples`] carry `label`.
    pub fn count(&self, report: &Report, lane: bool, label: &str) -> usize {
        self.samples(report, lane)
            .iter()
            .filter(|s| s.label == label)
            .count()
    }
}

/// Prints each phase's counts (`what`: the test's name for its lines), and
/// checks what holds in every phase: enough requests of both kinds, and
/// every base request answered by base (base is never affected by the
/// lane's outage). `summary` goes into every failure message.
pub fn check_phases(what: &str, report: &Report, phases: &[Phase], summary: &str) {
    for p in phases {
        let (g, b) = (
            p.samples(report, true).len(),
            p.samples(report, false).len(),
        );
        let (to_gray, to_base) = (p.count(report, true, "gray"), p.count(report, true, "base"));
        let base_ok = p.count(report, false, "base");
        println!(
            "{what}: phase {:<45} {:>5.2}-{:>5.2}s: gray requests {g}: to gray {to_gray}, \
             to base {to_base}, failed {}; base requests {b}: to base {base_ok}, failed {}",
            p.name,
            p.from.as_secs_f64(),
            p.to.as_secs_f64(),
            g - to_gray - to_base,
            b - base_ok,
        );
        // Each phase waits for its requests by count (`Phases::wait_requests`
        // with 100 or more of each kind), so this holds whatever the speed
        // of the run; it fails only if a phase stopped waiting for them.
        assert!(
            g >= 100 && b >= 100,
            "phase {}: too few requests: {summary}",
            p.name
        );
        assert_eq!(base_ok, b, "phase {}: base requests: {summary}", p.name);
    }
}

/// The phases of a run on a load, each ended by counts and events, never
/// by a sleep; each phase's requests are those that took their start time
/// within it.
pub struct Phases<'a> {
    running: &'a load::Running,
    pub list: Vec<Phase>,
    from: Duration,
    /// The first index of the phase's load: [`load::Running::started`] read
    /// after `from`.
    first: usize,
}

impl<'a> Phases<'a> {
    pub fn new(running: &'a load::Running) -> Phases<'a> {
        let from = running.now();
        Phases {
            running,
            list: Vec::new(),
            from,
            first: running.started(),
        }
    }

    /// Starts a phase now.
    pub fn begin(&mut self) {
        self.from = self.running.now();
        self.first = self.running.started();
    }

    /// The start of the current phase.
    pub fn from(&self) -> Duration {
        self.from
    }

    /// Waits until the phase has at least `per_kind` requests of the lane
    /// and `per_kind` others that have ended. Exact, not timed: the indices
    /// from [`Phases::begin`]'s read of `started` on all took their start
    /// time after the phase's start, `2 * per_kind` consecutive ones of them
    /// hold `per_kind` of each kind (even ones in the lane), and once they
    /// have ended their start times are before any later end of the phase.
    pub fn wait_requests(&self, per_kind: usize) {
        self.running.wait_ended_below(self.first + 2 * per_kind);
    }

    /// Ends the phase now; see [`Phases::end_at`].
    pub fn end(&mut self, name: &'static str) -> Duration {
        let to = self.running.now();
        self.end_at(name, to);
        to
    }

    /// Ends the phase at `to` (a time already read), then waits until every
    /// request that took its start time before `to` has ended, so that the
    /// change the caller makes next meets none of the phase's requests
    /// (which would otherwise count a request of the phase sent just before
    /// the change, but routed after it, against the phase). Requests started
    /// meanwhile count in no phase. Exact: those requests all have indices
    /// below `started` read after `to`.
    fn end_at(&mut self, name: &'static str, to: Duration) {
        self.list.push(Phase {
            name,
            from: self.from,
            to,
        });
        self.running.wait_ended_below(self.running.started());
    }
}

/// A counter of Envoy's seen on the load's clock: `value` was read between
/// `before` and `after`, and every change to it since the previous
/// [`Seen`] came after `before`.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub value: u64,
    pub before: Duration,
    pub after: Duration,
}

/// A counter of Envoy's (outlier detection's `ejections_enforced_*`, the
/// cluster manager's merged updates), read from `/stats` (filtered, to
/// keep the main thread's work small).
pub struct Counter<'a> {
    envoy: &'a Envoy,
    running: &'a load::Running,
    name: String,
}

impl<'a> Counter<'a> {
    pub fn new(envoy: &'a Envoy, running: &'a load::Running, name: &str) -> Counter<'a> {
        Counter {
            envoy,
            running,
            name: name.to_string(),
        }
    }

    fn read(&self) -> Option<u64> {
        let tail = self.name.rsplit('.').next().unwrap_or(&self.name);
        let text = get(self.envoy.admin, &format!("/stats?filter={tail}"))
            .ok()?
            .text();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| *k == self.name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    /// The counter now.
    pub fn now(&self) -> Seen {
        let before = self.running.now();
        let value = self
            .read()
            .unwrap_or_else(|| panic!("Envoy has no stat {}", self.name));
        Seen {
            value,
            before,
            after: self.running.now(),
        }
    }

    /// Waits until the counter is above `prev.value`: an event in Envoy (an
    /// ejection). Polls every 10 ms for up to 30 s, far longer than any
    /// event the tests wait for takes (an ejection: 3 failures at most 4 s
    /// after the endpoint gets traffic again); fails with the last value.
    pub fn wait_above(&self, prev: &Seen) -> Seen {
        let mut before = prev.before;
        let limit = Duration::from_secs(30);
        let seen = poll(limit, Duration::from_millis(10), || {
            let t = self.running.now();
            match self.read() {
                Some(v) if v > prev.value => Ok(Seen {
                    value: v,
                    before,
                    after: self.running.now(),
                }),
                Some(v) => {
                    // Still at most `prev.value` when read after `t`.
                    before = t;
                    Err(format!("{} is {v}", self.name))
                }
                None => Err(format!("no {} in Envoy's stats", self.name)),
            }
        });
        seen.unwrap_or_else(|last| {
            panic!(
                "no change of Envoy's counter above {} within {limit:?}: {last}",
                prev.value
            )
        })
    }
}

/// How [`end_while_ejected`] ended a phase.
pub struct Ejected {
    /// The ejections seen while waiting (the last one's endpoint is still
    /// ejected at the phase's end).
    pub seen: Vec<Seen>,
    /// The end of the phase.
    pub to: Duration,
    /// The lane's endpoint stays ejected until this time at least: the
    /// change that follows the phase must come before it.
    pub deadline: Duration,
}

/// Ends a phase of failures of the lane's one endpoint once it has been
/// ejected (`last`, the ejection seen last) and then for a while has had no
/// traffic: after `per_kind` requests of each kind and `2 * LATENCY`
/// past the ejection (long enough for failures that went on despite it to
/// make a burst of their own, see [`bursts`]). The phase ends while the
/// endpoint is still ejected, with room for the next change: Envoy ejects
/// for `ejection` (its base ejection time) at least, counted from the
/// ejection, which came after `last.before`; if the phase cannot end
/// `3 * LATENCY` before that (a slow run), it waits for the next ejection
/// (the next, longer, one), and so on. Events, not timing, decide when the
/// phase ends. The 3 LATENCY: the phase's last requests may be routed up to
/// LATENCY after its end, the wait for them to end ([`Phases::end_at`])
/// and the caller's change take one each; the caller checks that it made
/// the change before `deadline` (false failure < 1e-6 per run, see
/// [`LATENCY`]).
pub fn end_while_ejected(
    phases: &mut Phases,
    name: &'static str,
    counter: &Counter,
    last: Seen,
    ejection: Duration,
    per_kind: usize,
) -> Ejected {
    let mut seen = vec![last];
    let mut last = last;
    for _ in 0..5 {
        phases.wait_requests(per_kind);
        let quiet = last.after + 2 * LATENCY;
        if let Some(wait) = quiet.checked_sub(phases.running.now()) {
            thread::sleep(wait);
        }
        let to = phases.running.now();
        let deadline = last.before + ejection;
        if to + 3 * LATENCY <= deadline {
            phases.end_at(name, to);
            return Ejected { seen, to, deadline };
        }
        last = counter.wait_above(&last);
        seen.push(last);
    }
    panic!("phase {name}: could not end within 5 ejections: the run is too slow");
}

/// A run of failures: `count` failed requests, the first started at
/// `first`, the last at `last`.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub first: Duration,
    pub last: Duration,
    pub count: usize,
}

/// The failed requests (`failed`) of `samples`, in bursts: a burst is every
/// failure that started within `span` of the burst's first one; the next
/// failure after that starts the next burst. Failures that go on for
/// longer than `span` make more than one burst.
pub fn bursts(samples: &[&Sample], failed: impl Fn(&Sample) -> bool, span: Duration) -> Vec<Burst> {
    let mut starts: Vec<Duration> = samples
        .iter()
        .filter(|s| failed(s))
        .map(|s| s.start)
        .collect();
    starts.sort();
    let mut out: Vec<Burst> = Vec::new();
    for t in starts {
        match out.last_mut() {
            Some(b) if t <= b.first + span => {
                b.last = t;
                b.count += 1;
            }
            _ => out.push(Burst {
                first: t,
                last: t,
                count: 1,
            }),
        }
    }
    out
}

/// Bursts for a message: `N failed from A s for B ms`.
pub fn describe_bursts(bursts: &[Burst]) -> String {
    let parts: Vec<String> = bursts
        .iter()
        .map(|b| {
            format!(
                "{} failed from {:.3} s for {:.0} ms",
                b.count,
                b.first.as_secs_f64(),
                (b.last - b.first).as_secs_f64() * 1000.0
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The failures of the lane's requests in an outage phase (`lane`; the
/// phase ended by [`end_while_ejected`]; `seen`: every ejection seen while
/// it lasted; `ejections`: of this kind, in all the run; `ejection_time`:
/// the base ejection time): they come in bursts, one per ejection, and no
/// request started after an ejection was seen enforced fails while it
/// lasts. Failures that went on after an ejection (no fallback) would make
/// a burst more than there are ejections, and fail requests started after
/// the ejection was seen. The failures are counted as a time, not as a
/// number of requests: how many fail until Envoy's worker applies an
/// ejection is the rate of the lane's requests times that time.
pub fn check_outage(
    what: &str,
    lane: &[&Sample],
    seen: &[Seen],
    ejections: u64,
    ejection_time: Duration,
    summary: &str,
) {
    let found = bursts(lane, failed, LATENCY);
    // Bound: a burst per ejection, each over within LATENCY of its first
    // failure: a burst is the failures from the endpoint getting traffic
    // (added, or its ejection ended) to the worker applying the ejection
    // they lead to (at the first failure for refused connections, the
    // third 500 in a row for answers), false failure < 1e-6 per run by the
    // assumption of `LATENCY`. The phase goes on for 2 LATENCY past its
    // last ejection, so failures that do not stop make a burst of their
    // own. (Before: (1 + C) or (3 + C) failures per ejection, C the
    // connections, which a stall of Envoy's main thread exceeds at the
    // load's rate.)
    assert!(
        found.len() as u64 <= ejections,
        "{what} phase: {} bursts of failures {} but {ejections} ejections: {summary}",
        found.len(),
        describe_bursts(&found)
    );
    // No failure while an ejection seen in the stats lasts: Envoy ejects on
    // its main thread and, in the same call, posts the change to the worker
    // (the recipe sets `update_merge_window: 0s`), before its admin
    // endpoint answers; the worker runs that post before it reads a request
    // sent after the answer. So a request started after `after` is routed
    // without gray until the ejection ends, which is not before
    // `before + ejection_time`: a request started LATENCY before that is
    // routed before it. Exact but for that one LATENCY.
    for e in seen {
        let until = (e.before + ejection_time).saturating_sub(LATENCY);
        let late: Vec<_> = lane
            .iter()
            .filter(|s| failed(s) && s.start >= e.after && s.start < until)
            .map(|s| (s.index, s.start.as_secs_f64(), s.label.clone()))
            .collect();
        assert!(
            late.is_empty(),
            "{what} phase: failed after the ejection seen at {:.3} s: {late:?}: {summary}",
            e.after.as_secs_f64()
        );
    }
}

/// Gray answers that end the phase of [`recover`] (at least 100 + 2 C for
/// [`check_return`]): 2 s of the lane's requests.
pub const GRAY_BACK: u64 = 300;

/// How long [`recover`] may wait for them: gray returns within the bound
/// of [`check_return`] (a few seconds) and then answers 150 a second; this
/// only keeps a broken run from hanging.
pub const RETURN_WAIT: Duration = Duration::from_secs(60);

/// Phase 4 of the fallback tests: gray recovers (`failing` cleared) while
/// it is still ejected after the phase `erroring` (so no request that
/// reaches gray before it counts towards another ejection), and the phase
/// lasts until gray has answered [`GRAY_BACK`] requests since (every one a
/// 200) and there are `per_kind` requests of each kind: counts, not time.
pub fn recover(
    phases: &mut Phases,
    name: &'static str,
    failing: &AtomicBool,
    gray: &load::App,
    erroring: &Ejected,
    per_kind: usize,
) {
    failing.store(false, Ordering::SeqCst);
    let recovered = phases.running.now();
    // `end_while_ejected` left 3 LATENCY for this: false failure < 1e-6
    // per run (see `LATENCY`).
    assert!(
        recovered < erroring.deadline,
        "gray recovered {:.0} ms after its ejection may have ended: the test thread or the load \
         stalled for more than {LATENCY:?}",
        (recovered - erroring.deadline).as_secs_f64() * 1000.0
    );
    phases.begin();
    let served = gray.served();
    poll(RETURN_WAIT, Duration::from_millis(10), || {
        let n = gray.served() - served;
        if n >= GRAY_BACK {
            Ok(())
        } else {
            Err(format!("gray answered {n} requests since it recovered"))
        }
    })
    .unwrap_or_else(|e| panic!("gray traffic did not return within {RETURN_WAIT:?}: {e}"));
    phases.wait_requests(per_kind);
    phases.end(name);
}

/// A lane request that failed: answered by neither version.
pub fn failed(s: &Sample) -> bool {
    s.label != "gray" && s.label != "base"
}

/// (4) of the fallback tests: in phase `back`, which began when gray
/// recovered while still ejected (by [`end_while_ejected`]) and lasted
/// until gray had answered at least 100 + 2 C requests, gray traffic
/// returns once the ejection ends, and stays. `ejections`: gray's, in all;
/// `ejection_time`: the base ejection time; `interval`: of outlier
/// detection. The time gray took to return.
pub fn check_return(
    back: &Phase,
    report: &Report,
    ejections: u64,
    ejection_time: Duration,
    interval: Duration,
    summary: &str,
) -> Duration {
    let lane = back.samples(report, true);
    let first_back = lane
        .iter()
        .filter(|s| s.label == "gray")
        .map(|s| s.start)
        .min()
        .unwrap_or_else(|| panic!("gray traffic never returned: {summary}"));
    let returned_after = first_back - back.from;
    // Bound (unchanged: ejection time x ejections + 2 s): gray's last
    // ejection lasts the ejection time times its number of ejections at
    // most (Envoy multiplies the base ejection time by them) and began
    // before the phase; Envoy ends it at its first outlier check after
    // that, at most `interval` later. What remains, 2 s - interval (1 s
    // or more), covers the main thread being late for that check, the
    // post to the worker and the next lane request (every 7 ms): a stall
    // of 4 LATENCY, false failure < 1e-6 per run (see `LATENCY`).
    let longest = ejection_time * u32::try_from(ejections.max(1)).unwrap_or(u32::MAX)
        + Duration::from_secs(2);
    assert!(
        longest >= ejection_time + interval + Duration::from_secs(1),
        "the bound leaves 1 s for stalls"
    );
    assert!(
        returned_after < longest,
        "gray back after {returned_after:?}, bound {longest:?}: {summary}"
    );
    // And stays: no lane request is answered by base once one answered by
    // gray has ended (one sent after it is routed after it, by Envoy's one
    // worker, and gray no longer fails). Exact: the 200 ms of settling
    // after the first gray answer that this allowed before, a timing bound,
    // is not needed.
    let first_end = lane
        .iter()
        .filter(|s| s.label == "gray")
        .map(|s| s.end)
        .min()
        .unwrap_or_default();
    let late: Vec<_> = lane.iter().filter(|s| s.start >= first_end).collect();
    let not_gray: Vec<_> = late
        .iter()
        .filter(|s| s.label != "gray")
        .map(|s| (s.index, s.start.as_secs_f64(), s.label.clone()))
        .collect();
    assert!(
        not_gray.is_empty(),
        "gray traffic did not stay: {not_gray:?}: {summary}"
    );
    // The phase waited for gray to answer GRAY_BACK (>= 100 + 2 C) requests;
    // all of them are in `late` but those in flight when the phase began or
    // when gray first answered (C each at most). (Before: >= 50.)
    assert!(
        late.len() >= 100,
        "{} gray answers after it returned: {summary}",
        late.len()
    );
    returned_after
}

/// The sizes of the fallback tests' phases.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// The lane endpoint's base ejection time.
    pub ejection: Duration,
    /// Requests of each kind in an outage phase, at least.
    pub per_kind_outage: usize,
    /// Requests of each kind in the other phases.
    pub per_kind: usize,
}

/// Phases 3b and 4 of the fallback tests, once every gray endpoint answers
/// 500 (`failing` set) and Envoy has it: the phase lasts until two
/// ejections are seen (`answered_5xx` above `before`) and ends while gray
/// is still ejected ([`end_while_ejected`]); then gray recovers
/// ([`recover`]). The first ejection seen, and phase 3b's ejections.
pub fn erroring_then_recovering(
    phases: &mut Phases,
    answered_5xx: &Counter,
    before: Seen,
    failing: &AtomicBool,
    gray: &load::App,
    sizes: Sizes,
) -> (Seen, Ejected) {
    phases.begin();
    let first = answered_5xx.wait_above(&before);
    let second = answered_5xx.wait_above(&first);
    let erroring = end_while_ejected(
        phases,
        "3b every gray endpoint answers 500",
        answered_5xx,
        second,
        sizes.ejection,
        sizes.per_kind_outage,
    );
    recover(
        phases,
        "4 gray comes back",
        failing,
        gray,
        &erroring,
        sizes.per_kind,
    );
    (first, erroring)
}
