//! The driver (README "Staged rollout"): the state machine that delivers a
//! step, judges its windows, and advances, extends, pauses or rolls back;
//! and the commands that act on a running or stopped rollout (`status`,
//! `promote`, `abort`, `resume`).

use super::analysis::{self, Action, Sample, Verdict, Window};
use super::delivery::{self, Rendered, Source};
use super::metrics::{self, Reader, Snapshot};
use super::plan::{self, Plan};
use super::state::{self, Delivery, Files, Numbers, State, Status, WindowRecord};
use super::view::{self, View};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status: the version is promoted (ready to become base).
pub const EXIT_PROMOTED: i32 = 0;
/// Exit status: rolled back (by analysis or `abort`).
pub const EXIT_ROLLED_BACK: i32 = 1;
/// Exit status: bad plan, configuration or delivery.
pub const EXIT_BAD: i32 = 2;
/// Exit status: paused (a manual step, past a deadline) or interrupted.
pub const EXIT_PAUSED: i32 = 3;

/// How often the driver looks at the clock, the state file and signals.
const POLL: Duration = Duration::from_millis(100);

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

/// Everything a running rollout holds.
struct Run {
    plan: Plan,
    files: Files,
    source: Source,
    reader: Reader,
    view: View,
    state: State,
    /// The configuration in force (for putting it back if a delivery fails).
    in_force: Option<Rendered>,
    stop: Arc<AtomicBool>,
}

/// A failure that ends the run with an exit status.
struct End(i32);

fn bad(view: &View, message: &str) -> i32 {
    view.say(
        "error",
        &format!("graylane rollout: {message}"),
        json!({ "exit": EXIT_BAD }),
    );
    view.finish();
    EXIT_BAD
}

/// Loads the plan and everything it names; `Err` is the message for exit 2.
fn prepare(path: &Path) -> Result<(Plan, Source, Reader, String), String> {
    let plan = plan::load(path).map_err(|e| format!("plan {}: {e}", path.display()))?;
    let source = delivery::read_config(&plan)?;
    // Every configuration the rollout may deliver is checked now.
    for percent in plan.steps.iter().map(|s| s.percent).chain([0.0]) {
        let r = source.render(percent)?;
        delivery::check_targets(&plan, &r)?;
    }
    let reader = Reader::new(&plan);
    reader
        .snapshot()
        .map_err(|e| format!("analysis.source: {} is unreachable: {e}", reader.describe()))?;
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    Ok((plan, source, reader, state::digest(&text)))
}

/// What `start` and `resume` open before they drive: the checked plan,
/// its configuration and metrics, and the claim on the rollout (held
/// while the returned file is open).
struct Opened {
    plan: Plan,
    source: Source,
    reader: Reader,
    digest: String,
    files: Files,
    claim: std::fs::File,
}

fn open(path: &Path, view: &View) -> Result<Opened, i32> {
    let (plan, source, reader, digest) = prepare(path).map_err(|e| bad(view, &e))?;
    let files = Files::of(&plan.path);
    let claim = files.claim().map_err(|e| bad(view, &e))?;
    Ok(Opened {
        plan,
        source,
        reader,
        digest,
        files,
        claim,
    })
}

/// `graylane rollout PLAN`.
pub fn start(path: &Path, json: bool) -> i32 {
    let view = View::new(json);
    let opened = match open(path, &view) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Opened {
        plan,
        source,
        reader,
        digest,
        files,
        claim,
    } = opened;
    match files.load() {
        Ok(Some(s)) if !s.status.is_final() => {
            return bad(
                &view,
                &format!(
                    "a rollout of this plan is {} at step {} ({} %); use `graylane rollout resume`, `promote` or `abort` ({})",
                    s.status.as_str(),
                    s.step + 1,
                    s.percent,
                    files.state.display()
                ),
            )
        }
        Err(e) => return bad(&view, &e),
        _ => {}
    }
    let t = state::now();
    let state = State {
        plan: plan.path.clone(),
        plan_digest: digest,
        lane: plan.lane.clone(),
        status: Status::Running,
        reason: None,
        step: 0,
        percent: 0.0,
        step_started: t,
        deadline_from: 0,
        promote_requested: false,
        pid: Some(std::process::id()),
        started: t,
        updated: t,
        deliveries: Vec::new(),
        windows: Vec::new(),
    };
    let mut run = Run {
        plan,
        files,
        source,
        reader,
        view,
        state,
        in_force: None,
        stop: interrupted(),
    };
    run.view.say(
        "start",
        &format!(
            "rollout of lane {} in steps {:?} %, {} s windows, counters from {}",
            run.plan.lane,
            run.plan.steps.iter().map(|s| s.percent).collect::<Vec<_>>(),
            run.plan.interval.as_secs_f64(),
            run.reader.describe()
        ),
        json!({ "lane": run.plan.lane, "steps": run.plan.steps.iter().map(|s| s.percent).collect::<Vec<_>>(), "interval": run.plan.interval.as_secs_f64() }),
    );
    let code = match run.enter_step(0, "step") {
        Ok(()) => run.drive(),
        Err(End(code)) => code,
    };
    drop(claim);
    code
}

/// `graylane rollout resume PLAN` (and `promote` of a stopped rollout).
pub fn resume(path: &Path, json: bool) -> i32 {
    let view = View::new(json);
    let opened = match open(path, &view) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Opened {
        plan,
        source,
        reader,
        digest,
        files,
        claim,
    } = opened;
    let mut state = match files.load() {
        Ok(Some(s)) => s,
        Ok(None) => {
            return bad(
                &view,
                &format!(
                    "no rollout of this plan to resume ({} does not exist)",
                    files.state.display()
                ),
            )
        }
        Err(e) => return bad(&view, &e),
    };
    if state.status.is_final() {
        let code = final_code(state.status);
        view.say(
            "end",
            &format!("the rollout already ended: {}", state.status.as_str()),
            json!({ "outcome": state.status, "exit": code }),
        );
        return code;
    }
    if state.plan_digest != digest {
        return bad(
            &view,
            "the plan changed since this rollout began; abort it, or put the plan back",
        );
    }
    let Some(step) = plan.steps.get(state.step).copied() else {
        return bad(&view, "the state names a step the plan does not have");
    };
    if state.status == Status::Paused && !state.promote_requested {
        if state
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("manual"))
        {
            view.say(
                "paused",
                &format!(
                    "step {} ({} %) waits for `graylane rollout promote {}`",
                    state.step + 1,
                    step.percent,
                    path.display()
                ),
                json!({ "exit": EXIT_PAUSED }),
            );
            view.finish();
            return EXIT_PAUSED;
        }
        // Paused at its deadline: the step gets a new deadline.
        state.deadline_from = state.step_windows();
    }
    state.status = Status::Running;
    state.reason = None;
    state.pid = Some(std::process::id());
    let in_force = source.render(state.percent).ok();
    let mut run = Run {
        plan,
        files,
        source,
        reader,
        view,
        state,
        in_force,
        stop: interrupted(),
    };
    run.view.say(
        "resume",
        &format!(
            "resuming at step {}/{} ({} %), {} window(s) judged so far in this step",
            run.state.step + 1,
            run.plan.steps.len(),
            run.state.percent,
            run.state.step_windows()
        ),
        json!({ "step": run.state.step, "percent": run.state.percent }),
    );
    // The step in force is delivered again, in case the crash came between
    // the state file and the targets.
    let percent = run.state.percent;
    let code = match run.deliver(percent, Some(run.state.step), "resume") {
        Ok(()) => run.drive(),
        Err(End(code)) => code,
    };
    drop(claim);
    code
}

fn final_code(status: Status) -> i32 {
    match status {
        Status::Promoted => EXIT_PROMOTED,
        Status::RolledBack | Status::Aborted => EXIT_ROLLED_BACK,
        _ => EXIT_PAUSED,
    }
}

impl Run {
    /// Writes the state under the lock, after reading what is on disk: an
    /// `abort` saved meanwhile wins (the run ends, nothing is written over
    /// it), and a `promote` asked meanwhile is kept.
    fn save(&mut self) -> Result<(), End> {
        let files = self.files.clone();
        let state = &mut self.state;
        let saved = files.locked(|| -> Result<bool, String> {
            if let Some(on_disk) = files.load()? {
                if on_disk.status == Status::Aborted {
                    return Ok(false);
                }
                state.promote_requested |= on_disk.promote_requested;
            }
            files.save(state)?;
            Ok(true)
        });
        match saved {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(End(self.aborted_elsewhere())),
            Ok(Err(e)) | Err(e) => Err(End(bad(&self.view, &format!("state file: {e}")))),
        }
    }

    /// Delivers `percent` under the lock, unless `abort` came first.
    fn deliver(&mut self, percent: f64, step: Option<usize>, why: &str) -> Result<(), End> {
        let rendered = self
            .source
            .render(percent)
            .map_err(|e| End(bad(&self.view, &e)))?;
        let files = self.files.clone();
        let outcome = files
            .locked(|| -> Result<bool, String> {
                if let Some(on_disk) = files.load()? {
                    if on_disk.status == Status::Aborted {
                        return Ok(false);
                    }
                    if on_disk.promote_requested {
                        self.state.promote_requested = true;
                    }
                }
                delivery::deliver(&self.plan, &rendered, self.in_force.as_ref())?;
                self.state.percent = rendered.percent;
                self.state.deliveries.push(Delivery {
                    at: state::now(),
                    step,
                    percent: rendered.percent,
                    why: why.to_string(),
                });
                files.save(&mut self.state)?;
                Ok(true)
            })
            .and_then(|r| r);
        match outcome {
            Ok(true) => {}
            Ok(false) => return Err(End(self.aborted_elsewhere())),
            Err(e) => {
                return Err(End(bad(
                    &self.view,
                    &format!(
                        "delivery of {} % failed; the previous configuration ({} %) stays in place: {e}",
                        rendered.percent,
                        self.in_force.as_ref().map(|r| r.percent).unwrap_or(0.0)
                    ),
                )))
            }
        }
        let targets: Vec<String> = self
            .plan
            .deliver
            .iter()
            .map(|t| format!("{} {}", t.kind.as_str(), t.path.display()))
            .collect();
        self.view.say(
            "deliver",
            &format!(
                "delivered {} % ({why}{}) to {}{}",
                rendered.percent,
                step.map(|s| format!(", step {}/{}", s + 1, self.plan.steps.len()))
                    .unwrap_or_default(),
                targets.join(", "),
                if rendered.warnings.is_empty() {
                    String::new()
                } else {
                    format!("; warnings: {}", rendered.warnings.join("; "))
                }
            ),
            json!({ "percent": rendered.percent, "step": step, "why": why, "targets": targets, "warnings": rendered.warnings }),
        );
        self.in_force = Some(rendered);
        Ok(())
    }

    fn enter_step(&mut self, step: usize, why: &str) -> Result<(), End> {
        let percent = self
            .plan
            .steps
            .get(step)
            .map(|s| s.percent)
            .unwrap_or(100.0);
        self.state.step = step;
        self.state.step_started = state::now();
        self.state.deadline_from = 0;
        self.state.promote_requested = false;
        self.deliver(percent, Some(step), why)
    }

    fn aborted_elsewhere(&mut self) -> i32 {
        if let Ok(Some(s)) = self.files.load() {
            self.state = s;
        }
        self.view.say(
            "end",
            "aborted by `graylane rollout abort`: the lane is at 0 %",
            json!({ "outcome": "aborted", "exit": EXIT_ROLLED_BACK }),
        );
        self.write_report();
        EXIT_ROLLED_BACK
    }

    /// Reads what `abort` or `promote` asked for.
    fn control(&mut self) -> Result<bool, End> {
        let Ok(Some(on_disk)) = self.files.control() else {
            return Ok(false);
        };
        if on_disk.status == Status::Aborted {
            return Err(End(self.aborted_elsewhere()));
        }
        Ok(on_disk.promote_requested)
    }

    fn interrupt(&mut self) -> End {
        self.state.status = Status::Interrupted;
        self.state.reason = Some("interrupted (Ctrl-C or SIGTERM)".into());
        self.state.pid = None;
        let _ = self.save();
        let plan = self.plan.path.display().to_string();
        self.view.say(
            "interrupted",
            &format!(
                "interrupted: step {}/{} ({} %) stays in force and the state is saved in {}.\n  go on:     graylane rollout resume {plan}\n  roll back: graylane rollout abort {plan}",
                self.state.step + 1,
                self.plan.steps.len(),
                self.state.percent,
                self.files.state.display()
            ),
            json!({ "step": self.state.step, "percent": self.state.percent, "exit": EXIT_PAUSED }),
        );
        self.view.finish();
        End(EXIT_PAUSED)
    }

    /// Waits until `until`, keeping the live view, signals and control
    /// requests in hand. `Ok(true)`: `promote` asked to move on.
    fn wait(&mut self, until: Instant, start: Option<&Snapshot>) -> Result<bool, End> {
        let mut last_live = Instant::now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(self.interrupt());
            }
            if self.control()? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(false);
            }
            if matches!(self.view, View::Human(Some(_)))
                && now.duration_since(last_live) >= Duration::from_secs(1)
            {
                last_live = now;
                let live = match (start, self.reader.snapshot()) {
                    (Some(s0), Ok(s1)) => {
                        let d = metrics::delta(s0, &s1);
                        format!(
                            " · lane {} req {} 5xx · base {} req {} 5xx",
                            d.lane.requests, d.lane.errors, d.base.requests, d.base.errors
                        )
                    }
                    (_, Err(e)) => format!(" · metrics source failing: {e}"),
                    _ => String::new(),
                };
                self.view.progress(&format!(
                    "step {}/{} · {} % · window {} · {:.0} s left{live}",
                    self.state.step + 1,
                    self.plan.steps.len(),
                    self.state.percent,
                    self.state.step_windows() + 1,
                    until.duration_since(now).as_secs_f64()
                ));
            }
            std::thread::sleep(POLL.min(until.duration_since(now)));
        }
    }

    /// One window: counters at both ends, the checks, the verdict.
    fn window(&mut self) -> Result<Option<WindowRecord>, End> {
        let t0 = state::now();
        let start = self.reader.snapshot();
        let until = Instant::now() + self.plan.interval;
        if self.wait(until, start.as_ref().ok())? {
            return Ok(None);
        }
        let end = self.reader.snapshot();
        let t1 = state::now();
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
        let w = Window {
            lane: d.lane.clone(),
            base: d.base.clone(),
            insufficient: notes.clone(),
        };
        let (_, mut checks) = analysis::judge(&w, &self.plan.criteria);
        for q in &self.plan.queries {
            let value = if notes.is_empty() {
                match self.reader.query(q, self.plan.interval) {
                    Ok(v) => v,
                    Err(e) => {
                        notes.push(format!("query {} failed ({e}): insufficient data", q.name));
                        None
                    }
                }
            } else {
                None
            };
            checks.push(analysis::bound_check(&q.name, value, q.max, q.min));
        }
        let verdict = analysis::combine(&checks);
        let mut record = WindowRecord {
            step: self.state.step,
            percent: self.state.percent,
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
        self.state.windows.push(record.clone());
        let action = analysis::gate(&self.state.step_verdicts(), &self.plan.gate());
        record.action = action;
        if let Some(last) = self.state.windows.last_mut() {
            last.action = action;
        }
        self.save()?;
        self.view.window(&record, self.plan.steps.len());
        Ok(Some(record))
    }

    fn drive(&mut self) -> i32 {
        match self.drive_steps() {
            Ok(code) | Err(End(code)) => {
                self.view.finish();
                code
            }
        }
    }

    fn drive_steps(&mut self) -> Result<i32, End> {
        loop {
            let step = self.state.step;
            let Some(current) = self.plan.steps.get(step).copied() else {
                return Ok(EXIT_BAD);
            };
            let promoted_by_hand = if self.state.promote_requested {
                true
            } else {
                match self.window()? {
                    None => true,
                    Some(w) => match w.action {
                        Action::Extend => continue,
                        Action::Rollback => return self.rollback(&w),
                        Action::Pause => {
                            return self.pause(format!(
                            "deadline: step {} could not be judged within {} s (insufficient data)",
                            step + 1,
                            self.plan.deadline.as_secs_f64()
                        ))
                        }
                        Action::Advance if current.pause => {
                            return self.pause(format!(
                                "manual step: {} % passed its analysis and waits for promote",
                                current.percent
                            ))
                        }
                        Action::Advance => false,
                    },
                }
            };
            if promoted_by_hand {
                self.view.say(
                    "promote",
                    &format!(
                        "step {} ({} %) released by `graylane rollout promote`",
                        step + 1,
                        current.percent
                    ),
                    json!({ "step": step }),
                );
                self.state.promote_requested = false;
                let files = self.files.clone();
                let _ = files.locked(|| {
                    if let Ok(Some(mut s)) = files.load() {
                        s.promote_requested = false;
                        let _ = files.save(&mut s);
                    }
                });
            }
            if step + 1 >= self.plan.steps.len() {
                return Ok(self.promoted());
            }
            self.enter_step(step + 1, "step")?;
        }
    }

    fn pause(&mut self, reason: String) -> Result<i32, End> {
        self.state.status = Status::Paused;
        self.state.reason = Some(reason.clone());
        self.state.pid = None;
        self.save()?;
        let plan = self.plan.path.display().to_string();
        self.view.say(
            "paused",
            &format!(
                "paused at step {}/{} ({} %): {reason}\n  go on:     graylane rollout promote {plan}   (or resume, for a new deadline)\n  roll back: graylane rollout abort {plan}",
                self.state.step + 1,
                self.plan.steps.len(),
                self.state.percent
            ),
            json!({ "reason": reason, "step": self.state.step, "percent": self.state.percent, "exit": EXIT_PAUSED }),
        );
        self.write_report();
        Ok(EXIT_PAUSED)
    }

    fn rollback(&mut self, w: &WindowRecord) -> Result<i32, End> {
        let failed: Vec<String> = w
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect();
        let reason = format!(
            "{} failed window(s) in a row at {} %: {}",
            self.plan.failure_threshold,
            self.state.percent,
            failed.join("; ")
        );
        self.deliver(0.0, None, "rollback")?;
        self.state.status = Status::RolledBack;
        self.state.reason = Some(reason.clone());
        self.state.pid = None;
        self.save()?;
        self.view.say(
            "end",
            &format!("ROLLED BACK: lane {} is at 0 %. {reason}", self.plan.lane),
            json!({ "outcome": "rolledBack", "reason": reason, "exit": EXIT_ROLLED_BACK }),
        );
        self.write_report();
        Ok(EXIT_ROLLED_BACK)
    }

    fn promoted(&mut self) -> i32 {
        self.state.status = Status::Promoted;
        self.state.reason = Some("every step passed".into());
        self.state.pid = None;
        if let Err(End(code)) = self.save() {
            return code;
        }
        self.view.say(
            "end",
            &format!(
                "PROMOTED: lane {} stays at 100 %; its version is ready to become base",
                self.plan.lane
            ),
            json!({ "outcome": "promoted", "exit": EXIT_PROMOTED }),
        );
        self.write_report();
        EXIT_PROMOTED
    }

    fn write_report(&self) {
        let steps: Vec<f64> = self.plan.steps.iter().map(|s| s.percent).collect();
        let text = view::report(&self.state, &steps);
        match delivery::atomic_write(&self.files.report, &text) {
            Ok(()) => {
                if matches!(self.view, View::Human(_)) {
                    self.view.finish();
                    println!("{text}");
                }
                self.view.say(
                    "report",
                    &format!("report: {}", self.files.report.display()),
                    json!({ "path": self.files.report }),
                );
            }
            Err(e) => self.view.say("error", &format!("report: {e}"), json!({})),
        }
    }
}

fn numbers(s: &Sample) -> Numbers {
    Numbers {
        requests: s.requests,
        errors: s.errors,
        error_pct: (s.requests > 0).then(|| s.errors as f64 * 100.0 / s.requests as f64),
        p99_ms: analysis::histogram_quantile(0.99, &s.latency),
    }
}

/// `graylane rollout status PLAN`.
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
        let _ =
            writeln!(
            out,
            "lane {}: {}{} at step {} ({} %) since {:.0} s ago; {} window(s), {} in this step; {}",
            state.lane,
            state.status.as_str(),
            state.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
            state.step + 1,
            state.percent,
            (state::now() - state.step_started).max(0.0),
            state.windows.len(),
            state.step_windows(),
            if driven { "a rollout process is driving it" } else { "no process is driving it" }
        );
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
    match state.status {
        Status::Running if driven => EXIT_PROMOTED,
        s => final_code(s),
    }
}

/// `graylane rollout abort PLAN`: the lane goes to 0 % now.
pub fn abort(path: &Path, json: bool) -> i32 {
    let view = View::new(json);
    let plan = match plan::load(path) {
        Ok(p) => p,
        Err(e) => return bad(&view, &format!("plan {}: {e}", path.display())),
    };
    let source = match delivery::read_config(&plan) {
        Ok(s) => s,
        Err(e) => return bad(&view, &e),
    };
    let files = Files::of(&plan.path);
    let result = files
        .locked(|| -> Result<State, String> {
            let mut s = files.load()?.ok_or_else(|| {
                format!(
                    "no rollout of this plan ({} does not exist)",
                    files.state.display()
                )
            })?;
            if s.status.is_final() {
                return Err(format!("the rollout already ended: {}", s.status.as_str()));
            }
            let zero = source.render(0.0)?;
            delivery::deliver(&plan, &zero, None)?;
            s.status = Status::Aborted;
            s.reason = Some("aborted by `graylane rollout abort`".into());
            s.percent = 0.0;
            s.deliveries.push(Delivery {
                at: state::now(),
                step: None,
                percent: 0.0,
                why: "abort".into(),
            });
            files.save(&mut s)?;
            Ok(s)
        })
        .and_then(|r| r);
    match result {
        Ok(s) => {
            view.say(
                "end",
                &format!(
                    "aborted: lane {} is at 0 % (was step {} of the plan)",
                    s.lane,
                    s.step + 1
                ),
                json!({ "outcome": "aborted", "exit": EXIT_ROLLED_BACK }),
            );
            let steps: Vec<f64> = plan.steps.iter().map(|s| s.percent).collect();
            let _ = delivery::atomic_write(&files.report, &view::report(&s, &steps));
            view.finish();
            EXIT_ROLLED_BACK
        }
        Err(e) => bad(&view, &e),
    }
}

/// `graylane rollout promote PLAN`: releases the step in force. A running
/// rollout takes it within a second; a stopped one goes on in this process.
pub fn promote(path: &Path, json: bool) -> i32 {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let files = Files::of(&abs);
    let asked = files
        .locked(|| -> Result<State, String> {
            let mut s = files.load()?.ok_or_else(|| {
                format!(
                    "no rollout of this plan ({} does not exist)",
                    files.state.display()
                )
            })?;
            if s.status.is_final() {
                return Err(format!("the rollout already ended: {}", s.status.as_str()));
            }
            s.promote_requested = true;
            files.save(&mut s)?;
            Ok(s)
        })
        .and_then(|r| r);
    let view = View::new(json);
    match asked {
        Err(e) => bad(&view, &e),
        Ok(s) if files.driven() => {
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
        Ok(_) => {
            drop(view);
            resume(path, json)
        }
    }
}
