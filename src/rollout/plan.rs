//! The rollout plan (docs/rollout.md "Staged rollout", "The plan"): YAML or JSON,
//! parsed with serde and `deny_unknown_fields` through the same
//! path-tracking reader as the plugin configuration, then checked into a
//! [`Plan`] whose every field has its default resolved.

use super::analysis::{Criteria, Gate};
use crate::config::{de, ConfigError, ErrorKind};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The plan as written (`graylane rollout PLAN`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPlan {
    /// The plugin configuration file (JSON, or the same in YAML), relative to
    /// the plan. The rollout delivers copies of it in which only `lane`'s
    /// split `percent` differs.
    pub config: String,
    /// The lane to roll out: a lane of `config` whose rule has a `split`
    /// with `percent` (keyed or random).
    pub lane: String,
    /// Where each configuration goes, all written whole at every change.
    pub deliver: Vec<RawTarget>,
    /// Strictly increasing percents ending at 100; a step may be
    /// `{percent: 25, pause: true}` (wait for `graylane rollout promote`).
    pub steps: Vec<RawStep>,
    /// One analysis window ("60s", "2s", "1m30s"). Default 60s.
    #[serde(default)]
    pub interval: Option<String>,
    /// How the lane is compared with base.
    #[serde(default)]
    pub analysis: Option<RawAnalysis>,
    /// No check decides a step before the lane served this many requests in
    /// it (latency: before both histograms hold this many); a query check
    /// judges only windows where the lane served this many. Default 100.
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Window ends in a row at which the step's evidence is past the fail
    /// boundary before rollback. Default 2.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// How long a step may go without a verdict before the rollout pauses
    /// ("10m"). Default 10 x interval.
    #[serde(default)]
    pub deadline: Option<String>,
    /// The targets in groups (indices into `deliver`), each step delivered
    /// to one wave, judged on it, then delivered to the next. Default: one
    /// wave of every target.
    #[serde(default)]
    pub waves: Option<Vec<RawWave>>,
}

/// One wave of targets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawWave {
    /// Indices into `deliver`: each target is in exactly one wave.
    pub targets: Vec<usize>,
    /// Where this wave's counters come from (its gateways' admin
    /// endpoints, or a Prometheus); default `analysis.source`.
    #[serde(default)]
    pub source: Option<RawSource>,
}

/// One delivery target: exactly one of `ecds`, `wasmPlugin`,
/// `envoyExtensionPolicy`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTarget {
    /// An existing Envoy ECDS resource file (one `TypedExtensionConfig`, as
    /// in `envoy/ecds/filter.yaml`): only the plugin configuration's value
    /// changes.
    #[serde(default)]
    pub ecds: Option<String>,
    /// An existing file holding the Istio `WasmPlugin` manifest: only
    /// `spec.pluginConfig` changes.
    #[serde(default)]
    pub wasm_plugin: Option<String>,
    /// An existing file holding the Envoy Gateway `EnvoyExtensionPolicy`:
    /// only the graylane entry's `config` changes.
    #[serde(default)]
    pub envoy_extension_policy: Option<String>,
    /// The manifest's `metadata.name` (default: the only one of its kind in
    /// the file).
    #[serde(default)]
    pub name: Option<String>,
    /// The manifest's `metadata.namespace` (default: any).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `envoyExtensionPolicy`: the `spec.wasm[].name` to change (default:
    /// the only entry).
    #[serde(default)]
    pub wasm: Option<String>,
    /// A command run with the manifest on stdin after each write
    /// (`["kubectl", "apply", "-f", "-"]`); a non-zero exit stops the rollout.
    #[serde(default)]
    pub apply: Option<Vec<String>>,
    /// How long `apply` may run before it is killed and the delivery fails
    /// ("60s", the default).
    #[serde(default)]
    pub apply_timeout: Option<String>,
}

/// A step: a percent, or a percent with a manual pause.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawStep {
    Percent(f64),
    Step(RawPausedStep),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPausedStep {
    pub percent: f64,
    /// Wait for `graylane rollout promote` before this step's analysis.
    #[serde(default)]
    pub pause: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAnalysis {
    /// Where counters come from. Default `{envoy: ["http://127.0.0.1:9901"]}`.
    #[serde(default)]
    pub source: Option<RawSource>,
    /// How the lane's and base's upstream clusters are found. Default: the
    /// dashboard's convention (`<service>-<lane>`, `<service>-base`, Istio
    /// `outbound|<port>|<lane>|<host>`).
    #[serde(default)]
    pub clusters: Option<RawClusters>,
    #[serde(default)]
    pub error_rate: Option<RawErrorRate>,
    #[serde(default)]
    pub latency: Option<RawLatency>,
    /// Extra checks (Prometheus source only): a PromQL query whose value
    /// must stay within `max` / `min`.
    #[serde(default)]
    pub queries: Vec<RawQuery>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Envoy admin base URLs, read directly (`/stats/prometheus`) and summed.
    #[serde(default)]
    pub envoy: Option<Vec<String>>,
    /// A Prometheus base URL, read through its HTTP API.
    #[serde(default)]
    pub prometheus: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClusters {
    /// The lane's upstream cluster names.
    pub lane: Vec<String>,
    /// Base's upstream cluster names.
    pub base: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawErrorRate {
    /// Percentage points the lane's 5xx share may exceed base's. Default 1.
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Confidence of a rollback: the chance that the rollout rolls back a
    /// version as good as base, over all its steps, is at most 1 − this.
    /// Default 0.99.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Confidence of a step's pass: a version worse than base by more than
    /// `tolerance` passes a step with a chance of at most 1 − this.
    /// Default 0.9.
    #[serde(default, rename = "passConfidence")]
    pub pass_confidence: Option<f64>,
    /// A fixed highest 5xx share in percent, checked as well when set.
    /// Unset, 1 % applies only to a lane judged alone when the rollout
    /// never saw base.
    #[serde(default)]
    pub max: Option<f64>,
    /// Design effect for requests that are not independent (a user who
    /// hits a bug retries): counts are divided by it before the bounds are
    /// taken. Default 1.
    #[serde(default)]
    pub inflation: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLatency {
    /// Highest lane p99 / base p99. Default 1.5.
    #[serde(default)]
    pub p99_max_ratio: Option<f64>,
    /// Highest lane p99 in ms (also applies when the lane is judged alone).
    #[serde(default)]
    pub p99_max_ms: Option<f64>,
    /// A ratio failure also needs the lane's p99 to exceed base's by more
    /// than this many ms: below it, a difference is bucket interpolation
    /// (Envoy's buckets are 0.5, 1, 5, 10, 25, 50, ... ms) and scheduling
    /// noise on a small sample. Default 25.
    #[serde(default)]
    pub min_diff_ms: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub name: String,
    /// PromQL; `$lane` is replaced by the lane's name and `$interval` by the
    /// window ("30s").
    pub query: String,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
}

/// A checked plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file (absolute).
    pub path: PathBuf,
    /// The plugin configuration file (absolute).
    pub config: PathBuf,
    pub lane: String,
    pub deliver: Vec<Target>,
    pub steps: Vec<Step>,
    pub interval: Duration,
    pub deadline: Duration,
    pub source: MetricsSource,
    pub clusters: Clusters,
    pub criteria: Criteria,
    pub failure_threshold: u32,
    pub queries: Vec<Query>,
    /// At least one; every target in exactly one.
    pub waves: Vec<Wave>,
}

impl Plan {
    /// The gating rule of every step.
    pub fn gate(&self) -> Gate {
        let windows = self.deadline.as_secs_f64() / self.interval.as_secs_f64().max(0.001);
        Gate {
            failure_threshold: self.failure_threshold,
            deadline_windows: (windows.ceil() as u32).max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub percent: f64,
    pub pause: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    Ecds,
    WasmPlugin,
    EnvoyExtensionPolicy,
}

impl TargetKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetKind::Ecds => "ecds",
            TargetKind::WasmPlugin => "wasmPlugin",
            TargetKind::EnvoyExtensionPolicy => "envoyExtensionPolicy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    pub path: PathBuf,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub wasm: Option<String>,
    pub apply: Vec<String>,
    pub apply_timeout: Duration,
}

/// A wave: targets delivered and judged together.
#[derive(Debug, Clone)]
pub struct Wave {
    /// Indices into [`Plan::deliver`].
    pub targets: Vec<usize>,
    pub source: MetricsSource,
}

#[derive(Debug, Clone)]
pub enum MetricsSource {
    Envoy(Vec<String>),
    Prometheus(String),
}

#[derive(Debug, Clone)]
pub enum Clusters {
    /// `<service>-<lane>` / `<service>-base` and Istio's
    /// `outbound|<port>|<lane>|<host>`.
    Convention,
    Named {
        lane: Vec<String>,
        base: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Query {
    pub name: String,
    pub query: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

/// The default analysis window.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How long an `apply` command may run by default.
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The default Envoy admin endpoint.
pub const DEFAULT_ENVOY_ADMIN: &str = "http://127.0.0.1:9901";

/// Reads and checks the plan at `path`.
pub fn load(path: &Path) -> Result<Plan, ConfigError> {
    let text = std::fs::read(path).map_err(|e| ConfigError {
        path: String::new(),
        kind: ErrorKind::Plan,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let raw = parse(&text)?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    check(&raw, &base, abs)
}

/// Parses YAML or JSON into a [`RawPlan`]; errors carry the JSON path.
pub fn parse(text: &[u8]) -> Result<RawPlan, ConfigError> {
    let json = de::json_of_yaml_or_json(text)?;
    de::from_slice::<RawPlan>(&json).map_err(|mut e| {
        if e.message.contains("did not match any variant") {
            e.message = "expected a percent (a number) or {percent: N, pause: true}".into();
        }
        e
    })
}

fn error<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        kind: ErrorKind::Plan,
        message: message.into(),
    })
}

/// "60s", "2s", "1m30s", "500ms".
fn duration(path: &str, text: &str) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d >= Duration::from_millis(100) => Ok(d),
        Ok(_) => error(path, format!("\"{text}\" is too short; at least 100ms")),
        Err(e) => error(
            path,
            format!("\"{text}\" is not a duration ({e}); write e.g. \"60s\", \"2s\", \"5m\""),
        ),
    }
}

fn check_steps(raw: &[RawStep]) -> Result<Vec<Step>, ConfigError> {
    if raw.is_empty() {
        return error("steps", "no steps; list increasing percents ending at 100");
    }
    let mut steps = Vec::with_capacity(raw.len());
    let mut previous: Option<f64> = None;
    for (i, s) in raw.iter().enumerate() {
        let (percent, pause, path) = match s {
            RawStep::Percent(p) => (*p, false, format!("steps[{i}]")),
            RawStep::Step(s) => (s.percent, s.pause, format!("steps[{i}].percent")),
        };
        if !(percent > 0.0 && percent <= 100.0) {
            return error(path, format!("{percent} is not a percent in (0, 100]"));
        }
        if ((percent * 100.0).round() - percent * 100.0).abs() > 1e-6 {
            return error(path, format!("{percent}: percents go in steps of 0.01"));
        }
        if let Some(p) = previous {
            if percent <= p {
                return error(
                    path,
                    format!("{percent} after {p}: steps must be strictly increasing"),
                );
            }
        }
        previous = Some(percent);
        steps.push(Step { percent, pause });
    }
    if previous != Some(100.0) {
        return error(
            format!("steps[{}]", raw.len() - 1),
            "the last step must be 100",
        );
    }
    Ok(steps)
}

fn check_target(i: usize, t: &RawTarget, base: &Path) -> Result<Target, ConfigError> {
    let path = format!("deliver[{i}]");
    let (kind, file) = match (&t.ecds, &t.wasm_plugin, &t.envoy_extension_policy) {
        (Some(f), None, None) => (TargetKind::Ecds, f),
        (None, Some(f), None) => (TargetKind::WasmPlugin, f),
        (None, None, Some(f)) => (TargetKind::EnvoyExtensionPolicy, f),
        _ => {
            return error(
                path,
                "give exactly one of ecds, wasmPlugin, envoyExtensionPolicy",
            )
        }
    };
    if kind == TargetKind::Ecds {
        for (field, set) in [
            ("name", t.name.is_some()),
            ("namespace", t.namespace.is_some()),
            ("wasm", t.wasm.is_some()),
            ("apply", t.apply.is_some()),
            ("applyTimeout", t.apply_timeout.is_some()),
        ] {
            if set {
                return error(
                    format!("{path}.{field}"),
                    "only for wasmPlugin and envoyExtensionPolicy targets",
                );
            }
        }
    }
    if kind == TargetKind::WasmPlugin && t.wasm.is_some() {
        return error(
            format!("{path}.wasm"),
            "only for envoyExtensionPolicy targets",
        );
    }
    if let Some(apply) = &t.apply {
        if apply.is_empty() {
            return error(
                format!("{path}.apply"),
                "an empty command; give the program and its arguments, e.g. [kubectl, apply, -f, -]",
            );
        }
    }
    let apply_timeout = match (&t.apply_timeout, &t.apply) {
        (None, _) => DEFAULT_APPLY_TIMEOUT,
        (Some(_), None) => {
            return error(
                format!("{path}.applyTimeout"),
                "only with apply (the command it limits)",
            )
        }
        (Some(s), Some(_)) => duration(&format!("{path}.applyTimeout"), s)?,
    };
    let key = kind.as_str();
    let file_path = base.join(file);
    if !file_path.is_file() {
        return error(
            format!("{path}.{key}"),
            format!(
                "{} does not exist; the target must be an existing file (the rollout changes only the plugin configuration in it)",
                file_path.display()
            ),
        );
    }
    Ok(Target {
        kind,
        path: std::path::absolute(&file_path).unwrap_or(file_path),
        name: t.name.clone(),
        namespace: t.namespace.clone(),
        wasm: t.wasm.clone(),
        apply: t.apply.clone().unwrap_or_default(),
        apply_timeout,
    })
}

/// The waves: as written (every target in exactly one), or one of all.
fn check_waves(
    raw: Option<&[RawWave]>,
    targets: usize,
    source: &MetricsSource,
) -> Result<Vec<Wave>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![Wave {
            targets: (0..targets).collect(),
            source: source.clone(),
        }]);
    };
    if raw.is_empty() {
        return error(
            "waves",
            "no wave; leave waves out for one wave of every target",
        );
    }
    let mut seen = vec![false; targets];
    let mut waves = Vec::new();
    for (w, wave) in raw.iter().enumerate() {
        if wave.targets.is_empty() {
            return error(
                format!("waves[{w}].targets"),
                "no target; list indices into deliver",
            );
        }
        for (j, &t) in wave.targets.iter().enumerate() {
            match seen.get_mut(t) {
                None => {
                    return error(
                        format!("waves[{w}].targets[{j}]"),
                        format!(
                            "{t}: deliver has targets 0 to {}",
                            targets.saturating_sub(1)
                        ),
                    )
                }
                Some(true) => {
                    return error(
                        format!("waves[{w}].targets[{j}]"),
                        format!("deliver[{t}] is already in a wave; each target is in exactly one"),
                    )
                }
                Some(s) => *s = true,
            }
        }
        let source = match &wave.source {
            None => source.clone(),
            Some(raw) => check_source(Some(raw)).map_err(|mut e| {
                e.path = e
                    .path
                    .replacen("analysis.source", &format!("waves[{w}].source"), 1);
                e
            })?,
        };
        waves.push(Wave {
            targets: wave.targets.clone(),
            source,
        });
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return error(
            "waves",
            format!("deliver[{missing}] is in no wave; each target is in exactly one"),
        );
    }
    Ok(waves)
}

fn check_source(raw: Option<&RawSource>) -> Result<MetricsSource, ConfigError> {
    let Some(raw) = raw else {
        return Ok(MetricsSource::Envoy(vec![DEFAULT_ENVOY_ADMIN.to_string()]));
    };
    let url_ok = |u: &str| u.starts_with("http://");
    match (&raw.envoy, &raw.prometheus) {
        (Some(urls), None) => {
            if urls.is_empty() {
                return error("analysis.source.envoy", "no admin URL; list at least one");
            }
            for (i, u) in urls.iter().enumerate() {
                if !url_ok(u) {
                    return error(
                        format!("analysis.source.envoy[{i}]"),
                        format!("\"{u}\": expected an http:// URL of an Envoy admin endpoint"),
                    );
                }
            }
            Ok(MetricsSource::Envoy(urls.clone()))
        }
        (None, Some(u)) if url_ok(u) => Ok(MetricsSource::Prometheus(u.clone())),
        (None, Some(u)) => error(
            "analysis.source.prometheus",
            format!("\"{u}\": expected an http:// URL of Prometheus"),
        ),
        _ => error("analysis.source", "give exactly one of envoy, prometheus"),
    }
}

fn check_number(path: &str, v: f64, min: f64, max: f64, what: &str) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= min && v <= max {
        Ok(v)
    } else {
        error(path, format!("{v} is out of range; {what}"))
    }
}

fn check_criteria(raw: Option<&RawAnalysis>, min_requests: u64) -> Result<Criteria, ConfigError> {
    let mut c = Criteria {
        min_requests,
        ..Criteria::default()
    };
    let Some(raw) = raw else { return Ok(c) };
    if let Some(e) = &raw.error_rate {
        if let Some(t) = e.tolerance {
            c.error_tolerance_pp = check_number(
                "analysis.errorRate.tolerance",
                t,
                0.0,
                100.0,
                "percentage points, 0 to 100",
            )?;
        }
        if let Some(v) = e.confidence {
            c.error_confidence = check_number(
                "analysis.errorRate.confidence",
                v,
                0.5,
                0.999_999,
                "a probability from 0.5 to 0.999999",
            )?;
        }
        if let Some(v) = e.pass_confidence {
            c.pass_confidence = check_number(
                "analysis.errorRate.passConfidence",
                v,
                0.5,
                0.999_999,
                "a probability from 0.5 to 0.999999",
            )?;
        }
        if let Some(m) = e.max {
            c.error_max_pct = Some(check_number(
                "analysis.errorRate.max",
                m,
                0.0,
                100.0,
                "a percent, 0 to 100",
            )?);
        }
        if let Some(k) = e.inflation {
            c.inflation = check_number(
                "analysis.errorRate.inflation",
                k,
                1.0,
                1000.0,
                "a design effect from 1 (independent requests) to 1000",
            )?;
        }
    }
    if let Some(l) = &raw.latency {
        if let Some(r) = l.p99_max_ratio {
            c.p99_max_ratio = Some(check_number(
                "analysis.latency.p99MaxRatio",
                r,
                1.0,
                1e6,
                "a ratio of at least 1",
            )?);
        }
        if let Some(m) = l.p99_max_ms {
            c.p99_max_ms = Some(check_number(
                "analysis.latency.p99MaxMs",
                m,
                0.0,
                1e9,
                "milliseconds, at least 0",
            )?);
        }
        if let Some(d) = l.min_diff_ms {
            c.p99_min_diff_ms = check_number(
                "analysis.latency.minDiffMs",
                d,
                0.0,
                1e9,
                "milliseconds, at least 0",
            )?;
        }
    }
    Ok(c)
}

fn check_queries(
    raw: Option<&RawAnalysis>,
    source: &MetricsSource,
) -> Result<Vec<Query>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, q) in raw.queries.iter().enumerate() {
        let path = format!("analysis.queries[{i}]");
        if !matches!(source, MetricsSource::Prometheus(_)) {
            return error(
                path,
                "queries run in Prometheus; set analysis.source to {prometheus: URL}",
            );
        }
        if q.max.is_none() && q.min.is_none() {
            return error(path, "give max, min or both");
        }
        if q.name.trim().is_empty() || out.iter().any(|o: &Query| o.name == q.name) {
            return error(format!("{path}.name"), "a unique, non-empty name");
        }
        out.push(Query {
            name: q.name.clone(),
            query: q.query.clone(),
            max: q.max,
            min: q.min,
        });
    }
    Ok(out)
}

fn check(raw: &RawPlan, base: &Path, path: PathBuf) -> Result<Plan, ConfigError> {
    let config = base.join(&raw.config);
    if !config.is_file() {
        return error(
            "config",
            format!("{} does not exist or is not a file", config.display()),
        );
    }
    if raw.deliver.is_empty() {
        return error(
            "deliver",
            "no target; give at least one, e.g. {ecds: filter.yaml}",
        );
    }
    let deliver = raw
        .deliver
        .iter()
        .enumerate()
        .map(|(i, t)| check_target(i, t, base))
        .collect::<Result<Vec<_>, _>>()?;
    let steps = check_steps(&raw.steps)?;
    let interval = match &raw.interval {
        Some(s) => duration("interval", s)?,
        None => DEFAULT_INTERVAL,
    };
    let deadline = match &raw.deadline {
        Some(s) => duration("deadline", s)?,
        None => interval * 10,
    };
    if deadline < interval {
        return error(
            "deadline",
            "shorter than one interval; a step lasts at least one window",
        );
    }
    let failure_threshold = raw.failure_threshold.unwrap_or(2);
    if failure_threshold == 0 {
        return error("failureThreshold", "0; at least 1 failed window");
    }
    let min_requests = raw.min_requests.unwrap_or(100);
    if min_requests == 0 {
        return error(
            "minRequests",
            "0; a window needs at least 1 request to judge",
        );
    }
    let analysis = raw.analysis.as_ref();
    let source = check_source(analysis.and_then(|a| a.source.as_ref()))?;
    let clusters = match analysis.and_then(|a| a.clusters.as_ref()) {
        None => Clusters::Convention,
        Some(c) if c.lane.is_empty() || c.base.is_empty() => {
            return error(
                "analysis.clusters",
                "name at least one lane and one base cluster",
            )
        }
        Some(c) => Clusters::Named {
            lane: c.lane.clone(),
            base: c.base.clone(),
        },
    };
    let mut criteria = check_criteria(analysis, min_requests)?;
    let queries = check_queries(analysis, &source)?;
    let waves = check_waves(raw.waves.as_deref(), deliver.len(), &source)?;
    // Every step is judged once per wave: the rollback's error is spread
    // over them all.
    criteria.looks = steps.len() * waves.len().max(1);
    Ok(Plan {
        path,
        config: std::path::absolute(&config).unwrap_or(config),
        lane: raw.lane.clone(),
        deliver,
        steps,
        interval,
        deadline,
        source,
        clusters,
        criteria,
        failure_threshold,
        queries,
        waves,
    })
}

/// The JSON Schema of the plan (`graylane rollout schema`; committed as
/// `envoy/rollout.schema.json`).
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(RawPlan).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> ConfigError {
        parse(text.as_bytes()).expect_err("must be rejected")
    }

    #[test]
    fn unknown_field_names_its_path() {
        let e = parse_err(
            "config: c.json\nlane: gray\ndeliver: [{ecds: f.yaml}]\nsteps: [5, 100]\nanalysis: {errorRat: {}}\n",
        );
        assert_eq!(e.path, "analysis.errorRat", "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn yaml_and_json_read_alike() {
        let y = parse(b"config: c.json\nlane: gray\ndeliver: [{ecds: f.yaml}]\nsteps: [5, {percent: 50, pause: true}, 100]\ninterval: 2s\n").expect("yaml");
        let j = parse(br#"{"config":"c.json","lane":"gray","deliver":[{"ecds":"f.yaml"}],"steps":[5,{"percent":50,"pause":true},100],"interval":"2s"}"#).expect("json");
        assert_eq!(format!("{y:?}"), format!("{j:?}"));
    }

    #[test]
    fn steps_are_checked() {
        let cases: &[(&str, &str)] = &[
            ("[5, 5, 100]", "steps[1]"),
            ("[50, 25, 100]", "steps[1]"),
            ("[5, 50]", "steps[1]"),
            ("[0, 100]", "steps[0]"),
            ("[5, 101]", "steps[1]"),
            ("[5.001, 100]", "steps[0]"),
            ("[]", "steps"),
            ("[5, {percent: 200}, 100]", "steps[1].percent"),
        ];
        for (steps, path) in cases {
            let raw: Vec<RawStep> = serde_norway::from_str(steps).expect("steps");
            let e = check_steps(&raw).expect_err(steps);
            assert_eq!(e.path, *path, "{steps}: {e}");
        }
        let raw: Vec<RawStep> =
            serde_norway::from_str("[1, {percent: 25, pause: true}, 100]").expect("steps");
        let ok = check_steps(&raw).expect("valid");
        assert_eq!(ok.len(), 3);
        assert!(ok[1].pause && !ok[0].pause);
    }

    #[test]
    fn a_bad_step_shape_says_what_is_expected() {
        let e = parse_err(
            "config: c\nlane: l\ndeliver: []\nsteps: [5, {percent: 50, paws: true}, 100]\n",
        );
        assert!(e.message.contains("percent"), "{e}");
        assert!(e.path.starts_with("steps[1]"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("i", "2s").ok(), Some(Duration::from_secs(2)));
        assert_eq!(duration("i", "1m30s").ok(), Some(Duration::from_secs(90)));
        assert!(duration("i", "ten").is_err());
        assert!(duration("i", "10ms").is_err());
    }
}
