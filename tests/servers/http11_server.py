"""HTTP/1.1 keep-alive server (thread per connection) for the tests and the benchmark.

Usage: http11_server.py PORT
Routes: /hello -> 200 "hello"; /status/NNN -> that status; /big/N -> N body bytes;
/chunked -> a chunked body; POST anything -> 201 with the body length.
Prints "ready" on stdout once it listens.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits
    # for the client's delayed ACK (40 ms) on every request.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_body(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/status/"):
            self.send_body(int(path.split("/")[2]), b"status\n")
        elif path.startswith("/big/"):
            self.send_body(200, b"x" * int(path.split("/")[2]))
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first ", b"second ", b"third\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_body(200, b"hello\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.send_body(201, b"%d\n" % len(body))


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
