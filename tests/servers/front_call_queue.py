"""An asyncio streams service whose calls go through a library's own writer
task (`site-packages/call_queue.py`).

Usage: front_call_queue.py PORT LEAF_PORT. Every GET calls LEAF_PORT with
the same path through the library, then answers 200; a GET whose path
ends with /slow waits 1 s more first (it stays open while other requests'
calls are written). Prints "ready" once listening.
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "site-packages"))

from asyncio_http import serve  # noqa: E402
from call_queue import CallQueue  # noqa: E402

PORT, LEAF = (int(a) for a in sys.argv[1:3])
calls = CallQueue(LEAF)


async def answer(path):
    await calls.get(path)
    if path.endswith("/slow"):
        await asyncio.sleep(1.0)
    return b"front\n"


serve(PORT, answer)
