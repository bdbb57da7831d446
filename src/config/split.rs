//! Splits: the stickiness key and the admitted bucket ranges (docs/configuration.md
//! "Split").

use super::names::{self, HeaderUse};
use super::raw::{RawSplit, RawSplitKey};
use super::{Compiler, ConfigError, ErrorKind, JsonPath, DEFAULT_ASSIGN_MAX_AGE};
use crate::engine::{KeySource, Split, SplitKey, BUCKETS};

impl Compiler {
    pub(super) fn split(&mut self, path: &JsonPath<'_>, s: &RawSplit, lane: &str) -> Option<Split> {
        let key = match &s.key {
            None => Some(None),
            Some(k) => self.split_key(&path.field("key"), k).map(Some),
        };
        let ranges = self.ranges(path, s);
        Some(Split {
            key: key?,
            ranges: ranges?,
            salt: s.salt.clone().unwrap_or_else(|| lane.to_string()),
            on_missing: s.on_missing_key,
        })
    }

    fn split_key(&mut self, path: &JsonPath<'_>, k: &RawSplitKey) -> Option<SplitKey> {
        let mut sources = Vec::new();
        if let Some(h) = &k.header {
            let name = names::header_name(&path.field("header"), h, HeaderUse::Read);
            sources.push(self.ok(name).map(KeySource::Header));
        }
        if let Some(c) = &k.cookie {
            let given = names::not_empty(&path.field("cookie"), c, "cookie name");
            sources.push(self.ok(given).map(|()| KeySource::Cookie(c.clone())));
        }
        if let Some(q) = &k.query {
            let given = names::not_empty(&path.field("query"), q, "query parameter name");
            sources.push(self.ok(given).map(|()| KeySource::Query(q.clone())));
        }
        if sources.len() != 1 {
            return self.fail(
                path,
                ErrorKind::SplitKeySource,
                "give exactly one of header, cookie or query",
            );
        }
        let source = sources.pop().flatten();
        let assign = self.assign(path, k);
        Some(SplitKey {
            source: source?,
            assign: assign?,
        })
    }

    /// The `Max-Age` of an assigned cookie; `Some(None)`: not assigned.
    fn assign(&mut self, path: &JsonPath<'_>, k: &RawSplitKey) -> Option<Option<u64>> {
        if !k.assign {
            return match k.max_age {
                None => Some(None),
                Some(_) => self.fail(
                    &path.field("maxAge"),
                    ErrorKind::Assign,
                    "only applies with \"assign\": true",
                ),
            };
        }
        let Some(cookie) = &k.cookie else {
            return self.fail(
                &path.field("assign"),
                ErrorKind::Assign,
                "only a cookie key can be assigned; use {\"cookie\": NAME, \"assign\": true}",
            );
        };
        self.ok(names::settable_cookie(&path.field("cookie"), cookie))?;
        Some(Some(k.max_age.unwrap_or(DEFAULT_ASSIGN_MAX_AGE)))
    }

    /// The admitted bucket ranges, from `percent` or `buckets`.
    fn ranges(&mut self, path: &JsonPath<'_>, s: &RawSplit) -> Option<Vec<(u16, u16)>> {
        match (s.percent, &s.buckets) {
            (Some(_), Some(_)) | (None, None) => self.fail(
                path,
                ErrorKind::SplitShape,
                "give exactly one of \"percent\" or \"buckets\"",
            ),
            (Some(p), None) => self.ok(percent(&path.field("percent"), p)),
            (None, Some(list)) => {
                let path = path.field("buckets");
                if list.is_empty() {
                    return self.fail(
                        &path,
                        ErrorKind::EmptyList,
                        "give at least one range such as \"0-999\"",
                    );
                }
                let before = self.errors.len();
                let mut out = Vec::with_capacity(list.len());
                for (i, r) in list.iter().enumerate() {
                    out.extend(self.ok(bucket_range(&path.index(i), r)));
                }
                self.clean_since(before).then_some(out)
            }
        }
    }
}

/// `percent` as bucket ranges: 12.5 is buckets 0-1249, 0 is none.
fn percent(path: &JsonPath<'_>, p: f64) -> Result<Vec<(u16, u16)>, ConfigError> {
    let hundredths = p * 100.0;
    if !(0.0..=100.0).contains(&p) || (hundredths - hundredths.round()).abs() > 1e-6 {
        return Err(ConfigError::new(
            path,
            ErrorKind::Percent,
            "must be a share from 0 to 100 in steps of 0.01, such as 12.5",
        ));
    }
    // In range and integral, checked above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = hundredths.round() as u16;
    Ok(match n {
        0 => Vec::new(),
        n => vec![(0, n - 1)],
    })
}

/// `"LOW-HIGH"` or `"N"`.
fn bucket_range(path: &JsonPath<'_>, text: &str) -> Result<(u16, u16), ConfigError> {
    let num = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| u64::from(*n) < BUCKETS)
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(text), num(text)),
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(ConfigError::new(
            path,
            ErrorKind::BucketRange,
            format!("\"{text}\" is not a bucket range; write \"LOW-HIGH\" or \"N\" with 0 <= LOW <= HIGH <= {}", BUCKETS - 1),
        )),
    }
}
