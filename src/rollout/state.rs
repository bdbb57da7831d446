//! The state file beside the plan (docs/rollout.md "Staged rollout", "What resume
//! guarantees"): the single source of truth of a rollout. The step in
//! force, every window's verdict, every delivery, and the decision being
//! carried out (`pending`), recorded before it is acted on. Every change is
//! a read-modify-write under the plan's lock file ([`Store::update`]), so
//! a running rollout, `abort` and `promote` never write over each other.

use super::analysis::{Action, Check, Histogram, Sample, Verdict};
use super::delivery::atomic_write;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// A rollout process is (or was, until it crashed) driving it.
    Running,
    /// Waiting for `promote`: a manual step, or past a step's deadline.
    Paused,
    /// Stopped by Ctrl-C or SIGTERM; the step in force stays delivered.
    Interrupted,
    Promoted,
    RolledBack,
    Aborted,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Promoted | Status::RolledBack | Status::Aborted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Interrupted => "interrupted",
            Status::Promoted => "promoted",
            Status::RolledBack => "rolled back",
            Status::Aborted => "aborted",
        }
    }
}

/// What one version did in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Numbers {
    pub requests: u64,
    pub errors: u64,
    /// 5xx share in percent (`None`: no requests).
    pub error_pct: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The window's latency buckets: a step adds them up.
    #[serde(default, skip_serializing_if = "Histogram::is_empty")]
    pub latency: Histogram,
}

impl Numbers {
    pub fn sample(&self) -> Sample {
        Sample {
            requests: self.requests,
            errors: self.errors,
            latency: self.latency.clone(),
        }
    }
}

/// One analysis window and what was decided after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowRecord {
    /// Step index (0-based) and its percent.
    pub step: usize,
    pub percent: f64,
    /// The wave judged (index into the plan's waves).
    #[serde(default)]
    pub wave: usize,
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub lane: Numbers,
    pub base: Numbers,
    /// Requests graylane put in the lane, and decided in all.
    pub admitted: u64,
    pub decided: u64,
    pub verdict: Verdict,
    pub action: Action,
    pub checks: Vec<Check>,
    /// Why the data was insufficient beyond the checks' own reasons
    /// (metrics source failing, counter reset).
    pub notes: Vec<String>,
}

/// A delivery: a step entered (on one wave), a rollback, an abort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub at: f64,
    pub step: Option<usize>,
    #[serde(default)]
    pub wave: Option<usize>,
    pub percent: f64,
    pub why: String,
    /// Indices into the plan's `deliver`.
    #[serde(default)]
    pub targets: Vec<usize>,
}

/// A decided delivery not yet recorded as done: written before the first
/// target is touched, cleared once every target has it. `resume` finishes
/// it forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub percent: f64,
    pub step: Option<usize>,
    pub wave: Option<usize>,
    /// "step", "rollback", "abort".
    pub why: String,
    pub targets: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub plan: PathBuf,
    /// The plan's text digest: `resume` refuses a plan changed since.
    pub plan_digest: String,
    pub lane: String,
    pub status: Status,
    /// Why it is paused, rolled back, aborted or interrupted.
    pub reason: Option<String>,
    /// The step in force (index into the plan's steps), its percent, and
    /// the wave it is judged on.
    pub step: usize,
    pub percent: f64,
    #[serde(default)]
    pub wave: usize,
    pub step_started: f64,
    /// Windows of this step (and wave) before which the deadline does not
    /// count (set when a step paused at its deadline is resumed); the run
    /// of failed windows still counts them.
    pub deadline_from: usize,
    /// Set by `promote`: the step it releases (a promote asked at one step
    /// never releases the next).
    pub promote_requested: Option<usize>,
    /// The decision being carried out, if any.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// The lane's rule per target when the rollout began (without its
    /// percent): a change to it by someone else pauses the rollout.
    #[serde(default)]
    pub rules: Vec<serde_json::Value>,
    /// The percent each target has been given, in the plan's order.
    #[serde(default)]
    pub delivered: Vec<f64>,
    /// The process driving it, while one does.
    pub pid: Option<u32>,
    pub started: f64,
    pub updated: f64,
    pub deliveries: Vec<Delivery>,
    pub windows: Vec<WindowRecord>,
}

/// The fields of the state file that another command changes under a
/// running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    pub status: Status,
    pub promote_requested: Option<usize>,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl State {
    /// The verdicts of the step (and wave) in force, in order.
    pub fn step_verdicts(&self) -> Vec<Verdict> {
        self.windows
            .iter()
            .filter(|w| w.step == self.step && w.wave == self.wave)
            .map(|w| w.verdict)
            .collect()
    }

    /// What the step in force (on its wave) has measured so far: every
    /// trusted window's numbers added up (a window with notes, such as a
    /// failing metrics source or a restart, adds nothing).
    pub fn step_totals(&self) -> (Sample, Sample) {
        let (mut lane, mut base) = (Sample::default(), Sample::default());
        for w in self
            .windows
            .iter()
            .filter(|w| w.step == self.step && w.wave == self.wave && w.notes.is_empty())
        {
            lane.add(&w.lane.sample());
            base.add(&w.base.sample());
        }
        (lane, base)
    }

    /// Base as measured over the last earlier step (or wave) where it
    /// served at least `min` requests: what a lane judged alone at 100 %
    /// is compared with.
    pub fn recorded_base(&self, min: u64) -> Option<Sample> {
        let mut groups: Vec<((usize, usize), Sample)> = Vec::new();
        for w in self.windows.iter().filter(|w| w.notes.is_empty()) {
            let at = (w.step, w.wave);
            if at == (self.step, self.wave) {
                continue;
            }
            match groups.last_mut() {
                Some((k, s)) if *k == at => s.add(&w.base.sample()),
                _ => groups.push((at, w.base.sample())),
            }
        }
        groups
            .into_iter()
            .rev()
            .map(|(_, s)| s)
            .find(|s| s.requests >= min)
    }

    pub fn step_windows(&self) -> usize {
        self.windows
            .iter()
            .filter(|w| w.step == self.step && w.wave == self.wave)
            .count()
    }

    /// Whether the state may still change (not promoted, rolled back or
    /// aborted).
    pub fn is_open(&self) -> bool {
        !self.status.is_final()
    }
}

/// Where the state lives. The driver reaches it only through this (native
/// tests keep it in memory).
pub trait Store {
    /// The state now (`None`: no rollout of this plan yet).
    fn load(&self) -> Result<Option<State>, String>;
    /// Under the lock: reads the state, lets `f` change it (`f` sees what
    /// other commands wrote), writes it; the state written. `f` may refuse
    /// (then nothing is written).
    fn update(
        &self,
        f: &mut dyn FnMut(&mut Option<State>) -> Result<(), String>,
    ) -> Result<Option<State>, String>;
    /// Writes the Markdown report; its path.
    fn write_report(&self, text: &str) -> Result<String, String>;
    /// The state file, for messages.
    fn describe(&self) -> String;
}

impl Store for Files {
    fn load(&self) -> Result<Option<State>, String> {
        self.read()
    }

    fn update(
        &self,
        f: &mut dyn FnMut(&mut Option<State>) -> Result<(), String>,
    ) -> Result<Option<State>, String> {
        self.locked(|| {
            let mut state = self.read::<State>()?;
            f(&mut state)?;
            if let Some(s) = state.as_mut() {
                self.save(s)?;
            }
            Ok(state)
        })?
    }

    fn write_report(&self, text: &str) -> Result<String, String> {
        atomic_write(&self.report, text)?;
        Ok(self.report.display().to_string())
    }

    fn describe(&self) -> String {
        self.state.display().to_string()
    }
}

/// The files of one plan's rollout, beside the plan.
#[derive(Debug, Clone)]
pub struct Files {
    pub state: PathBuf,
    pub lock: PathBuf,
    pub run: PathBuf,
    pub report: PathBuf,
}

impl Files {
    pub fn of(plan: &Path) -> Files {
        let name = plan
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rollout".into());
        let dir = plan.parent().unwrap_or_else(|| Path::new("."));
        Files {
            state: dir.join(format!("{name}.state.json")),
            lock: dir.join(format!(".{name}.lock")),
            run: dir.join(format!(".{name}.run")),
            report: dir.join(format!("{name}.report.md")),
        }
    }

    pub fn load(&self) -> Result<Option<State>, String> {
        self.read()
    }

    /// What `abort` and `promote` leave for a running rollout, read
    /// without the windows (the driver polls it several times a second).
    pub fn control(&self) -> Result<Option<Control>, String> {
        self.read()
    }

    fn read<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, String> {
        match std::fs::read(&self.state) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", self.state.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.state.display())),
        }
    }

    pub fn save(&self, state: &mut State) -> Result<(), String> {
        state.updated = now();
        let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
        atomic_write(&self.state, &(text + "\n"))
    }

    /// Holds the plan's lock while `f` runs (reads, deliveries, writes of
    /// the state happen inside).
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T, String> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| format!("{}: {e}", self.lock.display()))?;
        file.lock()
            .map_err(|e| format!("{}: {e}", self.lock.display()))?;
        let out = f();
        let _ = file.unlock();
        Ok(out)
    }

    /// Marks this process as the one driving the rollout, for as long as
    /// the returned file is open; `Err` names the PID already driving it.
    pub fn claim(&self) -> Result<File, String> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.run)
            .map_err(|e| format!("{}: {e}", self.run.display()))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = std::io::Write::write_all(
                    &mut &file,
                    std::process::id().to_string().as_bytes(),
                );
                Ok(file)
            }
            Err(_) => {
                let pid = std::fs::read_to_string(&self.run).unwrap_or_default();
                Err(format!(
                    "a rollout of this plan is already running (pid {})",
                    pid.trim()
                ))
            }
        }
    }

    /// Removes the claim file once the rollout is over (nothing is left
    /// beside the plan but its state and report).
    pub fn unclaim_if_over(&self) {
        if self
            .read::<State>()
            .ok()
            .flatten()
            .is_some_and(|s| !s.is_open())
            && !self.driven()
        {
            let _ = std::fs::remove_file(&self.run);
        }
    }

    /// Whether a process holds the rollout (without taking it).
    pub fn driven(&self) -> bool {
        let Ok(file) = File::options().read(true).write(true).open(&self.run) else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }
}

/// A digest of the plan's text.
pub fn digest(text: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text, 0))
}
