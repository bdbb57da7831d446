//! The graylane playground's engine side: `check`, `explain` and `buckets`
//! for the page (`index.html`, `app.js`), compiled to
//! `wasm32-unknown-unknown` with wasm-bindgen. Each function takes the
//! config text (plugin JSON, WasmPlugin YAML or JSON, or an Envoy
//! configuration) and returns JSON text. The texts are the ones
//! `graylane check` and `graylane explain` print, from the same code
//! (`graylane::report`), and the decision is the filter's engine.
//!
//! The request argument is JSON: `{"headers": [["name", "value"], ...],
//! "random": N, "plugin": "NAME", "remembered": "LANE"}`, where
//! `remembered` (optional) is the lane a sidecar remembered for the
//! request's trace (`graylane explain --remembered`), `random` (optional) fixes every
//! random draw like `graylane explain --random N`, and `plugin` (optional)
//! chooses one of several plugin configurations (default: the first).

use graylane::config::Config;
use graylane::engine::HeaderList;
use graylane::report::input::{self, InputError};
use graylane::report::{buckets as bucket_space, check as checking, explain as explaining};
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;

/// `graylane check` on the config text: `{"valid", "text", "plugins":
/// [{"name", "valid", "errors": [{"path", "message"}], "warnings": [{"kind",
/// "path", "message", "lane"?, "shadowedBy"?}], "lanes", "services"}]}`.
#[wasm_bindgen]
pub fn check(config: &str) -> String {
    check_value(config).to_string()
}

/// `graylane explain` of the request against the config text: `{"plugin",
/// "plugins", "error", "text", "report"}`; `report` is what
/// `graylane explain --json` prints, `text` what it prints without `--json`.
#[wasm_bindgen]
pub fn explain(config: &str, request: &str) -> String {
    explain_value(config, request).to_string()
}

/// The bucket space of the config, with the request's bucket on each split
/// lane: `{"plugin", "error", "bars": [{"salt", "lanes", "overlaps"}]}`.
#[wasm_bindgen]
pub fn buckets(config: &str, request: &str) -> String {
    buckets_value(config, request).to_string()
}

fn input_message(e: InputError) -> String {
    match e {
        InputError::Invalid(m) | InputError::Unreadable(m) => m,
    }
}

/// See [`check`].
pub fn check_value(config: &str) -> Value {
    match checking::check_all(config.as_bytes()) {
        Ok(all) => json!({
            "valid": all.iter().all(|c| c.result.is_ok()),
            "text": checking::all_text(&all),
            "plugins": all.iter().map(checking::to_json).collect::<Vec<_>>(),
        }),
        Err(e) => {
            let message = input_message(e);
            json!({
                "valid": false,
                "text": checking::input_error_text("config", &message),
                "plugins": [{
                    "name": null,
                    "valid": false,
                    "errors": [{"path": "", "message": message}],
                    "warnings": [],
                    "lanes": null,
                    "services": null,
                }],
            })
        }
    }
}

/// The request of the page, and the plugin configuration it is decided by.
struct Case {
    plugin: Option<String>,
    plugins: Vec<Option<String>>,
    config: Result<Config, String>,
    request: HeaderList,
    random: Option<u64>,
    /// With `continuity`: the lane remembered for the request's trace
    /// (`graylane explain --remembered`).
    remembered: Option<String>,
}

fn case(config: &str, request: &str) -> Result<Case, String> {
    let request: Value =
        serde_json::from_str(request).map_err(|e| format!("the request is not JSON: {e}"))?;
    let pairs: Vec<(&str, &str)> = request
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([name, value]) => Some((name.as_str()?, value.as_str()?)),
            _ => None,
        })
        .collect();
    let random = request.get("random").and_then(Value::as_u64);
    let remembered = request
        .get("remembered")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .map(str::to_string);
    let wanted = request.get("plugin").and_then(Value::as_str);
    let docs =
        input::parse(config.as_bytes()).map_err(|e| format!("error: {}", input_message(e)))?;
    let plugins: Vec<Option<String>> = docs.iter().map(|d| d.name.clone()).collect();
    let doc = docs
        .iter()
        .find(|d| wanted.is_some() && d.name.as_deref() == wanted)
        .or_else(|| docs.first())
        .ok_or("error: no plugin configuration")?;
    Ok(Case {
        plugin: doc.name.clone(),
        plugins,
        config: Config::from_json(&doc.json).map_err(|e| format!("error: {e}")),
        request: explaining::request(pairs),
        random,
        remembered,
    })
}

/// See [`explain`].
pub fn explain_value(config: &str, request: &str) -> Value {
    let c = match case(config, request) {
        Ok(c) => c,
        Err(error) => return json!({"error": error, "text": null, "report": null}),
    };
    match &c.config {
        Ok(config) => {
            let report = explaining::explain_remembered(
                config,
                &c.request,
                c.random,
                c.remembered.as_deref(),
            );
            json!({
                "plugin": c.plugin,
                "plugins": c.plugins,
                "error": report.disagreement.as_ref().map(|d| format!("internal error: {d}")),
                "text": report.to_text(),
                "report": report.to_json(),
            })
        }
        Err(error) => json!({
            "plugin": c.plugin,
            "plugins": c.plugins,
            "error": error,
            "text": null,
            "report": null,
        }),
    }
}

/// See [`buckets`].
pub fn buckets_value(config: &str, request: &str) -> Value {
    let c = match case(config, request) {
        Ok(c) => c,
        Err(error) => return json!({"error": error, "bars": []}),
    };
    match &c.config {
        Ok(config) => {
            let report = explaining::explain(config, &c.request, c.random);
            let bars = bucket_space::buckets(config, Some((&c.request, &report)));
            json!({"plugin": c.plugin, "error": null, "bars": bucket_space::to_json(&bars)})
        }
        Err(error) => json!({"plugin": c.plugin, "error": error, "bars": []}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: edge}\n\
        spec:\n  pluginConfig:\n    lanes:\n    - name: beta\n      priority: 1\n      match: {header: x-beta, exact: \"1\"}\n\
        \x20   - name: gray\n      split: {key: {header: x-user}, buckets: [\"0-4999\"]}\n";

    #[test]
    fn the_three_calls_on_a_wasm_plugin() {
        let checked: Value = serde_json::from_str(&check(YAML)).unwrap();
        assert_eq!(checked["valid"], true);
        assert_eq!(checked["text"], "ok: 2 lanes, 0 services\n");
        let req = r#"{"headers": [[":path", "/"], ["X-Beta", "1"]]}"#;
        let out: Value = serde_json::from_str(&explain(YAML, req)).unwrap();
        assert_eq!(out["plugin"], "edge");
        assert_eq!(out["report"]["lane"], "beta");
        assert_eq!(out["report"]["source"], "rule");
        assert!(out["text"]
            .as_str()
            .unwrap()
            .starts_with("lane: beta\nsource: rule\n"));
        let bars: Value = serde_json::from_str(&buckets(YAML, req)).unwrap();
        assert_eq!(bars["bars"][0]["salt"], "gray");
        assert_eq!(bars["bars"][0]["lanes"][0]["request"], Value::Null);
    }

    #[test]
    fn a_remembered_lane_is_continued() {
        let config = r#"{"incoming": "trust", "propagate": ["gray"], "continuity": {}}"#;
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let req = format!(r#"{{"headers": [["traceparent", "{tp}"]], "remembered": "gray"}}"#);
        let out: Value = serde_json::from_str(&explain(config, &req)).unwrap();
        assert_eq!(out["report"]["lane"], "gray");
        assert_eq!(out["report"]["source"], "continued");
        assert_eq!(
            out["report"]["continuity"],
            "continued from trace 4bf92f3577b34da6a3ce929d0e0e4736 (remembered lane gray)"
        );
        let req = format!(r#"{{"headers": [["traceparent", "{tp}"]]}}"#);
        let out: Value = serde_json::from_str(&explain(config, &req)).unwrap();
        assert_eq!(out["report"]["source"], "default");
        assert!(out["text"]
            .as_str()
            .unwrap()
            .contains("continuity: inbound: remembers trace"));
    }

    #[test]
    fn errors_name_their_path() {
        let bad = r#"{"lanes": [{"name": "gray", "split": {"percent": 101}}]}"#;
        let checked: Value = serde_json::from_str(&check(bad)).unwrap();
        assert_eq!(checked["valid"], false);
        assert_eq!(
            checked["plugins"][0]["errors"][0]["path"],
            "lanes[0].split.percent"
        );
        let out: Value = serde_json::from_str(&explain(bad, "{}")).unwrap();
        assert!(out["error"]
            .as_str()
            .unwrap()
            .starts_with("error: lanes[0].split.percent: "));
        let not_config: Value = serde_json::from_str(&check("kind: Service\n")).unwrap();
        assert_eq!(not_config["valid"], false);
    }
}
