//! The recent traces the viewer shows: spans grouped by trace, bounded by
//! trace count and by memory, oldest trace evicted first. Queries compute
//! their answer when asked; nothing runs in the background.
//!
//! Under load the store keeps a sample (`Admission`): new traces up to
//! `ADMITTED_PER_SECOND`, chosen by trace id so that a kept trace keeps all
//! its spans (an error on a parent span arrives after its children, so
//! keeping "every error" would keep parts of traces). Without it a busy node
//! turned the whole store over several times a second (a few tenths of a
//! second of history, and a sizeable share of the agent's CPU). Rates are
//! scaled back by each trace's weight (1 / the probability it was kept
//! with); percentiles are over the kept traces.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::Mutex,
};

use foldhash::HashMap;
use serde::Serialize;

use super::{
    bottlenecks::{Bottleneck, BottleneckQuery, rank},
    critical_path::{SpanTimes, of_trace},
};
use crate::{
    protocols::trace_context::parse_hex,
    spans::{AttributeValue, Span, SpanKind, SpanStatus, Text, hex},
};

pub type TraceId = [u8; 16];

/// Spans kept per trace at most; a trace with more keeps its first ones.
pub const MAX_SPANS_PER_TRACE: usize = 2000;

/// New traces kept per second, about, under load.
pub const ADMITTED_PER_SECOND: u32 = 200;

#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    pub max_traces: usize,
    pub max_bytes: usize,
}

pub struct TraceStore {
    limits: StoreLimits,
    /// The agent's own addresses (viewer, metrics): calls to them (the page
    /// polling the API, scrapes) are not stored, or the list would fill with them.
    own_endpoints: Vec<SocketAddr>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    traces: HashMap<TraceId, StoredTrace>,
    /// Trace ids by arrival of their first span; each present trace once.
    arrival: VecDeque<TraceId>,
    bytes: usize,
    evicted_traces: u64,
    dropped_spans: u64,
    own_calls_skipped: u64,
    admission: Admission,
    spans_not_sampled: u64,
}

struct StoredTrace {
    spans: Vec<Span>,
    bytes: usize,
    /// How many traces this one stands for (1 / the probability of keeping it).
    weight: f64,
}

/// Which new traces the store keeps: all while fewer than
/// `ADMITTED_PER_SECOND` arrive a second; past that, those whose trace id
/// falls below the probability the last second's arrivals give (the same
/// answer for every span of a trace).
struct Admission {
    /// The second (of span end times) being counted, and its new traces.
    second: u64,
    arrived: u32,
    probability: f64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            second: 0,
            arrived: 0,
            probability: 1.0,
        }
    }
}

impl Admission {
    /// The weight a new trace is kept with, or none.
    fn admit(&mut self, span: &Span) -> Option<f64> {
        let second = span.end_unix_ns / 1_000_000_000;
        if second != self.second {
            self.probability = if self.arrived <= ADMITTED_PER_SECOND {
                1.0
            } else {
                f64::from(ADMITTED_PER_SECOND) / f64::from(self.arrived)
            };
            self.second = second;
            self.arrived = 0;
        }
        self.arrived = self.arrived.saturating_add(1);
        let mut first = [0u8; 8];
        first.copy_from_slice(&span.trace_id[..8]);
        // Trace ids are random: their first bytes are a uniform number.
        let position = u64::from_le_bytes(first) as f64 / u64::MAX as f64;
        (position < self.probability).then(|| 1.0 / self.probability)
    }
}

/// One line of the trace list.
#[derive(Debug, Serialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    pub start_unix_ms: f64,
    pub duration_ms: f64,
    pub span_count: usize,
    pub error_count: usize,
    pub root_service: String,
    pub root_name: String,
    pub services: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct TraceFilter {
    pub service: Option<String>,
    pub min_duration_ms: Option<f64>,
    pub errors_only: bool,
    pub limit: usize,
}

#[derive(Debug, Serialize)]
pub struct SpanView {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: &'static str,
    pub service: String,
    pub team: String,
    pub pid: u32,
    pub tid: u32,
    /// Exact start, as a string: nanoseconds do not fit a JSON number.
    pub start_unix_ns: String,
    /// From the trace's first span.
    pub offset_ms: f64,
    pub duration_ms: f64,
    /// Its time minus its children's (overlaps counted once).
    pub self_ms: f64,
    /// Its own time on the trace's critical path (0: off the path). For a
    /// client span, the gap around its server span.
    pub critical_path_ms: f64,
    pub error: bool,
    pub status_message: String,
    pub attributes: BTreeMap<&'static str, serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct TraceView {
    pub trace_id: String,
    pub start_unix_ms: f64,
    pub duration_ms: f64,
    pub spans: Vec<SpanView>,
    /// What decided the trace's end-to-end time, in time order.
    pub critical_path: Vec<SegmentView>,
}

/// A stretch of the critical path: one span's own time, or the gap between
/// a client span and its server span (`gap`: network, queueing, a proxy).
#[derive(Debug, Serialize)]
pub struct SegmentView {
    pub span_id: String,
    pub service: String,
    pub name: String,
    pub offset_ms: f64,
    pub duration_ms: f64,
    pub gap: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ServiceView {
    pub name: String,
    /// The team that owns it (`--owners`).
    pub team: String,
    /// Requests it served (server spans) and made (client spans).
    pub requests_served: u64,
    pub requests_made: u64,
    pub errors: u64,
    pub request_rate_per_s: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DependencyView {
    pub caller: String,
    /// The service that served the call, or `host:port` when the agent did
    /// not see the server side.
    pub callee: String,
    pub calls: u64,
    pub errors: u64,
    pub request_rate_per_s: f64,
    pub error_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct StoreUsage {
    pub traces: usize,
    pub spans: usize,
    pub bytes: usize,
    pub max_traces: usize,
    pub max_bytes: usize,
    pub evicted_traces: u64,
    pub dropped_spans: u64,
    /// Calls to the viewer itself, not stored.
    pub own_calls_skipped: u64,
    /// Spans of traces the store did not keep under load (see `Admission`).
    pub spans_not_sampled: u64,
}

impl TraceStore {
    pub fn new(limits: StoreLimits, own_endpoints: Vec<SocketAddr>) -> Self {
        TraceStore {
            limits,
            own_endpoints,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn is_call_to_viewer(&self, span: &Span) -> bool {
        span.kind == SpanKind::Client
            && self.own_endpoints.iter().any(|own| {
                // The port first: the address is compared as text, rarely.
                matches!(span.attribute("network.peer.port"),
                    Some(AttributeValue::Int(port)) if *port == i64::from(own.port()))
                    && matches!(span.attribute("network.peer.address"),
                    Some(AttributeValue::Str(ip)) if own.ip().is_unspecified() || *ip == own.ip().to_string())
            })
    }

    pub fn enabled(&self) -> bool {
        self.limits.max_traces > 0 && self.limits.max_bytes > 0
    }

    /// Keeps `spans` (taken, not copied: the store is their last user).
    pub fn add(&self, spans: Vec<Span>) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for span in spans {
            if self.is_call_to_viewer(&span) {
                inner.own_calls_skipped += 1;
                continue;
            }
            if !inner.traces.contains_key(&span.trace_id) {
                let Some(weight) = inner.admission.admit(&span) else {
                    inner.spans_not_sampled += 1;
                    continue;
                };
                inner.arrival.push_back(span.trace_id);
                inner.traces.insert(
                    span.trace_id,
                    StoredTrace {
                        spans: Vec::new(),
                        bytes: 0,
                        weight,
                    },
                );
            }
            let Some(trace) = inner.traces.get_mut(&span.trace_id) else {
                continue;
            };
            // Sized only once admitted: most spans under load are not.
            let size = span_bytes(&span);
            if trace.spans.len() >= MAX_SPANS_PER_TRACE || size > self.limits.max_bytes {
                inner.dropped_spans += 1;
                continue;
            }
            let trace_id = span.trace_id;
            trace.spans.push(span);
            trace.bytes += size;
            inner.bytes += size;
            inner.evict(&self.limits, &trace_id);
        }
    }

    pub fn usage(&self) -> StoreUsage {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        StoreUsage {
            traces: inner.traces.len(),
            spans: inner.traces.values().map(|t| t.spans.len()).sum(),
            bytes: inner.bytes,
            max_traces: self.limits.max_traces,
            max_bytes: self.limits.max_bytes,
            evicted_traces: inner.evicted_traces,
            dropped_spans: inner.dropped_spans,
            own_calls_skipped: inner.own_calls_skipped,
            spans_not_sampled: inner.spans_not_sampled,
        }
    }

    /// Newest traces first.
    pub fn traces(&self, filter: &TraceFilter) -> Vec<TraceSummary> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .arrival
            .iter()
            .rev()
            .filter_map(|id| inner.traces.get(id).map(|t| summary(id, &t.spans)))
            .filter(|s| {
                filter
                    .service
                    .as_ref()
                    .is_none_or(|name| s.services.contains(name))
                    && filter
                        .min_duration_ms
                        .is_none_or(|min| s.duration_ms >= min)
                    && (!filter.errors_only || s.error_count > 0)
            })
            .take(filter.limit)
            .collect()
    }

    /// Where the critical-path time of the traces that ended in the last
    /// `window_ns` before `now_unix_ns` went, ranked, beside the window
    /// before it.
    pub fn bottlenecks(
        &self,
        window_ns: u64,
        now_unix_ns: u64,
        query: &BottleneckQuery,
    ) -> Vec<Bottleneck> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let since = now_unix_ns.saturating_sub(window_ns);
        let before = since.saturating_sub(window_ns);
        let ended = |from: u64, until: u64| {
            inner
                .traces
                .values()
                .map(|t| t.spans.as_slice())
                .filter(move |spans| {
                    let end = spans.iter().map(|s| s.end_unix_ns).max().unwrap_or(0);
                    from <= end && end < until
                })
        };
        rank(ended(since, u64::MAX), ended(before, since), query)
    }

    pub fn trace(&self, id: &TraceId) -> Option<TraceView> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let spans = &inner.traces.get(id)?.spans;
        let start = spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_ns).max().unwrap_or(start);
        let (path, times) = of_trace(spans);
        let ms = |ns: u64| ns as f64 / 1e6;
        let mut views: Vec<SpanView> = spans
            .iter()
            .zip(&times)
            .map(|(s, t)| span_view(s, start, t))
            .collect();
        views.sort_by(|a, b| a.offset_ms.total_cmp(&b.offset_ms));
        let critical_path = path
            .iter()
            .map(|segment| {
                let span = &spans[segment.span];
                SegmentView {
                    span_id: hex(&span.span_id),
                    service: span.process.service_name.clone(),
                    name: span.name.clone(),
                    offset_ms: ms(segment.start.saturating_sub(start)),
                    duration_ms: ms(segment.end - segment.start),
                    gap: segment.gap,
                }
            })
            .collect();
        Some(TraceView {
            trace_id: hex(id),
            start_unix_ms: start as f64 / 1e6,
            duration_ms: end.saturating_sub(start) as f64 / 1e6,
            spans: views,
            critical_path,
        })
    }

    pub fn services(&self) -> Vec<ServiceView> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let window_s = inner.window_s();
        /// Requests each kept trace stands for (its weight), summed.
        #[derive(Default)]
        struct Tally<'a> {
            team: &'a str,
            served: f64,
            made: f64,
            errors: f64,
            durations_ms: Vec<f64>,
        }
        let mut by_service: BTreeMap<&str, Tally> = BTreeMap::new();
        for trace in inner.traces.values() {
            for span in &trace.spans {
                let tally = by_service
                    .entry(span.process.service_name.as_str())
                    .or_default();
                tally.team = &span.process.team;
                match span.kind {
                    SpanKind::Server => {
                        tally.served += trace.weight;
                        tally.durations_ms.push(span.duration_ns() as f64 / 1e6);
                        if is_error(span) {
                            tally.errors += trace.weight;
                        }
                    }
                    SpanKind::Client => tally.made += trace.weight,
                }
            }
        }
        by_service
            .into_iter()
            .map(|(name, mut tally)| {
                tally.durations_ms.sort_by(f64::total_cmp);
                ServiceView {
                    name: name.to_string(),
                    team: tally.team.to_string(),
                    requests_served: tally.served.round() as u64,
                    requests_made: tally.made.round() as u64,
                    errors: tally.errors.round() as u64,
                    request_rate_per_s: tally.served / window_s,
                    error_rate: ratio(tally.errors, tally.served),
                    p50_ms: percentile(&tally.durations_ms, 0.50),
                    p95_ms: percentile(&tally.durations_ms, 0.95),
                }
            })
            .collect()
    }

    /// Calls between services: each client span, with the service whose
    /// server span is its child.
    pub fn dependencies(&self) -> Vec<DependencyView> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let window_s = inner.window_s();
        let mut edges: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for trace in inner.traces.values() {
            let server_of: HashMap<[u8; 8], &str> = trace
                .spans
                .iter()
                .filter(|s| s.kind == SpanKind::Server)
                .filter_map(|s| Some((s.parent_span_id?, s.process.service_name.as_str())))
                .collect();
            for call in trace.spans.iter().filter(|s| s.kind == SpanKind::Client) {
                let callee = match server_of.get(&call.span_id) {
                    Some(service) => service.to_string(),
                    None => peer(call),
                };
                let edge = edges
                    .entry((call.process.service_name.clone(), callee))
                    .or_default();
                edge.0 += trace.weight;
                if is_error(call) {
                    edge.1 += trace.weight;
                }
            }
        }
        edges
            .into_iter()
            .map(|((caller, callee), (calls, errors))| DependencyView {
                caller,
                callee,
                calls: calls.round() as u64,
                errors: errors.round() as u64,
                request_rate_per_s: calls / window_s,
                error_rate: ratio(errors, calls),
            })
            .collect()
    }
}

impl Inner {
    fn evict(&mut self, limits: &StoreLimits, keep: &TraceId) {
        while self.traces.len() > limits.max_traces || self.bytes > limits.max_bytes {
            let Some(oldest) = self.arrival.pop_front() else {
                return;
            };
            if oldest == *keep && self.arrival.is_empty() {
                // The only trace: keep it (it fits, checked by the caller).
                self.arrival.push_back(oldest);
                return;
            }
            if let Some(trace) = self.traces.remove(&oldest) {
                self.bytes -= trace.bytes;
                self.evicted_traces += 1;
            }
        }
    }

    fn spans(&self) -> impl Iterator<Item = &Span> {
        self.traces.values().flat_map(|t| t.spans.iter())
    }

    /// Seconds between the oldest span's start and the newest one's end: the
    /// time the rates are over (at least one second).
    fn window_s(&self) -> f64 {
        let start = self.spans().map(|s| s.start_unix_ns).min();
        let end = self.spans().map(|s| s.end_unix_ns).max();
        match (start, end) {
            (Some(start), Some(end)) => (end.saturating_sub(start) as f64 / 1e9).max(1.0),
            _ => 1.0,
        }
    }
}

/// What the allocator spends per heap block beyond the bytes asked for
/// (size-class rounding and its own bookkeeping), measured: with only the
/// bytes counted, the store's real share of the agent's RSS was 1.8 times
/// its budget under load.
const ALLOCATION_OVERHEAD: usize = 48;

/// What a span holds in memory: the struct, its heap blocks (name,
/// attribute list, each text value) with the allocator's overhead, and its
/// share of the trace's entry in the store's maps.
fn span_bytes(span: &Span) -> usize {
    let block = |len: usize| len + ALLOCATION_OVERHEAD;
    std::mem::size_of::<Span>()
        + std::mem::size_of::<(TraceId, StoredTrace)>()
        + block(span.name.len())
        + block(span.attributes.capacity() * std::mem::size_of::<(&str, AttributeValue)>())
        + span
            .attributes
            .iter()
            .map(|(_, value)| match value {
                // Shared text (addresses) lives in the span builder's cache.
                AttributeValue::Str(Text::Owned(s)) => block(s.capacity()),
                AttributeValue::Str(_) | AttributeValue::Int(_) => 0,
            })
            .sum::<usize>()
}

fn summary(id: &TraceId, spans: &[Span]) -> TraceSummary {
    let start = spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_ns).max().unwrap_or(start);
    let ids: std::collections::HashSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
    // The root: the earliest span whose parent is not in the trace.
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| s.start_unix_ns);
    let mut services: Vec<String> = spans
        .iter()
        .map(|s| s.process.service_name.clone())
        .collect();
    services.sort();
    services.dedup();
    TraceSummary {
        trace_id: hex(id),
        start_unix_ms: start as f64 / 1e6,
        duration_ms: end.saturating_sub(start) as f64 / 1e6,
        span_count: spans.len(),
        error_count: spans.iter().filter(|s| is_error(s)).count(),
        root_service: root.map_or_else(String::new, |s| s.process.service_name.clone()),
        root_name: root.map_or_else(String::new, |s| s.name.clone()),
        services,
    }
}

fn span_view(span: &Span, trace_start: u64, times: &SpanTimes) -> SpanView {
    SpanView {
        span_id: hex(&span.span_id),
        parent_span_id: span.parent_span_id.map(|p| hex(&p)),
        name: span.name.clone(),
        kind: match span.kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        },
        service: span.process.service_name.clone(),
        team: span.process.team.clone(),
        pid: span.process.pid,
        tid: span.tid,
        start_unix_ns: span.start_unix_ns.to_string(),
        offset_ms: span.start_unix_ns.saturating_sub(trace_start) as f64 / 1e6,
        duration_ms: span.duration_ns() as f64 / 1e6,
        self_ms: times.self_ns as f64 / 1e6,
        critical_path_ms: times.critical_ns as f64 / 1e6,
        error: is_error(span),
        status_message: match &span.status {
            SpanStatus::Error(message) => message.clone(),
            SpanStatus::Unset => String::new(),
        },
        attributes: span
            .attributes
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    AttributeValue::Str(s) => serde_json::Value::from(s.as_ref()),
                    AttributeValue::Int(i) => serde_json::Value::from(*i),
                };
                (*key, value)
            })
            .collect(),
    }
}

fn is_error(span: &Span) -> bool {
    matches!(span.status, SpanStatus::Error(_))
}

fn peer(call: &Span) -> String {
    format!(
        "{}:{}",
        call.attribute_text("server.address"),
        call.attribute_text("server.port")
    )
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole == 0.0 { 0.0 } else { part / whole }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A trace id from its 32 hex digits.
pub fn parse_trace_id(text: &str) -> Option<TraceId> {
    parse_hex::<16>(text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::process::ProcessInfo;

    fn span(trace: u8, id: u8, parent: Option<u8>, kind: SpanKind, service: &str) -> Span {
        Span {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            name: format!("GET /{id}"),
            kind,
            start_unix_ns: 1_000_000_000 + id as u64 * 1_000_000,
            end_unix_ns: 1_000_000_000 + id as u64 * 1_000_000 + 10_000_000,
            attributes: vec![
                ("server.address", AttributeValue::Str("db".into())),
                ("server.port", AttributeValue::Int(5432)),
            ],
            status: if id == 3 {
                SpanStatus::Error(String::new())
            } else {
                SpanStatus::Unset
            },
            protocol: &crate::protocols::http1::FACTS,
            process: Arc::new(ProcessInfo {
                pid: 1,
                service_name: service.into(),
                executable_name: service.into(),
                container_id: None,
                pod: None,
                team: "unowned".into(),
                go: false,
            }),
            tid: 1,
        }
    }

    fn store(max_traces: usize, max_bytes: usize) -> TraceStore {
        TraceStore::new(
            StoreLimits {
                max_traces,
                max_bytes,
            },
            Vec::new(),
        )
    }

    /// front (server 1) → client 2 → back (server 3, an error) → client 4 to db.
    fn chain(trace: u8) -> Vec<Span> {
        vec![
            span(trace, 1, None, SpanKind::Server, "front"),
            span(trace, 2, Some(1), SpanKind::Client, "front"),
            span(trace, 3, Some(2), SpanKind::Server, "back"),
            span(trace, 4, Some(3), SpanKind::Client, "back"),
        ]
    }

    #[test]
    fn lists_traces_newest_first_with_filters() {
        let store = store(10, 1 << 20);
        store.add(chain(1));
        store.add(vec![span(2, 1, None, SpanKind::Server, "front")]);
        let all = store.traces(&TraceFilter {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].trace_id, hex(&[2; 16]));
        assert_eq!(all[1].root_service, "front");
        assert_eq!(all[1].root_name, "GET /1");
        assert_eq!(all[1].span_count, 4);
        assert_eq!(all[1].error_count, 1);
        assert_eq!(all[1].services, vec!["back", "front"]);
        assert!((all[1].duration_ms - 13.0).abs() < 1e-9);
        let back = store.traces(&TraceFilter {
            service: Some("back".into()),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(back.len(), 1);
        let errors = store.traces(&TraceFilter {
            errors_only: true,
            limit: 10,
            ..Default::default()
        });
        assert_eq!(errors.len(), 1);
        let slow = store.traces(&TraceFilter {
            min_duration_ms: Some(12.0),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(slow.len(), 1);
    }

    #[test]
    fn trace_view_orders_spans_and_keeps_attributes() {
        let store = store(10, 1 << 20);
        let mut spans = chain(1);
        spans.reverse();
        store.add(spans);
        let view = store.trace(&[1; 16]).unwrap();
        let names: Vec<&str> = view.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["GET /1", "GET /2", "GET /3", "GET /4"]);
        assert_eq!(view.spans[2].parent_span_id, Some(hex(&[2; 8])));
        assert!(view.spans[2].error);
        assert_eq!(view.spans[3].attributes["server.port"], 5432);
        assert!(store.trace(&[9; 16]).is_none());
        // Each span starts 1 ms after its parent and lasts 10 ms: the path
        // steps down each millisecond, and the call to the database (no
        // server span of its own) holds the rest of the root's 10 ms.
        let path: Vec<(&str, bool, f64)> = view
            .critical_path
            .iter()
            .map(|s| (s.name.as_str(), s.gap, (s.duration_ms * 1e3).round() / 1e3))
            .collect();
        assert_eq!(
            path,
            [
                ("GET /1", false, 1.0),
                ("GET /2", true, 1.0),
                ("GET /3", false, 1.0),
                ("GET /4", true, 7.0)
            ]
        );
        assert!((view.spans[0].self_ms - 1.0).abs() < 1e-9);
        assert!((view.spans[3].critical_path_ms - 7.0).abs() < 1e-9);
    }

    #[test]
    fn services_and_dependencies() {
        let store = store(10, 1 << 20);
        store.add(chain(1));
        store.add(chain(2));
        let services = store.services();
        let back = services.iter().find(|s| s.name == "back").unwrap();
        assert_eq!(
            (back.requests_served, back.requests_made, back.errors),
            (2, 2, 2)
        );
        assert_eq!(back.error_rate, 1.0);
        let deps = store.dependencies();
        let pairs: Vec<(&str, &str, u64)> = deps
            .iter()
            .map(|d| (d.caller.as_str(), d.callee.as_str(), d.calls))
            .collect();
        assert_eq!(pairs, [("back", "db:5432", 2), ("front", "back", 2)]);
    }

    #[test]
    fn bounded_by_count_and_bytes_oldest_first() {
        let by_count = store(2, 1 << 20);
        for trace in 1..=3 {
            by_count.add(chain(trace));
        }
        assert!(by_count.trace(&[1; 16]).is_none());
        assert!(by_count.trace(&[3; 16]).is_some());
        assert_eq!(by_count.usage().evicted_traces, 1);

        let one_trace = span_bytes(&chain(1)[0]) * 4;
        let by_bytes = store(100, one_trace * 2);
        for trace in 1..=5 {
            by_bytes.add(chain(trace));
        }
        let usage = by_bytes.usage();
        assert!(usage.bytes <= one_trace * 2, "{usage:?}");
        assert_eq!(usage.traces, 2);
        assert!(by_bytes.trace(&[5; 16]).is_some());

        let off = store(0, 1 << 20);
        off.add(chain(1));
        assert_eq!(off.usage().spans, 0);
    }

    #[test]
    fn calls_to_the_viewer_itself_are_not_stored() {
        let store = TraceStore::new(
            StoreLimits {
                max_traces: 10,
                max_bytes: 1 << 20,
            },
            vec!["127.0.0.1:9464".parse().unwrap()],
        );
        let mut poll = span(1, 1, None, SpanKind::Client, "chromium");
        poll.attributes = vec![
            (
                "network.peer.address",
                AttributeValue::Str("127.0.0.1".into()),
            ),
            ("network.peer.port", AttributeValue::Int(9464)),
        ];
        let mut other = poll.clone();
        other.trace_id = [2; 16];
        other.attributes[1].1 = AttributeValue::Int(8080);
        store.add(vec![poll, other]);
        let usage = store.usage();
        assert_eq!((usage.spans, usage.own_calls_skipped), (1, 1));
    }

    #[test]
    fn trace_ids_parse_from_hex_only() {
        assert_eq!(parse_trace_id(&hex(&[0xab; 16])), Some([0xab; 16]));
        assert_eq!(parse_trace_id("xyz"), None);
        assert_eq!(parse_trace_id(&"g".repeat(32)), None);
        assert_eq!(parse_trace_id(&"é".repeat(16)), None);
        assert_eq!(parse_trace_id(&"+a".repeat(16)), None);
    }

    /// Under load the store keeps about `ADMITTED_PER_SECOND` new traces a
    /// second, each whole, and its rates stand for all the traffic.
    #[test]
    fn under_load_keeps_a_weighted_sample_of_whole_traces() {
        let store = store(100_000, 1 << 30);
        let arrivals = 1_000u32;
        let second = |n: u64| n * 1_000_000_000;
        for (second_index, base) in [(1u64, 0u32), (2, arrivals)] {
            for n in base..base + arrivals {
                let mut trace_id = [0u8; 16];
                // Spread like random ids: the admission reads the first 8 bytes.
                trace_id[..8].copy_from_slice(
                    &(u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes(),
                );
                let mut server = span(0, 1, None, SpanKind::Server, "front");
                let mut client = span(0, 2, Some(1), SpanKind::Client, "front");
                for s in [&mut server, &mut client] {
                    s.trace_id = trace_id;
                    s.start_unix_ns = second(second_index) + 1000;
                    s.end_unix_ns = second(second_index) + 2000;
                }
                if n % 10 == 0 {
                    server.status = SpanStatus::Error(String::new());
                }
                // The client span (the callee side) ends first.
                store.add(vec![client, server]);
            }
        }
        let inner = store.inner.lock().unwrap();
        let first: Vec<_> = inner.traces.values().filter(|t| t.weight == 1.0).collect();
        let second_kept = inner.traces.len() - first.len();
        // All of the first second (nothing was known yet), ~20% of the next.
        assert!(first.len() >= arrivals as usize, "{}", first.len());
        assert!((150..=260).contains(&second_kept), "{second_kept}");
        assert!(
            inner.traces.values().all(|t| t.spans.len() == 2),
            "whole traces only"
        );
        assert!(inner.spans_not_sampled > 0);
        drop(inner);
        let front = store
            .services()
            .into_iter()
            .find(|s| s.name == "front")
            .unwrap();
        // 2,000 requests, told within the sampling's error.
        assert!(
            (1_700..=2_300).contains(&front.requests_served),
            "{}",
            front.requests_served
        );
    }
}
