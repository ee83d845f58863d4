//! What database protocols share: the shape of their connection parsers
//! and their adaptor to the pipeline's `Parser`, the client operation
//! histogram (OpenTelemetry database conventions), and the description of
//! a SQL query's span. Databases get CLIENT spans only: the server's side
//! of the same exchange would repeat them.

use std::{fmt, net::SocketAddr};

use super::{
    ChunkMeta, Exchange as PipelineExchange, ParseError, Parser, RequestStart as PipelineStart,
    Sink, Stream,
    describe::{
        AttributeValue, Attributes, Describe, DurationMetric, MetricLabel, ProtocolFacts, SpanKind,
        SpanStatus,
    },
    http::{fixed, owned},
    sql::{Dialect, QuerySummary, sanitize},
};

pub static OPERATION_DURATION: DurationMetric = DurationMetric {
    server: None,
    client: (
        "db_client_operation_duration_seconds",
        "Duration of database operations made, from the command's first byte written to \
         its reply's last byte read.",
    ),
    // The bounds OpenTelemetry's semantic conventions advise for it.
    buckets: &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0],
    labels: &[
        MetricLabel {
            name: "db_system_name",
            attribute: "db.system.name",
            fold: None,
        },
        // Operation and collection names come from the bytes: bounded per
        // service like routes.
        MetricLabel {
            name: "db_operation_name",
            attribute: "db.operation.name",
            fold: Some(str::to_string),
        },
        MetricLabel {
            name: "db_collection_name",
            attribute: "db.collection.name",
            fold: Some(str::to_string),
        },
        MetricLabel {
            name: "error_type",
            attribute: "error.type",
            fold: None,
        },
    ],
};

/// A command written (its answer is still to come).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestStart<M> {
    /// Its number on the connection, from 0; its exchange has the same.
    pub index: u64,
    /// The chunk holding its first byte, and where in it.
    pub start: M,
    pub offset: usize,
}

/// What a database connection parser gives: `X` its exchanges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<M, X> {
    Request(RequestStart<M>),
    Exchange(X),
    Error(DbParseError),
}

/// Where a connection stands after bytes were lost. Either way, the next
/// write that starts a command starts afresh (clients write whole
/// commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    InStep,
    /// The command stream's framing was lost: answers to the commands read
    /// before still come first and in order, and are matched; answers past
    /// them answer commands never read, and are passed over.
    RequestsLost,
    /// The answer stream's framing was lost: nothing is read of it until
    /// the next command.
    ResponsesLost,
}

impl Sync {
    /// `stream`'s framing was lost: counted. A loss of answers outranks one
    /// of commands (it is the one the next command must resolve).
    pub fn lose<M, X>(&mut self, stream: Stream, out: &mut impl Sink<Output<M, X>>) {
        out.push(Output::Error(DbParseError::SyncLost(stream)));
        *self = match stream {
            Stream::Requests if *self == Sync::InStep => Sync::RequestsLost,
            Stream::Requests => *self,
            Stream::Responses => Sync::ResponsesLost,
        };
    }
}

/// Why a database parser could not follow its bytes; each is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbParseError {
    /// Bytes that are not the protocol's.
    Invalid(Stream, &'static str),
    /// Bytes outside a payload were not captured: that direction's
    /// framing is lost until it can be found again.
    SyncLost(Stream),
    /// An answer with no command waiting for it.
    UnexpectedAnswer,
    /// More than this many commands waiting: the oldest was dropped.
    TooManyPending(usize),
    /// Commands whose answers could not be told apart after a loss.
    Dropped(usize),
}

impl fmt::Display for DbParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbParseError::Invalid(stream, why) => write!(f, "invalid {stream:?} bytes: {why}"),
            DbParseError::SyncLost(stream) => write!(f, "{stream:?} stream lost sync"),
            DbParseError::UnexpectedAnswer => write!(f, "an answer without a command"),
            DbParseError::TooManyPending(n) => write!(f, "more than {n} commands awaiting answers"),
            DbParseError::Dropped(n) => write!(f, "{n} commands dropped with the stream's sync"),
        }
    }
}

/// A database connection's parser, generic over what tags its chunks
/// (`ChunkMeta` in the pipeline, chunk numbers in tests and fuzzing).
pub trait Connection<M> {
    type Exchange;
    /// One syscall's bytes: the `captured` prefix, then `uncaptured` more
    /// bytes that were moved but not copied.
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M, Self::Exchange>>,
    );
    /// The connection closed: commands still waiting are reported.
    fn close(&mut self, out: &mut impl Sink<Output<M, Self::Exchange>>);
    fn pending_requests(&self) -> usize;
    /// Between exchanges with nothing a fresh parser would lack.
    fn is_idle(&self) -> bool;
    /// The index the next command gets.
    fn next_index(&self) -> u64;
}

/// A database connection parser behind the pipeline's `Parser`: its
/// exchanges described by `describe`, its errors named by its protocol.
pub struct DbParser<C: Connection<ChunkMeta>> {
    connection: C,
    facts: &'static ProtocolFacts,
    describe: fn(C::Exchange) -> PipelineExchange,
}

impl<C: Connection<ChunkMeta>> DbParser<C> {
    pub fn new(
        connection: C,
        facts: &'static ProtocolFacts,
        describe: fn(C::Exchange) -> PipelineExchange,
    ) -> Self {
        DbParser {
            connection,
            facts,
            describe,
        }
    }

    fn sink<'a>(&self, out: &'a mut Vec<super::Output>) -> Converted<'a, C::Exchange> {
        Converted {
            out,
            facts: self.facts,
            describe: self.describe,
        }
    }
}

impl<C: Connection<ChunkMeta>> fmt::Debug for DbParser<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} parser", self.facts.name)
    }
}

impl<C: Connection<ChunkMeta> + Send> Parser for DbParser<C> {
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: ChunkMeta,
        out: &mut Vec<super::Output>,
    ) {
        let mut sink = self.sink(out);
        self.connection
            .feed(stream, captured, uncaptured, meta, &mut sink);
    }

    fn close(&mut self, out: &mut Vec<super::Output>) {
        let mut sink = self.sink(out);
        self.connection.close(&mut sink);
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

/// A database parser's outputs in the pipeline's terms, as they come.
struct Converted<'a, X> {
    out: &'a mut Vec<super::Output>,
    facts: &'static ProtocolFacts,
    describe: fn(X) -> PipelineExchange,
}

impl<X> Sink<Output<ChunkMeta, X>> for Converted<'_, X> {
    fn push(&mut self, output: Output<ChunkMeta, X>) {
        self.out.push(match output {
            Output::Request(start) => super::Output::Request(PipelineStart {
                index: start.index,
                trace_context: None,
                start: start.start,
                offset: start.offset,
                multiplexed: false,
            }),
            Output::Exchange(exchange) => super::Output::Exchange((self.describe)(exchange)),
            Output::Error(error) => super::Output::Error(ParseError {
                protocol: self.facts.name,
                message: error.to_string(),
            }),
        });
    }
}

/// A SQL query and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query<M> {
    pub index: u64,
    /// Its text as sent (truncated); empty when the statement was prepared
    /// before the parser saw the connection.
    pub text: String,
    /// `None`: the connection closed, or its answer was lost, first.
    pub outcome: Option<SqlOutcome>,
    /// The database the session is in, when seen.
    pub database: Option<String>,
    pub request_start: M,
    pub response_end: M,
}

/// A SQL protocol's query as the pipeline's exchange: its text without
/// literals (`dialect`), its span a `system` one.
pub fn describe_query(
    query: Query<ChunkMeta>,
    protocol: &'static ProtocolFacts,
    system: &'static str,
    dialect: Dialect,
) -> PipelineExchange {
    let text = sanitize(&query.text, dialect);
    PipelineExchange {
        index: query.index,
        request_start: query.request_start,
        response_end: query.response_end,
        description: Box::new(SqlExchange {
            protocol,
            system,
            summary: QuerySummary::of(&text),
            text,
            outcome: query.outcome,
            database: query.database,
        }),
    }
}

/// How a SQL query ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlOutcome {
    Ok,
    /// The server's error: its code (a SQLSTATE, an error number) and
    /// message.
    Error {
        code: String,
        message: String,
    },
}

/// What a SQL query's span says.
#[derive(Debug)]
pub struct SqlExchange {
    pub protocol: &'static ProtocolFacts,
    /// `db.system.name`.
    pub system: &'static str,
    /// The query with its literals replaced (empty: a statement prepared
    /// before the agent saw the connection).
    pub text: String,
    pub summary: QuerySummary,
    /// `None`: no answer came before the close.
    pub outcome: Option<SqlOutcome>,
    pub database: Option<String>,
}

/// Bytes of an error message kept in the span's status.
const MAX_ERROR_TEXT: usize = 256;

impl Describe for SqlExchange {
    fn protocol(&self) -> &'static ProtocolFacts {
        self.protocol
    }

    /// `SELECT orders`; the system's name when the text was not seen.
    fn span_name(&self) -> String {
        self.summary
            .span_name()
            .unwrap_or_else(|| self.system.to_string())
    }

    fn describe(
        &self,
        _kind: SpanKind,
        _server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus {
        let mut attr = |key: &'static str, value: AttributeValue| attributes.push((key, value));
        attr("db.system.name", fixed(self.system));
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
            Some(SqlOutcome::Ok) => SpanStatus::Unset,
            Some(SqlOutcome::Error { code, message }) => {
                let code = if code.is_empty() { "_OTHER" } else { code };
                attr("db.response.status_code", owned(code));
                attr("error.type", owned(code));
                SpanStatus::Error(message.chars().take(MAX_ERROR_TEXT).collect())
            }
            None => {
                attr("error.type", fixed("no_response"));
                SpanStatus::Error("connection closed before an answer".into())
            }
        }
    }
}
