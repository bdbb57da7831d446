//! Metrics (docs/rollout.md "Window metrics"): snapshots of the counters
//! that describe the lane and base, from Envoy's admin `/stats/prometheus`
//! (summed over several Envoys) or from Prometheus' HTTP API, and the
//! per-window deltas between two snapshots, with counter resets detected.

use super::analysis::{Histogram, Sample};
use super::plan::{Clusters, MetricsSource, Plan, Query};
use std::collections::BTreeMap;
use std::time::Duration;

/// The metric families a window reads.
const RQ_TOTAL: &str = "envoy_cluster_upstream_rq_total";
const RQ_XX: &str = "envoy_cluster_upstream_rq_xx";
const RQ_TIME_BUCKET: &str = "envoy_cluster_upstream_rq_time_bucket";
const LANE_REQUESTS: &str = "graylane_requests";
/// Seconds since the Envoy started: going down means it restarted.
const UPTIME: &str = "envoy_server_uptime";
/// Hot restarts: a change means a new Envoy took over.
const EPOCH: &str = "envoy_server_hot_restart_epoch";

/// One series' value, keyed by where it came from and its labels.
pub type Snapshot = BTreeMap<String, f64>;

/// Which version a series describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Lane,
    Base,
}

/// Decides which clusters are the lane's and base's.
pub struct ClusterMatcher {
    lane: String,
    named: Option<(Vec<String>, Vec<String>)>,
    /// Every lane of the plugin config: a cluster belongs to the longest
    /// lane name it ends with, so `svc-android-canary` is `android-canary`'s,
    /// not `canary`'s.
    lanes: Vec<String>,
}

impl ClusterMatcher {
    pub fn new(plan: &Plan) -> ClusterMatcher {
        ClusterMatcher {
            lane: plan.lane.clone(),
            lanes: Vec::new(),
            named: match &plan.clusters {
                Clusters::Named { lane, base } => Some((lane.clone(), base.clone())),
                Clusters::Convention => None,
            },
        }
    }

    fn side(&self, cluster: &str) -> Option<Side> {
        if let Some((lane, base)) = &self.named {
            if lane.iter().any(|c| c == cluster) {
                return Some(Side::Lane);
            }
            return base.iter().any(|c| c == cluster).then_some(Side::Base);
        }
        // The dashboard's convention: `<service>-<lane>`, or Istio's
        // `outbound|<port>|<lane>|<host>` (subsets named after the lanes).
        // Exact: the cluster is the longest lane's it ends with.
        let is = |lane: &str| {
            cluster
                .strip_suffix(lane)
                .is_some_and(|service| service.len() > 1 && service.ends_with('-'))
                || (cluster.starts_with("outbound|") && cluster.split('|').nth(2) == Some(lane))
        };
        let owner = self
            .lanes
            .iter()
            .map(String::as_str)
            .chain([self.lane.as_str(), crate::engine::BASE])
            .filter(|l| is(l))
            .max_by_key(|l| l.len())?;
        if owner == self.lane {
            Some(Side::Lane)
        } else if owner == crate::engine::BASE {
            Some(Side::Base)
        } else {
            None
        }
    }
}

/// A series' labels: (name, unescaped value).
type Labels<'a> = Vec<(&'a str, String)>;

/// A parsed exposition line: name, labels, value.
fn parse_line(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "NaN" => return None,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut out = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, c)) => val.push(c),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => val.push(c),
            }
        }
        let end = end?;
        out.push((key.trim_start_matches(',').trim(), val));
        rest = after.get(end + 1..)?.trim_start_matches(',');
    }
    Some((name.trim(), out, value))
}

fn label<'a>(labels: &'a [(&str, String)], names: &[&str]) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| names.contains(k))
        .map(|(_, v)| v.as_str())
}

/// The cluster label: Envoy's default tag extraction names it
/// `envoy_cluster_name`; Istio's proxies `cluster_name`.
const CLUSTER_LABELS: &[&str] = &["envoy_cluster_name", "cluster_name"];

/// Key of a series in a [`Snapshot`]: `family|side|origin|le` (the origin
/// keeps two Envoys' counters apart, so a reset of one is seen).
fn key(family: &str, side: &str, origin: &str, extra: &str) -> String {
    format!("{family}|{side}|{origin}|{extra}")
}

/// Adds the series of one exposition text (one Envoy's admin, or
/// Prometheus' answer rewritten as lines) to `snap`.
fn collect(snap: &mut Snapshot, m: &ClusterMatcher, origin: &str, text: &str) {
    for line in text.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        let origin = match label(&labels, &["instance"]) {
            Some(i) => format!("{origin}/{i}"),
            None => origin.to_string(),
        };
        match name {
            RQ_TOTAL | RQ_XX | RQ_TIME_BUCKET => {
                let Some(cluster) = label(&labels, CLUSTER_LABELS) else {
                    continue;
                };
                let side = match m.side(cluster) {
                    Some(Side::Lane) => "lane",
                    Some(Side::Base) => "base",
                    None => continue,
                };
                let extra = match name {
                    RQ_XX => {
                        if label(
                            &labels,
                            &["envoy_response_code_class", "response_code_class"],
                        ) != Some("5")
                        {
                            continue;
                        }
                        cluster.to_string()
                    }
                    RQ_TIME_BUCKET => {
                        let Some(le) = label(&labels, &["le"]) else {
                            continue;
                        };
                        format!("{cluster}|{le}")
                    }
                    _ => cluster.to_string(),
                };
                *snap.entry(key(name, side, &origin, &extra)).or_default() += value;
            }
            UPTIME | EPOCH => {
                snap.insert(key(name, "server", &origin, ""), value);
            }
            LANE_REQUESTS => {
                let Some(lane) = label(&labels, &["lane"]) else {
                    continue;
                };
                let source = label(&labels, &["source"]).unwrap_or("");
                let side = if lane == m.lane { "lane" } else { "other" };
                *snap
                    .entry(key(name, side, &origin, &format!("{lane}|{source}")))
                    .or_default() += value;
            }
            _ => {}
        }
    }
}

/// Reads the counters now.
pub struct Reader {
    source: MetricsSource,
    matcher: ClusterMatcher,
    agent: ureq::Agent,
    lane: String,
}

/// What one window's counters say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub lane: Sample,
    pub base: Sample,
    /// Requests graylane put in the lane (`graylane_requests{lane=...}`).
    pub admitted: u64,
    /// Requests graylane decided in all (any lane, base included).
    pub decided: u64,
    /// Why the numbers cannot be trusted (counter reset), if so.
    pub resets: Vec<String>,
}

fn http_get(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut resp = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    resp.body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))
}

/// Prometheus' `/api/v1/query` answer as exposition lines.
fn prometheus_lines(body: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if v.get("status").and_then(|s| s.as_str()) != Some("success") {
        return Err(format!(
            "Prometheus: {}",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("query failed")
        ));
    }
    let mut out = String::new();
    let results = v
        .pointer("/data/result")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    for r in results {
        let Some(metric) = r.get("metric").and_then(|m| m.as_object()) else {
            continue;
        };
        let name = metric
            .get("__name__")
            .and_then(|n| n.as_str())
            .unwrap_or("");
        let labels: Vec<String> = metric
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap_or("")
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"");
                format!("{k}=\"{v}\"")
            })
            .collect();
        let value = r
            .pointer("/value/1")
            .and_then(|v| v.as_str())
            .unwrap_or("NaN");
        out.push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
    }
    Ok(out)
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a rollout's counters come from. The driver reaches them only
/// through this (native tests script them).
pub trait Metrics {
    /// Where, for messages.
    fn describe(&self) -> String;
    /// One snapshot of every series the analysis reads.
    fn snapshot(&self) -> Result<Snapshot, String>;
    /// A `queries` check's value now (`None`: the query returned nothing).
    /// Every series' value of a `queries` check now (empty: no series).
    fn query(&self, q: &Query, interval: Duration) -> Result<Vec<f64>, String>;
}

impl Metrics for Reader {
    fn describe(&self) -> String {
        Reader::describe(self)
    }

    fn snapshot(&self) -> Result<Snapshot, String> {
        Reader::snapshot(self)
    }

    fn query(&self, q: &Query, interval: Duration) -> Result<Vec<f64>, String> {
        Reader::query(self, q, interval)
    }
}

/// A snapshot of cumulative counts, as [`Reader::snapshot`] gives them:
/// for native tests of what reads snapshots.
pub fn snapshot_of(lane: (u64, u64), base: (u64, u64), origin: &str) -> Snapshot {
    let mut snap = Snapshot::new();
    for (side, (requests, errors)) in [("lane", lane), ("base", base)] {
        snap.insert(key(RQ_TOTAL, side, origin, side), requests as f64);
        snap.insert(key(RQ_XX, side, origin, side), errors as f64);
        // Every request answered in 1 ms.
        for le in ["1", "5", "+Inf"] {
            snap.insert(
                key(RQ_TIME_BUCKET, side, origin, &format!("{side}|{le}")),
                requests as f64,
            );
        }
    }
    snap
}

impl Reader {
    /// The plugin config's lanes, so that clusters match exactly (a
    /// cluster is the longest lane name's it ends with).
    pub fn with_lanes(mut self, lanes: Vec<String>) -> Reader {
        self.matcher.lanes = lanes;
        self
    }

    pub fn new(plan: &Plan) -> Reader {
        Reader::of(plan, &plan.source)
    }

    /// A reader of `source` (a wave's) with the plan's clusters.
    pub fn of(plan: &Plan, source: &MetricsSource) -> Reader {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Reader {
            source: source.clone(),
            matcher: ClusterMatcher::new(plan),
            agent,
            lane: plan.lane.clone(),
        }
    }

    /// Where the counters come from, for messages.
    pub fn describe(&self) -> String {
        match &self.source {
            MetricsSource::Envoy(urls) => format!("Envoy admin {}", urls.join(", ")),
            MetricsSource::Prometheus(url) => format!("Prometheus {url}"),
        }
    }

    /// One snapshot of every series the analysis reads.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        let mut snap = Snapshot::new();
        match &self.source {
            MetricsSource::Envoy(urls) => {
                for url in urls {
                    let text = http_get(
                        &self.agent,
                        &format!("{}/stats/prometheus", url.trim_end_matches('/')),
                    )?;
                    collect(&mut snap, &self.matcher, url, &text);
                }
            }
            MetricsSource::Prometheus(url) => {
                for family in [
                    RQ_TOTAL,
                    RQ_XX,
                    RQ_TIME_BUCKET,
                    LANE_REQUESTS,
                    UPTIME,
                    EPOCH,
                ] {
                    let q = format!(
                        "{}/api/v1/query?query={}",
                        url.trim_end_matches('/'),
                        encode(family)
                    );
                    let lines = prometheus_lines(&http_get(&self.agent, &q)?)?;
                    collect(&mut snap, &self.matcher, "prometheus", &lines);
                }
            }
        }
        Ok(snap)
    }

    /// A `queries` check's value now (`None`: the query returned nothing).
    pub fn query(&self, q: &Query, interval: Duration) -> Result<Vec<f64>, String> {
        let MetricsSource::Prometheus(url) = &self.source else {
            return Err("queries need a Prometheus source".into());
        };
        let text = q
            .query
            .replace("$lane", &self.lane)
            .replace("$interval", &format!("{}s", interval.as_secs().max(1)));
        let body = http_get(
            &self.agent,
            &format!(
                "{}/api/v1/query?query={}",
                url.trim_end_matches('/'),
                encode(&text)
            ),
        )?;
        let lines = prometheus_lines(&body)?;
        // Every series, +Inf and NaN included: each is held to the bounds.
        Ok(lines
            .lines()
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .collect())
    }
}

impl Delta {
    /// Records why the window cannot be trusted, once per reason.
    fn note(&mut self, msg: String) {
        if !self.resets.contains(&msg) {
            self.resets.push(msg);
        }
    }
}

/// The window between two snapshots. A series that went down was reset
/// (Envoy restarted): such a window is reported, not judged.
pub fn delta(start: &Snapshot, end: &Snapshot) -> Delta {
    let mut d = Delta::default();
    let mut lane_buckets: BTreeMap<u64, f64> = BTreeMap::new();
    let mut base_buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for (k, v1) in end {
        let v0 = start.get(k).copied().unwrap_or(0.0);
        let family = k.split('|').next().unwrap_or("");
        if family == UPTIME || family == EPOCH {
            let origin = k.split('|').nth(2).unwrap_or("");
            let changed = match start.get(k) {
                Some(&v0) if family == UPTIME && *v1 < v0 => Some(format!(
                    "Envoy at {origin} restarted (its uptime went from {v0} s to {v1} s)"
                )),
                Some(&v0) if family == EPOCH && *v1 != v0 => Some(format!(
                    "Envoy at {origin} hot-restarted (epoch {v0} to {v1})"
                )),
                _ => None,
            };
            if let Some(msg) = changed {
                d.note(msg);
            }
            continue;
        }
        if *v1 < v0 {
            let mut parts = k.split('|');
            let family = parts.next().unwrap_or("");
            let _side = parts.next();
            let origin = parts.next().unwrap_or("");
            let msg = format!("counter reset at {origin} ({family} went from {v0} to {v1})");
            d.note(msg);
            continue;
        }
        let inc = v1 - v0;
        let mut parts = k.splitn(4, '|');
        let (family, side) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let _origin = parts.next();
        let extra = parts.next().unwrap_or("");
        let sample = match side {
            "lane" => Some(&mut d.lane),
            "base" => Some(&mut d.base),
            _ => None,
        };
        match family {
            RQ_TOTAL => {
                if let Some(s) = sample {
                    s.requests += inc.round() as u64;
                }
            }
            RQ_XX => {
                if let Some(s) = sample {
                    s.errors += inc.round() as u64;
                }
            }
            RQ_TIME_BUCKET => {
                let le = extra.rsplit('|').next().unwrap_or("");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                if bound.is_nan() {
                    continue;
                }
                let buckets = if side == "lane" {
                    &mut lane_buckets
                } else {
                    &mut base_buckets
                };
                *buckets.entry(bound.to_bits()).or_default() += inc;
            }
            LANE_REQUESTS => {
                d.decided += inc.round() as u64;
                if side == "lane" {
                    d.admitted += inc.round() as u64;
                }
            }
            _ => {}
        }
    }
    // A series that disappeared (a restarted Envoy that has not counted it
    // yet) is a reset too.
    for k in start.keys() {
        if !end.contains_key(k) {
            let origin = k.split('|').nth(2).unwrap_or("");
            let msg = format!("counter reset at {origin} (a series disappeared)");
            d.note(msg);
        }
    }
    d.lane.latency = histogram(&lane_buckets);
    d.base.latency = histogram(&base_buckets);
    d
}

fn histogram(buckets: &BTreeMap<u64, f64>) -> Histogram {
    let mut v: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(b, c)| (f64::from_bits(*b), *c))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    Histogram { buckets: v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::{Clusters, MetricsSource};

    fn matcher(lane: &str) -> ClusterMatcher {
        ClusterMatcher {
            lane: lane.into(),
            named: None,
            lanes: vec!["gray".into(), "canary".into(), "android-canary".into()],
        }
    }

    const SCRAPE: &str = r#"# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="backend-gray"} 100
envoy_cluster_upstream_rq_total{envoy_cluster_name="backend-base"} 900
envoy_cluster_upstream_rq_total{envoy_cluster_name="backend-beta"} 7
envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|9080|gray|svc-b.default.svc.cluster.local"} 5
envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="backend-gray"} 10
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="backend-gray"} 90
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend-gray",le="0.5"} 50
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend-gray",le="1"} 90
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend-gray",le="+Inf"} 100
graylane_requests{source="rule",lane="gray"} 105
graylane_requests{source="default",lane="base"} 900
"#;

    #[test]
    fn clusters_by_convention() {
        let m = matcher("gray");
        assert_eq!(m.side("backend-gray"), Some(Side::Lane));
        assert_eq!(m.side("backend-base"), Some(Side::Base));
        assert_eq!(m.side("backend-beta"), None);
        assert_eq!(
            m.side("outbound|9080|gray|svc-b.default.svc.cluster.local"),
            Some(Side::Lane)
        );
        assert_eq!(
            m.side("outbound|9080|base|svc-b.default.svc.cluster.local"),
            Some(Side::Base)
        );
        assert_eq!(m.side("gray"), None);
        assert_eq!(m.side("svc-b-base"), Some(Side::Base));
        let m = matcher("android-canary");
        assert_eq!(m.side("svc-android-canary"), Some(Side::Lane));
        assert_eq!(m.side("svc-canary"), None);
        // Exact: lane `canary` does not count `android-canary`'s clusters.
        let m = matcher("canary");
        assert_eq!(m.side("svc-canary"), Some(Side::Lane));
        assert_eq!(m.side("svc-android-canary"), None);
        assert_eq!(m.side("-canary"), None);
    }

    /// An Envoy that restarted is seen by its uptime going down, even when
    /// its counters have already overtaken their old values.
    #[test]
    fn a_restart_is_seen_by_uptime_and_epoch() {
        let m = matcher("gray");
        let scrape = |uptime: u64, epoch: u64, total: u64| {
            let mut s = Snapshot::new();
            let text = format!(
                "envoy_server_uptime{{}} {uptime}\nenvoy_server_hot_restart_epoch{{}} {epoch}\n\
                 envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"backend-gray\"}} {total}\n"
            );
            collect(&mut s, &m, "a", &text);
            s
        };
        let d = delta(&scrape(100, 0, 500), &scrape(160, 0, 900));
        assert!(d.resets.is_empty(), "{:?}", d.resets);
        assert_eq!(d.lane.requests, 400);
        let d = delta(&scrape(100, 0, 500), &scrape(20, 0, 900));
        assert_eq!(
            d.resets,
            vec!["Envoy at a restarted (its uptime went from 100 s to 20 s)"]
        );
        let d = delta(&scrape(100, 0, 500), &scrape(160, 1, 900));
        assert_eq!(d.resets, vec!["Envoy at a hot-restarted (epoch 0 to 1)"]);
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes() {
        let m = matcher("gray");
        let mut s0 = Snapshot::new();
        collect(&mut s0, &m, "a", SCRAPE);
        let doubled: String = SCRAPE
            .lines()
            .map(|l| match l.rsplit_once(' ') {
                Some((h, v)) if !l.starts_with('#') => {
                    format!("{h} {}\n", v.parse::<f64>().expect("n") * 2.0)
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let mut s1 = Snapshot::new();
        collect(&mut s1, &m, "a", &doubled);
        let d = delta(&s0, &s1);
        assert!(d.resets.is_empty(), "{:?}", d.resets);
        assert_eq!(d.lane.requests, 105);
        assert_eq!(d.lane.errors, 10);
        assert_eq!(d.base.requests, 900);
        assert_eq!(d.base.errors, 0);
        assert_eq!(d.admitted, 105);
        assert_eq!(d.decided, 1005);
        assert_eq!(
            d.lane.latency.buckets,
            vec![(0.5, 50.0), (1.0, 90.0), (f64::INFINITY, 100.0)]
        );
        // Going down is a reset, not a negative rate.
        let back = delta(&s1, &s0);
        assert!(!back.resets.is_empty());
        assert_eq!(back.lane.requests, 0);
    }

    #[test]
    fn two_envoys_are_summed_and_reset_apart() {
        let m = matcher("gray");
        let mut s0 = Snapshot::new();
        collect(&mut s0, &m, "a", SCRAPE);
        collect(&mut s0, &m, "b", SCRAPE);
        let mut s1 = Snapshot::new();
        collect(&mut s1, &m, "a", SCRAPE);
        collect(&mut s1, &m, "b", &SCRAPE.replace("} 100\n", "} 3\n"));
        let d = delta(&s0, &s1);
        assert!(!d.resets.is_empty());
        assert!(
            d.resets.iter().all(|r| r.contains("at b ")),
            "{:?}",
            d.resets
        );
    }

    #[test]
    fn labels_with_escapes_parse() {
        let (n, l, v) = parse_line(r#"x{a="q\"uo,te",b="2"} 3.5"#).expect("line");
        assert_eq!(n, "x");
        assert_eq!(
            l,
            vec![("a", "q\"uo,te".to_string()), ("b", "2".to_string())]
        );
        assert_eq!(v, 3.5);
        assert!(parse_line("# HELP x").is_none());
        assert_eq!(parse_line("y 1").map(|p| p.2), Some(1.0));
    }

    #[test]
    fn prometheus_answers_become_series() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"envoy_cluster_upstream_rq_total","envoy_cluster_name":"backend-gray","instance":"127.0.0.1:9901"},"value":[1,"42"]}]}}"#;
        let lines = prometheus_lines(body).expect("ok");
        let m = matcher("gray");
        let mut s = Snapshot::new();
        collect(&mut s, &m, "prometheus", &lines);
        let d = delta(&Snapshot::new(), &s);
        assert_eq!(d.lane.requests, 42);
        assert!(prometheus_lines(r#"{"status":"error","error":"bad"}"#).is_err());
        let _ = (Clusters::Convention, MetricsSource::Envoy(vec![]));
    }
}
