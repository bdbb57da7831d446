//! The Grafana dashboard (`envoy/grafana/graylane-dashboard.json`) against
//! real parts: the demo gateway (`envoy/demo.yaml`) and a trusting hop
//! (`envoy/fulllink/sidecar-a.yaml`, for fallbacks and invalid tags, which
//! an edge never counts) serve traffic into every lane, a real Prometheus
//! (Debian's `prometheus`) scrapes both admins' `/stats/prometheus` every
//! second, and every query of every panel — read from the dashboard JSON,
//! so a panel added later is checked too — is evaluated through
//! Prometheus' HTTP API, with the template variables resolved the way
//! Grafana resolves them. Each query must parse and return a series with a
//! number, and every query whose series carry a `lane` (or `rule`) label
//! must show every lane the demo routes, with the values the traffic
//! implies (see `check_values`): rates above 0, shares summing to 1, the
//! 5xx ratio of each lane near the failures the test injects.

use graylane_wasm_tests::chain::fulllink_config;
use graylane_wasm_tests::harness::{free_port, poll, repo_root, request, Envoy, Server};
use graylane_wasm_tests::prometheus::Prometheus;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Grafana's built-in interval variables, as concrete values for a
/// Prometheus that scrapes every second.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "30s"),
    ("__interval", "2s"),
    ("__range", "5m"),
];

/// What the test's traffic must have moved before the dashboard is read,
/// so that the panels show counts, not counters still at 0: (query, series).
const TRAFFIC_EFFECTS: &[(&str, usize)] = &[
    (r#"graylane_fallbacks{service="svc-b"} > 0"#, 1),
    ("graylane_invalid_tags > 0", 1),
    ("graylane_malformed_baggage > 0", 1),
    (r#"graylane_rule_wins > 0"#, 3),
    (
        r#"envoy_cluster_upstream_rq_xx{envoy_response_code_class="5", envoy_cluster_name=~"backend-.*"} > 0"#,
        4,
    ),
];

/// Stops the traffic thread on every exit path, a failed check included.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The lane names of the graylane configuration inside an Envoy config.
fn lanes_in_envoy_config(yaml: &str) -> Vec<String> {
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) => m
                .get("configuration")
                .and_then(|c| c["value"].as_str())
                .map(str::to_string)
                .or_else(|| m.values().find_map(find)),
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let v: Value = serde_norway::from_str(yaml).expect("demo.yaml is YAML");
    let plugin: Value =
        serde_json::from_str(&find(&v).expect("graylane configuration in demo.yaml"))
            .expect("JSON");
    plugin["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|l| l["name"].as_str().expect("lane name").to_string())
        .collect()
}

/// Every panel, rows' nested panels included.
fn all_panels(panels: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in panels {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(all_panels(inner));
        }
    }
    out
}

/// Replaces `$name` and `${name}` (longest names first, so `$__range` is
/// not read as a prefix of another).
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = text.to_string();
    for n in names {
        out = out.replace(&format!("${{{n}}}"), &vars[n]);
        out = out.replace(&format!("${n}"), &vars[n]);
    }
    out
}

/// A Grafana variable's value as the Prometheus data source interpolates
/// it: "All" is the variable's allValue if set, else every value as a
/// regex alternation (values regex-escaped).
fn resolve_variables(dash: &Value, prom: &Prometheus) -> Result<BTreeMap<String, String>, String> {
    let mut vars: BTreeMap<String, String> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for var in dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        let name = var["name"].as_str().expect("variable name");
        match var["type"].as_str() {
            Some("datasource") => continue,
            Some("query") => {}
            other => panic!("variable {name}: type {other:?} is not handled by this test"),
        }
        let def = substitute(var["definition"].as_str().expect("definition"), &vars);
        // label_values(SELECTOR, LABEL)
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: {def} is not label_values(...)"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let v = prom.api(
            &format!("/api/v1/label/{}/values", label.trim()),
            &[("match[]", selector.trim())],
        );
        let values: Vec<String> = v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if values.is_empty() {
            return Err(format!("variable {name}: {def} has no values yet"));
        }
        let all = match var["allValue"].as_str() {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => {
                let escaped: Vec<String> = values
                    .iter()
                    .map(|v| v.replace('.', "\\\\.").replace('|', "\\\\|"))
                    .collect();
                format!("({})", escaped.join("|"))
            }
        };
        vars.insert(name.to_string(), all);
    }
    Ok(vars)
}

/// One evaluated query.
struct Checked {
    panel: String,
    expr: String,
    series: usize,
    lanes: BTreeSet<String>,
    /// `{labels} value` of each series.
    values: Vec<String>,
}

/// What the test's traffic implies for the 5xx ratio per lane: one round
/// in five sends each lane's request with an injected 503. The edge's base
/// cluster also gets the malformed-baggage request every round, and the
/// hop's base cluster (`b-base`, named `<service>-base`) two requests that
/// never fail, so base sees 1 failure in 20 upstream requests; every other
/// lane 1 in 5. The band allows for the rate window's edges and the few
/// requests sent before the traffic loop.
fn expected_5xx_ratio(lane: &str) -> (f64, f64) {
    let p: f64 = if lane == "base" {
        1.0 / 20.0
    } else {
        1.0 / 5.0
    };
    (p * 0.6, p * 1.4)
}

fn value_of(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// The values the known traffic must produce: every rate panel above 0 for
/// every lane (or rule) the demo routes, and for every series of a rate
/// panel without lanes; the traffic shares per lane summing to 1 ± 0.05;
/// the 5xx ratio per lane within [`expected_5xx_ratio`].
fn check_values(
    title: &str,
    expr: &str,
    numbered: &[&Value],
    want: &BTreeSet<String>,
    label: &str,
) -> Result<(), String> {
    let per_label = |l: &str| -> Vec<f64> {
        numbered
            .iter()
            .filter(|s| s["metric"][label].as_str() == Some(l))
            .map(|s| value_of(s))
            .collect()
    };
    let has_label = numbered.iter().any(|s| s["metric"][label].is_string());
    if expr.contains("rate(") {
        if has_label {
            for l in want {
                if !per_label(l).iter().any(|v| *v > 0.0) {
                    return Err(format!(
                        "{title}: {label} {l} at {:?}, not above 0",
                        per_label(l)
                    ));
                }
            }
        } else if let Some(s) = numbered
            .iter()
            .find(|s| value_of(s).is_nan() || value_of(s) <= 0.0)
        {
            return Err(format!("{title}: {} not above 0", s["metric"]));
        }
    }
    if title.starts_with("Share of traffic") {
        let sum: f64 = numbered.iter().map(|s| value_of(s)).sum();
        if (sum - 1.0).abs() > 0.05 {
            return Err(format!("{title}: the shares sum to {sum:.3}, not 1 ± 0.05"));
        }
    }
    if title.contains("5xx ratio") {
        for l in want {
            let (lo, hi) = expected_5xx_ratio(l);
            let v = per_label(l);
            if v.len() != 1 || !(lo..=hi).contains(&v[0]) {
                return Err(format!(
                    "{title}: lane {l} at {v:?}, expected one value in [{lo:.3}, {hi:.3}]"
                ));
            }
        }
    }
    Ok(())
}

/// Evaluates every query once; Err lists what is not there yet.
fn check_all(
    dash: &Value,
    prom: &Prometheus,
    lanes: &BTreeSet<String>,
) -> Result<Vec<Checked>, Vec<String>> {
    let vars = resolve_variables(dash, prom).map_err(|e| vec![e])?;
    let rules: BTreeSet<String> = lanes.iter().filter(|l| *l != "base").cloned().collect();
    let mut done = Vec::new();
    let mut missing = Vec::new();
    for panel in all_panels(dash["panels"].as_array().expect("panels")) {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let raw = target["expr"].as_str().expect("target expr");
            let expr = substitute(raw, &vars);
            let leftover = expr.match_indices('$').any(|(i, _)| {
                expr[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{')
            });
            assert!(!leftover, "{title}: unresolved variable in {expr}");
            let result = match prom.query(&expr) {
                Ok(r) => r,
                // A parse error is final, not a matter of waiting.
                Err(e) => panic!("{title}: query failed: {e}\n{expr}"),
            };
            // Series with a number (not NaN: a ratio or quantile with no data).
            let numbered: Vec<&Value> = result
                .iter()
                .filter(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                })
                .collect();
            if numbered.is_empty() {
                missing.push(format!(
                    "{title}: no series with a number yet ({} series)",
                    result.len()
                ));
                continue;
            }
            let label_values = |label: &str| -> BTreeSet<String> {
                numbered
                    .iter()
                    .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
                    .collect()
            };
            let mut seen = label_values("lane");
            let (want, label) = if !seen.is_empty() {
                (lanes, "lane")
            } else {
                seen = label_values("rule");
                (&rules, "rule")
            };
            if !seen.is_empty() && !want.is_subset(&seen) {
                missing.push(format!(
                    "{title}: {label}s {:?} missing (seen {seen:?})",
                    want.difference(&seen).collect::<Vec<_>>()
                ));
                continue;
            }
            if let Err(e) = check_values(&title, raw, &numbered, want, label) {
                missing.push(e);
                continue;
            }
            let values = result
                .iter()
                .map(|s| {
                    let labels = s["metric"].as_object().map_or(String::new(), |m| {
                        let kv: Vec<String> = m
                            .iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect();
                        kv.join(",")
                    });
                    let v = s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
                    format!("{{{labels}}} {:.3}", v.unwrap_or(f64::NAN))
                })
                .collect();
            done.push(Checked {
                panel: title.clone(),
                expr: raw.to_string(),
                series: result.len(),
                lanes: seen,
                values,
            });
        }
    }
    if missing.is_empty() {
        Ok(done)
    } else {
        Err(missing)
    }
}

#[test]
fn every_dashboard_query_returns_every_demo_lane_from_real_prometheus() {
    let started = Instant::now();
    let root = repo_root();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("envoy/grafana/graylane-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");

    // The dashboard model Grafana imports.
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");
    assert!(
        dash["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title"
    );
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert!(
        dash["__inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "__inputs names the Prometheus data source DS_PROMETHEUS"
    );
    let panels = all_panels(dash["panels"].as_array().expect("panels"));
    let mut ids = BTreeSet::new();
    for p in &panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id {}",
            p["id"]
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some(),
            "gridPos of {}",
            p["title"]
        );
        if p["type"] != "row" {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{}: no query", p["title"]);
            let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
            assert_eq!(refs.len(), targets.len(), "{}: refIds", p["title"]);
        }
    }

    // The demo gateway, with free ports.
    let demo = std::fs::read_to_string(root.join("envoy/demo.yaml")).expect("demo.yaml");
    let mut lanes: BTreeSet<String> = lanes_in_envoy_config(&demo).into_iter().collect();
    lanes.insert("base".into());
    let (gw, backends) = (free_port(), free_port());
    let demo = demo
        .replace("port_value: 9901 ", "port_value: {{ADMIN}} ")
        .replace("port_value: 10000 ", &format!("port_value: {gw} "))
        .replace("port_value: 10001 ", &format!("port_value: {backends} "))
        .replace("filename: target/graylane.wasm", "filename: {{WASM}}");
    for fixed in ["9901", "10000", "10001"] {
        assert!(
            !demo.contains(&format!("port_value: {fixed} ")),
            "demo.yaml port {fixed} left in place"
        );
    }
    let edge = Envoy::start_with(&demo, &[], 1);

    // A trusting hop: sidecar A of the full-link configs, whose svc-b has no
    // lane version (every lane request to svc-b is a fallback).
    let b_base = Server::echo("b-base");
    let hop_port = free_port();
    let ports = BTreeMap::from([(10120, hop_port), (10121, b_base.port)]);
    let hop_yaml = fulllink_config("sidecar-a.yaml", &ports)
        .replace("port_value: 9920 ", "port_value: {{ADMIN}} ");
    let hop = Envoy::start_with(&hop_yaml, &[], 1);

    let send = |port: u16, headers: &[(&str, &str)]| {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        request(port, "GET", "/", &raw).expect("request")
    };
    // A user id the canary split admits.
    let canary_user = (0..2000)
        .map(|n| format!("user-{n}"))
        .find(|u| {
            send(gw, &[("x-user-id", u)])
                .text()
                .starts_with("backend=canary")
        })
        .expect("a user id in the canary lane");
    let lane_requests: Vec<(String, Vec<(&str, String)>)> = vec![
        ("base".into(), vec![]),
        ("gray".into(), vec![("location", "cn-shenzhen".into())]),
        ("beta".into(), vec![("cookie", "canary=beta".into())]),
        ("canary".into(), vec![("x-user-id", canary_user.clone())]),
    ];
    let routed: BTreeSet<String> = lane_requests.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(
        routed, lanes,
        "this test sends traffic into every lane demo.yaml declares"
    );
    for (lane, headers) in &lane_requests {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(gw, &h);
        assert!(
            r.text().starts_with(&format!("backend={lane} ")),
            "{lane}: {}",
            r.text()
        );
        let mut failing = h.clone();
        failing.push(("x-envoy-fault-abort-request", "503"));
        assert_eq!(
            send(gw, &failing).status,
            503,
            "{lane}: the backend fails on request"
        );
    }
    let r = send(hop_port, &[("host", "svc-b"), ("baggage", "lane=gray")]);
    assert_eq!(
        r.json()["backend"],
        "b-base",
        "gray falls back to svc-b's base"
    );

    // Traffic until the checks are done: every lane (one request in five
    // failing with 503), malformed baggage at the edge; fallbacks and
    // invalid tags at the hop.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_exit = StopOnDrop(Arc::clone(&stop));
    let traffic = {
        let stop = Arc::clone(&stop);
        let lane_requests = lane_requests.clone();
        thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (_, headers) in &lane_requests {
                    let mut h: Vec<(&str, &[u8])> =
                        headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
                    if round.is_multiple_of(5) {
                        h.push(("x-envoy-fault-abort-request", b"503"));
                    }
                    let _ = request(gw, "GET", "/", &h);
                }
                let _ = request(gw, "GET", "/", &[("baggage", b"k=v,=no-key,x")]);
                let _ = request(
                    hop_port,
                    "GET",
                    "/",
                    &[("host", b"svc-b"), ("baggage", b"lane=gray")],
                );
                let _ = request(
                    hop_port,
                    "GET",
                    "/",
                    &[("host", b"svc-b"), ("baggage", b"lane=no-such-lane")],
                );
                round += 1;
                thread::sleep(Duration::from_millis(150));
            }
        })
    };

    let prom = Prometheus::start(&[("graylane-demo", edge.admin), ("graylane-hop", hop.admin)]);
    let checked = poll(Duration::from_secs(120), Duration::from_secs(1), || {
        let up = prom.query("up == 1").map(|r| r.len()).unwrap_or(0);
        let moved: Vec<String> = TRAFFIC_EFFECTS
            .iter()
            .filter(|(expr, want)| prom.query(expr).map_or(0, |r| r.len()) < *want)
            .map(|(expr, want)| format!("the traffic has not yet shown in {expr} ({want} series)"))
            .collect();
        let last = if up != 2 {
            Err(vec![format!("{up} of 2 scrape targets up")])
        } else if !moved.is_empty() {
            Err(moved)
        } else {
            check_all(&dash, &prom, &lanes)
        };
        last.map_err(|missing| missing.join("\n"))
    })
    .unwrap_or_else(|missing| panic!("after 120 s:\n{missing}"));
    stop.store(true, Ordering::SeqCst);
    traffic.join().expect("traffic thread");

    println!("dashboard queries evaluated through Prometheus' HTTP API:");
    for c in &checked {
        println!(
            "  [{}] {} series, lanes/rules {:?}\n      {}\n      = {}",
            c.panel,
            c.series,
            c.lanes,
            c.expr,
            c.values.join("  ")
        );
    }
    let targets = panels
        .iter()
        .map(|p| p["targets"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    assert_eq!(
        checked.len(),
        targets,
        "every query of every panel was checked"
    );
    println!(
        "{} queries of {} panels; demo lanes {lanes:?}; {:.1} s",
        checked.len(),
        panels.iter().filter(|p| p["type"] != "row").count(),
        started.elapsed().as_secs_f64()
    );
}
