//! `graylane check CONFIG`.

use super::input::{self, Document, InputError};
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::config::Config;
use crate::report;
use std::io::Write;
use std::path::Path;

pub fn run(path: &str, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let docs = match load(Path::new(path), out, err) {
        Ok(docs) => docs,
        Err(code) => return code,
    };
    let labelled = docs.len() > 1;
    let labels = input::labels(&docs);
    let mut code = EXIT_OK;
    for (doc, label) in docs.iter().zip(&labels) {
        let prefix = report::check::prefix(label, labelled);
        if check_one(doc, &prefix, out).is_err() {
            code = EXIT_INVALID;
        }
    }
    code
}

/// Loads CONFIG, reporting a failure as `check` does; `Err` holds the exit code.
pub(super) fn load(
    path: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Vec<Document>, i32> {
    match input::load(path) {
        Ok(docs) => Ok(docs),
        Err(InputError::Unreadable(message)) => {
            let _ = writeln!(err, "graylane: {message}");
            Err(EXIT_USAGE)
        }
        Err(InputError::Invalid(message)) => {
            let text = report::check::input_error_text(&path.display().to_string(), &message);
            let _ = write!(out, "{text}");
            Err(EXIT_INVALID)
        }
    }
}

/// Prints the result of one configuration; `Err` when it is invalid.
fn check_one(doc: &Document, prefix: &str, out: &mut dyn Write) -> Result<(), ()> {
    let result = Config::from_json(&doc.json);
    let _ = write!(out, "{}", report::check::text(&result, prefix));
    result.map(drop).map_err(drop)
}
