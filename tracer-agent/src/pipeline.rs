//! The agent's stages wired together, in one place:
//!
//! ```text
//! ring buffer ─► process (events → connections → http1 → spans) ─► export
//!                 each record decoded in place     batches of spans   ├► exporters
//!                 │                                                   ├► metrics (self time)
//!                 └► metrics (durations, as spans are built)          └► viewer store
//! ```
//!
//! Each stage is a task that owns its state; a bounded channel carries
//! batches of spans between them. Events are handled where they lie in the
//! ring buffer, by the task that reads it: no copy, no allocation, no hop per
//! event. Shutdown: the first stage drains the ring buffer and stops, and the
//! export stage finishes what it received before it ends, so every span
//! already seen is exported.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::sync::{mpsc, watch};
use tracer_common::MAX_GO_PROCESSES;

use crate::{
    clock::{self, Clock},
    connections::{ConnectionTable, Handled, Outcome},
    correlation::Correlator,
    events::{EventReader, Wake},
    export::{Exporter, is_own_export},
    loader::IgnoredSockets,
    memory,
    metrics::Metrics,
    process::ProcessCache,
    spans::{Span, SpanBuilder},
    stats::Stats,
    viewer::store::TraceStore,
};

/// The kernel's lists the pipeline keeps: sockets to skip, and processes
/// seen serving or calling (sent once each to `loader::RuntimePrograms`,
/// which follows Go and asyncio ones).
pub struct KernelLists {
    pub ignored_sockets: IgnoredSockets,
    pub processes_seen: std::sync::mpsc::Sender<u32>,
}

pub struct PipelineOptions {
    pub max_connections: usize,
    /// Connections silent for this long are ended (their state freed).
    pub idle_timeout: Duration,
    pub exporters: Vec<Box<dyn Exporter>>,
    /// Where the request-duration histograms are kept (none: no endpoint).
    pub metrics: Option<Arc<Metrics>>,
    /// The viewer's recent traces (none: no endpoint).
    pub store: Option<Arc<TraceStore>>,
    /// Who each process is (read at start-up for those already running).
    pub processes: ProcessCache,
}

/// Batches of spans in flight to the export stage before the first stage
/// waits. A batch is what one read of the ring buffer yielded (up to a few
/// thousand spans under load), so this bounds the memory spans wait in.
const CHANNEL_BATCHES: usize = 4;
/// How long a built span waits before it is sent on. A caller's event can
/// come after its callee's whole subtree: a client preempted between its
/// TLS library's write and the probe at its return, on a busy machine,
/// for tens of milliseconds. Spans of the callee's subtree that wait
/// still get the caller's trace when it comes.
const HOLD: Duration = Duration::from_millis(100);
/// How often idle connections are looked for; connections idle this long
/// also have their parsers freed until their next bytes.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// Parsers freed at once (about 1 KiB each) past which the memory goes
/// back to the system.
const MANY_PARKED: usize = 1024;

/// Runs until `shutdown` turns true, then drains and returns.
pub async fn run(
    ring: RingBuf<MapData>,
    kernel_lists: KernelLists,
    options: PipelineOptions,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    let (span_tx, span_rx) = mpsc::channel(CHANNEL_BATCHES);
    let processor = tokio::spawn(process(
        EventReader::new(ring, shutdown)?,
        BuiltSpans {
            export: span_tx,
            metrics: options.metrics.clone(),
        },
        kernel_lists,
        ConnectionTable::new(options.max_connections),
        options.processes,
        options.idle_timeout,
        stats.clone(),
    ));
    let exporter = tokio::spawn(export(
        span_rx,
        options.exporters,
        options.metrics,
        options.store,
    ));
    processor.await??;
    exporter.await?;
    Ok(())
}

/// Where built spans go: their durations to the metrics at once, while
/// they are still in the cache; the spans themselves, after `HOLD`, to the
/// export stage.
struct BuiltSpans {
    export: mpsc::Sender<Vec<Span>>,
    metrics: Option<Arc<Metrics>>,
}

async fn process(
    mut reader: EventReader,
    built: BuiltSpans,
    KernelLists {
        mut ignored_sockets,
        processes_seen,
    }: KernelLists,
    mut table: ConnectionTable,
    processes: ProcessCache,
    idle_timeout: Duration,
    stats: Arc<Stats>,
) -> std::io::Result<()> {
    let clock = Clock::now();
    let mut builder = SpanBuilder::new(clock, processes);
    let mut correlator = Correlator::new();
    // Processes already sent.
    let mut seen = foldhash::HashSet::default();
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut latest_ns = 0u64;
    let mut stopping = false;
    // Reused from batch to batch: its lists keep their allocations.
    let mut handled = Handled::default();
    // Built spans, by when they were built, held back for `HOLD`.
    let mut held: VecDeque<(Instant, Vec<Span>)> = VecDeque::new();
    while !stopping {
        handled.clear();
        tokio::select! {
            wake = reader.wait() => stopping = matches!(wake?, Wake::Shutdown),
            _ = sweep.tick() => {
                let cutoff = latest_ns.saturating_sub(idle_timeout.as_nanos() as u64);
                table.close_idle(cutoff, &mut handled);
                let now_ns = clock::monotonic_ns();
                let parked = table.park_idle(now_ns.saturating_sub(SWEEP_INTERVAL.as_nanos() as u64));
                if parked >= MANY_PARKED {
                    memory::release_freed();
                }
            }
        }
        reader.drain(&stats, |event| {
            latest_ns = latest_ns.max(event.end_ns);
            table.handle(event, &mut handled);
        });
        stats.set(&stats.connections_tracked, table.len() as u64);
        stats.add(&stats.connections_evicted, handled.evicted);
        stats.add(&stats.parse_errors, handled.parse_errors.len() as u64);
        for error in &handled.parse_errors {
            tracing::debug!("parse error: {error}");
        }
        for socket in &handled.not_parsed {
            if let Err(e) =
                ignored_sockets.ignore(socket.sock_id, (socket.local_port, socket.remote_port))
            {
                tracing::debug!("cannot tell the kernel to skip a socket: {e}");
            }
        }
        let mut batch = build_spans(&handled, &mut builder, &mut correlator, &stats, |pid| {
            if !seen.contains(&pid) {
                // Bounded like the kernel's LRU list: start over when full.
                if seen.len() >= MAX_GO_PROCESSES as usize {
                    seen.clear();
                }
                seen.insert(pid);
                let _ = processes_seen.send(pid);
            }
        });
        if let Ok(mut links) = stats.links.lock() {
            *links = correlator.links;
        }
        if let Some(metrics) = &built.metrics {
            metrics.record_durations(&batch);
        }
        // Spans wait `HOLD` before they leave: an orphan whose caller shows
        // up meanwhile still gets it, and so do the spans under it
        // (`settle`).
        if correlator.retraced() {
            for (_, spans) in held.iter_mut() {
                correlator.settle(spans);
            }
            correlator.settle(&mut batch);
            correlator.settled();
        }
        let now = Instant::now();
        if !batch.is_empty() {
            held.push_back((now, batch));
        }
        while let Some((built_at, _)) = held.front()
            && now.duration_since(*built_at) >= HOLD
        {
            let (_, ready) = held.pop_front().expect("just looked");
            if !send(&built.export, ready, &stats).await {
                return Ok(());
            }
        }
    }
    for (_, ready) in held {
        send(&built.export, ready, &stats).await;
    }
    let waiting = table.pending_requests();
    if waiting > 0 {
        tracing::info!(
            "{waiting} requests were still waiting for their response at exit; they are not reported"
        );
    }
    Ok(())
}

/// The spans of what the connection table made of a batch of events.
/// In event order: a socket address closed and reused in one batch must
/// not mix the two connections. `serving` is told the process of each
/// request started.
pub fn build_spans(
    handled: &Handled,
    builder: &mut SpanBuilder,
    correlator: &mut Correlator,
    stats: &Stats,
    mut serving: impl FnMut(u32),
) -> Vec<Span> {
    let mut batch = Vec::new();
    for outcome in &handled.outcomes {
        match outcome {
            Outcome::RequestStarted(started) => {
                let process = builder.request_started(started);
                serving(process.pid);
                correlator.request_started(started, process.go);
            }
            Outcome::ExchangeCompleted(exchange) => {
                // None: the application's own SDK reports this call.
                let Some(ids) = correlator.exchange_completed(exchange) else {
                    continue;
                };
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
    batch
}

/// Sends a batch of spans on to the export stage (nothing if it is empty);
/// false once that stage is gone.
async fn send(spans: &mpsc::Sender<Vec<Span>>, batch: Vec<Span>, stats: &Stats) -> bool {
    if batch.is_empty() {
        return true;
    }
    stats.add(&stats.spans_produced, batch.len() as u64);
    spans.send(batch).await.is_ok()
}

async fn export(
    mut spans: mpsc::Receiver<Vec<Span>>,
    mut exporters: Vec<Box<dyn Exporter>>,
    metrics: Option<Arc<Metrics>>,
    store: Option<Arc<TraceStore>>,
) {
    while let Some(batch) = spans.recv().await {
        export_batch(batch, &mut exporters, metrics.as_deref(), store.as_deref());
    }
    for exporter in exporters.iter_mut() {
        exporter.shutdown().await;
    }
}

/// The export stage's work on one batch: the exporters, the self-time
/// histograms, then the viewer's store, which keeps the spans.
pub fn export_batch(
    batch: Vec<Span>,
    exporters: &mut [Box<dyn Exporter>],
    metrics: Option<&Metrics>,
    store: Option<&TraceStore>,
) {
    for exporter in exporters.iter_mut() {
        exporter.export(&batch);
    }
    if let Some(metrics) = metrics {
        metrics.record_self_times(&batch);
    }
    if let Some(store) = store {
        store.add(batch);
    }
}
