"""A Python asyncio HTTP/1.1 leaf service (one event loop), for the trace tests.

Usage: asyncio_leaf.py PORT. Keep-alive; each GET waits a random 0-5 ms
(asyncio.sleep) and answers 200. Prints "ready" once it listens.
"""
import asyncio
import random
import sys


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(random.uniform(0, 0.005))
            body = b"leaf\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
