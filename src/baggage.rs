//! W3C Baggage (`baggage` request header): parse into members, edit one key,
//! write back. Bounded: never more than [`MAX_MEMBERS`] members or
//! [`MAX_BYTES`] bytes, whatever arrives.
//!
//! Grammar (W3C Baggage, "Header Content"):
//! ```text
//! baggage-string = list-member 0*179( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token
//! value          = *baggage-octet   ; %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
//! ```
//! Members are kept as the exact bytes they arrived with (minus surrounding
//! whitespace), so percent-encoded values and properties travel unchanged.

use std::borrow::Cow;

/// Most members a baggage header may carry (docs/decision.md "Behaviour details").
pub const MAX_MEMBERS: usize = 180;
/// Most bytes a baggage header may carry (docs/decision.md "Behaviour details").
pub const MAX_BYTES: usize = 8192;

/// One valid list-member, as the raw text it arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The member's key (a token, case-sensitive).
    pub key: &'a str,
    /// The raw (still percent-encoded) value.
    pub value: &'a str,
    /// The whole member text: `key=value;prop...`, trimmed.
    pub raw: &'a str,
}

impl<'a> Member<'a> {
    /// The percent-decoded value, or `None` when the encoding is invalid or
    /// does not decode to UTF-8. Borrowed unless it was encoded.
    pub fn decoded(&self) -> Option<Cow<'a, str>> {
        percent_decode(self.value.as_bytes(), false)
    }

    /// [`Member::decoded`], owned.
    pub fn decoded_value(&self) -> Option<String> {
        self.decoded().map(Cow::into_owned)
    }
}

/// A parsed baggage header: its valid members in order, and what was dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Baggage<'a> {
    pub members: Vec<Member<'a>>,
    /// Non-empty list-members that were invalid, or past the member/byte limit.
    pub dropped: usize,
}

/// Byte classes of the grammar: bit 0 token character, bit 1 baggage-octet,
/// bit 2 OWS.
#[allow(clippy::indexing_slicing)] // `b < 256`: in bounds, at compile time
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let tchar = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
                    | b'%'
            );
        let octet = matches!(c, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        let ows = c == b' ' || c == b'\t';
        t[b] = (tchar as u8) | ((octet as u8) << 1) | ((ows as u8) << 2);
        b += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

const TCHAR: u8 = 1;
const OCTET: u8 = 2;
const OWS: u8 = 4;

fn is_ows(b: u8) -> bool {
    class(b) & OWS != 0
}

/// The byte at `i`, or 0 past the end (0 is in no class of the grammar).
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Index of the first byte from `i` on that is in none of the classes of
/// `mask`.
fn skip(b: &[u8], mut i: usize, mask: u8) -> usize {
    while let Some(&c) = b.get(i) {
        if class(c) & mask == 0 {
            break;
        }
        i += 1;
    }
    i
}

/// The non-blank comma-separated items of one header value, scanned in
/// place (never `Scanned::Empty`): what both [`members`] and the edits
/// ([`plan`], [`write`]) read.
struct ValueItems<'a> {
    bytes: &'a [u8],
    /// Where the next item starts (`at > bytes.len()`: finished).
    at: usize,
}

impl<'a> ValueItems<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        ValueItems { bytes, at: 0 }
    }

    /// Nothing left.
    const EMPTY: ValueItems<'static> = ValueItems { bytes: b"", at: 1 };
}

impl Iterator for ValueItems<'_> {
    type Item = Scanned;

    // Inlined into each reader's loop, with the scanner: a baseline-compiled
    // VM pays for every call per member.
    #[inline(always)]
    fn next(&mut self) -> Option<Scanned> {
        while self.at <= self.bytes.len() {
            let (item, next) = scan_item(self.bytes, self.at);
            self.at = next;
            if !matches!(item, Scanned::Empty) {
                return Some(item);
            }
        }
        None
    }
}

/// One comma-separated item of a header value, as byte ranges.
enum Scanned {
    /// Nothing but OWS: skipped silently.
    Empty,
    Invalid,
    /// `(start, end)` ranges of the key, the raw value and the whole
    /// member (surrounding OWS trimmed).
    Valid {
        key: (usize, usize),
        value: (usize, usize),
        raw: (usize, usize),
    },
}

/// Where the next comma is from `i` on (the length when there is none).
fn next_comma(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b','))
        .map_or(b.len(), |p| i + p)
}

/// Scans the item that starts at `from` in one pass over its bytes, and
/// returns it with where the next item starts (past its comma). Valid:
/// `OWS key OWS "=" OWS value *( OWS ";" OWS key [OWS "=" OWS value] ) OWS`.
#[inline(always)]
fn scan_item(b: &[u8], from: usize) -> (Scanned, usize) {
    let start = skip(b, from, OWS);
    if start >= b.len() || at(b, start) == b',' {
        return (Scanned::Empty, start + 1);
    }
    let invalid = |i: usize| (Scanned::Invalid, next_comma(b, i) + 1);
    let key_end = skip(b, start, TCHAR);
    if key_end == start {
        return invalid(start);
    }
    let i = skip(b, key_end, OWS);
    if at(b, i) != b'=' {
        return invalid(i);
    }
    let value_start = skip(b, i + 1, OWS);
    let value_end = skip(b, value_start, OCTET);
    let mut i = skip(b, value_end, OWS);
    while at(b, i) == b';' {
        let k = skip(b, i + 1, OWS);
        i = skip(b, k, TCHAR);
        if i == k {
            return invalid(i);
        }
        i = skip(b, i, OWS);
        if at(b, i) == b'=' {
            let v = skip(b, i + 1, OWS);
            i = skip(b, skip(b, v, OCTET), OWS);
        }
    }
    if i < b.len() && at(b, i) != b',' {
        return invalid(i);
    }
    let mut end = i;
    while end > start && is_ows(at(b, end - 1)) {
        end -= 1;
    }
    let member = Scanned::Valid {
        key: (start, key_end),
        value: (value_start, value_end),
        raw: (start, end),
    };
    (member, i + 1)
}

impl<'a> Baggage<'a> {
    /// Parses every `baggage` header value given, in order, as one list,
    /// keeping at most [`MAX_MEMBERS`] members and [`MAX_BYTES`] bytes.
    /// Invalid members are dropped (and counted); empty list-members
    /// (`a=1,,b=2`) are skipped silently. Values that are not UTF-8 are
    /// dropped whole. The request path does not build this list: it reads
    /// members in place ([`members`]) and edits with [`plan`] and [`write`].
    pub fn parse<I: IntoIterator<Item = &'a [u8]>>(values: I) -> Baggage<'a> {
        let mut out = Baggage::default();
        let mut bytes = 0usize;
        for item in members(values) {
            let Item::Valid(member) = item else {
                out.dropped += 1;
                continue;
            };
            let added = member.raw.len() + usize::from(!out.members.is_empty());
            if out.members.len() >= MAX_MEMBERS || bytes + added > MAX_BYTES {
                out.dropped += 1;
                continue;
            }
            bytes += added;
            out.members.push(member);
        }
        out
    }

    /// The first member with this key.
    pub fn get(&self, key: &str) -> Option<&Member<'a>> {
        self.members.iter().find(|m| m.key == key)
    }

    /// Serialized header value after setting `key=value` (replacing every
    /// member with that key, in the place of the first one, else appended)
    /// or, with `value = None`, removing it. `None` when no member is left.
    /// Members are dropped from the end (never the edited one) when the edit
    /// would break the member or byte limit.
    pub fn with_member(&self, key: &str, value: Option<&str>) -> Option<String> {
        self.with_members(&[(key, value)])
    }

    /// [`Baggage::with_member`] for several keys at once.
    pub fn with_members(&self, edits: &[(&str, Option<&str>)]) -> Option<String> {
        // The members are valid and within the limits: joined, they read
        // back as themselves.
        let joined = self
            .members
            .iter()
            .map(|m| m.raw)
            .collect::<Vec<_>>()
            .join(",");
        let values = || std::iter::once(joined.as_bytes());
        let plan = plan(values(), edits);
        let mut out = String::with_capacity(plan.len);
        write(values(), edits, &plan, &mut out);
        (!out.is_empty()).then_some(out)
    }
}

/// One list-member as read from the headers: valid, or dropped as invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Valid(Member<'a>),
    /// An invalid member, or a header value that is not UTF-8.
    Invalid,
}

/// Every list-member of every `baggage` header value, in order, read in
/// place. Not limited: the limits bound what is forwarded ([`plan`]), not
/// what is read, so a member is found wherever it stands.
pub fn members<'a, I: IntoIterator<Item = &'a [u8]>>(values: I) -> Members<'a, I::IntoIter> {
    Members {
        values: values.into_iter(),
        text: "",
        items: ValueItems::EMPTY,
    }
}

/// The iterator of [`members`]: one header value at a time, one
/// comma-separated item at a time, with no intermediate list.
pub struct Members<'a, I> {
    values: I,
    /// The header value being read, and its items.
    text: &'a str,
    items: ValueItems<'a>,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Members<'a, I> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        loop {
            let Some(item) = self.items.next() else {
                let value = self.values.next()?;
                let Ok(text) = std::str::from_utf8(value) else {
                    self.items = ValueItems::EMPTY;
                    return Some(Item::Invalid);
                };
                self.text = text;
                self.items = ValueItems::new(text.as_bytes());
                continue;
            };
            let text = self.text;
            return Some(match item {
                Scanned::Valid { key, value, raw } => {
                    // The ranges hold ASCII only, so they are on char boundaries.
                    match (
                        text.get(key.0..key.1),
                        text.get(value.0..value.1),
                        text.get(raw.0..raw.1),
                    ) {
                        (Some(key), Some(value), Some(raw)) => {
                            Item::Valid(Member { key, value, raw })
                        }
                        _ => Item::Invalid,
                    }
                }
                Scanned::Empty | Scanned::Invalid => Item::Invalid,
            });
        }
    }
}

/// The first valid member with this key, wherever it stands.
pub fn find<'a, I>(items: I, key: &str) -> Option<Member<'a>>
where
    I: IntoIterator<Item = Item<'a>>,
{
    items.into_iter().find_map(|i| match i {
        Item::Valid(m) if m.key == key => Some(m),
        _ => None,
    })
}

/// What an edit will keep: computed by [`plan`], written by [`write`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EditPlan {
    /// Members dropped: invalid, or past the limits.
    pub dropped: usize,
    /// Length in bytes of the edited header (0: no member left).
    pub len: usize,
    /// How many plain (not edited) members are kept, from the start.
    plain_kept: usize,
    /// Members whose key an edit names.
    pub touched: usize,
    /// Edits (bit `i` for edit `i < 64`) written as the member they set,
    /// left as it arrived: see [`keep_as_is`].
    as_is: u64,
}

impl EditPlan {
    /// Whether the result is exactly `current`, the one header value the
    /// members were read from, without writing it: nothing dropped, edited
    /// or added, and the members (joined by commas) make up its every byte.
    pub fn keeps(&self, current: &[u8], edits: &[(&str, Option<&str>)]) -> bool {
        self.dropped == 0
            && self.touched == 0
            && edits.iter().all(|(_, v)| v.is_none())
            && self.len == current.len()
    }
}

/// Where the edited header is written: a string, or a comparison with the
/// text it would replace (so an unchanged header costs no allocation).
pub trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

/// Compares what is written with `expected`, without storing it.
pub struct Compare<'e> {
    rest: &'e [u8],
    equal: bool,
}

impl<'e> Compare<'e> {
    pub fn new(expected: &'e [u8]) -> Self {
        Compare {
            rest: expected,
            equal: true,
        }
    }

    /// Whether everything written equals the whole expected text.
    pub fn equal(&self) -> bool {
        self.equal && self.rest.is_empty()
    }
}

impl Sink for Compare<'_> {
    fn put(&mut self, s: &str) {
        if !self.equal {
            return;
        }
        match self.rest.strip_prefix(s.as_bytes()) {
            Some(r) => self.rest = r,
            None => self.equal = false,
        }
    }
}

/// Which edits are written already: bits for the usual one or two edits,
/// a list only for more than 64.
enum Placed {
    Bits(u64),
    List(Vec<bool>),
}

impl Placed {
    fn new(n: usize) -> Placed {
        if n <= 64 {
            Placed::Bits(0)
        } else {
            Placed::List(vec![false; n])
        }
    }

    /// True the first time edit `i` is asked for, false after.
    fn first(&mut self, i: usize) -> bool {
        match self {
            Placed::Bits(bits) => {
                let bit = 1u64 << (i % 64);
                let first = *bits & bit == 0;
                *bits |= bit;
                first
            }
            Placed::List(list) => match list.get_mut(i) {
                Some(p) => !std::mem::replace(p, true),
                None => false,
            },
        }
    }
}

/// A list-member as an edit reads it: its key and where its text is,
/// without building a [`Member`].
enum Raw<'a> {
    Invalid,
    Valid {
        key: &'a [u8],
        /// The member's whole text (surrounding OWS trimmed): ASCII.
        raw: &'a [u8],
    },
}

/// Calls `f` on every list-member of every header value, in order (a value
/// that is not UTF-8 is one invalid member); what [`members`] yields, read
/// with no iterator state in between.
fn for_each_raw<'a, I: IntoIterator<Item = &'a [u8]>>(values: I, mut f: impl FnMut(Raw<'a>)) {
    for b in values {
        // The usual header is ASCII, which is checked much faster than UTF-8.
        if !b.is_ascii() && std::str::from_utf8(b).is_err() {
            f(Raw::Invalid);
            continue;
        }
        for item in ValueItems::new(b) {
            match item {
                Scanned::Empty | Scanned::Invalid => f(Raw::Invalid),
                Scanned::Valid { key, raw, .. } => f(Raw::Valid {
                    key: b.get(key.0..key.1).unwrap_or_default(),
                    raw: b.get(raw.0..raw.1).unwrap_or_default(),
                }),
            }
        }
    }
}

/// Plans the baggage that results from `edits` to the members of the
/// header `values`: each `(key, Some(v))` sets `key=v` in the place of the
/// first member with that key (else appended) and removes the others;
/// `(key, None)` removes the key. Invalid members are dropped. Plain
/// members are dropped from the end, never an edited one, until the result
/// fits [`MAX_MEMBERS`] and [`MAX_BYTES`].
pub fn plan<'a, I>(values: I, edits: &[(&str, Option<&str>)]) -> EditPlan
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let set_count = edits.iter().filter(|(_, v)| v.is_some()).count();
    let set_bytes: usize = edits
        .iter()
        .filter_map(|(k, v)| v.map(|v| k.len() + 1 + v.len()))
        .sum();
    let (mut invalid, mut plain_total, mut plain_kept, mut touched) =
        (0usize, 0usize, 0usize, 0usize);
    let (mut count, mut bytes) = (set_count, set_bytes + set_count.saturating_sub(1));
    let mut full = false;
    for_each_raw(values, |item| {
        let Raw::Valid { key, raw, .. } = item else {
            invalid += 1;
            return;
        };
        if edits.iter().any(|(k, _)| k.as_bytes() == key) {
            touched += 1;
            return;
        }
        plain_total += 1;
        // A comma joins each member to the one before it.
        let added = raw.len() + usize::from(count > 0);
        if !full && count < MAX_MEMBERS && bytes + added <= MAX_BYTES {
            count += 1;
            bytes += added;
            plain_kept += 1;
        } else {
            full = true;
        }
    });
    EditPlan {
        dropped: invalid + (plain_total - plain_kept),
        len: bytes,
        plain_kept,
        touched,
        as_is: 0,
    }
}

/// Amends `plan` (made by [`plan`]) so that the edit setting `key=v`,
/// where `first` is the first valid member with that key in the same
/// header values and already has the value `v` (as written or
/// percent-decoded), keeps that member exactly as it arrived, its
/// properties included (`lane=gray;p=x` stays so), when the longer result
/// still fits [`MAX_BYTES`]. No second pass over the header: the caller
/// found `first` already (a hop reads its tag before it edits).
pub fn keep_as_is(first: &Member<'_>, edits: &[(&str, Option<&str>)], plan: &mut EditPlan) {
    let Some(i) = edits.iter().position(|(k, _)| *k == first.key) else {
        return;
    };
    let Some((k, Some(v))) = edits.get(i) else {
        return;
    };
    let same = first.value == *v || first.decoded().is_some_and(|d| d == *v);
    let extra = first.raw.len().saturating_sub(k.len() + 1 + v.len());
    if i < 64 && same && plan.len + extra <= MAX_BYTES {
        plan.len += extra;
        plan.as_is |= 1 << i;
    }
}

/// Writes what [`plan`] planned for the same `values` and `edits`.
pub fn write<'a, I, S>(values: I, edits: &[(&str, Option<&str>)], plan: &EditPlan, sink: &mut S)
where
    I: IntoIterator<Item = &'a [u8]>,
    S: Sink + ?Sized,
{
    let mut placed = Placed::new(edits.len());
    let mut plain_seen = 0usize;
    let mut first = true;
    let mut put = |sink: &mut S, parts: &[&str]| {
        if !first {
            sink.put(",");
        }
        first = false;
        for p in parts {
            sink.put(p);
        }
    };
    for_each_raw(values, |item| {
        let Raw::Valid { key, raw } = item else {
            return;
        };
        match edits.iter().position(|(k, _)| k.as_bytes() == key) {
            None => {
                plain_seen += 1;
                if plain_seen <= plan.plain_kept {
                    // A valid member is ASCII.
                    put(sink, &[std::str::from_utf8(raw).unwrap_or_default()]);
                }
            }
            Some(i) => {
                if placed.first(i) {
                    if i < 64 && plan.as_is & (1 << i) != 0 {
                        put(sink, &[std::str::from_utf8(raw).unwrap_or_default()]);
                    } else if let Some((k, Some(v))) = edits.get(i) {
                        put(sink, &[k, "=", v]);
                    }
                }
            }
        }
    });
    for (i, (k, v)) in edits.iter().enumerate() {
        if let (true, Some(v)) = (placed.first(i), v) {
            put(sink, &[k, "=", v]);
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `input`; `plus_is_space` for query strings
/// (`application/x-www-form-urlencoded`). `None` on a broken `%` escape or
/// a result that is not UTF-8. Borrows when there is nothing to decode.
pub fn percent_decode(input: &[u8], plus_is_space: bool) -> Option<Cow<'_, str>> {
    if !input
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return std::str::from_utf8(input).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut it = input.iter();
    while let Some(&b) = it.next() {
        match b {
            b'%' => {
                let hi = hex(*it.next()?)?;
                let lo = hex(*it.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Baggage<'_> {
        Baggage::parse([s.as_bytes()])
    }

    fn keys(b: &Baggage<'_>) -> Vec<String> {
        b.members.iter().map(|m| m.key.to_string()).collect()
    }

    // Examples from the W3C Baggage specification, "Examples of HTTP headers".
    #[test]
    fn w3c_examples() {
        let b = parse("key1=value1,key2=value2");
        assert_eq!(keys(&b), ["key1", "key2"]);
        let b = parse("key1 = value1, key2 = value2");
        assert_eq!(b.get("key2").unwrap().value, "value2");
        let b = parse("key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue");
        assert_eq!(keys(&b), ["key1", "key2", "key3"]);
        assert_eq!(
            b.get("key1").unwrap().raw,
            "key1=value1;property1;property2"
        );
        assert_eq!(
            b.get("key3").unwrap().raw,
            "key3=value3; propertyKey=propertyValue"
        );
        assert_eq!(b.dropped, 0);
        // Percent-encoded value: "value 1" after decoding.
        let b = parse("key1=value%201");
        assert_eq!(b.get("key1").unwrap().decoded_value().unwrap(), "value 1");
        // The value is kept byte for byte on re-serialisation.
        assert_eq!(
            b.with_member("lane", Some("gray")).unwrap(),
            "key1=value%201,lane=gray"
        );
    }

    // Cases from OpenTelemetry's W3C baggage propagator tests (Go and Java
    // implementations): invalid members dropped, valid ones kept.
    #[test]
    fn otel_propagator_cases() {
        let b = parse("key1=val1,key2=val2");
        assert_eq!(keys(&b), ["key1", "key2"]);
        // Invalid key (contains a separator) is dropped.
        let b = parse("key1=val1,ke(y2=val2,key3=val3");
        assert_eq!(keys(&b), ["key1", "key3"]);
        assert_eq!(b.dropped, 1);
        // Invalid value character (space inside, quote, backslash).
        let b = parse("key1=va l1,key2=val\"2,key3=va\\l3,key4=ok");
        assert_eq!(keys(&b), ["key4"]);
        assert_eq!(b.dropped, 3);
        // Member without '=' is invalid.
        let b = parse("key1,key2=val2");
        assert_eq!(keys(&b), ["key2"]);
        // Properties with and without values.
        let b = parse("key1=val1;prop1=1;prop2");
        assert_eq!(b.get("key1").unwrap().raw, "key1=val1;prop1=1;prop2");
        // Invalid property invalidates its member.
        let b = parse("key1=val1;pro p=1,key2=val2");
        assert_eq!(keys(&b), ["key2"]);
        // Empty value is valid.
        let b = parse("key1=,key2=val2");
        assert_eq!(keys(&b), ["key1", "key2"]);
    }

    fn is_tchar(b: u8) -> bool {
        class(b) & TCHAR != 0
    }

    fn is_baggage_octet(b: u8) -> bool {
        class(b) & OCTET != 0
    }

    /// The grammar written the plain way (split, trim, match), to check the
    /// single-pass scanner against.
    fn reference_members<'a>(values: &[&'a [u8]]) -> Vec<Item<'a>> {
        const OWS: [char; 2] = [' ', '\t'];
        fn member(text: &str) -> Option<Member<'_>> {
            let raw = text.trim_matches(OWS);
            let (key, rest) = raw.split_at(raw.find(|c: char| !is_tchar_char(c))?);
            if key.is_empty() {
                return None;
            }
            let rest = rest.trim_start_matches(OWS);
            let rest = rest.strip_prefix('=')?;
            let rest = rest.trim_start_matches(OWS);
            let vlen = rest
                .find(|c: char| !c.is_ascii() || !is_baggage_octet(c as u8))
                .unwrap_or(rest.len());
            let value = &rest[..vlen];
            for prop in rest[vlen..].split(';').skip(1) {
                let prop = prop.trim_matches(OWS);
                let (k, v) = prop.split_once('=').unwrap_or((prop, ""));
                let k = k.trim_end_matches(OWS);
                let v = v.trim_start_matches(OWS);
                if k.is_empty() || !k.bytes().all(is_tchar) || !v.bytes().all(is_baggage_octet) {
                    return None;
                }
            }
            let after = rest[vlen..].trim_start_matches(OWS);
            if !after.is_empty() && !after.starts_with(';') {
                return None;
            }
            Some(Member { key, value, raw })
        }
        fn is_tchar_char(c: char) -> bool {
            c.is_ascii() && is_tchar(c as u8)
        }
        let mut out = Vec::new();
        for v in values {
            let Ok(text) = std::str::from_utf8(v) else {
                out.push(Item::Invalid);
                continue;
            };
            for item in text.split(',') {
                if item.bytes().all(is_ows) {
                    continue;
                }
                out.push(member(item).map_or(Item::Invalid, Item::Valid));
            }
        }
        out
    }

    #[test]
    fn scanner_agrees_with_the_plain_reading() {
        const ALPHABET: &[u8] = b"ab=;, \t%2\"\xc3\xa9\xffk1=";
        let mut next = crate::engine::tests::rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let split = (next() % (len as u64 + 1)) as usize;
            let values = [&text[..split], &text[split..]];
            let got: Vec<Item<'_>> = members(values).collect();
            assert_eq!(
                got,
                reference_members(&values),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            // What edits read is the same list.
            let mut raw = Vec::new();
            for_each_raw(values, |r| {
                raw.push(match r {
                    Raw::Invalid => None,
                    Raw::Valid { key, raw } => Some((key, raw)),
                });
            });
            let want: Vec<_> = got
                .iter()
                .map(|i| match i {
                    Item::Invalid => None,
                    Item::Valid(m) => Some((m.key.as_bytes(), m.raw.as_bytes())),
                })
                .collect();
            assert_eq!(raw, want, "{:?}", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn several_headers_form_one_list() {
        let b = Baggage::parse([b"a=1".as_slice(), b"b=2, c=3".as_slice()]);
        assert_eq!(keys(&b), ["a", "b", "c"]);
    }

    #[test]
    fn empty_members_and_non_utf8() {
        let b = Baggage::parse([b"a=1,, ,b=2".as_slice(), b"\xff\xfe=1".as_slice()]);
        assert_eq!(keys(&b), ["a", "b"]);
        assert_eq!(b.dropped, 1);
    }

    #[test]
    fn edit_replaces_in_place_and_dedups() {
        let b = parse("userId=alice;prop=1,lane=blue,x=1,lane=red");
        assert_eq!(
            b.with_member("lane", Some("gray")).unwrap(),
            "userId=alice;prop=1,lane=gray,x=1"
        );
        assert_eq!(
            b.with_member("lane", None).unwrap(),
            "userId=alice;prop=1,x=1"
        );
        assert_eq!(parse("lane=gray").with_member("lane", None), None);
        assert_eq!(parse("").with_member("lane", Some("g")).unwrap(), "lane=g");
    }

    fn edited(header: &str, edits: &[(&str, Option<&str>)], as_is: bool) -> String {
        let values = || std::iter::once(header.as_bytes());
        let mut p = plan(values(), edits);
        if as_is {
            let first = find(members(values()), edits[0].0).unwrap();
            keep_as_is(&first, edits, &mut p);
        }
        let mut out = String::new();
        write(values(), edits, &p, &mut out);
        assert_eq!(out.len(), p.len, "{header}: planned length");
        out
    }

    #[test]
    fn as_is_keeps_a_member_set_to_its_own_value() {
        let lane = [("lane", Some("gray"))];
        assert_eq!(
            edited("lane=gray;p=x,a=1", &lane, true),
            "lane=gray;p=x,a=1"
        );
        assert_eq!(edited("lane=gray;p=x,a=1", &lane, false), "lane=gray,a=1");
        assert_eq!(
            edited("a=1,lane=gr%61y;p", &lane, true),
            "a=1,lane=gr%61y;p"
        );
        assert_eq!(edited("lane=blue;p=x,a=1", &lane, true), "lane=gray,a=1");
        assert_eq!(
            edited("lane=gray;p,lane=gray;q", &lane, true),
            "lane=gray;p"
        );
        // Properties that would break the byte limit are dropped, not the member.
        let big = format!("a={},lane=gray;p={}", "x".repeat(4000), "y".repeat(4190));
        let out = edited(&big, &lane, true);
        assert!(
            out.ends_with(",lane=gray") && out.len() <= MAX_BYTES,
            "{}",
            out.len()
        );
    }

    #[test]
    fn lane_key_is_case_sensitive_and_properties_are_not_members() {
        let b = parse("LANE=gray,foo=bar;lane=gray");
        assert!(b.get("lane").is_none());
    }

    #[test]
    fn limits_are_enforced() {
        let many: Vec<String> = (0..1000).map(|i| format!("k{i}=v")).collect();
        let text = many.join(",");
        let b = parse(&text);
        assert_eq!(b.members.len(), MAX_MEMBERS);
        assert_eq!(b.dropped, 1000 - MAX_MEMBERS);
        let out = b.with_member("lane", Some("gray")).unwrap();
        assert_eq!(out.split(',').count(), MAX_MEMBERS);
        assert!(out.ends_with(",lane=gray"));

        let big = format!("a={},b=1", "x".repeat(MAX_BYTES));
        let b = parse(&big);
        assert_eq!(keys(&b), ["b"]);
        let near = format!("a={}", "x".repeat(MAX_BYTES - 2));
        let b = parse(&near);
        assert_eq!(b.members.len(), 1);
        let out = b.with_member("lane", Some("gray")).unwrap();
        assert_eq!(out, "lane=gray");
        assert!(out.len() <= MAX_BYTES);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b", false).unwrap(), "a b");
        assert_eq!(percent_decode(b"a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode(b"a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode(b"%zz", false), None);
        assert_eq!(percent_decode(b"%4", false), None);
        assert_eq!(percent_decode(b"%ff", false), None);
        assert_eq!(percent_decode(b"%E4%B8%AD", false).unwrap(), "中");
    }
}
