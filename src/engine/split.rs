//! Traffic splits: the bucket of a key (docs/configuration.md "Split") and the split decision.

use super::rules::OnMissingKey;
use super::rules::{KeySource, Split};
use super::view::View;
use super::Request;
use std::borrow::Cow;
use xxhash_rust::xxh64::Xxh64;

/// Number of buckets: a bucket is `0..BUCKETS`, one per 0.01 %.
pub const BUCKETS: u64 = 10_000;

/// `xxh64(salt + ":" + key, seed 0) % 10000`: fixed for all versions.
pub fn bucket(salt: &str, key: &[u8]) -> u16 {
    let mut h = Xxh64::new(0);
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(key);
    // The remainder is below 10 000, so it fits.
    u16::try_from(h.digest() % BUCKETS).unwrap_or(0)
}

/// A bucket drawn at random.
pub fn random_bucket(rng: &mut dyn FnMut() -> u64) -> u16 {
    u16::try_from(rng() % BUCKETS).unwrap_or(0)
}

/// A cookie value drawn for an anonymous client (128 random bits, hex).
pub fn random_id(rng: &mut dyn FnMut() -> u64) -> String {
    format!("{:016x}{:016x}", rng(), rng())
}

/// How a split treated one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitResult {
    /// Keyed (or assigned) bucket; `admitted` says whether it is in range.
    Keyed { bucket: u16, admitted: bool },
    /// No key: a random bucket was drawn.
    Random { bucket: u16, admitted: bool },
    /// No key and `onMissingKey: exclude`.
    Excluded,
}

impl SplitResult {
    pub fn admitted(&self) -> bool {
        match self {
            SplitResult::Keyed { admitted, .. } | SplitResult::Random { admitted, .. } => *admitted,
            SplitResult::Excluded => false,
        }
    }

    pub fn bucket(&self) -> Option<u16> {
        match self {
            SplitResult::Keyed { bucket, .. } | SplitResult::Random { bucket, .. } => Some(*bucket),
            SplitResult::Excluded => None,
        }
    }
}

/// A cookie id drawn for this request, to be set on the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedCookie {
    pub name: String,
    pub value: String,
    pub max_age: u64,
}

impl AssignedCookie {
    /// The `Set-Cookie` header value.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            self.name, self.value, self.max_age
        )
    }
}

/// The key value of a split: first value of its source; empty counts as absent.
fn key_value<'v, R: Request + ?Sized>(
    view: &'v View<'_, R>,
    source: &'v KeySource,
) -> Option<Cow<'v, [u8]>> {
    let v = match source {
        KeySource::Header(h) => view.first_header(h).map(Cow::Borrowed),
        KeySource::Cookie(c) => view.cookie(c).next().map(Cow::Borrowed),
        KeySource::Query(q) => view.query(q).next().map(|v| match v {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }),
    };
    v.filter(|v| !v.is_empty())
}

/// Applies a split to a request. An assigned cookie id is drawn once per
/// request and cookie name, and reused by every lane keyed on that cookie.
pub fn apply<R: Request + ?Sized>(
    split: &Split,
    view: &View<'_, R>,
    rng: &mut dyn FnMut() -> u64,
    assigned: &mut Vec<AssignedCookie>,
) -> SplitResult {
    let Some(key) = &split.key else {
        let bucket = random_bucket(rng);
        return SplitResult::Random {
            bucket,
            admitted: split.admits(bucket),
        };
    };
    if let Some(k) = key_value(view, &key.source) {
        let bucket = bucket(&split.salt, &k);
        return SplitResult::Keyed {
            bucket,
            admitted: split.admits(bucket),
        };
    }
    if let (Some(max_age), KeySource::Cookie(name)) = (key.assign, &key.source) {
        let bucket = match assigned.iter().find(|a| a.name == *name) {
            Some(a) => bucket(&split.salt, a.value.as_bytes()),
            None => {
                let value = random_id(rng);
                let b = bucket(&split.salt, value.as_bytes());
                assigned.push(AssignedCookie {
                    name: name.clone(),
                    value,
                    max_age,
                });
                b
            }
        };
        return SplitResult::Keyed {
            bucket,
            admitted: split.admits(bucket),
        };
    }
    match split.on_missing {
        OnMissingKey::Random => {
            let bucket = random_bucket(rng);
            SplitResult::Random {
                bucket,
                admitted: split.admits(bucket),
            }
        }
        OnMissingKey::Exclude => SplitResult::Excluded,
    }
}
