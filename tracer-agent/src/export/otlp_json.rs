//! Spans → one OTLP/JSON `ExportTraceServiceRequest`, written straight into a
//! reused buffer.
//!
//! The bytes are exactly what `serde_json` makes of `otlp_convert`'s
//! messages (the OpenTelemetry Collector file exporter's encoding: hex ids,
//! enums as integers, 64-bit integers as strings, every field present); a
//! test holds the two equal. Going through those messages cost an allocation
//! per key and value and a byte-at-a-time escape: about a fifth of the
//! agent's time with `--export-file` under load.

use std::sync::Arc;

use super::spans_by_process;
use crate::{
    process::{ProcessInfo, ResourceValue},
    spans::{AttributeValue, Span, SpanKind, SpanStatus, write_hex},
};

/// Appends the request for `spans` (grouped by process, as `export_request`
/// groups them) to `out`, without a trailing newline.
pub fn write_export_request(spans: &[Span], host_name: &str, out: &mut Vec<u8>) {
    write_request(spans_by_process(spans), host_name, out, write_span);
}

/// The request of spans grouped by process, appended to `out`;
/// `write_span` writes one span's object (from the span, or its bytes
/// encoded earlier by [`write_span`]).
pub fn write_request<'a, T>(
    groups: impl Iterator<Item = (&'a Arc<ProcessInfo>, Vec<T>)>,
    host_name: &str,
    out: &mut Vec<u8>,
    mut write_span: impl FnMut(T, &mut Vec<u8>),
) {
    out.extend_from_slice(b"{\"resourceSpans\":[");
    for (i, (process, spans)) in groups.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"resource\":{\"attributes\":[");
        for (j, (key, value)) in process.resource_attributes(host_name).enumerate() {
            if j > 0 {
                out.push(b',');
            }
            match value {
                ResourceValue::Str(text) => string_attribute(out, key, text),
                ResourceValue::Int(number) => int_attribute(out, key, number),
            }
        }
        out.extend_from_slice(b"],\"droppedAttributesCount\":0,\"entityRefs\":[]},\"scopeSpans\":[{\"scope\":{\"name\":\"tracer-agent\",\"version\":\"");
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\",\"attributes\":[],\"droppedAttributesCount\":0},\"spans\":[");
        for (j, span) in spans.into_iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_span(span, out);
        }
        out.extend_from_slice(b"],\"schemaUrl\":\"\"}],\"schemaUrl\":\"\"}");
    }
    out.extend_from_slice(b"]}");
}

/// One span's JSON object.
pub fn write_span(span: &Span, out: &mut Vec<u8>) {
    // About what an HTTP span takes: the buffer grows once, not field by field.
    out.reserve(2048);
    out.extend_from_slice(b"{\"traceId\":\"");
    write_hex(out, &span.trace_id);
    out.extend_from_slice(b"\",\"spanId\":\"");
    write_hex(out, &span.span_id);
    out.extend_from_slice(b"\",\"traceState\":\"\",\"parentSpanId\":\"");
    if let Some(parent) = &span.parent_span_id {
        write_hex(out, parent);
    }
    out.extend_from_slice(b"\",\"flags\":0,\"name\":");
    string(out, &span.name);
    let kind = match span.kind {
        SpanKind::Server => b'2',
        SpanKind::Client => b'3',
    };
    out.extend_from_slice(b",\"kind\":");
    out.push(kind);
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    number(out, span.start_unix_ns);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    number(out, span.end_unix_ns);
    out.extend_from_slice(b"\",\"attributes\":[");
    for (key, value) in &span.attributes {
        match value {
            AttributeValue::Str(s) => string_attribute(out, key, s),
            AttributeValue::Int(i) => int_attribute(out, key, *i),
        }
        out.push(b',');
    }
    int_attribute(out, "thread.id", span.tid as i64);
    out.extend_from_slice(b"],\"droppedAttributesCount\":0,\"events\":[],\"droppedEventsCount\":0,\"links\":[],\"droppedLinksCount\":0,\"status\":{\"message\":");
    match &span.status {
        SpanStatus::Unset => out.extend_from_slice(b"\"\",\"code\":0}}"),
        SpanStatus::Error(message) => {
            string(out, message);
            out.extend_from_slice(b",\"code\":2}}");
        }
    }
}

fn string_attribute(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b"{\"key\":");
    string(out, key);
    out.extend_from_slice(b",\"value\":{\"stringValue\":");
    string(out, value);
    out.extend_from_slice(b"}}");
}

fn int_attribute(out: &mut Vec<u8>, key: &str, value: i64) {
    out.extend_from_slice(b"{\"key\":");
    string(out, key);
    out.extend_from_slice(b",\"value\":{\"intValue\":\"");
    number(out, value);
    out.extend_from_slice(b"\"}}");
}

/// As 64-bit integers, through `itoa` (`fmt`'s machinery was a tenth of
/// the time spent writing a span).
fn number(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Whether `bytes` holds anything JSON escapes. No early exit: the loop
/// compiles to vector compares, and most strings are clean.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control
/// characters as `\n`-style or `\u00XX`, everything else (UTF-8) as it is.
fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Most strings need no escape: one scan finds out.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean_from..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            write_hex(out, &[b]);
        } else {
            out.extend_from_slice(escape);
        }
        clean_from = i + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{
        encoded::{EncodedSpans, Format},
        fixtures::{process, span},
        otlp_convert::export_request,
    };

    /// Byte for byte what serde_json makes of the OTLP messages.
    #[test]
    fn equals_the_serde_encoding() {
        let shop = process(42, "shop", None);
        let other = process(7, "a\"b\\c\u{1}\u{7f}é\n", Some("c0ffee"));
        let mut client = span(
            &other,
            "GET /x?q=\"\t\r\u{8}\u{c}\u{1f}ü",
            SpanStatus::Unset,
        );
        client.kind = SpanKind::Client;
        client.parent_span_id = Some([9; 8]);
        client.attributes.clear();
        let spans = [
            span(&shop, "GET /", SpanStatus::Error("500 \"boom\"".into())),
            client,
            span(&shop, "", SpanStatus::Unset),
        ];
        for batch in [&spans[..], &spans[..1], &[]] {
            let mut direct = Vec::new();
            write_export_request(batch, "node-\"1\"", &mut direct);
            let serde = serde_json::to_vec(&export_request(batch, "node-\"1\"")).unwrap();
            let encoded =
                EncodedSpans::encode(Format::Json, batch).request(Format::Json, "node-\"1\"");
            assert_eq!(encoded, serde);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }

    #[test]
    fn every_control_character_escapes_as_serde_does() {
        let text: String = (0u8..=0x7f).map(char::from).collect();
        let mut direct = Vec::new();
        string(&mut direct, &text);
        assert_eq!(direct, serde_json::to_vec(&text).unwrap());
    }
}
