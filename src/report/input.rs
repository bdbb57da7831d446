//! Reading a configuration file: the plugin JSON itself; Istio `WasmPlugin`
//! manifests (YAML or JSON, one or several documents, or a `kind: List`)
//! whose `spec.pluginConfig` is the plugin JSON; or an Envoy configuration
//! whose wasm filters carry it as a `google.protobuf.StringValue`.
//! Shared by `graylane check` / `explain` and the browser playground.

use serde_json::Value;
use std::path::Path;

/// One plugin configuration found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `metadata.name` of the `WasmPlugin`, or the `name` of the Envoy wasm
    /// plugin, it came from (`None`: a plain configuration).
    pub name: Option<String>,
    /// The JSON text handed to `Config::from_json`, as the filter would get it.
    pub json: Vec<u8>,
    /// Where an Envoy wasm filter stands: the names of the listener, virtual
    /// host and route around it, outermost first (empty elsewhere).
    pub place: Vec<String>,
}

/// Why a file yields no configuration to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The file cannot be read (exit 2).
    Unreadable(String),
    /// The file is read but is not a configuration (exit 1).
    Invalid(String),
}

const WASM_PLUGIN: &str = "WasmPlugin";

/// Reads `path` and returns every plugin configuration in it.
pub fn load(path: &Path) -> Result<Vec<Document>, InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::Unreadable(format!("cannot read {}: {e}", path.display())))?;
    parse(&bytes)
}

/// Splits file contents into plugin configurations (see [`load`]).
pub fn parse(bytes: &[u8]) -> Result<Vec<Document>, InputError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        // The filter's own parser says what an empty configuration lacks.
        return Ok(vec![Document {
            name: None,
            json: bytes.to_vec(),
            place: Vec::new(),
        }]);
    }
    if first == Some(&b'{') {
        // JSON. Hand the text itself to the parser so that its errors keep
        // their JSON paths, unless it is a Kubernetes object.
        if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
            let mut docs = Vec::new();
            collect(&value, &mut docs)?;
            if !docs.is_empty() {
                return Ok(docs);
            }
        }
        return Ok(vec![Document {
            name: None,
            json: bytes.to_vec(),
            place: Vec::new(),
        }]);
    }
    let values = crate::config::de::documents(bytes).map_err(InputError::Invalid)?;
    let mut docs = Vec::new();
    for value in &values {
        collect(value, &mut docs)?;
    }
    if !docs.is_empty() {
        return Ok(docs);
    }
    // A plain configuration written in YAML.
    match values.as_slice() {
        [value] if value.get("kind").is_none() && value.is_object() => Ok(vec![Document {
            name: None,
            json: to_json(value)?,
            place: Vec::new(),
        }]),
        [] => Err(InputError::Invalid("the YAML file has no document".into())),
        _ => Err(InputError::Invalid(format!(
            "no {WASM_PLUGIN} and no Envoy wasm plugin configuration found; give the plugin JSON, \
             Istio {WASM_PLUGIN} manifests or an Envoy configuration"
        ))),
    }
}

fn to_json(value: &Value) -> Result<Vec<u8>, InputError> {
    serde_json::to_vec(value)
        .map_err(|e| InputError::Invalid(format!("cannot convert to JSON: {e}")))
}

/// Adds the plugin configurations in one document: `WasmPlugin` objects
/// (itself, or the items of a List), else Envoy wasm plugin configurations.
fn collect(value: &Value, docs: &mut Vec<Document>) -> Result<(), InputError> {
    let before = docs.len();
    collect_wasm_plugins(value, docs)?;
    if docs.len() == before && value.get("kind").is_none() {
        collect_envoy(value, &mut Vec::new(), docs);
    }
    Ok(())
}

/// An Envoy `PluginConfig` (`name`, `root_id`, `vm_config`, `configuration`)
/// whose configuration is a `StringValue`: the JSON text the plugin gets.
fn collect_envoy(value: &Value, place: &mut Vec<String>, docs: &mut Vec<Document>) {
    match value {
        Value::Object(map) => {
            let text = map
                .get("configuration")
                .filter(|c| {
                    c.get("@type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.ends_with("google.protobuf.StringValue"))
                })
                .filter(|_| map.contains_key("vm_config") || map.contains_key("vmConfig"))
                .map(|c| c.get("value").and_then(Value::as_str).unwrap_or_default());
            if let Some(text) = text {
                let name = ["name", "root_id", "rootId"]
                    .iter()
                    .find_map(|k| {
                        map.get(*k)
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                    })
                    .map_or_else(|| format!("#{}", docs.len() + 1), str::to_owned);
                docs.push(Document {
                    name: Some(name),
                    json: text.as_bytes().to_vec(),
                    place: place.clone(),
                });
                return;
            }
            // A listener (filter chains or an address), a virtual host
            // (domains) or a route (match): a named step of the place.
            let step = ["filter_chains", "address", "domains", "match"]
                .iter()
                .any(|k| map.contains_key(*k))
                .then(|| map.get("name").and_then(Value::as_str))
                .flatten();
            if let Some(step) = step {
                place.push(step.to_string());
            }
            map.values().for_each(|v| collect_envoy(v, place, docs));
            if step.is_some() {
                place.pop();
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_envoy(v, place, docs)),
        _ => {}
    }
}

/// What names each configuration on `check`'s lines, and what `--plugin`
/// takes to choose it: its name when no other has that name, else its
/// place and name (`LISTENER/NAME`, `LISTENER/VHOST/ROUTE/NAME`) when that
/// is unique, else its position (`#2`, counting from 1 in file order).
pub fn labels(docs: &[Document]) -> Vec<String> {
    let full = |d: &Document| {
        let mut steps = d.place.clone();
        steps.push(d.name.clone().unwrap_or_default());
        steps.join("/")
    };
    let count =
        |f: &dyn Fn(&Document) -> String, v: &str| docs.iter().filter(|d| f(d) == v).count();
    let name = |d: &Document| d.name.clone().unwrap_or_default();
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let n = name(d);
            if !n.is_empty() && count(&name, &n) == 1 {
                return n;
            }
            let f = full(d);
            if !d.place.is_empty() && count(&full, &f) == 1 {
                f
            } else {
                format!("#{}", i + 1)
            }
        })
        .collect()
}

/// The configuration `wanted` chooses (see [`labels`]): a position (`2` or
/// `#2`), a name, or a place and name, whole or its last steps
/// (`gateway/graylane`). An error when nothing or more than one matches;
/// it lists what there is.
pub fn select<'d>(docs: &'d [Document], wanted: &str) -> Result<&'d Document, String> {
    let listing = || {
        labels(docs)
            .iter()
            .zip(docs)
            .enumerate()
            .map(|(i, (label, d))| {
                let mut steps = d.place.clone();
                steps.push(d.name.clone().unwrap_or_default());
                format!("#{} {label} ({})", i + 1, steps.join("/"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Ok(n) = wanted.strip_prefix('#').unwrap_or(wanted).parse::<usize>() {
        return n
            .checked_sub(1)
            .and_then(|i| docs.get(i))
            .ok_or_else(|| format!("no plugin #{n} in CONFIG (found: {})", listing()));
    }
    let want: Vec<&str> = wanted.split('/').collect();
    let matches: Vec<&Document> = docs
        .iter()
        .filter(|d| {
            let mut steps: Vec<&str> = d.place.iter().map(String::as_str).collect();
            steps.push(d.name.as_deref().unwrap_or_default());
            steps.ends_with(&want)
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no plugin named {wanted:?} in CONFIG (found: {})",
            listing()
        )),
        _ => Err(format!(
            "{} plugins match {wanted:?}; choose one by position or by LISTENER/NAME (found: {})",
            matches.len(),
            listing()
        )),
    }
}

fn collect_wasm_plugins(value: &Value, docs: &mut Vec<Document>) -> Result<(), InputError> {
    match value.get("kind").and_then(Value::as_str) {
        Some(WASM_PLUGIN) => {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{}", docs.len() + 1), str::to_owned);
            // An absent pluginConfig reaches the filter as an empty configuration.
            let json = match value.pointer("/spec/pluginConfig") {
                Some(config) => to_json(config)?,
                None => Vec::new(),
            };
            docs.push(Document {
                name: Some(name),
                json,
                place: Vec::new(),
            });
        }
        Some(kind) if kind.ends_with("List") => {
            for item in value
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                collect_wasm_plugins(item, docs)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two listeners, each with a wasm filter named `graylane`, and a third
    /// `graylane` in the same listener as the second.
    const SAME_NAMES: &str = r#"
static_resources:
  listeners:
  - name: edge
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: graylane
            typed_config:
              config:
                name: graylane
                vm_config: { runtime: envoy.wasm.runtime.v8 }
                configuration: { "@type": type.googleapis.com/google.protobuf.StringValue, value: '{"lanes": [{"name": "a"}]}' }
  - name: hop
    address: { socket_address: { address: 127.0.0.1, port_value: 2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: graylane
            typed_config:
              config:
                name: graylane
                vm_config: { runtime: envoy.wasm.runtime.v8 }
                configuration: { "@type": type.googleapis.com/google.protobuf.StringValue, value: '{"lanes": [{"name": "b"}]}' }
          - name: graylane
            typed_config:
              config:
                name: graylane
                vm_config: { runtime: envoy.wasm.runtime.v8 }
                configuration: { "@type": type.googleapis.com/google.protobuf.StringValue, value: '{"lanes": [{"name": "c"}]}' }
"#;

    #[test]
    fn filters_of_one_name_are_told_apart_by_place_or_position() {
        let docs = parse(SAME_NAMES.as_bytes()).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].place, ["edge"]);
        assert_eq!(labels(&docs), ["edge/graylane", "#2", "#3"]);
        let lanes = |d: &Document| String::from_utf8(d.json.clone()).unwrap();
        assert!(lanes(select(&docs, "edge/graylane").unwrap()).contains("\"a\""));
        assert!(lanes(select(&docs, "#3").unwrap()).contains("\"c\""));
        assert!(lanes(select(&docs, "2").unwrap()).contains("\"b\""));
        let e = select(&docs, "graylane").unwrap_err();
        assert!(e.starts_with("3 plugins match \"graylane\""), "{e}");
        assert!(e.contains("#1 edge/graylane (edge/graylane)"), "{e}");
        assert!(select(&docs, "hop/graylane")
            .unwrap_err()
            .starts_with("2 plugins"));
        assert!(select(&docs, "#4").is_err());
        assert!(select(&docs, "other")
            .unwrap_err()
            .starts_with("no plugin named"));
        // Unique names stay the labels.
        let two = parse(
            b"kind: WasmPlugin\nmetadata: {name: edge}\n---\nkind: WasmPlugin\nmetadata: {name: hop}\n",
        )
        .unwrap();
        assert_eq!(labels(&two), ["edge", "hop"]);
        assert_eq!(select(&two, "hop").unwrap().name.as_deref(), Some("hop"));
    }

    #[test]
    fn plain_json_is_kept_verbatim() {
        let text = b"  {\"lanes\": [ ] }";
        let docs = parse(text).unwrap();
        assert_eq!(
            docs,
            vec![Document {
                name: None,
                json: text.to_vec(),
                place: Vec::new(),
            }]
        );
    }

    #[test]
    fn invalid_json_is_passed_on_for_the_config_parser_to_report() {
        let docs = parse(b"{\"lanes\": [").unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn multi_document_yaml_keeps_wasm_plugins_only() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n\
            apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: edge\n\
            spec:\n  pluginConfig:\n    lanes:\n    - name: gray\n      priority: 10\n---\n\
            kind: WasmPlugin\nmetadata: {name: hop}\nspec: {}\n---\n";
        let docs = parse(text.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].name.as_deref(), Some("edge"));
        let v: Value = serde_json::from_slice(&docs[0].json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"lanes": [{"name": "gray", "priority": 10}]})
        );
        assert_eq!(docs[1].name.as_deref(), Some("hop"));
        assert!(docs[1].json.is_empty());
    }

    #[test]
    fn list_and_json_manifests() {
        let text = r#"{"kind": "List", "items": [{"kind": "WasmPlugin", "metadata": {"name": "a"},
            "spec": {"pluginConfig": {"lanes": []}}}]}"#;
        let docs = parse(text.as_bytes()).unwrap();
        assert_eq!(
            docs,
            vec![Document {
                name: Some("a".into()),
                json: b"{\"lanes\":[]}".to_vec(),
                place: Vec::new(),
            }]
        );
    }

    #[test]
    fn envoy_configuration() {
        let text = "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n\
            \x20         http_filters:\n          - name: graylane\n            typed_config:\n\
            \x20             config:\n                name: edge\n                vm_config: {runtime: v8}\n\
            \x20               configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n\
            \x20                 value: |\n                    {\"lanes\": []}\n";
        let docs = parse(text.as_bytes()).unwrap();
        assert_eq!(
            docs,
            vec![Document {
                name: Some("edge".into()),
                json: b"{\"lanes\": []}\n".to_vec(),
                place: Vec::new(),
            }]
        );
    }

    #[test]
    fn yaml_without_plugin() {
        assert!(matches!(
            parse(b"kind: Service\n---\nkind: Deployment\n"),
            Err(InputError::Invalid(_))
        ));
        assert!(matches!(parse(b"a: [\n"), Err(InputError::Invalid(_))));
        assert!(matches!(parse(b"---\n"), Err(InputError::Invalid(_))));
        assert_eq!(parse(b" \n").unwrap()[0].json, b" \n".to_vec());
        let docs = parse(b"lanes:\n- name: gray\n").unwrap();
        assert_eq!(docs[0].name, None);
    }
}
