//! OTLP export to any OpenTelemetry backend, over gRPC or HTTP (protobuf or
//! JSON). Spans wait in a bounded queue, encoded as they arrive; a
//! background task sends them in batches (by size or after a delay) and
//! retries with backoff while the backend is down or slow, so a backend that
//! comes back receives what was queued. Spans are dropped only when the queue is full, when the backend
//! rejects them as malformed, or when shutdown time runs out, and each drop
//! is counted.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tokio::{sync::Notify, task::JoinHandle, time::Instant};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::{Channel, ClientTlsConfig, Endpoint},
};

use super::{
    Exporter, OWN_USER_AGENT, ShutdownFuture,
    encoded::{Format, SpanQueue},
};
use crate::{http_client, spans::Span, stats::ExporterStats};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl Protocol {
    fn format(self) -> Format {
        match self {
            Protocol::Grpc | Protocol::HttpProtobuf => Format::Protobuf,
            Protocol::HttpJson => Format::Json,
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    /// The values of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Ok(Protocol::HttpJson),
            other => Err(format!(
                "unknown OTLP protocol {other:?}: use grpc, http/protobuf or http/json"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct OtlpOptions {
    /// For gRPC the server's address (`http://host:4317`); for HTTP the URL
    /// spans are posted to (`http://host:4318/v1/traces`).
    pub endpoint: String,
    pub protocol: Protocol,
    /// Sent with every request (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// Time limit of one send attempt.
    pub timeout: Duration,
    /// Spans waiting at most; more are dropped and counted.
    pub max_queue_spans: usize,
    /// Spans in one request at most.
    pub max_batch_spans: usize,
    /// A smaller batch is sent once its oldest span waited this long.
    pub batch_delay: Duration,
    /// How long shutdown keeps trying to send what is queued.
    pub shutdown_timeout: Duration,
    pub host_name: String,
    /// Certificates for an `https://` endpoint.
    pub tls: TlsFiles,
}

/// PEM files for TLS to an `https://` endpoint, as the OTLP exporter
/// variables name them (`OTEL_EXPORTER_OTLP_CERTIFICATE`,
/// `..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// The certificate authorities trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This agent's certificate and its key, for mutual TLS: both or neither.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The contents of [`TlsFiles`], read and checked at start-up.
struct TlsPem {
    ca: Option<Vec<u8>>,
    /// Certificate (chain) and key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_certificate.is_none() && self.client_key.is_none()
    }

    fn read(&self) -> anyhow::Result<TlsPem> {
        fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
            let bytes = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read the OTLP {what} {}: {e}", path.display())
            })?;
            if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                anyhow::bail!(
                    "the OTLP {what} {} is not PEM (no -----BEGIN line)",
                    path.display()
                );
            }
            Ok(bytes)
        }
        let ca = match &self.ca_file {
            Some(path) => Some(read_pem(path, "CA certificate file")?),
            None => None,
        };
        let identity = match (&self.client_certificate, &self.client_key) {
            (Some(cert), Some(key)) => Some((
                read_pem(cert, "client certificate")?,
                read_pem(key, "client key")?,
            )),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                "mutual TLS to the OTLP endpoint needs both a client certificate and its key \
                 (--otlp-client-certificate and --otlp-client-key)"
            ),
        };
        Ok(TlsPem { ca, identity })
    }
}

impl OtlpOptions {
    /// The endpoint for `protocol` from the standard variables' value: a base
    /// URL (`OTEL_EXPORTER_OTLP_ENDPOINT`, to which HTTP adds `/v1/traces`)
    /// or a traces URL used as it is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub fn endpoint_url(base: &str, protocol: Protocol, is_traces_url: bool) -> String {
        let base = base.trim();
        match protocol {
            Protocol::Grpc => base.to_string(),
            Protocol::HttpProtobuf | Protocol::HttpJson if is_traces_url => base.to_string(),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        }
    }
}

/// `key1=value1,key2=value2` with percent-encoded values, as the OTLP
/// exporter specification writes `OTEL_EXPORTER_OTLP_HEADERS`.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("header {pair:?} has no '=': write key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("header {pair:?} has an empty name"));
            }
            Ok((key.to_ascii_lowercase(), percent_decode(value.trim())?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits (`from_str_radix` alone would take "+f").
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in header value {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("header value {text:?} is not UTF-8"))
}

/// Spans waiting to be sent, shared by the pipeline (which adds) and the
/// sender task (which takes).
struct Queue {
    spans: Mutex<SpanQueue>,
    /// Woken when a full batch is waiting or shutdown begins.
    wake: Notify,
    /// Set at shutdown: until when to keep trying.
    shutdown_deadline: Mutex<Option<Instant>>,
    /// Spans of the batch being sent (still waiting, for the depth gauge).
    sending: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpanQueue> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Spans waiting, including the batch being sent, into the gauge.
    fn publish_depth(&self, stats: &ExporterStats) {
        let depth = self.len() as u64 + self.sending.load(Ordering::Relaxed);
        stats.queued.store(depth, Ordering::Relaxed);
    }

    /// The batch being sent left the queue (sent, or given up).
    fn batch_done(&self, stats: &ExporterStats) {
        self.sending.store(0, Ordering::Relaxed);
        self.publish_depth(stats);
    }

    fn deadline(&self) -> Option<Instant> {
        *self
            .shutdown_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

pub struct OtlpExporter {
    queue: Arc<Queue>,
    options: OtlpOptions,
    stats: Arc<ExporterStats>,
    sender: Option<JoinHandle<()>>,
}

impl OtlpExporter {
    /// Checks the options and starts the sender task; no connection is made
    /// until there is something to send.
    pub fn start(options: OtlpOptions, stats: Arc<ExporterStats>) -> anyhow::Result<Self> {
        let transport = Transport::new(&options)?;
        let queue = Arc::new(Queue {
            spans: Mutex::new(SpanQueue::default()),
            wake: Notify::new(),
            shutdown_deadline: Mutex::new(None),
            sending: AtomicU64::new(0),
        });
        let sender = tokio::spawn(send_loop(
            queue.clone(),
            transport,
            options.clone(),
            stats.clone(),
        ));
        Ok(OtlpExporter {
            queue,
            options,
            stats,
            sender: Some(sender),
        })
    }
}

impl Exporter for OtlpExporter {
    fn export(&mut self, spans: &[Span]) {
        // Only the sender takes from the queue meanwhile: the room can
        // only grow while the spans are encoded, outside the lock.
        let room = self
            .options
            .max_queue_spans
            .saturating_sub(self.queue.len());
        let taken = spans.len().min(room);
        let mut encoded = self.queue.lock().spare();
        encoded.add(self.options.protocol.format(), &spans[..taken]);
        let mut queue = self.queue.lock();
        queue.push(encoded);
        let dropped = spans.len() - taken;
        if dropped > 0
            && self
                .stats
                .spans_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed)
                == 0
        {
            tracing::warn!(
                "OTLP queue full ({} spans): dropping spans until the backend catches up",
                self.options.max_queue_spans
            );
        }
        let full_batch = queue.len() >= self.options.max_batch_spans;
        drop(queue);
        self.queue.publish_depth(&self.stats);
        if full_batch {
            self.queue.wake.notify_one();
        }
    }

    fn shutdown(&mut self) -> ShutdownFuture<'_> {
        Box::pin(async move {
            *self
                .queue
                .shutdown_deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + self.options.shutdown_timeout);
            self.queue.wake.notify_one();
            if let Some(sender) = self.sender.take() {
                let _ = sender.await;
            }
        })
    }
}

async fn send_loop(
    queue: Arc<Queue>,
    mut transport: Transport,
    options: OtlpOptions,
    stats: Arc<ExporterStats>,
) {
    // Reused from request to request (see `encoded`).
    let mut body = Vec::new();
    loop {
        if queue.deadline().is_none() && queue.len() < options.max_batch_spans {
            // A full batch wakes us; a smaller one goes after the delay.
            let _ = tokio::time::timeout(options.batch_delay, queue.wake.notified()).await;
        }
        let batch = queue.lock().take(options.max_batch_spans);
        if batch.is_empty() {
            if queue.deadline().is_some() {
                return;
            }
            continue;
        }
        batch.write_request(options.protocol.format(), &options.host_name, &mut body);
        let sent = Bytes::from(std::mem::take(&mut body));
        send_with_retry(&mut transport, &sent, batch.len(), &queue, &options, &stats).await;
        queue.lock().recycle(batch);
        // The transport has let go of its copies by now, unless it is
        // still closing a failed request: then the buffer is made anew.
        if let Ok(unique) = sent.try_into_mut() {
            body = unique.into();
        }
    }
}

/// First wait after a failure; doubled each time up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Sends one batch until it is accepted, rejected for good, or shutdown time
/// runs out. The batch counts as queued while it is retried.
async fn send_with_retry(
    transport: &mut Transport,
    body: &Bytes,
    spans: usize,
    queue: &Queue,
    options: &OtlpOptions,
    stats: &ExporterStats,
) {
    let n = spans as u64;
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    loop {
        queue.sending.store(n, Ordering::Relaxed);
        queue.publish_depth(stats);
        match transport.send(body.clone(), options).await {
            Ok(()) => {
                stats.spans_exported.fetch_add(n, Ordering::Relaxed);
                queue.batch_done(stats);
                if failures > 0 {
                    tracing::info!(
                        "OTLP backend {} accepts spans again after {failures} failed attempts",
                        options.endpoint
                    );
                }
                return;
            }
            Err(SendError::Permanent(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                stats.spans_dropped.fetch_add(n, Ordering::Relaxed);
                queue.batch_done(stats);
                tracing::warn!(
                    "OTLP backend {} rejected {n} spans, not retrying: {e}",
                    options.endpoint
                );
                return;
            }
            Err(SendError::Retryable(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                if failures == 1 {
                    tracing::warn!(
                        "OTLP export to {} failed, retrying with backoff (spans wait in the queue): {e}{}",
                        options.endpoint,
                        tls_hint(&e)
                    );
                } else {
                    tracing::debug!("OTLP export attempt {failures} failed: {e}");
                }
            }
        }
        let mut wait = backoff;
        if let Some(deadline) = queue.deadline() {
            let left_time = deadline.saturating_duration_since(Instant::now());
            if left_time.is_zero() {
                let left = queue.lock().clear() as u64;
                stats.spans_dropped.fetch_add(n + left, Ordering::Relaxed);
                queue.batch_done(stats);
                tracing::warn!(
                    "OTLP backend {} unreachable at shutdown: {} spans not exported",
                    options.endpoint,
                    n + left
                );
                return;
            }
            wait = wait.min(left_time);
        }
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[derive(Debug)]
enum SendError {
    /// The backend is down, slow or overloaded: try again later.
    Retryable(String),
    /// The backend refused the data itself: sending it again will not help.
    Permanent(String),
}

enum Transport {
    Grpc(tonic::client::Grpc<Channel>),
    Http(reqwest::Client),
}

impl Transport {
    fn new(options: &OtlpOptions) -> anyhow::Result<Self> {
        let endpoint = &options.endpoint;
        let tls = if endpoint.starts_with("https://") {
            Some(options.tls.read()?)
        } else if endpoint.starts_with("http://") {
            if !options.tls.is_empty() {
                tracing::warn!(
                    "OTLP endpoint {endpoint} is plain http: the TLS certificate files given are \
                     not used (write https:// to use TLS)"
                );
            }
            None
        } else {
            anyhow::bail!("OTLP endpoint {endpoint:?} must start with http:// or https://");
        };
        Ok(match options.protocol {
            Protocol::Grpc => {
                let mut channel = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| anyhow::anyhow!("OTLP endpoint {endpoint:?}: {e}"))?
                    .connect_timeout(options.timeout)
                    .timeout(options.timeout)
                    .user_agent(OWN_USER_AGENT)
                    .map_err(|e| anyhow::anyhow!("OTLP user agent: {e}"))?;
                if let Some(tls) = tls {
                    let mut config = ClientTlsConfig::new();
                    config = match tls.ca {
                        Some(ca) => {
                            config.ca_certificate(tonic::transport::Certificate::from_pem(ca))
                        }
                        None => config.with_native_roots(),
                    };
                    if let Some((cert, key)) = tls.identity {
                        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
                    }
                    channel = channel
                        .tls_config(config)
                        .map_err(|e| anyhow::anyhow!("OTLP TLS settings: {}", error_chain(&e)))?;
                }
                Transport::Grpc(tonic::client::Grpc::new(channel.connect_lazy()))
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                reqwest::Url::parse(endpoint)
                    .map_err(|e| anyhow::anyhow!("OTLP endpoint {endpoint:?}: {e}"))?;
                let mut client = reqwest::Client::builder()
                    .timeout(options.timeout)
                    .user_agent(OWN_USER_AGENT);
                if let Some(tls) = tls {
                    if let Some(ca) = tls.ca {
                        client = http_client::trusting_only(client, &ca).map_err(|e| {
                            anyhow::anyhow!("OTLP CA certificate file: {}", error_chain(&e))
                        })?;
                    }
                    if let Some((cert, key)) = tls.identity {
                        let identity = reqwest::Identity::from_pem(&[cert, key].join(&b"\n"[..]))
                            .map_err(|e| {
                            anyhow::anyhow!("OTLP client certificate or key: {}", error_chain(&e))
                        })?;
                        client = client.identity(identity);
                    }
                }
                Transport::Http(
                    client
                        .build()
                        .map_err(|e| anyhow::anyhow!("OTLP HTTP client: {}", error_chain(&e)))?,
                )
            }
        })
    }

    /// Sends one encoded `ExportTraceServiceRequest`.
    async fn send(&mut self, body: Bytes, options: &OtlpOptions) -> Result<(), SendError> {
        match self {
            Transport::Grpc(client) => {
                let mut call = tonic::Request::new(body);
                for (key, value) in &options.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(key.as_bytes())
                        .map_err(|e| SendError::Permanent(format!("header {key:?}: {e}")))?;
                    let value = value
                        .parse()
                        .map_err(|e| SendError::Permanent(format!("header {key:?}: {e}")))?;
                    call.metadata_mut().insert(key, value);
                }
                client
                    .ready()
                    .await
                    .map_err(|e| SendError::Retryable(error_chain(&e)))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                );
                let response = client
                    .unary(call, path, EncodedRequestCodec)
                    .await
                    .map_err(grpc_error)?;
                log_partial_success(
                    response
                        .into_inner()
                        .partial_success
                        .map(|p| (p.rejected_spans, p.error_message)),
                );
                Ok(())
            }
            Transport::Http(client) => {
                let content_type = match options.protocol {
                    Protocol::HttpJson => "application/json",
                    _ => "application/x-protobuf",
                };
                let mut post = client
                    .post(&options.endpoint)
                    .header("content-type", content_type)
                    .body(body);
                for (key, value) in &options.headers {
                    post = post.header(key, value);
                }
                let response = post
                    .send()
                    .await
                    .map_err(|e| SendError::Retryable(error_chain(&e)))?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let body = response.text().await.unwrap_or_default();
                let message = format!(
                    "HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                );
                // The statuses the OTLP/HTTP specification says to retry.
                if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                    Err(SendError::Retryable(message))
                } else {
                    Err(SendError::Permanent(message))
                }
            }
        }
    }
}

/// gRPC's message coding for an `ExportTraceServiceRequest` encoded
/// already (sent as it is) and its response (decoded with prost).
struct EncodedRequestCodec;

impl Codec for EncodedRequestCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedRequestCodec;
    type Decoder = EncodedRequestCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedRequestCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedRequestCodec
    }
}

impl Encoder for EncodedRequestCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, body: Bytes, out: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put(out, body);
        Ok(())
    }
}

impl Decoder for EncodedRequestCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        body: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        prost::Message::decode(body)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable export response: {e}")))
    }
}

fn grpc_error(status: tonic::Status) -> SendError {
    use tonic::Code;
    // The causes say why a connection failed (refused, certificate unknown).
    let message = format!(
        "{:?}: {}{}",
        status.code(),
        status.message(),
        causes(&status)
    );
    // The codes the OTLP/gRPC specification says to retry.
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::Unknown => SendError::Retryable(message),
        _ => SendError::Permanent(message),
    }
}

fn log_partial_success(partial: Option<(i64, String)>) {
    if let Some((rejected, message)) = partial
        && (rejected > 0 || !message.is_empty())
    {
        tracing::warn!("OTLP backend rejected {rejected} spans of a batch: {message}");
    }
}

/// What to check when TLS failed: which certificate settings to look at.
fn tls_hint(error: &str) -> &'static str {
    if error.contains("certificate") || error.contains("TLS") || error.contains("tls") {
        " (check --otlp-certificate: the CA that signed the endpoint's certificate; and \
         --otlp-client-certificate/--otlp-client-key if it asks for one)"
    } else {
        ""
    }
}

/// An error and its causes on one line ("connection refused" is a cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    format!("{error}{}", causes(error))
}

/// `error`'s causes, each after ": ".
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::{Router, body::Bytes, http::StatusCode, routing::post};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    use super::*;
    use crate::{
        process::ProcessInfo,
        spans::{SpanKind, SpanStatus},
    };

    fn span(n: u8) -> Span {
        Span {
            trace_id: [n; 16],
            span_id: [n; 8],
            parent_span_id: None,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_unix_ns: 1,
            end_unix_ns: 2,
            attributes: vec![],
            status: SpanStatus::Unset,
            protocol: &crate::protocols::http1::FACTS,
            process: Arc::new(ProcessInfo {
                pid: 1,
                service_name: "svc".into(),
                executable_name: "svc".into(),
                container_id: None,
                pod: None,
                team: "unowned".into(),
                go: false,
            }),
            tid: 1,
        }
    }

    fn options(endpoint: String) -> OtlpOptions {
        OtlpOptions {
            endpoint,
            protocol: Protocol::HttpProtobuf,
            headers: vec![("x-team".into(), "shop".into())],
            timeout: Duration::from_secs(2),
            max_queue_spans: 8,
            max_batch_spans: 3,
            batch_delay: Duration::from_millis(20),
            shutdown_timeout: Duration::from_secs(5),
            host_name: "node".into(),
            tls: TlsFiles::default(),
        }
    }

    /// A backend that answers 503 to its first `refusals` requests, then
    /// accepts; counts the spans it accepted.
    async fn backend(refusals: usize) -> (String, Arc<AtomicUsize>) {
        let accepted = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let accepted = counted.clone();
                let calls = calls.clone();
                async move {
                    assert_eq!(headers["x-team"], "shop");
                    assert_eq!(headers["user-agent"], OWN_USER_AGENT);
                    if calls.fetch_add(1, Ordering::SeqCst) < refusals {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let request = ExportTraceServiceRequest::decode(body).expect("protobuf");
                    let spans: usize = request
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len())
                        .sum();
                    assert!(spans <= 3, "batches hold at most max_batch_spans");
                    accepted.fetch_add(spans, Ordering::SeqCst);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, accepted)
    }

    #[tokio::test]
    async fn queued_spans_arrive_after_the_backend_recovers() {
        let (url, accepted) = backend(3).await;
        let stats = Arc::new(ExporterStats::default());
        let mut exporter = OtlpExporter::start(options(url), stats.clone()).unwrap();
        let spans: Vec<Span> = (0..7).map(span).collect();
        exporter.export(&spans);
        exporter.shutdown().await;
        assert_eq!(accepted.load(Ordering::SeqCst), 7);
        assert_eq!(stats.spans_exported.load(Ordering::Relaxed), 7);
        assert_eq!(stats.failures.load(Ordering::Relaxed), 3);
        assert_eq!(stats.spans_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        // Refuses long enough that nothing leaves the queue meanwhile.
        let (url, accepted) = backend(usize::MAX).await;
        let stats = Arc::new(ExporterStats::default());
        let mut options = options(url);
        options.shutdown_timeout = Duration::from_millis(300);
        let mut exporter = OtlpExporter::start(options, stats.clone()).unwrap();
        let spans: Vec<Span> = (0..20).map(span).collect();
        exporter.export(&spans);
        assert_eq!(stats.spans_dropped.load(Ordering::Relaxed), 12);
        exporter.shutdown().await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        // The 8 queued are given up when shutdown time runs out, and counted.
        assert_eq!(stats.spans_dropped.load(Ordering::Relaxed), 20);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn http_json_posts_the_collector_encoding() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let (body_tx, mut body_rx) = tokio::sync::mpsc::unbounded_channel();
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let body_tx = body_tx.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/json");
                    let _ = body_tx.send(body);
                    StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let stats = Arc::new(ExporterStats::default());
        let mut options = options(url);
        options.protocol = Protocol::HttpJson;
        let mut exporter = OtlpExporter::start(options, stats.clone()).unwrap();
        exporter.export(&[span(0xab)]);
        exporter.shutdown().await;
        let body = body_rx.recv().await.expect("one request");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let sent = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(sent["traceId"], "ab".repeat(16));
        assert_eq!(stats.spans_exported.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_rejected_batch_is_not_retried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let app = Router::new().route("/v1/traces", post(|| async { StatusCode::BAD_REQUEST }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let stats = Arc::new(ExporterStats::default());
        let mut exporter = OtlpExporter::start(options(url), stats.clone()).unwrap();
        exporter.export(&[span(1)]);
        exporter.shutdown().await;
        assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
        assert_eq!(stats.spans_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn headers_from_the_standard_variable() {
        assert_eq!(
            parse_headers("api-key=secret%20value, X-Team=shop").unwrap(),
            vec![
                ("api-key".to_string(), "secret value".to_string()),
                ("x-team".to_string(), "shop".to_string())
            ]
        );
        assert_eq!(parse_headers("").unwrap(), vec![]);
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers("=x").is_err());
        assert!(parse_headers("k=%zz").is_err());
        assert!(parse_headers("k=%4").is_err());
        assert!(parse_headers("k=%+f").is_err());
    }

    #[test]
    fn endpoints_per_protocol() {
        assert_eq!(
            OtlpOptions::endpoint_url("http://c:4318/", Protocol::HttpProtobuf, false),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            OtlpOptions::endpoint_url("http://c:4318/custom", Protocol::HttpJson, true),
            "http://c:4318/custom"
        );
        assert_eq!(
            OtlpOptions::endpoint_url("http://c:4317", Protocol::Grpc, false),
            "http://c:4317"
        );
        assert_eq!("grpc".parse(), Ok(Protocol::Grpc));
        assert!("http".parse::<Protocol>().is_err());
    }
}
