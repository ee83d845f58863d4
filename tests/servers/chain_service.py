"""One hop of a service chain (thread per connection), for the trace tests.

Usage: chain_service.py PORT [NEXT_PORT]
Environment: BIND (listen address, default 127.0.0.1), NEXT_HOST (where
NEXT_PORT is, default 127.0.0.1).
Every GET waits 0-5 ms (services do not all take the same time), calls
NEXT_PORT with the same path when given (on a keep-alive connection kept per
handler thread), then answers 200. The path carries the test's marker; the
agent must not need it. Prints "ready" once it listens.
"""
import http.client
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NEXT = int(sys.argv[2]) if len(sys.argv) > 2 else None
NEXT_HOST = os.environ.get("NEXT_HOST", "127.0.0.1")
local = threading.local()


def call_next(path):
    for attempt in range(2):
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(NEXT_HOST, NEXT)
        try:
            local.conn.request("GET", path)
            response = local.conn.getresponse()
            return response.status, response.read()
        except (ConnectionError, http.client.HTTPException):
            # The kept connection was closed by the other side: open another.
            local.conn.close()
            local.conn = None
    raise RuntimeError("next hop unreachable")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(random.uniform(0, 0.005))
        body = b"leaf\n"
        if NEXT is not None:
            status, body = call_next(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = ThreadingHTTPServer((os.environ.get("BIND", "127.0.0.1"), int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
