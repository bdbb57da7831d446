//! The native `graylane` command line (docs/cli.md "The `graylane` CLI"), on the
//! same parsing, analysis and engine as the filter; arguments parsed by
//! clap, exit statuses in [`exit`]. Its subcommands:
//! - `check CONFIG...`: validate plugin configurations (`check.rs`);
//! - `explain CONFIG -H ...`: a request's lane, step by step (`explain.rs`);
//! - `rollout PLAN`, and `rollout status | plan | promote | abort | resume
//!   PLAN`: the staged rollout ([`crate::rollout`]);
//! - `istio MESH`: the Istio recipe's manifests from a mesh description
//!   (`istio.rs`);
//! - `schema [config|rollout|istio]`: the JSON Schemas ([`schema`]);
//! - `completions SHELL`: shell completions.
//!
//! Native only: none of this reaches the `.wasm`.

mod args;
mod check;
pub mod exit;
mod explain;
pub mod input;
mod istio;
pub mod schema;

use args::{Cli, Command};
use clap::{CommandFactory, Parser};
use std::io::Write;

pub use exit::{EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Runs the command line `args` (without the program name); returns the
/// exit code. `--help` and `--version` print to `out` and exit 0; a usage
/// error prints to `err` and exits 2.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let argv = std::iter::once("graylane").chain(args.iter().map(String::as_str));
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            return if e.exit_code() == 0 {
                let _ = write!(out, "{}", e.render());
                EXIT_OK
            } else {
                let _ = write!(err, "{}", e.render());
                EXIT_USAGE
            };
        }
    };
    match cli.command {
        Command::Check { config } => check::run(&config, out, err),
        Command::Explain(cmd) => explain::run(cmd.into(), out, err),
        Command::Schema { what } => match what {
            None | Some(args::SchemaWhat::Config) => schema::run(&[], out, err),
            Some(args::SchemaWhat::Rollout) => schema::run_rollout(out, err),
            Some(args::SchemaWhat::Istio) => schema::run_istio(out, err),
        },
        Command::Rollout(cmd) => rollout(cmd, out, err),
        Command::Istio {
            config,
            mesh,
            out: dir,
        } => istio::run(&config, &mesh, dir.as_deref(), out, err),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "graylane", out);
            EXIT_OK
        }
    }
}

fn rollout(cmd: args::RolloutCmd, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    use crate::rollout::driver;
    use args::RolloutAction;
    use std::path::Path;
    match (cmd.action, cmd.plan) {
        (Some(RolloutAction::Status { plan, json }), _) => {
            driver::status(Path::new(&plan), json, out)
        }
        (Some(RolloutAction::Promote { plan, json }), _) => driver::promote(Path::new(&plan), json),
        (Some(RolloutAction::Abort { plan, json }), _) => driver::abort(Path::new(&plan), json),
        (Some(RolloutAction::Resume { plan, json }), _) => driver::resume(Path::new(&plan), json),
        (
            Some(RolloutAction::Plan {
                plan,
                rps,
                base_errors,
                json,
            }),
            _,
        ) => driver::plan(Path::new(&plan), rps, base_errors, json),
        (None, Some(plan)) => driver::start(Path::new(&plan), cmd.json),
        (None, None) => usage_error(
            err,
            "rollout needs a PLAN (or status, promote, abort, resume PLAN)",
        ),
    }
}

/// Prints a usage error and returns [`EXIT_USAGE`].
fn usage_error(err: &mut dyn Write, message: &str) -> i32 {
    let _ = writeln!(err, "graylane: {message}\nRun 'graylane --help' for usage.");
    EXIT_USAGE
}
