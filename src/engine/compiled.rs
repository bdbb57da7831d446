//! The compiled configuration: everything the request path reads, built
//! once per configuration by `config::compile`.

use super::rules::{LaneId, Rules};
use hashbrown::HashMap;
use serde::Deserialize;

/// The reserved name of "no lane".
pub const BASE: &str = "base";

/// What a proxy does with a lane tag that arrives with the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Incoming {
    /// Edge: remove client-sent tags and decide from the rules.
    #[default]
    Ignore,
    /// Hop: keep a valid incoming tag.
    Trust,
}

/// Mirrored-traffic marking, compiled.
#[derive(Debug, Clone)]
pub struct Shadow {
    /// Lower case.
    pub host_suffix: String,
    pub baggage_key: String,
}

/// One service's clusters: `lanes[id]` is the cluster for lane `id`, if any.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub base: String,
    pub lanes: Vec<Option<String>>,
}

/// The compiled configuration the request path reads.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub lane_header: String,
    pub baggage_key: String,
    pub incoming: Incoming,
    pub cluster_header: String,
    pub response_header: bool,
    pub shadow: Option<Shadow>,
    /// Keyed by lower-case host.
    pub services: HashMap<String, Service>,
    pub rules: Rules,
    /// Lane continuity from trace context; `None`: off.
    pub continuity: Option<crate::continuity::Continuity>,
}

impl Compiled {
    /// The declared lane with this name (a rule's or a propagated one).
    pub fn lane_id(&self, name: &str) -> Option<LaneId> {
        self.rules.lane_id(name)
    }

    /// Name of a lane, or `base` for none.
    pub fn lane_name(&self, lane: Option<LaneId>) -> &str {
        lane.and_then(|id| self.rules.lanes.get(id))
            .map_or(BASE, |l| l.name.as_str())
    }
}
