"""HTTP/1.1 pieces shared by the thread-per-connection test services.

`call(host, port, path, headers)` GETs over a keep-alive connection kept per
thread and per peer (one closed by the other side is reopened once);
`Handler` is a quiet HTTP/1.1 handler with `answer(body, status)`; `serve(port,
handler)` runs a ThreadingHTTPServer and prints "ready" once it listens.
"""
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_local = threading.local()


def call(host, port, path, headers=None):
    connections = _local.__dict__.setdefault("connections", {})
    peer = (host, port)
    for _ in range(2):
        if peer not in connections:
            connections[peer] = http.client.HTTPConnection(host, port)
        try:
            connections[peer].request("GET", path, headers=headers or {})
            response = connections[peer].getresponse()
            return response.status, response.read()
        except (ConnectionError, http.client.HTTPException):
            connections.pop(peer).close()
    raise RuntimeError(f"{host}:{port} unreachable")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port, handler, bind="127.0.0.1"):
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
