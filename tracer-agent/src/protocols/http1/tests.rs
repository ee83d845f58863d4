use super::*;

/// Meta in these tests: the index of the chunk fed.
type Out = Vec<Output<u32>>;

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

/// Feeds chunks in order; each chunk is (stream, bytes) fully captured.
fn run(chunks: &[(Stream, &[u8])]) -> Out {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    for (i, (stream, bytes)) in chunks.iter().enumerate() {
        conn.feed(*stream, bytes, 0, i as u32, &mut out);
    }
    out
}

const GET: &[u8] =
    b"GET /hello?name=x HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: t\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

#[test]
fn simple_exchange() {
    let out = run(&[(Stream::Requests, GET), (Stream::Responses, OK)]);
    assert_eq!(errors(&out), Vec::<&ParseError>::new());
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].request.method(), "GET");
    assert_eq!(ex[0].request.target(), "/hello?name=x");
    assert_eq!(ex[0].request.headers.get("HOST"), Some("example.test:8080"));
    assert_eq!(ex[0].response.as_ref().unwrap().status, 200);
    assert_eq!(ex[0].response_body_bytes, 5);
    assert_eq!((ex[0].request_start, ex[0].response_end), (0, 1));
}

/// Both messages split in two at every byte boundary give the same exchange.
#[test]
fn fragmentation_at_every_boundary() {
    let request = b"POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    let response = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for split_req in 0..=request.len() {
        for split_resp in 0..=response.len() {
            let (r1, r2) = request.split_at(split_req);
            let (s1, s2) = response.split_at(split_resp);
            let out = run(&[
                (Stream::Requests, r1),
                (Stream::Requests, r2),
                (Stream::Responses, s1),
                (Stream::Responses, s2),
            ]);
            assert!(
                errors(&out).is_empty(),
                "split {split_req}/{split_resp}: {out:?}"
            );
            let ex = exchanges(&out);
            assert_eq!(ex.len(), 1, "split {split_req}/{split_resp}");
            assert_eq!(ex[0].request_body_bytes, 11);
            assert_eq!(ex[0].response_body_bytes, 11);
            assert_eq!(ex[0].response.as_ref().unwrap().status, 201);
            let first_request_chunk = if split_req == 0 { 1 } else { 0 };
            assert_eq!(ex[0].request_start, first_request_chunk);
            let last_response_chunk = if split_resp == response.len() { 2 } else { 3 };
            assert_eq!(
                ex[0].response_end, last_response_chunk,
                "split {split_req}/{split_resp}"
            );
        }
    }
}

/// One byte per chunk: the exchange starts at the first chunk, ends at the last.
#[test]
fn one_byte_per_chunk() {
    let mut chunks: Vec<(Stream, &[u8])> = Vec::new();
    for i in 0..GET.len() {
        chunks.push((Stream::Requests, &GET[i..i + 1]));
    }
    for i in 0..OK.len() {
        chunks.push((Stream::Responses, &OK[i..i + 1]));
    }
    let out = run(&chunks);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].request_start, 0);
    assert_eq!(ex[0].response_end, (chunks.len() - 1) as u32);
}

#[test]
fn pipelined_requests_pair_in_order() {
    let requests = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nHEAD /c HTTP/1.1\r\nHost: h\r\n\r\n";
    let responses = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nbbHTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let out = run(&[(Stream::Requests, requests), (Stream::Responses, responses)]);
    assert!(errors(&out).is_empty(), "{out:?}");
    let ex = exchanges(&out);
    let pairs: Vec<_> = ex
        .iter()
        .map(|e| (e.request.target(), e.response.as_ref().unwrap().status))
        .collect();
    assert_eq!(pairs, [("/a", 200), ("/b", 404), ("/c", 200)]);
    // HEAD: Content-Length describes the GET body; none follows.
    assert_eq!(ex[2].response_body_bytes, 0);
}

/// Each request is reported when its head is parsed, with its index and its
/// offset in the chunk, before its response; its exchange has the same index.
#[test]
fn request_starts_report_index_and_offset() {
    let a = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    let b = b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy";
    let mut chunk = a.to_vec();
    chunk.extend_from_slice(b);
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, &chunk, 0, 0u32, &mut out);
    let starts: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Request(r) => Some((r.index, r.request.target(), r.start, r.offset)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(0, "/a", 0, 0), (1, "/b", 0, a.len())]);
    conn.feed(Stream::Responses, OK, 0, 1, &mut out);
    conn.feed(Stream::Responses, OK, 0, 2, &mut out);
    let indexes: Vec<_> = exchanges(&out).iter().map(|e| e.index).collect();
    assert_eq!(indexes, [0, 1]);
}

#[test]
fn keep_alive_many_requests() {
    let mut chunks: Vec<(Stream, &[u8])> = Vec::new();
    for _ in 0..100 {
        chunks.push((Stream::Requests, GET));
        chunks.push((Stream::Responses, OK));
    }
    let out = run(&chunks);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 100);
    for (i, e) in ex.iter().enumerate() {
        assert_eq!(e.request_start, 2 * i as u32);
        assert_eq!(e.response_end, 2 * i as u32 + 1);
    }
}

#[test]
fn interim_and_bodyless_responses() {
    let out = run(&[
        (
            Stream::Requests,
            b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        ),
        (Stream::Responses, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (Stream::Requests, b"abc"),
        (Stream::Responses, b"HTTP/1.1 204 No Content\r\n\r\n"),
        (Stream::Requests, b"GET /y HTTP/1.1\r\n\r\n"),
        (
            Stream::Responses,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        ),
    ]);
    assert!(errors(&out).is_empty(), "{out:?}");
    let ex = exchanges(&out);
    let statuses: Vec<_> = ex
        .iter()
        .map(|e| e.response.as_ref().unwrap().status)
        .collect();
    assert_eq!(statuses, [204, 304]);
    assert_eq!(ex[0].request_body_bytes, 3);
}

#[test]
fn upgrade_stops_parsing() {
    let out = run(&[
        (
            Stream::Requests,
            b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            Stream::Responses,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        ),
        (Stream::Requests, b"\x81\x85garbage frames"),
    ]);
    assert!(errors(&out).is_empty(), "{out:?}");
    assert_eq!(exchanges(&out).len(), 1);
}

#[test]
fn body_delimited_by_close() {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, b"GET / HTTP/1.0\r\n\r\n", 0, 0, &mut out);
    conn.feed(
        Stream::Responses,
        b"HTTP/1.0 200 OK\r\n\r\nsome",
        0,
        1,
        &mut out,
    );
    conn.feed(Stream::Responses, b" body", 0, 2, &mut out);
    assert!(exchanges(&out).is_empty());
    conn.close(&mut out);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].response_body_bytes, 9);
    assert_eq!(ex[0].response_end, 2);
    assert!(!ex[0].response_end_approximate);
}

/// An unanswered request after an answered one ends at the latest chunk,
/// not at the earlier response.
#[test]
fn unanswered_request_ends_after_it_started() {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, GET, 0, 0, &mut out);
    conn.feed(Stream::Responses, OK, 0, 1, &mut out);
    conn.feed(Stream::Requests, GET, 0, 2, &mut out);
    conn.close(&mut out);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 2);
    assert!(ex[1].response.is_none());
    assert_eq!((ex[1].request_start, ex[1].response_end), (2, 2));
}

#[test]
fn close_reports_requests_without_response() {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, GET, 0, 0, &mut out);
    conn.close(&mut out);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 1);
    assert!(ex[0].response.is_none());
}

/// A body longer than the capture: the rest is skipped by count and the
/// next exchange on the connection parses.
#[test]
fn truncated_capture_keeps_sync() {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, GET, 0, 0, &mut out);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    let mut first = head.to_vec();
    first.extend(std::iter::repeat_n(b'x', 1024 - head.len()));
    conn.feed(Stream::Responses, &first, 65536 - 1024, 1, &mut out);
    conn.feed(
        Stream::Responses,
        &[b'x'; 1024],
        100000 + head.len() as u64 - 65536 - 1024,
        2,
        &mut out,
    );
    conn.feed(Stream::Requests, GET, 0, 3, &mut out);
    conn.feed(Stream::Responses, OK, 0, 4, &mut out);
    assert!(errors(&out).is_empty(), "{out:?}");
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].response_body_bytes, 100000);
    assert_eq!(ex[0].response_end, 2);
    assert_eq!(ex[1].response_end, 4);
}

/// A chunked body whose framing falls in uncaptured bytes: the message ends,
/// approximately, at the last chunk before the next response.
#[test]
fn lost_chunk_framing_resyncs_at_next_message() {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    conn.feed(Stream::Requests, GET, 0, 0, &mut out);
    conn.feed(
        Stream::Responses,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123",
        5000,
        1,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b"more bytes inside a chunk",
        3000,
        2,
        &mut out,
    );
    conn.feed(Stream::Requests, GET, 0, 3, &mut out);
    conn.feed(Stream::Responses, OK, 0, 4, &mut out);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 2, "{out:?}");
    assert_eq!(ex[0].response_end, 2);
    assert!(ex[0].response_end_approximate);
    assert_eq!(ex[1].response_end, 4);
    assert!(!ex[1].response_end_approximate);
    assert_eq!(errors(&out), [&ParseError::SyncLost(Stream::Responses)]);
}

#[test]
fn lost_head_resyncs() {
    let mut conn = Http1Connection::new();
    let mut out = Vec::new();
    // Headers cut by the capture limit: this request is lost.
    conn.feed(
        Stream::Requests,
        b"GET /big HTTP/1.1\r\nCookie: aaaa",
        9000,
        0,
        &mut out,
    );
    conn.feed(Stream::Responses, OK, 0, 1, &mut out);
    conn.feed(Stream::Requests, GET, 0, 2, &mut out);
    conn.feed(Stream::Responses, OK, 0, 3, &mut out);
    let ex = exchanges(&out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].request.target(), "/hello?name=x");
    assert_eq!(
        errors(&out),
        [
            &ParseError::HeadNotCaptured(Stream::Requests),
            &ParseError::UnexpectedResponse
        ]
    );
}

#[test]
fn invalid_heads_are_errors() {
    let out = run(&[(Stream::Requests, b"NOT HTTP AT ALL\r\n\r\n")]);
    assert!(matches!(errors(&out)[..], [ParseError::InvalidHead(..)]));
    let out = run(&[(
        Stream::Requests,
        b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
    )]);
    assert!(matches!(errors(&out)[..], [ParseError::InvalidFraming(..)]));
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
    let out = run(&[(Stream::Requests, &huge)]);
    assert_eq!(errors(&out), [&ParseError::HeadTooLarge(Stream::Requests)]);
}

#[test]
fn chunk_sizes() {
    assert_eq!(parse_chunk_size(b"1a\r"), Some(26));
    assert_eq!(parse_chunk_size(b"0"), Some(0));
    assert_eq!(parse_chunk_size(b"A;ext=\"v\"\r"), Some(10));
    assert_eq!(parse_chunk_size(b"zz\r"), None);
    assert_eq!(parse_chunk_size(b"\r"), None);
    assert_eq!(parse_chunk_size(b"ffffffffffffffffff\r"), None);
}

#[test]
fn request_start_detection() {
    assert!(looks_like_request_start(b"GET / HTTP/1.1"));
    assert!(looks_like_request_start(b"OPTIONS * HTTP/1.1"));
    assert!(!looks_like_request_start(b"HTTP/1.1 200 OK"));
    assert!(!looks_like_request_start(b"GE"));
    assert!(!looks_like_request_start(b"\x16\x03\x01"));
}

/// Pseudo-random bytes in random splits, on both streams, with gaps: never a
/// panic, and every exchange ends no earlier than it started.
#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] =
        b"GET /HTTP1.0\r\n: chunkedTransfer-EncodingContent-Length0123456789abcdef;\x00\xff";
    for _ in 0..2000 {
        let mut conn = Http1Connection::new();
        let mut out = Vec::new();
        for chunk in 0..(next() % 12) as u32 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let stream = if next() % 2 == 0 {
                Stream::Requests
            } else {
                Stream::Responses
            };
            let gap = if next() % 4 == 0 { next() % 100 } else { 0 };
            conn.feed(stream, &bytes, gap, chunk, &mut out);
        }
        conn.close(&mut out);
        for exchange in exchanges(&out) {
            assert!(
                exchange.request_start <= exchange.response_end,
                "{exchange:?}"
            );
        }
    }
}

#[test]
fn a_head_keeps_the_first_value_of_each_kept_header_only() {
    let headers: [(&str, &[u8]); 5] = [
        ("Host", b" shop.test "),
        ("Cookie", b"secret"),
        ("HOST", b"other.test"),
        ("User-Agent", b"curl/\xff"),
        ("Content-Length", b""),
    ];
    let head = RequestHead::new("POST", "/cart?id=1", 1, headers.into_iter());
    assert_eq!((head.method(), head.target()), ("POST", "/cart?id=1"));
    assert_eq!(head.headers.get("host"), Some("shop.test"));
    assert_eq!(head.headers.get("user-agent"), Some("curl/\u{fffd}"));
    assert_eq!(head.headers.get("content-length"), Some(""));
    assert_eq!(head.headers.get("cookie"), None);
    assert_eq!(head.headers.get("traceparent"), None);
}
