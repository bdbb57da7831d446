//! gRPC through the filter in a real Envoy, with a real client and server
//! (Python `grpcio`, generic handlers; see `wasm-tests/src/h2.rs`): the
//! server answers each call with the metadata it received. At the edge and
//! at a trusting hop: lanes by metadata, splits, baggage members kept,
//! `responseHeader` in the initial metadata the client receives, and at the
//! hop a lane version that goes down falling back to base with status OK.
#![cfg(not(target_arch = "wasm32"))]

use graylane::engine::bucket;
use graylane_wasm_tests::configs::{
    bootstrap, h2_cluster, lane_routes, listener_logging_protocol, wasm_filter,
};
use graylane_wasm_tests::h2::{grpc_calls, grpc_calls_stopped_by, Call, GrpcJob, GrpcServer};
use graylane_wasm_tests::harness::{free_port, poll, scratch_dir, wait_until, Envoy};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `xxh64("grpc-release:" + id, seed 0) % 10000`, computed with another
/// xxHash implementation (Python `xxhash`), and the lane `percent: 50`
/// gives each id.
const SPLIT_TABLE: &[(&str, u16, &str)] = &[
    ("grpc-user-0", 7277, "base"),
    ("grpc-user-1", 5656, "base"),
    ("grpc-user-2", 6697, "base"),
    ("grpc-user-3", 6411, "base"),
    ("grpc-user-4", 9322, "base"),
    ("grpc-user-5", 81, "canary"),
    ("grpc-user-6", 7181, "base"),
    ("grpc-user-7", 8418, "base"),
    ("grpc-user-8", 1750, "canary"),
    ("grpc-user-9", 4371, "canary"),
];

const CANARY: &str = r#"{"name": "canary", "priority": 30, "split": {"key": {"header": "x-user-id"},
    "percent": 50, "salt": "grpc-release", "onMissingKey": "exclude"}}"#;

fn assert_ok(c: &Call) {
    assert_eq!(c.code, "OK", "{c:?}");
}

/// The split calls, each answered by the lane of [`SPLIT_TABLE`] (and so
/// of the native engine's bucket, checked against the table too).
fn assert_split(calls: &[Call]) {
    assert_eq!(calls.len(), SPLIT_TABLE.len());
    for (c, (id, want_bucket, want)) in calls.iter().zip(SPLIT_TABLE) {
        let native = bucket("grpc-release", id.as_bytes());
        assert_eq!(native, *want_bucket, "{id}: native bucket");
        assert_eq!(if native < 5000 { "canary" } else { "base" }, *want, "{id}");
        assert_ok(c);
        assert_eq!(c.backend(), *want, "{id} (bucket {want_bucket})");
        assert_eq!(c.initial("x-graylane"), Some(*want), "{id}");
    }
}

/// A file whose appearance stops a client run ([`grpc_calls_until`]):
/// created when this drops, at the latest when the test ends, failed
/// assertions included, so the client never outlives the test.
struct StopFile(PathBuf);

impl Drop for StopFile {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"stop");
    }
}

/// [`grpc_calls`] cycling through `job.calls` until `stop` exists (checked
/// before each call: the call under way then is finished and returned), or
/// `job.repeat_for` has passed (a backstop for a test process that is
/// killed before it creates `stop`).
fn grpc_calls_until(job: &GrpcJob<'_>, stop: &Path) -> Vec<Call> {
    grpc_calls_stopped_by(job, Some(stop))
}

fn split_calls() -> Vec<Vec<(&'static str, &'static str)>> {
    SPLIT_TABLE
        .iter()
        .map(|(id, _, _)| vec![("x-user-id", *id)])
        .collect()
}

#[test]
fn grpc_at_the_edge() {
    let plugin = format!(
        r#"{{"incoming": "ignore", "responseHeader": true, "lanes": [
        {{"name": "gray", "priority": 10, "match": {{"header": "x-user-group", "exact": "beta"}}}},
        {CANARY}]}}"#
    );
    let servers = GrpcServer::start_all(&["base", "gray", "canary"]);
    let port = free_port();
    let clusters: String = servers
        .iter()
        .map(|s| {
            let name = if s.name == "base" {
                "base".to_string()
            } else {
                format!("lane-{}", s.name)
            };
            h2_cluster(&name, s.port)
        })
        .collect();
    let routes = lane_routes("\"*\"", "x-graylane", &["gray", "canary"], "base");
    let yaml = bootstrap(
        &listener_logging_protocol("edge", port, &wasm_filter(&plugin), &routes),
        &clusters,
    );
    let envoy = Envoy::start(&yaml, &[]);

    let mut calls = vec![
        vec![
            ("x-user-group", "beta"),
            ("baggage", "userId=alice;prop=1,tenant=t1"),
        ],
        vec![],
        // Forged tags: removed at the edge; the other members stay.
        vec![
            ("x-graylane", "gray"),
            ("baggage", "lane=gray,tenant=t1"),
            ("x-graylane-cluster", "lane-gray"),
        ],
    ];
    calls.extend(split_calls());
    let calls = grpc_calls(&GrpcJob {
        port,
        calls,
        ..GrpcJob::default()
    });
    let (calls, split) = calls.split_at(3);
    calls.iter().for_each(assert_ok);
    let [gray, base, forged] = calls else {
        panic!("{calls:?}")
    };
    assert_eq!(gray.backend(), "gray");
    assert_eq!(gray.received("x-graylane"), ["gray"]);
    assert_eq!(
        gray.received("baggage"),
        ["userId=alice;prop=1,tenant=t1,lane=gray"]
    );
    assert_eq!(gray.initial("x-graylane"), Some("gray"));
    assert_eq!(gray.initial("x-backend"), Some("gray"));
    assert_eq!(base.backend(), "base");
    assert!(base.received("x-graylane").is_empty());
    assert_eq!(base.initial("x-graylane"), Some("base"));
    assert_eq!(forged.backend(), "base");
    assert!(forged.received("x-graylane").is_empty());
    assert!(forged.received("x-graylane-cluster").is_empty());
    assert_eq!(forged.received("baggage"), ["tenant=t1"]);

    assert_split(split);

    // On the wire: gRPC over HTTP/2 from the client and to the servers.
    let n = (calls.len() + split.len()) as u64;
    assert_eq!(envoy.counter("http.edge.downstream_rq_http2_total"), n);
    let upstream: u64 = ["base", "lane-gray", "lane-canary"]
        .iter()
        .map(|c| envoy.counter(&format!("cluster.{c}.upstream_rq_200")))
        .sum();
    assert_eq!(upstream, n);
    assert!(envoy.counter("cluster.lane-gray.upstream_cx_http2_total") >= 1);
}

/// The hop's routes: `cluster_header`, with the retries of
/// `envoy/fulllink/sidecar-b-failover.yaml` (each retry moves to a priority
/// level not tried yet).
const HOP_ROUTES: &str = r#"
            - name: outbound
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route:
                  cluster_header: x-graylane-cluster
                  retry_policy:
                    retry_on: connect-failure,refused-stream,reset,unavailable
                    num_retries: 3
                    retry_back_off: { base_interval: 0.02s, max_interval: 0.2s }
                    retry_priority:
                      name: envoy.retry_priorities.previous_priorities
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig
                        update_frequency: 1
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3"#;

/// `g-gray`: the aggregate `[g-gray-pods, g-base]` of
/// `envoy/fulllink/sidecar-b-failover.yaml`, its pods checked by gRPC
/// health checks (`grpc.health.v1.Health/Check`) and outlier detection.
/// The aggregate has no protocol options of its own: the HTTP/2 options of
/// its member clusters apply (the gRPC servers answer nothing else).
fn failover_clusters(gray_port: u16) -> String {
    format!(
        r#"
  - name: g-gray
    connect_timeout: 1s
    lb_policy: CLUSTER_PROVIDED
    cluster_type:
      name: envoy.clusters.aggregate
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig
        clusters: [g-gray-pods, g-base]
    circuit_breakers: {{ thresholds: [ {{ max_retries: 1000 }} ] }}{}
    health_checks:
    - timeout: 2s
      interval: 0.2s
      no_traffic_interval: 0.2s
      unhealthy_threshold: 1
      healthy_threshold: 1
      grpc_health_check: {{}}
    outlier_detection:
      split_external_local_origin_errors: true
      consecutive_local_origin_failure: 1
      interval: 1s
      base_ejection_time: 0.5s
      max_ejection_time: 1s
      max_ejection_percent: 100"#,
        h2_cluster("g-gray-pods", gray_port)
    )
}

#[test]
fn grpc_at_a_trusting_hop_and_fallback_when_the_lane_is_down() {
    let plugin = format!(
        r#"{{"incoming": "trust", "responseHeader": true, "propagate": ["gray"],
        "services": {{"svc-g": {{"base": "g-base", "lanes": {{"gray": "g-gray", "canary": "g-canary"}}}}}},
        "lanes": [{CANARY}]}}"#
    );
    let mut servers = GrpcServer::start_all(&["base", "gray", "canary"]).into_iter();
    let (base, mut gray, canary) = (
        servers.next().expect("base"),
        servers.next().expect("gray"),
        servers.next().expect("canary"),
    );
    let port = free_port();
    let clusters = h2_cluster("g-base", base.port)
        + &h2_cluster("g-canary", canary.port)
        + &failover_clusters(gray.port);
    let yaml = bootstrap(
        &listener_logging_protocol("hop", port, &wasm_filter(&plugin), HOP_ROUTES),
        &clusters,
    );
    let envoy = Envoy::start(&yaml, &[]);
    let healthy = "cluster.g-gray-pods.health_check.success";
    wait_until(
        "g-gray-pods health-checked",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || envoy.counter(healthy) >= 1,
    );

    let job = |calls| GrpcJob {
        port,
        authority: Some("svc-g"),
        calls,
        ..GrpcJob::default()
    };
    let mut calls = vec![
        // The lane by metadata: the baggage tag, among other members.
        vec![("baggage", "userId=alice;prop=1,lane=gray,tenant=t1")],
        // Or the lane header.
        vec![("x-graylane", "gray")],
        // A tag naming no declared lane: dropped, base.
        vec![("x-graylane", "nope"), ("baggage", "tenant=t1")],
        vec![],
    ];
    // No tag: the hop's own split rule.
    calls.extend(split_calls());
    let calls = grpc_calls(&job(calls));
    let (calls, split) = calls.split_at(4);
    calls.iter().for_each(assert_ok);
    let [by_baggage, by_header, invalid, none] = calls else {
        panic!("{calls:?}")
    };
    assert_eq!(by_baggage.backend(), "gray");
    assert_eq!(
        by_baggage.received("baggage"),
        ["userId=alice;prop=1,lane=gray,tenant=t1"]
    );
    assert_eq!(by_baggage.received("x-graylane"), ["gray"]);
    assert_eq!(by_baggage.received("x-graylane-cluster"), ["g-gray"]);
    assert_eq!(by_baggage.initial("x-graylane"), Some("gray"));
    assert_eq!(by_header.backend(), "gray");
    assert_eq!(by_header.received("baggage"), ["lane=gray"]);
    assert_eq!(invalid.backend(), "base");
    assert!(invalid.received("x-graylane").is_empty());
    assert_eq!(invalid.received("baggage"), ["tenant=t1"]);
    assert_eq!(none.backend(), "base");
    assert_eq!(none.initial("x-graylane"), Some("base"));

    assert_split(split);

    // Gray goes down while gray calls keep coming: every call is OK, and
    // once base answers them, gray never does again. The client runs until
    // told to stop, after the events the counts below need, not for a
    // fixed time: no load on the machine can make them fall short.
    let base_rq = "cluster.g-base.upstream_rq_total";
    let (calls, base_rq_since_kill) = std::thread::scope(|s| {
        let stop = StopFile(scratch_dir("grpc-stop").join("stop"));
        let stop_path = stop.0.clone();
        let running = s.spawn(move || {
            grpc_calls_until(
                &GrpcJob {
                    // Only a backstop: `stop` ends the run.
                    repeat_for: Some(Duration::from_secs(600)),
                    pause: Some(Duration::from_millis(10)),
                    ..job(vec![vec![("baggage", "lane=gray,tenant=t1")]])
                },
                &stop_path,
            )
        });
        // Ten gray calls answered by gray first (the client takes a while
        // to start; the limit only bounds a failing run).
        let before = 4 + SPLIT_TABLE.len() as u64 + 10;
        wait_until(
            "gray calls under way",
            Duration::from_secs(60),
            Duration::from_millis(10),
            || envoy.counter("http.hop.downstream_rq_2xx") >= before,
        );
        // From here on only the client's gray calls reach g-base (the
        // earlier base calls are done: each returned before the client
        // started; g-base has no health checks).
        let base_before = envoy.counter(base_rq);
        gray.kill();
        // Twenty requests to base since the kill: the calls fell back. The
        // limit only bounds a failing run (they take well under a second).
        let rose = poll(Duration::from_secs(60), Duration::from_millis(50), || {
            let now = envoy.counter(base_rq);
            if now >= base_before + 20 {
                Ok(now - base_before)
            } else {
                Err(format!(
                    "{base_rq} rose by {} since gray was killed",
                    now.saturating_sub(base_before)
                ))
            }
        });
        drop(stop);
        let calls = running.join().expect("client");
        (calls, rose)
    });
    let failed: Vec<&Call> = calls.iter().filter(|c| c.code != "OK").collect();
    let by_gray = calls.iter().filter(|c| c.backend() == "gray").count();
    let by_base = calls.iter().filter(|c| c.backend() == "base").count();
    let summary = format!(
        "{} calls while gray went down: {by_gray} answered by gray, {by_base} by base, {} failed \
         (g-base requests since the kill {base_rq_since_kill:?}, retries {}, health check \
         failures {}, ejections {})",
        calls.len(),
        failed.len(),
        envoy.counter("cluster.g-gray.upstream_rq_retry"),
        envoy.counter("cluster.g-gray-pods.health_check.failure"),
        envoy.counter("cluster.g-gray-pods.outlier_detection.ejections_enforced_total"),
    );
    println!("{summary}");
    if let Err(last) = &base_rq_since_kill {
        panic!("{last} after 60 s: {summary}");
    }
    assert!(failed.is_empty(), "{summary}: {failed:?}");
    // Neither count is left to chance: the client stopped only after Envoy
    // had answered ten gray calls before the kill (gray was up: each went
    // to gray) and sent `base_rq_since_kill` >= 20 requests to base after
    // it, all made by this client's calls (nothing else calls g-base then)
    // and each answered there (base is up: no attempt on it fails, so
    // none is retried). The client returns every call it made, the one
    // under way when it saw the stop file included.
    assert!(by_gray >= 10 && by_base >= 20, "{summary}");
    assert_eq!(by_gray + by_base, calls.len(), "{summary}");
    let first_base = calls
        .iter()
        .position(|c| c.backend() == "base")
        .unwrap_or(0);
    assert!(
        calls[first_base..].iter().all(|c| c.backend() == "base"),
        "{summary}"
    );
    for c in &calls {
        // Served by base, still in the gray lane, tags and members kept.
        assert_eq!(c.received("x-graylane"), ["gray"]);
        assert_eq!(c.received("baggage"), ["lane=gray,tenant=t1"]);
        assert_eq!(c.initial("x-graylane"), Some("gray"));
    }
    assert_eq!(
        envoy.counter("http.hop.downstream_rq_http2_total") as usize,
        4 + SPLIT_TABLE.len() + calls.len()
    );
}
