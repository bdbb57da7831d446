//! `graylane explain CONFIG [OPTIONS]`: the lane of one request, the rule
//! that chose it, why each rule before it did not, and the header changes.

use super::args::ExplainArgs;
use super::check::load;
use super::input::{labels, select};
use super::{usage_error, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use crate::config::Config;
use crate::report::explain::Report;
use std::io::Write;
use std::path::Path;

pub fn run(args: ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let docs = match load(Path::new(&args.config), out, err) {
        Ok(docs) => docs,
        Err(code) => return code,
    };
    let doc = match (&args.plugin, docs.as_slice()) {
        (None, [doc]) => doc,
        (None, _) => {
            return usage_error(
                err,
                &format!(
                    "CONFIG has several plugin configurations ({}); choose one with --plugin",
                    labels(&docs).join(", ")
                ),
            )
        }
        (Some(p), _) => match select(&docs, p) {
            Ok(doc) => doc,
            Err(e) => return usage_error(err, &e),
        },
    };
    let config = match Config::from_json(&doc.json) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_INVALID;
        }
    };
    for w in &config.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    let report = explain(&config, &args);
    if let Some(problem) = &report.disagreement {
        let _ = writeln!(err, "graylane: internal error: {problem}");
    }
    let _ = if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        )
    } else {
        write!(out, "{}", report.to_text())
    };
    if report.disagreement.is_some() {
        EXIT_INTERNAL
    } else {
        EXIT_OK
    }
}

/// Explains the request described by `args` against `config` (the code
/// is shared with the browser playground: see [`crate::report::explain`]).
pub fn explain(config: &Config, args: &ExplainArgs) -> Report {
    crate::report::explain::explain_remembered(
        config,
        &args.request(),
        args.random,
        args.remembered.as_deref(),
    )
}
