#!/usr/bin/env python3
"""Writes what scripts/bench.sh runs into OUTDIR: the graylane configs
(configs.py), the gateway and backend Envoy bootstraps (one listener per
variant and mode), the Lua filter of variant (d) (lanes.lua), and the request
file that the wrk script (load.lua) sends."""
import argparse
import json
import os
import shutil

import configs

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = "abcdefg"

ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def wasm_filter(vm_id, code, config):
    c = {"name": vm_id, "root_id": "graylane" if config is not None else "",
         "failure_policy": "FAIL_RELOAD",
         "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                       "code": {"local": {"filename": code}}}}
    if config is not None:
        c["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(config)}
    return {"name": f"wasm-{vm_id}",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": c}}


def lua_filter(source):
    return {"name": "envoy.filters.http.lua",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                             "default_source_code": {"inline_string": source}}}


def variant_filters(args, lua):
    """The HTTP filters of each variant (see the layout in scripts/bench.sh)."""
    return {
        "a": [],
        "b": [wasm_filter("empty", args.empty_wasm, None)],
        "c": [wasm_filter("graylane-c", args.wasm, configs.CONFIG_C)],
        "d": [lua_filter(lua)],
        "e": [wasm_filter("graylane-e", args.wasm, configs.CONFIG_E)],
        "f": [wasm_filter("empty-stripped", args.empty_stripped, None)],
        "g": [wasm_filter("graylane-g", args.alt_wasm, configs.CONFIG_C)],
    }


def routes(answer):
    """x-graylane exact "hdr-3" -> "lane:hdr-3", present -> "lane:other",
    else "base" (bench.sh checks each variant's decisions against these)."""
    return {"name": "bench", "virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": [
        {"match": {"prefix": "/", "headers": [{"name": "x-graylane", "string_match": {"exact": "hdr-3"}}]},
         **answer("lane:hdr-3")},
        {"match": {"prefix": "/", "headers": [{"name": "x-graylane", "present_match": True}]},
         **answer("lane:other")},
        {"match": {"prefix": "/"}, **answer("base")},
    ]}]}


def direct(body):
    return {"direct_response": {"status": 200, "body": {"inline_string": body}}}


def proxy(_body):
    return {"route": {"cluster": "backend"}}


def listener(name, port, filters, route_config):
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "http_filters": filters + [ROUTER],
                    "route_config": route_config}}]}]}


def admin(port):
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def gateway(base, filters):
    """Ports: direct listeners base+0..6, proxy listeners base+10..16, the
    backend base+20, admin base+90."""
    listeners = []
    for i, v in enumerate(VARIANTS):
        listeners.append(listener(f"direct_{v}", base + i, filters[v], routes(direct)))
        listeners.append(listener(f"proxy_{v}", base + 10 + i, filters[v], routes(proxy)))
    backend_address = {"socket_address": {"address": "127.0.0.1", "port_value": base + 20}}
    return {"admin": admin(base + 90),
            "static_resources": {"listeners": listeners, "clusters": [{
                "name": "backend", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": backend_address}}]}]}}]}}


def backend(base):
    return {"admin": admin(base + 91),
            "static_resources": {"listeners": [listener("backend", base + 20, [], routes(direct))]}}


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outdir")
    parser.add_argument("--port-base", type=int, required=True)
    parser.add_argument("--wasm", required=True, help="graylane as shipped: (c) and (e)")
    parser.add_argument("--empty-wasm", required=True, help="the empty filter: (b)")
    parser.add_argument("--empty-stripped", required=True, help="the empty filter, callbacks only: (f)")
    parser.add_argument("--alt-wasm", required=True, help="graylane in another build: (g)")
    args = parser.parse_args()
    out = args.outdir

    configs.write_configs(out)
    lua_path = os.path.join(HERE, "lanes.lua")
    with open(lua_path) as f:
        lua = f.read()
    shutil.copyfile(lua_path, os.path.join(out, "lanes.lua"))
    filters = variant_filters(args, lua)
    # JSON is YAML: Envoy reads these .yaml files as they are.
    write_json(os.path.join(out, "gateway.yaml"), gateway(args.port_base, filters))
    write_json(os.path.join(out, "backend.yaml"), backend(args.port_base))
    # What load.lua sends on every request (x-user-id and x-region it adds).
    with open(os.path.join(out, "request.txt"), "w") as f:
        f.write(f"{configs.METHOD} {configs.PATH}\n")
        f.writelines(f"{name}: {value}\n" for name, value in configs.HEADERS)


if __name__ == "__main__":
    main()
