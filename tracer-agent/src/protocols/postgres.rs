//! PostgreSQL (frontend/backend protocol 3.0) over one connection: both
//! byte streams in, one exchange per query out.
//!
//! Pure and total like `http1`: messages are framed from any split of the
//! bytes (a type byte and a length); only the bodies spans use are kept
//! (a query's text, an error's fields, the start-up parameters), at most
//! `MAX_KEPT` bytes each; others, `COPY` data and row data among them, are
//! counted and passed over, captured or not.
//!
//! - A simple query (`Q`) is one exchange, ended by ReadyForQuery (`Z`).
//! - The extended protocol: each Execute (`E`) is one exchange, named by
//!   the statement its portal was bound to (`P` remembers a named
//!   statement's text per connection, `B` binds a portal to it), ended by
//!   its CommandComplete (or an error, an empty query, a suspended
//!   portal). Executes after an error up to the next Sync are skipped by
//!   the server, and by the parser. Pipelined batches (several Syncs in
//!   flight) are answered in order.
//! - `SSLRequest`: when the server accepts, the rest of the socket is
//!   ciphertext and is not parsed; the TLS library's plaintext is, as its
//!   own connection layer.

mod describe;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use describe::Postgres;

pub use super::db::SqlOutcome as Outcome;
use super::{
    Sink, Stream,
    db::{self, Connection, DbParseError as ParseError, Query, RequestStart, Sync},
};

/// Bytes kept of a kept message body (a query text, an error).
pub const MAX_KEPT: usize = 2048;
/// A message longer than this is taken for garbage.
const MAX_MESSAGE: u32 = 1 << 30;
/// Named statements and portals remembered per connection.
const MAX_NAMED: usize = 256;
/// Queries written and not yet answered; past this the oldest is dropped.
const MAX_PENDING: usize = 1024;

const PROTOCOL_3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// What the parser gives.
pub type Output<M> = db::Output<M, Query<M>>;

/// One message read whole (its body kept up to `MAX_KEPT`).
#[derive(Debug)]
struct Message {
    /// 0 for the untyped start-up messages.
    kind: u8,
    body: Vec<u8>,
    /// Where its first byte was in the chunk that held it.
    offset: usize,
}

/// Frames one direction's messages from any split of its bytes.
#[derive(Debug, Default)]
struct Framer {
    /// The next message has no type byte (a client's first).
    untyped_next: bool,
    /// The header read so far (type byte and length).
    header: Vec<u8>,
    /// Body bytes still to come.
    body_left: u32,
    message: Option<Message>,
}

enum Framed {
    Message(Message),
    BadLength,
}

impl Framer {
    fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.message.is_none()
    }

    fn header_len(&self) -> usize {
        if self.untyped_next { 4 } else { 5 }
    }

    /// Reads from `data[*pos..]` until a message ends (returned) or the
    /// bytes run out (`None`).
    fn next(&mut self, data: &[u8], pos: &mut usize) -> Option<Framed> {
        while *pos < data.len() {
            // In a header until it is whole (then the header is cleared and
            // the message's body is read).
            if self.message.is_none() || !self.header.is_empty() {
                let need = self.header_len() - self.header.len();
                let take = need.min(data.len() - *pos);
                if self.header.is_empty() {
                    self.message = Some(Message {
                        kind: 0,
                        body: Vec::new(),
                        offset: *pos,
                    });
                }
                self.header.extend_from_slice(&data[*pos..*pos + take]);
                *pos += take;
                if self.header.len() < self.header_len() {
                    return None;
                }
                match self.start_body() {
                    Ok(Some(message)) => return Some(Framed::Message(message)),
                    Ok(None) => continue,
                    Err(()) => return Some(Framed::BadLength),
                }
            }
            let take = (self.body_left as usize).min(data.len() - *pos);
            if let Some(message) = self.message.as_mut() {
                let room = MAX_KEPT.saturating_sub(message.body.len());
                message
                    .body
                    .extend_from_slice(&data[*pos..*pos + take.min(room)]);
            }
            *pos += take;
            self.body_left -= take as u32;
            if self.body_left == 0 {
                return self.message.take().map(Framed::Message);
            }
        }
        None
    }

    /// The header is whole: the body's length, or the message if it has none.
    fn start_body(&mut self) -> Result<Option<Message>, ()> {
        let (kind, length) = if self.untyped_next {
            (0, &self.header[..4])
        } else {
            (self.header[0], &self.header[1..5])
        };
        let length = u32::from_be_bytes(length.try_into().expect("four bytes"));
        if !(4..=MAX_MESSAGE).contains(&length) {
            return Err(());
        }
        self.header.clear();
        self.untyped_next = false;
        if let Some(message) = self.message.as_mut() {
            message.kind = kind;
        }
        self.body_left = length - 4;
        if self.body_left == 0 {
            return Ok(self.message.take());
        }
        Ok(None)
    }

    /// `n` bytes went uncaptured: passed over inside a body, else the
    /// framing is lost (`Err`).
    fn skip(&mut self, n: u64) -> Result<Option<Message>, ()> {
        if n == 0 {
            return Ok(None);
        }
        if self.message.is_none() || !self.header.is_empty() || u64::from(self.body_left) < n {
            return Err(());
        }
        self.body_left -= n as u32;
        if self.body_left == 0 {
            return Ok(self.message.take());
        }
        Ok(None)
    }

    fn reset(&mut self) {
        *self = Framer::default();
    }
}

/// What waits for the server's answers, in the order they come.
#[derive(Debug)]
enum Awaiting<M> {
    /// A simple query: answered up to its ReadyForQuery.
    Simple {
        index: u64,
        query: String,
        start: M,
        error: Option<Outcome>,
    },
    /// An Execute: answered by its CommandComplete (or an error).
    Execute { index: u64, query: String, start: M },
    /// A Sync: answered by a ReadyForQuery.
    Sync,
}

/// The PostgreSQL state of one connection.
#[derive(Debug)]
pub struct PostgresConnection<M> {
    requests: Framer,
    responses: Framer,
    awaiting: VecDeque<Awaiting<M>>,
    /// Statement name → its text; portal name → its statement's text.
    statements: Vec<(String, String)>,
    portals: Vec<(String, String)>,
    /// The first message of the extended-protocol batch in progress.
    batch_start: Option<(M, usize)>,
    /// After an error in a batch, the server skips up to the Sync.
    skipping_to_sync: bool,
    /// The client asked for TLS; the server's one-byte answer comes next.
    tls_requested: bool,
    /// The server accepted TLS: the socket's bytes are ciphertext.
    encrypted: bool,
    sync: Sync,
    /// The client's first bytes were seen (they say whether the session
    /// starts here).
    started: bool,
    last_response: Option<M>,
    latest: Option<M>,
    database: Option<String>,
    next_index: u64,
}

impl<M: Copy> Default for PostgresConnection<M> {
    fn default() -> Self {
        Self::resuming(0)
    }
}

impl<M: Copy> PostgresConnection<M> {
    /// A connection whose next query gets `next_index`: seen from its
    /// start-up message, or from a later one (a pool opened before the
    /// agent, a parser made again after the connection idled).
    pub fn resuming(next_index: u64) -> Self {
        PostgresConnection {
            requests: Framer::default(),
            responses: Framer::default(),
            awaiting: VecDeque::new(),
            statements: Vec::new(),
            portals: Vec::new(),
            batch_start: None,
            skipping_to_sync: false,
            tls_requested: false,
            encrypted: false,
            sync: Sync::InStep,
            started: false,
            last_response: None,
            latest: None,
            database: None,
            next_index,
        }
    }

    fn feed_requests(
        &mut self,
        data: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        if !self.started {
            self.started = true;
            self.requests.untyped_next = looks_like_client_start(data) == Some(true);
        }
        if self.sync != Sync::InStep {
            // A client writes whole messages: a write that starts with a
            // query starts afresh.
            if !data
                .first()
                .is_some_and(|b| matches!(b, b'Q' | b'P' | b'B'))
            {
                return;
            }
            self.requests.reset();
            if self.sync == Sync::ResponsesLost {
                self.responses.reset();
                self.resolve_lost_answers(out);
            }
            self.sync = Sync::InStep;
        }
        let mut pos = 0;
        while let Some(framed) = self.requests.next(data, &mut pos) {
            match framed {
                Framed::Message(message) => self.frontend(message, meta, out),
                Framed::BadLength => {
                    out.push(Output::Error(ParseError::Invalid(
                        Stream::Requests,
                        "message length out of range",
                    )));
                    self.sync.lose(Stream::Requests, out);
                    return;
                }
            }
        }
        match self.requests.skip(uncaptured) {
            Ok(Some(message)) => self.frontend(message, meta, out),
            Ok(None) => {}
            Err(()) => self.sync.lose(Stream::Requests, out),
        }
    }

    fn feed_responses(
        &mut self,
        data: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        self.last_response = Some(meta);
        if self.sync == Sync::ResponsesLost || !self.started {
            return;
        }
        let mut data = data;
        if self.tls_requested && !data.is_empty() {
            // The answer to SSLRequest/GSSENCRequest is one untyped byte.
            self.tls_requested = false;
            if matches!(data[0], b'S' | b'G') {
                self.encrypted = true;
                self.awaiting.clear();
                return;
            }
            data = &data[1..];
        }
        let mut pos = 0;
        while let Some(framed) = self.responses.next(data, &mut pos) {
            match framed {
                Framed::Message(message) => self.backend(message, meta, out),
                Framed::BadLength => {
                    out.push(Output::Error(ParseError::Invalid(
                        Stream::Responses,
                        "message length out of range",
                    )));
                    self.sync.lose(Stream::Responses, out);
                    return;
                }
            }
        }
        match self.responses.skip(uncaptured) {
            Ok(Some(message)) => self.backend(message, meta, out),
            Ok(None) => {}
            Err(()) => self.sync.lose(Stream::Responses, out),
        }
    }

    fn frontend(&mut self, message: Message, meta: M, out: &mut impl Sink<Output<M>>) {
        let mut fields = message.body.split(|b| *b == 0);
        let mut text = || {
            fields
                .next()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .unwrap_or_default()
        };
        match message.kind {
            0 => self.startup(&message.body),
            b'Q' => {
                let query = text();
                let index = self.request(meta, message.offset, out);
                self.push(
                    Awaiting::Simple {
                        index,
                        query,
                        start: meta,
                        error: None,
                    },
                    out,
                );
            }
            b'P' => {
                let (name, query) = (text(), text());
                remember(&mut self.statements, name, query);
                self.batch_start.get_or_insert((meta, message.offset));
            }
            b'B' => {
                let (portal, statement) = (text(), text());
                let query = lookup(&self.statements, &statement);
                remember(&mut self.portals, portal, query);
                self.batch_start.get_or_insert((meta, message.offset));
            }
            b'E' => {
                let query = lookup(&self.portals, &text());
                let (start, offset) = self.batch_start.take().unwrap_or((meta, message.offset));
                let index = self.request(start, offset, out);
                self.push(
                    Awaiting::Execute {
                        index,
                        query,
                        start,
                    },
                    out,
                );
            }
            b'S' => {
                self.batch_start = None;
                self.push(Awaiting::Sync, out);
            }
            b'C' => {
                // Close: `S` a statement, `P` a portal.
                let which = message.body.first().copied();
                let name = String::from_utf8_lossy(
                    message
                        .body
                        .get(1..)
                        .unwrap_or_default()
                        .split(|b| *b == 0)
                        .next()
                        .unwrap_or_default(),
                )
                .into_owned();
                let list = if which == Some(b'S') {
                    &mut self.statements
                } else {
                    &mut self.portals
                };
                list.retain(|(n, _)| *n != name);
            }
            _ => {}
        }
    }

    /// A start-up message: the protocol's (its database), or a request
    /// for TLS (the server answers with one byte).
    fn startup(&mut self, body: &[u8]) {
        let code = body
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")));
        match code {
            Some(SSL_REQUEST | GSSENC_REQUEST) => {
                self.tls_requested = true;
                // The start-up message comes next if the server says no.
                self.requests.untyped_next = true;
            }
            Some(PROTOCOL_3) => {
                let mut params = body[4..].split(|b| *b == 0);
                let mut user = None;
                while let (Some(key), Some(value)) = (params.next(), params.next()) {
                    match key {
                        b"database" => self.database = Some(String::from_utf8_lossy(value).into()),
                        b"user" => user = Some(String::from_utf8_lossy(value).into_owned()),
                        _ => {}
                    }
                }
                // The database defaults to the user's name.
                if self.database.is_none() {
                    self.database = user;
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, start: M, offset: usize, out: &mut impl Sink<Output<M>>) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        out.push(Output::Request(RequestStart {
            index,
            start,
            offset,
        }));
        index
    }

    fn push(&mut self, awaiting: Awaiting<M>, out: &mut impl Sink<Output<M>>) {
        if self.awaiting.len() >= MAX_PENDING {
            self.awaiting.pop_front();
            out.push(Output::Error(ParseError::TooManyPending(MAX_PENDING)));
        }
        self.awaiting.push_back(awaiting);
    }

    fn backend(&mut self, message: Message, meta: M, out: &mut impl Sink<Output<M>>) {
        match message.kind {
            // CommandComplete, EmptyQueryResponse, PortalSuspended.
            b'C' | b'I' | b's' => match self.awaiting.front() {
                Some(Awaiting::Execute { .. }) => self.complete_front(Outcome::Ok, meta, out),
                Some(_) => {}
                None => self.unexpected(out),
            },
            b'E' => {
                let error = error_fields(&message.body);
                match self.awaiting.front_mut() {
                    Some(Awaiting::Simple { error: slot, .. }) => *slot = Some(error),
                    Some(Awaiting::Execute { .. }) => {
                        self.complete_front(error, meta, out);
                        self.skipping_to_sync = true;
                    }
                    // An error in a batch before its Execute (a Parse that
                    // failed): the server skips up to the Sync.
                    Some(Awaiting::Sync) => self.skipping_to_sync = true,
                    // An error outside any query (a fatal one at start-up).
                    None => {}
                }
            }
            b'Z' => self.ready_for_query(meta, out),
            _ => {}
        }
        if self.skipping_to_sync {
            // Executes the server will not run: not queries made.
            while let Some(Awaiting::Execute { .. }) = self.awaiting.front() {
                self.awaiting.pop_front();
            }
        }
    }

    /// ReadyForQuery: ends a simple query, or a Sync's batch.
    fn ready_for_query(&mut self, meta: M, out: &mut impl Sink<Output<M>>) {
        self.skipping_to_sync = false;
        match self.awaiting.front_mut() {
            Some(Awaiting::Simple { error, .. }) => {
                let outcome = error.take().unwrap_or(Outcome::Ok);
                self.complete_front(outcome, meta, out);
            }
            Some(Awaiting::Sync) => {
                self.awaiting.pop_front();
            }
            // Executes without their completion before the Sync's answer.
            Some(Awaiting::Execute { .. }) => {
                while let Some(Awaiting::Execute { .. }) = self.awaiting.front() {
                    self.complete_front(Outcome::Ok, meta, out);
                }
                if let Some(Awaiting::Sync) = self.awaiting.front() {
                    self.awaiting.pop_front();
                }
            }
            // The first ReadyForQuery, after start-up.
            None => {}
        }
    }

    fn complete_front(&mut self, outcome: Outcome, meta: M, out: &mut impl Sink<Output<M>>) {
        let (index, query, start) = match self.awaiting.pop_front() {
            Some(Awaiting::Simple {
                index,
                query,
                start,
                ..
            })
            | Some(Awaiting::Execute {
                index,
                query,
                start,
                ..
            }) => (index, query, start),
            _ => return,
        };
        out.push(Output::Exchange(Query {
            index,
            text: query,
            outcome: Some(outcome),
            database: self.database.clone(),
            request_start: start,
            response_end: meta,
        }));
    }

    fn unexpected(&mut self, out: &mut impl Sink<Output<M>>) {
        if self.sync == Sync::InStep {
            out.push(Output::Error(ParseError::UnexpectedAnswer));
        }
    }

    /// The query stream is found again after the answers were lost. One
    /// query was waiting: its answer ended before this query was written,
    /// at the last bytes seen of them. More: their answers cannot be told
    /// apart, and they are dropped.
    fn resolve_lost_answers(&mut self, out: &mut impl Sink<Output<M>>) {
        self.skipping_to_sync = false;
        let queries = self.pending_requests();
        if queries == 1 {
            let end = self.last_response;
            while let Some(front) = self.awaiting.front() {
                if matches!(front, Awaiting::Sync) {
                    self.awaiting.pop_front();
                    continue;
                }
                let start = match front {
                    Awaiting::Simple { start, .. } | Awaiting::Execute { start, .. } => *start,
                    Awaiting::Sync => unreachable!("popped above"),
                };
                self.complete_front(Outcome::Ok, end.unwrap_or(start), out);
            }
        } else if queries > 1 {
            out.push(Output::Error(ParseError::Dropped(queries)));
        }
        self.awaiting.clear();
    }
}

impl<M: Copy> Connection<M> for PostgresConnection<M> {
    type Exchange = Query<M>;

    fn pending_requests(&self) -> usize {
        self.awaiting
            .iter()
            .filter(|a| !matches!(a, Awaiting::Sync))
            .count()
    }

    /// Between queries with nothing a fresh parser lacks: no message half
    /// read, no query waiting, no statement, portal or database known.
    fn is_idle(&self) -> bool {
        self.awaiting.is_empty()
            && self.requests.at_boundary()
            && self.responses.at_boundary()
            && self.statements.is_empty()
            && self.portals.is_empty()
            && self.database.is_none()
            && self.sync == Sync::InStep
            && !self.encrypted
            && self.started
            && !self.tls_requested
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
        match stream {
            Stream::Requests => self.feed_requests(captured, uncaptured, meta, out),
            Stream::Responses => self.feed_responses(captured, uncaptured, meta, out),
        }
    }

    /// The connection closed: queries still waiting are reported without
    /// an answer.
    fn close(&mut self, out: &mut impl Sink<Output<M>>) {
        for awaiting in self.awaiting.drain(..) {
            if let Awaiting::Simple {
                index,
                query,
                start,
                ..
            }
            | Awaiting::Execute {
                index,
                query,
                start,
                ..
            } = awaiting
            {
                out.push(Output::Exchange(Query {
                    index,
                    text: query,
                    outcome: None,
                    database: self.database.clone(),
                    request_start: start,
                    response_end: self.latest.unwrap_or(start),
                }));
            }
        }
    }
}

/// The SQLSTATE (`C`) and message (`M`) fields of an ErrorResponse.
fn error_fields(body: &[u8]) -> Outcome {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', value)) => code = String::from_utf8_lossy(value).into_owned(),
            Some((b'M', value)) => message = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
    }
    Outcome::Error { code, message }
}

/// Keeps `name` → `text` in a short list, the oldest going first.
fn remember(list: &mut Vec<(String, String)>, name: String, text: String) {
    list.retain(|(n, _)| *n != name);
    if list.len() >= MAX_NAMED {
        list.remove(0);
    }
    list.push((name, text));
}

fn lookup(list: &[(String, String)], name: &str) -> String {
    list.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, text)| text.clone())
        .unwrap_or_default()
}

/// Whether `data`, the first bytes a client wrote, start a PostgreSQL
/// session (a start-up or TLS request), or a query on a session already
/// open (`Q` or `P` with a plausible length and SQL text): a pool
/// opened before the agent. The second says whether it is the start-up.
pub fn looks_like_client_start(data: &[u8]) -> Option<bool> {
    let word = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")))
    };
    let length = word(0)?;
    match word(4)? {
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST if length == 8 || length == 16 => {
            return Some(true);
        }
        PROTOCOL_3 if (9..=10_000).contains(&length) => return Some(true),
        _ => {}
    }
    let length = word(1)?;
    if !(5..MAX_MESSAGE).contains(&length) {
        return None;
    }
    let sql_start = |at: usize| {
        data.get(at)
            .is_some_and(|b| b.is_ascii_alphabetic() || b.is_ascii_whitespace() || *b == b'(')
    };
    let plausible = match data[0] {
        b'Q' => sql_start(5),
        // Parse: a statement name (maybe empty), then its text.
        b'P' => {
            let name_end = data[5..].iter().take(64).position(|b| *b == 0);
            name_end.is_some_and(|n| sql_start(5 + n + 1))
        }
        _ => false,
    };
    plausible.then_some(false)
}
