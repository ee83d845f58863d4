//! OTLP/JSON lines: one `ExportTraceServiceRequest` per line, in the JSON
//! encoding the OpenTelemetry Collector's file exporter writes (hex ids,
//! enums as integers, 64-bit integers as strings).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    sync::Arc,
};

use super::{Exporter, ShutdownFuture, count_write, otlp_json::write_export_request};
use crate::{spans::Span, stats::ExporterStats};

pub struct FileExporter {
    out: BufWriter<File>,
    /// One batch's line, reused from batch to batch.
    line: Vec<u8>,
    host_name: String,
    stats: Arc<ExporterStats>,
}

impl FileExporter {
    pub fn create(
        path: &Path,
        host_name: String,
        stats: Arc<ExporterStats>,
    ) -> std::io::Result<Self> {
        Ok(FileExporter {
            out: BufWriter::new(File::create(path)?),
            line: Vec::new(),
            host_name,
            stats,
        })
    }

    fn write(&mut self, spans: &[Span]) -> std::io::Result<()> {
        self.line.clear();
        write_export_request(spans, &self.host_name, &mut self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        // Each batch reaches the file as it is exported, so a reader (or a
        // crash) sees whole lines.
        self.out.flush()
    }
}

impl Exporter for FileExporter {
    fn export(&mut self, spans: &[Span]) {
        let result = self.write(spans);
        count_write("file", &self.stats, spans.len(), result);
    }

    fn shutdown(&mut self) -> ShutdownFuture<'_> {
        let result = self
            .out
            .flush()
            .and_then(|()| self.out.get_ref().sync_data());
        count_write("file", &self.stats, 0, result);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        process::ProcessInfo,
        spans::{AttributeValue, SpanKind, SpanStatus},
    };

    #[test]
    fn writes_collector_json_encoding() {
        let span = Span {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent_span_id: None,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_000_000_000_500_000,
            attributes: vec![("http.response.status_code", AttributeValue::Int(500))],
            status: SpanStatus::Error(String::new()),
            protocol: &crate::protocols::http1::FACTS,
            process: Arc::new(ProcessInfo {
                pid: 42,
                service_name: "shop".into(),
                executable_name: "python3".into(),
                container_id: None,
                pod: None,
                team: "unowned".into(),
                go: false,
            }),
            tid: 43,
        };
        let dir = std::env::temp_dir().join(format!("otlp-json-{}", std::process::id()));
        let stats = Arc::new(ExporterStats::default());
        let mut exporter = FileExporter::create(&dir, "node-1".into(), stats.clone()).unwrap();
        exporter.export(&[span.clone(), span]);
        drop(exporter.shutdown());
        assert_eq!(
            stats
                .spans_exported
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(text.lines().count(), 1);
        let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let resource_spans = &json["resourceSpans"][0];
        let resource = &resource_spans["resource"]["attributes"];
        assert!(
            resource
                .as_array()
                .unwrap()
                .iter()
                .any(|kv| kv["key"] == "service.name" && kv["value"]["stringValue"] == "shop")
        );
        let span = &resource_spans["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "abababababababababababababababab");
        assert_eq!(span["spanId"], "0101010101010101");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["status"]["code"], 2);
        let status_attr = span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "http.response.status_code")
            .unwrap();
        assert_eq!(status_attr["value"]["intValue"], "500");
        assert_eq!(
            resource_spans["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
