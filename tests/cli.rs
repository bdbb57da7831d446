//! Tests of the native `graylane` binary: check, explain, schema.

// Test helpers outside #[test] functions are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use graylane::testvectors::TABLE_CONFIG;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_graylane");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A config file under the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(ext: &str, text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("graylane-cli-{}-{n}.{ext}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn graylane(args: &[&str]) -> Run {
    let out = Command::new(BIN).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn check(text: &str) -> Run {
    let f = TempFile::new("json", text);
    graylane(&["check", f.path()])
}

fn explain_with(config: &str, args: &[&str]) -> Run {
    let f = TempFile::new("json", config);
    let mut all = vec!["explain", f.path()];
    all.extend_from_slice(args);
    let run = graylane(&all);
    assert_eq!(
        run.code, 0,
        "explain {args:?}: {}{}",
        run.stdout, run.stderr
    );
    run
}

fn explain(args: &[&str]) -> String {
    explain_with(TABLE_CONFIG, args).stdout
}

fn explain_json(config: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&explain_with(config, &all).stdout).unwrap()
}

// ---------------------------------------------------------------- check

#[test]
fn check_accepts_a_valid_config() {
    let run = check(TABLE_CONFIG);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "ok: 8 lanes, 1 service\n");
}

#[test]
fn check_reports_errors_with_their_json_path() {
    let bad_regex = r#"{"lanes": [
        {"name": "a", "match": {"header": "x", "exact": "1"}},
        {"name": "b", "match": {"any": [{"path": true, "regex": "(unclosed"}]}}
    ]}"#;
    let run = check(bad_regex);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .starts_with("error: lanes[1].match.any[0].regex: invalid regular expression"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1);

    let two_ops = r#"{"lanes": [{"name": "a", "match": {"all": [{"header": "x", "exact": "1", "prefix": "2"}]}}]}"#;
    let run = check(two_ops);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        "error: lanes[0].match.all[0]: leaf has 2 operators (exact, prefix); use exactly one\n"
    );

    let typo = r#"{"lanes": [{"name": "a", "priorty": 3}]}"#;
    let run = check(typo);
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("error: lanes[0]"), "{}", run.stdout);
    assert!(run.stdout.contains("priorty"), "{}", run.stdout);

    let run = check(r#"{"lanes": [{"name": "base"}]}"#);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with("error: lanes[0].name: "),
        "{}",
        run.stdout
    );

    let run = check("{\"lanes\": [");
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("error: "), "{}", run.stdout);

    let run = check("");
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("empty"), "{}", run.stdout);
}

#[test]
fn check_reports_every_independent_error_in_one_run() {
    // A misspelt field and a bad regex, and two errors in another lane.
    let broken = r#"{"lanes": [
        {"name": "gray", "priorty": 1, "match": {"header": "x-user", "regex": "(unclosed"}},
        {"name": "Blue", "split": {"percent": 150}}
    ]}"#;
    let run = check(broken);
    assert_eq!(run.code, 1);
    let paths: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| {
            l.strip_prefix("error: ")
                .unwrap()
                .split(": ")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "lanes[0].priorty",
            "lanes[0].match.regex",
            "lanes[1].name",
            "lanes[1].split.percent"
        ],
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("unknown field `priorty`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("invalid regular expression \"(unclosed\""),
        "{}",
        run.stdout
    );

    // A value of the wrong type stops the reading: what came before it is
    // reported, nothing after it, and nothing is compiled.
    let run = check(
        r#"{"lanes": [{"name": "g", "typo": 1, "match": {"header": "a", "regex": "("}}, {"name": "h", "priority": "1"}, {"name": "Bad"}]}"#,
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        "error: lanes[0].typo: unknown field `typo`, expected one of `name`, `priority`, `match`, `split`\n\
         error: lanes[1].priority: invalid type: string \"1\", expected i64\n"
    );

    // Several plugins: every line is labelled.
    let yaml = "kind: WasmPlugin\nmetadata: {name: edge}\nspec:\n  pluginConfig:\n    lanes: [{name: base, split: {percent: 120}}]\n---\n\
        kind: WasmPlugin\nmetadata: {name: hop}\nspec:\n  pluginConfig:\n    lanes: [{name: gray}]\n";
    let f = TempFile::new("yaml", yaml);
    let run = graylane(&["check", f.path()]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].starts_with("edge: error: lanes[0].name: "),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("edge: error: lanes[0].split.percent: "),
        "{}",
        run.stdout
    );
    assert!(lines[2].starts_with("hop: ok: "), "{}", run.stdout);
}

#[test]
fn check_prints_warnings_and_still_succeeds() {
    let config = r#"{
      "services": {"svc-a": {"base": "a", "lanes": {"nosuch": "a-x"}}},
      "lanes": [
        {"name": "android", "priority": 1,
         "match": {"header": "os", "exact": "android"}},
        {"name": "android-atlantis", "priority": 2,
         "match": {"all": [{"header": "os", "exact": "android"}, {"header": "region", "exact": "atlantis"}]}},
        {"name": "off", "split": {"percent": 0}}
      ]
    }"#;
    let run = check(config);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l
            .starts_with("warning: lanes[1]: lane \"android-atlantis\" can never win")
            && l.contains("\"android\"")),
        "{}",
        run.stdout
    );
    assert!(
        lines.contains(&"warning: lanes[2].split: lane \"off\" admits no request (0 %)"),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warning: services.svc-a.lanes.nosuch: ")),
        "{}",
        run.stdout
    );
    assert_eq!(lines.last(), Some(&"ok: 3 lanes, 1 service"));
    assert_eq!(lines.len(), 4);
}

const WASM_PLUGINS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
data: {a: b}
---
# The edge: decides lanes.
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: graylane-edge
  namespace: istio-system
spec:
  url: oci://example/graylane:0.1
  phase: AUTHN
  pluginConfig:
    incoming: ignore
    lanes:
    - name: gray
      priority: 10
      match:
        header: location
        exact: cn-shenzhen
    - name: sticky
      split:
        key: {header: x-user-id}
        percent: 12.5
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: graylane-sidecar
spec:
  pluginConfig:
    incoming: trust
    lanes:
    - name: gray
      match: {header: location, exact: cn-shenzhen, prefix: cn}
"#;

#[test]
fn check_wasm_plugin_manifests() {
    let f = TempFile::new("yaml", WASM_PLUGINS);
    let run = graylane(&["check", f.path()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "graylane-edge: ok: 2 lanes, 0 services\n\
         graylane-sidecar: error: lanes[0].match: leaf has 2 operators (exact, prefix); use exactly one\n"
    );

    // One WasmPlugin: no label.
    let one = WASM_PLUGINS.split("\n---\n").nth(1).unwrap();
    let f = TempFile::new("yml", one);
    let run = graylane(&["check", f.path()]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "ok: 2 lanes, 0 services\n")
    );

    // A WasmPlugin without pluginConfig hands the filter an empty configuration.
    let f = TempFile::new(
        "yaml",
        "kind: WasmPlugin\nmetadata: {name: empty}\nspec: {url: x}\n",
    );
    let run = graylane(&["check", f.path()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with("error: ") && run.stdout.contains("empty"),
        "{}",
        run.stdout
    );

    // YAML with no plugin at all.
    let f = TempFile::new("yaml", "kind: Service\n---\nkind: Deployment\n");
    let run = graylane(&["check", f.path()]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("no WasmPlugin"), "{}", run.stdout);
}

#[test]
fn check_envoy_configuration() {
    let envoy = r#"
static_resources:
  listeners:
  - name: edge
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: graylane
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: graylane
                root_id: graylane
                vm_config: { runtime: envoy.wasm.runtime.v8 }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
                    { "lanes": [ { "name": "gray", "match": { "header": "location", "exact": "x" } } ] }
"#;
    let f = TempFile::new("yaml", envoy);
    let run = graylane(&["check", f.path()]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "ok: 1 lane, 0 services\n"),
        "{}",
        run.stderr
    );
}

/// An Envoy wasm filter named `graylane` on listener `LISTENER`, with a
/// warning (a lane at 0 %) when `warn`.
fn envoy_listener(listener: &str, lane: &str, warn: bool) -> String {
    let split = if warn {
        r#", "split": {"percent": 0}"#
    } else {
        ""
    };
    format!(
        r#"
  - name: {listener}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: graylane
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: graylane
                vm_config: {{ runtime: envoy.wasm.runtime.v8 }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{{"lanes": [{{"name": "{lane}", "match": {{"header": "x-lane", "exact": "{lane}"}}{split}}}]}}'"#
    )
}

/// Filters that share a name (the recipes name every filter `graylane`):
/// `check` labels each line with the filter's listener, `explain --plugin`
/// takes that label or a position, and refuses a name that is ambiguous.
#[test]
fn filters_of_the_same_name_are_labelled_and_chosen() {
    let envoy = format!(
        "static_resources:\n  listeners:{}{}",
        envoy_listener("edge", "gray", true),
        envoy_listener("hop", "blue", false)
    );
    let f = TempFile::new("yaml", &envoy);
    let run = graylane(&["check", f.path()]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    // Warnings first, then ok, as `check --help` says.
    assert!(
        lines[0].starts_with("edge/graylane: warning: lanes[0].split: "),
        "{}",
        run.stdout
    );
    assert_eq!(lines[1], "edge/graylane: ok: 1 lane, 0 services");
    assert_eq!(lines[2], "hop/graylane: ok: 1 lane, 0 services");
    let help = graylane(&["check", "--help"]).stdout;
    let (warning, ok) = (
        help.find("\"warning: ").unwrap(),
        help.find("\"ok: ").unwrap(),
    );
    assert!(warning < ok, "{help}");

    let lane = |plugin: &str| {
        let run = graylane(&[
            "explain",
            f.path(),
            "--plugin",
            plugin,
            "-H",
            "x-lane: blue",
            "--json",
        ]);
        assert_eq!(run.code, 0, "--plugin {plugin}: {}", run.stderr);
        serde_json::from_str::<Value>(&run.stdout).unwrap()["lane"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(lane("hop/graylane"), "blue");
    assert_eq!(lane("#2"), "blue");
    assert_eq!(lane("1"), "base");
    let run = graylane(&["explain", f.path(), "--plugin", "graylane"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("2 plugins match \"graylane\"")
            && run.stderr.contains("#2 hop/graylane"),
        "{}",
        run.stderr
    );
    let run = graylane(&["explain", f.path()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("(edge/graylane, hop/graylane)"),
        "{}",
        run.stderr
    );
}

/// Every configuration shipped in envoy/ (demo gateway, full-link chain,
/// Istio manifests) passes `graylane check`.
#[test]
fn shipped_configs_pass_check() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(ROOT).join("envoy"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if !(text.contains("kind: WasmPlugin") || text.contains("google.protobuf.StringValue")) {
            continue;
        }
        // An Envoy Gateway `EnvoyProxy` holds Envoy configuration as text,
        // in `spec.bootstrap.value`: that text is what graylane checks.
        let bootstrap = text.contains("kind: EnvoyProxy").then(|| {
            let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
            let value = doc["spec"]["bootstrap"]["value"].as_str();
            TempFile::new("yaml", value.expect("spec.bootstrap.value"))
        });
        let target = bootstrap
            .as_ref()
            .map_or(file.to_str().unwrap(), TempFile::path);
        let run = graylane(&["check", target]);
        assert_eq!(
            run.code,
            0,
            "graylane check {}:\n{}{}",
            file.display(),
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let run = graylane(&[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("Usage:"));
    assert_eq!(graylane(&["check"]).code, 2);
    assert_eq!(graylane(&["check", "a", "b"]).code, 2);
    assert_eq!(graylane(&["frobnicate"]).code, 2);
    let missing = std::env::temp_dir().join("graylane-cli-does-not-exist.json");
    let run = graylane(&["check", missing.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    let f = TempFile::new("json", TABLE_CONFIG);
    assert_eq!(graylane(&["explain", f.path(), "--bogus"]).code, 2);
    assert_eq!(graylane(&["explain", f.path(), "-H", "no-colon"]).code, 2);
    assert_eq!(graylane(&["explain", f.path(), "--random", "x"]).code, 2);
    assert_eq!(graylane(&["explain"]).code, 2);
    assert_eq!(graylane(&["schema", "extra"]).code, 2);

    let run = graylane(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("graylane explain CONFIG [OPTIONS]"));
}

#[test]
fn usage_errors_name_the_problem_and_exit_2() {
    let run = graylane(&["completions", "tcsh"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("invalid value 'tcsh'") && run.stderr.contains("bash"),
        "{}",
        run.stderr
    );
    let f = TempFile::new("json", TABLE_CONFIG);
    let run = graylane(&["explain", f.path(), "--cookie", "nameonly"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("write a cookie as 'name=value'"),
        "{}",
        run.stderr
    );
    assert_eq!(graylane(&["explain", f.path(), "--json=yes"]).code, 2);
    assert_eq!(graylane(&["completions"]).code, 2);

    let run = graylane(&["--version"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        format!("graylane {}\n", env!("CARGO_PKG_VERSION"))
    );
    let run = graylane(&["explain", "--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("--random <N>"), "{}", run.stdout);
}

#[test]
fn completions_for_every_shell() {
    let run = graylane(&["completions", "bash"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let script = &run.stdout;
    assert!(script.contains("complete -F _graylane"), "{script}");
    for word in [
        "check",
        "explain",
        "schema",
        "completions",
        "--header",
        "--plugin",
    ] {
        assert!(script.contains(word), "{word} missing from:\n{script}");
    }
    // bash itself reads the script and registers the completion.
    let out = Command::new("bash")
        .arg("-c")
        .arg("source /dev/stdin && complete -p graylane")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("_graylane"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = graylane(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains("explain"), "{shell}: {}", run.stdout);
    }
}

// ---------------------------------------------------------------- explain

#[test]
fn explain_header_rule() {
    let out = explain(&["-H", "Location: cn-shenzhen", "--host", "svc-b:8080"]);
    assert_eq!(
        out,
        "lane: gray\n\
         source: rule\n\
         rule: lanes[0] \"gray\" (priority 10)\n\
         set x-graylane: gray\n\
         set baggage: lane=gray\n\
         set x-graylane-cluster: b-gray\n\
         cluster: b-gray\n"
    );
}

#[test]
fn explain_cookie_query_and_baggage() {
    let out = explain(&["--cookie", "a=1", "--cookie", "beta=yes"]);
    assert!(
        out.starts_with("lane: beta\nsource: rule\nrule: lanes[1] \"beta\" (priority 20)\n"),
        "{out}"
    );
    assert!(
        out.contains("tried:\n  lanes[0] \"gray\" priority 10: header \"location\" exact \"cn-shenzhen\" does not hold (absent)\n"),
        "{out}"
    );

    let out = explain(&["--path", "/x", "--query", "a=1", "--query", "beta=o%6E"]);
    assert!(out.starts_with("lane: beta\n"), "{out}");

    let out = explain(&["--baggage", "tenant=acme-eu,x=1"]);
    assert!(
        out.starts_with("lane: tenant\nsource: rule\nrule: lanes[6] \"tenant\" (priority 70)\n"),
        "{out}"
    );
    assert!(
        out.contains("set baggage: tenant=acme-eu,x=1,lane=tenant\n"),
        "{out}"
    );
    // Every rule before tenant is listed with its reason.
    for i in 0..6 {
        assert!(out.contains(&format!("  lanes[{i}] ")), "{out}");
    }
    assert!(out.contains("  lanes[5] \"writes\" priority 60: method in [\"POST\", \"PUT\"] does not hold (got [\"GET\"])\n"));

    let out = explain(&["-H", ":method: POST", "-H", "host: db.internal:8080"]);
    assert!(out.starts_with("lane: writes\n"), "{out}");
}

#[test]
fn explain_base_lists_every_rule_and_removes_tags() {
    let out = explain(&[
        "-H",
        "x-graylane: gray",
        "--baggage",
        "lane=gray,k=v",
        "--host",
        "svc-b",
    ]);
    assert!(
        out.starts_with("lane: base\nsource: default\ntried:\n"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  lanes[")).count(),
        8,
        "{out}"
    );
    assert!(
        out.contains("\nremove x-graylane\nset baggage: k=v\nset x-graylane-cluster: b-base\n"),
        "{out}"
    );
}

#[test]
fn explain_priorities() {
    // gray (10) and beta (20) both match: gray wins, beta is never tried.
    let out = explain(&["-H", "location: cn-shenzhen", "--query", "beta=on"]);
    assert!(
        out.starts_with("lane: gray\nsource: rule\nrule: lanes[0] \"gray\" (priority 10)\n"),
        "{out}"
    );
    assert!(!out.contains("tried:"), "{out}");

    // Priority, not config order, decides; ties go by config order.
    let config = r#"{"lanes": [
        {"name": "late", "priority": 50, "match": {"header": "x", "exact": "1"}},
        {"name": "first", "priority": 5, "match": {"header": "y", "exact": "1"}},
        {"name": "tie-a", "priority": 50, "match": {"header": "x", "prefix": "1"}}
    ]}"#;
    let out = explain_with(config, &["-H", "x: 1", "-H", "y: 1"]).stdout;
    assert!(
        out.starts_with("lane: first\nsource: rule\nrule: lanes[1] \"first\" (priority 5)\n"),
        "{out}"
    );
    let out = explain_with(config, &["-H", "x: 1"]).stdout;
    assert!(
        out.starts_with(
            "lane: late\nsource: rule\nrule: lanes[0] \"late\" (priority 50)\ntried:\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  lanes[1] \"first\" priority 5: header \"y\" exact \"1\" does not hold (absent)\n"
        ),
        "{out}"
    );
    assert!(!out.contains("tie-a"), "{out}");
}

#[test]
fn explain_split_buckets() {
    // bucket("gray", "alice") = 903, bucket("gray", "user-1") = 7511 (golden vectors).
    let out = explain(&["-H", "x-sticky: 1", "-H", "x-user-id: alice"]);
    assert!(
        out.starts_with("lane: sticky\nsource: rule\nrule: lanes[7] \"sticky\" (priority 80)\nbucket: 903 (admitted)\n"),
        "{out}"
    );
    let out = explain(&["-H", "x-sticky: 1", "-H", "x-user-id: user-1"]);
    assert!(out.starts_with("lane: base\nsource: default\n"), "{out}");
    assert!(
        out.contains("  lanes[7] \"sticky\" priority 80: split not admitted: bucket 7511 (key header \"x-user-id\") is outside the admitted buckets 0-4999\n"),
        "{out}"
    );
    let out = explain(&["-H", "x-sticky: 1"]);
    assert!(
        out.contains("  lanes[7] \"sticky\" priority 80: split key absent and onMissingKey is exclude (key: header \"x-user-id\")\n"),
        "{out}"
    );

    let json = explain_json(
        TABLE_CONFIG,
        &["-H", "x-sticky: 1", "-H", "x-user-id: user-1"],
    );
    let last = json["tried"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["lane"].clone(),
            last["outcome"].clone(),
            last["bucket"].clone()
        ),
        (json!("sticky"), json!("notAdmitted"), json!(7511))
    );
}

#[test]
fn explain_random_draws() {
    let config = r#"{"lanes": [
        {"name": "canary", "priority": 1, "split": {"buckets": ["100-199", "5000"]}},
        {"name": "keyed", "priority": 2, "split": {"key": {"cookie": "uid"}, "percent": 0.5}}
    ]}"#;
    let out = explain_with(config, &["--random", "150"]).stdout;
    assert!(out.starts_with("lane: canary\nsource: rule\nrule: lanes[0] \"canary\" (priority 1)\nbucket: 150 (admitted)\n"), "{out}");
    let out = explain_with(config, &["--random", "15000"]).stdout;
    assert!(
        out.starts_with("lane: canary\n") && out.contains("bucket: 5000 (admitted)\n"),
        "{out}"
    );
    // 30 for both draws: canary refuses it, keyed (no cookie: random) admits it.
    let out = explain_with(config, &["--random", "30"]).stdout;
    assert!(out.starts_with("lane: keyed\nsource: rule\nrule: lanes[1] \"keyed\" (priority 2)\nbucket: 30 (admitted)\n"), "{out}");
    assert!(
        out.contains("  lanes[0] \"canary\" priority 1: split not admitted: random bucket 30 is outside the admitted buckets 100-199, 5000\n"),
        "{out}"
    );
    let out = explain_with(config, &["--random", "9999"]).stdout;
    assert!(out.starts_with("lane: base\n"), "{out}");
    assert!(
        out.contains("  lanes[1] \"keyed\" priority 2: split not admitted: split key (cookie \"uid\") absent, random bucket 9999 is outside the admitted buckets 0-49\n"),
        "{out}"
    );
    // Without --random the draws are fixed too: the same output every run.
    let a = explain_with(config, &[]).stdout;
    assert_eq!(a, explain_with(config, &[]).stdout);
}

#[test]
fn explain_assigned_cookie() {
    let config = r#"{"lanes": [{"name": "web", "split": {"key": {"cookie": "gl", "assign": true, "maxAge": 60}, "percent": 100}}],
                     "responseHeader": true}"#;
    let out = explain_with(config, &[]).stdout;
    assert!(out.starts_with("lane: web\n"), "{out}");
    assert!(out.contains("response x-graylane: web\n"), "{out}");
    assert!(out.contains("response set-cookie: gl="), "{out}");
    assert!(
        out.contains("; Path=/; Max-Age=60; HttpOnly; SameSite=Lax\n"),
        "{out}"
    );
}

#[test]
fn explain_shadow_and_bad_baggage() {
    let config = r#"{"shadow": {}, "lanes": [{"name": "gray", "match": {"header": "location", "exact": "x"}}]}"#;
    let out = explain_with(
        config,
        &["--host", "svc-b-shadow:80", "--baggage", "k=v,=bad,m=1"],
    )
    .stdout;
    assert!(
        out.starts_with(
            "lane: base
source: default
"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "set baggage: k=v,m=1,shadow=1
"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "shadow: mirrored request, marked in baggage
"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "baggage: 1 invalid member(s) dropped
"
        ),
        "{out}"
    );
    let json = explain_json(config, &["--host", "svc-b-shadow"]);
    assert_eq!(
        (json["shadow"].clone(), json["headers"].clone()),
        (json!(true), json!({"baggage": "shadow=1"}))
    );
}

#[test]
fn explain_propagated_and_invalid_tags() {
    let trust = TABLE_CONFIG.replacen("\"incoming\": \"ignore\"", "\"incoming\": \"trust\"", 1);
    let out = explain_with(
        &trust,
        &["--baggage", "lane=beta", "-H", "location: cn-shenzhen"],
    )
    .stdout;
    assert!(out.starts_with("lane: beta\nsource: propagated\n"), "{out}");
    assert!(!out.contains("rule:") && !out.contains("tried:"), "{out}");

    let json = explain_json(
        &trust,
        &["-H", "x-graylane: nosuch", "-H", "location: cn-shenzhen"],
    );
    assert_eq!(json["lane"], "gray");
    assert_eq!(json["source"], "rule");
    assert_eq!(json["invalidTag"], true);
}

#[test]
fn explain_json_shape() {
    // android has no version of svc-b: fallback to its base.
    let json = explain_json(
        TABLE_CONFIG,
        &["-H", "user-agent: Mozilla (Android 14)", "--host", "svc-b"],
    );
    assert_eq!(json["lane"], "android");
    assert_eq!(json["source"], "rule");
    assert_eq!(json["rule"], "android");
    assert_eq!(json["bucket"], Value::Null);
    assert_eq!(json["fallback"], "svc-b");
    assert_eq!(
        json["headers"],
        json!({"x-graylane": "android", "baggage": "lane=android", "x-graylane-cluster": "b-base"})
    );
    let tried: Vec<&str> = json["tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["lane"].as_str().unwrap())
        .collect();
    assert_eq!(tried, ["gray", "beta"]);
    assert_eq!(json["tried"][0]["outcome"], "noMatch");
    assert_eq!(json["tried"][0]["index"], 0);
    assert_eq!(json["tried"][0]["priority"], 10);

    let json = explain_json(
        TABLE_CONFIG,
        &["-H", "x-sticky: 1", "-H", "x-user-id: alice"],
    );
    assert_eq!(json["bucket"], 903);
    assert_eq!(json["rule"], "sticky");

    // Base: removals are null, rule null.
    let json = explain_json(
        TABLE_CONFIG,
        &["-H", "x-graylane: gray", "-H", "x-graylane-cluster: evil"],
    );
    let stable = ["lane", "source", "rule", "bucket", "headers", "fallback"];
    for key in stable {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    assert_eq!(
        stable.map(|k| json[k].clone()),
        [
            json!("base"),
            json!("default"),
            Value::Null,
            Value::Null,
            json!({"x-graylane": null, "x-graylane-cluster": null}),
            Value::Null
        ]
    );
}

#[test]
fn explain_wasm_plugin_manifests() {
    let f = TempFile::new("yaml", WASM_PLUGINS);
    let run = graylane(&["explain", f.path(), "-H", "location: cn-shenzhen"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--plugin") && run.stderr.contains("graylane-edge, graylane-sidecar"),
        "{}",
        run.stderr
    );
    let run = graylane(&[
        "explain",
        f.path(),
        "--plugin",
        "graylane-edge",
        "-H",
        "location: cn-shenzhen",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("lane: gray\n"), "{}", run.stdout);
    let run = graylane(&["explain", f.path(), "--plugin=graylane-sidecar"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: lanes[0].match: "),
        "{}",
        run.stderr
    );
    assert_eq!(
        graylane(&["explain", f.path(), "--plugin", "nosuch"]).code,
        2
    );
}

// ---------------------------------------------------------------- schema

const SCHEMA_FILE: &str = "envoy/graylane.schema.json";

fn schema() -> Value {
    let run = graylane(&["schema"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn committed_schema_is_fresh() {
    let run = graylane(&["schema"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let committed = std::fs::read_to_string(Path::new(ROOT).join(SCHEMA_FILE)).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "{SCHEMA_FILE} is stale: the config structs changed. Regenerate it with\n    \
         cargo run --bin graylane -- schema > {SCHEMA_FILE}\nand commit it."
    );
}

/// A config using every top-level field (docs/configuration.md "Configuration reference").
const FULL_EXAMPLE: &str = r#"{
  "laneHeader": "x-graylane",
  "baggageKey": "lane",
  "incoming": "ignore",
  "clusterHeader": "x-graylane-cluster",
  "responseHeader": false,
  "shadow": { "hostSuffix": "-shadow", "baggageKey": "shadow" },
  "services": {
    "svc-b": { "base": "svc-b", "lanes": { "gray": "svc-b-gray" } }
  },
  "lanes": [
    {
      "name": "gray",
      "priority": 10,
      "match": { "all": [ { "header": "location", "exact": "cn-shenzhen" } ] },
      "split": { "key": { "header": "x-app-id" }, "percent": 12.5,
                 "salt": "gray-2026-11", "onMissingKey": "random" }
    }
  ]
}"#;

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).unwrap()
}

#[test]
fn schema_describes_the_config() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["additionalProperties"], false);
    assert_eq!(s["required"], Value::Null);
    assert_eq!(s["anyOf"][1]["required"], json!(["propagate"]));
    for def in [
        "Lane",
        "Condition",
        "Split",
        "SplitKey",
        "Range",
        "Service",
        "Shadow",
    ] {
        assert_eq!(s["$defs"][def]["additionalProperties"], false, "{def}");
    }
    assert_eq!(s["$defs"]["Lane"]["properties"]["priority"]["default"], 100);
    assert!(s["properties"]["laneHeader"]["description"]
        .as_str()
        .unwrap()
        .contains("lane"));

    let v = validator();
    for (name, text) in [
        ("FULL_EXAMPLE", FULL_EXAMPLE),
        ("TABLE_CONFIG", TABLE_CONFIG),
    ] {
        let config: Value = serde_json::from_str(text).unwrap();
        let errors: Vec<String> = v
            .iter_errors(&config)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

/// The schema and the filter's parser agree on valid and invalid configs.
#[test]
fn schema_agrees_with_the_parser() {
    let v = validator();
    let lane = |l: Value| json!({"lanes": [l]});
    let cases = [
        (json!({"lanes": [{"name": "g"}]}), true),
        (json!({"lanes": []}), false),
        (json!({"lanes": [{"name": "g"}], "typo": 1}), false),
        (
            json!({"lanes": [{"name": "g"}], "incoming": "trust", "shadow": {}}),
            true,
        ),
        (
            json!({"lanes": [{"name": "g"}], "incoming": "maybe"}),
            false,
        ),
        (
            json!({"lanes": [{"name": "g"}], "services": {"a": {"base": "a", "lanes": {"g": "a-g"}}}}),
            true,
        ),
        (
            json!({"lanes": [{"name": "g"}], "services": {"a:80": {"base": "a"}}}),
            false,
        ),
        (
            json!({"lanes": [{"name": "g"}], "services": {"a": {"lanes": {}}}}),
            false,
        ),
        (
            json!({"lanes": [{"name": "g"}], "laneHeader": ":path"}),
            false,
        ),
        (lane(json!({"name": "base"})), false),
        (lane(json!({"name": "Gray"})), false),
        (lane(json!({"name": "a".repeat(64)})), false),
        (lane(json!({"name": "a".repeat(63), "priority": -3})), true),
        (lane(json!({"name": "g", "match": {"header": "a"}})), false),
        (lane(json!({"name": "g", "match": {"exact": "a"}})), false),
        (
            lane(json!({"name": "g", "match": {"header": "a", "exact": "x", "prefix": "y"}})),
            false,
        ),
        (
            lane(json!({"name": "g", "match": {"header": "a", "cookie": "b", "exact": "x"}})),
            false,
        ),
        (
            lane(json!({"name": "g", "match": {"all": [], "header": "a"}})),
            false,
        ),
        (
            lane(
                json!({"name": "g", "match": {"all": [], "any": [{"path": true, "prefix": "/"}]}}),
            ),
            false,
        ),
        (lane(json!({"name": "g", "match": {"all": []}})), true),
        (lane(json!({"name": "g", "match": {"any": []}})), false),
        (
            lane(json!({"name": "g", "match": {"not": {"cookie": "a", "present": false}}})),
            true,
        ),
        (
            lane(json!({"name": "g", "match": {"header": "a", "exact": "x", "ignoreCase": true}})),
            true,
        ),
        (
            lane(
                json!({"name": "g", "match": {"header": "a", "present": true, "ignoreCase": true}}),
            ),
            false,
        ),
        (
            lane(json!({"name": "g", "match": {"header": "a", "range": {"min": 1}}})),
            true,
        ),
        (
            lane(json!({"name": "g", "match": {"header": "a", "range": {"low": 1}}})),
            false,
        ),
        (
            lane(json!({"name": "g", "match": {"header": "a", "in": []}})),
            false,
        ),
        (
            lane(json!({"name": "g", "match": {"path": false, "exact": "/"}})),
            false,
        ),
        (
            lane(json!({"name": "g", "match": {"method": true, "in": ["GET"]}})),
            true,
        ),
        (
            lane(json!({"name": "g", "match": {"baggage": "t", "suffix": "x"}})),
            true,
        ),
        (lane(json!({"name": "g", "split": {"percent": 12.5}})), true),
        (lane(json!({"name": "g", "split": {}})), false),
        (lane(json!({"name": "g", "split": {"percent": 101}})), false),
        (lane(json!({"name": "g", "split": {"percent": -1}})), false),
        (
            lane(json!({"name": "g", "split": {"percent": 10, "buckets": ["1"]}})),
            false,
        ),
        (
            lane(json!({"name": "g", "split": {"buckets": ["0-99", "7", "9999"]}})),
            true,
        ),
        (lane(json!({"name": "g", "split": {"buckets": []}})), false),
        (
            lane(json!({"name": "g", "split": {"buckets": ["a-b"]}})),
            false,
        ),
        (
            lane(
                json!({"name": "g", "split": {"percent": 1, "onMissingKey": "exclude", "key": {"query": "u"}}}),
            ),
            true,
        ),
        (
            lane(json!({"name": "g", "split": {"percent": 1, "onMissingKey": "drop"}})),
            false,
        ),
        (
            lane(json!({"name": "g", "split": {"percent": 1, "key": {}}})),
            false,
        ),
        (
            lane(
                json!({"name": "g", "split": {"percent": 1, "key": {"header": "a", "cookie": "b"}}}),
            ),
            false,
        ),
        (
            lane(
                json!({"name": "g", "split": {"percent": 1, "key": {"header": "a", "assign": true}}}),
            ),
            false,
        ),
        (
            lane(
                json!({"name": "g", "split": {"percent": 1, "key": {"cookie": "a", "assign": true, "maxAge": 5}}}),
            ),
            true,
        ),
        (
            lane(
                json!({"name": "g", "split": {"percent": 1, "key": {"cookie": "a", "maxAge": 5}}}),
            ),
            false,
        ),
    ];
    for (config, valid) in cases {
        let parsed = graylane::config::Config::from_json(config.to_string().as_bytes());
        assert_eq!(
            parsed.is_ok(),
            valid,
            "parser on {config}: {:?}",
            parsed.err()
        );
        let errors: Vec<String> = v.iter_errors(&config).map(|e| e.to_string()).collect();
        assert_eq!(errors.is_empty(), valid, "schema on {config}: {errors:?}");
    }
}

// ---------------------------------------------------------------- rollout plan

const ROLLOUT_SCHEMA_FILE: &str = "envoy/rollout.schema.json";

#[test]
fn committed_rollout_schema_is_fresh_and_takes_the_demo_plan() {
    let run = graylane(&["schema", "rollout"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let committed =
        std::fs::read_to_string(Path::new(ROOT).join(ROLLOUT_SCHEMA_FILE)).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "{ROLLOUT_SCHEMA_FILE} is stale: the plan structs changed. Regenerate it with\n    \
         cargo run --bin graylane -- schema rollout > {ROLLOUT_SCHEMA_FILE}\nand commit it."
    );
    let schema: Value = serde_json::from_str(&run.stdout).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let demo: Value = serde_norway::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("envoy/rollout/plan.yaml")).unwrap(),
    )
    .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&demo)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let typo = serde_json::json!({"config": "c", "lane": "l", "deliver": [], "steps": [100], "intervall": "1s"});
    assert!(!validator.is_valid(&typo));
    // The demo plan passes the rollout's own checks too.
    let plan = graylane::rollout::plan::load(&Path::new(ROOT).join("envoy/rollout/plan.yaml"))
        .expect("demo plan");
    assert_eq!(plan.lane, "gray");
    assert_eq!(plan.steps.len(), 4);
}

// ---------------------------------------------------------------- istio

const ISTIO_SCHEMA_FILE: &str = "envoy/istio-mesh.schema.json";
const ISTIO_CONFIG: &str = "envoy/istio/input/config.yaml";
const ISTIO_MESH: &str = "envoy/istio/input/mesh.yaml";

fn repo(path: &str) -> String {
    Path::new(ROOT).join(path).display().to_string()
}

/// The committed `envoy/istio/` manifests are exactly what `graylane istio`
/// writes for the committed input, and a second run writes the same bytes.
#[test]
fn committed_istio_recipe_is_the_generated_one() {
    let dir = std::env::temp_dir().join(format!("graylane-cli-istio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let run = graylane(&[
        "istio",
        &repo(ISTIO_CONFIG),
        &repo(ISTIO_MESH),
        "--out",
        out,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut committed: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("envoy/istio"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    committed.sort();
    assert_eq!(written, committed, "files of envoy/istio/");
    let regenerate = format!(
        "regenerate with\n    cargo run --bin graylane -- istio {ISTIO_CONFIG} {ISTIO_MESH} --out envoy/istio"
    );
    let mut stream = String::new();
    for name in &written {
        let fresh = std::fs::read_to_string(dir.join(name)).unwrap();
        let old = std::fs::read_to_string(Path::new(ROOT).join("envoy/istio").join(name)).unwrap();
        assert!(fresh == old, "envoy/istio/{name} is stale: {regenerate}");
        stream.push_str(&fresh);
    }
    // Same input, same bytes: on stdout twice, and as the files.
    let a = graylane(&["istio", &repo(ISTIO_CONFIG), &repo(ISTIO_MESH)]);
    let b = graylane(&["istio", &repo(ISTIO_CONFIG), &repo(ISTIO_MESH)]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout);
    for name in &written {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(a.stdout.contains(&format!("# {name}\n{text}")), "{name}");
    }
    let again = graylane(&[
        "istio",
        &repo(ISTIO_CONFIG),
        &repo(ISTIO_MESH),
        "--out",
        out,
    ]);
    assert_eq!(again.code, 0);
    for name in &written {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(stream.contains(&text));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn istio_errors_name_the_field() {
    let mesh = TempFile::new(
        "yaml",
        "namespace: demo\nimage: oci://r/graylane:1\nservices:\n  svc-a: {port: 9080, lanes: [blue]}\n  svc-b: {port: 9080}\n  svc-c: {port: 9080}\n",
    );
    let run = graylane(&["istio", &repo(ISTIO_CONFIG), mesh.path()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: mesh: services.svc-a.lanes"),
        "{}",
        run.stderr
    );
    let typo = TempFile::new(
        "yaml",
        "namespace: demo\nimage: oci://r/graylane:1\nservices:\n  svc-a: {prot: 9080}\n",
    );
    let run = graylane(&["istio", &repo(ISTIO_CONFIG), typo.path()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("services.svc-a.prot"), "{}", run.stderr);
    let bad_config = TempFile::new(
        "json",
        r#"{"lanes": [{"name": "gray", "match": {"header": "x", "exatc": "1"}}]}"#,
    );
    let run = graylane(&["istio", bad_config.path(), &repo(ISTIO_MESH)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("error: config: lanes[0].match.exatc"),
        "{}",
        run.stderr
    );
    let run = graylane(&["istio", "/nonexistent.json", &repo(ISTIO_MESH)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn committed_istio_schema_is_fresh_and_takes_the_demo_mesh() {
    let run = graylane(&["schema", "istio"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let committed =
        std::fs::read_to_string(Path::new(ROOT).join(ISTIO_SCHEMA_FILE)).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "{ISTIO_SCHEMA_FILE} is stale. Regenerate it with\n    \
         cargo run --bin graylane -- schema istio > {ISTIO_SCHEMA_FILE}\nand commit it."
    );
    let schema: Value = serde_json::from_str(&run.stdout).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let demo: Value =
        serde_norway::from_str(&std::fs::read_to_string(repo(ISTIO_MESH)).unwrap()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&demo)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!validator
        .is_valid(&json!({"namespace": "d", "image": "oci://x", "services": {}, "gatway": {}})));
}

/// docs/rollout.md "Planning a rollout" shows `graylane rollout plan` on the demo
/// plan: the block is what the CLI prints; bad arguments exit 2.
#[test]
fn the_readme_planner_output_is_the_cli_s() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rollout.md")).unwrap();
    let command = "$ graylane rollout plan envoy/rollout/plan.yaml --rps 100 --base-errors 0\n";
    let start = readme
        .find(command)
        .expect("docs/rollout.md shows the planner")
        + command.len();
    let shown = &readme[start..start + readme[start..].find("```").unwrap()];
    let plan = |more: &[&str]| {
        let mut args = vec!["rollout", "plan", "envoy/rollout/plan.yaml"];
        args.extend_from_slice(more);
        graylane(&args)
    };
    let run = plan(&["--rps", "100", "--base-errors", "0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, shown);
    let json = plan(&["--rps", "100", "--base-errors", "1.5", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let event: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(event["event"], "plan");
    let steps = event["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert!(steps[0]["warning"]
        .as_str()
        .unwrap()
        .contains("cannot pass before its deadline"));
    for bad in [&["--rps", "0"][..], &["--base-errors", "101"][..]] {
        assert_eq!(plan(bad).code, 2, "{bad:?}");
    }
}

// ---------------------------------------------------------------- continuity

const CONTINUITY_CONFIG: &str = r#"{"incoming": "trust", "propagate": ["gray"],
  "services": {"svc-b": {"base": "b", "lanes": {"gray": "b-gray"}}},
  "continuity": {"from": ["traceparent", "x-request-id"], "ttl": "2m"}}"#;
const TRACEPARENT: &str = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn check_shows_continuity_and_names_its_errors() {
    let run = check(CONTINUITY_CONFIG);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "ok: 1 lane, 1 service\ncontinuity: trace id from traceparent, x-request-id; ttl 120000 ms; 65536 slots; side from the listener's direction\n"
    );
    let run = check(r#"{"propagate": ["gray"], "continuity": {"ttl": "soon", "slots": 0}}"#);
    assert_ne!(run.code, 0);
    assert!(
        run.stdout.contains("error: continuity.ttl: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("error: continuity.slots: "),
        "{}",
        run.stdout
    );
}

#[test]
fn explain_shows_what_continuity_remembers_and_restores() {
    // Inbound: the decision is remembered for the trace.
    let json = explain_json(
        CONTINUITY_CONFIG,
        &["-H", TRACEPARENT, "--baggage", "lane=gray"],
    );
    assert_eq!(json["lane"], "gray");
    assert_eq!(
        json["continuity"],
        "inbound: remembers trace 4bf92f3577b34da6a3ce929d0e0e4736 -> gray for 120000 ms"
    );
    // Outbound with a remembered lane: continued, as if from baggage.
    let json = explain_json(
        CONTINUITY_CONFIG,
        &["-H", TRACEPARENT, "--host", "svc-b", "--remembered", "gray"],
    );
    assert_eq!(json["lane"], "gray");
    assert_eq!(json["source"], "continued");
    assert_eq!(json["cluster"], "b-gray");
    assert_eq!(json["headers"]["baggage"], "lane=gray");
    // A request carrying a tag is never changed by the lookup.
    let json = explain_json(
        CONTINUITY_CONFIG,
        &[
            "-H",
            TRACEPARENT,
            "--baggage",
            "lane=nope",
            "--remembered",
            "gray",
        ],
    );
    assert_eq!(json["lane"], "base");
    assert_eq!(
        json["continuity"],
        "not continued: the request carries a tag (trace 4bf92f3577b34da6a3ce929d0e0e4736)"
    );
    // An undeclared remembered lane is never admitted.
    let json = explain_json(
        CONTINUITY_CONFIG,
        &["-H", TRACEPARENT, "--remembered", "blue"],
    );
    assert_eq!(json["lane"], "base");
    // No continuity key without the field.
    let json = explain_json(r#"{"lanes": [{"name": "gray"}]}"#, &[]);
    assert!(json.get("continuity").is_none());
}
