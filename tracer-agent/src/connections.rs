//! The connection table: kernel events per TCP connection → protocol
//! exchanges, with who was on each end. Which protocol a connection speaks
//! is found from its bytes (`protocols::detect`), once per source of bytes:
//! a TLS connection's ciphertext and its plaintext are parsed apart.
//!
//! A connection is keyed by its kernel `struct sock` address, the same in
//! every process that shares the socket. Its role comes from the kernel when
//! the agent saw the accept/connect; for connections opened before the agent
//! started, from which direction carries requests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use foldhash::HashMap;

use tracer_common::{Direction, EventKind, Role, Source};

use crate::{
    events::{Comm, Endpoints, Event},
    protocols::{
        self, ChunkMeta, Exchange, Output, ParseError, Parser, Protocol, RequestStart, Stream,
    },
};

/// Where a connection is and who is on it.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub sock_id: u64,
    pub role: Role,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The name of the thread that opened the connection, or that the
    /// kernel first saw on it.
    pub comm: Comm,
}

/// Endpoints of evicted connections kept at most; past it the list starts over.
const MAX_EVICTED_ENDPOINTS: usize = 4096;

/// A connection's endpoints before the kernel sent them: its events came
/// before its `Announce` (the agent had dropped the connection, and the
/// kernel had sent them already).
const UNKNOWN_ENDPOINTS: Endpoints = Endpoints {
    local: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    comm: [0; 16],
};

/// A request whose head was just parsed, and its connection.
#[derive(Clone, Debug)]
pub struct StartedRequest {
    pub start: RequestStart,
    pub connection: ConnectionInfo,
}

impl StartedRequest {
    /// TCP sequence number of the request's first byte: the same number on
    /// the client's and the server's side of the connection.
    pub fn seq(&self) -> u32 {
        self.start.start.seq.wrapping_add(self.start.offset as u32)
    }
}

/// A finished exchange and the connection it happened on.
#[derive(Debug)]
pub struct CompletedExchange {
    pub exchange: Exchange,
    pub connection: ConnectionInfo,
}

/// Data chunks looked at before a connection's bytes are declared no
/// protocol the agent parses.
const DETECTION_ATTEMPTS: u8 = 4;

/// Chunks going the responses' way that a connection of known role may show
/// before its first request: a connection joined mid-stream (older than
/// the agent, or whose first requests were left out under overload) can
/// show several responses first. They prove nothing either way.
const ANSWERS_BEFORE_A_REQUEST: u8 = 64;

/// One source of a connection's bytes (the socket, or a TLS library's
/// plaintext of them) and what they are.
#[derive(Debug)]
enum Layer {
    /// Not yet known; counts data chunks looked at: those going the way
    /// requests do (or any way, role unknown), and the others.
    Detecting { attempts: u8, answers: u8 },
    Parsing {
        protocol: &'static dyn Protocol,
        parser: Box<dyn Parser>,
        /// The direction requests travel in, seen from this process.
        requests: Direction,
    },
    /// Between exchanges, idle for a while: its parser is freed until the
    /// next bytes (`park_idle`), so idle keep-alive connections cost a
    /// table entry only.
    Parked {
        protocol: &'static dyn Protocol,
        requests: Direction,
        next_index: u64,
    },
    /// Not a protocol the agent parses: its events are ignored.
    Other,
}

impl Layer {
    const DETECTING: Layer = Layer::Detecting {
        attempts: 0,
        answers: 0,
    };

    fn pending_requests(&self) -> usize {
        match self {
            Layer::Parsing { parser, .. } => parser.pending_requests(),
            _ => 0,
        }
    }

    /// Frees the parser if it holds nothing a fresh one would lack.
    fn park(&mut self) -> bool {
        let Layer::Parsing {
            protocol,
            parser,
            requests,
        } = self
        else {
            return false;
        };
        let Some(next_index) = parser.resumable_at() else {
            return false;
        };
        *self = Layer::Parked {
            protocol: *protocol,
            requests: *requests,
            next_index,
        };
        true
    }
}

#[derive(Debug)]
struct Connection {
    info: ConnectionInfo,
    /// The socket's bytes as they are on the wire.
    socket: Layer,
    /// A TLS library's plaintext of them, once some was seen.
    tls: Option<Box<Layer>>,
    last_seen_ns: u64,
}

impl Connection {
    fn layers_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        std::iter::once(&mut self.socket).chain(self.tls.as_deref_mut())
    }
}

/// Something handling an event produced.
#[derive(Debug)]
pub enum Outcome {
    RequestStarted(StartedRequest),
    ExchangeCompleted(CompletedExchange),
    /// A connection ended (its `sock_id` may be reused right after).
    Closed(u64),
}

/// A connection the kernel can skip, named so that a newer connection
/// reusing its `struct sock` address is not mistaken for it: its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotParsed {
    pub sock_id: u64,
    pub local_port: u16,
    pub remote_port: u16,
}

/// What handling a batch of events produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// In the order of the events that produced them.
    pub outcomes: Vec<Outcome>,
    pub parse_errors: Vec<ParseError>,
    /// Connections whose socket bytes were just found not to be a protocol
    /// the agent parses: the kernel can skip their syscalls from now on.
    pub not_parsed: Vec<NotParsed>,
    /// Connections dropped to stay within the table's limit.
    pub evicted: u64,
    /// The local addresses of connections whose endpoints just came (the
    /// correlator learns the node's addresses from them).
    pub local_addresses: Vec<IpAddr>,
}

impl Handled {
    /// Empties the lists, keeping their allocations.
    pub fn clear(&mut self) {
        self.outcomes.clear();
        self.parse_errors.clear();
        self.not_parsed.clear();
        self.evicted = 0;
        self.local_addresses.clear();
    }
}

#[derive(Debug)]
pub struct ConnectionTable {
    connections: HashMap<u64, Connection>,
    max_connections: usize,
    /// The endpoints of connections evicted to stay within the limit: the
    /// kernel sent them once, and will not again for a while, so a next
    /// event of one finds them here.
    evicted_endpoints: HashMap<u64, Endpoints>,
    /// The parser's outputs for one event, kept to reuse its allocation.
    outputs: Vec<Output>,
}

impl ConnectionTable {
    pub fn new(max_connections: usize) -> Self {
        ConnectionTable {
            connections: HashMap::default(),
            max_connections: max_connections.max(1),
            evicted_endpoints: HashMap::default(),
            outputs: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Requests seen whose response has not ended yet, over all connections.
    pub fn pending_requests(&self) -> usize {
        self.connections
            .values()
            .map(|c| {
                c.socket.pending_requests() + c.tls.as_ref().map_or(0, |l| l.pending_requests())
            })
            .sum()
    }

    pub fn handle(&mut self, event: Event<'_>, out: &mut Handled) {
        match event.kind {
            EventKind::Open => {
                // A reused socket address starts a new connection.
                self.close(event.sock_id, out);
                self.insert(&event, out);
            }
            EventKind::Close => self.close(event.sock_id, out),
            EventKind::Announce => self.announce(&event, out),
            EventKind::Data => self.data(event, out),
        }
    }

    /// A connection's endpoints, sent again or for the first time: kept,
    /// without starting the connection over.
    fn announce(&mut self, event: &Event<'_>, out: &mut Handled) {
        let Some(conn) = self.connections.get_mut(&event.sock_id) else {
            self.insert(event, out);
            return;
        };
        if let Some(endpoints) = event.endpoints {
            out.local_addresses.push(endpoints.local.ip());
            conn.info.local = endpoints.local;
            conn.info.remote = endpoints.remote;
            conn.info.comm = endpoints.comm;
        }
        if conn.info.role == Role::Unknown {
            conn.info.role = event.role;
        }
    }

    /// Ends every connection (at shutdown): bodies delimited by the close end,
    /// requests without a response are reported as such.
    pub fn close_all(&mut self, out: &mut Handled) {
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        for id in ids {
            self.close(id, out);
        }
    }

    /// Frees the parsers of connections between exchanges that were not
    /// seen since `before_ns` (monotonic), and the table's room beyond four
    /// times its connections. Returns how many it parked.
    pub fn park_idle(&mut self, before_ns: u64) -> usize {
        let mut parked = 0;
        for connection in self.connections.values_mut() {
            if connection.last_seen_ns >= before_ns {
                continue;
            }
            for layer in connection.layers_mut() {
                if layer.park() {
                    parked += 1;
                }
            }
        }
        if self.connections.capacity() > 4 * self.connections.len().max(1024) {
            self.connections.shrink_to(2 * self.connections.len());
        }
        parked
    }

    /// Ends connections not seen since `before_ns` (monotonic).
    pub fn close_idle(&mut self, before_ns: u64, out: &mut Handled) {
        let idle: Vec<u64> = self
            .connections
            .iter()
            .filter(|(_, c)| c.last_seen_ns < before_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id, out);
        }
    }

    fn insert(&mut self, event: &Event<'_>, out: &mut Handled) -> &mut Connection {
        if self.connections.len() >= self.max_connections
            && let Some(oldest) = self
                .connections
                .iter()
                .min_by_key(|(_, c)| c.last_seen_ns)
                .map(|(id, _)| *id)
        {
            if let Some(info) = self.connections.get(&oldest).map(|c| &c.info) {
                if self.evicted_endpoints.len() >= MAX_EVICTED_ENDPOINTS {
                    self.evicted_endpoints.clear();
                }
                let endpoints = Endpoints {
                    local: info.local,
                    remote: info.remote,
                    comm: info.comm,
                };
                self.evicted_endpoints.insert(oldest, endpoints);
            }
            self.close(oldest, out);
            out.evicted += 1;
        }
        if let Some(endpoints) = &event.endpoints {
            out.local_addresses.push(endpoints.local.ip());
        }
        let endpoints = event
            .endpoints
            .or_else(|| self.evicted_endpoints.remove(&event.sock_id))
            .unwrap_or(UNKNOWN_ENDPOINTS);
        self.connections.entry(event.sock_id).or_insert(Connection {
            info: ConnectionInfo {
                sock_id: event.sock_id,
                role: event.role,
                local: endpoints.local,
                remote: endpoints.remote,
                comm: endpoints.comm,
            },
            socket: Layer::DETECTING,
            tls: None,
            last_seen_ns: event.end_ns,
        })
    }

    fn close(&mut self, sock_id: u64, out: &mut Handled) {
        let Some(mut conn) = self.connections.remove(&sock_id) else {
            return;
        };
        for layer in conn.layers_mut() {
            if let Layer::Parsing { parser, .. } = layer {
                parser.close(&mut self.outputs);
            }
        }
        collect(&conn.info, &mut self.outputs, out);
        out.outcomes.push(Outcome::Closed(sock_id));
    }

    fn data(&mut self, event: Event<'_>, out: &mut Handled) {
        let Some(direction) = event.direction else {
            return;
        };
        if !self.connections.contains_key(&event.sock_id) {
            self.insert(&event, out);
        }
        let Some(conn) = self.connections.get_mut(&event.sock_id) else {
            return;
        };
        conn.last_seen_ns = event.end_ns;
        if conn.info.role == Role::Unknown {
            conn.info.role = event.role;
        }
        let layer = match event.source {
            Source::Socket => &mut conn.socket,
            Source::Tls => conn.tls.get_or_insert_with(|| Box::new(Layer::DETECTING)),
        };
        if let Layer::Detecting { attempts, answers } = *layer {
            *layer = detect(
                conn.info.role,
                direction,
                event.source,
                event.payload,
                (attempts, answers),
            );
            match layer {
                Layer::Other if event.source == Source::Socket => out.not_parsed.push(NotParsed {
                    sock_id: event.sock_id,
                    local_port: conn.info.local.port(),
                    remote_port: conn.info.remote.port(),
                }),
                Layer::Parsing { requests, .. } => {
                    conn.info.role = match requests {
                        Direction::Ingress => Role::Server,
                        Direction::Egress => Role::Client,
                    };
                }
                _ => {}
            }
        }
        if let Layer::Parked {
            protocol,
            requests,
            next_index,
        } = *layer
        {
            *layer = Layer::Parsing {
                protocol,
                parser: protocol.parser(next_index, event.source),
                requests,
            };
        }
        let Layer::Parsing {
            parser, requests, ..
        } = layer
        else {
            return;
        };
        let stream = if direction == *requests {
            Stream::Requests
        } else {
            Stream::Responses
        };
        let meta = ChunkMeta {
            first_ns: match direction {
                Direction::Egress => event.start_ns,
                Direction::Ingress => event.end_ns,
            },
            last_ns: event.end_ns,
            pid: event.pid,
            tid: event.tid,
            seq: event.seq,
            context: event.context,
            ids: event.ids,
        };
        parser.feed(
            stream,
            event.payload,
            event.uncaptured(),
            meta,
            &mut self.outputs,
        );
        collect(&conn.info, &mut self.outputs, out);
    }
}

/// Decides a layer's protocol from a data chunk: the protocol whose request
/// it starts, when requests go the way the role says (or, role unknown,
/// whichever way they are seen going). `(attempts, answers)` count the
/// chunks looked at so far: those that could have been a request, and those
/// going the other way.
fn detect(
    role: Role,
    direction: Direction,
    source: Source,
    payload: &[u8],
    (attempts, answers): (u8, u8),
) -> Layer {
    let expected_requests = match role {
        Role::Server => Some(Direction::Ingress),
        Role::Client => Some(Direction::Egress),
        Role::Unknown => None,
    };
    match expected_requests {
        Some(expected) if expected != direction => {
            return if answers + 1 >= ANSWERS_BEFORE_A_REQUEST {
                Layer::Other
            } else {
                Layer::Detecting {
                    attempts,
                    answers: answers + 1,
                }
            };
        }
        _ => {}
    }
    if let Some(protocol) = protocols::detect(payload, direction == Direction::Ingress) {
        return Layer::Parsing {
            protocol,
            parser: protocol.parser(0, source),
            requests: direction,
        };
    }
    if attempts + 1 >= DETECTION_ATTEMPTS {
        Layer::Other
    } else {
        Layer::Detecting {
            attempts: attempts + 1,
            answers,
        }
    }
}

fn collect(info: &ConnectionInfo, outputs: &mut Vec<Output>, out: &mut Handled) {
    for output in outputs.drain(..) {
        match output {
            Output::Request(start) => out.outcomes.push(Outcome::RequestStarted(StartedRequest {
                start,
                connection: info.clone(),
            })),
            Output::Exchange(exchange) => {
                out.outcomes
                    .push(Outcome::ExchangeCompleted(CompletedExchange {
                        exchange,
                        connection: info.clone(),
                    }))
            }
            Output::Error(error) => out.parse_errors.push(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::comm_text,
        protocols::describe::{SpanKind, SpanStatus},
    };
    use tracer_common::Syscall;

    fn event(
        kind: EventKind,
        sock_id: u64,
        role: Role,
        direction: Option<Direction>,
        payload: &[u8],
    ) -> Event<'_> {
        Event {
            kind,
            pid: 7,
            tid: 8,
            fd: 3,
            sock_id,
            start_ns: 1_000,
            end_ns: 2_000,
            bytes: payload.len() as u64,
            role,
            direction,
            syscall: Syscall::Read,
            source: Source::Socket,
            endpoints: matches!(kind, EventKind::Open | EventKind::Announce).then(|| Endpoints {
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "127.0.0.1:40000".parse().unwrap(),
                comm: *b"server\0\0\0\0\0\0\0\0\0\0",
            }),
            seq: 0,
            context: None,
            ids: Default::default(),
            payload,
        }
    }

    /// A data event on connection `sock` (role as the kernel reported it).
    fn data(sock: u64, role: Role, direction: Direction, payload: &[u8]) -> Event<'_> {
        event(EventKind::Data, sock, role, Some(direction), payload)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    fn exchanges(out: &Handled) -> Vec<&CompletedExchange> {
        out.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::ExchangeCompleted(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn not_parsed(out: &Handled) -> Vec<u64> {
        out.not_parsed.iter().map(|n| n.sock_id).collect()
    }
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn server_connection_from_accept() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        table.handle(event(EventKind::Open, 1, Role::Server, None, b""), &mut out);
        table.handle(data(1, Role::Server, Direction::Ingress, GET), &mut out);
        table.handle(data(1, Role::Server, Direction::Egress, OK), &mut out);
        assert_eq!(exchanges(&out).len(), 1);
        assert_eq!(exchanges(&out)[0].connection.role, Role::Server);
        table.handle(
            event(EventKind::Close, 1, Role::Server, None, b""),
            &mut out,
        );
        assert!(table.is_empty());
    }

    /// Opened before the agent: the kernel does not know the role; the
    /// direction requests travel in tells.
    #[test]
    fn role_inferred_for_preexisting_connections() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        table.handle(data(1, Role::Unknown, Direction::Egress, GET), &mut out);
        table.handle(data(1, Role::Unknown, Direction::Ingress, OK), &mut out);
        assert_eq!(exchanges(&out).len(), 1);
        assert_eq!(exchanges(&out)[0].connection.role, Role::Client);
        // The response arriving first (mid-exchange) is skipped, not misread.
        table.handle(data(2, Role::Unknown, Direction::Egress, OK), &mut out);
        table.handle(data(2, Role::Unknown, Direction::Ingress, GET), &mut out);
        table.handle(data(2, Role::Unknown, Direction::Egress, OK), &mut out);
        assert_eq!(exchanges(&out).len(), 2);
        assert_eq!(exchanges(&out)[1].connection.role, Role::Server);
    }

    /// Joined mid-stream with the kernel knowing the role (its first
    /// requests missed: left out under overload, or written while the
    /// programs were being attached): responses first are waited through.
    #[test]
    fn responses_before_the_first_request_are_waited_through() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        for _ in 0..2 * DETECTION_ATTEMPTS {
            table.handle(data(1, Role::Client, Direction::Ingress, OK), &mut out);
        }
        table.handle(data(1, Role::Client, Direction::Egress, GET), &mut out);
        table.handle(data(1, Role::Client, Direction::Ingress, OK), &mut out);
        assert_eq!(exchanges(&out).len(), 1);
        assert!(not_parsed(&out).is_empty() && out.parse_errors.is_empty());
        // Only responses, on and on: given up on, for the kernel to skip.
        for _ in 0..ANSWERS_BEFORE_A_REQUEST {
            table.handle(data(2, Role::Server, Direction::Egress, OK), &mut out);
        }
        assert_eq!(not_parsed(&out), [2]);
    }

    #[test]
    fn unknown_protocols_are_ignored() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        for _ in 0..10 {
            table.handle(
                data(1, Role::Client, Direction::Egress, b"\x16\x03\x01\x02\x00"),
                &mut out,
            );
        }
        assert!(exchanges(&out).is_empty() && out.parse_errors.is_empty());
        assert_eq!(
            not_parsed(&out),
            [1],
            "reported once, for the kernel to skip"
        );
    }

    /// A database's client gets the spans; its server's side of the same
    /// connection is left alone (an older connection too, role unknown).
    #[test]
    fn database_servers_are_left_alone() {
        const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        table.handle(data(1, Role::Client, Direction::Egress, PING), &mut out);
        table.handle(
            data(1, Role::Client, Direction::Ingress, b"+PONG\r\n"),
            &mut out,
        );
        assert_eq!(exchanges(&out).len(), 1);
        assert_eq!(exchanges(&out)[0].connection.role, Role::Client);
        for (sock, role) in [(2, Role::Server), (3, Role::Unknown)] {
            for _ in 0..DETECTION_ATTEMPTS {
                table.handle(data(sock, role, Direction::Ingress, PING), &mut out);
            }
        }
        assert_eq!(exchanges(&out).len(), 1);
        assert_eq!(not_parsed(&out), [2, 3]);
    }

    /// A TLS connection: its ciphertext is no protocol (the kernel may skip
    /// its syscalls), and its plaintext from the TLS library is parsed
    /// all the same, as the same connection.
    #[test]
    fn tls_plaintext_is_parsed_apart_from_the_ciphertext() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        let tls = |mut event: Event<'static>| {
            event.source = Source::Tls;
            event
        };
        const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
        for _ in 0..DETECTION_ATTEMPTS {
            table.handle(
                data(1, Role::Server, Direction::Ingress, CLIENT_HELLO),
                &mut out,
            );
        }
        assert_eq!(not_parsed(&out), [1]);
        table.handle(
            tls(data(1, Role::Server, Direction::Ingress, GET)),
            &mut out,
        );
        table.handle(tls(data(1, Role::Server, Direction::Egress, OK)), &mut out);
        assert_eq!(exchanges(&out).len(), 1);
        assert_eq!(exchanges(&out)[0].connection.sock_id, 1);
        assert_eq!(
            not_parsed(&out),
            [1],
            "plaintext is never reported as not parsed"
        );
    }

    /// An idle keep-alive connection gives its parser back, and goes on
    /// where it was at its next request; one mid-exchange keeps it.
    #[test]
    fn idle_connections_are_parked_until_their_next_bytes() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        table.handle(data(1, Role::Server, Direction::Ingress, GET), &mut out);
        table.handle(data(1, Role::Server, Direction::Egress, OK), &mut out);
        table.handle(data(2, Role::Server, Direction::Ingress, GET), &mut out);
        table.park_idle(3_000);
        let parked = |table: &ConnectionTable, id| {
            matches!(table.connections[&id].socket, Layer::Parked { .. })
        };
        assert!(parked(&table, 1));
        assert!(!parked(&table, 2), "a request waits for its response");
        table.handle(data(1, Role::Server, Direction::Ingress, GET), &mut out);
        table.handle(data(1, Role::Server, Direction::Egress, OK), &mut out);
        let indexes: Vec<u64> = exchanges(&out).iter().map(|e| e.exchange.index).collect();
        assert_eq!(indexes, [0, 1]);
        table.handle(data(2, Role::Server, Direction::Egress, OK), &mut out);
        assert_eq!(exchanges(&out).len(), 3);
        // Seen after the cutoff: not parked.
        table.park_idle(1_000);
        assert!(!parked(&table, 1));
    }

    #[test]
    fn full_table_evicts_the_least_recent() {
        let mut table = ConnectionTable::new(2);
        let mut out = Handled::default();
        for id in 1..=3 {
            let mut e = event(EventKind::Open, id, Role::Server, None, b"");
            e.end_ns = id * 10;
            table.handle(e, &mut out);
        }
        assert_eq!(table.len(), 2);
        assert_eq!(out.evicted, 1);
        assert!(!table.connections.contains_key(&1));
    }

    #[test]
    fn an_evicted_connection_keeps_its_endpoints() {
        let mut table = ConnectionTable::new(1);
        let mut out = Handled::default();
        table.handle(event(EventKind::Open, 1, Role::Server, None, b""), &mut out);
        // Evicts 1; its next event (no endpoints: the kernel sent them
        // already) finds them again.
        table.handle(event(EventKind::Open, 2, Role::Server, None, b""), &mut out);
        table.handle(data(1, Role::Server, Direction::Ingress, GET), &mut out);
        table.handle(data(1, Role::Server, Direction::Egress, OK), &mut out);
        let exchange = exchanges(&out)[0];
        assert_eq!(exchange.connection.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            exchange.connection.remote,
            "127.0.0.1:40000".parse().unwrap()
        );
    }

    #[test]
    fn an_announce_fills_in_endpoints_and_keeps_the_exchange() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        // Bytes before any endpoints (a connection the agent had dropped).
        table.handle(data(1, Role::Server, Direction::Ingress, GET), &mut out);
        table.handle(
            event(EventKind::Announce, 1, Role::Server, None, b""),
            &mut out,
        );
        table.handle(data(1, Role::Server, Direction::Egress, OK), &mut out);
        let exchanges = exchanges(&out);
        assert_eq!(exchanges.len(), 1, "the request read before is answered");
        assert_eq!(
            exchanges[0].connection.local,
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(comm_text(&exchanges[0].connection.comm), "server");
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(out.local_addresses, [local], "its local end is the node's");
    }

    #[test]
    fn close_reports_unanswered_requests() {
        let mut table = ConnectionTable::new(10);
        let mut out = Handled::default();
        table.handle(data(1, Role::Server, Direction::Ingress, GET), &mut out);
        table.close_all(&mut out);
        assert_eq!(exchanges(&out).len(), 1);
        let mut attributes = Vec::new();
        let status = exchanges(&out)[0].exchange.description.describe(
            SpanKind::Server,
            "127.0.0.1:8080".parse().unwrap(),
            &mut attributes,
        );
        assert_eq!(
            status,
            SpanStatus::Error("connection closed before a response".into())
        );
    }
}
