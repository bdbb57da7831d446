//! A deterministic cost meter for the shipped filter: a minimal proxy-wasm
//! host (ABI 0.2.1 plus WASI preview1) on the wasmi interpreter with fuel
//! metering, driven the way Envoy drives a filter.
//!
//! What it counts, per request:
//! - **fuel**: about one unit per Wasm instruction executed inside the
//!   module (wasmi's default costs: 1 per operator, 0 for `nop`, `drop`,
//!   `block`, `loop`, `else`, `end`, `return`, `unreachable`; bulk-memory
//!   copies and fills add one per 64 bytes). wasmi charges a block's
//!   instructions when it enters the block (at least 1), so a branch out of
//!   its middle still counts the rest: a count of work, exact only as a
//!   count of fuel. It includes the module's allocator when the host calls it.
//!   Functions are compiled eagerly, so no translation fuel is charged while
//!   a request runs. The figure depends on the module and on the wasmi version
//!   (pinned in `wasm-tests/Cargo.toml`), not on load or on the machine.
//! - **host calls** by import name (every import the module declares is
//!   linked and counted, whatever its name).
//! - **allocations the host makes in the module** (calls into
//!   `proxy_on_memory_allocate` or `malloc` to return a buffer) and the
//!   linear memory grown while requests ran.
//!
//! The stream sequence per request follows Envoy: `proxy_on_context_create`,
//! `proxy_on_request_headers(end_of_stream)`, `proxy_on_response_headers`,
//! `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`, each only when the
//! module exports it (Envoy skips a missing callback without entering the
//! VM). A tick (`proxy_on_tick`, if the module asks for a tick period) is
//! measured separately, never inside a request: Envoy fires it by time, so
//! its share per request is its cost divided by (requests/s × period).
//!
//! The host is deterministic: a fixed clock that advances 1 µs per read, a
//! seeded random source, fixed header maps.
//!
//! - `host`: the host functions, one handler per import;
//! - `vm`: the VM and the stream sequence ([`CostHost`]);
//! - `spec`: the request kinds and configs ([`BenchSpec`]);
//! - `report`: Markdown and the baseline's JSON.
//!
//! This module measures a kind ([`measure`]) and checks that the filter
//! did the kind's job ([`check`]).

mod host;
mod report;
mod spec;
mod vm;

use host::Headers;
pub use host::{deserialize_map, serialize_map, HostState};
pub use report::{markdown, to_json};
pub use spec::{BenchSpec, Kind, SPEC_FILE};
use std::collections::BTreeMap;
pub use vm::{Cost, CostHost, Trace};

/// Per-request figures of one request kind.
#[derive(Clone, Debug)]
pub struct Figures {
    pub kind: String,
    pub requests: u64,
    /// Fuel per request (averaged over `requests`; whole when every request
    /// costs the same).
    pub fuel: f64,
    /// Smallest and largest single-request fuel seen.
    pub fuel_min: u64,
    pub fuel_max: u64,
    pub host_calls: BTreeMap<String, f64>,
    pub host_calls_total: f64,
    pub allocations: f64,
    pub allocated_bytes: f64,
    /// Linear memory grown over the measured requests, in bytes.
    pub memory_growth: u64,
    /// The last measured request.
    pub last: Trace,
    /// Imports answered by the generic fallback, by name (whole run).
    pub fallbacks: BTreeMap<String, u64>,
    /// The tick, measured after the requests (if the module asked for one).
    pub tick: Option<Cost>,
    /// `proxy_on_configure` of this kind's config (once per VM).
    pub configure: Cost,
    /// Every metric the module defined, with its value after the run.
    pub metrics: BTreeMap<String, i64>,
    /// Warm-up plus measured requests.
    pub requests_run: u64,
    pub tick_period_ms: u32,
}

/// Warm-up and measured requests per kind: the figure is deterministic, so
/// few are enough; the warm-up lets one-time work (first-use allocations,
/// table growth) settle.
pub const WARMUP: u64 = 20;
pub const MEASURED: u64 = 50;

/// Runs one kind in a fresh VM: warm-up, then `measured` requests.
pub fn measure(
    wasm: &[u8],
    spec: &BenchSpec,
    kind: &Kind,
    warmup: u64,
    measured: u64,
) -> Result<Figures, String> {
    let config = spec
        .configs
        .get(&kind.config)
        .ok_or_else(|| format!("kind {}: no config {}", kind.name, kind.config))?;
    let mut host = CostHost::new(wasm, config.as_bytes())?;
    let mut last = None;
    for _ in 0..warmup {
        last = Some(host.request(&kind.request, &spec.response)?);
    }
    let memory_before = host.memory_bytes();
    let mut total = Cost::default();
    let (mut fuel_min, mut fuel_max) = (u64::MAX, 0);
    for _ in 0..measured {
        let trace = host.request(&kind.request, &spec.response)?;
        total.add(&trace.cost);
        fuel_min = fuel_min.min(trace.cost.fuel);
        fuel_max = fuel_max.max(trace.cost.fuel);
        last = Some(trace);
    }
    let memory_growth = host.memory_bytes() - memory_before;
    let tick = host.tick()?;
    let last = last.ok_or("no request was run")?;
    // Let counters kept in the VM reach the host, however the filter
    // flushes them (docs/observability.md "Metrics": at least once a second and when the VM
    // stops): a second passes, one more request, a tick, then the root
    // context's done and delete (what Envoy calls when the VM stops).
    host.pass_time(2_000_000_000);
    host.request(&kind.request, &spec.response)?;
    host.tick()?;
    host.stop()?;
    let n = measured.max(1) as f64;
    Ok(Figures {
        kind: kind.name.clone(),
        requests: measured,
        fuel: total.fuel as f64 / n,
        fuel_min,
        fuel_max,
        host_calls_total: total.total_host_calls() as f64 / n,
        host_calls: total
            .host_calls
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / n))
            .collect(),
        allocations: total.allocations as f64 / n,
        allocated_bytes: total.allocated_bytes as f64 / n,
        memory_growth,
        last,
        fallbacks: host.state().fallbacks.clone(),
        tick,
        tick_period_ms: host.tick_period_ms(),
        configure: host.configure.clone(),
        metrics: host
            .state()
            .metrics
            .iter()
            .map(|(n, _, v)| (n.clone(), *v))
            .collect(),
        requests_run: warmup + measured + 1,
    })
}

/// Checks that the filter did what the kind expects, so that a broken host
/// cannot produce plausible figures: the lane header and baggage member it
/// wrote, the filter state, the request counter, Continue from both
/// callbacks.
pub fn check(kind: &Kind, f: &Figures) -> Result<(), String> {
    let name = &kind.name;
    let got = f.last.request_header("x-graylane");
    if got != kind.lane.as_deref() {
        return Err(format!(
            "kind {name}: x-graylane written by the filter is {got:?}, expected {:?}",
            kind.lane
        ));
    }
    let baggage_lane = f.last.request_header("baggage").and_then(|b| {
        b.split(',')
            .filter_map(|m| m.split(';').next()?.trim().strip_prefix("lane="))
            .next()
    });
    if baggage_lane != kind.lane.as_deref() {
        return Err(format!(
            "kind {name}: baggage lane member is {baggage_lane:?}, expected {:?} (baggage {:?})",
            kind.lane,
            f.last.request_header("baggage")
        ));
    }
    let want = kind.lane.as_deref().unwrap_or("base");
    let state = f.last.properties.get("graylane.lane").map(String::as_str);
    if state != Some(want) {
        return Err(format!(
            "kind {name}: filter state graylane.lane is {state:?}, expected {want:?}"
        ));
    }
    let counted: Vec<(&String, &i64)> = f
        .metrics
        .iter()
        .filter(|(n, v)| n.starts_with("graylane.requests.") && **v != 0)
        .collect();
    let suffix = format!(".lane.{want}");
    let run = f.requests_run as i64;
    if counted.len() != 1
        || !counted
            .iter()
            .all(|(n, v)| n.ends_with(&suffix) && **v == run)
    {
        return Err(format!(
            "kind {name}: request counters {counted:?}, expected one ending in {suffix} at {run}"
        ));
    }
    if f.last.actions.is_empty() || f.last.actions.iter().any(|&a| a != 0) {
        return Err(format!(
            "kind {name}: header callbacks returned {:?}, expected Continue",
            f.last.actions
        ));
    }
    if f.fuel_min == 0 {
        return Err(format!("kind {name}: no fuel was used"));
    }
    Ok(())
}

/// Every kind of the spec, in order.
pub fn measure_all(wasm: &[u8], spec: &BenchSpec) -> Result<Vec<Figures>, String> {
    spec.kinds
        .iter()
        .map(|kind| {
            let f = measure(wasm, spec, kind, WARMUP, MEASURED)?;
            check(kind, &f)?;
            Ok(f)
        })
        .collect()
}
