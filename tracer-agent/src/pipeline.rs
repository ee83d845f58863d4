//! The agent's stages wired together, in one place:
//!
//! ```text
//! ring buffer ─► events::read_events ─► process (connections → http1 → spans) ─► export
//!                      batches of events          batches of spans             ├► exporters
//!                                                                              ├► metrics
//!                                                                              └► viewer store
//! ```
//!
//! Each stage is a task that owns its state; bounded channels carry batches
//! between them. Shutdown: the reader drains the ring buffer and stops, and
//! each later stage finishes what it received before it ends, so every span
//! already seen is exported.

use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::sync::{mpsc, watch};

use crate::{
    clock::Clock,
    connections::{ConnectionTable, Handled, Outcome},
    correlation::Correlator,
    events::{self, Event},
    export::{Exporter, is_own_export},
    loader::IgnoredSockets,
    metrics::Metrics,
    process::ProcessCache,
    spans::{Span, SpanBuilder},
    stats::Stats,
    viewer::store::TraceStore,
};

pub struct PipelineOptions {
    pub max_connections: usize,
    /// Connections silent for this long are ended (their state freed).
    pub idle_timeout: Duration,
    pub exporters: Vec<Box<dyn Exporter>>,
    /// Where the request-duration histograms are kept (none: no endpoint).
    pub metrics: Option<Arc<Metrics>>,
    /// The viewer's recent traces (none: no endpoint).
    pub store: Option<Arc<TraceStore>>,
}

/// Batches in flight between two stages before the sender waits.
const CHANNEL_BATCHES: usize = 64;
/// How often idle connections are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until `shutdown` turns true, then drains and returns.
pub async fn run(
    ring: RingBuf<MapData>,
    ignored_sockets: IgnoredSockets,
    options: PipelineOptions,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    let (event_tx, event_rx) = mpsc::channel(CHANNEL_BATCHES);
    let (span_tx, span_rx) = mpsc::channel(CHANNEL_BATCHES);
    let reader = {
        let stats = stats.clone();
        tokio::spawn(async move { events::read_events(ring, event_tx, shutdown, &stats).await })
    };
    let processor = tokio::spawn(process(
        event_rx,
        span_tx,
        ignored_sockets,
        ConnectionTable::new(options.max_connections),
        options.idle_timeout,
        stats.clone(),
    ));
    let exporter = tokio::spawn(export(
        span_rx,
        options.exporters,
        options.metrics,
        options.store,
    ));
    reader.await??;
    processor.await?;
    exporter.await?;
    Ok(())
}

async fn process(
    mut events: mpsc::Receiver<Vec<Event>>,
    spans: mpsc::Sender<Vec<Span>>,
    mut ignored_sockets: IgnoredSockets,
    mut table: ConnectionTable,
    idle_timeout: Duration,
    stats: Arc<Stats>,
) {
    let clock = Clock::now();
    let mut builder = SpanBuilder::new(clock, ProcessCache::default());
    let mut correlator = Correlator::new();
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut latest_ns = 0u64;
    loop {
        let mut handled = Handled::default();
        tokio::select! {
            batch = events.recv() => {
                let Some(batch) = batch else { break };
                for event in batch {
                    latest_ns = latest_ns.max(event.end_ns);
                    table.handle(event, &mut handled);
                }
            }
            _ = sweep.tick() => {
                let cutoff = latest_ns.saturating_sub(idle_timeout.as_nanos() as u64);
                table.close_idle(cutoff, &mut handled);
            }
        }
        stats.set(&stats.connections_tracked, table.len() as u64);
        stats.add(&stats.connections_evicted, handled.evicted);
        stats.add(&stats.parse_errors, handled.parse_errors.len() as u64);
        for error in &handled.parse_errors {
            tracing::debug!("parse error: {error}");
        }
        for sock_id in &handled.not_parsed {
            if let Err(e) = ignored_sockets.ignore(*sock_id) {
                tracing::debug!("cannot tell the kernel to skip a socket: {e}");
            }
        }
        // In event order: a socket address closed and reused in one batch
        // must not mix the two connections.
        let mut batch: Vec<Span> = Vec::new();
        for outcome in &handled.outcomes {
            match outcome {
                Outcome::RequestStarted(started) => {
                    builder.request_started(started);
                    correlator.request_started(started);
                }
                Outcome::ExchangeCompleted(exchange) => {
                    let ids = correlator.exchange_completed(exchange);
                    let span = builder.build(exchange, ids);
                    if is_own_export(&span) {
                        stats.add(&stats.own_export_spans_skipped, 1);
                    } else {
                        batch.push(span);
                    }
                }
                Outcome::Closed(sock_id) => correlator.connection_closed(*sock_id),
            }
        }
        if let Ok(mut links) = stats.links.lock() {
            *links = correlator.links;
        }
        if batch.is_empty() {
            continue;
        }
        stats.add(&stats.spans_produced, batch.len() as u64);
        if spans.send(batch).await.is_err() {
            return;
        }
    }
    let waiting = table.pending_requests();
    if waiting > 0 {
        tracing::info!(
            "{waiting} requests were still waiting for their response at exit; they are not reported"
        );
    }
}

async fn export(
    mut spans: mpsc::Receiver<Vec<Span>>,
    mut exporters: Vec<Box<dyn Exporter>>,
    metrics: Option<Arc<Metrics>>,
    store: Option<Arc<TraceStore>>,
) {
    while let Some(batch) = spans.recv().await {
        for exporter in exporters.iter_mut() {
            exporter.export(&batch);
        }
        if let Some(metrics) = &metrics {
            metrics.record(&batch);
        }
        if let Some(store) = &store {
            store.add(&batch);
        }
    }
    for exporter in exporters.iter_mut() {
        exporter.shutdown().await;
    }
}
