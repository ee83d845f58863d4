//! HTTP/1.x as the pipeline sees it: detection, the connection parser
//! behind the `Parser` interface, and each exchange's description
//! (OpenTelemetry HTTP semantic conventions).

use std::{net::SocketAddr, sync::Arc};

use tracer_common::Source;

use super::{Http1Connection, Output, RequestHead, ResponseHead, looks_like_request_start};
use crate::protocols::{
    self, ChunkMeta, Exchange, ParseError, Parser, Protocol, RequestStart, Sink, Stream,
    describe::{AttributeValue, Attributes, Describe, ProtocolFacts, SpanKind, SpanStatus, Text},
    http::{self, KNOWN_METHODS, push_route, redact_query, split_host, split_target},
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

impl Http1Exchange {
    /// The method as the conventions name it: one of the known ones, or `_OTHER`.
    fn method(&self) -> &'static str {
        KNOWN_METHODS
            .iter()
            .copied()
            .find(|known| *known == self.request.method)
            .unwrap_or("_OTHER")
    }
}

impl Describe for Http1Exchange {
    fn protocol(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn span_name(&self) -> String {
        let method = self.method();
        let (path, _) = split_target(&self.request.target);
        let mut name = String::with_capacity(method.len() + 1 + path.len().max(1));
        name.push_str(method);
        name.push(' ');
        push_route(&mut name, path);
        name
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
        let (path, query) = split_target(&request.target);
        let method = self.method();
        let mut attr = |key: &'static str, value: AttributeValue| attributes.push((key, value));
        attr("http.request.method", fixed(method));
        if method == "_OTHER" {
            attr("http.request.method_original", owned(&request.method));
        }
        attr("url.path", owned(path));
        if let Some(query) = query {
            attr("url.query", AttributeValue::Str(redact_query(query).into()));
        }
        let scheme = if self.secure { "https" } else { "http" };
        attr("url.scheme", fixed(scheme));
        attr(
            "network.protocol.version",
            fixed(if request.version == 0 { "1.0" } else { "1.1" }),
        );
        if kind == SpanKind::Client {
            let authority = request
                .headers
                .get("host")
                .map(str::to_string)
                .unwrap_or_else(|| server.to_string());
            let target = match query {
                Some(q) => format!("{path}?{}", redact_query(q)),
                None => path.to_string(),
            };
            attr(
                "url.full",
                AttributeValue::Str(format!("{scheme}://{authority}{target}").into()),
            );
        }
        if let Some(agent) = request.headers.get("user-agent") {
            attr("user_agent.original", owned(agent));
        }
        if self.request_body_bytes > 0 {
            attr(
                "http.request.body.size",
                AttributeValue::Int(self.request_body_bytes as i64),
            );
        }
        let Some(response) = &self.response else {
            attr("error.type", fixed("no_response"));
            return SpanStatus::Error("connection closed before a response".into());
        };
        attr(
            "http.response.status_code",
            AttributeValue::Int(response.status as i64),
        );
        if self.response_body_bytes > 0 {
            attr(
                "http.response.body.size",
                AttributeValue::Int(self.response_body_bytes as i64),
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
}

fn owned(value: &str) -> AttributeValue {
    AttributeValue::Str(value.to_string().into())
}

fn fixed(value: &'static str) -> AttributeValue {
    AttributeValue::Str(Text::Static(value))
}
