//! MySQL and MariaDB as the pipeline sees it: detection by a client's
//! first packet, and each query described as a SQL span (the error
//! number as its status code, as the conventions say: the SQLSTATE is
//! coarse, `HY000` for most errors).

use tracer_common::Source;

use super::{MysqlConnection, looks_like_client_start};
use crate::protocols::{Parser, Protocol, db, describe::ProtocolFacts, sql::Dialect};

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
        Box::new(db::DbParser::new(
            MysqlConnection::resuming(next_index),
            &FACTS,
            |query| db::describe_query(query, &FACTS, "mysql", Dialect::Mysql),
        ))
    }
}
