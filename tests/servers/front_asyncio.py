"""A front service on plain asyncio streams for the accuracy benchmark's matrix.

Usage: front_asyncio.py PORT AUX_PORT LEAF_PORT; FANOUT=2 for two parallel
leaf calls (asyncio.gather). Every GET awaits asyncio.sleep(0-5 ms), awaits a
call to AUX_PORT, then to LEAF_PORT, with the same path, over a small pool of
keep-alive asyncio stream connections per port; then answers 200. Prints
"ready" once listening.
"""
import asyncio
import os
import random
import sys

from asyncio_http import read_message, serve

PORT, AUX, LEAF = (int(a) for a in sys.argv[1:4])
FANOUT = int(os.environ.get("FANOUT", "1"))
idle = {}  # port -> list of (reader, writer)


async def call(port, path):
    pool = idle.setdefault(port, [])
    if pool:
        reader, writer = pool.pop()
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    _, body = await read_message(reader)
    pool.append((reader, writer))
    return body


async def answer(path):
    await asyncio.sleep(random.uniform(0, 0.005))
    await call(AUX, path)
    await asyncio.gather(*(call(LEAF, path) for _ in range(FANOUT)))
    return b"front\n"


serve(PORT, answer)
