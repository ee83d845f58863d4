//! Redis as the pipeline sees it: detection by a client's first command,
//! the connection parser behind the `Parser` interface, and each
//! command's description (OpenTelemetry database conventions). One span
//! per command, pipelined or not.

use std::net::SocketAddr;

use tracer_common::Source;

use super::{Command, CommandSummary, Exchange, RedisConnection, Reply, looks_like_command};
use crate::protocols::{
    self, ChunkMeta, Parser, Protocol, db,
    describe::{AttributeValue, Attributes, Describe, ProtocolFacts, SpanKind, SpanStatus},
    http::{fixed, owned},
};

/// Redis, RESP2 and RESP3, in clear text or read as TLS plaintext.
pub struct Redis;

pub static FACTS: ProtocolFacts = ProtocolFacts {
    name: "redis",
    outcome_attribute: "db.response.status_code",
    duration_metric: Some(&db::OPERATION_DURATION),
};

impl Protocol for Redis {
    fn facts(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn is_request_start(&self, data: &[u8]) -> bool {
        looks_like_command(data)
    }

    fn client_only(&self) -> bool {
        true
    }

    fn parser(&self, next_index: u64, _source: Source) -> Box<dyn Parser> {
        Box::new(db::DbParser::new(
            RedisConnection::resuming(next_index),
            &FACTS,
            describe,
        ))
    }
}

fn describe(exchange: Exchange<ChunkMeta>) -> protocols::Exchange {
    protocols::Exchange {
        index: exchange.index,
        request_start: exchange.request_start,
        response_end: exchange.response_end,
        description: Box::new(RedisExchange {
            summary: CommandSummary::of(&exchange.command),
            command: exchange.command,
            reply: exchange.reply,
            database: exchange.database,
        }),
    }
}

/// What a Redis command's span says.
#[derive(Debug)]
pub struct RedisExchange {
    pub summary: CommandSummary,
    pub command: Command,
    /// `None`: the connection closed before the reply.
    pub reply: Option<Reply>,
    pub database: Option<u32>,
}

/// Bytes of an error reply kept in the span's status.
const MAX_ERROR_TEXT: usize = 128;

impl Describe for RedisExchange {
    fn protocol(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    /// The command (`GET`, `CONFIG GET`): Redis has no collections, and a
    /// key would make names without bound.
    fn span_name(&self) -> String {
        match &self.summary.subcommand {
            Some(sub) => format!("{} {sub}", self.summary.name),
            None => self.summary.name.clone(),
        }
    }

    fn describe(
        &self,
        _kind: SpanKind,
        _server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus {
        let mut attr = |key: &'static str, value: AttributeValue| attributes.push((key, value));
        attr("db.system.name", fixed("redis"));
        attr("db.operation.name", owned(&self.summary.name));
        attr(
            "db.query.text",
            AttributeValue::Str(self.summary.query_text(&self.command).into()),
        );
        if let Some(database) = self.database {
            attr(
                "db.namespace",
                AttributeValue::Str(database.to_string().into()),
            );
        }
        match &self.reply {
            Some(Reply::Ok) => SpanStatus::Unset,
            Some(Reply::Error(text)) => {
                // The error's prefix is its kind: `ERR`, `WRONGTYPE`, `NOAUTH`.
                let prefix = text.split(' ').next().unwrap_or_default();
                let prefix = if prefix.is_empty() { "ERR" } else { prefix };
                attr("db.response.status_code", owned(prefix));
                attr("error.type", owned(prefix));
                SpanStatus::Error(text.chars().take(MAX_ERROR_TEXT).collect())
            }
            None => {
                attr("error.type", fixed("no_response"));
                SpanStatus::Error("connection closed before a reply".into())
            }
        }
    }
}
