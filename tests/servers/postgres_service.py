"""An HTTP service (thread per connection) that queries PostgreSQL for
each request through one psycopg 3 connection opened at start-up, before
the agent starts, shared under a lock. psycopg sends parameters with the
extended protocol (Parse/Bind/Execute), and prepares a named statement
once a query has run five times.

Usage: postgres_service.py PORT POSTGRES_PORT
GET /req/<marker>: INSERT a row for the marker, SELECT its count, 200.
Prints "ready" once it listens.
"""
import sys
import threading

import psycopg

from thread_http import Handler, serve

connection = psycopg.connect(
    f"host=127.0.0.1 port={sys.argv[2]} user=postgres dbname=postgres", autocommit=True
)
connection.execute("CREATE TABLE IF NOT EXISTS visits (marker text)")
lock = threading.Lock()


class PostgresHandler(Handler):
    def do_GET(self):
        marker = self.path.rsplit("/", 1)[-1]
        with lock:
            connection.execute("INSERT INTO visits (marker) VALUES (%s)", (marker,))
            (count,) = connection.execute(
                "SELECT count(*) FROM visits WHERE marker = %s", (marker,)
            ).fetchone()
        self.answer(str(count).encode())


serve(int(sys.argv[1]), PostgresHandler)
