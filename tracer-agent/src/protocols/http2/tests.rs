use super::*;

/// Meta in these tests: the index of the chunk fed.
type Out = Vec<Output<u32>>;

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block as peers write them: Huffman-coded values, fields
/// added to the dynamic table and indexed when repeated.
fn block(encoder: &mut httlib_hpack::Encoder<'_>, fields: &[(&str, &str)]) -> Vec<u8> {
    use httlib_hpack::Encoder;
    let mut out = Vec::new();
    for (name, value) in fields {
        let flags = Encoder::HUFFMAN_VALUE | Encoder::WITH_INDEXING | Encoder::BEST_FORMAT;
        encoder
            .encode(
                (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags),
                &mut out,
            )
            .expect("encodable field");
    }
    out
}

/// A client's bytes for GET `paths` on streams 1, 3, …, and the server's
/// answers (200, a body of 5 bytes each), as two byte streams.
fn conversation(paths: &[&str], content_type: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let (mut client_hpack, mut server_hpack) = (
        httlib_hpack::Encoder::with_dynamic_size(4096),
        httlib_hpack::Encoder::with_dynamic_size(4096),
    );
    let mut client = PREFACE.to_vec();
    client.extend(frame(4, 0, 0, &[]));
    let mut server = frame(4, 0, 0, &[]);
    for (i, path) in paths.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":path", *path),
            (":authority", "example.test"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ];
        if let Some(content_type) = content_type {
            fields.push(("content-type", content_type));
        }
        client.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &block(&mut client_hpack, &fields),
        ));
        server.extend(frame(
            HEADERS,
            END_HEADERS,
            id,
            &block(&mut server_hpack, &[(":status", "200")]),
        ));
        if content_type.is_some() {
            server.extend(frame(DATA, 0, id, b"hello"));
            server.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                id,
                &block(&mut server_hpack, &[("grpc-status", "0")]),
            ));
        } else {
            server.extend(frame(DATA, END_STREAM, id, b"hello"));
        }
    }
    (client, server)
}

fn exchanges(out: &Out) -> Vec<&Exchange<u32>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Exchange(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn errors(out: &Out) -> Vec<&ParseError> {
    out.iter()
        .filter_map(|o| match o {
            Output::Error(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn streams_become_exchanges() {
    let (client, server) = conversation(&["/a?x=1", "/b"], None);
    let mut conn = Http2Connection::new();
    let mut out = Out::new();
    conn.feed(Stream::Requests, &client, 0, 0, &mut out);
    conn.feed(Stream::Responses, &server, 0, 1, &mut out);
    let starts: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Request(r) => Some((r.index, r.stream_id, r.offset)),
            _ => None,
        })
        .collect();
    // The first HEADERS frame follows the preface and a SETTINGS frame.
    assert_eq!(starts[0], (0, 1, PREFACE.len() + FRAME_HEADER));
    assert_eq!(starts[1].0, 1);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 2);
    let request = ex[0].request.as_ref().unwrap();
    assert_eq!(request.get(":path"), Some("/a?x=1"));
    assert!(request.get("traceparent").is_some());
    assert_eq!(ex[0].response.as_ref().unwrap().get(":status"), Some("200"));
    assert_eq!(ex[0].response_body_bytes, 5);
    assert_eq!((ex[0].request_start, ex[0].response_end), (0, 1));
    assert_eq!(ex[1].request.as_ref().unwrap().get(":path"), Some("/b"));
    assert!(errors(&out).is_empty());
}

/// Any split of the bytes gives the same exchanges, the dynamic table
/// carried across streams included.
#[test]
fn every_split_gives_the_same_exchanges() {
    let (client, server) = conversation(&["/a", "/b", "/c"], None);
    let mut whole = Http2Connection::new();
    let mut expected = Out::new();
    whole.feed(Stream::Requests, &client, 0, 0, &mut expected);
    whole.feed(Stream::Responses, &server, 0, 0, &mut expected);
    for size in [1, 2, 7, 9, 10, 33] {
        let mut conn = Http2Connection::new();
        let mut out = Out::new();
        for piece in client.chunks(size) {
            conn.feed(Stream::Requests, piece, 0, 0, &mut out);
        }
        for piece in server.chunks(size) {
            conn.feed(Stream::Responses, piece, 0, 0, &mut out);
        }
        let strip = |out: &Out| -> Vec<_> {
            exchanges(out)
                .iter()
                .map(|e| (e.stream_id, e.request.clone(), e.response.clone()))
                .collect()
        };
        assert_eq!(strip(&out), strip(&expected), "chunks of {size}");
    }
}

#[test]
fn grpc_status_comes_from_trailers() {
    let (client, server) = conversation(&["/shop.Cart/Add"], Some("application/grpc"));
    let mut conn = Http2Connection::new();
    let mut out = Out::new();
    conn.feed(Stream::Requests, &client, 0, 0, &mut out);
    conn.feed(Stream::Responses, &server, 0, 1, &mut out);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 1);
    assert_eq!(
        ex[0].trailers.as_ref().unwrap().get("grpc-status"),
        Some("0")
    );
}

/// The frames of a byte stream (after the preface, if it has one).
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut rest = bytes.strip_prefix(PREFACE).unwrap_or(bytes);
    let mut frames = Vec::new();
    while rest.len() >= FRAME_HEADER {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let (frame, tail) = rest.split_at(FRAME_HEADER + length);
        frames.push(frame);
        rest = tail;
    }
    frames
}

/// A connection joined after its first stream: its start is counted as
/// missed; the later streams come with the fields an empty table can
/// decode (the method and the new path, literal; not the authority, an
/// older entry of the client's table), marked partial, never a wrong one.
#[test]
fn a_connection_joined_midway_yields_what_is_known() {
    let (client, server) = conversation(&["/a", "/b", "/c"], None);
    // Client: SETTINGS, then a HEADERS frame per stream; server: SETTINGS,
    // then HEADERS and DATA per stream.
    let (client, server) = (frames(&client)[2..].concat(), frames(&server)[3..].concat());
    assert!(starts_midway(&client));
    assert!(
        !starts_midway(&server),
        "a response's block starts with :status"
    );
    let mut conn = Http2Connection::new();
    let mut out = Out::new();
    conn.feed(Stream::Requests, &client, 0, 0, &mut out);
    conn.feed(Stream::Responses, &server, 0, 1, &mut out);
    assert_eq!(errors(&out)[0], &ParseError::StartMissed);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 2);
    for (exchange, path) in ex.iter().zip(["/b", "/c"]) {
        let request = exchange.request.as_ref().unwrap();
        assert_eq!(request.get(":method"), Some("GET"));
        assert_eq!(request.get(":path"), Some(path));
        assert_eq!(request.get(":authority"), None);
        assert!(request.partial());
        assert_eq!(
            exchange.response.as_ref().unwrap().get(":status"),
            Some("200")
        );
        assert_eq!(exchange.response_body_bytes, 5);
    }
}

#[test]
fn only_frames_that_start_a_request_are_taken_midway() {
    let (client, _) = conversation(&["/a"], None);
    assert!(!starts_midway(&client), "the preface is not a frame");
    assert!(starts_midway(&frames(&client)[1..].concat()));
    for other in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"*1\r\n$4\r\nPING\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        &frame(DATA, 0, 1, b"hello"),
        &frame(HEADERS, END_HEADERS, 1, &[0x88]),
        &frame(HEADERS, END_HEADERS, 2, &[0x82]),
        // Trailers: `grpc-status: 0` from the dynamic table.
        &frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xbe]),
    ] {
        assert!(!starts_midway(other), "{other:?}");
    }
    // grpcio's later calls: their `:path` from the dynamic table first,
    // then `:method POST` and `:scheme http` from the static one.
    let grpc_call = [0xc4, 0xc3, 0x83, 0x86, 0xc2, 0xc1, 0xc0];
    assert!(starts_midway(&frame(HEADERS, END_HEADERS, 5, &grpc_call)));
    // Its first call: a literal `:path` name, not Huffman-coded.
    let mut first_call = vec![0x40, 0x05];
    first_call.extend_from_slice(b":path");
    first_call.extend_from_slice(&[0x0e]);
    first_call.extend_from_slice(b"/demo.Echo/Say");
    assert!(starts_midway(&frame(HEADERS, END_HEADERS, 1, &first_call)));
    // A response: `:status 200`, then a field from the dynamic table.
    assert!(!starts_midway(&frame(
        HEADERS,
        END_HEADERS,
        1,
        &[0x88, 0xc0]
    )));
}

/// Bytes lost inside a header block: the table is unknown from there, so
/// later streams come with no headers rather than wrong ones.
#[test]
fn lost_header_bytes_never_give_a_wrong_header() {
    let (client, server) = conversation(&["/a", "/b"], None);
    let second = client.len() - (client.len() - PREFACE.len() - 9) / 2;
    let mut conn = Http2Connection::new();
    let mut out = Out::new();
    // The first request whole; 4 bytes of the second HEADERS frame's block not captured.
    conn.feed(
        Stream::Requests,
        &client[..second + FRAME_HEADER],
        0,
        0,
        &mut out,
    );
    let block_len = client.len() - second - FRAME_HEADER;
    conn.feed(Stream::Requests, &[], 4, 1, &mut out);
    conn.feed(
        Stream::Requests,
        &client[second + FRAME_HEADER + 4.min(block_len)..],
        0,
        2,
        &mut out,
    );
    conn.feed(Stream::Responses, &server, 0, 3, &mut out);
    conn.close(&mut out);
    for exchange in exchanges(&out) {
        if let Some(request) = &exchange.request {
            assert_eq!(request.get(":path"), Some("/a"));
        }
    }
    assert!(!errors(&out).is_empty());
}

/// Arbitrary bytes either way never panic.
#[test]
fn garbage_never_panics() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let mut conn = Http2Connection::new();
        let mut out = Out::new();
        let mut bytes = PREFACE.to_vec();
        bytes.extend((0..512).map(|_| next() as u8));
        for piece in bytes.chunks(1 + (next() % 64) as usize) {
            let stream = if next() % 2 == 0 {
                Stream::Requests
            } else {
                Stream::Responses
            };
            conn.feed(stream, piece, next() % 3, 0u32, &mut out);
        }
        conn.close(&mut out);
    }
}
