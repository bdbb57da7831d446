//! The committed examples of `envoy/` that the tests run as they are: their
//! files, the graylane plugin configuration they carry swapped for another,
//! and the answers of their direct-response backends
//! (`backend=<name> ...`).

use crate::harness::{json_string_value, repo_root, request};

/// The text of `file` in the example directory `dir` (`envoy/reload`, ...).
pub fn read_example(dir: &str, file: &str) -> String {
    let p = repo_root().join(dir).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The plugin configuration (JSON) of an example file, the one line
/// `value: '{...}'`, and the file with `{{PLUGIN}}` in its place (for
/// [`fill_plugin`]). `file` names the file in the failure message.
pub fn split_plugin(text: &str, file: &str) -> (String, String) {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("value: '{"))
        .unwrap_or_else(|| {
            panic!("{file}: a `value: '{{...}}'` line holding the plugin configuration")
        });
    let json = line
        .trim()
        .trim_start_matches("value: '")
        .trim_end_matches('\'')
        .to_string();
    let indent = &line[..line.len() - line.trim_start().len()];
    (
        json,
        text.replace(line, &format!("{indent}value: {{{{PLUGIN}}}}")),
    )
}

/// A template of [`split_plugin`] with `plugin_json` as the configuration.
pub fn fill_plugin(template: &str, plugin_json: &str) -> String {
    template.replace("{{PLUGIN}}", &json_string_value(plugin_json))
}

/// The backend named in an answer (`backend=<name> ...`); `?` if none.
pub fn backend_in(body: &str) -> String {
    body.strip_prefix("backend=")
        .and_then(|b| b.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

/// Which backend answered a GET `/` with `headers` on a new connection to
/// `port`; `None` when it failed (no answer, or a status other than 200).
pub fn backend_of(port: u16, headers: &[(&str, &str)]) -> Option<String> {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let r = request(port, "GET", "/", &raw).ok()?;
    (r.status == 200).then(|| backend_in(&r.text()))
}
