//! Spans → OTLP messages (the generated types of the official protos): the
//! reference the direct encoders (`otlp_proto`, `otlp_json`) are tested
//! against, byte for byte.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{
        ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind as OtlpKind,
        status::StatusCode,
    },
};

use crate::{
    process::{ProcessInfo, ResourceValue},
    spans::{AttributeValue, Span, SpanKind, SpanStatus},
};

/// One request for a batch: spans grouped by the process (resource) they belong to.
pub fn export_request(spans: &[Span], host_name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: super::spans_by_process(spans)
            .map(|(process, spans)| ResourceSpans {
                resource: Some(resource(process, host_name)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "tracer-agent".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: spans.into_iter().map(otlp_span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn resource(process: &ProcessInfo, host_name: &str) -> Resource {
    Resource {
        attributes: process
            .resource_attributes(host_name)
            .map(|(key, value)| match value {
                ResourceValue::Str(text) => string(key, text),
                ResourceValue::Int(number) => int(key, number),
            })
            .collect(),
        ..Default::default()
    }
}

fn otlp_span(span: &Span) -> OtlpSpan {
    OtlpSpan {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        parent_span_id: span
            .parent_span_id
            .map(|id| id.to_vec())
            .unwrap_or_default(),
        name: span.name.clone(),
        kind: match span.kind {
            SpanKind::Server => OtlpKind::Server,
            SpanKind::Client => OtlpKind::Client,
        } as i32,
        start_time_unix_nano: span.start_unix_ns,
        end_time_unix_nano: span.end_unix_ns,
        attributes: span
            .attributes
            .iter()
            .map(|(key, value)| match value {
                AttributeValue::Str(s) => string(key, s),
                AttributeValue::Int(i) => int(key, *i),
            })
            .chain(std::iter::once(int("thread.id", span.tid as i64)))
            .collect(),
        status: Some(match &span.status {
            SpanStatus::Unset => Status::default(),
            SpanStatus::Error(message) => Status {
                message: message.clone(),
                code: StatusCode::Error as i32,
            },
        }),
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}
