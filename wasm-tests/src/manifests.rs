//! Kubernetes manifests as the tests read them: the objects of a directory
//! the way `kubectl apply -f DIR` applies them, and a YAML value written as
//! the JSON text a control plane hands the filter.
//!
//! Two control planes, two renderings of the same YAML (both compact, keys
//! sorted byte by byte, strings and floats as Go's `encoding/json` writes
//! them):
//! - [`jsonpb_struct_json`]: Istio's `WasmPlugin.spec.pluginConfig`, a
//!   `google.protobuf.Struct` written by jsonpb: every number is a double,
//!   so integers past 2^53 round;
//! - [`apiextensions_json`]: Envoy Gateway's `apiextensionsv1.JSON`, kept by
//!   the API server as unstructured JSON: integers are int64 and stay exact,
//!   other numbers (and integers past int64) are float64.

use crate::harness::repo_root;
use serde::Deserialize;
use serde_norway::Value as Yaml;
use std::fmt::Write as _;
use std::path::Path;

/// One Kubernetes object of a manifest file.
#[derive(Clone)]
pub struct Object {
    /// The file it comes from, relative to the directory read.
    pub file: String,
    pub doc: Yaml,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("?")
    }

    pub fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    }

    /// `namespace/name (file)`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{} ({})", self.namespace(), self.name(), self.file)
    }

    pub fn spec(&self) -> &Yaml {
        &self.doc["spec"]
    }
}

/// Every object in the `*.yaml` / `*.yml` files of `dir` (not its
/// subdirectories: what `kubectl apply -f dir` applies), in file order;
/// each object's `file` is its path relative to `base`. Fails on a plain
/// YAML 1.1 boolean ([`assert_no_yaml11_booleans`]).
pub fn objects_in(dir: &Path, base: &Path) -> Vec<Object> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .display()
            .to_string();
        assert_no_yaml11_booleans(&file, &text);
        for de in serde_norway::Deserializer::from_str(&text) {
            let doc = Yaml::deserialize(de).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !doc.is_null() {
                objects.push(Object {
                    file: file.clone(),
                    doc,
                });
            }
        }
    }
    objects
}

/// [`objects_in`] a directory of the repository (`envoy/istio`, ...), files
/// named relative to it.
pub fn repo_objects(dir: &str) -> Vec<Object> {
    let dir = repo_root().join(dir);
    objects_in(&dir, &dir)
}

/// kubectl reads YAML with sigs.k8s.io/yaml, which follows YAML 1.1 there:
/// a plain (unquoted) `yes`, `no`, `on`, `off`, `y` or `n`, key or value, is
/// a boolean for it but a string for `serde_norway` (YAML 1.2), so the
/// control plane and the tests would read the manifest differently. Quoted,
/// they are strings for both.
pub fn assert_no_yaml11_booleans(file: &str, text: &str) {
    const YAML11_BOOLS: &[&str] = &["y", "yes", "n", "no", "on", "off"];
    for (n, line) in text.lines().enumerate() {
        let code = match line.find(" #") {
            _ if line.trim_start().starts_with('#') => "",
            Some(i) => &line[..i],
            None => line,
        };
        for token in code.split(|c: char| c.is_whitespace() || ",:[]{}".contains(c)) {
            assert!(
                !YAML11_BOOLS.contains(&token.to_ascii_lowercase().as_str()),
                "{file}:{}: plain `{token}` is a boolean for kubectl (YAML 1.1) and a string \
                 for the test (YAML 1.2): quote it",
                n + 1
            );
        }
    }
}

pub fn of_kind<'a>(objects: &'a [Object], kind: &str) -> Vec<&'a Object> {
    objects.iter().filter(|o| o.kind() == kind).collect()
}

/// YAML texts and the JSON text both renderings ([`jsonpb_struct_json`],
/// [`apiextensions_json`]) write for them, for the tests of each: sorted
/// keys, compact, integers without `.0`; Go's float format (exponent below
/// 1e-6 and from 1e21 on); Go's HTML-safe string escaping.
pub const RENDERED_ALIKE: &[(&str, &str)] = &[
    (
        "{name: gray, priority: 10, match: {header: location, exact: cn-shenzhen}}",
        r#"{"match":{"exact":"cn-shenzhen","header":"location"},"name":"gray","priority":10}"#,
    ),
    (
        "{percent: 12.5, list: [true, null, 0, -3, 1.0]}",
        r#"{"list":[true,null,0,-3,1],"percent":12.5}"#,
    ),
    (
        "[0.000001, 0.0000001, 1e20, 1e21, 2.5e-9]",
        "[0.000001,1e-7,100000000000000000000,1e+21,2.5e-9]",
    ),
    (
        r#"{"a<b": "x & \"y\" > z\t\u2028"}"#,
        r#"{"a\u003cb":"x \u0026 \"y\" \u003e z\t\u2028"}"#,
    ),
];

/// How a control plane keeps the numbers of a YAML value.
#[derive(Clone, Copy)]
enum Numbers {
    /// All float64 (a `google.protobuf.Struct`).
    Double,
    /// int64 when an integer fits, else float64 (Kubernetes unstructured JSON).
    Int64,
}

/// The JSON text Go's jsonpb writes for a `google.protobuf.Struct` made of
/// `value` (what the Kubernetes API server and Istio make of a
/// `WasmPlugin.spec.pluginConfig`): every number a double. `path` names the
/// value in failure messages.
pub fn jsonpb_struct_json(value: &Yaml, path: &str) -> String {
    let mut out = String::new();
    go_json(value, Numbers::Double, &mut out, path);
    out
}

/// The bytes of an `apiextensionsv1.JSON` field made of `value`, as a
/// client reads them from the API server (which keeps a custom resource as
/// unstructured JSON and writes it with Go's `encoding/json`): integers
/// exact as int64. `path` names the value in failure messages.
pub fn apiextensions_json(value: &Yaml, path: &str) -> String {
    let mut out = String::new();
    go_json(value, Numbers::Int64, &mut out, path);
    out
}

fn go_json(value: &Yaml, numbers: Numbers, out: &mut String, path: &str) {
    match value {
        Yaml::Null => out.push_str("null"),
        Yaml::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Yaml::Number(n) => match (numbers, n.as_i64()) {
            // int64 in the API server: exact.
            (Numbers::Int64, Some(i)) => write!(out, "{i}").unwrap(),
            // A Struct number is a double: integers past 2^53 lose
            // precision on the way, as they do in Istio. In unstructured
            // JSON: past int64, or not an integer.
            _ => {
                let f = n.as_f64().unwrap_or_else(|| panic!("{path}: number {n}"));
                go_float(f, out, path);
            }
        },
        Yaml::String(s) => go_string(s, out),
        Yaml::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, numbers, out, &format!("{path}[{i}]"));
            }
            out.push(']');
        }
        Yaml::Mapping(map) => {
            let mut entries: Vec<(&str, &Yaml)> = map
                .iter()
                .map(|(k, v)| {
                    let key = k
                        .as_str()
                        .unwrap_or_else(|| panic!("{path}: a key that is not a string: {k:?}"));
                    (key, v)
                })
                .collect();
            // Go compares strings byte by byte, as Rust does.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(key, out);
                out.push(':');
                go_json(v, numbers, out, &format!("{path}.{key}"));
            }
            out.push('}');
        }
        Yaml::Tagged(t) => panic!("{path}: YAML tag {} has no JSON form", t.tag),
    }
}

/// Go's `encoding/json` for a float64: the shortest text that reads back
/// the same, in exponent form below 1e-6 and from 1e21 on (`1e-7`, `1e+21`).
fn go_float(f: f64, out: &mut String, path: &str) {
    assert!(f.is_finite(), "{path}: {f} has no JSON form");
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1e21` and `1e-7`; Go `1e+21` and (after its cleanup
        // of `e-07`) `1e-7`.
        let text = format!("{f:e}");
        let (mantissa, exp) = text.split_once('e').unwrap();
        if exp.starts_with('-') {
            write!(out, "{mantissa}e{exp}").unwrap();
        } else {
            write!(out, "{mantissa}e+{exp}").unwrap();
        }
    } else {
        // Display is the shortest round-trip text without an exponent, and
        // no `.0` on integers: what Go's 'f' format with precision -1 gives.
        write!(out, "{f}").unwrap();
    }
}

/// Go's `json.Marshal` for a string: HTML-safe (`<`, `>`, `&` escaped) and
/// with U+2028 and U+2029 escaped.
fn go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                write!(out, "\\u{:04x}", u32::from(c)).unwrap();
            }
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}
