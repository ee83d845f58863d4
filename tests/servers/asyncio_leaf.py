"""A Python asyncio HTTP/1.1 leaf service (one event loop), for the trace tests.

Usage: asyncio_leaf.py PORT. Keep-alive; each GET waits a random 0-5 ms
(asyncio.sleep) and answers 200. Prints "ready" once it listens.
"""
import asyncio
import random
import sys

from asyncio_http import serve


async def answer(_path):
    await asyncio.sleep(random.uniform(0, 0.005))
    return b"leaf\n"


serve(int(sys.argv[1]), answer)
