//! Delivery (docs/rollout.md "Staged rollout", "Several rollouts, one gateway"):
//! what a target holds now, with only the lane's split `percent` changed,
//! checked by the filter's own parser and analysis, applied, and written
//! by atomic rename, under a lock per target file. Rollouts of different
//! lanes on one target therefore compose, and so do hand edits.

use super::plan::{Plan, Target, TargetKind};
use crate::config::{de, Config};
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The plugin configuration as the rollout delivers it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub percent: f64,
    /// The plugin configuration, `lane`'s percent set.
    pub config: Value,
    /// Its JSON text, as the filter reads it.
    pub json: String,
    /// The filter's warnings for it (a lane at 0 % is one).
    pub warnings: Vec<String>,
}

/// The plan's plugin configuration file, read once: what a target that
/// holds no plugin configuration yet is given.
#[derive(Debug, Clone)]
pub struct StartConfig {
    pub value: Value,
}

/// The names of a plugin configuration's lanes.
pub fn lane_names(config: &Value) -> Vec<String> {
    config
        .get("lanes")
        .and_then(Value::as_array)
        .map(|lanes| {
            lanes
                .iter()
                .filter_map(|l| l.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The rule of `lane` in a plugin configuration, or why it cannot be
/// rolled out: it must have a split with `percent`.
fn lane_rule_mut<'v>(config: &'v mut Value, lane: &str) -> Result<&'v mut Value, String> {
    let names = lane_names(config);
    let lanes = config
        .get_mut("lanes")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| format!("the config has no lanes, so no lane \"{lane}\""))?;
    let Some(index) = names.iter().position(|n| n == lane) else {
        return Err(format!(
            "\"{lane}\" is not a lane of the config (its lanes: {})",
            names.join(", ")
        ));
    };
    let rule = lanes
        .get_mut(index)
        .ok_or_else(|| format!("lanes[{index}] vanished"))?;
    match rule.get("split") {
        Some(s) if s.get("percent").is_some() => Ok(rule),
        Some(_) => Err(format!(
            "lanes[{index}] (\"{lane}\") splits by buckets; the rollout grows a `percent` split"
        )),
        None => Err(format!(
            "lanes[{index}] (\"{lane}\") has no split; give it \"split\": {{\"percent\": 0}} (keyed or random) so the rollout can grow it"
        )),
    }
}

/// The lane's rule without its split's `percent`: what nobody but the
/// rollout may change while it runs (match, key, salt, priority, ...).
pub fn lane_rule(config: &Value, lane: &str) -> Result<Value, String> {
    let mut copy = config.clone();
    let rule = lane_rule_mut(&mut copy, lane)?;
    if let Some(split) = rule.get_mut("split").and_then(Value::as_object_mut) {
        split.remove("percent");
    }
    Ok(rule.clone())
}

/// The lane's split percent in a plugin configuration.
pub fn lane_percent(config: &Value, lane: &str) -> Option<f64> {
    let mut copy = config.clone();
    let rule = lane_rule_mut(&mut copy, lane).ok()?;
    rule.pointer("/split/percent").and_then(Value::as_f64)
}

/// What differs between two lane rules, for the pause message.
pub fn rule_change(before: &Value, now: &Value) -> String {
    let (Some(b), Some(n)) = (before.as_object(), now.as_object()) else {
        return format!("{before} became {now}");
    };
    let mut keys: Vec<&String> = b.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| b.get(*k) != n.get(*k))
        .map(|k| {
            format!(
                "{k}: {} -> {}",
                b.get(k).map_or("(none)".into(), Value::to_string),
                n.get(k).map_or("(none)".into(), Value::to_string)
            )
        })
        .collect();
    changed.join("; ")
}

/// Reads the plugin configuration (JSON, or the same in YAML) and finds
/// `lane`'s rule, which must have a split with `percent`.
pub fn read_config(plan: &Plan) -> Result<StartConfig, String> {
    let text = std::fs::read(&plan.config)
        .map_err(|e| format!("config: cannot read {}: {e}", plan.config.display()))?;
    let value = match de::documents(&text)
        .map_err(|e| format!("config: {e}"))?
        .as_mut_slice()
    {
        [one] => one.take(),
        docs => return Err(format!("config: {} documents; give one", docs.len())),
    };
    // The whole configuration must already be one the filter accepts.
    let json = serde_json::to_string(&value).map_err(|e| e.to_string())?;
    Config::from_json(json.as_bytes())
        .map_err(|e| format!("config ({}): {e}", plan.config.display()))?;
    lane_rule(&value, &plan.lane).map_err(|e| format!("lane: {e}"))?;
    Ok(StartConfig { value })
}

/// `config` with the lane at `percent`, checked as the filter checks it
/// when it is configured.
pub fn compose(config: &Value, lane: &str, percent: f64) -> Result<Rendered, String> {
    let mut config = config.clone();
    let rule = lane_rule_mut(&mut config, lane)?;
    let split = rule
        .get_mut("split")
        .and_then(Value::as_object_mut)
        .ok_or("the lane's split is not an object")?;
    let rounded = (percent * 100.0).round() / 100.0;
    let number = if rounded.fract() == 0.0 {
        Value::from(rounded as u64)
    } else {
        Value::from(rounded)
    };
    split.insert("percent".into(), number);
    let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
    let checked = Config::from_json(json.as_bytes())
        .map_err(|e| format!("the configuration at {rounded} % is refused: {e}"))?;
    Ok(Rendered {
        percent: rounded,
        config,
        warnings: checked.warnings.iter().map(ToString::to_string).collect(),
        json,
    })
}

fn write_documents(docs: &[Value], json: bool) -> Result<String, String> {
    if json {
        let one = match docs {
            [one] => one,
            _ => return Err("a JSON file holds one document".into()),
        };
        return serde_json::to_string_pretty(one)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(d).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The ECDS resource's plugin configuration value.
fn ecds_value(doc: &mut Value) -> Result<&mut Value, String> {
    let resources = doc
        .get_mut("resources")
        .and_then(Value::as_array_mut)
        .ok_or(
        "no `resources` list (an ECDS file is a discovery response with one TypedExtensionConfig)",
    )?;
    if resources.len() != 1 {
        return Err(format!(
            "{} resources; Envoy reads one per file",
            resources.len()
        ));
    }
    resources
        .get_mut(0)
        .and_then(|r| r.pointer_mut("/typed_config/config/configuration/value"))
        .filter(|v| v.is_string())
        .ok_or_else(|| {
            "no typed_config.config.configuration.value string (a Wasm filter with a google.protobuf.StringValue configuration)".into()
        })
}

fn matches_meta(doc: &Value, kind: &str, name: Option<&str>, namespace: Option<&str>) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some(kind)
        && name.is_none_or(|n| doc.pointer("/metadata/name").and_then(Value::as_str) == Some(n))
        && namespace.is_none_or(|n| {
            doc.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                == n
        })
}

/// The one document of `kind` the target names.
fn manifest<'d>(docs: &'d mut [Value], t: &Target, kind: &str) -> Result<&'d mut Value, String> {
    let (name, ns) = (t.name.as_deref(), t.namespace.as_deref());
    let count = docs
        .iter()
        .filter(|d| matches_meta(d, kind, name, ns))
        .count();
    match count {
        1 => docs
            .iter_mut()
            .find(|d| matches_meta(d, kind, name, ns))
            .ok_or_else(|| "vanished".into()),
        0 => Err(format!(
            "no {kind}{} in the file",
            name.map(|n| format!(" named {n}")).unwrap_or_default()
        )),
        n => Err(format!(
            "{n} {kind}s match; set name (and namespace) to choose one"
        )),
    }
}

/// Where the plugin configuration sits in a target's document.
fn config_slot<'d>(t: &Target, docs: &'d mut [Value]) -> Result<&'d mut Value, String> {
    match t.kind {
        TargetKind::Ecds => {
            let doc = docs.first_mut().ok_or("empty file")?;
            ecds_value(doc)
        }
        TargetKind::WasmPlugin => {
            let doc = manifest(docs, t, "WasmPlugin")?;
            let spec = doc
                .get_mut("spec")
                .and_then(Value::as_object_mut)
                .ok_or("the WasmPlugin has no spec")?;
            Ok(spec.entry("pluginConfig").or_insert(Value::Null))
        }
        TargetKind::EnvoyExtensionPolicy => {
            let doc = manifest(docs, t, "EnvoyExtensionPolicy")?;
            let wasm = doc
                .pointer_mut("/spec/wasm")
                .and_then(Value::as_array_mut)
                .ok_or("the policy has no spec.wasm list")?;
            let want = t.wasm.as_deref();
            let hits: Vec<usize> = wasm
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    want.is_none_or(|n| w.get("name").and_then(Value::as_str) == Some(n))
                })
                .map(|(i, _)| i)
                .collect();
            let entry = match hits.as_slice() {
                [i] => wasm.get_mut(*i).and_then(Value::as_object_mut),
                [] => return Err(format!("no spec.wasm entry named {}", want.unwrap_or("?"))),
                _ => {
                    return Err(
                        "several spec.wasm entries; set `wasm` to the graylane entry's name".into(),
                    )
                }
            }
            .ok_or("a spec.wasm entry is not an object")?;
            Ok(entry.entry("config").or_insert(Value::Null))
        }
    }
}

/// The plugin configuration a target's text holds; `None` when it holds
/// none yet (an empty ECDS value, a manifest without one).
pub fn held_config(t: &Target, text: &str) -> Result<Option<Value>, String> {
    let fail = |e: String| format!("{}: {e}", t.path.display());
    let mut docs = de::documents(text.as_bytes()).map_err(fail)?;
    let slot = config_slot(t, &mut docs).map_err(fail)?;
    match slot {
        Value::Null => Ok(None),
        Value::String(json) if json.trim().is_empty() => Ok(None),
        Value::String(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| fail(format!("the plugin configuration is not JSON: {e}"))),
        Value::Object(o) if o.is_empty() => Ok(None),
        other => Ok(Some(other.clone())),
    }
}

/// A target's text with `rendered` in place of its plugin configuration.
pub fn render_target(t: &Target, text: &str, rendered: &Rendered) -> Result<String, String> {
    let fail = |e: String| format!("{}: {e}", t.path.display());
    let mut docs = de::documents(text.as_bytes()).map_err(fail)?;
    let slot = config_slot(t, &mut docs).map_err(fail)?;
    *slot = match t.kind {
        TargetKind::Ecds => Value::String(rendered.json.clone()),
        _ => rendered.config.clone(),
    };
    write_documents(&docs, de::is_json(text.as_bytes())).map_err(fail)
}

/// Writes `text` to `path` by atomic rename of a complete file beside it,
/// then syncs the directory, so the rename itself survives a power loss.
pub fn atomic_write(path: &Path, text: &str) -> Result<(), String> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.graylane-{}.new", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?
        .sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// A file beside `path` named `.{name}.{what}`.
fn beside(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.parent()
        .unwrap_or_else(|| Path::new("."))
        .join(format!(".{name}.{what}"))
}

/// Holds the target file's lock (`.NAME.graylane.lock` beside it) while
/// `f` runs: every read-change-write of the target by any rollout happens
/// inside.
pub fn with_target_lock<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, String> {
    let lock = beside(path, "graylane.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| format!("{}: {e}", lock.display()))?;
    file.lock()
        .map_err(|e| format!("{}: {e}", lock.display()))?;
    let out = f();
    let _ = file.unlock();
    Ok(out)
}

/// Runs the target's `apply` command with `text` on stdin; killed after
/// its timeout.
fn apply(t: &Target, text: &str) -> Result<(), String> {
    let Some((program, args)) = t.apply.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("apply {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("apply {program}: {e}"))?;
    }
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if t0.elapsed() >= t.apply_timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "apply `{}` did not finish within {} s and was killed",
                    t.apply.join(" "),
                    t.apply_timeout.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("apply {program}: {e}")),
        }
    };
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "apply `{}` failed ({status}): {}",
            t.apply.join(" "),
            stderr.trim()
        ))
    }
}

/// Why a target did not take a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetError {
    /// Someone changed the lane's own rule in the target (what changed):
    /// the admitted population is no longer the measured one.
    RuleChanged(String),
    /// The rollout was stopped meanwhile (an `abort` seen under the lock):
    /// nothing was written.
    Stopped,
    /// Reading, checking, applying or writing failed.
    Failed(String),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::RuleChanged(what) => write!(f, "the lane's rule was changed: {what}"),
            TargetError::Stopped => write!(f, "stopped by abort"),
            TargetError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// The delivery targets: each one's read-change-write of the lane's
/// percent. The driver reaches them only through this (native tests give
/// it targets in memory).
pub trait Targets {
    /// How many targets (the plan's `deliver`).
    fn count(&self) -> usize;
    /// "ecds filter.yaml", for messages.
    fn describe(&self, i: usize) -> String;
    /// The lane's rule (without its percent) and percent in what target
    /// `i` holds now, or in the plan's configuration if it holds none
    /// (what a first delivery will keep).
    fn rule(&self, i: usize) -> Result<(Value, f64), String>;
    /// Under the target's lock: reads what target `i` holds, checks the
    /// lane's rule is still `rule` (unless `None`: a rollback goes through
    /// whatever the rule), sets the lane's percent, checks the result with
    /// the filter's parser, asks `go` (an `abort` seen there stops it),
    /// applies and writes it.
    fn deliver(
        &self,
        i: usize,
        percent: f64,
        rule: Option<&Value>,
        go: &mut dyn FnMut() -> bool,
    ) -> Result<Rendered, TargetError>;
    /// Claims the lane on every target for the plan at `plan`: `Err` names
    /// the other plan whose rollout of the lane is not over (`active`
    /// says whether a plan's rollout is).
    fn claim(&self, plan: &Path, active: &dyn Fn(&Path) -> bool) -> Result<(), String>;
    /// Gives the claims up (the rollout ended).
    fn release(&self, plan: &Path);
}

/// The plan's target files.
pub struct FileTargets {
    pub targets: Vec<Target>,
    pub lane: String,
    pub start: StartConfig,
}

impl FileTargets {
    pub fn new(plan: &Plan, start: StartConfig) -> FileTargets {
        FileTargets {
            targets: plan.deliver.clone(),
            lane: plan.lane.clone(),
            start,
        }
    }

    fn target(&self, i: usize) -> Result<&Target, String> {
        self.targets
            .get(i)
            .ok_or_else(|| format!("no deliver[{i}]"))
    }

    /// What target `i` holds, or the plan's configuration.
    fn current(&self, t: &Target) -> Result<(String, Value), String> {
        let text = std::fs::read_to_string(&t.path)
            .map_err(|e| format!("cannot read {}: {e}", t.path.display()))?;
        let config = held_config(t, &text)?.unwrap_or_else(|| self.start.value.clone());
        Ok((text, config))
    }

    fn claim_file(&self, t: &Target) -> PathBuf {
        beside(&t.path, &format!("graylane-lane-{}.rollout", self.lane))
    }
}

impl Targets for FileTargets {
    fn count(&self) -> usize {
        self.targets.len()
    }

    fn describe(&self, i: usize) -> String {
        self.targets
            .get(i)
            .map(|t| format!("{} {}", t.kind.as_str(), t.path.display()))
            .unwrap_or_default()
    }

    fn rule(&self, i: usize) -> Result<(Value, f64), String> {
        let t = self.target(i)?;
        let (_, config) = self.current(t)?;
        let rule = lane_rule(&config, &self.lane)
            .map_err(|e| format!("deliver[{i}] ({}): {e}", t.path.display()))?;
        Ok((rule, lane_percent(&config, &self.lane).unwrap_or(0.0)))
    }

    fn deliver(
        &self,
        i: usize,
        percent: f64,
        rule: Option<&Value>,
        go: &mut dyn FnMut() -> bool,
    ) -> Result<Rendered, TargetError> {
        let t = self.target(i).map_err(TargetError::Failed)?;
        with_target_lock(&t.path, || {
            let (text, config) = self.current(t).map_err(TargetError::Failed)?;
            if let Some(rule) = rule {
                let now = lane_rule(&config, &self.lane).map_err(TargetError::Failed)?;
                if &now != rule {
                    return Err(TargetError::RuleChanged(format!(
                        "{}: {}",
                        t.path.display(),
                        rule_change(rule, &now)
                    )));
                }
            }
            let rendered = compose(&config, &self.lane, percent).map_err(TargetError::Failed)?;
            let out = render_target(t, &text, &rendered).map_err(TargetError::Failed)?;
            if !go() {
                return Err(TargetError::Stopped);
            }
            apply(t, &out)
                .and_then(|()| atomic_write(&t.path, &out))
                .map_err(TargetError::Failed)?;
            Ok(rendered)
        })
        .map_err(TargetError::Failed)?
    }

    fn claim(&self, plan: &Path, active: &dyn Fn(&Path) -> bool) -> Result<(), String> {
        for t in &self.targets {
            let file = self.claim_file(t);
            with_target_lock(&t.path, || -> Result<(), String> {
                if let Ok(other) = std::fs::read_to_string(&file) {
                    let other = PathBuf::from(other.trim());
                    if other != plan && active(&other) {
                        return Err(format!(
                            "lane {} is already rolling out on {} (plan {}); finish or abort that rollout first",
                            self.lane,
                            t.path.display(),
                            other.display()
                        ));
                    }
                }
                atomic_write(&file, &plan.display().to_string())
            })??;
        }
        Ok(())
    }

    fn release(&self, plan: &Path) {
        for t in &self.targets {
            let file = self.claim_file(t);
            let _ = with_target_lock(&t.path, || {
                if std::fs::read_to_string(&file).is_ok_and(|p| Path::new(p.trim()) == plan) {
                    let _ = std::fs::remove_file(&file);
                }
            });
        }
    }
}

/// Checks every target can take the lane at every percent of the plan,
/// without writing: what each holds (or the plan's configuration) with
/// the lane's percent set.
pub fn check_targets(plan: &Plan, start: &StartConfig) -> Result<(), String> {
    let targets = FileTargets::new(plan, start.clone());
    for (i, t) in plan.deliver.iter().enumerate() {
        let (text, config) = targets
            .current(t)
            .map_err(|e| format!("deliver[{i}]: {e}"))?;
        for percent in plan.steps.iter().map(|s| s.percent).chain([0.0]) {
            let rendered = compose(&config, &plan.lane, percent)
                .map_err(|e| format!("deliver[{i}] ({}): {e}", t.path.display()))?;
            render_target(t, &text, &rendered).map_err(|e| format!("deliver[{i}]: {e}"))?;
        }
    }
    Ok(())
}
