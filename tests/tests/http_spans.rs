//! The agent traces real, unmodified HTTP/1.x servers and clients.
//! Each test loads the real eBPF programs (root), drives real traffic on
//! loopback and checks the spans the agent exported.

use std::process::Command;

use tracer_tests::{
    Agent, CLIENT, Process, SERVER, SpanRecord, curl, free_port, node_server, python_server,
    require_root, servers_dir, services::run_nginx, signal_go, temp_dir,
};

/// Every span lasted a positive time no longer than what the client saw.
fn assert_durations(spans: &[&SpanRecord], client_observed: &[f64]) {
    let longest = client_observed.iter().cloned().fold(0.0, f64::max);
    for span in spans {
        let d = span.duration_secs();
        assert!(d > 0.0, "span {} has duration {d}", span.name);
        assert!(
            d <= longest,
            "span {} lasted {d}s, longer than the client saw ({longest}s)",
            span.name
        );
    }
}

fn of_kind(spans: &[&SpanRecord], kind: i64) -> Vec<SpanRecord> {
    spans
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| (*s).clone())
        .collect()
}

/// `python3 -m http.server` (HTTP/1.0, a connection per request) and curl.
#[test]
fn python_http_server_and_curl() {
    require_root();
    let dir = temp_dir("http-server");
    std::fs::write(dir.join("index.txt"), "hello\n").unwrap();
    let port = free_port();
    let agent = Agent::start(&[]);
    let mut server = Command::new("python3");
    server
        .args([
            "-u",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&dir)
        .env_remove("OTEL_SERVICE_NAME");
    let _server = spawn_http_server(&mut server, "127.0.0.1", port);
    let observed = curl(
        &[],
        &[
            format!("http://127.0.0.1:{port}/index.txt"),
            format!("http://127.0.0.1:{port}/missing?token=secret&x=1"),
        ],
    );
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);

    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    let clients = of_kind(&spans, CLIENT);
    assert_eq!(servers.len(), 2, "server spans: {servers:#?}");
    assert_eq!(clients.len(), 2, "client spans: {clients:#?}");
    for span in &servers {
        // Named after the module it runs, not the interpreter.
        assert_eq!(span.service, "http.server");
        assert_eq!(span.str("http.request.method"), Some("GET"));
        assert!(
            span.resource["process.executable.name"]["stringValue"]
                .as_str()
                .is_some_and(|exe| exe.starts_with("python3")),
            "{:?}",
            span.resource
        );
    }
    for span in &clients {
        assert_eq!(span.service, "curl");
    }
    let by_path = |spans: &[SpanRecord], path: &str| {
        spans
            .iter()
            .find(|s| s.str("url.path") == Some(path))
            .cloned()
            .unwrap_or_else(|| panic!("no span for {path}"))
    };
    let ok = by_path(&servers, "/index.txt");
    assert_eq!(ok.int("http.response.status_code"), Some(200));
    assert_eq!(ok.status_code, 0);
    let missing = by_path(&servers, "/missing");
    assert_eq!(missing.int("http.response.status_code"), Some(404));
    assert_eq!(missing.str("url.query"), Some("token=REDACTED&x=1"));
    // 404 is a client error: an error on the client span only.
    assert_eq!(missing.status_code, 0);
    assert_eq!(by_path(&clients, "/missing").status_code, 2);
    assert_eq!(
        by_path(&clients, "/index.txt").str("url.full"),
        Some(format!("http://127.0.0.1:{port}/index.txt").as_str())
    );
    assert_durations(&spans, &observed);
}

/// An HTTP/1.1 keep-alive server in Python: many requests on one connection,
/// including POST bodies, chunked responses, large bodies beyond the capture,
/// and a 500.
#[test]
fn python_keep_alive_server() {
    require_root();
    let port = free_port();
    let agent = Agent::start(&[]);
    let _server = python_server(port, "shop");
    let base = format!("http://127.0.0.1:{port}");
    let mut observed = curl(
        &[],
        &[
            format!("{base}/hello"),
            format!("{base}/chunked"),
            format!("{base}/big/200000"),
            format!("{base}/status/500"),
            format!("{base}/hello"),
        ],
    );
    observed.extend(curl(
        &["--data-binary", "0123456789"],
        &[format!("{base}/orders/42")],
    ));
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);

    let spans = run.spans_on_port(port);
    let mut servers = of_kind(&spans, SERVER);
    servers.sort_by_key(|s| s.start_ns);
    let paths: Vec<_> = servers
        .iter()
        .map(|s| {
            (
                s.str("http.request.method").unwrap(),
                s.str("url.path").unwrap(),
                s.int("http.response.status_code").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("GET", "/hello", 200),
            ("GET", "/chunked", 200),
            ("GET", "/big/200000", 200),
            ("GET", "/status/500", 500),
            ("GET", "/hello", 200),
            ("POST", "/orders/42", 201),
        ]
    );
    assert!(servers.iter().all(|s| s.service == "shop"));
    // The first five share one connection (curl keeps it alive).
    let client_ports: std::collections::HashSet<_> =
        servers[..5].iter().map(|s| s.int("client.port")).collect();
    assert_eq!(
        client_ports.len(),
        1,
        "keep-alive requests on one connection"
    );
    assert_eq!(servers[2].int("http.response.body.size"), Some(200000));
    assert_eq!(servers[1].int("http.response.body.size"), Some(19));
    assert_eq!(
        servers[3].status_code, 2,
        "5xx is an error on the server span"
    );
    assert_eq!(servers[5].int("http.request.body.size"), Some(10));
    assert_eq!(servers[5].name, "POST /orders/{id}");
    assert_eq!(of_kind(&spans, CLIENT).len(), 6);
    assert_durations(&spans, &observed);
}

/// Each service's team: the owners file's first matching rule, else the
/// process's OTEL_RESOURCE_ATTRIBUTES, else "unowned"; on the spans'
/// resource and as the duration metrics' label.
#[test]
fn services_are_owned_by_teams() {
    require_root();
    let dir = temp_dir("owners");
    let owners = dir.join("owners.toml");
    std::fs::write(
        &owners,
        "[[team]]\nname = \"storefront\"\nservices = [\"shop-*\"]\n",
    )
    .unwrap();
    let (shop, billing, stock) = (free_port(), free_port(), free_port());
    let _shop = python_server(shop, "shop-web");
    let _billing = Process::spawn_until(
        Command::new("python3")
            .arg(servers_dir().join("http11_server.py"))
            .arg(billing.to_string())
            .env("OTEL_SERVICE_NAME", "billing")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,team=payments",
            ),
        "ready",
    );
    let _stock = python_server(stock, "stock");
    let agent = Agent::start(&["--owners", owners.to_str().unwrap()]);
    let urls: Vec<String> = [shop, billing, stock]
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/hello"))
        .collect();
    curl(&[], &urls);
    let metrics = agent.metrics();
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);
    for (port, service, team) in [
        (shop, "shop-web", "storefront"),
        (billing, "billing", "payments"),
        (stock, "stock", "unowned"),
    ] {
        let spans = run.spans_on_port(port);
        let servers = of_kind(&spans, SERVER);
        assert_eq!(servers.len(), 1, "{servers:#?}");
        assert_eq!(servers[0].resource["team"]["stringValue"], team);
        let series = format!("service_name=\"{service}\",team=\"{team}\"");
        assert!(
            metrics.lines().any(
                |l| l.starts_with("http_server_request_duration_seconds_count{")
                    && l.contains(&series)
            ),
            "no {series} series:\n{metrics}"
        );
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("service_self_time_seconds_count{") && l.contains(&series)),
            "no self-time series {series}:\n{metrics}"
        );
    }
}

/// A Node.js server (one event loop) with curl as keep-alive client.
#[test]
fn node_server_with_keep_alive_client() {
    require_root();
    let port = free_port();
    let agent = Agent::start(&[]);
    let _server = node_server(port);
    let base = format!("http://127.0.0.1:{port}");
    let urls: Vec<String> = (0..5).map(|i| format!("{base}/items/{i}")).collect();
    let mut observed = curl(&[], &urls);
    observed.extend(curl(&["--data-binary", "abc"], &[format!("{base}/submit")]));
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);

    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    assert_eq!(servers.len(), 6, "{servers:#?}");
    for span in &servers {
        assert_eq!(span.service, "node_server", "named after its script");
    }
    let gets: Vec<_> = servers
        .iter()
        .filter(|s| s.str("http.request.method") == Some("GET"))
        .collect();
    assert_eq!(gets.len(), 5);
    assert!(
        gets.iter()
            .all(|s| s.int("http.response.status_code") == Some(200))
    );
    let ports: std::collections::HashSet<_> = gets.iter().map(|s| s.int("client.port")).collect();
    assert_eq!(ports.len(), 1, "curl kept one connection alive");
    let post = servers
        .iter()
        .find(|s| s.str("http.request.method") == Some("POST"))
        .expect("POST span");
    assert_eq!(post.int("http.response.status_code"), Some(201));
    assert_eq!(of_kind(&spans, CLIENT).len(), 6);
    assert_durations(&spans, &observed);
}

/// `node_server.js` over HTTPS on `port`, with a self-signed certificate
/// made in a temporary directory named after `name`.
fn node_https_server(name: &str, port: u16) -> Process {
    let dir = temp_dir(name);
    tracer_tests::services::self_signed(&dir);
    Process::spawn_until(
        Command::new("node")
            .arg(servers_dir().join("node_server.js"))
            .arg(port.to_string())
            .args([dir.join("cert.pem"), dir.join("key.pem")]),
        "ready",
    )
}

/// A Node.js HTTPS server: Node's own OpenSSL, on memory buffers (its event
/// loop moves the ciphertext), read through the uprobes on `node`. curl
/// keeps one connection for three requests, then opens a second: every
/// server span says `https` and is the child of curl's span.
#[test]
fn node_https_server_with_curl() {
    require_root();
    let port = free_port();
    let agent = Agent::start(&[]);
    let _server = node_https_server("node-https", port);
    let base = format!("https://127.0.0.1:{port}");
    let urls: Vec<String> = (0..3).map(|i| format!("{base}/items/{i}")).collect();
    curl(&["--insecure"], &urls);
    curl(&["--insecure"], &[format!("{base}/items/3")]);
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);
    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    let clients = of_kind(&spans, CLIENT);
    assert_eq!(servers.len(), 4, "{servers:#?}\n{}", run.stderr);
    for server in &servers {
        assert_eq!(server.str("url.scheme"), Some("https"), "{server:?}");
        let client = clients
            .iter()
            .find(|c| c.span_id == server.parent_span_id)
            .unwrap_or_else(|| panic!("no client span is the parent of {server:#?}"));
        assert_eq!(client.str("url.path"), server.str("url.path"));
    }
}

/// curl → an HTTP forward proxy (`CONNECT`) → a Node.js HTTPS server.
/// curl's connection to the proxy starts with a `CONNECT` request line in
/// the clear, then carries TLS: its plaintext still comes through the TLS
/// probes, so both ends of the request inside the tunnel are spans. (A
/// kernel shortcut that takes a clear request line to mean "never TLS"
/// must leave `CONNECT` out: this test fails when it does not.)
#[test]
fn https_through_a_connect_proxy() {
    require_root();
    let (port, proxy_port) = (free_port(), free_port());
    let agent = Agent::start(&[]);
    let _server = node_https_server("connect-proxy", port);
    let _proxy = Process::spawn_until(
        Command::new("python3")
            .arg(servers_dir().join("connect_proxy.py"))
            .arg(proxy_port.to_string()),
        "ready",
    );
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    curl(
        &["--insecure", "--proxy", &proxy],
        &[format!("https://127.0.0.1:{port}/items/7")],
    );
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);
    let inside = |kind| -> Vec<&SpanRecord> {
        run.spans
            .iter()
            .filter(|s| s.kind == kind && s.str("url.path") == Some("/items/7"))
            .collect()
    };
    for kind in [CLIENT, SERVER] {
        let spans = inside(kind);
        assert_eq!(spans.len(), 1, "{:#?}\n{}", run.spans, run.stderr);
        assert_eq!(spans[0].str("url.scheme"), Some("https"), "{:#?}", spans[0]);
    }
}

/// A keep-alive connection opened before the agent started is recognised on
/// its next requests, with the right roles.
///
/// The server's handler thread is already blocked in `recv` when the agent
/// attaches: the kernel reads a read's arguments from the registers at its
/// exit, so the first request is traced on the server side too.
#[test]
fn connection_opened_before_the_agent() {
    require_root();
    let port = free_port();
    let _server = python_server(port, "early");
    let mut client = Process::spawn_until(
        Command::new("python3")
            .arg(servers_dir().join("keepalive_client.py"))
            .args([&port.to_string(), "3", "--before", "2", "--wait"])
            // Alive until the agent has read its events (a process that exits
            // within the reader's 20 ms loses its OTEL_SERVICE_NAME).
            .args(["--linger", "0.5"])
            .env("OTEL_SERVICE_NAME", "early-client"),
        "connected",
    );
    let agent = Agent::start(&[]);
    signal_go(&mut client);
    let report: serde_json::Value =
        serde_json::from_str(client.wait_output().trim()).expect("client report");
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);

    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    let clients = of_kind(&spans, CLIENT);
    assert_eq!(servers.len(), 3, "{spans:#?}");
    assert_eq!(clients.len(), 3, "{spans:#?}");
    for server in &servers {
        assert!(
            clients.iter().any(|c| c.span_id == server.parent_span_id),
            "each server span is its client span's child: {spans:#?}"
        );
    }
    let local_port = report["local_port"].as_i64().unwrap();
    assert!(
        servers
            .iter()
            .all(|s| s.service == "early" && s.int("client.port") == Some(local_port)),
        "client port {local_port}: {servers:#?}"
    );
    assert!(
        clients
            .iter()
            .all(|s| s.service == "early-client" && s.str("url.path") == Some("/hello")),
        "{clients:#?}"
    );
    let observed: Vec<f64> = report["durations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    assert_durations(&spans, &observed);
}

/// The agent starts in the middle of a busy keep-alive connection's
/// traffic (back-to-back requests to nginx, its responses sent with
/// `sendfile`): both ends are parsed from the first whole exchange on, with
/// no parse error (no response seen without its request while the programs
/// are attached, no end given up on for showing responses first).
#[test]
fn busy_connection_opened_before_the_agent() {
    require_root();
    let port = free_port();
    let dir = temp_dir("busy");
    std::fs::create_dir(dir.join("root")).unwrap();
    std::fs::write(dir.join("root/file.txt"), vec![b'x'; 1024]).unwrap();
    let _nginx = run_nginx(
        &dir,
        &format!(
            "sendfile on;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{port}; root {}/root; }}",
            dir.display()
        ),
        port,
    );
    let mut client = Process::spawn_until(
        Command::new("python3")
            .arg(servers_dir().join("keepalive_client.py"))
            .args([&port.to_string(), "20", "--before", "1", "--wait", "--busy"])
            .args(["--path", "/file.txt", "--linger", "0.5"]),
        "connected",
    );
    let agent = Agent::start(&[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal_go(&mut client);
    let report: serde_json::Value =
        serde_json::from_str(client.wait_output().trim()).expect("client report");
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);

    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    let clients = of_kind(&spans, CLIENT);
    // The 20 requests after the busy spell at least, at both ends.
    assert!(servers.len() >= 20, "{} server spans", servers.len());
    assert!(clients.len() >= 20, "{} client spans", clients.len());
    let local_port = report["local_port"].as_i64().unwrap();
    for server in &servers {
        assert_eq!(server.int("client.port"), Some(local_port));
        assert_eq!(
            server.int("http.response.body.size"),
            Some(1024),
            "{server:#?}"
        );
    }
    let parented = servers
        .iter()
        .filter(|s| clients.iter().any(|c| c.span_id == s.parent_span_id))
        .count();
    // All but a request cut by the start, if any.
    assert!(
        parented + 1 >= servers.len(),
        "{parented} of {} parented",
        servers.len()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Reading a large file is no socket traffic: no span, and the kernel sends
/// no event for it (non-socket descriptors are filtered in the kernel).
#[test]
fn large_file_read_costs_no_events() {
    require_root();
    let dir = temp_dir("cat");
    let file = dir.join("big.bin");
    std::fs::write(&file, vec![b'x'; 64 * 1024 * 1024]).unwrap();
    // The shell waits for "go", then becomes cat (same pid), so the agent can
    // be limited to exactly that process.
    let mut cat = Process::spawn_until(
        Command::new("sh").arg("-c").arg(format!(
            "echo ready; read line; exec cat {} > /dev/null",
            file.display()
        )),
        "ready",
    );
    let agent = Agent::start(&["--pid", &cat.pid().to_string()]);
    signal_go(&mut cat);
    cat.wait_output();
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);
    assert!(run.spans.is_empty(), "{:#?}", run.spans);
    assert_eq!(run.summary("events_read"), 0);
    assert_eq!(run.summary("events_sent"), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// nginx sending files with `sendfile` (the bytes never pass through user
/// space; the kernel counts them at the syscall's exit): every response on
/// a kept-alive connection is framed, sized and parented, a large file's
/// (sent in several calls) as well as a small one's.
#[test]
fn static_files_sent_with_sendfile() {
    require_root();
    let port = free_port();
    let dir = temp_dir("sendfile");
    std::fs::create_dir(dir.join("root")).unwrap();
    let sizes = [("large.bin", 3 * 1024 * 1024), ("small.txt", 1024)];
    for (name, size) in sizes {
        std::fs::write(dir.join("root").join(name), vec![b'x'; size]).unwrap();
    }
    let _nginx = run_nginx(
        &dir,
        &format!(
            "sendfile on;
    server {{ listen 127.0.0.1:{port}; root {}/root; }}",
            dir.display()
        ),
        port,
    );
    let agent = Agent::start(&[]);
    let urls: Vec<String> = ["large.bin", "small.txt", "large.bin", "small.txt"]
        .iter()
        .map(|name| format!("http://127.0.0.1:{port}/{name}"))
        .collect();
    let observed = curl(&[], &urls);
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);

    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    let clients = of_kind(&spans, CLIENT);
    assert_eq!(servers.len(), 4, "{spans:#?}");
    assert_eq!(clients.len(), 4, "{spans:#?}");
    for server in &servers {
        let size = sizes
            .iter()
            .find(|(name, _)| server.str("url.path") == Some(&format!("/{name}")))
            .map(|&(_, size)| size as i64);
        assert!(size.is_some(), "{server:#?}");
        assert_eq!(server.int("http.response.status_code"), Some(200));
        assert_eq!(server.int("http.response.body.size"), size, "{server:#?}");
        assert!(
            clients.iter().any(|c| c.span_id == server.parent_span_id),
            "each server span is its client span's child: {spans:#?}"
        );
    }
    assert_durations(&spans, &observed);
    std::fs::remove_dir_all(dir).unwrap();
}

/// IPv6: a server on [::1] and curl over IPv6; the addresses are IPv6.
#[test]
fn ipv6_loopback() {
    require_root();
    let port = free_port();
    let agent = Agent::start(&[]);
    let mut server = Command::new("python3");
    server
        .args(["-m", "http.server", &port.to_string(), "--bind", "::1"])
        .current_dir(temp_dir("ipv6"));
    let _server = spawn_http_server(&mut server, "::1", port);
    let observed = curl(&["-6"], &[format!("http://[::1]:{port}/")]);
    let run = agent.stop();
    assert!(run.status.success(), "agent failed: {}", run.stderr);
    let spans = run.spans_on_port(port);
    let servers = of_kind(&spans, SERVER);
    let clients = of_kind(&spans, CLIENT);
    assert_eq!((servers.len(), clients.len()), (1, 1), "{spans:#?}");
    assert_eq!(servers[0].str("client.address"), Some("::1"));
    assert_eq!(servers[0].int("http.response.status_code"), Some(200));
    assert_eq!(clients[0].str("network.peer.address"), Some("::1"));
    assert_eq!(
        clients[0].str("url.full"),
        Some(format!("http://[::1]:{port}/").as_str())
    );
    assert_durations(&spans, &observed);
}

/// A protocol the agent does not parse: after a few chunks it tells the
/// kernel, which skips the connection's syscalls from then on (no events,
/// no payload copies), and no span comes of it.
#[test]
fn non_http_connections_are_skipped_in_the_kernel() {
    require_root();
    let port = free_port();
    let echo = servers_dir().join("echo.py");
    let _server = Process::spawn_until(
        Command::new("python3")
            .arg(&echo)
            .args(["server", &port.to_string()]),
        "ready",
    );
    let agent = Agent::start(&[]);
    let client = Process::spawn_until(
        Command::new("python3")
            .arg(&echo)
            .args(["client", &port.to_string(), "300"]),
        "done",
    );
    client.wait_output();
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.spans_on_port(port).is_empty());
    // 300 round trips are 1,200 socket syscalls on the two sides. The ten
    // before the client's pause (40 data events) pass while the agent decides;
    // its decision reaches the kernel with its next batch (20 ms), well
    // within the pause. Opens and closes add a few.
    let events = run.summary("events_read");
    assert!(
        events < 60,
        "{events} events for a connection the agent does not parse:\n{}",
        run.stderr
    );
    assert!(
        run.summary("skipped_ignored_sockets") > 1000,
        "{}",
        run.stderr
    );
}

/// `--pid` traces only the named process: the server's spans, not curl's.
#[test]
fn pid_filter_limits_tracing() {
    require_root();
    let port = free_port();
    let server = python_server(port, "only-me");
    let agent = Agent::start(&["--pid", &server.pid().to_string()]);
    curl(&[], &[format!("http://127.0.0.1:{port}/hello")]);
    let run = agent.stop();
    let spans = run.spans_on_port(port);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].kind, SERVER);
    assert_eq!(spans[0].service, "only-me");
}

fn spawn_http_server(cmd: &mut Command, host: &str, port: u16) -> Process {
    // http.server prints "Serving HTTP on 127.0.0.1 port N (...) ..." when ready.
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect((host, port)).is_err() {
        assert!(
            started.elapsed().as_secs() < 20,
            "http.server did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Process::from_child(child)
}
