//! Static analysis of compiled rules (docs/configuration.md "Warnings"): lanes that can never
//! win, and overlapping bucket ranges. Shared by the filter and the CLI.
//!
//! Sound, not complete: a lane is reported as shadowed only when it is
//! proved that a higher-priority lane admits every request it admits.

use crate::engine::{describe, Cond, Lane, LaneId, OnMissingKey, Rules, Split, BUCKETS};
use std::fmt;

/// What kind of warning: each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A lane that can never win (docs/configuration.md "Warnings").
    Shadowed,
    /// A lane with `percent: 0` (or no bucket) admits nothing.
    ZeroPercent,
    /// A `services` entry names a lane that is not declared.
    UnknownServiceLane,
    /// Two lanes sharing key and salt have overlapping bucket ranges.
    OverlappingBuckets,
    /// `propagate` at an edge (`incoming: ignore`), where it is never used.
    PropagateIgnored,
}

/// A warning: logged and counted, does not reject the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every warning the rules deserve.
pub fn analyze(rules: &Rules) -> Vec<Warning> {
    let mut out = Vec::new();
    // One bit per conjunct (by its text): a lane whose bits are not all in
    // another's cannot have all its conjuncts there, so most of the pairs
    // are ruled out without comparing conditions.
    let masks: Vec<u64> = rules
        .lanes
        .iter()
        .map(|l| {
            conjuncts(l.cond.as_ref()).iter().fold(0u64, |m, c| {
                m | 1u64 << (xxhash_rust::xxh64::xxh64(describe(c).as_bytes(), 0) % 64)
            })
        })
        .collect();
    let mask = |id: LaneId| masks.get(id).copied().unwrap_or(u64::MAX);
    for (rank, &low_id) in rules.order.iter().enumerate() {
        let Some(low) = rules.lanes.get(low_id) else {
            continue;
        };
        if low.split.as_ref().is_some_and(|s| s.ranges.is_empty()) {
            continue; // already reported as admitting nothing
        }
        let higher = rules.order.iter().take(rank);
        for &high_id in higher {
            let Some(high) = rules.lanes.get(high_id) else {
                continue;
            };
            if mask(high_id) & !mask(low_id) != 0 {
                continue;
            }
            if shadows(high, low) {
                out.push(Warning {
                    kind: WarningKind::Shadowed,
                    path: format!("lanes[{low_id}]"),
                    message: format!(
                        "lane \"{}\" can never win: every request it admits is taken first by lane \"{}\" (lanes[{high_id}], priority {}); give it a lower priority number or narrow the other lane",
                        low.name, high.name, high.priority
                    ),
                });
                break;
            }
        }
    }
    out.extend(overlapping_buckets(rules));
    out
}

/// The conjuncts of a condition: the members of a top-level `all`, else
/// itself. Borrowed, not collected: this runs for every pair of lanes.
fn conjuncts(cond: Option<&Cond>) -> &[Cond] {
    match cond {
        None => &[],
        Some(Cond::All(list)) => list,
        Some(c) => std::slice::from_ref(c),
    }
}

/// Whether `high` admits every request `low` admits (proved, or false).
pub fn shadows(high: &Lane, low: &Lane) -> bool {
    let low_parts = conjuncts(low.cond.as_ref());
    let high_parts = conjuncts(high.cond.as_ref());
    let match_implied = high_parts.iter().all(|h| low_parts.contains(h));
    match_implied && split_covers(high.split.as_ref(), low.split.as_ref())
}

fn covers_all(ranges: &[(u16, u16)]) -> bool {
    range_covers(ranges, 0, u16::try_from(BUCKETS - 1).unwrap_or(u16::MAX))
}

/// Whether the union of `ranges` contains every bucket of `lo..=hi`.
fn range_covers(ranges: &[(u16, u16)], lo: u16, hi: u16) -> bool {
    let mut sorted: Vec<(u16, u16)> = ranges.to_vec();
    sorted.sort_unstable();
    let mut next = u32::from(lo);
    for (a, b) in sorted {
        if u32::from(a) > next {
            break;
        }
        next = next.max(u32::from(b) + 1);
    }
    next > u32::from(hi)
}

/// Whether a request admitted by the `low` split is always admitted by `high`.
fn split_covers(high: Option<&Split>, low: Option<&Split>) -> bool {
    let Some(high) = high else {
        return true;
    };
    let high_never_excludes = high.key.is_none()
        || high.on_missing == OnMissingKey::Random
        || high.key.as_ref().is_some_and(|k| k.assign.is_some());
    if covers_all(&high.ranges) && high_never_excludes {
        return true;
    }
    let Some(low) = low else {
        return false;
    };
    let (Some(hk), Some(lk)) = (&high.key, &low.key) else {
        return false;
    };
    if hk.source != lk.source || high.salt != low.salt {
        return false;
    }
    // Without a key, `low` must admit nothing, or both use the same assigned id.
    let missing_ok = (low.on_missing == OnMissingKey::Exclude && lk.assign.is_none())
        || (lk.assign.is_some() && hk.assign.is_some());
    missing_ok
        && low
            .ranges
            .iter()
            .all(|&(a, b)| range_covers(&high.ranges, a, b))
}

/// Lanes that share key and salt but whose bucket ranges overlap: one
/// population was meant to be split, and some of it goes to the
/// higher-priority lane only.
fn overlapping_buckets(rules: &Rules) -> Vec<Warning> {
    let mut out = Vec::new();
    let keyed: Vec<(LaneId, &Lane, &Split)> = rules
        .order
        .iter()
        .filter_map(|&id| {
            let lane = rules.lanes.get(id)?;
            let split = lane.split.as_ref().filter(|s| s.key.is_some())?;
            Some((id, lane, split))
        })
        .collect();
    for (i, (a_id, a, sa)) in keyed.iter().enumerate() {
        for (b_id, b, sb) in keyed.iter().skip(i + 1) {
            let same = sa.key.as_ref().map(|k| &k.source) == sb.key.as_ref().map(|k| &k.source)
                && sa.salt == sb.salt;
            let overlap = sa
                .ranges
                .iter()
                .any(|&(a0, a1)| sb.ranges.iter().any(|&(b0, b1)| a0 <= b1 && b0 <= a1));
            if same && overlap {
                out.push(Warning {
                    kind: WarningKind::OverlappingBuckets,
                    path: format!("lanes[{b_id}].split"),
                    message: format!(
                        "lanes \"{}\" (lanes[{a_id}]) and \"{}\" share split key and salt \"{}\" and their bucket ranges overlap; the overlap goes to \"{}\" only. Use disjoint \"buckets\" to split one population",
                        a.name, b.name, sa.salt, a.name
                    ),
                });
            }
        }
    }
    out
}

/// `1 lane`, `2 lanes`, `0 services`: a count as the CLI and the filter's
/// log print it.
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
