//! The HTTP/2 parser (frames, HPACK) on arbitrary chunks of both streams,
//! with gaps. The client stream starts with the preface, so the fuzzer
//! reaches the frames and header blocks behind it.
//!
//! Input: as `tracer_fuzz::chunks` reads it. Never a panic, and no
//! exchange ends before it starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_agent::protocols::{
    Stream,
    http2::{Http2Connection, Output, PREFACE},
};
use tracer_fuzz::chunks;

fuzz_target!(|data: &[u8]| {
    let mut conn = Http2Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, PREFACE, 0, 0u32, &mut out);
    for (stream, bytes, gap, chunk) in chunks(data) {
        conn.feed(stream, bytes, gap, chunk + 1, &mut out);
    }
    conn.close(&mut out);
    for output in out {
        if let Output::Exchange(exchange) = output {
            assert!(exchange.request_start <= exchange.response_end);
        }
    }
});
