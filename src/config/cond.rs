//! Conditions: `all`, `any`, `not`, or a leaf of one attribute and one
//! operator (docs/configuration.md "Conditions").

use super::names::{self, HeaderUse};
use super::raw::{RawCondition, RawRange};
use super::{Compiler, ErrorKind, JsonPath};
use crate::engine::{literal_prefix, Attr, CompiledRegex, Cond, Leaf, Op};
use hashbrown::HashSet;

const ATTRIBUTES: &str = "header, cookie, query, path, method, host, baggage";
const OPERATORS: &str = "exact, prefix, suffix, contains, regex, in, present, range";

/// A condition that combines others.
enum Nested<'r> {
    All(&'r [RawCondition]),
    Any(&'r [RawCondition]),
    Not(&'r RawCondition),
}

/// The combining members a condition gives, by name.
fn nested(c: &RawCondition) -> Vec<(&'static str, Nested<'_>)> {
    let mut out = Vec::new();
    if let Some(list) = &c.all {
        out.push(("all", Nested::All(list)));
    }
    if let Some(list) = &c.any {
        out.push(("any", Nested::Any(list)));
    }
    if let Some(sub) = &c.not {
        out.push(("not", Nested::Not(sub)));
    }
    out
}

/// The operators a condition gives, by name.
fn operators(c: &RawCondition) -> Vec<&'static str> {
    [
        ("exact", c.exact.is_some()),
        ("prefix", c.prefix.is_some()),
        ("suffix", c.suffix.is_some()),
        ("contains", c.contains.is_some()),
        ("regex", c.regex.is_some()),
        ("in", c.in_.is_some()),
        ("present", c.present.is_some()),
        ("range", c.range.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect()
}

/// An attribute a leaf gives: its name, and `None` if it is invalid.
type Given = (&'static str, Option<Attr>);

impl Compiler {
    pub(super) fn cond(&mut self, path: &JsonPath<'_>, c: &RawCondition) -> Option<Cond> {
        let attrs = self.attributes(path, c);
        let ops = operators(c);
        let mut nested = nested(c);
        if nested.is_empty() {
            return self.leaf(path, c, attrs, &ops).map(Cond::Leaf);
        }
        if nested.len() == 1 && attrs.is_empty() && ops.is_empty() && c.ignore_case.is_none() {
            return nested.pop().and_then(|(_, n)| self.nested(path, n));
        }
        let mut found: Vec<&str> = nested.iter().map(|(name, _)| *name).collect();
        found.extend(attrs.iter().map(|(name, _)| *name));
        found.extend(ops);
        if c.ignore_case.is_some() {
            found.push("ignoreCase");
        }
        self.fail(
            path,
            ErrorKind::ConditionShape,
            format!(
                "a condition is exactly one of all, any, not, or a leaf; found {}; nest them instead",
                found.join(", ")
            ),
        )
    }

    fn nested(&mut self, path: &JsonPath<'_>, nested: Nested<'_>) -> Option<Cond> {
        match nested {
            Nested::All(list) => self.conds(&path.field("all"), list).map(Cond::All),
            Nested::Any([]) => self.fail(
                &path.field("any"),
                ErrorKind::EmptyList,
                "an empty \"any\" can never hold; give at least one condition",
            ),
            Nested::Any(list) => self.conds(&path.field("any"), list).map(Cond::Any),
            Nested::Not(sub) => self
                .cond(&path.field("not"), sub)
                .map(|sub| Cond::Not(Box::new(sub))),
        }
    }

    /// Every condition of a list (`None` if one has an error).
    fn conds(&mut self, path: &JsonPath<'_>, list: &[RawCondition]) -> Option<Vec<Cond>> {
        let mut out = Vec::with_capacity(list.len());
        let before = self.errors.len();
        for (i, sub) in list.iter().enumerate() {
            out.extend(self.cond(&path.index(i), sub));
        }
        self.clean_since(before).then_some(out)
    }

    /// The attributes a condition gives, each checked.
    fn attributes(&mut self, path: &JsonPath<'_>, c: &RawCondition) -> Vec<Given> {
        let mut attrs: Vec<Given> = Vec::new();
        if let Some(h) = &c.header {
            let name = names::header_name(&path.field("header"), h, HeaderUse::Read);
            attrs.push(("header", self.ok(name).map(Attr::Header)));
        }
        if let Some(k) = &c.cookie {
            let given = names::not_empty(&path.field("cookie"), k, "cookie name");
            attrs.push(("cookie", self.ok(given).map(|()| Attr::Cookie(k.clone()))));
        }
        if let Some(k) = &c.query {
            let given = names::not_empty(&path.field("query"), k, "query parameter name");
            attrs.push(("query", self.ok(given).map(|()| Attr::Query(k.clone()))));
        }
        for (name, flag, attr) in [
            ("path", c.path, Attr::Path),
            ("method", c.method, Attr::Method),
            ("host", c.host, Attr::Host),
        ] {
            match flag {
                Some(true) => attrs.push((name, Some(attr))),
                Some(false) => {
                    let message = format!("write \"{name}\": true to test the {name}");
                    self.report(&path.field(name), ErrorKind::FalseAttribute, message);
                    attrs.push((name, None));
                }
                None => {}
            }
        }
        if let Some(k) = &c.baggage {
            let key = names::baggage_key(&path.field("baggage"), k);
            attrs.push(("baggage", self.ok(key).map(|()| Attr::Baggage(k.clone()))));
        }
        attrs
    }

    fn leaf(
        &mut self,
        path: &JsonPath<'_>,
        c: &RawCondition,
        mut attrs: Vec<Given>,
        ops: &[&str],
    ) -> Option<Leaf> {
        let attr = match attrs.len() {
            0 => self.fail(
                path,
                ErrorKind::NoAttribute,
                format!("a leaf needs one attribute ({ATTRIBUTES}), or use all/any/not"),
            ),
            1 => attrs.pop().and_then(|(_, attr)| attr),
            n => {
                let names: Vec<&str> = attrs.iter().map(|(name, _)| *name).collect();
                let message = format!(
                    "leaf has {n} attributes ({}); use exactly one, and all/any to combine",
                    names.join(", ")
                );
                self.fail(path, ErrorKind::SeveralAttributes, message)
            }
        };
        let op = match ops.len() {
            0 => self.fail(
                path,
                ErrorKind::NoOperator,
                format!("leaf has no operator; use exactly one of {OPERATORS}"),
            ),
            1 => self.operator(path, c),
            n => self.fail(
                path,
                ErrorKind::SeveralOperators,
                format!(
                    "leaf has {n} operators ({}); use exactly one",
                    ops.join(", ")
                ),
            ),
        };
        Some(Leaf {
            attr: attr?,
            op: op?,
            ignore_case: c.ignore_case.unwrap_or(false),
        })
    }

    /// The one operator of a leaf.
    fn operator(&mut self, path: &JsonPath<'_>, c: &RawCondition) -> Option<Op> {
        let ignore_case = c.ignore_case.unwrap_or(false);
        let fold = |s: &str| {
            if ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        if let Some(v) = &c.exact {
            Some(Op::Exact(fold(v)))
        } else if let Some(v) = &c.prefix {
            Some(Op::Prefix(fold(v)))
        } else if let Some(v) = &c.suffix {
            Some(Op::Suffix(fold(v)))
        } else if let Some(v) = &c.contains {
            Some(Op::Contains(fold(v)))
        } else if let Some(r) = &c.regex {
            self.regex(&path.field("regex"), r, ignore_case)
        } else if let Some(list) = &c.in_ {
            if list.is_empty() {
                return self.fail(
                    &path.field("in"),
                    ErrorKind::EmptyList,
                    "an empty \"in\" list can never match; give at least one value",
                );
            }
            Some(Op::In(list.iter().map(|s| fold(s)).collect::<HashSet<_>>()))
        } else if let Some(p) = c.present {
            self.case_blind(path, c, "present")?;
            Some(Op::Present(p))
        } else if let Some(r) = &c.range {
            self.case_blind(path, c, "range")?;
            self.range(&path.field("range"), r)
        } else {
            self.fail(
                path,
                ErrorKind::NoOperator,
                format!("leaf has no operator; use exactly one of {OPERATORS}"),
            )
        }
    }

    /// `Some` unless the leaf gives `ignoreCase`, which `op` ignores.
    fn case_blind(&mut self, path: &JsonPath<'_>, c: &RawCondition, op: &str) -> Option<()> {
        match c.ignore_case {
            None => Some(()),
            Some(_) => self.fail(
                &path.field("ignoreCase"),
                ErrorKind::NoEffect,
                format!("has no effect with \"{op}\"; remove it"),
            ),
        }
    }

    fn regex(&mut self, path: &JsonPath<'_>, r: &str, ignore_case: bool) -> Option<Op> {
        let built = regex_lite::RegexBuilder::new(&format!("^(?:{r})$"))
            .case_insensitive(ignore_case)
            .size_limit(1 << 20)
            .nest_limit(64)
            .build();
        let regex = match built {
            Ok(regex) => regex,
            Err(e) => return self.fail(
                path,
                ErrorKind::Regex,
                format!("invalid regular expression \"{r}\": {e}; the syntax is that of the Rust regex crate (no look-around or backreferences)"),
            ),
        };
        let prefix = literal_prefix(r);
        // ASCII case folding only: with ignoreCase a non-ASCII prefix is not used.
        let usable = !ignore_case || prefix.is_ascii();
        Some(Op::Regex(Box::new(CompiledRegex {
            regex,
            source: r.to_string(),
            prefix: if usable { prefix } else { String::new() },
        })))
    }

    fn range(&mut self, path: &JsonPath<'_>, r: &RawRange) -> Option<Op> {
        let (min, max) = (r.min.unwrap_or(i64::MIN), r.max.unwrap_or(i64::MAX));
        if min > max {
            return self.fail(
                path,
                ErrorKind::EmptyRange,
                format!("min {min} is greater than max {max}"),
            );
        }
        Some(Op::Range(min, max))
    }
}
