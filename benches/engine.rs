//! Native micro-benchmarks of the per-request engine and of config loading.
//!
//!   cargo bench --bench engine                                   # full run
//!   cargo bench --bench engine -- --measurement-time 2 --warm-up-time 1
//!   cargo bench --bench engine -- decide/exact                   # one group
//!
//! If cargo warns "output filename collision at .../libgraylane.rlib" and
//! then fails with "requires panic strategy `abort`": the release profile's
//! `panic = "abort"` applies to the `graylane` binary that `cargo bench`
//! builds too, so the library is built twice under one name. Prefix the
//! command with `CARGO_PROFILE_BENCH_PANIC=unwind` (cargo then builds it once).
//!
//! Groups:
//! - `decide/{exact,mixed}-{miss,hit}/N`: `engine::process` (decision plus
//!   header effects, baggage edit included) for a typical request against N
//!   lanes. `exact`: every lane is `header x-region exact region-i` (all
//!   indexed). `mixed`: header / cookie / query exact lanes interleaved with
//!   regex and prefix lanes (not indexable), plus one sticky split lane.
//!   `miss`: the request matches no lane rule (the common case: base).
//!   `hit`: it matches the lane evaluated last.
//! - `decide/gateway/{c-20,e-1000}`: the lane configs of `scripts/bench.sh`
//!   variants (c) and (e), with its common request (no lane by header).
//! - `baggage/{typical,maximal}`: parse + edit one member + serialize, for a
//!   5-member header and a 180-member / ~8 KB one.
//! - `compile/{exact,mixed}/1000`: `Config::from_json` (parse, compile,
//!   analysis) of a 1,000-lane configuration.
//!
//! Note: `cargo bench` uses the release profile, which is tuned for the
//! wasm artifact (`opt-level = "z"`, LTO); the numbers are for that code
//! shape, natively.

// Bench setup may unwrap and index freely: it is not request-path code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use graylane::baggage::Baggage;
use graylane::config::Config;
use graylane::engine::{process, HeaderList};
use graylane::testvectors::{bench_config, bench_request};
use std::fmt::Write as _;
use std::hint::black_box;

const SIZES: [usize; 4] = [1, 10, 100, 1000];

/// The JSON of lane `i` in a `mixed` config.
fn mixed_lane(i: usize) -> String {
    let m = match i % 5 {
        0 => format!(r#"{{"header": "x-region", "exact": "region-{i}"}}"#),
        1 => format!(r#"{{"cookie": "canary", "exact": "beta-{i}"}}"#),
        2 => format!(r#"{{"query": "lane", "exact": "q-{i}"}}"#),
        3 => format!(r#"{{"header": "user-agent", "regex": "Mozilla/5\\.0 .*Build-{i}( .*)?"}}"#),
        _ => format!(r#"{{"header": "x-app-version", "prefix": "{i}."}}"#),
    };
    format!(r#"{{"name": "lane-{i}", "priority": {i}, "match": {m}}}"#)
}

/// A config of `n` lanes. `mixed` adds a sticky split lane evaluated last.
fn config_json(n: usize, mixed: bool) -> String {
    let mut lanes: Vec<String> = (0..n)
        .map(|i| {
            if mixed {
                mixed_lane(i)
            } else {
                format!(
                    r#"{{"name": "lane-{i}", "priority": {i}, "match": {{"header": "x-region", "exact": "region-{i}"}}}}"#
                )
            }
        })
        .collect();
    if mixed {
        lanes.push(format!(
            r#"{{"name": "sticky", "priority": {n}, "split": {{"key": {{"header": "x-user-id"}}, "percent": 10, "salt": "bench", "onMissingKey": "exclude"}}}}"#
        ));
    }
    format!(
        r#"{{"incoming": "ignore", "lanes": [{}]}}"#,
        lanes.join(", ")
    )
}

/// A 5-member baggage header, as a tracing-instrumented client sends it.
const TYPICAL_BAGGAGE: &str =
    "userId=alice,sessionId=3f2a9c1e-77b0,tenant=acme;ttl=60,sampled=true,lane=gray";

/// 180 members, ~8 KB (just under the W3C limit), with `lane` in the middle.
fn maximal_baggage() -> String {
    let mut s = String::new();
    for i in 0..180 {
        if !s.is_empty() {
            s.push(',');
        }
        if i == 90 {
            s.push_str("lane=gray");
        } else {
            // 44 bytes a member: k000=vvvv...
            let _ = write!(s, "k{i:03}={}", "v".repeat(39));
        }
    }
    assert!(s.len() <= 8192 && s.len() > 7900, "{}", s.len());
    s
}

/// A typical browser/API request through the gateway. `region` selects
/// (or not) an `x-region` lane.
fn request(region: &str) -> HeaderList {
    HeaderList::from_strs(&[
        (":method", "GET"),
        (":path", "/api/v1/orders?page=2&lang=en&sort=desc"),
        (":authority", "shop.example.com"),
        (":scheme", "https"),
        (
            "user-agent",
            "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("cookie", "session=9c1e77b03f2a; theme=dark; canary=none"),
        ("x-user-id", "user-48213"),
        ("x-region", region),
        ("x-request-id", "7d3c2b1a-0f9e-4d8c-b7a6-5e4d3c2b1a09"),
        ("x-forwarded-for", "203.0.113.7"),
        ("baggage", TYPICAL_BAGGAGE),
    ])
}

fn bench_decide(c: &mut Criterion) {
    for (kind, mixed) in [("exact", false), ("mixed", true)] {
        for (case, hit) in [("miss", false), ("hit", true)] {
            let mut g = c.benchmark_group(format!("decide/{kind}-{case}"));
            for n in SIZES {
                let config =
                    Config::from_json(config_json(n, mixed).as_bytes()).expect("bench config");
                // The lane evaluated last that an x-region value selects.
                let last = (0..n).rev().find(|i| i % 5 == 0 || !mixed).unwrap_or(0);
                let region = if hit {
                    format!("region-{last}")
                } else {
                    "region-none".to_string()
                };
                let req = request(&region);
                let out = process(&config, &req, &mut || 42);
                assert_eq!(out.decision.lane.is_some(), hit, "{kind}-{case}/{n}");
                g.throughput(Throughput::Elements(1));
                g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                    b.iter(|| {
                        process(black_box(&config), black_box(&req), &mut || 42)
                            .decision
                            .lane
                    });
                });
            }
            g.finish();
        }
    }
}

/// The requests of `scripts/bench.sh` (most of them: no x-region lane).
fn bench_gateway_configs(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide/gateway");
    for (name, variant, lanes) in [("c-20", 'c', 20), ("e-1000", 'e', 1000)] {
        let config = Config::from_json(bench_config(variant).as_bytes()).expect("gateway config");
        assert_eq!(config.rules.lanes.len(), lanes);
        let req = bench_request("region-none");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| {
                process(black_box(&config), black_box(&req), &mut || 42)
                    .decision
                    .lane
            });
        });
    }
    g.finish();
}

fn bench_baggage(c: &mut Criterion) {
    let maximal = maximal_baggage();
    let mut g = c.benchmark_group("baggage");
    for (name, header) in [("typical", TYPICAL_BAGGAGE), ("maximal", maximal.as_str())] {
        let parsed = Baggage::parse([header.as_bytes()]);
        assert_eq!(parsed.dropped, 0, "{name}");
        assert!(parsed.with_member("lane", Some("canary")).is_some());
        g.throughput(Throughput::Bytes(header.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let bag = Baggage::parse([black_box(header).as_bytes()]);
                bag.with_member("lane", Some("canary"))
            });
        });
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for (kind, mixed) in [("exact", false), ("mixed", true)] {
        let json = config_json(1000, mixed);
        assert!(Config::from_json(json.as_bytes()).is_ok());
        g.bench_with_input(BenchmarkId::new(kind, 1000), &json, |b, json| {
            b.iter(|| Config::from_json(black_box(json.as_bytes())).map(|c| c.rules.lanes.len()));
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_decide,
    bench_gateway_configs,
    bench_baggage,
    bench_compile
);
criterion_main!(benches);
