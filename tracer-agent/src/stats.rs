//! The agent's own health counters, shared by every stage. Loss is counted,
//! never silent: each place that drops something bumps one of these.

use std::sync::{
    Arc, Mutex,
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
    /// Server spans of the agent's own OTLP exports (a collector on this
    /// node), skipped so that exports do not trace themselves.
    pub own_export_spans_skipped: AtomicU64,
    /// How spans got their parents (written by the correlation stage).
    pub links: Mutex<LinkCounts>,
    /// What each exporter did with them, by exporter name.
    exporters: Mutex<Vec<(&'static str, Arc<ExporterStats>)>>,
}

/// One exporter's outcomes; the exporter itself counts them, since one that
/// sends in the background knows only later whether a batch arrived.
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// Spans the destination accepted.
    pub spans_exported: AtomicU64,
    /// Writes or send attempts that failed (a retried batch counts each try).
    pub failures: AtomicU64,
    /// Spans given up: queue full, rejected by the backend, or still queued
    /// when the agent's shutdown time ran out.
    pub spans_dropped: AtomicU64,
    /// Spans waiting to be sent now.
    pub queued: AtomicU64,
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

    /// The counters of the exporter named `name`, made on first use.
    pub fn exporter(&self, name: &'static str) -> Arc<ExporterStats> {
        let mut exporters = self.exporters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, stats)) = exporters.iter().find(|(n, _)| *n == name) {
            return stats.clone();
        }
        let stats = Arc::new(ExporterStats::default());
        exporters.push((name, stats.clone()));
        stats
    }

    pub fn exporters(&self) -> Vec<(&'static str, Arc<ExporterStats>)> {
        self.exporters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
