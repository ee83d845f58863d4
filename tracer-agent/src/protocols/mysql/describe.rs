//! MySQL and MariaDB as the pipeline sees it: detection by a client's
//! first packet, the connection parser behind the `Parser` interface, and
//! each query's description (OpenTelemetry database conventions).

use std::net::SocketAddr;

use tracer_common::Source;

use super::{MysqlConnection, Outcome, Output, looks_like_client_start};
use crate::protocols::{
    self, ChunkMeta, Exchange, ParseError, Parser, Protocol, RequestStart, Sink, Stream, db,
    describe::{AttributeValue, Attributes, Describe, ProtocolFacts, SpanKind, SpanStatus},
    http::{fixed, owned},
    sql::{Dialect, QuerySummary, sanitize},
};

/// MySQL and MariaDB, in clear text or read as TLS plaintext.
pub struct Mysql;

pub static FACTS: ProtocolFacts = ProtocolFacts {
    name: "mysql",
    outcome_attribute: "db.response.status_code",
    duration_metric: Some(&db::OPERATION_DURATION),
};

impl Protocol for Mysql {
    fn facts(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn is_request_start(&self, data: &[u8]) -> bool {
        looks_like_client_start(data)
    }

    fn client_only(&self) -> bool {
        true
    }

    fn parser(&self, next_index: u64, _source: Source) -> Box<dyn Parser> {
        Box::new(MysqlParser(MysqlConnection::resuming(next_index)))
    }
}

#[derive(Debug)]
struct MysqlParser(MysqlConnection<ChunkMeta>);

impl Parser for MysqlParser {
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: ChunkMeta,
        out: &mut Vec<protocols::Output>,
    ) {
        self.0
            .feed(stream, captured, uncaptured, meta, &mut Converted(out));
    }

    fn close(&mut self, out: &mut Vec<protocols::Output>) {
        self.0.close(&mut Converted(out));
    }

    fn pending_requests(&self) -> usize {
        self.0.pending_requests()
    }

    fn resumable_at(&self) -> Option<u64> {
        self.0.is_idle().then(|| self.0.next_index())
    }
}

struct Converted<'a>(&'a mut Vec<protocols::Output>);

impl Sink<Output<ChunkMeta>> for Converted<'_> {
    fn push(&mut self, output: Output<ChunkMeta>) {
        self.0.push(match output {
            Output::Request(start) => protocols::Output::Request(RequestStart {
                index: start.index,
                trace_context: None,
                start: start.start,
                offset: start.offset,
                multiplexed: false,
            }),
            Output::Exchange(exchange) => {
                let text = sanitize(&exchange.query, Dialect::Mysql);
                protocols::Output::Exchange(Exchange {
                    index: exchange.index,
                    request_start: exchange.request_start,
                    response_end: exchange.response_end,
                    description: Box::new(MysqlExchange {
                        summary: QuerySummary::of(&text),
                        text,
                        outcome: exchange.outcome,
                        database: exchange.database,
                    }),
                })
            }
            Output::Error(error) => protocols::Output::Error(ParseError {
                protocol: FACTS.name,
                message: error.to_string(),
            }),
        });
    }
}

/// What a MySQL query's span says.
#[derive(Debug)]
pub struct MysqlExchange {
    /// The query with its literals replaced (empty: a statement prepared
    /// before the agent saw the connection).
    pub text: String,
    pub summary: QuerySummary,
    /// `None`: no answer came before the close.
    pub outcome: Option<Outcome>,
    pub database: Option<String>,
}

/// Bytes of an error message kept in the span's status.
const MAX_ERROR_TEXT: usize = 256;

impl Describe for MysqlExchange {
    fn protocol(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    /// `SELECT orders`; `mysql` when the text was not seen.
    fn span_name(&self) -> String {
        self.summary
            .span_name()
            .unwrap_or_else(|| FACTS.name.to_string())
    }

    fn describe(
        &self,
        _kind: SpanKind,
        _server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus {
        let mut attr = |key: &'static str, value: AttributeValue| attributes.push((key, value));
        attr("db.system.name", fixed("mysql"));
        if let Some(operation) = &self.summary.operation {
            attr("db.operation.name", owned(operation));
        }
        if let Some(table) = &self.summary.table {
            attr("db.collection.name", owned(table));
        }
        if !self.text.is_empty() {
            attr("db.query.text", owned(&self.text));
        }
        if let Some(database) = &self.database {
            attr("db.namespace", owned(database));
        }
        match &self.outcome {
            Some(Outcome::Ok) => SpanStatus::Unset,
            Some(Outcome::Error { code, message }) => {
                // The server's error number, as the conventions say (its
                // SQLSTATE is coarse: `HY000` for most errors).
                let code = code.to_string();
                attr("db.response.status_code", owned(&code));
                attr("error.type", owned(&code));
                SpanStatus::Error(message.chars().take(MAX_ERROR_TEXT).collect())
            }
            None => {
                attr("error.type", fixed("no_response"));
                SpanStatus::Error("connection closed before an answer".into())
            }
        }
    }
}
