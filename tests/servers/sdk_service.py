"""A service instrumented with the real OpenTelemetry SDK, for the trace test
where the application makes its own client spans.

Usage: sdk_service.py PORT NEXT_PORT IDS_FILE  (run with a Python that has
opentelemetry-sdk). Every GET starts a SERVER span (continuing an inbound
traceparent), waits 0-5 ms, and calls NEXT_PORT with the same path inside a
CLIENT span whose context the SDK's propagator writes into the request as
`traceparent`. Appends one JSON line per call to IDS_FILE: the path and the
client span's trace and span ids, as the SDK made them. Prints "ready".
"""
import json
import random
import sys
import threading
import time

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from thread_http import Handler, call, serve

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("sdk-service")
NEXT = int(sys.argv[2])
IDS = open(sys.argv[3], "a", buffering=1)
ids_lock = threading.Lock()


def call_next(path):
    with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as span:
        headers = {}
        propagate.inject(headers)
        context = span.get_span_context()
        with ids_lock:
            IDS.write(json.dumps({
                "path": path,
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
            }) + "\n")
        return call("127.0.0.1", NEXT, path, headers)[1]


class SdkHandler(Handler):
    def do_GET(self):
        context = propagate.extract(dict(self.headers))
        with tracer.start_as_current_span("GET", context=context, kind=trace.SpanKind.SERVER):
            time.sleep(random.uniform(0, 0.005))
            body = call_next(self.path)
        self.answer(body)


serve(int(sys.argv[1]), SdkHandler)
