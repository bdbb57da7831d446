//! The canary analysis (README "Staged rollout", "How a window is
//! judged"): pure functions from one window's numbers to verdicts. Nothing
//! here knows of HTTP, files or clocks, so every verdict is pinned by a
//! table-driven test.
//!
//! **Error rate.** p_L = 5xx_L / n_L, p_B = 5xx_B / n_B. Fewer than
//! `min_requests` lane requests: insufficient data. With base (n_B at
//! least `min_requests`), the check fails only when p_L − p_B exceeds the
//! tolerance `t` **and** the excess is significant at `confidence`,
//! one-sided, against H0: p_L − p_B ≤ t:
//! - small counts (fewer than 10 errors or successes on either side):
//!   exact binomial tail of the lane's errors against p0 = min(1, p_B + t),
//!   p = P(X ≥ 5xx_L), X ~ Binomial(n_L, p0);
//! - otherwise the two-proportion z statistic with unpooled variance,
//!   z = (p_L − p_B − t) / sqrt(p_L(1−p_L)/n_L + p_B(1−p_B)/n_B),
//!   p = 1 − Φ(z).
//!
//! Judged alone (base below `min_requests`, e.g. at 100 %): fails when p_L
//! exceeds `error_max_alone_pct` and the binomial tail against that share
//! is significant.
//!
//! **Latency.** p99 of each version from the window's histogram buckets,
//! interpolated as Prometheus' `histogram_quantile` does. Fails when the
//! lane's p99 exceeds `p99_max_ratio` × base's **and** base's by more than
//! `p99_min_diff_ms` (default 25: Envoy's default buckets are 0.5, 1, 5,
//! 10, 25, 50 ms wide, and the p99 of a window's few hundred lane requests
//! is nearly its maximum, so smaller differences are noise), or exceeds
//! `p99_max_ms`.
//!
//! **Gating.** Rollback after `failure_threshold` failed windows in a row
//! (an insufficient window neither counts nor breaks the run; a pass
//! resets it); advance on a passing window; otherwise extend the step, and
//! pause once the step has had `deadline_windows` windows.

use serde::{Deserialize, Serialize};

/// Cumulative histogram buckets over one window: (upper bound `le` in ms,
/// cumulative count), ascending, the last one `+Inf`. May be empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The number of observations (the `+Inf` bucket).
    pub fn count(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b.1)
            .fold(0.0, |a, b| if b.is_finite() { a.max(b) } else { a })
    }
}

/// What one version (its upstream clusters) served in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub requests: u64,
    /// 5xx answers.
    pub errors: u64,
    pub latency: Histogram,
}

/// One window's numbers. `insufficient`: reasons known beforehand that the
/// data cannot be trusted (the metrics source failed, a counter reset);
/// then every check is insufficient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub lane: Sample,
    pub base: Sample,
    pub insufficient: Vec<String>,
}

/// The thresholds of the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub min_requests: u64,
    /// Percentage points the lane's 5xx share may exceed base's.
    pub error_tolerance_pp: f64,
    pub error_confidence: f64,
    /// Lane judged alone: highest 5xx share, in percent.
    pub error_max_alone_pct: f64,
    pub p99_max_ratio: Option<f64>,
    pub p99_max_ms: Option<f64>,
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

/// One check's result with every number behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `errorRate`, `latency`, or a query's name.
    pub name: String,
    pub verdict: Verdict,
    /// 5xx share in percent, p99 in ms, a query's value.
    pub lane_value: Option<f64>,
    pub base_value: Option<f64>,
    pub threshold: String,
    pub lane_requests: u64,
    pub base_requests: u64,
    pub p_value: Option<f64>,
    pub method: Option<String>,
    /// Why this verdict, with the numbers.
    pub reason: String,
}

impl Check {
    fn new(name: &str, w: &Window, threshold: String) -> Check {
        Check {
            name: name.into(),
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

    fn set(mut self, verdict: Verdict, reason: String) -> Check {
        self.verdict = verdict;
        self.reason = reason;
        self
    }
}

/// The error-rate and latency checks of a window, and their verdict.
pub fn judge(window: &Window, criteria: &Criteria) -> (Verdict, Vec<Check>) {
    let checks = vec![error_rate(window, criteria), latency(window, criteria)];
    (combine(&checks), checks)
}

/// Any failure fails the window; else any insufficient check makes it
/// insufficient; else it passes.
pub fn combine(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.is_empty() || checks.iter().any(|c| c.verdict == Verdict::Insufficient) {
        Verdict::Insufficient
    } else {
        Verdict::Pass
    }
}

fn share(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// The 5xx check.
pub fn error_rate(w: &Window, c: &Criteria) -> Check {
    let (nl, el, nb, eb) = (
        w.lane.requests,
        w.lane.errors.min(w.lane.requests),
        w.base.requests,
        w.base.errors.min(w.base.requests),
    );
    let alpha = 1.0 - c.error_confidence;
    let alone = nb < c.min_requests;
    let threshold = if alone {
        format!(
            "lane 5xx <= {} % (judged alone) at {} %",
            c.error_max_alone_pct,
            c.error_confidence * 100.0
        )
    } else {
        format!(
            "lane − base <= {} pp at {} %",
            c.error_tolerance_pp,
            c.error_confidence * 100.0
        )
    };
    let mut check = Check::new("errorRate", w, threshold);
    if !w.insufficient.is_empty() {
        let why = w.insufficient.join("; ");
        return check.set(Verdict::Insufficient, why);
    }
    let pl = share(el, nl);
    check.lane_value = (nl > 0).then_some(pl * 100.0);
    if nl < c.min_requests {
        let reason = format!(
            "lane served {nl} requests, fewer than minRequests {}",
            c.min_requests
        );
        return check.set(Verdict::Insufficient, reason);
    }
    if alone {
        let p0 = (c.error_max_alone_pct / 100.0).clamp(0.0, 1.0);
        let p = binomial_upper_tail(el, nl, p0);
        check.p_value = Some(p);
        check.method = Some("binomial exact".into());
        let over = pl * 100.0 > c.error_max_alone_pct;
        let verdict = if over && p < alpha {
            Verdict::Fail
        } else {
            Verdict::Pass
        };
        let reason = format!(
            "lane 5xx {:.2} % ({el}/{nl}), judged alone (base served {nb} < {}): {} {} % max, p = {} {} {} (binomial exact)",
            pl * 100.0,
            c.min_requests,
            if over { ">" } else { "<=" },
            c.error_max_alone_pct,
            fmt_p(p),
            if p < alpha { "<" } else { ">=" },
            fmt_p(alpha)
        );
        return check.set(verdict, reason);
    }
    let pb = share(eb, nb);
    check.base_value = Some(pb * 100.0);
    let tol = c.error_tolerance_pp / 100.0;
    let diff = pl - pb;
    let small = el < 10 || eb < 10 || nl - el < 10 || nb - eb < 10;
    let (p, method) = if small {
        (
            binomial_upper_tail(el, nl, (pb + tol).min(1.0)),
            "binomial exact",
        )
    } else {
        let var = pl * (1.0 - pl) / nl as f64 + pb * (1.0 - pb) / nb as f64;
        let p = if var > 0.0 {
            normal_sf((diff - tol) / var.sqrt())
        } else if diff > tol {
            0.0
        } else {
            1.0
        };
        (p, "two-proportion z")
    };
    check.p_value = Some(p);
    check.method = Some(method.into());
    let over = diff * 100.0 > c.error_tolerance_pp;
    let verdict = if over && p < alpha {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let reason = format!(
        "lane 5xx {:.2} % ({el}/{nl}) vs base {:.2} % ({eb}/{nb}): {:+.2} pp {} {} pp, p = {} {} {} ({method})",
        pl * 100.0,
        pb * 100.0,
        diff * 100.0,
        if over { ">" } else { "<=" },
        c.error_tolerance_pp,
        fmt_p(p),
        if p < alpha { "<" } else { ">=" },
        fmt_p(alpha)
    );
    check.set(verdict, reason)
}

/// The p99 check.
pub fn latency(w: &Window, c: &Criteria) -> Check {
    let mut parts = Vec::new();
    if let Some(r) = c.p99_max_ratio {
        parts.push(format!(
            "p99 <= {r} × base (or within {} ms of it)",
            c.p99_min_diff_ms
        ));
    }
    if let Some(m) = c.p99_max_ms {
        parts.push(format!("p99 <= {m} ms"));
    }
    let threshold = if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" and ")
    };
    let mut check = Check::new("latency", w, threshold);
    if !w.insufficient.is_empty() {
        let why = w.insufficient.join("; ");
        return check.set(Verdict::Insufficient, why);
    }
    let nl = w.lane.requests;
    if nl < c.min_requests {
        let reason = format!(
            "lane served {nl} requests, fewer than minRequests {}",
            c.min_requests
        );
        return check.set(Verdict::Insufficient, reason);
    }
    let Some(lane_p99) = histogram_quantile(0.99, &w.lane.latency) else {
        return check.set(
            Verdict::Insufficient,
            "no lane latency in this window's histograms (Envoy updates them at each stats flush: set stats_flush_interval well below the interval)".into(),
        );
    };
    check.lane_value = Some(lane_p99);
    let base_p99 = if w.base.requests >= c.min_requests {
        histogram_quantile(0.99, &w.base.latency)
    } else {
        None
    };
    check.base_value = base_p99;
    if let Some(max) = c.p99_max_ms {
        if lane_p99 > max {
            let reason = format!("lane p99 {lane_p99:.1} ms ({nl} requests) > {max} ms");
            return check.set(Verdict::Fail, reason);
        }
    }
    let Some(base_p99) = base_p99 else {
        let reason = match c.p99_max_ms {
            Some(max) => format!("lane p99 {lane_p99:.1} ms ({nl} requests) <= {max} ms, judged alone (base served {})", w.base.requests),
            None => format!("lane p99 {lane_p99:.1} ms ({nl} requests), judged alone (base served {}); no p99MaxMs set", w.base.requests),
        };
        return check.set(Verdict::Pass, reason);
    };
    let nb = w.base.requests;
    if let Some(ratio) = c.p99_max_ratio {
        let over_ratio = lane_p99 > ratio * base_p99;
        let over_diff = lane_p99 - base_p99 > c.p99_min_diff_ms;
        if over_ratio && over_diff {
            let reason = format!(
                "lane p99 {lane_p99:.1} ms ({nl} requests) > {ratio} × base p99 {base_p99:.1} ms ({nb} requests), {:.1} ms above it",
                lane_p99 - base_p99
            );
            return check.set(Verdict::Fail, reason);
        }
        let reason = format!(
            "lane p99 {lane_p99:.1} ms ({nl} requests) vs base p99 {base_p99:.1} ms ({nb} requests): ratio {:.2}{}",
            if base_p99 > 0.0 { lane_p99 / base_p99 } else { f64::INFINITY },
            if over_ratio { format!(", but within {} ms", c.p99_min_diff_ms) } else { format!(" <= {ratio}") }
        );
        return check.set(Verdict::Pass, reason);
    }
    let reason = format!("lane p99 {lane_p99:.1} ms, base p99 {base_p99:.1} ms");
    check.set(Verdict::Pass, reason)
}

/// An extra check on one value (a Prometheus query's result). `None`: the
/// query returned nothing, insufficient data.
pub fn bound_check(name: &str, value: Option<f64>, max: Option<f64>, min: Option<f64>) -> Check {
    let mut bounds = Vec::new();
    if let Some(m) = min {
        bounds.push(format!(">= {m}"));
    }
    if let Some(m) = max {
        bounds.push(format!("<= {m}"));
    }
    let threshold = bounds.join(" and ");
    let mut check = Check {
        name: name.into(),
        verdict: Verdict::Insufficient,
        lane_value: value,
        base_value: None,
        threshold: threshold.clone(),
        lane_requests: 0,
        base_requests: 0,
        p_value: None,
        method: Some("query".into()),
        reason: String::new(),
    };
    let Some(v) = value.filter(|v| v.is_finite()) else {
        check.reason = "the query returned no value".into();
        return check;
    };
    let low = min.is_some_and(|m| v < m);
    let high = max.is_some_and(|m| v > m);
    check.verdict = if low || high {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    check.reason = format!(
        "{v} {} {threshold}",
        if low || high { "is not" } else { "is" }
    );
    check
}

/// The q-quantile (0..1) of cumulative buckets, as Prometheus'
/// `histogram_quantile`: linear interpolation inside the bucket the rank
/// falls in, 0 as the lower bound of the first bucket, the last finite
/// upper bound for a rank in the `+Inf` bucket. `None` without
/// observations.
pub fn histogram_quantile(q: f64, h: &Histogram) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || h.buckets.is_empty() {
        return None;
    }
    let mut buckets = h.buckets.clone();
    buckets.retain(|b| !b.0.is_nan() && b.1.is_finite());
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Counts must not go down; Prometheus fixes that up the same way.
    let mut max = 0.0f64;
    for b in &mut buckets {
        max = max.max(b.1);
        b.1 = max;
    }
    let last = buckets.last()?;
    if last.0 != f64::INFINITY {
        return None;
    }
    let total = last.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = buckets.iter().position(|b| b.1 >= rank)?;
    let (upper, count) = *buckets.get(i)?;
    if upper == f64::INFINITY {
        return buckets
            .len()
            .checked_sub(2)
            .and_then(|j| buckets.get(j))
            .map(|b| b.0);
    }
    let (lower, below) = match i.checked_sub(1).and_then(|j| buckets.get(j)) {
        Some(prev) => *prev,
        None if upper <= 0.0 => return Some(upper),
        None => (0.0, 0.0),
    };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / in_bucket)
}

/// ln Γ(x) (Lanczos, g = 7, n = 9), for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// P(X ≥ k) for X ~ Binomial(n, p), summed in log space from the mode
/// outwards so it stays accurate for n in the millions.
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let term = |i: u64| (ln_choose(n, i) + i as f64 * lp + (n - i) as f64 * lq).exp();
    // Sum the smaller side, stopping once terms no longer matter.
    let mean = n as f64 * p;
    let upper_side = k as f64 > mean;
    let mut sum = 0.0;
    if upper_side {
        let mut i = k;
        while i <= n {
            let t = term(i);
            sum += t;
            if t < sum * 1e-17 && i as f64 > mean {
                break;
            }
            i += 1;
        }
        sum.min(1.0)
    } else {
        // 1 − P(X ≤ k − 1).
        let mut i = k - 1;
        loop {
            let t = term(i);
            sum += t;
            if (t < sum * 1e-17 && (i as f64) < mean) || i == 0 {
                break;
            }
            i -= 1;
        }
        (1.0 - sum).clamp(0.0, 1.0)
    }
}

/// erfc(x), W. J. Cody's rational approximations as in Numerical Recipes'
/// `erfcc` (fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// 1 − Φ(z), the standard normal survival function.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// How a step is gated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub failure_threshold: u32,
    /// Windows after which a step that has not passed pauses.
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

/// What to do after a step's windows so far (oldest first).
pub fn gate(verdicts: &[Verdict], g: &Gate) -> Action {
    let mut run = 0u32;
    for v in verdicts.iter().rev() {
        match v {
            Verdict::Fail => run += 1,
            Verdict::Insufficient => {}
            Verdict::Pass => break,
        }
    }
    if run >= g.failure_threshold.max(1) {
        return Action::Rollback;
    }
    match verdicts.last() {
        Some(Verdict::Pass) => Action::Advance,
        _ if verdicts.len() >= g.deadline_windows as usize => Action::Pause,
        _ => Action::Extend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: pairs.to_vec(),
        }
    }

    /// Envoy's default buckets with `n` observations spread as given:
    /// (upper bound, observations in that bucket).
    fn envoy_hist(spread: &[(f64, f64)]) -> Histogram {
        let bounds = [
            0.5,
            1.0,
            5.0,
            10.0,
            25.0,
            50.0,
            100.0,
            250.0,
            500.0,
            1000.0,
            f64::INFINITY,
        ];
        let mut cum = 0.0;
        hist(
            &bounds
                .iter()
                .map(|b| {
                    cum += spread
                        .iter()
                        .filter(|s| s.0 == *b)
                        .map(|s| s.1)
                        .sum::<f64>();
                    (*b, cum)
                })
                .collect::<Vec<_>>(),
        )
    }

    fn sample(requests: u64, errors: u64, latency: Histogram) -> Sample {
        Sample {
            requests,
            errors,
            latency,
        }
    }

    fn window(lane: (u64, u64), base: (u64, u64)) -> Window {
        Window {
            lane: sample(lane.0, lane.1, envoy_hist(&[(1.0, lane.0 as f64)])),
            base: sample(base.0, base.1, envoy_hist(&[(1.0, base.0 as f64)])),
            insufficient: vec![],
        }
    }

    #[test]
    fn error_rate_table() {
        let c = Criteria::default();
        // (lane n, lane 5xx, base n, base 5xx, verdict, method)
        type Case = (u64, u64, u64, u64, Verdict, Option<&'static str>);
        let cases: &[Case] = &[
            (0, 0, 0, 0, Verdict::Insufficient, None),
            (99, 50, 5000, 0, Verdict::Insufficient, None),
            (100, 10, 5000, 0, Verdict::Fail, Some("binomial exact")),
            (100, 2, 5000, 0, Verdict::Pass, Some("binomial exact")),
            (100, 0, 5000, 0, Verdict::Pass, Some("binomial exact")),
            // 1.5 pp above base: over the tolerance, not significant on 200.
            (200, 4, 10000, 50, Verdict::Pass, Some("binomial exact")),
            // Large counts, 10 % vs 1 %: z test, fails.
            (
                2000,
                200,
                20000,
                200,
                Verdict::Fail,
                Some("two-proportion z"),
            ),
            // Large counts, 1.5 % vs 1 %: within significance? 0.5 pp < 1 pp tolerance.
            (
                2000,
                30,
                20000,
                200,
                Verdict::Pass,
                Some("two-proportion z"),
            ),
            // Exactly at the tolerance: not over.
            (
                10000,
                200,
                10000,
                100,
                Verdict::Pass,
                Some("two-proportion z"),
            ),
            // Base judged alone (fewer than minRequests): 10 % > 1 %.
            (500, 50, 10, 0, Verdict::Fail, Some("binomial exact")),
            (500, 3, 10, 0, Verdict::Pass, Some("binomial exact")),
        ];
        for &(nl, el, nb, eb, want, method) in cases {
            let check = error_rate(&window((nl, el), (nb, eb)), &c);
            assert_eq!(
                check.verdict, want,
                "{nl}/{el} vs {nb}/{eb}: {}",
                check.reason
            );
            assert_eq!(check.method.as_deref(), method, "{nl}/{el} vs {nb}/{eb}");
            assert!(!check.reason.is_empty());
        }
    }

    #[test]
    fn reasons_carry_the_numbers() {
        let check = error_rate(&window((500, 51), (4500, 0)), &Criteria::default());
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.reason.contains("(51/500)"), "{}", check.reason);
        assert!(check.reason.contains("(0/4500)"), "{}", check.reason);
        assert!(check.reason.contains("1 pp"), "{}", check.reason);
        assert_eq!(check.lane_requests, 500);
        assert_eq!(check.base_requests, 4500);
        assert!(check.p_value.is_some_and(|p| p < 1e-10));
    }

    #[test]
    fn known_insufficiency_wins() {
        let mut w = window((5000, 2500), (5000, 0));
        w.insufficient.push("metrics source failed".into());
        let (verdict, checks) = judge(&w, &Criteria::default());
        assert_eq!(verdict, Verdict::Insufficient);
        assert!(checks
            .iter()
            .all(|c| c.reason.contains("metrics source failed")));
    }

    #[test]
    fn histogram_quantile_as_prometheus() {
        let h = hist(&[
            (0.5, 0.0),
            (1.0, 50.0),
            (5.0, 100.0),
            (f64::INFINITY, 100.0),
        ]);
        // rank 99 falls in (1, 5]: 1 + 4 × (99 − 50) / 50.
        let v = histogram_quantile(0.99, &h).expect("value");
        assert!((v - 4.92).abs() < 1e-9, "{v}");
        // rank 25 in (0.5, 1].
        let v = histogram_quantile(0.25, &h).expect("value");
        assert!((v - 0.75).abs() < 1e-9, "{v}");
        // First bucket: from 0.
        let h2 = hist(&[(10.0, 100.0), (f64::INFINITY, 100.0)]);
        assert_eq!(histogram_quantile(0.5, &h2), Some(5.0));
        // In the +Inf bucket: the last finite bound.
        let h3 = hist(&[(1.0, 10.0), (5.0, 20.0), (f64::INFINITY, 100.0)]);
        assert_eq!(histogram_quantile(0.99, &h3), Some(5.0));
        // Empty, no +Inf, bad q.
        assert_eq!(histogram_quantile(0.99, &Histogram::default()), None);
        assert_eq!(
            histogram_quantile(0.99, &hist(&[(1.0, 0.0), (f64::INFINITY, 0.0)])),
            None
        );
        assert_eq!(histogram_quantile(0.99, &hist(&[(1.0, 5.0)])), None);
        assert_eq!(histogram_quantile(1.5, &h), None);
        // Non-monotonic counts are fixed up.
        let h4 = hist(&[(1.0, 60.0), (5.0, 50.0), (f64::INFINITY, 100.0)]);
        assert_eq!(histogram_quantile(0.5, &h4), Some(1.0 * 50.0 / 60.0));
    }

    #[test]
    fn latency_table() {
        let c = Criteria::default();
        let fast = envoy_hist(&[(0.5, 900.0), (1.0, 95.0), (5.0, 5.0)]);
        // Healthy: a few more lane requests in the 1-5 ms bucket (noise).
        let noisy = envoy_hist(&[(0.5, 80.0), (1.0, 15.0), (5.0, 5.0)]);
        // Slow: 50 ms added.
        let slow = envoy_hist(&[(100.0, 100.0)]);
        let cases: &[(&Histogram, u64, &Histogram, u64, Verdict)] = &[
            (&noisy, 100, &fast, 1000, Verdict::Pass),
            (&slow, 100, &fast, 1000, Verdict::Fail),
            (&fast, 1000, &fast, 1000, Verdict::Pass),
            (&slow, 99, &fast, 1000, Verdict::Insufficient),
            (
                &Histogram::default(),
                100,
                &fast,
                1000,
                Verdict::Insufficient,
            ),
            // Judged alone without p99MaxMs: pass.
            (&slow, 100, &fast, 10, Verdict::Pass),
        ];
        for (lane, nl, base, nb, want) in cases {
            let w = Window {
                lane: sample(*nl, 0, (*lane).clone()),
                base: sample(*nb, 0, (*base).clone()),
                insufficient: vec![],
            };
            let check = latency(&w, &c);
            assert_eq!(check.verdict, *want, "{}", check.reason);
        }
        // p99MaxMs applies alone and with base.
        let c = Criteria {
            p99_max_ms: Some(20.0),
            ..Criteria::default()
        };
        let w = Window {
            lane: sample(100, 0, slow.clone()),
            base: sample(10, 0, fast.clone()),
            insufficient: vec![],
        };
        let check = latency(&w, &c);
        assert_eq!(check.verdict, Verdict::Fail, "{}", check.reason);
        assert!(check.lane_value.is_some_and(|v| v > 50.0));
    }

    #[test]
    fn bound_checks() {
        assert_eq!(
            bound_check("q", Some(5.0), Some(10.0), None).verdict,
            Verdict::Pass
        );
        assert_eq!(
            bound_check("q", Some(11.0), Some(10.0), None).verdict,
            Verdict::Fail
        );
        assert_eq!(
            bound_check("q", Some(0.5), None, Some(1.0)).verdict,
            Verdict::Fail
        );
        assert_eq!(
            bound_check("q", None, Some(1.0), None).verdict,
            Verdict::Insufficient
        );
        assert_eq!(
            bound_check("q", Some(f64::NAN), Some(1.0), None).verdict,
            Verdict::Insufficient
        );
    }

    #[test]
    fn gate_table() {
        use Verdict::{Fail as F, Insufficient as I, Pass as P};
        let g = Gate {
            failure_threshold: 2,
            deadline_windows: 4,
        };
        let cases: &[(&[Verdict], Action)] = &[
            (&[P], Action::Advance),
            (&[F], Action::Extend),
            (&[F, F], Action::Rollback),
            (&[F, I, F], Action::Rollback),
            (&[F, P], Action::Advance),
            (&[F, P, F], Action::Extend),
            (&[I], Action::Extend),
            (&[I, I, I, I], Action::Pause),
            (&[I, I, I, F], Action::Pause),
            (&[I, I, F, F], Action::Rollback),
            (&[], Action::Extend),
        ];
        for (verdicts, want) in cases {
            assert_eq!(gate(verdicts, &g), *want, "{verdicts:?}");
        }
    }

    #[test]
    fn binomial_and_normal_tails() {
        let close = |a: f64, b: f64, rel: f64| (a - b).abs() <= rel * b.abs().max(1e-300);
        assert!(close(
            binomial_upper_tail(2, 100, 0.01),
            0.264_238_021,
            1e-6
        ));
        assert!(
            close(binomial_upper_tail(10, 100, 0.01), 7.631_233e-8, 1e-4),
            "{}",
            binomial_upper_tail(10, 100, 0.01)
        );
        assert_eq!(binomial_upper_tail(0, 100, 0.5), 1.0);
        assert_eq!(binomial_upper_tail(101, 100, 0.5), 0.0);
        assert!(close(
            binomial_upper_tail(50, 100, 0.5),
            0.539_794_618,
            1e-6
        ));
        // Large n stays finite and sensible.
        let p = binomial_upper_tail(10_300, 1_000_000, 0.01);
        assert!(p > 0.0 && p < 0.01, "{p}");
        assert!(close(normal_sf(0.0), 0.5, 1e-6));
        assert!(close(normal_sf(1.96), 0.024_997_895, 1e-5));
        assert!(close(normal_sf(3.0), 0.001_349_898, 1e-5));
        assert!(close(normal_sf(-1.96), 0.975_002_105, 1e-6));
    }
}
