//! Inputs and checks of graylane's fuzz targets. The checks live in
//! `checks.rs`, which the native test `tests/fuzz_regressions.rs` shares.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod checks;

use arbitrary::Arbitrary;
use graylane::engine::HeaderList;

/// Values the fixed configs look for, and tags a client might forge.
const WORDS: &[&str] = &[
    "gray",
    "beta",
    "android",
    "api-v2",
    "vip",
    "writes",
    "tenant",
    "sticky",
    "canary",
    "anon",
    "idx",
    "base",
    "GRAY",
    "gr%61y",
    "pink",
    "cn-shenzhen",
    "CN-SHENZHEN",
    "cn-beijing",
    "1",
    "yes",
    "on",
    "o%6E",
    "true",
    "off",
    "Mozilla/5.0 (Linux; Android 14)",
    "android",
    "api",
    "v2",
    "users",
    "3",
    "4",
    "5",
    "6",
    "-1",
    "four",
    "9223372036854775808",
    "POST",
    "PUT",
    "GET",
    "acme",
    "acme-eu",
    "ACME",
    "globex",
    "alice",
    "user-1",
    "svc-b",
    "svc-c",
    "svc-b-shadow",
    "SVC-B",
    "db.internal",
    "gateway.test",
    "[::1]",
    "a",
    "b",
    "C",
    "",
    "b-gray",
    "b-base",
    "lane-gray",
    "%",
    "%zz",
    "%ff",
    "\u{4e2d}",
    " ",
    ";",
    ",",
    "=",
    "\"",
];

/// Header names the fixed configs read or graylane writes, in several cases.
const NAMES: &[&str] = &[
    "location",
    "user-agent",
    "x-no-canary",
    "x-tier",
    "x-sticky",
    "x-user-id",
    "x-graylane",
    "X-Graylane",
    "X-GRAYLANE",
    "x-graylane-cluster",
    "X-Graylane-Cluster",
    "baggage",
    "Baggage",
    "cookie",
    ":authority",
    ":path",
    ":method",
    "x-idx",
    "host",
    "x-app-id",
];

/// Baggage keys: the lane and shadow keys, in several cases, and others.
const BAG_KEYS: &[&str] = &[
    "lane", "LANE", "Lane", "tenant", "shadow", "lane2", "x", "userId", "l%61ne",
];

/// A value: a known word, any text, any bytes, or a word repeated up to
/// 16 KiB (past the 8 KiB attribute limit).
#[derive(Arbitrary, Debug, Clone)]
pub enum Text {
    Word(u8),
    Raw(String),
    Bytes(Vec<u8>),
    Long(u8, u16),
}

impl Text {
    pub fn bytes(&self) -> Vec<u8> {
        let word = |i: &u8| WORDS[usize::from(*i) % WORDS.len()];
        match self {
            Text::Word(i) => word(i).as_bytes().to_vec(),
            Text::Raw(s) => s.as_bytes().to_vec(),
            Text::Bytes(b) => b.clone(),
            Text::Long(i, n) => {
                let w = if word(i).is_empty() { "x" } else { word(i) };
                w.repeat(usize::from(*n) % 16384 / w.len() + 1).into_bytes()
            }
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Name {
    Known(u8),
    Raw(String),
}

impl Name {
    fn get(&self) -> String {
        match self {
            Name::Known(i) => NAMES[usize::from(*i) % NAMES.len()].to_string(),
            Name::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum BagKey {
    Known(u8),
    Raw(String),
}

/// One baggage list-member, with the spellings W3C allows and some it does not.
#[derive(Arbitrary, Debug, Clone)]
pub struct BagMember {
    pub key: BagKey,
    pub value: Text,
    /// OWS around `=` and around the member.
    pub ows: u8,
    /// Percent-encode every byte of the value.
    pub encode: bool,
    pub props: Vec<(Text, Option<Text>)>,
}

impl BagMember {
    fn write(&self, out: &mut Vec<u8>) {
        let sp = |bit: u8| {
            if self.ows & bit != 0 {
                &b" "[..]
            } else {
                &b""[..]
            }
        };
        out.extend_from_slice(sp(1));
        match &self.key {
            BagKey::Known(i) => {
                out.extend_from_slice(BAG_KEYS[usize::from(*i) % BAG_KEYS.len()].as_bytes())
            }
            BagKey::Raw(s) => out.extend_from_slice(s.as_bytes()),
        }
        out.extend_from_slice(sp(2));
        out.push(b'=');
        out.extend_from_slice(sp(4));
        let value = self.value.bytes();
        if self.encode {
            for b in value {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        } else {
            out.extend_from_slice(&value);
        }
        for (k, v) in &self.props {
            out.extend_from_slice(sp(8));
            out.push(b';');
            out.extend_from_slice(&k.bytes());
            if let Some(v) = v {
                out.push(b'=');
                out.extend_from_slice(&v.bytes());
            }
        }
        out.extend_from_slice(sp(16));
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum BaggageHeader {
    Members(Vec<BagMember>),
    Raw(Text),
}

/// A request, structured so the fuzzer reaches the rules' attributes.
#[derive(Arbitrary, Debug, Clone)]
pub struct DecisionInput {
    pub seed: u64,
    pub method: Option<Text>,
    pub authority: Option<(Text, Option<u16>)>,
    pub path: Vec<Text>,
    pub query: Vec<(Text, Option<Text>)>,
    pub headers: Vec<(Name, Text)>,
    pub cookies: Vec<Vec<(Text, Text)>>,
    pub baggage: Vec<BaggageHeader>,
}

impl DecisionInput {
    /// The request as the filter reads it from Envoy (names lower-cased).
    pub fn request(&self) -> HeaderList {
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(m) = &self.method {
            pairs.push((":method".into(), m.bytes()));
        }
        if let Some((host, port)) = &self.authority {
            let mut a = host.bytes();
            if let Some(p) = port {
                a.extend_from_slice(format!(":{p}").as_bytes());
            }
            pairs.push((":authority".into(), a));
        }
        let mut path = Vec::new();
        for seg in &self.path {
            path.push(b'/');
            path.extend_from_slice(&seg.bytes());
        }
        if path.is_empty() {
            path.push(b'/');
        }
        for (i, (k, v)) in self.query.iter().enumerate() {
            path.push(if i == 0 { b'?' } else { b'&' });
            path.extend_from_slice(&k.bytes());
            if let Some(v) = v {
                path.push(b'=');
                path.extend_from_slice(&v.bytes());
            }
        }
        pairs.push((":path".into(), path));
        for (name, value) in &self.headers {
            pairs.push((name.get(), value.bytes()));
        }
        for header in &self.cookies {
            let mut v = Vec::new();
            for (i, (k, val)) in header.iter().enumerate() {
                if i > 0 {
                    v.extend_from_slice(b"; ");
                }
                v.extend_from_slice(&k.bytes());
                v.push(b'=');
                v.extend_from_slice(&val.bytes());
            }
            pairs.push(("cookie".into(), v));
        }
        for header in &self.baggage {
            let v = match header {
                BaggageHeader::Raw(t) => t.bytes(),
                BaggageHeader::Members(members) => {
                    let mut v = Vec::new();
                    for (i, m) in members.iter().enumerate() {
                        if i > 0 {
                            v.push(b',');
                        }
                        m.write(&mut v);
                    }
                    v
                }
            };
            pairs.push(("baggage".into(), v));
        }
        HeaderList::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }
}

/// A decision input as the JSON that `fuzz/regressions/decision/*.json`
/// holds (values as text when they are UTF-8, else as byte arrays).
pub fn regression_json(req: &HeaderList, seed: u64) -> String {
    let headers: Vec<serde_json::Value> = req
        .0
        .iter()
        .map(|(k, v)| {
            let value = match std::str::from_utf8(v) {
                Ok(s) => serde_json::Value::from(s),
                Err(_) => serde_json::Value::from(v.clone()),
            };
            serde_json::json!([k, value])
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "seed": seed, "headers": headers }))
        .unwrap_or_default()
}
