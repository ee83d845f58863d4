//! Across traces: which service and hop take the most critical-path time,
//! and which originate the errors, for a slice of traffic (the slowest
//! share, the failing ones, one entry service or operation), beside the
//! same slice of the window before, so that what changed stands out.

use std::collections::HashSet;

use foldhash::HashMap;
use serde::Serialize;

use super::critical_path::of_trace;
use crate::spans::{Span, SpanKind, SpanStatus, hex};

/// Which traces to look at.
#[derive(Debug, Clone, Default)]
pub struct BottleneckQuery {
    /// Only traces at or above this quantile of duration (0.9: the slowest
    /// tenth); 0 takes all.
    pub quantile: f64,
    /// Only traces with an error.
    pub errors_only: bool,
    /// Only traces whose root span is this service's / has this name.
    pub entry_service: Option<String>,
    pub entry_operation: Option<String>,
}

/// One place time goes: a server span's own work (`gap` false), or a call
/// (`gap` true): the gap between a client span and its server span
/// (network, queueing, a proxy), the whole call when its callee is not
/// traced (a database).
#[derive(Debug, Serialize, PartialEq)]
pub struct Bottleneck {
    pub service: String,
    pub team: String,
    pub operation: String,
    pub gap: bool,
    /// Of all critical-path time in the slice, the share this takes (0–1).
    pub critical_path_share: f64,
    /// The same in the window before (the baseline).
    pub baseline_share: f64,
    pub self_time_p50_ms: f64,
    pub self_time_p95_ms: f64,
    /// Failing spans with no failing span below them: where errors start.
    pub error_origin_count: u64,
    /// Traces to look at, slowest first.
    pub example_trace_ids: Vec<String>,
}

/// Examples kept per entry.
const EXAMPLES: usize = 3;

/// Per entry while the traces are read.
#[derive(Default)]
struct Tally {
    team: String,
    critical_ns: u64,
    self_ns: Vec<u64>,
    error_origins: u64,
    /// (trace duration, trace id), the slowest kept.
    examples: Vec<(u64, [u8; 16])>,
}

type Key = (String, String, bool);

/// The entries of `current` ranked by critical-path share (error origins
/// after), each with its share in `baseline`.
pub fn rank<'a>(
    current: impl Iterator<Item = &'a [Span]>,
    baseline: impl Iterator<Item = &'a [Span]>,
    query: &BottleneckQuery,
) -> Vec<Bottleneck> {
    let (tallies, total) = tally(select(current, query));
    let (base, base_total) = tally(select(baseline, query));
    let share = |ns: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            ns as f64 / total as f64
        }
    };
    let mut ranked: Vec<Bottleneck> = tallies
        .into_iter()
        .map(|((service, operation, gap), mut t)| {
            t.self_ns.sort_unstable();
            t.examples.sort_unstable_by(|a, b| b.cmp(a));
            let baseline_share = base
                .get(&(service.clone(), operation.clone(), gap))
                .map_or(0.0, |b| share(b.critical_ns, base_total));
            Bottleneck {
                critical_path_share: share(t.critical_ns, total),
                baseline_share,
                self_time_p50_ms: percentile_ms(&t.self_ns, 0.5),
                self_time_p95_ms: percentile_ms(&t.self_ns, 0.95),
                error_origin_count: t.error_origins,
                example_trace_ids: t.examples.iter().map(|(_, id)| hex(id)).collect(),
                team: t.team,
                service,
                operation,
                gap,
            }
        })
        .filter(|b| b.critical_path_share > 0.0 || b.error_origin_count > 0)
        .collect();
    ranked.sort_by(|a, b| {
        b.critical_path_share
            .total_cmp(&a.critical_path_share)
            .then(b.error_origin_count.cmp(&a.error_origin_count))
            .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
    });
    ranked
}

/// The traces of the slice.
fn select<'a>(
    traces: impl Iterator<Item = &'a [Span]>,
    query: &BottleneckQuery,
) -> Vec<&'a [Span]> {
    let mut chosen: Vec<(&[Span], u64)> = traces
        .filter(|spans| !spans.is_empty())
        .filter(|spans| {
            let root = root(spans);
            query
                .entry_service
                .as_ref()
                .is_none_or(|s| *s == root.process.service_name)
                && query
                    .entry_operation
                    .as_ref()
                    .is_none_or(|o| *o == root.name)
                && (!query.errors_only || spans.iter().any(failed))
        })
        .map(|spans| (spans, duration(spans)))
        .collect();
    if query.quantile > 0.0 && !chosen.is_empty() {
        let mut durations: Vec<u64> = chosen.iter().map(|(_, d)| *d).collect();
        durations.sort_unstable();
        let at =
            ((durations.len() as f64 * query.quantile.min(1.0)) as usize).min(durations.len() - 1);
        let threshold = durations[at];
        chosen.retain(|(_, d)| *d >= threshold);
    }
    chosen.into_iter().map(|(spans, _)| spans).collect()
}

/// Adds up where each trace's critical path went; returns the entries and
/// the whole critical-path time.
fn tally(traces: Vec<&[Span]>) -> (HashMap<Key, Tally>, u64) {
    let mut tallies: HashMap<Key, Tally> = HashMap::default();
    let mut total = 0;
    for spans in traces {
        let (path, times) = of_trace(spans);
        let trace_ns = duration(spans);
        let mut in_trace: HashSet<Key> = HashSet::new();
        for segment in &path {
            let span = &spans[segment.span];
            let ns = segment.end - segment.start;
            total += ns;
            tally_of(&mut tallies, span, segment.gap).critical_ns += ns;
            in_trace.insert(key_of(span, segment.gap));
        }
        for (span, times) in spans.iter().zip(&times) {
            let tally = tally_of(&mut tallies, span, span.kind == SpanKind::Client);
            tally.self_ns.push(times.self_ns);
            if failed(span) && !has_failing_child(spans, span) {
                tally.error_origins += 1;
            }
        }
        for key in in_trace {
            if let Some(tally) = tallies.get_mut(&key) {
                keep_example(&mut tally.examples, (trace_ns, spans[0].trace_id));
            }
        }
    }
    (tallies, total)
}

fn key_of(span: &Span, gap: bool) -> Key {
    (span.process.service_name.clone(), span.name.clone(), gap)
}

fn tally_of<'t>(tallies: &'t mut HashMap<Key, Tally>, span: &Span, gap: bool) -> &'t mut Tally {
    tallies.entry(key_of(span, gap)).or_insert_with(|| Tally {
        team: span.process.team.clone(),
        ..Tally::default()
    })
}

fn keep_example(examples: &mut Vec<(u64, [u8; 16])>, example: (u64, [u8; 16])) {
    if examples.len() < EXAMPLES {
        examples.push(example);
    } else if let Some(fastest) = examples.iter_mut().min()
        && example > *fastest
    {
        *fastest = example;
    }
}

/// The earliest span whose parent is not in the trace.
fn root(spans: &[Span]) -> &Span {
    let ids: HashSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
    spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| s.start_unix_ns)
        .unwrap_or(&spans[0])
}

fn duration(spans: &[Span]) -> u64 {
    let start = spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_ns).max().unwrap_or(start);
    end.saturating_sub(start)
}

fn failed(span: &Span) -> bool {
    matches!(span.status, SpanStatus::Error(_))
}

fn has_failing_child(spans: &[Span], parent: &Span) -> bool {
    spans.iter().any(|s| {
        s.parent_span_id == Some(parent.span_id) && s.span_id != parent.span_id && failed(s)
    })
}

fn percentile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::process::ProcessInfo;

    /// One span of trace `trace`: `id`, its parent, client or server, its
    /// service and name, its milliseconds, whether it failed.
    struct Shape<'a> {
        id: u8,
        parent: Option<u8>,
        client: bool,
        service: &'a str,
        name: &'a str,
        ms: (u64, u64),
        failed: bool,
    }

    fn span(trace: u8, shape: &Shape) -> Span {
        let at = |ms: u64| 1_000_000_000 + ms * 1_000_000;
        Span {
            trace_id: [trace; 16],
            span_id: [shape.id; 8],
            parent_span_id: shape.parent.map(|p| [p; 8]),
            name: shape.name.into(),
            kind: if shape.client {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            start_unix_ns: at(shape.ms.0),
            end_unix_ns: at(shape.ms.1),
            attributes: Vec::new(),
            status: if shape.failed {
                SpanStatus::Error("500".into())
            } else {
                SpanStatus::Unset
            },
            protocol: &crate::protocols::http1::FACTS,
            process: Arc::new(ProcessInfo {
                pid: 1,
                service_name: shape.service.into(),
                executable_name: "x".into(),
                container_id: None,
                pod: None,
                team: format!("team-{}", shape.service),
                go: false,
            }),
            tid: 1,
        }
    }

    /// front calls pay (slow: `pay_ms`), then stock (failing or not).
    fn checkout(trace: u8, pay_ms: u64, stock_fails: bool) -> Vec<Span> {
        let pay_end = 2 + pay_ms;
        let shapes = [
            (
                "front",
                "GET /checkout",
                None,
                false,
                (0, pay_end + 10),
                stock_fails,
            ),
            ("front", "POST /pay", Some(1), true, (1, pay_end + 1), false),
            ("pay", "POST /pay", Some(2), false, (2, pay_end), false),
            (
                "front",
                "GET /stock",
                Some(1),
                true,
                (pay_end + 2, pay_end + 8),
                stock_fails,
            ),
            (
                "stock",
                "GET /stock",
                Some(4),
                false,
                (pay_end + 3, pay_end + 7),
                stock_fails,
            ),
        ];
        shapes
            .iter()
            .enumerate()
            .map(|(i, (service, name, parent, client, ms, failed))| {
                span(
                    trace,
                    &Shape {
                        id: i as u8 + 1,
                        parent: *parent,
                        client: *client,
                        service,
                        name,
                        ms: *ms,
                        failed: *failed,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_slow_hop_ranks_first_and_the_failing_one_is_the_origin() {
        // Seven normal checkouts, three with pay slow, two with stock failing.
        let mut current: Vec<Vec<Span>> = (0..7).map(|t| checkout(t, 5, t < 2)).collect();
        current.extend((7..10).map(|t| checkout(t, 80, false)));
        let baseline: Vec<Vec<Span>> = (20..30).map(|t| checkout(t, 5, false)).collect();
        let slowest = BottleneckQuery {
            quantile: 0.7,
            ..Default::default()
        };
        let ranked = rank(
            current.iter().map(Vec::as_slice),
            baseline.iter().map(Vec::as_slice),
            &slowest,
        );
        let first = &ranked[0];
        assert_eq!(
            (first.service.as_str(), first.operation.as_str(), first.gap),
            ("pay", "POST /pay", false)
        );
        assert_eq!(first.team, "team-pay");
        assert!(first.critical_path_share > 0.8, "{first:?}");
        assert!(first.baseline_share < 0.3, "{first:?}");
        assert_eq!(first.self_time_p50_ms, 80.0);
        assert_eq!(first.example_trace_ids.len(), 3);
        let total: f64 = ranked.iter().map(|b| b.critical_path_share).sum();
        assert!((total - 1.0).abs() < 1e-9);

        let all = rank(
            current.iter().map(Vec::as_slice),
            std::iter::empty(),
            &BottleneckQuery::default(),
        );
        let origins: Vec<(&str, bool, u64)> = all
            .iter()
            .filter(|b| b.error_origin_count > 0)
            .map(|b| (b.service.as_str(), b.gap, b.error_origin_count))
            .collect();
        assert_eq!(
            origins,
            [("stock", false, 2)],
            "not the spans that passed it on"
        );
        let errors = rank(
            current.iter().map(Vec::as_slice),
            std::iter::empty(),
            &BottleneckQuery {
                errors_only: true,
                ..Default::default()
            },
        );
        assert!(errors.iter().all(|b| {
            b.example_trace_ids
                .iter()
                .all(|id| id.starts_with("00") || id.starts_with("01"))
        }));
        let other_entry = rank(
            current.iter().map(Vec::as_slice),
            std::iter::empty(),
            &BottleneckQuery {
                entry_service: Some("pay".into()),
                ..Default::default()
            },
        );
        assert!(other_entry.is_empty(), "pay is never a trace's entry");
    }
}
