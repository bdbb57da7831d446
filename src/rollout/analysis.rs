//! The canary analysis: pure functions from a step's accumulated numbers
//! to verdicts, and from a step's verdicts to what happens next. Nothing
//! here knows of HTTP, files, clocks or plans, so every decision is pinned
//! by a table-driven test. The maths (confidence sequences) is in
//! [`super::sequential`]; what follows is docs/rollout.md "How a step is
//! judged" in code.
//!
//! **The step is the unit of decision.** The counts and histograms of a
//! step's windows are added up, and after each window every check says
//! **fail**, **pass** or **continue** (or **insufficient**, below
//! `minRequests`). The bounds are anytime-valid, so looking after every
//! window costs nothing.
//!
//! The checks (error rate against base plus a tolerance, latency as a
//! share of slow requests, the fixed bounds, judging alone at 100 %) and
//! the gating of a step (a run of failed window ends rolls back, a pass
//! advances, a deadline pauses) are docs/rollout.md "How a step is judged",
//! with their numbers; each function below names the rule it implements.

use super::sequential::{self, Bounds, Evidence};
use serde::{Deserialize, Serialize};

/// The share of slow requests a version as fast as base shows above base's
/// p99.
pub const SLOW_SHARE: f64 = 0.01;

/// Cumulative histogram buckets (deltas already taken by the caller), as
/// Prometheus and Envoy give them: (upper bound `le` in ms, cumulative
/// count), ascending, the last one `f64::INFINITY` (+Inf). May be empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    #[serde(with = "bounds")]
    pub buckets: Vec<(f64, f64)>,
}

/// Bucket bounds in JSON: numbers, and `"+Inf"` for the last (JSON has no
/// infinity).
mod bounds {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Le {
        Finite(f64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(buckets: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let out: Vec<(Le, f64)> = buckets
            .iter()
            .map(|&(le, n)| {
                let le = if le.is_finite() {
                    Le::Finite(le)
                } else {
                    Le::Text(if le > 0.0 { "+Inf" } else { "-Inf" }.to_string())
                };
                (le, n)
            })
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let raw: Vec<(Le, f64)> = Vec::deserialize(d)?;
        raw.into_iter()
            .map(|(le, n)| match le {
                Le::Finite(v) => Ok((v, n)),
                Le::Text(t) if t == "+Inf" => Ok((f64::INFINITY, n)),
                Le::Text(t) if t == "-Inf" => Ok((f64::NEG_INFINITY, n)),
                Le::Text(t) => Err(serde::de::Error::custom(format!("bucket bound {t:?}"))),
            })
            .collect()
    }
}

impl Histogram {
    /// The number of observations: the largest finite cumulative count (the
    /// +Inf bucket's, once counts are made monotonic); 0 when empty.
    pub fn count(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b.1)
            .filter(|c| c.is_finite())
            .fold(0.0, f64::max)
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Bucket by bucket sum (bounds matched exactly; a bound only one side
    /// has is taken as it is).
    pub fn add(&mut self, other: &Histogram) {
        for &(le, count) in &other.buckets {
            match self.buckets.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += count,
                None => self.buckets.push((le, count)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// The finite bounds with the number of observations above each, the
    /// counts made monotonic (as for the quantile).
    fn above(&self) -> (u64, Vec<(f64, u64)>) {
        let mut sorted: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .copied()
            .filter(|b| !b.0.is_nan() && b.1.is_finite())
            .collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = self.count().max(0.0).round() as u64;
        let mut max = 0.0f64;
        let mut out = Vec::with_capacity(sorted.len());
        for (le, count) in sorted {
            max = max.max(count);
            if le.is_finite() {
                let below = (max.round() as u64).min(total);
                out.push((le, total - below));
            }
        }
        (total, out)
    }
}

/// What one version (the lane's or base's upstream clusters) served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub requests: u64,
    /// 5xx answers (more than `requests` is read as `requests`).
    pub errors: u64,
    pub latency: Histogram,
}

impl Sample {
    pub fn add(&mut self, other: &Sample) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.add(&other.latency);
    }
}

/// A step so far: its windows' numbers added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub lane: Sample,
    pub base: Sample,
    /// The lane's percent in force (100: base may be judged from its
    /// recorded numbers).
    pub percent: f64,
    /// Base as measured over the last earlier step that had `minRequests`
    /// of it, for judging the lane alone.
    pub recorded_base: Option<Sample>,
    /// Reasons the caller already knows this window's data cannot be
    /// trusted (the metrics source failed, Envoy restarted): then every
    /// check is insufficient.
    pub insufficient: Vec<String>,
}

/// The thresholds of the error-rate and latency checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// No check decides before the lane served this many requests in the
    /// step (latency: both histograms hold this many). Default 100.
    pub min_requests: u64,
    /// How many percentage points the lane's 5xx share may exceed base's.
    /// Default 1.
    pub error_tolerance_pp: f64,
    /// A rollback's confidence, over the whole rollout. Default 0.99.
    pub error_confidence: f64,
    /// A step's pass confidence. Default 0.9.
    pub pass_confidence: f64,
    /// Steps × waves: the fail side's error is spread over them. Default 1.
    pub looks: usize,
    /// Design effect for requests that are not independent (≥ 1; 1: none).
    pub inflation: f64,
    /// A fixed highest 5xx share in percent (`errorRate.max`); when unset,
    /// 1 % applies only to a lane judged alone that never saw base.
    pub error_max_pct: Option<f64>,
    /// Lane p99 at most this many times base's. Default 1.5.
    pub p99_max_ratio: Option<f64>,
    /// Lane p99 at most this many ms. Default none.
    pub p99_max_ms: Option<f64>,
    /// The ratio's limit is at least base's p99 plus this many ms. Default 25.
    pub p99_min_diff_ms: f64,
}

/// `errorRate.max` when unset and the rollout never saw base.
pub const DEFAULT_ERROR_MAX_PCT: f64 = 1.0;

impl Default for Criteria {
    fn default() -> Criteria {
        Criteria {
            min_requests: 100,
            error_tolerance_pp: 1.0,
            error_confidence: 0.99,
            pass_confidence: 0.9,
            looks: 1,
            inflation: 1.0,
            error_max_pct: None,
            p99_max_ratio: Some(1.5),
            p99_max_ms: None,
            p99_min_diff_ms: 25.0,
        }
    }
}

impl Criteria {
    /// The fail side's α for one step (the rollout's α spread over its
    /// looks) and the pass side's.
    pub fn alphas(&self) -> (f64, f64) {
        let fail = (1.0 - self.error_confidence) / self.looks.max(1) as f64;
        (fail, 1.0 - self.pass_confidence)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// The evidence is not yet on either side of its boundaries.
    Continue,
    Insufficient,
}

/// One check's result with every number behind it (printed to operators,
/// saved in the state file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `errorRate`, `latency`, or a query's name.
    pub name: String,
    pub verdict: Verdict,
    /// The lane's number: 5xx share in percent, p99 in ms, a query's value.
    pub lane_value: Option<f64>,
    /// Base's number, when base was compared with.
    pub base_value: Option<f64>,
    /// Human readable: `lane - base <= 1 pp`, `p99 <= 1.5 x base`.
    pub threshold: String,
    pub lane_requests: u64,
    pub base_requests: u64,
    /// The evidence: lower bound at the fail level and upper bound at the
    /// pass level, in the unit of `boundary` (pp of 5xx difference, % of
    /// slow lane requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// Fail when `lower` is above it, pass when `upper` is at or below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<f64>,
    /// `beta-binomial mixture`.
    pub method: Option<String>,
    /// One sentence: why this verdict, with the numbers.
    pub reason: String,
}

impl Check {
    fn of(name: &str, w: &Window, threshold: String) -> Check {
        Check {
            name: name.to_string(),
            verdict: Verdict::Insufficient,
            lane_value: None,
            base_value: None,
            threshold,
            lane_requests: w.lane.requests,
            base_requests: w.base.requests,
            lower: None,
            upper: None,
            boundary: None,
            method: None,
            reason: String::new(),
        }
    }

    fn with(mut self, verdict: Verdict, reason: String) -> Check {
        self.verdict = verdict;
        self.reason = reason;
        self
    }
}

/// The method's name in reports.
const METHOD: &str = "beta-binomial mixture";

/// The error-rate and latency checks of a step so far, and the step's
/// verdict ([`combine`]).
pub fn judge(window: &Window, criteria: &Criteria) -> (Verdict, Vec<Check>) {
    let checks = vec![error_rate(window, criteria), latency(window, criteria)];
    (combine(&checks), checks)
}

/// Any failure fails; else all passing passes; else continue when a check
/// continues, insufficient otherwise (no check at all is insufficient).
pub fn combine(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if !checks.is_empty() && checks.iter().all(|c| c.verdict == Verdict::Pass) {
        Verdict::Pass
    } else if checks.iter().any(|c| c.verdict == Verdict::Continue) {
        Verdict::Continue
    } else {
        Verdict::Insufficient
    }
}

/// `num / den * 100`, rounded once: a share exactly at a threshold compares
/// equal to it (while the products stay below 2^53).
fn percent(num: u128, den: u128) -> f64 {
    if den == 0 {
        0.0
    } else {
        (num * 100) as f64 / den as f64
    }
}

/// At most 4 significant digits, without trailing zeros: 10.2, 1.042,
/// 0.05, 4.92, 12346.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor();
    let decimals = (3.0 - magnitude).clamp(0.0, 12.0) as usize;
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// A signed number: `+0.8`, `-1.2`.
fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

/// A level in percent: `99.67 %`.
fn level(alpha: f64) -> String {
    format!("{} %", num((1.0 - alpha) * 100.0))
}

fn verdict_of(e: Evidence) -> Verdict {
    match e {
        Evidence::Above => Verdict::Fail,
        Evidence::Within => Verdict::Pass,
        Evidence::Undecided => Verdict::Continue,
    }
}

/// The worse of two evidences: above beats undecided beats within.
fn worse(a: Evidence, b: Evidence) -> Evidence {
    match (a, b) {
        (Evidence::Above, _) | (_, Evidence::Above) => Evidence::Above,
        (Evidence::Undecided, _) | (_, Evidence::Undecided) => Evidence::Undecided,
        _ => Evidence::Within,
    }
}

/// What the lane is compared with.
enum Against<'a> {
    Base(&'a Sample, &'static str),
    Fixed,
}

/// Which base judges the step: live base, recorded base, or none (fixed
/// limits only); `Err` is insufficient data.
fn against<'a>(
    w: &'a Window,
    c: &Criteria,
    n: impl Fn(&Sample) -> u64,
) -> Result<Against<'a>, String> {
    let min = c.min_requests.max(1);
    if n(&w.base) >= min {
        return Ok(Against::Base(&w.base, "base"));
    }
    if w.percent < 100.0 {
        return Err(format!(
            "base has {} in this step, fewer than minRequests {min} (below 100 % base must be \
             measured: are its clusters named as analysis.clusters says?)",
            n(&w.base)
        ));
    }
    match &w.recorded_base {
        Some(r) if n(r) >= min => Ok(Against::Base(r, "base as recorded earlier in this rollout")),
        _ => Ok(Against::Fixed),
    }
}

/// The 5xx check (see the module documentation).
pub fn error_rate(w: &Window, c: &Criteria) -> Check {
    let nl = w.lane.requests;
    let el = w.lane.errors.min(nl);
    let min = c.min_requests.max(1);
    let (fa, pa) = c.alphas();
    let t = c.error_tolerance_pp;
    let check = Check::of("errorRate", w, format!("lane - base <= {} pp", num(t)));
    if !w.insufficient.is_empty() {
        return check.with(Verdict::Insufficient, w.insufficient.join("; "));
    }
    let lane_pct = percent(el.into(), nl.into());
    let mut check = Check {
        lane_value: (nl > 0).then_some(lane_pct),
        method: Some(METHOD.to_string()),
        ..check
    };
    if nl < min {
        let reason = format!(
            "lane served {nl} requests ({el} 5xx) in this step, fewer than minRequests {min}"
        );
        return check.with(Verdict::Insufficient, reason);
    }
    let lane = format!("lane {} % ({el}/{nl})", num(lane_pct));
    let base = match against(w, c, |s| s.requests) {
        Ok(b) => b,
        Err(why) => return check.with(Verdict::Insufficient, why),
    };
    let mut parts = Vec::new();
    let mut evidence = Evidence::Within;
    if let Against::Base(b, what) = base {
        let (nb, eb) = (b.requests, b.errors.min(b.requests));
        let base_pct = percent(eb.into(), nb.into());
        check.base_value = Some(base_pct);
        check.base_requests = nb;
        let fail = sequential::difference((el, nl), (eb, nb), fa, c.inflation);
        let pass = sequential::difference((el, nl), (eb, nb), pa, c.inflation);
        let e = sequential::decide(fail, pass, t / 100.0);
        evidence = worse(evidence, e);
        check.lower = Some(fail.lower * 100.0);
        check.upper = Some(pass.upper * 100.0);
        check.boundary = Some(t);
        parts.push(format!(
            "{lane} vs {what} {} % ({eb}/{nb}): lane - base >= {} pp at {} and <= {} pp at {}, \
             against {} pp: {}",
            num(base_pct),
            signed(fail.lower * 100.0),
            level(fa),
            signed(pass.upper * 100.0),
            level(pa),
            num(t),
            words(e),
        ));
    }
    let fixed = match (&base, c.error_max_pct) {
        (_, Some(m)) => Some(m),
        (Against::Fixed, None) => Some(DEFAULT_ERROR_MAX_PCT),
        _ => None,
    };
    if let Some(m) = fixed {
        let fail = sequential::share(el, nl, fa, c.inflation);
        let pass = sequential::share(el, nl, pa, c.inflation);
        let e = sequential::decide(fail, pass, m / 100.0);
        evidence = worse(evidence, e);
        if check.boundary.is_none() {
            check.lower = Some(fail.lower * 100.0);
            check.upper = Some(pass.upper * 100.0);
            check.boundary = Some(m);
            check.threshold = format!("lane 5xx <= {} %", num(m));
        } else {
            check.threshold = format!("{} and lane 5xx <= {} %", check.threshold, num(m));
        }
        let why = if matches!(base, Against::Fixed) {
            "judged alone (base never seen in this rollout), "
        } else {
            ""
        };
        parts.push(format!(
            "{why}{lane} >= {} % at {} and <= {} % at {}, against errorRate.max {} %: {}",
            num(fail.lower * 100.0),
            level(fa),
            num(pass.upper * 100.0),
            level(pa),
            num(m),
            words(e),
        ));
    }
    check.with(verdict_of(evidence), parts.join("; "))
}

fn words(e: Evidence) -> &'static str {
    match e {
        Evidence::Above => "shown above (fail)",
        Evidence::Within => "shown within (pass)",
        Evidence::Undecided => "not yet shown either way (continue)",
    }
}

/// Lane requests above a bound: the last finite bucket bound ≤ `x`
/// (`upward` false: counts at least the share above x) or the first ≥ `x`
/// (`upward`: counts at most it); `None` when no such bucket exists (then
/// every request, or none, is counted).
fn above_bound(h: &Histogram, x: f64, upward: bool) -> (u64, u64, Option<f64>) {
    let (total, above) = h.above();
    let pick = if upward {
        above.iter().find(|b| b.0 >= x)
    } else {
        above.iter().rev().find(|b| b.0 <= x)
    };
    match pick {
        Some(&(le, n)) => (n, total, Some(le)),
        None if upward => (0, total, None),
        None => (total, total, None),
    }
}

/// Base's p99 bounded from above (`upward`: the first bucket bound with
/// base's share above it shown ≤ 1 % at α) or from below (the last bound
/// with the share above it shown ≥ 1 %, 0 when none).
fn base_p99_bound(h: &Histogram, alpha: f64, inflation: f64, upward: bool) -> Option<f64> {
    let (total, above) = h.above();
    if upward {
        above
            .iter()
            .find(|&&(_, n)| sequential::share(n, total, alpha, inflation).upper <= SLOW_SHARE)
            .map(|b| b.0)
    } else {
        Some(
            above
                .iter()
                .rev()
                .find(|&&(_, n)| sequential::share(n, total, alpha, inflation).lower >= SLOW_SHARE)
                .map_or(0.0, |b| b.0),
        )
    }
}

/// The p99 check (see the module documentation).
pub fn latency(w: &Window, c: &Criteria) -> Check {
    let mut parts = Vec::new();
    if let Some(r) = c.p99_max_ratio {
        parts.push(format!(
            "p99 <= {} x base (and base + {} ms)",
            num(r),
            num(c.p99_min_diff_ms)
        ));
    }
    if let Some(m) = c.p99_max_ms {
        parts.push(format!("p99 <= {} ms", num(m)));
    }
    let threshold = if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" and ")
    };
    let check = Check::of("latency", w, threshold);
    if !w.insufficient.is_empty() {
        return check.with(Verdict::Insufficient, w.insufficient.join("; "));
    }
    if c.p99_max_ratio.is_none() && c.p99_max_ms.is_none() {
        return check.with(Verdict::Pass, "no latency threshold set".to_string());
    }
    let min = c.min_requests.max(1);
    let (fa, pa) = c.alphas();
    let observed = |s: &Sample| s.latency.count().max(0.0).round() as u64;
    let nl = observed(&w.lane);
    let lane_p99 = histogram_quantile(0.99, &w.lane.latency).filter(|v| v.is_finite());
    let mut check = Check {
        lane_value: lane_p99,
        method: Some(METHOD.to_string()),
        ..check
    };
    if w.lane.requests < min || nl < min {
        let reason = format!(
            "lane served {} requests with {nl} latency observations in this step, fewer than \
             minRequests {min} (Envoy updates histograms at each stats flush: keep \
             stats_flush_interval well below the window)",
            w.lane.requests
        );
        return check.with(Verdict::Insufficient, reason);
    }
    let base = match against(w, c, observed) {
        Ok(b) => b,
        Err(why) => return check.with(Verdict::Insufficient, why),
    };
    let lane = format!("lane p99 {} ms ({nl})", lane_p99.map_or("-".into(), num));
    let mut evidence = Evidence::Within;
    let mut reasons = Vec::new();
    // A share of slow lane requests against 1 %, between two thresholds:
    // fail above `fail_at`, pass at or below `pass_at`.
    let mut slow = |name: String, fail_at: Option<f64>, pass_at: f64, check: &mut Check| {
        let (n_fail, total, le_fail) = match fail_at {
            Some(q) => above_bound(&w.lane.latency, q, true),
            None => (0, nl, None),
        };
        let (n_pass, _, le_pass) = above_bound(&w.lane.latency, pass_at, false);
        let fail = sequential::share(n_fail, total, fa / 2.0, c.inflation);
        let pass = sequential::share(n_pass, total, pa / 2.0, c.inflation);
        let e = if le_fail.is_some() {
            sequential::decide(fail, pass, SLOW_SHARE)
        } else {
            sequential::decide(
                Bounds {
                    lower: 0.0,
                    upper: 1.0,
                },
                pass,
                SLOW_SHARE,
            )
        };
        evidence = worse(evidence, e);
        if check.boundary.is_none() {
            check.lower = Some(fail.lower * 100.0);
            check.upper = Some(pass.upper * 100.0);
            check.boundary = Some(SLOW_SHARE * 100.0);
        }
        let fail_text = match le_fail {
            Some(le) => format!(
                "{n_fail} above {} ms: >= {} %",
                num(le),
                num(fail.lower * 100.0)
            ),
            None => "no bucket above the limit".to_string(),
        };
        let pass_text = match le_pass {
            Some(le) => format!(
                "{n_pass} above {} ms: <= {} %",
                num(le),
                num(pass.upper * 100.0)
            ),
            None => format!("all {n_pass}: <= {} %", num(pass.upper * 100.0)),
        };
        reasons.push(format!(
            "{name}: lane share slower ({fail_text}; {pass_text}) against 1 %: {}",
            words(e)
        ));
    };
    match base {
        Against::Base(b, what) => {
            let base_p99 = histogram_quantile(0.99, &b.latency).filter(|v| v.is_finite());
            check.base_value = base_p99;
            check.base_requests = b.requests;
            if let Some(r) = c.p99_max_ratio {
                let limit = |p: f64| (r * p).max(p + c.p99_min_diff_ms);
                let hi = base_p99_bound(&b.latency, fa / 2.0, c.inflation, true);
                let lo = base_p99_bound(&b.latency, pa / 2.0, c.inflation, false).unwrap_or(0.0);
                let name = format!(
                    "{lane} vs {what} p99 {} ms ({}, between {} and {} ms)",
                    base_p99.map_or("-".into(), num),
                    observed(b),
                    num(lo),
                    hi.map_or("?".into(), num)
                );
                slow(name, hi.map(limit), limit(lo), &mut check);
            }
        }
        Against::Fixed if c.p99_max_ms.is_none() => {
            let reason = format!(
                "{lane}, judged alone: base never seen in this rollout and no p99MaxMs set"
            );
            return check.with(Verdict::Pass, reason);
        }
        Against::Fixed => {}
    }
    if let Some(m) = c.p99_max_ms {
        slow(
            format!("{lane} against p99MaxMs {} ms", num(m)),
            Some(m),
            m,
            &mut check,
        );
    }
    check.with(verdict_of(evidence), reasons.join("; "))
}

/// A query's values (every series) in one window: insufficient below
/// `minRequests` lane requests or with no series; each series is held to
/// both `min` and `max`, and +Inf or NaN fails a `max`.
pub fn bound_check(
    name: &str,
    values: &[f64],
    max: Option<f64>,
    min: Option<f64>,
    lane_requests: u64,
    min_requests: u64,
) -> Check {
    let mut bounds = Vec::new();
    if let Some(m) = min {
        bounds.push(format!(">= {}", num(m)));
    }
    if let Some(m) = max {
        bounds.push(format!("<= {}", num(m)));
    }
    let threshold = if bounds.is_empty() {
        "none".to_string()
    } else {
        bounds.join(" and ")
    };
    let worst = values
        .iter()
        .copied()
        .find(|v| v.is_nan())
        .or_else(|| match (max, min) {
            (Some(_), _) => values.iter().copied().reduce(f64::max),
            _ => values.iter().copied().reduce(f64::min),
        });
    let mut check = Check {
        name: name.to_string(),
        verdict: Verdict::Insufficient,
        lane_value: worst.filter(|v| v.is_finite()),
        base_value: None,
        threshold: threshold.clone(),
        lane_requests,
        base_requests: 0,
        lower: None,
        upper: None,
        boundary: None,
        method: None,
        reason: String::new(),
    };
    if lane_requests < min_requests.max(1) {
        check.reason = format!(
            "query {name}: lane served {lane_requests} requests in this window, fewer than \
             minRequests {min_requests}"
        );
        return check;
    }
    if values.is_empty() {
        check.reason = format!("query {name} returned no value in this window");
        return check;
    }
    let bad: Vec<String> = values
        .iter()
        .filter(|&&v| {
            let high =
                max.is_some() && (v.is_nan() || v == f64::INFINITY || max.is_some_and(|m| v > m));
            let low = min.is_some_and(|m| v.is_nan() || v < m);
            high || low
        })
        .map(|&v| num(v))
        .collect();
    let shown: Vec<String> = values.iter().map(|&v| num(v)).collect();
    if !bad.is_empty() {
        check.verdict = Verdict::Fail;
        check.reason = format!(
            "query {name} = {}: {} not {threshold}",
            shown.join(", "),
            bad.join(", ")
        );
    } else {
        check.verdict = Verdict::Pass;
        check.reason = if bounds.is_empty() {
            format!("query {name} = {}, no bound set", shown.join(", "))
        } else {
            format!("query {name} = {}, all {threshold}", shown.join(", "))
        };
    }
    check
}

/// Relative difference below which Prometheus takes a bucket's count as
/// equal to the previous one (float precision errors).
const PRECISION_TOLERANCE: f64 = 1e-12;

/// The p-quantile (0..1) of cumulative buckets, exactly as Prometheus'
/// `histogram_quantile` over classic buckets: buckets sorted by upper
/// bound, buckets of equal bound merged (counts added), counts within 1e-12
/// (relative) of the previous bucket's taken as equal, then made monotonic
/// by taking the maximum so far; linear interpolation inside the bucket the
/// rank q × total falls in, with 0 as the lower bound of the first bucket
/// when its upper bound is above 0 (else that upper bound is the answer); a
/// rank in the +Inf bucket gives the upper bound of the last finite bucket.
///
/// `None` where Prometheus gives NaN: no buckets, fewer than two, no +Inf
/// bucket, a total count of 0, q NaN, or a NaN result (q = 0 with an empty
/// first bucket). q < 0 gives −∞ and q > 1 gives +∞, as in Prometheus.
/// Buckets with a NaN upper bound are ignored.
pub fn histogram_quantile(q: f64, h: &Histogram) -> Option<f64> {
    if h.buckets.is_empty() || q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let mut sorted: Vec<(f64, f64)> = h
        .buckets
        .iter()
        .copied()
        .filter(|b| !b.0.is_nan())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    if sorted.last().map(|b| b.0) != Some(f64::INFINITY) {
        return None;
    }
    // Merge buckets of the same upper bound.
    let mut buckets: Vec<(f64, f64)> = Vec::with_capacity(sorted.len());
    for (le, count) in sorted {
        match buckets.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => buckets.push((le, count)),
        }
    }
    // Float precision errors: a count within the tolerance of the previous
    // one is taken as equal to it.
    let mut prev = buckets.first().map_or(0.0, |b| b.1);
    for b in buckets.iter_mut().skip(1) {
        let delta = (b.1 - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / b.1 <= PRECISION_TOLERANCE {
            b.1 = prev;
        } else {
            prev = b.1;
        }
    }
    // Monotonic: the maximum so far.
    let mut max = buckets.first().map_or(0.0, |b| b.1);
    for b in buckets.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return None;
    }
    let observations = buckets.last().map_or(0.0, |b| b.1);
    if observations == 0.0 {
        return None;
    }
    let rank = q * observations;
    let finite = buckets.len() - 1;
    // The first bucket, among all but +Inf, whose count reaches the rank.
    let b = buckets
        .iter()
        .take(finite)
        .position(|b| b.1 >= rank)
        .unwrap_or(finite);
    if b == finite {
        return buckets.get(finite - 1).map(|b| b.0);
    }
    let &(end, count) = buckets.get(b)?;
    let value = match b.checked_sub(1).and_then(|i| buckets.get(i)) {
        None if end <= 0.0 => end,
        None => end * (rank / count),
        Some(&(start, below)) => start + (end - start) * ((rank - below) / (count - below)),
    };
    (!value.is_nan()).then_some(value)
}

/// Gating of one step from its verdicts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Window ends in a row with the evidence past the fail boundary that
    /// roll back (default 2; 0 is read as 1).
    pub failure_threshold: u32,
    /// Windows after which a step that never decided pauses.
    pub deadline_windows: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Advance,
    Extend,
    Rollback,
    Pause,
}

/// What to do after a window, from this step's verdicts so far, oldest
/// first: roll back when the last `failure_threshold` verdicts other than
/// insufficient ones are all failures (an insufficient window neither
/// counts nor breaks the run; a pass or a continue ends it); else advance
/// when the last verdict passed; else extend the step, or pause once it
/// has had `deadline_windows` windows since the `deadline_from`-th (a step
/// paused at its deadline and resumed gets a new deadline, but keeps its
/// run of failures).
pub fn gate_from(verdicts: &[Verdict], deadline_from: usize, g: &Gate) -> Action {
    match gate(verdicts, g) {
        Action::Pause
            if verdicts.len().saturating_sub(deadline_from) < g.deadline_windows as usize =>
        {
            Action::Extend
        }
        other => other,
    }
}

/// [`gate_from`] the step's first window.
pub fn gate(verdicts: &[Verdict], g: &Gate) -> Action {
    let run = verdicts
        .iter()
        .rev()
        .take_while(|v| matches!(v, Verdict::Fail | Verdict::Insufficient))
        .filter(|v| **v == Verdict::Fail)
        .count();
    if run >= g.failure_threshold.max(1) as usize {
        Action::Rollback
    } else if verdicts.last() == Some(&Verdict::Pass) {
        Action::Advance
    } else if verdicts.len() >= g.deadline_windows as usize {
        Action::Pause
    } else {
        Action::Extend
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict::{Continue, Fail, Insufficient, Pass};
    use super::*;

    /// Envoy's default histogram bucket bounds, in ms.
    const ENVOY_BOUNDS: [f64; 19] = [
        0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
        30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
    ];

    fn hist(pairs: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: pairs.to_vec(),
        }
    }

    /// The cumulative Envoy histogram of observations given as
    /// (latency in ms, how many).
    fn observed(obs: &[(f64, u64)]) -> Histogram {
        let bucket = |bound: f64| {
            obs.iter()
                .filter(|o| o.0 <= bound)
                .map(|o| o.1 as f64)
                .sum::<f64>()
        };
        let mut buckets: Vec<(f64, f64)> = ENVOY_BOUNDS.iter().map(|&b| (b, bucket(b))).collect();
        buckets.push((f64::INFINITY, bucket(f64::INFINITY)));
        Histogram { buckets }
    }

    fn requests(obs: &[(f64, u64)]) -> u64 {
        obs.iter().map(|o| o.1).sum()
    }

    fn sample(n: u64, e: u64) -> Sample {
        Sample {
            requests: n,
            errors: e,
            latency: observed(&[(0.8, n)]),
        }
    }

    fn counts(lane: (u64, u64), base: (u64, u64)) -> Window {
        Window {
            lane: sample(lane.0, lane.1),
            base: sample(base.0, base.1),
            percent: 10.0,
            recorded_base: None,
            insufficient: vec![],
        }
    }

    fn latencies(lane: &[(f64, u64)], base: &[(f64, u64)]) -> Window {
        Window {
            lane: Sample {
                requests: requests(lane),
                errors: 0,
                latency: observed(lane),
            },
            base: Sample {
                requests: requests(base),
                errors: 0,
                latency: observed(base),
            },
            percent: 10.0,
            recorded_base: None,
            insufficient: vec![],
        }
    }

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs() || got == want
    }

    /// The bounds against an independent computation of the same sequence
    /// (Python's math.lgamma, 200 bisection steps).
    #[test]
    fn bounds_match_an_independent_computation() {
        #[rustfmt::skip]
        let cases: &[(u64, u64, f64, f64, f64)] = &[
            (0, 100, 0.05, 0.0, 0.034845464880862875),
            (0, 1000, 0.005, 0.0, 0.006799735955766385),
            (15, 1000, 0.01, 0.005006733985926529, 0.03331153864714748),
            (135, 9000, 0.005, 0.010360350877338649, 0.02083015529593707),
            (50, 100, 0.001, 0.15218670021527167, 0.8478132997847283),
            (7, 7, 0.1, 0.036393996591717735, 1.0),
        ];
        for &(s, n, alpha, lo, hi) in cases {
            let b = sequential::share(s, n, alpha, 1.0);
            assert!(
                close(b.lower, lo, 1e-9) && close(b.upper, hi, 1e-9),
                "{s}/{n}: {b:?}"
            );
        }
    }

    #[test]
    fn error_rate_table() {
        let c = Criteria::default();
        type Case = (&'static str, (u64, u64), (u64, u64), Verdict);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("below minRequests", (99, 50), (900, 0), Insufficient),
            ("no lane traffic", (0, 0), (900, 0), Insufficient),
            ("a clean start continues", (100, 0), (900, 0), Continue),
            ("clean, enough to show within 1 pp", (1000, 0), (9000, 0), Pass),
            ("1.5 % on both, 10k lane requests", (10_000, 150), (90_000, 1350), Pass),
            ("1.5 % on both, 1k: not yet", (1000, 15), (9000, 135), Continue),
            ("25 % of 200 against 0 %", (200, 50), (1800, 0), Fail),
            ("3 % against 0 % at 100: not yet either way", (100, 3), (900, 0), Continue),
            ("3 % against 0 % at 2000: shown above 1 pp", (2000, 60), (18_000, 0), Fail),
            ("6.5 % against 1.5 %", (2000, 130), (18_000, 270), Fail),
        ];
        for (what, lane, base, want) in cases {
            let check = error_rate(&counts(*lane, *base), &c);
            assert_eq!(check.verdict, *want, "{what}: {}", check.reason);
        }
    }

    #[test]
    fn error_rate_values_and_reason() {
        let check = error_rate(&counts((2000, 60), (18_000, 0)), &Criteria::default());
        assert_eq!(check.lane_value, Some(3.0));
        assert_eq!(check.base_value, Some(0.0));
        assert_eq!(check.boundary, Some(1.0));
        let (lower, upper) = (check.lower.unwrap(), check.upper.unwrap());
        assert!(lower > 1.0 && upper > lower, "{check:?}");
        assert_eq!(check.method.as_deref(), Some("beta-binomial mixture"));
        assert!(
            check
                .reason
                .starts_with("lane 3 % (60/2000) vs base 0 % (0/18000): lane - base >= +"),
            "{}",
            check.reason
        );
        assert!(
            check.reason.ends_with("against 1 pp: shown above (fail)"),
            "{}",
            check.reason
        );
    }

    /// More lane errors, everything else equal, never move the verdict
    /// from fail towards pass: over a grid of sample sizes and base rates.
    #[test]
    fn error_rate_is_monotone_in_lane_errors() {
        let rank = |v: Verdict| match v {
            Pass => 0,
            Continue | Insufficient => 1,
            Fail => 2,
        };
        for c in [
            Criteria::default(),
            Criteria {
                error_tolerance_pp: 0.0,
                looks: 5,
                ..Criteria::default()
            },
        ] {
            for nl in [100u64, 300, 1000, 5000] {
                for (nb, eb) in [(100u64, 0u64), (1000, 20), (900, 45), (9000, 135), (100, 5)] {
                    let mut last = 0;
                    for el in (0..=nl).step_by((nl / 100).max(1) as usize) {
                        let v = rank(error_rate(&counts((nl, el), (nb, eb)), &c).verdict);
                        assert!(v >= last, "lane {el}/{nl} vs base {eb}/{nb}");
                        last = v;
                    }
                }
            }
        }
    }

    /// At 100 % base is judged from what the rollout recorded; below 100 %
    /// a missing base is insufficient data; never seen: errorRate.max.
    #[test]
    fn judged_alone() {
        let c = Criteria::default();
        let mut w = counts((10_000, 150), (0, 0));
        assert_eq!(error_rate(&w, &c).verdict, Insufficient);
        w.percent = 100.0;
        // Never saw base: the 1 % default, and 1.5 % is above it.
        let check = error_rate(&w, &c);
        assert_eq!(check.verdict, Fail, "{}", check.reason);
        assert!(
            check.reason.starts_with("judged alone (base never seen"),
            "{}",
            check.reason
        );
        // Base at 1.5 % recorded earlier: as good as base, passes.
        w.recorded_base = Some(sample(90_000, 1350));
        let check = error_rate(&w, &c);
        assert_eq!(check.verdict, Pass, "{}", check.reason);
        assert!(
            check
                .reason
                .contains("vs base as recorded earlier in this rollout 1.5 %"),
            "{}",
            check.reason
        );
        assert_eq!(check.base_requests, 90_000);
        // A fixed max set by the plan applies as well.
        let strict = Criteria {
            error_max_pct: Some(1.0),
            ..Criteria::default()
        };
        assert_eq!(error_rate(&w, &strict).verdict, Fail);
        // 5 pp worse than the recorded base fails.
        w.lane = sample(2000, 130);
        assert_eq!(error_rate(&w, &c).verdict, Fail);
        // A live base at 100 % (other traffic) is used as it is.
        w.base = sample(5000, 75);
        w.lane = sample(10_000, 150);
        assert!(error_rate(&w, &c)
            .reason
            .contains("vs base 1.5 % (75/5000)"));
    }

    #[test]
    fn known_insufficiency_wins() {
        let mut w = counts((1000, 500), (9000, 0));
        w.insufficient = vec!["metrics source failed".into()];
        let (verdict, checks) = judge(&w, &Criteria::default());
        assert_eq!(verdict, Insufficient);
        assert!(checks
            .iter()
            .all(|c| c.verdict == Insufficient && c.reason == "metrics source failed"));
    }

    #[test]
    fn latency_table() {
        let c = Criteria::default();
        type Case = (&'static str, Vec<(f64, u64)>, Vec<(f64, u64)>, Verdict);
        let cases: Vec<Case> = vec![
            (
                "as fast as base, enough data",
                vec![(0.8, 990), (3.0, 10)],
                vec![(0.8, 8910), (3.0, 90)],
                Pass,
            ),
            (
                "as fast as base, little data",
                vec![(0.8, 100)],
                vec![(0.8, 900)],
                Continue,
            ),
            ("100 ms slower", vec![(100.8, 200)], vec![(0.8, 1800)], Fail),
            (
                "a slow tail of 5 %",
                vec![(0.8, 950), (300.0, 50)],
                vec![(0.8, 9000)],
                Fail,
            ),
            (
                "below minRequests",
                vec![(100.8, 99)],
                vec![(0.8, 900)],
                Insufficient,
            ),
            (
                "base too small below 100 %",
                vec![(0.8, 1000)],
                vec![(0.8, 50)],
                Insufficient,
            ),
            // Ratio 2 but within minDiffMs of base: 2 ms against 1 ms.
            (
                "slower, within minDiffMs",
                vec![(2.0, 2000)],
                vec![(0.8, 18_000)],
                Pass,
            ),
        ];
        for (what, lane, base, want) in cases {
            let check = latency(&latencies(&lane, &base), &c);
            assert_eq!(check.verdict, want, "{what}: {}", check.reason);
        }
    }

    #[test]
    fn latency_reports_both_p99s_and_the_evidence() {
        let check = latency(
            &latencies(&[(99.0, 200)], &[(0.8, 1800)]),
            &Criteria::default(),
        );
        assert_eq!(check.lane_value, Some(99.5));
        assert!(close(check.base_value.unwrap(), 0.995, 1e-9), "{check:?}");
        assert_eq!(check.boundary, Some(1.0));
        assert!(check.lower.unwrap() > 1.0);
        assert!(
            check
                .reason
                .contains("lane p99 99.5 ms (200) vs base p99 0.995 ms (1800"),
            "{}",
            check.reason
        );
        assert!(check.reason.contains("200 above 50 ms"), "{}", check.reason);
    }

    #[test]
    fn latency_judged_alone() {
        let mut w = latencies(&[(0.8, 2000)], &[]);
        w.percent = 100.0;
        let c = Criteria::default();
        let check = latency(&w, &c);
        assert_eq!(check.verdict, Pass, "{}", check.reason);
        assert!(check.reason.contains("no p99MaxMs set"));
        let max = Criteria {
            p99_max_ms: Some(50.0),
            ..Criteria::default()
        };
        assert_eq!(latency(&w, &max).verdict, Pass);
        let slow = latencies(&[(100.8, 500)], &[]);
        let w2 = Window {
            percent: 100.0,
            ..slow.clone()
        };
        assert_eq!(latency(&w2, &max).verdict, Fail);
        // Against base's recorded histogram.
        let w3 = Window {
            percent: 100.0,
            recorded_base: Some(latencies(&[], &[(0.8, 9000)]).base),
            ..slow
        };
        let check = latency(&w3, &c);
        assert_eq!(check.verdict, Fail, "{}", check.reason);
        assert!(
            check.reason.contains("base as recorded earlier"),
            "{}",
            check.reason
        );
    }

    /// The state file keeps a step's buckets, +Inf included.
    #[test]
    fn histograms_round_trip_through_json() {
        let h = observed(&[(0.8, 10), (3.0, 5)]);
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.ends_with(r#"["+Inf",15.0]]}"#), "{text}");
        assert_eq!(serde_json::from_str::<Histogram>(&text).unwrap(), h);
    }

    #[test]
    fn histograms_add_bucket_by_bucket() {
        let mut h = observed(&[(0.8, 10)]);
        h.add(&observed(&[(3.0, 5)]));
        assert_eq!(h, observed(&[(0.8, 10), (3.0, 5)]));
        let mut empty = Histogram::default();
        empty.add(&h);
        assert_eq!(empty, h);
    }

    #[test]
    fn judge_combines() {
        let c = Criteria::default();
        let (v, checks) = judge(&counts((1000, 0), (9000, 0)), &c);
        assert_eq!(checks.len(), 2);
        assert_eq!(v, Pass, "{checks:?}");
        assert_eq!(judge(&counts((200, 50), (1800, 0)), &c).0, Fail);
        assert_eq!(judge(&counts((100, 0), (900, 0)), &c).0, Continue);
        assert_eq!(judge(&counts((10, 0), (900, 0)), &c).0, Insufficient);
        let check = |v| Check::of("x", &Window::default(), String::new()).with(v, String::new());
        assert_eq!(combine(&[]), Insufficient);
        assert_eq!(combine(&[check(Pass), check(Insufficient)]), Insufficient);
        assert_eq!(
            combine(&[check(Pass), check(Continue), check(Insufficient)]),
            Continue
        );
        assert_eq!(combine(&[check(Fail), check(Continue)]), Fail);
        assert_eq!(combine(&[check(Pass), check(Pass)]), Pass);
    }

    #[test]
    fn bound_checks() {
        let inf = f64::INFINITY;
        type Case = (
            &'static str,
            Vec<f64>,
            Option<f64>,
            Option<f64>,
            u64,
            Verdict,
        );
        let cases: Vec<Case> = vec![
            ("within max", vec![0.2, 0.4], Some(0.5), None, 100, Pass),
            (
                "one series over max",
                vec![0.2, 0.6],
                Some(0.5),
                None,
                100,
                Fail,
            ),
            ("under min", vec![5.0, 0.5], None, Some(1.0), 100, Fail),
            (
                "both bounds, every series",
                vec![0.7, 2.5],
                Some(2.0),
                Some(0.5),
                100,
                Fail,
            ),
            (
                "both bounds, low series",
                vec![0.2, 1.5],
                Some(2.0),
                Some(0.5),
                100,
                Fail,
            ),
            (
                "both bounds held",
                vec![0.6, 1.5],
                Some(2.0),
                Some(0.5),
                100,
                Pass,
            ),
            ("+Inf fails max", vec![inf], Some(2.0), None, 100, Fail),
            ("NaN fails max", vec![f64::NAN], Some(2.0), None, 100, Fail),
            ("no series", vec![], Some(2.0), None, 100, Insufficient),
            (
                "low traffic never fails",
                vec![9.0],
                Some(2.0),
                None,
                99,
                Insufficient,
            ),
            ("no bound", vec![9.0], None, None, 100, Pass),
        ];
        for (what, values, max, min, n, want) in cases {
            let c = bound_check("q", &values, max, min, n, 100);
            assert_eq!(c.verdict, want, "{what}: {}", c.reason);
        }
        let c = bound_check("errors", &[0.2, 0.6], Some(0.5), None, 100, 100);
        assert_eq!(c.reason, "query errors = 0.2, 0.6: 0.6 not <= 0.5");
        assert_eq!(c.lane_value, Some(0.6));
    }

    #[test]
    fn gate_table() {
        let g = Gate {
            failure_threshold: 2,
            deadline_windows: 4,
        };
        type Case = (&'static str, &'static [Verdict], Action);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("one failure", &[Fail], Action::Extend),
            ("two in a row", &[Fail, Fail], Action::Rollback),
            ("insufficient keeps the run", &[Fail, Insufficient, Fail], Action::Rollback),
            ("continue breaks the run", &[Fail, Continue, Fail], Action::Extend),
            ("a pass advances", &[Continue, Pass], Action::Advance),
            ("deadline", &[Continue, Continue, Insufficient, Continue], Action::Pause),
            ("failure at the deadline", &[Continue, Continue, Continue, Fail], Action::Pause),
            ("failures at the deadline", &[Continue, Continue, Fail, Fail], Action::Rollback),
            ("no windows", &[], Action::Extend),
        ];
        for (what, verdicts, want) in cases {
            assert_eq!(gate(verdicts, &g), *want, "{what}");
        }
        let one = Gate {
            failure_threshold: 0,
            ..g
        };
        assert_eq!(gate(&[Fail], &one), Action::Rollback);
        assert_eq!(gate_from(&[Continue; 5], 2, &g), Action::Extend);
        assert_eq!(gate_from(&[Continue; 6], 2, &g), Action::Pause);
    }

    #[test]
    fn no_input_panics() {
        let c = Criteria::default();
        let huge = u64::MAX;
        for (lane, base) in [
            ((0, 0), (0, 0)),
            ((huge, huge), (huge, 0)),
            ((5, 10), (huge, huge)),
            ((huge, 0), (1, 1)),
        ] {
            let mut w = counts(lane, base);
            for percent in [10.0, 100.0] {
                w.percent = percent;
                let _ = judge(&w, &c);
            }
        }
        let weird = Histogram {
            buckets: vec![(f64::NAN, 3.0), (1.0, f64::NAN), (f64::INFINITY, -1.0)],
        };
        let w = Window {
            lane: Sample {
                requests: 500,
                errors: 0,
                latency: weird.clone(),
            },
            base: Sample {
                requests: 500,
                errors: 0,
                latency: weird,
            },
            ..Window::default()
        };
        let _ = judge(&w, &c);
        let _ = bound_check(
            "q",
            &[f64::NAN, f64::NEG_INFINITY],
            Some(1.0),
            Some(0.0),
            100,
            100,
        );
    }

    #[test]
    fn histogram_quantile_as_prometheus() {
        let inf = f64::INFINITY;
        let h = [(0.5, 0.0), (1.0, 50.0), (5.0, 100.0), (inf, 100.0)];
        // Each value worked out by hand from Prometheus' bucketQuantile.
        type Case<'a> = (&'a str, f64, &'a [(f64, f64)], Option<f64>);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // rank 99 in (1, 5]: 1 + 4 × (99 − 50) / 50.
            ("p99 interpolated", 0.99, &h, Some(4.92)),
            // rank 25 in (0.5, 1]: 0.5 + 0.5 × 25 / 50.
            ("p25", 0.25, &h, Some(0.75)),
            // rank 50 reaches the le=1 bucket exactly: its upper bound.
            ("p50 at a bound", 0.5, &h, Some(1.0)),
            ("p100", 1.0, &h, Some(5.0)),
            // The first bucket interpolates from 0.
            ("first bucket from 0", 0.5, &[(10.0, 100.0), (inf, 100.0)], Some(5.0)),
            ("first bucket, p99", 0.99, &[(10.0, 100.0), (inf, 100.0)], Some(9.9)),
            // A first bucket with bound <= 0 answers its bound.
            ("first bound 0", 0.25, &[(0.0, 10.0), (1.0, 20.0), (inf, 20.0)], Some(0.0)),
            ("first bound negative", 0.1, &[(-1.0, 10.0), (1.0, 20.0), (inf, 20.0)], Some(-1.0)),
            // In the +Inf bucket: the last finite upper bound.
            ("in +Inf", 0.99, &[(1.0, 10.0), (5.0, 20.0), (inf, 100.0)], Some(5.0)),
            ("in +Inf, p21", 0.21, &[(1.0, 10.0), (5.0, 20.0), (inf, 100.0)], Some(5.0)),
            // Unsorted input is sorted first.
            ("unsorted", 0.99, &[(5.0, 100.0), (inf, 100.0), (0.5, 0.0), (1.0, 50.0)], Some(4.92)),
            // Equal bounds are merged, counts added.
            ("duplicate bounds", 0.99, &[(1.0, 25.0), (1.0, 25.0), (5.0, 100.0), (inf, 100.0)], Some(4.92)),
            // Non-monotonic counts: the maximum so far, [(1,60),(5,60),(inf,100)].
            ("non-monotonic, p50", 0.5, &[(1.0, 60.0), (5.0, 50.0), (inf, 100.0)], Some(50.0 / 60.0)),
            ("non-monotonic, p70 in +Inf", 0.7, &[(1.0, 60.0), (5.0, 50.0), (inf, 100.0)], Some(5.0)),
            // [(1,10),(5,20),(inf,20)]: rank 15 in (1, 5]: 1 + 4 × (15 − 10) / 10.
            ("+Inf below the others", 0.75, &[(1.0, 10.0), (5.0, 20.0), (inf, 15.0)], Some(3.0)),
            // Precision: 100 + 1e-13 counts as 100, so rank 100 stays in (1, 5].
            ("precision fix-up", 1.0, &[(1.0, 50.0), (5.0, 100.0), (10.0, 100.0 + 1e-11), (inf, 100.0 + 1e-11)], Some(5.0)),
            // None where Prometheus answers NaN.
            ("empty", 0.99, &[], None),
            ("zero count", 0.99, &[(1.0, 0.0), (inf, 0.0)], None),
            ("no +Inf bucket", 0.99, &[(1.0, 5.0), (5.0, 10.0)], None),
            ("only +Inf", 0.5, &[(inf, 100.0)], None),
            ("q = 0, empty first bucket", 0.0, &h, None),
            ("q NaN", f64::NAN, &h, None),
            ("q = 0, first bucket counted", 0.0, &[(10.0, 5.0), (inf, 5.0)], Some(0.0)),
            ("q < 0", -0.5, &h, Some(f64::NEG_INFINITY)),
            ("q > 1", 1.5, &h, Some(f64::INFINITY)),
            ("NaN bound ignored", 0.99, &[(f64::NAN, 7.0), (0.5, 0.0), (1.0, 50.0), (5.0, 100.0), (inf, 100.0)], Some(4.92)),
        ];
        for (what, q, buckets, want) in cases {
            let got = histogram_quantile(*q, &hist(buckets));
            match (got, want) {
                (Some(g), Some(w)) => assert!(close(g, *w, 1e-12), "{what}: {g} != {w}"),
                _ => assert_eq!(got, *want, "{what}"),
            }
        }
        // NaN counts never panic.
        let _ = histogram_quantile(0.99, &hist(&[(1.0, f64::NAN), (inf, f64::NAN)]));
        let _ = histogram_quantile(0.99, &hist(&[(1.0, -5.0), (inf, -1.0)]));
    }

    #[test]
    fn envoy_histograms() {
        // 1000 base requests: 600 at 0.8 ms, 350 at 3 ms, 50 at 7 ms.
        // Rank 990 in (5, 10]: 5 + 5 × (990 − 950) / 50 = 9.
        let base = observed(&[(0.8, 600), (3.0, 350), (7.0, 50)]);
        assert_eq!(histogram_quantile(0.99, &base), Some(9.0));
        assert_eq!(base.count(), 1000.0);
        assert_eq!(Histogram::default().count(), 0.0);
        // 50 ms added: all in (50, 100]: 50 + 50 × 99 / 100.
        let slow = observed(&[(50.8, 60), (53.0, 35), (57.0, 5)]);
        assert_eq!(histogram_quantile(0.99, &slow), Some(99.5));
    }

    #[test]
    fn formatting() {
        let cases: &[(f64, &str)] = &[
            (10.2, "10.2"),
            (0.0, "0"),
            (1.0, "1"),
            (99.0, "99"),
            (1.0417, "1.042"),
            (0.0513, "0.0513"),
            (4.92, "4.92"),
            (12345.6, "12346"),
            (-0.5, "-0.5"),
            (0.990_000_000_000_000_1 * 100.0, "99"),
        ];
        for (x, want) in cases {
            assert_eq!(num(*x), *want, "{x}");
        }
    }
}
