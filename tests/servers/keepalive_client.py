"""Sends GETs over ONE keep-alive connection and reports what it saw.

Usage: keepalive_client.py PORT COUNT [--before N] [--wait] [--busy] [--path P] [--linger S]
--before N: send N requests first; then, with --wait, print "connected" and
wait for a line on stdin before sending COUNT more on the same connection
(so a test can start the agent while the connection is open).
--busy: with --wait, send requests back to back while waiting for the line
(so the agent starts in the middle of a busy connection's traffic).
--linger S: stay S seconds after the report (the agent reads a process's
service name while it runs; see the README's limits).
Prints one JSON line: {"local_port": ..., "durations": [seconds per request], "elapsed": ...}.
"""
import argparse
import http.client
import json
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("count", type=int)
parser.add_argument("--before", type=int, default=0)
parser.add_argument("--wait", action="store_true")
parser.add_argument("--busy", action="store_true")
parser.add_argument("--path", default="/hello")
parser.add_argument("--linger", type=float, default=0)
args = parser.parse_args()

conn = http.client.HTTPConnection("127.0.0.1", args.port)


def get():
    started = time.perf_counter()
    conn.request("GET", args.path)
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - started


for _ in range(args.before):
    get()
if args.wait:
    print("connected", flush=True)
    if args.busy:
        told = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.readline(), told.set()), daemon=True).start()
        while not told.is_set():
            get()
    else:
        sys.stdin.readline()
started = time.perf_counter()
durations = [get() for _ in range(args.count)]
elapsed = time.perf_counter() - started
print(json.dumps({"local_port": conn.sock.getsockname()[1], "durations": durations, "elapsed": elapsed}), flush=True)
time.sleep(args.linger)
