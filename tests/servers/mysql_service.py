"""An HTTP service (thread per connection) that queries MariaDB for each
request through one mysql-connector connection opened at start-up, before
the agent starts, shared under a lock; its cursor prepares statements on
the server (COM_STMT_PREPARE, then COM_STMT_EXECUTE).

Usage: mysql_service.py PORT MARIADB_PORT
GET /req/<marker>: INSERT a row for the marker, SELECT its count, 200.
Prints "ready" once it listens.
"""
import sys
import threading

import mysql.connector

from thread_http import Handler, serve

connection = mysql.connector.connect(
    host="127.0.0.1", port=int(sys.argv[2]), user="root", database="shop",
    autocommit=True, use_pure=True,
)
connection.cursor().execute("CREATE TABLE IF NOT EXISTS visits (marker VARCHAR(32))")
cursor = connection.cursor(prepared=True)
lock = threading.Lock()


class MysqlHandler(Handler):
    def do_GET(self):
        marker = self.path.rsplit("/", 1)[-1]
        with lock:
            cursor.execute("INSERT INTO visits (marker) VALUES (%s)", (marker,))
            cursor.execute("SELECT COUNT(*) FROM visits WHERE marker = %s", (marker,))
            (count,) = cursor.fetchone()
        self.answer(str(count).encode())


serve(int(sys.argv[1]), MysqlHandler)
