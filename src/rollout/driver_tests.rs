//! The driver against fakes (docs/rollout.md "What resume guarantees"): targets,
//! state store, metrics and clock in memory, a crash injected at every
//! named instant, then `resume`; and the commands that race a running
//! rollout. Traffic is simulated: 200 requests/s, the lane's share the
//! percent its targets hold, errors at a fixed rate per version.

use super::*;
use crate::rollout::delivery::{compose, lane_percent, lane_rule, Rendered};
use crate::rollout::plan::Query;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

const LANE: &str = "gray";

fn config() -> Value {
    serde_json::json!({
        "lanes": [
            { "name": "gray", "priority": 10,
              "split": { "key": { "header": "x-user-id" }, "percent": 0, "salt": "s1" } },
            { "name": "android", "priority": 20,
              "split": { "key": { "header": "x-user-id" }, "percent": 0, "salt": "s2" } }
        ]
    })
}

/// A command run once at the n-th time something happens: (n, command).
type Hook = RefCell<Option<(usize, Box<dyn Fn()>)>>;

/// The simulated world every fake of one test shares.
struct Sim {
    now: Cell<f64>,
    /// What each target holds (the plugin configuration).
    targets: RefCell<Vec<Value>>,
    /// Every write: (target, lane percent written, why it was allowed).
    writes: RefCell<Vec<(usize, f64)>>,
    state: RefCell<Option<State>>,
    report: RefCell<String>,
    /// Cumulative (lane requests, lane errors, base requests, base errors).
    counts: Cell<(f64, f64, f64, f64)>,
    lane_errors: f64,
    base_errors: f64,
    /// Run once when the driver reads metrics (the n-th snapshot): a
    /// command racing the read.
    on_snapshot: Hook,
    snapshots: Cell<usize>,
    /// Run once before the n-th state update reads the state.
    on_update: Hook,
    updates: Cell<usize>,
    /// Run once under the lock of the n-th target write, before `go`.
    on_deliver: Hook,
    delivers: Cell<usize>,
    /// The next write to this target fails (once).
    fail_target: Cell<Option<usize>>,
    /// Run once at the n-th `queries` read.
    on_query: Hook,
    queries: Cell<usize>,
}

impl Sim {
    fn new(targets: usize, lane_errors: f64, base_errors: f64) -> Rc<Sim> {
        Rc::new(Sim {
            now: Cell::new(1_000.0),
            targets: RefCell::new(vec![config(); targets]),
            writes: RefCell::new(Vec::new()),
            state: RefCell::new(None),
            report: RefCell::new(String::new()),
            counts: Cell::new((0.0, 0.0, 0.0, 0.0)),
            lane_errors,
            base_errors,
            on_snapshot: RefCell::new(None),
            snapshots: Cell::new(0),
            on_update: RefCell::new(None),
            updates: Cell::new(0),
            on_deliver: RefCell::new(None),
            delivers: Cell::new(0),
            fail_target: Cell::new(None),
            on_query: RefCell::new(None),
            queries: Cell::new(0),
        })
    }

    fn percent_of(&self, i: usize) -> f64 {
        lane_percent(&self.targets.borrow()[i], LANE).unwrap_or(-1.0)
    }

    /// Traffic for `dt` seconds at the percent target 0 holds.
    fn advance(&self, dt: f64) {
        let p = self.percent_of(0).max(0.0) / 100.0;
        let (lr, le, br, be) = self.counts.get();
        let n = 2000.0 * dt;
        self.counts.set((
            lr + n * p,
            le + n * p * self.lane_errors,
            br + n * (1.0 - p),
            be + n * (1.0 - p) * self.base_errors,
        ));
        self.now.set(self.now.get() + dt);
    }

    fn fire(hook: &Hook, count: &Cell<usize>) {
        count.set(count.get() + 1);
        let due = matches!(&*hook.borrow(), Some((n, _)) if *n == count.get());
        if due {
            let taken = hook.borrow_mut().take();
            if let Some((_, f)) = taken {
                f();
            }
        }
    }
}

struct FakeTargets(Rc<Sim>);

impl Targets for FakeTargets {
    fn count(&self) -> usize {
        self.0.targets.borrow().len()
    }

    fn describe(&self, i: usize) -> String {
        format!("fake[{i}]")
    }

    fn rule(&self, i: usize) -> Result<(Value, f64), String> {
        let held = self.0.targets.borrow()[i].clone();
        Ok((
            lane_rule(&held, LANE)?,
            lane_percent(&held, LANE).unwrap_or(0.0),
        ))
    }

    fn deliver(
        &self,
        i: usize,
        percent: f64,
        rule: Option<&Value>,
        go: &mut dyn FnMut() -> bool,
    ) -> Result<Rendered, TargetError> {
        Sim::fire(&self.0.on_deliver, &self.0.delivers);
        let held = self.0.targets.borrow()[i].clone();
        if let Some(rule) = rule {
            let now = lane_rule(&held, LANE).map_err(TargetError::Failed)?;
            if &now != rule {
                return Err(TargetError::RuleChanged(delivery::rule_change(rule, &now)));
            }
        }
        // The filter's own parser checks every configuration written.
        let rendered = compose(&held, LANE, percent).map_err(TargetError::Failed)?;
        if !go() {
            return Err(TargetError::Stopped);
        }
        if self.0.fail_target.get() == Some(i) {
            self.0.fail_target.set(None);
            return Err(TargetError::Failed("apply failed".into()));
        }
        self.0.targets.borrow_mut()[i] = rendered.config.clone();
        self.0.writes.borrow_mut().push((i, percent));
        Ok(rendered)
    }

    fn claim(&self, _plan: &Path, _active: &dyn Fn(&Path) -> bool) -> Result<(), String> {
        Ok(())
    }

    fn release(&self, _plan: &Path) {}
}

struct FakeStore(Rc<Sim>);

impl Store for FakeStore {
    fn load(&self) -> Result<Option<State>, String> {
        Ok(self.0.state.borrow().clone())
    }

    fn update(
        &self,
        f: &mut dyn FnMut(&mut Option<State>) -> Result<(), String>,
    ) -> Result<Option<State>, String> {
        Sim::fire(&self.0.on_update, &self.0.updates);
        let mut s = self.0.state.borrow().clone();
        f(&mut s)?;
        *self.0.state.borrow_mut() = s.clone();
        Ok(s)
    }

    fn write_report(&self, text: &str) -> Result<String, String> {
        *self.0.report.borrow_mut() = text.to_string();
        Ok("report.md".into())
    }

    fn describe(&self) -> String {
        "state.json".into()
    }
}

struct FakeMetrics(Rc<Sim>);

impl Metrics for FakeMetrics {
    fn describe(&self) -> String {
        "simulated traffic".into()
    }

    fn snapshot(&self) -> Result<Snapshot, String> {
        Sim::fire(&self.0.on_snapshot, &self.0.snapshots);
        let (lr, le, br, be) = self.0.counts.get();
        Ok(metrics::snapshot_of(
            (lr.round() as u64, le.round() as u64),
            (br.round() as u64, be.round() as u64),
            "sim",
        ))
    }

    fn query(&self, _q: &Query, _interval: Duration) -> Result<Vec<f64>, String> {
        Sim::fire(&self.0.on_query, &self.0.queries);
        // The lane's traffic: always within the check's bounds.
        Ok(vec![1.0])
    }
}

struct FakeClock(Rc<Sim>);

impl Clock for FakeClock {
    fn now(&self) -> f64 {
        self.0.now.get()
    }

    fn sleep(&self, d: Duration) {
        self.0.advance(d.as_secs_f64().max(0.001));
    }
}

/// A plan (its files in a scratch directory; the fakes stand in for the
/// targets): steps 10, 50, 100 in 10 s windows.
fn plan(targets: usize, extra: &str) -> Plan {
    let dir = std::env::temp_dir().join(format!(
        "graylane-driver-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config().to_string()).unwrap();
    let mut deliver = String::new();
    for i in 0..targets {
        std::fs::write(dir.join(format!("t{i}.yaml")), "resources: []\n").unwrap();
        deliver.push_str(&format!("- ecds: t{i}.yaml\n"));
    }
    let text = format!(
        "config: config.json\nlane: gray\ndeliver:\n{deliver}steps: [10, 50, 100]\ninterval: 10s\nminRequests: 50\n{extra}"
    );
    std::fs::write(dir.join("plan.yaml"), &text).unwrap();
    plan::load(&dir.join("plan.yaml")).unwrap()
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A world on the simulation; `crash_at`: (point, n) stops the run the
/// n-th time it reaches that point.
fn world<'a>(sim: &Rc<Sim>, plan: &Plan, crash_at: Option<(String, usize)>) -> World<'a> {
    let seen = Rc::new(Cell::new(0usize));
    World {
        plan: plan.clone(),
        targets: Box::new(FakeTargets(Rc::clone(sim))),
        metrics: plan
            .waves
            .iter()
            .map(|_| Box::new(FakeMetrics(Rc::clone(sim))) as Box<dyn Metrics>)
            .collect(),
        store: Box::new(FakeStore(Rc::clone(sim))),
        clock: Box::new(FakeClock(Rc::clone(sim))),
        crash: Box::new(move |point: &str| match &crash_at {
            Some((p, n)) if p == point => {
                seen.set(seen.get() + 1);
                seen.get() == *n
            }
            _ => false,
        }),
        stop: Arc::new(AtomicBool::new(false)),
        view: Events::Quiet,
    }
}

/// The percents written to target `i`, in order.
fn written(sim: &Sim, i: usize) -> Vec<f64> {
    sim.writes
        .borrow()
        .iter()
        .filter(|w| w.0 == i)
        .map(|w| w.1)
        .collect()
}

/// What must hold after any run, crashed and resumed or not: every write
/// kept the rule and was a valid configuration (the fake checks both); the
/// percent never went down but to 0 by rollback or abort; no step was
/// skipped; each step was delivered (recorded) once; nothing is pending.
fn assert_invariants(sim: &Sim, plan: &Plan, what: &str) {
    let steps: Vec<f64> = plan.steps.iter().map(|s| s.percent).collect();
    let state = sim.state.borrow().clone().expect("a state");
    for i in 0..sim.targets.borrow().len() {
        let w = written(sim, i);
        let mut distinct: Vec<f64> = Vec::new();
        for (k, p) in w.iter().enumerate() {
            if k > 0 && *p < w[k - 1] {
                assert_eq!(
                    *p,
                    0.0,
                    "{what}: target {i} went down from {} to {p}: {w:?}",
                    w[k - 1]
                );
                assert!(
                    matches!(state.status, Status::RolledBack | Status::Aborted),
                    "{what}: down without a rollback: {w:?}"
                );
            }
            if *p > 0.0 && distinct.last() != Some(p) {
                distinct.push(*p);
            }
        }
        assert_eq!(
            distinct,
            steps[..distinct.len()].to_vec(),
            "{what}: target {i}: steps skipped or out of order: {w:?}"
        );
    }
    let mut per_step: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for d in state.deliveries.iter().filter(|d| d.why == "step") {
        *per_step
            .entry((d.step.unwrap(), d.wave.unwrap_or(0)))
            .or_default() += 1;
    }
    assert!(
        per_step.values().all(|n| *n == 1),
        "{what}: a step recorded twice: {:?}",
        state.deliveries
    );
    let entered = per_step.len();
    assert_eq!(
        per_step.keys().map(|k| k.0).max().map_or(0, |m| m + 1),
        entered / plan.waves.len().max(1)
            + usize::from(!entered.is_multiple_of(plan.waves.len().max(1))),
        "{what}: steps recorded with gaps: {per_step:?}"
    );
    assert!(
        state.pending.is_none(),
        "{what}: left pending: {:?}",
        state.pending
    );
    let report = sim.report.borrow();
    for (s, p) in steps.iter().enumerate().take(entered) {
        assert_eq!(
            report
                .matches(&format!("| {} | {p} | step |", s + 1))
                .count(),
            1,
            "{what}: step {} in the report:\n{report}",
            s + 1
        );
    }
}

/// Runs the rollout, crashing at `crash` if given, then resumes until it
/// ends; the exit codes.
fn run(sim: &Rc<Sim>, plan: &Plan, crash: Option<(&str, usize)>) -> (i32, Option<i32>) {
    let first = start_in(
        world(sim, plan, crash.map(|(p, n)| (p.to_string(), n))),
        "digest",
    );
    if first != EXIT_CRASHED {
        return (first, None);
    }
    (first, Some(resume_in(world(sim, plan, None), "digest")))
}

/// Every named instant the driver reaches in a clean run of `plan`, with
/// how often.
fn points_of(lane_errors: f64, plan: &Plan) -> BTreeMap<String, usize> {
    let sim = Sim::new(plan.deliver.len(), lane_errors, 0.0);
    let seen: Rc<RefCell<BTreeMap<String, usize>>> = Rc::default();
    let mut w = world(&sim, plan, None);
    let s = Rc::clone(&seen);
    w.crash = Box::new(move |p: &str| {
        *s.borrow_mut().entry(p.to_string()).or_default() += 1;
        false
    });
    start_in(w, "digest");
    let out = seen.borrow().clone();
    out
}

#[test]
fn a_crash_at_every_instant_then_resume_keeps_every_promise() {
    for (lane_errors, want, name) in [
        (0.0, EXIT_PROMOTED, "healthy"),
        (0.3, EXIT_ROLLED_BACK, "failing"),
    ] {
        for targets in [1, 2] {
            let plan = plan(targets, "");
            let points = points_of(lane_errors, &plan);
            assert!(points.contains_key("intent-saved"), "{points:?}");
            assert!(points.contains_key("after-target-0"), "{points:?}");
            let mut cases = 0;
            for (point, times) in &points {
                for n in 1..=*times {
                    let sim = Sim::new(targets, lane_errors, 0.0);
                    let what = format!("{name}, {targets} target(s), crash at {point}#{n}");
                    let first = start_in(world(&sim, &plan, Some((point.clone(), n))), "digest");
                    assert_eq!(first, EXIT_CRASHED, "{what}");
                    let found = sim.state.borrow().clone().map_or("no state".into(), |s| {
                        format!(
                            "{} step {} at {} %{}",
                            s.status.as_str(),
                            s.step + 1,
                            s.percent,
                            s.pending.map_or(String::new(), |p| format!(
                                ", pending {} % ({})",
                                p.percent, p.why
                            ))
                        )
                    });
                    let resumed = Some(resume_in(world(&sim, &plan, None), "digest"));
                    eprintln!(
                        "crash table: {name} | {targets} | {point}#{n} | {found} | resume exit {:?}, target 0 written {:?}",
                        resumed,
                        written(&sim, 0)
                    );
                    assert_eq!(resumed, Some(want), "{what}: {:?}", sim.state.borrow());
                    assert_invariants(&sim, &plan, &what);
                    let final_percent = if want == EXIT_PROMOTED { 100.0 } else { 0.0 };
                    for i in 0..targets {
                        assert_eq!(sim.percent_of(i), final_percent, "{what}");
                    }
                    cases += 1;
                }
            }
            assert!(cases >= 10, "{name}: {cases} crash points");
        }
    }
}

#[test]
fn without_a_crash_a_healthy_lane_is_promoted_and_a_failing_one_rolled_back() {
    let plan = plan(1, "");
    let sim = Sim::new(1, 0.0, 0.0);
    assert_eq!(run(&sim, &plan, None).0, EXIT_PROMOTED);
    assert_eq!(written(&sim, 0), vec![10.0, 50.0, 100.0]);
    assert_invariants(&sim, &plan, "healthy");
    let sim = Sim::new(1, 0.3, 0.0);
    assert_eq!(run(&sim, &plan, None).0, EXIT_ROLLED_BACK);
    assert_eq!(written(&sim, 0), vec![10.0, 0.0]);
    assert_invariants(&sim, &plan, "failing");
}

#[test]
fn a_rollback_decided_before_a_crash_is_delivered_by_resume() {
    let plan = plan(1, "");
    let sim = Sim::new(1, 0.3, 0.0);
    let (first, resumed) = run(&sim, &plan, Some(("decided-rollback", 1)));
    assert_eq!(first, EXIT_CRASHED);
    assert_eq!(resumed, Some(EXIT_ROLLED_BACK));
    // The failing step's percent was never delivered again.
    assert_eq!(written(&sim, 0), vec![10.0, 0.0]);
}

#[test]
fn a_delivery_begun_before_a_crash_is_finished_forward() {
    let plan = plan(2, "");
    let sim = Sim::new(2, 0.0, 0.0);
    // Killed after step 2 reached the first target, before the second.
    let (first, resumed) = run(&sim, &plan, Some(("after-target-0", 2)));
    assert_eq!((first, resumed), (EXIT_CRASHED, Some(EXIT_PROMOTED)));
    assert_eq!(written(&sim, 0), vec![10.0, 50.0, 50.0, 100.0]);
    assert_eq!(written(&sim, 1), vec![10.0, 50.0, 100.0]);
}

/// An abort racing the driver at each of its reads and writes: the abort
/// wins, the running rollout ends with exit 1, and no target is given
/// more than 0 % after the abort was recorded.
#[test]
fn an_abort_racing_a_read_a_delivery_or_a_save_always_wins() {
    // With a `queries` check, so a query is read after every window.
    let plan = plan(
        2,
        "analysis:\n  source: { prometheus: \"http://127.0.0.1:1\" }\n  queries:\n  - { name: traffic, query: 'up', min: 0.5 }\n",
    );
    type HookOf = fn(&Sim) -> &Hook;
    let hooks: [(&str, HookOf); 4] = [
        ("snapshot", |s| &s.on_snapshot),
        ("query", |s| &s.on_query),
        ("update", |s| &s.on_update),
        ("deliver", |s| &s.on_deliver),
    ];
    for (name, hook) in hooks {
        for n in 1..=8 {
            let sim = Sim::new(2, 0.0, 0.0);
            let aborted_at = Rc::new(Cell::new(None::<usize>));
            let (s2, a2, p2) = (Rc::clone(&sim), Rc::clone(&aborted_at), plan.clone());
            *hook(&sim).borrow_mut() = Some((
                n,
                Box::new(move || {
                    if s2.state.borrow().as_ref().is_some_and(|s| s.is_open()) {
                        a2.set(Some(s2.writes.borrow().len()));
                        let code = abort_in(world(&s2, &p2, None));
                        assert_eq!(code, EXIT_PROMOTED, "abort exits 0 once delivered");
                    }
                }),
            ));
            let what = format!("abort during the {n}-th {name}");
            let code = start_in(world(&sim, &plan, None), "digest");
            let Some(at) = aborted_at.get() else {
                continue;
            };
            assert_eq!(code, EXIT_ROLLED_BACK, "{what}");
            let state = sim.state.borrow().clone().unwrap();
            assert_eq!(state.status, Status::Aborted, "{what}");
            assert!(state.pending.is_none(), "{what}");
            let after: Vec<(usize, f64)> = sim.writes.borrow()[at..].to_vec();
            assert!(
                after.iter().all(|w| w.1 == 0.0),
                "{what}: written after the abort: {after:?}"
            );
            for i in 0..2 {
                assert_eq!(sim.percent_of(i), 0.0, "{what}");
            }
        }
    }
}

/// A promote asked at one step releases that step only: if the step
/// passes by itself meanwhile, the next step is still judged.
#[test]
fn a_promote_racing_a_passing_window_does_not_skip_the_next_step() {
    let plan = plan(1, "");
    let sim = Sim::new(1, 0.0, 0.0);
    let s2 = Rc::clone(&sim);
    // During the end-of-window read of step 1 (it passes).
    *sim.on_snapshot.borrow_mut() = Some((
        2,
        Box::new(move || {
            let mut st = s2.state.borrow_mut();
            let s = st.as_mut().unwrap();
            s.promote_requested = Some(s.step);
        }),
    ));
    assert_eq!(run(&sim, &plan, None).0, EXIT_PROMOTED);
    let state = sim.state.borrow().clone().unwrap();
    let judged: Vec<(usize, Verdict)> = state.windows.iter().map(|w| (w.step, w.verdict)).collect();
    for step in 0..3 {
        assert!(
            judged.contains(&(step, Verdict::Pass)),
            "step {step} judged and passed: {judged:?}"
        );
    }
}

/// Someone else changes the lane's own rule in a target: the rollout
/// pauses (exit 3), says what changed, and delivers nothing more.
#[test]
fn a_changed_rule_pauses_and_names_the_change() {
    let plan = plan(1, "");
    let sim = Sim::new(1, 0.0, 0.0);
    let s2 = Rc::clone(&sim);
    *sim.on_snapshot.borrow_mut() = Some((
        1,
        Box::new(move || {
            let mut t = s2.targets.borrow_mut();
            t[0]["lanes"][0]["split"]["salt"] = Value::from("s9");
        }),
    ));
    assert_eq!(run(&sim, &plan, None).0, EXIT_PAUSED);
    let state = sim.state.borrow().clone().unwrap();
    assert_eq!(state.status, Status::Paused);
    let reason = state.reason.unwrap();
    assert!(
        reason.contains("rule changed") && reason.contains("s9"),
        "{reason}"
    );
    assert_eq!(written(&sim, 0), vec![10.0]);
}

/// Another lane's percent, changed by hand (or by another rollout) while
/// this one runs, stays.
#[test]
fn another_lanes_percent_changed_meanwhile_stays() {
    let plan = plan(1, "");
    let sim = Sim::new(1, 0.0, 0.0);
    let s2 = Rc::clone(&sim);
    *sim.on_snapshot.borrow_mut() = Some((
        1,
        Box::new(move || {
            s2.targets.borrow_mut()[0]["lanes"][1]["split"]["percent"] = Value::from(30);
        }),
    ));
    assert_eq!(run(&sim, &plan, None).0, EXIT_PROMOTED);
    let held = sim.targets.borrow()[0].clone();
    assert_eq!(held["lanes"][1]["split"]["percent"], 30, "{held}");
    assert_eq!(held["lanes"][0]["split"]["percent"], 100, "{held}");
}

/// Waves: each step reaches the second wave only after the first passed
/// it; a fault seen on the first wave rolls both back before the second
/// ever gets the step.
#[test]
fn waves_deliver_and_judge_one_group_after_the_other() {
    let plan = plan(2, "waves:\n- targets: [0]\n- targets: [1]\n");
    let sim = Sim::new(2, 0.0, 0.0);
    assert_eq!(run(&sim, &plan, None).0, EXIT_PROMOTED);
    let order: Vec<(usize, f64)> = sim.writes.borrow().clone();
    assert_eq!(
        order,
        vec![
            (0, 10.0),
            (1, 10.0),
            (0, 50.0),
            (1, 50.0),
            (0, 100.0),
            (1, 100.0)
        ]
    );
    let state = sim.state.borrow().clone().unwrap();
    assert!(state.windows.iter().any(|w| w.wave == 1));
    assert_invariants(&sim, &plan, "waves");

    let sim = Sim::new(2, 0.3, 0.0);
    assert_eq!(run(&sim, &plan, None).0, EXIT_ROLLED_BACK);
    assert_eq!(
        written(&sim, 1),
        vec![0.0],
        "the second wave never got a step"
    );
    assert_eq!(written(&sim, 0), vec![10.0, 0.0]);
}

/// A step paused at its deadline and resumed keeps its run of failures.
#[test]
fn a_deadline_resume_keeps_the_run_of_failures() {
    let g = analysis::Gate {
        failure_threshold: 2,
        deadline_windows: 2,
    };
    use Verdict::{Fail, Insufficient};
    assert_eq!(
        analysis::gate_from(&[Fail, Insufficient], 0, &g),
        Action::Pause
    );
    // Resumed: a new deadline from the third window; the earlier failure
    // still counts toward the run.
    assert_eq!(
        analysis::gate_from(&[Fail, Insufficient, Fail], 2, &g),
        Action::Rollback
    );
    assert_eq!(
        analysis::gate_from(&[Fail, Insufficient, Insufficient], 2, &g),
        Action::Extend
    );
}

/// A target that fails to take a step: the targets already changed get the
/// previous percent back, the rollout stops with exit 2 and the decision
/// stays pending; `resume` delivers it and goes on.
#[test]
fn a_failed_delivery_puts_the_previous_percent_back_and_resume_retries_it() {
    let plan = plan(2, "");
    let sim = Sim::new(2, 0.0, 0.0);
    let s2 = Rc::clone(&sim);
    // Step 2's write to the second target fails.
    *sim.on_snapshot.borrow_mut() = Some((2, Box::new(move || s2.fail_target.set(Some(1)))));
    assert_eq!(start_in(world(&sim, &plan, None), "digest"), EXIT_BAD);
    assert_eq!(written(&sim, 0), vec![10.0, 50.0, 10.0], "put back");
    assert_eq!(written(&sim, 1), vec![10.0]);
    let state = sim.state.borrow().clone().unwrap();
    assert_eq!(state.status, Status::Paused);
    assert_eq!(state.pending.as_ref().map(|p| p.percent), Some(50.0));
    assert_eq!(resume_in(world(&sim, &plan, None), "digest"), EXIT_PROMOTED);
    assert_eq!(written(&sim, 1), vec![10.0, 50.0, 100.0]);
    assert_invariants_but_put_back(&sim, &plan);
}

/// [`assert_invariants`] for a run with a put-back (its one step down).
fn assert_invariants_but_put_back(sim: &Sim, plan: &Plan) {
    let state = sim.state.borrow().clone().unwrap();
    assert!(state.pending.is_none());
    let steps: Vec<usize> = state
        .deliveries
        .iter()
        .filter(|d| d.why == "step")
        .map(|d| d.step.unwrap())
        .collect();
    assert_eq!(steps, (0..plan.steps.len()).collect::<Vec<_>>());
}

/// A promote racing the driver's reads, queries, deliveries and saves:
/// whenever it lands, no step is skipped or delivered twice, and the
/// rollout still ends promoted.
#[test]
fn a_promote_racing_any_read_or_write_skips_no_step() {
    let plan = plan(
        1,
        "analysis:\n  source: { prometheus: \"http://127.0.0.1:1\" }\n  queries:\n  - { name: traffic, query: 'up', min: 0.5 }\n",
    );
    type HookOf = fn(&Sim) -> &Hook;
    let hooks: [(&str, HookOf); 4] = [
        ("snapshot", |s| &s.on_snapshot),
        ("query", |s| &s.on_query),
        ("update", |s| &s.on_update),
        ("deliver", |s| &s.on_deliver),
    ];
    for (name, hook) in hooks {
        for n in 1..=8 {
            let sim = Sim::new(1, 0.0, 0.0);
            let s2 = Rc::clone(&sim);
            *hook(&sim).borrow_mut() = Some((
                n,
                Box::new(move || {
                    let mut st = s2.state.borrow_mut();
                    if let Some(s) = st.as_mut().filter(|s| s.is_open()) {
                        s.promote_requested = Some(s.step);
                    }
                }),
            ));
            let what = format!("promote during the {n}-th {name}");
            assert_eq!(run(&sim, &plan, None).0, EXIT_PROMOTED, "{what}");
            assert_invariants(&sim, &plan, &what);
            assert_eq!(written(&sim, 0), vec![10.0, 50.0, 100.0], "{what}");
        }
    }
}
