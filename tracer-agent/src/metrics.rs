//! Prometheus metrics: the duration histograms each span's protocol names
//! (OpenTelemetry's HTTP metrics, ...), recorded from every span, and the
//! agent's own health read from its counters at scrape time.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, Hash, Hasher},
    sync::{Arc, Mutex},
};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracer_common::Counter;

use crate::{
    loader::KernelCounters,
    process::ProcessInfo,
    protocols::{
        PROTOCOLS,
        describe::{AttributeValue, DurationMetric},
    },
    spans::{Span, SpanKind, self_time_ns},
    stats::Stats,
};

/// Distinct values of a folded label (routes) kept per service; the rest
/// are reported as `OTHER_ROUTE` so that a server with unbounded paths
/// cannot grow the series without end.
pub const MAX_ROUTES_PER_SERVICE: usize = 200;
pub const OTHER_ROUTE: &str = "{other}";

pub struct Metrics {
    registry: Registry,
    /// The duration histograms of each protocol's metric (SERVER, CLIENT).
    durations: Vec<Durations>,
    /// Routes seen per service and the histogram of each series seen,
    /// behind one lock: the export task is their only writer.
    series: Mutex<Series>,
    self_times: Mutex<SelfTimes>,
    /// How many of `PROCESS_LABELS` the span metrics have.
    process_labels: usize,
    health: Health,
}

/// Calls waiting for their parent span, at most; past this they are
/// forgotten (their parents' self-time then counts them as its own).
const MAX_WAITING_CALLS: usize = 16_384;

/// Server spans' own time (their duration minus that of the calls they
/// made), per service and operation: the latency a service adds itself,
/// for alerts that end-to-end durations cannot express.
struct SelfTimes {
    histogram: HistogramVec,
    /// How many of `PROCESS_LABELS` it has.
    process_labels: usize,
    /// Calls' (start, end) by their parent span: calls end before their
    /// request, so they come in the same batch or an earlier one.
    calls: foldhash::HashMap<[u8; 8], Vec<(u64, u64)>>,
    /// By a hash of (process, operation): each series' histogram (the
    /// process known by identity, as in `CachedSeries`).
    series: foldhash::HashMap<u64, Vec<(Arc<ProcessInfo>, String, Histogram)>>,
    cached: usize,
}

struct Durations {
    metric: &'static DurationMetric,
    server: Option<HistogramVec>,
    client: HistogramVec,
}

/// Labels of a duration metric at most (a test holds every protocol's to it).
const MAX_METRIC_LABELS: usize = 8;

/// Series kept at most in the lookup cache; past this it starts over.
const MAX_CACHED_SERIES: usize = 16_384;

/// The labels every span metric starts with: who served or made it; the
/// namespace only on Kubernetes (elsewhere the metrics are as they were).
const PROCESS_LABELS: [&str; 3] = ["service_name", "team", "k8s_namespace_name"];

/// How many of `PROCESS_LABELS` the metrics have.
fn process_label_count(kubernetes: bool) -> usize {
    if kubernetes { 3 } else { 2 }
}

/// The values of `PROCESS_LABELS` for `span` (no namespace off Kubernetes).
fn process_labels(span: &Span) -> [&str; 3] {
    let process = &span.process;
    [
        process.service_name.as_str(),
        process.team.as_str(),
        process
            .pod
            .as_ref()
            .map_or("", |pod| pod.namespace.as_str()),
    ]
}

/// One cached series: what it is for, and its histogram.
struct CachedSeries {
    metric: &'static DurationMetric,
    kind: SpanKind,
    /// Known by identity: its labels are the process's, which never change,
    /// and holding it keeps its address from being reused.
    process: Arc<ProcessInfo>,
    /// The span attribute each label was read from, as it was.
    values: Vec<Option<AttributeValue>>,
    histogram: Histogram,
}

#[derive(Default)]
struct Series {
    /// Values of each folded label (by its name) seen per service.
    folded: HashMap<(&'static str, String), HashSet<String>>,
    /// By a hash of (metric, kind, service, label attributes): a span of a
    /// series seen before is recorded with no label formatting and no
    /// allocation.
    cache: foldhash::HashMap<u64, Vec<CachedSeries>>,
    cached: usize,
}

/// The agent's own counters, copied from `Stats` and the kernel at scrape.
struct Health {
    stats: Arc<Stats>,
    kernel: Option<Arc<KernelCounters>>,
    /// Each of `Stats`' counters, with the field it is read from.
    counters: Vec<(IntCounter, ReadStat)>,
    kernel_counters: Vec<(IntCounter, Counter)>,
    links: IntCounterVec,
    connections_tracked: prometheus::IntGauge,
    exported: IntCounterVec,
    export_failures: IntCounterVec,
    dropped: IntCounterVec,
    queued: IntGaugeVec,
}

impl Metrics {
    /// `kubernetes`: the span metrics get a `k8s_namespace_name` label.
    pub fn new(stats: Arc<Stats>, kernel: Option<Arc<KernelCounters>>, kubernetes: bool) -> Self {
        let process_labels = process_label_count(kubernetes);
        let registry = Registry::new();
        let histogram = |metric: &DurationMetric, (name, help): (&str, &str)| {
            let labels: Vec<&str> = PROCESS_LABELS[..process_labels]
                .iter()
                .copied()
                .chain(metric.labels.iter().map(|label| label.name))
                .collect();
            let histogram = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(metric.buckets.to_vec()),
                &labels,
            )
            .expect("valid histogram options");
            registry
                .register(Box::new(histogram.clone()))
                .expect("each metric registered once");
            histogram
        };
        let mut durations: Vec<Durations> = Vec::new();
        for protocol in PROTOCOLS {
            let Some(metric) = protocol.facts().duration_metric else {
                continue;
            };
            // Protocols with the same semantics share their metric.
            if durations.iter().any(|d| std::ptr::eq(d.metric, metric)) {
                continue;
            }
            durations.push(Durations {
                metric,
                server: metric.server.map(|server| histogram(metric, server)),
                client: histogram(metric, metric.client),
            });
        }
        let counter_vec = |name: &str, help: &str, label: &str| {
            let counter =
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter options");
            registry
                .register(Box::new(counter.clone()))
                .expect("each metric registered once");
            counter
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid counter options");
            registry
                .register(Box::new(counter.clone()))
                .expect("each metric registered once");
            counter
        };
        let health = Health {
            counters: STATS_COUNTERS
                .iter()
                .map(|&(name, help, read)| (counter(&format!("tracer_{name}_total"), help), read))
                .collect(),
            kernel_counters: Counter::ALL
                .iter()
                .map(|&c| {
                    let help = format!("Kernel side: {} (see tracer-common's Counter).", c.name());
                    (
                        counter(&format!("tracer_kernel_{}_total", c.name()), &help),
                        c,
                    )
                })
                .collect(),
            links: counter_vec(
                "tracer_span_links_total",
                "How spans got their parent: by_connection, by_context, by_header, roots, ...",
                "link",
            ),
            exported: counter_vec(
                "tracer_spans_exported_total",
                "Spans accepted by each exporter's destination.",
                "exporter",
            ),
            export_failures: counter_vec(
                "tracer_export_failures_total",
                "Failed writes or send attempts, by exporter (a retried batch counts each try).",
                "exporter",
            ),
            dropped: counter_vec(
                "tracer_spans_dropped_total",
                "Spans an exporter gave up: queue full, rejected, or unsent at shutdown.",
                "exporter",
            ),
            queued: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "tracer_export_queue_spans",
                        "Spans waiting in an exporter's queue.",
                    ),
                    &["exporter"],
                )
                .expect("valid gauge options");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("each metric registered once");
                gauge
            },
            connections_tracked: {
                let gauge = prometheus::IntGauge::new(
                    "tracer_connections_tracked",
                    "Connections the agent follows now.",
                )
                .expect("valid gauge options");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("each metric registered once");
                gauge
            },
            stats,
            kernel,
        };
        let self_time = HistogramVec::new(
            HistogramOpts::new(
                "service_self_time_seconds",
                "A server span's own time: its duration minus that of the calls it made \
                 (overlapping calls counted once), by service and operation (span name).",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
            ]),
            &[&PROCESS_LABELS[..process_labels], &["operation"]].concat(),
        )
        .expect("valid histogram options");
        registry
            .register(Box::new(self_time.clone()))
            .expect("each metric registered once");
        Metrics {
            registry,
            durations,
            series: Mutex::new(Series::default()),
            process_labels,
            self_times: Mutex::new(SelfTimes {
                histogram: self_time,
                process_labels,
                calls: foldhash::HashMap::default(),
                series: foldhash::HashMap::default(),
                cached: 0,
            }),
            health,
        }
    }

    /// Both records, for spans that are built and settled at once.
    #[cfg(test)]
    fn record(&self, spans: &[Span]) {
        self.record_durations(spans);
        self.record_self_times(spans);
    }

    /// Adds each server span's own time to `service_self_time_seconds`.
    /// Its calls are known by their parent ids, so this waits until the
    /// spans are settled (`Correlator::settle`).
    pub fn record_self_times(&self, spans: &[Span]) {
        let mut self_times = self.self_times.lock().unwrap_or_else(|e| e.into_inner());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        self_times.record(spans, &mut series.folded);
    }

    /// Adds each span's duration to its protocol's histogram. Nothing it
    /// reads changes once a span is built, so it runs as spans are built,
    /// while their attributes are still in the cache (read after the
    /// pipeline's hold, each span's first attribute read was a cache miss).
    pub fn record_durations(&self, spans: &[Span]) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let series = &mut *series;
        for span in spans {
            let Some(metric) = span.protocol.duration_metric else {
                continue;
            };
            // Looked up once: a span has a dozen attributes to search.
            let mut found = [None; MAX_METRIC_LABELS];
            for (value, label) in found.iter_mut().zip(metric.labels) {
                *value = span.attribute(label.attribute);
            }
            let values = &found[..metric.labels.len()];
            let mut hasher = foldhash::fast::FixedState::default().build_hasher();
            (metric as *const DurationMetric as usize).hash(&mut hasher);
            (span.kind as u8, Arc::as_ptr(&span.process) as usize).hash(&mut hasher);
            values.hash(&mut hasher);
            let hash = hasher.finish();
            let seconds = span.duration_ns() as f64 / 1e9;
            let cached = series.cache.get(&hash).and_then(|entries| {
                entries.iter().find(|c| {
                    std::ptr::eq(c.metric, metric)
                        && c.kind == span.kind
                        && Arc::ptr_eq(&c.process, &span.process)
                        && c.values
                            .iter()
                            .zip(values)
                            .all(|(kept, value)| kept.as_ref() == *value)
                })
            });
            if let Some(cached) = cached {
                cached.histogram.observe(seconds);
                continue;
            }
            let Some(histogram) = self.histogram(&mut series.folded, metric, span) else {
                continue;
            };
            histogram.observe(seconds);
            if series.cached >= MAX_CACHED_SERIES {
                series.cache.clear();
                series.cached = 0;
            }
            series.cached += 1;
            series.cache.entry(hash).or_default().push(CachedSeries {
                metric,
                kind: span.kind,
                process: span.process.clone(),
                values: values.iter().map(|value| value.cloned()).collect(),
                histogram,
            });
        }
    }

    /// The histogram of a span's series, its folded labels bounded per service.
    fn histogram(
        &self,
        folded: &mut HashMap<(&'static str, String), HashSet<String>>,
        metric: &'static DurationMetric,
        span: &Span,
    ) -> Option<Histogram> {
        let durations = self
            .durations
            .iter()
            .find(|d| std::ptr::eq(d.metric, metric))?;
        let histograms = match span.kind {
            SpanKind::Server => durations.server.as_ref()?,
            SpanKind::Client => &durations.client,
        };
        let process = process_labels(span);
        let service = process[0];
        let mut values: Vec<String> = process[..self.process_labels]
            .iter()
            .map(|v| v.to_string())
            .collect();
        for label in metric.labels {
            let text = span.attribute_text(label.attribute);
            values.push(match label.fold {
                Some(fold) => bounded(folded, label.name, service, fold(&text)),
                None => text,
            });
        }
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        Some(histograms.with_label_values(&values))
    }

    /// The text exposition format, health counters read now.
    pub fn render(&self) -> String {
        self.health.refresh();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `value` of the folded label `label`, or `OTHER_ROUTE` once the service
/// has `MAX_ROUTES_PER_SERVICE` others.
impl SelfTimes {
    fn record(
        &mut self,
        spans: &[Span],
        folded: &mut HashMap<(&'static str, String), HashSet<String>>,
    ) {
        for call in spans.iter().filter(|s| s.kind == SpanKind::Client) {
            let Some(parent) = call.parent_span_id else {
                continue;
            };
            if self.calls.len() >= MAX_WAITING_CALLS {
                self.calls.clear();
            }
            let interval = (call.start_unix_ns, call.end_unix_ns);
            self.calls.entry(parent).or_default().push(interval);
        }
        for span in spans.iter().filter(|s| s.kind == SpanKind::Server) {
            let calls = self.calls.remove(&span.span_id).unwrap_or_default();
            let own = self_time_ns(span.start_unix_ns, span.end_unix_ns, calls.into_iter());
            self.histogram_of(span, folded).observe(own as f64 / 1e9);
        }
    }

    fn histogram_of(
        &mut self,
        span: &Span,
        folded: &mut HashMap<(&'static str, String), HashSet<String>>,
    ) -> Histogram {
        let hash = foldhash::fast::FixedState::default()
            .hash_one((Arc::as_ptr(&span.process) as usize, span.name.as_str()));
        let found = self.series.get(&hash).and_then(|entries| {
            entries
                .iter()
                .find(|(p, o, _)| Arc::ptr_eq(p, &span.process) && *o == span.name)
        });
        if let Some((_, _, histogram)) = found {
            return histogram.clone();
        }
        let process = process_labels(span);
        // Span names come from the bytes: bounded per service like routes.
        let operation = bounded(folded, "operation", process[0], span.name.clone());
        let histogram = self
            .histogram
            .with_label_values(&[&process[..self.process_labels], &[operation.as_str()]].concat());
        if self.cached >= MAX_CACHED_SERIES {
            self.series.clear();
            self.cached = 0;
        }
        self.cached += 1;
        self.series.entry(hash).or_default().push((
            span.process.clone(),
            span.name.clone(),
            histogram.clone(),
        ));
        histogram
    }
}

fn bounded(
    folded: &mut HashMap<(&'static str, String), HashSet<String>>,
    label: &'static str,
    service: &str,
    value: String,
) -> String {
    let known = folded.entry((label, service.to_string())).or_default();
    if known.contains(&value) {
        return value;
    }
    if known.len() >= MAX_ROUTES_PER_SERVICE {
        return OTHER_ROUTE.to_string();
    }
    known.insert(value.clone());
    value
}

/// Reads one of `Stats`' counters.
type ReadStat = fn(&Stats) -> u64;

/// `Stats`' counters as metrics: name (in `tracer_<name>_total`), help, field.
const STATS_COUNTERS: &[(&str, &str, ReadStat)] = &[
    (
        "events_read",
        "Events read from the kernel's ring buffer.",
        |s| Stats::get(&s.events_read),
    ),
    ("event_bytes_read", "Bytes of those events.", |s| {
        Stats::get(&s.event_bytes_read)
    }),
    (
        "events_undecodable",
        "Events that did not decode (kernel and agent versions differ).",
        |s| Stats::get(&s.events_undecodable),
    ),
    (
        "parse_errors",
        "Bytes of a connection that did not parse as the protocol it was detected as.",
        |s| Stats::get(&s.parse_errors),
    ),
    (
        "connections_evicted",
        "Connections dropped because the table was full or they were idle.",
        |s| Stats::get(&s.connections_evicted),
    ),
    (
        "spans_produced",
        "Spans built from the traffic seen.",
        |s| Stats::get(&s.spans_produced),
    ),
    (
        "own_export_spans_skipped",
        "Server spans of the agent's own OTLP exports (to a collector on this node), skipped.",
        |s| Stats::get(&s.own_export_spans_skipped),
    ),
];

/// Moves a counter up to `value` (counters only go up).
fn raise(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Same for a labelled counter.
fn set(vec: &IntCounterVec, label: &str, value: u64) {
    raise(&vec.with_label_values(&[label]), value);
}

impl Health {
    /// Counters only go up, so each is moved up to the value it has now.
    fn refresh(&self) {
        let stats = &self.stats;
        for (counter, read) in &self.counters {
            raise(counter, read(stats));
        }
        self.connections_tracked
            .set(Stats::get(&stats.connections_tracked) as i64);
        if let Ok(links) = stats.links.lock() {
            for (name, value) in links.named() {
                set(&self.links, name, value);
            }
        }
        if let Some(kernel) = &self.kernel {
            let values = kernel.read();
            for (metric, counter) in &self.kernel_counters {
                if let Some((_, value)) = values.iter().find(|(c, _)| c == counter) {
                    raise(metric, *value);
                }
            }
        }
        for (name, exporter) in stats.exporters() {
            set(&self.exported, name, Stats::get(&exporter.spans_exported));
            set(&self.export_failures, name, Stats::get(&exporter.failures));
            set(&self.dropped, name, Stats::get(&exporter.spans_dropped));
            self.queued
                .with_label_values(&[name])
                .set(Stats::get(&exporter.queued) as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        process::ProcessInfo,
        protocols::{Protocol, http1::Http1},
        spans::{AttributeValue, SpanStatus},
    };

    #[test]
    fn every_duration_metric_has_room_for_its_labels() {
        for protocol in crate::protocols::PROTOCOLS {
            if let Some(metric) = protocol.facts().duration_metric {
                assert!(metric.labels.len() <= MAX_METRIC_LABELS);
            }
        }
    }

    fn span(kind: SpanKind, path: &str, status: i64, duration_ns: u64) -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: String::new(),
            kind,
            start_unix_ns: 1_000,
            end_unix_ns: 1_000 + duration_ns,
            attributes: vec![
                ("http.request.method", AttributeValue::Str("GET".into())),
                ("url.path", AttributeValue::Str(path.to_string().into())),
                ("http.response.status_code", AttributeValue::Int(status)),
            ],
            status: SpanStatus::Unset,
            protocol: Http1.facts(),
            process: Arc::new(ProcessInfo {
                pid: 7,
                service_name: "shop".into(),
                executable_name: "python3".into(),
                container_id: None,
                pod: None,
                team: "unowned".into(),
                go: false,
            }),
            tid: 7,
        }
    }

    #[test]
    fn histograms_by_route_with_ids_folded() {
        let stats = Arc::new(Stats::default());
        let metrics = Metrics::new(stats.clone(), None, false);
        metrics.record(&[
            span(SpanKind::Server, "/orders/1", 200, 3_000_000),
            span(SpanKind::Server, "/orders/2", 200, 30_000_000),
            span(SpanKind::Client, "/stock", 503, 1_000_000),
        ]);
        stats.add(&stats.spans_produced, 3);
        let text = metrics.render();
        assert!(
            text.contains(
                "http_server_request_duration_seconds_count{http_request_method=\"GET\",\
             http_response_status_code=\"200\",http_route=\"/orders/{id}\",service_name=\"shop\",team=\"unowned\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",\
             http_response_status_code=\"200\",http_route=\"/orders/{id}\",service_name=\"shop\",team=\"unowned\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(text.contains("http_client_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"503\",http_route=\"/stock\",service_name=\"shop\",team=\"unowned\"} 1"), "{text}");
        assert!(text.contains("tracer_spans_produced_total 3"), "{text}");
        // Read twice: counters stay at the value, not doubled.
        assert!(metrics.render().contains("tracer_spans_produced_total 3"));
    }

    /// A request of 100 ms that made calls at 10–30 ms and 20–50 ms (one
    /// of them in the batch before) spent 60 ms of its own.
    #[test]
    fn self_time_is_the_request_minus_its_calls() {
        let metrics = Metrics::new(Arc::new(Stats::default()), None, false);
        let call = |id: u8, from_ms: u64, to_ms: u64| Span {
            span_id: [id; 8],
            parent_span_id: Some([2; 8]),
            start_unix_ns: 1_000 + from_ms * 1_000_000,
            end_unix_ns: 1_000 + to_ms * 1_000_000,
            ..span(SpanKind::Client, "/stock", 200, 0)
        };
        metrics.record(&[call(3, 10, 30)]);
        let request = Span {
            name: "GET /orders/{id}".into(),
            ..span(SpanKind::Server, "/orders/1", 200, 100_000_000)
        };
        metrics.record(&[request, call(4, 20, 50)]);
        let text = metrics.render();
        let series = "operation=\"GET /orders/{id}\",service_name=\"shop\",team=\"unowned\"";
        assert!(
            text.contains(&format!("service_self_time_seconds_sum{{{series}}} 0.06")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "service_self_time_seconds_bucket{{{series},le=\"0.05\"}} 0"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "service_self_time_seconds_bucket{{{series},le=\"0.075\"}} 1"
            )),
            "{text}"
        );
    }

    #[test]
    fn on_kubernetes_the_namespace_is_a_label() {
        let metrics = Metrics::new(Arc::new(Stats::default()), None, true);
        let mut in_pod = span(SpanKind::Server, "/orders/1", 200, 3_000_000);
        in_pod.name = "GET /orders/{id}".into();
        Arc::make_mut(&mut in_pod.process).pod = Some(Arc::new(crate::kubernetes::PodContainer {
            pod_name: "shop-1".into(),
            namespace: "shop".into(),
            pod_uid: "u".into(),
            container_name: "web".into(),
            node_name: None,
            workload: None,
            labels: Default::default(),
        }));
        let on_the_host = span(SpanKind::Server, "/orders/2", 200, 3_000_000);
        metrics.record(&[in_pod, on_the_host]);
        let text = metrics.render();
        let route = "http_route=\"/orders/{id}\"";
        for namespace in ["shop", ""] {
            let line = format!(
                "http_server_request_duration_seconds_count{{http_request_method=\"GET\",\
                 http_response_status_code=\"200\",{route},k8s_namespace_name=\"{namespace}\",\
                 service_name=\"shop\",team=\"unowned\"}} 1"
            );
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(
            text.contains("service_self_time_seconds_count{k8s_namespace_name=\"shop\""),
            "{text}"
        );
    }

    #[test]
    fn routes_per_service_are_bounded() {
        let metrics = Metrics::new(Arc::new(Stats::default()), None, false);
        let spans: Vec<Span> = (0..MAX_ROUTES_PER_SERVICE + 50)
            .map(|i| {
                span(
                    SpanKind::Server,
                    &format!("/page-{}", "x".repeat(i % 300)),
                    200,
                    1,
                )
            })
            .collect();
        metrics.record(&spans);
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .count();
        assert_eq!(series, MAX_ROUTES_PER_SERVICE + 1);
        assert!(text.contains(OTHER_ROUTE));
    }
}
