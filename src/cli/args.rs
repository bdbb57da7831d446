//! The command line of `graylane` (clap), the options of `graylane
//! explain`, and the request they describe.

use crate::engine::HeaderList;
use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

const CONFIG_HELP: &str = "\
CONFIG is the plugin JSON (or the same in YAML); or a YAML or JSON file of
Istio WasmPlugin manifests, one or several documents, where spec.pluginConfig
of each WasmPlugin is its plugin JSON and documents of other kinds are skipped;
or an Envoy configuration, whose wasm filters carry the plugin JSON as a
google.protobuf.StringValue.";

/// `graylane`: offline tools for the graylane proxy-wasm filter.
#[derive(Debug, Parser)]
#[command(
    name = "graylane",
    version,
    about = "graylane: offline tools for the graylane proxy-wasm filter",
    override_usage = "graylane check CONFIG\n       graylane explain CONFIG [OPTIONS]\n       graylane rollout PLAN [--json]\n       graylane rollout status|promote|abort|resume PLAN\n       graylane istio CONFIG MESH [--out DIR]\n       graylane schema\n       graylane completions SHELL",
    after_help = CONFIG_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the explain variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and analyse CONFIG as the filter does when it is configured.
    #[command(
        long_about = "Parse and analyse CONFIG as the filter does when it is configured.\n\
            A valid configuration: one \"warning: PATH: MESSAGE\" line per warning\n\
            first, then \"ok: N lanes, M services\". An invalid one:\n\
            \"error: PATH: MESSAGE\". With several plugin configurations in CONFIG,\n\
            each line starts with \"LABEL: \", the one `explain --plugin` takes: the\n\
            WasmPlugin metadata.name or the Envoy wasm plugin's name; where several\n\
            share that name, LISTENER/NAME (with the virtual host and route, if\n\
            the filter is on one) or, failing that, #N, the position in CONFIG.",
        after_help = "Exit 0 valid (warnings allowed), 1 invalid, 2 usage or unreadable file."
    )]
    Check {
        /// Plugin JSON/YAML, WasmPlugin manifests or an Envoy configuration
        #[arg(value_name = "CONFIG")]
        config: String,
    },
    /// Decide the lane of one request as the filter does, and say why.
    #[command(
        after_help = "Exit 0, 1 invalid CONFIG, 2 usage or unreadable file, 3 internal error."
    )]
    Explain(ExplainCmd),
    /// Staged rollout: grow a lane's split percent in steps, compare its
    /// version with base each window, roll a bad one back.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Exit 0 promoted, 1 rolled back (or aborted), 2 bad plan, config or delivery,\n\
            3 paused (a manual step, a step past its deadline) or interrupted.\n\
            State, lock and report files are written beside the plan (PLAN.state.json, PLAN.report.md)."
    )]
    Rollout(RolloutCmd),
    /// Write the Istio recipe (WasmPlugins, DestinationRules, VirtualServices,
    /// EnvoyFilter fallback patches) for a plugin config and a mesh description.
    #[command(
        after_help = "CONFIG is the plugin configuration (JSON or YAML) with `services`; MESH the mesh\n\
            description (YAML or JSON; `graylane schema istio`). Without --out the recipe goes to\n\
            stdout as one YAML stream. Exit 0, 1 invalid CONFIG or MESH, 2 usage or unreadable file."
    )]
    Istio {
        /// The plugin configuration
        #[arg(value_name = "CONFIG")]
        config: String,
        /// The mesh description
        #[arg(value_name = "MESH")]
        mesh: String,
        /// Write one file per service (and the WasmPlugins, the Gateway) into DIR
        #[arg(long, value_name = "DIR")]
        out: Option<String>,
    },
    /// Print the JSON Schema of the plugin configuration
    /// (the committed copy is envoy/graylane.schema.json); with `rollout`,
    /// of the rollout plan (envoy/rollout.schema.json); with `istio`, of the
    /// mesh description (envoy/istio-mesh.schema.json).
    Schema {
        /// `rollout`: the rollout plan's schema; `istio`: the mesh description's
        #[arg(value_name = "WHAT")]
        what: Option<SchemaWhat>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "bash: graylane completions bash > ~/.local/share/bash-completion/completions/graylane"
    )]
    Completions {
        /// The shell to complete for
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
}

/// Which schema `graylane schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaWhat {
    /// The plugin configuration (the default)
    Config,
    /// The rollout plan
    Rollout,
    /// The mesh description of `graylane istio`
    Istio,
}

/// `graylane rollout PLAN` or one of its subcommands.
#[derive(Debug, Clone, Args)]
pub struct RolloutCmd {
    #[command(subcommand)]
    pub action: Option<RolloutAction>,
    /// The plan (YAML or JSON)
    #[arg(value_name = "PLAN")]
    pub plan: Option<String>,
    /// One JSON event per line on stdout instead of the live view
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutAction {
    /// Where the rollout of PLAN stands (exit 0 whatever its state, which
    /// is in the output; 2 when there is no rollout of PLAN)
    Status {
        #[arg(value_name = "PLAN")]
        plan: String,
        /// The state as JSON
        #[arg(long)]
        json: bool,
    },
    /// Release the step in force: a paused step goes on (in this process
    /// when no rollout process runs), a running one moves to the next step
    Promote {
        #[arg(value_name = "PLAN")]
        plan: String,
        #[arg(long)]
        json: bool,
    },
    /// Roll back now: the lane's percent becomes 0 on every target (exit 0
    /// once delivered; a running rollout stops with exit 1)
    Abort {
        #[arg(value_name = "PLAN")]
        plan: String,
        #[arg(long)]
        json: bool,
    },
    /// Per step: the lane requests and time a version as good as base
    /// needs to pass, and a version worse by twice the tolerance to be
    /// rolled back; warns when a step cannot decide before its deadline
    Plan {
        #[arg(value_name = "PLAN")]
        plan: String,
        /// Requests per second through the targets (all versions); default:
        /// the rate the metrics source shows now
        #[arg(long, value_name = "N")]
        rps: Option<f64>,
        /// Base's 5xx share in percent; default: what the metrics source
        /// shows now (0 when base has no traffic)
        #[arg(long, value_name = "PCT")]
        base_errors: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Go on after a crash, a kill or an interrupt, at the step in force
    Resume {
        #[arg(value_name = "PLAN")]
        plan: String,
        #[arg(long)]
        json: bool,
    },
}

/// The options of `graylane explain`, as given on the command line.
#[derive(Debug, Clone, Args)]
pub struct ExplainCmd {
    /// Plugin JSON/YAML, WasmPlugin manifests or an Envoy configuration
    #[arg(value_name = "CONFIG")]
    pub config: String,
    /// A request header (repeatable); ":path", ":method", ":authority" and
    /// "host" set the fields below
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE",
          value_parser = parse_header, allow_hyphen_values = true)]
    pub headers: Vec<(String, String)>,
    /// :path (default "/")
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub path: Option<String>,
    /// :method (default GET)
    #[arg(long, value_name = "M", allow_hyphen_values = true)]
    pub method: Option<String>,
    /// :authority (host[:port])
    #[arg(long, value_name = "H", allow_hyphen_values = true)]
    pub host: Option<String>,
    /// A cookie (repeatable); all are sent as one cookie header, joined with "; "
    #[arg(long = "cookie", value_name = "K=V", value_parser = parse_cookie,
          allow_hyphen_values = true)]
    pub cookies: Vec<String>,
    /// A query parameter (repeatable), appended to the path as ?K=V&... exactly
    /// as given (encode yourself)
    #[arg(long = "query", value_name = "K=V", allow_hyphen_values = true)]
    pub queries: Vec<String>,
    /// The W3C baggage header
    #[arg(long, value_name = "K=V,...", allow_hyphen_values = true)]
    pub baggage: Option<String>,
    /// Every random draw returns N, so a split without key has bucket
    /// N % 10000. Without it, draws come from SplitMix64 seeded with 0: same
    /// output each run
    #[arg(long, value_name = "N", value_parser = parse_random, allow_hyphen_values = true)]
    pub random: Option<u64>,
    /// With "continuity": explain the request on the sidecar's outbound side,
    /// where its trace was remembered in LANE (without it: the inbound side,
    /// which remembers the decision)
    #[arg(long, value_name = "LANE")]
    pub remembered: Option<String>,
    /// The plugin to use when CONFIG has several, as `check` labels it: its
    /// name, LISTENER/NAME (the last steps of LISTENER/VHOST/ROUTE/NAME are
    /// enough when unique), or its position N or #N (from 1, in file order)
    #[arg(long, value_name = "NAME|PLACE/NAME|N", allow_hyphen_values = true)]
    pub plugin: Option<String>,
    /// One JSON object: {"lane", "source", "rule", "ruleIndex", "bucket",
    /// "headers", "fallback", "cluster", "shadow", "invalidTag",
    /// "baggageDropped", "tried", "response"}
    #[arg(long)]
    pub json: bool,
}

/// `graylane explain` options, resolved into the request's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExplainArgs {
    pub config: String,
    pub plugin: Option<String>,
    /// `-H` headers other than the ones that set the fields below.
    pub headers: Vec<(String, String)>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub authority: Option<String>,
    pub cookies: Vec<String>,
    pub queries: Vec<String>,
    pub baggage: Option<String>,
    pub random: Option<u64>,
    pub remembered: Option<String>,
    pub json: bool,
}

impl From<ExplainCmd> for ExplainArgs {
    /// `-H ':path: …'`, `-H ':method: …'` and `-H 'host: …'` set the same
    /// fields as `--path`, `--method` and `--host`; the named option wins.
    fn from(cmd: ExplainCmd) -> ExplainArgs {
        let mut out = ExplainArgs {
            config: cmd.config,
            plugin: cmd.plugin,
            cookies: cmd.cookies,
            queries: cmd.queries,
            baggage: cmd.baggage,
            random: cmd.random,
            remembered: cmd.remembered,
            json: cmd.json,
            ..ExplainArgs::default()
        };
        for (name, value) in cmd.headers {
            match name.as_str() {
                ":path" => out.path = Some(value),
                ":method" => out.method = Some(value),
                ":authority" | "host" => out.authority = Some(value),
                _ => out.headers.push((name, value)),
            }
        }
        out.path = cmd.path.or(out.path);
        out.method = cmd.method.or(out.method);
        out.authority = cmd.host.or(out.authority);
        out
    }
}

/// Splits `NAME: VALUE` (the name may be a pseudo-header such as `:path`).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (pseudo, body) = match text.strip_prefix(':') {
        Some(rest) => (":", rest),
        None => ("", text),
    };
    let bad = || "write a header as 'name: value'".to_string();
    let (name, value) = body.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad());
    }
    Ok((
        format!("{pseudo}{}", name.to_ascii_lowercase()),
        value.trim().to_string(),
    ))
}

fn parse_cookie(text: &str) -> Result<String, String> {
    if text.contains('=') {
        Ok(text.to_string())
    } else {
        Err("write a cookie as 'name=value'".to_string())
    }
}

fn parse_random(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| "give a non-negative integer".to_string())
}

impl ExplainArgs {
    /// The `:path` with the `--query` parameters appended.
    pub fn full_path(&self) -> String {
        let mut path = self.path.clone().unwrap_or_else(|| "/".to_string());
        for (i, q) in self.queries.iter().enumerate() {
            let sep = if i == 0 && !path.contains('?') {
                '?'
            } else {
                '&'
            };
            path.push(sep);
            path.push_str(q);
        }
        path
    }

    /// The request headers, pseudo-headers first, as Envoy hands them to
    /// the filter (built as the playground builds its request).
    pub fn request(&self) -> HeaderList {
        let path = self.full_path();
        let cookies = self.cookies.join("; ");
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &self.authority {
            pairs.push((":authority", a));
        }
        pairs.push((":path", &path));
        if let Some(m) = &self.method {
            pairs.push((":method", m));
        }
        pairs.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        if !self.cookies.is_empty() {
            pairs.push(("cookie", &cookies));
        }
        if let Some(b) = &self.baggage {
            pairs.push(("baggage", b));
        }
        crate::report::explain::request(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn explain(list: &[&str]) -> Result<ExplainArgs, clap::Error> {
        let argv = ["graylane", "explain"].iter().chain(list);
        match Cli::try_parse_from(argv)?.command {
            Command::Explain(cmd) => Ok(cmd.into()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn builds_the_request() {
        let a = explain(&[
            "c.json",
            "-H",
            "X-Tier: 4",
            "-H",
            ":method: POST",
            "--host=db.internal:8080",
            "--path",
            "/a?x=1",
            "--query",
            "beta=on",
            "--cookie",
            "a=1",
            "--cookie",
            "b=2",
            "--baggage",
            "tenant=acme",
            "-H",
            "Host: h",
        ])
        .unwrap();
        assert_eq!(a.config, "c.json");
        let h = a.request();
        let pairs: Vec<(&str, &str)> =
            h.0.iter()
                .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
                .collect();
        assert_eq!(
            pairs,
            vec![
                (":authority", "db.internal:8080"),
                (":path", "/a?x=1&beta=on"),
                (":method", "POST"),
                ("x-tier", "4"),
                ("cookie", "a=1; b=2"),
                ("baggage", "tenant=acme"),
            ]
        );
        let a = explain(&["c.json", "-H", "Host: h", "-H", ":path: /p"]).unwrap();
        assert_eq!(a.authority.as_deref(), Some("h"));
        assert_eq!(a.full_path(), "/p");
    }

    #[test]
    fn defaults_and_errors() {
        let a = explain(&["c.json", "--query", "q=1", "--query", "r", "--json"]).unwrap();
        assert_eq!(a.full_path(), "/?q=1&r");
        assert!(a.json);
        assert_eq!(
            explain(&["c.json", "--random", " 7 "]).unwrap().random,
            Some(7)
        );
        for bad in [
            &[][..],
            &["a", "b"],
            &["a", "-H", "novalue"],
            &["a", "-H"],
            &["a", "--cookie", "x"],
            &["a", "--random", "-1"],
            &["a", "--bogus"],
            &["a", "--json=yes"],
        ] {
            let e = explain(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }
}
