//! Protocols: each one a module that recognises itself from a connection's
//! first bytes, parses both byte streams into exchanges, and describes each
//! exchange (span name, attributes, status, the trace context its request
//! carries, the metric it feeds). The stages after it know no protocol.
//!
//! Parsers are pure and total: no I/O and no eBPF, any bytes in any split
//! give exchanges or counted errors, never a panic; each is unit-tested and
//! fuzzed in isolation.
//!
//! Adding a protocol: its module (parser, `Describe`, tests, a fuzz
//! target) and one line in `PROTOCOLS`.

pub mod db;
pub mod describe;
pub mod http;
pub mod http1;
pub mod http2;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;
pub mod trace_context;

use std::fmt;

use tracer_common::{RequestContext, Source};

use crate::events::KernelIds;
use describe::{Describe, ProtocolFacts};
use trace_context::RemoteContext;

/// The protocols the agent parses, tried in this order on a connection's
/// first data (HTTP/2's preface, `PRI * HTTP/2.0`, would pass as an
/// HTTP/1 request line).
pub static PROTOCOLS: &[&dyn Protocol] = &[
    &http2::Http2,
    &http1::Http1,
    &redis::Redis,
    &postgres::Postgres,
    &mysql::Mysql,
];

pub trait Protocol: Sync {
    fn facts(&self) -> &'static ProtocolFacts;
    /// Whether `data`, the first bytes seen going one way on a connection,
    /// are the start of a request of this protocol.
    fn is_request_start(&self, data: &[u8]) -> bool;
    /// Parsed on the client's side of a connection only (databases: the
    /// server's side would repeat the client's spans, and is left alone).
    fn client_only(&self) -> bool {
        false
    }
    /// A parser for a connection whose next request gets `next_index`,
    /// fed the bytes of `source` (a TLS library's are the plaintext of an
    /// encrypted connection: `https`, not `http`).
    fn parser(&self, next_index: u64, source: Source) -> Box<dyn Parser>;
}

impl fmt::Debug for dyn Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.facts().name)
    }
}

/// One connection's parser: both byte streams in, requests and exchanges out.
pub trait Parser: Send + fmt::Debug {
    /// One syscall's bytes: the `captured` prefix, then `uncaptured` more
    /// bytes that were moved but not copied.
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: ChunkMeta,
        out: &mut Vec<Output>,
    );
    /// The connection closed: what it delimits ends, requests without a
    /// response are reported as such.
    fn close(&mut self, out: &mut Vec<Output>);
    /// Requests whose response has not ended yet.
    fn pending_requests(&self) -> usize;
    /// Between exchanges with nothing a fresh parser would lack: the index
    /// its next request gets, so that it can be freed while the connection
    /// idles and made again by `Protocol::parser` at the next bytes.
    fn resumable_at(&self) -> Option<u64>;
}

/// Which stream of the connection a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Requests,
    Responses,
}

/// Where a connection parser's outputs go: a list (tests, fuzzing), or its
/// protocol's conversion to the pipeline's `Output`.
pub trait Sink<T> {
    fn push(&mut self, item: T);
}

impl<T> Sink<T> for Vec<T> {
    fn push(&mut self, item: T) {
        Vec::push(self, item);
    }
}

/// What the pipeline attaches to each chunk of bytes it feeds a parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// When the chunk's first byte was there: a write's entry, a read's return.
    pub first_ns: u64,
    /// When the syscall that moved it returned.
    pub last_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// TCP sequence number of the chunk's first byte.
    pub seq: u32,
    /// The inbound request a client wrote this chunk for (the kernel's decision).
    pub context: Option<RequestContext>,
    pub ids: KernelIds,
}

#[derive(Debug)]
pub enum Output {
    Request(RequestStart),
    Exchange(Exchange),
    Error(ParseError),
}

/// A request whose head was just parsed (its response is still to come).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestStart {
    /// The request's number on this connection, from 0; its `Exchange` has the same.
    pub index: u64,
    /// The trace context the request carries (`traceparent`, B3).
    pub trace_context: Option<RemoteContext>,
    /// The chunk holding the request's first byte, and where in it that byte is.
    pub start: ChunkMeta,
    pub offset: usize,
    /// Other requests may be in flight on the connection at the same time,
    /// answered in any order (HTTP/2 streams): which one a call is made for
    /// is then known only while it is the only one.
    pub multiplexed: bool,
}

/// A request and what became of it.
#[derive(Debug)]
pub struct Exchange {
    /// The request's number on this connection (as in its `RequestStart`).
    pub index: u64,
    /// The chunk holding the request's first byte.
    pub request_start: ChunkMeta,
    /// The chunk holding the response's last byte (or the last chunk seen
    /// before the connection closed, when there was no response).
    pub response_end: ChunkMeta,
    pub description: Box<dyn Describe>,
}

/// Bytes a parser could not understand: counted, logged at debug level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub protocol: &'static str,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.protocol, self.message)
    }
}

/// The protocol whose request `data` starts, if any; `read` when the
/// bytes were read, by the server of the connection.
pub fn detect(data: &[u8], read: bool) -> Option<&'static dyn Protocol> {
    PROTOCOLS
        .iter()
        .copied()
        .filter(|protocol| !(read && protocol.client_only()))
        .find(|protocol| protocol.is_request_start(data))
}
