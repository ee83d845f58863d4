//! The PostgreSQL parser (start-up, simple and extended queries, errors,
//! COPY) on arbitrary chunks of both streams, with gaps.
//!
//! Input: records of `[control][length][length bytes]`, as for `http1`.
//! Never a panic, and no exchange ends before it starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_agent::protocols::{
    Stream,
    postgres::{Output, PostgresConnection},
};

fuzz_target!(|data: &[u8]| {
    let mut conn = PostgresConnection::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut chunk = 0u32;
    while let [control, length, tail @ ..] = rest {
        let take = (*length as usize).min(tail.len());
        let stream = if control & 1 == 0 {
            Stream::Requests
        } else {
            Stream::Responses
        };
        let gap = if control & 2 != 0 {
            u64::from(control >> 2) * 37
        } else {
            0
        };
        conn.feed(stream, &tail[..take], gap, chunk, &mut out);
        chunk += 1;
        rest = &tail[take..];
    }
    conn.close(&mut out);
    for output in out {
        if let Output::Exchange(exchange) = output {
            assert!(exchange.request_start <= exchange.response_end);
        }
    }
});
