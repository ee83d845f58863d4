//! A trace's critical path: the chain of spans that decides its end-to-end
//! time, and what each span adds to it.
//!
//! From the root's end, walking back in time: the child that ended last
//! (before the point reached) is what the parent waited for, so the path
//! goes down into it; from that child's start, the parent's earlier
//! children are looked at the same way; stretches where no child runs are
//! the parent's own time on the path. A client span's own time is the gap
//! between it and its server span (network, queueing, a proxy's
//! buffering), kept as its own kind of segment.

use foldhash::HashMap;

use crate::spans::{Span, SpanKind, self_time_ns};

/// The critical path from the trace's root (its earliest span whose
/// parent is not in it), and each span's self and critical-path times.
pub fn of_trace(spans: &[Span]) -> (Vec<Segment>, Vec<SpanTimes>) {
    let index: HashMap<[u8; 8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let timings: Vec<Timing> = spans
        .iter()
        .map(|s| Timing {
            start: s.start_unix_ns,
            end: s.end_unix_ns.max(s.start_unix_ns),
            parent: s.parent_span_id.and_then(|p| index.get(&p).copied()),
            client: s.kind == SpanKind::Client,
        })
        .collect();
    let root = (0..spans.len())
        .filter(|&i| timings[i].parent.is_none())
        .min_by_key(|&i| timings[i].start)
        .unwrap_or(0);
    critical_path(&timings, root)
}

/// What the walk needs of a span (times in ns).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub start: u64,
    pub end: u64,
    /// Index of its parent among the trace's spans.
    pub parent: Option<usize>,
    pub client: bool,
}

/// One stretch of the critical path: span `span` alone decided
/// `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub span: usize,
    pub start: u64,
    pub end: u64,
    /// A client span's own time: between the call and its callee's span.
    pub gap: bool,
}

/// Per span: its self-time (its time minus that of its children, overlaps
/// counted once) and its share of the critical path (0 off the path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanTimes {
    pub self_ns: u64,
    pub critical_ns: u64,
}

/// Deeper than this, the walk stops (a cycle of parents in bad input
/// cannot recurse forever).
const MAX_DEPTH: usize = 256;

/// The critical path from `root`, in time order, and each span's times.
pub fn critical_path(spans: &[Timing], root: usize) -> (Vec<Segment>, Vec<SpanTimes>) {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    for (i, span) in spans.iter().enumerate() {
        if let Some(parent) = span.parent.filter(|&p| p < spans.len() && p != i) {
            children[parent].push(i);
        }
    }
    let mut times: Vec<SpanTimes> = spans
        .iter()
        .enumerate()
        .map(|(i, span)| SpanTimes {
            self_ns: self_time_ns(
                span.start,
                span.end,
                children[i].iter().map(|&c| (spans[c].start, spans[c].end)),
            ),
            critical_ns: 0,
        })
        .collect();
    let mut segments = Vec::new();
    if let Some(span) = spans.get(root) {
        walk(
            spans,
            &children,
            root,
            span.start,
            span.end,
            0,
            &mut segments,
        );
    }
    segments.reverse();
    for segment in &segments {
        times[segment.span].critical_ns += segment.end - segment.start;
    }
    (segments, times)
}

/// The path through `span` between `from` and `until` (its part of the
/// parent's window), appended latest first.
fn walk(
    spans: &[Timing],
    children: &[Vec<usize>],
    span: usize,
    from: u64,
    until: u64,
    depth: usize,
    out: &mut Vec<Segment>,
) {
    let gap = spans[span].client;
    let own = |out: &mut Vec<Segment>, start: u64, end: u64| {
        if end > start {
            out.push(Segment {
                span,
                start,
                end,
                gap,
            });
        }
    };
    if depth >= MAX_DEPTH {
        own(out, from, until);
        return;
    }
    let mut cursor = until;
    loop {
        // The child that ended last before the cursor, and started after `from`.
        let last = children[span]
            .iter()
            .copied()
            .filter(|&c| spans[c].start < cursor && spans[c].end > from)
            .max_by_key(|&c| (spans[c].end.min(cursor), spans[c].start));
        let Some(child) = last else {
            own(out, from, cursor);
            return;
        };
        let child_end = spans[child].end.min(cursor);
        let child_start = spans[child].start.max(from);
        own(out, child_end, cursor);
        walk(
            spans,
            children,
            child,
            child_start,
            child_end,
            depth + 1,
            out,
        );
        cursor = child_start;
        if cursor <= from {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64, parent: Option<usize>, client: bool) -> Timing {
        Timing {
            start,
            end,
            parent,
            client,
        }
    }

    /// front (0..100) calls auth (10..20) then, in parallel, stock
    /// (30..60) and pricing (30..90): pricing decides, stock does not.
    #[test]
    fn the_slowest_of_parallel_calls_is_on_the_path() {
        let spans = [
            span(0, 100, None, false),    // 0 front server
            span(10, 20, Some(0), true),  // 1 call auth
            span(12, 18, Some(1), false), // 2 auth server
            span(30, 60, Some(0), true),  // 3 call stock
            span(31, 59, Some(3), false), // 4 stock server
            span(30, 90, Some(0), true),  // 5 call pricing
            span(32, 88, Some(5), false), // 6 pricing server
        ];
        let (path, times) = critical_path(&spans, 0);
        let chain: Vec<(usize, u64, u64, bool)> = path
            .iter()
            .map(|s| (s.span, s.start, s.end, s.gap))
            .collect();
        assert_eq!(
            chain,
            [
                (0, 0, 10, false),
                (1, 10, 12, true),
                (2, 12, 18, false),
                (1, 18, 20, true),
                (0, 20, 30, false),
                (5, 30, 32, true),
                (6, 32, 88, false),
                (5, 88, 90, true),
                (0, 90, 100, false),
            ]
        );
        assert_eq!(times[4].critical_ns, 0, "stock is off the path");
        assert_eq!(times[4].self_ns, 28);
        assert_eq!(times[0].critical_ns, 30);
        assert_eq!(
            times[0].self_ns,
            100 - 10 - 60,
            "overlapping calls count once"
        );
        assert_eq!(times[6].critical_ns, 56);
        assert_eq!(times[5].critical_ns, 4, "the gap around pricing");
        let total: u64 = times.iter().map(|t| t.critical_ns).sum();
        assert_eq!(total, 100, "the path covers the root's time exactly");
    }

    /// Children that outlive their parent (clock skew, fire-and-forget)
    /// and bad parents never break the walk.
    #[test]
    fn odd_shapes_are_clipped_not_followed_out() {
        let spans = [
            span(0, 50, None, false),
            span(40, 80, Some(0), true),  // ends after its parent
            span(60, 70, Some(1), false), // entirely after the root ends
            span(10, 20, Some(3), false), // its own parent
            span(0, 0, Some(99), false),  // a parent not in the trace
        ];
        let (path, times) = critical_path(&spans, 0);
        let total: u64 = path.iter().map(|s| s.end - s.start).sum();
        assert_eq!(total, 50);
        assert_eq!(times[1].critical_ns, 10, "clipped to the root's end");
        assert_eq!(times[2].critical_ns, 0);
        assert_eq!(critical_path(&spans, 7).0, []);
        assert!(critical_path(&[], 0).0.is_empty());
    }

    /// A chain deeper than the walk follows ends there, its time kept.
    #[test]
    fn deep_chains_stop_at_the_depth_limit() {
        let spans: Vec<Timing> = (0..1000u64)
            .map(|i| span(i, 2000 - i, i.checked_sub(1).map(|p| p as usize), false))
            .collect();
        let (path, _) = critical_path(&spans, 0);
        let total: u64 = path.iter().map(|s| s.end - s.start).sum();
        assert_eq!(total, 2000);
    }
}
