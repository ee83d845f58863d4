//! The HTTP/2 parser (frames, HPACK) on arbitrary chunks of both streams,
//! with gaps, and the test for a connection joined midway on each chunk.
//! The client stream starts with the preface when the input's first byte
//! is even (so the fuzzer reaches the frames and header blocks behind
//! it), else the connection is joined midway (tables known in part).
//!
//! Input: as `tracer_fuzz::chunks` reads it. Never a panic, and no
//! exchange ends before it starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_agent::protocols::{
    Stream,
    http2::{Http2Connection, Output, PREFACE, starts_midway},
};
use tracer_fuzz::chunks;

fuzz_target!(|data: &[u8]| {
    let mut conn = Http2Connection::new();
    let mut out = Vec::new();
    if data.first().is_some_and(|first| first % 2 == 0) {
        conn.feed(Stream::Requests, PREFACE, 0, 0u32, &mut out);
    }
    for (stream, bytes, gap, chunk) in chunks(data) {
        let _ = starts_midway(bytes);
        conn.feed(stream, bytes, gap, chunk + 1, &mut out);
    }
    conn.close(&mut out);
    for output in out {
        if let Output::Exchange(exchange) = output {
            assert!(exchange.request_start <= exchange.response_end);
        }
    }
});
