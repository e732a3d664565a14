"""An OTLP/HTTP trace sink in a process of its own, for bench/tracing.py.

    python bench/_otlp_sink.py      prints its port, then serves until stdin closes

POST /v1/traces: the body is read, counted and discarded (decoding it is a collector's
cost, not the worker's), answered 200 with an empty ExportTraceServiceResponse, which
is zero bytes of protobuf. GET /stats: {"requests": n, "bytes": n} as JSON. Its own
process so that it takes no GIL from the benchmark's client and its CPU is measured
apart from the worker's.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"requests": 0, "bytes": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector offers

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with LOCK:
            STATS["requests"] += 1
            STATS["bytes"] += len(body)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with LOCK:
            data = json.dumps(STATS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # quiet
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    server.shutdown()


if __name__ == "__main__":
    main()
