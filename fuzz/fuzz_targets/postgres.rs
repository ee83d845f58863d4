//! The PostgreSQL parser (start-up, simple and extended queries, errors,
//! COPY) on arbitrary chunks of both streams, with gaps.
//!
//! Input: as `tracer_fuzz::chunks` reads it. Never a panic, and no
//! exchange ends before it starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_agent::protocols::{db::Output, postgres::PostgresConnection};
use tracer_fuzz::feed_database;

fuzz_target!(|data: &[u8]| {
    for output in feed_database(&mut PostgresConnection::default(), data) {
        if let Output::Exchange(exchange) = output {
            assert!(exchange.request_start <= exchange.response_end);
        }
    }
});
