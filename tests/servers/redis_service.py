"""An HTTP service (thread per connection) that calls Redis for each
request, through redis-py's connection pool opened at start-up, before the
agent starts: the pool's connection is older than the agent.

Usage: redis_service.py PORT REDIS_PORT
GET /req/<marker>: SET and GET a key, then INCR and EXPIRE in one pipeline,
then 200. Prints "ready" once it listens.
"""
import sys

import redis

from thread_http import Handler, serve

client = redis.Redis(host="127.0.0.1", port=int(sys.argv[2]))
client.ping()


class RedisHandler(Handler):
    def do_GET(self):
        marker = self.path.rsplit("/", 1)[-1]
        client.set(f"req:{marker}", "value")
        value = client.get(f"req:{marker}")
        with client.pipeline(transaction=False) as pipeline:
            pipeline.incr("hits:total")  # sent as INCRBY hits:total 1
            pipeline.expire("hits:total", 60)
            pipeline.execute()
        self.answer(value)


serve(int(sys.argv[1]), RedisHandler)
