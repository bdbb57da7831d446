//! `graylane explain CONFIG [OPTIONS]`: the lane of one request, the rule
//! that chose it, why each rule before it did not, and the header changes.

use super::args::{self, ExplainArgs};
use super::check::load;
use super::{usage_error, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use crate::config::Config;
use crate::engine::{self, KeySource, LaneId, RuleOutcome, Split, SplitResult};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;

pub fn run(args: ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let docs = match load(Path::new(&args.config), out, err) {
        Ok(docs) => docs,
        Err(code) => return code,
    };
    let names = || {
        docs.iter()
            .filter_map(|d| d.name.as_deref())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let doc = match (&args.plugin, docs.as_slice()) {
        (None, [doc]) => doc,
        (None, _) => {
            return usage_error(
                err,
                &format!(
                    "CONFIG has several plugin configurations ({}); choose one with --plugin NAME",
                    names()
                ),
            )
        }
        (Some(p), _) => match docs.iter().find(|d| d.name.as_deref() == Some(p.as_str())) {
            Some(doc) => doc,
            None => {
                return usage_error(
                    err,
                    &format!("no plugin named {p:?} in CONFIG (found: {})", names()),
                )
            }
        },
    };
    let config = match Config::from_json(&doc.json) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_INVALID;
        }
    };
    for w in &config.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    let report = explain(&config, &args);
    if let Some(problem) = &report.disagreement {
        let _ = writeln!(err, "graylane: internal error: {problem}");
    }
    let _ = if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        )
    } else {
        write!(out, "{}", report.to_text())
    };
    if report.disagreement.is_some() {
        EXIT_INTERNAL
    } else {
        EXIT_OK
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
}

/// Explains the request described by `args` against `config`.
pub fn explain(config: &Config, args: &ExplainArgs) -> Report {
    let request = args.request();
    // Both walks draw from identical generators, so the same random draws
    // reach the same rules.
    let mut rng = args::rng(args.random);
    let explanation = engine::explain(config, &request, &mut rng);
    let mut rng = args::rng(args.random);
    let outcome = engine::process(config, &request, &mut rng);

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
        (engine::Source::Rule, Some(id)) => lane_of(id).map(|l| (id, l.name.clone(), l.priority)),
        _ => None,
    };
    let bucket = d
        .split
        .as_ref()
        .and_then(|s| s.bucket().map(|b| (b, s.admitted())));

    let winner = explanation
        .decision
        .lane
        .filter(|_| explanation.decision.source == engine::Source::Rule);
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
    let mut response = Vec::new();
    if config.response_header {
        response.push((
            config.lane_header.clone(),
            config.lane_name(d.lane).to_string(),
        ));
    }
    for cookie in &d.assigned {
        response.push(("set-cookie".to_string(), cookie.set_cookie()));
    }
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

fn key_text(split: Option<&Split>) -> String {
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
        json!({
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
        })
    }
}
