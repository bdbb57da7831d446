//! Prints the deterministic per-request cost of the shipped filter for the
//! benchmark's request kinds (see `graylane_wasm_tests::costhost`).
//!
//!   graylane-cost            # Markdown tables
//!   graylane-cost --json     # the JSON of wasm-tests/cost-baseline.json
//!
//! (`cargo run -q -p graylane-wasm-tests --bin graylane-cost [-- --json]`)
//!
//! Reads `$GRAYLANE_WASM`, else `target/graylane.wasm`; the configs and
//! requests come from `scripts/bench/cost-spec.json` (written by
//! `scripts/bench/configs.py`).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use graylane_wasm_tests::costhost::{markdown, measure_all, to_json, BenchSpec};
    use graylane_wasm_tests::harness::{repo_root, wasm_path};

    let json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => {
            eprintln!("graylane-cost: unknown argument {other}; usage: graylane-cost [--json]");
            std::process::exit(2);
        }
    };
    let path = wasm_path();
    let run = || -> Result<String, String> {
        let wasm = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let spec = BenchSpec::load(&repo_root())?;
        let figures = measure_all(&wasm, &spec)?;
        Ok(if json {
            serde_json::to_string_pretty(&to_json(&figures, wasm.len())).unwrap_or_default()
        } else {
            format!(
                "Deterministic cost of {} ({} bytes), per request after a warm-up:\n\n{}",
                path.display(),
                wasm.len(),
                markdown(&figures)
            )
        })
    };
    match run() {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("graylane-cost: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
