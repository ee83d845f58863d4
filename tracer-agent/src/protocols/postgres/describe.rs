//! PostgreSQL as the pipeline sees it: detection by a client's first
//! message, and each query described as a SQL span.

use tracer_common::Source;

use super::{PostgresConnection, looks_like_client_start};
use crate::protocols::{Parser, Protocol, db, describe::ProtocolFacts, sql::Dialect};

/// PostgreSQL, in clear text or read as TLS plaintext.
pub struct Postgres;

pub static FACTS: ProtocolFacts = ProtocolFacts {
    name: "postgresql",
    outcome_attribute: "db.response.status_code",
    duration_metric: Some(&db::OPERATION_DURATION),
};

impl Protocol for Postgres {
    fn facts(&self) -> &'static ProtocolFacts {
        &FACTS
    }

    fn is_request_start(&self, data: &[u8]) -> bool {
        looks_like_client_start(data).is_some()
    }

    fn client_only(&self) -> bool {
        true
    }

    fn parser(&self, next_index: u64, _source: Source) -> Box<dyn Parser> {
        Box::new(db::DbParser::new(
            PostgresConnection::resuming(next_index),
            &FACTS,
            |query| db::describe_query(query, &FACTS, "postgresql", Dialect::Postgres),
        ))
    }
}
