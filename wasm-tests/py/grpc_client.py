"""A gRPC client for the end-to-end tests (grpcio, raw bytes: no protoc).

Reads JSON from stdin:
  {"port": P, "authority": A (optional), "method": M,
   "calls": [[[key, value], ...], ...],          # the metadata of each call
   "repeat_for": SECONDS (optional), "stop_file": PATH (optional),
   "pause": SECONDS (optional)}
Makes the calls in order on one channel (with "repeat_for" or "stop_file",
cycles through them until that many seconds have passed or that file
exists, whichever comes first, "pause" seconds apart; both are checked
before each call, so the call under way when the file appears is finished
and reported). Prints
JSON: [{"t": seconds since start, "code": "OK", "details": ...,
"initial_metadata": [[k, v], ...], "trailing_metadata": [...],
"response": <the server's JSON or null>}, ...].
"""

import json
import os
import sys
import time

import grpc


def pairs(md):
    return [[k, v if isinstance(v, str) else v.hex()] for k, v in (md or ())]


def main():
    job = json.load(sys.stdin)
    options = []
    if job.get("authority"):
        options.append(("grpc.default_authority", job["authority"]))
    channel = grpc.insecure_channel(f"127.0.0.1:{job['port']}", options=options)
    call = channel.unary_unary(job["method"])
    out, start = [], time.monotonic()
    repeat_for, pause = job.get("repeat_for"), job.get("pause", 0)
    stop_file = job.get("stop_file")
    i = 0
    while True:
        if repeat_for is None and stop_file is None and i >= len(job["calls"]):
            break
        if repeat_for is not None and time.monotonic() - start >= repeat_for:
            break
        if stop_file is not None and os.path.exists(stop_file):
            break
        metadata = [tuple(m) for m in job["calls"][i % len(job["calls"])]]
        t = time.monotonic() - start
        try:
            response, rpc = call.with_call(b"{}", metadata=metadata, timeout=10)
            code, details = rpc.code(), rpc.details()
            body = json.loads(response)
        except grpc.RpcError as e:
            rpc, code, details, body = e, e.code(), e.details(), None
        out.append({
            "t": t,
            "code": code.name,
            "details": details,
            "initial_metadata": pairs(rpc.initial_metadata()),
            "trailing_metadata": pairs(rpc.trailing_metadata()),
            "response": body,
        })
        i += 1
        if pause:
            time.sleep(pause)
    channel.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
