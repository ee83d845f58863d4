"""One hop of a service chain (thread per connection), for the trace tests.

Usage: chain_service.py PORT [NEXT_PORT]
Environment: BIND (listen address, default 127.0.0.1), NEXT_HOST (where
NEXT_PORT is, default 127.0.0.1).
Every GET waits 0-5 ms (services do not all take the same time), calls
NEXT_PORT with the same path when given (on a keep-alive connection kept per
handler thread), then answers 200. The path carries the test's marker; the
agent must not need it. Prints "ready" once it listens.
"""
import os
import random
import sys
import time

from thread_http import Handler, call, serve

NEXT = int(sys.argv[2]) if len(sys.argv) > 2 else None
NEXT_HOST = os.environ.get("NEXT_HOST", "127.0.0.1")


class ChainHandler(Handler):
    def do_GET(self):
        time.sleep(random.uniform(0, 0.005))
        body = b"leaf\n"
        if NEXT is not None:
            _, body = call(NEXT_HOST, NEXT, self.path)
        self.answer(body)


serve(int(sys.argv[1]), ChainHandler, os.environ.get("BIND", "127.0.0.1"))
