//! Parse, then compile: JSON (README "Configuration reference") -> [`RawConfig`] -> [`Config`], the
//! structures the per-request code uses. Every error names the JSON path of
//! the bad field and what would be accepted.

pub(crate) mod de;
pub mod raw;

use crate::analysis;
pub use crate::analysis::{Warning, WarningKind};
use crate::engine::{
    literal_prefix, Attr, CompiledRegex, Cond, KeySource, Lane, LaneId, Leaf, Op, Rules, Split,
    SplitKey, BUCKETS,
};
pub use crate::engine::{Compiled, Service, Shadow, BASE};
use hashbrown::{HashMap, HashSet};
pub use raw::{Incoming, OnMissingKey, RawConfig};
use raw::{RawCondition, RawLane, RawSplit};
use std::fmt;

/// Longest accepted baggage key (`baggageKey`, `shadow.baggageKey`).
pub const MAX_BAGGAGE_KEY: usize = 256;
/// Longest accepted lane name.
pub const MAX_LANE_NAME: usize = 63;
/// Default `Max-Age` of an assigned split cookie: 30 days.
pub const DEFAULT_ASSIGN_MAX_AGE: u64 = 30 * 24 * 3600;

/// A configuration error: the JSON path of the bad field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(path: &str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.to_string(),
        message: message.into(),
    })
}

/// A compiled configuration and the warnings it deserves. Derefs to the
/// [`Compiled`] form the request path reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub compiled: Compiled,
    pub warnings: Vec<Warning>,
}

impl std::ops::Deref for Config {
    type Target = Compiled;

    fn deref(&self) -> &Compiled {
        &self.compiled
    }
}

impl Config {
    /// Parses and compiles the JSON text of the plugin configuration.
    pub fn from_json(text: &[u8]) -> Result<Config, ConfigError> {
        let raw = parse(text)?;
        compile(&raw)
    }
}

/// Parses the JSON text with serde_json; errors carry the JSON path serde
/// reached. The filter and the CLI both read a configuration through here.
pub fn parse(text: &[u8]) -> Result<RawConfig, ConfigError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return err(
            "",
            "the plugin configuration is empty; expected a JSON object with at least \"lanes\"",
        );
    }
    de::from_slice::<RawConfig>(text)
}

/// A request header name graylane may set or read: a lower-case token.
fn check_header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let body = lower.strip_prefix(':').unwrap_or(&lower);
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return err(
            path,
            format!("\"{name}\" is not a valid header name; use letters, digits and -_. only"),
        );
    }
    Ok(lower)
}

fn check_settable_header(path: &str, name: &str) -> Result<String, ConfigError> {
    let lower = check_header_name(path, name)?;
    if lower.starts_with(':') || matches!(lower.as_str(), "host" | "baggage" | "cookie") {
        return err(
            path,
            format!(
                "\"{name}\" cannot be used here; choose a header of your own such as \"x-graylane\""
            ),
        );
    }
    Ok(lower)
}

fn check_baggage_key(path: &str, key: &str) -> Result<(), ConfigError> {
    // Bounded so that an edited baggage header always fits W3C limits.
    let ok = !key.is_empty()
        && key.len() <= MAX_BAGGAGE_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        err(
            path,
            format!("\"{key}\" is not a valid baggage key (a token of at most 256 letters, digits, -_.)"),
        )
    }
}

/// Lane name rule (README "Top level").
pub fn check_lane_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    let starts_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_LANE_NAME || !valid_chars || !starts_ok {
        return err(
            path,
            format!("\"{name}\" is not a valid lane name; use 1-63 characters of a-z 0-9 - _ . starting with a letter or digit"),
        );
    }
    if name == BASE {
        return err(
            path,
            "\"base\" is reserved for traffic in no lane; choose another name",
        );
    }
    Ok(())
}

/// Compiles a parsed configuration.
pub fn compile(raw: &RawConfig) -> Result<Config, ConfigError> {
    let lane_header = check_settable_header("laneHeader", &raw.lane_header)?;
    let cluster_header = check_settable_header("clusterHeader", &raw.cluster_header)?;
    if lane_header == cluster_header {
        return err("clusterHeader", "must differ from laneHeader");
    }
    check_baggage_key("baggageKey", &raw.baggage_key)?;
    let shadow = match &raw.shadow {
        None => None,
        Some(s) => {
            check_baggage_key("shadow.baggageKey", &s.baggage_key)?;
            if s.baggage_key == raw.baggage_key {
                return err("shadow.baggageKey", "must differ from baggageKey");
            }
            if s.host_suffix.is_empty() {
                return err(
                    "shadow.hostSuffix",
                    "must not be empty; Envoy and Istio use \"-shadow\"",
                );
            }
            Some(Shadow {
                host_suffix: s.host_suffix.to_ascii_lowercase(),
                baggage_key: s.baggage_key.clone(),
            })
        }
    };
    if raw.lanes.is_empty() && raw.propagate.is_empty() {
        return err(
            "lanes",
            "at least one lane is required: a rule in \"lanes\", or a name in \"propagate\" (hops)",
        );
    }

    let mut warnings = Vec::new();
    let mut lanes = Vec::with_capacity(raw.lanes.len());
    let mut names: HashMap<String, LaneId> = HashMap::with_capacity(raw.lanes.len());
    for (i, rl) in raw.lanes.iter().enumerate() {
        let path = format!("lanes[{i}]");
        let lane = compile_lane(&path, rl, &mut warnings)?;
        if let Some(prev) = names.insert(lane.name.clone(), i) {
            return err(
                &format!("{path}.name"),
                format!(
                    "lane \"{}\" is already declared at lanes[{prev}]; names must be unique",
                    lane.name
                ),
            );
        }
        lanes.push(lane);
    }
    for (i, name) in raw.propagate.iter().enumerate() {
        let path = format!("propagate[{i}]");
        check_lane_name(&path, name)?;
        let id = lanes.len();
        if let Some(prev) = names.insert(name.clone(), id) {
            let other = if prev < raw.lanes.len() {
                format!("lanes[{prev}]")
            } else {
                format!("propagate[{}]", prev - raw.lanes.len())
            };
            return err(
                &path,
                format!("lane \"{name}\" is already declared at {other}; a lane is either a rule in \"lanes\" or a name in \"propagate\", once"),
            );
        }
        lanes.push(Lane {
            name: name.clone(),
            rule: false,
            priority: i64::MAX,
            cond: None,
            split: None,
        });
    }
    if !raw.propagate.is_empty() && raw.incoming == Incoming::Ignore {
        warnings.push(Warning {
            kind: WarningKind::PropagateIgnored,
            path: "propagate".into(),
            message: "has no effect with \"incoming\": \"ignore\" (an edge removes incoming tags); use \"incoming\": \"trust\" on hops".into(),
        });
    }

    let mut services = HashMap::with_capacity(raw.services.len());
    for (host, rs) in &raw.services {
        let path = format!("services.{host}");
        let key = host.to_ascii_lowercase();
        if key.is_empty() || key.contains(':') || key.contains('/') {
            return err(
                &path,
                "the key must be a host name without port or path, as in the request's authority",
            );
        }
        if rs.base.is_empty() {
            return err(
                &format!("{path}.base"),
                "the base cluster name must not be empty",
            );
        }
        let mut by_lane = vec![None; lanes.len()];
        for (lane, cluster) in &rs.lanes {
            let lpath = format!("{path}.lanes.{lane}");
            if cluster.is_empty() {
                return err(&lpath, "the cluster name must not be empty");
            }
            match names.get(lane).and_then(|&id| by_lane.get_mut(id)) {
                Some(slot) => *slot = Some(cluster.clone()),
                None => warnings.push(Warning {
                    kind: WarningKind::UnknownServiceLane,
                    path: lpath,
                    message: format!(
                        "lane \"{lane}\" is not declared in \"lanes\" or \"propagate\"; this entry is never used"
                    ),
                }),
            }
        }
        if services
            .insert(
                key.clone(),
                Service {
                    name: key,
                    base: rs.base.clone(),
                    lanes: by_lane,
                },
            )
            .is_some()
        {
            return err(&path, "declared twice (service keys are case-insensitive)");
        }
    }

    let rules = Rules::new(lanes);
    warnings.extend(analysis::analyze(&rules));
    Ok(Config {
        compiled: Compiled {
            lane_header,
            baggage_key: raw.baggage_key.clone(),
            incoming: raw.incoming,
            cluster_header,
            response_header: raw.response_header,
            shadow,
            services,
            rules,
        },
        warnings,
    })
}

fn compile_lane(
    path: &str,
    rl: &RawLane,
    warnings: &mut Vec<Warning>,
) -> Result<Lane, ConfigError> {
    check_lane_name(&format!("{path}.name"), &rl.name)?;
    let cond = match &rl.match_ {
        None => None,
        Some(c) => Some(compile_cond(&format!("{path}.match"), c)?),
    };
    let split = match &rl.split {
        None => None,
        Some(s) => Some(compile_split(&format!("{path}.split"), s, &rl.name)?),
    };
    if let Some(s) = &split {
        if s.ranges.is_empty() {
            warnings.push(Warning {
                kind: WarningKind::ZeroPercent,
                path: format!("{path}.split"),
                message: format!("lane \"{}\" admits no request (0 %)", rl.name),
            });
        }
    }
    Ok(Lane {
        name: rl.name.clone(),
        rule: true,
        priority: rl.priority,
        cond,
        split,
    })
}

const ATTRIBUTES: &str = "header, cookie, query, path, method, host, baggage";
const OPERATORS: &str = "exact, prefix, suffix, contains, regex, in, present, range";

fn compile_cond(path: &str, c: &RawCondition) -> Result<Cond, ConfigError> {
    let mut structural = Vec::new();
    if c.all.is_some() {
        structural.push("all");
    }
    if c.any.is_some() {
        structural.push("any");
    }
    if c.not.is_some() {
        structural.push("not");
    }
    let mut attrs: Vec<(&str, Attr)> = Vec::new();
    if let Some(h) = &c.header {
        attrs.push((
            "header",
            Attr::Header(check_header_name(&format!("{path}.header"), h)?),
        ));
    }
    if let Some(k) = &c.cookie {
        if k.is_empty() {
            return err(
                &format!("{path}.cookie"),
                "the cookie name must not be empty",
            );
        }
        attrs.push(("cookie", Attr::Cookie(k.clone())));
    }
    if let Some(k) = &c.query {
        if k.is_empty() {
            return err(
                &format!("{path}.query"),
                "the query parameter name must not be empty",
            );
        }
        attrs.push(("query", Attr::Query(k.clone())));
    }
    for (name, flag, attr) in [
        ("path", c.path, Attr::Path),
        ("method", c.method, Attr::Method),
        ("host", c.host, Attr::Host),
    ] {
        match flag {
            Some(true) => attrs.push((name, attr)),
            Some(false) => {
                return err(
                    &format!("{path}.{name}"),
                    format!("write \"{name}\": true to test the {name}"),
                )
            }
            None => {}
        }
    }
    if let Some(k) = &c.baggage {
        check_baggage_key(&format!("{path}.baggage"), k)?;
        attrs.push(("baggage", Attr::Baggage(k.clone())));
    }

    let mut ops: Vec<&str> = Vec::new();
    for (name, set) in [
        ("exact", c.exact.is_some()),
        ("prefix", c.prefix.is_some()),
        ("suffix", c.suffix.is_some()),
        ("contains", c.contains.is_some()),
        ("regex", c.regex.is_some()),
        ("in", c.in_.is_some()),
        ("present", c.present.is_some()),
        ("range", c.range.is_some()),
    ] {
        if set {
            ops.push(name);
        }
    }

    if !structural.is_empty() {
        if structural.len() > 1 || !attrs.is_empty() || !ops.is_empty() || c.ignore_case.is_some() {
            let mut all: Vec<&str> = structural.clone();
            all.extend(attrs.iter().map(|(n, _)| *n));
            all.extend(ops.iter().copied());
            if c.ignore_case.is_some() {
                all.push("ignoreCase");
            }
            return err(
                path,
                format!(
                    "a condition is exactly one of all, any, not, or a leaf; found {}; nest them instead",
                    all.join(", ")
                ),
            );
        }
        if let Some(list) = &c.all {
            let mut out = Vec::with_capacity(list.len());
            for (i, sub) in list.iter().enumerate() {
                out.push(compile_cond(&format!("{path}.all[{i}]"), sub)?);
            }
            return Ok(Cond::All(out));
        }
        if let Some(list) = &c.any {
            if list.is_empty() {
                return err(
                    &format!("{path}.any"),
                    "an empty \"any\" can never hold; give at least one condition",
                );
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, sub) in list.iter().enumerate() {
                out.push(compile_cond(&format!("{path}.any[{i}]"), sub)?);
            }
            return Ok(Cond::Any(out));
        }
        if let Some(sub) = &c.not {
            return Ok(Cond::Not(Box::new(compile_cond(
                &format!("{path}.not"),
                sub,
            )?)));
        }
    }

    let attr = match attrs.len() {
        0 => {
            return err(
                path,
                format!("a leaf needs one attribute ({ATTRIBUTES}), or use all/any/not"),
            )
        }
        1 => attrs.remove(0).1,
        _ => {
            let names: Vec<&str> = attrs.iter().map(|(n, _)| *n).collect();
            return err(
                path,
                format!(
                    "leaf has {} attributes ({}); use exactly one, and all/any to combine",
                    names.len(),
                    names.join(", ")
                ),
            );
        }
    };
    if ops.len() != 1 {
        return err(
            path,
            if ops.is_empty() {
                format!("leaf has no operator; use exactly one of {OPERATORS}")
            } else {
                format!(
                    "leaf has {} operators ({}); use exactly one",
                    ops.len(),
                    ops.join(", ")
                )
            },
        );
    }
    let ignore_case = c.ignore_case.unwrap_or(false);
    let fold = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let op = if let Some(v) = &c.exact {
        Op::Exact(fold(v))
    } else if let Some(v) = &c.prefix {
        Op::Prefix(fold(v))
    } else if let Some(v) = &c.suffix {
        Op::Suffix(fold(v))
    } else if let Some(v) = &c.contains {
        Op::Contains(fold(v))
    } else if let Some(r) = &c.regex {
        let re = regex_lite::RegexBuilder::new(&format!("^(?:{r})$"))
            .case_insensitive(ignore_case)
            .size_limit(1 << 20)
            .nest_limit(64)
            .build();
        match re {
            Ok(regex) => {
                let prefix = literal_prefix(r);
                // ASCII case folding only: with ignoreCase a non-ASCII prefix is not used.
                let usable = !ignore_case || prefix.is_ascii();
                Op::Regex(Box::new(CompiledRegex {
                    regex,
                    source: r.clone(),
                    prefix: if usable { prefix } else { String::new() },
                }))
            }
            Err(e) => {
                return err(
                    &format!("{path}.regex"),
                    format!("invalid regular expression \"{r}\": {e}; the syntax is that of the Rust regex crate (no look-around or backreferences)"),
                )
            }
        }
    } else if let Some(list) = &c.in_ {
        if list.is_empty() {
            return err(
                &format!("{path}.in"),
                "an empty \"in\" list can never match; give at least one value",
            );
        }
        Op::In(list.iter().map(|s| fold(s)).collect::<HashSet<_>>())
    } else if let Some(p) = c.present {
        if c.ignore_case.is_some() {
            return err(
                &format!("{path}.ignoreCase"),
                "has no effect with \"present\"; remove it",
            );
        }
        Op::Present(p)
    } else if let Some(r) = &c.range {
        if c.ignore_case.is_some() {
            return err(
                &format!("{path}.ignoreCase"),
                "has no effect with \"range\"; remove it",
            );
        }
        let (min, max) = (r.min.unwrap_or(i64::MIN), r.max.unwrap_or(i64::MAX));
        if min > max {
            return err(
                &format!("{path}.range"),
                format!("min {min} is greater than max {max}"),
            );
        }
        Op::Range(min, max)
    } else {
        return err(
            path,
            format!("leaf has no operator; use exactly one of {OPERATORS}"),
        );
    };
    Ok(Cond::Leaf(Leaf {
        attr,
        op,
        ignore_case,
    }))
}

fn compile_split(path: &str, s: &RawSplit, lane: &str) -> Result<Split, ConfigError> {
    let key = match &s.key {
        None => None,
        Some(k) => {
            let kpath = format!("{path}.key");
            let mut sources = Vec::new();
            if let Some(h) = &k.header {
                sources.push(KeySource::Header(check_header_name(
                    &format!("{kpath}.header"),
                    h,
                )?));
            }
            if let Some(c) = &k.cookie {
                if c.is_empty() {
                    return err(
                        &format!("{kpath}.cookie"),
                        "the cookie name must not be empty",
                    );
                }
                sources.push(KeySource::Cookie(c.clone()));
            }
            if let Some(q) = &k.query {
                if q.is_empty() {
                    return err(
                        &format!("{kpath}.query"),
                        "the query parameter name must not be empty",
                    );
                }
                sources.push(KeySource::Query(q.clone()));
            }
            if sources.len() != 1 {
                return err(&kpath, "give exactly one of header, cookie or query");
            }
            let source = sources.remove(0);
            let assign = match (k.assign, &source) {
                (false, _) => {
                    if k.max_age.is_some() {
                        return err(
                            &format!("{kpath}.maxAge"),
                            "only applies with \"assign\": true",
                        );
                    }
                    None
                }
                (true, KeySource::Cookie(name)) => {
                    let cookie_ok = name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !cookie_ok {
                        return err(
                            &format!("{kpath}.cookie"),
                            format!("\"{name}\" is not a valid cookie name to set"),
                        );
                    }
                    Some(k.max_age.unwrap_or(DEFAULT_ASSIGN_MAX_AGE))
                }
                (true, _) => return err(
                    &format!("{kpath}.assign"),
                    "only a cookie key can be assigned; use {\"cookie\": NAME, \"assign\": true}",
                ),
            };
            Some(SplitKey { source, assign })
        }
    };
    let ranges = match (s.percent, &s.buckets) {
        (Some(_), Some(_)) | (None, None) => {
            return err(path, "give exactly one of \"percent\" or \"buckets\"");
        }
        (Some(p), None) => {
            let hundredths = p * 100.0;
            if !(0.0..=100.0).contains(&p) || (hundredths - hundredths.round()).abs() > 1e-6 {
                return err(
                    &format!("{path}.percent"),
                    "must be a share from 0 to 100 in steps of 0.01, such as 12.5",
                );
            }
            // In range and integral, checked above.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = hundredths.round() as u16;
            if n == 0 {
                Vec::new()
            } else {
                vec![(0, n - 1)]
            }
        }
        (None, Some(list)) => {
            if list.is_empty() {
                return err(
                    &format!("{path}.buckets"),
                    "give at least one range such as \"0-999\"",
                );
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, r) in list.iter().enumerate() {
                out.push(parse_bucket_range(&format!("{path}.buckets[{i}]"), r)?);
            }
            out
        }
    };
    Ok(Split {
        key,
        ranges,
        salt: s.salt.clone().unwrap_or_else(|| lane.to_string()),
        on_missing: s.on_missing_key,
    })
}

fn parse_bucket_range(path: &str, text: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        err(
            path,
            format!("\"{text}\" is not a bucket range; write \"LOW-HIGH\" or \"N\" with 0 <= LOW <= HIGH <= {}", BUCKETS - 1),
        )
    };
    let num = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| u64::from(*n) < BUCKETS)
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(text), num(text)),
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => bad(),
    }
}

#[cfg(test)]
mod tests;
