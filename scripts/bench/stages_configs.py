#!/usr/bin/env python3
"""Per request kind of configs.py cost: an Envoy bootstrap for the stage-timing
filter and the wrk arguments (headers, path). Used by stages.sh:
    stages_configs.py OUT_DIR WASM PORT"""
import json, os, subprocess, sys
out, wasm, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = json.loads(subprocess.check_output([sys.executable, "scripts/bench/configs.py", "cost"]))
added_by_envoy = {"x-forwarded-proto", "x-request-id"}
for kind in spec["kinds"]:
    config = spec["configs"][kind["config"]]
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port + 1}}},
        "static_resources": {"listeners": [{
            "name": "stages",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "stages",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                    "http_filters": [
                        {"name": "graylane",
                         "typed_config": {
                             "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": {"name": "graylane", "root_id": "graylane",
                                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                                          "value": json.dumps(config)},
                                        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                                      "code": {"local": {"filename": wasm}}}}}},
                        {"name": "envoy.filters.http.router",
                         "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]}}
    with open(os.path.join(out, kind["kind"] + ".json"), "w") as f:
        json.dump(bootstrap, f)
    path = next(v for n, v in kind["request"] if n == ":path")
    with open(os.path.join(out, kind["kind"] + ".args"), "w") as f:
        for name, value in kind["request"]:
            if not name.startswith(":") and name not in added_by_envoy:
                f.write(f"-H\n{name}: {value}\n")
        f.write(f"http://127.0.0.1:{port}{path}\n")
