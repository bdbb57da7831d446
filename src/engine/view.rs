//! Attributes of one request (SPEC §3 "Attributes"), extracted lazily and
//! at most once each: cookies, query and baggage are parsed on first use.

use super::Request;
use crate::baggage::{percent_decode, Baggage};
use std::borrow::Cow;
use std::cell::OnceCell;

/// Longest attribute value that can match; longer ones simply do not (SPEC §8).
pub const MAX_VALUE_LEN: usize = 8192;

/// A request as the engine sees it.
pub struct View<'a, R: Request + ?Sized> {
    req: &'a R,
    cookies: OnceCell<Vec<(&'a [u8], &'a [u8])>>,
    query: OnceCell<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
    baggage: OnceCell<Baggage<'a>>,
}

impl<'a, R: Request + ?Sized> View<'a, R> {
    pub fn new(req: &'a R) -> Self {
        View {
            req,
            cookies: OnceCell::new(),
            query: OnceCell::new(),
            baggage: OnceCell::new(),
        }
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

    /// Every `name=value` pair of every `cookie` header.
    pub fn cookies(&self) -> &[(&'a [u8], &'a [u8])] {
        self.cookies.get_or_init(|| {
            let mut out = Vec::new();
            for header in self.req.header("cookie") {
                for pair in header.split(|&b| b == b';') {
                    let pair = trim(pair);
                    let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                        continue;
                    };
                    let (Some(name), Some(value)) = (pair.get(..eq), pair.get(eq + 1..)) else {
                        continue;
                    };
                    let value = trim(value);
                    let value = value
                        .strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .unwrap_or(value);
                    out.push((trim(name), value));
                }
            }
            out
        })
    }

    /// Values of a cookie, in order.
    pub fn cookie<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.cookies()
            .iter()
            .filter(move |(n, _)| *n == name.as_bytes())
            .map(|(_, v)| *v)
    }

    /// Every query parameter, percent-decoded (`+` is a space). Pairs that do
    /// not decode to UTF-8 are left out.
    pub fn query_pairs(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        self.query.get_or_init(|| {
            let Some(p) = self.first_header(":path") else {
                return Vec::new();
            };
            let Some(q) = p
                .iter()
                .position(|&b| b == b'?')
                .and_then(|i| p.get(i + 1..))
            else {
                return Vec::new();
            };
            let q = q.split(|&b| b == b'#').next().unwrap_or_default();
            q.split(|&b| b == b'&')
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = match kv.iter().position(|&b| b == b'=') {
                        Some(i) => (kv.get(..i)?, kv.get(i + 1..)?),
                        None => (kv, &b""[..]),
                    };
                    Some((percent_decode(k, true)?, percent_decode(v, true)?))
                })
                .collect()
        })
    }

    /// Values of a query parameter, in order.
    pub fn query<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.query_pairs()
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_bytes())
    }

    /// The incoming baggage, every `baggage` header as one list.
    pub fn baggage(&self) -> &Baggage<'a> {
        self.baggage
            .get_or_init(|| Baggage::parse(self.req.header("baggage")))
    }

    /// Decoded value of the first baggage member with this key.
    pub fn baggage_value(&self, key: &str) -> Option<String> {
        self.baggage().get(key)?.decoded_value()
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}
