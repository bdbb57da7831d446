//! `graylane istio CONFIG MESH [--out DIR]`: the Istio recipe
//! ([`crate::istio`]) on stdout or as files in DIR.

use super::input::{load, InputError};
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use std::io::Write;
use std::path::Path;

pub fn run(
    config: &str,
    mesh: &str,
    dir: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let docs = match load(Path::new(config)) {
        Ok(docs) => docs,
        Err(InputError::Unreadable(m)) => return fail(err, EXIT_USAGE, &m),
        Err(InputError::Invalid(m)) => return fail(err, EXIT_INVALID, &format!("config: {m}")),
    };
    let json = match docs.as_slice() {
        [one] if one.name.is_none() => one.json.clone(),
        _ => {
            return fail(
                err,
                EXIT_INVALID,
                "config: give the plugin configuration itself (JSON or YAML), not manifests",
            )
        }
    };
    let mesh_text = match std::fs::read(mesh) {
        Ok(t) => t,
        Err(e) => return fail(err, EXIT_USAGE, &format!("cannot read {mesh}: {e}")),
    };
    let recipe = crate::istio::parse_mesh(&mesh_text)
        .map_err(crate::istio::Error::Mesh)
        .and_then(|m| crate::istio::generate(&json, &m));
    let files = match recipe {
        Ok(f) => f,
        Err(e) => return fail(err, EXIT_INVALID, &e.to_string()),
    };
    match dir {
        None => {
            let _ = write!(out, "{}", crate::istio::stream(&files));
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return fail(err, EXIT_USAGE, &format!("cannot create {dir}: {e}"));
            }
            for f in &files {
                let path = Path::new(dir).join(&f.name);
                if let Err(e) = std::fs::write(&path, &f.text) {
                    return fail(
                        err,
                        EXIT_USAGE,
                        &format!("cannot write {}: {e}", path.display()),
                    );
                }
                let _ = writeln!(out, "wrote {}", path.display());
            }
        }
    }
    EXIT_OK
}

fn fail(err: &mut dyn Write, code: i32, message: &str) -> i32 {
    let _ = writeln!(err, "error: {message}");
    code
}
