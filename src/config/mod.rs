//! Parse, then compile: JSON (docs/configuration.md "Configuration reference") ->
//! [`RawConfig`] -> [`Config`], the structures the per-request code uses.
//! Every error names the JSON path of the bad value and what would be
//! accepted; one run reports every error it can (see [`de`] for what stops
//! the reading of the JSON).

mod cond;
pub(crate) mod de;
mod error;
pub mod lint;
mod names;
mod path;
pub mod raw;
mod split;

use crate::continuity::{self, Continuity, TraceHeader};
pub use crate::engine::{Compiled, Service, Shadow, BASE};
use crate::engine::{Lane, LaneId, Rules};
pub use error::{ConfigError, ConfigErrors, ErrorKind};
use hashbrown::HashMap;
pub use lint::{Warning, WarningKind};
pub use names::{
    baggage_key_symbols, is_baggage_key_char, is_token_char, MAX_BAGGAGE_KEY, MAX_LANE_NAME,
    TOKEN_SYMBOLS,
};
pub use path::JsonPath;
pub use raw::{Incoming, OnMissingKey, RawConfig};
use raw::{RawLane, RawService};

/// Default `Max-Age` of an assigned split cookie: 30 days.
pub const DEFAULT_ASSIGN_MAX_AGE: u64 = 30 * 24 * 3600;

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
    /// Parses and compiles the JSON text of the plugin configuration; the
    /// errors are those of the JSON, then those of compiling what could be
    /// read. The filter and the CLI both read a configuration through here.
    pub fn from_json(text: &[u8]) -> Result<Config, ConfigErrors> {
        let de::Read { value, read_past } = read(text);
        let raw = match value {
            Ok(raw) => raw,
            Err(stop) => return Err(ConfigErrors::ending_with(read_past, stop)),
        };
        let compiled = compile(&raw);
        match ConfigErrors::from_vec(read_past) {
            None => compiled,
            Some(mut errors) => {
                if let Err(more) = compiled {
                    errors.extend(more);
                }
                Err(errors)
            }
        }
    }
}

/// Reads the JSON text with serde_json (see [`de`]).
fn read(text: &[u8]) -> de::Read<RawConfig> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return de::Read {
            value: Err(ConfigError::new(
                &JsonPath::Root,
                ErrorKind::Empty,
                "the plugin configuration is empty; expected a JSON object with at least \"lanes\"",
            )),
            read_past: Vec::new(),
        };
    }
    de::read::<RawConfig>(text)
}

/// Compiles a parsed configuration, reporting every error it finds.
pub fn compile(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut c = Compiler::default();
    let (lane_header, cluster_header) = c.headers(raw);
    let shadow = c.shadow(raw);
    let lanes = c.lanes(raw);
    let services = c.services(raw, &lanes);
    let continuity = c.continuity(raw);
    if let Some(errors) = ConfigErrors::from_vec(c.errors) {
        return Err(errors);
    }
    let rules = Rules::new(lanes.compiled);
    let mut warnings = c.warnings;
    warnings.extend(lint::analyze(&rules));
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
            continuity,
        },
        warnings,
    })
}

/// What compiling has found so far. Each part returns what it compiled;
/// when it records an error, what it returns stands in for the part only
/// so that the rest can be checked, and is never used.
#[derive(Default)]
struct Compiler {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

/// The lanes as compiled, and the id of every declared name.
struct Lanes {
    compiled: Vec<Lane>,
    ids: HashMap<String, LaneId>,
    /// Declared in `lanes` and `propagate`.
    declared: usize,
}

impl Compiler {
    /// `Some` when `result` holds a value, else records its error.
    fn ok<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    /// Records an error.
    fn report(&mut self, path: &JsonPath<'_>, kind: ErrorKind, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, kind, message));
    }

    /// Records an error; `None` for the value that has it.
    fn fail<T>(
        &mut self,
        path: &JsonPath<'_>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Option<T> {
        self.report(path, kind, message);
        None
    }

    fn warn(&mut self, path: &JsonPath<'_>, kind: WarningKind, message: String) {
        self.warnings.push(Warning {
            kind,
            path: path.to_string(),
            message,
        });
    }

    /// No error recorded since there were `before`.
    fn clean_since(&self, before: usize) -> bool {
        self.errors.len() == before
    }

    /// `laneHeader`, `clusterHeader` (lower-cased) and `baggageKey`.
    fn headers(&mut self, raw: &RawConfig) -> (String, String) {
        let root = JsonPath::Root;
        let cluster_path = root.field("clusterHeader");
        let lane = self.ok(names::settable_header(
            &root.field("laneHeader"),
            &raw.lane_header,
        ));
        let cluster = self.ok(names::settable_header(&cluster_path, &raw.cluster_header));
        let headers = match (lane, cluster) {
            (Some(lane), Some(cluster)) if lane == cluster => {
                self.report(
                    &cluster_path,
                    ErrorKind::NotDistinct,
                    "must differ from laneHeader",
                );
                (lane, cluster)
            }
            (lane, cluster) => (lane.unwrap_or_default(), cluster.unwrap_or_default()),
        };
        self.ok(names::baggage_key(
            &root.field("baggageKey"),
            &raw.baggage_key,
        ));
        headers
    }

    fn shadow(&mut self, raw: &RawConfig) -> Option<Shadow> {
        let s = raw.shadow.as_ref()?;
        let root = JsonPath::Root;
        let path = root.field("shadow");
        let key = path.field("baggageKey");
        let before = self.errors.len();
        if self.ok(names::baggage_key(&key, &s.baggage_key)).is_some()
            && s.baggage_key == raw.baggage_key
        {
            self.report(&key, ErrorKind::NotDistinct, "must differ from baggageKey");
        }
        if s.host_suffix.is_empty() {
            self.report(
                &path.field("hostSuffix"),
                ErrorKind::EmptyName,
                "must not be empty; Envoy and Istio use \"-shadow\"",
            );
        }
        self.clean_since(before).then(|| Shadow {
            host_suffix: s.host_suffix.to_ascii_lowercase(),
            baggage_key: s.baggage_key.clone(),
        })
    }

    /// `lanes` and `propagate`: every name valid and declared once.
    fn lanes(&mut self, raw: &RawConfig) -> Lanes {
        let declared = raw.lanes.len() + raw.propagate.len();
        let mut lanes = Lanes {
            compiled: Vec::with_capacity(declared),
            ids: HashMap::with_capacity(declared),
            declared,
        };
        if declared == 0 {
            self.report(
                &JsonPath::Root.field("lanes"),
                ErrorKind::NoLanes,
                "at least one lane is required: a rule in \"lanes\", or a name in \"propagate\" (hops)",
            );
        }
        self.rules(raw, &mut lanes);
        self.propagated(raw, &mut lanes);
        lanes
    }

    /// `lanes`: the rules.
    fn rules(&mut self, raw: &RawConfig, lanes: &mut Lanes) {
        let root = JsonPath::Root;
        let list = root.field("lanes");
        for (i, rl) in raw.lanes.iter().enumerate() {
            let path = list.index(i);
            let name_path = path.field("name");
            let name_ok = self.ok(names::lane_name(&name_path, &rl.name)).is_some();
            let lane = self.lane(&path, rl);
            if name_ok {
                if let Some(prev) = lanes.ids.insert(rl.name.clone(), i) {
                    let message = format!(
                        "lane \"{}\" is already declared at {}; names must be unique",
                        rl.name,
                        declared_at(raw, prev)
                    );
                    self.report(&name_path, ErrorKind::DuplicateLane, message);
                }
            }
            lanes.compiled.extend(lane);
        }
    }

    /// `propagate`: lanes without a rule, after those of `lanes`.
    fn propagated(&mut self, raw: &RawConfig, lanes: &mut Lanes) {
        let root = JsonPath::Root;
        let list = root.field("propagate");
        for (i, name) in raw.propagate.iter().enumerate() {
            let path = list.index(i);
            if self.ok(names::lane_name(&path, name)).is_none() {
                continue;
            }
            if let Some(prev) = lanes.ids.insert(name.clone(), raw.lanes.len() + i) {
                let message = format!("lane \"{name}\" is already declared at {}; a lane is either a rule in \"lanes\" or a name in \"propagate\", once", declared_at(raw, prev));
                self.report(&path, ErrorKind::DuplicateLane, message);
            }
            lanes.compiled.push(Lane {
                name: name.clone(),
                rule: false,
                priority: i64::MAX,
                cond: None,
                split: None,
            });
        }
        if !raw.propagate.is_empty() && raw.incoming == Incoming::Ignore {
            self.warn(
                &list,
                WarningKind::PropagateIgnored,
                "has no effect with \"incoming\": \"ignore\" (an edge removes incoming tags); use \"incoming\": \"trust\" on hops".into(),
            );
        }
    }

    /// One lane rule; its name is checked by [`Compiler::lanes`].
    fn lane(&mut self, path: &JsonPath<'_>, rl: &RawLane) -> Option<Lane> {
        let cond = match &rl.match_ {
            None => Some(None),
            Some(c) => self.cond(&path.field("match"), c).map(Some),
        };
        let split_path = path.field("split");
        let split = match &rl.split {
            None => Some(None),
            Some(s) => self.split(&split_path, s, &rl.name).map(Some),
        };
        let (cond, split) = (cond?, split?);
        if split.as_ref().is_some_and(|s| s.ranges.is_empty()) {
            let message = format!("lane \"{}\" admits no request (0 %)", rl.name);
            self.warn(&split_path, WarningKind::ZeroPercent, message);
        }
        Some(Lane {
            name: rl.name.clone(),
            rule: true,
            priority: rl.priority,
            cond,
            split,
        })
    }

    /// `services`, keyed by lower-cased host.
    fn services(&mut self, raw: &RawConfig, lanes: &Lanes) -> HashMap<String, Service> {
        let mut services = HashMap::with_capacity(raw.services.len());
        let root = JsonPath::Root;
        let list = root.field("services");
        for (host, rs) in &raw.services {
            let path = list.field(host);
            let Some(service) = self.service(&path, host, rs, lanes) else {
                continue;
            };
            if services.insert(service.name.clone(), service).is_some() {
                self.report(
                    &path,
                    ErrorKind::DuplicateService,
                    "declared twice (service keys are case-insensitive)",
                );
            }
        }
        services
    }

    fn service(
        &mut self,
        path: &JsonPath<'_>,
        host: &str,
        rs: &RawService,
        lanes: &Lanes,
    ) -> Option<Service> {
        let before = self.errors.len();
        let key = host.to_ascii_lowercase();
        if key.is_empty() || key.contains(':') || key.contains('/') {
            self.report(
                path,
                ErrorKind::ServiceKey,
                "the key must be a host name without port or path, as in the request's authority",
            );
        }
        self.ok(names::not_empty(
            &path.field("base"),
            &rs.base,
            "base cluster name",
        ));
        let mut by_lane = vec![None; lanes.declared];
        let lanes_path = path.field("lanes");
        for (lane, cluster) in &rs.lanes {
            let lane_path = lanes_path.field(lane);
            if self
                .ok(names::not_empty(&lane_path, cluster, "cluster name"))
                .is_none()
            {
                continue;
            }
            match lanes.ids.get(lane).and_then(|&id| by_lane.get_mut(id)) {
                Some(slot) => *slot = Some(cluster.clone()),
                None => self.warn(
                    &lane_path,
                    WarningKind::UnknownServiceLane,
                    format!("lane \"{lane}\" is not declared in \"lanes\" or \"propagate\"; this entry is never used"),
                ),
            }
        }
        self.clean_since(before).then(|| Service {
            name: key,
            base: rs.base.clone(),
            lanes: by_lane,
        })
    }
}

impl Compiler {
    /// `continuity`: trace headers, ttl, slots.
    fn continuity(&mut self, raw: &RawConfig) -> Option<Continuity> {
        let rc = raw.continuity.as_ref()?;
        let path = JsonPath::Root.field("continuity");
        let before = self.errors.len();
        let from_path = path.field("from");
        if rc.from.is_empty() || rc.from.len() > MAX_TRACE_HEADERS {
            self.report(
                &from_path,
                ErrorKind::EmptyList,
                "must name 1 to 8 headers, such as \"traceparent\" and \"x-request-id\"",
            );
        }
        let mut from = Vec::with_capacity(rc.from.len());
        for (i, name) in rc.from.iter().enumerate() {
            let item = from_path.index(i);
            let Some(lower) = self.ok(names::header_name(&item, name, names::HeaderUse::Read))
            else {
                continue;
            };
            let header = match lower.as_str() {
                "traceparent" => TraceHeader::Traceparent,
                _ if lower.starts_with(':') => {
                    self.report(
                        &item,
                        ErrorKind::HeaderName,
                        "a pseudo-header carries no trace id; name a header such as \"traceparent\"",
                    );
                    continue;
                }
                _ => TraceHeader::Whole(lower),
            };
            if from.contains(&header) {
                self.report(&item, ErrorKind::NotDistinct, "is listed twice");
                continue;
            }
            from.push(header);
        }
        let ttl_ms = continuity::parse_ttl(&rc.ttl)
            .filter(|ms| (continuity::MIN_TTL_MS..=continuity::MAX_TTL_MS).contains(ms));
        if ttl_ms.is_none() {
            self.report(
                &path.field("ttl"),
                ErrorKind::InvalidValue,
                "expected a whole number and ms, s, m or h, from 1ms to 24h, such as \"60s\"",
            );
        }
        let slots = u32::try_from(rc.slots)
            .ok()
            .filter(|n| (continuity::MIN_SLOTS..=continuity::MAX_SLOTS).contains(n));
        if slots.is_none() {
            self.report(
                &path.field("slots"),
                ErrorKind::InvalidValue,
                "expected a whole number from 1 to 1048576",
            );
        }
        let side = rc.side.as_deref().map(continuity::Side::from_name);
        if side == Some(None) {
            self.report(
                &path.field("side"),
                ErrorKind::UnknownVariant,
                "expected \"inbound\" or \"outbound\"",
            );
        }
        self.clean_since(before).then_some(Continuity {
            from,
            ttl_ms: ttl_ms.unwrap_or(0),
            slots: slots.unwrap_or(1),
            side: side.flatten(),
        })
    }
}

/// Most headers in `continuity.from`.
const MAX_TRACE_HEADERS: usize = 8;

/// Where lane `id` is declared: `lanes[i]` or `propagate[i]`.
fn declared_at(raw: &RawConfig, id: LaneId) -> String {
    let root = JsonPath::Root;
    match id.checked_sub(raw.lanes.len()) {
        None => root.field("lanes").index(id).to_string(),
        Some(i) => root.field("propagate").index(i).to_string(),
    }
}

#[cfg(test)]
mod tests;
