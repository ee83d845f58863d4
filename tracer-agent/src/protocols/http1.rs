//! HTTP/1.x over one TCP connection: both byte streams in, request/response
//! exchanges out.
//!
//! Pure and total: no I/O, any bytes in any split give exchanges or counted
//! errors, never a panic. The bytes arrive as the kernel captured them: each
//! syscall gives a captured prefix and a count of bytes beyond it that were not
//! copied. Bodies are skipped by count, so an uncaptured body keeps the stream
//! in sync; bytes lost inside a head lose sync, and the decoder waits for a
//! syscall chunk that starts a new message.
//!
//! `M` is whatever the caller attaches to a chunk (timestamps, thread): each
//! exchange reports the `M` of the chunk where its request started and of the
//! chunk where its response ended.

mod describe;

use std::{collections::VecDeque, fmt, sync::Arc};

pub use describe::{FACTS, Http1, Http1Exchange};

use super::{Sink, Stream};

/// Heads (request line or status line plus headers) longer than this are errors.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Headers kept per head; more is an error.
const MAX_HEADERS: usize = 100;
/// Requests waiting for their response (pipelining depth) before the oldest is dropped.
const MAX_PENDING: usize = 64;
/// A chunk-size line longer than this is an error.
const MAX_CHUNK_LINE: usize = 1024;

/// Headers kept from a head: its body framing, what spans report
/// (`Host`, `User-Agent`), and trace context (W3C, B3). No other header
/// value is copied, so none can leave the agent.
const KEPT_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "user-agent",
    "traceparent",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
];

/// What the agent keeps of a head, in one allocation: a request's method
/// and target, then the values of the `KEPT_HEADERS` it has (the first of
/// each name, trimmed), one after another. No other header value is copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per `KEPT_HEADERS` entry, where its value is in `text`.
    values: [Option<(u16, u16)>; KEPT_HEADERS.len()],
}

impl Headers {
    /// The value of `name` (one of `KEPT_HEADERS`), compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        let kept = KEPT_HEADERS
            .iter()
            .position(|k| k.eq_ignore_ascii_case(name))?;
        let (start, end) = self.values[kept]?;
        Some(&self.text[start as usize..end as usize])
    }

    /// `prefix`'s parts (a request's method and target) and the kept headers
    /// of `headers`, with where each part of `prefix` ends.
    fn new<'a, const N: usize>(
        prefix: [&str; N],
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> (Self, [u16; N]) {
        let mut found: [Option<&[u8]>; KEPT_HEADERS.len()] = [None; KEPT_HEADERS.len()];
        for (name, value) in headers {
            if let Some(kept) = KEPT_HEADERS
                .iter()
                .position(|k| name.eq_ignore_ascii_case(k))
                && found[kept].is_none()
            {
                found[kept] = Some(value.trim_ascii());
            }
        }
        let size = prefix.iter().map(|part| part.len()).sum::<usize>()
            + found
                .iter()
                .flatten()
                .map(|value| value.len())
                .sum::<usize>();
        let mut head = Headers {
            text: String::with_capacity(size),
            values: [None; KEPT_HEADERS.len()],
        };
        // A head is at most MAX_HEAD_BYTES long: its offsets fit in u16
        // (a value made longer by lossy decoding stops being kept).
        let mut ends = [0; N];
        for (end, part) in ends.iter_mut().zip(prefix) {
            head.text.push_str(part);
            *end = head.text.len().min(usize::from(u16::MAX)) as u16;
        }
        for (slot, value) in head.values.iter_mut().zip(found) {
            let Some(value) = value else { continue };
            let start = head.text.len();
            head.text.push_str(&String::from_utf8_lossy(value));
            if let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(head.text.len())) {
                *slot = Some((start, end));
            }
        }
        (head, ends)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Holds the method and the target too.
    pub headers: Headers,
    method_end: u16,
    target_end: u16,
}

impl RequestHead {
    pub fn new<'a>(
        method: &str,
        target: &str,
        version: u8,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Self {
        let (headers, [method_end, target_end]) = Headers::new([method, target], headers);
        RequestHead {
            version,
            headers,
            method_end,
            target_end,
        }
    }

    pub fn method(&self) -> &str {
        &self.headers.text[..usize::from(self.method_end)]
    }

    /// The request target as sent: usually origin-form (`/path?query`).
    pub fn target(&self) -> &str {
        &self.headers.text[usize::from(self.method_end)..usize::from(self.target_end)]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub version: u8,
    pub headers: Headers,
}

impl ResponseHead {
    pub fn new<'a>(
        status: u16,
        version: u8,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Self {
        ResponseHead {
            status,
            version,
            headers: Headers::new([], headers).0,
        }
    }
}

/// A request whose head was just parsed (its response is still to come).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestStart<M> {
    /// The request's number on this connection, from 0; its `Exchange` has the same.
    pub index: u64,
    /// Shared with the request's `Exchange`: parsed once, never copied.
    pub request: Arc<RequestHead>,
    /// The chunk holding the request's first byte, and where in it that byte is.
    pub start: M,
    pub offset: usize,
}

/// A request and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange<M> {
    /// The request's number on this connection (as in its `RequestStart`).
    pub index: u64,
    pub request: Arc<RequestHead>,
    /// `None` when the connection closed before a response came.
    pub response: Option<ResponseHead>,
    /// The chunk holding the request's first byte.
    pub request_start: M,
    /// The chunk holding the response's last byte (or the last chunk seen
    /// before the connection closed, when there was no response).
    pub response_end: M,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// The response's end could not be seen exactly (bytes were lost inside
    /// its chunked framing); `response_end` is the last chunk before the next
    /// message or the close.
    pub response_end_approximate: bool,
}

/// Why bytes could not be understood. Each is counted by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a valid request or status line / header block.
    InvalidHead(Stream, String),
    /// A head longer than `MAX_HEAD_BYTES`.
    HeadTooLarge(Stream),
    /// Bytes of a head were not captured, so the message is lost.
    HeadNotCaptured(Stream),
    /// A bad `Content-Length` or chunk size line.
    InvalidFraming(Stream, &'static str),
    /// A response with no request waiting for it (e.g. the agent started mid-exchange).
    UnexpectedResponse,
    /// More pipelined requests than `MAX_PENDING`: the oldest was dropped.
    TooManyPending,
    /// Bytes lost between messages: the stream waits for a new message start.
    SyncLost(Stream),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::InvalidHead(stream, why) => write!(f, "invalid {stream:?} head: {why}"),
            ParseError::HeadTooLarge(stream) => {
                write!(f, "{stream:?} head longer than {MAX_HEAD_BYTES} bytes")
            }
            ParseError::HeadNotCaptured(stream) => {
                write!(f, "{stream:?} head not fully captured")
            }
            ParseError::InvalidFraming(stream, why) => write!(f, "{stream:?} framing: {why}"),
            ParseError::UnexpectedResponse => write!(f, "response without a request"),
            ParseError::TooManyPending => {
                write!(f, "more than {MAX_PENDING} requests awaiting responses")
            }
            ParseError::SyncLost(stream) => write!(f, "{stream:?} stream lost sync"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<M> {
    Request(RequestStart<M>),
    Exchange(Exchange<M>),
    Error(ParseError),
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
    /// Upgrade / CONNECT tunnel: no HTTP after this message.
    Tunnel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChunkState {
    SizeLine(Vec<u8>),
    Data(u64),
    DataEnd {
        seen_cr: bool,
    },
    /// Trailer lines; `line_has_content` says whether the current line has
    /// anything before its end.
    Trailers {
        line_has_content: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Between messages.
    Idle,
    /// Collecting a head that started in the chunk with this meta.
    Head(Vec<u8>),
    Body(u64),
    Chunked(ChunkState),
    UntilClose,
    /// Bytes were lost: wait for a chunk that starts a new message. `open`:
    /// the message in progress ends at the last chunk before that one.
    Lost {
        open: bool,
    },
    /// A tunnel or upgraded protocol: ignore everything.
    Tunnel,
}

/// A request whose head is parsed, waiting for its response.
#[derive(Debug)]
struct Pending<M> {
    index: u64,
    head: Arc<RequestHead>,
    start: M,
    body_bytes: u64,
}

/// One direction's decoder.
#[derive(Debug)]
struct Decoder<M> {
    state: State,
    /// Meta of the chunk where the current message started, and the message's
    /// offset in it.
    start: Option<M>,
    start_offset: usize,
    /// Meta of the last chunk fed.
    last: Option<M>,
    body_bytes: u64,
}

impl<M: Copy> Decoder<M> {
    fn new() -> Self {
        Decoder {
            state: State::Idle,
            start: None,
            start_offset: 0,
            last: None,
            body_bytes: 0,
        }
    }
}

/// The HTTP/1.x state of one connection.
#[derive(Debug)]
pub struct Http1Connection<M> {
    requests: Decoder<M>,
    responses: Decoder<M>,
    pending: VecDeque<Pending<M>>,
    /// The response in progress: its head and whether it answers a request.
    response_head: Option<(ResponseHead, bool)>,
    /// The stream fed last: its decoder's `last` is the latest chunk on
    /// either (kept as the stream, not a copy of the meta, for size).
    latest: Option<Stream>,
    /// The index the next request gets.
    next_index: u64,
}

impl<M: Copy> Default for Http1Connection<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Copy> Http1Connection<M> {
    pub fn new() -> Self {
        Http1Connection {
            requests: Decoder::new(),
            responses: Decoder::new(),
            // Room for one: requests are rarely pipelined, and an empty deque
            // would take room for four at the first.
            pending: VecDeque::with_capacity(1),
            response_head: None,
            latest: None,
            next_index: 0,
        }
    }

    /// Requests whose response has not ended yet.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Between exchanges: no message in progress either way, none waiting
    /// for its response. Such a connection continues as
    /// `resuming(next_index())` would.
    pub fn is_idle(&self) -> bool {
        self.requests.state == State::Idle
            && self.responses.state == State::Idle
            && self.pending.is_empty()
            && self.response_head.is_none()
    }

    /// The index the next request will get.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// A connection between exchanges whose next request gets `next_index`.
    pub fn resuming(next_index: u64) -> Self {
        Http1Connection {
            next_index,
            ..Self::new()
        }
    }

    /// Feeds one syscall's bytes: the `captured` prefix, then `uncaptured` more
    /// bytes that were not copied.
    pub fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        self.latest = Some(stream);
        let previous = self.decoder(stream).last.replace(meta);
        self.feed_bytes(stream, captured, meta, previous, out);
        if uncaptured > 0 {
            self.feed_gap(stream, uncaptured, meta, out);
        }
    }

    /// The connection closed: bodies delimited by the close end here, and
    /// requests still waiting are reported without a response.
    pub fn close(&mut self, out: &mut impl Sink<Output<M>>) {
        // A response in progress ends here: exactly when delimited by the
        // close, approximately when the close cut it short.
        let exact = self.responses.state == State::UntilClose;
        if let Some(end) = self.responses.last {
            self.end_response(end, !exact, out);
        }
        self.responses.state = State::Idle;
        let latest = self.latest.and_then(|stream| self.decoder(stream).last);
        while let Some(pending) = self.pending.pop_front() {
            // The latest chunk seen: never before the request itself.
            let end = latest.unwrap_or(pending.start);
            out.push(Output::Exchange(Exchange {
                index: pending.index,
                request: pending.head,
                response: None,
                request_start: pending.start,
                response_end: end,
                request_body_bytes: pending.body_bytes,
                response_body_bytes: 0,
                response_end_approximate: false,
            }));
        }
    }

    fn decoder(&mut self, stream: Stream) -> &mut Decoder<M> {
        match stream {
            Stream::Requests => &mut self.requests,
            Stream::Responses => &mut self.responses,
        }
    }

    /// `previous`: the meta of the chunk fed before this one on `stream`.
    fn feed_bytes(
        &mut self,
        stream: Stream,
        mut data: &[u8],
        meta: M,
        previous: Option<M>,
        out: &mut impl Sink<Output<M>>,
    ) {
        let chunk_len = data.len();
        let mut at_chunk_start = true;
        while !data.is_empty() {
            let state = std::mem::replace(&mut self.decoder(stream).state, State::Idle);
            let (next, consumed) = match state {
                State::Tunnel => (State::Tunnel, data.len()),
                State::Lost { open } => {
                    if at_chunk_start && looks_like_message_start(stream, data) {
                        if open {
                            // The lost message ended before this new one.
                            self.end_message(stream, previous.unwrap_or(meta), true, out);
                        }
                        (State::Idle, 0)
                    } else {
                        (State::Lost { open }, data.len())
                    }
                }
                State::Idle => {
                    // Stray line ends between messages are allowed (RFC 9112 §2.2).
                    let blank = data
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    if blank > 0 {
                        (State::Idle, blank)
                    } else {
                        let decoder = self.decoder(stream);
                        decoder.start = Some(meta);
                        decoder.start_offset = chunk_len - data.len();
                        decoder.body_bytes = 0;
                        (State::Head(Vec::new()), 0)
                    }
                }
                State::Head(mut buffer) => {
                    let before = buffer.len();
                    let room = MAX_HEAD_BYTES - before;
                    let take = data.len().min(room);
                    // Most heads arrive whole in one chunk: parse those where
                    // they are, and copy only a head that is still partial.
                    let parsed = if before == 0 {
                        self.parse_head(stream, &data[..take], meta, out)
                    } else {
                        buffer.extend_from_slice(&data[..take]);
                        self.parse_head(stream, &buffer, meta, out)
                    };
                    match parsed {
                        HeadResult::Complete(head_len, next) => {
                            (next, head_len.saturating_sub(before))
                        }
                        HeadResult::Partial => {
                            if before == 0 {
                                buffer.extend_from_slice(&data[..take]);
                            }
                            if buffer.len() >= MAX_HEAD_BYTES {
                                out.push(Output::Error(ParseError::HeadTooLarge(stream)));
                                (State::Lost { open: false }, take)
                            } else {
                                (State::Head(buffer), take)
                            }
                        }
                        HeadResult::Invalid => (State::Lost { open: false }, take),
                    }
                }
                State::Body(remaining) => {
                    let take = remaining.min(data.len() as u64);
                    self.decoder(stream).body_bytes += take;
                    if take == remaining {
                        self.end_message(stream, meta, false, out);
                        (State::Idle, take as usize)
                    } else {
                        (State::Body(remaining - take), take as usize)
                    }
                }
                State::Chunked(chunk) => self.feed_chunked(stream, chunk, data, meta, out),
                State::UntilClose => {
                    self.decoder(stream).body_bytes += data.len() as u64;
                    (State::UntilClose, data.len())
                }
            };
            // A state change that consumed nothing must not be the same state:
            // every iteration either consumes bytes or moves Lost/Idle → Idle/Head.
            self.decoder(stream).state = next;
            data = &data[consumed..];
            if consumed > 0 {
                at_chunk_start = false;
            }
        }
    }

    fn feed_chunked(
        &mut self,
        stream: Stream,
        chunk: ChunkState,
        data: &[u8],
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) -> (State, usize) {
        match chunk {
            ChunkState::SizeLine(mut line) => {
                let Some(newline) = data.iter().position(|b| *b == b'\n') else {
                    if line.len() + data.len() > MAX_CHUNK_LINE {
                        out.push(Output::Error(ParseError::InvalidFraming(
                            stream,
                            "chunk size line too long",
                        )));
                        return (State::Lost { open: true }, data.len());
                    }
                    line.extend_from_slice(data);
                    return (State::Chunked(ChunkState::SizeLine(line)), data.len());
                };
                line.extend_from_slice(&data[..newline]);
                match parse_chunk_size(&line) {
                    Some(0) => (
                        State::Chunked(ChunkState::Trailers {
                            line_has_content: false,
                        }),
                        newline + 1,
                    ),
                    Some(size) => (State::Chunked(ChunkState::Data(size)), newline + 1),
                    None => {
                        out.push(Output::Error(ParseError::InvalidFraming(
                            stream,
                            "invalid chunk size",
                        )));
                        (State::Lost { open: true }, newline + 1)
                    }
                }
            }
            ChunkState::Data(remaining) => {
                let take = remaining.min(data.len() as u64);
                self.decoder(stream).body_bytes += take;
                let next = if take == remaining {
                    ChunkState::DataEnd { seen_cr: false }
                } else {
                    ChunkState::Data(remaining - take)
                };
                (State::Chunked(next), take as usize)
            }
            ChunkState::DataEnd { seen_cr } => match (seen_cr, data[0]) {
                (false, b'\r') => (State::Chunked(ChunkState::DataEnd { seen_cr: true }), 1),
                (_, b'\n') => (State::Chunked(ChunkState::SizeLine(Vec::new())), 1),
                _ => {
                    out.push(Output::Error(ParseError::InvalidFraming(
                        stream,
                        "chunk data not followed by CRLF",
                    )));
                    (State::Lost { open: true }, 1)
                }
            },
            ChunkState::Trailers { line_has_content } => match data[0] {
                b'\n' if !line_has_content => {
                    self.end_message(stream, meta, false, out);
                    (State::Idle, 1)
                }
                b'\n' => (
                    State::Chunked(ChunkState::Trailers {
                        line_has_content: false,
                    }),
                    1,
                ),
                b'\r' => (State::Chunked(ChunkState::Trailers { line_has_content }), 1),
                _ => (
                    State::Chunked(ChunkState::Trailers {
                        line_has_content: true,
                    }),
                    1,
                ),
            },
        }
    }

    /// `n` bytes that were moved but not captured.
    fn feed_gap(&mut self, stream: Stream, n: u64, meta: M, out: &mut impl Sink<Output<M>>) {
        let state = std::mem::replace(&mut self.decoder(stream).state, State::Idle);
        let next = match state {
            State::Tunnel => State::Tunnel,
            State::UntilClose => {
                self.decoder(stream).body_bytes += n;
                State::UntilClose
            }
            State::Body(remaining) if n < remaining => {
                self.decoder(stream).body_bytes += n;
                State::Body(remaining - n)
            }
            State::Body(remaining) => {
                self.decoder(stream).body_bytes += remaining;
                self.end_message(stream, meta, false, out);
                if n > remaining {
                    out.push(Output::Error(ParseError::SyncLost(stream)));
                    State::Lost { open: false }
                } else {
                    State::Idle
                }
            }
            State::Chunked(ChunkState::Data(remaining)) if n < remaining => {
                self.decoder(stream).body_bytes += n;
                State::Chunked(ChunkState::Data(remaining - n))
            }
            State::Chunked(ChunkState::Data(remaining)) if n == remaining => {
                self.decoder(stream).body_bytes += n;
                State::Chunked(ChunkState::DataEnd { seen_cr: false })
            }
            State::Chunked(_) => {
                self.decoder(stream).body_bytes += n;
                out.push(Output::Error(ParseError::SyncLost(stream)));
                State::Lost { open: true }
            }
            State::Head(_) => {
                out.push(Output::Error(ParseError::HeadNotCaptured(stream)));
                State::Lost { open: false }
            }
            State::Idle => {
                out.push(Output::Error(ParseError::SyncLost(stream)));
                State::Lost { open: false }
            }
            lost @ State::Lost { .. } => lost,
        };
        self.decoder(stream).state = next;
    }

    fn parse_head(
        &mut self,
        stream: Stream,
        buffer: &[u8],
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) -> HeadResult {
        let (len, head) = match parse_head_bytes(stream, buffer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return HeadResult::Partial,
            Err(e) => {
                out.push(Output::Error(ParseError::InvalidHead(
                    stream,
                    e.to_string(),
                )));
                return HeadResult::Invalid;
            }
        };
        let framing = match &head {
            Head::Request(request) => request_framing(request),
            Head::Response(response) => {
                let method = self.pending.front().map(|p| p.head.method());
                response_framing(method, response)
            }
        };
        let framing = match framing {
            Ok(framing) => framing,
            Err(why) => {
                out.push(Output::Error(ParseError::InvalidFraming(stream, why)));
                return HeadResult::Invalid;
            }
        };
        let next = match head {
            Head::Request(request) => self.request_head_done(request, framing, meta, out),
            Head::Response(response) => self.response_head_done(response, framing, meta, out),
        };
        HeadResult::Complete(len, next)
    }

    fn request_head_done(
        &mut self,
        head: RequestHead,
        framing: Framing,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) -> State {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            out.push(Output::Error(ParseError::TooManyPending));
        }
        let head = Arc::new(head);
        let start = self.requests.start.unwrap_or(meta);
        let index = self.next_index;
        self.next_index += 1;
        out.push(Output::Request(RequestStart {
            index,
            request: head.clone(),
            start,
            offset: self.requests.start_offset,
        }));
        self.pending.push_back(Pending {
            index,
            head,
            start,
            body_bytes: 0,
        });
        self.body_state(Stream::Requests, framing, meta, out)
    }

    fn response_head_done(
        &mut self,
        head: ResponseHead,
        framing: Framing,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) -> State {
        if (100..200).contains(&head.status) && head.status != 101 {
            // Interim response (100 Continue, 103 Early Hints): the final one follows.
            return State::Idle;
        }
        let answers_request = !self.pending.is_empty();
        if !answers_request {
            out.push(Output::Error(ParseError::UnexpectedResponse));
        }
        self.response_head = Some((head, answers_request));
        self.body_state(Stream::Responses, framing, meta, out)
    }

    fn body_state(
        &mut self,
        stream: Stream,
        framing: Framing,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) -> State {
        match framing {
            Framing::None | Framing::Length(0) => {
                self.end_message(stream, meta, false, out);
                State::Idle
            }
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::Chunked(ChunkState::SizeLine(Vec::new())),
            Framing::UntilClose => State::UntilClose,
            Framing::Tunnel => {
                self.end_message(stream, meta, false, out);
                // Neither direction carries HTTP any more.
                self.requests.state = State::Tunnel;
                State::Tunnel
            }
        }
    }

    fn end_message(
        &mut self,
        stream: Stream,
        end: M,
        approximate: bool,
        out: &mut impl Sink<Output<M>>,
    ) {
        match stream {
            Stream::Requests => {
                let body = self.requests.body_bytes;
                if let Some(last) = self.pending.back_mut() {
                    last.body_bytes = body;
                }
            }
            Stream::Responses => self.end_response(end, approximate, out),
        }
    }

    fn end_response(&mut self, end: M, approximate: bool, out: &mut impl Sink<Output<M>>) {
        let Some((head, answers_request)) = self.response_head.take() else {
            return;
        };
        if !answers_request {
            return;
        }
        let Some(pending) = self.pending.pop_front() else {
            return;
        };
        out.push(Output::Exchange(Exchange {
            index: pending.index,
            request: pending.head,
            response: Some(head),
            request_start: pending.start,
            response_end: end,
            request_body_bytes: pending.body_bytes,
            response_body_bytes: self.responses.body_bytes,
            response_end_approximate: approximate,
        }));
    }
}

enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

/// A complete head and its length, `None` while more bytes are needed.
fn parse_head_bytes(
    stream: Stream,
    buffer: &[u8],
) -> Result<Option<(usize, Head)>, httparse::Error> {
    // Left uninitialised: this runs for every head, and zeroing room for
    // MAX_HEADERS headers cost more than parsing the few a head has.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let config = httparse::ParserConfig::default();
    Ok(match stream {
        Stream::Requests => {
            let mut request = httparse::Request::new(&mut []);
            match config.parse_request_with_uninit_headers(&mut request, buffer, &mut headers)? {
                httparse::Status::Partial => None,
                httparse::Status::Complete(len) => Some((
                    len,
                    Head::Request(RequestHead::new(
                        request.method.unwrap_or_default(),
                        request.path.unwrap_or_default(),
                        request.version.unwrap_or(1),
                        request.headers.iter().map(|h| (h.name, h.value)),
                    )),
                )),
            }
        }
        Stream::Responses => {
            let mut response = httparse::Response::new(&mut []);
            match config.parse_response_with_uninit_headers(&mut response, buffer, &mut headers)? {
                httparse::Status::Partial => None,
                httparse::Status::Complete(len) => Some((
                    len,
                    Head::Response(ResponseHead::new(
                        response.code.unwrap_or_default(),
                        response.version.unwrap_or(1),
                        response.headers.iter().map(|h| (h.name, h.value)),
                    )),
                )),
            }
        }
    })
}

enum HeadResult {
    /// The head is this many bytes of the buffer; the state that follows.
    Complete(usize, State),
    Partial,
    Invalid,
}

/// Request body framing (RFC 9112 §6.3): chunked, a length, or none.
fn request_framing(head: &RequestHead) -> Result<Framing, &'static str> {
    if let Some(te) = head.headers.get("transfer-encoding") {
        return if is_chunked(te) {
            Ok(Framing::Chunked)
        } else {
            Err("request transfer-encoding without chunked")
        };
    }
    match head.headers.get("content-length") {
        Some(len) => parse_length(len).map(Framing::Length),
        None => Ok(Framing::None),
    }
}

/// Response body framing (RFC 9112 §6.3), given the request's method.
fn response_framing(method: Option<&str>, head: &ResponseHead) -> Result<Framing, &'static str> {
    let status = head.status;
    if status == 101 || (method == Some("CONNECT") && (200..300).contains(&status)) {
        return Ok(Framing::Tunnel);
    }
    if method == Some("HEAD") || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    if let Some(te) = head.headers.get("transfer-encoding") {
        return Ok(if is_chunked(te) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    match head.headers.get("content-length") {
        Some(len) => parse_length(len).map(Framing::Length),
        None => Ok(Framing::UntilClose),
    }
}

fn is_chunked(transfer_encoding: &str) -> bool {
    transfer_encoding
        .rsplit(',')
        .next()
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

fn parse_length(value: &str) -> Result<u64, &'static str> {
    // A repeated header folded into "n, n" is allowed when all values agree.
    let mut values = value.split(',').map(|v| v.trim());
    let first = values.next().unwrap_or_default();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid content-length");
    }
    if values.any(|v| v != first) {
        return Err("conflicting content-length values");
    }
    first.parse().map_err(|_| "content-length too large")
}

/// The size of a chunk-size line (`1a;ext=1\r`), or `None` when invalid.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|b| *b == b';').next()?;
    let digits = trim_ascii(digits);
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0u64, |size, b| {
        let digit = (*b as char).to_digit(16)?;
        Some(size * 16 + digit as u64)
    })
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Whether `data` could be the start of a message on `stream`: a method token
/// and a space for requests, `HTTP/1.` for responses.
pub fn looks_like_message_start(stream: Stream, data: &[u8]) -> bool {
    match stream {
        Stream::Responses => data.starts_with(b"HTTP/1."),
        Stream::Requests => looks_like_request_start(data),
    }
}

/// A method token (RFC 9110 token characters, upper-case letters in practice)
/// followed by a space and a target.
pub fn looks_like_request_start(data: &[u8]) -> bool {
    let method_len = data
        .iter()
        .take(17)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    (3..=16).contains(&method_len)
        && data.get(method_len) == Some(&b' ')
        && data
            .get(method_len + 1)
            .is_some_and(|b| *b == b'/' || *b == b'*' || b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests;
