"""A front service on Python threads for the accuracy benchmark's matrix.

Usage: front_threads.py PORT AUX_PORT LEAF_PORT; FANOUT=2 for two parallel
leaf calls (a concurrent.futures thread pool: the request is handed to other
threads). Every GET sleeps 0-5 ms, calls AUX_PORT, then LEAF_PORT, with the
same path, on keep-alive connections kept per thread; then answers 200.
Prints "ready" once listening.
"""
import http.client
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, AUX, LEAF = (int(a) for a in sys.argv[1:4])
FANOUT = int(os.environ.get("FANOUT", "1"))
local = threading.local()
pool = ThreadPoolExecutor(max_workers=64)


def call(port, path):
    connections = local.__dict__.setdefault("connections", {})
    for _ in range(2):
        if port not in connections:
            connections[port] = http.client.HTTPConnection("127.0.0.1", port)
        try:
            connections[port].request("GET", path)
            return connections[port].getresponse().read()
        except (ConnectionError, http.client.HTTPException):
            connections.pop(port).close()
    raise RuntimeError("unreachable")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(random.uniform(0, 0.005))
        call(AUX, self.path)
        if FANOUT == 1:
            call(LEAF, self.path)
        else:
            list(pool.map(lambda _: call(LEAF, self.path), range(FANOUT)))
        body = b"front\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
