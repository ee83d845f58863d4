//! HTTP/2 over one connection (h2c with prior knowledge, or h2 read as TLS
//! plaintext): both byte streams in, one exchange per stream out.
//!
//! Pure and total like `http1`: frames are read from any split of the
//! bytes; HEADERS and CONTINUATION payloads are decoded with HPACK, the
//! dynamic table kept per direction; DATA is counted, never copied.
//!
//! A connection is recognised by the client's preface, or, when its start
//! was missed (opened before the agent), by a request's HEADERS frame
//! whose block starts with `:method` when decoded with an empty table.
//! Where the table is not known whole (a start missed, a block too large
//! or that did not decode), the decoder starts over empty at a block
//! boundary: the entries it adds from there are the newest of the
//! encoder's table too, at the same indexes, so what it decodes is right.
//! A field that refers to an older entry is skipped (a reference changes
//! no table) and the block marked partial; one that would add an entry it
//! cannot decode ends the block there, and the decoder starts over again.
//! Streams are reported with what is known (their timing, stream, the
//! fields that decode), never with a header guessed; the loss is counted.

mod describe;
mod hpack;

use std::{collections::HashMap, fmt};

pub use describe::{Http2, Http2Exchange};

use super::{Sink, Stream};

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// A header block (HEADERS and its CONTINUATIONs) longer than this is an error.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Streams open at once per connection; past this the oldest is dropped.
const MAX_STREAMS: usize = 256;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The header fields kept from a block: what spans report and trace
/// context. No other value is copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    kept: Vec<(&'static str, String)>,
    /// The block referred to a table entry not known: the fields after
    /// that one are missing.
    partial: bool,
}

const KEPT_FIELDS: &[&str] = &[
    ":method",
    ":path",
    ":authority",
    ":scheme",
    ":status",
    "content-type",
    "user-agent",
    "grpc-status",
    "traceparent",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
];

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.kept
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    fn keep(&mut self, name: &[u8], value: &[u8]) {
        if let Some(kept) = KEPT_FIELDS.iter().find(|k| k.as_bytes() == name) {
            self.kept
                .push((kept, String::from_utf8_lossy(value).trim().to_string()));
        }
    }

    /// Fields after an unknown one are missing: a field's absence says nothing.
    pub fn partial(&self) -> bool {
        self.partial
    }
}

/// A request whose header block was just decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestStart<M> {
    /// The request's number on this connection, from 0.
    pub index: u64,
    pub stream_id: u32,
    /// `None`: the block could not be decoded (HPACK state unknown).
    pub request: Option<Fields>,
    /// The chunk holding the first byte of the HEADERS frame, and where.
    pub start: M,
    pub offset: usize,
}

/// A stream and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange<M> {
    pub index: u64,
    pub stream_id: u32,
    pub request: Option<Fields>,
    /// The response's headers; `None` when none came (reset, or closed).
    pub response: Option<Fields>,
    /// Trailers (gRPC's status is there).
    pub trailers: Option<Fields>,
    /// The stream was reset (RST_STREAM), by either end.
    pub reset: bool,
    pub request_start: M,
    pub response_end: M,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
}

/// Why bytes could not be understood; each is counted by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The client did not start with the preface: the connection's start
    /// was missed, its HPACK tables are known only from here.
    StartMissed,
    /// A header block did not decode, or was not read whole: that
    /// direction's HPACK table is known only in part from here on.
    HpackLost(Stream),
    /// A header block longer than `MAX_HEADER_BLOCK`.
    HeaderBlockTooLarge(Stream),
    /// A CONTINUATION without the HEADERS before it, or another frame
    /// inside a header block.
    BadContinuation(Stream),
    /// Bytes of a frame header were not captured: the direction is lost.
    SyncLost(Stream),
    /// More than `MAX_STREAMS` open: the oldest was dropped.
    TooManyStreams,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::StartMissed => write!(f, "connection start missed (no client preface)"),
            ParseError::HpackLost(stream) => write!(f, "{stream:?} HPACK state lost"),
            ParseError::HeaderBlockTooLarge(stream) => {
                write!(f, "{stream:?} header block over {MAX_HEADER_BLOCK} bytes")
            }
            ParseError::BadContinuation(stream) => write!(f, "{stream:?} misplaced CONTINUATION"),
            ParseError::SyncLost(stream) => write!(f, "{stream:?} frame sync lost"),
            ParseError::TooManyStreams => write!(f, "more than {MAX_STREAMS} open streams"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<M> {
    Request(RequestStart<M>),
    Exchange(Exchange<M>),
    Error(ParseError),
}

/// A frame being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream_id: u32,
    /// Payload bytes still to come.
    remaining: usize,
}

/// One direction's frame reader.
#[derive(Debug)]
struct Reader<M> {
    /// Preface bytes still expected (client direction only).
    preface_left: usize,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    frame: Option<Frame>,
    /// Where the frame being read started: chunk meta and offset.
    frame_start: Option<(M, usize)>,
    /// The header block being collected: its stream, flags of its HEADERS
    /// frame, where that frame started.
    block: Vec<u8>,
    block_of: Option<Block<M>>,
    /// The block being collected cannot be decoded (too large, or framed
    /// wrong): it is skipped, and the decoder starts over after it.
    block_broken: bool,
    hpack: hpack::Decoder,
    /// The decoder's table is known only in part (see the module's doc):
    /// counted once.
    hpack_lost: bool,
    /// Frame sync is lost: nothing more is read this way.
    lost: bool,
}

impl<M: Copy> Reader<M> {
    fn new(preface: bool) -> Self {
        Reader {
            preface_left: if preface { PREFACE.len() } else { 0 },
            header: [0; FRAME_HEADER],
            header_len: 0,
            frame: None,
            frame_start: None,
            block: Vec::new(),
            block_of: None,
            block_broken: false,
            hpack: hpack::Decoder::new(),
            hpack_lost: false,
            lost: false,
        }
    }
}

/// A header block being collected.
#[derive(Debug, Clone, Copy)]
struct Block<M> {
    /// HEADERS or PUSH_PROMISE.
    kind: u8,
    stream_id: u32,
    /// The flags of its first frame (END_STREAM is there).
    flags: u8,
    /// Where its first frame started: chunk meta and offset.
    start: M,
    offset: usize,
}

#[derive(Debug)]
struct StreamState<M> {
    index: u64,
    request: Option<Fields>,
    response: Option<Fields>,
    trailers: Option<Fields>,
    start: M,
    request_body_bytes: u64,
    response_body_bytes: u64,
}

/// The HTTP/2 state of one connection.
#[derive(Debug)]
pub struct Http2Connection<M> {
    requests: Reader<M>,
    responses: Reader<M>,
    streams: HashMap<u32, StreamState<M>>,
    next_index: u64,
    /// The latest chunk fed (either way): where streams still open end at a close.
    latest: Option<M>,
}

impl<M: Copy> Default for Http2Connection<M> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a frame, or the part of it a chunk holds, means to the streams.
enum Event<M> {
    /// A header block is complete.
    Block {
        stream_id: u32,
        flags: u8,
        start: M,
        offset: usize,
        block: Option<Fields>,
    },
    Data {
        stream_id: u32,
        bytes: u64,
        end_stream: bool,
    },
    Reset(u32),
    /// Nothing the streams need.
    None,
}

impl<M: Copy> Http2Connection<M> {
    pub fn new() -> Self {
        Http2Connection {
            requests: Reader::new(true),
            responses: Reader::new(false),
            streams: HashMap::new(),
            next_index: 0,
            latest: None,
        }
    }

    pub fn pending_requests(&self) -> usize {
        self.streams.len()
    }

    /// Feeds one syscall's bytes: the `captured` prefix, then `uncaptured`
    /// more bytes that were not copied.
    pub fn feed(
        &mut self,
        stream: Stream,
        captured: &[u8],
        uncaptured: u64,
        meta: M,
        out: &mut impl Sink<Output<M>>,
    ) {
        self.latest = Some(meta);
        let started = self.requests.preface_left == PREFACE.len();
        if stream == Stream::Requests && started && !captured.is_empty() {
            let shown = captured.len().min(PREFACE.len());
            if captured[..shown] != PREFACE[..shown] {
                self.start_missed(out);
            }
        }
        let mut at = 0;
        while at < captured.len() {
            let reader = self.reader(stream);
            if reader.lost {
                return;
            }
            let (consumed, event) = read(reader, stream, &captured[at..], at, meta, out);
            at += consumed;
            self.apply(stream, event, meta, out);
        }
        if uncaptured > 0 {
            self.gap(stream, uncaptured, out);
        }
    }

    /// Frames came first: the tables are known only from here (both
    /// directions' decoders start empty now).
    fn start_missed(&mut self, out: &mut impl Sink<Output<M>>) {
        self.requests.preface_left = 0;
        self.requests.hpack_lost = true;
        self.responses.hpack_lost = true;
        out.push(Output::Error(ParseError::StartMissed));
    }

    /// The connection closed: open streams end without their response.
    pub fn close(&mut self, out: &mut impl Sink<Output<M>>) {
        let mut open: Vec<(u32, StreamState<M>)> = self.streams.drain().collect();
        open.sort_by_key(|(_, s)| s.index);
        for (stream_id, state) in open {
            let end = self.latest.unwrap_or(state.start);
            out.push(Output::Exchange(exchange(stream_id, state, end, false)));
        }
    }

    fn reader(&mut self, stream: Stream) -> &mut Reader<M> {
        match stream {
            Stream::Requests => &mut self.requests,
            Stream::Responses => &mut self.responses,
        }
    }

    /// `n` bytes moved but not captured: skipped inside DATA, lost elsewhere.
    fn gap(&mut self, stream: Stream, n: u64, out: &mut impl Sink<Output<M>>) {
        let reader = self.reader(stream);
        if reader.lost {
            return;
        }
        match reader.frame {
            Some(mut frame)
                if reader.header_len == 0
                    && frame.kind != HEADERS
                    && frame.kind != CONTINUATION
                    && frame.kind != PUSH_PROMISE
                    && n <= frame.remaining as u64 =>
            {
                frame.remaining -= n as usize;
                let done = frame.remaining == 0;
                reader.frame = if done { None } else { Some(frame) };
                if frame.kind == DATA {
                    let event = Event::Data {
                        stream_id: frame.stream_id,
                        bytes: n,
                        end_stream: done && frame.flags & END_STREAM != 0,
                    };
                    if let Some(meta) = self.latest {
                        self.apply(stream, event, meta, out);
                    }
                }
            }
            _ => {
                reader.lost = true;
                out.push(Output::Error(ParseError::SyncLost(stream)));
            }
        }
    }

    fn apply(&mut self, stream: Stream, event: Event<M>, meta: M, out: &mut impl Sink<Output<M>>) {
        match (stream, event) {
            (
                Stream::Requests,
                Event::Block {
                    stream_id,
                    start,
                    offset,
                    block,
                    ..
                },
            ) => {
                if self.streams.contains_key(&stream_id) {
                    return; // trailers of a request
                }
                if self.streams.len() >= MAX_STREAMS
                    && let Some(oldest) = self
                        .streams
                        .iter()
                        .min_by_key(|(_, s)| s.index)
                        .map(|(id, _)| *id)
                {
                    self.streams.remove(&oldest);
                    out.push(Output::Error(ParseError::TooManyStreams));
                }
                let index = self.next_index;
                self.next_index += 1;
                out.push(Output::Request(RequestStart {
                    index,
                    stream_id,
                    request: block.clone(),
                    start,
                    offset,
                }));
                self.streams.insert(
                    stream_id,
                    StreamState {
                        index,
                        request: block,
                        response: None,
                        trailers: None,
                        start,
                        request_body_bytes: 0,
                        response_body_bytes: 0,
                    },
                );
            }
            (
                Stream::Responses,
                Event::Block {
                    stream_id,
                    flags,
                    block,
                    ..
                },
            ) => {
                let Some(state) = self.streams.get_mut(&stream_id) else {
                    return;
                };
                let informational = block
                    .as_ref()
                    .and_then(|b| b.get(":status"))
                    .is_some_and(|s| s.starts_with('1'));
                if state.response.is_none() {
                    if !informational {
                        state.response = Some(block.unwrap_or_default());
                    }
                } else {
                    state.trailers = block;
                }
                if flags & END_STREAM != 0 {
                    self.end(stream_id, meta, false, out);
                }
            }
            (
                _,
                Event::Data {
                    stream_id,
                    bytes,
                    end_stream,
                },
            ) => {
                let Some(state) = self.streams.get_mut(&stream_id) else {
                    return;
                };
                match stream {
                    Stream::Requests => state.request_body_bytes += bytes,
                    Stream::Responses => {
                        state.response_body_bytes += bytes;
                        if end_stream {
                            self.end(stream_id, meta, false, out);
                        }
                    }
                }
            }
            (_, Event::Reset(stream_id)) => self.end(stream_id, meta, true, out),
            (_, Event::None) => {}
        }
    }

    fn end(&mut self, stream_id: u32, end: M, reset: bool, out: &mut impl Sink<Output<M>>) {
        if let Some(state) = self.streams.remove(&stream_id) {
            out.push(Output::Exchange(exchange(stream_id, state, end, reset)));
        }
    }
}

fn exchange<M>(stream_id: u32, state: StreamState<M>, end: M, reset: bool) -> Exchange<M> {
    Exchange {
        index: state.index,
        stream_id,
        request: state.request,
        response: state.response,
        trailers: state.trailers,
        reset,
        request_start: state.start,
        response_end: end,
        request_body_bytes: state.request_body_bytes,
        response_body_bytes: state.response_body_bytes,
    }
}

/// Reads from `data` (at `base` in its chunk) until one event or its end:
/// how many bytes it used, and the event.
fn read<M: Copy>(
    reader: &mut Reader<M>,
    stream: Stream,
    data: &[u8],
    base: usize,
    meta: M,
    out: &mut impl Sink<Output<M>>,
) -> (usize, Event<M>) {
    let none = Event::None;
    if reader.preface_left > 0 {
        let expected = &PREFACE[PREFACE.len() - reader.preface_left..];
        let take = expected.len().min(data.len());
        if data[..take] != expected[..take] {
            // A preface begun, then something else: not HTTP/2.
            reader.lost = true;
            out.push(Output::Error(ParseError::SyncLost(stream)));
            return (data.len(), none);
        }
        reader.preface_left -= take;
        return (take, none);
    }
    let Some(mut frame) = reader.frame else {
        if reader.header_len == 0 {
            reader.frame_start = Some((meta, base));
        }
        let take = (FRAME_HEADER - reader.header_len).min(data.len());
        reader.header[reader.header_len..reader.header_len + take].copy_from_slice(&data[..take]);
        reader.header_len += take;
        if reader.header_len == FRAME_HEADER {
            reader.header_len = 0;
            let h = reader.header;
            let frame = Frame {
                remaining: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
                kind: h[3],
                flags: h[4],
                stream_id: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            };
            let in_block = reader.block_of.is_some();
            if in_block != (frame.kind == CONTINUATION) {
                // A header block is continued by CONTINUATION frames only.
                out.push(Output::Error(ParseError::BadContinuation(stream)));
                reader.block.clear();
                reader.block_of = None;
                lose_hpack(reader, stream, out);
            }
            if frame.kind == HEADERS || frame.kind == PUSH_PROMISE {
                reader.block_broken = false;
                let (start, offset) = reader.frame_start.unwrap_or((meta, base));
                reader.block_of = Some(Block {
                    kind: frame.kind,
                    stream_id: frame.stream_id,
                    flags: frame.flags,
                    start,
                    offset,
                });
            }
            if frame.remaining == 0 {
                return (take, finish(reader, stream, frame, out));
            }
            reader.frame = Some(frame);
        }
        return (take, none);
    };
    let take = frame.remaining.min(data.len());
    frame.remaining -= take;
    let payload = &data[..take];
    let mut event = none;
    match frame.kind {
        HEADERS | CONTINUATION | PUSH_PROMISE if !reader.block_broken => {
            if reader.block.len() + take > MAX_HEADER_BLOCK {
                out.push(Output::Error(ParseError::HeaderBlockTooLarge(stream)));
                reader.block.clear();
                reader.block_broken = true;
                lose_hpack(reader, stream, out);
            } else {
                reader.block.extend_from_slice(payload);
            }
        }
        DATA => {
            event = Event::Data {
                stream_id: frame.stream_id,
                bytes: take as u64,
                end_stream: frame.remaining == 0 && frame.flags & END_STREAM != 0,
            };
        }
        _ => {}
    }
    if frame.remaining == 0 {
        reader.frame = None;
        if frame.kind == DATA {
            return (take, event);
        }
        return (take, finish(reader, stream, frame, out));
    }
    reader.frame = Some(frame);
    (take, event)
}

/// A frame whose payload is all read.
fn finish<M: Copy>(
    reader: &mut Reader<M>,
    stream: Stream,
    frame: Frame,
    out: &mut impl Sink<Output<M>>,
) -> Event<M> {
    reader.frame = None;
    match frame.kind {
        RST_STREAM => Event::Reset(frame.stream_id),
        DATA if frame.flags & END_STREAM != 0 => Event::Data {
            stream_id: frame.stream_id,
            bytes: 0,
            end_stream: true,
        },
        HEADERS | CONTINUATION | PUSH_PROMISE => {
            if frame.kind != CONTINUATION && !reader.block_broken {
                // The first frame's padding and other fields are not HPACK.
                match fragment_range(&reader.block, frame.kind, frame.flags) {
                    Some((from, to)) => {
                        reader.block.truncate(to);
                        reader.block.drain(..from);
                    }
                    None => {
                        reader.block.clear();
                        reader.block_broken = true;
                        lose_hpack(reader, stream, out);
                    }
                }
            }
            if frame.flags & END_HEADERS == 0 {
                return Event::None;
            }
            let Some(block) = reader.block_of.take() else {
                return Event::None;
            };
            let raw = std::mem::take(&mut reader.block);
            let fields = if reader.block_broken {
                None
            } else {
                Some(decode(reader, stream, &raw, out))
            };
            reader.block = raw;
            reader.block.clear();
            if block.kind == PUSH_PROMISE {
                // Decoded for the table only: pushed streams are not followed.
                return Event::None;
            }
            Event::Block {
                stream_id: block.stream_id,
                flags: block.flags,
                start: block.start,
                offset: block.offset,
                block: fields,
            }
        }
        _ => Event::None,
    }
}

/// Decodes a header block: its fields, partial when it stopped at one it
/// could not decode (then the decoder starts over: see the module's doc).
fn decode<M>(
    reader: &mut Reader<M>,
    stream: Stream,
    block: &[u8],
    out: &mut impl Sink<Output<M>>,
) -> Fields {
    let mut fields = Fields::default();
    let keep = |name: &[u8], value: &[u8]| fields.keep(name, value);
    let decoded = if reader.hpack_lost {
        reader.hpack.decode_known(block, keep)
    } else {
        reader.hpack.decode(block, keep).map(|()| true)
    };
    match decoded {
        Ok(complete) => fields.partial = !complete,
        Err(hpack::Undecodable) => {
            fields.partial = true;
            lose_hpack(reader, stream, out);
        }
    }
    fields
}

/// The decoder's table may differ from the encoder's: it starts over
/// empty. The first time is counted.
fn lose_hpack<M>(reader: &mut Reader<M>, stream: Stream, out: &mut impl Sink<Output<M>>) {
    reader.hpack = hpack::Decoder::new();
    if !reader.hpack_lost {
        reader.hpack_lost = true;
        out.push(Output::Error(ParseError::HpackLost(stream)));
    }
}

/// Where the header block fragment is in the payload of a HEADERS or
/// PUSH_PROMISE frame: without its padding, priority or promised stream.
fn fragment_range(payload: &[u8], kind: u8, flags: u8) -> Option<(usize, usize)> {
    let mut from = 0;
    let mut padding = 0;
    if flags & PADDED != 0 {
        padding = *payload.first()? as usize;
        from = 1;
    }
    if kind == HEADERS && flags & PRIORITY != 0 {
        from += 5;
    }
    if kind == PUSH_PROMISE {
        from += 4;
    }
    let to = payload.len().checked_sub(padding)?;
    (from <= to).then_some((from, to))
}

/// Whether `data` starts a connection whose start was missed: whole frames
/// (each of a known type, no larger than the default maximum, on the
/// stream its type allows), up to a HEADERS frame on a client stream whose
/// pseudo-header fields are a request's (`hpack::pseudo_headers`).
pub fn starts_midway(data: &[u8]) -> bool {
    const DEFAULT_MAX_FRAME: usize = 16 * 1024;
    let mut at = 0;
    while let Some(header) = data.get(at..at + FRAME_HEADER) {
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let connection_frame = matches!(kind, SETTINGS | PING | GOAWAY);
        if length > DEFAULT_MAX_FRAME
            || kind > CONTINUATION
            || stream_id & 0x8000_0000 != 0
            || connection_frame != (stream_id == 0)
        {
            return false;
        }
        if kind == HEADERS {
            let Some(payload) = data.get(at + FRAME_HEADER..at + FRAME_HEADER + length) else {
                return false;
            };
            let Some((from, to)) = fragment_range(payload, HEADERS, flags) else {
                return false;
            };
            return stream_id % 2 == 1
                && flags & END_HEADERS != 0
                && hpack::pseudo_headers(&payload[from..to]) == hpack::PseudoHeaders::Request;
        }
        at += FRAME_HEADER + length;
    }
    false
}

/// Whether `data` starts with (a prefix of) the client preface.
pub fn looks_like_preface(data: &[u8]) -> bool {
    data.len() >= 8 && PREFACE.starts_with(&data[..data.len().min(PREFACE.len())])
}

#[cfg(test)]
mod tests;
