//! MySQL and MariaDB (client/server protocol 4.1) over one connection:
//! both byte streams in, one exchange per query out.
//!
//! Pure and total like `http1`: packets (a 3-byte length and a sequence
//! number) are framed from any split of the bytes; only the bodies spans
//! use are kept (a query's text, an error, the start-up's database) at
//! most `MAX_KEPT` bytes; rows are counted and passed over.
//!
//! The protocol is strictly one command, then its answer: a `COM_QUERY`
//! and a `COM_STMT_EXECUTE` are one exchange each (an execute named by the
//! text its `COM_STMT_PREPARE` gave the statement, whose id the server's
//! answer says). An answer ends at its OK, its error, or the end of its
//! last result set; when that end cannot be told (a connection joined
//! midway, without the capabilities its handshake settled), the next
//! command ends it, at the last answer bytes seen before.

mod describe;
#[cfg(test)]
mod tests;

pub use describe::Mysql;

pub use super::db::SqlOutcome as Outcome;
use super::{
    Sink, Stream,
    db::{self, Connection, DbParseError as ParseError, Query, RequestStart},
};

/// Bytes kept of a kept packet (a query's text, an error).
pub const MAX_KEPT: usize = 2048;
/// A packet this long is continued by the next one.
const MAX_PAYLOAD: u32 = 0xFF_FFFF;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 256;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_PLUGIN_AUTH_LENENC_DATA: u32 = 0x20_0000;
const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x8;

/// What the parser gives.
pub type Output<M> = db::Output<M, Query<M>>;

/// One packet read whole (its payload kept up to `MAX_KEPT`).
#[derive(Debug)]
struct Packet {
    seq: u8,
    /// The payload's length as its header says.
    len: u32,
    payload: Vec<u8>,
    /// It continues the packet before (that one was `MAX_PAYLOAD` long).
    continued: bool,
    offset: usize,
}

/// Frames one direction's packets from any split of its bytes.
#[derive(Debug, Default)]
struct Framer {
    header: Vec<u8>,
    body_left: u32,
    packet: Option<Packet>,
    /// The last packet was `MAX_PAYLOAD` long: the next continues it.
    continues: bool,
}

impl Framer {
    fn next(&mut self, data: &[u8], pos: &mut usize) -> Option<Packet> {
        while *pos < data.len() {
            if self.packet.is_none() || !self.header.is_empty() {
                if self.header.is_empty() {
                    self.packet = Some(Packet {
                        seq: 0,
                        len: 0,
                        payload: Vec::new(),
                        continued: self.continues,
                        offset: *pos,
                    });
                }
                let take = (4 - self.header.len()).min(data.len() - *pos);
                self.header.extend_from_slice(&data[*pos..*pos + take]);
                *pos += take;
                if self.header.len() < 4 {
                    return None;
                }
                let len = u32::from_le_bytes([self.header[0], self.header[1], self.header[2], 0]);
                let packet = self.packet.as_mut().expect("made above");
                packet.seq = self.header[3];
                packet.len = len;
                self.header.clear();
                self.continues = len == MAX_PAYLOAD;
                self.body_left = len;
                if len == 0 {
                    return self.packet.take();
                }
                continue;
            }
            let take = (self.body_left as usize).min(data.len() - *pos);
            if let Some(packet) = self.packet.as_mut() {
                let room = MAX_KEPT.saturating_sub(packet.payload.len());
                packet
                    .payload
                    .extend_from_slice(&data[*pos..*pos + take.min(room)]);
            }
            *pos += take;
            self.body_left -= take as u32;
            if self.body_left == 0 {
                return self.packet.take();
            }
        }
        None
    }

    /// `n` bytes went uncaptured: passed over inside a payload, else the
    /// framing is lost (`Err`).
    fn skip(&mut self, n: u64) -> Result<Option<Packet>, ()> {
        if n == 0 {
            return Ok(None);
        }
        if self.packet.is_none() || !self.header.is_empty() || u64::from(self.body_left) < n {
            return Err(());
        }
        self.body_left -= n as u32;
        if self.body_left == 0 {
            return Ok(self.packet.take());
        }
        Ok(None)
    }

    fn reset(&mut self) {
        *self = Framer::default();
    }
}

/// What the command waiting for its answer is.
#[derive(Debug)]
enum Command {
    /// A query or an execute: an exchange.
    Query { query: String },
    /// A prepare: its answer names the statement's id.
    Prepare { query: String },
    /// A database change: its OK makes it the connection's.
    InitDb { database: String },
    /// Another command (a ping, a reset): answered, not reported.
    Other,
}

/// Where an answer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Its first packet is next: OK, ERR, or a result set's column count.
    First,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions (without `CLIENT_DEPRECATE_EOF`).
    ColumnsEof,
    Rows,
    /// The rest of a prepare's answer (definitions): passed over.
    Rest,
}

#[derive(Debug)]
struct Pending<M> {
    index: u64,
    command: Command,
    start: M,
    answer: Answer,
    /// A packet of its answer was read.
    answered: bool,
}

/// The MySQL state of one connection.
#[derive(Debug)]
pub struct MysqlConnection<M> {
    requests: Framer,
    responses: Framer,
    pending: Option<Pending<M>>,
    /// Statement id → its text.
    statements: Vec<(u32, String)>,
    /// Whether EOF packets are gone (known from the handshake).
    deprecate_eof: Option<bool>,
    /// The server's capabilities, from its greeting.
    server_capabilities: Option<u32>,
    /// The socket went to TLS: its bytes are ciphertext.
    encrypted: bool,
    /// A stream's framing was lost: wait for a command at a write's start.
    lost: bool,
    last_response: Option<M>,
    latest: Option<M>,
    database: Option<String>,
    next_index: u64,
}

impl<M: Copy> Default for MysqlConnection<M> {
    fn default() -> Self {
        Self::resuming(0)
    }
}

impl<M: Copy> MysqlConnection<M> {
    pub fn resuming(next_index: u64) -> Self {
        MysqlConnection {
            requests: Framer::default(),
            responses: Framer::default(),
            pending: None,
            statements: Vec::new(),
            deprecate_eof: None,
            server_capabilities: None,
            encrypted: false,
            lost: false,
            last_response: None,
            latest: None,
            database: None,
            next_index,
        }
    }

    fn packet(&mut self, stream: Stream, packet: Packet, meta: M, out: &mut impl Sink<Output<M>>) {
        if packet.continued || self.encrypted {
            return;
        }
        match stream {
            Stream::Requests if packet.seq == 0 => self.command(packet, meta, out),
            Stream::Requests => self.handshake_response(&packet),
            Stream::Responses => self.answer(packet, meta, out),
        }
    }

    /// The client's handshake response (or its TLS request): its
    /// capabilities and database.
    fn handshake_response(&mut self, packet: &Packet) {
        let payload = &packet.payload;
        let Some(capabilities) = read_u32(payload, 0) else {
            return;
        };
        if capabilities & CLIENT_PROTOCOL_41 == 0 {
            return;
        }
        let shared = capabilities & self.server_capabilities.unwrap_or(u32::MAX);
        self.deprecate_eof = Some(shared & CLIENT_DEPRECATE_EOF != 0);
        if packet.len == 32 && capabilities & CLIENT_SSL != 0 {
            // An SSL request: the rest of the socket is ciphertext.
            self.encrypted = true;
            self.pending = None;
            return;
        }
        // capabilities 4, max packet 4, charset 1, filler 23, then the user.
        let mut at = 32;
        let Some(user_len) = payload
            .get(at..)
            .and_then(|rest| rest.iter().position(|b| *b == 0))
        else {
            return;
        };
        at += user_len + 1;
        let auth_len = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
            let Some((len, size)) = lenenc(payload.get(at..).unwrap_or_default()) else {
                return;
            };
            at += size;
            len as usize
        } else {
            let Some(len) = payload.get(at) else {
                return;
            };
            at += 1;
            usize::from(*len)
        };
        let at = at.saturating_add(auth_len);
        if capabilities & CLIENT_CONNECT_WITH_DB != 0
            && let Some(rest) = payload.get(at..)
        {
            let name = rest.split(|b| *b == 0).next().unwrap_or_default();
            if !name.is_empty() {
                self.database = Some(String::from_utf8_lossy(name).into_owned());
            }
        }
    }

    fn command(&mut self, packet: Packet, meta: M, out: &mut impl Sink<Output<M>>) {
        // The protocol waits for each answer: a new command ends the last.
        self.end_pending(Outcome::Ok, out);
        let Some((&kind, body)) = packet.payload.split_first() else {
            return;
        };
        let text = || String::from_utf8_lossy(body).into_owned();
        let command = match kind {
            COM_QUERY => Command::Query { query: text() },
            COM_STMT_EXECUTE => Command::Query {
                query: read_u32(body, 0)
                    .and_then(|id| self.statements.iter().find(|(s, _)| *s == id))
                    .map(|(_, text)| text.clone())
                    .unwrap_or_default(),
            },
            COM_STMT_PREPARE => Command::Prepare { query: text() },
            COM_INIT_DB => Command::InitDb { database: text() },
            COM_STMT_CLOSE => {
                if let Some(id) = read_u32(body, 0) {
                    self.statements.retain(|(s, _)| *s != id);
                }
                return;
            }
            // No answer comes.
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            _ => Command::Other,
        };
        let index = if matches!(command, Command::Query { .. }) {
            let index = self.next_index;
            self.next_index += 1;
            out.push(Output::Request(RequestStart {
                index,
                start: meta,
                offset: packet.offset,
            }));
            index
        } else {
            0
        };
        self.pending = Some(Pending {
            index,
            command,
            start: meta,
            answer: Answer::First,
            answered: false,
        });
    }

    fn answer(&mut self, packet: Packet, meta: M, out: &mut impl Sink<Output<M>>) {
        let payload = &packet.payload;
        let Some(pending) = self.pending.as_mut() else {
            // Handshake and authentication: only the greeting is read.
            if packet.seq == 0 && self.server_capabilities.is_none() && payload.first() == Some(&10)
            {
                self.greeting(payload);
            }
            return;
        };
        pending.answered = true;
        let first = payload.first().copied();
        let terminator = first == Some(0xfe) && packet.len < 9;
        let mut ended = None;
        match pending.answer {
            Answer::First => match first {
                Some(0x00) => match &pending.command {
                    Command::Prepare { query } => {
                        if let Some(id) = read_u32(payload, 1) {
                            remember(&mut self.statements, id, query.clone());
                        }
                        pending.answer = Answer::Rest;
                    }
                    Command::InitDb { database } => {
                        self.database = Some(database.clone());
                        ended = Some(Outcome::Ok);
                    }
                    _ if more_results(payload, false) => {}
                    _ => ended = Some(Outcome::Ok),
                },
                Some(0xff) => ended = Some(error(payload)),
                // LOCAL INFILE: the client sends a file; the next command
                // ends it.
                Some(0xfb) => pending.answer = Answer::Rest,
                _ => match lenenc(payload) {
                    Some((columns, _)) if columns > 0 => pending.answer = Answer::Columns(columns),
                    _ => pending.answer = Answer::Rest,
                },
            },
            Answer::Columns(left) => {
                pending.answer = match (left, self.deprecate_eof) {
                    (1, Some(true)) => Answer::Rows,
                    // Without the handshake: an EOF, or an empty result's
                    // end; the next command tells (`command`).
                    (1, _) => Answer::ColumnsEof,
                    (n, _) => Answer::Columns(n - 1),
                }
            }
            Answer::ColumnsEof => {
                if first == Some(0xff) {
                    ended = Some(error(payload));
                } else {
                    // The columns' EOF, or (its kind not known) an empty
                    // result's end, or a row: rows may follow either way.
                    pending.answer = Answer::Rows;
                }
            }
            Answer::Rows => {
                if first == Some(0xff) {
                    ended = Some(error(payload));
                } else if terminator {
                    if more_results(payload, true) {
                        pending.answer = Answer::First;
                    } else {
                        ended = Some(Outcome::Ok);
                    }
                }
            }
            Answer::Rest => {}
        }
        if let Some(outcome) = ended {
            self.last_response = Some(meta);
            self.end_pending(outcome, out);
        }
    }

    /// The server's greeting: protocol 10, its version, thread id, scramble,
    /// then its capabilities in two halves.
    fn greeting(&mut self, payload: &[u8]) {
        let Some(version_end) = payload.iter().skip(1).position(|b| *b == 0) else {
            return;
        };
        // version, NUL, thread id 4, scramble 8, filler 1.
        let at = 1 + version_end + 1 + 4 + 8 + 1;
        let low = payload.get(at..at + 2);
        let high = payload.get(at + 5..at + 7);
        if let (Some(low), Some(high)) = (low, high) {
            self.server_capabilities = Some(u32::from_le_bytes([low[0], low[1], high[0], high[1]]));
        }
    }

    /// The command waiting ends: an exchange if it was a query, with
    /// `outcome` if any answer to it was read (ending at the last answer
    /// bytes seen), else without one.
    fn end_pending(&mut self, outcome: Outcome, out: &mut impl Sink<Output<M>>) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Command::Query { query } = pending.command else {
            return;
        };
        let (outcome, end) = match (pending.answered, self.last_response) {
            (true, Some(end)) => (Some(outcome), end),
            _ => (None, self.latest.unwrap_or(pending.start)),
        };
        out.push(Output::Exchange(Query {
            index: pending.index,
            text: query,
            outcome,
            database: self.database.clone(),
            request_start: pending.start,
            response_end: end,
        }));
    }
}

impl<M: Copy> Connection<M> for MysqlConnection<M> {
    type Exchange = Query<M>;

    fn pending_requests(&self) -> usize {
        usize::from(matches!(
            self.pending,
            Some(Pending {
                command: Command::Query { .. },
                ..
            })
        ))
    }

    /// Between commands with nothing a fresh parser lacks.
    fn is_idle(&self) -> bool {
        self.pending.is_none()
            && self.requests.packet.is_none()
            && self.responses.packet.is_none()
            && self.statements.is_empty()
            && self.deprecate_eof.is_none()
            && self.database.is_none()
            && !self.lost
    }

    fn next_index(&self) -> u64 {
        self.next_index
    }

    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        if self.encrypted {
            return;
        }
        self.latest = Some(meta);
        let data = captured;
        if stream == Stream::Responses {
            self.last_response = Some(meta);
        }
        if self.lost {
            // A client writes whole packets: a command at a write's start
            // starts afresh, both ways.
            let command = stream == Stream::Requests && data.len() >= 5 && data[3] == 0;
            if !command {
                return;
            }
            self.requests.reset();
            self.responses.reset();
            self.lost = false;
        }
        let framer = match stream {
            Stream::Requests => &mut self.requests,
            Stream::Responses => &mut self.responses,
        };
        let mut pos = 0;
        let mut packets = Vec::new();
        while let Some(packet) = framer.next(data, &mut pos) {
            packets.push(packet);
        }
        let skipped = framer.skip(uncaptured);
        for packet in packets {
            self.packet(stream, packet, meta, out);
        }
        match skipped {
            Ok(Some(packet)) => self.packet(stream, packet, meta, out),
            Ok(None) => {}
            Err(()) => {
                out.push(Output::Error(ParseError::SyncLost(stream)));
                self.lost = true;
                self.end_pending(Outcome::Ok, out);
            }
        }
    }

    /// The connection closed: a query still waiting is reported as such.
    fn close(&mut self, out: &mut impl Sink<Output<M>>) {
        self.end_pending(Outcome::Ok, out);
    }
}

/// Whether an OK or EOF packet says another result set follows. An EOF
/// (`eof`, from a result's end) may be a short one or an OK in disguise.
fn more_results(payload: &[u8], eof: bool) -> bool {
    let status = if eof && payload.len() == 5 {
        // EOF: header, warnings 2, status 2.
        read_u16(payload, 3)
    } else {
        // OK: header, affected rows and last insert id (lenencs), status 2.
        let Some((_, a)) = lenenc(payload.get(1..).unwrap_or_default()) else {
            return false;
        };
        let Some((_, b)) = lenenc(payload.get(1 + a..).unwrap_or_default()) else {
            return false;
        };
        read_u16(payload, 1 + a + b)
    };
    status.is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0)
}

/// An ERR packet's number and message (after a `#` and SQLSTATE).
fn error(payload: &[u8]) -> Outcome {
    let code = read_u16(payload, 1).unwrap_or(0);
    let rest = payload.get(3..).unwrap_or_default();
    let message = match rest.split_first() {
        Some((b'#', after)) if after.len() >= 5 => &after[5..],
        _ => rest,
    };
    Outcome::Error {
        code: code.to_string(),
        message: String::from_utf8_lossy(message).into_owned(),
    }
}

/// A length-encoded integer: its value and its size in bytes.
fn lenenc(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let wide = |n: usize| {
        let b = rest.get(..n)?;
        let mut value = [0u8; 8];
        value[..n].copy_from_slice(b);
        Some((u64::from_le_bytes(value), n + 1))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => wide(2),
        0xfd => wide(3),
        0xfe => wide(8),
        _ => None,
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn remember(list: &mut Vec<(u32, String)>, id: u32, text: String) {
    list.retain(|(s, _)| *s != id);
    if list.len() >= MAX_STATEMENTS {
        list.remove(0);
    }
    list.push((id, text));
}

/// Whether `data`, the first bytes a client wrote, are a MySQL handshake
/// response or TLS request (protocol 4.1: 19 zero bytes of filler), or a
/// command on a session already open (a query or prepare with SQL text, a
/// ping): a pool opened before the agent.
pub fn looks_like_client_start(data: &[u8]) -> bool {
    let Some(header) = data.get(..4) else {
        return false;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]);
    let payload = &data[4..];
    match header[3] {
        1 | 2 => {
            len >= 32
                && read_u32(payload, 0).is_some_and(|caps| caps & CLIENT_PROTOCOL_41 != 0)
                // MariaDB clients put their extended capabilities in the
                // filler's last 4 bytes.
                && payload
                    .get(9..28)
                    .is_some_and(|filler| filler.iter().all(|b| *b == 0))
        }
        0 => match payload.first() {
            Some(&COM_QUERY | &COM_STMT_PREPARE) => {
                len >= 2
                    && payload.get(1).is_some_and(|b| {
                        b.is_ascii_alphabetic() || b.is_ascii_whitespace() || *b == b'('
                    })
            }
            Some(&COM_PING) => len == 1,
            _ => false,
        },
        _ => false,
    }
}
