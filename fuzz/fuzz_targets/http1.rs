//! The HTTP/1.x parser on arbitrary chunks of both streams, with gaps.
//!
//! Input: as `tracer_fuzz::chunks` reads it. Never a panic, and no
//! exchange ends before it starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_agent::protocols::http1::{Http1Connection, Output};
use tracer_fuzz::chunks;

fuzz_target!(|data: &[u8]| {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    for (stream, bytes, gap, chunk) in chunks(data) {
        conn.feed(stream, bytes, gap, chunk, &mut out);
    }
    conn.close(&mut out);
    for output in out {
        if let Output::Exchange(exchange) = output {
            assert!(exchange.request_start <= exchange.response_end);
        }
    }
});
