//! HTTP/2 over one connection (h2c with prior knowledge, or h2 read as TLS
//! plaintext): both byte streams in, one exchange per stream out.
//!
//! Pure and total like `http1`: frames are read from any split of the
//! bytes; HEADERS and CONTINUATION payloads are decoded with HPACK, the
//! dynamic table kept per direction; DATA is counted, never copied. Bytes
//! lost inside a header block, or a block that does not decode, leave that
//! direction's HPACK table unknown: from then on its streams are reported
//! with what is still known (their timing and stream), never with a header
//! guessed, and the loss is counted.
//!
//! A connection is recognised by the client's preface; one whose start
//! was missed is not parsed (its HPACK tables cannot be known).

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
const PUSH_PROMISE: u8 = 5;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The header fields kept from a block: what spans report and trace
/// context. No other value is copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<(&'static str, String)>);

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
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    fn keep(&mut self, name: &[u8], value: &[u8]) {
        if let Some(kept) = KEPT_FIELDS.iter().find(|k| k.as_bytes() == name) {
            self.0
                .push((kept, String::from_utf8_lossy(value).trim().to_string()));
        }
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
    /// The client did not start with the preface.
    NoPreface,
    /// A header block did not decode, or bytes of it were not captured:
    /// that direction's HPACK table is unknown from here on.
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
            ParseError::NoPreface => write!(f, "no client preface"),
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
    hpack: hpack::Decoder,
    /// The HPACK table is unknown (bytes lost): blocks are not decoded.
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
            reader.lost = true;
            out.push(Output::Error(ParseError::NoPreface));
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
        HEADERS | CONTINUATION | PUSH_PROMISE => {
            if reader.block.len() + take > MAX_HEADER_BLOCK {
                if !reader.block.is_empty() || !reader.hpack_lost {
                    out.push(Output::Error(ParseError::HeaderBlockTooLarge(stream)));
                }
                reader.block.clear();
                lose_hpack(reader, stream, out);
            } else if !reader.hpack_lost {
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
            if frame.kind != CONTINUATION && !reader.hpack_lost {
                // The first frame's padding and other fields are not HPACK.
                match fragment_range(&reader.block, frame.kind, frame.flags) {
                    Some((from, to)) => {
                        reader.block.truncate(to);
                        reader.block.drain(..from);
                    }
                    None => {
                        reader.block.clear();
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
            let fields = decode(reader, &raw);
            if fields.is_none() {
                lose_hpack(reader, stream, out);
            }
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

/// Decodes a header block; `None` when the table is unknown or it does not decode.
fn decode<M>(reader: &mut Reader<M>, block: &[u8]) -> Option<Fields> {
    if reader.hpack_lost {
        return None;
    }
    let mut fields = Fields::default();
    reader
        .hpack
        .decode(block, |name, value| fields.keep(name, value))
        .ok()?;
    Some(fields)
}

fn lose_hpack<M>(reader: &mut Reader<M>, stream: Stream, out: &mut impl Sink<Output<M>>) {
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

/// Whether `data` starts with (a prefix of) the client preface.
pub fn looks_like_preface(data: &[u8]) -> bool {
    data.len() >= 8 && PREFACE.starts_with(&data[..data.len().min(PREFACE.len())])
}

#[cfg(test)]
mod tests;
