//! Where spans go. Each exporter takes batches of spans in order, counts what
//! became of them in its `ExporterStats`, and is shut down (what is left
//! written or sent) before the agent exits.

pub mod encoded;
pub mod file;
pub mod otlp;
#[cfg(test)]
mod otlp_convert;
pub mod otlp_json;
pub mod otlp_proto;
pub mod stdout;

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use crate::{process::ProcessInfo, spans::Span, stats::ExporterStats};

/// The User-Agent of the agent's own OTLP/HTTP requests. A collector on a
/// traced node would otherwise yield a server span for each export, which
/// would be exported in turn, without end: those spans are skipped.
pub const OWN_USER_AGENT: &str = concat!("tracer-agent/", env!("CARGO_PKG_VERSION"));

/// A server span for one of the agent's own exports.
pub fn is_own_export(span: &Span) -> bool {
    span.kind == crate::spans::SpanKind::Server
        && matches!(
            span.attribute("user_agent.original"),
            Some(crate::spans::AttributeValue::Str(agent)) if agent == OWN_USER_AGENT
        )
}

/// A process and its items (spans, or their encodings).
pub type ProcessGroup<'a, T> = (&'a Arc<ProcessInfo>, Vec<T>);

/// Items (spans, or their encodings) grouped by the process (resource)
/// they belong to, in (pid, service name) order; each group keeps the
/// items' order.
pub fn by_process<'a, T>(
    items: impl IntoIterator<Item = (&'a Arc<ProcessInfo>, T)>,
) -> impl Iterator<Item = ProcessGroup<'a, T>> {
    let mut groups: BTreeMap<(u32, &str), ProcessGroup<T>> = BTreeMap::new();
    for (process, item) in items {
        groups
            .entry((process.pid, process.service_name.as_str()))
            .or_insert_with(|| (process, Vec::new()))
            .1
            .push(item);
    }
    groups.into_values()
}

/// The spans of `spans` by process.
pub fn spans_by_process(spans: &[Span]) -> impl Iterator<Item = (&Arc<ProcessInfo>, Vec<&Span>)> {
    by_process(spans.iter().map(|span| (&span.process, span)))
}

pub type ShutdownFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Exporter: Send {
    /// Hands over a batch: written at once, or queued by an exporter that
    /// sends in the background.
    fn export(&mut self, spans: &[Span]);
    /// Writes or sends what is left; called once, when the agent stops.
    fn shutdown(&mut self) -> ShutdownFuture<'_>;
}

/// Counts the outcome of writing `spans` spans at once (stdout, file); the
/// first failure is logged, later ones only counted.
fn count_write(name: &str, stats: &ExporterStats, spans: usize, result: std::io::Result<()>) {
    match result {
        Ok(()) => {
            stats
                .spans_exported
                .fetch_add(spans as u64, Ordering::Relaxed);
        }
        Err(e) => {
            if stats.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("{name} exporter: writing {spans} spans failed: {e}");
            }
            stats
                .spans_dropped
                .fetch_add(spans as u64, Ordering::Relaxed);
        }
    }
}

/// Spans for the encoders' tests: a process with a pod when it has a
/// container, a span with text, int and empty attributes.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;

    use crate::{
        kubernetes::PodContainer,
        process::ProcessInfo,
        spans::{AttributeValue, Span, SpanKind, SpanStatus},
    };

    pub fn process(pid: u32, service: &str, container: Option<&str>) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo {
            pid,
            service_name: service.into(),
            executable_name: "python3".into(),
            container_id: container.map(Into::into),
            pod: container.map(|_| {
                Arc::new(PodContainer {
                    pod_name: "checkout-7d9f8b6c5-x2x4z".into(),
                    namespace: "shop".into(),
                    pod_uid: "u".into(),
                    container_name: "web".into(),
                    node_name: Some("node-1".into()),
                    workload: Some(("k8s.deployment.name", "checkout".into())),
                    labels: Default::default(),
                })
            }),
            team: "unowned".into(),
            go: false,
        })
    }

    pub fn span(process: &Arc<ProcessInfo>, name: &str, status: SpanStatus) -> Span {
        Span {
            trace_id: [0xab; 16],
            span_id: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            parent_span_id: None,
            name: name.into(),
            kind: SpanKind::Server,
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: u64::MAX,
            attributes: vec![
                ("url.path", AttributeValue::Str(name.to_string().into())),
                ("http.response.status_code", AttributeValue::Int(-500)),
                ("empty", AttributeValue::Str("".into())),
            ],
            status,
            protocol: &crate::protocols::http1::FACTS,
            process: process.clone(),
            tid: 43,
        }
    }
}
