//! HTTP/2 as the pipeline sees it: detection by the client preface, the
//! connection parser behind the `Parser` interface, and each stream's
//! description: an HTTP span (OpenTelemetry HTTP conventions), or a gRPC
//! one (`rpc.*`) when its content type says gRPC.

use std::net::SocketAddr;

use tracer_common::Source;

use super::{Fields, Http2Connection, Output, looks_like_preface, starts_midway};
use crate::protocols::{
    self, ChunkMeta, Exchange, ParseError, Parser, Protocol, RequestStart, Sink, Stream,
    describe::{AttributeValue, Attributes, Describe, ProtocolFacts, SpanKind, SpanStatus},
    http::{self, HttpExchange, describe_http, fixed, http_span_name, owned, split_host},
    trace_context,
};

/// HTTP/2, clear text with prior knowledge or read as TLS plaintext.
pub struct Http2;

static FACTS: ProtocolFacts = ProtocolFacts {
    name: "http2",
    outcome_attribute: "http.response.status_code",
    duration_metric: Some(&http::REQUEST_DURATION),
};

/// gRPC calls (HTTP/2 streams whose content type is `application/grpc`).
static GRPC_FACTS: ProtocolFacts = ProtocolFacts {
    name: "grpc",
    outcome_attribute: "rpc.grpc.status_code",
    duration_metric: None,
};

impl Protocol for Http2 {
    fn facts(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn is_request_start(&self, data: &[u8]) -> bool {
        looks_like_preface(data) || starts_midway(data)
    }

    fn parser(&self, _next_index: u64, source: Source) -> Box<dyn Parser> {
        Box::new(Http2Parser {
            connection: Http2Connection::new(),
            secure: source == Source::Tls,
        })
    }
}

#[derive(Debug)]
struct Http2Parser {
    connection: Http2Connection<ChunkMeta>,
    secure: bool,
}

impl Parser for Http2Parser {
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: ChunkMeta,
        out: &mut Vec<protocols::Output>,
    ) {
        let mut converted = Converted {
            out,
            secure: self.secure,
        };
        self.connection
            .feed(stream, captured, uncaptured, meta, &mut converted);
    }

    fn close(&mut self, out: &mut Vec<protocols::Output>) {
        self.connection.close(&mut Converted {
            out,
            secure: self.secure,
        });
    }

    fn pending_requests(&self) -> usize {
        self.connection.pending_requests()
    }

    /// Never: its HPACK tables cannot be made again.
    fn resumable_at(&self) -> Option<u64> {
        None
    }
}

struct Converted<'a> {
    out: &'a mut Vec<protocols::Output>,
    secure: bool,
}

impl Sink<Output<ChunkMeta>> for Converted<'_> {
    fn push(&mut self, output: Output<ChunkMeta>) {
        self.out.push(match output {
            Output::Request(start) => protocols::Output::Request(RequestStart {
                index: start.index,
                trace_context: start
                    .request
                    .as_ref()
                    .and_then(|fields| trace_context::extract(|name| fields.get(name))),
                start: start.start,
                offset: start.offset,
                multiplexed: true,
            }),
            Output::Exchange(exchange) => protocols::Output::Exchange(Exchange {
                index: exchange.index,
                request_start: exchange.request_start,
                response_end: exchange.response_end,
                description: Box::new(Http2Exchange {
                    request: exchange.request,
                    response: exchange.response,
                    trailers: exchange.trailers,
                    reset: exchange.reset,
                    request_body_bytes: exchange.request_body_bytes,
                    response_body_bytes: exchange.response_body_bytes,
                    secure: self.secure,
                }),
            }),
            Output::Error(error) => protocols::Output::Error(ParseError {
                protocol: FACTS.name,
                message: error.to_string(),
            }),
        });
    }
}

/// What an HTTP/2 stream's span says.
#[derive(Debug)]
pub struct Http2Exchange {
    /// `None`: its header block could not be decoded.
    pub request: Option<Fields>,
    pub response: Option<Fields>,
    pub trailers: Option<Fields>,
    pub reset: bool,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Read from a TLS library.
    pub secure: bool,
}

impl Http2Exchange {
    fn request(&self, name: &str) -> Option<&str> {
        self.request.as_ref()?.get(name)
    }

    fn is_grpc(&self) -> bool {
        self.request("content-type")
            .is_some_and(|t| t.starts_with("application/grpc"))
    }

    /// gRPC's status: in the trailers, or in the headers of a
    /// trailers-only response.
    fn grpc_status(&self) -> Option<i64> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.response.as_ref()?.get("grpc-status"))?
            .parse()
            .ok()
    }

    /// An answer came whose fields are known only in part: a missing
    /// status is not known, not absent.
    fn answer_partial(&self) -> bool {
        [&self.response, &self.trailers]
            .into_iter()
            .any(|fields| fields.as_ref().is_some_and(Fields::partial))
    }

    /// `error.type` and message of a stream that got no answer.
    fn unanswered(&self) -> (&'static str, &'static str) {
        if self.reset {
            ("reset", "stream reset before a response")
        } else {
            ("no_response", "stream ended without a response")
        }
    }

    fn scheme(&self) -> &'static str {
        match self.request(":scheme") {
            Some("https") => "https",
            Some("http") => "http",
            _ if self.secure => "https",
            _ => "http",
        }
    }

    fn describe_grpc(
        &self,
        kind: SpanKind,
        attr: &mut impl FnMut(&'static str, AttributeValue),
    ) -> SpanStatus {
        attr("rpc.system", fixed("grpc"));
        let path = self.request(":path").unwrap_or_default();
        if let Some((service, method)) = path.trim_start_matches('/').split_once('/') {
            attr("rpc.service", owned(service));
            attr("rpc.method", owned(method));
        }
        let Some(status) = self.grpc_status() else {
            if self.answer_partial() {
                return SpanStatus::Unset;
            }
            attr("error.type", fixed(self.unanswered().0));
            return SpanStatus::Error("no gRPC status".into());
        };
        attr("rpc.grpc.status_code", AttributeValue::Int(status));
        // OpenTelemetry: a server's span is an error only for the codes
        // that are the server's fault.
        let error = match kind {
            SpanKind::Client => status != 0,
            SpanKind::Server => matches!(status, 2 | 4 | 12 | 13 | 14 | 15),
        };
        if error {
            attr("error.type", AttributeValue::Str(status.to_string().into()));
            SpanStatus::Error(String::new())
        } else {
            SpanStatus::Unset
        }
    }

    fn describe_http(
        &self,
        kind: SpanKind,
        server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus {
        let exchange = HttpExchange {
            method: self.request(":method").unwrap_or_default(),
            target: self.request(":path").unwrap_or("/"),
            authority: self.request(":authority"),
            user_agent: self.request("user-agent"),
            scheme: self.scheme(),
            version: "2",
            status: self
                .response
                .as_ref()
                .and_then(|r| r.get(":status"))
                .and_then(|s| s.parse().ok()),
            no_response: self.unanswered(),
            status_unknown: self.answer_partial(),
            request_body_bytes: self.request_body_bytes,
            response_body_bytes: self.response_body_bytes,
        };
        describe_http(&exchange, kind, server, attributes)
    }
}

impl Describe for Http2Exchange {
    fn protocol(&self) -> &'static ProtocolFacts {
        if self.is_grpc() { &GRPC_FACTS } else { &FACTS }
    }

    fn span_name(&self) -> String {
        let Some(target) = self.request(":path") else {
            return "HTTP/2 stream".into();
        };
        if self.is_grpc() {
            return target.trim_start_matches('/').to_string();
        }
        http_span_name(self.request(":method").unwrap_or_default(), target)
    }

    fn server_name(&self) -> Option<&str> {
        Some(split_host(self.request(":authority")?).0)
    }

    fn describe(
        &self,
        kind: SpanKind,
        server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus {
        if self.request.is_some() && !self.is_grpc() {
            return self.describe_http(kind, server, attributes);
        }
        let mut attr = |key, value| attributes.push((key, value));
        attr("network.protocol.version", fixed("2"));
        if self.request.is_none() {
            // Its header block could not be decoded: only what is sure.
            attr("error.type", fixed("hpack_state_unknown"));
            return SpanStatus::Unset;
        }
        self.describe_grpc(kind, &mut attr)
    }
}
