//! The properties the fuzz targets check, as plain functions of their input.
//!
//! Shared, through `#[path]`, by the fuzz targets and by the native test
//! `tests/fuzz_regressions.rs`, which replays every file under
//! `fuzz/regressions/`: so this file depends on `graylane` and `std` only.
//! A property that does not hold panics with a message naming it.

use graylane::baggage::{Baggage, MAX_BYTES, MAX_MEMBERS};
use graylane::config::{Config, Incoming};
use graylane::continuity;
use graylane::engine::{self, Attr, Cond, Decision, HeaderList, KeySource, LaneSource};
use graylane::testvectors::{DECISION_TABLE, TABLE_CONFIG};
use std::borrow::Cow;
use std::sync::OnceLock;

// ---------------------------------------------------------------- config

/// `Config::from_json` on arbitrary bytes never panics; a config it accepts
/// decides the decision-table requests the same way in `process` and
/// `explain`, and its effects are well-formed.
pub fn check_config(data: &[u8]) {
    let Ok(config) = Config::from_json(data) else {
        return;
    };
    assert!(
        !config.rules.lanes.is_empty(),
        "an accepted config has at least one lane"
    );
    if let Some(c) = &config.continuity {
        check_continuity_settings(c);
    }
    // A rule that reads the tag headers legitimately depends on them.
    let tags_invariant = !reads_tags(&config);
    for (pairs, _) in DECISION_TABLE {
        let mut req = HeaderList::from_strs(pairs);
        check_one(&config, "fuzzed config", &req, 7, tags_invariant);
        // The same request with forged tags of every kind.
        for (k, v) in [
            ("x-graylane", "gray"),
            ("baggage", "lane=gray,shadow=1,tenant=acme"),
            ("x-graylane-cluster", "b-gray"),
        ] {
            req.0.push((k.to_string(), v.as_bytes().to_vec()));
        }
        check_one(&config, "fuzzed config", &req, 7, tags_invariant);
    }
}

/// Whether a rule of the config reads the lane header, the cluster header or
/// the lane baggage member (as a match attribute or a split key).
pub fn reads_tags(config: &Config) -> bool {
    fn in_cond(c: &Cond, config: &Config) -> bool {
        match c {
            Cond::All(list) | Cond::Any(list) => list.iter().any(|c| in_cond(c, config)),
            Cond::Not(c) => in_cond(c, config),
            Cond::Leaf(leaf) => match &leaf.attr {
                Attr::Header(h) => *h == config.lane_header || *h == config.cluster_header,
                Attr::Baggage(k) => k.eq_ignore_ascii_case(&config.baggage_key),
                _ => false,
            },
        }
    }
    config.rules.lanes.iter().any(|lane| {
        lane.cond.as_ref().is_some_and(|c| in_cond(c, config))
            || lane
                .split
                .as_ref()
                .and_then(|s| s.key.as_ref())
                .is_some_and(|k| match &k.source {
                    KeySource::Header(h) => *h == config.lane_header || *h == config.cluster_header,
                    _ => false,
                })
    })
}

// ---------------------------------------------------------------- baggage

/// Keys an edit may set or remove (besides keys of short incoming members).
const EDIT_KEYS: &[&str] = &[
    "lane", "shadow", "LANE", "a", "key1", "userId", "lane2", "x",
];
/// Values an edit may set: `None` removes. Lane names are at most 63 bytes.
const EDIT_VALUES: &[Option<&str>] = &[
    None,
    Some("gray"),
    Some("1"),
    Some(""),
    Some("android-canary"),
    Some("a.b_c-9"),
    Some("x23456789012345678901234567890123456789012345678901234567890123"),
];
/// Incoming member keys at most this long may be picked as edit keys (real
/// edit keys come from the config: short tokens).
const MAX_EDIT_KEY: usize = 64;

/// The edits and the header values a baggage input stands for.
///
/// Format: byte 0 is the number of edits (`% 4`); then two bytes per edit
/// (key selector, value selector); the rest, split on `\n`, are the values
/// of the `baggage` headers. A key selector `>= 128` names the key of an
/// incoming member (when it is short); below, an entry of [`EDIT_KEYS`].
pub fn baggage_input(data: &[u8]) -> (Vec<(u8, u8)>, Vec<&[u8]>) {
    let n = usize::from(data.first().copied().unwrap_or(0) % 4);
    let rest = data.get(1..).unwrap_or_default();
    let sel: Vec<(u8, u8)> = rest
        .chunks_exact(2)
        .take(n)
        .map(|c| {
            (
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            )
        })
        .collect();
    let headers_at = (2 * sel.len()).min(rest.len());
    let headers = rest.get(headers_at..).unwrap_or_default();
    let values: Vec<&[u8]> = if headers.is_empty() {
        Vec::new()
    } else {
        headers.split(|&b| b == b'\n').collect()
    };
    (sel, values)
}

fn serialized_len(members: &[graylane::baggage::Member<'_>]) -> usize {
    members.iter().map(|m| m.raw.len()).sum::<usize>() + members.len().saturating_sub(1)
}

/// Parse, edit, serialize, re-parse: the output is valid baggage within the
/// W3C limits, carries exactly the edits, and keeps every unrelated member
/// (in order) unless the limits force members off the end.
pub fn check_baggage(data: &[u8]) {
    let (sel, values) = baggage_input(data);
    let parsed = Baggage::parse(values.iter().copied());
    assert!(
        parsed.members.len() <= MAX_MEMBERS,
        "parse kept {} members",
        parsed.members.len()
    );
    assert!(
        serialized_len(&parsed.members) <= MAX_BYTES,
        "parse kept {} bytes",
        serialized_len(&parsed.members)
    );
    for m in &parsed.members {
        let _ = m.decoded_value();
        assert!(parsed.get(m.key).is_some());
    }

    // The edits, one per key (the first selector for a key wins).
    let mut edits: Vec<(&str, Option<&str>)> = Vec::new();
    for (k, v) in sel {
        let key = if k >= 128 && !parsed.members.is_empty() {
            let i = usize::from(k - 128) % parsed.members.len();
            match parsed.members.get(i) {
                Some(m) if m.key.len() <= MAX_EDIT_KEY => m.key,
                _ => continue,
            }
        } else {
            match EDIT_KEYS.get(usize::from(k) % EDIT_KEYS.len()) {
                Some(key) => key,
                None => continue,
            }
        };
        let value = EDIT_VALUES
            .get(usize::from(v) % EDIT_VALUES.len())
            .copied()
            .flatten();
        if edits.iter().all(|(ek, _)| *ek != key) {
            edits.push((key, value));
        }
    }

    let out = if edits.len() == 1 {
        let (k, v) = edits.first().copied().unwrap_or(("lane", None));
        let single = parsed.with_member(k, v);
        assert_eq!(
            single,
            parsed.with_members(&edits),
            "with_member and with_members differ"
        );
        single
    } else {
        parsed.with_members(&edits)
    };

    let unrelated: Vec<&str> = parsed
        .members
        .iter()
        .filter(|m| edits.iter().all(|(k, _)| *k != m.key))
        .map(|m| m.raw)
        .collect();
    let sets: Vec<(&str, &str)> = edits
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();

    let Some(out) = out else {
        assert!(
            unrelated.is_empty() && sets.is_empty(),
            "no baggage written although {} members stay and {} are set",
            unrelated.len(),
            sets.len()
        );
        return;
    };
    assert!(!out.is_empty(), "empty baggage written instead of none");
    assert!(out.len() <= MAX_BYTES, "output is {} bytes", out.len());
    let again = Baggage::parse([out.as_bytes()]);
    assert_eq!(again.dropped, 0, "output {out:?} does not re-parse cleanly");
    assert!(
        again.members.len() <= MAX_MEMBERS,
        "output has {} members",
        again.members.len()
    );
    assert_eq!(
        again.members.len(),
        out.split(',').count(),
        "output {out:?} has empty members"
    );

    // Every edit took effect: a set key once with its value, a removed key gone.
    for (k, v) in &edits {
        let with_key: Vec<&str> = again
            .members
            .iter()
            .filter(|m| m.key == *k)
            .map(|m| m.value)
            .collect();
        match v {
            Some(v) => assert_eq!(
                with_key,
                [*v],
                "key {k:?} after setting it to {v:?} in {out:?}"
            ),
            None => assert!(
                with_key.is_empty(),
                "key {k:?} still present after removal in {out:?}"
            ),
        }
    }
    // Unrelated members survive unchanged and in order; only the limits may
    // drop some, and then from the end.
    let kept: Vec<&str> = again
        .members
        .iter()
        .filter(|m| edits.iter().all(|(k, _)| *k != m.key))
        .map(|m| m.raw)
        .collect();
    assert!(
        unrelated.starts_with(&kept),
        "unrelated members changed or reordered:\n in  {unrelated:?}\n out {kept:?}"
    );
    let full_len = unrelated.iter().map(|r| r.len()).sum::<usize>()
        + sets
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len())
            .sum::<usize>()
        + (unrelated.len() + sets.len()).saturating_sub(1);
    if unrelated.len() + sets.len() <= MAX_MEMBERS && full_len <= MAX_BYTES {
        assert_eq!(
            kept.len(),
            unrelated.len(),
            "members dropped although the result fits: {out:?}"
        );
    }
}

// ---------------------------------------------------------------- decision

/// An edge and a hop with services, splits of every kind and shadow marking.
pub const TRUST_CONFIG: &str = r#"{
  "incoming": "trust",
  "shadow": { "hostSuffix": "-shadow", "baggageKey": "shadow" },
  "services": {
    "svc-b": { "base": "b-base", "lanes": { "gray": "b-gray", "canary": "b-canary" } },
    "svc-c": { "base": "c-base" },
    "svc-b-shadow": { "base": "b-shadow", "lanes": { "gray": "b-shadow-gray" } }
  },
  "lanes": [
    { "name": "gray", "priority": 10,
      "match": { "header": "location", "exact": "cn-shenzhen" } },
    { "name": "canary", "priority": 20,
      "match": { "cookie": "canary", "present": true },
      "split": { "key": { "cookie": "uid", "assign": true, "maxAge": 60 }, "percent": 50 } },
    { "name": "android", "priority": 30,
      "match": { "header": "user-agent", "regex": ".*[Aa]ndroid.*" },
      "split": { "key": { "header": "x-user-id" }, "buckets": ["0-2499", "5000"] } },
    { "name": "anon", "priority": 40,
      "match": { "query": "anon", "in": ["1", "true"] },
      "split": { "percent": 33.33 } },
    { "name": "tenant", "priority": 40,
      "match": { "baggage": "tenant", "exact": "acme", "ignoreCase": true } },
    { "name": "idx", "priority": 60,
      "match": { "any": [ { "header": "x-idx", "exact": "a" }, { "header": "x-idx", "in": ["b", "C"], "ignoreCase": true } ] } }
  ]
}"#;

struct Named {
    name: &'static str,
    config: Config,
}

fn configs() -> &'static [Named] {
    static CONFIGS: OnceLock<Vec<Named>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let edge_services =
            TRUST_CONFIG.replacen(r#""incoming": "trust""#, r#""incoming": "ignore""#, 1);
        let compile = |text: &str| {
            Config::from_json(text.as_bytes()).unwrap_or_else(|e| panic!("fixed config: {e}"))
        };
        vec![
            Named {
                name: "TABLE_CONFIG (edge)",
                config: compile(TABLE_CONFIG),
            },
            Named {
                name: "TRUST_CONFIG (hop)",
                config: compile(TRUST_CONFIG),
            },
            Named {
                name: "TRUST_CONFIG as an edge",
                config: compile(&edge_services),
            },
        ]
    })
}

/// A deterministic random source (splitmix64).
pub fn rng_from(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn decide(config: &Config, req: &HeaderList, seed: u64) -> Decision {
    engine::process(config, req, &mut rng_from(seed)).decision
}

/// The request as Envoy holds it after the filter applied `set`: a set
/// header replaces every value of that name, a removal removes them all.
fn applied(req: &HeaderList, set: &[(&str, Option<Cow<'_, str>>)]) -> HeaderList {
    let mut out = req.clone();
    for (name, value) in set {
        out.0.retain(|(k, _)| k != name);
        if let Some(v) = value {
            out.0.push(((*name).to_string(), v.as_bytes().to_vec()));
        }
    }
    out
}

fn values<'r>(req: &'r HeaderList, name: &str) -> Vec<&'r [u8]> {
    req.0
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// The request with every client-sent tag neutralised: the lane and cluster
/// headers removed, and each baggage member whose key is `baggageKey` in any
/// case renamed to a same-length key, so no other member moves across the
/// member or byte limits.
pub fn without_tags(config: &Config, req: &HeaderList) -> HeaderList {
    let lane_header = config.lane_header.as_str();
    let cluster_header = config.cluster_header.as_str();
    let key = config.baggage_key.as_bytes();
    let mut out = HeaderList::default();
    for (name, value) in &req.0 {
        if name == lane_header || name == cluster_header {
            continue;
        }
        if name != "baggage" {
            out.0.push((name.clone(), value.clone()));
            continue;
        }
        let mut renamed = Vec::with_capacity(value.len());
        for (i, item) in value.split(|&b| b == b',').enumerate() {
            if i > 0 {
                renamed.push(b',');
            }
            let head_end = item
                .iter()
                .position(|&b| b == b';' || b == b'=')
                .unwrap_or(item.len());
            let head = item.get(..head_end).unwrap_or_default();
            let start = head
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(head.len());
            let end = head
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(start, |e| e + 1);
            let k = head.get(start..end).unwrap_or_default();
            if k.eq_ignore_ascii_case(key) {
                renamed.extend_from_slice(item.get(..start).unwrap_or_default());
                renamed.extend(std::iter::repeat_n(b'z', k.len()));
                renamed.extend_from_slice(item.get(end..).unwrap_or_default());
            } else {
                renamed.extend_from_slice(item);
            }
        }
        out.0.push((name.clone(), renamed));
    }
    out
}

/// One request against one config: decide and explain agree; the effects
/// leave the request carrying exactly the decided lane, valid bounded
/// baggage and the right cluster; at an edge, client tags change nothing.
fn check_one(config: &Config, name: &str, req: &HeaderList, seed: u64, tags_invariant: bool) {
    let out = engine::process(config, req, &mut rng_from(seed));
    let d = &out.decision;
    let ex = engine::explain(config, req, &mut rng_from(seed));
    assert_eq!(
        *d, ex.decision,
        "{name}: decide and explain disagree on {req:?}"
    );
    match d.source {
        LaneSource::Default => assert!(d.lane.is_none(), "{name}: default source with a lane"),
        LaneSource::Rule => {
            let last = ex.tried.last().map(|(id, _)| *id);
            assert_eq!(
                last, d.lane,
                "{name}: explain's last rule is not the winner"
            );
        }
        LaneSource::Propagated => {}
        LaneSource::Continued => panic!("{name}: the engine alone never continues a trace"),
    }
    let lane = d.lane.map(|id| config.lane_name(Some(id)));

    // What the request carries after the filter.
    let after = applied(req, &out.effects.set);
    let lane_values = values(&after, &config.lane_header);
    match lane {
        Some(l) => assert_eq!(
            lane_values,
            [l.as_bytes()],
            "{name}: lane header after deciding {l}"
        ),
        None => assert!(
            lane_values.is_empty(),
            "{name}: lane header left on a base request"
        ),
    }
    let bag = values(&after, "baggage");
    assert!(
        bag.len() <= 1,
        "{name}: {} baggage headers after the filter",
        bag.len()
    );
    if let Some(text) = bag.first() {
        assert!(
            text.len() <= MAX_BYTES,
            "{name}: baggage of {} bytes",
            text.len()
        );
        let b = Baggage::parse([*text]);
        assert_eq!(
            b.dropped,
            0,
            "{name}: outgoing baggage {:?} is not clean",
            String::from_utf8_lossy(text)
        );
        assert!(
            b.members.len() <= MAX_MEMBERS,
            "{name}: {} baggage members",
            b.members.len()
        );
        let tags: Vec<Cow<str>> = b
            .members
            .iter()
            .filter(|m| m.key == config.baggage_key)
            .map(|m| m.decoded().unwrap_or_default())
            .collect();
        match lane {
            // A hop forwards a kept tag as it arrived, percent-encoding
            // included (docs/decision.md "Behaviour details"): its decoded value is
            // the lane.
            Some(l) => assert_eq!(tags, [l], "{name}: baggage tag after deciding {l}"),
            None => assert!(
                tags.is_empty(),
                "{name}: baggage tag left on a base request"
            ),
        }
        if let Some(shadow) = &config.shadow {
            let marks = b
                .members
                .iter()
                .filter(|m| m.key == shadow.baggage_key)
                .count();
            if out.effects.shadow {
                assert_eq!(marks, 1, "{name}: mirrored request not marked once");
            } else if config.incoming == Incoming::Ignore {
                assert_eq!(marks, 0, "{name}: client-sent shadow mark kept at the edge");
            }
        }
    } else {
        assert!(lane.is_none(), "{name}: lane decided but no baggage");
        assert!(
            !out.effects.shadow,
            "{name}: mirrored request without baggage"
        );
    }
    let cluster = values(&after, &config.cluster_header);
    match out.effects.cluster {
        Some(c) => assert_eq!(cluster, [c.as_bytes()], "{name}: cluster header"),
        None => assert!(
            cluster.is_empty(),
            "{name}: client-sent cluster header kept"
        ),
    }

    if config.incoming == Incoming::Ignore {
        assert_ne!(
            d.source,
            LaneSource::Propagated,
            "{name}: an edge trusted a client tag"
        );
        assert!(!d.invalid_tag, "{name}: an edge read a client tag");
    }
    if config.incoming == Incoming::Ignore && tags_invariant {
        let clean = without_tags(config, req);
        let base_line = decide(config, &clean, seed);
        assert_eq!(
            (d.lane, d.source, &d.split),
            (base_line.lane, base_line.source, &base_line.split),
            "{name}: client tags changed the decision:\n with    {req:?}\n without {clean:?}"
        );
    } else if d.source == LaneSource::Propagated {
        let view = engine::View::new(req);
        // The member counts wherever it stands (no member limit on reading).
        let tag = match graylane::baggage::find(view.baggage(), &config.baggage_key) {
            Some(m) => m.decoded_value(),
            None => view
                .first_header(&config.lane_header)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
        };
        assert_eq!(
            tag.as_deref(),
            lane,
            "{name}: propagated lane is not the incoming tag"
        );
    }
}

/// Every fixed config on one request.
pub fn check_decision(req: &HeaderList, seed: u64) {
    for c in configs() {
        check_one(&c.config, c.name, req, seed, true);
    }
}

// ---------------------------------------------------------------- trace context

/// An accepted `continuity` is within the documented bounds.
fn check_continuity_settings(c: &continuity::Continuity) {
    assert!(
        (continuity::MIN_SLOTS..=continuity::MAX_SLOTS).contains(&c.slots),
        "slots {} accepted",
        c.slots
    );
    assert!(
        (continuity::MIN_TTL_MS..=continuity::MAX_TTL_MS).contains(&c.ttl_ms),
        "ttl {} ms accepted",
        c.ttl_ms
    );
    assert!(!c.from.is_empty(), "continuity.from accepted empty");
    for (i, h) in c.from.iter().enumerate() {
        assert!(!c.from[..i].contains(h), "{} listed twice", h.name());
        assert_eq!(
            h.name(),
            h.name().to_ascii_lowercase(),
            "header name not lower-cased"
        );
    }
}

/// W3C Trace Context's `traceparent`, written the plain way: the reference
/// the parser is compared with.
fn reference_trace_id(v: &[u8]) -> Option<&[u8]> {
    let hex = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    if v.len() < 55 {
        return None;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    let dashes = v[2] == b'-' && v[35] == b'-' && v[52] == b'-';
    let ok = dashes
        && hex(version)
        && version != b"ff"
        && hex(trace)
        && hex(parent)
        && hex(flags)
        && trace.iter().any(|&b| b != b'0')
        && parent.iter().any(|&b| b != b'0')
        && if version == b"00" {
            v.len() == 55
        } else {
            v.len() == 55 || v[55] == b'-'
        };
    ok.then_some(trace)
}

/// Trace-context parsing and the continuity table's encoding on arbitrary
/// bytes: `traceparent` agrees with the reference; a whole-value id is
/// bounded and visible ASCII; a slot value round-trips and the judgement of
/// a slot never gives another trace's lane; slots stay in range.
pub fn check_trace_context(data: &[u8]) {
    assert_eq!(
        continuity::traceparent_trace_id(data),
        reference_trace_id(data),
        "traceparent {:?}",
        String::from_utf8_lossy(data)
    );
    if let Some(id) = continuity::whole_trace_id(data) {
        assert!(!id.is_empty() && id.len() <= continuity::MAX_KEY_LEN);
        assert!(id.iter().all(|b| (0x21..=0x7e).contains(b)));
    }
    // A slot value read from arbitrary bytes never panics and, when it
    // decodes, writes back to the same bytes.
    if let Some(e) = continuity::decode(data) {
        let mut buf = Vec::new();
        continuity::encode(e.trace_id, e.lane, e.expires_ms, &mut buf);
        assert_eq!(buf, data, "decode then encode changed the value");
    }
    // The first byte splits the rest into a trace id and a lane name.
    let (split, rest) = data.split_first().unwrap_or((&0, &[]));
    let at = usize::from(*split).min(rest.len());
    let (id, lane) = rest.split_at(at);
    let lane = std::str::from_utf8(lane).unwrap_or("gray");
    let mut buf = Vec::new();
    continuity::encode(id, lane, 1000, &mut buf);
    if id.len() <= usize::from(u8::MAX) && !lane.is_empty() {
        assert_eq!(
            continuity::find(Some(&buf), id, 999),
            continuity::Found::Hit(lane),
            "a live entry of this trace"
        );
        assert_eq!(
            continuity::find(Some(&buf), id, 1000),
            continuity::Found::Expired
        );
        let mut other = id.to_vec();
        other.push(b'x');
        assert_eq!(
            continuity::find(Some(&buf), &other, 0),
            continuity::Found::Collision,
            "another trace's entry is a miss"
        );
    }
    let slots = u32::from_le_bytes([
        *data.first().unwrap_or(&1),
        *data.get(1).unwrap_or(&0),
        *data.get(2).unwrap_or(&0),
        0,
    ])
    .max(1);
    let slot = continuity::slot_of(data, slots);
    assert!(slot < slots, "slot {slot} of {slots}");
    let key = continuity::SlotKey::new(slot);
    assert!(key.as_str().starts_with(continuity::SLOT_KEY_PREFIX));
}
