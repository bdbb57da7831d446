//! Attributes of one request (docs/configuration.md "Conditions"), read in place from the
//! header values: cookies, query parameters and baggage members are scanned
//! on the bytes when asked for, without building lists.

use super::Request;
use crate::baggage::{self, percent_decode, Item, Member};
use std::borrow::Cow;
use std::cell::Cell;

/// Longest attribute value that can match; longer ones simply do not (docs/decision.md "Behaviour details").
pub const MAX_VALUE_LEN: usize = 8192;

/// A request as the engine sees it.
pub struct View<'a, R: Request + ?Sized> {
    req: &'a R,
    /// The first baggage member with the tag key, once looked up
    /// ([`View::tag_member`]).
    tag: Cell<Option<Option<Member<'a>>>>,
}

impl<'a, R: Request + ?Sized> View<'a, R> {
    pub fn new(req: &'a R) -> Self {
        View {
            req,
            tag: Cell::new(None),
        }
    }

    /// The first valid baggage member with key `key` (the config's
    /// `baggageKey`: a view serves one configuration), wherever it stands;
    /// read once, so that the decision and the edit share one scan.
    pub fn tag_member(&self, key: &str) -> Option<Member<'a>> {
        if let Some(found) = self.tag.get() {
            return found;
        }
        let found = baggage::find(self.baggage(), key);
        self.tag.set(Some(found));
        found
    }

    pub fn request(&self) -> &'a R {
        self.req
    }

    /// Values of a header, in order.
    pub fn header<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n, R> {
        self.req.header(name)
    }

    /// First value of a header.
    pub fn first_header(&self, name: &str) -> Option<&'a [u8]> {
        self.req.header(name).next()
    }

    /// The path without query string or fragment.
    pub fn path(&self) -> Option<&'a [u8]> {
        let p = self.first_header(":path")?;
        let end = p
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(p.len());
        p.get(..end)
    }

    /// The `:authority` host without port (IPv6 literals keep their brackets).
    pub fn host(&self) -> Option<&'a [u8]> {
        let a = self.first_header(":authority")?;
        let end = if a.first() == Some(&b'[') {
            a.iter().position(|&b| b == b']').map_or(a.len(), |i| i + 1)
        } else {
            a.iter().rposition(|&b| b == b':').unwrap_or(a.len())
        };
        a.get(..end)
    }

    /// Every `name=value` pair of every `cookie` header, in order.
    pub fn cookies(&self) -> Cookies<'a, impl Iterator<Item = &'a [u8]> + use<'a, R>> {
        Cookies {
            pieces: Pieces {
                headers: self.req.header("cookie"),
                rest: None,
            },
        }
    }

    /// Values of a cookie, in order: those [`View::cookies`] gives for
    /// `name`, found without taking apart the pairs of other names.
    pub fn cookie<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        // A name that no trimmed pair name can equal matches nothing (the
        // scan below relies on the name holding no `=` or `;`).
        let plausible = !name.is_empty()
            && !name.bytes().any(|b| b == b'=' || b == b';')
            && name.as_bytes().trim_ascii().len() == name.len();
        CookieValues {
            pieces: Pieces {
                headers: self
                    .req
                    .header("cookie")
                    .take(if plausible { usize::MAX } else { 0 }),
                rest: None,
            },
            name: name.as_bytes(),
        }
    }

    /// The raw (still encoded) `name=value` pairs of the query string.
    fn raw_query(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a, R> {
        let q = self
            .first_header(":path")
            .and_then(|p| {
                let start = p.iter().position(|&b| b == b'?')? + 1;
                p.get(start..)
            })
            .unwrap_or_default();
        let q = q.split(|&b| b == b'#').next().unwrap_or_default();
        q.split(|&b| b == b'&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.iter().position(|&b| b == b'=') {
                Some(i) => (
                    kv.get(..i).unwrap_or_default(),
                    kv.get(i + 1..).unwrap_or_default(),
                ),
                None => (kv, &b""[..]),
            })
    }

    /// Values of a query parameter, decoded, in order. Names are compared
    /// decoded, without allocating; a value is copied only when encoded.
    pub fn query<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Cow<'a, str>> + 's {
        self.raw_query()
            .filter(move |(k, _)| decodes_to(k, name.as_bytes()))
            .filter_map(|(_, v)| percent_decode(v, true))
    }

    /// Every list-member of the incoming baggage (all `baggage` headers), read
    /// in place and not limited: a member counts wherever it stands.
    pub fn baggage(&self) -> impl Iterator<Item = Item<'a>> + use<'a, R> {
        baggage::members(self.req.header("baggage"))
    }

    /// Decoded values of the baggage members with this key, in order.
    pub fn baggage_values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = Cow<'a, str>> + 's {
        self.baggage().filter_map(move |i| match i {
            Item::Valid(m) if m.key == key => m.decoded(),
            _ => None,
        })
    }
}

/// The `;`-separated pieces of every `cookie` header, in order.
struct Pieces<'a, I> {
    headers: I,
    /// What is left of the header being read.
    rest: Option<&'a [u8]>,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Pieces<'a, I> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = match self.rest {
            Some(r) => r,
            None => self.headers.next()?,
        };
        let (piece, after) = match rest.iter().position(|&b| b == b';') {
            Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..)),
            None => (rest, None),
        };
        self.rest = after;
        Some(piece)
    }
}

/// A cookie value without its surrounding double quotes, if it has both.
fn unquote(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value)
}

/// The pairs of `cookie` headers: each piece split at its first `=`, names
/// and values trimmed, values unquoted; pieces without `=` are skipped.
pub struct Cookies<'a, I> {
    pieces: Pieces<'a, I>,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Cookies<'a, I> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let pair = self.pieces.next()?;
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let name = pair.get(..eq).unwrap_or_default().trim_ascii();
            let value = pair.get(eq + 1..).unwrap_or_default().trim_ascii();
            return Some((name, unquote(value)));
        }
    }
}

/// The values of one cookie name: each piece is tested for the name before
/// anything else is done with it.
struct CookieValues<'a, 'n, I> {
    pieces: Pieces<'a, I>,
    name: &'n [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for CookieValues<'a, '_, I> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let pair = self.pieces.next()?;
            let Some(tail) = pair.trim_ascii_start().strip_prefix(self.name) else {
                continue;
            };
            let Some(value) = tail.trim_ascii_start().strip_prefix(b"=") else {
                continue;
            };
            return Some(unquote(value.trim_ascii()));
        }
    }
}

/// Whether `raw` percent-decodes (`+` is a space) to exactly `want`.
fn decodes_to(raw: &[u8], want: &[u8]) -> bool {
    let mut want = want.iter();
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        let c = match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    it.next().and_then(|&h| hex(h)),
                    it.next().and_then(|&l| hex(l)),
                ) else {
                    return false;
                };
                hi << 4 | lo
            }
            b'+' => b' ',
            b => b,
        };
        if want.next() != Some(&c) {
            return false;
        }
    }
    want.next().is_none()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
