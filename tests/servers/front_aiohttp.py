"""A front service on aiohttp (asyncio) for the accuracy benchmark's matrix.

Usage: front_aiohttp.py PORT AUX_PORT LEAF_PORT (run with a Python that has
aiohttp); FANOUT=2 for two parallel leaf calls (asyncio.gather). Every GET
awaits asyncio.sleep(0-5 ms), awaits a call to AUX_PORT, then to LEAF_PORT,
with the same path, through one aiohttp ClientSession (keep-alive pool);
then answers 200. Prints "ready" once listening.
"""
import asyncio
import os
import random
import sys

from aiohttp import ClientSession, web

PORT, AUX, LEAF = (int(a) for a in sys.argv[1:4])
FANOUT = int(os.environ.get("FANOUT", "1"))


async def call(session, port, path):
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        await response.read()


async def handle(request):
    session = request.app["session"]
    await asyncio.sleep(random.uniform(0, 0.005))
    await call(session, AUX, request.path)
    await asyncio.gather(*(call(session, LEAF, request.path) for _ in range(FANOUT)))
    return web.Response(text="front\n")


async def main():
    app = web.Application()
    app["session"] = ClientSession()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
