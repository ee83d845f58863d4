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
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::sync::{mpsc, watch};
use tracer_common::MAX_GO_PROCESSES;

use crate::{
    clock::{self, Clock},
    connections::{ConnectionTable, Handled, Outcome},
    correlation::{Correlator, Wait},
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
    /// This node's addresses (none: not known, any caller may be here).
    pub node_addresses: Option<Vec<IpAddr>>,
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
        Stages {
            table: ConnectionTable::new(options.max_connections),
            builder: SpanBuilder::new(Clock::now(), options.processes),
            correlator: match options.node_addresses {
                Some(addresses) => Correlator::on_node(addresses),
                None => Correlator::new(),
            },
        },
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

/// The first task's stages, in the order events go through them.
struct Stages {
    table: ConnectionTable,
    builder: SpanBuilder,
    correlator: Correlator,
}

async fn process(
    mut reader: EventReader,
    sinks: SpanSinks,
    KernelLists {
        mut ignored_sockets,
        processes_seen,
    }: KernelLists,
    Stages {
        mut table,
        mut builder,
        mut correlator,
    }: Stages,
    idle_timeout: Duration,
    stats: Arc<Stats>,
) -> std::io::Result<()> {
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
            for spans in built.all() {
                metrics.record_durations(spans);
            }
        }
        // An orphan whose caller showed up gets it, and so do the spans
        // under it, in this batch and in those held (`settle`).
        if correlator.retraced() {
            held.settle(&mut correlator, &mut built);
            correlator.settled();
        }
        let now = Instant::now();
        let mut ready = held.hold(now, built);
        ready.extend(held.release(correlator.quiesced(), |trace_id| {
            correlator.is_live(trace_id)
        }));
        correlator.clear_quiesced();
        ready.extend(held.due(now));
        if !send(&sinks.export, ready, &stats).await {
            return Ok(());
        }
    }
    send(&sinks.export, held.into_spans(), &stats).await;
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
    /// Spans whose trace has requests in progress (`Wait::WhileTraceLive`).
    pub while_trace_live: Vec<Span>,
    /// Ended orphans' spans (`Wait::ForCaller`).
    pub for_caller: Vec<Span>,
}

impl BuiltBatch {
    /// Every span built, whether it waits or not.
    pub fn all(&self) -> impl Iterator<Item = &[Span]> {
        [&self.ready, &self.while_trace_live, &self.for_caller]
            .into_iter()
            .map(Vec::as_slice)
    }
}

/// Spans waiting for the adoptions that may still change them, by trace:
/// a trace leaves whole, when its last request in progress ends
/// (`release`), or after `HOLD` (`due`).
#[derive(Default)]
struct Held {
    traces: foldhash::HashMap<[u8; 16], HeldTrace>,
    /// When each trace began waiting, oldest first. An entry whose trace
    /// left since, or waits from a later time, is skipped.
    order: VecDeque<(Instant, [u8; 16])>,
}

struct HeldTrace {
    since: Instant,
    spans: Vec<Span>,
    /// It holds an ended orphan's span: it waits the whole `HOLD`, for
    /// the orphan's caller, which renames the trace.
    for_caller: bool,
}

impl Held {
    /// Holds the spans of `built` that wait, and its ready spans of a
    /// trace held (a trace leaves whole); returns the others, free to
    /// leave now.
    fn hold(&mut self, now: Instant, built: BuiltBatch) -> Vec<Span> {
        let BuiltBatch {
            mut ready,
            while_trace_live,
            for_caller,
        } = built;
        for span in while_trace_live {
            self.add(now, span, false);
        }
        for span in for_caller {
            self.add(now, span, true);
        }
        if !self.traces.is_empty() {
            let traces = &self.traces;
            let joining: Vec<Span> = ready
                .extract_if(.., |span| traces.contains_key(&span.trace_id))
                .collect();
            for span in joining {
                self.add(now, span, false);
            }
        }
        ready
    }

    fn add(&mut self, now: Instant, span: Span, for_caller: bool) {
        let trace_id = span.trace_id;
        let held = self.traces.entry(trace_id).or_insert_with(|| {
            self.order.push_back((now, trace_id));
            HeldTrace {
                since: now,
                spans: Vec::new(),
                for_caller: false,
            }
        });
        // An orphan's caller gets the whole `HOLD` from its span's end.
        if for_caller && held.since != now {
            held.since = now;
            self.order.push_back((now, trace_id));
        }
        held.for_caller |= for_caller;
        held.spans.push(span);
    }

    /// The spans of the traces in `quiesced` (whose last request in
    /// progress ended), unless one is live again or waits for an orphan's
    /// caller.
    fn release(&mut self, quiesced: &[[u8; 16]], is_live: impl Fn(&[u8; 16]) -> bool) -> Vec<Span> {
        let mut released = Vec::new();
        if self.traces.is_empty() {
            return released;
        }
        for trace_id in quiesced {
            let free = self
                .traces
                .get(trace_id)
                .is_some_and(|held| !held.for_caller && !is_live(trace_id));
            if free && let Some(held) = self.traces.remove(trace_id) {
                released.extend(held.spans);
            }
        }
        released
    }

    /// Gives the spans held, and those of `built`, the ids adoptions gave
    /// them since they were built; a trace renamed waits under its new id.
    fn settle(&mut self, correlator: &mut Correlator, built: &mut BuiltBatch) {
        let mut renamed = Vec::new();
        for (trace_id, held) in self.traces.iter_mut() {
            correlator.settle(&mut held.spans);
            if held.spans.first().is_some_and(|s| s.trace_id != *trace_id) {
                renamed.push(*trace_id);
            }
        }
        for before in renamed {
            let Some(moved) = self.traces.remove(&before) else {
                continue;
            };
            let after = moved.spans[0].trace_id;
            let held = self.traces.entry(after).or_insert(HeldTrace {
                since: moved.since,
                spans: Vec::new(),
                for_caller: false,
            });
            held.since = held.since.max(moved.since);
            held.for_caller |= moved.for_caller;
            held.spans.extend(moved.spans);
            self.order.push_back((held.since, after));
        }
        correlator.settle(&mut built.ready);
        correlator.settle(&mut built.while_trace_live);
        correlator.settle(&mut built.for_caller);
    }

    /// The spans of the traces that have waited `HOLD`.
    fn due(&mut self, now: Instant) -> Vec<Span> {
        let mut due = Vec::new();
        while let Some(&(since, trace_id)) = self.order.front() {
            if now.duration_since(since) < HOLD {
                break;
            }
            self.order.pop_front();
            if self
                .traces
                .get(&trace_id)
                .is_some_and(|held| held.since == since)
                && let Some(held) = self.traces.remove(&trace_id)
            {
                due.extend(held.spans);
            }
        }
        due
    }

    /// Every span still held, at shutdown.
    fn into_spans(self) -> Vec<Span> {
        self.traces
            .into_values()
            .flat_map(|held| held.spans)
            .collect()
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
    correlator.local_addresses_seen(&handled.local_addresses);
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
                    continue;
                }
                match completion.wait {
                    Wait::No => batch.ready.push(span),
                    Wait::WhileTraceLive => batch.while_trace_live.push(span),
                    Wait::ForCaller => batch.for_caller.push(span),
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

    fn batch(ready: &[u8], while_trace_live: &[u8], for_caller: &[u8]) -> BuiltBatch {
        let spans = |traces: &[u8]| traces.iter().map(|t| span_of_trace(*t)).collect();
        BuiltBatch {
            ready: spans(ready),
            while_trace_live: spans(while_trace_live),
            for_caller: spans(for_caller),
        }
    }

    fn traces(spans: &[Span]) -> Vec<u8> {
        let mut traces: Vec<u8> = spans.iter().map(|s| s.trace_id[0]).collect();
        traces.sort();
        traces
    }

    #[test]
    fn ready_spans_leave_at_once_unless_their_trace_waits() {
        let mut held = Held::default();
        let now = Instant::now();
        let ready = held.hold(now, batch(&[1, 2], &[2], &[]));
        assert_eq!(traces(&ready), [1]);
        let later = held.hold(now, batch(&[2, 3], &[], &[]));
        assert_eq!(traces(&later), [3], "trace 2 still waits");
        assert!(held.due(now).is_empty());
        assert_eq!(traces(&held.due(now + HOLD)), [2, 2, 2]);
        assert!(held.traces.is_empty(), "nothing waits any more");
        let after = held.hold(now + HOLD, batch(&[2], &[], &[]));
        assert_eq!(after.len(), 1);
    }

    /// A trace whose last request in progress ended leaves whole at once;
    /// one live again, or with an ended orphan's span, waits on.
    #[test]
    fn a_trace_leaves_when_its_last_request_ends_unless_an_orphan_waits() {
        let mut held = Held::default();
        let now = Instant::now();
        assert!(held.hold(now, batch(&[], &[1, 1, 2, 3], &[3])).is_empty());
        assert!(held.hold(now, batch(&[1], &[], &[])).is_empty());
        let released = held.release(&[[1; 16], [2; 16], [3; 16]], |t| t[0] == 2);
        assert_eq!(traces(&released), [1, 1, 1]);
        assert_eq!(traces(&held.hold(now, batch(&[1], &[], &[]))), [1]);
        assert_eq!(traces(&held.due(now + HOLD)), [2, 3, 3]);
    }

    /// An ended orphan's span gets the whole `HOLD` from its end, even in a
    /// trace that began waiting earlier.
    #[test]
    fn an_orphan_waits_the_whole_hold_from_its_end() {
        let mut held = Held::default();
        let start = Instant::now();
        held.hold(start, batch(&[], &[1], &[]));
        let orphan_end = start + HOLD / 2;
        held.hold(orphan_end, batch(&[], &[], &[1]));
        assert!(held.due(start + HOLD).is_empty());
        assert_eq!(traces(&held.due(orphan_end + HOLD)), [1, 1]);
        assert!(held.order.is_empty());
    }
}
