"""An asyncio HTTP service that awaits Redis (redis.asyncio, its pool's
first connection opened at start-up, before the agent starts).

Usage: redis_asyncio_service.py PORT REDIS_PORT
Each GET /req/<marker> awaits asyncio.sleep(0-5 ms) (the handler has
awaited before it calls), then SET and GET of the marker's key, each
awaited, then 200. Prints "ready" once it listens.
"""
import asyncio
import random
import sys

import redis.asyncio as redis

from asyncio_http import serve

client = redis.Redis(host="127.0.0.1", port=int(sys.argv[2]))


async def connect():
    await client.ping()


async def answer(path):
    marker = path.rsplit("/", 1)[-1]
    await asyncio.sleep(random.uniform(0, 0.005))
    await client.set(f"req:{marker}", "value")
    return await client.get(f"req:{marker}") or b""


serve(int(sys.argv[1]), answer, connect)
