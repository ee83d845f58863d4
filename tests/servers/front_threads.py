"""A front service on Python threads for the accuracy benchmark's matrix.

Usage: front_threads.py PORT AUX_PORT LEAF_PORT; FANOUT=2 for two parallel
leaf calls (a concurrent.futures thread pool: the request is handed to other
threads). Every GET sleeps 0-5 ms, calls AUX_PORT, then LEAF_PORT, with the
same path, on keep-alive connections kept per thread; then answers 200.
Prints "ready" once listening.
"""
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from thread_http import Handler, call, serve

PORT, AUX, LEAF = (int(a) for a in sys.argv[1:4])
FANOUT = int(os.environ.get("FANOUT", "1"))
pool = ThreadPoolExecutor(max_workers=64)


def call_path(port, path):
    return call("127.0.0.1", port, path)[1]


class FrontHandler(Handler):
    def do_GET(self):
        time.sleep(random.uniform(0, 0.005))
        call_path(AUX, self.path)
        if FANOUT == 1:
            call_path(LEAF, self.path)
        else:
            list(pool.map(lambda _: call_path(LEAF, self.path), range(FANOUT)))
        self.answer(b"front\n")


serve(PORT, FrontHandler)
