//! The engine's tests, on configurations compiled from JSON.

use crate::config::Config;
use crate::engine::*;
use crate::testvectors::{DECISION_TABLE, GOLDEN_BUCKETS, TABLE_CONFIG};

fn config(json: &str) -> Config {
    Config::from_json(json.as_bytes()).unwrap()
}

fn req(pairs: &[(&str, &str)]) -> HeaderList {
    HeaderList::from_strs(pairs)
}

/// A deterministic generator (splitmix64) for the random draws.
pub(crate) fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn lane_of(c: &Config, pairs: &[(&str, &str)]) -> String {
    let out = process(c, &req(pairs), &mut rng(1));
    c.lane_name(out.decision.lane).to_string()
}

fn set_of<'a>(e: &'a Effects<'_>, name: &str) -> Option<Option<&'a str>> {
    e.set
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_deref())
}

#[test]
fn golden_buckets() {
    for &(salt, key, hash, b) in GOLDEN_BUCKETS {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        h.update(format!("{salt}:{key}").as_bytes());
        assert_eq!(h.digest(), hash, "{salt}:{key}");
        assert_eq!(bucket(salt, key.as_bytes()), b, "{salt}:{key}");
    }
}

#[test]
fn decision_table() {
    let c = config(TABLE_CONFIG);
    for (pairs, want) in DECISION_TABLE {
        assert_eq!(lane_of(&c, pairs), *want, "{pairs:?}");
    }
}

#[test]
fn explain_agrees_with_decide_on_the_table() {
    let c = config(TABLE_CONFIG);
    for (pairs, _) in DECISION_TABLE {
        let d = process(&c, &req(pairs), &mut rng(3)).decision;
        let x = explain(&c, &req(pairs), &mut rng(3));
        assert_eq!(d, x.decision, "{pairs:?}");
    }
}

#[test]
fn index_and_linear_scan_agree_on_many_lanes() {
    // 300 exact lanes on one header, some with splits, plus a catch-all.
    let mut lanes = Vec::new();
    for i in 0..300 {
        let split = if i % 3 == 0 {
            r#", "split": {"key": {"header": "uid"}, "percent": 50}"#
        } else {
            ""
        };
        lanes.push(format!(
            r#"{{"name": "l{i}", "priority": {}, "match": {{"all": [{{"header": "x-k", "exact": "v{}"}}]}}{split}}}"#,
            i % 7,
            i % 50
        ));
    }
    lanes.push(
        r#"{"name": "rest", "priority": 3, "match": {"header": "x-r", "present": true}}"#.into(),
    );
    lanes.push(r#"{"name": "ci", "priority": 2, "match": {"header": "x-k", "in": ["V7", "v8"], "ignoreCase": true}}"#.into());
    let c = config(&format!(r#"{{"lanes": [{}]}}"#, lanes.join(",")));
    assert!(!c.rules.index.is_empty());
    let mut r = rng(9);
    for _ in 0..3000 {
        let v = format!("v{}", r() % 60);
        let uid = format!("u{}", r() % 1000);
        let mut pairs = vec![(":path", "/"), ("x-k", v.as_str()), ("uid", uid.as_str())];
        if r().is_multiple_of(4) {
            pairs.push(("x-r", "1"));
        }
        if r().is_multiple_of(5) {
            pairs.push(("x-k", "V8"));
        }
        let d = process(&c, &req(&pairs), &mut rng(5)).decision;
        let x = explain(&c, &req(&pairs), &mut rng(5));
        assert_eq!(d, x.decision, "{pairs:?}");
    }
}

#[test]
fn split_share_and_stickiness() {
    let c = config(
        r#"{"lanes": [{"name": "g", "split": {"key": {"header": "uid"}, "percent": 12.5}}]}"#,
    );
    let mut admitted = 0;
    for i in 0..10_000 {
        let uid = format!("user-{i}");
        let lane = lane_of(&c, &[("uid", &uid)]);
        if lane == "g" {
            admitted += 1;
        }
        // Sticky: the same id always gets the same answer.
        assert_eq!(lane, lane_of(&c, &[("uid", &uid)]));
    }
    assert!((1150..=1350).contains(&admitted), "{admitted}");
}

#[test]
fn split_random_for_anonymous_and_exclude() {
    let c =
        config(r#"{"lanes": [{"name": "g", "split": {"key": {"header": "uid"}, "percent": 30}}]}"#);
    let mut r = rng(11);
    let n = (0..10_000)
        .filter(|_| process(&c, &req(&[]), &mut r).decision.lane.is_some())
        .count();
    assert!((2800..=3200).contains(&n), "{n}");
    let c = config(
        r#"{"lanes": [{"name": "g", "split": {"key": {"header": "uid"}, "percent": 100, "onMissingKey": "exclude"}}]}"#,
    );
    assert_eq!(lane_of(&c, &[]), "base");
    assert_eq!(lane_of(&c, &[("uid", "")]), "base");
    assert_eq!(lane_of(&c, &[("uid", "x")]), "g");
}

#[test]
fn disjoint_buckets_split_one_population() {
    let c = config(
        r#"{"lanes": [
        {"name": "a", "split": {"key": {"header": "uid"}, "buckets": ["0-2999"], "salt": "s"}},
        {"name": "b", "split": {"key": {"header": "uid"}, "buckets": ["3000-5999", "9999"], "salt": "s"}}]}"#,
    );
    let (mut a, mut b) = (0, 0);
    for i in 0..10_000 {
        let uid = format!("{i}");
        let bk = bucket("s", uid.as_bytes());
        let lane = lane_of(&c, &[("uid", &uid)]);
        let want = match bk {
            0..=2999 => "a",
            3000..=5999 | 9999 => "b",
            _ => "base",
        };
        assert_eq!(lane, want);
        if lane == "a" {
            a += 1;
        }
        if lane == "b" {
            b += 1;
        }
    }
    assert!(
        (2800..=3200).contains(&a) && (2800..=3200).contains(&b),
        "{a} {b}"
    );
}

#[test]
fn new_salt_picks_a_different_population() {
    let c1 = config(
        r#"{"lanes": [{"name": "g", "split": {"key": {"header": "uid"}, "percent": 10, "salt": "r1"}}]}"#,
    );
    let c2 = config(
        r#"{"lanes": [{"name": "g", "split": {"key": {"header": "uid"}, "percent": 10, "salt": "r2"}}]}"#,
    );
    let mut both = 0;
    let mut first = 0;
    for i in 0..10_000 {
        let uid = format!("u{i}");
        let a = lane_of(&c1, &[("uid", &uid)]) == "g";
        let b = lane_of(&c2, &[("uid", &uid)]) == "g";
        first += usize::from(a);
        both += usize::from(a && b);
    }
    // Independent populations overlap in about 10 % of 10 %.
    assert!(first > 900 && both < 200, "{first} {both}");
}

#[test]
fn assign_cookie_draws_once_and_is_sticky() {
    let c = config(
        r#"{"lanes": [{"name": "g", "split": {"key": {"cookie": "gl", "assign": true, "maxAge": 60}, "percent": 50}}]}"#,
    );
    let out = process(&c, &req(&[]), &mut rng(2));
    assert_eq!(out.decision.assigned.len(), 1);
    let a = &out.decision.assigned[0];
    assert_eq!(
        a.set_cookie(),
        format!("gl={}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax", a.value)
    );
    // The next request, carrying the cookie, gets the same lane and no new cookie.
    let cookie = format!("gl={}", a.value);
    let again = process(&c, &req(&[("cookie", &cookie)]), &mut rng(99));
    assert_eq!(again.decision.lane, out.decision.lane);
    assert!(again.decision.assigned.is_empty());
}

#[test]
fn trust_mode_keeps_valid_tags_and_drops_invalid() {
    let c = config(
        r#"{"incoming": "trust", "lanes": [{"name": "gray", "match": {"header": "location", "exact": "sz"}}, {"name": "blue", "match": {"header": "never", "present": true}}]}"#,
    );
    let d = process(&c, &req(&[("baggage", "a=1,lane=blue")]), &mut rng(1)).decision;
    assert_eq!(
        (c.lane_name(d.lane), d.source),
        ("blue", LaneSource::Propagated)
    );
    let d = process(&c, &req(&[("x-graylane", "blue")]), &mut rng(1)).decision;
    assert_eq!(
        (c.lane_name(d.lane), d.source),
        ("blue", LaneSource::Propagated)
    );
    // Baggage wins over the header.
    let d = process(
        &c,
        &req(&[("x-graylane", "gray"), ("baggage", "lane=blue")]),
        &mut rng(1),
    )
    .decision;
    assert_eq!(c.lane_name(d.lane), "blue");
    // Undeclared: dropped, counted, rules decide.
    let d = process(
        &c,
        &req(&[("baggage", "lane=pink"), ("location", "sz")]),
        &mut rng(1),
    )
    .decision;
    assert_eq!(
        (c.lane_name(d.lane), d.source, d.invalid_tag),
        ("gray", LaneSource::Rule, true)
    );
    // Percent-encoded tag is decoded.
    let d = process(&c, &req(&[("baggage", "lane=bl%75e")]), &mut rng(1)).decision;
    assert_eq!(c.lane_name(d.lane), "blue");
}

/// A hop keeps a trusted tag as it arrived: the lane member's properties
/// stay (W3C: properties belong to their member), whatever the encoding; a
/// duplicate lane member still goes, and a tag the hop replaces loses them.
#[test]
fn trusting_hop_keeps_the_lane_members_properties() {
    let c = config(
        r#"{"incoming": "trust", "lanes": [{"name": "gray", "match": {"header": "location", "exact": "sz"}}]}"#,
    );
    let forwarded = |baggage: &str, extra: &[(&str, &str)]| {
        let mut pairs = vec![("baggage", baggage)];
        pairs.extend_from_slice(extra);
        let out = process(&c, &req(&pairs), &mut rng(1));
        (
            c.lane_name(out.decision.lane).to_string(),
            set_of(&out.effects, "baggage").map(|v| v.map(str::to_string)),
        )
    };
    // Unchanged: no header write at all.
    assert_eq!(
        forwarded("lane=gray;p=x,a=1", &[]),
        ("gray".to_string(), None)
    );
    assert_eq!(
        forwarded("a=1, lane = gray ; p = x ;flag", &[]),
        (
            "gray".to_string(),
            Some(Some("a=1,lane = gray ; p = x ;flag".to_string()))
        )
    );
    assert_eq!(
        forwarded("lane=gr%61y;p=x,lane=pink;q", &[]),
        (
            "gray".to_string(),
            Some(Some("lane=gr%61y;p=x".to_string()))
        )
    );
    // An undeclared tag is replaced by the rules' lane: its properties go.
    assert_eq!(
        forwarded("lane=pink;p=x,a=1", &[("location", "sz")]),
        ("gray".to_string(), Some(Some("lane=gray,a=1".to_string())))
    );
    // An edge (incoming: ignore) never forwards a client's lane member.
    let edge =
        config(r#"{"lanes": [{"name": "gray", "match": {"header": "location", "exact": "sz"}}]}"#);
    let out = process(
        &edge,
        &req(&[("baggage", "lane=gray;p=x,a=1"), ("location", "sz")]),
        &mut rng(1),
    );
    assert_eq!(set_of(&out.effects, "baggage"), Some(Some("lane=gray,a=1")));
}

#[test]
fn edge_ignores_every_form_of_client_tag() {
    let c = config(TABLE_CONFIG);
    for baggage in [
        "lane=gray",
        "LANE=gray",
        "x=1;lane=gray",
        "lane=gr%61y",
        "lane=gray,lane=gray",
    ] {
        let out = process(
            &c,
            &req(&[
                ("baggage", baggage),
                ("x-graylane", "gray"),
                ("x-graylane-cluster", "b-gray"),
                (":authority", "svc-b"),
            ]),
            &mut rng(1),
        );
        assert_eq!(out.decision.lane, None, "{baggage}");
        assert_eq!(set_of(&out.effects, "x-graylane"), Some(None));
        assert_eq!(
            set_of(&out.effects, "x-graylane-cluster"),
            Some(Some("b-base"))
        );
    }
}

#[test]
fn effects_lane_header_baggage_and_cluster() {
    let c = config(TABLE_CONFIG);
    let out = process(
        &c,
        &req(&[
            ("location", "cn-shenzhen"),
            (":authority", "svc-b:8080"),
            ("baggage", "userId=alice;prop=1, lane=old"),
        ]),
        &mut rng(1),
    );
    let e = &out.effects;
    assert_eq!(set_of(e, "x-graylane"), Some(Some("gray")));
    assert_eq!(
        set_of(e, "baggage"),
        Some(Some("userId=alice;prop=1,lane=gray"))
    );
    assert_eq!(set_of(e, "x-graylane-cluster"), Some(Some("b-gray")));
    assert_eq!(e.fallback, None);

    // A lane without a version of the service falls back to base.
    let out = process(
        &c,
        &req(&[("cookie", "beta=1"), (":authority", "SVC-B")]),
        &mut rng(1),
    );
    assert_eq!(
        set_of(&out.effects, "x-graylane-cluster"),
        Some(Some("b-base"))
    );
    assert_eq!(out.effects.fallback, Some("svc-b"));

    // Base: lane header and member removed, other baggage kept, no service: header removed.
    let out = process(
        &c,
        &req(&[
            ("x-graylane", "x"),
            ("baggage", "lane=gray,k=v"),
            ("x-graylane-cluster", "evil"),
            (":authority", "other"),
        ]),
        &mut rng(1),
    );
    assert_eq!(set_of(&out.effects, "x-graylane"), Some(None));
    assert_eq!(set_of(&out.effects, "baggage"), Some(Some("k=v")));
    assert_eq!(set_of(&out.effects, "x-graylane-cluster"), Some(None));

    // Nothing to change: no header operations at all.
    let out = process(&c, &req(&[(":path", "/"), ("baggage", "k=v")]), &mut rng(1));
    assert!(out.effects.set.is_empty(), "{:?}", out.effects.set);
    // Already right: no change either.
    let out = process(
        &c,
        &req(&[
            ("location", "cn-shenzhen"),
            ("x-graylane", "gray"),
            ("baggage", "lane=gray"),
        ]),
        &mut rng(1),
    );
    assert!(out.effects.set.is_empty(), "{:?}", out.effects.set);
}

#[test]
fn malformed_baggage_is_repaired_and_counted() {
    let c = config(TABLE_CONFIG);
    let out = process(
        &c,
        &req(&[("baggage", "ok=1,bad key=2,also=3")]),
        &mut rng(1),
    );
    assert_eq!(out.effects.baggage_dropped, 1);
    assert_eq!(set_of(&out.effects, "baggage"), Some(Some("ok=1,also=3")));
}

#[test]
fn shadow_marks_mirrored_requests_only() {
    let c = config(
        r#"{"shadow": {}, "lanes": [{"name": "g", "match": {"header": "x", "present": true}}]}"#,
    );
    let out = process(
        &c,
        &req(&[(":authority", "svc-a-shadow:80"), ("baggage", "k=v")]),
        &mut rng(1),
    );
    assert!(out.effects.shadow);
    assert_eq!(set_of(&out.effects, "baggage"), Some(Some("k=v,shadow=1")));
    let out = process(
        &c,
        &req(&[(":authority", "svc-a:80"), ("baggage", "shadow=1")]),
        &mut rng(1),
    );
    assert!(!out.effects.shadow);
    // At the edge a client cannot mark itself as shadow traffic.
    assert_eq!(set_of(&out.effects, "baggage"), Some(None));
    // A trusting hop keeps the mark on the way down the chain.
    let c = config(r#"{"incoming": "trust", "shadow": {}, "lanes": [{"name": "g"}]}"#);
    let out = process(
        &c,
        &req(&[(":authority", "svc-b"), ("baggage", "shadow=1,lane=g")]),
        &mut rng(1),
    );
    assert!(set_of(&out.effects, "baggage").is_none());
}

#[test]
fn hostile_values_do_not_match_and_do_not_panic() {
    let c = config(TABLE_CONFIG);
    let big = "cn-shenzhen".repeat(10_000);
    assert_eq!(lane_of(&c, &[("location", &big)]), "base");
    let bad = HeaderList(vec![
        ("location".into(), b"cn-\xffshenzhen".to_vec()),
        ("cookie".into(), b"\xff=\xfe; beta=1".to_vec()),
        (":path".into(), b"/?beta=%ff&beta=on".to_vec()),
    ]);
    let out = process(&c, &bad, &mut rng(1));
    assert_eq!(c.lane_name(out.decision.lane), "beta");
    let many: Vec<(&str, &str)> = std::iter::repeat_n(("cookie", "a=1"), 100).collect();
    assert_eq!(lane_of(&c, &many), "base");
}

#[test]
fn operators_compare_text_and_never_match_a_value_that_is_not_utf8() {
    let c = config(
        r#"{"lanes": [
          {"name": "p", "priority": 1, "match": {"header": "x-p", "prefix": "ab"}},
          {"name": "s", "priority": 2, "match": {"header": "x-s", "suffix": "yz"}},
          {"name": "c", "priority": 3, "match": {"header": "x-c", "contains": "Android"}},
          {"name": "ci", "priority": 4, "match": {"header": "x-ci", "contains": "android", "ignoreCase": true}}
        ]}"#,
    );
    let with = |name: &str, value: &[u8]| {
        let req = HeaderList(vec![(name.to_string(), value.to_vec())]);
        let out = process(&c, &req, &mut rng(1));
        c.lane_name(out.decision.lane).to_string()
    };
    assert_eq!(with("x-p", b"abc"), "p");
    assert_eq!(with("x-p", b"ab\xff"), "base");
    assert_eq!(with("x-s", b"xyz"), "s");
    assert_eq!(with("x-s", b"\xffyz"), "base");
    assert_eq!(with("x-c", "Linux; Android 14 中".as_bytes()), "c");
    assert_eq!(with("x-c", b"Linux; Android\xff"), "base");
    assert_eq!(with("x-c", b"Androi"), "base");
    // Long values are searched by another path: same answers.
    let long = format!("{}Android{}", "x".repeat(300), "y".repeat(300));
    assert_eq!(with("x-c", long.as_bytes()), "c");
    assert_eq!(with("x-c", "x".repeat(600).as_bytes()), "base");
    assert_eq!(with("x-ci", b"LINUX; ANDROID 14"), "ci");
    assert_eq!(with("x-ci", long.to_uppercase().as_bytes()), "ci");
}

#[test]
fn host_without_port_including_ipv6() {
    let c = config(r#"{"lanes": [{"name": "g", "match": {"host": true, "exact": "[::1]"}}]}"#);
    assert_eq!(lane_of(&c, &[(":authority", "[::1]:8080")]), "g");
    assert_eq!(lane_of(&c, &[(":authority", "[::1]")]), "g");
    assert_eq!(lane_of(&c, &[(":authority", "::1")]), "base");
}

#[test]
fn regex_literal_prefix_is_sound() {
    let cases: &[(&str, &str)] = &[
        (
            r"Mozilla/5\.0 \(iPhone; CPU iPhone OS 10_.*",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 10_",
        ),
        ("^/api/v2/[a-z]+", "/api/v2/"),
        ("abc?d", "ab"),
        ("ab*", "a"),
        ("ab{2}", "a"),
        ("a|b", ""),
        ("(a|b)c", ""),
        ("[x|y]z", ""),
        (r"\d+abc", ""),
        (r"ab\.c(d|e)", "ab.c"),
        ("x+", "x"),
        ("", ""),
    ];
    for (re, want) in cases {
        assert_eq!(literal_prefix(re), *want, "{re}");
    }
    // Every value a regex matches starts with its prefix.
    let c = config(
        r#"{"lanes": [{"name": "a", "match": {"header": "ua", "regex": "Mo(z|Z)illa.*"}},
        {"name": "b", "match": {"header": "ua", "regex": "mozilla/5\\.0 x", "ignoreCase": true}}]}"#,
    );
    assert_eq!(lane_of(&c, &[("ua", "MoZilla")]), "a");
    assert_eq!(lane_of(&c, &[("ua", "MOZILLA/5.0 X")]), "b");
    assert_eq!(lane_of(&c, &[("ua", "MOZILLA/5.0 Y")]), "base");
}

#[test]
fn a_hop_finds_the_lane_member_wherever_it_stands() {
    let c = config(
        r#"{"incoming": "trust", "propagate": ["beta"], "lanes": [{"name": "gray", "match": {"header": "x", "present": true}}]}"#,
    );
    let many: Vec<String> = (0..999).map(|i| format!("k{i}=v{i}")).collect();
    let bag = format!("{},lane=beta", many.join(","));
    let out = process(&c, &req(&[("baggage", &bag)]), &mut rng(1));
    assert_eq!(c.lane_name(out.decision.lane), "beta");
    assert_eq!(out.decision.source, LaneSource::Propagated);
    // What is forwarded fits the limits and keeps the lane member.
    let forwarded = set_of(&out.effects, "baggage").flatten().unwrap();
    let b = crate::baggage::Baggage::parse([forwarded.as_bytes()]);
    assert_eq!(b.dropped, 0);
    assert_eq!(b.members.len(), crate::baggage::MAX_MEMBERS);
    assert_eq!(b.get("lane").unwrap().value, "beta");
    assert!(forwarded.len() <= crate::baggage::MAX_BYTES);
    assert_eq!(
        out.effects.baggage_dropped,
        1000 - crate::baggage::MAX_MEMBERS
    );
}

#[test]
fn a_cookie_by_name_is_what_the_pair_list_gives() {
    const PARTS: &[&str] = &[
        "a", "b", "ab", "=", ";", " ", "\t", "\"", "1", "a=1", "b=\"x\"", "ab =2", " a= 3 ", "==",
        ";;",
    ];
    const NAMES: &[&str] = &["a", "b", "ab", "a=", " a", "a ", ";", "x"];
    let mut next = rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let headers: Vec<String> = (0..1 + next() % 3)
            .map(|_| {
                (0..next() % 8)
                    .map(|_| PARTS[(next() % PARTS.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let req = HeaderList(
            headers
                .iter()
                .map(|h| ("cookie".to_string(), h.as_bytes().to_vec()))
                .collect(),
        );
        let view = crate::engine::View::new(&req);
        for name in NAMES {
            let want: Vec<&[u8]> = view
                .cookies()
                .filter(|(n, _)| *n == name.as_bytes())
                .map(|(_, v)| v)
                .collect();
            let got: Vec<&[u8]> = view.cookie(name).collect();
            assert_eq!(got, want, "{headers:?} {name:?}");
        }
    }
}
