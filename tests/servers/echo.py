"""A protocol the agent does not parse (length-prefixed binary frames
echoed back), for the tests.

Usage: echo.py server PORT          prints "ready", echoes every connection
       echo.py client PORT COUNT    one connection, COUNT round trips, prints "done"
The client pauses 300 ms after its tenth round trip, as a long-lived
connection (a database pool, a TLS session) would be idle at times.
"""
import socket
import sys
import threading
import time

FRAME = b"\x00\x00\x00\x0cECHO\x01\x02\x03\x04\x05\x06\x07\x08"


def serve(port):
    listener = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def echo(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def client(port, count):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for i in range(count):
            if i == 10:
                time.sleep(0.3)
            conn.sendall(FRAME)
            received = b""
            while len(received) < len(FRAME):
                received += conn.recv(4096)
    print("done", flush=True)


if sys.argv[1] == "server":
    serve(int(sys.argv[2]))
else:
    client(int(sys.argv[2]), int(sys.argv[3]))
