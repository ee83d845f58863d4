//! Whole traces: which span is whose parent, and the trace id they share.
//!
//! Ids are given when a request's head is parsed, not when its response ends.
//! Events arrive in the order the kernel saw them, and a caller always writes
//! its request before the callee reads it, so a span's parent has its ids
//! already when the span starts.
//!
//! - **Server span** (a request read on an accepted connection): its parent is
//!   the client span of the same request on the other end of the connection,
//!   found by the mirrored 4-tuple and the TCP sequence number of the
//!   request's first byte (the same number on both ends: exact for keep-alive
//!   and pipelining). Else a `traceparent`/B3 header continues that trace. Else
//!   it starts a trace, and waits as an orphan: events are sent at syscall
//!   exit, and a caller preempted between handing its bytes to the socket and
//!   its `write` returning is seen after the callee's read. When that client
//!   request arrives, the orphan is adopted and its trace id, in every span of
//!   its subtree not yet exported, becomes the caller's. An orphan that
//!   ended before its caller showed up (a fast server answering before a
//!   TLS library's write returned) can still be adopted while its span is
//!   held back in the pipeline (`settle`); so can the spans of its
//!   subtree that ended meanwhile. Only spans whose ids can still change
//!   are held back (`Completion::wait`): those of a trace with a server
//!   request in progress, or a call made for one, until the last of them
//!   ends, and ended orphans, for `pipeline::HOLD`. The others, in a trace
//!   no request in progress can rename, leave at once. A request whose
//!   caller is not on this node (by its address) is no orphan: no caller
//!   here can adopt it.
//! - **Client span** (a request written on a connected socket): when the
//!   application's own OpenTelemetry SDK wrote a `traceparent`/B3 header into
//!   it, the SDK reports this call's client span: the agent makes none, and
//!   the callee's server span hangs under the header's span (W3C semantics).
//!   A header that is only the one the process received on the request the
//!   call is for (a proxy forwarding it) is not the SDK's. Else its parent
//!   is the inbound request the kernel tied the write to
//!   (`RequestContext`, decided at the syscall: the one request the thread
//!   was free to work on, see `tracer-ebpf`'s `context`). Without one, the
//!   call starts a trace of its own: a missing link, never a wrong one.
//! - **Injected headers** (`--inject-traceparent`): the kernel chose the
//!   trace id of each inbound request and the ids of each header it added;
//!   those went on the wire, so the spans here carry exactly them.

use std::{
    collections::{BTreeMap, VecDeque, hash_map::Entry},
    hash::BuildHasher,
    net::{IpAddr, SocketAddr},
};

use foldhash::{HashMap, HashSet};
use tracer_common::{RequestContext, Role, event::CONTEXT_FROM_GOROUTINE};

use crate::{
    connections::{CompletedExchange, StartedRequest},
    protocols::trace_context::RemoteContext,
    spans::Span,
};

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

/// Where a locally made trace id's tag starts (`Correlator::local_root`).
const TAG_AT: usize = 12;

/// A request on the wire: (client, server, sequence number of its first byte).
type WireKey = (SocketAddr, SocketAddr, u32);

/// A request on a connection: (`sock_id`, request index).
type RequestKey = (u64, u64);

/// Client requests waiting for their server side (their server is not traced
/// by this agent, or not yet seen), orphans waiting for their client, and
/// adopted trace ids, each kept at most this many; past it the oldest go.
const MAX_WAITING_CLIENT_REQUESTS: usize = 65_536;

/// How each span got its parent, counted for the agent's health.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounts {
    /// Server spans linked to the client span on the other end of their connection.
    pub by_connection: u64,
    /// Client spans linked to the inbound request the kernel tied them to.
    pub by_context: u64,
    /// Spans continuing a `traceparent` / B3 header.
    pub by_header: u64,
    /// Spans that start a trace.
    pub roots: u64,
    /// Of `by_connection`: server spans seen before their caller's write
    /// returned, adopted when it did.
    pub adopted: u64,
    /// Client spans whose kernel context named an inbound request the agent
    /// no longer had (answered before the call's event arrived).
    pub context_not_found: u64,
    /// Calls whose client span the application's own SDK reports (its
    /// `traceparent` was on the request): the agent made none.
    pub left_to_sdk: u64,
    /// Calls of Go programs the kernel did not tie to a request through
    /// their goroutine (goroutines move between threads, so a thread's
    /// answer is never taken for Go): the program is not followed (see the
    /// agent's log for why), or the goroutine serves no open request.
    pub go_calls_unlinked: u64,
}

impl LinkCounts {
    /// Each count with its name, for logs and metrics.
    pub fn named(&self) -> [(&'static str, u64); 8] {
        [
            ("links_by_connection", self.by_connection),
            ("links_adopted", self.adopted),
            ("links_by_context", self.by_context),
            ("links_by_header", self.by_header),
            ("trace_roots", self.roots),
            ("context_not_found", self.context_not_found),
            ("client_spans_left_to_sdk", self.left_to_sdk),
            ("go_calls_unlinked", self.go_calls_unlinked),
        ]
    }
}

/// An inbound request being served.
#[derive(Debug)]
struct Inbound {
    ids: SpanIds,
    /// TCP sequence number of its first byte.
    seq: u32,
    /// The address it came from.
    caller: SocketAddr,
    /// The trace context header it arrived with.
    header: Option<RemoteContext>,
    /// One of several that may be in flight on its connection (HTTP/2).
    multiplexed: bool,
}

/// A request in progress.
#[derive(Debug, Clone, Copy)]
struct Active {
    ids: SpanIds,
    /// Counted in `live_traces`: a server request, or a call made for one.
    keeps_trace_live: bool,
}

/// The ids a completed exchange's span gets.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub ids: SpanIds,
    pub wait: Wait,
}

/// Whether a built span waits, where `settle` can still change its ids,
/// before it is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No adoption can change its ids: it leaves at once (most spans).
    No,
    /// Its trace has requests in progress (`live_traces`) that may still
    /// rename it: it waits until the last of them ends (`quiesced`).
    WhileTraceLive,
    /// An ended orphan: a caller on this node may still adopt it, for as
    /// long as `pipeline::HOLD`.
    ForCaller,
}

/// The addresses a caller this agent traces can call from: this node's
/// (listed at start-up) and the local ends of the connections it has seen
/// since (a container started later). A server request from anywhere else
/// has no caller that could show up late here: it is no orphan.
#[derive(Debug, Default)]
struct NodeAddresses {
    known: HashSet<IpAddr>,
    /// False: the node's addresses are not known (none were listed, or more
    /// than `MAX_NODE_ADDRESSES` came up), so any caller may be on it.
    complete: bool,
}

/// Addresses `NodeAddresses` keeps; past this, any caller may be local.
const MAX_NODE_ADDRESSES: usize = 4096;

impl NodeAddresses {
    fn learn(&mut self, address: IpAddr) {
        if !self.complete || self.known.contains(&address.to_canonical()) {
            return;
        }
        if self.known.len() >= MAX_NODE_ADDRESSES {
            self.complete = false;
            self.known = HashSet::default();
            return;
        }
        self.known.insert(address.to_canonical());
    }

    /// Whether a traced process may have called from `address`.
    fn may_be_local(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        !self.complete
            || address.is_loopback()
            || address.is_unspecified()
            || self.known.contains(&address)
    }
}

#[derive(Debug, Default)]
pub struct Correlator {
    /// Requests in progress (both kinds), by connection and index; ordered
    /// so that one connection's requests are one range.
    active: BTreeMap<RequestKey, Active>,
    /// The trace ids an adoption or a joined wire trace may still replace,
    /// each with the requests in progress that keep it so: every server
    /// request, and every call made for one. A call that starts a trace
    /// is not counted: only its own start can rename that trace (`adopt`),
    /// before any span of it is built. A span whose trace is none of
    /// these, and is not an ended orphan's, keeps its ids.
    live_traces: HashMap<[u8; 16], u32>,
    /// Traces whose last request in progress ended since `clear_quiesced`:
    /// their waiting spans may leave, unless an orphan's wait for them.
    quiesced: Vec<[u8; 16]>,
    /// Where callers this agent traces are.
    node: NodeAddresses,
    /// Inbound (server) requests read and not yet answered.
    inbound: HashMap<RequestKey, Inbound>,
    /// Client requests whose server side has not been seen, oldest first.
    waiting: HashMap<WireKey, SpanIds>,
    waiting_order: VecDeque<WireKey>,
    /// Server requests that started a trace, until their caller shows up.
    orphans: HashMap<WireKey, RequestKey>,
    orphans_order: VecDeque<WireKey>,
    /// Orphans whose exchange ended before their caller showed up (a fast
    /// server answers before a TLS library's write returns): their span
    /// waits in the pipeline (`pipeline::HOLD`), and can still be adopted.
    ended_orphans: HashMap<WireKey, SpanIds>,
    ended_orphans_order: VecDeque<WireKey>,
    /// Spans of ended orphans adopted since the last `settle`: their ids now.
    late_adoptions: HashMap<[u8; 8], SpanIds>,
    /// A trace id was replaced since the last `settled`: spans built
    /// before need `settle`.
    retraced: bool,
    /// Calls in progress whose client span the application's SDK reports.
    sdk_calls: HashSet<RequestKey>,
    /// Trace ids replaced by adoption, and what replaced them.
    adopted: HashMap<[u8; 16], [u8; 16]>,
    adopted_order: VecDeque<[u8; 16]>,
    /// Trace ids this agent makes end in a tag keyed by this, so telling
    /// a trace started here from one received in a header takes a hash of
    /// its id, not a set of every trace started here.
    trace_tag: foldhash::quality::RandomState,
    /// Traces started on this node by its kernel (ids the agent did not
    /// make), not received in a header.
    local_traces: HashMap<[u8; 16], ()>,
    local_traces_order: VecDeque<[u8; 16]>,
    pub links: LinkCounts,
}

impl Correlator {
    /// A correlator that takes every caller for one that may be traced
    /// here (tests, the pipeline bench).
    pub fn new() -> Self {
        Self::default()
    }

    /// A correlator that knows the node's addresses (`node`, listed at
    /// start-up): a server request from any other address is no orphan.
    pub fn on_node(node: impl IntoIterator<Item = IpAddr>) -> Self {
        Correlator {
            node: NodeAddresses {
                known: node.into_iter().map(|a| a.to_canonical()).collect(),
                complete: true,
            },
            ..Self::default()
        }
    }

    /// The local ends of connections just seen are this node's addresses.
    pub fn local_addresses_seen(&mut self, addresses: &[IpAddr]) {
        for address in addresses {
            self.node.learn(*address);
        }
    }

    /// Gives a request that just started its ids. For a Go program (`go`),
    /// only a context the kernel took from the goroutine is used.
    pub fn request_started(&mut self, started: &StartedRequest, go: bool) {
        let connection = &started.connection;
        let key = (connection.sock_id, started.start.index);
        let seq = started.seq();
        let first_chunk = &started.start.start;
        let header = started.start.trace_context;
        let ids = match connection.role {
            Role::Client => {
                let context = match first_chunk.context {
                    Some(context) if go && context.source != CONTEXT_FROM_GOROUTINE => None,
                    context => context,
                };
                if go && context.is_none() {
                    self.links.go_calls_unlinked += 1;
                }
                let parent = context.and_then(|context| {
                    let parent = self.inbound_for(context);
                    if parent.is_none() {
                        self.links.context_not_found += 1;
                    }
                    parent
                });
                let call = (connection.local, seq);
                let forwarded = header.and_then(|h| self.forwarded_from(&h, context, call));
                let sdk = header.filter(|_| forwarded.is_none());
                let ids = if let Some(remote) = sdk {
                    // The SDK's span is on the wire: the callee hangs under it.
                    self.links.left_to_sdk += 1;
                    self.sdk_calls.insert(key);
                    SpanIds {
                        trace_id: remote.trace_id,
                        span_id: remote.span_id,
                        parent_span_id: None,
                    }
                } else if let (Some(trace_id), Some(span_id)) =
                    (first_chunk.ids.trace_id, first_chunk.ids.injected_span_id)
                {
                    // These ids are on the wire: the next hop hangs under them.
                    self.count_link(parent.is_some());
                    let trace_id = match (parent, context) {
                        (Some(parent), Some(context)) if parent.trace_id != trace_id => {
                            self.join_wire_trace(context, parent, trace_id)
                        }
                        _ => trace_id,
                    };
                    SpanIds {
                        trace_id,
                        span_id,
                        parent_span_id: parent.map(|p| p.span_id),
                    }
                } else if let Some(parent) = parent {
                    self.links.by_context += 1;
                    SpanIds::child_of(parent.trace_id, parent.span_id)
                } else if let Some(Some(inbound)) = forwarded {
                    // The header it passes on names the request it is for.
                    self.links.by_header += 1;
                    SpanIds::child_of(inbound.trace_id, inbound.span_id)
                } else {
                    self.links.roots += 1;
                    self.local_root()
                };
                let wire = (connection.local, connection.remote, seq);
                let mut ids = ids;
                match self.adopt(wire, ids) {
                    Some(trace_id) => ids.trace_id = trace_id,
                    None => self.wait_for_server(wire, ids),
                }
                ids
            }
            Role::Server | Role::Unknown => {
                let wire = (connection.remote, connection.local, seq);
                let ids = if let Some(client) = self.waiting.remove(&wire) {
                    self.links.by_connection += 1;
                    SpanIds::child_of(client.trace_id, client.span_id)
                } else if let Some(remote) = header {
                    // Its caller on this node, if it has one, may still come
                    // (a write's event is sent at the syscall's end): that
                    // caller's span, a proxy's, is its parent then.
                    self.links.by_header += 1;
                    self.may_be_adopted(wire, key);
                    SpanIds::child_of(remote.trace_id, remote.span_id)
                } else {
                    self.links.roots += 1;
                    self.may_be_adopted(wire, key);
                    let mut ids = self.local_root();
                    // Calls made for it carry this trace id on the wire (the
                    // kernel made it: the request had no header).
                    if let Some(trace_id) = first_chunk.ids.trace_id {
                        ids.trace_id = trace_id;
                        self.started_here(trace_id);
                    }
                    ids
                };
                let multiplexed = started.start.multiplexed;
                self.inbound.insert(
                    key,
                    Inbound {
                        ids,
                        seq,
                        caller: connection.remote,
                        header,
                        multiplexed,
                    },
                );
                ids
            }
        };
        let keeps_trace_live = connection.role != Role::Client || ids.parent_span_id.is_some();
        let ids = SpanIds {
            trace_id: self.current_trace(ids.trace_id),
            ..ids
        };
        self.track(key, ids, keeps_trace_live);
    }

    /// The ids an exchange's span gets (a fresh root if its start was not
    /// seen); none for a call whose span the application's SDK reports.
    pub fn exchange_completed(&mut self, completed: &CompletedExchange) -> Option<Completion> {
        let connection = &completed.connection;
        let key = (connection.sock_id, completed.exchange.index);
        let orphan_wire = self
            .inbound
            .remove(&key)
            .map(|inbound| (connection.remote, connection.local, inbound.seq))
            .filter(|wire| self.orphans.get(wire) == Some(&key));
        if self.sdk_calls.remove(&key) {
            self.finish(&key);
            return None;
        }
        let mut ids = self.finish(&key).unwrap_or_else(|| {
            self.links.roots += 1;
            SpanIds::root()
        });
        ids.trace_id = self.current_trace(ids.trace_id);
        let ended_orphan = orphan_wire.is_some();
        if let Some(wire) = orphan_wire {
            self.orphans.remove(&wire);
            remember(
                &mut self.ended_orphans,
                &mut self.ended_orphans_order,
                wire,
                ids,
            );
        }
        let wait = if ended_orphan {
            Wait::ForCaller
        } else if self.live_traces.contains_key(&ids.trace_id) {
            Wait::WhileTraceLive
        } else {
            Wait::No
        };
        Some(Completion { ids, wait })
    }

    /// Whether a request of trace `trace_id` is in progress (an adoption
    /// may still rename it).
    pub fn is_live(&self, trace_id: &[u8; 16]) -> bool {
        self.live_traces.contains_key(trace_id)
    }

    /// The traces whose last request in progress ended since
    /// `clear_quiesced`.
    pub fn quiesced(&self) -> &[[u8; 16]] {
        &self.quiesced
    }

    pub fn clear_quiesced(&mut self) {
        self.quiesced.clear();
    }

    /// Whether spans built before now may need `settle`.
    pub fn retraced(&self) -> bool {
        self.retraced
    }

    /// Gives spans built before the ids adoptions gave them since: an
    /// ended orphan its caller, the spans of its subtree its caller's
    /// trace. Called, when `retraced`, on every span not yet sent on.
    pub fn settle(&mut self, spans: &mut [Span]) {
        for span in spans {
            if let Some(ids) = self.late_adoptions.remove(&span.span_id) {
                span.parent_span_id = ids.parent_span_id;
            }
            span.trace_id = self.current_trace(span.trace_id);
        }
    }

    /// Forgets adoptions of spans that already left (`settle` did not meet
    /// them): they stay roots.
    pub fn settled(&mut self) {
        self.late_adoptions.clear();
        self.retraced = false;
    }

    /// The trace `trace_id` became by adoptions (a chain of them is at
    /// most as long as the request path).
    fn current_trace(&self, mut trace_id: [u8; 16]) -> [u8; 16] {
        for _ in 0..16 {
            match self.adopted.get(&trace_id) {
                Some(adopted) => trace_id = *adopted,
                None => break,
            }
        }
        trace_id
    }

    /// Forgets a connection that ended, and what waited on it.
    pub fn connection_closed(&mut self, sock_id: u64) {
        let ended: Vec<RequestKey> = self
            .active
            .range((sock_id, 0)..=(sock_id, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in ended {
            self.inbound.remove(&key);
            self.finish(&key);
            self.sdk_calls.remove(&key);
        }
    }

    /// Keeps `ids` as those of the request in progress `key`.
    fn track(&mut self, key: RequestKey, ids: SpanIds, keeps_trace_live: bool) {
        let request = Active {
            ids,
            keeps_trace_live,
        };
        if let Some(before) = self.active.insert(key, request) {
            self.release_trace(before);
        }
        if keeps_trace_live {
            *self.live_traces.entry(ids.trace_id).or_default() += 1;
        }
    }

    /// Forgets the request in progress `key`; its ids.
    fn finish(&mut self, key: &RequestKey) -> Option<SpanIds> {
        let request = self.active.remove(key)?;
        self.release_trace(request);
        Some(request.ids)
    }

    fn release_trace(&mut self, request: Active) {
        if !request.keeps_trace_live {
            return;
        }
        if let Entry::Occupied(mut count) = self.live_traces.entry(request.ids.trace_id) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                self.quiesced.push(*count.key());
                count.remove();
            }
        }
    }

    /// Every span of trace `from` joins trace `to`: those built and not yet
    /// sent on (`settle`), those in progress, those to come.
    fn rename_trace(&mut self, from: [u8; 16], to: [u8; 16]) {
        remember(&mut self.adopted, &mut self.adopted_order, from, to);
        self.retraced = true;
        if from == to {
            return;
        }
        for request in self.active.values_mut() {
            if request.ids.trace_id == from {
                request.ids.trace_id = to;
            }
        }
        for inbound in self.inbound.values_mut() {
            if inbound.ids.trace_id == from {
                inbound.ids.trace_id = to;
            }
        }
        if let Some(count) = self.live_traces.remove(&from) {
            *self.live_traces.entry(to).or_default() += count;
        }
    }

    /// Client requests still waiting for their server side.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn count_link(&mut self, linked: bool) {
        if linked {
            self.links.by_context += 1;
        } else {
            self.links.roots += 1;
        }
    }

    /// The ids of the inbound request the kernel named.
    fn inbound_for(&self, context: RequestContext) -> Option<SpanIds> {
        self.inbound_request(context).map(|inbound| inbound.ids)
    }

    /// The inbound request the kernel named.
    fn inbound_request(&self, context: RequestContext) -> Option<&Inbound> {
        self.inbound_key(context)
            .and_then(|key| self.inbound.get(&key))
    }

    /// The key of the inbound request the kernel named: on its connection,
    /// the latest one that started at or before the kernel's sequence number
    /// (the first byte of the read that brought it).
    ///
    /// On a multiplexed connection the kernel knows the read, not the
    /// stream: a request there is named only while it is the one in flight,
    /// and started in or after that read.
    fn inbound_key(&self, context: RequestContext) -> Option<RequestKey> {
        let mut on_connection = self
            .active
            .range((context.sock, 0)..=(context.sock, u64::MAX))
            .rev()
            .filter_map(|(key, _)| Some((*key, self.inbound.get(key)?)))
            .peekable();
        if let Some((key, latest)) = on_connection.peek().copied()
            && latest.multiplexed
        {
            let alone = on_connection.nth(1).is_none();
            return (alone && seq_at_or_after(latest.seq, context.seq)).then_some(key);
        }
        on_connection
            .find(|(_, inbound)| seq_at_or_after(context.seq, inbound.seq))
            .map(|(key, _)| key)
    }

    /// The kernel put `wire_trace` in a header on a call made for `parent`,
    /// whose trace id the kernel did not know (the process was not yet known
    /// to call off the node when the request arrived). A trace started on
    /// this node moves to the wire's, with every span of it not yet
    /// exported (the request's callers are still in progress), so the next
    /// node's spans join it; one received in a header keeps its id (the next
    /// node's spans are in the wire's trace: split there, for this request
    /// only). The call's trace id.
    fn join_wire_trace(
        &mut self,
        context: RequestContext,
        parent: SpanIds,
        wire_trace: [u8; 16],
    ) -> [u8; 16] {
        if self.inbound_key(context).is_none() || !self.is_local_trace(&parent.trace_id) {
            return parent.trace_id;
        }
        self.started_here(wire_trace);
        self.rename_trace(parent.trace_id, wire_trace);
        wire_trace
    }

    /// When an outbound request's context header is one the process
    /// received (a proxy passing its caller's header on, not the
    /// application's SDK), the inbound request it came with: the one the
    /// kernel tied the call to, else the only one being served with that
    /// header. `Some(None)`: forwarded, from a request not known for sure.
    /// `call` (its source address and first byte) is never forwarded from
    /// itself: its callee on this node may have read it before the agent
    /// saw it written (a write's event comes at the syscall's end).
    fn forwarded_from(
        &self,
        header: &RemoteContext,
        context: Option<RequestContext>,
        call: (SocketAddr, u32),
    ) -> Option<Option<SpanIds>> {
        if let Some(inbound) = context.and_then(|context| self.inbound_request(context)) {
            return (inbound.header == Some(*header)).then_some(Some(inbound.ids));
        }
        let mut with_header = self.inbound.values().filter(|inbound| {
            inbound.header == Some(*header) && (inbound.caller, inbound.seq) != call
        });
        let first = with_header.next()?;
        Some(with_header.next().is_none().then_some(first.ids))
    }

    /// A new trace started here: its id ends in its tag.
    fn local_root(&mut self) -> SpanIds {
        let mut ids = SpanIds::root();
        let tag = self.tag_of(&ids.trace_id);
        ids.trace_id[TAG_AT..].copy_from_slice(&tag);
        ids
    }

    /// The tag of a trace id this agent makes: a keyed hash of its first
    /// 12 bytes.
    fn tag_of(&self, trace_id: &[u8; 16]) -> [u8; 4] {
        (self.trace_tag.hash_one(&trace_id[..TAG_AT]) as u32).to_le_bytes()
    }

    /// Whether the trace started on this node (a one in 2^32 chance for a
    /// received id to pass as one: its request would join the next node's
    /// trace, as a local one does).
    fn is_local_trace(&self, trace_id: &[u8; 16]) -> bool {
        trace_id[TAG_AT..] == self.tag_of(trace_id) || self.local_traces.contains_key(trace_id)
    }

    /// A trace the kernel started here (its id is not tagged).
    fn started_here(&mut self, trace_id: [u8; 16]) {
        remember(
            &mut self.local_traces,
            &mut self.local_traces_order,
            trace_id,
            (),
        );
    }

    /// The server request `key` on `wire` started before its caller was
    /// seen: it waits as an orphan, if that caller can be one this agent
    /// traces.
    fn may_be_adopted(&mut self, wire: WireKey, key: RequestKey) {
        if self.node.may_be_local(wire.0.ip()) {
            remember(&mut self.orphans, &mut self.orphans_order, wire, key);
        }
    }

    fn wait_for_server(&mut self, key: WireKey, ids: SpanIds) {
        remember(&mut self.waiting, &mut self.waiting_order, key, ids);
    }

    /// The client request `client` on `wire` is the caller of an orphaned
    /// server request seen first: make it the orphan's parent, in one trace.
    /// Returns the trace the client is in then (none: no orphan).
    ///
    /// A root orphan's trace becomes the client's, unless the orphan's
    /// trace is on the wire already (its calls left the node in it) and
    /// the client's is this node's own: then the client's trace joins the
    /// orphan's, as `join_wire_trace` does. An orphan linked by a header
    /// (forwarded by a proxy) is in the client's trace already: only its
    /// parent changes.
    fn adopt(&mut self, wire: WireKey, client: SpanIds) -> Option<[u8; 16]> {
        let (key, before) = if let Some(key) = self.orphans.remove(&wire) {
            (Some(key), self.active.get(&key)?.ids)
        } else {
            (None, self.ended_orphans.remove(&wire)?)
        };
        let was_root = before.parent_span_id.is_none();
        let joins_wire = was_root
            && before.trace_id != client.trace_id
            && self.local_traces.contains_key(&before.trace_id)
            && self.is_local_trace(&client.trace_id);
        let trace_id = match (was_root, joins_wire) {
            (true, false) => client.trace_id,
            _ => before.trace_id,
        };
        let adopted = SpanIds {
            trace_id,
            span_id: before.span_id,
            parent_span_id: Some(client.span_id),
        };
        match key {
            Some(key) => {
                self.track(key, adopted, true);
                if let Some(inbound) = self.inbound.get_mut(&key) {
                    inbound.ids = adopted;
                }
            }
            // Ended: its held span gets the new ids when the pipeline settles.
            None => {
                self.late_adoptions.insert(before.span_id, adopted);
            }
        }
        self.retraced = true;
        if joins_wire {
            self.rename_trace(client.trace_id, trace_id);
        } else if was_root {
            self.rename_trace(before.trace_id, trace_id);
        }
        if was_root {
            self.links.roots = self.links.roots.saturating_sub(1);
        } else {
            self.links.by_header = self.links.by_header.saturating_sub(1);
        }
        self.links.by_connection += 1;
        self.links.adopted += 1;
        Some(trace_id)
    }
}

/// Inserts into a map bounded by `MAX_WAITING_CLIENT_REQUESTS`, dropping the
/// oldest entries first. `order` lists keys oldest first; keys removed from
/// the map elsewhere are dropped from its front as they come up.
fn remember<K: Copy + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    order: &mut VecDeque<K>,
    key: K,
    value: V,
) {
    while order.len() >= MAX_WAITING_CLIENT_REQUESTS {
        if let Some(oldest) = order.pop_front() {
            map.remove(&oldest);
        }
    }
    if map.insert(key, value).is_none() {
        order.push_back(key);
    }
    while let Some(front) = order.front() {
        if map.contains_key(front) {
            break;
        }
        order.pop_front();
    }
}

/// `a` is at or after `b` in TCP sequence space (which wraps at 2^32).
fn seq_at_or_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 1 << 31
}

#[cfg(test)]
mod tests;
