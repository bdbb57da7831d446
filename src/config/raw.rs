//! The plugin configuration exactly as the JSON of docs/configuration.md "Configuration reference" spells it.
//! Every struct denies unknown fields: a typo must fail, not route to base.

pub use crate::engine::{Incoming, OnMissingKey};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Request header that holds the decided lane, for route matching.
    #[serde(default = "default_lane_header")]
    pub lane_header: String,
    /// W3C `baggage` member that carries the lane across hops.
    #[serde(default = "default_baggage_key")]
    pub baggage_key: String,
    /// `ignore` (edge: client-sent tags are removed) or `trust` (hop: a valid incoming tag is kept).
    #[serde(default)]
    pub incoming: Incoming,
    /// Request header set to the upstream cluster of the request's lane.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// When true, the response carries `laneHeader: <lane>` (debugging).
    #[serde(default)]
    pub response_header: bool,
    /// Mirrored-traffic marking; absent = off.
    #[serde(default)]
    pub shadow: Option<RawShadow>,
    /// Per-service cluster names, keyed by the request authority's host (port ignored).
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    /// The lane rules. `lanes` and `propagate` together name at least one lane.
    #[serde(default)]
    pub lanes: Vec<RawLane>,
    /// Lanes a hop accepts as incoming tags (and routes through `services`)
    /// without a rule of its own; a name may not also be in `lanes`.
    #[serde(default)]
    pub propagate: Vec<String>,
    /// Lane continuity from trace context (docs/full-link.md "Lane continuity from
    /// trace context"); absent = off.
    #[serde(default)]
    pub continuity: Option<RawContinuity>,
}

/// Remember each trace's lane on a sidecar's inbound side and restore it on
/// the app's untagged outgoing calls.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawContinuity {
    /// Headers that carry the trace id, in order: the first one present is
    /// used. `traceparent` gives its 32-hex trace id; any other header its
    /// whole value (at most 128 visible ASCII characters).
    #[serde(default = "default_continuity_from")]
    pub from: Vec<String>,
    /// How long a remembered lane lives: a whole number and `ms`, `s`, `m`
    /// or `h` (`"60s"`), from 1 ms to 24 h.
    #[serde(default = "default_continuity_ttl")]
    pub ttl: String,
    /// Slots of the shared table (1 to 1,048,576); memory is bounded by it.
    /// The inbound and outbound sides of one Envoy must use the same value.
    #[serde(default = "default_continuity_slots")]
    pub slots: u64,
    /// `inbound` or `outbound`: the side of this filter when Envoy's
    /// listener gives no traffic direction (a listener's direction wins).
    #[serde(default)]
    pub side: Option<String>,
}

fn default_continuity_from() -> Vec<String> {
    vec!["traceparent".into(), "x-request-id".into()]
}
fn default_continuity_ttl() -> String {
    "60s".into()
}
fn default_continuity_slots() -> u64 {
    65536
}

fn default_lane_header() -> String {
    "x-graylane".into()
}
fn default_baggage_key() -> String {
    "lane".into()
}
fn default_cluster_header() -> String {
    "x-graylane-cluster".into()
}
fn default_shadow_suffix() -> String {
    "-shadow".into()
}
fn default_shadow_key() -> String {
    "shadow".into()
}
fn default_priority() -> i64 {
    100
}

/// Mirrored-traffic marking (docs/full-link.md "Shadow (mirrored) traffic").
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawShadow {
    /// A request whose authority host ends with this is a mirrored copy.
    #[serde(default = "default_shadow_suffix")]
    pub host_suffix: String,
    /// Baggage member set to `1` on mirrored requests.
    #[serde(default = "default_shadow_key")]
    pub baggage_key: String,
}

/// The clusters of one service.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawService {
    /// Cluster of the service's base (stable) version.
    pub base: String,
    /// Cluster per lane that has a version of this service.
    #[serde(default)]
    pub lanes: BTreeMap<String, String>,
}

/// One lane rule.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLane {
    /// Lane name: 1-63 chars of `a-z 0-9 - _ .`, starting with a letter or digit; `base` is reserved.
    pub name: String,
    /// Lower wins; ties go by config order.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// The condition a request must meet; absent = every request.
    #[serde(default, rename = "match")]
    pub match_: Option<RawCondition>,
    /// Admits a share of the matching requests; absent = all of them.
    #[serde(default)]
    pub split: Option<RawSplit>,
}

/// A condition: `all`, `any`, `not`, or a leaf (one attribute, one operator).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCondition {
    /// Every condition holds (an empty list holds).
    #[serde(default)]
    pub all: Option<Vec<RawCondition>>,
    /// At least one condition holds (must not be empty).
    #[serde(default)]
    pub any: Option<Vec<RawCondition>>,
    /// The condition does not hold.
    #[serde(default)]
    pub not: Option<Box<RawCondition>>,

    /// Attribute: a request header (case-insensitive name; any of its values).
    #[serde(default)]
    pub header: Option<String>,
    /// Attribute: a cookie from the `cookie` headers.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Attribute: a query parameter, percent-decoded.
    #[serde(default)]
    pub query: Option<String>,
    /// Attribute: the path without query string (`"path": true`).
    #[serde(default)]
    pub path: Option<bool>,
    /// Attribute: the method (`"method": true`).
    #[serde(default)]
    pub method: Option<bool>,
    /// Attribute: the `:authority` host without port (`"host": true`).
    #[serde(default)]
    pub host: Option<bool>,
    /// Attribute: the decoded value of an incoming baggage member.
    #[serde(default)]
    pub baggage: Option<String>,

    /// Operator: equals.
    #[serde(default)]
    pub exact: Option<String>,
    /// Operator: starts with.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Operator: ends with.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Operator: contains.
    #[serde(default)]
    pub contains: Option<String>,
    /// Operator: regular expression that must match the whole value.
    #[serde(default)]
    pub regex: Option<String>,
    /// Operator: equals one of.
    #[serde(default, rename = "in")]
    pub in_: Option<Vec<String>>,
    /// Operator: attribute present (true) or absent (false).
    #[serde(default)]
    pub present: Option<bool>,
    /// Operator: value parsed as a signed 64-bit integer within inclusive bounds.
    #[serde(default)]
    pub range: Option<RawRange>,
    /// Compare ASCII letters case-insensitively.
    #[serde(default)]
    pub ignore_case: Option<bool>,
}

/// Inclusive integer bounds; either may be absent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
}

/// A traffic split.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSplit {
    /// The stickiness key (user or app id); absent = random per request.
    #[serde(default)]
    pub key: Option<RawSplitKey>,
    /// Share admitted, 0-100, in steps of 0.01.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Instead of `percent`: inclusive bucket ranges over 0-9999 (`"2000-5499"`, `"7"`).
    #[serde(default)]
    pub buckets: Option<Vec<String>>,
    /// Hashed with the key; defaults to the lane name.
    #[serde(default)]
    pub salt: Option<String>,
    /// `random` (admit the same share at random) or `exclude` (never admit) when the key is absent.
    #[serde(default)]
    pub on_missing_key: OnMissingKey,
}

/// Where a split reads its key.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSplitKey {
    /// Key from this request header.
    #[serde(default)]
    pub header: Option<String>,
    /// Key from this cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Key from this query parameter.
    #[serde(default)]
    pub query: Option<String>,
    /// With `cookie`: when the cookie is absent, draw a random id, use it and set it on the response.
    #[serde(default)]
    pub assign: bool,
    /// With `assign`: the cookie's Max-Age in seconds (default 30 days).
    #[serde(default)]
    pub max_age: Option<u64>,
}
