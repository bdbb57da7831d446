//! Lane continuity from trace context (README "Lane continuity from trace
//! context") in real Envoy: the chain edge -> A -> B -> C whose apps
//! forward only `traceparent` (a new span id per hop) or only
//! `x-request-id`, never `baggage`; each service's sidecar is one Envoy
//! with two workers holding its inbound and outbound listeners.
#![cfg(not(target_arch = "wasm32"))]

use graylane_wasm_tests::trace_chain::{lanes, Forward, Options, TraceChain};

const HITS: &str = "wasmcustom.graylane.continuity.hits";
const CONTINUED_GRAY: &str = "wasmcustom.graylane.requests.source.continued.lane.gray";

fn chain_keeps_lanes(forward: Forward) {
    let mut opts = Options::new(forward);
    if forward == Forward::RequestId {
        // Requests reach A with both headers (the edge's tracer adds
        // `traceparent`); A forwards only `x-request-id`, so that is the one
        // to remember by.
        opts.continuity = r#"{"from": ["x-request-id"]}"#.into();
    }
    let chain = TraceChain::start(&opts);
    for _ in 0..3 {
        let gray = chain.call_lane(true, &[]);
        assert_eq!(gray.trace, "A[gray] -> B[gray] -> C[gray]", "{gray:?}");
        let base = chain.call_lane(false, &[]);
        assert_eq!(base.trace, "A[base] -> B[base] -> C[base]", "{base:?}");
        // One trace end to end: every app saw the same id.
        for a in [&gray, &base] {
            assert_eq!(a.ids.len(), 3);
            assert!(a.ids.iter().all(|id| *id == a.ids[0] && id != "-"), "{a:?}");
        }
    }
    // A's and B's sidecars restored gray from the remembered lane.
    chain.sidecar_a.wait_counter(CONTINUED_GRAY, 3);
    chain.sidecar_b.wait_counter(CONTINUED_GRAY, 3);
    chain.sidecar_a.wait_counter(HITS, 6);
}

#[test]
fn traceparent_only_apps_keep_their_lane() {
    chain_keeps_lanes(Forward::Traceparent);
}

#[test]
fn request_id_only_apps_keep_their_lane() {
    chain_keeps_lanes(Forward::RequestId);
}

#[test]
fn b_without_gray_falls_back_and_c_is_gray_again() {
    let mut opts = Options::new(Forward::Traceparent);
    opts.b_gray = false;
    let chain = TraceChain::start(&opts);
    let gray = chain.call_lane(true, &[]);
    assert_eq!(gray.trace, "A[gray] -> B[base] -> C[gray]");
    let base = chain.call_lane(false, &[]);
    assert_eq!(base.trace, "A[base] -> B[base] -> C[base]");
    chain
        .sidecar_a
        .wait_counter("wasmcustom.graylane.fallbacks.service.svc-b", 1);
    assert_eq!(lanes(&gray.trace), ["gray", "base", "gray"]);
}
