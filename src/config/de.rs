//! serde_json, with the JSON path of every error.
//!
//! A thin wrapper over serde_json's deserializer: it forwards every call and
//! records, as an error unwinds, the member names and array indexes it
//! passes (`lanes[2].match.any[0].regex`). It also holds the config to the
//! JSON of README "Configuration reference" where serde's data model is looser than the document: a
//! struct is an object (serde would also take an array of its fields), an
//! enum is a string (serde_json would also take `{"variant": null}`), and a
//! member name appears once per object (a map would keep the last).

use super::ConfigError;
use hashbrown::HashSet;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use std::cell::RefCell;
use std::fmt;

/// One step of a JSON path.
enum Segment {
    Member(String),
    Index(usize),
}

/// The path of the error being unwound, innermost step first.
#[derive(Default)]
struct Trail(RefCell<Vec<Segment>>);

impl Trail {
    fn push(&self, segment: Segment) {
        self.0.borrow_mut().push(segment);
    }

    /// `lanes[2].match.regex`.
    fn path(&self) -> String {
        let mut out = String::new();
        for segment in self.0.borrow().iter().rev() {
            match segment {
                Segment::Member(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// Deserializes a `T` from JSON text (RFC 8259, exactly as serde_json reads
/// it: no comments, trailing commas, leading zeros or NaN; one document).
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> Result<T, ConfigError> {
    let trail = Trail::default();
    let mut json = serde_json::Deserializer::from_slice(text);
    let value = T::deserialize(Tracked {
        de: &mut json,
        trail: &trail,
    })
    .and_then(|value| json.end().map(|()| value));
    value.map_err(|e| ConfigError {
        path: trail.path(),
        message: message(&e),
    })
}

/// serde_json's message without its position for errors about a value (the
/// path says where), with the position and a hint for malformed JSON.
fn message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&position).unwrap_or(&text);
    if !(e.is_syntax() || e.is_eof()) {
        // serde names the Rust type ("expected struct RawLane"); say what
        // the JSON should hold instead.
        return match what.split_once(", expected struct ") {
            Some((found, _)) => format!("{found}, expected an object"),
            None => match what.split_once(", expected enum ") {
                Some((found, _)) => format!("{found}, expected a string"),
                None => what.to_string(),
            },
        };
    }
    let hint = if what.starts_with("EOF") {
        "; the text ends before the JSON value does"
    } else if what == "trailing comma" {
        "; remove the comma before the closing bracket"
    } else if what == "key must be a string" {
        "; member names are double-quoted strings"
    } else if what == "invalid number" {
        "; write numbers as JSON does: no leading zero, digits on both sides of a '.' (0.5, 12.5, 1e2)"
    } else if what == "expected value" {
        "; expected a string in double quotes, a number, true, false, null, an object or an array (JSON has no comments, single quotes, NaN or Infinity)"
    } else if what == "trailing characters" {
        "; the configuration is one JSON object and nothing after it"
    } else if what == "recursion limit exceeded" {
        "; the configuration nests more than 128 objects and arrays deep"
    } else if what.starts_with("expected `,`") {
        "; separate members and elements with commas (JSON has no comments)"
    } else if what.contains("hex escape") {
        "; a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one (a surrogate pair)"
    } else if what.starts_with("control character") {
        "; escape it in the string (\\n, \\t, \\u0001)"
    } else {
        ""
    };
    format!(
        "invalid JSON at line {} column {}: {what}{hint}",
        e.line(),
        e.column()
    )
}

/// A deserializer that records the path of an error on the trail.
struct Tracked<'t, D> {
    de: D,
    trail: &'t Trail,
}

impl<'t, D> Tracked<'t, D> {
    fn wrap<V>(&self, visitor: V) -> Wrap<'t, V> {
        Wrap {
            visitor,
            trail: self.trail,
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

    /// A struct is a JSON object, never an array of its fields.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_map(visitor)
    }

    /// An enum of the config is a string naming its variant.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_str(VariantName(visitor))
    }
}

/// Reads an enum from its variant's name.
struct VariantName<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for VariantName<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<V::Value, E> {
        self.0.visit_enum(name.into_deserializer())
    }
}

/// A visitor whose nested values are [`Tracked`] in turn.
struct Wrap<'t, V> {
    visitor: V,
    trail: &'t Trail,
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

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
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
            trail: self.trail,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Tracked {
            de,
            trail: self.trail,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Elements {
            seq,
            trail: self.trail,
            index: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Members {
            map,
            trail: self.trail,
            seen: HashSet::new(),
            key: None,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// A seed whose value is [`Tracked`]; `started` tells an error in the value
/// from an error before it (a trailing comma, the end of the text).
struct TrackedSeed<'t, 's, S> {
    seed: S,
    trail: &'t Trail,
    started: &'s mut bool,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for TrackedSeed<'_, '_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        *self.started = true;
        self.seed.deserialize(Tracked {
            de,
            trail: self.trail,
        })
    }
}

/// Array elements, each under its index.
struct Elements<'t, A> {
    seq: A,
    trail: &'t Trail,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let index = self.index;
        self.index += 1;
        let mut started = false;
        self.seq
            .next_element_seed(TrackedSeed {
                seed,
                trail: self.trail,
                started: &mut started,
            })
            .inspect_err(|_| {
                if started {
                    self.trail.push(Segment::Index(index));
                }
            })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// Object members, each under its name; a name given twice is an error.
struct Members<'t, A> {
    map: A,
    trail: &'t Trail,
    seen: HashSet<String>,
    key: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(name) = self.map.next_key::<String>()? else {
            return Ok(None);
        };
        if !self.seen.insert(name.clone()) {
            self.trail.push(Segment::Member(name.clone()));
            return Err(de::Error::custom(format_args!(
                "duplicate member `{name}`; give each name once per object"
            )));
        }
        let key = seed.deserialize(name.as_str().into_deserializer());
        match key {
            Ok(key) => {
                self.key = Some(name);
                Ok(Some(key))
            }
            Err(e) => {
                self.trail.push(Segment::Member(name));
                Err(e)
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        // An error between the name and the value (a missing ':') is
        // under the name too.
        let mut started = false;
        let name = self.key.take();
        self.map
            .next_value_seed(TrackedSeed {
                seed,
                trail: self.trail,
                started: &mut started,
            })
            .inspect_err(|_| {
                if let Some(name) = name {
                    self.trail.push(Segment::Member(name));
                }
            })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}
