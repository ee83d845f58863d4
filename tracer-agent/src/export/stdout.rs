//! One readable line per span on stdout.

use std::{
    io::{BufWriter, Stdout, Write},
    sync::Arc,
};

use super::{Exporter, ShutdownFuture, count_write};
use crate::{
    spans::{Span, SpanKind, hex},
    stats::ExporterStats,
};

pub struct StdoutExporter {
    out: BufWriter<Stdout>,
    stats: Arc<ExporterStats>,
}

impl StdoutExporter {
    pub fn new(stats: Arc<ExporterStats>) -> Self {
        StdoutExporter {
            out: BufWriter::new(std::io::stdout()),
            stats,
        }
    }

    fn write(&mut self, spans: &[Span]) -> std::io::Result<()> {
        for span in spans {
            writeln!(self.out, "{}", line(span))?;
        }
        self.out.flush()
    }
}

/// `SERVER checkout GET /cart/{id} 200 1.234ms trace=… span=… parent=…`:
/// the span's name, then its outcome as its protocol names it.
pub fn line(span: &Span) -> String {
    let outcome = match span.attribute_text(span.protocol.outcome_attribute) {
        outcome if outcome.is_empty() => "-".to_string(),
        outcome => outcome,
    };
    let parent = match span.parent_span_id {
        Some(id) => format!(" parent={}", hex(&id)),
        None => String::new(),
    };
    format!(
        "{kind} {service} {name} {outcome} {ms:.3}ms trace={trace} span={span_id}{parent}",
        kind = match span.kind {
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
        },
        service = span.process.service_name,
        name = span.name,
        ms = span.duration_ns() as f64 / 1e6,
        trace = hex(&span.trace_id),
        span_id = hex(&span.span_id),
    )
}

impl Exporter for StdoutExporter {
    fn export(&mut self, spans: &[Span]) {
        let result = self.write(spans);
        count_write("stdout", &self.stats, spans.len(), result);
    }

    fn shutdown(&mut self) -> ShutdownFuture<'_> {
        let result = self.out.flush();
        count_write("stdout", &self.stats, 0, result);
        Box::pin(std::future::ready(()))
    }
}
