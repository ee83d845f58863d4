"""An HTTPS service (ssl module, a thread per connection) whose handler calls
grpc_echo.py's demo.Any over gRPC, the method named after the path's last
part: an HTTPS hop followed by a gRPC hop, the call saying whose it is.

Usage: https_grpc_service.py PORT GRPC_PORT CERT KEY; prints "ready" once it
listens. Answers every GET with what the gRPC call echoed (the path).
"""
import http.server
import ssl
import sys

import grpc

port, grpc_port, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
channel = grpc.insecure_channel(
    f"127.0.0.1:{grpc_port}", options=[("grpc.enable_http_proxy", 0)]
)
# Connected before the first request, as a service does at start-up: the
# connection a first call opens is written by one of grpcio's own threads.
grpc.channel_ready_future(channel).result(timeout=30)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        method = "/demo.Any/" + self.path.rsplit("/", 1)[-1]
        body = channel.unary_unary(method)(self.path.encode(), timeout=30)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
