//! Names of the filter's counters (docs/observability.md "Metrics"), shared by the filter, the
//! shipped Envoy `stats_tags` and the tests. Labels are embedded in a fixed
//! shape so that Envoy tag extraction can lift them out:
//! `graylane.requests.source.<source>.lane.<lane>` becomes
//! `graylane_requests{source="...",lane="..."}` in `/stats/prometheus`.

use crate::engine::{LaneSource, BASE};

pub const INVALID_TAGS: &str = "graylane.invalid_tags";
pub const MALFORMED_BAGGAGE: &str = "graylane.malformed_baggage";
pub const SHADOW_REQUESTS: &str = "graylane.shadow_requests";
pub const COOKIES_ASSIGNED: &str = "graylane.cookies_assigned";
pub const CONFIG_ACCEPTED: &str = "graylane.config_accepted";
pub const CONFIG_REJECTED: &str = "graylane.config_rejected";
pub const CONFIG_WARNINGS: &str = "graylane.config_warnings";
pub const SHADOWED_RULES: &str = "graylane.shadowed_rules";
/// Lane continuity (docs/full-link.md "Lane continuity from trace context"), defined
/// only when `continuity` is set. Outbound lookups: `hits` found a live
/// entry of the trace (a lane, counted again by source `continued`, or
/// base); `misses` did not, including those counted in `expiries` and
/// `collisions`.
pub const CONTINUITY_HITS: &str = "graylane.continuity.hits";
pub const CONTINUITY_MISSES: &str = "graylane.continuity.misses";
pub const CONTINUITY_EXPIRIES: &str = "graylane.continuity.expiries";
pub const CONTINUITY_COLLISIONS: &str = "graylane.continuity.collisions";
/// Inbound: lanes (and base) remembered, and writes that failed.
pub const CONTINUITY_REMEMBERED: &str = "graylane.continuity.remembered";
pub const CONTINUITY_NOT_REMEMBERED: &str = "graylane.continuity.not_remembered";

/// Requests decided into `lane` (`None`: base) by `source`.
pub fn requests(source: LaneSource, lane: Option<&str>) -> String {
    format!(
        "graylane.requests.source.{}.lane.{}",
        source.as_str(),
        lane.unwrap_or(BASE)
    )
}

/// Requests of a lane sent to the base version of `service`.
pub fn fallbacks(service: &str) -> String {
    format!("graylane.fallbacks.service.{service}")
}

/// Requests a lane's rule won (the rule is named after its lane).
pub fn rule_wins(lane: &str) -> String {
    format!("graylane.rule_wins.rule.{lane}")
}
