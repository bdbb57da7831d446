//! Heap allocations on the request path, counted with a counting global
//! allocator: the engine's work for a request through the benchmark's
//! 20-lane gateway config (`scripts/bench.sh` variant (c)). A regression
//! here fails CI; the numbers are in the README's performance section.

use graylane::config::Config;
use graylane::engine::{process, HeaderList};
use graylane::testvectors::{bench_config, bench_request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by one `process` call (decision and header effects),
/// and the lane it decided.
fn allocations(config: &Config, req: &HeaderList) -> (usize, String) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = process(config, req, &mut || 42);
    let lane = config.lane_name(out.decision.lane).to_string();
    let n = ALLOCATIONS.with(Cell::get) - before - 1; // the lane name copied above
    drop(out);
    (n, lane)
}

fn with(req: &HeaderList, name: &str, value: &str) -> HeaderList {
    let mut r = req.clone();
    r.0.retain(|(k, _)| k != name);
    r.0.push((name.to_string(), value.as_bytes().to_vec()));
    r
}

#[test]
fn base_request_allocates_nothing() {
    let config = Config::from_json(bench_config('c').as_bytes()).unwrap();
    let req = bench_request("region-none");
    assert_eq!(allocations(&config, &req), (0, "base".to_string()));
    // 1,000 lanes: the same.
    let config = Config::from_json(bench_config('e').as_bytes()).unwrap();
    assert_eq!(allocations(&config, &req), (0, "base".to_string()));
}

#[test]
fn lane_request_allocates_the_new_headers_only() {
    let config = Config::from_json(bench_config('c').as_bytes()).unwrap();
    // Selected by an indexed header: the list of header changes and the
    // rewritten baggage.
    let req = bench_request("region-3");
    assert_eq!(allocations(&config, &req), (2, "hdr-3".to_string()));
    // Selected by cookie and by query: the same two.
    let req = with(&bench_request("x"), "cookie", "canary=beta-2");
    assert_eq!(allocations(&config, &req), (2, "ck-2".to_string()));
    let req = with(&bench_request("x"), ":path", "/a?lane=q-1");
    assert_eq!(allocations(&config, &req), (2, "q-1".to_string()));
}

#[test]
fn hop_request_with_its_lane_already_set_allocates_nothing() {
    let json = bench_config('c').replace(r#""incoming": "ignore""#, r#""incoming": "trust""#);
    let config = Config::from_json(json.as_bytes()).unwrap();
    let req = with(
        &with(
            &bench_request("region-none"),
            "baggage",
            "userId=alice,lane=hdr-3",
        ),
        "x-graylane",
        "hdr-3",
    );
    assert_eq!(allocations(&config, &req), (0, "hdr-3".to_string()));
}
