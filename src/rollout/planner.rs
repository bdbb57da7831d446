//! `graylane rollout plan PLAN [--rps N]` (docs/rollout.md "Planning a
//! rollout"): per step, how many lane requests (and how long) a version as
//! good as base needs to pass, and a version worse by 2t to be rolled
//! back, worked out with the real decision code ([`analysis::judge`]) on
//! the counts expected at each window end.

use super::analysis::{self, Criteria, Histogram, Sample, Verdict, Window};
use super::plan::Plan;
use super::sequential;
use serde::Serialize;

/// Lane requests are tried up to this many per step.
const LIMIT: u64 = 50_000_000;

/// Every request answered in 1 ms (Envoy's bucket bounds): a version as
/// fast as base, for the latency check.
fn fast(n: u64) -> Histogram {
    let n = n as f64;
    Histogram {
        buckets: vec![(0.5, 0.0), (1.0, n), (5.0, n), (f64::INFINITY, n)],
    }
}

fn sample(n: u64, rate: f64) -> Sample {
    Sample {
        requests: n,
        errors: (rate * n as f64).round() as u64,
        latency: fast(n),
    }
}

/// The step's window after `lane` lane requests at `percent`, with the
/// expected errors; base recorded from a previous step when at 100 %.
fn expected(
    lane: u64,
    percent: f64,
    base_rate: f64,
    lane_rate: f64,
    recorded: Option<u64>,
) -> Window {
    let base = if percent >= 100.0 {
        0
    } else {
        (lane as f64 * (100.0 - percent) / percent).round() as u64
    };
    Window {
        lane: sample(lane, lane_rate),
        base: sample(base, base_rate),
        percent,
        recorded_base: recorded.map(|n| sample(n, base_rate)),
        insufficient: Vec::new(),
    }
}

/// Lane requests for a version as good as base (5xx share `base_rate`) to
/// pass a step at `percent`; `recorded`: base requests recorded earlier
/// (for 100 %); checked every `per_window` lane requests.
pub fn requests_to_pass(
    c: &Criteria,
    base_rate: f64,
    percent: f64,
    recorded: Option<u64>,
    per_window: u64,
) -> Option<u64> {
    sequential::requests_until(per_window.max(1), LIMIT, |n| {
        n >= c.min_requests
            && analysis::judge(&expected(n, percent, base_rate, base_rate, recorded), c).0
                == Verdict::Pass
    })
}

/// Lane requests for a version with 5xx share `lane_rate` to be rolled
/// back at `percent` (`recorded`: as for [`requests_to_pass`]): its
/// evidence past the fail boundary, then `failure_threshold − 1` more
/// window ends.
pub fn requests_to_fail(
    c: &Criteria,
    (base_rate, lane_rate): (f64, f64),
    percent: f64,
    recorded: Option<u64>,
    per_window: u64,
    failure_threshold: u32,
) -> Option<u64> {
    let per_window = per_window.max(1);
    let first = sequential::requests_until(per_window, LIMIT, |n| {
        n >= c.min_requests
            && analysis::error_rate(&expected(n, percent, base_rate, lane_rate, recorded), c)
                .verdict
                == Verdict::Fail
    })?;
    Some(first + per_window * u64::from(failure_threshold.max(1) - 1))
}

/// One step of the plan, worked out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPlan {
    pub step: usize,
    pub percent: f64,
    /// Lane requests and seconds for a version as good as base to pass.
    pub pass_requests: Option<u64>,
    pub pass_seconds: Option<f64>,
    /// Lane requests and seconds for a version worse by 2t to be rolled back.
    pub rollback_requests: Option<u64>,
    pub rollback_seconds: Option<f64>,
    /// Set when the step cannot pass before its deadline.
    pub warning: Option<String>,
}

/// The plan's steps at `rps` requests per second (all versions) and a base
/// 5xx share of `base_rate`.
pub fn plan_steps(plan: &Plan, rps: f64, base_rate: f64) -> Vec<StepPlan> {
    let c = &plan.criteria;
    let interval = plan.interval.as_secs_f64();
    let deadline = plan.deadline.as_secs_f64();
    let worse = (base_rate + 2.0 * c.error_tolerance_pp / 100.0).min(1.0);
    let mut recorded: Option<u64> = None;
    let mut out = Vec::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let lane_rps = rps * s.percent / 100.0;
        let per_window = (lane_rps * interval).round().max(1.0) as u64;
        let pass = requests_to_pass(c, base_rate, s.percent, recorded, per_window);
        let rollback = requests_to_fail(
            c,
            (base_rate, worse),
            s.percent,
            recorded,
            per_window,
            plan.failure_threshold,
        );
        let seconds = |n: Option<u64>| {
            n.filter(|_| lane_rps > 0.0)
                .map(|n| (n as f64 / lane_rps / interval).ceil().max(1.0) * interval)
        };
        let (pass_seconds, rollback_seconds) = (seconds(pass), seconds(rollback));
        let warning = match pass_seconds {
            Some(t) if t <= deadline => None,
            Some(t) => Some(format!(
                "step {} cannot pass before its deadline ({} s needed, deadline {} s): raise \
                 deadline or tolerance, or lower passConfidence",
                i + 1,
                analysis::num(t),
                analysis::num(deadline)
            )),
            None => Some(format!("step {} cannot pass at this traffic", i + 1)),
        };
        if s.percent < 100.0 {
            let base_per_lane = (100.0 - s.percent) / s.percent;
            recorded = pass.map(|n| (n as f64 * base_per_lane).round() as u64);
        }
        out.push(StepPlan {
            step: i + 1,
            percent: s.percent,
            pass_requests: pass,
            pass_seconds,
            rollback_requests: rollback,
            rollback_seconds,
            warning,
        });
    }
    out
}

/// The planner's table, as printed by `graylane rollout plan` and at the
/// start of a rollout.
pub fn table(plan: &Plan, rps: f64, base_rate: f64, steps: &[StepPlan]) -> String {
    let c = &plan.criteria;
    let mut out = format!(
        "planned at {} req/s, base 5xx {} %, tolerance {} pp, confidence {} (rollback, whole rollout) / {} (pass, per step):\n",
        analysis::num(rps),
        analysis::num(base_rate * 100.0),
        analysis::num(c.error_tolerance_pp),
        analysis::num(c.error_confidence),
        analysis::num(c.pass_confidence),
    );
    out.push_str(&format!(
        "{:>5} {:>8} | {:>22} | {:>30}\n",
        "step", "percent", "as good as base: pass", "worse by 2t: rolled back"
    ));
    let cell = |n: Option<u64>, t: Option<f64>| match (n, t) {
        (Some(n), Some(t)) => format!("{n} req, {} s", analysis::num(t)),
        (Some(n), None) => format!("{n} req"),
        _ => "never".to_string(),
    };
    for s in steps {
        out.push_str(&format!(
            "{:>5} {:>7} % | {:>22} | {:>30}\n",
            s.step,
            s.percent,
            cell(s.pass_requests, s.pass_seconds),
            cell(s.rollback_requests, s.rollback_seconds)
        ));
    }
    for s in steps {
        if let Some(w) = &s.warning {
            out.push_str(&format!("warning: {w}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The planner's answer is where the real check flips: one window
    /// earlier it has not.
    #[test]
    fn requests_to_pass_is_where_the_check_flips() {
        let c = Criteria::default();
        let n = requests_to_pass(&c, 0.015, 10.0, None, 100).unwrap();
        assert_eq!(n % 100, 0);
        let at = |n| analysis::judge(&expected(n, 10.0, 0.015, 0.015, None), &c).0;
        assert_eq!(at(n), Verdict::Pass);
        assert_ne!(at(n - 100), Verdict::Pass);
        // Fewer errors pass sooner; a larger tolerance too.
        assert!(requests_to_pass(&c, 0.0, 10.0, None, 100).unwrap() < n);
        let loose = Criteria {
            error_tolerance_pp: 2.0,
            ..Criteria::default()
        };
        assert!(requests_to_pass(&loose, 0.015, 10.0, None, 100).unwrap() < n);
        // At 100 % without a recorded base: the 1 % default rejects 1.5 %.
        assert_eq!(requests_to_pass(&c, 0.015, 100.0, None, 100), None);
        assert!(requests_to_pass(&c, 0.015, 100.0, Some(90_000), 100).is_some());
    }

    #[test]
    fn requests_to_fail_adds_the_failure_threshold() {
        let c = Criteria::default();
        let one = requests_to_fail(&c, (0.015, 0.035), 10.0, None, 100, 1).unwrap();
        let two = requests_to_fail(&c, (0.015, 0.035), 10.0, None, 100, 2).unwrap();
        assert_eq!(two, one + 100);
        let v = analysis::error_rate(&expected(one, 10.0, 0.015, 0.035, None), &c).verdict;
        assert_eq!(v, Verdict::Fail);
        // A version as good as base is never rolled back by expected counts.
        assert_eq!(
            requests_to_fail(&c, (0.015, 0.015), 10.0, None, 1000, 2),
            None
        );
    }
}
