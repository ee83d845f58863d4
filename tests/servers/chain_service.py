"""One hop of a service chain (thread per connection), for the trace tests.

Usage: chain_service.py PORT [NEXT_PORT]
Environment: BIND (listen address, default 127.0.0.1), NEXT_HOST (where
NEXT_PORT is, default 127.0.0.1); SLOW_WHEN / SLOW_MS: a GET whose path
contains SLOW_WHEN takes SLOW_MS (default 60) ms more; FAIL_WHEN: a GET
whose path contains it answers 500 at once.
Every GET waits 0-5 ms (services do not all take the same time), calls
NEXT_PORT with the same path when given (on a keep-alive connection kept per
handler thread), then answers 200, or 502 when the next hop failed. The
path carries the test's marker; the agent must not need it. Prints "ready"
once it listens.
"""
import os
import random
import sys
import time

from thread_http import Handler, call, serve

NEXT = int(sys.argv[2]) if len(sys.argv) > 2 else None
NEXT_HOST = os.environ.get("NEXT_HOST", "127.0.0.1")
SLOW_WHEN = os.environ.get("SLOW_WHEN")
SLOW_MS = float(os.environ.get("SLOW_MS", "60"))
FAIL_WHEN = os.environ.get("FAIL_WHEN")


class ChainHandler(Handler):
    def do_GET(self):
        if FAIL_WHEN and FAIL_WHEN in self.path:
            self.answer(b"failed\n", 500)
            return
        time.sleep(random.uniform(0, 0.005))
        if SLOW_WHEN and SLOW_WHEN in self.path:
            time.sleep(SLOW_MS / 1000)
        status, body = 200, b"leaf\n"
        if NEXT is not None:
            status, body = call(NEXT_HOST, NEXT, self.path)
        self.answer(body, 502 if status >= 500 else 200)


serve(int(sys.argv[1]), ChainHandler, os.environ.get("BIND", "127.0.0.1"))
