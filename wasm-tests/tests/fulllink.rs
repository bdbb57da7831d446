//! Full-link lanes across a real chain: edge gateway -> A -> A's sidecar ->
//! B -> B's sidecar -> C, every proxy a real Envoy running graylane, the
//! apps forwarding only `baggage`.
#![cfg(not(target_arch = "wasm32"))]

use graylane_wasm_tests::chain::Chain;

#[test]
fn gray_falls_back_at_b_and_stays_gray_at_c() {
    let chain = Chain::start(false);
    let (trace, _) = chain.call(&[("location", "cn-shenzhen")]);
    assert_eq!(trace, "A[gray] -> B[base] -> C[gray]");
    let (trace, _) = chain.call(&[]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
    // The fallback at B is counted by A's sidecar, per service.
    assert_eq!(
        chain
            .sidecar_a
            .counter("wasmcustom.graylane.fallbacks.service.svc-b"),
        1
    );
    assert_eq!(
        chain
            .sidecar_b
            .counter("wasmcustom.graylane.fallbacks.service.svc-c"),
        0
    );
    // Hops keep the propagated tag.
    assert_eq!(
        chain
            .sidecar_b
            .counter("wasmcustom.graylane.requests.source.propagated.lane.gray"),
        1
    );
}

#[test]
fn b_with_a_gray_version_takes_gray_traffic() {
    let chain = Chain::start(true);
    let (trace, _) = chain.call(&[("location", "cn-shenzhen")]);
    assert_eq!(trace, "A[gray] -> B[gray] -> C[gray]");
    let (trace, _) = chain.call(&[]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
}

#[test]
fn forged_tags_at_the_edge_stay_base_and_foreign_baggage_travels() {
    let chain = Chain::start(false);
    // A client-sent lane tag, in baggage or in the lane header, is removed at the edge.
    let (trace, baggage) = chain.call(&[("baggage", "lane=gray")]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
    assert_eq!(baggage, None);
    let (trace, _) = chain.call(&[("x-graylane", "gray"), ("baggage", "lane=gray,shadow=1")]);
    assert_eq!(trace, "A[base] -> B[base] -> C[base]");
    // An unrelated member reaches C unchanged, next to the lane member.
    let (trace, baggage) = chain.call(&[
        ("baggage", "userId=alice;prop=1"),
        ("location", "cn-shenzhen"),
    ]);
    assert_eq!(trace, "A[gray] -> B[base] -> C[gray]");
    assert_eq!(baggage.as_deref(), Some("userId=alice;prop=1,lane=gray"));
    let (_, baggage) = chain.call(&[("baggage", "userId=alice;prop=1")]);
    assert_eq!(baggage.as_deref(), Some("userId=alice;prop=1"));
}

#[test]
fn two_lanes_at_once_each_request_in_its_own_lane() {
    let chain = Chain::start(false);
    for _ in 0..5 {
        let (gray, _) = chain.call(&[("location", "cn-shenzhen")]);
        let (android, _) = chain.call(&[("x-os", "android")]);
        let (both, _) = chain.call(&[("x-os", "android"), ("location", "cn-shenzhen")]);
        let (none, _) = chain.call(&[]);
        assert_eq!(gray, "A[gray] -> B[base] -> C[gray]");
        // A has no android version: the edge's default route is base.
        assert_eq!(android, "A[base] -> B[base] -> C[android]");
        // gray has the lower priority number: it wins.
        assert_eq!(both, "A[gray] -> B[base] -> C[gray]");
        assert_eq!(none, "A[base] -> B[base] -> C[base]");
    }
}
