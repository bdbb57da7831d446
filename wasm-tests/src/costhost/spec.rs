//! The benchmark's configs and request kinds, as scripts/bench/configs.py
//! writes them into scripts/bench/cost-spec.json (the same configs and
//! request that scripts/bench.sh sends through Envoy).

use super::Headers;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;

/// The spec file, relative to the repository root.
pub const SPEC_FILE: &str = "scripts/bench/cost-spec.json";

/// One request kind of the benchmark.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kind {
    #[serde(rename = "kind")]
    pub name: String,
    /// Key of the config in [`BenchSpec::configs`].
    pub config: String,
    /// The lane the filter must write into `x-graylane`; `None`: no lane header.
    pub lane: Option<String>,
    /// The request headers as the filter sees them behind Envoy.
    pub request: Headers,
}

/// The benchmark's configs, response and request kinds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSpec {
    /// Plugin configurations by name, as the JSON text the filter is given.
    #[serde(deserialize_with = "json_texts")]
    pub configs: BTreeMap<String, String>,
    pub response: Headers,
    pub kinds: Vec<Kind>,
}

/// Each config as JSON text (object keys in sorted order).
fn json_texts<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let configs = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    Ok(configs
        .into_iter()
        .map(|(name, config)| (name, config.to_string()))
        .collect())
}

impl BenchSpec {
    /// Reads [`SPEC_FILE`] below the repository root.
    pub fn load(repo_root: &Path) -> Result<BenchSpec, String> {
        let path = repo_root.join(SPEC_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}
