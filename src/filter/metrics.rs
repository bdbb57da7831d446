//! Counters of SPEC §9, defined per VM at configure time. Names carry
//! their labels in a fixed shape (`graylane.requests.source.S.lane.L`,
//! `graylane.fallbacks.service.SVC`) that the `stats_tags` of the shipped
//! Envoy configs turn into Prometheus labels; see `crate::metric_names`.

use super::abi;
use crate::config::{Config, WarningKind};
use crate::engine::{Outcome, Source};
use crate::metric_names as names;
use hashbrown::HashMap;

fn counter(name: &str) -> Option<u32> {
    match abi::define_counter(name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("cannot define metric {name}: {status:?}");
            None
        }
    }
}

fn inc(id: Option<u32>, by: i64) {
    if let Some(id) = id {
        // A failed increment loses one count; never worth failing a request.
        let _ = abi::increment(id, by);
    }
}

/// Metric ids of one configuration.
pub struct Metrics {
    /// `requests[source][lane + 1]`; index 0 is base.
    requests: Vec<Vec<Option<u32>>>,
    fallbacks: HashMap<String, Option<u32>>,
    /// By lane id.
    rule_wins: Vec<Option<u32>>,
    invalid_tags: Option<u32>,
    malformed_baggage: Option<u32>,
    shadow_requests: Option<u32>,
    cookies_assigned: Option<u32>,
    config_accepted: Option<u32>,
    config_rejected: Option<u32>,
    config_warnings: Option<u32>,
    shadowed_rules: Option<u32>,
}

impl Metrics {
    /// The counters that exist before any configuration is accepted.
    pub fn base() -> Metrics {
        Metrics {
            requests: Vec::new(),
            fallbacks: HashMap::new(),
            rule_wins: Vec::new(),
            invalid_tags: counter(names::INVALID_TAGS),
            malformed_baggage: counter(names::MALFORMED_BAGGAGE),
            shadow_requests: counter(names::SHADOW_REQUESTS),
            cookies_assigned: counter(names::COOKIES_ASSIGNED),
            config_accepted: counter(names::CONFIG_ACCEPTED),
            config_rejected: counter(names::CONFIG_REJECTED),
            config_warnings: counter(names::CONFIG_WARNINGS),
            shadowed_rules: counter(names::SHADOWED_RULES),
        }
    }

    pub fn for_config(config: &Config) -> Metrics {
        let mut m = Metrics::base();
        m.requests = Source::ALL
            .iter()
            .map(|s| {
                // Only the pairs that can happen: base is always `default`.
                std::iter::once(None)
                    .chain(config.rules.lanes.iter().map(Some))
                    .map(|lane| match (s, lane) {
                        (Source::Default, None) | (Source::Propagated, Some(_)) => {
                            counter(&names::requests(*s, lane.map(|l| l.name.as_str())))
                        }
                        (Source::Rule, Some(l)) if l.rule => {
                            counter(&names::requests(*s, Some(l.name.as_str())))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        m.rule_wins = config
            .rules
            .lanes
            .iter()
            .map(|l| {
                l.rule
                    .then(|| counter(&names::rule_wins(&l.name)))
                    .flatten()
            })
            .collect();
        m.fallbacks = config
            .services
            .keys()
            .map(|svc| (svc.clone(), counter(&names::fallbacks(svc))))
            .collect();
        m
    }

    pub fn config_accepted(&self, config: &Config) {
        inc(self.config_accepted, 1);
        let shadowed = config
            .warnings
            .iter()
            .filter(|w| w.kind == WarningKind::Shadowed)
            .count();
        inc(
            self.config_warnings,
            i64::try_from(config.warnings.len()).unwrap_or(0),
        );
        inc(self.shadowed_rules, i64::try_from(shadowed).unwrap_or(0));
    }

    pub fn config_rejected(&self) {
        inc(self.config_rejected, 1);
    }

    pub fn record(&self, out: &Outcome<'_>) {
        let d = &out.decision;
        let source = Source::ALL.iter().position(|s| *s == d.source).unwrap_or(0);
        let lane = d.lane.map_or(0, |id| id + 1);
        inc(
            self.requests
                .get(source)
                .and_then(|v| v.get(lane))
                .copied()
                .flatten(),
            1,
        );
        if let (Source::Rule, Some(id)) = (d.source, d.lane) {
            inc(self.rule_wins.get(id).copied().flatten(), 1);
        }
        if let Some(svc) = out.effects.fallback {
            inc(self.fallbacks.get(svc).copied().flatten(), 1);
        }
        if d.invalid_tag {
            inc(self.invalid_tags, 1);
        }
        if out.effects.baggage_dropped > 0 {
            inc(self.malformed_baggage, 1);
        }
        if out.effects.shadow {
            inc(self.shadow_requests, 1);
        }
        if !d.assigned.is_empty() {
            inc(self.cookies_assigned, 1);
        }
    }
}
