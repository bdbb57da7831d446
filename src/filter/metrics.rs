//! Counters of docs/observability.md "Metrics", defined per VM at configure time. Names carry
//! their labels in a fixed shape (`graylane.requests.source.S.lane.L`,
//! `graylane.fallbacks.service.SVC`) that the `stats_tags` of the shipped
//! Envoy configs turn into Prometheus labels; see `crate::metric_names`.

use super::abi;
use crate::config::{Config, WarningKind};
use crate::continuity::Event;
use crate::engine::{LaneSource, Outcome};
use crate::metric_names as names;
use hashbrown::HashMap;

use std::cell::Cell;

/// Counter ids, and what each accumulated since the last flush.
#[derive(Default)]
struct Slots {
    ids: Vec<u32>,
    deltas: Vec<Cell<i64>>,
    /// Set when a delta becomes non-zero: a flush with nothing to send
    /// returns at once, without a host call or a pass over the slots.
    pending: Cell<bool>,
}

impl Slots {
    /// Defines a counter in the host and gives it a slot; the slot index.
    fn define(&mut self, name: &str) -> Option<usize> {
        match abi::define_counter(name) {
            Ok(id) => {
                self.ids.push(id);
                self.deltas.push(Cell::new(0));
                Some(self.ids.len() - 1)
            }
            Err(status) => {
                log::warn!("cannot define metric {name}: {status:?}");
                None
            }
        }
    }
}

/// Counter slots of one configuration. Per-request counts accumulate in
/// the VM and reach the host on `flush` (docs/observability.md "Metrics": at least once a second
/// and when the root stops); configuration counts go to the host at once.
pub struct Metrics {
    slots: Slots,
    /// `requests[source][lane + 1]`; index 0 is base.
    requests: Vec<Vec<Option<usize>>>,
    fallbacks: HashMap<String, Option<usize>>,
    /// By lane id.
    rule_wins: Vec<Option<usize>>,
    invalid_tags: Option<usize>,
    malformed_baggage: Option<usize>,
    shadow_requests: Option<usize>,
    cookies_assigned: Option<usize>,
    config_accepted: Option<usize>,
    config_rejected: Option<usize>,
    config_warnings: Option<usize>,
    shadowed_rules: Option<usize>,
    /// `[hits, misses, expiries, collisions, remembered, not_remembered]`,
    /// defined only when `continuity` is set.
    continuity: [Option<usize>; 6],
}

impl Metrics {
    /// The counters that exist before any configuration is accepted.
    pub fn base() -> Metrics {
        let mut slots = Slots::default();
        Metrics {
            requests: Vec::new(),
            fallbacks: HashMap::new(),
            rule_wins: Vec::new(),
            invalid_tags: slots.define(names::INVALID_TAGS),
            malformed_baggage: slots.define(names::MALFORMED_BAGGAGE),
            shadow_requests: slots.define(names::SHADOW_REQUESTS),
            cookies_assigned: slots.define(names::COOKIES_ASSIGNED),
            config_accepted: slots.define(names::CONFIG_ACCEPTED),
            config_rejected: slots.define(names::CONFIG_REJECTED),
            config_warnings: slots.define(names::CONFIG_WARNINGS),
            shadowed_rules: slots.define(names::SHADOWED_RULES),
            continuity: [None; 6],
            slots,
        }
    }

    pub fn for_config(config: &Config) -> Metrics {
        let mut m = Metrics::base();
        let slots = &mut m.slots;
        m.requests = LaneSource::ALL
            .iter()
            .map(|s| {
                // Only the pairs that can happen: base is always `default`.
                std::iter::once(None)
                    .chain(config.rules.lanes.iter().map(Some))
                    .map(|lane| match (s, lane) {
                        (LaneSource::Default, None) | (LaneSource::Propagated, Some(_)) => {
                            slots.define(&names::requests(*s, lane.map(|l| l.name.as_str())))
                        }
                        (LaneSource::Continued, Some(l)) if config.continuity.is_some() => {
                            slots.define(&names::requests(*s, Some(l.name.as_str())))
                        }
                        (LaneSource::Rule, Some(l)) if l.rule => {
                            slots.define(&names::requests(*s, Some(l.name.as_str())))
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
                    .then(|| slots.define(&names::rule_wins(&l.name)))
                    .flatten()
            })
            .collect();
        if config.continuity.is_some() {
            m.continuity = [
                names::CONTINUITY_HITS,
                names::CONTINUITY_MISSES,
                names::CONTINUITY_EXPIRIES,
                names::CONTINUITY_COLLISIONS,
                names::CONTINUITY_REMEMBERED,
                names::CONTINUITY_NOT_REMEMBERED,
            ]
            .map(|name| slots.define(name));
        }
        m.fallbacks = config
            .services
            .keys()
            .map(|svc| (svc.clone(), slots.define(&names::fallbacks(svc))))
            .collect();
        m
    }

    /// Adds to a counter now (configuration events).
    fn now(&self, slot: Option<usize>, by: i64) {
        let id = slot.and_then(|s| self.slots.ids.get(s).copied());
        if let Some(id) = id {
            // A failed increment loses a count; never worth failing for.
            let _ = abi::increment(id, by);
        }
    }

    /// Adds to a counter in the VM (per request), for the next flush.
    fn inc(&self, slot: Option<usize>) {
        if let Some(cell) = slot.and_then(|s| self.slots.deltas.get(s)) {
            cell.set(cell.get().saturating_add(1));
            self.slots.pending.set(true);
        }
    }

    /// Sends what accumulated to the host; nothing (no host call) when
    /// nothing did. A count the host refuses stays for the next flush.
    pub fn flush(&self) {
        if !self.slots.pending.replace(false) {
            return;
        }
        for (id, delta) in self.slots.ids.iter().zip(&self.slots.deltas) {
            let n = delta.get();
            if n != 0 && abi::increment(*id, n).is_ok() {
                delta.set(0);
            } else if n != 0 {
                self.slots.pending.set(true);
            }
        }
    }

    pub fn config_accepted(&self, config: &Config) {
        self.now(self.config_accepted, 1);
        let shadowed = config
            .warnings
            .iter()
            .filter(|w| w.kind == WarningKind::Shadowed)
            .count();
        self.now(
            self.config_warnings,
            i64::try_from(config.warnings.len()).unwrap_or(0),
        );
        self.now(self.shadowed_rules, i64::try_from(shadowed).unwrap_or(0));
    }

    pub fn config_rejected(&self) {
        self.now(self.config_rejected, 1);
    }

    /// One continuity step (docs/full-link.md "Lane continuity from trace context").
    pub fn record_continuity(&self, event: Event) {
        let [hits, misses, expiries, collisions, remembered, not_remembered] = self.continuity;
        match event {
            Event::Hit | Event::HitBase => self.inc(hits),
            Event::Miss => self.inc(misses),
            Event::Expired => {
                self.inc(misses);
                self.inc(expiries);
            }
            Event::Collision => {
                self.inc(misses);
                self.inc(collisions);
            }
            Event::Remembered => self.inc(remembered),
            Event::NotRemembered => self.inc(not_remembered),
        }
    }

    pub fn record(&self, out: &Outcome<'_>) {
        let d = &out.decision;
        let source = LaneSource::ALL
            .iter()
            .position(|s| *s == d.source)
            .unwrap_or(0);
        let lane = d.lane.map_or(0, |id| id + 1);
        self.inc(
            self.requests
                .get(source)
                .and_then(|v| v.get(lane))
                .copied()
                .flatten(),
        );
        if let (LaneSource::Rule, Some(id)) = (d.source, d.lane) {
            self.inc(self.rule_wins.get(id).copied().flatten());
        }
        if let Some(svc) = out.effects.fallback {
            self.inc(self.fallbacks.get(svc).copied().flatten());
        }
        if d.invalid_tag {
            self.inc(self.invalid_tags);
        }
        if out.effects.baggage_dropped > 0 {
            self.inc(self.malformed_baggage);
        }
        if out.effects.shadow {
            self.inc(self.shadow_requests);
        }
        if !d.assigned.is_empty() {
            self.inc(self.cookies_assigned);
        }
    }
}
