//! The text and the data of `graylane explain`: the lane of one request,
//! the rule that chose it, why each rule before it did not, and the header
//! changes.

use crate::config::Config;
use crate::engine::{self, HeaderList, KeySource, LaneId, RuleOutcome, Split, SplitResult};
use serde_json::{json, Map, Value};

/// The request `graylane explain` builds from `-H 'NAME: VALUE'` options:
/// names lower-cased, values trimmed; `:authority` (or `host`), `:path` and
/// `:method` set once (the last one given wins), defaulting to `/` and
/// `GET`, and placed first as Envoy hands them to the filter.
pub fn request<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderList {
    let (mut authority, mut path, mut method) = (None, None, None);
    let mut rest: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            ":authority" | "host" => authority = Some(value),
            ":path" => path = Some(value),
            ":method" => method = Some(value),
            _ => rest.push((name, value.as_bytes().to_vec())),
        }
    }
    let mut list = Vec::with_capacity(rest.len() + 3);
    if let Some(a) = authority {
        list.push((":authority".to_string(), a.as_bytes().to_vec()));
    }
    list.push((":path".to_string(), path.unwrap_or("/").as_bytes().to_vec()));
    list.push((
        ":method".to_string(),
        method.unwrap_or("GET").as_bytes().to_vec(),
    ));
    list.extend(rest);
    HeaderList(list)
}

/// The random source of `explain`: always `n` with `--random n`, otherwise
/// SplitMix64 seeded with 0, so that runs are reproducible.
pub fn rng(fixed: Option<u64>) -> impl FnMut() -> u64 {
    let mut state: u64 = 0;
    move || {
        if let Some(n) = fixed {
            return n;
        }
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A rule evaluated before the winner, and why it did not win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub index: LaneId,
    pub lane: String,
    pub priority: i64,
    /// `noMatch`, `notAdmitted` or `excluded`.
    pub outcome: &'static str,
    pub bucket: Option<u16>,
    pub reason: String,
}

/// Everything `explain` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub lane: String,
    pub source: &'static str,
    /// `(index, name, priority)` of the winning rule.
    pub rule: Option<(LaneId, String, i64)>,
    /// The winning rule's split bucket.
    pub bucket: Option<(u16, bool)>,
    pub tried: Vec<Tried>,
    /// Request header changes: set (`Some`) or remove (`None`).
    pub headers: Vec<(String, Option<String>)>,
    pub cluster: Option<String>,
    pub fallback: Option<String>,
    pub shadow: bool,
    pub invalid_tag: bool,
    pub baggage_dropped: usize,
    /// Headers added to the response.
    pub response: Vec<(String, String)>,
    /// The explanation and the filter's own decision differ (a bug).
    pub disagreement: Option<String>,
    /// With `continuity` set: what the sidecar remembers for the request's
    /// trace (inbound), or whether the remembered lane was restored
    /// (outbound, `--remembered`).
    pub continuity: Option<String>,
}

/// Explains `request` against `config`. `random`: every random draw
/// returns it (`--random N`); `None`: draws from [`rng`]`(None)`.
pub fn explain(config: &Config, request: &HeaderList, random: Option<u64>) -> Report {
    explain_remembered(config, request, random, None)
}

/// [`explain`] on a sidecar's outbound side where the request's trace was
/// remembered in lane `remembered` (docs/full-link.md "Lane continuity from trace
/// context"); `None`: as the inbound side, which remembers the decision.
pub fn explain_remembered(
    config: &Config,
    request: &HeaderList,
    random: Option<u64>,
    remembered: Option<&str>,
) -> Report {
    let mut report = explain_decided(config, request, random);
    let Some(c) = &config.continuity else {
        if remembered.is_some() {
            report.continuity =
                Some("not continued: the configuration has no \"continuity\"".into());
        }
        return report;
    };
    let view = engine::View::new(request);
    let trace = crate::continuity::trace_id(c, &view).map(String::from_utf8_lossy);
    let from = c
        .from
        .iter()
        .map(|h| h.name())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(trace) = trace else {
        report.continuity = Some(format!(
            "no valid trace id in {from}: nothing is remembered or restored"
        ));
        return report;
    };
    let Some(lane) = remembered else {
        report.continuity = Some(format!(
            "inbound: remembers trace {trace} -> {} for {} ms",
            report.lane, c.ttl_ms
        ));
        return report;
    };
    if engine::carries_tag(config, &view) {
        report.continuity = Some(format!(
            "not continued: the request carries a tag (trace {trace})"
        ));
        return report;
    }
    let Some(decision) = engine::continued(config, lane) else {
        report.continuity = Some(format!(
            "not continued: the remembered lane {lane:?} is base or not declared (trace {trace})"
        ));
        return report;
    };
    let effects = engine::effects(config, &view, decision.lane);
    report.lane = config.lane_name(decision.lane).to_string();
    report.source = decision.source.as_str();
    report.rule = None;
    report.bucket = None;
    report.tried = Vec::new();
    report.invalid_tag = false;
    report.headers = effects
        .set
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.as_deref().map(str::to_owned)))
        .collect();
    report.cluster = effects.cluster.map(str::to_owned);
    report.fallback = effects.fallback.map(str::to_owned);
    report.baggage_dropped = effects.baggage_dropped;
    report.response = decision.response_headers(config);
    report.continuity = Some(format!(
        "continued from trace {trace} (remembered lane {lane})"
    ));
    report
}

fn explain_decided(config: &Config, request: &HeaderList, random: Option<u64>) -> Report {
    // Both walks draw from identical generators, so the same random draws
    // reach the same rules.
    let mut rng = rng(random);
    let explanation = engine::explain(config, request, &mut rng);
    let mut rng = self::rng(random);
    let outcome = engine::process(config, request, &mut rng);

    let d = &outcome.decision;
    let disagreement = (explanation.decision.lane != d.lane
        || explanation.decision.source != d.source)
        .then(|| {
            format!(
                "the explanation decided {} ({}) but the filter decides {} ({})",
                config.lane_name(explanation.decision.lane),
                explanation.decision.source.as_str(),
                config.lane_name(d.lane),
                d.source.as_str()
            )
        });

    let lane_of = |id: LaneId| config.rules.lanes.get(id);
    let rule = match (d.source, d.lane) {
        (engine::LaneSource::Rule, Some(id)) => {
            lane_of(id).map(|l| (id, l.name.clone(), l.priority))
        }
        _ => None,
    };
    let bucket = d
        .split
        .as_ref()
        .and_then(|s| s.bucket().map(|b| (b, s.admitted())));

    let winner = explanation
        .decision
        .lane
        .filter(|_| explanation.decision.source == engine::LaneSource::Rule);
    let tried = explanation
        .tried
        .iter()
        .filter(|(id, _)| Some(*id) != winner)
        .filter_map(|(id, outcome)| {
            let lane = lane_of(*id)?;
            let (kind, bucket, reason) = why(outcome, lane.split.as_ref());
            Some(Tried {
                index: *id,
                lane: lane.name.clone(),
                priority: lane.priority,
                outcome: kind,
                bucket,
                reason,
            })
        })
        .collect();

    let e = &outcome.effects;
    let response = d.response_headers(config);
    Report {
        lane: config.lane_name(d.lane).to_string(),
        source: d.source.as_str(),
        rule,
        bucket,
        tried,
        headers: e
            .set
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.as_deref().map(str::to_owned)))
            .collect(),
        cluster: e.cluster.map(str::to_owned),
        fallback: e.fallback.map(str::to_owned),
        shadow: e.shadow,
        invalid_tag: d.invalid_tag,
        baggage_dropped: e.baggage_dropped,
        response,
        disagreement,
        continuity: None,
    }
}

fn ranges_text(ranges: &[(u16, u16)]) -> String {
    if ranges.is_empty() {
        return "no bucket (0 %)".into();
    }
    ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn key_text(split: Option<&Split>) -> String {
    match split.and_then(|s| s.key.as_ref()) {
        None => "none".into(),
        Some(k) => {
            let source = match &k.source {
                KeySource::Header(h) => format!("header {h:?}"),
                KeySource::Cookie(c) => format!("cookie {c:?}"),
                KeySource::Query(q) => format!("query {q:?}"),
            };
            if k.assign.is_some() {
                format!("{source}, assigned")
            } else {
                source
            }
        }
    }
}

/// The outcome kind, the bucket, and the reason in words.
fn why(outcome: &RuleOutcome, split: Option<&Split>) -> (&'static str, Option<u16>, String) {
    let ranges = split.map_or_else(String::new, |s| ranges_text(&s.ranges));
    match outcome {
        RuleOutcome::NoMatch(text) => ("noMatch", None, text.clone()),
        RuleOutcome::Split(SplitResult::Keyed { bucket, .. }) => (
            "notAdmitted",
            Some(*bucket),
            format!(
                "split not admitted: bucket {bucket} (key {}) is outside the admitted buckets {ranges}",
                key_text(split)
            ),
        ),
        RuleOutcome::Split(SplitResult::Random { bucket, .. }) => {
            let drawn = if split.is_some_and(|s| s.key.is_some()) {
                format!("split key ({}) absent, random bucket", key_text(split))
            } else {
                "random bucket".to_string()
            };
            (
                "notAdmitted",
                Some(*bucket),
                format!("split not admitted: {drawn} {bucket} is outside the admitted buckets {ranges}"),
            )
        }
        RuleOutcome::Split(SplitResult::Excluded) => (
            "excluded",
            None,
            format!("split key absent and onMissingKey is exclude (key: {})", key_text(split)),
        ),
        // Only the winner wins; a second winner would be an engine bug.
        RuleOutcome::Won => ("won", None, "matched".into()),
    }
}

fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_string()))
}

impl Report {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = format!("lane: {}\nsource: {}\n", self.lane, self.source);
        if let Some((i, name, p)) = &self.rule {
            s.push_str(&format!("rule: lanes[{i}] {name:?} (priority {p})\n"));
        }
        if let Some((b, admitted)) = self.bucket {
            let word = if admitted { "admitted" } else { "not admitted" };
            s.push_str(&format!("bucket: {b} ({word})\n"));
        }
        if self.invalid_tag {
            s.push_str("invalid tag: the incoming tag names no declared lane; dropped\n");
        }
        if let Some(c) = &self.continuity {
            s.push_str(&format!("continuity: {c}\n"));
        }
        if !self.tried.is_empty() {
            s.push_str("tried:\n");
            for t in &self.tried {
                s.push_str(&format!(
                    "  lanes[{}] {:?} priority {}: {}\n",
                    t.index, t.lane, t.priority, t.reason
                ));
            }
        }
        if self.headers.is_empty() {
            s.push_str("headers: unchanged\n");
        }
        for (name, value) in &self.headers {
            match value {
                Some(v) => s.push_str(&format!("set {name}: {v}\n")),
                None => s.push_str(&format!("remove {name}\n")),
            }
        }
        if let Some(c) = &self.cluster {
            s.push_str(&format!("cluster: {c}\n"));
        }
        if let Some(f) = &self.fallback {
            s.push_str(&format!(
                "fallback: {f} has no version in lane {:?}; its base cluster serves the request\n",
                self.lane
            ));
        }
        if self.shadow {
            s.push_str("shadow: mirrored request, marked in baggage\n");
        }
        if self.baggage_dropped > 0 {
            s.push_str(&format!(
                "baggage: {} invalid member(s) dropped\n",
                self.baggage_dropped
            ));
        }
        for (name, value) in &self.response {
            s.push_str(&format!("response {name}: {value}\n"));
        }
        s
    }

    /// The JSON report. The keys `lane`, `source`, `rule`, `bucket`,
    /// `headers` and `fallback` are stable: tests compare them with what
    /// the filter does in Envoy.
    pub fn to_json(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), opt_str(v.as_deref())))
            .collect();
        let tried: Vec<Value> = self
            .tried
            .iter()
            .map(|t| {
                json!({
                    "index": t.index,
                    "lane": t.lane,
                    "priority": t.priority,
                    "outcome": t.outcome,
                    "bucket": t.bucket,
                    "reason": t.reason,
                })
            })
            .collect();
        let response: Vec<Value> = self.response.iter().map(|(k, v)| json!([k, v])).collect();
        let mut v = json!({
            "lane": self.lane,
            "source": self.source,
            "rule": opt_str(self.rule.as_ref().map(|(_, name, _)| name.as_str())),
            "ruleIndex": self.rule.as_ref().map(|(i, _, _)| *i),
            "bucket": self.bucket.map(|(b, _)| b),
            "headers": headers,
            "fallback": opt_str(self.fallback.as_deref()),
            "cluster": opt_str(self.cluster.as_deref()),
            "shadow": self.shadow,
            "invalidTag": self.invalid_tag,
            "baggageDropped": self.baggage_dropped,
            "tried": tried,
            "response": response,
        });
        if let (Some(c), Some(map)) = (&self.continuity, v.as_object_mut()) {
            map.insert("continuity".into(), Value::String(c.clone()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_fixed() {
        let mut r = rng(None);
        let first = (r(), r());
        let mut r2 = rng(None);
        assert_eq!(first, (r2(), r2()));
        assert_ne!(first.0, first.1);
        let mut f = rng(Some(42));
        assert_eq!((f(), f()), (42, 42));
    }

    #[test]
    fn request_like_the_cli() {
        let h = request([
            ("X-Tier", " 4 "),
            ("Host", "a"),
            (":method", "POST"),
            (":authority", "db.internal:8080"),
            ("cookie", "a=1; b=2"),
        ]);
        let pairs: Vec<(&str, &str)> =
            h.0.iter()
                .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
                .collect();
        assert_eq!(
            pairs,
            vec![
                (":authority", "db.internal:8080"),
                (":path", "/"),
                (":method", "POST"),
                ("x-tier", "4"),
                ("cookie", "a=1; b=2"),
            ]
        );
    }

    #[test]
    fn explains_a_split() {
        let config = Config::from_json(
            br#"{"lanes": [
                {"name": "beta", "priority": 1, "match": {"header": "x-beta", "exact": "1"}},
                {"name": "gray", "split": {"key": {"header": "x-user"}, "buckets": ["0-4999"]}}]}"#,
        )
        .unwrap();
        let report = explain(&config, &request([("x-user", "u1")]), None);
        let bucket = engine::bucket("gray", b"u1");
        let lane = if bucket < 5000 { "gray" } else { "base" };
        assert_eq!(report.lane, lane);
        assert_eq!(report.to_json()["tried"][0]["outcome"], "noMatch");
        assert!(report.to_text().starts_with(&format!("lane: {lane}\n")));
        assert!(report.to_text().contains("lanes[0] \"beta\" priority 1: "));
    }
}
