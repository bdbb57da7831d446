//! `graylane`: `check` a configuration, `explain` a request's lane, run a
//! staged `rollout` (and its `status`, `plan`, `promote`, `abort`,
//! `resume`), write the `istio` recipe's manifests, print a JSON `schema`,
//! print shell `completions`. See `graylane help` and `graylane::cli`.
#![deny(unsafe_code)]

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Unlocked handles: `rollout`'s live view draws on stderr from a thread
    // of its own.
    let code = graylane::cli::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}

/// The CLI is native only: a wasm32 build of the crate (the filter) gets
/// this stub, and none of the CLI's dependencies.
#[cfg(target_arch = "wasm32")]
fn main() {
    eprintln!("graylane: the command line is built for the host, not for wasm32");
    std::process::exit(2);
}
