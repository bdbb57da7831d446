//! The driver (docs/rollout.md "Staged rollout"): the state machine that delivers a
//! step, judges its windows, and advances, extends, pauses or rolls back;
//! and the commands that act on a running or stopped rollout (`status`,
//! `promote`, `abort`, `resume`).
//!
//! The state file is the one truth ([`Store`]): every decision is written
//! there as `pending` before any target is touched, and cleared once every
//! target has it, so `resume` after a crash at any instant finishes what
//! was decided. The driver reaches the world only through seams (targets,
//! metrics, the state store, the clock, and the named crash points), so
//! its native tests run it against fakes and stop it between any two
//! writes (`driver_tests.rs`).

use super::analysis::{self, Action, Sample, Verdict, Window};
use super::delivery::{self, FileTargets, TargetError, Targets};
use super::metrics::{self, Metrics, Reader, Snapshot};
use super::plan::{self, Plan};
use super::planner;
use super::state::{self, Delivery, Files, Numbers, Pending, State, Status, Store, WindowRecord};
use super::view::{self, Events};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::cli::exit::{EXIT_BAD, EXIT_CRASHED, EXIT_PAUSED, EXIT_PROMOTED, EXIT_ROLLED_BACK};

/// The environment switch that stops the process at a named instant
/// (`POINT` or `POINT#N`, the N-th time it is reached): for the tests of
/// what `resume` does after a crash. Inert unless set.
pub const CRASH_ENV: &str = "GRAYLANE_ROLLOUT_CRASH_AT";

/// How often the driver looks at the clock, the state file and signals.
const POLL: Duration = Duration::from_millis(100);

/// The time, as the driver sees it.
pub trait Clock {
    /// Unix seconds.
    fn now(&self) -> f64;
    fn sleep(&self, d: Duration);
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        state::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Everything the driver touches.
pub struct World<'w> {
    pub plan: Plan,
    pub targets: Box<dyn Targets + 'w>,
    /// One per wave of the plan.
    pub metrics: Vec<Box<dyn Metrics + 'w>>,
    pub store: Box<dyn Store + 'w>,
    pub clock: Box<dyn Clock + 'w>,
    /// Asked at every named instant: `true` stops the run there, as a
    /// crash would (the process's own hook kills it and never answers).
    pub crash: Box<dyn FnMut(&str) -> bool + 'w>,
    /// Set by Ctrl-C or SIGTERM.
    pub stop: Arc<AtomicBool>,
    pub view: Events,
}

/// Set by Ctrl-C or SIGTERM.
fn interrupted() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        flag
    })
    .clone()
}

/// The crash hook of the real process: [`CRASH_ENV`] names a point (and
/// which time it is reached); there the process kills itself with
/// SIGKILL, as `kill -9` would.
fn env_crash() -> Box<dyn FnMut(&str) -> bool> {
    let want = std::env::var(CRASH_ENV).ok().filter(|w| !w.is_empty());
    let Some(want) = want else {
        return Box::new(|_| false);
    };
    let (point, nth) = match want.split_once('#') {
        Some((p, n)) => (p.to_string(), n.parse::<usize>().unwrap_or(1)),
        None => (want.clone(), 1),
    };
    let mut seen = 0usize;
    Box::new(move |reached: &str| {
        if reached == point {
            seen += 1;
            if seen == nth {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &std::process::id().to_string()])
                    .status();
                std::process::abort();
            }
        }
        false
    })
}

/// A failure that ends the run with an exit status.
#[derive(Debug)]
pub struct End(pub i32);

fn bad(view: &Events, message: &str) -> i32 {
    view.say(
        "error",
        &format!("graylane rollout: {message}"),
        json!({ "exit": EXIT_BAD }),
    );
    view.finish();
    EXIT_BAD
}

/// Whether the plan at `path` has a rollout that is not over.
fn rollout_open(path: &Path) -> bool {
    Files::of(path)
        .load()
        .ok()
        .flatten()
        .is_some_and(|s| s.is_open())
}

/// A metrics reader per wave, its clusters matched against the config's
/// `lanes` (exactly: a cluster is the longest lane name's it ends with).
fn readers(plan: &Plan, lanes: &[String]) -> Vec<Box<dyn Metrics>> {
    plan.waves
        .iter()
        .map(|w| {
            Box::new(Reader::of(plan, &w.source).with_lanes(lanes.to_vec())) as Box<dyn Metrics>
        })
        .collect()
}

/// The real world of a plan file: its targets, its waves' metrics
/// sources, its state file, the clock; `Err` is the message for exit 2.
fn open_world(path: &Path, view: Events) -> Result<(World<'static>, String), (Events, String)> {
    let plan = match plan::load(path) {
        Ok(p) => p,
        Err(e) => return Err((view, format!("plan {}: {e}", path.display()))),
    };
    let start = match delivery::read_config(&plan) {
        Ok(s) => s,
        Err(e) => return Err((view, e)),
    };
    if let Err(e) = delivery::check_targets(&plan, &start) {
        return Err((view, e));
    }
    let metrics = readers(&plan, &delivery::lane_names(&start.value));
    for (w, reader) in metrics.iter().enumerate() {
        if let Err(e) = reader.snapshot() {
            let which = if plan.waves.len() > 1 {
                format!("waves[{w}].source")
            } else {
                "analysis.source".into()
            };
            return Err((
                view,
                format!("{which}: {} is unreachable: {e}", reader.describe()),
            ));
        }
    }
    let text = std::fs::read(path).map_err(|e| (Events::new(false), e.to_string()));
    let text = match text {
        Ok(t) => t,
        Err((_, e)) => return Err((view, e)),
    };
    let files = Files::of(&plan.path);
    let world = World {
        targets: Box::new(FileTargets::new(&plan, start)),
        metrics,
        store: Box::new(files),
        clock: Box::new(SystemClock),
        crash: env_crash(),
        stop: interrupted(),
        view,
        plan,
    };
    Ok((world, state::digest(&text)))
}

/// `graylane rollout PLAN`: the planner's table first (at the traffic the
/// metrics source shows now), then the rollout.
pub fn start(path: &Path, json: bool) -> i32 {
    drive_plan(path, json, true, start_in)
}

/// How long `rollout plan` watches the counters for the rate.
const RATE_OVER: Duration = Duration::from_secs(2);

/// The planner's table and its JSON for `plan`, at `rps` (or the rate the
/// metrics sources show over [`RATE_OVER`]) and base's 5xx share in
/// percent (or the one they show so far).
fn planned(
    plan: &Plan,
    readers: &[Box<dyn Metrics + '_>],
    rps: Option<f64>,
    base_errors: Option<f64>,
) -> Result<(String, Value), String> {
    let totals = |snaps: &[Snapshot]| {
        snaps.iter().fold(metrics::Delta::default(), |mut acc, s| {
            let d = metrics::delta(&Snapshot::new(), s);
            acc.lane.add(&d.lane);
            acc.base.add(&d.base);
            acc
        })
    };
    let snap = || {
        readers
            .iter()
            .map(|r| r.snapshot())
            .collect::<Result<Vec<_>, _>>()
    };
    let (rps, base_rate) = match (rps, base_errors) {
        (Some(r), Some(b)) => (r, b / 100.0),
        _ => {
            let t0 = std::time::Instant::now();
            let before = totals(&snap()?);
            std::thread::sleep(RATE_OVER);
            let after = totals(&snap()?);
            let secs = t0.elapsed().as_secs_f64().max(0.001);
            let served = |d: &metrics::Delta| (d.lane.requests + d.base.requests) as f64;
            let measured = (served(&after) - served(&before)).max(0.0) / secs;
            let share = if after.base.requests > 0 {
                after.base.errors as f64 / after.base.requests as f64
            } else {
                0.0
            };
            (
                rps.unwrap_or(measured),
                base_errors.map_or(share, |b| b / 100.0),
            )
        }
    };
    let steps = planner::plan_steps(plan, rps, base_rate);
    let text = planner::table(plan, rps, base_rate, &steps);
    Ok((
        text,
        json!({ "rps": rps, "baseErrorRate": base_rate, "steps": steps }),
    ))
}

/// `graylane rollout plan PLAN [--rps N] [--base-errors PCT]`: exit 0, or
/// 2 for a bad plan or an unreachable metrics source.
pub fn plan(path: &Path, rps: Option<f64>, base_errors: Option<f64>, json: bool) -> i32 {
    let view = Events::new(json);
    let plan = match plan::load(path) {
        Ok(p) => p,
        Err(e) => return bad(&view, &format!("plan {}: {e}", path.display())),
    };
    if rps.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return bad(&view, "--rps: a rate above 0");
    }
    if base_errors.is_some_and(|b| !(0.0..=100.0).contains(&b)) {
        return bad(&view, "--base-errors: a percent from 0 to 100");
    }
    let lanes = delivery::read_config(&plan)
        .map(|c| delivery::lane_names(&c.value))
        .unwrap_or_default();
    match planned(&plan, &readers(&plan, &lanes), rps, base_errors) {
        Ok((text, body)) => {
            if json {
                view.say("plan", text.trim_end(), body);
            } else {
                print!("{text}");
            }
            view.finish();
            EXIT_PROMOTED
        }
        Err(e) => bad(
            &view,
            &format!("analysis.source: {e} (give --rps and --base-errors to plan without it)"),
        ),
    }
}

/// Opens the plan's world and runs `f` in it while this process holds the
/// claim on the plan (a second process driving it is refused).
fn drive_plan(path: &Path, json: bool, announce: bool, f: fn(World<'static>, &str) -> i32) -> i32 {
    let (world, digest) = match open_world(path, Events::new(json)) {
        Ok(w) => w,
        Err((view, e)) => return bad(&view, &e),
    };
    if announce {
        // The planner's table at the traffic the metrics sources show now.
        if let Ok((text, body)) = planned(&world.plan, &world.metrics, None, None) {
            world.view.say("plan", text.trim_end(), body);
        }
    }
    let files = Files::of(&world.plan.path);
    let claim = match files.claim() {
        Ok(c) => c,
        Err(e) => return bad(&world.view, &e),
    };
    let code = f(world, &digest);
    drop(claim);
    files.unclaim_if_over();
    code
}

/// [`start`] in a given world (native tests give fakes).
pub fn start_in(world: World<'_>, digest: &str) -> i32 {
    let mut run = Run::new(world);
    match run.begin(digest) {
        Ok(()) => run.drive(),
        Err(End(code)) => code,
    }
}

/// `graylane rollout resume PLAN` (and `promote` of a stopped rollout).
pub fn resume(path: &Path, json: bool) -> i32 {
    drive_plan(path, json, false, resume_in)
}

/// [`resume`] in a given world.
pub fn resume_in(world: World<'_>, digest: &str) -> i32 {
    let mut run = Run::new(world);
    match run.reopen(digest) {
        Ok(true) => run.drive(),
        Ok(false) => EXIT_PAUSED,
        Err(End(code)) => code,
    }
}

fn final_code(status: Status) -> i32 {
    match status {
        Status::Promoted => EXIT_PROMOTED,
        Status::RolledBack | Status::Aborted => EXIT_ROLLED_BACK,
        _ => EXIT_PAUSED,
    }
}

/// What the wait before a window's end saw.
enum Waited {
    /// The window's time is up.
    Done,
    /// `promote` released the step in force.
    Released,
}

/// A running rollout: the world and the last state read or written.
struct Run<'w> {
    w: World<'w>,
    state: State,
}

impl<'w> Run<'w> {
    fn new(w: World<'w>) -> Run<'w> {
        let state = State {
            plan: w.plan.path.clone(),
            plan_digest: String::new(),
            lane: w.plan.lane.clone(),
            status: Status::Running,
            reason: None,
            step: 0,
            percent: 0.0,
            wave: 0,
            step_started: 0.0,
            deadline_from: 0,
            promote_requested: None,
            pending: None,
            rules: Vec::new(),
            delivered: Vec::new(),
            pid: None,
            started: 0.0,
            updated: 0.0,
            deliveries: Vec::new(),
            windows: Vec::new(),
        };
        Run { w, state }
    }

    fn bad(&self, message: &str) -> End {
        End(bad(&self.w.view, message))
    }

    /// Stops here if a test (or [`CRASH_ENV`]) says so.
    fn point(&mut self, name: &str) -> Result<(), End> {
        if (self.w.crash)(name) {
            return Err(End(EXIT_CRASHED));
        }
        Ok(())
    }

    fn steps(&self) -> usize {
        self.w.plan.steps.len()
    }

    /// Read-modify-write of the state under its lock: `f` changes the state
    /// as it is on disk now. A rollout that ended meanwhile (`abort`) is
    /// never written over: the run ends instead.
    fn update(&mut self, mut f: impl FnMut(&mut State)) -> Result<(), End> {
        let mut ended = false;
        let result = self.w.store.update(&mut |s: &mut Option<State>| {
            let Some(s) = s.as_mut() else {
                return Err("the state file disappeared".into());
            };
            if !s.is_open() {
                ended = true;
                return Err("ended".into());
            }
            f(s);
            Ok(())
        });
        match result {
            Ok(Some(s)) => {
                self.state = s;
                Ok(())
            }
            Ok(None) => Err(self.bad("state file: no state")),
            Err(_) if ended => Err(End(self.ended_elsewhere())),
            Err(e) => Err(self.bad(&format!("state file: {e}"))),
        }
    }

    /// The state on disk now (what `abort` and `promote` left).
    fn reload(&mut self) -> Result<(), End> {
        match self.w.store.load() {
            Ok(Some(s)) => {
                self.state = s;
                Ok(())
            }
            Ok(None) => Err(self.bad("state file: no state")),
            Err(e) => Err(self.bad(&format!("state file: {e}"))),
        }
    }

    /// A new rollout: the lane's rule on every target is recorded, then
    /// the first step is decided (pending) before anything is delivered.
    fn begin(&mut self, digest: &str) -> Result<(), End> {
        match self.w.store.load() {
            Ok(Some(s)) if s.is_open() => {
                return Err(self.bad(&format!(
                    "a rollout of this plan is {} at step {} ({} %); use `graylane rollout resume`, `promote` or `abort` ({})",
                    s.status.as_str(),
                    s.step + 1,
                    s.percent,
                    self.w.store.describe()
                )))
            }
            Err(e) => return Err(self.bad(&e)),
            _ => {}
        }
        let plan_path = self.w.plan.path.clone();
        self.w
            .targets
            .claim(&plan_path, &rollout_open)
            .map_err(|e| self.bad(&e))?;
        let mut rules = Vec::new();
        let mut delivered = Vec::new();
        for i in 0..self.w.targets.count() {
            let (rule, percent) = self.w.targets.rule(i).map_err(|e| self.bad(&e))?;
            rules.push(rule);
            delivered.push(percent);
        }
        let t = self.w.clock.now();
        let first = self.step_pending(0, 0);
        let fresh = State {
            plan_digest: digest.to_string(),
            status: Status::Running,
            step_started: t,
            pid: Some(std::process::id()),
            started: t,
            updated: t,
            pending: Some(first),
            rules,
            delivered,
            ..self.state.clone()
        };
        let written = self.w.store.update(&mut |s: &mut Option<State>| {
            *s = Some(fresh.clone());
            Ok(())
        });
        match written {
            Ok(Some(s)) => self.state = s,
            Ok(None) => return Err(self.bad("state file: not written")),
            Err(e) => return Err(self.bad(&format!("state file: {e}"))),
        }
        self.w.view.say(
            "start",
            &format!(
                "rollout of lane {} in steps {:?} %{}, {} s windows, counters from {}",
                self.w.plan.lane,
                self.w.plan.steps.iter().map(|s| s.percent).collect::<Vec<_>>(),
                if self.w.plan.waves.len() > 1 {
                    format!(" over {} waves", self.w.plan.waves.len())
                } else {
                    String::new()
                },
                self.w.plan.interval.as_secs_f64(),
                self.w
                    .metrics
                    .iter()
                    .map(|m| m.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            json!({ "lane": self.w.plan.lane, "steps": self.w.plan.steps.iter().map(|s| s.percent).collect::<Vec<_>>(), "interval": self.w.plan.interval.as_secs_f64(), "waves": self.w.plan.waves.len() }),
        );
        self.point("intent-saved")
    }

    /// `resume`: takes the rollout back in hand. `Ok(false)`: it stays
    /// paused (a manual step without `promote`).
    fn reopen(&mut self, digest: &str) -> Result<bool, End> {
        let state = match self.w.store.load() {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(self.bad(&format!(
                    "no rollout of this plan to resume ({} does not exist)",
                    self.w.store.describe()
                )))
            }
            Err(e) => return Err(self.bad(&e)),
        };
        self.state = state;
        if !self.state.is_open() {
            // An abort whose own delivery did not finish is finished here.
            return Err(End(self.ended_elsewhere()));
        }
        if self.state.plan_digest != digest {
            return Err(self
                .bad("the plan changed since this rollout began; abort it, or put the plan back"));
        }
        if self.w.plan.steps.get(self.state.step).is_none() {
            return Err(self.bad("the state names a step the plan does not have"));
        }
        let plan_path = self.w.plan.path.clone();
        self.w
            .targets
            .claim(&plan_path, &rollout_open)
            .map_err(|e| self.bad(&e))?;
        let released = self.state.promote_requested == Some(self.state.step);
        if self.state.status == Status::Paused && !released {
            let reason = self.state.reason.clone().unwrap_or_default();
            if reason.starts_with("manual") || reason.starts_with("rule changed") {
                let plan = self.w.plan.path.display().to_string();
                self.w.view.say(
                    "paused",
                    &format!(
                        "step {} ({} %) stays paused: {reason}\n  go on:     graylane rollout promote {plan}\n  roll back: graylane rollout abort {plan}",
                        self.state.step + 1,
                        self.state.percent,
                    ),
                    json!({ "exit": EXIT_PAUSED, "reason": reason }),
                );
                self.w.view.finish();
                return Ok(false);
            }
        }
        let new_deadline = self.state.status == Status::Paused && !released;
        let pid = std::process::id();
        self.update(|s| {
            if new_deadline {
                // Paused at its deadline: the step gets a new deadline (its
                // run of failed windows still counts).
                s.deadline_from = s.step_windows();
            }
            s.status = Status::Running;
            s.reason = None;
            s.pid = Some(pid);
        })?;
        let pending = self
            .state
            .pending
            .as_ref()
            .map(|p| format!("; finishing the delivery of {} % ({})", p.percent, p.why))
            .unwrap_or_default();
        self.w.view.say(
            "resume",
            &format!(
                "resuming at step {}/{} ({} %), {} window(s) judged so far in this step{pending}",
                self.state.step + 1,
                self.steps(),
                self.state.percent,
                self.state.step_windows()
            ),
            json!({ "step": self.state.step, "percent": self.state.percent, "pending": self.state.pending }),
        );
        Ok(true)
    }

    /// The delivery of step `step` to wave `wave`.
    fn step_pending(&self, step: usize, wave: usize) -> Pending {
        Pending {
            percent: self
                .w
                .plan
                .steps
                .get(step)
                .map(|s| s.percent)
                .unwrap_or(100.0),
            step: Some(step),
            wave: Some(wave),
            why: "step".into(),
            targets: self
                .w
                .plan
                .waves
                .get(wave)
                .map(|w| w.targets.clone())
                .unwrap_or_default(),
        }
    }

    fn rollback_pending(&self, why: &str) -> Pending {
        Pending {
            percent: 0.0,
            step: None,
            wave: None,
            why: why.into(),
            targets: (0..self.w.targets.count()).collect(),
        }
    }

    /// Delivers the pending decision to its targets, then records it done.
    /// A delivery of a step checks, under each target's lock, that no
    /// `abort` came first; a rollback or abort always goes through.
    fn complete_pending(&mut self) -> Result<(), End> {
        let Some(p) = self.state.pending.clone() else {
            return Ok(());
        };
        let stopping = p.why != "step";
        let mut warnings = Vec::new();
        for (n, &i) in p.targets.iter().enumerate() {
            self.point(&format!("before-target-{i}"))?;
            let rule = if stopping {
                None
            } else {
                self.state.rules.get(i).cloned()
            };
            let delivered = {
                let store = &self.w.store;
                let mut go = || {
                    stopping
                        || store
                            .load()
                            .ok()
                            .flatten()
                            .is_some_and(|s| s.status != Status::Aborted)
                };
                self.w.targets.deliver(i, p.percent, rule.as_ref(), &mut go)
            };
            match delivered {
                Ok(r) => warnings.extend(r.warnings),
                Err(TargetError::Stopped) => return Err(End(self.ended_elsewhere())),
                Err(TargetError::RuleChanged(what)) => {
                    self.put_back(p.targets.get(..n).unwrap_or_default());
                    return Err(End(self.pause(format!(
                        "rule changed: the lane's rule in deliver[{i}] was changed by someone else, so the admitted population is no longer the measured one ({what}); nothing was delivered. Put the rule back and `promote`, or `abort`"
                    ))));
                }
                Err(TargetError::Failed(e)) => {
                    self.put_back(p.targets.get(..n).unwrap_or_default());
                    return Err(End(self.delivery_failed(&p, i, &e)));
                }
            }
            self.point(&format!("after-target-{i}"))?;
        }
        let now = self.w.clock.now();
        let pid = std::process::id();
        let done = p.clone();
        let record = move |s: &mut State| {
            if s.pending.is_none() {
                // Recorded already (an abort finished by two processes).
                return;
            }
            s.pending = None;
            for &i in &done.targets {
                if let Some(d) = s.delivered.get_mut(i) {
                    *d = done.percent;
                }
            }
            s.deliveries.push(Delivery {
                at: now,
                step: done.step,
                wave: done.wave,
                percent: done.percent,
                why: done.why.clone(),
                targets: done.targets.clone(),
            });
            match done.why.as_str() {
                "step" => {
                    let step = done.step.unwrap_or(s.step);
                    if step != s.step || s.deliveries.len() == 1 {
                        s.step_started = now;
                    }
                    s.step = step;
                    s.wave = done.wave.unwrap_or(0);
                    s.percent = done.percent;
                    s.deadline_from = 0;
                }
                "rollback" => {
                    s.percent = 0.0;
                    s.status = Status::RolledBack;
                    s.pid = None;
                }
                _ => s.percent = 0.0,
            }
            if s.status == Status::Running && s.pid.is_none() {
                s.pid = Some(pid);
            }
        };
        if p.why == "abort" {
            // The state is already final (aborted): written directly.
            let _ = self.w.store.update(&mut |s: &mut Option<State>| {
                if let Some(s) = s.as_mut() {
                    record(s);
                }
                Ok(())
            });
            self.reload()?;
        } else {
            self.update(record)?;
        }
        self.point("state-saved")?;
        let targets: Vec<String> = p
            .targets
            .iter()
            .map(|&i| self.w.targets.describe(i))
            .collect();
        let wave = match (p.wave, self.w.plan.waves.len()) {
            (Some(w), n) if n > 1 => format!(", wave {}/{n}", w + 1),
            _ => String::new(),
        };
        self.w.view.say(
            "deliver",
            &format!(
                "delivered {} % ({}{}{wave}) to {}{}",
                p.percent,
                p.why,
                p.step
                    .map(|s| format!(", step {}/{}", s + 1, self.steps()))
                    .unwrap_or_default(),
                targets.join(", "),
                if warnings.is_empty() {
                    String::new()
                } else {
                    format!("; warnings: {}", warnings.join("; "))
                }
            ),
            json!({ "percent": p.percent, "step": p.step, "wave": p.wave, "why": p.why, "targets": targets, "warnings": warnings }),
        );
        Ok(())
    }

    /// After a failed delivery: the targets that already took it get the
    /// lane's previous percent back (what each had been given).
    fn put_back(&mut self, done: &[usize]) {
        for &j in done {
            let before = self.state.delivered.get(j).copied().unwrap_or(0.0);
            let _ = self.w.targets.deliver(j, before, None, &mut || true);
        }
    }

    fn delivery_failed(&mut self, p: &Pending, i: usize, e: &str) -> i32 {
        let reason = format!(
            "delivery of {} % failed at deliver[{i}] ({}): {e}; the previous configuration stays in place",
            p.percent,
            self.w.targets.describe(i)
        );
        // The decision stays pending: `resume` delivers it again.
        if self.state.is_open() {
            let r = reason.clone();
            let _ = self.update(|s| {
                s.status = Status::Paused;
                s.reason = Some(r.clone());
                s.pid = None;
            });
        }
        bad(
            &self.w.view,
            &format!("{reason}; `graylane rollout resume` delivers it again"),
        )
    }

    /// The rollout ended by another command (`abort`): its own delivery of
    /// 0 % is finished here if it did not finish.
    fn ended_elsewhere(&mut self) -> i32 {
        if let Ok(Some(s)) = self.w.store.load() {
            self.state = s;
        }
        if self.state.status == Status::Aborted && self.state.pending.is_some() {
            if let Err(End(code)) = self.complete_pending() {
                return code;
            }
        }
        let code = final_code(self.state.status);
        self.w.view.say(
            "end",
            &match self.state.status {
                Status::Aborted => {
                    "aborted by `graylane rollout abort`: the lane is at 0 %".to_string()
                }
                s => format!("the rollout already ended: {}", s.as_str()),
            },
            json!({ "outcome": self.state.status, "exit": code }),
        );
        self.finish_rollout();
        code
    }

    fn interrupt(&mut self) -> End {
        let _ = self.update(|s| {
            s.status = Status::Interrupted;
            s.reason = Some("interrupted (Ctrl-C or SIGTERM)".into());
            s.pid = None;
        });
        let plan = self.w.plan.path.display().to_string();
        self.w.view.say(
            "interrupted",
            &format!(
                "interrupted: step {}/{} ({} %) stays in force and the state is saved in {}.\n  go on:     graylane rollout resume {plan}\n  roll back: graylane rollout abort {plan}",
                self.state.step + 1,
                self.steps(),
                self.state.percent,
                self.w.store.describe()
            ),
            json!({ "step": self.state.step, "percent": self.state.percent, "exit": EXIT_PAUSED }),
        );
        self.w.view.finish();
        End(EXIT_PAUSED)
    }

    /// Waits until `until` (clock seconds), keeping the live view, signals
    /// and what other commands wrote in hand.
    fn wait(&mut self, until: f64, start: Option<&Snapshot>) -> Result<Waited, End> {
        let mut last_live = self.w.clock.now();
        loop {
            if self.w.stop.load(Ordering::SeqCst) {
                return Err(self.interrupt());
            }
            self.reload()?;
            if !self.state.is_open() {
                return Err(End(self.ended_elsewhere()));
            }
            if self.state.promote_requested == Some(self.state.step) {
                return Ok(Waited::Released);
            }
            let now = self.w.clock.now();
            if now >= until {
                return Ok(Waited::Done);
            }
            if matches!(self.w.view, Events::Human(Some(_))) && now - last_live >= 1.0 {
                last_live = now;
                let wave = self.state.wave;
                let live = match (start, self.w.metrics.get(wave).map(|m| m.snapshot())) {
                    (Some(s0), Some(Ok(s1))) => {
                        let d = metrics::delta(s0, &s1);
                        format!(
                            " · lane {} req {} 5xx · base {} req {} 5xx",
                            d.lane.requests, d.lane.errors, d.base.requests, d.base.errors
                        )
                    }
                    (_, Some(Err(e))) => format!(" · metrics source failing: {e}"),
                    _ => String::new(),
                };
                self.w.view.progress(&format!(
                    "step {}/{} · {} % · window {} · {:.0} s left{live}",
                    self.state.step + 1,
                    self.steps(),
                    self.state.percent,
                    self.state.step_windows() + 1,
                    until - now
                ));
            }
            self.w
                .clock
                .sleep(POLL.min(Duration::from_secs_f64((until - now).max(0.0))));
        }
    }

    /// One window: counters at both ends, the checks, the verdict, and the
    /// decision, recorded (with its pending delivery) in one write.
    fn window(&mut self) -> Result<(), End> {
        let wave = self.state.wave;
        let interval = self.w.plan.interval;
        let t0 = self.w.clock.now();
        let start = match self.w.metrics.get(wave) {
            Some(m) => m.snapshot(),
            None => Err(format!("no metrics source for wave {wave}")),
        };
        let until = t0 + interval.as_secs_f64();
        if let Waited::Released = self.wait(until, start.as_ref().ok())? {
            return self.release();
        }
        let end = match self.w.metrics.get(wave) {
            Some(m) => m.snapshot(),
            None => Err(format!("no metrics source for wave {wave}")),
        };
        let t1 = self.w.clock.now();
        let mut notes = Vec::new();
        let d = match (&start, &end) {
            (Ok(s0), Ok(s1)) => metrics::delta(s0, s1),
            (Err(e), _) | (_, Err(e)) => {
                notes.push(format!(
                    "metrics source failed ({e}): counted as insufficient data, not as a failure"
                ));
                metrics::Delta::default()
            }
        };
        for r in &d.resets {
            notes.push(format!("{r}: the window is insufficient data"));
        }
        // The step is the unit of decision: its trusted windows add up.
        let (mut lane, mut base) = self.state.step_totals();
        if notes.is_empty() {
            lane.add(&d.lane);
            base.add(&d.base);
        }
        let criteria = &self.w.plan.criteria;
        let win = Window {
            lane,
            base,
            percent: self.state.percent,
            recorded_base: self.state.recorded_base(criteria.min_requests),
            insufficient: notes.clone(),
        };
        let (_, mut checks) = analysis::judge(&win, criteria);
        for q in &self.w.plan.queries.clone() {
            let values = if notes.is_empty() {
                match self.w.metrics.get(wave).map(|m| m.query(q, interval)) {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => {
                        notes.push(format!("query {} failed ({e}): insufficient data", q.name));
                        Vec::new()
                    }
                    None => Vec::new(),
                }
            } else {
                Vec::new()
            };
            checks.push(analysis::bound_check(
                &q.name,
                &values,
                q.max,
                q.min,
                d.lane.requests,
                self.w.plan.criteria.min_requests,
            ));
        }
        let verdict = analysis::combine(&checks);
        let record = WindowRecord {
            step: self.state.step,
            percent: self.state.percent,
            wave,
            start: t0,
            end: t1,
            lane: numbers(&d.lane),
            base: numbers(&d.base),
            admitted: d.admitted,
            decided: d.decided,
            verdict,
            action: Action::Extend,
            checks,
            notes,
        };
        self.point("window-measured")?;
        let gate = self.w.plan.gate();
        let manual = self
            .w
            .plan
            .steps
            .get(self.state.step)
            .is_some_and(|s| s.pause);
        let last_wave = wave + 1 >= self.w.plan.waves.len();
        let mut decided = Action::Extend;
        let mut r = record;
        let rollback = self.rollback_pending("rollback");
        let plan_steps = self.steps();
        let waves = self.w.plan.waves.clone();
        let steps = self.w.plan.steps.clone();
        let deadline = self.w.plan.deadline.as_secs_f64();
        self.update(|s| {
            s.windows.push(r.clone());
            let mut verdicts = s.step_verdicts();
            if verdicts.is_empty() {
                verdicts.push(r.verdict);
            }
            let action = analysis::gate_from(&verdicts, s.deadline_from, &gate);
            decided = action;
            r.action = action;
            if let Some(last) = s.windows.last_mut() {
                last.action = action;
            }
            match action {
                Action::Extend => {}
                Action::Rollback => s.pending = Some(rollback.clone()),
                Action::Pause => {
                    s.status = Status::Paused;
                    s.reason = Some(format!(
                        "deadline: step {} could not be judged within {deadline} s (insufficient data)",
                        s.step + 1
                    ));
                    s.pid = None;
                }
                Action::Advance if manual && last_wave => {
                    s.status = Status::Paused;
                    s.reason = Some(format!(
                        "manual step: {} % passed its analysis and waits for promote",
                        s.percent
                    ));
                    s.pid = None;
                }
                Action::Advance => advance(s, &waves, &steps, plan_steps),
            }
        })?;
        let point = match decided {
            Action::Advance => "decided-advance",
            Action::Extend => "decided-extend",
            Action::Rollback => "decided-rollback",
            Action::Pause => "decided-pause",
        };
        self.w.view.window(&r, plan_steps);
        self.point(point)
    }

    /// `promote` released the step in force: the same as a passed step.
    fn release(&mut self) -> Result<(), End> {
        let step = self.state.step;
        let waves = self.w.plan.waves.clone();
        let steps = self.w.plan.steps.clone();
        let n = self.steps();
        self.update(|s| {
            if s.promote_requested == Some(s.step) {
                s.promote_requested = None;
                advance(s, &waves, &steps, n);
            }
        })?;
        self.w.view.say(
            "promote",
            &format!(
                "step {} ({} %) released by `graylane rollout promote`",
                step + 1,
                self.w
                    .plan
                    .steps
                    .get(step)
                    .map(|s| s.percent)
                    .unwrap_or(0.0)
            ),
            json!({ "step": step }),
        );
        self.point("released")
    }

    fn drive(&mut self) -> i32 {
        let code = match self.drive_steps() {
            Ok(code) | Err(End(code)) => code,
        };
        self.w.view.finish();
        code
    }

    fn drive_steps(&mut self) -> Result<i32, End> {
        loop {
            if !self.state.is_open() {
                return Ok(self.ended());
            }
            if self.state.pending.is_some() {
                self.complete_pending()?;
                continue;
            }
            match self.state.status {
                Status::Paused => return Ok(self.paused()),
                Status::Interrupted => return Err(self.interrupt()),
                _ => {}
            }
            if self.state.promote_requested == Some(self.state.step) {
                self.release()?;
                continue;
            }
            self.window()?;
        }
    }

    /// The run ends paused (a manual step, a deadline, a changed rule).
    fn paused(&mut self) -> i32 {
        let reason = self.state.reason.clone().unwrap_or_default();
        let plan = self.w.plan.path.display().to_string();
        self.w.view.say(
            "paused",
            &format!(
                "paused at step {}/{} ({} %): {reason}\n  go on:     graylane rollout promote {plan}   (or resume, for a new deadline)\n  roll back: graylane rollout abort {plan}",
                self.state.step + 1,
                self.steps(),
                self.state.percent
            ),
            json!({ "reason": reason, "step": self.state.step, "percent": self.state.percent, "exit": EXIT_PAUSED }),
        );
        self.write_report();
        EXIT_PAUSED
    }

    fn pause(&mut self, reason: String) -> i32 {
        let r = reason.clone();
        if let Err(End(code)) = self.update(|s| {
            s.pending = None;
            s.status = Status::Paused;
            s.reason = Some(r.clone());
            s.pid = None;
        }) {
            return code;
        }
        self.paused()
    }

    /// The rollout is over: promoted, rolled back or aborted.
    fn ended(&mut self) -> i32 {
        let code = final_code(self.state.status);
        let text = match self.state.status {
            Status::Promoted => format!(
                "PROMOTED: lane {} stays at 100 %; its version is ready to become base",
                self.w.plan.lane
            ),
            Status::RolledBack => {
                let failed: Vec<String> = self
                    .state
                    .windows
                    .last()
                    .map(|w| {
                        w.checks
                            .iter()
                            .filter(|c| c.verdict == Verdict::Fail)
                            .map(|c| format!("{}: {}", c.name, c.reason))
                            .collect()
                    })
                    .unwrap_or_default();
                let reason = format!(
                    "the step's evidence past the fail boundary at {} window end(s) in a row at {} %: {}",
                    self.w.plan.failure_threshold,
                    self.state.windows.last().map(|w| w.percent).unwrap_or(0.0),
                    failed.join("; ")
                );
                let r = reason.clone();
                let _ = self.w.store.update(&mut |s: &mut Option<State>| {
                    if let Some(s) = s.as_mut() {
                        if s.reason.is_none() {
                            s.reason = Some(r.clone());
                        }
                    }
                    Ok(())
                });
                let _ = self.reload();
                format!("ROLLED BACK: lane {} is at 0 %. {reason}", self.w.plan.lane)
            }
            _ => "aborted by `graylane rollout abort`: the lane is at 0 %".to_string(),
        };
        let outcome = match self.state.status {
            Status::Promoted => json!("promoted"),
            Status::RolledBack => json!("rolledBack"),
            s => json!(s),
        };
        self.w.view.say(
            "end",
            &text,
            json!({ "outcome": outcome, "reason": self.state.reason, "exit": code }),
        );
        self.finish_rollout();
        code
    }

    /// The report, and the lane's claims on the targets given up.
    fn finish_rollout(&mut self) {
        self.write_report();
        let plan = self.w.plan.path.clone();
        self.w.targets.release(&plan);
    }

    fn write_report(&self) {
        let steps: Vec<f64> = self.w.plan.steps.iter().map(|s| s.percent).collect();
        let text = view::report(&self.state, &steps);
        match self.w.store.write_report(&text) {
            Ok(path) => {
                if matches!(self.w.view, Events::Human(_)) {
                    self.w.view.finish();
                    println!("{text}");
                }
                self.w.view.say(
                    "report",
                    &format!("report: {path}"),
                    json!({ "path": path }),
                );
            }
            Err(e) => self.w.view.say("error", &format!("report: {e}"), json!({})),
        }
    }
}

/// A passed step (or wave): the next delivery becomes pending, or the
/// rollout is promoted after the last.
fn advance(s: &mut State, waves: &[plan::Wave], steps: &[plan::Step], n: usize) {
    let (step, wave) = (s.step, s.wave);
    let targets = |w: usize| waves.get(w).map(|w| w.targets.clone()).unwrap_or_default();
    let percent = |st: usize| steps.get(st).map(|x| x.percent).unwrap_or(100.0);
    s.pending = if wave + 1 < waves.len() {
        Some(Pending {
            percent: percent(step),
            step: Some(step),
            wave: Some(wave + 1),
            why: "step".into(),
            targets: targets(wave + 1),
        })
    } else if step + 1 < n {
        Some(Pending {
            percent: percent(step + 1),
            step: Some(step + 1),
            wave: Some(0),
            why: "step".into(),
            targets: targets(0),
        })
    } else {
        s.status = Status::Promoted;
        s.reason = Some("every step passed".into());
        s.pid = None;
        None
    };
}

fn numbers(s: &Sample) -> Numbers {
    Numbers {
        requests: s.requests,
        errors: s.errors,
        error_pct: (s.requests > 0).then(|| s.errors as f64 * 100.0 / s.requests as f64),
        p99_ms: analysis::histogram_quantile(0.99, &s.latency),
        latency: s.latency.clone(),
    }
}

/// `graylane rollout status PLAN`: exits 0 whatever the rollout's state
/// (the state is in the output); 2 when there is no rollout of PLAN.
pub fn status(path: &Path, json: bool, out: &mut dyn std::io::Write) -> i32 {
    let files = Files::of(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    let state = match files.load() {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = writeln!(
                out,
                "no rollout of {} ({} does not exist)",
                path.display(),
                files.state.display()
            );
            return EXIT_BAD;
        }
        Err(e) => {
            let _ = writeln!(out, "graylane rollout: {e}");
            return EXIT_BAD;
        }
    };
    let driven = files.driven();
    if json {
        let mut v = json!(state);
        if let Some(o) = v.as_object_mut() {
            o.insert("driven".into(), json!(driven));
        }
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(
            out,
            "lane {}: {}{} at step {} ({} %), for {:.0} s; {} window(s), {} in this step; {}",
            state.lane,
            state.status.as_str(),
            state
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            state.step + 1,
            state.percent,
            (state::now() - state.step_started).max(0.0),
            state.windows.len(),
            state.step_windows(),
            if driven {
                "a rollout process is driving it"
            } else {
                "no process is driving it"
            }
        );
        if let Some(p) = &state.pending {
            let _ = writeln!(
                out,
                "  decided, not yet delivered: {} % ({}); `graylane rollout resume` finishes it",
                p.percent, p.why
            );
        }
        if let Some(w) = state.windows.last() {
            for c in &w.checks {
                let _ = writeln!(
                    out,
                    "  last window {}: {:?}: {}",
                    c.name, c.verdict, c.reason
                );
            }
        }
    }
    EXIT_PROMOTED
}

/// `graylane rollout abort PLAN`: the lane goes to 0 % now, on every
/// target; exit 0 once delivered. The decision is recorded first, so a
/// running rollout stops without delivering anything above 0, and a
/// `resume` after a crash here finishes it.
pub fn abort(path: &Path, json: bool) -> i32 {
    let view = Events::new(json);
    let plan = match plan::load(path) {
        Ok(p) => p,
        Err(e) => return bad(&view, &format!("plan {}: {e}", path.display())),
    };
    let start = match delivery::read_config(&plan) {
        Ok(s) => s,
        Err(e) => return bad(&view, &e),
    };
    let files = Files::of(&plan.path);
    let world = World {
        targets: Box::new(FileTargets::new(&plan, start)),
        metrics: Vec::new(),
        store: Box::new(files.clone()),
        clock: Box::new(SystemClock),
        crash: env_crash(),
        stop: interrupted(),
        view,
        plan,
    };
    let code = abort_in(world);
    files.unclaim_if_over();
    code
}

/// [`abort`] in a given world.
pub fn abort_in(world: World<'_>) -> i32 {
    let mut run = Run::new(world);
    let all = run.rollback_pending("abort");
    let store_name = run.w.store.describe();
    let marked = run.w.store.update(&mut |s: &mut Option<State>| {
        let s = s
            .as_mut()
            .ok_or_else(|| format!("no rollout of this plan ({store_name} does not exist)"))?;
        if !s.is_open() {
            return Err(format!(
                "the rollout already ended: {}; nothing changed",
                s.status.as_str()
            ));
        }
        s.status = Status::Aborted;
        s.reason = Some("aborted by `graylane rollout abort`".into());
        s.pending = Some(all.clone());
        Ok(())
    });
    match marked {
        Ok(Some(s)) => run.state = s,
        Ok(None) => return EXIT_BAD,
        Err(e) => return bad(&run.w.view, &e),
    }
    if let Err(End(code)) = run.point("abort-recorded") {
        return code;
    }
    if let Err(End(code)) = run.complete_pending() {
        return code;
    }
    run.w.view.say(
        "end",
        &format!(
            "aborted: lane {} is at 0 % (was step {} of the plan)",
            run.state.lane,
            run.state.step + 1
        ),
        json!({ "outcome": "aborted", "exit": EXIT_PROMOTED }),
    );
    run.finish_rollout();
    run.w.view.finish();
    EXIT_PROMOTED
}

/// `graylane rollout promote PLAN`: releases the step in force. A running
/// rollout takes it within a second (exit 0); a stopped one goes on in
/// this process.
pub fn promote(path: &Path, json: bool) -> i32 {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let files = Files::of(&abs);
    let asked = files.update(&mut |s: &mut Option<State>| {
        let s = s.as_mut().ok_or_else(|| {
            format!(
                "no rollout of this plan ({} does not exist)",
                files.state.display()
            )
        })?;
        if !s.is_open() {
            return Err(format!("the rollout already ended: {}", s.status.as_str()));
        }
        s.promote_requested = Some(s.step);
        Ok(())
    });
    let view = Events::new(json);
    match asked {
        Err(e) => bad(&view, &e),
        Ok(None) => EXIT_BAD,
        Ok(Some(s)) if files.driven() => {
            view.say(
                "promote",
                &format!(
                    "step {} ({} %) released; the running rollout moves on",
                    s.step + 1,
                    s.percent
                ),
                json!({ "step": s.step }),
            );
            EXIT_PROMOTED
        }
        Ok(Some(_)) => {
            drop(view);
            resume(path, json)
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
