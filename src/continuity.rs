//! Lane continuity from trace context (docs/full-link.md "Lane continuity from trace
//! context"): the pure part. A sidecar's inbound side remembers
//! `trace id -> (lane, expiry)`; its outbound side looks the trace id of an
//! untagged request up. The table is a fixed number of slots in the host's
//! shared data; this module finds the trace id in a request, names the slot
//! it lives in, and encodes, decodes and judges slot values. The host calls
//! (shared data, the clock, the listener direction) are in `filter/`.

use crate::engine::{Request, View};
use xxhash_rust::xxh64::xxh64;

/// Longest value of a header other than `traceparent` used as a trace id;
/// a longer one is ignored, never cut (two ids sharing a prefix must not
/// share an entry).
pub const MAX_KEY_LEN: usize = 128;
/// Fewest and most `slots`.
pub const MIN_SLOTS: u32 = 1;
pub const MAX_SLOTS: u32 = 1 << 20;
/// Shortest and longest `ttl`, in milliseconds.
pub const MIN_TTL_MS: u64 = 1;
pub const MAX_TTL_MS: u64 = 24 * 3600 * 1000;
/// Prefix of a slot's shared-data key; the slot number follows in hex.
pub const SLOT_KEY_PREFIX: &str = "graylane.continuity.";
/// Seed of the slot hash (fixed: the inbound and outbound sides of one
/// Envoy, and every version of the filter they may run during an upgrade,
/// must agree on it).
const SLOT_SEED: u64 = 0x6772_6179_6c61_6e65;
/// First byte of an encoded slot value (its format's version).
const FORMAT: u8 = 1;

/// Which side of the sidecar a request is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// In front of the app: remember the lane of each trace.
    Inbound,
    /// The app's outgoing calls: restore the lane of an untagged request.
    Outbound,
}

impl Side {
    /// From Envoy's listener direction (`envoy.config.core.v3.TrafficDirection`:
    /// 0 unspecified, 1 inbound, 2 outbound).
    pub fn from_direction(direction: i64) -> Option<Side> {
        match direction {
            1 => Some(Side::Inbound),
            2 => Some(Side::Outbound),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
        }
    }

    /// From `continuity.side`.
    pub fn from_name(name: &str) -> Option<Side> {
        match name {
            "inbound" => Some(Side::Inbound),
            "outbound" => Some(Side::Outbound),
            _ => None,
        }
    }
}

/// Where a trace id is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceHeader {
    /// W3C `traceparent`: its 32-hex trace id.
    Traceparent,
    /// Any other header (lower case): its whole value, at most
    /// [`MAX_KEY_LEN`] bytes.
    Whole(String),
}

impl TraceHeader {
    pub fn name(&self) -> &str {
        match self {
            TraceHeader::Traceparent => "traceparent",
            TraceHeader::Whole(name) => name,
        }
    }
}

/// The compiled `continuity` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    /// In order; the first one present gives the trace id.
    pub from: Vec<TraceHeader>,
    pub ttl_ms: u64,
    pub slots: u32,
    /// The side when Envoy gives no listener direction.
    pub side: Option<Side>,
}

/// The trace id of a `traceparent` value (W3C Trace Context, level 1):
/// `version-traceid-parentid-flags`, lower-case hex; version `ff`, an
/// all-zero trace or parent id, or anything malformed gives `None`. A
/// version above `00` may carry more after the flags, behind a `-`.
pub fn traceparent_trace_id(value: &[u8]) -> Option<&[u8]> {
    // One pass over the 55 characters of version 00's layout: dashes at 2,
    // 35 and 52, lower-case hex elsewhere; then the zero and length rules.
    let head = value.get(..55)?;
    let mut ok = true;
    for (i, &b) in head.iter().enumerate() {
        ok &= if matches!(i, 2 | 35 | 52) {
            b == b'-'
        } else {
            b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
        };
    }
    let nonzero = |s: Option<&[u8]>| s.is_some_and(|s| s.iter().any(|&b| b != b'0'));
    let version = head.get(..2)?;
    let rest_ok = match value.get(55) {
        None => true,
        Some(&b) => version != b"00" && b == b'-',
    };
    let trace_id = head.get(3..35);
    (ok && version != b"ff" && rest_ok && nonzero(trace_id) && nonzero(head.get(36..52)))
        .then_some(trace_id)
        .flatten()
}

/// A whole header value as a trace id: 1 to [`MAX_KEY_LEN`] visible ASCII
/// characters.
pub fn whole_trace_id(value: &[u8]) -> Option<&[u8]> {
    (!value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.iter().all(|b| (0x21..=0x7e).contains(b)))
    .then_some(value)
}

/// The trace id of a request: from the first header of `from` that is
/// present (a present but invalid one gives `None`, not the next header:
/// the request's trace is the one that header names).
pub fn trace_id<'a, R: Request + ?Sized>(c: &Continuity, view: &View<'a, R>) -> Option<&'a [u8]> {
    c.from.iter().find_map(|h| {
        let value = view.first_header(h.name())?;
        Some(match h {
            TraceHeader::Traceparent => traceparent_trace_id(value),
            TraceHeader::Whole(_) => whole_trace_id(value),
        })
    })?
}

/// The slot of a trace id.
pub fn slot_of(trace_id: &[u8], slots: u32) -> u32 {
    let slots = u64::from(slots.max(1));
    u32::try_from(xxh64(trace_id, SLOT_SEED) % slots).unwrap_or(0)
}

/// A slot's shared-data key, built on the stack: [`SLOT_KEY_PREFIX`] and
/// the slot number in 8 lower-case hex digits.
pub struct SlotKey {
    buf: [u8; SLOT_KEY_LEN],
}

const SLOT_KEY_LEN: usize = SLOT_KEY_PREFIX.len() + 8;

impl SlotKey {
    pub fn new(slot: u32) -> SlotKey {
        let mut buf = [0u8; SLOT_KEY_LEN];
        let (prefix, digits) = buf.split_at_mut(SLOT_KEY_PREFIX.len());
        prefix.copy_from_slice(SLOT_KEY_PREFIX.as_bytes());
        for (i, d) in digits.iter_mut().enumerate() {
            let nibble = (slot >> (28 - 4 * i)) & 0xf;
            *d = b"0123456789abcdef"
                .get(nibble as usize)
                .copied()
                .unwrap_or(b'0');
        }
        SlotKey { buf }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }
}

/// A decoded slot value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub trace_id: &'a [u8],
    /// A lane name, or `base`.
    pub lane: &'a str,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// Writes a slot value into `out` (cleared first): format byte, expiry
/// (u64 little-endian), trace-id length (one byte), trace id, lane name.
/// Trace ids are at most [`MAX_KEY_LEN`] bytes, so the length fits.
pub fn encode(trace_id: &[u8], lane: &str, expires_ms: u64, out: &mut Vec<u8>) {
    out.clear();
    let Ok(len) = u8::try_from(trace_id.len()) else {
        return;
    };
    out.push(FORMAT);
    out.extend_from_slice(&expires_ms.to_le_bytes());
    out.push(len);
    out.extend_from_slice(trace_id);
    out.extend_from_slice(lane.as_bytes());
}

/// Reads a slot value; anything not written by [`encode`] gives `None`.
pub fn decode(value: &[u8]) -> Option<Entry<'_>> {
    if value.first() != Some(&FORMAT) {
        return None;
    }
    let expires: [u8; 8] = value.get(1..9)?.try_into().ok()?;
    let len = usize::from(*value.get(9)?);
    let trace_id = value.get(10..10 + len)?;
    let lane = std::str::from_utf8(value.get(10 + len..)?).ok()?;
    if lane.is_empty() {
        return None;
    }
    Some(Entry {
        trace_id,
        lane,
        expires_ms: u64::from_le_bytes(expires),
    })
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// A live entry of this trace: its lane (or `base`).
    Hit(&'a str),
    /// The slot is empty (or holds what this format cannot read).
    Empty,
    /// The slot holds another trace.
    Collision,
    /// The slot holds this trace, expired.
    Expired,
}

/// Judges a slot's value for a trace id at time `now_ms`.
pub fn find<'a>(value: Option<&'a [u8]>, trace_id: &[u8], now_ms: u64) -> Found<'a> {
    match value.and_then(decode) {
        None => Found::Empty,
        Some(e) if e.trace_id != trace_id => Found::Collision,
        Some(e) if e.expires_ms <= now_ms => Found::Expired,
        Some(e) => Found::Hit(e.lane),
    }
}

/// Parses a `ttl`: a whole number followed by `ms`, `s`, `m` or `h`
/// (`"60s"`); in milliseconds.
pub fn parse_ttl(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let mut n: u64 = 0;
    for b in number.bytes() {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (digits > 0).then_some(())?;
    n.checked_mul(scale)
}

/// The host's shared data as the continuity table uses it: the seam
/// between this module and the filter (tests use a map).
pub trait Table {
    /// Runs `f` on a slot's value and CAS token (`None`, 0: empty); `None`
    /// when the host cannot be read.
    fn read<R>(&mut self, key: &str, f: impl FnOnce(Option<&[u8]>, u32) -> R) -> Option<R>;
    /// Writes a slot if `cas` is still its token (0: in any case).
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError>;
}

/// Why a slot write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Another worker wrote the slot since it was read.
    Conflict,
    /// The host refused.
    Failed,
}

/// What one continuity step did, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Outbound: a live entry of this trace gave a declared lane.
    Hit,
    /// Outbound: a live entry of this trace says base, or names a lane this
    /// config does not declare: the request is decided as usual.
    HitBase,
    /// Outbound: no entry (empty slot, or the table cannot be read).
    Miss,
    /// Outbound: the slot holds another trace (a miss).
    Collision,
    /// Outbound: the entry of this trace has expired (a miss).
    Expired,
    /// Inbound: the lane was remembered.
    Remembered,
    /// Inbound: the write lost twice to other workers' writes, or failed.
    NotRemembered,
}

/// Outbound: looks a trace id up; `admit` turns a live entry's lane into a
/// decision (`None`: base or an undeclared lane).
pub fn lookup<T: Table, D>(
    table: &mut T,
    c: &Continuity,
    trace_id: &[u8],
    now_ms: u64,
    admit: impl FnOnce(&str) -> Option<D>,
) -> (Event, Option<D>) {
    let key = SlotKey::new(slot_of(trace_id, c.slots));
    let found = table.read(key.as_str(), |value, _| {
        match find(value, trace_id, now_ms) {
            Found::Hit(lane) => match admit(lane) {
                Some(d) => (Event::Hit, Some(d)),
                None => (Event::HitBase, None),
            },
            Found::Empty => (Event::Miss, None),
            Found::Collision => (Event::Collision, None),
            Found::Expired => (Event::Expired, None),
        }
    });
    found.unwrap_or((Event::Miss, None))
}

/// Inbound: remembers `trace id -> lane` (a lane name or `base`) until
/// `now + ttl`, in the trace's slot, whatever it held: the newest trace
/// wins a shared slot, and the one it displaces then misses (base), never
/// gets a wrong lane. The write carries the slot's CAS token, so two
/// workers cannot interleave; on a conflict it reads and tries once more.
/// `buf` is reused scratch space.
pub fn remember<T: Table>(
    table: &mut T,
    c: &Continuity,
    trace_id: &[u8],
    lane: &str,
    now_ms: u64,
    buf: &mut Vec<u8>,
) -> Event {
    let key = SlotKey::new(slot_of(trace_id, c.slots));
    encode(trace_id, lane, now_ms.saturating_add(c.ttl_ms), buf);
    if buf.is_empty() {
        return Event::NotRemembered;
    }
    for _ in 0..2 {
        let Some(cas) = table.read(key.as_str(), |_, cas| cas) else {
            return Event::NotRemembered;
        };
        match table.write(key.as_str(), buf, cas) {
            Ok(()) => return Event::Remembered,
            Err(WriteError::Conflict) => continue,
            Err(WriteError::Failed) => return Event::NotRemembered,
        }
    }
    Event::NotRemembered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HeaderList;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid_and_invalid() {
        let id = b"4bf92f3577b34da6a3ce929d0e0e4736".as_slice();
        assert_eq!(traceparent_trace_id(TP.as_bytes()), Some(id));
        let cases: &[(&str, bool)] = &[
            (TP, true),
            // A later version may carry more behind a dash.
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
                true,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
            // Version 00 is exactly 55 characters.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                false,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                false,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                false,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                false,
            ),
            ("", false),
            ("00-", false),
        ];
        for (value, ok) in cases {
            assert_eq!(
                traceparent_trace_id(value.as_bytes()).is_some(),
                *ok,
                "{value}"
            );
        }
    }

    #[test]
    fn whole_values_are_bounded_and_visible() {
        assert_eq!(whole_trace_id(b"abc-1"), Some(b"abc-1".as_slice()));
        assert_eq!(whole_trace_id(b""), None);
        assert_eq!(whole_trace_id(b"a b"), None);
        assert_eq!(whole_trace_id("é".as_bytes()), None);
        let long = vec![b'a'; MAX_KEY_LEN];
        assert!(whole_trace_id(&long).is_some());
        let longer = vec![b'a'; MAX_KEY_LEN + 1];
        assert_eq!(whole_trace_id(&longer), None);
    }

    fn continuity(from: &[&str]) -> Continuity {
        Continuity {
            from: from
                .iter()
                .map(|h| match *h {
                    "traceparent" => TraceHeader::Traceparent,
                    other => TraceHeader::Whole(other.to_string()),
                })
                .collect(),
            ttl_ms: 60_000,
            slots: 16,
            side: None,
        }
    }

    #[test]
    fn the_first_present_header_names_the_trace() {
        let c = continuity(&["traceparent", "x-request-id"]);
        let both = HeaderList::from_strs(&[("traceparent", TP), ("x-request-id", "r1")]);
        assert_eq!(
            trace_id(&c, &View::new(&both)),
            Some(b"4bf92f3577b34da6a3ce929d0e0e4736".as_slice())
        );
        let rid = HeaderList::from_strs(&[("x-request-id", "r1")]);
        assert_eq!(trace_id(&c, &View::new(&rid)), Some(b"r1".as_slice()));
        // A malformed traceparent is the request's trace header: no fallback.
        let bad = HeaderList::from_strs(&[("traceparent", "00-zz"), ("x-request-id", "r1")]);
        assert_eq!(trace_id(&c, &View::new(&bad)), None);
        assert_eq!(trace_id(&c, &View::new(&HeaderList::default())), None);
    }

    #[test]
    fn slot_keys_and_slots() {
        assert_eq!(SlotKey::new(0).as_str(), "graylane.continuity.00000000");
        assert_eq!(SlotKey::new(65535).as_str(), "graylane.continuity.0000ffff");
        assert_eq!(
            SlotKey::new(u32::MAX).as_str(),
            "graylane.continuity.ffffffff"
        );
        assert_eq!(slot_of(b"x", 1), 0);
        assert_eq!(slot_of(b"x", 0), 0);
        // Pinned: both sides of a sidecar, and filter versions side by side
        // during an upgrade, must agree on the slot.
        assert_eq!(slot_of(b"4bf92f3577b34da6a3ce929d0e0e4736", 65536), 58_148);
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            seen.insert(slot_of(i.to_string().as_bytes(), 64));
        }
        assert_eq!(seen.len(), 64, "1,000 ids spread over every slot");
    }

    #[test]
    fn entries_round_trip_and_are_judged() {
        let mut buf = Vec::new();
        encode(b"t1", "gray", 1000, &mut buf);
        assert_eq!(
            decode(&buf),
            Some(Entry {
                trace_id: b"t1",
                lane: "gray",
                expires_ms: 1000
            })
        );
        assert_eq!(find(Some(&buf), b"t1", 999), Found::Hit("gray"));
        assert_eq!(find(Some(&buf), b"t1", 1000), Found::Expired);
        assert_eq!(find(Some(&buf), b"t2", 0), Found::Collision);
        // Same prefix, other id: the full id is compared.
        assert_eq!(find(Some(&buf), b"t", 0), Found::Collision);
        assert_eq!(find(None, b"t1", 0), Found::Empty);
        for junk in [&b""[..], b"\x01", b"\x02abcdefghij", &buf[..10], &buf[..11]] {
            assert_eq!(find(Some(junk), b"t1", 0), Found::Empty, "{junk:?}");
        }
        // An id too long to encode writes nothing.
        encode(&[b'a'; 300], "gray", 1, &mut buf);
        assert!(buf.is_empty());
    }

    /// Shared data as Envoy keeps it: a value and a CAS token per key,
    /// the token changing on every write.
    #[derive(Default)]
    struct MapTable {
        slots: std::collections::HashMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
        /// Writes to fail with a conflict, as if another worker got there first.
        conflicts: usize,
    }

    impl Table for MapTable {
        fn read<R>(&mut self, key: &str, f: impl FnOnce(Option<&[u8]>, u32) -> R) -> Option<R> {
            Some(match self.slots.get(key) {
                Some((v, cas)) => f(Some(v), *cas),
                None => f(None, 0),
            })
        }

        fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
            if self.conflicts > 0 {
                self.conflicts -= 1;
                return Err(WriteError::Conflict);
            }
            let current = self.slots.get(key).map_or(0, |(_, c)| *c);
            if cas != 0 && cas != current {
                return Err(WriteError::Conflict);
            }
            self.next_cas += 1;
            self.slots
                .insert(key.to_string(), (value.to_vec(), self.next_cas));
            Ok(())
        }
    }

    fn admit_gray(lane: &str) -> Option<String> {
        (lane == "gray").then(|| lane.to_string())
    }

    #[test]
    fn remembered_lanes_come_back_until_they_expire() {
        let c = continuity(&["traceparent"]);
        let mut t = MapTable::default();
        let mut buf = Vec::new();
        assert_eq!(
            lookup(&mut t, &c, b"t1", 0, admit_gray),
            (Event::Miss, None)
        );
        assert_eq!(
            remember(&mut t, &c, b"t1", "gray", 1_000, &mut buf),
            Event::Remembered
        );
        assert_eq!(
            lookup(&mut t, &c, b"t1", 60_999, admit_gray),
            (Event::Hit, Some("gray".to_string()))
        );
        assert_eq!(
            lookup(&mut t, &c, b"t1", 61_000, admit_gray),
            (Event::Expired, None)
        );
        // Base is remembered too: a later base request of the trace replaces gray.
        remember(&mut t, &c, b"t1", "base", 2_000, &mut buf);
        assert_eq!(
            lookup(&mut t, &c, b"t1", 2_001, admit_gray),
            (Event::HitBase, None)
        );
        // An undeclared lane is never admitted.
        remember(&mut t, &c, b"t1", "android", 2_000, &mut buf);
        assert_eq!(
            lookup(&mut t, &c, b"t1", 2_001, admit_gray),
            (Event::HitBase, None)
        );
    }

    #[test]
    fn a_shared_slot_gives_misses_never_another_traces_lane() {
        let mut c = continuity(&["traceparent"]);
        c.slots = 1;
        let mut t = MapTable::default();
        let mut buf = Vec::new();
        remember(&mut t, &c, b"gray-trace", "gray", 0, &mut buf);
        remember(&mut t, &c, b"base-trace", "base", 0, &mut buf);
        assert_eq!(
            lookup(&mut t, &c, b"gray-trace", 1, admit_gray),
            (Event::Collision, None)
        );
        assert_eq!(
            lookup(&mut t, &c, b"base-trace", 1, admit_gray),
            (Event::HitBase, None)
        );
        assert_eq!(t.slots.len(), 1, "the table never grows past its slots");
    }

    #[test]
    fn writes_retry_once_on_a_cas_conflict() {
        let c = continuity(&["traceparent"]);
        let mut buf = Vec::new();
        let mut t = MapTable {
            conflicts: 1,
            ..MapTable::default()
        };
        assert_eq!(
            remember(&mut t, &c, b"t", "gray", 0, &mut buf),
            Event::Remembered
        );
        let mut t = MapTable {
            conflicts: 2,
            ..MapTable::default()
        };
        assert_eq!(
            remember(&mut t, &c, b"t", "gray", 0, &mut buf),
            Event::NotRemembered
        );
        assert_eq!(lookup(&mut t, &c, b"t", 1, admit_gray), (Event::Miss, None));
    }

    #[test]
    fn ttl_text() {
        assert_eq!(parse_ttl("60s"), Some(60_000));
        assert_eq!(parse_ttl("250ms"), Some(250));
        assert_eq!(parse_ttl("2m"), Some(120_000));
        assert_eq!(parse_ttl("1h"), Some(3_600_000));
        for bad in [
            "",
            "s",
            "60",
            "60 s",
            "-1s",
            "1.5s",
            "60S",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }
}
