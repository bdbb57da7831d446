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

/// Most members a baggage header may carry (SPEC §8).
pub const MAX_MEMBERS: usize = 180;
/// Most bytes a baggage header may carry (SPEC §8).
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

impl Member<'_> {
    /// The percent-decoded value, or `None` when the encoding is invalid or
    /// does not decode to UTF-8.
    pub fn decoded_value(&self) -> Option<String> {
        percent_decode(self.value.as_bytes(), false).map(Cow::into_owned)
    }
}

/// A parsed baggage header: its valid members in order, and what was dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Baggage<'a> {
    pub members: Vec<Member<'a>>,
    /// Non-empty list-members that were invalid, or past the member/byte limit.
    pub dropped: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~%".contains(&b)
}

fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_value(s: &str) -> bool {
    s.bytes().all(is_baggage_octet)
}

/// Validates one `key [OWS "=" OWS value]` pair; `value_required` for members.
fn split_pair(s: &str, value_required: bool) -> Option<(&str, &str)> {
    match s.split_once('=') {
        Some((k, v)) => {
            let (k, v) = (trim_ows(k), trim_ows(v));
            (is_token(k) && is_value(v)).then_some((k, v))
        }
        None => {
            let k = trim_ows(s);
            (!value_required && is_token(k)).then_some((k, ""))
        }
    }
}

/// Parses one list-member; `None` if it is not valid.
fn parse_member(text: &str) -> Option<Member<'_>> {
    let raw = trim_ows(text);
    let mut parts = raw.split(';');
    let (key, value) = split_pair(parts.next()?, true)?;
    for prop in parts {
        split_pair(prop, false)?;
    }
    Some(Member { key, value, raw })
}

impl<'a> Baggage<'a> {
    /// Parses every `baggage` header value given, in order, as one list.
    /// Invalid members are dropped (and counted); empty list-members (`a=1,,b=2`)
    /// are skipped silently. Values that are not UTF-8 are dropped whole.
    pub fn parse<I: IntoIterator<Item = &'a [u8]>>(values: I) -> Baggage<'a> {
        let mut out = Baggage::default();
        let mut bytes = 0usize;
        for value in values {
            let Ok(text) = std::str::from_utf8(value) else {
                out.dropped += 1;
                continue;
            };
            for item in text.split(',') {
                if item.bytes().all(is_ows) {
                    continue;
                }
                let Some(member) = parse_member(item) else {
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
        let mut kept: Vec<Piece<'_>> = Vec::with_capacity(self.members.len() + edits.len());
        let mut placed = vec![false; edits.len()];
        for m in &self.members {
            match edits.iter().position(|(k, _)| *k == m.key) {
                None => kept.push(Piece::Raw(m.raw)),
                Some(i) => {
                    let first = placed.get(i).is_some_and(|p| !p);
                    if let (true, Some((k, Some(v)))) = (first, edits.get(i)) {
                        kept.push(Piece::Edit(k, v));
                    }
                    if let Some(p) = placed.get_mut(i) {
                        *p = true;
                    }
                }
            }
        }
        for ((k, v), done) in edits.iter().zip(&placed) {
            if let (false, Some(v)) = (*done, v) {
                kept.push(Piece::Edit(k, v));
            }
        }
        // Enforce the limits, dropping plain members from the end first.
        while kept.len() > MAX_MEMBERS || serialized_len(&kept) > MAX_BYTES {
            match kept.iter().rposition(|p| matches!(p, Piece::Raw(_))) {
                Some(i) => {
                    kept.remove(i);
                }
                None => break,
            }
        }
        if kept.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(serialized_len(&kept));
        for (i, p) in kept.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match p {
                Piece::Raw(r) => out.push_str(r),
                Piece::Edit(k, v) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(v);
                }
            }
        }
        Some(out)
    }
}

enum Piece<'a> {
    Raw(&'a str),
    Edit(&'a str, &'a str),
}

fn serialized_len(pieces: &[Piece<'_>]) -> usize {
    let commas = pieces.len().saturating_sub(1);
    commas
        + pieces
            .iter()
            .map(|p| match p {
                Piece::Raw(r) => r.len(),
                Piece::Edit(k, v) => k.len() + 1 + v.len(),
            })
            .sum::<usize>()
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
