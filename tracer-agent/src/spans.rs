//! Exchanges → OpenTelemetry spans: kind, timing, semantic-convention
//! attributes, status, and the resource of the process that handled them.

use std::{
    net::{IpAddr, SocketAddr},
    ops::Deref,
    sync::Arc,
};

use tracer_common::Role;

use crate::{
    clock::Clock,
    connections::{CompletedExchange, StartedRequest},
    correlation::SpanIds,
    process::{ProcessCache, ProcessInfo},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeValue {
    Str(Text),
    Int(i64),
}

/// Attribute text: a constant (a method, a scheme), text many spans share
/// (an address), or the span's own, so a span allocates only for what is
/// its own.
#[derive(Clone, Debug)]
pub enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &**self == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &**self == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        **self == **other
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Owned(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Error(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    pub status: SpanStatus,
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

/// HTTP methods kept as they are; others are reported as `_OTHER` with the
/// original in `http.request.method_original` (OTel semantic conventions).
const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Query parameters whose values are credentials: never leave the node.
const SECRET_QUERY_KEYS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "auth",
    "awsaccesskeyid",
    "client_secret",
    "code",
    "key",
    "password",
    "passwd",
    "secret",
    "session",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-signature",
];

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
        let request = &exchange.request;
        let connection = &completed.connection;
        let kind = match connection.role {
            Role::Client => SpanKind::Client,
            Role::Server | Role::Unknown => SpanKind::Server,
        };
        let process = self
            .processes
            .get(exchange.request_start.pid, &connection.comm);
        let (path, query) = split_target(&request.target);
        let method = KNOWN_METHODS
            .iter()
            .copied()
            .find(|known| *known == request.method)
            .unwrap_or("_OTHER");

        let mut attributes: Vec<(&'static str, AttributeValue)> = Vec::with_capacity(16);
        let mut attr = |key: &'static str, value: AttributeValue| attributes.push((key, value));
        attr("http.request.method", fixed(method));
        if method == "_OTHER" {
            attr("http.request.method_original", str(&request.method));
        }
        attr("url.path", str(path));
        if let Some(query) = query {
            attr("url.query", AttributeValue::Str(redact_query(query).into()));
        }
        attr("url.scheme", fixed("http"));
        attr(
            "network.protocol.version",
            fixed(if request.version == 0 { "1.0" } else { "1.1" }),
        );
        // The server end of the connection: ours on a SERVER span, the peer's on a CLIENT one.
        let server_end = match kind {
            SpanKind::Server => connection.local,
            SpanKind::Client => connection.remote,
        };
        let host_header = request.headers.get("host");
        let server_address = match host_header {
            Some(host) => str(split_host(host).0),
            None => self.address_text(server_end.ip()),
        };
        if kind == SpanKind::Client {
            let authority = host_header
                .map(str::to_string)
                .unwrap_or_else(|| server_end.to_string());
            let target = match query {
                Some(q) => format!("{path}?{}", redact_query(q)),
                None => path.to_string(),
            };
            attr(
                "url.full",
                AttributeValue::Str(format!("http://{authority}{target}").into()),
            );
        }
        attr("server.address", server_address);
        attr("server.port", port(server_end));
        if kind == SpanKind::Server {
            attr("client.address", self.address_text(connection.remote.ip()));
            attr("client.port", port(connection.remote));
        }
        attr(
            "network.peer.address",
            self.address_text(connection.remote.ip()),
        );
        attr("network.peer.port", port(connection.remote));
        if let Some(agent) = request.headers.get("user-agent") {
            attr("user_agent.original", str(agent));
        }
        if exchange.request_body_bytes > 0 {
            attr(
                "http.request.body.size",
                AttributeValue::Int(exchange.request_body_bytes as i64),
            );
        }

        let status = match &exchange.response {
            Some(response) => {
                attr(
                    "http.response.status_code",
                    AttributeValue::Int(response.status as i64),
                );
                if exchange.response_body_bytes > 0 {
                    attr(
                        "http.response.body.size",
                        AttributeValue::Int(exchange.response_body_bytes as i64),
                    );
                }
                let error_from = match kind {
                    SpanKind::Server => 500,
                    SpanKind::Client => 400,
                };
                if response.status >= error_from {
                    attr(
                        "error.type",
                        AttributeValue::Str(response.status.to_string().into()),
                    );
                    SpanStatus::Error(String::new())
                } else {
                    SpanStatus::Unset
                }
            }
            None => {
                attr("error.type", fixed("no_response"));
                SpanStatus::Error("connection closed before a response".into())
            }
        };

        Span {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            parent_span_id: ids.parent_span_id,
            name: {
                let mut name = String::with_capacity(method.len() + 1 + path.len().max(1));
                name.push_str(method);
                name.push(' ');
                push_route(&mut name, path);
                name
            },
            kind,
            start_unix_ns: self.clock.to_unix_ns(exchange.request_start.first_ns),
            end_unix_ns: self.clock.to_unix_ns(exchange.response_end.last_ns),
            attributes,
            status,
            process,
            tid: exchange.request_start.tid,
        }
    }
}

/// Ids as lower-case hex, as W3C and OTLP/JSON write them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn str(value: &str) -> AttributeValue {
    AttributeValue::Str(value.to_string().into())
}

fn fixed(value: &'static str) -> AttributeValue {
    AttributeValue::Str(Text::Static(value))
}

fn port(addr: SocketAddr) -> AttributeValue {
    AttributeValue::Int(addr.port() as i64)
}

/// Path and query of an origin-form target; an absolute-form target (to a
/// proxy) gives its path.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or(target);
    let target = target.split('#').next().unwrap_or(target);
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// `host[:port]` of a Host header (IPv6 literals in brackets).
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((ip, after)) = rest.split_once(']')
    {
        return (ip, after.strip_prefix(':'));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, Some(port)),
        _ => (host, None),
    }
}

/// The query with the values of credential-like parameters replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_QUERY_KEYS.contains(&key.as_str())
        || key.ends_with("_token")
        || key.ends_with("password")
        || key.ends_with("secret")
}

/// A low-cardinality route from a path: segments that look like ids
/// (numbers, hex, UUIDs, long tokens) become `{id}`.
pub fn route(path: &str) -> String {
    let mut out = String::with_capacity(path.len().max(1));
    push_route(&mut out, path);
    out
}

/// Appends `route(path)` to `out`.
fn push_route(out: &mut String, path: &str) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if looks_like_id(segment) {
            "{id}"
        } else {
            segment
        });
    }
}

fn looks_like_id(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    let hex_or_dash = segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    digits == segment.len()
        || (hex_or_dash && segment.len() >= 8 && digits > 0)
        || (segment.len() >= 20 && digits * 3 >= segment.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        connections::{ChunkMeta, ConnectionInfo},
        protocols::http1::{Exchange, Headers, RequestHead, ResponseHead},
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
                request: Arc::new(RequestHead {
                    method: method.into(),
                    target: target.into(),
                    version: 1,
                    headers: Headers::default(),
                }),
                response: status.map(|status| ResponseHead {
                    status,
                    version: 1,
                    headers: Headers::default(),
                }),
                request_start: meta(1_000),
                response_end: meta(5_000),
                request_body_bytes: 0,
                response_body_bytes: 12,
                response_end_approximate: false,
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
        assert_eq!(
            span.attribute("http.response.status_code"),
            Some(&AttributeValue::Int(200))
        );
        assert_eq!(span.status, SpanStatus::Unset);
        assert_eq!(span.duration_ns(), 4_010);
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

    #[test]
    fn routes_fold_ids() {
        assert_eq!(route("/"), "/");
        assert_eq!(
            route("/api/v1/orders/123/items"),
            "/api/v1/orders/{id}/items"
        );
        assert_eq!(route("/u/550e8400-e29b-41d4-a716-446655440000"), "/u/{id}");
        assert_eq!(route("/blob/deadbeef01"), "/blob/{id}");
        assert_eq!(route("/static/index.html"), "/static/index.html");
    }

    #[test]
    fn targets_and_hosts() {
        assert_eq!(split_target("/a?b=c"), ("/a", Some("b=c")));
        assert_eq!(split_target("http://h:1/x?y"), ("/x", Some("y")));
        assert_eq!(split_target("http://h"), ("/", None));
        assert_eq!(
            split_host("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_host("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host("example.com"), ("example.com", None));
    }
}
