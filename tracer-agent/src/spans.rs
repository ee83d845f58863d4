//! Exchanges → OpenTelemetry spans: kind, timing, the connection's
//! attributes, what the exchange's protocol says of it, and the resource of
//! the process that handled it.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use tracer_common::Role;

pub use crate::protocols::describe::{AttributeValue, SpanKind, SpanStatus, Text};
use crate::{
    clock::Clock,
    connections::{CompletedExchange, StartedRequest},
    correlation::SpanIds,
    process::{ProcessCache, ProcessInfo},
    protocols::describe::{Attributes, ProtocolFacts},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Attributes,
    pub status: SpanStatus,
    /// The protocol of the exchange: what its outcome is and which metric it feeds.
    pub protocol: &'static ProtocolFacts,
    pub process: Arc<ProcessInfo>,
    /// The thread that read (server) or wrote (client) the request.
    pub tid: u32,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// A text attribute ("" when absent or not text).
    pub fn attribute_str(&self, key: &str) -> &str {
        match self.attribute(key) {
            Some(AttributeValue::Str(s)) => s,
            _ => "",
        }
    }

    /// An attribute as text ("" when absent).
    pub fn attribute_text(&self, key: &str) -> String {
        match self.attribute(key) {
            Some(AttributeValue::Str(s)) => s.to_string(),
            Some(AttributeValue::Int(i)) => i.to_string(),
            None => String::new(),
        }
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }
}

/// Addresses kept as text at most; past this the cache starts over.
const MAX_ADDRESS_TEXTS: usize = 4096;

pub struct SpanBuilder {
    clock: Clock,
    processes: ProcessCache,
    /// Addresses as attribute text, formatted once and shared by every span
    /// that names them (a node talks to few addresses, many times).
    address_texts: foldhash::HashMap<IpAddr, Arc<str>>,
}

impl SpanBuilder {
    pub fn new(clock: Clock, processes: ProcessCache) -> Self {
        SpanBuilder {
            clock,
            processes,
            address_texts: Default::default(),
        }
    }

    fn address_text(&mut self, ip: IpAddr) -> AttributeValue {
        if let Some(text) = self.address_texts.get(&ip) {
            return AttributeValue::Str(Text::Shared(text.clone()));
        }
        if self.address_texts.len() >= MAX_ADDRESS_TEXTS {
            self.address_texts.clear();
        }
        let text: Arc<str> = ip.to_string().into();
        self.address_texts.insert(ip, text.clone());
        AttributeValue::Str(Text::Shared(text))
    }

    /// Reads the process's facts now, when its request starts (and returns
    /// them): a client that exits right after its last response is gone by
    /// the time that span is built, and its `OTEL_SERVICE_NAME` with it.
    pub fn request_started(&mut self, started: &StartedRequest) -> Arc<ProcessInfo> {
        self.processes
            .get(started.start.start.pid, &started.connection.comm)
    }

    pub fn build(&mut self, completed: &CompletedExchange, ids: SpanIds) -> Span {
        let exchange = &completed.exchange;
        let description = &*exchange.description;
        let connection = &completed.connection;
        let kind = match connection.role {
            Role::Client => SpanKind::Client,
            Role::Server | Role::Unknown => SpanKind::Server,
        };
        let process = self
            .processes
            .get(exchange.request_start.pid, &connection.comm);
        // The server end of the connection: ours on a SERVER span, the peer's on a CLIENT one.
        let server_end = match kind {
            SpanKind::Server => connection.local,
            SpanKind::Client => connection.remote,
        };
        let mut attributes: Attributes = Vec::with_capacity(16);
        let status = description.describe(kind, server_end, &mut attributes);
        let server_address = match description.server_name() {
            Some(name) => AttributeValue::Str(name.to_string().into()),
            None => self.address_text(server_end.ip()),
        };
        attributes.push(("server.address", server_address));
        attributes.push(("server.port", port(server_end)));
        if kind == SpanKind::Server {
            attributes.push(("client.address", self.address_text(connection.remote.ip())));
            attributes.push(("client.port", port(connection.remote)));
        }
        attributes.push((
            "network.peer.address",
            self.address_text(connection.remote.ip()),
        ));
        attributes.push(("network.peer.port", port(connection.remote)));

        Span {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            parent_span_id: ids.parent_span_id,
            name: description.span_name(),
            kind,
            start_unix_ns: self.clock.to_unix_ns(exchange.request_start.first_ns),
            end_unix_ns: self.clock.to_unix_ns(exchange.response_end.last_ns),
            attributes,
            status,
            protocol: description.protocol(),
            process,
            tid: exchange.request_start.tid,
        }
    }
}

/// A span's own time: `start..end` minus its children's intervals (clipped
/// to it, overlaps counted once).
pub fn self_time_ns(start: u64, end: u64, children: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut covered: Vec<(u64, u64)> = children
        .map(|(s, e)| (s.max(start), e.min(end)))
        .filter(|(s, e)| e > s)
        .collect();
    covered.sort_unstable();
    let mut total = 0;
    let mut reach = start;
    for (s, e) in covered {
        let s = s.max(reach);
        if e > s {
            total += e - s;
            reach = e;
        }
    }
    end.saturating_sub(start).saturating_sub(total)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes` (an id).
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| {
            [
                HEX_DIGITS[(b >> 4) as usize],
                HEX_DIGITS[(b & 0xf) as usize],
            ]
        })
        .map(char::from)
        .collect()
}

/// Appends the lower-case hex of `bytes` (ids: at most 16 bytes), built on
/// the stack and appended at once: the exporters write one per id.
pub fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut text = [0u8; 32];
    let bytes = &bytes[..bytes.len().min(16)];
    for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[(b >> 4) as usize];
        pair[1] = HEX_DIGITS[(b & 0xf) as usize];
    }
    out.extend_from_slice(&text[..2 * bytes.len()]);
}

fn port(addr: SocketAddr) -> AttributeValue {
    AttributeValue::Int(addr.port() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        connections::ConnectionInfo,
        protocols::{
            ChunkMeta, Exchange,
            http1::{Http1Exchange, RequestHead, ResponseHead},
        },
    };

    fn completed(role: Role, method: &str, target: &str, status: Option<u16>) -> CompletedExchange {
        let meta = |ns| ChunkMeta {
            first_ns: ns,
            last_ns: ns + 10,
            pid: std::process::id(),
            tid: 1,
            seq: 0,
            context: None,
            ids: Default::default(),
        };
        CompletedExchange {
            exchange: Exchange {
                index: 0,
                request_start: meta(1_000),
                response_end: meta(5_000),
                description: Box::new(Http1Exchange {
                    request: Arc::new(RequestHead::new(method, target, 1, std::iter::empty())),
                    response: status.map(|status| ResponseHead::new(status, 1, std::iter::empty())),
                    request_body_bytes: 0,
                    response_body_bytes: 12,
                    secure: false,
                }),
            },
            connection: ConnectionInfo {
                sock_id: 1,
                role,
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "127.0.0.1:40000".parse().unwrap(),
                comm: *b"test\0\0\0\0\0\0\0\0\0\0\0\0",
            },
        }
    }

    fn str(value: &str) -> AttributeValue {
        AttributeValue::Str(value.to_string().into())
    }

    /// Builds spans with fixed ids (linking is the correlator's, tested there).
    struct Builder(SpanBuilder);

    impl Builder {
        fn build(&mut self, completed: &CompletedExchange) -> Span {
            let ids = SpanIds {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent_span_id: None,
            };
            self.0.build(completed, ids)
        }
    }

    fn builder() -> Builder {
        Builder(SpanBuilder::new(Clock::now(), ProcessCache::default()))
    }

    #[test]
    fn server_span_attributes() {
        let span = builder().build(&completed(
            Role::Server,
            "GET",
            "/users/42?x=1&token=abc",
            Some(200),
        ));
        assert_eq!(span.kind, SpanKind::Server);
        assert_eq!(span.name, "GET /users/{id}");
        assert_eq!(span.attribute("url.path"), Some(&str("/users/42")));
        assert_eq!(
            span.attribute("url.query"),
            Some(&str("x=1&token=REDACTED"))
        );
        assert_eq!(
            span.attribute("client.port"),
            Some(&AttributeValue::Int(40000))
        );
        assert_eq!(
            span.attribute("server.port"),
            Some(&AttributeValue::Int(8080))
        );
        assert_eq!(span.attribute("server.address"), Some(&str("127.0.0.1")));
        assert_eq!(
            span.attribute("http.response.status_code"),
            Some(&AttributeValue::Int(200))
        );
        assert_eq!(span.status, SpanStatus::Unset);
        assert_eq!(span.duration_ns(), 4_010);
        assert_eq!(span.protocol.name, "http1");
        assert!(span.attribute("url.full").is_none());
    }

    #[test]
    fn error_status_rules() {
        let mut b = builder();
        assert_eq!(
            b.build(&completed(Role::Server, "GET", "/", Some(404)))
                .status,
            SpanStatus::Unset
        );
        assert!(matches!(
            b.build(&completed(Role::Server, "GET", "/", Some(503)))
                .status,
            SpanStatus::Error(_)
        ));
        assert!(matches!(
            b.build(&completed(Role::Client, "GET", "/", Some(404)))
                .status,
            SpanStatus::Error(_)
        ));
        assert!(matches!(
            b.build(&completed(Role::Client, "GET", "/", None)).status,
            SpanStatus::Error(_)
        ));
    }

    #[test]
    fn client_span_has_full_url_and_other_methods() {
        let span = builder().build(&completed(Role::Client, "PURGE", "/cache?sig=1", Some(200)));
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.attribute("http.request.method"), Some(&str("_OTHER")));
        assert_eq!(
            span.attribute("http.request.method_original"),
            Some(&str("PURGE"))
        );
        assert_eq!(
            span.attribute("url.full"),
            Some(&str("http://127.0.0.1:40000/cache?sig=REDACTED"))
        );
    }
}
