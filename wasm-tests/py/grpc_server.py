"""A gRPC server for the end-to-end tests (grpcio, generic handlers: no
protoc step).

    grpc_server.py NAME PORT

Serves every unary method; the response (raw bytes) is JSON
{"backend": NAME, "method": M, "metadata": [[key, value], ...]}: the
metadata this server received, as it received it. It also answers
/grpc.health.v1.Health/Check with SERVING (for Envoy's gRPC health check),
and sends the initial metadata "x-backend: NAME". Prints "READY" once it
serves.
"""

import json
import sys
from concurrent import futures

import grpc

# grpc.health.v1.HealthCheckResponse{status: SERVING}: field 1, varint 1.
SERVING = b"\x08\x01"


class Handler(grpc.GenericRpcHandler):
    def __init__(self, name):
        self.name = name

    def service(self, details):
        method = details.method
        if method == "/grpc.health.v1.Health/Check":
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: SERVING)

        def call(request, context):
            metadata = [[k, v if isinstance(v, str) else v.hex()] for k, v in context.invocation_metadata()]
            context.send_initial_metadata((("x-backend", self.name),))
            body = {"backend": self.name, "method": method, "metadata": metadata}
            return json.dumps(body).encode()

        return grpc.unary_unary_rpc_method_handler(call)


def main():
    name, port = sys.argv[1], int(sys.argv[2])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[Handler(name)])
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    print("READY", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
