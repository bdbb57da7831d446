//! The native `graylane` command line (SPEC §7): `check`, `explain` and
//! `schema`, on the same parsing, analysis and engine as the filter.
//! Native only: none of this reaches the `.wasm`.

mod args;
mod check;
mod explain;
pub mod input;
pub mod schema;

use std::io::Write;

/// The configuration is valid (warnings allowed) / the command did its work.
pub const EXIT_OK: i32 = 0;
/// The configuration is invalid.
pub const EXIT_INVALID: i32 = 1;
/// Bad command line, or a file that cannot be read.
pub const EXIT_USAGE: i32 = 2;
/// `explain`: the explanation and the filter's decision disagree (a bug).
pub const EXIT_INTERNAL: i32 = 3;

/// The help text of `graylane help`.
pub const USAGE: &str = r#"graylane: offline tools for the graylane proxy-wasm filter

Usage:
  graylane check CONFIG
  graylane explain CONFIG [OPTIONS]
  graylane schema
  graylane help | --help | --version

CONFIG is the plugin JSON (or the same in YAML); or a YAML or JSON file of
Istio WasmPlugin manifests, one or several documents, where spec.pluginConfig
of each WasmPlugin is its plugin JSON and documents of other kinds are skipped;
or an Envoy configuration, whose wasm filters carry the plugin JSON as a
google.protobuf.StringValue.

check    Parse and analyse CONFIG as the filter does when it is configured.
         Prints "ok: N lanes, M services", or "error: PATH: MESSAGE", then
         "warning: PATH: MESSAGE" per warning. With several WasmPlugins each
         line starts with "NAME: " (WasmPlugin metadata.name, or the Envoy
         wasm plugin's name).
         Exit 0 valid (warnings allowed), 1 invalid, 2 usage or unreadable file.

explain  Decide the lane of one request as the filter does, and say why.
  -H, --header 'NAME: VALUE'  a request header (repeatable); ":path", ":method",
                              ":authority" and "host" set the fields below
  --path P                    :path (default "/")
  --method M                  :method (default GET)
  --host H                    :authority (host[:port])
  --cookie 'K=V'              a cookie (repeatable); all are sent as one
                              cookie header, joined with "; "
  --query 'K=V'               a query parameter (repeatable), appended to the
                              path as ?K=V&... exactly as given (encode yourself)
  --baggage 'K=V,...'         the W3C baggage header
  --random N                  every random draw returns N, so a split without
                              key has bucket N % 10000. Without it, draws come
                              from SplitMix64 seeded with 0: same output each run
  --plugin NAME               the plugin to use when CONFIG has several
  --json                      one JSON object: {"lane", "source", "rule",
                              "ruleIndex", "bucket", "headers", "fallback",
                              "cluster", "shadow", "invalidTag",
                              "baggageDropped", "tried", "response"}
         Exit 0, 1 invalid CONFIG, 2 usage or unreadable file, 3 internal error.

schema   Print the JSON Schema of the plugin configuration
         (the committed copy is envoy/graylane.schema.json).
"#;

/// Runs the command line `args` (without the program name); returns the
/// exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        let _ = write!(err, "{USAGE}");
        return EXIT_USAGE;
    };
    match command.as_str() {
        "check" => check::run(rest, out, err),
        "explain" => explain::run(rest, out, err),
        "schema" => schema::run(rest, out, err),
        "help" | "-h" | "--help" => {
            let _ = write!(out, "{USAGE}");
            EXIT_OK
        }
        "-V" | "--version" | "version" => {
            let _ = writeln!(out, "graylane {}", env!("CARGO_PKG_VERSION"));
            EXIT_OK
        }
        other => usage_error(err, &format!("unknown command {other:?}")),
    }
}

/// Prints a usage error and returns [`EXIT_USAGE`].
fn usage_error(err: &mut dyn Write, message: &str) -> i32 {
    let _ = writeln!(err, "graylane: {message}\nRun 'graylane help' for usage.");
    EXIT_USAGE
}
