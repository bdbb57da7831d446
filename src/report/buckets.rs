//! Who owns which part of the bucket space 0–9999: one bar per split salt,
//! each split lane's admitted ranges on it, the ranges two lanes share, and
//! where one request falls (the playground's bucket picture).

use super::explain::{key_text, Report};
use crate::config::Config;
use crate::engine::{split, LaneId, Request, Split, SplitResult, View, BUCKETS};
use serde_json::{json, Value};

/// Where a request falls on one lane's split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBucket {
    pub bucket: u16,
    /// `keyed` (hash of the key), `random` (a draw: no key), or `assigned`
    /// (hash of a cookie id drawn for this request).
    pub how: &'static str,
    pub admitted: bool,
}

/// One split lane on a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneBuckets {
    pub index: LaneId,
    pub name: String,
    pub priority: i64,
    /// Admitted buckets, inclusive ranges.
    pub ranges: Vec<(u16, u16)>,
    /// The stickiness key in words (`header "x-user"`, `none`).
    pub key: String,
    /// `None` when the request has no key for this lane and the filter drew
    /// no bucket for it (the rule did not match, or a rule before it won).
    pub request: Option<RequestBucket>,
}

/// Buckets owned by two or more lanes of one bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub lo: u16,
    pub hi: u16,
    /// In evaluation order: the first one takes the shared buckets.
    pub lanes: Vec<String>,
}

/// The split lanes that share one salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub salt: String,
    /// In evaluation order (priority, then config order).
    pub lanes: Vec<LaneBuckets>,
    pub overlaps: Vec<Overlap>,
}

/// The bucket of the request's own split key, as the split computes it;
/// `None` when the split would draw (no key, key absent, assigned cookie).
fn keyed_bucket<R: Request + ?Sized>(view: &View<'_, R>, split: &Split) -> Option<u16> {
    let mut draws = 0u32;
    let result = {
        let mut rng = || {
            draws += 1;
            0
        };
        split::apply(split, view, &mut rng, &mut Vec::new())
    };
    match result {
        SplitResult::Keyed { bucket, .. } if draws == 0 => Some(bucket),
        _ => None,
    }
}

/// The bucket the decision of `report` drew for lane `id`, if any.
fn drawn(report: &Report, id: LaneId) -> Option<u16> {
    match (&report.rule, report.bucket) {
        (Some((winner, _, _)), Some((b, _))) if *winner == id => Some(b),
        _ => report
            .tried
            .iter()
            .find(|t| t.index == id)
            .and_then(|t| t.bucket),
    }
}

/// The bars of `config`; with a request (and its explanation), where that
/// request falls on each lane.
pub fn buckets<R: Request + ?Sized>(config: &Config, request: Option<(&R, &Report)>) -> Vec<Bar> {
    let view = request.map(|(r, _)| View::new(r));
    let mut bars: Vec<Bar> = Vec::new();
    for &id in &config.rules.order {
        let Some(lane) = config.rules.lanes.get(id) else {
            continue;
        };
        let Some(split) = &lane.split else {
            continue;
        };
        let keyed = view.as_ref().and_then(|v| keyed_bucket(v, split));
        let at = match (keyed, request) {
            (Some(b), _) => Some((b, "keyed")),
            (None, Some((_, report))) => drawn(report, id).map(|b| {
                let assigned = split.key.as_ref().is_some_and(|k| k.assign.is_some());
                (b, if assigned { "assigned" } else { "random" })
            }),
            (None, None) => None,
        };
        let entry = LaneBuckets {
            index: id,
            name: lane.name.clone(),
            priority: lane.priority,
            ranges: split.ranges.clone(),
            key: key_text(Some(split)),
            request: at.map(|(bucket, how)| RequestBucket {
                bucket,
                how,
                admitted: split.admits(bucket),
            }),
        };
        match bars.iter_mut().find(|b| b.salt == split.salt) {
            Some(bar) => bar.lanes.push(entry),
            None => bars.push(Bar {
                salt: split.salt.clone(),
                lanes: vec![entry],
                overlaps: Vec::new(),
            }),
        }
    }
    for bar in &mut bars {
        bar.overlaps = overlaps(&bar.lanes);
    }
    bars
}

/// Maximal runs of buckets that the same two or more lanes admit.
fn overlaps(lanes: &[LaneBuckets]) -> Vec<Overlap> {
    let mut out: Vec<Overlap> = Vec::new();
    let last = u16::try_from(BUCKETS - 1).unwrap_or(u16::MAX);
    for b in 0..=last {
        let owners: Vec<String> = lanes
            .iter()
            .filter(|l| l.ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi))
            .map(|l| l.name.clone())
            .collect();
        if owners.len() < 2 {
            continue;
        }
        match out.last_mut() {
            Some(o) if o.hi.checked_add(1) == Some(b) && o.lanes == owners => o.hi = b,
            _ => out.push(Overlap {
                lo: b,
                hi: b,
                lanes: owners,
            }),
        }
    }
    out
}

/// The bars as data (`salt`, `lanes` with `index`, `name`, `priority`,
/// `ranges` as `[lo, hi]`, `admitted` bucket count, `key`, `request`;
/// `overlaps` with `lo`, `hi`, `lanes`).
pub fn to_json(bars: &[Bar]) -> Value {
    let bars: Vec<Value> = bars
        .iter()
        .map(|bar| {
            let lanes: Vec<Value> = bar
                .lanes
                .iter()
                .map(|l| {
                    let admitted: u32 = l
                        .ranges
                        .iter()
                        .map(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1)
                        .sum();
                    json!({
                        "index": l.index,
                        "name": l.name,
                        "priority": l.priority,
                        "ranges": l.ranges.iter().map(|&(lo, hi)| json!([lo, hi])).collect::<Vec<_>>(),
                        "admitted": admitted,
                        "key": l.key,
                        "request": l.request.as_ref().map(|r| json!({
                            "bucket": r.bucket,
                            "how": r.how,
                            "admitted": r.admitted,
                        })),
                    })
                })
                .collect();
            let overlaps: Vec<Value> = bar
                .overlaps
                .iter()
                .map(|o| json!({"lo": o.lo, "hi": o.hi, "lanes": o.lanes}))
                .collect();
            json!({"salt": bar.salt, "lanes": lanes, "overlaps": overlaps})
        })
        .collect();
    Value::Array(bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bucket;
    use crate::report::explain::{explain, request};

    const THREE_WAY: &[u8] = br#"{"lanes": [
        {"name": "a", "priority": 1, "split": {"key": {"header": "x-user"}, "salt": "r1", "buckets": ["0-2999"]}},
        {"name": "b", "priority": 2, "split": {"key": {"header": "x-user"}, "salt": "r1", "buckets": ["2000-5999"]}},
        {"name": "c", "priority": 3, "split": {"percent": 10}},
        {"name": "d", "priority": 4, "match": {"header": "x-d", "present": true}}]}"#;

    #[test]
    fn bars_overlaps_and_the_request() {
        let config = Config::from_json(THREE_WAY).unwrap();
        let req = request([("x-user", "alice")]);
        let report = explain(&config, &req, Some(4321));
        let bars = buckets(&config, Some((&req, &report)));
        assert_eq!(bars.len(), 2);
        let r1 = &bars[0];
        assert_eq!(r1.salt, "r1");
        assert_eq!(
            r1.lanes.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            r1.overlaps,
            vec![Overlap {
                lo: 2000,
                hi: 2999,
                lanes: vec!["a".into(), "b".into()]
            }]
        );
        let alice = bucket("r1", b"alice");
        let at = r1.lanes[0].request.as_ref().unwrap();
        assert_eq!(
            (at.bucket, at.how, at.admitted),
            (alice, "keyed", alice < 3000)
        );
        // The random lane shows the draw only when the decision reached it.
        let c = &bars[1].lanes[0];
        assert_eq!(bars[1].salt, "c");
        assert_eq!(c.ranges, vec![(0, 999)]);
        if alice < 6000 {
            assert_eq!(c.request, None);
        } else {
            let at = c.request.as_ref().unwrap();
            assert_eq!((at.bucket, at.how, at.admitted), (4321, "random", false));
        }
        let data = to_json(&bars);
        assert_eq!(data[0]["lanes"][1]["admitted"], 4000);
        assert_eq!(data[0]["overlaps"][0]["lanes"][1], "b");
    }
}
