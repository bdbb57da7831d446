//! The text and the data of `graylane check`.

use super::input::{self, InputError};
use crate::config::lint;
use crate::config::{Config, ConfigErrors, Warning, WarningKind};
use crate::engine::LaneId;
use serde_json::{json, Value};

/// One plugin configuration of a config file, parsed and compiled.
#[derive(Debug)]
pub struct Checked {
    /// `WasmPlugin` `metadata.name` or Envoy plugin name; `None` for a plain
    /// plugin configuration.
    pub name: Option<String>,
    /// What names it on the lines of a file with several (see
    /// [`input::labels`]).
    pub label: String,
    pub result: Result<Config, ConfigErrors>,
}

/// Parses and compiles every plugin configuration in a config file's
/// contents (plugin JSON, WasmPlugin YAML or JSON, Envoy configuration).
/// `Err`: the contents hold no configuration at all.
pub fn check_all(bytes: &[u8]) -> Result<Vec<Checked>, InputError> {
    let docs = input::parse(bytes)?;
    let labels = input::labels(&docs);
    Ok(docs
        .into_iter()
        .zip(labels)
        .map(|(doc, label)| Checked {
            result: Config::from_json(&doc.json),
            name: doc.name,
            label,
        })
        .collect())
}

/// The prefix of each line: `LABEL: ` when the file has several
/// configurations (the label is what `explain --plugin` takes).
pub fn prefix(label: &str, labelled: bool) -> String {
    if labelled {
        format!("{label}: ")
    } else {
        String::new()
    }
}

/// The lines `graylane check` prints for one configuration: its warnings
/// and `ok`, or one line per error.
pub fn text(result: &Result<Config, ConfigErrors>, prefix: &str) -> String {
    let mut s = String::new();
    match result {
        Ok(config) => {
            for w in &config.warnings {
                s.push_str(&format!("{prefix}warning: {w}\n"));
            }
            s.push_str(&format!(
                "{prefix}ok: {}, {}\n",
                lint::counted(config.rules.lanes.len(), "lane"),
                lint::counted(config.services.len(), "service")
            ));
            if let Some(c) = &config.continuity {
                let from: Vec<&str> = c.from.iter().map(|h| h.name()).collect();
                let side = c
                    .side
                    .map_or("from the listener's direction", |s| s.as_str());
                s.push_str(&format!(
                    "{prefix}continuity: trace id from {}; ttl {} ms; {} slots; side {side}\n",
                    from.join(", "),
                    c.ttl_ms,
                    c.slots
                ));
            }
        }
        Err(errors) => {
            for e in errors {
                s.push_str(&format!("{prefix}error: {e}\n"));
            }
        }
    }
    s
}

/// The line for contents that hold no configuration; `origin` names them
/// (the file's path).
pub fn input_error_text(origin: &str, message: &str) -> String {
    format!("error: {origin}: {message}\n")
}

/// Everything `graylane check` prints for these configurations.
pub fn all_text(checked: &[Checked]) -> String {
    let labelled = checked.len() > 1;
    checked
        .iter()
        .map(|c| text(&c.result, &prefix(&c.label, labelled)))
        .collect()
}

/// `Shadowed` -> `shadowed`, `ZeroPercent` -> `zeroPercent`: the warning
/// kind as a JSON name.
fn kind_name(kind: WarningKind) -> String {
    let name = format!("{kind:?}");
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

/// For each lane that can never win, the first higher-ranked lane that
/// takes every request it admits (the pairs behind the `shadowed` warnings).
pub fn shadowed_by(config: &Config) -> Vec<(LaneId, LaneId)> {
    let rules = &config.rules;
    let mut out = Vec::new();
    for (rank, &low_id) in rules.order.iter().enumerate() {
        let Some(low) = rules.lanes.get(low_id) else {
            continue;
        };
        let high = rules.order.iter().take(rank).find(|&&high_id| {
            rules
                .lanes
                .get(high_id)
                .is_some_and(|high| lint::shadows(high, low))
        });
        if let Some(&high_id) = high {
            out.push((low_id, high_id));
        }
    }
    out
}

/// A warning as data: `kind`, `path`, `message`; a shadowed lane also
/// names itself (`lane`) and the lane that shadows it (`shadowedBy`).
pub fn warning_json(config: &Config, shadows: &[(LaneId, LaneId)], w: &Warning) -> Value {
    let mut v = json!({
        "kind": kind_name(w.kind),
        "path": w.path,
        "message": w.message,
    });
    if w.kind == WarningKind::Shadowed {
        let pair = shadows
            .iter()
            .find(|(low, _)| w.path == format!("lanes[{low}]"));
        if let (Some((low, high)), Some(map)) = (pair, v.as_object_mut()) {
            map.insert("lane".into(), json!(config.lane_name(Some(*low))));
            map.insert("shadowedBy".into(), json!(config.lane_name(Some(*high))));
        }
    }
    v
}

/// One checked configuration as data: `name`, `valid`, `errors` (`path`,
/// `message`), `warnings` (see [`warning_json`]), `lanes`, `services`.
pub fn to_json(checked: &Checked) -> Value {
    match &checked.result {
        Ok(config) => {
            let shadows = shadowed_by(config);
            let warnings: Vec<Value> = config
                .warnings
                .iter()
                .map(|w| warning_json(config, &shadows, w))
                .collect();
            json!({
                "name": checked.name,
                "valid": true,
                "errors": [],
                "warnings": warnings,
                "lanes": config.rules.lanes.len(),
                "services": config.services.len(),
            })
        }
        Err(errors) => json!({
            "name": checked.name,
            "valid": false,
            "errors": errors
                .iter()
                .map(|e| json!({"path": e.path, "message": e.message}))
                .collect::<Vec<_>>(),
            "warnings": [],
            "lanes": null,
            "services": null,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_data_of_a_shadowed_lane() {
        let json = br#"{"lanes": [
            {"name": "all", "priority": 1},
            {"name": "beta", "priority": 5, "match": {"header": "x-beta", "exact": "1"}}]}"#;
        let checked = check_all(json).unwrap();
        let text = all_text(&checked);
        assert!(text.starts_with("warning: lanes[1]: lane \"beta\" can never win"));
        assert!(text.ends_with("ok: 2 lanes, 0 services\n"));
        let data = to_json(&checked[0]);
        assert_eq!(data["valid"], true);
        assert_eq!(data["warnings"][0]["kind"], "shadowed");
        assert_eq!(data["warnings"][0]["lane"], "beta");
        assert_eq!(data["warnings"][0]["shadowedBy"], "all");
    }

    #[test]
    fn errors_keep_their_path_and_several_plugins_are_labelled() {
        let yaml = "kind: WasmPlugin\nmetadata: {name: edge}\nspec:\n  pluginConfig:\n    lanes:\n    - name: gray\n      split: {percent: 120}\n---\n\
            kind: WasmPlugin\nmetadata: {name: hop}\nspec:\n  pluginConfig:\n    lanes: [{name: gray}]\n";
        let checked = check_all(yaml.as_bytes()).unwrap();
        let text = all_text(&checked);
        assert!(
            text.starts_with("edge: error: lanes[0].split.percent: "),
            "{text}"
        );
        assert!(text.ends_with("hop: ok: 1 lane, 0 services\n"), "{text}");
        let data = to_json(&checked[0]);
        assert_eq!(data["errors"][0]["path"], "lanes[0].split.percent");
        assert_eq!(data["name"], "edge");
    }
}
