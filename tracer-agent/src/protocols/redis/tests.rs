use super::*;

/// Meta in these tests: the index of the chunk fed.
type Out = Vec<Output<u32>>;

/// A command as a client library writes it: an array of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n", arg.len()).bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
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

fn summary(exchange: &Exchange<u32>) -> (String, String) {
    let summary = CommandSummary::of(&exchange.command);
    let text = summary.query_text(&exchange.command);
    (summary.name, text)
}

#[test]
fn one_command_one_exchange() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(&[b"GET", b"user:42"]),
        0,
        1,
        &mut out,
    );
    assert!(matches!(&out[0], Output::Request(r) if r.index == 0 && r.offset == 0));
    conn.feed(Stream::Responses, b"$5\r\nhello\r\n", 0, 2, &mut out);
    let exchanges = exchanges(&out);
    assert_eq!(exchanges.len(), 1);
    let exchange = exchanges[0];
    assert_eq!((exchange.request_start, exchange.response_end), (1, 2));
    assert_eq!(exchange.reply, Some(Reply::Ok));
    assert_eq!(summary(exchange), ("GET".into(), "GET user:?".into()));
    assert!(conn.is_idle());
}

/// A pipeline: every command its own exchange, replies matched in order,
/// in any split of either stream.
#[test]
fn pipelines_in_any_split() {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i}");
        requests.extend(command(&[b"SET", key.as_bytes(), b"xyz"]));
        replies.extend_from_slice(if i == 7 { b"-ERR oops\r\n" } else { b"+OK\r\n" });
    }
    for split in [1, 2, 3, 7, 50, 4096] {
        let mut conn = RedisConnection::default();
        let mut out = Out::new();
        for (i, chunk) in requests.chunks(split).enumerate() {
            conn.feed(Stream::Requests, chunk, 0, i as u32, &mut out);
        }
        for chunk in replies.chunks(split) {
            conn.feed(Stream::Responses, chunk, 0, 9999, &mut out);
        }
        let exchanges = exchanges(&out);
        assert_eq!(exchanges.len(), 16, "split {split}");
        assert!(errors(&out).is_empty(), "split {split}: {out:?}");
        for (i, exchange) in exchanges.iter().enumerate() {
            assert_eq!(exchange.index, i as u64);
            assert_eq!(summary(exchange).1, "SET key:? ?");
            let expected = if i == 7 {
                Reply::Error("ERR oops".into())
            } else {
                Reply::Ok
            };
            assert_eq!(exchange.reply, Some(expected));
        }
    }
}

/// A value longer than the capture: its payload is passed over, counted.
#[test]
fn long_values_are_skipped_not_lost() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    let mut set = command(&[b"SET", b"blob", &[b'x'; 10_000]]);
    let uncaptured = set.len() as u64 - 100;
    set.truncate(100);
    conn.feed(Stream::Requests, &set, uncaptured, 1, &mut out);
    conn.feed(Stream::Responses, b"+OK\r\n", 0, 2, &mut out);
    conn.feed(
        Stream::Requests,
        &command(&[b"GET", b"blob"]),
        0,
        3,
        &mut out,
    );
    let reply = b"$10000\r\nxxxxxxxx";
    conn.feed(Stream::Responses, reply, 10_002 - 8, 4, &mut out);
    assert!(errors(&out).is_empty(), "{out:?}");
    let exchanges = exchanges(&out);
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[1].response_end, 4);
    assert_eq!(summary(exchanges[0]).1, "SET blob ?");
}

/// RESP3: maps, sets, attributes and pushes; a push answers nothing.
#[test]
fn resp3_replies() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(&[b"HELLO", b"3"]),
        0,
        1,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b"%2\r\n+server\r\n+redis\r\n+modules\r\n*0\r\n",
        0,
        2,
        &mut out,
    );
    conn.feed(
        Stream::Requests,
        &command(&[b"SMEMBERS", b"s"]),
        0,
        3,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n|1\r\n+ttl\r\n:3\r\n~2\r\n,1.5\r\n#t\r\n",
        0,
        4,
        &mut out,
    );
    conn.feed(
        Stream::Requests,
        &command(&[b"GET", b"nope"]),
        0,
        5,
        &mut out,
    );
    conn.feed(Stream::Responses, b"_\r\n", 0, 6, &mut out);
    conn.feed(Stream::Requests, &command(&[b"INCR", b"s"]), 0, 7, &mut out);
    conn.feed(
        Stream::Responses,
        b"!19\r\nWRONGTYPE Operation\r\n",
        0,
        8,
        &mut out,
    );
    assert!(errors(&out).is_empty(), "{out:?}");
    let ends: Vec<_> = exchanges(&out).iter().map(|e| e.response_end).collect();
    assert_eq!(ends, [2, 4, 6, 8]);
    assert_eq!(
        exchanges(&out)[3].reply,
        Some(Reply::Error("WRONGTYPE Operation".into()))
    );
}

#[test]
fn inline_commands() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(Stream::Requests, b"PING\r\nGET  k:1\r\n", 0, 1, &mut out);
    conn.feed(Stream::Responses, b"+PONG\r\n$-1\r\n", 0, 2, &mut out);
    let names: Vec<_> = exchanges(&out).iter().map(|e| summary(e).1).collect();
    assert_eq!(names, ["PING", "GET k:?"]);
}

#[test]
fn select_names_the_database() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(&[b"SELECT", b"3"]),
        0,
        1,
        &mut out,
    );
    conn.feed(Stream::Responses, b"+OK\r\n", 0, 2, &mut out);
    conn.feed(Stream::Requests, &command(&[b"DBSIZE"]), 0, 3, &mut out);
    conn.feed(Stream::Responses, b":0\r\n", 0, 4, &mut out);
    assert_eq!(exchanges(&out)[1].database, Some(3));
    assert!(
        !conn.is_idle(),
        "the database is state a fresh parser lacks"
    );
}

#[test]
fn subscribe_ends_the_parsing() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(&[b"SUBSCRIBE", b"news"]),
        0,
        1,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
        0,
        2,
        &mut out,
    );
    conn.feed(Stream::Requests, &command(&[b"PING"]), 0, 3, &mut out);
    assert_eq!(exchanges(&out).len(), 1);
    assert!(errors(&out).is_empty());
    assert_eq!(summary(exchanges(&out)[0]).1, "SUBSCRIBE ?");
}

/// A reply longer than the capture (a big array): its end is lost, and
/// found again at the next command; the exchange ends at the last reply
/// bytes seen.
#[test]
fn a_lost_reply_ends_at_the_next_command() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(&[b"LRANGE", b"l", b"0", b"-1"]),
        0,
        1,
        &mut out,
    );
    conn.feed(
        Stream::Responses,
        b"*1000\r\n$3\r\nabc\r\n",
        5000,
        2,
        &mut out,
    );
    conn.feed(Stream::Responses, b"\r\n$3\r\nabc\r\n", 0, 3, &mut out);
    assert_eq!(errors(&out), [&ParseError::SyncLost(Stream::Responses)]);
    conn.feed(Stream::Requests, &command(&[b"GET", b"k"]), 0, 4, &mut out);
    conn.feed(Stream::Responses, b"$1\r\nv\r\n", 0, 5, &mut out);
    let exchanges = exchanges(&out);
    assert_eq!(exchanges.len(), 2);
    assert_eq!(
        (exchanges[0].request_start, exchanges[0].response_end),
        (1, 3)
    );
    assert_eq!(
        (exchanges[1].request_start, exchanges[1].response_end),
        (4, 5)
    );
}

/// A pipeline longer than the capture: the commands read whole are still
/// matched; the rest are dropped with the sync, counted.
#[test]
fn a_lost_pipeline_tail_keeps_the_commands_before_it() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    let mut pipeline = command(&[b"INCR", b"a"]);
    pipeline.extend(command(&[b"INCR", b"b"]));
    conn.feed(Stream::Requests, &pipeline[..30], 100, 1, &mut out);
    conn.feed(
        Stream::Responses,
        b":1\r\n:1\r\n:1\r\n:1\r\n",
        0,
        2,
        &mut out,
    );
    assert_eq!(exchanges(&out).len(), 1);
    conn.feed(Stream::Requests, &command(&[b"GET", b"k"]), 0, 3, &mut out);
    conn.feed(Stream::Responses, b"$1\r\nv\r\n", 0, 4, &mut out);
    assert_eq!(exchanges(&out).len(), 2);
    assert_eq!(exchanges(&out)[1].request_start, 3);
}

#[test]
fn close_reports_commands_without_reply() {
    let mut conn = RedisConnection::default();
    let mut out = Out::new();
    conn.feed(
        Stream::Requests,
        &command(&[b"BLPOP", b"q", b"0"]),
        0,
        1,
        &mut out,
    );
    conn.close(&mut out);
    assert_eq!(exchanges(&out)[0].reply, None);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [
        &b"*x\r\n"[..],
        b"*99999999999999999999\r\n",
        b"$-5\r\n",
        b"\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n",
    ] {
        let mut conn = RedisConnection::default();
        let mut out = Out::new();
        conn.feed(Stream::Requests, bytes, 0, 1, &mut out);
        conn.feed(Stream::Responses, bytes, 7, 2, &mut out);
        conn.close(&mut out);
        assert!(!errors(&out).is_empty(), "{bytes:?}");
    }
}

#[test]
fn detection() {
    assert!(looks_like_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
    assert!(looks_like_command(b"PING\r\n"));
    assert!(!looks_like_command(b"GET / HTTP/1.1\r\n"));
    assert!(!looks_like_command(b"*\r\n"));
    assert!(!looks_like_command(b"*2\r\n*1\r\n"));
}

#[test]
fn key_patterns_hide_what_names_one_key() {
    for (key, pattern) in [
        ("user:1234:cart", "user:?:cart"),
        ("{tenant7}.orders", "{?}.orders"),
        ("session:ab12cd", "session:?"),
        ("config", "config"),
        (
            "a-very-long-random-token-without-digits-here",
            "a-very-long-random-token-without-digits-here",
        ),
        ("averylongrandomtokenwithoutdigitsxx", "?"),
        ("caf\u{e9}:x", "?:x"),
        ("", ""),
    ] {
        assert_eq!(key_pattern(key.as_bytes()), pattern, "{key}");
    }
}

#[test]
fn query_texts_show_no_value() {
    let text = |args: &[&[u8]]| {
        let command = Command {
            args: args.iter().take(3).map(|a| a.to_vec()).collect(),
            arg_count: args.len() as u64,
        };
        CommandSummary::of(&command).query_text(&command)
    };
    assert_eq!(text(&[b"AUTH", b"user", b"secret"]), "AUTH ? ?");
    assert_eq!(
        text(&[b"hello", b"3", b"AUTH", b"u", b"p"]),
        "HELLO ? ? ? ?"
    );
    assert_eq!(text(&[b"config", b"get", b"maxmemory"]), "CONFIG GET ?");
    assert_eq!(text(&[b"PUBLISH", b"news", b"secret"]), "PUBLISH ? ?");
    assert_eq!(text(&[b"mget", b"a:1", b"a:2"]), "MGET a:? ?");
    let many: Vec<&[u8]> = std::iter::once(&b"DEL"[..])
        .chain(std::iter::repeat_n(&b"k"[..], 20))
        .collect();
    assert_eq!(text(&many), "DEL k ? ? ? ? ? ? ? …");
    assert_eq!(text(&[b"\x00\x01"]), "UNKNOWN");
}
