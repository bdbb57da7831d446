//! serde_json, with the JSON path of every error, reading past the errors
//! it can.
//!
//! A thin wrapper over serde_json's deserializer: it forwards every call and
//! carries the [`JsonPath`] of the value being read (`lanes[2].match.any[0].regex`),
//! so that an error names where it is. It reads on past a member the object
//! does not have, a member given twice and a string that is none of an
//! enum's values: it notes the error, skips the member (or reads the enum's
//! first value) and goes on, so that one run reports every such error. Any
//! other error stops the reading: serde builds each value whole or not at
//! all, so past a value of the wrong type, a missing member or malformed
//! JSON there is nothing to go on with.
//!
//! It also holds the config to the JSON of docs/configuration.md "Configuration reference"
//! where serde's data model is looser than the document: a struct is an
//! object (serde would also take an array of its fields), an enum is a
//! string (serde_json would also take `{"variant": null}`), and a member
//! name appears once per object (a map would keep the last).

use super::{ConfigError, ErrorKind, JsonPath};
use hashbrown::HashSet;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};
use std::cell::RefCell;
use std::fmt;

/// What a reading found: the value, or the error that stopped it; and the
/// errors it read past, in the order met.
pub struct Read<T> {
    pub value: Result<T, ConfigError>,
    pub read_past: Vec<ConfigError>,
}

/// The errors of one reading.
#[derive(Default)]
struct Log {
    read_past: RefCell<Vec<ConfigError>>,
    /// The path of the error that stopped the reading: the innermost value
    /// it passed through, the first to say.
    stopped_at: RefCell<Option<String>>,
}

impl Log {
    fn read_past(&self, path: &JsonPath<'_>, kind: ErrorKind, message: String) {
        self.read_past
            .borrow_mut()
            .push(ConfigError::new(path, kind, message));
    }

    fn stopped_at(&self, path: &JsonPath<'_>) {
        let mut at = self.stopped_at.borrow_mut();
        if at.is_none() {
            *at = Some(path.to_string());
        }
    }
}

/// Reads a `T` from JSON text (RFC 8259, exactly as serde_json reads it: no
/// comments, trailing commas, leading zeros or NaN; one document).
pub fn read<T: DeserializeOwned>(text: &[u8]) -> Read<T> {
    let log = Log::default();
    let mut json = serde_json::Deserializer::from_slice(text);
    let value = T::deserialize(Tracked {
        de: &mut json,
        path: JsonPath::Root,
        log: &log,
    })
    .and_then(|value| json.end().map(|()| value));
    let path = log.stopped_at.take().unwrap_or_default();
    Read {
        value: value.map_err(|e| {
            let (kind, message) = describe(&e);
            ConfigError {
                path,
                kind,
                message,
            }
        }),
        read_past: log.read_past.into_inner(),
    }
}

/// Whether a file is JSON (else YAML): its first non-blank character is
/// `{` or `[`. The one rule of every file the CLI, the playground and the
/// rollout read: plugin configurations, manifests, plans, mesh
/// descriptions, delivery targets.
#[cfg(not(target_os = "wasi"))]
pub fn is_json(text: &[u8]) -> bool {
    matches!(text.trim_ascii_start().first(), Some(b'{' | b'['))
}

/// The documents of a YAML or JSON file ([`is_json`]): a JSON file is one
/// document; a YAML file's empty documents are skipped.
#[cfg(not(target_os = "wasi"))]
pub fn documents(text: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    use serde::Deserialize;
    if is_json(text) {
        return serde_json::from_slice(text)
            .map(|v| vec![v])
            .map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(text)
        .map_err(|e| format!("the file is neither JSON nor UTF-8 YAML: {e}"))?;
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value =
            serde_json::Value::deserialize(doc).map_err(|e| format!("invalid YAML: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The JSON text of a one-document YAML or JSON file ([`documents`]); a
/// JSON file is handed on as it is, so that its errors keep their
/// positions. For the rollout plan and the mesh description.
#[cfg(not(target_arch = "wasm32"))]
pub fn json_of_yaml_or_json(text: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, ConfigError> {
    if is_json(text) {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    let syntax = |message: String| ConfigError {
        path: String::new(),
        kind: ErrorKind::Syntax,
        message,
    };
    let value = match documents(text).map_err(syntax)?.as_mut_slice() {
        [] => serde_json::Value::Null,
        [one] => one.take(),
        many => return Err(syntax(format!("{} YAML documents; give one", many.len()))),
    };
    serde_json::to_vec(&value)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| syntax(e.to_string()))
}

/// [`read`], failing with the first error (the rollout plan).
#[cfg(not(target_arch = "wasm32"))]
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> Result<T, ConfigError> {
    let Read { value, read_past } = read(text);
    match read_past.into_iter().next() {
        Some(first) => Err(first),
        None => value,
    }
}

/// How serde_json words the syntax errors graylane adds a hint to.
/// serde_json has no public code for them, only this text; the test
/// `every_hint_is_reached` (and the others in this file) fails when the
/// wording changes.
#[derive(Clone, Copy)]
enum Wording {
    Is(&'static str),
    StartsWith(&'static str),
    Contains(&'static str),
}

impl Wording {
    fn matches(self, what: &str) -> bool {
        match self {
            Wording::Is(s) => what == s,
            Wording::StartsWith(s) => what.starts_with(s),
            Wording::Contains(s) => what.contains(s),
        }
    }
}

/// The syntax errors graylane explains, first match wins.
const HINTS: &[(Wording, &str)] = &[
    (
        Wording::StartsWith("EOF"),
        "the text ends before the JSON value does",
    ),
    (
        Wording::Is("trailing comma"),
        "remove the comma before the closing bracket",
    ),
    (
        Wording::Is("key must be a string"),
        "member names are double-quoted strings",
    ),
    (
        Wording::Is("invalid number"),
        "write numbers as JSON does: no leading zero, digits on both sides of a '.' (0.5, 12.5, 1e2)",
    ),
    (
        Wording::Is("expected value"),
        "expected a string in double quotes, a number, true, false, null, an object or an array (JSON has no comments, single quotes, NaN or Infinity)",
    ),
    (
        Wording::Is("trailing characters"),
        "the configuration is one JSON object and nothing after it",
    ),
    (
        Wording::Is(RECURSION_LIMIT),
        "the configuration nests more than 128 objects and arrays deep",
    ),
    (
        Wording::StartsWith("expected `,`"),
        "separate members and elements with commas (JSON has no comments)",
    ),
    (
        Wording::Contains("hex escape"),
        "a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one (a surrogate pair)",
    ),
    (
        Wording::StartsWith("control character"),
        "escape it in the string (\\n, \\t, \\u0001)",
    ),
];

/// serde_json's words for nesting past its limit of 128.
const RECURSION_LIMIT: &str = "recursion limit exceeded";

/// serde's words (its `de::Error` defaults, which serde_json keeps) for the
/// data errors that stop a reading, and their kinds.
const DATA_ERRORS: &[(&str, ErrorKind)] = &[
    ("invalid type: ", ErrorKind::WrongType),
    ("missing field `", ErrorKind::MissingField),
    ("unknown field `", ErrorKind::UnknownField),
    ("unknown variant `", ErrorKind::UnknownVariant),
];

/// The kind and message of the error that stopped a reading: serde's
/// message without its position for an error about a value (the path says
/// where), the position and a hint for malformed JSON.
fn describe(e: &serde_json::Error) -> (ErrorKind, String) {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&position).unwrap_or(&text);
    if e.is_data() {
        let kind = DATA_ERRORS
            .iter()
            .find(|(prefix, _)| what.starts_with(prefix))
            .map_or(ErrorKind::InvalidValue, |&(_, kind)| kind);
        return (kind, what.to_string());
    }
    let kind = if what == RECURSION_LIMIT {
        ErrorKind::TooDeep
    } else {
        ErrorKind::Syntax
    };
    let hint = HINTS
        .iter()
        .find(|(wording, _)| wording.matches(what))
        .map(|(_, hint)| format!("; {hint}"))
        .unwrap_or_default();
    (
        kind,
        format!(
            "invalid JSON at line {} column {}: {what}{hint}",
            e.line(),
            e.column()
        ),
    )
}

/// A deserializer that reads its value at `path`.
struct Tracked<'p, D> {
    de: D,
    path: JsonPath<'p>,
    log: &'p Log,
}

impl<'p, D> Tracked<'p, D> {
    fn wrap<V>(&self, visitor: V) -> Wrap<'p, V> {
        Wrap {
            visitor,
            path: self.path,
            log: self.log,
            object: None,
        }
    }
}

macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.wrap(visitor);
            self.de.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tracked<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_tuple_struct(name, len, visitor)
    }

    /// A struct is a JSON object, never an array of its fields; a member
    /// it does not have is noted and skipped.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let mut visitor = self.wrap(visitor);
        visitor.object = Some(fields);
        self.de.deserialize_map(visitor)
    }

    /// An enum of the config is a string naming its variant.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_str(VariantName {
            visitor,
            variants,
            path: self.path,
            log: self.log,
        })
    }
}

/// Reads an enum from its variant's name; an unknown name is noted, and
/// the first variant read in its place.
struct VariantName<'p, V> {
    visitor: V,
    variants: &'static [&'static str],
    path: JsonPath<'p>,
    log: &'p Log,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for VariantName<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<V::Value, E> {
        let known = self.variants.contains(&name);
        match self.variants.first() {
            Some(first) if !known => {
                let e = E::unknown_variant(name, self.variants);
                self.log
                    .read_past(&self.path, ErrorKind::UnknownVariant, e.to_string());
                self.visitor.visit_enum(first.into_deserializer())
            }
            _ => self.visitor.visit_enum(name.into_deserializer()),
        }
    }
}

/// A visitor whose nested values are [`Tracked`] in turn.
struct Wrap<'p, V> {
    visitor: V,
    path: JsonPath<'p>,
    log: &'p Log,
    /// For a struct: its fields. The visitor then expects an object.
    object: Option<&'static [&'static str]>,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    /// serde would name the Rust type ("struct RawLane"); say what the JSON
    /// should hold instead.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.object {
            Some(_) => f.write_str("an object"),
            None => self.visitor.expecting(f),
        }
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Tracked {
            de,
            path: self.path,
            log: self.log,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Tracked {
            de,
            path: self.path,
            log: self.log,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Elements {
            seq,
            path: self.path,
            log: self.log,
            index: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Members {
            map,
            path: self.path,
            log: self.log,
            fields: self.object,
            seen: HashSet::new(),
            key: None,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// A seed whose value is [`Tracked`] at `path`. An error before the value
/// starts (a trailing comma, the end of the text) never reaches it, and is
/// the enclosing value's.
struct TrackedSeed<'p, S> {
    seed: S,
    path: JsonPath<'p>,
    log: &'p Log,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for TrackedSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let (path, log) = (self.path, self.log);
        self.seed
            .deserialize(Tracked { de, path, log })
            .inspect_err(|_| log.stopped_at(&path))
    }
}

/// Array elements, each under its index.
struct Elements<'p, A> {
    seq: A,
    path: JsonPath<'p>,
    log: &'p Log,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let path = self.path.index(self.index);
        self.index += 1;
        self.seq.next_element_seed(TrackedSeed {
            seed,
            path,
            log: self.log,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// Object members, each under its name. A name given twice, or one the
/// struct does not have, is noted and its value skipped.
struct Members<'p, A> {
    map: A,
    path: JsonPath<'p>,
    log: &'p Log,
    /// A struct's fields; `None` for a map, whose keys are all accepted.
    fields: Option<&'static [&'static str]>,
    seen: HashSet<String>,
    key: Option<String>,
}

impl<'de, A: MapAccess<'de>> Members<'_, A> {
    /// Notes the error of member `name` and skips its value.
    fn read_past(&mut self, name: &str, kind: ErrorKind, message: String) -> Result<(), A::Error> {
        let path = self.path.field(name);
        self.log.read_past(&path, kind, message);
        self.map
            .next_value::<IgnoredAny>()
            .map(drop)
            .inspect_err(|_| self.log.stopped_at(&path))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let name = loop {
            let Some(name) = self.map.next_key::<String>()? else {
                return Ok(None);
            };
            if !self.seen.insert(name.clone()) {
                let message = format!("duplicate member `{name}`; give each name once per object");
                self.read_past(&name, ErrorKind::DuplicateMember, message)?;
            } else if let Some(fields) = self.fields.filter(|f| !f.contains(&name.as_str())) {
                let message = <A::Error as de::Error>::unknown_field(&name, fields).to_string();
                self.read_past(&name, ErrorKind::UnknownField, message)?;
            } else {
                break name;
            }
        };
        let key = seed.deserialize(name.as_str().into_deserializer());
        if key.is_err() {
            self.log.stopped_at(&self.path.field(&name));
        }
        self.key = Some(name);
        key.map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        // An error between the name and the value (a missing ':') is
        // under the name too.
        let name = self.key.take();
        let path = match &name {
            Some(name) => self.path.field(name),
            None => self.path,
        };
        let log = self.log;
        self.map
            .next_value_seed(TrackedSeed { seed, path, log })
            .inspect_err(|_| log.stopped_at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    /// The error that stops reading `json`.
    fn stop(json: &str) -> ConfigError {
        read::<RawConfig>(json.as_bytes()).value.unwrap_err()
    }

    #[test]
    fn every_hint_is_reached() {
        // One text per entry of HINTS, in its order.
        let samples = [
            r#"{"lanes": ["#.to_string(),
            r#"{"lanes": [{"name": "g",}]}"#.to_string(),
            r#"{lanes: []}"#.to_string(),
            r#"{"lanes": [{"name": "g", "priority": 1.}]}"#.to_string(),
            r#"{"lanes": [{"name": "g", "priority": NaN}]}"#.to_string(),
            r#"{"lanes": [{"name": "g"}]} x"#.to_string(),
            r#"{"lanes": [{"name": "g", "match": "#.to_string()
                + &r#"{"not": "#.repeat(200)
                + &"}".repeat(200)
                + "}]}",
            r#"{"lanes": [{"name": "g"} {"name": "h"}]}"#.to_string(),
            r#"{"lanes": [{"name": "\ud800"}]}"#.to_string(),
            "{\"lanes\": [{\"name\": \"a\u{1}b\"}]}".to_string(),
        ];
        assert_eq!(samples.len(), HINTS.len());
        for (i, (json, (_, hint))) in samples.iter().zip(HINTS).enumerate() {
            let e = stop(json);
            let text = e.message.strip_suffix(&format!("; {hint}"));
            let what = text.and_then(|t| t.split_once(": ")).map(|(_, what)| what);
            let first = what.and_then(|what| HINTS.iter().position(|(w, _)| w.matches(what)));
            assert_eq!(first, Some(i), "HINTS[{i}]: {e}");
            let kind = if i == 6 {
                ErrorKind::TooDeep
            } else {
                ErrorKind::Syntax
            };
            assert_eq!(e.kind, kind, "{e}");
        }
    }

    #[test]
    fn serde_words_data_errors_as_matched() {
        type E = serde_json::Error;
        let cases = [
            (
                <E as de::Error>::invalid_type(de::Unexpected::Bool(true), &"a string"),
                ErrorKind::WrongType,
            ),
            (
                <E as de::Error>::missing_field("name"),
                ErrorKind::MissingField,
            ),
            (
                <E as de::Error>::unknown_field("nmae", &["name"]),
                ErrorKind::UnknownField,
            ),
            (
                <E as de::Error>::unknown_variant("x", &["a", "b"]),
                ErrorKind::UnknownVariant,
            ),
            (
                <E as de::Error>::invalid_value(de::Unexpected::Signed(-1), &"u64"),
                ErrorKind::InvalidValue,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(describe(&e), (kind, e.to_string()));
        }
        // From a reading: the position goes, the path says where.
        let e = stop(r#"{"lanes": [{"name": "g", "priority": true}]}"#);
        assert_eq!(
            (e.path.as_str(), e.kind, e.message.as_str()),
            (
                "lanes[0].priority",
                ErrorKind::WrongType,
                "invalid type: boolean `true`, expected i64"
            )
        );
    }

    #[test]
    fn errors_read_past_keep_the_value_and_their_order() {
        let read = read::<RawConfig>(
            br#"{"lanes": [{"name": "g", "x": [1, {"y": 2}], "name": "h", "split": {"percent": 5, "onMissingKey": "never"}}], "z": null}"#,
        );
        let raw = read.value.unwrap();
        assert_eq!(raw.lanes[0].name, "g");
        assert_eq!(raw.lanes[0].split.as_ref().unwrap().percent, Some(5.0));
        let found: Vec<(&str, ErrorKind)> = read
            .read_past
            .iter()
            .map(|e| (e.path.as_str(), e.kind))
            .collect();
        assert_eq!(
            found,
            [
                ("lanes[0].x", ErrorKind::UnknownField),
                ("lanes[0].name", ErrorKind::DuplicateMember),
                ("lanes[0].split.onMissingKey", ErrorKind::UnknownVariant),
                ("z", ErrorKind::UnknownField),
            ]
        );
        // `from_slice` fails with the first.
        let first = from_slice::<RawConfig>(br#"{"a": 1, "b": 2}"#).unwrap_err();
        assert_eq!(first.path, "a");
    }
}
