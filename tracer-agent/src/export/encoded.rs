//! Spans encoded one by one as they are exported, kept until a request is
//! made of them: what the OTLP exporter queues instead of copies of the
//! spans (no clone of a span's strings). The buffers go round: a sent
//! batch's are reused for the next spans, since a quarter-MiB buffer freed
//! by one thread stays resident long after (the allocator keeps it for the
//! thread that made it).

use std::{collections::VecDeque, ops::Range, sync::Arc};

use super::{by_process, otlp_json, otlp_proto};
use crate::{process::ProcessInfo, spans::Span};

/// The encoding of a request's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OTLP protobuf (gRPC and HTTP).
    Protobuf,
    /// OTLP/JSON (HTTP).
    Json,
}

/// Encoded spans in the order they came, with the process each belongs to.
#[derive(Debug, Default)]
pub struct EncodedSpans {
    bytes: Vec<u8>,
    /// Per span: its process, and where its bytes end (each span's start
    /// where the one before ended).
    spans: Vec<(Arc<ProcessInfo>, usize)>,
}

impl EncodedSpans {
    #[cfg(test)]
    pub fn encode(format: Format, spans: &[Span]) -> Self {
        let mut encoded = EncodedSpans::default();
        encoded.add(format, spans);
        encoded
    }

    /// Encodes `spans` after those held.
    pub fn add(&mut self, format: Format, spans: &[Span]) {
        for span in spans {
            match format {
                Format::Protobuf => otlp_proto::write_span(span, &mut self.bytes),
                Format::Json => otlp_json::write_span(span, &mut self.bytes),
            }
            self.spans.push((span.process.clone(), self.bytes.len()));
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn span(&self, index: usize) -> (&Arc<ProcessInfo>, &[u8]) {
        let start = match index {
            0 => 0,
            _ => self.spans[index - 1].1,
        };
        let (process, end) = &self.spans[index];
        (process, &self.bytes[start..*end])
    }

    /// Appends the spans of `range` to `into`.
    fn copy_to(&self, range: Range<usize>, into: &mut EncodedSpans) {
        for index in range {
            let (process, bytes) = self.span(index);
            into.bytes.extend_from_slice(bytes);
            into.spans.push((process.clone(), into.bytes.len()));
        }
    }

    /// One `ExportTraceServiceRequest` of these spans (encoded in `format`),
    /// grouped by process, in `out` (emptied first).
    pub fn write_request(&self, format: Format, host_name: &str, out: &mut Vec<u8>) {
        out.clear();
        let groups = by_process((0..self.len()).map(|index| self.span(index)));
        let copy = |bytes: &[u8], out: &mut Vec<u8>| out.extend_from_slice(bytes);
        match format {
            Format::Protobuf => otlp_proto::write_request(groups, host_name, out, copy),
            Format::Json => otlp_json::write_request(groups, host_name, out, copy),
        }
    }

    #[cfg(test)]
    pub fn request(&self, format: Format, host_name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_request(format, host_name, &mut out);
        out
    }
}

/// Buffers kept for reuse at most, and the largest kept.
const MAX_SPARES: usize = 8;
const MAX_SPARE_BYTES: usize = 1 << 20;

/// Encoded spans waiting, oldest first, taken from the front in batches.
#[derive(Debug, Default)]
pub struct SpanQueue {
    /// One entry per export call.
    chunks: VecDeque<EncodedSpans>,
    /// Spans of the front chunk already taken.
    front_taken: usize,
    len: usize,
    /// Emptied buffers of sent batches, to encode into.
    spares: Vec<EncodedSpans>,
}

impl SpanQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, spans: EncodedSpans) {
        if spans.is_empty() {
            self.recycle(spans);
        } else {
            self.len += spans.len();
            self.chunks.push_back(spans);
        }
    }

    /// An empty buffer to encode spans into: a spent one when there is one.
    pub fn spare(&mut self) -> EncodedSpans {
        self.spares.pop().unwrap_or_default()
    }

    /// Keeps the buffers of spans sent (or given up) for reuse.
    pub fn recycle(&mut self, mut spent: EncodedSpans) {
        if self.spares.len() < MAX_SPARES && spent.bytes.capacity() <= MAX_SPARE_BYTES {
            spent.bytes.clear();
            spent.spans.clear();
            self.spares.push(spent);
        }
    }

    /// The oldest `n` spans at most, removed from the queue.
    pub fn take(&mut self, n: usize) -> EncodedSpans {
        let mut batch = self.spare();
        while batch.len() < n
            && let Some(front) = self.chunks.front()
        {
            let available = front.len() - self.front_taken;
            let taken = available.min(n - batch.len());
            if batch.is_empty() && self.front_taken == 0 && taken == available {
                // A whole chunk moves, uncopied.
                let unused =
                    std::mem::replace(&mut batch, self.chunks.pop_front().expect("just looked"));
                self.recycle(unused);
                continue;
            }
            front.copy_to(self.front_taken..self.front_taken + taken, &mut batch);
            self.front_taken += taken;
            if self.front_taken == front.len() {
                let spent = self.chunks.pop_front().expect("just looked");
                self.recycle(spent);
                self.front_taken = 0;
            }
        }
        self.len -= batch.len();
        batch
    }

    /// Empties the queue; returns how many spans it held.
    pub fn clear(&mut self) -> usize {
        let held = self.len;
        self.chunks.clear();
        self.front_taken = 0;
        self.len = 0;
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::fixtures::{process, span},
        spans::SpanStatus,
    };

    fn spans(names: &[&str]) -> Vec<Span> {
        let shop = process(42, "shop", None);
        let cart = process(7, "cart", None);
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                span(
                    if i % 2 == 0 { &shop } else { &cart },
                    name,
                    SpanStatus::Unset,
                )
            })
            .collect()
    }

    /// Batches taken across and within chunks hold the spans in order,
    /// byte for byte as they were encoded.
    #[test]
    fn batches_keep_order_and_bytes() {
        let names: Vec<String> = (0..10).map(|i| format!("GET /{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let all = spans(&names);
        let whole = EncodedSpans::encode(Format::Json, &all);
        let mut queue = SpanQueue::default();
        queue.push(EncodedSpans::encode(Format::Json, &all[..3]));
        queue.push(EncodedSpans::encode(Format::Json, &[]));
        queue.push(EncodedSpans::encode(Format::Json, &all[3..7]));
        queue.push(EncodedSpans::encode(Format::Json, &all[7..]));
        assert_eq!(queue.len(), 10);
        let mut taken = Vec::new();
        for n in [3, 2, 4, 5, 1] {
            let batch = queue.take(n);
            assert!(batch.len() <= n);
            for index in 0..batch.len() {
                let (process, bytes) = batch.span(index);
                taken.push((process.pid, bytes.to_vec()));
            }
        }
        assert!(queue.is_empty());
        let expected: Vec<_> = (0..whole.len())
            .map(|index| {
                let (process, bytes) = whole.span(index);
                (process.pid, bytes.to_vec())
            })
            .collect();
        assert_eq!(taken, expected);
        assert!(queue.take(4).is_empty());
    }

    #[test]
    fn clearing_counts_what_was_held() {
        let mut queue = SpanQueue::default();
        queue.push(EncodedSpans::encode(
            Format::Protobuf,
            &spans(&["a", "b", "c"]),
        ));
        assert_eq!(queue.take(1).len(), 1);
        assert_eq!(queue.clear(), 2);
        assert!(queue.is_empty());
    }
}
