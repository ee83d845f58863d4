//! The agent's own health counters, shared by every stage. Loss is counted,
//! never silent: each place that drops something bumps one of these.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use crate::correlation::LinkCounts;

#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub events_read: AtomicU64,
    /// Bytes of those records (headers and payloads).
    pub event_bytes_read: AtomicU64,
    /// Records that did not decode (a kernel/agent version mismatch).
    pub events_undecodable: AtomicU64,
    /// Connections being tracked now.
    pub connections_tracked: AtomicU64,
    /// Connections dropped from the table because it was full or they were idle.
    pub connections_evicted: AtomicU64,
    /// Bytes that could not be parsed (each parse error).
    pub parse_errors: AtomicU64,
    /// Spans built.
    pub spans_produced: AtomicU64,
    /// How spans got their parents (written by the correlation stage).
    pub links: Mutex<LinkCounts>,
    /// Spans written by an exporter.
    pub spans_exported: AtomicU64,
    /// Export attempts that failed.
    pub export_failures: AtomicU64,
}

impl Stats {
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
