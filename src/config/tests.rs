use super::*;

fn error(json: &str) -> String {
    Config::from_json(json.as_bytes()).unwrap_err().to_string()
}

fn warnings(json: &str) -> Vec<Warning> {
    Config::from_json(json.as_bytes()).unwrap().warnings
}

#[test]
fn spec_example_compiles_with_defaults() {
    let c = Config::from_json(br#"{"lanes": [{"name": "gray"}]}"#).unwrap();
    assert_eq!(c.lane_header, "x-graylane");
    assert_eq!(c.baggage_key, "lane");
    assert_eq!(c.cluster_header, "x-graylane-cluster");
    assert_eq!(c.incoming, Incoming::Ignore);
    assert!(!c.response_header);
    assert!(c.shadow.is_none());
    assert_eq!(c.rules.lanes[0].priority, 100);
}

#[test]
fn errors_name_the_json_path() {
    let cases: &[(&str, &str)] = &[
        (r#"{"lanes": []}"#, "lanes: at least one"),
        (r#"{}"#, "lanes: at least one lane is required"),
        (
            r#"{"lanes": [{"name": "g"}], "propagate": ["g"]}"#,
            "propagate[0]: lane \"g\" is already declared at lanes[0]",
        ),
        (
            r#"{"incoming": "trust", "propagate": ["g", "g"]}"#,
            "propagate[1]: lane \"g\" is already declared at propagate[0]",
        ),
        (
            r#"{"incoming": "trust", "propagate": ["base"]}"#,
            "propagate[0]: \"base\" is reserved",
        ),
        (
            r#"{"lanes": [{"name": "g"}], "typo": 1}"#,
            "unknown field `typo`, expected one of",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"header": "a", "exact": "b", "prefx": "c"}}]}"#,
            "lanes[0].match.prefx: unknown field `prefx`, expected one of",
        ),
        (
            r#"{"lanes": [{"name": "g"}, {"name": "h", "match": {"any": [{"header": "a", "regex": "("}]}}]}"#,
            "lanes[1].match.any[0].regex: invalid regular expression",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"all": [{"header": "a", "exact": "b", "prefix": "c"}]}}]}"#,
            "lanes[0].match.all[0]: leaf has 2 operators (exact, prefix); use exactly one",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"header": "a", "cookie": "b", "exact": "c"}}]}"#,
            "lanes[0].match: leaf has 2 attributes (header, cookie)",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"header": "a"}}]}"#,
            "lanes[0].match: leaf has no operator",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"any": []}}]}"#,
            "lanes[0].match.any: an empty \"any\"",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"all": [], "header": "a"}}]}"#,
            "lanes[0].match: a condition is exactly one of",
        ),
        (
            r#"{"lanes": [{"name": "Gray"}]}"#,
            "lanes[0].name: \"Gray\" is not a valid lane name",
        ),
        (
            r#"{"lanes": [{"name": "base"}]}"#,
            "lanes[0].name: \"base\" is reserved",
        ),
        (
            r#"{"lanes": [{"name": "g"}, {"name": "g"}]}"#,
            "lanes[1].name: lane \"g\" is already declared at lanes[0]",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 12.345}}]}"#,
            "lanes[0].split.percent: must be a share from 0 to 100",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 101}}]}"#,
            "lanes[0].split.percent",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 1, "buckets": ["1"]}}]}"#,
            "lanes[0].split: give exactly one of",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"buckets": ["5-2"]}}]}"#,
            "lanes[0].split.buckets[0]: \"5-2\" is not a bucket range",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"buckets": ["10000"]}}]}"#,
            "lanes[0].split.buckets[0]",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"header": "a", "assign": true}}}]}"#,
            "lanes[0].split.key.assign: only a cookie key",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 1, "onMissingKey": "drop"}}]}"#,
            "lanes[0].split.onMissingKey: unknown variant `drop`, expected `random` or `exclude`",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"header": "a", "range": {"min": 5, "max": 1}}}]}"#,
            "lanes[0].match.range: min 5 is greater than max 1",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"path": false, "exact": "/"}}]}"#,
            "lanes[0].match.path: write \"path\": true",
        ),
        (
            r#"{"incoming": "maybe", "lanes": [{"name": "g"}]}"#,
            "incoming: unknown variant `maybe`, expected `ignore` or `trust`",
        ),
        (
            r#"{"laneHeader": "bad header", "lanes": [{"name": "g"}]}"#,
            "laneHeader: \"bad header\" is not a valid header name",
        ),
        (
            r#"{"services": {"svc:80": {"base": "b"}}, "lanes": [{"name": "g"}]}"#,
            "services.svc:80: the key must be a host name",
        ),
        (
            r#"{"lanes": [{"name": "g", "priority": "high"}]}"#,
            "lanes[0].priority: invalid type",
        ),
        ("", "the plugin configuration is empty"),
        ("{\"lanes\": [{\"name\": \"g\"}]} x", "trailing characters"),
    ];
    for (json, want) in cases {
        let got = error(json);
        assert!(got.contains(want), "{json}\n  got:  {got}\n  want: {want}");
    }
}

#[test]
fn warnings_do_not_reject() {
    let w = warnings(
        r#"{"services": {"s": {"base": "b", "lanes": {"nope": "c"}}}, "lanes": [{"name": "g", "split": {"percent": 0}}]}"#,
    );
    let kinds: Vec<WarningKind> = w.iter().map(|w| w.kind).collect();
    assert!(kinds.contains(&WarningKind::ZeroPercent));
    assert!(kinds.contains(&WarningKind::UnknownServiceLane));
}

#[test]
fn shadowed_lane_is_reported_only_when_proved() {
    let shadowed = r#"{"lanes": [
        {"name": "android", "priority": 1, "match": {"header": "os", "exact": "android"}},
        {"name": "android-atlantis", "priority": 2, "match": {"all": [{"header": "os", "exact": "android"}, {"header": "region", "exact": "atlantis"}]}}]}"#;
    let w = warnings(shadowed);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, WarningKind::Shadowed);
    assert_eq!(w[0].path, "lanes[1]");
    assert!(w[0].message.contains("\"android-atlantis\" can never win"));
    let swapped = shadowed.replace("\"priority\": 1", "\"priority\": 3");
    assert!(warnings(&swapped).is_empty());
    // A split on the higher lane means the lower one still gets the rest.
    let split = r#"{"lanes": [
        {"name": "a", "priority": 1, "match": {"header": "os", "exact": "android"}, "split": {"percent": 50}},
        {"name": "b", "priority": 2, "match": {"header": "os", "exact": "android"}}]}"#;
    assert!(warnings(split).is_empty());
    // Same key and salt, covering ranges: shadowed.
    let covered = r#"{"lanes": [
        {"name": "a", "priority": 1, "split": {"key": {"header": "u"}, "buckets": ["0-4999"], "salt": "s"}},
        {"name": "b", "priority": 2, "match": {"header": "x", "present": true}, "split": {"key": {"header": "u"}, "buckets": ["100-200"], "salt": "s", "onMissingKey": "exclude"}}]}"#;
    let kinds: Vec<WarningKind> = warnings(covered).iter().map(|w| w.kind).collect();
    assert!(kinds.contains(&WarningKind::Shadowed), "{kinds:?}");
    assert!(
        kinds.contains(&WarningKind::OverlappingBuckets),
        "{kinds:?}"
    );
    // A catch-all lane at the top shadows everything below.
    let all = r#"{"lanes": [{"name": "a", "priority": 1}, {"name": "b", "match": {"header": "x", "exact": "1"}}]}"#;
    assert_eq!(warnings(all).len(), 1);
}

#[test]
fn disjoint_buckets_do_not_warn() {
    let w = warnings(
        r#"{"lanes": [
        {"name": "a", "split": {"key": {"header": "u"}, "buckets": ["0-2999"], "salt": "s"}},
        {"name": "b", "split": {"key": {"header": "u"}, "buckets": ["3000-5999"], "salt": "s"}}]}"#,
    );
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn propagate_declares_lanes_without_rules() {
    let c = Config::from_json(
        br#"{"incoming": "trust", "propagate": ["gray", "beta"],
            "services": {"svc-b": {"base": "b", "lanes": {"gray": "b-gray"}}}}"#,
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.rules.order.is_empty());
    assert_eq!(c.lane_id("beta"), Some(1));
    assert_eq!(c.lane_name(Some(0)), "gray");
    // At an edge it is never used: a warning, not an error.
    let c = Config::from_json(br#"{"propagate": ["gray"]}"#).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].kind, WarningKind::PropagateIgnored);
    assert_eq!(c.warnings[0].path, "propagate");
}

/// Malformed JSON in the style of JSONTestSuite's `n_` files, each inside a
/// config that would be valid if the text were read leniently: every one
/// must be rejected, as serde_json, jq and kubectl reject it.
const MALFORMED: &[(&str, &str)] = &[
    (
        "number -01",
        r#"{"lanes": [{"name": "g", "priority": -01}]}"#,
    ),
    ("number 01", r#"{"lanes": [{"name": "g", "priority": 01}]}"#),
    ("number +1", r#"{"lanes": [{"name": "g", "priority": +1}]}"#),
    (
        "number .5",
        r#"{"lanes": [{"name": "g", "split": {"percent": .5}}]}"#,
    ),
    (
        "number 2.",
        r#"{"lanes": [{"name": "g", "split": {"percent": 2.}}]}"#,
    ),
    (
        "number 0.e1",
        r#"{"lanes": [{"name": "g", "split": {"percent": 0.e1}}]}"#,
    ),
    (
        "number 1.e1",
        r#"{"lanes": [{"name": "g", "split": {"percent": 1.e1}}]}"#,
    ),
    (
        "number 1e",
        r#"{"lanes": [{"name": "g", "split": {"percent": 1e}}]}"#,
    ),
    (
        "number 1e+",
        r#"{"lanes": [{"name": "g", "split": {"percent": 1e+}}]}"#,
    ),
    (
        "number 1-2",
        r#"{"lanes": [{"name": "g", "priority": 1-2}]}"#,
    ),
    (
        "NaN",
        r#"{"lanes": [{"name": "g", "split": {"percent": NaN}}]}"#,
    ),
    (
        "Infinity",
        r#"{"lanes": [{"name": "g", "split": {"percent": Infinity}}]}"#,
    ),
    (
        "-Infinity",
        r#"{"lanes": [{"name": "g", "priority": -Infinity}]}"#,
    ),
    ("trailing comma in object", r#"{"lanes": [{"name": "g",}]}"#),
    ("trailing comma in array", r#"{"lanes": [{"name": "g"},]}"#),
    ("trailing comma at top", r#"{"lanes": [{"name": "g"}],}"#),
    ("unquoted key", r#"{lanes: [{"name": "g"}]}"#),
    ("single quotes", r#"{'lanes': [{'name': 'g'}]}"#),
    ("block comment", r#"{"lanes": [{"name": "g"}] /* c */}"#),
    ("line comment", "// c\n{\"lanes\": [{\"name\": \"g\"}]}"),
    (
        "duplicate field",
        r#"{"lanes": [{"name": "g", "name": "h"}]}"#,
    ),
    (
        "duplicate lanes",
        r#"{"lanes": [{"name": "g"}], "lanes": [{"name": "h"}]}"#,
    ),
    (
        "duplicate map key",
        r#"{"services": {"s": {"base": "a"}, "s": {"base": "b"}}, "lanes": [{"name": "g"}]}"#,
    ),
    (
        "lone leading surrogate",
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "exact": "\ud800"}}]}"#,
    ),
    (
        "lone trailing surrogate",
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "exact": "\udc00"}}]}"#,
    ),
    (
        "control character in string",
        "{\"lanes\": [{\"name\": \"g\", \"match\": {\"header\": \"a\", \"exact\": \"a\u{1}b\"}}]}",
    ),
    (
        "raw tab in string",
        "{\"lanes\": [{\"name\": \"g\", \"match\": {\"header\": \"a\", \"exact\": \"a\tb\"}}]}",
    ),
    (
        "byte order mark",
        "\u{feff}{\"lanes\": [{\"name\": \"g\"}]}",
    ),
    ("trailing garbage", r#"{"lanes": [{"name": "g"}]} x"#),
    ("two documents", r#"{"lanes": [{"name": "g"}]} {}"#),
    ("invalid escape", r#"{"lanes": [{"name": "g\x"}]}"#),
    ("unterminated", r#"{"lanes": [{"name": "g"}"#),
    (
        "config as an array",
        r#"["x-graylane", "lane", "ignore", "c", false, null, {}, [{"name": "g"}]]"#,
    ),
    ("lane as an array", r#"{"lanes": [["g", 1]]}"#),
    (
        "enum as an object",
        r#"{"incoming": {"trust": null}, "lanes": [{"name": "g"}]}"#,
    ),
];

#[test]
fn malformed_json_is_rejected() {
    // The same configs, well formed, are accepted: the rejection is about the JSON.
    for good in [
        r#"{"lanes": [{"name": "g", "priority": -1, "split": {"percent": 0.5}}]}"#,
        r#"{"lanes": [{"name": "g", "split": {"percent": 1e1}}]}"#,
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "exact": "\ud83d\ude00\t"}}]}"#,
        " \r\n\t{\"lanes\": [{\"name\": \"g\"}]} \n",
    ] {
        assert!(Config::from_json(good.as_bytes()).is_ok(), "{good}");
    }
    let mut accepted = Vec::new();
    for (name, json) in MALFORMED {
        if Config::from_json(json.as_bytes()).is_ok() {
            accepted.push(*name);
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    let arrays = |n: usize| "[".repeat(n) + &"]".repeat(n);
    let nots = |n: usize| {
        let c = r#"{"not": "#.repeat(n) + r#"{"header": "a", "exact": "b"}"# + &"}".repeat(n);
        format!(r#"{{"lanes": [{{"name": "g", "match": {c}}}]}}"#)
    };
    for (json, want) in [
        (arrays(10_000), "invalid type: sequence, expected an object"),
        (
            format!(r#"{{"lanes": {}}}"#, arrays(10_000)),
            "lanes[0]: invalid type: sequence, expected an object",
        ),
        (nots(10_000), "recursion limit exceeded"),
    ] {
        let got = Config::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(got.contains(want), "{got}");
    }
    // Conditions nest as deep as anyone writes them.
    assert!(Config::from_json(nots(100).as_bytes()).is_ok());
}

#[test]
fn malformed_json_errors_say_what_is_accepted() {
    for (json, want) in [
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 2.}}]}"#,
            "lanes[0].split.percent: invalid JSON at line 1 column 49: invalid number; write numbers as JSON does",
        ),
        (
            r#"{"lanes": [{"name": "g",}]}"#,
            "lanes[0]: invalid JSON at line 1 column 25: trailing comma; remove the comma",
        ),
        (
            r#"{"lanes": [{"name": "g", "name": "h"}]}"#,
            "lanes[0].name: duplicate member `name`",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": NaN}}]}"#,
            "JSON has no comments, single quotes, NaN or Infinity",
        ),
        (
            r#"{"incoming": {"trust": null}, "lanes": [{"name": "g"}]}"#,
            "incoming: invalid type: map, expected a string",
        ),
        (r#"[{"name": "g"}]"#, "invalid type: sequence, expected an object"),
        (
            r#"{"lanes": [{"name": "g"}]} x"#,
            "invalid JSON at line 1 column 28: trailing characters",
        ),
    ] {
        let got = Config::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(got.contains(want), "{json}\n  got:  {got}\n  want: {want}");
    }
}
