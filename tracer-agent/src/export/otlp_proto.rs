//! Spans → OTLP protobuf bytes, written straight from the spans: the same
//! bytes `prost` makes of `otlp_convert::export_request`, without building
//! the generated messages first (their strings and vectors were half of
//! what OTLP export cost per span). Field numbers are the OTLP protos'.

use std::sync::Arc;

use crate::{
    process::{ProcessInfo, ResourceValue},
    spans::{AttributeValue, Span, SpanKind, SpanStatus},
};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// An `ExportTraceServiceRequest` of spans grouped by process, appended to
/// `out`; `write_span` writes one span's `Span` message body (from the span,
/// or its bytes encoded earlier by [`write_span`]).
pub fn write_request<'a, T>(
    groups: impl Iterator<Item = (&'a Arc<ProcessInfo>, Vec<T>)>,
    host_name: &str,
    out: &mut Vec<u8>,
    mut write_span: impl FnMut(T, &mut Vec<u8>),
) {
    for (process, spans) in groups {
        // ExportTraceServiceRequest.resource_spans
        nested(out, 1, |out| {
            // ResourceSpans.resource
            nested(out, 1, |out| write_resource(process, host_name, out));
            // ResourceSpans.scope_spans
            nested(out, 2, |out| {
                // ScopeSpans.scope: InstrumentationScope name, version
                nested(out, 1, |out| {
                    string_field(out, 1, "tracer-agent");
                    string_field(out, 2, env!("CARGO_PKG_VERSION"));
                });
                for span in spans {
                    // ScopeSpans.spans
                    nested(out, 2, |out| write_span(span, out));
                }
            });
        });
    }
}

fn write_resource(process: &ProcessInfo, host_name: &str, out: &mut Vec<u8>) {
    // Resource.attributes
    for (key, value) in process.resource_attributes(host_name) {
        match value {
            ResourceValue::Str(text) => string_attribute(out, 1, key, text),
            ResourceValue::Int(number) => int_attribute(out, 1, key, number),
        }
    }
}

/// One span's `Span` message, without its field key and length.
pub fn write_span(span: &Span, out: &mut Vec<u8>) {
    bytes_field(out, 1, &span.trace_id);
    bytes_field(out, 2, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        bytes_field(out, 4, parent);
    }
    string_field(out, 5, &span.name);
    // Span.kind: SERVER 2, CLIENT 3.
    let kind = match span.kind {
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    };
    key(out, 6, VARINT);
    varint(out, kind);
    fixed64_field(out, 7, span.start_unix_ns);
    fixed64_field(out, 8, span.end_unix_ns);
    for (name, value) in &span.attributes {
        match value {
            AttributeValue::Str(s) => string_attribute(out, 9, name, s),
            AttributeValue::Int(i) => int_attribute(out, 9, name, *i),
        }
    }
    int_attribute(out, 9, "thread.id", i64::from(span.tid));
    // Span.status, present even when unset (as `otlp_convert` makes it).
    nested(out, 15, |out| {
        if let SpanStatus::Error(message) = &span.status {
            string_field(out, 2, message);
            // Status.code: ERROR 2
            key(out, 3, VARINT);
            varint(out, 2);
        }
    });
}

/// A `KeyValue` with a string `AnyValue`, as field `field`.
fn string_attribute(out: &mut Vec<u8>, field: u32, name: &str, value: &str) {
    nested(out, field, |out| {
        string_field(out, 1, name);
        // KeyValue.value: AnyValue.string_value (a oneof: written even if empty)
        nested(out, 2, |out| {
            key(out, 1, LEN);
            varint(out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
        });
    });
}

/// A `KeyValue` with an int `AnyValue`, as field `field`.
fn int_attribute(out: &mut Vec<u8>, field: u32, name: &str, value: i64) {
    nested(out, field, |out| {
        string_field(out, 1, name);
        nested(out, 2, |out| {
            key(out, 3, VARINT);
            varint(out, value as u64);
        });
    });
}

/// A length-delimited field whose contents `body` writes, in place: one
/// byte is kept for the length, which suffices below 128 bytes (most
/// attributes); a longer body is moved along once to make room.
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out);
    let length = out.len() - at - 1;
    if length < 0x80 {
        out[at] = length as u8;
        return;
    }
    let (prefix, size) = varint_bytes(length as u64);
    out.resize(out.len() + size - 1, 0);
    out.copy_within(at + 1..at + 1 + length, at + size);
    out[at..at + size].copy_from_slice(&prefix[..size]);
}

/// A string field, left out when empty (proto3's default).
fn string_field(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes_field(out, field, value.as_bytes());
}

fn bytes_field(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    key(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    if value == 0 {
        return;
    }
    key(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from(field << 3 | wire_type));
}

fn varint(out: &mut Vec<u8>, value: u64) {
    // Most are one byte: every key, and most lengths.
    if value < 0x80 {
        out.push(value as u8);
        return;
    }
    let (bytes, size) = varint_bytes(value);
    out.extend_from_slice(&bytes[..size]);
}

/// `value` as a varint: its bytes, and how many there are (1 to 10).
fn varint_bytes(mut value: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut size = 0;
    while value >= 0x80 {
        bytes[size] = value as u8 | 0x80;
        value >>= 7;
        size += 1;
    }
    bytes[size] = value as u8;
    (bytes, size + 1)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::export::{
        encoded::{EncodedSpans, Format},
        fixtures::{process, span},
        otlp_convert::export_request,
        spans_by_process,
    };

    /// Byte for byte what prost makes of the generated messages.
    #[test]
    fn equals_the_prost_encoding() {
        let shop = process(42, "shop", None);
        let other = process(7, "ü\"", Some("c0ffee"));
        let mut client = span(&other, "GET /x", SpanStatus::Unset);
        client.kind = SpanKind::Client;
        client.parent_span_id = Some([9; 8]);
        client.start_unix_ns = 0;
        let long = "x".repeat(300);
        // Its span's length takes three varint bytes.
        let longer = "y".repeat(20_000);
        let spans = [
            span(&shop, "GET /", SpanStatus::Error("500 boom".into())),
            client,
            span(&shop, "", SpanStatus::Error(String::new())),
            span(&shop, &long, SpanStatus::Unset),
            span(&shop, &longer, SpanStatus::Unset),
        ];
        for batch in [&spans[..], &spans[..1], &[]] {
            let prost = export_request(batch, "node-1").encode_to_vec();
            let mut direct = Vec::new();
            write_request(spans_by_process(batch), "node-1", &mut direct, write_span);
            assert_eq!(direct, prost);
            let encoded = EncodedSpans::encode(Format::Protobuf, batch);
            assert_eq!(encoded.request(Format::Protobuf, "node-1"), prost);
        }
    }
}
