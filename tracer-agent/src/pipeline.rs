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
/// How long a built span whose ids may still change waits before it is
/// sent on. A caller's event can come after its callee's whole subtree: a
/// client preempted between its TLS library's write and the probe at its
/// return, on a busy machine, for tens of milliseconds. Spans of the
/// callee's subtree that wait still get the caller's trace when it comes.
/// The others leave at once, while they are still in the cache.
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
        SpanSinks {
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
/// they are still in the cache; the spans themselves to the export stage,
/// at once or after `HOLD` (`Held`).
struct SpanSinks {
    export: mpsc::Sender<Vec<Span>>,
    metrics: Option<Arc<Metrics>>,
}

async fn process(
    mut reader: EventReader,
    sinks: SpanSinks,
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
    let mut held = Held::default();
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
        let mut built = build_spans(&handled, &mut builder, &mut correlator, &stats, |pid| {
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
        if let Some(metrics) = &sinks.metrics {
            metrics.record_durations(&built.ready);
            metrics.record_durations(&built.may_change);
        }
        // An orphan whose caller showed up gets it, and so do the spans
        // under it, in this batch and in those held (`settle`).
        if correlator.retraced() {
            held.settle(&mut correlator, &mut built);
            correlator.settled();
        }
        let now = Instant::now();
        let ready = held.hold(now, built);
        if !send(&sinks.export, ready, &stats).await {
            return Ok(());
        }
        while let Some(ready) = held.due(now) {
            if !send(&sinks.export, ready, &stats).await {
                return Ok(());
            }
        }
    }
    for ready in held.into_batches() {
        send(&sinks.export, ready, &stats).await;
    }
    let waiting = table.pending_requests();
    if waiting > 0 {
        tracing::info!(
            "{waiting} requests were still waiting for their response at exit; they are not reported"
        );
    }
    Ok(())
}

/// The spans built from one batch of events.
#[derive(Default)]
pub struct BuiltBatch {
    /// Spans no adoption can change any more: they may leave at once.
    pub ready: Vec<Span>,
    /// Spans an adoption may still change (`Completion::may_change`).
    pub may_change: Vec<Span>,
}

/// Spans waiting `HOLD` for the adoptions that may still change them.
#[derive(Default)]
struct Held {
    /// By when they were built, oldest first.
    batches: VecDeque<(Instant, Vec<Span>)>,
    /// The trace ids of the spans waiting, counted. A ready span of one
    /// of these traces waits with them: an ended orphan's adoption renames
    /// its whole trace.
    traces: foldhash::HashMap<[u8; 16], u32>,
}

impl Held {
    /// Holds the spans of `built` that may change, and its ready spans
    /// of a trace held; returns the others, free to leave now.
    fn hold(&mut self, now: Instant, built: BuiltBatch) -> Vec<Span> {
        let BuiltBatch {
            mut ready,
            mut may_change,
        } = built;
        for span in &may_change {
            *self.traces.entry(span.trace_id).or_default() += 1;
        }
        if !self.traces.is_empty() {
            let start = may_change.len();
            may_change
                .extend(ready.extract_if(.., |span| self.traces.contains_key(&span.trace_id)));
            for span in &may_change[start..] {
                *self.traces.entry(span.trace_id).or_default() += 1;
            }
        }
        if !may_change.is_empty() {
            self.batches.push_back((now, may_change));
        }
        ready
    }

    /// Gives the spans held, and those of `built`, the ids adoptions gave
    /// them since they were built.
    fn settle(&mut self, correlator: &mut Correlator, built: &mut BuiltBatch) {
        self.traces.clear();
        for (_, spans) in self.batches.iter_mut() {
            correlator.settle(spans);
            for span in spans.iter() {
                *self.traces.entry(span.trace_id).or_default() += 1;
            }
        }
        correlator.settle(&mut built.ready);
        correlator.settle(&mut built.may_change);
    }

    /// The oldest batch, once it has waited `HOLD`.
    fn due(&mut self, now: Instant) -> Option<Vec<Span>> {
        let (built_at, _) = self.batches.front()?;
        if now.duration_since(*built_at) < HOLD {
            return None;
        }
        let (_, spans) = self.batches.pop_front()?;
        for span in &spans {
            if let Some(count) = self.traces.get_mut(&span.trace_id) {
                *count -= 1;
                if *count == 0 {
                    self.traces.remove(&span.trace_id);
                }
            }
        }
        Some(spans)
    }

    /// Every batch still held, at shutdown.
    fn into_batches(self) -> impl Iterator<Item = Vec<Span>> {
        self.batches.into_iter().map(|(_, spans)| spans)
    }
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
) -> BuiltBatch {
    let mut batch = BuiltBatch::default();
    for outcome in &handled.outcomes {
        match outcome {
            Outcome::RequestStarted(started) => {
                let process = builder.request_started(started);
                serving(process.pid);
                correlator.request_started(started, process.go);
            }
            Outcome::ExchangeCompleted(exchange) => {
                // None: the application's own SDK reports this call.
                let Some(completion) = correlator.exchange_completed(exchange) else {
                    continue;
                };
                let span = builder.build(exchange, completion.ids);
                if is_own_export(&span) {
                    stats.add(&stats.own_export_spans_skipped, 1);
                } else if completion.may_change {
                    batch.may_change.push(span);
                } else {
                    batch.ready.push(span);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export::fixtures, spans::SpanStatus};

    fn span_of_trace(trace: u8) -> Span {
        let process = fixtures::process(1, "s", None);
        Span {
            trace_id: [trace; 16],
            ..fixtures::span(&process, "GET /", SpanStatus::Unset)
        }
    }

    #[test]
    fn ready_spans_leave_at_once_unless_their_trace_waits() {
        let mut held = Held::default();
        let now = Instant::now();
        let ready = held.hold(
            now,
            BuiltBatch {
                ready: vec![span_of_trace(1), span_of_trace(2)],
                may_change: vec![span_of_trace(2)],
            },
        );
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].trace_id, [1; 16]);
        let later = held.hold(
            now,
            BuiltBatch {
                ready: vec![span_of_trace(2), span_of_trace(3)],
                may_change: Vec::new(),
            },
        );
        assert_eq!(later.len(), 1, "trace 2 still waits");
        assert!(held.due(now).is_none());
        let due: usize = std::iter::from_fn(|| held.due(now + HOLD))
            .map(|spans| spans.len())
            .sum();
        assert_eq!(due, 3);
        assert!(held.traces.is_empty(), "nothing waits any more");
        let after = held.hold(
            now + HOLD,
            BuiltBatch {
                ready: vec![span_of_trace(2)],
                may_change: Vec::new(),
            },
        );
        assert_eq!(after.len(), 1);
    }
}
