#!/usr/bin/env python3
"""Keeps only the proxy-wasm callbacks a filter implements in a .wasm.

The proxy-wasm host looks up every `proxy_on_*` export by name; one that is
missing is never called (the host continues without entering the VM). The
Rust SDK exports all of them, so every stream event would enter the VM for
nothing; `scripts/bench.sh` uses this on its empty SDK filter, and
`scripts/bench/sdk-compare.sh` on graylane built on the SDK
(scripts/bench/sdk-filter, which implements the same callbacks as the
shipped filter). graylane implements the ABI itself (src/filter/mod.rs)
and exports exactly KEEP: here the script is a guard that fails when one
of those is missing and drops any export a dependency might add.

KEEP is a fixed list, not read from the code: it must list every callback
graylane exports, plus memory allocation and the module's start. An SDK
build that overrides a callback not listed here would lose it silently;
wasm-tests/tests/callbacks.rs checks in Envoy that every callback kept is
called.

usage: strip-exports.py IN.wasm OUT.wasm
"""
import sys

KEEP = {
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_request_headers",
    "proxy_on_response_headers",
    "proxy_on_delete",
    "proxy_on_tick",
}


def leb(data, i):
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def enc(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = open(src, "rb").read()
    if data[:4] != b"\0asm":
        sys.exit(f"{src}: not a wasm module")
    out = bytearray(data[:8])
    i = 8
    kept, dropped = [], []
    while i < len(data):
        sid = data[i]
        size, body = leb(data, i + 1)
        end = body + size
        if sid != 7:
            out += data[i:end]
            i = end
            continue
        count, j = leb(data, body)
        entries = []
        for _ in range(count):
            start = j
            n, j = leb(data, j)
            name = data[j:j + n].decode()
            j += n + 1  # name, kind
            _, j = leb(data, j)  # index
            (kept if name in KEEP else dropped).append(name)
            if name in KEEP:
                entries.append(data[start:j])
        payload = enc(len(entries)) + b"".join(entries)
        out += bytes([7]) + enc(len(payload)) + payload
        i = end
    missing = KEEP - set(kept)
    if missing - {"proxy_on_response_headers"}:
        sys.exit(f"{src}: expected exports missing: {sorted(missing)}")
    open(dst, "wb").write(out)
    print(f"exports kept: {len(kept)}, dropped: {len(dropped)}")


if __name__ == "__main__":
    main()
