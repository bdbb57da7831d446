//! The analysis' guarantees, measured (docs/rollout.md "How a step is
//! judged"): thousands of simulated rollouts through the real decision
//! code ([`analysis::judge`] on a step's added-up windows, then
//! [`analysis::gate_from`]), with the demo's traffic shape, window-to-window
//! rate noise, counter resets, and errors clustered by user.
//!
//! The random numbers come from a fixed seed, so every run sees the same
//! rollouts: a bound that holds here holds on every machine, and a change
//! that breaks one fails every time.

use super::analysis::{self, Action, Criteria, Gate, Sample, Window};

/// xorshift64*: small, fast, and the same everywhere (also the
/// confidence sequences' own coverage test).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub(super) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Binomial(n, p): exact by inversion for small means, normal
    /// approximation (rounded, clamped) for large ones.
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let mean = n as f64 * p;
        if mean < 30.0 {
            // Inversion: walk the pmf from 0.
            let q = 1.0 - p;
            let mut pmf = q.powf(n as f64);
            let mut cdf = pmf;
            let u = self.uniform();
            let mut k = 0;
            while u > cdf && k < n {
                pmf *= (n - k) as f64 / (k + 1) as f64 * p / q;
                k += 1;
                cdf += pmf;
                if pmf < 1e-300 && cdf < u {
                    break;
                }
            }
            return k;
        }
        let sd = (mean * (1.0 - p)).sqrt();
        (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u64
    }
}

/// A population of users and which of them hit a version's bug.
struct Population {
    /// Per user: hits base's bug, hits the lane's extra bug.
    users: Vec<(bool, bool)>,
    /// Error rate of a request from an affected user.
    base_hit: f64,
    lane_hit: f64,
}

/// One kind of simulated rollout.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// Base's and the lane's 5xx shares over all users.
    base: f64,
    lane: f64,
    /// Errors clustered by user: 1 / `cluster` of the users hit a bug, at
    /// `cluster` times the rate (1: every request independent).
    cluster: f64,
    inflation: f64,
}

/// What one rollout did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Promoted,
    /// Rolled back after this many lane requests in all.
    RolledBack(u64),
    Paused,
}

const USERS: usize = 5000;
const STEPS: [f64; 4] = [10.0, 25.0, 50.0, 100.0];
/// Requests per window on average (100 req/s through the gateway and the
/// default 60 s windows), each window's rate drawn between half and 1.5
/// times it.
const PER_WINDOW: f64 = 6000.0;
/// A window's data is lost (counter reset, failing source) this often.
const RESETS: f64 = 0.03;
const DEADLINE_WINDOWS: u32 = 40;

fn criteria(inflation: f64) -> Criteria {
    Criteria {
        looks: STEPS.len(),
        inflation,
        // Latency is simulated flat: the error-rate check decides.
        p99_max_ratio: None,
        ..Criteria::default()
    }
}

fn population(rng: &mut Rng, c: &Case) -> Population {
    let share = 1.0 / c.cluster;
    let extra = (c.lane - c.base).max(0.0);
    Population {
        users: (0..USERS)
            .map(|_| (rng.uniform() < share, rng.uniform() < share))
            .collect(),
        base_hit: (c.base * c.cluster).min(1.0),
        lane_hit: (extra * c.cluster).min(1.0),
    }
}

/// The shares of a group of users (the lane's or base's at a step) hit
/// by base's bug, by both, and by the lane's bug only.
#[derive(Clone, Copy)]
struct Hits {
    base: f64,
    both: f64,
    lane_only: f64,
}

fn hits(users: &[(bool, bool)]) -> Hits {
    let total = users.len().max(1) as f64;
    let share =
        |f: &dyn Fn(&(bool, bool)) -> bool| users.iter().filter(|u| f(u)).count() as f64 / total;
    Hits {
        base: share(&|u| u.0),
        both: share(&|u| u.0 && u.1),
        lane_only: share(&|u| !u.0 && u.1),
    }
}

/// Requests and errors from `n` requests spread evenly over a group of
/// users; `lane`: the lane's version (both bugs) or base's (base's bug).
fn served(rng: &mut Rng, pop: &Population, h: Hits, n: u64, lane: bool) -> Sample {
    let mut errors = 0;
    if lane {
        // Users hit by both bugs: base's bug, then the extra one on what
        // is left.
        let p_both = pop.base_hit + (1.0 - pop.base_hit) * pop.lane_hit;
        let from_both = rng.binomial(n, h.both);
        let from_base = rng.binomial(n - from_both, (h.base - h.both) / (1.0 - h.both).max(1e-12));
        let from_lane = rng.binomial(
            n - from_both - from_base,
            h.lane_only / (1.0 - h.base).max(1e-12),
        );
        errors += rng.binomial(from_both, p_both);
        errors += rng.binomial(from_base, pop.base_hit);
        errors += rng.binomial(from_lane, pop.lane_hit);
    } else {
        let from_base = rng.binomial(n, h.base);
        errors += rng.binomial(from_base, pop.base_hit);
    }
    Sample {
        requests: n,
        errors,
        latency: Default::default(),
    }
}

/// How a rollout ended, and how many steps it passed.
fn rollout(rng: &mut Rng, c: &Case) -> (End, usize) {
    let pop = population(rng, c);
    let crit = criteria(c.inflation);
    let gate = Gate {
        failure_threshold: 2,
        deadline_windows: DEADLINE_WINDOWS,
    };
    let mut lane_total = 0u64;
    let mut recorded: Option<Sample> = None;
    for (passed, &percent) in STEPS.iter().enumerate() {
        // Sticky: the first `percent` of the users are in the lane.
        let cut = (USERS as f64 * percent / 100.0).round() as usize;
        let (lane_users, base_users) = pop.users.split_at(cut);
        let (lane_hits, base_hits) = (hits(lane_users), hits(base_users));
        let mut lane = Sample::default();
        let mut base = Sample::default();
        let mut verdicts = Vec::new();
        loop {
            let n = (PER_WINDOW * (0.5 + rng.uniform())).round() as u64;
            let nl = rng.binomial(n, percent / 100.0);
            let wl = served(rng, &pop, lane_hits, nl, true);
            let wb = served(rng, &pop, base_hits, n - nl, false);
            lane_total += nl;
            let notes = if rng.uniform() < RESETS {
                vec!["counter reset".to_string()]
            } else {
                lane.add(&wl);
                base.add(&wb);
                Vec::new()
            };
            let w = Window {
                lane: lane.clone(),
                base: base.clone(),
                percent,
                recorded_base: recorded.clone(),
                insufficient: notes,
            };
            let (verdict, _) = analysis::judge(&w, &crit);
            verdicts.push(verdict);
            match analysis::gate_from(&verdicts, 0, &gate) {
                Action::Extend => {}
                Action::Advance => break,
                Action::Rollback => return (End::RolledBack(lane_total), passed),
                Action::Pause => return (End::Paused, passed),
            }
        }
        if base.requests >= crit.min_requests {
            recorded = Some(base);
        }
    }
    (End::Promoted, STEPS.len())
}

struct Tally {
    runs: u32,
    /// Rollouts that passed their first step.
    first_passed: u32,
    promoted: u32,
    rolled_back: Vec<u64>,
    paused: u32,
}

fn simulate(c: &Case, runs: u32, seed: u64) -> Tally {
    let mut rng = Rng(seed | 1);
    let mut t = Tally {
        runs,
        first_passed: 0,
        promoted: 0,
        rolled_back: Vec::new(),
        paused: 0,
    };
    for _ in 0..runs {
        let (end, passed) = rollout(&mut rng, c);
        t.first_passed += u32::from(passed > 0);
        match end {
            End::Promoted => t.promoted += 1,
            End::RolledBack(n) => t.rolled_back.push(n),
            End::Paused => t.paused += 1,
        }
    }
    t.rolled_back.sort_unstable();
    t
}

/// The largest count k with P(Binomial(runs, p) ≥ k) ≥ 1e-9: a count above
/// it means the true rate is above p (a false alarm once in 10^9 runs of
/// this test, were the seed not fixed).
fn most(runs: u32, p: f64) -> u32 {
    let mut tail = 1.0;
    let mut k = 0;
    // P(X = k) by recursion, the tail by subtraction from 1.
    let q = 1.0 - p;
    let mut pmf = q.powf(runs as f64);
    while k < runs {
        tail -= pmf;
        if tail < 1e-9 {
            return k;
        }
        pmf *= (runs - k) as f64 / (k + 1) as f64 * p / q;
        k += 1;
    }
    runs
}

fn row(c: &Case, t: &Tally) -> String {
    let pct = |n: u32| n as f64 * 100.0 / t.runs as f64;
    let median = t
        .rolled_back
        .get(t.rolled_back.len() / 2)
        .map_or("-".to_string(), |n| n.to_string());
    let p90 = t
        .rolled_back
        .get(t.rolled_back.len() * 9 / 10)
        .map_or("-".to_string(), |n| n.to_string());
    format!(
        "| {} | {} | {:.2} % | {:.2} % | {:.2} % | {:.2} % | {median} | {p90} |",
        c.name,
        t.runs,
        pct(t.first_passed),
        pct(t.promoted),
        pct(t.rolled_back.len() as u32),
        pct(t.paused),
    )
}

const RUNS: u32 = 1000;

fn case(name: &'static str, base: f64, lane: f64, cluster: f64, inflation: f64) -> Case {
    Case {
        name,
        base,
        lane,
        cluster,
        inflation,
    }
}

/// The table of docs/rollout.md "How a step is judged", and its bounds.
#[test]
fn false_verdict_rates_hold_in_simulated_rollouts() {
    let crit = criteria(1.0);
    let alpha = 1.0 - crit.error_confidence;
    let beta = 1.0 - crit.pass_confidence;
    let cases = [
        case("A/A, 1.5 % 5xx", 0.015, 0.015, 1.0, 1.0),
        case("A/A, 0.1 % 5xx", 0.001, 0.001, 1.0, 1.0),
        case("A/B, worse by t (1.5 % -> 2.5 %)", 0.015, 0.025, 1.0, 1.0),
        case("A/B, worse by 2t (1.5 % -> 3.5 %)", 0.015, 0.035, 1.0, 1.0),
        case(
            "A/A, 1.5 %, clustered (1 user in 10)",
            0.015,
            0.015,
            10.0,
            1.0,
        ),
        case("A/B, worse by t, clustered", 0.015, 0.025, 10.0, 1.0),
        case(
            "A/B, worse by t, clustered, inflation 2",
            0.015,
            0.025,
            10.0,
            2.0,
        ),
        case("A/B, worse by 2t, clustered", 0.015, 0.035, 10.0, 1.0),
    ];
    let tallies: Vec<Tally> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| simulate(c, RUNS, 0x5eed + i as u64))
        .collect();
    let mut table = vec![
        "| case | runs | passed step 1 | promoted | rolled back | paused | lane requests to rollback, median | 90th percentile |".to_string(),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    table.extend(cases.iter().zip(&tallies).map(|(c, t)| row(c, t)));
    let planned = super::planner::requests_to_fail(
        &crit,
        (0.015, 0.035),
        STEPS[0],
        None,
        (PER_WINDOW * STEPS[0] / 100.0) as u64,
        2,
    )
    .expect("the planner decides");
    table.push(format!(
        "planner: worse by 2t rolled back at step 1 after {planned} lane requests"
    ));
    eprintln!("{}", table.join("\n"));
    let rolled = |t: &Tally| t.rolled_back.len() as u32;
    // A/A: as good as base. A false rollback at most 1 − confidence, and
    // nearly always promoted within the deadlines.
    for (c, t) in cases.iter().zip(&tallies).take(2) {
        assert!(
            rolled(t) <= most(RUNS, alpha),
            "{}: {} of {RUNS} rolled back",
            c.name,
            rolled(t)
        );
        assert!(
            t.promoted * 10 >= RUNS * 9,
            "{}: only {} promoted",
            c.name,
            t.promoted
        );
    }
    // A/B at t: worse by the tolerance. Passing a step is allowed at most
    // 1 − passConfidence of the time, so being promoted (four passes) is too.
    assert!(
        tallies[2].first_passed <= most(RUNS, beta),
        "worse by t: {} passed a step",
        tallies[2].first_passed
    );
    // A/B at 2t: rolled back, within the requests the planner states.
    assert!(
        rolled(&tallies[3]) >= RUNS * 99 / 100,
        "worse by 2t: only {} rolled back",
        rolled(&tallies[3])
    );
    let median = tallies[3].rolled_back[tallies[3].rolled_back.len() / 2] as f64;
    let planned = planned as f64;
    assert!(
        median <= planned * 1.5 && median >= planned * 0.5,
        "worse by 2t: median {median} lane requests to rollback, planner {planned}"
    );
    // Errors clustered by user: the rollback bound still holds; the pass
    // bound holds with the inflation (design effect) the docs recommend.
    assert!(
        rolled(&tallies[4]) <= most(RUNS, alpha),
        "clustered A/A: {}",
        rolled(&tallies[4])
    );
    assert!(
        tallies[6].first_passed <= most(RUNS, beta),
        "clustered, worse by t, inflated: {}",
        tallies[6].first_passed
    );
    assert!(tallies[6].first_passed <= tallies[5].first_passed);
    assert_eq!(tallies[7].promoted, 0, "clustered, worse by 2t: promoted");
}

#[test]
fn the_binomial_bound_is_exact() {
    // P(Binomial(1000, 0.01) >= 35) = 4.4e-10 and >= 34 = 1.6e-9
    // (exact sums).
    assert_eq!(most(1000, 0.01), 34);
    let mut rng = Rng(7);
    let draws: Vec<u64> = (0..2000).map(|_| rng.binomial(1000, 0.015)).collect();
    let mean = draws.iter().sum::<u64>() as f64 / 2000.0;
    assert!((mean - 15.0).abs() < 0.6, "{mean}");
    let big: Vec<u64> = (0..2000).map(|_| rng.binomial(100_000, 0.3)).collect();
    let mean = big.iter().sum::<u64>() as f64 / 2000.0;
    assert!((mean - 30_000.0).abs() < 25.0, "{mean}");
}
