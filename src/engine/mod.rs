//! The lane engine: given a request, decide its lane and the header changes
//! that carry it (docs/decision.md "How a request is decided"). Host-independent: the filter implements
//! [`Request`] with host calls, tests and the CLI with a header list.

mod compiled;
mod rules;
pub mod split;
mod view;

pub use compiled::{Compiled, Incoming, Service, Shadow, BASE};
pub use rules::{
    literal_prefix, Attr, CompiledRegex, Cond, KeySource, Lane, LaneId, Leaf, OnMissingKey, Op,
    Rules, Split, SplitKey,
};
pub use split::{bucket, AssignedCookie, SplitResult, BUCKETS};
pub use view::{View, MAX_VALUE_LEN};

use crate::baggage::{self, Compare};
use std::borrow::Cow;
use std::ops::ControlFlow;

/// Read access to a request's headers (pseudo-headers `:path`,
/// `:authority`, `:method` included). Names are asked in lower case.
pub trait Request {
    /// Every value of the header, in order.
    fn header<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]>;
}

/// A request as a list of (lower-case name, value) pairs: what the filter
/// reads from Envoy in one call, and what tests and the CLI build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    /// Builds a list, lower-casing names.
    pub fn new<'a, I: IntoIterator<Item = (&'a str, &'a [u8])>>(pairs: I) -> HeaderList {
        HeaderList(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_vec()))
                .collect(),
        )
    }

    /// Builds a list from text pairs.
    pub fn from_strs(pairs: &[(&str, &str)]) -> HeaderList {
        HeaderList::new(pairs.iter().map(|(k, v)| (*k, v.as_bytes())))
    }
}

impl Request for HeaderList {
    fn header<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Where a request's lane came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneSource {
    /// A valid incoming tag, kept by a hop (`incoming: trust`).
    Propagated,
    /// A lane rule admitted it.
    Rule,
    /// Nothing matched: base.
    Default,
    /// Restored from the lane remembered for the request's trace (docs/full-link.md
    /// "Lane continuity from trace context").
    Continued,
}

impl LaneSource {
    pub const ALL: [LaneSource; 4] = [
        LaneSource::Propagated,
        LaneSource::Rule,
        LaneSource::Default,
        LaneSource::Continued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LaneSource::Propagated => "propagated",
            LaneSource::Rule => "rule",
            LaneSource::Default => "default",
            LaneSource::Continued => "continued",
        }
    }
}

/// The lane of one request and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `None`: base.
    pub lane: Option<LaneId>,
    pub source: LaneSource,
    /// The winning rule's split, when it has one.
    pub split: Option<SplitResult>,
    /// An incoming tag named an undeclared lane and was dropped.
    pub invalid_tag: bool,
    /// Cookie ids drawn for assign-keyed splits, to set on the response.
    pub assigned: Vec<AssignedCookie>,
}

impl Decision {
    /// The headers to add to the response: the lane header when
    /// `responseHeader` is on, and a `set-cookie` per assigned cookie. Empty
    /// (no allocation) for most requests.
    pub fn response_headers(&self, config: &Compiled) -> Vec<(String, String)> {
        if !config.response_header && self.assigned.is_empty() {
            return Vec::new();
        }
        let mut headers = Vec::new();
        if config.response_header {
            let lane = config.lane_name(self.lane);
            headers.push((config.lane_header.clone(), lane.to_string()));
        }
        for cookie in &self.assigned {
            headers.push(("set-cookie".to_string(), cookie.set_cookie()));
        }
        headers
    }
}

/// Why one lane rule did not win, or that it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// The match did not hold; the text names the failing condition.
    NoMatch(String),
    /// The match held and the split decided (admitted or not).
    Split(SplitResult),
    /// The match held and the lane has no split.
    Won,
}

/// A decision together with what each rule evaluated before the winner did.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub decision: Decision,
    /// In evaluation order, up to and including the winner.
    pub tried: Vec<(LaneId, RuleOutcome)>,
}

/// Header changes and counters for one request (docs/decision.md "How a request is decided").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects<'c> {
    /// Request headers to set (`Some`) or remove (`None`); only real changes.
    pub set: Vec<(&'c str, Option<Cow<'c, str>>)>,
    /// The cluster chosen through `services`, if the host has an entry.
    pub cluster: Option<&'c str>,
    /// The service whose lane version is missing: routed to its base.
    pub fallback: Option<&'c str>,
    /// Incoming baggage members dropped as invalid or over the limits.
    pub baggage_dropped: usize,
    /// The request is a mirrored copy (docs/full-link.md "Shadow (mirrored) traffic").
    pub shadow: bool,
}

/// Everything the filter needs to act on one request.
#[derive(Debug, Clone)]
pub struct Outcome<'c> {
    pub decision: Decision,
    pub effects: Effects<'c>,
}

/// Decides the lane of a request and its effects. `rng` is called only when
/// a random draw is needed (anonymous split, assigned cookie).
pub fn process<'c, R: Request + ?Sized>(
    config: &'c Compiled,
    req: &R,
    rng: &mut dyn FnMut() -> u64,
) -> Outcome<'c> {
    let view = View::new(req);
    let decision = decide(config, &view, rng);
    let effects = effects(config, &view, decision.lane);
    Outcome { decision, effects }
}

/// docs/decision.md "How a request is decided", step 1: the decision so far. `Break` holds a finished decision
/// (a valid incoming tag at a trusting hop); `Continue` one for the rules
/// to complete, noting a dropped invalid tag.
fn start<R: Request + ?Sized>(
    config: &Compiled,
    view: &View<'_, R>,
) -> ControlFlow<Decision, Decision> {
    let mut d = Decision {
        lane: None,
        source: LaneSource::Default,
        split: None,
        invalid_tag: false,
        assigned: Vec::new(),
    };
    if config.incoming != Incoming::Trust {
        return ControlFlow::Continue(d);
    }
    // The member counts wherever it stands in the incoming baggage (docs/decision.md "Behaviour details").
    let tag: Option<Cow<'_, str>> = match view.tag_member(&config.baggage_key) {
        Some(m) => m.decoded(),
        None => match view.first_header(&config.lane_header) {
            Some(v) => std::str::from_utf8(v).ok().map(Cow::Borrowed),
            None => return ControlFlow::Continue(d),
        },
    };
    match tag.and_then(|t| config.lane_id(&t)) {
        Some(id) => {
            d.lane = Some(id);
            d.source = LaneSource::Propagated;
            ControlFlow::Break(d)
        }
        None => {
            d.invalid_tag = true;
            ControlFlow::Continue(d)
        }
    }
}

/// Whether the request carries a lane tag (the `baggageKey` member or the
/// lane header), valid or not: such a request is never changed by a
/// continuity lookup.
pub fn carries_tag<R: Request + ?Sized>(config: &Compiled, view: &View<'_, R>) -> bool {
    view.tag_member(&config.baggage_key).is_some()
        || view.first_header(&config.lane_header).is_some()
}

/// The decision for an untagged request whose trace was remembered in
/// `lane` (docs/full-link.md "Lane continuity from trace context"): that lane, exactly
/// as if it had arrived in baggage, when the config declares it; `None`
/// for `base` or an undeclared lane (the request is then decided as usual).
pub fn continued(config: &Compiled, lane: &str) -> Option<Decision> {
    let id = config.lane_id(lane)?;
    Some(Decision {
        lane: Some(id),
        source: LaneSource::Continued,
        split: None,
        invalid_tag: false,
        assigned: Vec::new(),
    })
}

/// docs/decision.md "How a request is decided": the decision, through the exact-value index.
pub fn decide<R: Request + ?Sized>(
    config: &Compiled,
    view: &View<'_, R>,
    rng: &mut dyn FnMut() -> u64,
) -> Decision {
    let mut d = match start(config, view) {
        ControlFlow::Continue(d) => d,
        ControlFlow::Break(done) => return done,
    };
    let rules = &config.rules;
    let mut try_rank = |rank: u32, d: &mut Decision| -> bool {
        let Some((id, lane)) = rules.at_rank(rank) else {
            return false;
        };
        if !lane.cond.as_ref().is_none_or(|c| holds(c, view)) {
            return false;
        }
        let split = lane
            .split
            .as_ref()
            .map(|s| split::apply(s, view, rng, &mut d.assigned));
        if split.as_ref().is_none_or(SplitResult::admitted) {
            d.lane = Some(id);
            d.source = LaneSource::Rule;
            d.split = split;
            return true;
        }
        false
    };
    if rules.index.is_empty() {
        for rank in 0..u32::try_from(rules.order.len()).unwrap_or(u32::MAX) {
            if try_rank(rank, &mut d) {
                break;
            }
        }
        return d;
    }
    // Lanes the index points at (usually none or a few), merged in rank
    // order with the lanes that have no index anchor.
    let mut hits = Hits::default();
    for group in &rules.index {
        for_values(view, &group.attr, &mut |v| {
            if let Some(ranks) =
                value_str(v).and_then(|s| lookup(&group.lanes, s, group.ignore_case))
            {
                hits.extend(ranks);
            }
            false
        });
    }
    let mut hits = hits.sorted().iter().copied().peekable();
    let mut rest = rules.unindexed.iter().copied().peekable();
    let mut last = None;
    loop {
        let rank = match (hits.peek(), rest.peek()) {
            (Some(&h), Some(&r)) if h <= r => hits.next(),
            (_, Some(_)) => rest.next(),
            (Some(_), None) => hits.next(),
            (None, None) => None,
        };
        let Some(rank) = rank else { break };
        // A lane reached twice (two index values, or index and rest) is tried once.
        if last == Some(rank) {
            continue;
        }
        last = Some(rank);
        if try_rank(rank, &mut d) {
            break;
        }
    }
    d
}

/// Ranks the index found: on the stack for the usual few, a list beyond.
#[derive(Default)]
struct Hits {
    inline: [u32; 8],
    len: usize,
    spill: Vec<u32>,
}

impl Hits {
    fn extend(&mut self, ranks: &[u32]) {
        for &r in ranks {
            match self.inline.get_mut(self.len) {
                Some(slot) if self.spill.is_empty() => {
                    *slot = r;
                    self.len += 1;
                }
                _ => {
                    if self.spill.is_empty() {
                        self.spill.extend_from_slice(&self.inline);
                    }
                    self.spill.push(r);
                }
            }
        }
    }

    /// The ranks in order (repeats possible).
    fn sorted(&mut self) -> &[u32] {
        let list: &mut [u32] = if self.spill.is_empty() {
            self.inline.get_mut(..self.len).unwrap_or_default()
        } else {
            self.spill.as_mut_slice()
        };
        list.sort_unstable();
        list
    }
}

fn lookup<'m>(
    map: &'m hashbrown::HashMap<String, Vec<u32>>,
    value: &str,
    ignore_case: bool,
) -> Option<&'m Vec<u32>> {
    if ignore_case && value.bytes().any(|b| b.is_ascii_uppercase()) {
        map.get(value.to_ascii_lowercase().as_str())
    } else {
        map.get(value)
    }
}

/// The same decision as [`decide`], evaluating every rule in order and
/// recording why each one before the winner did not win.
pub fn explain<R: Request + ?Sized>(
    config: &Compiled,
    req: &R,
    rng: &mut dyn FnMut() -> u64,
) -> Explanation {
    let view = View::new(req);
    let mut tried = Vec::new();
    let mut d = match start(config, &view) {
        ControlFlow::Continue(d) => d,
        ControlFlow::Break(done) => {
            return Explanation {
                decision: done,
                tried,
            }
        }
    };
    for &id in &config.rules.order {
        let Some(lane) = config.rules.lanes.get(id) else {
            continue;
        };
        if let Some(why) = lane.cond.as_ref().and_then(|c| failure(c, &view)) {
            tried.push((id, RuleOutcome::NoMatch(why)));
            continue;
        }
        let Some(s) = &lane.split else {
            tried.push((id, RuleOutcome::Won));
            d.lane = Some(id);
            d.source = LaneSource::Rule;
            break;
        };
        let r = split::apply(s, &view, rng, &mut d.assigned);
        let admitted = r.admitted();
        tried.push((id, RuleOutcome::Split(r.clone())));
        if admitted {
            d.lane = Some(id);
            d.source = LaneSource::Rule;
            d.split = Some(r);
            break;
        }
    }
    Explanation { decision: d, tried }
}

/// Whether a condition holds for the request.
pub fn holds<R: Request + ?Sized>(cond: &Cond, view: &View<'_, R>) -> bool {
    match cond {
        Cond::All(list) => list.iter().all(|c| holds(c, view)),
        Cond::Any(list) => list.iter().any(|c| holds(c, view)),
        Cond::Not(c) => !holds(c, view),
        Cond::Leaf(leaf) => leaf_holds(leaf, view),
    }
}

/// Why a condition does not hold (`None` when it holds).
fn failure<R: Request + ?Sized>(cond: &Cond, view: &View<'_, R>) -> Option<String> {
    match cond {
        Cond::All(list) => list.iter().find_map(|c| failure(c, view)),
        Cond::Any(list) => (!list.iter().any(|c| holds(c, view))).then(|| {
            let parts: Vec<String> = list.iter().map(describe).collect();
            format!("none of [{}] holds", parts.join("; "))
        }),
        Cond::Not(c) => holds(c, view).then(|| format!("not({}) fails: it holds", describe(c))),
        Cond::Leaf(leaf) => (!leaf_holds(leaf, view)).then(|| {
            let mut got = Vec::new();
            for_values(view, &leaf.attr, &mut |v| {
                got.push(
                    String::from_utf8_lossy(v)
                        .chars()
                        .take(80)
                        .collect::<String>(),
                );
                false
            });
            let got = if got.is_empty() {
                "absent".to_string()
            } else {
                format!("got {got:?}")
            };
            format!("{} does not hold ({got})", describe(cond))
        }),
    }
}

/// A condition as text, for explanations and warnings.
pub fn describe(cond: &Cond) -> String {
    match cond {
        Cond::All(list) => format!(
            "all[{}]",
            list.iter().map(describe).collect::<Vec<_>>().join("; ")
        ),
        Cond::Any(list) => format!(
            "any[{}]",
            list.iter().map(describe).collect::<Vec<_>>().join("; ")
        ),
        Cond::Not(c) => format!("not({})", describe(c)),
        Cond::Leaf(leaf) => {
            let attr = match &leaf.attr {
                Attr::Header(h) => format!("header \"{h}\""),
                Attr::Cookie(c) => format!("cookie \"{c}\""),
                Attr::Query(q) => format!("query \"{q}\""),
                Attr::Path => "path".into(),
                Attr::Method => "method".into(),
                Attr::Host => "host".into(),
                Attr::Baggage(k) => format!("baggage \"{k}\""),
            };
            let op = match &leaf.op {
                Op::Exact(v) => format!("exact \"{v}\""),
                Op::Prefix(v) => format!("prefix \"{v}\""),
                Op::Suffix(v) => format!("suffix \"{v}\""),
                Op::Contains(v) => format!("contains \"{v}\""),
                Op::Regex(r) => format!("regex \"{}\"", r.source),
                Op::In(set) => {
                    let mut v: Vec<&String> = set.iter().collect();
                    v.sort();
                    format!(
                        "in [{}]",
                        v.iter()
                            .map(|s| format!("\"{s}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                Op::Present(p) => format!("present {p}"),
                Op::Range(lo, hi) => format!("range [{lo}, {hi}]"),
            };
            let ic = if leaf.ignore_case { " ignoreCase" } else { "" };
            format!("{attr} {op}{ic}")
        }
    }
}

fn leaf_holds<R: Request + ?Sized>(leaf: &Leaf, view: &View<'_, R>) -> bool {
    if let Op::Present(want) = leaf.op {
        let mut any = false;
        for_values(view, &leaf.attr, &mut |_| {
            any = true;
            true
        });
        return any == want;
    }
    for_values(view, &leaf.attr, &mut |v| {
        value_ok(v) && op_matches(&leaf.op, leaf.ignore_case, v)
    })
}

/// Whether operators may test a value: not oversized, and UTF-8 (docs/decision.md "Behaviour details").
/// Values are nearly always ASCII, which is checked much faster.
fn value_ok(v: &[u8]) -> bool {
    v.len() <= MAX_VALUE_LEN && (v.is_ascii() || std::str::from_utf8(v).is_ok())
}

/// A value that operators may test: UTF-8 and not oversized (docs/decision.md "Behaviour details").
fn value_str(v: &[u8]) -> Option<&str> {
    if v.len() > MAX_VALUE_LEN {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// Calls `f` on each value of the attribute until it returns true; returns
/// whether it did.
fn for_values<R: Request + ?Sized>(
    view: &View<'_, R>,
    attr: &Attr,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    match attr {
        Attr::Header(h) => view.header(h).any(f),
        Attr::Cookie(c) => view.cookie(c).any(f),
        Attr::Query(q) => view.query(q).any(|v| f(v.as_bytes())),
        Attr::Path => view.path().is_some_and(f),
        Attr::Method => view.first_header(":method").is_some_and(f),
        Attr::Host => view.host().is_some_and(f),
        Attr::Baggage(k) => view.baggage_values(k).any(|v| f(v.as_bytes())),
    }
}

fn starts_with_ci(s: &[u8], p: &str) -> bool {
    s.get(..p.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
}

fn ends_with_ci(s: &[u8], p: &str) -> bool {
    s.len()
        .checked_sub(p.len())
        .and_then(|start| s.get(start..))
        .is_some_and(|t| t.eq_ignore_ascii_case(p.as_bytes()))
}

fn contains_ci(s: &[u8], p: &str) -> bool {
    p.is_empty()
        || s.windows(p.len())
            .any(|w| w.eq_ignore_ascii_case(p.as_bytes()))
}

/// Whether `needle` occurs in `hay`: a plain scan for the short values
/// requests usually carry (setting up a searcher costs more than it saves
/// there), memchr's `memmem` beyond, where the plain scan could be slow.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if hay.len() > 256 {
        return memchr::memmem::find(hay, needle).is_some();
    }
    let Some(first) = needle.first() else {
        return true;
    };
    hay.windows(needle.len())
        .any(|w| w.first() == Some(first) && w == needle)
}

/// Whether a value satisfies an operator. The value passed [`value_ok`]:
/// it is UTF-8, so comparing bytes is comparing text.
fn op_matches(op: &Op, ignore_case: bool, s: &[u8]) -> bool {
    let text = || std::str::from_utf8(s).ok();
    match op {
        Op::Exact(v) if ignore_case => s.eq_ignore_ascii_case(v.as_bytes()),
        Op::Exact(v) => s == v.as_bytes(),
        Op::Prefix(v) if ignore_case => starts_with_ci(s, v),
        Op::Prefix(v) => s.starts_with(v.as_bytes()),
        Op::Suffix(v) if ignore_case => ends_with_ci(s, v),
        Op::Suffix(v) => s.ends_with(v.as_bytes()),
        Op::Contains(v) if ignore_case => contains_ci(s, v),
        Op::Contains(v) => contains(s, v.as_bytes()),
        Op::Regex(re) => {
            let prefix_ok = if ignore_case {
                starts_with_ci(s, &re.prefix)
            } else {
                s.starts_with(re.prefix.as_bytes())
            };
            prefix_ok && text().is_some_and(|t| re.regex.is_match(t))
        }
        Op::In(set) if ignore_case && s.iter().any(u8::is_ascii_uppercase) => {
            text().is_some_and(|t| set.contains(t.to_ascii_lowercase().as_str()))
        }
        Op::In(set) => text().is_some_and(|t| set.contains(t)),
        Op::Present(_) => false,
        Op::Range(lo, hi) => text()
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|n| *lo <= n && n <= *hi),
    }
}

/// Whether the header currently has exactly the wanted value (or, for
/// `None`, is absent).
fn header_is<R: Request + ?Sized>(view: &View<'_, R>, name: &str, want: Option<&str>) -> bool {
    let mut values = view.header(name);
    match (values.next(), want) {
        (None, None) => true,
        (Some(v), Some(w)) => v == w.as_bytes() && values.next().is_none(),
        _ => false,
    }
}

fn set_if_changed<'c, R: Request + ?Sized>(
    set: &mut Vec<(&'c str, Option<Cow<'c, str>>)>,
    view: &View<'_, R>,
    name: &'c str,
    want: Option<&'c str>,
) {
    if !header_is(view, name, want) {
        set.push((name, want.map(Cow::Borrowed)));
    }
}

fn service_for<'c, R: Request + ?Sized>(
    config: &'c Compiled,
    view: &View<'_, R>,
) -> Option<&'c Service> {
    if config.services.is_empty() {
        return None;
    }
    let host = std::str::from_utf8(view.host()?).ok()?;
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        config.services.get(host.to_ascii_lowercase().as_str())
    } else {
        config.services.get(host)
    }
}

/// docs/decision.md "How a request is decided", docs/full-link.md "Shadow (mirrored) traffic": the header changes for a request in `lane`.
pub fn effects<'c, R: Request + ?Sized>(
    config: &'c Compiled,
    view: &View<'_, R>,
    lane: Option<LaneId>,
) -> Effects<'c> {
    let mut e = Effects::default();
    let name = lane.map(|id| config.lane_name(Some(id)));
    set_if_changed(&mut e.set, view, &config.lane_header, name);

    let mut edits: [(&str, Option<&str>); 2] = [(config.baggage_key.as_str(), name), ("", None)];
    let mut n_edits = 1;
    if let Some(shadow) = &config.shadow {
        e.shadow = view
            .host()
            .is_some_and(|h| ends_with_ci(h, &shadow.host_suffix));
        if e.shadow {
            edits[1] = (&shadow.baggage_key, Some("1"));
            n_edits = 2;
        } else if config.incoming == Incoming::Ignore {
            // At the edge a client cannot mark its own traffic as mirrored.
            edits[1] = (&shadow.baggage_key, None);
            n_edits = 2;
        }
    }
    let edits = edits.get(..n_edits).unwrap_or_default();
    let mut current = view.header("baggage");
    let (first, more) = (current.next(), current.next().is_some());
    // Every value of the header, found once: the usual single one is not
    // looked up again.
    let values = || {
        first
            .into_iter()
            .chain(
                view.header("baggage")
                    .skip(1)
                    .take(if more { usize::MAX } else { 0 }),
            )
    };
    let mut plan = baggage::plan(values(), edits);
    if plan.touched > 0 && config.incoming == Incoming::Trust {
        // A hop keeps a trusted tag as it arrived, properties included.
        if let Some(first) = view.tag_member(&config.baggage_key) {
            baggage::keep_as_is(&first, edits, &mut plan);
        }
    }
    e.baggage_dropped = plan.dropped;
    let changed = if plan.len == 0 {
        first.is_some()
    } else if let (Some(current), false) = (first, more) {
        // Usually known from the plan, with no second pass: nothing changes,
        // or a member is set whose key is not there yet.
        let adds = plan.touched == 0 && edits.iter().any(|(_, v)| v.is_some());
        adds || !plan.keeps(current, edits) && {
            let mut same = Compare::new(current);
            baggage::write(values(), edits, &plan, &mut same);
            !same.equal()
        }
    } else {
        let mut same = Compare::new(first.unwrap_or_default());
        baggage::write(values(), edits, &plan, &mut same);
        more || first.is_none() || !same.equal()
    };
    if changed {
        let value = (plan.len > 0).then(|| {
            let mut out = String::with_capacity(plan.len);
            baggage::write(values(), edits, &plan, &mut out);
            Cow::Owned(out)
        });
        e.set.push(("baggage", value));
    }

    let cluster = service_for(config, view).map(|svc| {
        match lane
            .and_then(|id| svc.lanes.get(id))
            .and_then(Option::as_ref)
        {
            Some(c) => c.as_str(),
            None => {
                if lane.is_some() {
                    e.fallback = Some(svc.name.as_str());
                }
                svc.base.as_str()
            }
        }
    });
    e.cluster = cluster;
    set_if_changed(&mut e.set, view, &config.cluster_header, cluster);
    e
}

#[cfg(test)]
pub(crate) mod tests;
