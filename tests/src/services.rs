//! Real services for the trace tests and the accuracy benchmark: chains of
//! unmodified servers in several runtimes, nginx in front, curl as the load.

use std::process::Command;

use crate::{Process, SERVER, SpanRecord, curl, free_port, servers_dir, temp_dir};

/// A chain of three services, svc-a → svc-b → svc-c.
pub struct Chain {
    pub ports: [u16; 3],
    _services: Vec<Process>,
}

/// How a hop is implemented.
#[derive(Clone, Copy)]
pub enum Hop {
    /// Python `ThreadingHTTPServer`: a thread per connection.
    PythonThreads,
    /// Node.js: one event loop.
    Node,
    /// Node.js making its call from a timer (a later event-loop turn).
    NodeCallingFromTimer,
    /// Python asyncio: one event loop (leaf only).
    PythonAsyncio,
}

pub fn chain(hops: [Hop; 3]) -> Chain {
    let ports = [free_port(), free_port(), free_port()];
    let mut services = Vec::new();
    // Start from the leaf so each hop's next one is listening.
    for hop in (0..3).rev() {
        let port = ports[hop].to_string();
        let next = ports.get(hop + 1).map(u16::to_string);
        let mut cmd = match hops[hop] {
            Hop::PythonThreads => {
                let mut cmd = Command::new("python3");
                cmd.arg(servers_dir().join("chain_service.py"))
                    .arg(&port)
                    .args(&next);
                cmd
            }
            Hop::Node | Hop::NodeCallingFromTimer => {
                let mut cmd = Command::new("node");
                cmd.arg(servers_dir().join("node_chain.js"))
                    .arg(&port)
                    .args(&next);
                if let Hop::NodeCallingFromTimer = hops[hop] {
                    cmd.env("CALL_FROM_TIMER", "1");
                }
                cmd
            }
            Hop::PythonAsyncio => {
                assert!(next.is_none(), "the asyncio service is a leaf");
                let mut cmd = Command::new("python3");
                cmd.arg(servers_dir().join("asyncio_leaf.py")).arg(&port);
                cmd
            }
        };
        cmd.env("OTEL_SERVICE_NAME", format!("svc-{}", ["a", "b", "c"][hop]));
        services.push(Process::spawn_until(&mut cmd, "ready"));
    }
    Chain {
        ports,
        _services: services,
    }
}

/// `workers` curls at once, each sending `per_worker` requests on one
/// keep-alive connection, with markers `w{worker}r{request}`.
pub fn drive(port: u16, workers: usize, per_worker: usize) -> Vec<String> {
    drive_scheme("http", port, workers, per_worker)
}

/// `drive` over HTTPS (the server's certificate is not checked).
pub fn drive_https(port: u16, workers: usize, per_worker: usize) -> Vec<String> {
    drive_scheme("https", port, workers, per_worker)
}

fn drive_scheme(scheme: &'static str, port: u16, workers: usize, per_worker: usize) -> Vec<String> {
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            std::thread::spawn(move || {
                let urls: Vec<String> = (0..per_worker)
                    .map(|i| format!("{scheme}://127.0.0.1:{port}/req/w{w}r{i}"))
                    .collect();
                curl(&["--insecure"], &urls);
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("curl worker");
    }
    (0..workers)
        .flat_map(|w| (0..per_worker).map(move |i| format!("w{w}r{i}")))
        .collect()
}

/// The spans of the request whose path carries `marker`.
pub fn spans_of<'a>(spans: &'a [SpanRecord], marker: &str) -> Vec<&'a SpanRecord> {
    let path = format!("/req/{marker}");
    spans
        .iter()
        .filter(|s| s.str("url.path") == Some(path.as_str()))
        .collect()
}

/// nginx on `listen`, proxying to 127.0.0.1:`upstream` over kept-alive
/// connections, with everything it writes in a temporary directory. One
/// process (no master), so dropping the `Process` ends it.
pub fn nginx(listen: u16, upstream: u16) -> Process {
    start_nginx(listen, upstream, Front::Http)
}

/// `nginx` serving HTTPS on `listen`, with a self-signed certificate made
/// for it (`openssl req`); its upstream stays HTTP.
pub fn nginx_https(listen: u16, upstream: u16) -> Process {
    start_nginx(listen, upstream, Front::Https)
}

/// `nginx` serving HTTP/2 on `listen`, over TLS (ALPN `h2`), and clear text
/// with prior knowledge (h2c) on `listen_h2c`; its upstream stays HTTP/1.1.
pub fn nginx_http2(listen: u16, listen_h2c: u16, upstream: u16) -> Process {
    start_nginx(listen, upstream, Front::Http2 { h2c: listen_h2c })
}

/// What nginx serves its clients.
#[derive(Clone, Copy)]
enum Front {
    Http,
    Https,
    Http2 { h2c: u16 },
}

fn start_nginx(listen: u16, upstream: u16, front: Front) -> Process {
    let dir = temp_dir("nginx");
    let d = dir.display();
    let listen_directive = if let Front::Https | Front::Http2 { .. } = front {
        self_signed(&dir);
        let (http2, h2c) = match front {
            Front::Http2 { h2c } => (" http2", format!("listen 127.0.0.1:{h2c} http2;")),
            _ => ("", String::new()),
        };
        format!(
            "listen 127.0.0.1:{listen} ssl{http2};
        {h2c}
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;"
        )
    } else {
        format!("listen 127.0.0.1:{listen};")
    };
    let servers = format!(
        "upstream backend {{ server 127.0.0.1:{upstream}; keepalive 8; }}
    server {{
        {listen_directive}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}"
    );
    run_nginx(&dir, &servers, listen)
}

/// A self-signed certificate for `localhost` in `dir`: `cert.pem`, `key.pem`.
pub fn self_signed(dir: &std::path::Path) {
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("run openssl (Debian: apt-get install openssl)");
    assert!(made.status.success(), "openssl req failed: {made:?}");
}

/// nginx (one process, no master) with `http_blocks` (upstreams, servers)
/// in its `http` block and everything it writes in `dir`; returns once it
/// accepts connections on `listen`.
pub fn run_nginx(dir: &std::path::Path, http_blocks: &str, listen: u16) -> Process {
    let d = dir.display();
    let config = format!(
        "master_process off;
error_log stderr warn;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {http_blocks}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("write nginx.conf");
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start nginx (cargo xtask setup --test-deps installs it)");
    let process = Process::from_child(child);
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
        assert!(
            started.elapsed().as_secs() < 20,
            "nginx did not listen on {listen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    process
}

/// Why the request `marker`'s spans are not exactly `hops`, in one trace,
/// each the child of the one before: the missing or repeated hops, or the
/// first broken link. `None` when they are.
pub fn chain_break(spans: &[SpanRecord], marker: &str, hops: &[(&str, i64)]) -> Option<String> {
    let request = spans_of(spans, marker);
    let hop_name = |(service, kind): &(&str, i64)| {
        format!(
            "{service} {}",
            if *kind == SERVER { "SERVER" } else { "CLIENT" }
        )
    };
    let mut chain = Vec::new();
    let mut missing = Vec::new();
    for hop in hops {
        let found: Vec<&&SpanRecord> = request
            .iter()
            .filter(|s| s.service == hop.0 && s.kind == hop.1)
            .collect();
        match found.as_slice() {
            [span] => chain.push(**span),
            [] => missing.push(hop_name(hop)),
            more => return Some(format!("{} {} times", hop_name(hop), more.len())),
        }
    }
    if !missing.is_empty() || request.len() != hops.len() {
        return Some(format!("{} spans, missing {missing:?}", request.len()));
    }
    chain
        .windows(2)
        .zip(hops.windows(2))
        .find(|(pair, _)| {
            pair[1].parent_span_id != pair[0].span_id || pair[1].trace_id != chain[0].trace_id
        })
        .map(|(_, hop)| format!("{} -> {}", hop_name(&hop[0]), hop_name(&hop[1])))
}

/// Traces that hold spans of more than one request (by the marker in their path).
pub fn mixed_traces(spans: &[SpanRecord]) -> Vec<(String, Vec<String>)> {
    let mut markers_by_trace: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for span in spans {
        if let Some(marker) = span.str("url.path").and_then(|p| p.strip_prefix("/req/")) {
            markers_by_trace
                .entry(&span.trace_id)
                .or_default()
                .insert(marker);
        }
    }
    markers_by_trace
        .into_iter()
        .filter(|(_, markers)| markers.len() > 1)
        .map(|(trace, markers)| {
            (
                trace.to_string(),
                markers.into_iter().map(str::to_string).collect(),
            )
        })
        .collect()
}
