use super::*;
use ErrorKind::*;

/// Every error of `json`: path and kind.
fn errors(json: &str) -> Vec<(String, ErrorKind)> {
    match Config::from_json(json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| (e.path.clone(), e.kind)).collect(),
    }
}

/// The one error of `json`, as printed.
fn message(json: &str) -> String {
    let errors = Config::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    errors.to_string()
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

/// One error per case: its path and kind.
const ONE_ERROR: &[(&str, &str, ErrorKind)] = &[
    (r#"{"lanes": []}"#, "lanes", NoLanes),
    (r#"{}"#, "lanes", NoLanes),
    ("", "", Empty),
    (" \n\t", "", Empty),
    (
        r#"{"lanes": [{"name": "g"}], "propagate": ["g"]}"#,
        "propagate[0]",
        DuplicateLane,
    ),
    (
        r#"{"incoming": "trust", "propagate": ["g", "g"]}"#,
        "propagate[1]",
        DuplicateLane,
    ),
    (
        r#"{"incoming": "trust", "propagate": ["base"]}"#,
        "propagate[0]",
        ReservedLane,
    ),
    (
        r#"{"incoming": "trust", "propagate": ["-g"]}"#,
        "propagate[0]",
        LaneName,
    ),
    (
        r#"{"lanes": [{"name": "g"}], "typo": 1}"#,
        "typo",
        UnknownField,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "exact": "b", "prefx": "c"}}]}"#,
        "lanes[0].match.prefx",
        UnknownField,
    ),
    (
        r#"{"lanes": [{"name": "g"}, {"name": "h", "match": {"any": [{"header": "a", "regex": "("}]}}]}"#,
        "lanes[1].match.any[0].regex",
        Regex,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"all": [{"header": "a", "exact": "b", "prefix": "c"}]}}]}"#,
        "lanes[0].match.all[0]",
        SeveralOperators,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "cookie": "b", "exact": "c"}}]}"#,
        "lanes[0].match",
        SeveralAttributes,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a"}}]}"#,
        "lanes[0].match",
        NoOperator,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"exact": "a"}}]}"#,
        "lanes[0].match",
        NoAttribute,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"any": []}}]}"#,
        "lanes[0].match.any",
        EmptyList,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "in": []}}]}"#,
        "lanes[0].match.in",
        EmptyList,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"all": [], "header": "a"}}]}"#,
        "lanes[0].match",
        ConditionShape,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"all": [], "not": {"path": true, "present": true}}}]}"#,
        "lanes[0].match",
        ConditionShape,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "present": true, "ignoreCase": true}}]}"#,
        "lanes[0].match.ignoreCase",
        NoEffect,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "range": {}, "ignoreCase": false}}]}"#,
        "lanes[0].match.ignoreCase",
        NoEffect,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a b", "exact": "1"}}]}"#,
        "lanes[0].match.header",
        HeaderName,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"cookie": "", "exact": "1"}}]}"#,
        "lanes[0].match.cookie",
        EmptyName,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"query": "", "exact": "1"}}]}"#,
        "lanes[0].match.query",
        EmptyName,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"baggage": "a%b", "exact": "1"}}]}"#,
        "lanes[0].match.baggage",
        BaggageKey,
    ),
    (
        r#"{"lanes": [{"name": "Gray"}]}"#,
        "lanes[0].name",
        LaneName,
    ),
    (r#"{"lanes": [{"name": ""}]}"#, "lanes[0].name", LaneName),
    (
        r#"{"lanes": [{"name": "base"}]}"#,
        "lanes[0].name",
        ReservedLane,
    ),
    (
        r#"{"lanes": [{"name": "g"}, {"name": "g"}]}"#,
        "lanes[1].name",
        DuplicateLane,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 12.345}}]}"#,
        "lanes[0].split.percent",
        Percent,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 101}}]}"#,
        "lanes[0].split.percent",
        Percent,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "buckets": ["1"]}}]}"#,
        "lanes[0].split",
        SplitShape,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {}}]}"#,
        "lanes[0].split",
        SplitShape,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"buckets": []}}]}"#,
        "lanes[0].split.buckets",
        EmptyList,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"buckets": ["5-2"]}}]}"#,
        "lanes[0].split.buckets[0]",
        BucketRange,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"buckets": ["10000"]}}]}"#,
        "lanes[0].split.buckets[0]",
        BucketRange,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {}}}]}"#,
        "lanes[0].split.key",
        SplitKeySource,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"header": "a", "cookie": "b"}}}]}"#,
        "lanes[0].split.key",
        SplitKeySource,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"header": "a", "assign": true}}}]}"#,
        "lanes[0].split.key.assign",
        Assign,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"cookie": "a", "maxAge": 5}}}]}"#,
        "lanes[0].split.key.maxAge",
        Assign,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"cookie": "a;b", "assign": true}}}]}"#,
        "lanes[0].split.key.cookie",
        Assign,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"cookie": "a", "maxAge": -1}}}]}"#,
        "lanes[0].split.key.maxAge",
        InvalidValue,
    ),
    (
        r#"{"lanes": [{"name": "g", "split": {"percent": 1, "onMissingKey": "drop"}}]}"#,
        "lanes[0].split.onMissingKey",
        UnknownVariant,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"header": "a", "range": {"min": 5, "max": 1}}}]}"#,
        "lanes[0].match.range",
        EmptyRange,
    ),
    (
        r#"{"lanes": [{"name": "g", "match": {"path": false, "exact": "/"}}]}"#,
        "lanes[0].match.path",
        FalseAttribute,
    ),
    (
        r#"{"incoming": "maybe", "lanes": [{"name": "g"}]}"#,
        "incoming",
        UnknownVariant,
    ),
    (
        r#"{"laneHeader": "bad header", "lanes": [{"name": "g"}]}"#,
        "laneHeader",
        HeaderName,
    ),
    (
        r#"{"laneHeader": ":path", "lanes": [{"name": "g"}]}"#,
        "laneHeader",
        ReservedHeader,
    ),
    (
        r#"{"clusterHeader": "Baggage", "lanes": [{"name": "g"}]}"#,
        "clusterHeader",
        ReservedHeader,
    ),
    (
        r#"{"clusterHeader": "X-Graylane", "lanes": [{"name": "g"}]}"#,
        "clusterHeader",
        NotDistinct,
    ),
    (
        r#"{"baggageKey": "", "lanes": [{"name": "g"}]}"#,
        "baggageKey",
        BaggageKey,
    ),
    (
        r#"{"shadow": {"baggageKey": "lane"}, "lanes": [{"name": "g"}]}"#,
        "shadow.baggageKey",
        NotDistinct,
    ),
    (
        r#"{"shadow": {"hostSuffix": ""}, "lanes": [{"name": "g"}]}"#,
        "shadow.hostSuffix",
        EmptyName,
    ),
    (
        r#"{"services": {"svc:80": {"base": "b"}}, "lanes": [{"name": "g"}]}"#,
        "services.svc:80",
        ServiceKey,
    ),
    (
        r#"{"services": {"s": {"base": ""}}, "lanes": [{"name": "g"}]}"#,
        "services.s.base",
        EmptyName,
    ),
    (
        r#"{"services": {"s": {"base": "b", "lanes": {"g": ""}}}, "lanes": [{"name": "g"}]}"#,
        "services.s.lanes.g",
        EmptyName,
    ),
    (
        r#"{"services": {"s": {"base": "b"}, "S": {"base": "c"}}, "lanes": [{"name": "g"}]}"#,
        "services.s",
        DuplicateService,
    ),
    (
        r#"{"services": {"s": {}}, "lanes": [{"name": "g"}]}"#,
        "services.s",
        MissingField,
    ),
    (
        r#"{"lanes": [{"name": "g", "priority": "high"}]}"#,
        "lanes[0].priority",
        WrongType,
    ),
    (r#"{"lanes": [{"priority": 1}]}"#, "lanes[0]", MissingField),
    (
        r#"{"lanes": [{"name": "g", "name": "h"}]}"#,
        "lanes[0].name",
        DuplicateMember,
    ),
    ("{\"lanes\": [{\"name\": \"g\"}]} x", "", Syntax),
];

#[test]
fn each_error_has_its_path_and_kind() {
    for (json, path, kind) in ONE_ERROR {
        assert_eq!(errors(json), [(path.to_string(), *kind)], "{json}");
    }
}

#[test]
fn independent_errors_are_all_reported() {
    let cases: &[(&str, &[(&str, ErrorKind)])] = &[
        // A misspelt field and a bad regex: the JSON's error, then compile's.
        (
            r#"{"lanes": [{"name": "g", "priorty": 1}, {"name": "h", "match": {"header": "a", "regex": "("}}]}"#,
            &[
                ("lanes[0].priorty", UnknownField),
                ("lanes[1].match.regex", Regex),
            ],
        ),
        // Every bad value of the JSON read past, in order; then compile's.
        (
            r#"{"incoming": "trsut", "lanes": [{"name": "g", "nmae": "x", "split": {"percent": 101, "onMissingKey": "drop"}}, {"name": "g"}]}"#,
            &[
                ("incoming", UnknownVariant),
                ("lanes[0].nmae", UnknownField),
                ("lanes[0].split.onMissingKey", UnknownVariant),
                ("lanes[0].split.percent", Percent),
                ("lanes[1].name", DuplicateLane),
            ],
        ),
        // Errors of one lane, and of every lane.
        (
            r#"{"lanes": [
                {"name": "Bad", "match": {"all": [{"header": "a b", "exact": "1"}, {"cookie": "c", "regex": "("}]}, "split": {"buckets": ["1-0", "2", "x"]}},
                {"name": "h", "match": {"not": {"header": "a", "in": []}}, "split": {"percent": 1, "key": {"query": "", "maxAge": 1}}}
            ]}"#,
            &[
                ("lanes[0].name", LaneName),
                ("lanes[0].match.all[0].header", HeaderName),
                ("lanes[0].match.all[1].regex", Regex),
                ("lanes[0].split.buckets[0]", BucketRange),
                ("lanes[0].split.buckets[2]", BucketRange),
                ("lanes[1].match.not.in", EmptyList),
                ("lanes[1].split.key.query", EmptyName),
                ("lanes[1].split.key.maxAge", Assign),
            ],
        ),
        // A leaf with neither attribute nor operator lacks both.
        (
            r#"{"lanes": [{"name": "g", "match": {}}]}"#,
            &[
                ("lanes[0].match", NoAttribute),
                ("lanes[0].match", NoOperator),
            ],
        ),
        // The top level, lanes, propagate and services together.
        (
            r#"{"laneHeader": "a b", "clusterHeader": "host", "baggageKey": "a,b",
                "shadow": {"baggageKey": "", "hostSuffix": ""},
                "lanes": [{"name": "g", "match": {"method": false, "exact": "GET"}}],
                "propagate": ["g", "base"],
                "services": {"a/b": {"base": "", "lanes": {"g": ""}}}}"#,
            &[
                ("laneHeader", HeaderName),
                ("clusterHeader", ReservedHeader),
                ("baggageKey", BaggageKey),
                ("shadow.baggageKey", BaggageKey),
                ("shadow.hostSuffix", EmptyName),
                ("lanes[0].match.method", FalseAttribute),
                ("propagate[0]", DuplicateLane),
                ("propagate[1]", ReservedLane),
                ("services.a/b", ServiceKey),
                ("services.a/b.base", EmptyName),
                ("services.a/b.lanes.g", EmptyName),
            ],
        ),
        // A duplicate member is read past; a value of the wrong type stops
        // the reading, and nothing is compiled.
        (
            r#"{"lanes": [{"name": "g", "name": "h", "match": {"header": "a", "regex": "("}}, {"name": "x", "priority": "1"}, {"nme": "y"}]}"#,
            &[
                ("lanes[0].name", DuplicateMember),
                ("lanes[1].priority", WrongType),
            ],
        ),
        // A missing member stops it too, and so does malformed JSON.
        (
            r#"{"lanes": [{"name": "g", "typo": 1}, {"priority": 1}, {"name": "Bad"}]}"#,
            &[("lanes[0].typo", UnknownField), ("lanes[1]", MissingField)],
        ),
        (
            r#"{"lanes": [{"name": "g", "typo": 1}, {"name": "h",}]}"#,
            &[("lanes[0].typo", UnknownField), ("lanes[1]", Syntax)],
        ),
        // Malformed JSON in a member read past stops the reading.
        (
            r#"{"lanes": [{"name": "g", "typo": [1,]}]}"#,
            &[("lanes[0].typo", UnknownField), ("lanes[0].typo", Syntax)],
        ),
    ];
    for (json, want) in cases {
        let want: Vec<(String, ErrorKind)> =
            want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(errors(json), want, "{json}");
    }
}

/// The messages say what would be accepted; these are the words an
/// operator reads in Envoy's log.
#[test]
fn messages_say_what_is_accepted() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"lanes": [{"name": "g", "priorty": 1}]}"#,
            "lanes[0].priorty: unknown field `priorty`, expected one of `name`, `priority`, `match`, `split`",
        ),
        (
            r#"{"incoming": "maybe", "lanes": [{"name": "g"}]}"#,
            "incoming: unknown variant `maybe`, expected `ignore` or `trust`",
        ),
        (
            r#"{"lanes": [{"name": "g", "priority": "high"}]}"#,
            "lanes[0].priority: invalid type: string \"high\", expected i64",
        ),
        (
            r#"{"lanes": [{"priority": 1}]}"#,
            "lanes[0]: missing field `name`",
        ),
        (
            r#"{"laneHeader": "bad header", "lanes": [{"name": "g"}]}"#,
            "laneHeader: \"bad header\" is not a valid header name; use one or more letters, digits and !#$%&'*+-.^_`|~ (an HTTP token)",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"header": "", "exact": "1"}}]}"#,
            "lanes[0].match.header: \"\" is not a valid header name; use one or more letters, digits and !#$%&'*+-.^_`|~ (an HTTP token), after an optional ':' for a pseudo-header such as \":path\"",
        ),
        (
            r#"{"laneHeader": "host", "lanes": [{"name": "g"}]}"#,
            "laneHeader: \"host\" cannot be used here (graylane does not set pseudo-headers, host, baggage or cookie); choose a header of your own such as \"x-graylane\"",
        ),
        (
            r#"{"baggageKey": "a%b", "lanes": [{"name": "g"}]}"#,
            "baggageKey: \"a%b\" is not a valid baggage key; use 1 to 256 letters, digits and !#$&'*+-.^_`|~ (an HTTP token without '%')",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 1, "key": {"cookie": "a b", "assign": true}}}]}"#,
            "lanes[0].split.key.cookie: \"a b\" is not a valid cookie name to set; use letters, digits and !#$%&'*+-.^_`|~ (an HTTP token)",
        ),
        (
            r#"{"lanes": [{"name": "-g"}]}"#,
            "lanes[0].name: \"-g\" is not a valid lane name; use 1-63 characters of a-z 0-9 - _ . starting with a letter or digit",
        ),
        (
            r#"{"lanes": [{"name": "g"}, {"name": "g"}]}"#,
            "lanes[1].name: lane \"g\" is already declared at lanes[0]; names must be unique",
        ),
        (
            r#"{"lanes": [{"name": "g"}], "incoming": "trust", "propagate": ["h", "g"]}"#,
            "propagate[1]: lane \"g\" is already declared at lanes[0]; a lane is either a rule in \"lanes\" or a name in \"propagate\", once",
        ),
        (
            r#"{"incoming": "trust", "propagate": ["h", "h"]}"#,
            "propagate[1]: lane \"h\" is already declared at propagate[0]; a lane is either a rule in \"lanes\" or a name in \"propagate\", once",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"header": "a", "exact": "b", "prefix": "c"}}]}"#,
            "lanes[0].match: leaf has 2 operators (exact, prefix); use exactly one",
        ),
        (
            r#"{"lanes": [{"name": "g", "match": {"all": [], "header": "a", "ignoreCase": true}}]}"#,
            "lanes[0].match: a condition is exactly one of all, any, not, or a leaf; found all, header, ignoreCase; nest them instead",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"buckets": ["5-2"]}}]}"#,
            "lanes[0].split.buckets[0]: \"5-2\" is not a bucket range; write \"LOW-HIGH\" or \"N\" with 0 <= LOW <= HIGH <= 9999",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(message(json), *want, "{json}");
    }
}

#[test]
fn the_token_charset_is_rfc_9110s() {
    // RFC 9110 section 5.6.2: tchar.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for b in 0..=255u8 {
        assert_eq!(is_token_char(b), tchar(b), "{b:#04x}");
        assert_eq!(is_baggage_key_char(b), tchar(b) && b != b'%', "{b:#04x}");
    }
    // What the header check accepts is what its message lists.
    let all: String = TOKEN_SYMBOLS.chars().collect();
    let json = format!(r#"{{"laneHeader": "x{all}", "lanes": [{{"name": "g"}}]}}"#);
    assert!(Config::from_json(json.as_bytes()).is_ok());
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
        match Config::from_json(json.as_bytes()) {
            Ok(_) => accepted.push(*name),
            // Rejected as JSON, not by a check of a value.
            Err(e) => assert!(
                e.iter()
                    .all(|e| matches!(e.kind, Syntax | DuplicateMember | WrongType)),
                "{name}: {e}"
            ),
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
    assert_eq!(errors(&arrays(10_000)), [(String::new(), WrongType)]);
    let lanes = format!(r#"{{"lanes": {}}}"#, arrays(10_000));
    assert_eq!(errors(&lanes), [("lanes[0]".to_string(), WrongType)]);
    // serde_json stops at 128 objects and arrays: the configuration,
    // `lanes`, the lane, `match` and 124 `not`s.
    let deep = format!("lanes[0].match{}", ".not".repeat(124));
    assert_eq!(errors(&nots(10_000)), [(deep, TooDeep)]);
    // Conditions nest as deep as anyone writes them.
    assert!(Config::from_json(nots(100).as_bytes()).is_ok());
}

#[test]
fn malformed_json_errors_say_what_is_accepted() {
    for (json, want) in [
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": 2.}}]}"#,
            "lanes[0].split.percent: invalid JSON at line 1 column 49: invalid number; write numbers as JSON does: no leading zero, digits on both sides of a '.' (0.5, 12.5, 1e2)",
        ),
        (
            r#"{"lanes": [{"name": "g",}]}"#,
            "lanes[0]: invalid JSON at line 1 column 25: trailing comma; remove the comma before the closing bracket",
        ),
        (
            r#"{"lanes": [{"name": "g", "name": "h"}]}"#,
            "lanes[0].name: duplicate member `name`; give each name once per object",
        ),
        (
            r#"{"lanes": [{"name": "g", "split": {"percent": NaN}}]}"#,
            "lanes[0].split.percent: invalid JSON at line 1 column 47: expected value; expected a string in double quotes, a number, true, false, null, an object or an array (JSON has no comments, single quotes, NaN or Infinity)",
        ),
        (
            r#"{"incoming": {"trust": null}, "lanes": [{"name": "g"}]}"#,
            "incoming: invalid type: map, expected a string",
        ),
        (
            r#"[{"name": "g"}]"#,
            "invalid type: sequence, expected an object",
        ),
        (
            r#"{"lanes": [{"name": "g"}]} x"#,
            "invalid JSON at line 1 column 28: trailing characters; the configuration is one JSON object and nothing after it",
        ),
    ] {
        assert_eq!(message(json), want, "{json}");
    }
}

#[test]
fn continuity_defaults_and_settings() {
    use crate::continuity::{Side, TraceHeader};
    let c = Config::from_json(br#"{"propagate": ["gray"], "continuity": {}}"#).unwrap();
    let k = c.continuity.as_ref().unwrap();
    assert_eq!(
        k.from,
        vec![
            TraceHeader::Traceparent,
            TraceHeader::Whole("x-request-id".into())
        ]
    );
    assert_eq!((k.ttl_ms, k.slots, k.side), (60_000, 65536, None));
    let c = Config::from_json(
        br#"{"propagate": ["gray"], "continuity": {"from": ["X-B3-TraceId"], "ttl": "250ms", "slots": 8, "side": "outbound"}}"#,
    )
    .unwrap();
    let k = c.continuity.as_ref().unwrap();
    assert_eq!(k.from, vec![TraceHeader::Whole("x-b3-traceid".into())]);
    assert_eq!((k.ttl_ms, k.slots, k.side), (250, 8, Some(Side::Outbound)));
    assert!(Config::from_json(br#"{"propagate": ["gray"]}"#)
        .unwrap()
        .continuity
        .is_none());
}

#[test]
fn continuity_errors_are_named_by_path() {
    let cases: &[(&str, &[(&str, ErrorKind)])] = &[
        (r#"{"from": []}"#, &[("continuity.from", EmptyList)]),
        (
            r#"{"from": ["traceparent", "TraceParent"]}"#,
            &[("continuity.from[1]", NotDistinct)],
        ),
        (
            r#"{"from": ["a b"]}"#,
            &[("continuity.from[0]", HeaderName)],
        ),
        (
            r#"{"from": [":path"]}"#,
            &[("continuity.from[0]", HeaderName)],
        ),
        (r#"{"ttl": "60"}"#, &[("continuity.ttl", InvalidValue)]),
        (r#"{"ttl": "0s"}"#, &[("continuity.ttl", InvalidValue)]),
        (r#"{"ttl": "25h"}"#, &[("continuity.ttl", InvalidValue)]),
        (r#"{"slots": 0}"#, &[("continuity.slots", InvalidValue)]),
        (
            r#"{"slots": 2000000}"#,
            &[("continuity.slots", InvalidValue)],
        ),
        (
            r#"{"side": "both"}"#,
            &[("continuity.side", UnknownVariant)],
        ),
        (r#"{"slot": 8}"#, &[("continuity.slot", UnknownField)]),
        (
            r#"{"from": ["x", "x"], "ttl": "1d", "slots": 0}"#,
            &[
                ("continuity.from[1]", NotDistinct),
                ("continuity.ttl", InvalidValue),
                ("continuity.slots", InvalidValue),
            ],
        ),
    ];
    for (continuity, want) in cases {
        let json = format!(r#"{{"propagate": ["gray"], "continuity": {continuity}}}"#);
        let want: Vec<(String, ErrorKind)> =
            want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(errors(&json), want, "{continuity}");
    }
    assert_eq!(
        message(r#"{"propagate": ["gray"], "continuity": {"ttl": "60"}}"#),
        "continuity.ttl: expected a whole number and ms, s, m or h, from 1ms to 24h, such as \"60s\""
    );
}
