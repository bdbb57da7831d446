//! Fixed vectors shared by the native tests and the tests of the engine
//! compiled to wasm: the bucket hash is pinned forever (docs/configuration.md "Split"), and one
//! decision table runs on both.

/// `(salt, key, xxh64(salt + ":" + key), bucket)`, computed with an
/// independent XXH64 implementation (the Python `xxhash` package).
pub const GOLDEN_BUCKETS: &[(&str, &str, u64, u16)] = &[
    ("gray", "user-1", 0x8169_a4e1_0659_cb37, 7511),
    ("gray", "user-2", 0x4a6a_f1b1_8e1c_0b85, 4837),
    ("gray", "alice", 0x57f0_ddd0_eb5b_b947, 903),
    ("gray-2026-11", "app-42", 0x8cad_2770_434c_1a80, 5936),
    ("canary", "", 0xd992_f7f7_8cae_e3fd, 2541),
    ("lane-x", "中文", 0xc203_0549_0b64_c15f, 5519),
    ("salt", "0", 0x78a0_b45c_55b0_bf44, 4852),
    ("android", "u-9999", 0x0391_c402_72a4_3e12, 4034),
];

/// The configuration the decision table runs against.
pub const TABLE_CONFIG: &str = r#"{
  "incoming": "ignore",
  "services": { "svc-b": { "base": "b-base", "lanes": { "gray": "b-gray" } } },
  "lanes": [
    { "name": "gray", "priority": 10,
      "match": { "all": [ { "header": "location", "exact": "cn-shenzhen" } ] } },
    { "name": "beta", "priority": 20,
      "match": { "any": [ { "cookie": "beta", "in": ["1", "yes"] },
                          { "query": "beta", "exact": "on" } ] } },
    { "name": "android", "priority": 30,
      "match": { "all": [ { "header": "user-agent", "contains": "android", "ignoreCase": true },
                          { "not": { "header": "x-no-canary", "present": true } } ] } },
    { "name": "api-v2", "priority": 40,
      "match": { "path": true, "regex": "/api/v2/[a-z]+" } },
    { "name": "vip", "priority": 50,
      "match": { "header": "x-tier", "range": { "min": 3, "max": 5 } } },
    { "name": "writes", "priority": 60,
      "match": { "all": [ { "method": true, "in": ["POST", "PUT"] },
                          { "host": true, "suffix": ".internal" } ] } },
    { "name": "tenant", "priority": 70,
      "match": { "baggage": "tenant", "prefix": "acme" } },
    { "name": "sticky", "priority": 80,
      "match": { "header": "x-sticky", "present": true },
      "split": { "key": { "header": "x-user-id" }, "percent": 50, "salt": "gray",
                 "onMissingKey": "exclude" } }
  ]
}"#;

/// `(request headers, expected lane)`: each row's headers and the lane the
/// engine must decide for [`TABLE_CONFIG`].
pub const DECISION_TABLE: &[(&[(&str, &str)], &str)] = &[
    (&[(":path", "/"), ("location", "cn-shenzhen")], "gray"),
    (&[(":path", "/"), ("location", "cn-beijing")], "base"),
    (&[(":path", "/"), ("location", "CN-SHENZHEN")], "base"),
    (
        &[
            (":path", "/"),
            ("location", "x"),
            ("location", "cn-shenzhen"),
        ],
        "gray",
    ),
    (&[(":path", "/"), ("cookie", "a=1; beta=yes")], "beta"),
    (
        &[(":path", "/"), ("cookie", "a=1"), ("cookie", "beta=1")],
        "beta",
    ),
    (&[(":path", "/"), ("cookie", "beta=no")], "base"),
    (&[(":path", "/x?a=1&beta=on")], "beta"),
    (&[(":path", "/x?beta=o%6E")], "beta"),
    (&[(":path", "/x?beta=off")], "base"),
    (
        &[
            (":path", "/"),
            ("user-agent", "Mozilla/5.0 (Linux; Android 14)"),
        ],
        "android",
    ),
    (
        &[
            (":path", "/"),
            ("user-agent", "Android"),
            ("x-no-canary", "1"),
        ],
        "base",
    ),
    (&[(":path", "/api/v2/users")], "api-v2"),
    (&[(":path", "/api/v2/users?q=1")], "api-v2"),
    (&[(":path", "/api/v2/users/7")], "base"),
    (&[(":path", "/"), ("x-tier", "4")], "vip"),
    (&[(":path", "/"), ("x-tier", "6")], "base"),
    (&[(":path", "/"), ("x-tier", "four")], "base"),
    (
        &[
            (":path", "/"),
            (":method", "POST"),
            (":authority", "db.internal:8080"),
        ],
        "writes",
    ),
    (
        &[
            (":path", "/"),
            (":method", "GET"),
            (":authority", "db.internal"),
        ],
        "base",
    ),
    (
        &[(":path", "/"), ("baggage", "tenant=acme-eu,x=1")],
        "tenant",
    ),
    (&[(":path", "/"), ("baggage", "tenant=globex")], "base"),
    // Priorities: gray (10) beats beta (20) when both match.
    (
        &[(":path", "/?beta=on"), ("location", "cn-shenzhen")],
        "gray",
    ),
    // A client-sent tag is ignored at the edge.
    (
        &[
            (":path", "/"),
            ("x-graylane", "gray"),
            ("baggage", "lane=gray"),
        ],
        "base",
    ),
    // Split: bucket("gray", "alice") = 903 < 5000; bucket("gray", "user-1") = 7511.
    (
        &[(":path", "/"), ("x-sticky", "1"), ("x-user-id", "alice")],
        "sticky",
    ),
    (
        &[(":path", "/"), ("x-sticky", "1"), ("x-user-id", "user-1")],
        "base",
    ),
    (&[(":path", "/"), ("x-sticky", "1")], "base"),
];

/// The lane configs of `scripts/bench.sh` variants (c) and (e): 20 lanes of
/// header, cookie and query rules plus a split; 990 exact-header lanes, 9
/// regex lanes and a split. Shared by the criterion benches and the
/// allocation test.
pub fn bench_config(variant: char) -> String {
    const SPLIT: &str = r#""split": {"key": {"header": "x-user-id"}, "percent": 10, "salt": "bench", "onMissingKey": "exclude"}"#;
    let mut lanes = Vec::new();
    if variant == 'c' {
        for i in 0..10 {
            let p = 10 + i;
            lanes.push(format!(
                r#"{{"name": "hdr-{i}", "priority": {p}, "match": {{"header": "x-region", "exact": "region-{i}"}}}}"#
            ));
        }
        for i in 0..5 {
            let p = 30 + i;
            lanes.push(format!(
                r#"{{"name": "ck-{i}", "priority": {p}, "match": {{"cookie": "canary", "exact": "beta-{i}"}}}}"#
            ));
        }
        for i in 0..3 {
            let p = 40 + i;
            lanes.push(format!(
                r#"{{"name": "q-{i}", "priority": {p}, "match": {{"query": "lane", "exact": "q-{i}"}}}}"#
            ));
        }
        lanes.push(
            r#"{"name": "ua-android", "priority": 50, "match": {"all": [{"header": "user-agent", "contains": "Android"}, {"header": "x-app-version", "prefix": "9."}]}}"#
                .to_string(),
        );
        lanes.push(format!(r#"{{"name": "sticky", "priority": 60, {SPLIT}}}"#));
    } else {
        for i in 0..990 {
            lanes.push(format!(
                r#"{{"name": "hdr-{i}", "priority": {i}, "match": {{"header": "x-region", "exact": "region-{i}"}}}}"#
            ));
        }
        for i in 0..9 {
            let p = 1000 + i;
            lanes.push(format!(
                r#"{{"name": "re-{i}", "priority": {p}, "match": {{"header": "user-agent", "regex": "Mozilla/5\\.0 \\(iPhone; CPU iPhone OS 1{i}_.*"}}}}"#
            ));
        }
        lanes.push(format!(
            r#"{{"name": "sticky", "priority": 2000, {SPLIT}}}"#
        ));
    }
    format!(
        r#"{{"incoming": "ignore", "lanes": [{}]}}"#,
        lanes.join(", ")
    )
}

/// The request of `scripts/bench.sh`: 5-member baggage, a cookie, a query
/// string, a user id; `region` selects (or not) an `x-region` lane.
pub fn bench_request(region: &str) -> crate::engine::HeaderList {
    crate::engine::HeaderList::from_strs(&[
        (":method", "GET"),
        (":path", "/api/v1/orders?page=2&lang=en"),
        (":authority", "shop.example.com"),
        (":scheme", "http"),
        (
            "user-agent",
            "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36",
        ),
        ("accept", "application/json"),
        ("x-app-version", "8.4.1"),
        ("cookie", "session=9c1e77b03f2a; theme=dark; canary=none"),
        (
            "baggage",
            "userId=alice,sessionId=3f2a9c1e-77b0,tenant=acme;ttl=60,sampled=true,deviceId=d-77",
        ),
        ("x-user-id", "user-48213"),
        ("x-region", region),
    ])
}
