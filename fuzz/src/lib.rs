//! What the parser fuzz targets share: how they cut the fuzzer's input
//! into the chunks of a connection's two byte streams, and feed them to a
//! database parser.

use tracer_agent::protocols::{
    Stream,
    db::{Connection, Output},
};

/// The chunks `data` describes: records of `[control][length][length
/// bytes]`. Control bit 0 picks the stream; with bit 1 set, `(control >>
/// 2) * 37` uncaptured bytes follow the chunk. Each chunk comes with its
/// number, the meta the parsers are fed (so an exchange's end is never
/// before its start).
pub fn chunks(data: &[u8]) -> impl Iterator<Item = (Stream, &[u8], u64, u32)> {
    let mut rest = data;
    let mut number = 0u32;
    std::iter::from_fn(move || {
        let [control, length, tail @ ..] = rest else {
            return None;
        };
        let take = (*length as usize).min(tail.len());
        let stream = if control & 1 == 0 {
            Stream::Requests
        } else {
            Stream::Responses
        };
        let gap = if control & 2 != 0 {
            u64::from(control >> 2) * 37
        } else {
            0
        };
        let chunk = (stream, &tail[..take], gap, number);
        number += 1;
        rest = &tail[take..];
        Some(chunk)
    })
}

/// Feeds a database connection parser the chunks `data` describes, then
/// closes it: what it gave.
pub fn feed_database<C: Connection<u32>>(
    connection: &mut C,
    data: &[u8],
) -> Vec<Output<u32, C::Exchange>> {
    let mut out = Vec::new();
    for (stream, bytes, gap, chunk) in chunks(data) {
        connection.feed(stream, bytes, gap, chunk, &mut out);
    }
    connection.close(&mut out);
    out
}
