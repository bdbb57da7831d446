//! The canary analysis: pure functions from one window's numbers to
//! verdicts, and from a step's verdicts to what happens next. Nothing here
//! knows of HTTP, files, clocks or plans, so every decision is pinned by a
//! table-driven test.
//!
//! **Error rate.** The 5xx shares are p_L = e_L / n_L (lane) and
//! p_B = e_B / n_B (base), over the same window.
//! - Insufficient data when n_L < `min_requests` (and always when n_L = 0).
//! - Judged alone when n_B < `min_requests` (e.g. at 100 %): fails when
//!   p_L exceeds `error_max_alone_pct` **and** the exact binomial test is
//!   significant: P(X ≥ e_L) < 1 − `error_confidence`, X ~ Binomial(n_L, p0),
//!   p0 = `error_max_alone_pct` / 100.
//! - With base: fails only when p_L − p_B exceeds the tolerance t
//!   (`error_tolerance_pp` / 100) **and** the excess is significant at
//!   `error_confidence`, one-sided, against H0: p_L − p_B ≤ t.
//!   - Small counts (fewer than 10 errors or 10 successes on either side):
//!     exact binomial test of the lane's errors against p0 = min(1, p_B + t),
//!     p = P(X ≥ e_L), X ~ Binomial(n_L, p0).
//!   - Otherwise the two-proportion z test with unpooled variance,
//!     z = (p_L − p_B − t) / √(p_L(1 − p_L)/n_L + p_B(1 − p_B)/n_B),
//!     p = 1 − Φ(z).
//!
//! **Latency.** The p99 of each version from its histogram buckets over the
//! window, interpolated exactly as Prometheus' `histogram_quantile` does.
//! - Insufficient data when n_L < `min_requests` or the lane's histogram
//!   counted nothing (Envoy updates histograms only at each stats flush).
//! - With base (n_B ≥ `min_requests` and base latency data): fails when
//!   lane p99 > `p99_max_ratio` × base p99 **and** lane p99 − base p99 >
//!   `p99_min_diff_ms` (Envoy's default buckets are 0.5, 1, 5, 10, 25,
//!   50, … ms, and the p99 of a window's few hundred lane requests is
//!   nearly its maximum, so a smaller difference is noise); also fails
//!   when lane p99 > `p99_max_ms`.
//! - Judged alone: only `p99_max_ms` applies; without it the check passes.
//!
//! **A window** fails when any check fails; else it is insufficient when any
//! check is; else it passes. Reasons the caller already knows the data
//! cannot be trusted (the metrics source failed, a counter reset) make every
//! check insufficient.
//!
//! **Gating a step.** Roll back after `failure_threshold` failed windows in
//! a row, where an insufficient window neither counts nor breaks the run and
//! a passing one resets it; advance after a passing window; otherwise extend
//! the step, or pause it once it has had `deadline_windows` windows.

use serde::{Deserialize, Serialize};

/// Cumulative histogram buckets over one window (deltas already taken by
/// the caller), as Prometheus and Envoy give them: (upper bound `le` in ms,
/// cumulative count), ascending, the last one `f64::INFINITY` (+Inf). May
/// be empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
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
}

/// What one version (the lane's or base's upstream clusters) served in one
/// window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub requests: u64,
    /// 5xx answers (more than `requests` is read as `requests`).
    pub errors: u64,
    pub latency: Histogram,
}

/// One window's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub lane: Sample,
    pub base: Sample,
    /// Reasons the caller already knows the data cannot be trusted (the
    /// metrics source failed, a counter reset): then every check is
    /// insufficient.
    pub insufficient: Vec<String>,
}

/// The thresholds of the error-rate and latency checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// Fewer lane requests in a window: insufficient data. Base below it:
    /// the lane is judged alone. Default 100.
    pub min_requests: u64,
    /// How many percentage points the lane's 5xx share may exceed base's.
    /// Default 1.
    pub error_tolerance_pp: f64,
    /// Confidence of the one-sided tests (a failure needs p < 1 − this).
    /// Default 0.99.
    pub error_confidence: f64,
    /// Lane judged alone: the highest 5xx share, in percent. Default 1.
    pub error_max_alone_pct: f64,
    /// Lane p99 at most this many times base's. Default 1.5.
    pub p99_max_ratio: Option<f64>,
    /// Lane p99 at most this many ms. Default none.
    pub p99_max_ms: Option<f64>,
    /// A ratio failure also needs lane p99 − base p99 above this many ms:
    /// smaller differences are bucket interpolation and the noise of a
    /// small sample's near-maximum. Default 25.
    pub p99_min_diff_ms: f64,
}

impl Default for Criteria {
    fn default() -> Criteria {
        Criteria {
            min_requests: 100,
            error_tolerance_pp: 1.0,
            error_confidence: 0.99,
            error_max_alone_pct: 1.0,
            p99_max_ratio: Some(1.5),
            p99_max_ms: None,
            p99_min_diff_ms: 25.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
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
    /// Human readable: `lane - base <= 1 pp at 99 %`, `p99 <= 1.5 x base`.
    pub threshold: String,
    pub lane_requests: u64,
    pub base_requests: u64,
    pub p_value: Option<f64>,
    /// `binomial exact` or `two-proportion z`.
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
            p_value: None,
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

/// The error-rate and latency checks of a window, and the window's verdict
/// ([`combine`]).
pub fn judge(window: &Window, criteria: &Criteria) -> (Verdict, Vec<Check>) {
    let checks = vec![error_rate(window, criteria), latency(window, criteria)];
    (combine(&checks), checks)
}

/// Any failure fails; else any insufficient check (or no check at all) is
/// insufficient; else pass.
pub fn combine(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.is_empty() || checks.iter().any(|c| c.verdict == Verdict::Insufficient) {
        Verdict::Insufficient
    } else {
        Verdict::Pass
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

/// `(a/b - c/d) * 100` in percentage points, rounded once while the
/// products stay below 2^53 (and never overflowing).
fn diff_pp(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (x, y) = (u128::from(a) * u128::from(d), u128::from(c) * u128::from(b));
    let den = u128::from(b) * u128::from(d);
    if den == 0 {
        return 0.0;
    }
    let gap = x.abs_diff(y);
    let magnitude = match gap.checked_mul(100) {
        Some(g) => g as f64 / den as f64,
        None => gap as f64 / den as f64 * 100.0,
    };
    if x >= y {
        magnitude
    } else {
        -magnitude
    }
}

/// At most 4 significant digits, without trailing zeros: 10.2, 1.042,
/// 0.05, 4.92, 12346.
fn num(x: f64) -> String {
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

/// A p-value: `0.264`, `0.01`, `7.6e-8`.
fn pval(p: f64) -> String {
    if p.is_finite() && p != 0.0 && p.abs() < 1e-3 {
        format!("{p:.1e}").replace(".0e", "e")
    } else {
        num(p)
    }
}

fn lt(p: f64, alpha: f64) -> &'static str {
    if p < alpha {
        "<"
    } else {
        ">="
    }
}

fn gt(over: bool) -> &'static str {
    if over {
        ">"
    } else {
        "<="
    }
}

/// The 5xx check (see the module documentation).
pub fn error_rate(window: &Window, c: &Criteria) -> Check {
    let nl = window.lane.requests;
    let el = window.lane.errors.min(nl);
    let nb = window.base.requests;
    let eb = window.base.errors.min(nb);
    let min = c.min_requests.max(1);
    let alpha = 1.0 - c.error_confidence;
    let conf = num(c.error_confidence * 100.0);
    let alone = nb < min;
    let threshold = if alone {
        format!(
            "lane 5xx <= {} % at {conf} % (judged alone)",
            num(c.error_max_alone_pct)
        )
    } else {
        format!(
            "lane - base <= {} pp at {conf} %",
            num(c.error_tolerance_pp)
        )
    };
    let check = Check::of("errorRate", window, threshold);
    if !window.insufficient.is_empty() {
        return check.with(Verdict::Insufficient, window.insufficient.join("; "));
    }
    let lane_pct = percent(el.into(), nl.into());
    let mut check = Check {
        lane_value: (nl > 0).then_some(lane_pct),
        ..check
    };
    if nl < min {
        let reason = format!("lane served {nl} requests ({el} 5xx), fewer than minRequests {min}");
        return check.with(Verdict::Insufficient, reason);
    }
    let lane = format!("lane 5xx {} % ({el}/{nl})", num(lane_pct));
    if alone {
        let p0 = (c.error_max_alone_pct / 100.0).clamp(0.0, 1.0);
        let p = binomial_upper_tail(el, nl, p0);
        let over = lane_pct > c.error_max_alone_pct;
        check.p_value = Some(p);
        check.method = Some("binomial exact".to_string());
        let verdict = if over && p < alpha {
            Verdict::Fail
        } else {
            Verdict::Pass
        };
        let reason = format!(
            "{lane}, judged alone (base served {nb} < minRequests {min}): {} {} %, p = {} {} {} (binomial exact)",
            gt(over),
            num(c.error_max_alone_pct),
            pval(p),
            lt(p, alpha),
            pval(alpha),
        );
        return check.with(verdict, reason);
    }
    let base_pct = percent(eb.into(), nb.into());
    check.base_value = Some(base_pct);
    let (pl, pb) = (el as f64 / nl as f64, eb as f64 / nb as f64);
    let tol = c.error_tolerance_pp / 100.0;
    let diff = diff_pp(el, nl, eb, nb);
    let small = el < 10 || eb < 10 || nl - el < 10 || nb - eb < 10;
    let (p, method) = if small {
        let p0 = (pb + tol).clamp(0.0, 1.0);
        (binomial_upper_tail(el, nl, p0), "binomial exact")
    } else {
        let sd = (pl * (1.0 - pl) / nl as f64 + pb * (1.0 - pb) / nb as f64).sqrt();
        let excess = pl - pb - tol;
        let p = if sd > 0.0 {
            normal_sf(excess / sd)
        } else if excess > 0.0 {
            0.0
        } else {
            1.0
        };
        (p, "two-proportion z")
    };
    let over = diff > c.error_tolerance_pp;
    check.p_value = Some(p);
    check.method = Some(method.to_string());
    let verdict = if over && p < alpha {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let sign = if diff >= 0.0 { "+" } else { "" };
    let reason = format!(
        "{lane} vs base {} % ({eb}/{nb}): {sign}{} pp {} {} pp, p = {} {} {} ({method})",
        num(base_pct),
        num(diff),
        gt(over),
        num(c.error_tolerance_pp),
        pval(p),
        lt(p, alpha),
        pval(alpha),
    );
    check.with(verdict, reason)
}

/// The p99 check (see the module documentation).
pub fn latency(window: &Window, c: &Criteria) -> Check {
    let mut parts = Vec::new();
    if let Some(r) = c.p99_max_ratio {
        parts.push(format!(
            "p99 <= {} x base (or within {} ms of it)",
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
    let check = Check::of("latency", window, threshold);
    if !window.insufficient.is_empty() {
        return check.with(Verdict::Insufficient, window.insufficient.join("; "));
    }
    let (nl, nb) = (window.lane.requests, window.base.requests);
    let min = c.min_requests.max(1);
    let lane_p99 = histogram_quantile(0.99, &window.lane.latency).filter(|v| v.is_finite());
    let mut check = Check {
        lane_value: lane_p99,
        ..check
    };
    if nl < min {
        let reason = format!("lane served {nl} requests, fewer than minRequests {min}");
        return check.with(Verdict::Insufficient, reason);
    }
    let Some(lane_p99) = lane_p99 else {
        let reason = if window.lane.latency.count() <= 0.0 {
            format!(
                "lane served {nl} requests but its latency histogram counted none in this \
                 window (Envoy updates histograms only at each stats flush: keep \
                 stats_flush_interval well below the window)"
            )
        } else {
            format!(
                "lane served {nl} requests but its latency histogram has no usable buckets (no +Inf bucket)"
            )
        };
        return check.with(Verdict::Insufficient, reason);
    };
    let lane = format!("lane p99 {} ms ({nl} requests)", num(lane_p99));
    let base_p99 = if nb >= min {
        histogram_quantile(0.99, &window.base.latency).filter(|v| v.is_finite())
    } else {
        None
    };
    let over_max = c.p99_max_ms.filter(|&m| lane_p99 > m);
    let Some(base_p99) = base_p99 else {
        let why = if nb < min {
            format!("base served {nb} < minRequests {min}")
        } else {
            format!("base's latency histogram counted none of its {nb} requests")
        };
        let (verdict, reason) = match (c.p99_max_ms, over_max) {
            (_, Some(m)) => (
                Verdict::Fail,
                format!("{lane}, judged alone ({why}): > {} ms", num(m)),
            ),
            (Some(m), None) => (
                Verdict::Pass,
                format!("{lane}, judged alone ({why}): <= {} ms", num(m)),
            ),
            (None, None) => (
                Verdict::Pass,
                format!("{lane}, judged alone ({why}); no p99MaxMs set"),
            ),
        };
        return check.with(verdict, reason);
    };
    check.base_value = Some(base_p99);
    let base = format!("base p99 {} ms ({nb} requests)", num(base_p99));
    let above = lane_p99 - base_p99;
    let mut failures = Vec::new();
    let mut passes = Vec::new();
    if let Some(r) = c.p99_max_ratio {
        let over_ratio = lane_p99 > r * base_p99;
        let over_diff = above > c.p99_min_diff_ms;
        let ratio = if base_p99 > 0.0 {
            format!(
                "ratio {} {} {} x base",
                num(lane_p99 / base_p99),
                gt(over_ratio),
                num(r)
            )
        } else {
            format!("{} {} x base", gt(over_ratio), num(r))
        };
        let diff = format!("{} ms above it", num(above));
        match (over_ratio, over_diff) {
            (true, true) => failures.push(format!(
                "{ratio} and {diff} (> {} ms)",
                num(c.p99_min_diff_ms)
            )),
            (true, false) => passes.push(format!(
                "{ratio} but only {diff} (<= {} ms, bucket noise)",
                num(c.p99_min_diff_ms)
            )),
            (false, _) => passes.push(ratio),
        }
    }
    if let Some(m) = c.p99_max_ms {
        match over_max {
            Some(_) => failures.push(format!("p99 > {} ms", num(m))),
            None => passes.push(format!("p99 <= {} ms", num(m))),
        }
    }
    if !failures.is_empty() {
        let reason = format!("{lane} vs {base}: {}", failures.join(" and "));
        return check.with(Verdict::Fail, reason);
    }
    let reason = if passes.is_empty() {
        format!("{lane} vs {base}: no latency threshold set")
    } else {
        format!("{lane} vs {base}: {}", passes.join(" and "))
    };
    check.with(Verdict::Pass, reason)
}

/// Extra check on a value (a Prometheus query's result): `None` (or NaN)
/// is no data, insufficient; otherwise it fails below `min` or above `max`.
pub fn bound_check(name: &str, value: Option<f64>, max: Option<f64>, min: Option<f64>) -> Check {
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
    let mut check = Check {
        name: name.to_string(),
        verdict: Verdict::Insufficient,
        lane_value: value.filter(|v| !v.is_nan()),
        base_value: None,
        threshold: threshold.clone(),
        lane_requests: 0,
        base_requests: 0,
        p_value: None,
        method: None,
        reason: String::new(),
    };
    let Some(v) = value.filter(|v| !v.is_nan()) else {
        check.reason = format!("query {name} returned no value in this window");
        return check;
    };
    let low = min.is_some_and(|m| v < m);
    let high = max.is_some_and(|m| v > m);
    let (verdict, reason) = if low || high {
        (
            Verdict::Fail,
            format!("query {name} = {}, not {threshold}", num(v)),
        )
    } else if bounds.is_empty() {
        (
            Verdict::Pass,
            format!("query {name} = {}, no bound set", num(v)),
        )
    } else {
        (
            Verdict::Pass,
            format!("query {name} = {}, {threshold}", num(v)),
        )
    };
    check.verdict = verdict;
    check.reason = reason;
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

/// ln(2π)
const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// ln(n!) for n ≤ 15, exactly from the product (15! < 2^53).
fn ln_factorial_small(n: u64) -> f64 {
    (2..=n).map(|i| i as f64).product::<f64>().ln()
}

/// The error of Stirling's formula, ln(n!) − ln(√(2πn) (n/e)^n), for n ≥ 1
/// (C. Loader, "Fast and accurate computation of binomial probabilities",
/// 2000).
fn stirlerr(n: u64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    let x = n as f64;
    if n <= 15 {
        return ln_factorial_small(n) - (x + 0.5) * x.ln() + x - 0.5 * LN_2PI;
    }
    let xx = x * x;
    if n > 500 {
        (S0 - S1 / xx) / x
    } else if n > 80 {
        (S0 - (S1 - S2 / xx) / xx) / x
    } else if n > 35 {
        (S0 - (S1 - (S2 - S3 / xx) / xx) / xx) / x
    } else {
        (S0 - (S1 - (S2 - (S3 - S4 / xx) / xx) / xx) / xx) / x
    }
}

/// The deviance term x ln(x/m) + m − x, without cancellation when x ≈ m
/// (Loader).
fn bd0(x: f64, m: f64) -> f64 {
    if (x - m).abs() < 0.1 * (x + m) {
        let v = (x - m) / (x + m);
        let mut s = (x - m) * v;
        let mut ej = 2.0 * x * v;
        let v2 = v * v;
        for j in 1..1000 {
            ej *= v2;
            let s1 = s + ej / f64::from(2 * j + 1);
            if s1 == s {
                return s1;
            }
            s = s1;
        }
    }
    x * (x / m).ln() + m - x
}

/// ln P(X = k) for X ~ Binomial(n, p), 0 < p < 1, k ≤ n (Loader's
/// saddle-point form: accurate for n in the millions).
fn ln_binomial_pmf(k: u64, n: u64, p: f64) -> f64 {
    let q = 1.0 - p;
    if k == 0 {
        return n as f64 * (-p).ln_1p();
    }
    if k == n {
        return n as f64 * p.ln();
    }
    let (x, nf) = (k as f64, n as f64);
    let lc = stirlerr(n) - stirlerr(k) - stirlerr(n - k) - bd0(x, nf * p) - bd0(nf - x, nf * q);
    let lf = LN_2PI + x.ln() + (-x / nf).ln_1p();
    lc - 0.5 * lf
}

/// Terms summed at most by [`binomial_upper_tail`]: enough for n·p·(1−p)
/// up to about 10^12.
const MAX_TERMS: u64 = 10_000_000;

/// P(X ≥ k) for X ~ Binomial(n, p), computed stably in log space (n up to
/// millions): the first term's logarithm by Loader's method, the following
/// ones by the ratio of successive terms, summed from the side of the mean
/// the tail lies on (the complement 1 − P(X ≤ k − 1) when k ≤ n·p). NaN
/// when p is NaN; p is clamped to 0..1.
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let q = 1.0 - p;
    let (nf, odds) = (n as f64, p / q);
    // Terms relative to the first: decreasing away from the mode.
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    if k as f64 > nf * p {
        // k is at or above the mode: P(X = k) + P(X = k + 1) + …
        let mut i = k;
        while i < n && i - k < MAX_TERMS {
            term *= (n - i) as f64 / (i + 1) as f64 * odds;
            sum += term;
            i += 1;
            if term <= sum * 1e-17 {
                break;
            }
        }
        (ln_binomial_pmf(k, n, p) + sum.ln()).exp().min(1.0)
    } else {
        // k − 1 is below the mode: 1 − (P(X = k − 1) + P(X = k − 2) + …).
        let j = k - 1;
        let mut i = j;
        while i > 0 && j - i < MAX_TERMS {
            term *= i as f64 / (n - i + 1) as f64 / odds;
            sum += term;
            i -= 1;
            if term <= sum * 1e-17 {
                break;
            }
        }
        let below = (ln_binomial_pmf(j, n, p) + sum.ln()).exp();
        (1.0 - below).clamp(0.0, 1.0)
    }
}

/// erfc(x), the complementary error function, by the Chebyshev fit of
/// Numerical Recipes' `erfcc` (fractional error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Standard normal survival function 1 − Φ(z) = erfc(z / √2) / 2 (relative
/// error below 1.2e-7, also far in the tail). NaN for NaN.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Gating of one step from its windows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Failed windows in a row that roll back (default 2; 0 is read as 1).
    pub failure_threshold: u32,
    /// Windows after which a step that never passed pauses.
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

/// What to do after a window, from this step's window verdicts so far,
/// oldest first: roll back when the last `failure_threshold` verdicts other
/// than insufficient ones are all failures (an insufficient window neither
/// counts nor breaks the run; a pass ends it); else advance when the last
/// verdict passed; else extend the step, or pause once it has had
/// `deadline_windows` windows since the `deadline_from`-th (a step paused
/// at its deadline and resumed gets a new deadline, but keeps its run of
/// failures).
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
        .take_while(|v| **v != Verdict::Pass)
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
    use super::Verdict::{Fail, Insufficient, Pass};
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

    fn counts(lane: (u64, u64), base: (u64, u64)) -> Window {
        Window {
            lane: Sample {
                requests: lane.0,
                errors: lane.1,
                latency: observed(&[(0.8, lane.0)]),
            },
            base: Sample {
                requests: base.0,
                errors: base.1,
                latency: observed(&[(0.8, base.0)]),
            },
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
            insufficient: vec![],
        }
    }

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs() || got == want
    }

    const EXACT: Option<&str> = Some("binomial exact");
    const Z: Option<&str> = Some("two-proportion z");

    #[test]
    fn error_rate_table() {
        let c = Criteria::default();
        // (what, (lane n, 5xx), (base n, 5xx), verdict, method, p-value)
        type Case = (
            &'static str,
            (u64, u64),
            (u64, u64),
            Verdict,
            Option<&'static str>,
            Option<f64>,
        );
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("zero requests", (0, 0), (0, 0), Insufficient, None, None),
            ("zero lane requests", (0, 0), (5000, 10), Insufficient, None, None),
            ("one below minRequests", (99, 50), (5000, 0), Insufficient, None, None),
            // Exactly minRequests is enough; base has zero errors: exact
            // test against p0 = 0 + 1 %.
            ("exactly minRequests, 10 % vs 0", (100, 10), (5000, 0), Fail, EXACT, Some(7.631_587_532_260_619e-8)),
            ("2 % vs 0: over, not significant", (100, 2), (5000, 0), Pass, EXACT, Some(0.264_238_021_077_043_75)),
            ("no errors at all", (100, 0), (5000, 0), Pass, EXACT, Some(1.0)),
            ("51/500 vs 0/4500", (500, 51), (4500, 0), Fail, EXACT, Some(2.453_791_655_526_574_6e-34)),
            // Base at exactly minRequests is compared with.
            ("base exactly minRequests", (1000, 50), (100, 0), Fail, EXACT, Some(8.306_371_435_388_77e-20)),
            // Small counts on the lane's side: exact against 0.5 % + 1 %.
            ("4/200 vs 50/10000", (200, 4), (10000, 50), Pass, EXACT, Some(0.352_763_846_531_550_1)),
            ("20/1000 vs 5/100000", (1000, 20), (100_000, 5), Fail, EXACT, Some(0.003_471_672_419_888_486_7)),
            // Few successes: exact too.
            ("few successes", (100, 95), (100, 91), Pass, EXACT, Some(0.179_876_441_907_726_2)),
            // Large counts: z.
            ("10 % vs 1 %, large", (2000, 200), (20000, 200), Fail, Z, Some(9.475_958_619_571_073e-33)),
            ("1.5 % vs 1 %: within tolerance", (20000, 300), (20000, 200), Pass, Z, None),
            ("3 % vs 1.5 %: over, not significant", (1000, 30), (1000, 15), Pass, Z, Some(0.225_169_087_754_105_52)),
            ("2.5 % vs 1 %: over, significant", (20000, 500), (200_000, 2000), Fail, Z, Some(4.501_235_856_641_481e-6)),
            // Tolerance boundary: exactly 1 pp is not over, even with
            // overwhelming evidence of a difference; just above it is.
            ("exactly 1 pp", (10_000_000, 200_000), (10_000_000, 100_000), Pass, Z, Some(0.5)),
            ("1.1 pp on 10^7", (10_000_000, 210_000), (10_000_000, 100_000), Fail, Z, Some(1.121_511_184_736_53e-73)),
            ("0.9 pp on 10^7: significant, within", (10_000_000, 190_000), (10_000_000, 100_000), Pass, Z, None),
            ("lane better than base", (10000, 50), (10000, 500), Pass, Z, None),
            // More 5xx than requests is read as all requests failed.
            ("errors above requests", (200, 300), (10000, 0), Fail, EXACT, None),
            // Base below minRequests or empty: the lane judged alone against 1 %.
            ("base empty, 10 %", (500, 50), (0, 0), Fail, EXACT, None),
            ("base below minRequests, 0.6 %", (500, 3), (99, 0), Pass, EXACT, Some(0.876_614_225_646_418_1)),
            ("base empty, 1.6 %: over, not significant", (500, 8), (0, 0), Pass, EXACT, Some(0.132_319_866_131_810_7)),
            ("base empty, exactly 1 %", (1_000_000, 10_000), (0, 0), Pass, EXACT, Some(0.501_349_872_225_467_9)),
            ("alone, 1.01 % of 10^6: not significant", (1_000_000, 10_100), (0, 0), Pass, EXACT, Some(0.158_651_231_992_799_57)),
            ("alone, 1.03 % of 10^6: significant", (1_000_000, 10_300), (0, 0), Fail, EXACT, Some(0.001_363_115_037_923_071_8)),
            ("base empty, lane below minRequests", (50, 50), (0, 0), Insufficient, None, None),
        ];
        for (what, lane, base, want, method, p) in cases {
            let check = error_rate(&counts(*lane, *base), &c);
            assert_eq!(check.verdict, *want, "{what}: {}", check.reason);
            assert_eq!(check.method.as_deref(), *method, "{what}: {}", check.reason);
            assert_eq!(check.name, "errorRate");
            assert_eq!((check.lane_requests, check.base_requests), (lane.0, base.0));
            assert!(!check.reason.is_empty(), "{what}");
            if let Some(p) = p {
                let got = check.p_value.unwrap_or(f64::NAN);
                assert!(close(got, *p, 1e-5), "{what}: p = {got}, want {p}");
            }
            if *want != Insufficient {
                let alone = base.0 < c.min_requests;
                assert_eq!(check.base_value.is_none(), alone, "{what}");
                assert!(
                    check.reason.contains(&format!("/{})", lane.0)),
                    "{what}: {}",
                    check.reason
                );
            }
        }
    }

    #[test]
    fn error_rate_values_and_reason() {
        let check = error_rate(&counts((500, 51), (4500, 0)), &Criteria::default());
        assert_eq!(check.verdict, Fail);
        assert_eq!(check.lane_value, Some(10.2));
        assert_eq!(check.base_value, Some(0.0));
        assert_eq!(check.threshold, "lane - base <= 1 pp at 99 %");
        assert_eq!(
            check.reason,
            "lane 5xx 10.2 % (51/500) vs base 0 % (0/4500): +10.2 pp > 1 pp, p = 2.5e-34 < 0.01 (binomial exact)"
        );
        let check = error_rate(&counts((500, 50), (10, 0)), &Criteria::default());
        assert_eq!(check.threshold, "lane 5xx <= 1 % at 99 % (judged alone)");
        assert!(
            check.reason.starts_with("lane 5xx 10 % (50/500), judged alone (base served 10 < minRequests 100): > 1 %, p = "),
            "{}",
            check.reason
        );
        let check = error_rate(&counts((99, 0), (100, 0)), &Criteria::default());
        assert_eq!(
            check.reason,
            "lane served 99 requests (0 5xx), fewer than minRequests 100"
        );
    }

    #[test]
    fn error_rate_criteria() {
        // (what, criteria, lane, base, verdict)
        let strict = Criteria {
            error_tolerance_pp: 0.0,
            error_confidence: 0.95,
            ..Criteria::default()
        };
        let zero_alone = Criteria {
            error_max_alone_pct: 0.0,
            ..Criteria::default()
        };
        let lax = Criteria {
            error_tolerance_pp: 150.0,
            ..Criteria::default()
        };
        let low_min = Criteria {
            min_requests: 0,
            ..Criteria::default()
        };
        let nan = Criteria {
            error_tolerance_pp: f64::NAN,
            error_confidence: f64::NAN,
            error_max_alone_pct: f64::NAN,
            ..Criteria::default()
        };
        type Case<'a> = (&'a str, &'a Criteria, (u64, u64), (u64, u64), Verdict);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("no tolerance: 2 % vs 1 % on 10^4", &strict, (10000, 200), (10000, 100), Fail),
            ("no tolerance: equal", &strict, (10000, 100), (10000, 100), Pass),
            ("max 0 % alone: one error", &zero_alone, (1000, 1), (0, 0), Fail),
            ("max 0 % alone: none", &zero_alone, (1000, 0), (0, 0), Pass),
            ("p0 capped at 1", &lax, (100, 100), (100, 60), Pass),
            // minRequests 0 still needs one request.
            ("minRequests 0, nothing served", &low_min, (0, 0), (0, 0), Insufficient),
            ("minRequests 0, base empty", &low_min, (100, 0), (0, 0), Pass),
            ("NaN criteria do not fail", &nan, (1000, 500), (1000, 0), Pass),
            ("NaN criteria alone", &nan, (1000, 500), (0, 0), Pass),
        ];
        for (what, c, lane, base, want) in cases {
            let check = error_rate(&counts(*lane, *base), c);
            assert_eq!(check.verdict, *want, "{what}: {}", check.reason);
        }
    }

    #[test]
    fn known_insufficiency_wins() {
        let mut w = counts((5000, 2500), (5000, 0));
        w.insufficient.push("metrics source failed".to_string());
        w.insufficient.push("counter reset".to_string());
        let (verdict, checks) = judge(&w, &Criteria::default());
        assert_eq!(verdict, Insufficient);
        assert_eq!(checks.len(), 2);
        for c in &checks {
            assert_eq!(c.verdict, Insufficient);
            assert_eq!(c.reason, "metrics source failed; counter reset");
            assert_eq!(c.lane_value, None);
        }
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
    fn latency_table() {
        let d = Criteria::default();
        let max_20 = Criteria {
            p99_max_ms: Some(20.0),
            ..Criteria::default()
        };
        let none = Criteria {
            p99_max_ratio: None,
            p99_max_ms: None,
            ..Criteria::default()
        };
        let no_diff = Criteria {
            p99_min_diff_ms: 0.0,
            ..Criteria::default()
        };
        let diff_5 = Criteria {
            p99_min_diff_ms: 5.0,
            ..Criteria::default()
        };
        let base: &[(f64, u64)] = &[(0.8, 600), (3.0, 350), (7.0, 50)]; // p99 9 ms
        let healthy: &[(f64, u64)] = &[(0.8, 55), (3.0, 40), (9.5, 5)]; // p99 9 ms
        let slow: &[(f64, u64)] = &[(50.8, 60), (53.0, 35), (57.0, 5)]; // p99 99.5 ms
                                                                        // Base p99 ~1 ms, lane ~3.7 ms: 3.7 times base, but within one
                                                                        // bucket of it.
        let fast_base: &[(f64, u64)] = &[(0.8, 995), (2.0, 5)];
        let noisy: &[(f64, u64)] = &[(0.8, 97), (2.0, 3)];
        // p99 10 + 15 × 9 / 10 = 23.5 ms: 2.6 times base, 14.5 ms above it.
        let slower: &[(f64, u64)] = &[(0.8, 50), (3.0, 40), (20.0, 10)];
        let few: &[(f64, u64)] = &[(0.8, 99)];
        let tiny_base: &[(f64, u64)] = &[(0.8, 99)];
        type Case<'a> = (
            &'a str,
            &'a Criteria,
            &'a [(f64, u64)],
            &'a [(f64, u64)],
            Verdict,
        );
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("healthy lane", &d, healthy, base, Pass),
            ("slow lane, 50 ms added", &d, slow, base, Fail),
            ("same histograms", &d, base, base, Pass),
            ("sub-bucket noise", &d, noisy, fast_base, Pass),
            ("sub-bucket noise without minDiffMs", &no_diff, noisy, fast_base, Fail),
            ("14.5 ms slower: within minDiffMs 25", &d, slower, base, Pass),
            ("14.5 ms slower: over minDiffMs 5", &diff_5, slower, base, Fail),
            ("lane below minRequests", &d, few, base, Insufficient),
            ("no lane requests", &d, &[], base, Insufficient),
            ("judged alone, no p99MaxMs", &d, slow, tiny_base, Pass),
            ("judged alone, base empty", &d, slow, &[], Pass),
            ("judged alone, over p99MaxMs", &max_20, slow, tiny_base, Fail),
            ("judged alone, under p99MaxMs", &max_20, healthy, tiny_base, Pass),
            ("with base, over p99MaxMs", &max_20, slow, base, Fail),
            ("with base, under p99MaxMs", &max_20, healthy, base, Pass),
            ("no latency threshold", &none, slow, base, Pass),
        ];
        for (what, c, lane, base, want) in cases {
            let check = latency(&latencies(lane, base), c);
            assert_eq!(check.verdict, *want, "{what}: {}", check.reason);
            assert_eq!(check.name, "latency");
            assert!(!check.reason.is_empty(), "{what}");
        }
    }

    #[test]
    fn latency_without_histogram_data() {
        let c = Criteria::default();
        let base = observed(&[(0.8, 600), (3.0, 350), (7.0, 50)]);
        let empty = observed(&[]);
        // (what, lane histogram, base histogram, base requests, verdict, reason contains)
        #[rustfmt::skip]
        let cases: &[(&str, &Histogram, &Histogram, u64, Verdict, &str)] = &[
            ("lane histogram not flushed", &empty, &base, 1000, Insufficient, "stats flush"),
            ("lane histogram missing", &Histogram::default(), &base, 1000, Insufficient, "stats flush"),
            ("lane histogram without +Inf", &hist(&[(1.0, 500.0)]), &base, 1000, Insufficient, "+Inf"),
            ("base histogram not flushed", &base, &empty, 1000, Pass, "no p99MaxMs set"),
            ("base below minRequests", &base, &base, 99, Pass, "base served 99 < minRequests 100"),
        ];
        for (what, lane, b, nb, want, has) in cases {
            let w = Window {
                lane: Sample {
                    requests: 500,
                    errors: 0,
                    latency: (*lane).clone(),
                },
                base: Sample {
                    requests: *nb,
                    errors: 0,
                    latency: (*b).clone(),
                },
                insufficient: vec![],
            };
            let check = latency(&w, &c);
            assert_eq!(check.verdict, *want, "{what}: {}", check.reason);
            assert!(check.reason.contains(has), "{what}: {}", check.reason);
        }
    }

    #[test]
    fn latency_reasons() {
        let w = latencies(
            &[(50.8, 60), (53.0, 35), (57.0, 5)],
            &[(0.8, 600), (3.0, 350), (7.0, 50)],
        );
        let check = latency(&w, &Criteria::default());
        assert_eq!(check.verdict, Fail);
        assert_eq!(
            (check.lane_value, check.base_value),
            (Some(99.5), Some(9.0))
        );
        assert_eq!(check.threshold, "p99 <= 1.5 x base (or within 25 ms of it)");
        assert_eq!(
            check.reason,
            "lane p99 99.5 ms (100 requests) vs base p99 9 ms (1000 requests): ratio 11.06 > 1.5 x base and 90.5 ms above it (> 25 ms)"
        );
        let w = latencies(&[(0.8, 97), (2.0, 3)], &[(0.8, 995), (2.0, 5)]);
        let check = latency(&w, &Criteria::default());
        assert_eq!(check.verdict, Pass);
        assert!(check.reason.contains("bucket noise"), "{}", check.reason);
        let w = latencies(&[(50.8, 100)], &[(0.8, 10)]);
        let check = latency(&w, &Criteria::default());
        assert_eq!(check.base_value, None);
        assert!(
            check
                .reason
                .ends_with("judged alone (base served 10 < minRequests 100); no p99MaxMs set"),
            "{}",
            check.reason
        );
    }

    #[test]
    fn judge_combines() {
        let c = Criteria::default();
        let fast: &[(f64, u64)] = &[(0.8, 1000)];
        let slow: &[(f64, u64)] = &[(60.0, 1000)];
        let mut errors = latencies(fast, fast);
        errors.lane.errors = 200;
        let mut slow_and_few = latencies(slow, fast);
        slow_and_few.lane.requests = 50;
        let cases: &[(&str, Window, Verdict)] = &[
            ("all good", latencies(fast, fast), Pass),
            ("slow", latencies(slow, fast), Fail),
            ("errors", errors, Fail),
            ("too few", slow_and_few, Insufficient),
        ];
        for (what, w, want) in cases {
            let (verdict, checks) = judge(w, &c);
            assert_eq!(verdict, *want, "{what}: {checks:?}");
            let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["errorRate", "latency"]);
        }
        let check = |v: Verdict| {
            bound_check(
                "q",
                Some(1.0),
                match v {
                    Fail => Some(0.5),
                    _ => None,
                },
                None,
            )
        };
        let insufficient = bound_check("q", None, None, None);
        let combos: &[(&[Check], Verdict)] = &[
            (&[], Insufficient),
            (&[check(Pass)], Pass),
            (&[check(Pass), check(Fail)], Fail),
            (&[check(Pass), insufficient.clone()], Insufficient),
            (&[insufficient.clone(), check(Fail)], Fail),
        ];
        for (checks, want) in combos {
            assert_eq!(combine(checks), *want, "{checks:?}");
        }
    }

    #[test]
    fn bound_checks() {
        // (value, max, min, verdict)
        type Case = (Option<f64>, Option<f64>, Option<f64>, Verdict);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (Some(5.0), Some(10.0), None, Pass),
            (Some(10.0), Some(10.0), None, Pass),
            (Some(11.0), Some(10.0), None, Fail),
            (Some(0.5), None, Some(1.0), Fail),
            (Some(1.0), None, Some(1.0), Pass),
            (Some(5.0), Some(10.0), Some(1.0), Pass),
            (Some(f64::INFINITY), Some(10.0), None, Fail),
            (Some(3.0), None, None, Pass),
            (None, Some(1.0), None, Insufficient),
            (Some(f64::NAN), Some(1.0), None, Insufficient),
        ];
        for (value, max, min, want) in cases {
            let check = bound_check("p95 of checkout", *value, *max, *min);
            assert_eq!(
                check.verdict, *want,
                "{value:?} {max:?} {min:?}: {}",
                check.reason
            );
            assert_eq!(check.name, "p95 of checkout");
            assert!(check.reason.contains("p95 of checkout"), "{}", check.reason);
        }
        let check = bound_check("q", Some(11.0), Some(10.0), Some(1.0));
        assert_eq!(check.threshold, ">= 1 and <= 10");
        assert_eq!(check.reason, "query q = 11, not >= 1 and <= 10");
    }

    #[test]
    fn gate_table() {
        let g = Gate {
            failure_threshold: 2,
            deadline_windows: 4,
        };
        let one = Gate {
            failure_threshold: 1,
            deadline_windows: 4,
        };
        let zero = Gate {
            failure_threshold: 0,
            deadline_windows: 0,
        };
        #[rustfmt::skip]
        let cases: &[(&Gate, &[Verdict], Action)] = &[
            (&g, &[Pass], Action::Advance),
            (&g, &[Fail], Action::Extend),
            (&g, &[Fail, Fail], Action::Rollback),
            (&g, &[Fail, Insufficient, Fail], Action::Rollback),
            (&g, &[Fail, Insufficient, Insufficient, Fail], Action::Rollback),
            (&g, &[Fail, Pass], Action::Advance),
            (&g, &[Fail, Pass, Fail], Action::Extend),
            (&g, &[Pass, Fail], Action::Extend),
            (&g, &[Insufficient], Action::Extend),
            (&g, &[Insufficient, Insufficient, Insufficient], Action::Extend),
            (&g, &[Insufficient, Insufficient, Insufficient, Insufficient], Action::Pause),
            (&g, &[Insufficient, Insufficient, Insufficient, Fail], Action::Pause),
            (&g, &[Insufficient, Insufficient, Fail, Fail], Action::Rollback),
            (&g, &[Fail, Pass, Insufficient, Insufficient, Pass], Action::Advance),
            (&g, &[Fail, Insufficient, Pass, Fail, Insufficient], Action::Pause),
            (&g, &[], Action::Extend),
            (&one, &[Fail], Action::Rollback),
            (&one, &[Insufficient, Fail, Insufficient], Action::Rollback),
            (&zero, &[Fail], Action::Rollback),
            (&zero, &[Insufficient], Action::Pause),
            (&zero, &[Pass], Action::Advance),
        ];
        for (g, verdicts, want) in cases {
            assert_eq!(gate(verdicts, g), *want, "{verdicts:?} with {g:?}");
        }
    }

    #[test]
    fn binomial_upper_tail_values() {
        // (k, n, p, P(X >= k)): exact sums (rational arithmetic) or, for
        // n = 10^6, a log-space sum in double precision.
        #[rustfmt::skip]
        let cases: &[(u64, u64, f64, f64)] = &[
            (10, 100, 0.01, 7.631_587_532_260_619e-8),
            (2, 100, 0.01, 0.264_238_021_077_043_75),
            (50, 100, 0.5, 0.539_794_618_693_589_4),
            (100, 100, 0.5, 7.888_609_052_210_118e-31),
            (51, 500, 0.01, 2.453_791_655_526_574_6e-34),
            (8, 500, 0.01, 0.132_319_866_131_810_7),
            (3, 500, 0.01, 0.876_614_225_646_418_1),
            (1, 100, 0.5, 1.0 - 7.888_609_052_210_118e-31),
            (1, 1_000_000, 1e-7, 0.095_162_586_488_227_81),
            (10_000, 1_000_000, 0.01, 0.501_349_872_225_467_9),
            (10_300, 1_000_000, 0.01, 0.001_363_115_037_923_071_8),
            // Edges.
            (0, 100, 0.5, 1.0),
            (0, 0, 0.5, 1.0),
            (101, 100, 0.5, 0.0),
            (1, 0, 0.5, 0.0),
            (5, 100, 0.0, 0.0),
            (5, 100, 1.0, 1.0),
            (5, 100, -1.0, 0.0),
            (5, 100, 2.0, 1.0),
            // 80 standard deviations above the mean: below f64's range.
            (2_000_000, 10_000_000, 0.19, 0.0),
        ];
        for (k, n, p, want) in cases {
            let got = binomial_upper_tail(*k, *n, *p);
            assert!(
                close(got, *want, 1e-7),
                "P(X >= {k}; {n}, {p}) = {got}, want {want}"
            );
        }
        assert!(binomial_upper_tail(5, 100, f64::NAN).is_nan());
        // Far from the mean in either direction, and large n, stay fast and in 0..1.
        for (k, n, p) in [
            (1, u64::MAX, 0.5),
            (u64::MAX, u64::MAX, 1e-9),
            (3, 10_000_000_000, 1e-3),
        ] {
            let got = binomial_upper_tail(k, n, p);
            assert!((0.0..=1.0).contains(&got), "{k} {n} {p}: {got}");
        }
    }

    #[test]
    fn normal_survival() {
        // (z, 1 − Φ(z))
        let cases: &[(f64, f64)] = &[
            (0.0, 0.5),
            (1.0, 0.158_655_253_931_457_07),
            (1.96, 0.024_997_895_148_220_435),
            (3.0, 0.001_349_898_031_630_095_7),
            (-1.96, 0.975_002_104_851_779_5),
            (-3.0, 0.998_650_101_968_369_9),
            (6.0, 9.865_876_450_377_012e-10),
            (10.0, 7.619_853_024_160_593e-24),
            (f64::INFINITY, 0.0),
            (f64::NEG_INFINITY, 1.0),
        ];
        for (z, want) in cases {
            let got = normal_sf(*z);
            assert!(close(got, *want, 2e-7), "1 - Phi({z}) = {got}, want {want}");
        }
        assert!(normal_sf(f64::NAN).is_nan());
    }

    #[test]
    fn no_input_panics() {
        let max = u64::MAX;
        let ns = [0, 1, 9, 10, 99, 100, 101, 1000, max];
        let criteria = [
            Criteria::default(),
            Criteria {
                min_requests: 0,
                error_tolerance_pp: -5.0,
                error_confidence: 2.0,
                error_max_alone_pct: -1.0,
                p99_max_ratio: Some(0.0),
                p99_max_ms: Some(-1.0),
                p99_min_diff_ms: -1.0,
            },
            Criteria {
                min_requests: max,
                error_tolerance_pp: f64::NAN,
                error_confidence: f64::NAN,
                error_max_alone_pct: f64::INFINITY,
                p99_max_ratio: Some(f64::NAN),
                p99_max_ms: Some(f64::NAN),
                p99_min_diff_ms: f64::NAN,
            },
        ];
        let inf = f64::INFINITY;
        let hists = [
            Histogram::default(),
            hist(&[(inf, 5.0)]),
            hist(&[(1.0, f64::NAN), (inf, 3.0)]),
            hist(&[(1.0, 5.0), (inf, -3.0)]),
            observed(&[(0.8, 1000)]),
        ];
        for c in &criteria {
            for &nl in &ns {
                for el in [0, 1, 10, nl / 2, nl, max] {
                    for &nb in &ns {
                        for eb in [0, 10, nb / 2, nb] {
                            let w = Window {
                                lane: Sample {
                                    requests: nl,
                                    errors: el,
                                    latency: Histogram::default(),
                                },
                                base: Sample {
                                    requests: nb,
                                    errors: eb,
                                    latency: Histogram::default(),
                                },
                                insufficient: vec![],
                            };
                            let check = error_rate(&w, c);
                            assert!(!check.reason.is_empty());
                        }
                    }
                }
            }
            for lane in &hists {
                for base in &hists {
                    for &nl in &[0, 100, max] {
                        let w = Window {
                            lane: Sample {
                                requests: nl,
                                errors: 0,
                                latency: lane.clone(),
                            },
                            base: Sample {
                                requests: 1000,
                                errors: 0,
                                latency: base.clone(),
                            },
                            insufficient: vec![],
                        };
                        let (_, checks) = judge(&w, c);
                        assert!(checks.iter().all(|c| !c.reason.is_empty()));
                    }
                }
            }
        }
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
        assert_eq!(pval(2.4538e-34), "2.5e-34");
        assert_eq!(pval(3e-40), "3e-40");
        assert_eq!(pval(1.0 - 0.99), "0.01");
        assert_eq!(pval(0.264_238), "0.2642");
    }
}
