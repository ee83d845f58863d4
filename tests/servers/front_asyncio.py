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

PORT, AUX, LEAF = (int(a) for a in sys.argv[1:4])
FANOUT = int(os.environ.get("FANOUT", "1"))
idle = {}  # port -> list of (reader, writer)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


async def call(port, path):
    pool = idle.setdefault(port, [])
    if pool:
        reader, writer = pool.pop()
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    body = await read_response(reader)
    pool.append((reader, writer))
    return body


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            await asyncio.sleep(random.uniform(0, 0.005))
            await call(AUX, path)
            await asyncio.gather(*(call(LEAF, path) for _ in range(FANOUT)))
            body = b"front\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
