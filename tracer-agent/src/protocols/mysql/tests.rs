use super::*;
use crate::protocols::sql::{Dialect, QuerySummary, sanitize};

/// Meta in these tests: the index of the chunk fed.
type Out = Vec<Output<u32>>;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

fn command(kind: u8, body: &[u8]) -> Vec<u8> {
    packet(0, &[&[kind][..], body].concat())
}

fn greeting(capabilities: u32) -> Vec<u8> {
    let caps = capabilities.to_le_bytes();
    let mut payload = vec![10];
    payload.extend(b"10.11.6-MariaDB\0");
    payload.extend([1, 0, 0, 0]);
    payload.extend([b'x'; 8]);
    payload.push(0);
    payload.extend(&caps[..2]);
    payload.push(33);
    payload.extend([2, 0]);
    payload.extend(&caps[2..]);
    payload.extend([21; 1]);
    payload.extend([0; 10]);
    payload.extend([b'y'; 13]);
    packet(0, &payload)
}

fn handshake_response(capabilities: u32, database: &str) -> Vec<u8> {
    let mut payload = capabilities.to_le_bytes().to_vec();
    payload.extend(16_777_216u32.to_le_bytes());
    payload.push(33);
    payload.extend([0; 23]);
    payload.extend(b"app\0");
    payload.push(0); // an empty auth response
    payload.extend(database.bytes().chain([0]));
    packet(1, &payload)
}

fn ok(seq: u8, status: u16) -> Vec<u8> {
    packet(
        seq,
        &[&[0, 0, 0][..], &status.to_le_bytes(), &[0, 0]].concat(),
    )
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    packet(seq, &[&[0xfe, 0, 0][..], &status.to_le_bytes()].concat())
}

fn err(seq: u8, code: u16, message: &str) -> Vec<u8> {
    packet(
        seq,
        &[
            &[0xff][..],
            &code.to_le_bytes(),
            b"#42S02",
            message.as_bytes(),
        ]
        .concat(),
    )
}

/// A result set of one column and `rows` rows, with EOF packets (old
/// style) or without (`CLIENT_DEPRECATE_EOF`).
fn result_set(rows: usize, deprecate_eof: bool) -> Vec<u8> {
    let mut out = packet(1, &[1]);
    out.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x01n\x00\x0c\x21\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00",
    ));
    let mut seq = 3;
    if !deprecate_eof {
        out.extend(eof(seq, 0));
        seq += 1;
    }
    for _ in 0..rows {
        out.extend(packet(seq, b"\x0242"));
        seq += 1;
    }
    if deprecate_eof {
        out.extend(packet(seq, &[0xfe, 0, 0, 0, 0, 0, 0]));
    } else {
        out.extend(eof(seq, 0));
    }
    out
}

fn exchanges(out: &Out) -> Vec<&Query<u32>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Exchange(e) => Some(e),
            _ => None,
        })
        .collect()
}

const CLIENT_CAPS: u32 = CLIENT_PROTOCOL_41 | CLIENT_CONNECT_WITH_DB | 0x8000;

/// A session from its greeting: the database of the handshake, queries
/// answered by OK, a result set and an error, with and without EOF
/// packets, in any split of either stream; each ends at its answer's end.
#[test]
fn queries_in_any_split() {
    for deprecate_eof in [false, true] {
        let caps = CLIENT_CAPS
            | if deprecate_eof {
                CLIENT_DEPRECATE_EOF
            } else {
                0
            };
        let mut client = Vec::new();
        client.extend(command(COM_QUERY, b"INSERT INTO t VALUES (1)"));
        client.extend(command(COM_QUERY, b"SELECT n FROM t WHERE n = 42"));
        client.extend(command(COM_QUERY, b"SELECT * FROM missing"));
        let mut server = ok(1, 0);
        server.extend(result_set(3, deprecate_eof));
        server.extend(err(1, 1146, "Table 'shop.missing' doesn't exist"));
        for split in [1, 3, 7, 4096] {
            let mut conn = MysqlConnection::default();
            let mut out = Out::new();
            conn.feed(Stream::Responses, &greeting(u32::MAX), 0, 0, &mut out);
            conn.feed(
                Stream::Requests,
                &handshake_response(caps, "shop"),
                0,
                0,
                &mut out,
            );
            conn.feed(Stream::Responses, &ok(2, 0), 0, 0, &mut out);
            // One command, then its answer, as the protocol goes.
            let commands = [0, 29, 62, client.len()];
            let answers = [0, 11, 11 + result_set(3, deprecate_eof).len(), server.len()];
            for i in 0..3 {
                let chunk = (i * 2 + 1) as u32;
                for piece in client[commands[i]..commands[i + 1]].chunks(split) {
                    conn.feed(Stream::Requests, piece, 0, chunk, &mut out);
                }
                for piece in server[answers[i]..answers[i + 1]].chunks(split) {
                    conn.feed(Stream::Responses, piece, 0, chunk + 1, &mut out);
                }
            }
            let exchanges = exchanges(&out);
            assert_eq!(
                exchanges.len(),
                3,
                "split {split}, eof {deprecate_eof}: {out:?}"
            );
            for (i, exchange) in exchanges.iter().enumerate() {
                let chunk = (i * 2 + 1) as u32;
                assert_eq!(
                    (exchange.request_start, exchange.response_end),
                    (chunk, chunk + 1)
                );
                assert_eq!(exchange.database.as_deref(), Some("shop"));
            }
            assert_eq!(exchanges[1].text, "SELECT n FROM t WHERE n = 42");
            assert_eq!(
                exchanges[2].outcome,
                Some(Outcome::Error {
                    code: "1146".into(),
                    message: "Table 'shop.missing' doesn't exist".into()
                })
            );
        }
    }
}

/// Prepared statements: the prepare's answer names the id an execute uses.
#[test]
fn prepared_statements() {
    let mut conn = MysqlConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(COM_STMT_PREPARE, b"SELECT n FROM t WHERE n = ?"),
        0,
        1,
        &mut out,
    );
    let mut prepared = packet(1, &[0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    prepared.extend(packet(2, b"\x03def"));
    prepared.extend(packet(3, b"\x03def"));
    conn.feed(Stream::Responses, &prepared, 0, 2, &mut out);
    assert!(exchanges(&out).is_empty(), "a prepare is no query run");
    let execute = [&7u32.to_le_bytes()[..], &[0, 1, 0, 0, 0]].concat();
    conn.feed(
        Stream::Requests,
        &command(COM_STMT_EXECUTE, &execute),
        0,
        3,
        &mut out,
    );
    conn.feed(Stream::Responses, &result_set(1, false), 0, 4, &mut out);
    conn.feed(
        Stream::Requests,
        &command(COM_STMT_CLOSE, &7u32.to_le_bytes()),
        0,
        5,
        &mut out,
    );
    conn.feed(
        Stream::Requests,
        &command(COM_STMT_EXECUTE, &execute),
        0,
        6,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        &err(1, 1243, "Unknown prepared statement"),
        0,
        7,
        &mut out,
    );
    let exchanges = exchanges(&out);
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].text, "SELECT n FROM t WHERE n = ?");
    assert_eq!(exchanges[0].response_end, 4);
    assert_eq!(exchanges[1].text, "", "closed: its text is forgotten");
}

/// A pool's connection older than the agent (no handshake seen): an empty
/// result's end looks like the columns' EOF; the next command ends it, at
/// the last answer bytes seen.
#[test]
fn a_session_joined_midway() {
    let mut conn = MysqlConnection::default();
    let mut out = Out::new();
    let query = command(COM_QUERY, b"SELECT n FROM t WHERE 1 = 0");
    assert!(looks_like_client_start(&query));
    conn.feed(Stream::Requests, &query, 0, 1, &mut out);
    conn.feed(Stream::Responses, &result_set(0, true), 0, 2, &mut out);
    conn.feed(Stream::Requests, &command(COM_PING, b""), 0, 3, &mut out);
    conn.feed(Stream::Responses, &ok(1, 0), 0, 4, &mut out);
    let exchanges = exchanges(&out);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(
        (exchanges[0].request_start, exchanges[0].response_end),
        (1, 2)
    );
    assert_eq!(exchanges[0].database, None);
}

/// Several result sets (a procedure): the answer ends after the last.
#[test]
fn multiple_result_sets() {
    let mut conn = MysqlConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(COM_QUERY, b"CALL p()"),
        0,
        1,
        &mut out,
    );
    let mut first = result_set(1, false);
    let last = first.len() - 9;
    first.truncate(last);
    first.extend(eof(5, SERVER_MORE_RESULTS_EXISTS));
    conn.feed(Stream::Responses, &first, 0, 2, &mut out);
    conn.feed(Stream::Responses, &ok(6, 0), 0, 3, &mut out);
    assert_eq!(exchanges(&out)[0].response_end, 3);
}

/// Rows longer than the capture: passed over inside their packets.
#[test]
fn long_rows_are_skipped_not_lost() {
    let mut conn = MysqlConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(COM_QUERY, b"SELECT blob FROM files"),
        0,
        1,
        &mut out,
    );
    let mut answer = packet(1, &[1]);
    answer.extend(packet(2, b"\x03def"));
    answer.extend(eof(3, 0));
    let row = packet(4, &[b'x'; 100_000]);
    let kept = answer.len() + 100;
    answer.extend(&row);
    let uncaptured = answer.len() - kept;
    answer.truncate(kept);
    conn.feed(Stream::Responses, &answer, uncaptured as u64, 2, &mut out);
    conn.feed(Stream::Responses, &eof(5, 0), 0, 3, &mut out);
    assert_eq!(exchanges(&out)[0].response_end, 3);
}

/// An SSL request: the rest of the socket is ciphertext.
#[test]
fn tls_stops_the_socket_parser() {
    let mut conn = MysqlConnection::default();
    let mut out = Out::new();
    let mut request = (CLIENT_CAPS | CLIENT_SSL).to_le_bytes().to_vec();
    request.extend(16_777_216u32.to_le_bytes());
    request.push(33);
    request.extend([0; 23]);
    let request = packet(1, &request);
    assert!(looks_like_client_start(&request));
    conn.feed(Stream::Responses, &greeting(u32::MAX), 0, 0, &mut out);
    conn.feed(Stream::Requests, &request, 0, 1, &mut out);
    conn.feed(
        Stream::Requests,
        b"\x16\x03\x01\x00\x05\x00\x00\x00\x00\x00",
        0,
        2,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b"\x16\x03\x03\x00\x05\x00\x00\x00\x00\x00",
        0,
        3,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn close_reports_a_query_without_answer() {
    let mut conn = MysqlConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(COM_QUERY, b"SELECT SLEEP(10)"),
        0,
        1,
        &mut out,
    );
    conn.close(&mut out);
    assert_eq!(exchanges(&out)[0].outcome, None);
}

#[test]
fn detection() {
    let mut mariadb = handshake_response(CLIENT_CAPS, "db");
    assert!(looks_like_client_start(&mariadb));
    // MariaDB's extended capabilities, at the filler's end.
    mariadb[4 + 28] = 0x1d;
    assert!(looks_like_client_start(&mariadb));
    assert!(looks_like_client_start(&command(COM_PING, b"")));
    assert!(!looks_like_client_start(b"GET / HTTP/1.1\r\n"));
    assert!(!looks_like_client_start(b"*1\r\n$4\r\nPING\r\n"));
    assert!(!looks_like_client_start(&command(COM_QUERY, b"\x01\x02")));
}

#[test]
fn sanitized_mysql_texts_keep_no_literal() {
    for (text, expected) in [
        (
            "SELECT * FROM `orders` WHERE a = \"x\\\"y\" AND b = 'it''s' # 42",
            "SELECT * FROM `orders` WHERE a = ? AND b = ?",
        ),
        (
            "INSERT INTO t VALUES (?, 1.5)",
            "INSERT INTO t VALUES (?, ?)",
        ),
    ] {
        assert_eq!(sanitize(text, Dialect::Mysql), expected, "{text}");
    }
    let summary = QuerySummary::of(&sanitize("select * from `orders`", Dialect::Mysql));
    assert_eq!(summary.span_name().as_deref(), Some("SELECT `orders`"));
}
