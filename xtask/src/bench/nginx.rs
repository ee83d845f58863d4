//! The nginx case: wrk with 32 keep-alive connections against nginx (one
//! worker, a 1 KiB static file) on loopback, both on this machine's cores,
//! both ends traced. Rounds alternate: without the agent, then with it in
//! each configuration, in rotating order; medians over the rounds.
//!
//! Configurations: without the agent; defaults (which inject `traceparent`
//! only into calls that leave the node: none here, so this shows what the
//! default costs local traffic against `--inject-traceparent off`);
//! `--export-file`; `--otlp-endpoint` to a local sink; `--no-tls` (what the
//! TLS probes cost clear-text traffic). Then the same nginx over HTTPS:
//! without the agent, defaults (plaintext read through OpenSSL's uprobes),
//! and `--no-tls` (the ciphertext only). Then over HTTP/2 in clear text
//! (h2c with prior knowledge), loaded by h2load with 8 connections of 4
//! concurrent streams each: without the agent, and defaults (frames and
//! HPACK parsed, a span per stream). Then through nginx as a reverse proxy
//! to itself (the same worker serves the upstream over keep-alive
//! connections): without the agent, defaults, `--export-file`; three spans
//! a request, one of them a call made while a request is in progress, so
//! the trace waits for its end before it leaves.
//!
//! Per configuration: throughput and p50/p99 latency as ratios to the rounds
//! without the agent; the agent's CPU (from `/proc`, after start-up) and the
//! kernel programs' run time (`kernel.bpf_stats_enabled`) per request; ring
//! buffer events and bytes, spans and lost events per request; the agent's
//! peak RSS. Then each program's share of the BPF time.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{Agent, Summary, free_port, median};

/// Concurrent keep-alive connections of the load, as in the case.
const CONNECTIONS: u32 = 32;
/// The HTTP/2 load: as many requests in flight, four streams per connection.
const H2_CONNECTIONS: u32 = 8;
const H2_STREAMS: u32 = 4;

pub fn measure(rounds: usize, seconds: u32) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tracer-bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure_in(&dir, rounds, seconds);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[derive(Clone)]
struct Configuration {
    name: &'static str,
    /// None: without the agent.
    agent_args: Option<Vec<String>>,
}

/// What one round of one configuration measured.
#[derive(Default)]
struct Round {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Agent rounds only.
    agent_cpu_us: f64,
    bpf_us: f64,
    events: f64,
    ring_bytes: f64,
    spans: f64,
    lost: f64,
    peak_rss_mib: f64,
}

fn measure_in(dir: &Path, rounds: usize, seconds: u32) -> Result<()> {
    let more = MorePorts {
        tls: free_port()?,
        h2c: free_port()?,
        proxy: free_port()?,
    };
    let port = free_port()?;
    let mut nginx = Nginx::start_with_ports(dir, port, Some(more), 1024)?;
    let sink = OtlpSink::start()?;
    let export_file = dir.join("spans.jsonl");
    let agent = |args: &[&str]| Some(args.iter().map(|a| a.to_string()).collect());
    let export_path = export_file.display().to_string();
    let sink_url = format!("http://{}", sink.addr);
    let http = [
        Configuration {
            name: "without agent",
            agent_args: None,
        },
        Configuration {
            name: "agent, defaults (metrics + viewer store)",
            agent_args: agent(&[]),
        },
        Configuration {
            name: "agent, --inject-traceparent off",
            agent_args: agent(&["--inject-traceparent", "off"]),
        },
        Configuration {
            name: "agent, --export-file",
            agent_args: agent(&["--export-file", &export_path]),
        },
        Configuration {
            name: "agent, --otlp-endpoint (local sink)",
            agent_args: agent(&["--otlp-endpoint", &sink_url]),
        },
        Configuration {
            name: "agent, --no-tls (TLS probes off)",
            agent_args: agent(&["--no-tls"]),
        },
    ];
    let https = [
        Configuration {
            name: "without agent",
            agent_args: None,
        },
        Configuration {
            name: "agent, defaults (plaintext read through OpenSSL)",
            agent_args: agent(&[]),
        },
        Configuration {
            name: "agent, --no-tls (ciphertext only, no spans)",
            agent_args: agent(&["--no-tls"]),
        },
    ];
    let http2 = [
        Configuration {
            name: "without agent",
            agent_args: None,
        },
        Configuration {
            name: "agent, defaults (HTTP/2 frames and HPACK parsed)",
            agent_args: agent(&[]),
        },
    ];
    // Without the agent, the defaults, the file exporter.
    let proxy = [http[0].clone(), http[1].clone(), http[3].clone()];
    let cases: [(&str, String, &[Configuration], LoadTool); 4] = [
        (
            "nginx case (HTTP)",
            format!("http://127.0.0.1:{port}/1k.bin"),
            &http[..],
            LoadTool::Wrk,
        ),
        (
            "nginx case over HTTPS (TLS 1.3, OpenSSL 3 at both ends)",
            format!("https://127.0.0.1:{}/1k.bin", more.tls),
            &https[..],
            LoadTool::Wrk,
        ),
        (
            "nginx case over HTTP/2 (h2c)",
            format!("http://127.0.0.1:{}/1k.bin", more.h2c),
            &http2[..],
            LoadTool::H2load,
        ),
        (
            "nginx as a reverse proxy to itself (HTTP, keep-alive upstream)",
            format!("http://127.0.0.1:{}/1k.bin", more.proxy),
            &proxy[..],
            LoadTool::Wrk,
        ),
    ];
    for (title, url, configurations, load) in cases {
        // Warm nginx and the page cache; not measured.
        load.run(&url, 1)?;
        let case = Case {
            title,
            url: &url,
            load,
        };
        measure_case(&case, configurations, rounds, seconds, &export_file)?;
    }
    nginx.stop();
    println!(
        "  (OTLP sink received {} bytes)",
        sink.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}

/// What drives the load against a URL.
#[derive(Clone, Copy)]
enum LoadTool {
    Wrk,
    H2load,
}

impl LoadTool {
    fn run(self, url: &str, seconds: u32) -> Result<Load> {
        match self {
            LoadTool::Wrk => wrk(url, seconds),
            LoadTool::H2load => h2load(url, seconds),
        }
    }

    fn describe(self) -> String {
        match self {
            LoadTool::Wrk => format!("wrk -c {CONNECTIONS} keep-alive"),
            LoadTool::H2load => format!("h2load -c {H2_CONNECTIONS} -m {H2_STREAMS}"),
        }
    }
}

/// One table: a URL and the load against it.
struct Case<'a> {
    title: &'a str,
    url: &'a str,
    load: LoadTool,
}

/// Rounds of each configuration against the case's URL, then their table.
fn measure_case(
    case: &Case,
    configurations: &[Configuration],
    rounds: usize,
    seconds: u32,
    export_file: &Path,
) -> Result<()> {
    let mut results: Vec<Vec<Round>> = configurations.iter().map(|_| Vec::new()).collect();
    let mut programs: Vec<(String, f64)> = Vec::new();
    let mut default_requests = 0.0;
    for round in 0..rounds {
        for step in 0..configurations.len() {
            let which = (round + step) % configurations.len();
            let configuration = &configurations[which];
            let agent = match &configuration.agent_args {
                None => None,
                Some(args) => {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    Some(Agent::start(&args)?)
                }
            };
            let cpu_before = agent.as_ref().map(Agent::cpu_seconds).transpose()?;
            let load = case.load.run(case.url, seconds)?;
            let mut result = Round {
                rate: load.requests / load.seconds,
                p50_ms: load.p50_ms,
                p99_ms: load.p99_ms,
                ..Round::default()
            };
            if let (Some(agent), Some(cpu_before)) = (agent, cpu_before) {
                // The reader collects the last events within its 20 ms timer.
                std::thread::sleep(Duration::from_millis(100));
                let cpu = agent.cpu_seconds()? - cpu_before;
                result.peak_rss_mib = agent.peak_rss_mib()?;
                let summary = agent.stop()?;
                let n = load.requests;
                result.agent_cpu_us = cpu / n * 1e6;
                result.bpf_us = summary.get("bpf_run_time_ns") / n / 1e3;
                result.events = summary.get("events_read") / n;
                result.ring_bytes = summary.get("event_bytes_read") / n;
                result.spans = summary.get("spans_produced") / n;
                result.lost = summary.get("events_lost_ring_full");
                if which == 1 {
                    add_program_times(&mut programs, &summary);
                    default_requests += n;
                }
            }
            results[which].push(result);
            let _ = std::fs::remove_file(export_file);
        }
    }
    print_table(case, configurations, &results, rounds, seconds);
    print_programs(&mut programs, default_requests);
    Ok(())
}

fn add_program_times(totals: &mut Vec<(String, f64)>, summary: &Summary) {
    for (name, _, time_ns) in &summary.programs {
        match totals.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += time_ns,
            None => totals.push((name.clone(), *time_ns)),
        }
    }
}

fn print_table(
    case: &Case,
    configurations: &[Configuration],
    results: &[Vec<Round>],
    rounds: usize,
    seconds: u32,
) {
    let column = |which: usize, field: fn(&Round) -> f64| {
        let mut values: Vec<f64> = results[which].iter().map(field).collect();
        median(&mut values)
    };
    let base_rate = column(0, |r| r.rate);
    let base_p50 = column(0, |r| r.p50_ms);
    let base_p99 = column(0, |r| r.p99_ms);
    let note = match case.load {
        LoadTool::Wrk => "",
        LoadTool::H2load => {
            " (h2load reports no percentiles: its mean request time stands in both columns)"
        }
    };
    println!(
        "\n{}: {} → nginx (1 worker, 1 KiB file), \
         {rounds} rounds × {seconds} s per configuration, medians{note}",
        case.title,
        case.load.describe()
    );
    println!(
        "| configuration | req/s | throughput ratio | p50 ms (ratio) | p99 ms (ratio) \
         | agent CPU µs/req | BPF µs/req | events/req | ring bytes/req | spans/req \
         | events lost | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (which, configuration) in configurations.iter().enumerate() {
        let rate = column(which, |r| r.rate);
        let p50 = column(which, |r| r.p50_ms);
        let p99 = column(which, |r| r.p99_ms);
        let mut line = format!(
            "| {} | {rate:.0} | {:.3} | {p50:.3} ({:.2}) | {p99:.3} ({:.2}) |",
            configuration.name,
            rate / base_rate,
            p50 / base_p50,
            p99 / base_p99
        );
        if configuration.agent_args.is_none() {
            line += " – | – | – | – | – | – | – |";
        } else {
            let max_lost = results[which].iter().map(|r| r.lost).fold(0.0, f64::max);
            let max_rss = results[which]
                .iter()
                .map(|r| r.peak_rss_mib)
                .fold(0.0, f64::max);
            line += &format!(
                " {:.1} | {:.2} | {:.2} | {:.0} | {:.3} | {max_lost:.0} (max) | {max_rss:.0} (max) |",
                column(which, |r| r.agent_cpu_us),
                column(which, |r| r.bpf_us),
                column(which, |r| r.events),
                column(which, |r| r.ring_bytes),
                column(which, |r| r.spans),
            );
        }
        println!("{line}");
    }
}

fn print_programs(programs: &mut [(String, f64)], requests: f64) {
    if requests == 0.0 {
        return;
    }
    programs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = programs.iter().map(|(_, t)| t).sum();
    println!(
        "\nBPF time per request by program (agent defaults, all rounds): {:.2} µs",
        total / requests / 1e3
    );
    for (name, time) in programs.iter().filter(|(_, t)| *t > 0.0) {
        println!(
            "  {name:<24} {:>7.3} µs  {:>5.1}%",
            time / requests / 1e3,
            100.0 * time / total
        );
    }
}

/// What one wrk run reported.
struct Load {
    requests: f64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(url: &str, seconds: u32) -> Result<Load> {
    let output = Command::new("wrk")
        .args(["-t", "1", "-c", &CONNECTIONS.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", url])
        .output()
        .context("cannot run wrk (cargo xtask setup --test-deps installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
}

fn h2load(url: &str, seconds: u32) -> Result<Load> {
    let output = Command::new("h2load")
        .args([
            "-c",
            &H2_CONNECTIONS.to_string(),
            "-m",
            &H2_STREAMS.to_string(),
        ])
        .args(["-D", &seconds.to_string(), url])
        .output()
        .context("cannot run h2load (cargo xtask setup --test-deps installs nghttp2-client)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "h2load failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_h2load(&text).with_context(|| format!("cannot read h2load's report:\n{text}"))
}

/// Reads `finished in 5.00s, ...`, `requests: N total, N started, N done,
/// N succeeded, ...` and the mean of `time for request:`; h2load gives no
/// percentiles, so the mean stands in for both.
fn parse_h2load(text: &str) -> Option<Load> {
    let mut seconds = None;
    let mut succeeded = None;
    let mut mean = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            seconds = duration_ms(rest.split(',').next()?).map(|ms| ms / 1e3);
        } else if let Some(rest) = line.strip_prefix("requests:") {
            succeeded = rest
                .split(',')
                .find_map(|part| part.trim().strip_suffix(" succeeded"))
                .and_then(|n| n.trim().parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // min, max, mean, sd, +/- sd
            mean = rest.split_whitespace().nth(2).and_then(duration_ms);
        }
    }
    let mean = mean?;
    Some(Load {
        requests: succeeded.filter(|n| *n > 0.0)?,
        seconds: seconds?,
        p50_ms: mean,
        p99_ms: mean,
    })
}

/// Reads `N requests in 5.00s`, and the 50% and 99% lines of `--latency`.
fn parse_wrk(text: &str) -> Option<Load> {
    let mut load = Load {
        requests: f64::NAN,
        seconds: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in text.lines().map(str::trim) {
        if let Some((count, rest)) = line.split_once(" requests in ") {
            load.requests = count.trim().parse().ok()?;
            load.seconds = duration_ms(rest.split(',').next()?)? / 1e3;
        } else if let Some(value) = line.strip_prefix("50%") {
            load.p50_ms = duration_ms(value.trim())?;
        } else if let Some(value) = line.strip_prefix("99%") {
            load.p99_ms = duration_ms(value.trim())?;
        }
    }
    (load.requests > 0.0 && load.p99_ms.is_finite()).then_some(load)
}

/// wrk's durations: `390.00us`, `1.10ms`, `5.00s`, `1.00m`.
fn duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].parse().ok()?;
    let scale = match &text[split..] {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        _ => return None,
    };
    Some(value * scale)
}

/// The nginx case's other listeners: the same file over HTTPS, with a
/// self-signed certificate made for it; over HTTP/2 in clear text (prior
/// knowledge); and through a proxy (a second server of the same nginx
/// whose upstream is the first, over keep-alive connections).
#[derive(Clone, Copy)]
struct MorePorts {
    tls: u16,
    h2c: u16,
    proxy: u16,
}

/// nginx serving a 1 KiB file from `dir`, one process (no master).
pub(super) struct Nginx(Child);

impl Nginx {
    /// nginx on 127.0.0.1:`port`, open to `connections` at once.
    pub(super) fn start(dir: &Path, port: u16, connections: u32) -> Result<Nginx> {
        Nginx::start_with_ports(dir, port, None, connections)
    }

    /// `start`, and the same over `more_ports`.
    fn start_with_ports(
        dir: &Path,
        port: u16,
        more_ports: Option<MorePorts>,
        connections: u32,
    ) -> Result<Nginx> {
        let root: PathBuf = dir.join("www");
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("1k.bin"), [b'x'; 1024])?;
        let d = dir.display();
        let (tls_listen, proxy_server) = match more_ports {
            None => (String::new(), String::new()),
            Some(MorePorts { tls, h2c, proxy }) => {
                make_certificate(dir)?;
                (
                    format!(
                        "listen 127.0.0.1:{tls} ssl;
        listen 127.0.0.1:{h2c} http2;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;"
                    ),
                    format!(
                        "upstream files {{ server 127.0.0.1:{port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://files;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}"
                    ),
                )
            }
        };
        // As Debian's default configuration serves files (sendfile, access
        // log), with enough keep-alive requests that wrk keeps its connections.
        let config = format!(
            "master_process off;
worker_processes 1;
error_log stderr warn;
pid {d}/nginx.pid;
worker_rlimit_nofile {files};
events {{ worker_connections {connections}; }}
http {{
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {tls_listen}
        root {};
    }}
    {proxy_server}
}}
",
            root.display(),
            files = connections + 64,
        );
        std::fs::write(dir.join("nginx.conf"), config)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start nginx (cargo xtask setup --test-deps installs it)")?;
        let nginx = Nginx(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("nginx did not listen on {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }

    pub(super) fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed certificate and its key in `dir` (`cert.pem`, `key.pem`).
fn make_certificate(dir: &Path) -> Result<()> {
    let output = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .context("cannot run openssl (cargo xtask setup --test-deps installs it)")?;
    if !output.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A minimal OTLP/HTTP receiver: answers every POST with 200 and counts the
/// bytes, so the exporter's cost is measured without a collector's.
struct OtlpSink {
    addr: std::net::SocketAddr,
    bytes: Arc<AtomicU64>,
}

impl OtlpSink {
    fn start() -> Result<OtlpSink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let _ = serve_otlp(stream, &counted);
                });
            }
        });
        Ok(OtlpSink { addr, bytes })
    }
}

/// Keep-alive HTTP/1.1: reads each request's head and `Content-Length`
/// body, answers 200 with an empty body.
fn serve_otlp(stream: TcpStream, bytes: &AtomicU64) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        bytes.fetch_add(length as u64, Ordering::Relaxed);
        writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        )?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_h2load_report() {
        let report = "finished in 5.00s, 61234.40 req/s, 70.12MB/s
requests: 306172 total, 306172 started, 306172 done, 306170 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 306170 2xx, 0 3xx, 0 4xx, 0 5xx
                     min         max         mean         sd        +/- sd
time for request:      112us     12.31ms       512us       201us    91.02%
";
        let load = parse_h2load(report).expect("a report");
        assert_eq!(load.requests, 306170.0);
        assert_eq!(load.seconds, 5.0);
        assert!((load.p50_ms - 0.512).abs() < 1e-9);
        assert!(parse_h2load("garbage").is_none());
    }

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 5s test @ http://127.0.0.1:8080/1k.bin
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.00us  200.00us   4.80ms   90.00%
  Latency Distribution
     50%  390.00us
     75%  450.00us
     90%  600.00us
     99%    1.10ms
  385000 requests in 5.00s, 400.00MB read
Requests/sec:  77000.00
";
        let load = parse_wrk(report).unwrap();
        assert_eq!(load.requests, 385000.0);
        assert_eq!(load.seconds, 5.0);
        assert!((load.p50_ms - 0.39).abs() < 1e-9);
        assert!((load.p99_ms - 1.1).abs() < 1e-9);
        assert!(parse_wrk("garbage").is_none());
        assert_eq!(duration_ms("1.00m"), Some(60_000.0));
        assert_eq!(duration_ms("12parsecs"), None);
    }
}
