//! Delivery (README "Staged rollout", "The plan"): the plugin configuration
//! at a percent, checked by the filter's own parser and analysis, written
//! into every target by atomic rename, then applied.

use super::plan::{Plan, Target, TargetKind};
use crate::config::Config;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The plugin configuration as the rollout delivers it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub percent: f64,
    /// The plugin configuration, `lane`'s percent set.
    pub config: Value,
    /// Its JSON text, as the filter reads it.
    pub json: String,
    /// The filter's warnings for it (a lane at 0 % is one).
    pub warnings: Vec<String>,
}

/// The plugin configuration file, read once.
#[derive(Debug, Clone)]
pub struct Source {
    value: Value,
    lane_index: usize,
}

/// Reads the plugin configuration (JSON, or the same in YAML) and finds
/// `lane`'s rule, which must have a split with `percent`.
pub fn read_config(plan: &Plan) -> Result<Source, String> {
    let text = std::fs::read(&plan.config)
        .map_err(|e| format!("config: cannot read {}: {e}", plan.config.display()))?;
    let value: Value = if text.trim_ascii_start().starts_with(b"{") {
        serde_json::from_slice(&text).map_err(|e| format!("config: {e}"))?
    } else {
        serde_norway::from_slice(&text).map_err(|e| format!("config: invalid YAML: {e}"))?
    };
    // The whole configuration must already be one the filter accepts.
    let json = serde_json::to_string(&value).map_err(|e| e.to_string())?;
    Config::from_json(json.as_bytes())
        .map_err(|e| format!("config ({}): {e}", plan.config.display()))?;
    let lanes = value
        .get("lanes")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!(
                "lane: the config has no lanes, so no lane \"{}\"",
                plan.lane
            )
        })?;
    let names: Vec<&str> = lanes
        .iter()
        .filter_map(|l| l.get("name").and_then(Value::as_str))
        .collect();
    let Some(lane_index) = lanes
        .iter()
        .position(|l| l.get("name").and_then(Value::as_str) == Some(plan.lane.as_str()))
    else {
        return Err(format!(
            "lane: \"{}\" is not a lane of the config (its lanes: {})",
            plan.lane,
            names.join(", ")
        ));
    };
    let split = lanes.get(lane_index).and_then(|l| l.get("split"));
    match split {
        Some(s) if s.get("percent").is_some() => {}
        Some(_) => {
            return Err(format!(
                "lane: lanes[{lane_index}] (\"{}\") splits by buckets; the rollout grows a `percent` split",
                plan.lane
            ))
        }
        None => {
            return Err(format!(
                "lane: lanes[{lane_index}] (\"{}\") has no split; give it \"split\": {{\"percent\": 0}} (keyed or random) so the rollout can grow it",
                plan.lane
            ))
        }
    }
    Ok(Source { value, lane_index })
}

impl Source {
    /// The configuration with the lane at `percent`, checked as the filter
    /// checks it when it is configured.
    pub fn render(&self, percent: f64) -> Result<Rendered, String> {
        let mut config = self.value.clone();
        let split = config
            .get_mut("lanes")
            .and_then(|l| l.get_mut(self.lane_index))
            .and_then(|l| l.get_mut("split"))
            .and_then(Value::as_object_mut)
            .ok_or("the lane's split disappeared")?;
        let rounded = (percent * 100.0).round() / 100.0;
        let number = if rounded.fract() == 0.0 {
            Value::from(rounded as u64)
        } else {
            Value::from(rounded)
        };
        split.insert("percent".into(), number);
        let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
        let checked = Config::from_json(json.as_bytes())
            .map_err(|e| format!("the configuration at {rounded} % is refused: {e}"))?;
        Ok(Rendered {
            percent: rounded,
            config,
            warnings: checked.warnings.iter().map(ToString::to_string).collect(),
            json,
        })
    }
}

/// Whether the file is JSON (else YAML), by its first character.
fn is_json(text: &str) -> bool {
    text.trim_start().starts_with('{') || text.trim_start().starts_with('[')
}

/// The YAML documents of a file (a JSON file is one document).
fn documents(text: &str) -> Result<Vec<Value>, String> {
    if is_json(text) {
        return serde_json::from_str(text)
            .map(|v| vec![v])
            .map_err(|e| e.to_string());
    }
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn write_documents(docs: &[Value], json: bool) -> Result<String, String> {
    if json {
        let one = match docs {
            [one] => one,
            _ => return Err("a JSON file holds one document".into()),
        };
        return serde_json::to_string_pretty(one)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(d).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The ECDS resource's plugin configuration value.
fn ecds_value(doc: &mut Value) -> Result<&mut Value, String> {
    let resources = doc
        .get_mut("resources")
        .and_then(Value::as_array_mut)
        .ok_or(
        "no `resources` list (an ECDS file is a discovery response with one TypedExtensionConfig)",
    )?;
    if resources.len() != 1 {
        return Err(format!(
            "{} resources; Envoy reads one per file",
            resources.len()
        ));
    }
    resources
        .get_mut(0)
        .and_then(|r| r.pointer_mut("/typed_config/config/configuration/value"))
        .filter(|v| v.is_string())
        .ok_or_else(|| {
            "no typed_config.config.configuration.value string (a Wasm filter with a google.protobuf.StringValue configuration)".into()
        })
}

fn matches_meta(doc: &Value, kind: &str, name: Option<&str>, namespace: Option<&str>) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some(kind)
        && name.is_none_or(|n| doc.pointer("/metadata/name").and_then(Value::as_str) == Some(n))
        && namespace.is_none_or(|n| {
            doc.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                == n
        })
}

/// The one document of `kind` the target names.
fn manifest<'d>(docs: &'d mut [Value], t: &Target, kind: &str) -> Result<&'d mut Value, String> {
    let (name, ns) = (t.name.as_deref(), t.namespace.as_deref());
    let count = docs
        .iter()
        .filter(|d| matches_meta(d, kind, name, ns))
        .count();
    match count {
        1 => docs
            .iter_mut()
            .find(|d| matches_meta(d, kind, name, ns))
            .ok_or_else(|| "vanished".into()),
        0 => Err(format!(
            "no {kind}{} in the file",
            name.map(|n| format!(" named {n}")).unwrap_or_default()
        )),
        n => Err(format!(
            "{n} {kind}s match; set name (and namespace) to choose one"
        )),
    }
}

/// The target's file with `rendered` in place of its plugin configuration.
pub fn render_target(t: &Target, rendered: &Rendered) -> Result<String, String> {
    let text = std::fs::read_to_string(&t.path)
        .map_err(|e| format!("cannot read {}: {e}", t.path.display()))?;
    let mut docs = documents(&text).map_err(|e| format!("{}: {e}", t.path.display()))?;
    let fail = |e: String| format!("{}: {e}", t.path.display());
    match t.kind {
        TargetKind::Ecds => {
            let doc = docs.first_mut().ok_or_else(|| fail("empty file".into()))?;
            *ecds_value(doc).map_err(fail)? = Value::String(rendered.json.clone());
        }
        TargetKind::WasmPlugin => {
            let doc = manifest(&mut docs, t, "WasmPlugin").map_err(fail)?;
            let spec = doc
                .get_mut("spec")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| fail("the WasmPlugin has no spec".into()))?;
            spec.insert("pluginConfig".into(), rendered.config.clone());
        }
        TargetKind::EnvoyExtensionPolicy => {
            let doc = manifest(&mut docs, t, "EnvoyExtensionPolicy").map_err(fail)?;
            let wasm = doc
                .pointer_mut("/spec/wasm")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| fail("the policy has no spec.wasm list".into()))?;
            let want = t.wasm.as_deref();
            let hits: Vec<usize> = wasm
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    want.is_none_or(|n| w.get("name").and_then(Value::as_str) == Some(n))
                })
                .map(|(i, _)| i)
                .collect();
            let entry = match hits.as_slice() {
                [i] => wasm.get_mut(*i).and_then(Value::as_object_mut),
                [] => {
                    return Err(fail(format!(
                        "no spec.wasm entry named {}",
                        want.unwrap_or("?")
                    )))
                }
                _ => {
                    return Err(fail(
                        "several spec.wasm entries; set `wasm` to the graylane entry's name".into(),
                    ))
                }
            }
            .ok_or_else(|| fail("a spec.wasm entry is not an object".into()))?;
            entry.insert("config".into(), rendered.config.clone());
        }
    }
    write_documents(&docs, is_json(&text)).map_err(fail)
}

/// Writes `text` to `path` by atomic rename of a complete file beside it.
pub fn atomic_write(path: &Path, text: &str) -> Result<(), String> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.graylane-{}.new", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn apply(t: &Target, text: &str) -> Result<(), String> {
    let Some((program, args)) = t.apply.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("apply {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("apply {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("apply {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apply `{}` failed ({}): {}",
            t.apply.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Renders every target first (so one that cannot take the configuration
/// changes nothing), then, target by target, applies and renames. If a
/// target fails, the targets already changed get `previous` back.
pub fn deliver(
    plan: &Plan,
    rendered: &Rendered,
    previous: Option<&Rendered>,
) -> Result<(), String> {
    let texts = plan
        .deliver
        .iter()
        .map(|t| render_target(t, rendered))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (t, text)) in plan.deliver.iter().zip(&texts).enumerate() {
        let done = apply(t, text).and_then(|()| atomic_write(&t.path, text));
        if let Err(e) = done {
            if let Some(prev) = previous {
                for t in plan.deliver.iter().take(i) {
                    if let Ok(old) = render_target(t, prev) {
                        let _ = apply(t, &old).and_then(|()| atomic_write(&t.path, &old));
                    }
                }
            }
            return Err(format!("deliver[{i}] ({}): {e}", t.kind.as_str()));
        }
    }
    Ok(())
}

/// Checks every target can take a configuration, without writing.
pub fn check_targets(plan: &Plan, rendered: &Rendered) -> Result<(), String> {
    for (i, t) in plan.deliver.iter().enumerate() {
        render_target(t, rendered).map_err(|e| format!("deliver[{i}]: {e}"))?;
    }
    Ok(())
}
