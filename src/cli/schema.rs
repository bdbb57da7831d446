//! JSON Schema of the plugin configuration (docs/configuration.md "Configuration reference"), for editors and CI
//! checks of manifests. schemars derives it from the raw config structs
//! (their doc comments become descriptions, `deny_unknown_fields` becomes
//! `additionalProperties: false`); [`schema`] then adds what the types
//! cannot say: "exactly one of" rules, bounds, name patterns.
//!
//! The schema accepts a subset of what the filter accepts: it refuses
//! explicit `null` for optional fields (omit them instead) and some oddly
//! spaced bucket ranges; the filter's own checks remain the reference
//! (`graylane check`).

use super::{usage_error, EXIT_INTERNAL, EXIT_OK};
use crate::config::{baggage_key_symbols, RawConfig, TOKEN_SYMBOLS};
use serde_json::{json, Map, Value};
use std::io::Write;

/// Path of the committed copy, relative to the repository root.
pub const COMMITTED_PATH: &str = "envoy/graylane.schema.json";

pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if !args.is_empty() {
        return usage_error(err, "schema takes no argument");
    }
    print(schema_text(), out, err)
}

/// Prints a schema, or the internal error that kept it from being made.
fn print(text: Result<String, String>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match text {
        Ok(text) => {
            let _ = write!(out, "{text}");
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(err, "graylane: internal error: {e}");
            EXIT_INTERNAL
        }
    }
}

/// Path of the committed copy of the rollout plan's schema.
pub const ROLLOUT_COMMITTED_PATH: &str = "envoy/rollout.schema.json";

/// `graylane schema rollout`.
pub fn run_rollout(out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    print(rollout_schema_text(), out, err)
}

/// The rollout plan's schema as printed (pretty JSON, final newline).
pub fn rollout_schema_text() -> Result<String, String> {
    let mut v = crate::rollout::plan::schema();
    strip_null(&mut v);
    serde_json::to_string_pretty(&v)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// Path of the committed copy of the mesh description's schema.
pub const ISTIO_COMMITTED_PATH: &str = "envoy/istio-mesh.schema.json";

/// `graylane schema istio`.
pub fn run_istio(out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    print(istio_schema_text(), out, err)
}

/// The mesh description's schema as printed (pretty JSON, final newline).
pub fn istio_schema_text() -> Result<String, String> {
    let mut v = crate::istio::schema();
    strip_null(&mut v);
    serde_json::to_string_pretty(&v)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// The schema as printed by `graylane schema` (pretty JSON, final newline).
pub fn schema_text() -> Result<String, String> {
    let v = schema()?;
    serde_json::to_string_pretty(&v)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// The schema as schemars derives it, before [`schema`] refines it.
pub fn derived() -> Value {
    schemars::schema_for!(RawConfig).to_value()
}

/// The JSON Schema (draft 2020-12) of the plugin configuration.
pub fn schema() -> Result<Value, String> {
    let mut v = derived();
    strip_null(&mut v);
    refine(&mut v)?;
    rename_defs(&mut v)?;
    Ok(v)
}

/// Optional fields: `T` instead of `T or null`, and no `"default": null`.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("default").is_some_and(Value::is_null) {
                map.remove("default");
            }
            if let Some(Value::Array(types)) = map.get("type") {
                let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                if rest.len() != types.len() {
                    let single = match rest.as_slice() {
                        [one] => one.clone(),
                        _ => Value::Array(rest),
                    };
                    map.insert("type".into(), single);
                }
            }
            if let Some(Value::Array(any)) = map.get("anyOf") {
                let rest: Vec<&Value> = any
                    .iter()
                    .filter(|s| **s != json!({"type": "null"}))
                    .collect();
                if let ([Value::Object(only)], true) = (rest.as_slice(), rest.len() != any.len()) {
                    let only = only.clone();
                    map.remove("anyOf");
                    for (k, val) in only {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(list) => list.iter_mut().for_each(strip_null),
        _ => {}
    }
}

fn missing(pointer: &str) -> String {
    format!(
        "the derived schema has no {pointer}: the config structs changed, update src/cli/schema.rs"
    )
}

fn object<'v>(v: &'v mut Value, pointer: &str) -> Result<&'v mut Map<String, Value>, String> {
    v.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| missing(pointer))
}

/// Merges `extra` into the object at `pointer`.
fn extend(v: &mut Value, pointer: &str, extra: Value) -> Result<(), String> {
    let target = object(v, pointer)?;
    if let Value::Object(extra) = extra {
        target.extend(extra);
    }
    Ok(())
}

/// A regex character class of letters, digits and `symbols` (none of them
/// `\`, `]`; `-` is put last, `^` never first).
fn char_class(symbols: &str) -> String {
    let (dash, rest): (String, String) = symbols.chars().partition(|&c| c == '-');
    format!("[A-Za-z0-9{rest}{dash}]")
}

const STRUCTURAL: [&str; 3] = ["all", "any", "not"];
const ATTRIBUTES: [&str; 7] = [
    "header", "cookie", "query", "path", "method", "host", "baggage",
];
const OPERATORS: [&str; 8] = [
    "exact", "prefix", "suffix", "contains", "regex", "in", "present", "range",
];

fn one_of_required(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({"required": [n]})).collect())
}

/// Lane names (docs/configuration.md "Top level").
const LANE_NAME: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";

fn refine(v: &mut Value) -> Result<(), String> {
    // The characters the filter checks header names and baggage keys by.
    let token = format!("^{}+$", char_class(TOKEN_SYMBOLS));
    let baggage_key = format!("^{}+$", char_class(&baggage_key_symbols().to_string()));

    extend(
        v,
        "",
        json!({
            "title": "graylane plugin configuration",
            "description": "The JSON configuration of the graylane proxy-wasm filter: Istio WasmPlugin spec.pluginConfig, or the JSON text of the plugin configuration in Envoy. Generated by `graylane schema`; do not edit by hand.",
        }),
    )?;
    // `lanes` and `propagate` together name at least one lane.
    extend(
        v,
        "",
        json!({"anyOf": [
            {"required": ["lanes"], "properties": {"lanes": {"minItems": 1}}},
            {"required": ["propagate"], "properties": {"propagate": {"minItems": 1}}},
        ]}),
    )?;
    extend(
        v,
        "/properties/propagate",
        json!({"default": [], "uniqueItems": true, "items": {"pattern": LANE_NAME, "not": {"const": "base"}}}),
    )?;
    extend(v, "/properties/incoming", json!({"default": "ignore"}))?;
    extend(v, "/properties/laneHeader", json!({"pattern": token}))?;
    extend(v, "/properties/clusterHeader", json!({"pattern": token}))?;
    extend(v, "/properties/baggageKey", json!({"pattern": baggage_key}))?;
    extend(
        v,
        "/properties/services",
        json!({"default": {}, "propertyNames": {"pattern": "^[^:/]+$"}}),
    )?;

    extend(
        v,
        "/$defs/RawShadow/properties/hostSuffix",
        json!({"minLength": 1}),
    )?;
    extend(
        v,
        "/$defs/RawShadow/properties/baggageKey",
        json!({"pattern": baggage_key}),
    )?;

    extend(
        v,
        "/$defs/RawService/properties/base",
        json!({"minLength": 1}),
    )?;
    extend(
        v,
        "/$defs/RawService/properties/lanes",
        json!({"additionalProperties": {"type": "string", "minLength": 1}}),
    )?;

    extend(
        v,
        "/$defs/RawContinuity/properties/from",
        json!({"minItems": 1, "maxItems": 8, "uniqueItems": true, "items": {"pattern": token}}),
    )?;
    extend(
        v,
        "/$defs/RawContinuity/properties/ttl",
        json!({"pattern": "^[0-9]+(ms|s|m|h)$"}),
    )?;
    extend(
        v,
        "/$defs/RawContinuity/properties/slots",
        json!({"minimum": crate::continuity::MIN_SLOTS, "maximum": crate::continuity::MAX_SLOTS}),
    )?;
    extend(
        v,
        "/$defs/RawContinuity/properties/side",
        json!({"enum": ["inbound", "outbound"]}),
    )?;

    extend(
        v,
        "/$defs/RawLane/properties/name",
        json!({"pattern": LANE_NAME, "not": {"const": "base"}}),
    )?;

    refine_condition(v, &baggage_key)?;

    extend(
        v,
        "/$defs/RawSplit/properties/percent",
        json!({"minimum": 0, "maximum": 100}),
    )?;
    extend(
        v,
        "/$defs/RawSplit/properties/buckets",
        json!({"minItems": 1, "items": {"type": "string", "pattern": r"^\s*[0-9]{1,4}\s*(-\s*[0-9]{1,4}\s*)?$"}}),
    )?;
    extend(
        v,
        "/$defs/RawSplit/properties/onMissingKey",
        json!({"default": "random"}),
    )?;
    extend(
        v,
        "/$defs/RawSplit",
        json!({"oneOf": one_of_required(&["percent", "buckets"])}),
    )?;

    extend(
        v,
        "/$defs/RawSplitKey/properties/header",
        json!({"pattern": format!("^:?{}+$", char_class(TOKEN_SYMBOLS))}),
    )?;
    extend(
        v,
        "/$defs/RawSplitKey/properties/cookie",
        json!({"minLength": 1}),
    )?;
    extend(
        v,
        "/$defs/RawSplitKey/properties/query",
        json!({"minLength": 1}),
    )?;
    extend(
        v,
        "/$defs/RawSplitKey",
        json!({
            "oneOf": one_of_required(&["header", "cookie", "query"]),
            "if": {"properties": {"assign": {"const": true}}, "required": ["assign"]},
            "then": {"required": ["cookie"]},
            "dependentSchemas": {"maxAge": {"properties": {"assign": {"const": true}}, "required": ["assign"]}},
        }),
    )?;

    extend(
        v,
        "/$defs/RawRange/properties/min",
        json!({"description": "Smallest accepted value (inclusive); absent = no lower bound."}),
    )?;
    extend(
        v,
        "/$defs/RawRange/properties/max",
        json!({"description": "Largest accepted value (inclusive); absent = no upper bound."}),
    )?;

    let on_missing = object(v, "/$defs/OnMissingKey")?;
    if on_missing.get("enum") != Some(&json!(["random", "exclude"])) {
        return Err(missing("/$defs/OnMissingKey/enum [random, exclude]"));
    }
    on_missing.remove("enum");
    on_missing.remove("type");
    on_missing.insert(
        "oneOf".into(),
        json!([
            {"const": "random", "type": "string", "description": "Admit the same share at random, per request (anonymous users)."},
            {"const": "exclude", "type": "string", "description": "Never admit a request without the key."},
        ]),
    );
    Ok(())
}

/// A condition is exactly one of `all`, `any`, `not`, or a leaf with one
/// attribute and one operator.
fn refine_condition(v: &mut Value, baggage_key: &str) -> Result<(), String> {
    let props = object(v, "/$defs/RawCondition/properties")?;
    let mut known: Vec<&str> = STRUCTURAL
        .iter()
        .chain(&ATTRIBUTES)
        .chain(&OPERATORS)
        .copied()
        .collect();
    known.push("ignoreCase");
    known.sort_unstable();
    let mut found: Vec<&str> = props.keys().map(String::as_str).collect();
    found.sort_unstable();
    if known != found {
        return Err(format!(
            "RawCondition fields are {found:?}, src/cli/schema.rs knows {known:?}: classify the new field there"
        ));
    }
    let p = "/$defs/RawCondition/properties";
    extend(v, &format!("{p}/any"), json!({"minItems": 1}))?;
    extend(v, &format!("{p}/in"), json!({"minItems": 1}))?;
    for flag in ["path", "method", "host"] {
        extend(v, &format!("{p}/{flag}"), json!({"const": true}))?;
    }
    extend(
        v,
        &format!("{p}/header"),
        json!({"pattern": format!("^:?{}+$", char_class(TOKEN_SYMBOLS))}),
    )?;
    extend(v, &format!("{p}/cookie"), json!({"minLength": 1}))?;
    extend(v, &format!("{p}/query"), json!({"minLength": 1}))?;
    extend(v, &format!("{p}/baggage"), json!({"pattern": baggage_key}))?;

    let structural: Vec<Value> = STRUCTURAL
        .iter()
        .map(|k| json!({"required": [k], "maxProperties": 1}))
        .collect();
    let leaf = json!({
        "allOf": [
            {"oneOf": one_of_required(&ATTRIBUTES)},
            {"oneOf": one_of_required(&OPERATORS)},
            {"not": {"anyOf": one_of_required(&STRUCTURAL)}},
            {"not": {"required": ["ignoreCase"], "anyOf": one_of_required(&["present", "range"])}},
        ]
    });
    let mut branches = structural;
    branches.push(leaf);
    extend(v, "/$defs/RawCondition", json!({"oneOf": branches}))
}

/// `RawLane` -> `Lane` and so on: the schema speaks of the JSON, not of
/// the Rust structs.
fn rename_defs(v: &mut Value) -> Result<(), String> {
    let defs = object(v, "/$defs")?;
    let old: Vec<String> = defs
        .keys()
        .filter(|k| k.starts_with("Raw"))
        .cloned()
        .collect();
    for name in &old {
        if let Some(def) = defs.remove(name) {
            defs.insert(name.trim_start_matches("Raw").to_string(), def);
        }
    }
    fix_refs(v, &old);
    Ok(())
}

fn fix_refs(v: &mut Value, old: &[String]) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "$ref" {
                    if let Value::String(r) = val {
                        if let Some(name) = r
                            .strip_prefix("#/$defs/")
                            .filter(|n| old.iter().any(|o| o == n))
                        {
                            *r = format!("#/$defs/{}", name.trim_start_matches("Raw"));
                        }
                    }
                } else {
                    fix_refs(val, old);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|x| fix_refs(x, old)),
        _ => {}
    }
}
