//! Redis (RESP2 and RESP3) over one connection: both byte streams in, one
//! exchange per command out.
//!
//! Pure and total like `http1`: values are read from any split of the
//! bytes. Commands are arrays of bulk strings (or inline lines); replies
//! come back in order, so each top-level reply answers the oldest command
//! waiting, and a pipeline of N commands gives N exchanges. RESP3 pushes
//! (`>`) are not replies and are skipped. Of a command only its first
//! arguments are kept, at most `MAX_KEPT_ARG` bytes each (the command name
//! and its key); bulk payloads are counted, never copied, so a value
//! longer than the capture is no loss. Bytes lost elsewhere (a pipeline
//! longer than the capture) lose that direction's framing: see `Sync`.
//!
//! After SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE or MONITOR the server pushes
//! messages that answer nothing: that command is the connection's last
//! exchange.

mod command;
mod describe;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use command::{CommandSummary, key_pattern};
pub use describe::{Redis, RedisExchange};

use super::{
    Sink, Stream,
    db::{self, Connection, DbParseError as ParseError, RequestStart, Sync},
};

/// A line (type byte, length or simple string) longer than this is an error.
const MAX_LINE: usize = 16 * 1024;
/// Arrays inside arrays: deeper than this is an error.
const MAX_DEPTH: usize = 16;
/// Arguments kept of a command: its name, a subcommand or key, one more.
const KEPT_ARGS: usize = 3;
/// Bytes kept of each kept argument.
pub const MAX_KEPT_ARG: usize = 64;
/// Commands written and not yet answered; past this the oldest is dropped.
const MAX_PENDING: usize = 4096;

/// What is kept of a command: its first arguments (truncated) and how
/// many it had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    pub args: Vec<Vec<u8>>,
    pub arg_count: u64,
}

/// What is kept of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// An error reply (`-` or RESP3 `!`): its text, truncated.
    Error(String),
}

/// A command and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange<M> {
    pub index: u64,
    pub command: Command,
    /// `None`: the connection closed (or the agent lost the reply's place)
    /// before a reply came.
    pub reply: Option<Reply>,
    /// The database the connection had selected, when a `SELECT` was seen.
    pub database: Option<u32>,
    pub request_start: M,
    /// The chunk holding the reply's last byte (or the last one seen).
    pub response_end: M,
}

/// What the parser gives.
pub type Output<M> = db::Output<M, Exchange<M>>;

/// A top-level value just read: its type byte and what was kept of it.
#[derive(Debug)]
struct Value {
    kind: u8,
    /// For an array: its first elements' text; for a scalar: its text.
    kept: Vec<Vec<u8>>,
    /// Elements of a top-level array (0 for a scalar).
    elements: u64,
    /// Where its first byte was: the chunk and the offset in it.
    offset: usize,
}

/// An open array (or map, set, push, attribute): elements still to come.
#[derive(Clone, Copy, Debug)]
struct Open {
    remaining: u64,
    /// An attribute (`|`) precedes the value it annotates: it is no element.
    attribute: bool,
}

/// Reads RESP values of one direction from any split of its bytes.
#[derive(Debug, Default)]
struct Decoder {
    /// The line being read (from its type byte), across chunks.
    line: Vec<u8>,
    /// Bytes of a bulk payload still to pass, its CRLF included.
    bulk_left: u64,
    /// Whether the bulk payload in progress is kept (a command's argument).
    keeping_bulk: bool,
    open: Vec<Open>,
    /// The top-level value in progress.
    value: Option<Value>,
}

/// One step of a decoder: a top-level value ended, or the bytes were bad.
enum Decoded {
    Value(Value),
    Invalid(&'static str),
}

impl Decoder {
    fn at_boundary(&self) -> bool {
        self.value.is_none() && self.line.is_empty() && self.bulk_left == 0
    }

    fn reset(&mut self) {
        *self = Decoder::default();
    }

    /// Reads from `data[*pos..]` until a top-level value ends (returned),
    /// the bytes run out (`None`), or they are not RESP.
    fn next(&mut self, data: &[u8], pos: &mut usize, inline_allowed: bool) -> Option<Decoded> {
        while *pos < data.len() {
            if self.bulk_left > 0 {
                let take = (self.bulk_left as usize).min(data.len() - *pos);
                if self.keeping_bulk
                    && let Some(kept) = self.value.as_mut().and_then(|v| v.kept.last_mut())
                {
                    // The payload, not its CRLF, and only up to the limit.
                    let content = take.min(self.bulk_left.saturating_sub(2) as usize);
                    let room = MAX_KEPT_ARG.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[*pos..*pos + content.min(room)]);
                }
                *pos += take;
                self.bulk_left -= take as u64;
                if self.bulk_left == 0 {
                    self.keeping_bulk = false;
                    if let Some(value) = self.element_done() {
                        return Some(Decoded::Value(value));
                    }
                }
                continue;
            }
            if self.value.is_none() {
                self.value = Some(Value {
                    kind: data[*pos],
                    kept: Vec::new(),
                    elements: 0,
                    offset: *pos,
                });
            }
            let rest = &data[*pos..];
            let Some(newline) = rest.iter().position(|b| *b == b'\n') else {
                if self.line.len() + rest.len() > MAX_LINE {
                    return Some(Decoded::Invalid("line too long"));
                }
                self.line.extend_from_slice(rest);
                *pos = data.len();
                return None;
            };
            if self.line.len() + newline > MAX_LINE {
                return Some(Decoded::Invalid("line too long"));
            }
            self.line.extend_from_slice(&rest[..=newline]);
            *pos += newline + 1;
            let line = std::mem::take(&mut self.line);
            let done = self.read_line(&line, inline_allowed);
            self.line = line;
            self.line.clear();
            match done {
                Ok(Some(value)) => return Some(Decoded::Value(value)),
                Ok(None) => {}
                Err(why) => return Some(Decoded::Invalid(why)),
            }
        }
        None
    }

    /// `n` bytes went uncaptured: passed over inside a bulk payload, else
    /// the framing is lost (`Err`).
    fn skip(&mut self, n: u64) -> Result<Option<Value>, ()> {
        if n == 0 {
            return Ok(None);
        }
        if self.bulk_left < n {
            return Err(());
        }
        self.bulk_left -= n;
        if self.bulk_left == 0 {
            self.keeping_bulk = false;
            return Ok(self.element_done());
        }
        Ok(None)
    }

    /// One whole line (with its `\n`): a scalar, a bulk or aggregate
    /// header, or an inline command.
    fn read_line(
        &mut self,
        line: &[u8],
        inline_allowed: bool,
    ) -> Result<Option<Value>, &'static str> {
        let text = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let Some((&kind, rest)) = text.split_first() else {
            return Err("empty line");
        };
        match kind {
            b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {
                self.keep(rest);
                Ok(self.element_done())
            }
            b'$' | b'!' | b'=' => match parse_length(rest)? {
                None => Ok(self.element_done()),
                Some(len) => {
                    self.bulk_left = len + 2;
                    self.keeping_bulk = self.wants_kept();
                    if self.keeping_bulk
                        && let Some(value) = self.value.as_mut()
                    {
                        value.kept.push(Vec::new());
                    }
                    Ok(None)
                }
            },
            b'*' | b'>' | b'~' | b'%' | b'|' => {
                let Some(len) = parse_length(rest)? else {
                    return Ok(self.element_done());
                };
                let pairs = matches!(kind, b'%' | b'|');
                let remaining = if pairs { len.saturating_mul(2) } else { len };
                if self.open.is_empty()
                    && let Some(value) = self.value.as_mut()
                {
                    value.elements = len;
                }
                if remaining == 0 {
                    return Ok(self.element_done());
                }
                if self.open.len() >= MAX_DEPTH {
                    return Err("arrays nested too deep");
                }
                self.open.push(Open {
                    remaining,
                    attribute: kind == b'|',
                });
                Ok(None)
            }
            _ if inline_allowed && self.open.is_empty() => {
                // An inline command: its words are its arguments.
                let value = self.value.as_mut().ok_or("no value")?;
                value.kind = b'*';
                for word in text
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                {
                    value.elements += 1;
                    if value.kept.len() < KEPT_ARGS {
                        value
                            .kept
                            .push(word[..word.len().min(MAX_KEPT_ARG)].to_vec());
                    }
                }
                Ok(self.value.take())
            }
            _ => Err("unknown type byte"),
        }
    }

    /// Whether the element starting now is one whose text is kept: a
    /// top-level scalar, or one of a top-level array's first elements.
    fn wants_kept(&self) -> bool {
        let Some(value) = &self.value else {
            return false;
        };
        match self.open.as_slice() {
            [] => true,
            [top] => !top.attribute && value.kept.len() < KEPT_ARGS,
            _ => false,
        }
    }

    fn keep(&mut self, text: &[u8]) {
        if self.wants_kept()
            && let Some(value) = self.value.as_mut()
        {
            value
                .kept
                .push(text[..text.len().min(MAX_KEPT_ARG)].to_vec());
        }
    }

    /// An element ended: counts it in the array it belongs to, closing
    /// arrays it completes. A top-level value that ends is returned.
    fn element_done(&mut self) -> Option<Value> {
        loop {
            let Some(top) = self.open.last_mut() else {
                return self.value.take();
            };
            top.remaining -= 1;
            if top.remaining > 0 {
                return None;
            }
            let closed = self.open.pop().expect("just looked");
            if closed.attribute {
                // The annotated value follows: it is the element.
                return None;
            }
        }
    }
}

/// A RESP length: `-1` is null (`None`), others must be non-negative.
fn parse_length(text: &[u8]) -> Result<Option<u64>, &'static str> {
    if text == b"-1" {
        return Ok(None);
    }
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return Err("bad length");
    }
    Ok(Some(
        text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    ))
}

/// A command written, waiting for its reply.
#[derive(Debug)]
struct Pending<M> {
    index: u64,
    command: Command,
    start: M,
}

/// The Redis state of one connection.
#[derive(Debug)]
pub struct RedisConnection<M> {
    requests: Decoder,
    responses: Decoder,
    pending: VecDeque<Pending<M>>,
    sync: Sync,
    /// The last chunk of replies seen: where a reply whose end was lost
    /// ended at the latest.
    last_response: Option<M>,
    /// The last chunk seen either way: where a command left without a
    /// reply at the close ends.
    latest: Option<M>,
    /// After SUBSCRIBE or MONITOR: nothing more is parsed.
    subscribed: bool,
    database: Option<u32>,
    next_index: u64,
}

impl<M: Copy> Default for RedisConnection<M> {
    fn default() -> Self {
        Self::resuming(0)
    }
}

impl<M: Copy> RedisConnection<M> {
    /// A connection between exchanges whose next command gets `next_index`.
    pub fn resuming(next_index: u64) -> Self {
        RedisConnection {
            requests: Decoder::default(),
            responses: Decoder::default(),
            pending: VecDeque::new(),
            sync: Sync::InStep,
            last_response: None,
            latest: None,
            subscribed: false,
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
        if self.sync != Sync::InStep {
            if data.first() != Some(&b'*') {
                return;
            }
            self.requests.reset();
            if self.sync == Sync::ResponsesLost {
                self.responses.reset();
                self.resolve_lost_replies(out);
            }
            self.sync = Sync::InStep;
        }
        let mut pos = 0;
        while let Some(decoded) = self.requests.next(data, &mut pos, true) {
            match decoded {
                Decoded::Value(value) => self.command(value, meta, out),
                Decoded::Invalid(why) => {
                    out.push(Output::Error(ParseError::Invalid(Stream::Requests, why)));
                    self.sync.lose(Stream::Requests, out);
                    return;
                }
            }
        }
        match self.requests.skip(uncaptured) {
            Ok(Some(value)) => self.command(value, meta, out),
            Ok(None) => {}
            Err(()) => self.sync.lose(Stream::Requests, out),
        }
    }

    fn command(&mut self, value: Value, meta: M, out: &mut impl Sink<Output<M>>) {
        if value.kind != b'*' {
            out.push(Output::Error(ParseError::Invalid(
                Stream::Requests,
                "a command that is not an array",
            )));
            return;
        }
        let command = Command {
            args: value.kept,
            arg_count: value.elements,
        };
        let index = self.next_index;
        self.next_index += 1;
        out.push(Output::Request(RequestStart {
            index,
            start: meta,
            offset: value.offset,
        }));
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            out.push(Output::Error(ParseError::TooManyPending(MAX_PENDING)));
        }
        self.pending.push_back(Pending {
            index,
            command,
            start: meta,
        });
    }

    fn feed_responses(
        &mut self,
        data: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        self.last_response = Some(meta);
        if self.sync == Sync::ResponsesLost {
            return;
        }
        let mut pos = 0;
        while let Some(decoded) = self.responses.next(data, &mut pos, false) {
            match decoded {
                Decoded::Value(value) => {
                    self.reply(value, meta, out);
                    if self.subscribed {
                        return;
                    }
                }
                Decoded::Invalid(why) => {
                    out.push(Output::Error(ParseError::Invalid(Stream::Responses, why)));
                    self.sync.lose(Stream::Responses, out);
                    return;
                }
            }
        }
        match self.responses.skip(uncaptured) {
            Ok(Some(value)) => self.reply(value, meta, out),
            Ok(None) => {}
            Err(()) => self.sync.lose(Stream::Responses, out),
        }
    }

    fn reply(&mut self, value: Value, meta: M, out: &mut impl Sink<Output<M>>) {
        if value.kind == b'>' {
            return; // a RESP3 push answers no command
        }
        let Some(pending) = self.pending.pop_front() else {
            if self.sync == Sync::InStep {
                out.push(Output::Error(ParseError::UnexpectedAnswer));
            }
            return;
        };
        let text = value.kept.first().map(|t| String::from_utf8_lossy(t));
        let reply = match value.kind {
            b'-' | b'!' => Reply::Error(text.unwrap_or_default().into_owned()),
            _ => Reply::Ok,
        };
        let summary = CommandSummary::of(&pending.command);
        if reply == Reply::Ok
            && let Some(database) = summary.selects_database(&pending.command)
        {
            self.database = Some(database);
        }
        if summary.subscribes() {
            self.subscribed = true;
            self.pending.clear();
        }
        out.push(Output::Exchange(Exchange {
            index: pending.index,
            command: pending.command,
            reply: Some(reply),
            database: self.database,
            request_start: pending.start,
            response_end: meta,
        }));
    }

    /// A direction's framing is lost (see `Sync`).
    /// The command stream is found again after a loss. One command was
    /// waiting: its reply ended before this command was written (a client
    /// that does not pipeline), at the last reply bytes seen. More: their
    /// replies cannot be told apart, and they are dropped.
    fn resolve_lost_replies(&mut self, out: &mut impl Sink<Output<M>>) {
        match self.pending.len() {
            0 => {}
            1 => {
                let pending = self.pending.pop_front().expect("one waits");
                out.push(Output::Exchange(Exchange {
                    index: pending.index,
                    command: pending.command,
                    reply: Some(Reply::Ok),
                    database: self.database,
                    request_start: pending.start,
                    response_end: self.last_response.unwrap_or(pending.start),
                }));
            }
            n => {
                self.pending.clear();
                out.push(Output::Error(ParseError::Dropped(n)));
            }
        }
    }
}

impl<M: Copy> Connection<M> for RedisConnection<M> {
    type Exchange = Exchange<M>;

    fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Between exchanges with nothing a fresh parser lacks: no value half
    /// read, no command waiting, no database selected.
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.requests.at_boundary()
            && self.responses.at_boundary()
            && self.sync == Sync::InStep
            && !self.subscribed
            && self.database.is_none()
    }

    fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Feeds one syscall's bytes: the `captured` prefix, then `uncaptured`
    /// more bytes that were not copied.
    fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        if self.subscribed {
            return;
        }
        self.latest = Some(meta);
        match stream {
            Stream::Requests => self.feed_requests(captured, uncaptured, meta, out),
            Stream::Responses => self.feed_responses(captured, uncaptured, meta, out),
        }
    }

    /// The connection closed: commands still waiting are reported without
    /// a reply.
    fn close(&mut self, out: &mut impl Sink<Output<M>>) {
        for pending in self.pending.drain(..) {
            out.push(Output::Exchange(Exchange {
                index: pending.index,
                command: pending.command,
                reply: None,
                database: self.database,
                request_start: pending.start,
                response_end: self.latest.unwrap_or(pending.start),
            }));
        }
    }
}

/// Whether `data`, the first bytes a client wrote, start a RESP command:
/// an array of bulk strings (`*2\r\n$3\r\nGET`) or a known inline command.
pub fn looks_like_command(data: &[u8]) -> bool {
    if let Some(rest) = data.strip_prefix(b"*") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        return (1..=7).contains(&digits) && rest[digits..].starts_with(b"\r\n$");
    }
    [&b"PING\r\n"[..], b"PING\n"]
        .iter()
        .any(|c| data.starts_with(c))
}
