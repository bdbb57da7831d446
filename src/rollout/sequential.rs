//! Anytime-valid confidence sequences for a share (a 5xx share, a share of
//! slow requests): the maths of docs/rollout.md "How a step is judged",
//! and nothing else.
//!
//! **Method: Robbins' beta-binomial mixture.** For one stream of requests
//! with S "bad" answers in n, and the mixing distribution Beta(a, b), the
//! mixture likelihood ratio against a share p0 is
//!
//! M_n(p0) = [B(a + S, b + n − S) / B(a, b)] / [p0^S (1 − p0)^(n − S)],
//!
//! a nonnegative martingale with mean 1 when the true share is p0. By
//! Ville's inequality P(M_n(p0) ≥ 1/α for some n) ≤ α, so the set
//! {p0 : M_n(p0) < 1/α} is a (1 − α) confidence sequence: it holds the true
//! share at every n at once, and may be looked at after every window
//! without raising the error rate. It is exact (no normal approximation)
//! and well behaved at S = 0, the usual case for a healthy service.
//!
//! The mixing distribution is Beta(1/2, 50) (mean 1 %): most of its weight
//! sits on the small shares of real services, where it is tightest, and
//! it still has weight up to 100 %.
//!
//! **A difference of two shares** (lane L, base B) splits α between them:
//! with both sequences at α/2,
//! LCB(p_L − p_B) = LCB(p_L) − UCB(p_B) and UCB(p_L − p_B) = UCB(p_L) −
//! LCB(p_B) hold together with probability at least 1 − α, at every n.
//! Both bounds rise with the lane's bad answers, so a verdict drawn from
//! them is monotone in them.
//!
//! **Clustering.** Requests of one user are not independent (a user who
//! hits a bug retries). A design effect `inflation` ≥ 1 divides S and n
//! before the bounds are taken (an effective sample size), which widens
//! them by about √inflation.

/// The mixing distribution Beta(a, b).
pub const PRIOR_A: f64 = 0.5;
pub const PRIOR_B: f64 = 50.0;

/// Bisection steps: the bounds are exact to 2^-60 of their range.
const STEPS: u32 = 60;

fn ln_beta(x: f64, y: f64) -> f64 {
    libm::lgamma(x) + libm::lgamma(y) - libm::lgamma(x + y)
}

/// ln M_n(p0) for `bad` of `n` (reals, after any inflation).
pub fn ln_mixture(bad: f64, n: f64, p0: f64) -> f64 {
    mixture_term(bad, n) - xlogy(bad, p0) - xlogy(n - bad, 1.0 - p0)
}

/// The part of ln M_n that does not depend on p0.
fn mixture_term(bad: f64, n: f64) -> f64 {
    ln_beta(PRIOR_A + bad, PRIOR_B + n - bad) - ln_beta(PRIOR_A, PRIOR_B)
}

/// x · ln y, with 0 · ln 0 = 0.
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    }
}

/// A confidence interval for a share, in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub lower: f64,
    pub upper: f64,
}

/// The (1 − `alpha`) confidence sequence for the share of `bad` in `n`,
/// at this n: every p0 with M_n(p0) < 1/α. `inflation` (≥ 1) divides both
/// counts first. No data gives [0, 1].
pub fn share(bad: u64, n: u64, alpha: f64, inflation: f64) -> Bounds {
    let bad = bad.min(n);
    if n == 0 || !(alpha > 0.0 && alpha < 1.0) {
        return Bounds {
            lower: 0.0,
            upper: 1.0,
        };
    }
    let k = if inflation.is_finite() && inflation > 1.0 {
        inflation
    } else {
        1.0
    };
    let (s, m) = (bad as f64 / k, n as f64 / k);
    let level = (1.0 / alpha).ln();
    let centre = s / m;
    let term = mixture_term(s, m);
    let outside = |p: f64| term - xlogy(s, p) - xlogy(m - s, 1.0 - p) >= level;
    // ln M is convex in p0 with its minimum (≤ 0 < level) at the observed
    // share: below it the set ends where ln M falls under the level, above
    // it where ln M rises over it.
    let lower = if bad == 0 {
        0.0
    } else {
        let (mut out, mut inside) = (0.0, centre);
        for _ in 0..STEPS {
            let mid = 0.5 * (out + inside);
            if outside(mid) {
                out = mid;
            } else {
                inside = mid;
            }
        }
        out
    };
    let upper = if bad == n {
        1.0
    } else {
        let (mut inside, mut out) = (centre, 1.0);
        for _ in 0..STEPS {
            let mid = 0.5 * (inside + out);
            if outside(mid) {
                out = mid;
            } else {
                inside = mid;
            }
        }
        out
    };
    Bounds { lower, upper }
}

/// Bounds on p_L − p_B from two streams, each at α/2 (module doc).
pub fn difference(lane: (u64, u64), base: (u64, u64), alpha: f64, inflation: f64) -> Bounds {
    let l = share(lane.0, lane.1, alpha / 2.0, inflation);
    let b = share(base.0, base.1, alpha / 2.0, inflation);
    Bounds {
        lower: l.lower - b.upper,
        upper: l.upper - b.lower,
    }
}

/// The verdict of a one-sided question "is the quantity above `limit`?"
/// from the fail-side bounds (at the fail α) and the pass-side bounds (at
/// the pass α): fail when even the fail side's lower bound is above it,
/// pass when the pass side's upper bound is at or below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Above,
    Within,
    Undecided,
}

pub fn decide(fail_side: Bounds, pass_side: Bounds, limit: f64) -> Evidence {
    if fail_side.lower > limit {
        Evidence::Above
    } else if pass_side.upper <= limit {
        Evidence::Within
    } else {
        Evidence::Undecided
    }
}

/// The smallest n (in `step` lane requests, up to `limit`) at which the
/// expected counts decide: `decided(n)` is asked at n = step, 2·step, …
/// (the checks happen at window ends). `None` when `limit` is reached.
pub fn requests_until(step: u64, limit: u64, decided: impl Fn(u64) -> bool) -> Option<u64> {
    let step = step.max(1);
    // Doubling to bracket (`lo` undecided, `hi` decided), then bisection
    // on multiples of `step`.
    let (mut lo, mut hi) = (0, step);
    while !decided(hi) {
        if hi >= limit {
            return None;
        }
        lo = hi;
        hi = hi.saturating_mul(2).min(limit);
    }
    while hi - lo > step {
        let mid = (lo + (hi - lo) / 2 / step * step).max(lo + step);
        if decided(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounds are where ln M crosses ln(1/α), and the observed share
    /// lies between them.
    #[test]
    fn bounds_are_the_level_set() {
        for &(s, n) in &[
            (0u64, 10u64),
            (1, 100),
            (15, 1000),
            (50, 100),
            (100, 100),
            (3, 7),
        ] {
            for &alpha in &[0.1, 0.01, 0.001] {
                let b = share(s, n, alpha, 1.0);
                let level = (1.0 / alpha).ln();
                let p = s as f64 / n as f64;
                assert!(b.lower <= p && p <= b.upper, "{s}/{n}: {b:?}");
                if s > 0 {
                    let m = ln_mixture(s as f64, n as f64, b.lower);
                    assert!((m - level).abs() < 1e-6, "{s}/{n} lower: {m} vs {level}");
                } else {
                    assert_eq!(b.lower, 0.0);
                }
                if s < n {
                    let m = ln_mixture(s as f64, n as f64, b.upper);
                    assert!((m - level).abs() < 1e-6, "{s}/{n} upper: {m} vs {level}");
                } else {
                    assert_eq!(b.upper, 1.0);
                }
            }
        }
    }

    /// Known values of the mixture, by direct computation: S = 0 gives
    /// M_n(p0) = B(a, b + n) / B(a, b) / (1 − p0)^n.
    #[test]
    fn the_mixture_at_zero_errors() {
        let n = 1000.0;
        let p0: f64 = 0.01;
        let want = ln_beta(PRIOR_A, PRIOR_B + n) - ln_beta(PRIOR_A, PRIOR_B) - n * (1.0 - p0).ln();
        assert!((ln_mixture(0.0, n, p0) - want).abs() < 1e-12);
        // B(1/2, 50) = Γ(1/2) Γ(50) / Γ(50.5)
        let b = libm::lgamma(0.5) + libm::lgamma(50.0) - libm::lgamma(50.5);
        assert!((ln_beta(0.5, 50.0) - b).abs() < 1e-12);
    }

    /// Both bounds rise with the bad count, at every n and α: the basis of
    /// the monotone verdicts.
    #[test]
    fn bounds_rise_with_bad_answers() {
        for n in [1u64, 10, 100, 1000, 20_000] {
            for alpha in [0.2, 0.01, 1e-4] {
                let mut last = share(0, n, alpha, 1.0);
                for s in 1..=n.min(300) {
                    let b = share(s, n, alpha, 1.0);
                    assert!(
                        b.lower >= last.lower && b.upper >= last.upper,
                        "{s}/{n} at {alpha}"
                    );
                    last = b;
                }
            }
        }
    }

    /// An inflation of k widens like a sample k times smaller.
    #[test]
    fn inflation_is_an_effective_sample_size() {
        let plain = share(20, 1000, 0.01, 1.0);
        let inflated = share(20, 1000, 0.01, 4.0);
        let small = share(5, 250, 0.01, 1.0);
        assert!((inflated.upper - small.upper).abs() < 1e-9);
        assert!(inflated.upper - inflated.lower > plain.upper - plain.lower);
    }

    /// Coverage holds at every look: simulated streams whose true share is
    /// p0 leave the sequence (at any of 2,000 looks) at most α of the time.
    #[test]
    fn the_sequence_covers_at_every_look() {
        let mut rng = crate::rollout::simulation_tests::Rng(0x9e37_79b9_7f4a_7c15);
        let (p0, alpha, runs) = (0.02, 0.05, 400);
        let mut misses = 0;
        for _ in 0..runs {
            let mut bad = 0;
            let mut missed = false;
            for n in 1..=2000u64 {
                bad += u64::from(rng.uniform() < p0);
                if n % 20 == 0 {
                    let b = share(bad, n, alpha, 1.0);
                    if p0 < b.lower || p0 > b.upper {
                        missed = true;
                        break;
                    }
                }
            }
            misses += u32::from(missed);
        }
        // 400 runs at a miss rate of at most 5 %: more than 40 misses has
        // P < 1e-9 (binomial tail).
        assert!(misses <= 40, "{misses} of {runs} runs left the sequence");
    }

    #[test]
    fn requests_until_finds_the_first_multiple() {
        assert_eq!(requests_until(10, 10_000, |n| n >= 437), Some(440));
        assert_eq!(requests_until(10, 10_000, |n| n >= 1), Some(10));
        assert_eq!(requests_until(10, 1000, |n| n >= 5000), None);
        assert_eq!(requests_until(7, 10_000, |n| n >= 700), Some(700));
    }
}
