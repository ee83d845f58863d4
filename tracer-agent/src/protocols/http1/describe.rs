//! HTTP/1.x as the pipeline sees it: detection, the connection parser
//! behind the `Parser` interface, and each exchange's description
//! (OpenTelemetry HTTP semantic conventions).

use std::{net::SocketAddr, sync::Arc};

use tracer_common::Source;

use super::{Http1Connection, Output, RequestHead, ResponseHead, looks_like_request_start};
use crate::protocols::{
    self, ChunkMeta, Exchange, ParseError, Parser, Protocol, RequestStart, Sink, Stream,
    describe::{Attributes, Describe, ProtocolFacts, SpanKind, SpanStatus},
    http::{self, HttpExchange, describe_http, http_span_name, split_host},
    trace_context,
};

/// HTTP/1.0 and HTTP/1.1 in clear text.
pub struct Http1;

pub static FACTS: ProtocolFacts = ProtocolFacts {
    name: "http1",
    outcome_attribute: "http.response.status_code",
    duration_metric: Some(&http::REQUEST_DURATION),
};

impl Protocol for Http1 {
    fn facts(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn is_request_start(&self, data: &[u8]) -> bool {
        looks_like_request_start(data)
    }

    fn parser(&self, next_index: u64, source: Source) -> Box<dyn Parser> {
        Box::new(Http1Parser {
            connection: Http1Connection::resuming(next_index),
            secure: source == Source::Tls,
        })
    }
}

#[derive(Debug)]
struct Http1Parser {
    connection: Http1Connection<ChunkMeta>,
    /// Over TLS: `https`.
    secure: bool,
}

impl Parser for Http1Parser {
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: ChunkMeta,
        out: &mut Vec<protocols::Output>,
    ) {
        self.connection.feed(
            stream,
            captured,
            uncaptured,
            meta,
            &mut Converted {
                out,
                secure: self.secure,
            },
        );
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

    fn resumable_at(&self) -> Option<u64> {
        self.connection
            .is_idle()
            .then(|| self.connection.next_index())
    }
}

/// The parser's outputs in the pipeline's terms, as they come.
struct Converted<'a> {
    out: &'a mut Vec<protocols::Output>,
    secure: bool,
}

impl Sink<Output<ChunkMeta>> for Converted<'_> {
    fn push(&mut self, output: Output<ChunkMeta>) {
        self.out.push(match output {
            Output::Request(start) => protocols::Output::Request(RequestStart {
                index: start.index,
                trace_context: trace_context::extract(|name| start.request.headers.get(name)),
                start: start.start,
                offset: start.offset,
                multiplexed: false,
            }),
            Output::Exchange(exchange) => protocols::Output::Exchange(Exchange {
                index: exchange.index,
                request_start: exchange.request_start,
                response_end: exchange.response_end,
                description: Box::new(Http1Exchange {
                    request: exchange.request,
                    response: exchange.response,
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

/// What an HTTP/1.x exchange's span says.
#[derive(Debug)]
pub struct Http1Exchange {
    pub request: Arc<RequestHead>,
    /// `None` when the connection closed before a response came.
    pub response: Option<ResponseHead>,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Read from a TLS library: the exchange went encrypted (`https`).
    pub secure: bool,
}

impl Describe for Http1Exchange {
    fn protocol(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn span_name(&self) -> String {
        http_span_name(self.request.method(), self.request.target())
    }

    fn server_name(&self) -> Option<&str> {
        let host = self.request.headers.get("host")?;
        Some(split_host(host).0)
    }

    fn describe(
        &self,
        kind: SpanKind,
        server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus {
        let request = &self.request;
        let exchange = HttpExchange {
            method: request.method(),
            target: request.target(),
            authority: request.headers.get("host"),
            user_agent: request.headers.get("user-agent"),
            scheme: if self.secure { "https" } else { "http" },
            version: if request.version == 0 { "1.0" } else { "1.1" },
            status: self.response.as_ref().map(|r| r.status as i64),
            no_response: ("no_response", "connection closed before a response"),
            status_unknown: false,
            request_body_bytes: self.request_body_bytes,
            response_body_bytes: self.response_body_bytes,
        };
        describe_http(&exchange, kind, server, attributes)
    }
}
