//! Whole traces: which span is whose parent, and the trace id they share.
//!
//! Ids are given when a request's head is parsed, not when its response ends.
//! Events arrive in the order the kernel saw them, and a caller always writes
//! its request before the callee reads it, so a span's parent has its ids
//! already when the span starts:
//!
//! - **Server span** (a request read on an accepted connection): its parent is
//!   the client span of the same request on the other end of the connection,
//!   found by the mirrored 4-tuple and the TCP sequence number of the
//!   request's first byte (the same number on both ends: exact for keep-alive
//!   and pipelining). Else a `traceparent`/B3 header continues that trace. Else
//!   it starts a trace.
//! - **Client span** (a request written on a connected socket): a
//!   `traceparent`/B3 header already in it wins (the application's own SDK).
//!   Else its parent is the server request the kernel says the writing thread
//!   was serving (`RequestContext`: that connection and the sequence number of
//!   the read that started the request). Else it starts a trace.

pub mod propagation;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

use tracer_common::Role;

use crate::connections::{CompletedExchange, StartedRequest};

/// A span's identity and its place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
}

impl SpanIds {
    fn root() -> Self {
        SpanIds {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
            parent_span_id: None,
        }
    }

    fn child_of(trace_id: [u8; 16], parent: [u8; 8]) -> Self {
        SpanIds {
            trace_id,
            span_id: nonzero_random(),
            parent_span_id: Some(parent),
        }
    }
}

/// W3C ids must not be all zeroes.
fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// A request on the wire: (client, server, sequence number of its first byte).
type WireKey = (SocketAddr, SocketAddr, u32);

/// Recent requests kept per server connection for context look-ups.
const REQUESTS_PER_CONNECTION: usize = 16;
/// Client requests waiting for their server side; past this the oldest go
/// (their server is not traced by this agent, or not yet seen).
const MAX_WAITING_CLIENT_REQUESTS: usize = 65_536;

/// How each span got its parent, counted for the agent's health.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounts {
    /// Server spans linked to the client span on the other end of their connection.
    pub by_connection: u64,
    /// Client spans linked to the server request their thread was serving.
    pub by_context: u64,
    /// Spans continuing a `traceparent` / B3 header.
    pub by_header: u64,
    /// Spans that start a trace.
    pub roots: u64,
}

#[derive(Debug, Default)]
pub struct Correlator {
    /// Ids of requests in progress, by (connection, request index).
    active: HashMap<(u64, u64), SpanIds>,
    /// Recent server requests per server connection: (first byte's sequence number, ids).
    server_requests: HashMap<u64, VecDeque<(u32, SpanIds)>>,
    /// Client requests whose server side has not been seen, oldest first.
    waiting: HashMap<WireKey, SpanIds>,
    waiting_order: VecDeque<WireKey>,
    pub links: LinkCounts,
}

impl Correlator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives a request that just started its ids.
    pub fn request_started(&mut self, started: &StartedRequest) {
        let connection = &started.connection;
        let seq = started.seq();
        let header = propagation::extract(&started.start.request.headers);
        let ids = match connection.role {
            Role::Client => {
                let ids = if let Some(remote) = header {
                    self.links.by_header += 1;
                    SpanIds::child_of(remote.trace_id, remote.span_id)
                } else if let Some(parent) = started
                    .start
                    .start
                    .context
                    .and_then(|c| self.serving(c.sock, c.seq))
                {
                    self.links.by_context += 1;
                    SpanIds::child_of(parent.trace_id, parent.span_id)
                } else {
                    self.links.roots += 1;
                    SpanIds::root()
                };
                self.wait_for_server((connection.local, connection.remote, seq), ids);
                ids
            }
            Role::Server | Role::Unknown => {
                let wire = (connection.remote, connection.local, seq);
                let ids = if let Some(client) = self.waiting.remove(&wire) {
                    self.links.by_connection += 1;
                    SpanIds::child_of(client.trace_id, client.span_id)
                } else if let Some(remote) = header {
                    self.links.by_header += 1;
                    SpanIds::child_of(remote.trace_id, remote.span_id)
                } else {
                    self.links.roots += 1;
                    SpanIds::root()
                };
                let recent = self.server_requests.entry(connection.sock_id).or_default();
                if recent.len() >= REQUESTS_PER_CONNECTION {
                    recent.pop_front();
                }
                recent.push_back((seq, ids));
                ids
            }
        };
        self.active
            .insert((connection.sock_id, started.start.index), ids);
    }

    /// The ids an exchange's span gets (a fresh root if its start was not seen).
    pub fn exchange_completed(&mut self, completed: &CompletedExchange) -> SpanIds {
        self.active
            .remove(&(completed.connection.sock_id, completed.exchange.index))
            .unwrap_or_else(|| {
                self.links.roots += 1;
                SpanIds::root()
            })
    }

    /// Forgets a connection that ended.
    pub fn connection_closed(&mut self, sock_id: u64) {
        self.server_requests.remove(&sock_id);
        self.active.retain(|(sock, _), _| *sock != sock_id);
    }

    /// Client requests still waiting for their server side.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The server request on `sock` whose bytes include sequence number `seq`:
    /// the latest one that started at or before it.
    fn serving(&self, sock: u64, seq: u32) -> Option<SpanIds> {
        self.server_requests
            .get(&sock)?
            .iter()
            .rev()
            .find(|(start, _)| seq_at_or_after(seq, *start))
            .map(|(_, ids)| *ids)
    }

    fn wait_for_server(&mut self, key: WireKey, ids: SpanIds) {
        while self.waiting_order.len() >= MAX_WAITING_CLIENT_REQUESTS {
            if let Some(oldest) = self.waiting_order.pop_front() {
                self.waiting.remove(&oldest);
            }
        }
        if self.waiting.insert(key, ids).is_none() {
            self.waiting_order.push_back(key);
        }
        // Entries matched already leave stale keys in the order queue; drop
        // them from the front so it stays near the map's size.
        while let Some(front) = self.waiting_order.front() {
            if self.waiting.contains_key(front) {
                break;
            }
            self.waiting_order.pop_front();
        }
    }
}

/// `a` is at or after `b` in TCP sequence space (which wraps at 2^32).
fn seq_at_or_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 1 << 31
}

#[cfg(test)]
mod tests;
