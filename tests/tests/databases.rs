//! Database client spans, against Debian's servers driven by their own
//! clients and by a traced service.

use std::{collections::HashMap, process::Command};

use tracer_tests::{
    Agent, CLIENT, Process, SERVER, SpanRecord, curl, free_port, require_root, servers_dir,
    temp_dir,
};

/// `redis-server` on `port`, nothing saved to disk.
fn redis_server(port: u16) -> Process {
    let dir = temp_dir("redis");
    let child = Process::from_child(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server (cargo xtask setup --test-deps installs it)"),
    );
    for _ in 0..100 {
        if redis_cli(port, &[], &["PING"]).contains("PONG") {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(child);
    panic!("redis-server did not answer on {port}");
}

fn redis_cli(port: u16, options: &[&str], command: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(options)
        .args(command)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn redis_spans(spans: &[SpanRecord], port: u16) -> Vec<&SpanRecord> {
    spans
        .iter()
        .filter(|s| {
            s.str("db.system.name") == Some("redis") && s.int("server.port") == Some(port as i64)
        })
        .collect()
}

/// redis-cli in RESP2 and RESP3, errors, a database chosen with `-n`,
/// and redis-benchmark's pipelines of 16: one CLIENT span per command,
/// with the command and key pattern and never a value; none for the
/// server's side.
#[test]
fn redis_commands_make_client_spans() {
    require_root();
    let port = free_port();
    let _server = redis_server(port);
    let agent = Agent::start(&[]);
    redis_cli(port, &[], &["SET", "user:1234:name", "secret-value"]);
    redis_cli(port, &[], &["GET", "user:1234:name"]);
    redis_cli(
        port,
        &["-n", "3"],
        &["HSET", "cart:77", "sku", "secret-value"],
    );
    redis_cli(port, &["-3"], &["HGETALL", "cart:77"]);
    redis_cli(port, &[], &["LPUSH", "user:1234:name", "x"]);
    let benchmark = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-n",
            "320",
            "-P",
            "16",
            "-c",
            "1",
            "-q",
        ])
        .args(["-t", "set,get"])
        .output()
        .expect("run redis-benchmark");
    assert!(benchmark.status.success(), "{benchmark:?}");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let spans = redis_spans(&run.spans, port);
    assert!(spans.iter().all(|s| s.kind == CLIENT), "{spans:#?}");
    assert!(
        run.spans.iter().all(|s| s.service != "redis-server"),
        "the server's side is not traced"
    );
    let cli: Vec<&&SpanRecord> = spans.iter().filter(|s| s.service == "redis-cli").collect();
    let find = |name: &str| {
        cli.iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span: {cli:#?}"))
    };
    let set = find("SET");
    assert_eq!(set.str("db.operation.name"), Some("SET"));
    assert_eq!(set.str("db.query.text"), Some("SET user:?:name ?"));
    assert_eq!(set.str("server.address"), Some("127.0.0.1"));
    assert_eq!(set.status_code, 0);
    assert_eq!(find("GET").str("db.query.text"), Some("GET user:?:name"));
    let hset = find("HSET");
    assert_eq!(hset.str("db.query.text"), Some("HSET cart:? ? ?"));
    assert_eq!(
        hset.str("db.namespace"),
        Some("3"),
        "redis-cli -n 3 sends SELECT 3"
    );
    assert_eq!(find("HELLO").str("db.query.text"), Some("HELLO ?"), "RESP3");
    assert_eq!(find("HGETALL").status_code, 0);
    let wrong = find("LPUSH");
    assert_eq!(wrong.status_code, 2);
    assert_eq!(wrong.str("error.type"), Some("WRONGTYPE"));
    assert_eq!(wrong.str("db.response.status_code"), Some("WRONGTYPE"));
    for span in &spans {
        let text = format!("{:?}", span.attributes);
        assert!(
            !text.contains("secret") && !text.contains("1234"),
            "{span:#?}"
        );
    }
    let benchmark: HashMap<&str, usize> = spans
        .iter()
        .filter(|s| s.service == "redis-benchmark")
        .fold(HashMap::new(), |mut counts, s| {
            *counts.entry(s.name.as_str()).or_default() += 1;
            counts
        });
    // One span per pipelined command: 320 SETs and 320 GETs.
    assert_eq!(
        benchmark.get("SET"),
        Some(&320),
        "{benchmark:?}\n{}",
        run.stderr
    );
    assert_eq!(
        benchmark.get("GET"),
        Some(&320),
        "{benchmark:?}\n{}",
        run.stderr
    );
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);
}

/// A traced service's Redis calls are children of the request they are
/// made for, on the pool's connection opened before the agent started and
/// on connections opened under load.
#[test]
fn redis_calls_are_children_of_their_request() {
    require_root();
    let redis_port = free_port();
    let _server = redis_server(redis_port);
    let port = free_port();
    let python = tracer_tests::test_tools_dir().join("redis/bin/python");
    let _service = Process::spawn_until(
        Command::new(python)
            .arg(servers_dir().join("redis_service.py"))
            .arg(port.to_string())
            .arg(redis_port.to_string())
            .env("OTEL_SERVICE_NAME", "redis-svc"),
        "ready",
    );
    let agent = Agent::start(&[]);
    let url = |marker: &str| format!("http://127.0.0.1:{port}/req/{marker}");
    let sequential: Vec<String> = (0..5).map(|i| format!("seq{i}")).collect();
    curl(&[], &sequential.iter().map(|m| url(m)).collect::<Vec<_>>());
    let concurrent: Vec<String> = (0..12).map(|i| format!("par{i}")).collect();
    std::thread::scope(|scope| {
        for batch in concurrent.chunks(3) {
            let urls: Vec<String> = batch.iter().map(|m| url(m)).collect();
            scope.spawn(move || curl(&[], &urls));
        }
    });
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let calls = redis_spans(&run.spans, redis_port);
    let mut connections_opened = 0;
    for marker in sequential.iter().chain(&concurrent) {
        let path = format!("/req/{marker}");
        let server = run
            .spans
            .iter()
            .find(|s| s.kind == SERVER && s.str("url.path") == Some(path.as_str()))
            .unwrap_or_else(|| panic!("no server span for {marker}"));
        let mut children: Vec<&str> = calls
            .iter()
            .filter(|s| s.parent_span_id == server.span_id)
            .map(|s| {
                assert_eq!(s.trace_id, server.trace_id);
                assert_eq!(s.service, "redis-svc");
                s.name.as_str()
            })
            .collect();
        // A connection the pool opens for the request introduces itself
        // first (redis-py's CLIENT SETINFO): a call made for it too.
        let before = children.len();
        children.retain(|name| *name != "CLIENT SETINFO");
        if children.len() < before {
            connections_opened += 1;
        }
        children.sort();
        assert_eq!(
            children,
            ["EXPIRE", "GET", "INCRBY", "SET"],
            "{marker}: {calls:#?}"
        );
    }
    assert!(
        connections_opened > 0,
        "concurrent requests open new pool connections"
    );
}
