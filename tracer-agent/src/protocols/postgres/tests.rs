use super::*;
use crate::protocols::sql::{Dialect, QuerySummary};

fn sanitize(text: &str) -> String {
    crate::protocols::sql::sanitize(text, Dialect::Postgres)
}

/// Meta in these tests: the index of the chunk fed.
type Out = Vec<Output<u32>>;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup(database: &str) -> Vec<u8> {
    let mut body = PROTOCOL_3.to_be_bytes().to_vec();
    for (key, value) in [("user", "app"), ("database", database)] {
        body.extend(key.bytes().chain([0]).chain(value.bytes()).chain([0]));
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn cstr(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
}

fn query(text: &str) -> Vec<u8> {
    message(b'Q', &cstr(&[text]))
}

/// The server's answer to a simple query: a row, its tag, ready.
fn answer(tag: &str) -> Vec<u8> {
    let mut out = message(b'T', &[0, 0]);
    out.extend(message(b'D', &[0, 1, 0, 0, 0, 1, b'7']));
    out.extend(message(b'C', &cstr(&[tag])));
    out.extend(message(b'Z', b"I"));
    out
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "ERROR"), (b'C', code), (b'M', text)] {
        body.push(field);
        body.extend(value.bytes().chain([0]));
    }
    body.push(0);
    message(b'E', &body)
}

fn exchanges(out: &Out) -> Vec<&Query<u32>> {
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

/// A session from its start-up: the database named there, a simple query
/// and an error, in any split of either stream.
#[test]
fn simple_queries_in_any_split() {
    let mut client = startup("shop");
    client.extend(query("SELECT * FROM orders WHERE id = 42"));
    client.extend(query("SELECT nope"));
    let mut server = message(b'R', &[0, 0, 0, 0]);
    server.extend(message(b'S', &cstr(&["server_version", "15"])));
    server.extend(message(b'Z', b"I"));
    let setup = server.len();
    server.extend(answer("SELECT 1"));
    server.extend(error("42703", "column \"nope\" does not exist"));
    server.extend(message(b'Z', b"I"));
    for split in [1, 2, 5, 9, 64, 4096] {
        let mut conn = PostgresConnection::default();
        let mut out = Out::new();
        // The start-up message, then the set-up answer, then the queries.
        let first = startup("shop").len();
        conn.feed(Stream::Requests, &client[..first], 0, 0, &mut out);
        for chunk in server[..setup].chunks(split) {
            conn.feed(Stream::Responses, chunk, 0, 1, &mut out);
        }
        for chunk in client[first..].chunks(split) {
            conn.feed(Stream::Requests, chunk, 0, 2, &mut out);
        }
        for chunk in server[setup..].chunks(split) {
            conn.feed(Stream::Responses, chunk, 0, 3, &mut out);
        }
        assert!(errors(&out).is_empty(), "split {split}: {out:?}");
        let exchanges = exchanges(&out);
        assert_eq!(exchanges.len(), 2, "split {split}");
        assert_eq!(exchanges[0].text, "SELECT * FROM orders WHERE id = 42");
        assert_eq!(exchanges[0].outcome, Some(Outcome::Ok));
        assert_eq!(exchanges[0].database.as_deref(), Some("shop"));
        assert_eq!(
            exchanges[1].outcome,
            Some(Outcome::Error {
                code: "42703".into(),
                message: "column \"nope\" does not exist".into()
            })
        );
    }
}

/// The extended protocol, pipelined: two batches (Parse/Bind/Execute/Sync)
/// written at once; a named statement used again without its Parse; an
/// error that makes the server skip the rest of its batch.
#[test]
fn extended_queries_pipelined() {
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    let mut client = message(
        b'P',
        &[
            &cstr(&["s1", "SELECT name FROM users WHERE id = $1"])[..],
            &[0, 0],
        ]
        .concat(),
    );
    client.extend(message(
        b'B',
        &[&cstr(&["", "s1"])[..], &[0, 0, 0, 0, 0, 0]].concat(),
    ));
    client.extend(message(b'D', b"P\0"));
    client.extend(message(b'E', &[0, 0, 0, 0, 0]));
    client.extend(message(b'S', b""));
    client.extend(message(
        b'B',
        &[&cstr(&["", "s1"])[..], &[0, 0, 0, 0, 0, 0]].concat(),
    ));
    client.extend(message(b'E', &[0, 0, 0, 0, 0]));
    client.extend(message(b'S', b""));
    conn.feed(Stream::Requests, &client, 0, 1, &mut out);
    let starts: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Request(r) => Some(r.offset),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts[0], 0,
        "an Execute's span starts at its batch's Parse"
    );
    let mut server = message(b'1', b"");
    server.extend(message(b'2', b""));
    server.extend(message(b'T', &[0, 0]));
    server.extend(message(b'D', &[0, 0]));
    server.extend(message(b'C', &cstr(&["SELECT 1"])));
    server.extend(message(b'Z', b"I"));
    conn.feed(Stream::Responses, &server, 0, 2, &mut out);
    conn.feed(Stream::Responses, &message(b'2', b""), 0, 3, &mut out);
    conn.feed(
        Stream::Responses,
        &message(b'C', &cstr(&["SELECT 1"])),
        0,
        4,
        &mut out,
    );
    conn.feed(Stream::Responses, &message(b'Z', b"I"), 0, 5, &mut out);
    let exchanges = exchanges(&out);
    assert_eq!(exchanges.len(), 2);
    assert!(
        exchanges
            .iter()
            .all(|e| e.text == "SELECT name FROM users WHERE id = $1")
    );
    assert_eq!(exchanges[1].response_end, 4);

    // A failed Parse: the Execute after it is the failure; the next
    // Execute of the batch is skipped by the server and not reported.
    let mut out = Out::new();
    let mut client = message(b'P', &[&cstr(&["", "SELEC oops"])[..], &[0, 0]].concat());
    client.extend(message(
        b'B',
        &[&cstr(&["", ""])[..], &[0, 0, 0, 0, 0, 0]].concat(),
    ));
    client.extend(message(b'E', &[0, 0, 0, 0, 0]));
    client.extend(message(b'E', &[0, 0, 0, 0, 0]));
    client.extend(message(b'S', b""));
    conn.feed(Stream::Requests, &client, 0, 6, &mut out);
    let mut server = error("42601", "syntax error");
    server.extend(message(b'Z', b"I"));
    conn.feed(Stream::Responses, &server, 0, 7, &mut out);
    let exchanges = super::tests::exchanges(&out);
    assert_eq!(exchanges.len(), 1, "{out:?}");
    assert!(matches!(&exchanges[0].outcome, Some(Outcome::Error { code, .. }) if code == "42601"));
    assert_eq!(conn.pending_requests(), 0);
}

/// A pool's connection older than the agent: its first bytes are a query.
#[test]
fn a_session_joined_midway() {
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    conn.feed(Stream::Responses, &message(b'Z', b"I"), 0, 0, &mut out);
    conn.feed(Stream::Requests, &query("BEGIN"), 0, 1, &mut out);
    conn.feed(
        Stream::Responses,
        &[message(b'C', b"BEGIN\0"), message(b'Z', b"T")].concat(),
        0,
        2,
        &mut out,
    );
    assert_eq!(exchanges(&out).len(), 1);
    assert_eq!(exchanges(&out)[0].database, None);
}

/// COPY data is framed and passed over, never kept; the COPY is one query.
#[test]
fn copy_is_counted_not_parsed() {
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &query("COPY t FROM STDIN"),
        0,
        1,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        &message(b'G', &[0, 0, 0]),
        0,
        2,
        &mut out,
    );
    let mut data = message(b'd', &[b'x'; 100]);
    let uncaptured = 60;
    data.truncate(data.len() - uncaptured);
    conn.feed(Stream::Requests, &data, uncaptured as u64, 3, &mut out);
    conn.feed(Stream::Requests, &message(b'c', b""), 0, 4, &mut out);
    conn.feed(
        Stream::Responses,
        &[message(b'C', b"COPY 1\0"), message(b'Z', b"I")].concat(),
        0,
        5,
        &mut out,
    );
    assert!(errors(&out).is_empty(), "{out:?}");
    assert_eq!(exchanges(&out).len(), 1);
}

/// SSLRequest accepted: the socket's bytes are ciphertext from then on.
#[test]
fn tls_accepted_stops_the_socket_parser() {
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    let mut request = 8u32.to_be_bytes().to_vec();
    request.extend(SSL_REQUEST.to_be_bytes());
    assert_eq!(looks_like_client_start(&request), Some(true));
    conn.feed(Stream::Requests, &request, 0, 1, &mut out);
    conn.feed(Stream::Responses, b"S", 0, 2, &mut out);
    conn.feed(
        Stream::Requests,
        b"\x16\x03\x01\x02\x00garbage",
        0,
        3,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b"\x16\x03\x03\x00\x7agarbage",
        0,
        4,
        &mut out,
    );
    assert!(out.iter().all(|o| matches!(o, Output::Request(_))) && errors(&out).is_empty());
    assert!(
        !conn.is_idle(),
        "a parser that knows it reads ciphertext is kept"
    );
    // Refused: the start-up message follows in clear.
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    conn.feed(Stream::Requests, &request, 0, 1, &mut out);
    conn.feed(Stream::Responses, b"N", 0, 2, &mut out);
    conn.feed(Stream::Requests, &startup("db"), 0, 3, &mut out);
    conn.feed(Stream::Responses, &message(b'Z', b"I"), 0, 4, &mut out);
    conn.feed(Stream::Requests, &query("SELECT 1"), 0, 5, &mut out);
    conn.feed(Stream::Responses, &answer("SELECT 1"), 0, 6, &mut out);
    assert_eq!(exchanges(&out)[0].database.as_deref(), Some("db"));
}

/// Rows longer than the capture: passed over inside their messages.
#[test]
fn long_rows_are_skipped_not_lost() {
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &query("SELECT blob FROM files"),
        0,
        1,
        &mut out,
    );
    let mut rows = message(b'D', &[b'x'; 100_000]);
    let uncaptured = rows.len() - 4096;
    rows.truncate(4096);
    conn.feed(Stream::Responses, &rows, uncaptured as u64, 2, &mut out);
    conn.feed(
        Stream::Responses,
        &[message(b'C', b"SELECT 1\0"), message(b'Z', b"I")].concat(),
        0,
        3,
        &mut out,
    );
    assert!(errors(&out).is_empty());
    assert_eq!(exchanges(&out)[0].response_end, 3);
}

#[test]
fn close_reports_queries_without_answer() {
    let mut conn = PostgresConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &query("SELECT pg_sleep(10)"),
        0,
        1,
        &mut out,
    );
    conn.close(&mut out);
    assert_eq!(exchanges(&out)[0].outcome, None);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [
        &b"Q\x00\x00\x00\x01"[..],
        b"\xff\xff\xff\xff\xff",
        b"Q\x00\x00",
    ] {
        let mut conn = PostgresConnection::default();
        let mut out = Out::new();
        conn.feed(Stream::Requests, &query("SELECT 1"), 0, 1, &mut out);
        conn.feed(Stream::Requests, bytes, 9, 2, &mut out);
        conn.feed(Stream::Responses, bytes, 9, 3, &mut out);
        conn.close(&mut out);
        assert!(!errors(&out).is_empty(), "{bytes:?}");
    }
}

#[test]
fn detection() {
    assert_eq!(looks_like_client_start(&startup("db")), Some(true));
    assert_eq!(looks_like_client_start(&query("SELECT 1")), Some(false));
    let parse = message(b'P', &[&cstr(&["", "select 1"])[..], &[0, 0]].concat());
    assert_eq!(looks_like_client_start(&parse), Some(false));
    assert_eq!(looks_like_client_start(b"POST / HTTP/1.1\r\n"), None);
    assert_eq!(looks_like_client_start(b"*1\r\n$4\r\nPING\r\n"), None);
    assert_eq!(
        looks_like_client_start(b"Q\x00\x00\x00\x09\x01\x02\x03\x04"),
        None
    );
}

#[test]
fn sanitized_texts_keep_no_literal() {
    for (text, expected) in [
        (
            "SELECT * FROM t WHERE a = 'x''y' AND b = 42",
            "SELECT * FROM t WHERE a = ? AND b = ?",
        ),
        (
            "select 1.5e3, .5, -7, t1.c2 from t1",
            "select ?, ?, -?, t1.c2 from t1",
        ),
        (
            "INSERT INTO \"Users\" (name) VALUES ($1), (E'a\\'b')",
            "INSERT INTO \"Users\" (name) VALUES ($1), (?)",
        ),
        ("SELECT $$secret$$, $tag$x$tag$", "SELECT ?, ?"),
        (
            "SELECT  a -- the secret\n  FROM t /* 42 */",
            "SELECT a FROM t",
        ),
        ("SELECT 'unterminated secret", "SELECT ?"),
        ("SELECT x FROM caf\u{e9}", "SELECT x FROM caf?"),
    ] {
        assert_eq!(sanitize(text), expected, "{text}");
    }
}

#[test]
fn summaries_name_operation_and_table() {
    let name = |text: &str| QuerySummary::of(&sanitize(text)).span_name();
    assert_eq!(
        name("select * from orders where id = 1").as_deref(),
        Some("SELECT orders")
    );
    assert_eq!(
        name("INSERT INTO shop.orders VALUES (1)").as_deref(),
        Some("INSERT shop.orders")
    );
    assert_eq!(
        name("UPDATE users SET a = 1").as_deref(),
        Some("UPDATE users")
    );
    assert_eq!(
        name("DELETE FROM \"Carts\"").as_deref(),
        Some("DELETE \"Carts\"")
    );
    assert_eq!(name("BEGIN").as_deref(), Some("BEGIN"));
    assert_eq!(name("SELECT 1").as_deref(), Some("SELECT"));
    assert_eq!(
        name("SELECT * FROM (SELECT 1) s").as_deref(),
        Some("SELECT")
    );
    assert_eq!(
        name("WITH x AS (SELECT 1) SELECT * FROM x").as_deref(),
        Some("SELECT x")
    );
    assert_eq!(name("").as_deref(), None);
}
