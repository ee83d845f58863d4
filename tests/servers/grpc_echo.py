"""A gRPC server and client (grpcio, plaintext h2c), for the HTTP/2 tests.

Usage: grpc_echo.py serve PORT       prints "ready" once it listens
       grpc_echo.py call PORT        makes the calls below, then exits
       grpc_echo.py call-later PORT  one Say, "ready", then on a line from
                                     stdin three more on the same connection
Service demo.Echo: Say (unary, echoes), Count (server streaming, three
answers), Fail (unary, NOT_FOUND); service demo.Any echoes any method name
(a test names a call after the request it serves). Messages are raw bytes:
no generated code.
The client makes one Say, one Count and one Fail, then 8 Say calls from 8
threads at once on the same channel (one connection: concurrent streams).
"""
import sys
import threading
from concurrent import futures

import grpc

OPTIONS = [("grpc.enable_http_proxy", 0)]


def serve(port):
    def say(request, context):
        return request

    def count(request, context):
        for i in range(3):
            yield request + str(i).encode()

    def fail(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handler = grpc.method_handlers_generic_handler(
        "demo.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    class AnyMethod(grpc.GenericRpcHandler):
        def service(self, details):
            if details.method.startswith("/demo.Any/"):
                return grpc.unary_unary_rpc_method_handler(say)
            return None

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    server.add_generic_rpc_handlers((handler, AnyMethod()))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(port):
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
        say = channel.unary_unary("/demo.Echo/Say")
        say(b"alone", timeout=30)
        answers = list(channel.unary_stream("/demo.Echo/Count")(b"n", timeout=30))
        assert len(answers) == 3, answers
        try:
            channel.unary_unary("/demo.Echo/Fail")(b"x", timeout=30)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
        else:
            raise AssertionError("Fail did not fail")
        threads = [
            threading.Thread(target=lambda i=i: say(f"hello {i}".encode(), timeout=30))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def call_later(port):
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
        say = channel.unary_unary("/demo.Echo/Say")
        say(b"before", timeout=30)
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(3):
            say(f"later {i}".encode(), timeout=30)


{"serve": serve, "call": call, "call-later": call_later}[sys.argv[1]](int(sys.argv[2]))
