"""A raw HTTP/2 (h2c, prior knowledge) client for the end-to-end tests.

Reads JSON from stdin: {"port": P, "requests": [[[name, value], ...], ...]}.
Each request is the exact list of header fields of one HEADERS frame,
pseudo-headers included, in order; a name given twice is sent as two fields
(HTTP/2 cookie crumbs). All requests go on one connection, one stream each,
one after the other. Prints JSON: [{"status": S, "headers": [[n, v], ...],
"body": TEXT}, ...].
"""

import json
import socket
import sys

import h2.config
import h2.connection
import h2.events


def main():
    job = json.load(sys.stdin)
    sock = socket.create_connection(("127.0.0.1", job["port"]), timeout=20)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = []
    for fields in job["requests"]:
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(n, v) for n, v in fields], end_stream=True)
        sock.sendall(conn.data_to_send())
        headers, body, done = [], b"", False
        while not done:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("connection closed before the response ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    headers = [[n, v] for n, v in event.headers]
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    done = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise SystemExit(f"stream reset: error code {event.error_code}")
            sock.sendall(conn.data_to_send())
        status = next((int(v) for n, v in headers if n == ":status"), 0)
        out.append({"status": status, "headers": headers, "body": body.decode("utf-8", "replace")})
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
