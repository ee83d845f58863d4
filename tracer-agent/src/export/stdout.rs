//! One readable line per span on stdout.

use std::{
    io::{BufWriter, Stdout, Write},
    sync::Arc,
};

use super::{Exporter, ShutdownFuture, count_write};
use crate::{
    spans::{AttributeValue, Span, SpanKind, write_hex},
    stats::ExporterStats,
};

pub struct StdoutExporter {
    out: BufWriter<Stdout>,
    /// One line at a time, reused: building lines with `format!` was a
    /// quarter of the agent's time when it printed them.
    line: Vec<u8>,
    stats: Arc<ExporterStats>,
}

impl StdoutExporter {
    pub fn new(stats: Arc<ExporterStats>) -> Self {
        StdoutExporter {
            out: BufWriter::new(std::io::stdout()),
            line: Vec::new(),
            stats,
        }
    }

    fn write(&mut self, spans: &[Span]) -> std::io::Result<()> {
        for span in spans {
            self.line.clear();
            write_line(&mut self.line, span);
            self.out.write_all(&self.line)?;
        }
        self.out.flush()
    }
}

/// `SERVER checkout GET /cart/{id} 200 1.234ms trace=… span=… parent=…`
/// and a newline: the span's name, then its outcome as its protocol names
/// it ("-" when it has none).
pub fn write_line(out: &mut Vec<u8>, span: &Span) {
    out.extend_from_slice(match span.kind {
        SpanKind::Server => b"SERVER ",
        SpanKind::Client => b"CLIENT ",
    });
    out.extend_from_slice(span.process.service_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(span.name.as_bytes());
    out.push(b' ');
    match span.attribute(span.protocol.outcome_attribute) {
        Some(AttributeValue::Str(text)) if !text.is_empty() => {
            out.extend_from_slice(text.as_bytes())
        }
        Some(AttributeValue::Int(value)) => {
            out.extend_from_slice(itoa::Buffer::new().format(*value).as_bytes())
        }
        _ => out.push(b'-'),
    }
    out.push(b' ');
    // Milliseconds with three decimals, rounded to the microsecond.
    let micros = span.duration_ns().saturating_add(500) / 1000;
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let fraction = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
    out.extend_from_slice(b"ms trace=");
    write_hex(out, &span.trace_id);
    out.extend_from_slice(b" span=");
    write_hex(out, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        out.extend_from_slice(b" parent=");
        write_hex(out, parent);
    }
    out.push(b'\n');
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::fixtures::{process, span},
        spans::SpanStatus,
    };

    fn line(span: &Span) -> String {
        let mut out = Vec::new();
        write_line(&mut out, span);
        String::from_utf8(out).expect("a line is text")
    }

    #[test]
    fn a_line_names_the_span_its_outcome_duration_and_ids() {
        let mut server = span(
            &process(7, "checkout", None),
            "GET /cart",
            SpanStatus::Unset,
        );
        server.attributes[1].1 = AttributeValue::Int(200);
        server.end_unix_ns = server.start_unix_ns + 1_234_567;
        assert_eq!(
            line(&server),
            "SERVER checkout GET /cart 200 1.235ms \
             trace=abababababababababababababababab span=0123456789abcdef\n"
        );
        let mut client = server.clone();
        client.kind = SpanKind::Client;
        client.parent_span_id = Some([0xff; 8]);
        client.end_unix_ns = client.start_unix_ns + 999;
        client.attributes.clear();
        assert!(
            line(&client).starts_with("CLIENT checkout GET /cart - 0.001ms "),
            "{}",
            line(&client)
        );
        assert!(line(&client).ends_with(" parent=ffffffffffffffff\n"));
    }

    #[test]
    fn an_end_before_the_start_is_zero_and_a_huge_duration_is_whole() {
        let mut backwards = span(&process(7, "checkout", None), "GET /", SpanStatus::Unset);
        backwards.end_unix_ns = backwards.start_unix_ns - 1;
        assert!(line(&backwards).contains(" 0.000ms "));
        let mut endless = backwards.clone();
        endless.start_unix_ns = 0;
        endless.end_unix_ns = u64::MAX;
        assert!(
            line(&endless).contains(" 18446744073709.551ms "),
            "{}",
            line(&endless)
        );
    }
}
