//! The compiled lane rules, and the index that keeps decision cost flat as
//! the number of lanes grows.

use hashbrown::{HashMap, HashSet};
use serde::Deserialize;

/// What a split does when its key is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum OnMissingKey {
    #[default]
    Random,
    Exclude,
}

/// Index of a lane in config order.
pub type LaneId = usize;

/// A declared lane: a lane rule, compiled, or a lane a hop only
/// propagates (`rule: false`: never evaluated, only accepted as a tag).
#[derive(Debug, Clone)]
pub struct Lane {
    pub name: String,
    /// Declared in `lanes` (evaluated in `Rules::order`), not in `propagate`.
    pub rule: bool,
    pub priority: i64,
    /// `None`: every request.
    pub cond: Option<Cond>,
    /// `None`: 100 %.
    pub split: Option<Split>,
}

/// A condition tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Leaf(Leaf),
}

/// One attribute tested by one operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub attr: Attr,
    pub op: Op,
    /// ASCII case-insensitive; operands are stored lower-case.
    pub ignore_case: bool,
}

/// What a leaf reads from the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attr {
    /// Lower-case header name.
    Header(String),
    Cookie(String),
    Query(String),
    Path,
    Method,
    Host,
    Baggage(String),
}

/// How a leaf tests the value.
#[derive(Debug, Clone)]
pub enum Op {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Anchored at compile time (`^(?:R)$`): matches the whole value.
    Regex(Box<CompiledRegex>),
    In(HashSet<String>),
    Present(bool),
    /// Inclusive bounds.
    Range(i64, i64),
}

/// A regex and the text the operator wrote.
#[derive(Debug, Clone)]
pub struct CompiledRegex {
    pub regex: regex_lite::Regex,
    pub source: String,
    /// Text every match starts with (checked before running the regex,
    /// which costs far more than a prefix comparison).
    pub prefix: String,
}

/// The literal text every whole-value match of `pattern` must start with:
/// the leading run of plain characters (and escaped punctuation), minus a
/// last character made optional by `?`, `*` or `{`. Empty when the pattern
/// has a top-level alternation or starts with anything else.
pub fn literal_prefix(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    // A top-level `|` means the prefix of one branch proves nothing.
    let (mut depth, mut class, mut escaped) = (0usize, false, false);
    for &b in bytes {
        match (escaped, class, b) {
            (true, _, _) => escaped = false,
            (_, _, b'\\') => escaped = true,
            (_, true, b']') => class = false,
            (_, true, _) => {}
            (_, false, b'[') => class = true,
            (_, false, b'(') => depth += 1,
            (_, false, b')') => depth = depth.saturating_sub(1),
            (_, false, b'|') if depth == 0 => return String::new(),
            _ => {}
        }
    }
    let mut out = String::new();
    let mut chars = pattern
        .strip_prefix('^')
        .unwrap_or(pattern)
        .chars()
        .peekable();
    while let Some(c) = chars.next() {
        let lit = match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => e,
                _ => break,
            },
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => break,
            c => c,
        };
        if matches!(chars.peek(), Some('?' | '*' | '{')) {
            break;
        }
        out.push(lit);
    }
    out
}

impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        match (self, other) {
            (Op::Exact(a), Op::Exact(b))
            | (Op::Prefix(a), Op::Prefix(b))
            | (Op::Suffix(a), Op::Suffix(b))
            | (Op::Contains(a), Op::Contains(b)) => a == b,
            (Op::Regex(a), Op::Regex(b)) => a.source == b.source,
            (Op::In(a), Op::In(b)) => a == b,
            (Op::Present(a), Op::Present(b)) => a == b,
            (Op::Range(a0, a1), Op::Range(b0, b1)) => a0 == b0 && a1 == b1,
            _ => false,
        }
    }
}

/// A traffic split, compiled.
#[derive(Debug, Clone)]
pub struct Split {
    /// `None`: random per request.
    pub key: Option<SplitKey>,
    /// Admitted buckets, inclusive ranges over `0..BUCKETS`.
    pub ranges: Vec<(u16, u16)>,
    pub salt: String,
    pub on_missing: OnMissingKey,
}

/// Where a split reads its stickiness key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Header(String),
    Cookie(String),
    Query(String),
}

/// A split key; `assign` holds the cookie Max-Age when the filter assigns
/// missing cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitKey {
    pub source: KeySource,
    pub assign: Option<u64>,
}

impl Split {
    /// Whether `bucket` is admitted.
    pub fn admits(&self, bucket: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= bucket && bucket <= hi)
    }
}

/// Exact-value index over one attribute: which lanes require which value.
#[derive(Debug, Clone)]
pub(crate) struct IndexGroup {
    pub attr: Attr,
    pub ignore_case: bool,
    /// Value -> ranks of the lanes that require it.
    pub lanes: HashMap<String, Vec<u32>>,
}

/// All lanes, their evaluation order, and the exact-value index.
#[derive(Debug, Clone)]
pub struct Rules {
    /// In config order; a [`LaneId`] indexes this.
    pub lanes: Vec<Lane>,
    /// Ids of the lane rules in evaluation order: priority, then config order.
    pub order: Vec<LaneId>,
    by_name: HashMap<String, LaneId>,
    /// Ranks (positions in `order`) of lanes without an index anchor.
    pub(crate) unindexed: Vec<u32>,
    pub(crate) index: Vec<IndexGroup>,
}

impl Rules {
    /// Orders the lanes and builds the exact-value index.
    pub fn new(lanes: Vec<Lane>) -> Rules {
        let mut order: Vec<LaneId> = (0..lanes.len())
            .filter(|&id| lanes.get(id).is_some_and(|l| l.rule))
            .collect();
        order.sort_by_key(|&id| (lanes.get(id).map_or(i64::MAX, |l| l.priority), id));
        let by_name = lanes
            .iter()
            .enumerate()
            .map(|(id, l)| (l.name.clone(), id))
            .collect();
        let mut unindexed = Vec::new();
        let mut index: Vec<IndexGroup> = Vec::new();
        for (rank, &id) in order.iter().enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            let anchor = lanes
                .get(id)
                .and_then(|l| l.cond.as_ref())
                .and_then(anchor_of);
            let Some((leaf, values)) = anchor else {
                unindexed.push(rank);
                continue;
            };
            let pos = index
                .iter()
                .position(|g| g.attr == leaf.attr && g.ignore_case == leaf.ignore_case);
            let group = match pos.and_then(|p| index.get_mut(p)) {
                Some(g) => g,
                None => {
                    index.push(IndexGroup {
                        attr: leaf.attr.clone(),
                        ignore_case: leaf.ignore_case,
                        lanes: HashMap::new(),
                    });
                    match index.last_mut() {
                        Some(g) => g,
                        None => continue,
                    }
                }
            };
            for v in values {
                group.lanes.entry(v.clone()).or_default().push(rank);
            }
        }
        Rules {
            lanes,
            order,
            by_name,
            unindexed,
            index,
        }
    }

    /// The lane declared with this name.
    pub fn lane_id(&self, name: &str) -> Option<LaneId> {
        self.by_name.get(name).copied()
    }

    /// The lane at a rank of the evaluation order.
    pub(crate) fn at_rank(&self, rank: u32) -> Option<(LaneId, &Lane)> {
        let id = *self.order.get(usize::try_from(rank).ok()?)?;
        Some((id, self.lanes.get(id)?))
    }
}

/// A leaf every request of the lane must satisfy with one of a few exact
/// values: the lane's top-level leaf, or a leaf directly under its
/// top-level `all`. `present`-style operators and regexes are not anchors.
fn anchor_of(cond: &Cond) -> Option<(&Leaf, Vec<&String>)> {
    match cond {
        Cond::All(list) => list.iter().find_map(exact_leaf),
        c => exact_leaf(c),
    }
}

fn exact_leaf(c: &Cond) -> Option<(&Leaf, Vec<&String>)> {
    match c {
        Cond::Leaf(leaf) => match &leaf.op {
            Op::Exact(v) => Some((leaf, vec![v])),
            Op::In(set) if set.len() <= 16 => Some((leaf, set.iter().collect())),
            _ => None,
        },
        _ => None,
    }
}
