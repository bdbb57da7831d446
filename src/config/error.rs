//! Configuration errors: where (the JSON path), what kind, and a message
//! saying what would be accepted.

use super::JsonPath;
use std::fmt;

/// What is wrong with a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    // Reading the JSON.
    /// The text holds no configuration (empty or only white space).
    Empty,
    /// The text is not JSON as RFC 8259 writes it.
    Syntax,
    /// Objects and arrays nest deeper than the parser's limit (128).
    TooDeep,
    /// A member the object does not have (a misspelt field).
    UnknownField,
    /// A member name given twice in one object.
    DuplicateMember,
    /// A string that is none of the field's values (`"incoming": "maybe"`).
    UnknownVariant,
    /// A value of the wrong JSON type (a string where a number goes).
    WrongType,
    /// A required member is absent.
    MissingField,
    /// A value of the right type that the field cannot hold (a negative
    /// `maxAge`).
    InvalidValue,

    // Compiling the configuration.
    /// Not a header name (an HTTP token).
    HeaderName,
    /// A header graylane must not set (`host`, `baggage`, `cookie`, `:path`).
    ReservedHeader,
    /// Not a baggage key.
    BaggageKey,
    /// Two fields that must differ are equal.
    NotDistinct,
    /// A name that must not be empty is.
    EmptyName,
    /// Neither `lanes` nor `propagate` names a lane.
    NoLanes,
    /// Not a lane name.
    LaneName,
    /// The lane name `base`, which means "no lane".
    ReservedLane,
    /// A lane declared twice.
    DuplicateLane,
    /// A `services` key that is not a host name.
    ServiceKey,
    /// A service declared twice (keys differ only in case).
    DuplicateService,
    /// A condition that mixes `all`, `any`, `not` and a leaf.
    ConditionShape,
    /// A list that can never match when empty (`any`, `in`, `buckets`).
    EmptyList,
    /// A leaf without an attribute.
    NoAttribute,
    /// A leaf with several attributes.
    SeveralAttributes,
    /// A leaf without an operator.
    NoOperator,
    /// A leaf with several operators.
    SeveralOperators,
    /// `"path": false` (and `method`, `host`): only `true` is meaningful.
    FalseAttribute,
    /// A regular expression that does not compile.
    Regex,
    /// `ignoreCase` where it changes nothing (`present`, `range`).
    NoEffect,
    /// A `range` whose `min` is above its `max`.
    EmptyRange,
    /// A split with both or neither of `percent` and `buckets`.
    SplitShape,
    /// A split key with other than one of `header`, `cookie`, `query`.
    SplitKeySource,
    /// `assign` or `maxAge` where they cannot apply.
    Assign,
    /// A `percent` outside 0-100 or finer than 0.01.
    Percent,
    /// A `buckets` entry that is not a bucket range.
    BucketRange,

    /// A rollout plan's own check (`graylane rollout`).
    Plan,
    /// A mesh description's own check (`graylane istio`).
    Mesh,
}

/// A configuration error: the JSON path of the bad value, its kind, and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `lanes[2].split.percent`; empty for the configuration as a whole.
    pub path: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: &JsonPath<'_>, kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_string(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one configuration, in the order found (errors in
/// the JSON first, then those of compiling it); never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// `None` when there is no error.
    pub(crate) fn from_vec(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        (!errors.is_empty()).then_some(ConfigErrors(errors))
    }

    /// `errors`, then the error that ended the search.
    pub(crate) fn ending_with(mut errors: Vec<ConfigError>, last: ConfigError) -> ConfigErrors {
        errors.push(last);
        ConfigErrors(errors)
    }

    pub(crate) fn extend(&mut self, more: ConfigErrors) {
        self.0.extend(more.0);
    }

    /// The first error found: what a reader that stops at the first error
    /// would report.
    pub fn first(&self) -> &ConfigError {
        // Never empty: built only by `from_vec` and `From<ConfigError>`.
        #[allow(clippy::indexing_slicing)]
        &self.0[0]
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

impl std::ops::Deref for ConfigErrors {
    type Target = [ConfigError];

    fn deref(&self) -> &[ConfigError] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One error a line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
