#!/usr/bin/env python3
"""The benchmark's graylane configs and request, shared by scripts/bench.sh
(Envoy listeners: scripts/bench/gateway.py; wrk load: scripts/bench/load.lua)
and the deterministic cost meter (wasm-tests/src/costhost/, `graylane-cost`,
wasm-tests/tests/cost.rs), which reads them from scripts/bench/cost-spec.json.

usage:
  configs.py OUTDIR   writes graylane-c.json, graylane-e.json, graylane-hop.json
  configs.py cost     prints the cost meter's configs and request kinds as JSON
  configs.py spec     rewrites scripts/bench/cost-spec.json (the same JSON)
  configs.py check    fails when scripts/bench/cost-spec.json is not what
                      `configs.py spec` would write
"""
import json
import os
import sys

SPLIT = {"key": {"header": "x-user-id"}, "percent": 10, "salt": "bench", "onMissingKey": "exclude"}


def lanes_c():
    """(c): 20 lanes. Names hdr-* are selected by x-region, ck-* by a cookie,
    q-* by the query, ua-android by two headers; "sticky" is a 10 % split."""
    lanes = []
    for i in range(10):
        lanes.append({"name": f"hdr-{i}", "priority": 10 + i,
                      "match": {"header": "x-region", "exact": f"region-{i}"}})
    for i in range(5):
        lanes.append({"name": f"ck-{i}", "priority": 30 + i,
                      "match": {"cookie": "canary", "exact": f"beta-{i}"}})
    for i in range(3):
        lanes.append({"name": f"q-{i}", "priority": 40 + i,
                      "match": {"query": "lane", "exact": f"q-{i}"}})
    lanes.append({"name": "ua-android", "priority": 50,
                  "match": {"all": [{"header": "user-agent", "contains": "Android"},
                                    {"header": "x-app-version", "prefix": "9."}]}})
    lanes.append({"name": "sticky", "priority": 60, "split": SPLIT})
    assert len(lanes) == 20
    return lanes


def lanes_e():
    """(e): 1,000 lanes: 990 exact-header lanes, 9 regex lanes, the split lane."""
    lanes = [{"name": f"hdr-{i}", "priority": i,
              "match": {"header": "x-region", "exact": f"region-{i}"}} for i in range(990)]
    for i in range(9):
        lanes.append({"name": f"re-{i}", "priority": 1000 + i,
                      "match": {"header": "user-agent",
                                "regex": f"Mozilla/5\\.0 \\(iPhone; CPU iPhone OS 1{i}_.*"}})
    lanes.append({"name": "sticky", "priority": 2000, "split": SPLIT})
    assert len(lanes) == 1000
    return lanes


CONFIG_C = {"incoming": "ignore", "lanes": lanes_c()}
CONFIG_E = {"incoming": "ignore", "lanes": lanes_e()}
# A hop (sidecar) behind the edge: the same lanes, the incoming tag trusted.
CONFIG_HOP = {"incoming": "trust", "lanes": lanes_c()}
# The same hop with lane continuity from trace context, one config per side
# (the cost meter's host gives no listener direction).
CONFIG_HOP_INBOUND = {"incoming": "trust", "lanes": lanes_c(),
                      "continuity": {"from": ["traceparent"], "side": "inbound"}}
CONFIG_HOP_OUTBOUND = {"incoming": "trust", "lanes": lanes_c(),
                       "continuity": {"from": ["traceparent"], "side": "outbound"}}
CONFIGS = {"c": CONFIG_C, "e": CONFIG_E, "hop": CONFIG_HOP,
           "hop-inbound": CONFIG_HOP_INBOUND, "hop-outbound": CONFIG_HOP_OUTBOUND}

# The bench request (wrk sends these on every request; x-user-id and
# x-region vary per request, see scripts/bench.sh).
METHOD = "GET"
PATH = "/api/v1/orders?page=2&lang=en"
HEADERS = [
    ("user-agent", "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36"),
    ("accept", "application/json"),
    ("x-app-version", "8.4.1"),
    ("cookie", "session=9c1e77b03f2a; theme=dark; canary=none"),
    ("baggage", "userId=alice,sessionId=3f2a9c1e-77b0,tenant=acme;ttl=60,sampled=true,deviceId=d-77"),
]
# A user id outside the 10 % sticky split (the cost meter's sanity checks
# show it: the base request gets no lane), and the x-region of no lane.
BASE_USER = "user-7919"
NO_REGION = "region-none"
EDGE_REGION = "region-3"


def envoy_request(extra, baggage=None):
    """The header map as the filter sees it behind Envoy's connection manager:
    pseudo-headers, the client's headers, then what Envoy adds before the
    filters run (x-forwarded-proto, x-request-id)."""
    headers = [(":authority", "127.0.0.1:19402"), (":path", PATH), (":method", METHOD),
               (":scheme", "http")]
    for name, value in HEADERS:
        if name == "baggage" and baggage is not None:
            value = baggage
        headers.append((name, value))
    headers += extra
    headers += [("x-forwarded-proto", "http"),
                ("x-request-id", "6f1c2b7e-1d3a-4c8e-9b0f-2a5d7e9c4b11")]
    return headers


BASE_BAGGAGE = dict(HEADERS)["baggage"]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RESPONSE = [(":status", "200"), ("content-length", "4"), ("content-type", "text/plain"),
            ("date", "Sun, 29 Nov 2026 23:00:00 GMT"), ("server", "envoy")]

# The cost meter's request kinds: name, config, request headers, and the
# lane the filter must write into x-graylane (None: no lane header).
COST_KINDS = [
    {"kind": "base", "config": "c", "lane": None,
     "request": envoy_request([("x-user-id", BASE_USER), ("x-region", NO_REGION)])},
    {"kind": "edge-lane", "config": "c", "lane": "hdr-3",
     "request": envoy_request([("x-user-id", BASE_USER), ("x-region", EDGE_REGION)])},
    {"kind": "hop", "config": "hop", "lane": "ck-2",
     "request": envoy_request([("x-user-id", BASE_USER), ("x-region", NO_REGION)],
                              baggage=BASE_BAGGAGE + ",lane=ck-2")},
    {"kind": "base-1000", "config": "e", "lane": None,
     "request": envoy_request([("x-user-id", BASE_USER), ("x-region", NO_REGION)])},
    # Continuity: the inbound side decides the hop's lane and remembers it
    # for the trace (a shared-data read and write); the outbound side looks
    # an untagged request's trace up (a read; the table is empty, so a miss,
    # then the usual decision).
    {"kind": "hop-inbound", "config": "hop-inbound", "lane": "ck-2",
     "request": envoy_request([("x-user-id", BASE_USER), ("x-region", NO_REGION),
                               ("traceparent", TRACEPARENT)],
                              baggage=BASE_BAGGAGE + ",lane=ck-2")},
    {"kind": "hop-outbound-miss", "config": "hop-outbound", "lane": None,
     "request": envoy_request([("x-user-id", BASE_USER), ("x-region", NO_REGION),
                               ("traceparent", TRACEPARENT)])},
]


SPEC_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cost-spec.json")


def write_configs(out):
    for name, cfg in (("graylane-c.json", CONFIG_C), ("graylane-e.json", CONFIG_E),
                      ("graylane-hop.json", CONFIG_HOP)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(cfg, f, indent=1)


def to_json(value, depth=0):
    """JSON text with one lane or one header a line, so that a diff of the
    committed spec shows what changed: a value nested 4 deep (a lane of a
    config, a header of a kind's request) or a list of plain values stands
    on one line; anything above it is indented one space a level."""
    nested = (dict, list, tuple)
    flat = depth >= 4 or (isinstance(value, (list, tuple)) and not any(isinstance(v, nested) for v in value))
    if flat or not isinstance(value, nested) or not value:
        return json.dumps(value)
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {to_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [inner + to_json(v, depth + 1) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def cost_spec():
    return to_json({"configs": CONFIGS, "response": RESPONSE, "kinds": COST_KINDS}) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    command = sys.argv[1]
    if command == "cost":
        sys.stdout.write(cost_spec())
    elif command == "spec":
        with open(SPEC_FILE, "w") as f:
            f.write(cost_spec())
    elif command == "check":
        with open(SPEC_FILE) as f:
            if f.read() != cost_spec():
                sys.exit(f"{SPEC_FILE} is not what configs.py writes: "
                         "run python3 scripts/bench/configs.py spec")
    else:
        write_configs(command)


if __name__ == "__main__":
    main()
