"""A server that answers each request with the exact bytes it received.

Usage: recorder.py PORT
HTTP/1.1 keep-alive, requests framed by Content-Length (or none). The
response body is the request, byte for byte, as it arrived: what the test
compares with what the client sent. Prints "ready" once it listens.
"""
import socket
import socketserver
import sys


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            head, _, rest = buffered.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(rest) < length:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                rest += chunk
            received = head + b"\r\n\r\n" + rest[:length]
            buffered = rest[length:]
            self.request.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(received)
                + received
            )


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


with Server(("127.0.0.1", int(sys.argv[1])), Handler) as server:
    print("ready", flush=True)
    server.serve_forever()
