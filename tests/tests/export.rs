//! Where traces go, checked against tools nobody here wrote: a real OTLP
//! backend (Arize Phoenix), a real Prometheus scraping the agent, and the
//! built-in viewer driven in headless Chromium.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{
    Agent, Process, browser, curl, free_port, http_get, json, python_server, require_root,
    services::{Hop, chain, drive, run_nginx},
    temp_dir, test_tools_dir, three_requests,
};

/// Polls `check` every half second until it returns `Some`, or fails after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Spawns `cmd` with its output in `log`, killed when dropped.
fn spawn_logged(cmd: &mut Command, log: &Path) -> Process {
    let file = std::fs::File::create(log).expect("create log");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    Process::from_child(child)
}

/// Arize Phoenix, installed from PyPI by `cargo xtask setup`, serving OTLP
/// on free ports with its data in `dir` (kept across restarts).
struct Phoenix {
    http_port: u16,
    grpc_port: u16,
    dir: std::path::PathBuf,
    process: Option<Process>,
}

impl Phoenix {
    fn start(dir: std::path::PathBuf) -> Phoenix {
        let mut phoenix = Phoenix {
            http_port: free_port(),
            grpc_port: free_port(),
            dir,
            process: None,
        };
        phoenix.restart();
        phoenix
    }

    fn restart(&mut self) {
        let log = self.dir.join(format!("phoenix-{}.log", self.http_port));
        let process = spawn_logged(
            Command::new(test_tools_dir().join("phoenix/bin/phoenix"))
                .arg("serve")
                .current_dir(&self.dir)
                .env("PHOENIX_WORKING_DIR", &self.dir)
                .env("PHOENIX_HOST", "127.0.0.1")
                .env("PHOENIX_PORT", self.http_port.to_string())
                .env("PHOENIX_GRPC_PORT", self.grpc_port.to_string())
                .env("PHOENIX_TELEMETRY_ENABLED", "false"),
            &log,
        );
        self.process = Some(process);
        let health = format!("http://127.0.0.1:{}/healthz", self.http_port);
        wait_for("Phoenix answers", Duration::from_secs(180), || {
            (http_get(&health, &[]).0 == 200).then_some(())
        });
    }

    fn stop(&mut self) {
        self.process = None;
    }

    /// The spans Phoenix stored, as its REST API returns them (OTLP-shaped).
    fn spans(&self) -> Vec<Value> {
        let (status, body) = http_get(
            &format!(
                "http://127.0.0.1:{}/v1/projects/default/spans/otlpv1",
                self.http_port
            ),
            &[("limit", "1000")],
        );
        if status != 200 {
            return Vec::new();
        }
        json(&body)["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until Phoenix holds the client and server span of each path in
    /// `paths`, and returns those spans.
    fn wait_for_requests(&self, paths: &[String]) -> Vec<Value> {
        wait_for("Phoenix has the spans", Duration::from_secs(60), || {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| {
                    paths
                        .iter()
                        .any(|p| attribute(s, "url.path") == Some(p.clone()))
                })
                .collect();
            (spans.len() >= 2 * paths.len()).then_some(spans)
        })
    }
}

/// A span attribute from Phoenix's answer, as text.
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)?["value"];
    value["string_value"]
        .as_str()
        .map(str::to_string)
        .or_else(|| value["int_value"].as_i64().map(|i| i.to_string()))
}

/// Each request's two spans: one trace, the server span the child of the
/// client span.
fn assert_pairs(spans: &[Value], paths: &[String]) {
    for path in paths {
        let of_path: Vec<&Value> = spans
            .iter()
            .filter(|s| attribute(s, "url.path").as_deref() == Some(path.as_str()))
            .collect();
        assert_eq!(of_path.len(), 2, "{path}: {of_path:#?}");
        let client = of_path
            .iter()
            .find(|s| attribute(s, "url.full").is_some())
            .expect("client span");
        let server = of_path
            .iter()
            .find(|s| attribute(s, "url.full").is_none())
            .expect("server span");
        assert_eq!(client["trace_id"], server["trace_id"], "{path}: one trace");
        assert_eq!(
            server["parent_span_id"], client["span_id"],
            "{path}: parent"
        );
        assert_eq!(server["name"], format!("GET {path}").as_str());
    }
}

fn metric(addr: &str, line_start: &str) -> u64 {
    let (_, text) = http_get(&format!("http://{addr}/metrics"), &[]);
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Spans reach Phoenix over OTLP/HTTP and OTLP/gRPC with their links intact;
/// with Phoenix stopped for a while the agent queues and retries, and after
/// Phoenix restarts the spans of the outage arrive.
#[test]
fn otlp_reaches_phoenix_and_survives_its_restart() {
    require_root();
    let mut phoenix = Phoenix::start(temp_dir("phoenix"));
    let port = free_port();
    let _server = python_server(port, "inventory");
    let request = |tag: &str| three_requests(port, &format!("/hello-phoenix/{tag}"));

    let http_endpoint = format!("http://127.0.0.1:{}", phoenix.http_port);
    let agent = Agent::start(&[
        "--otlp-endpoint",
        &http_endpoint,
        "--otlp-protocol",
        "http/protobuf",
        "--otlp-batch-delay-ms",
        "200",
    ]);
    let over_http = request("http");
    let spans = phoenix.wait_for_requests(&over_http);
    assert_pairs(&spans, &over_http);
    let run = agent.stop();
    assert!(run.stderr.contains("otlp: exported="), "{}", run.stderr);

    let grpc_endpoint = format!("http://127.0.0.1:{}", phoenix.grpc_port);
    let agent = Agent::start(&[
        "--otlp-endpoint",
        &grpc_endpoint,
        "--otlp-protocol",
        "grpc",
        "--otlp-batch-delay-ms",
        "200",
    ]);
    let addr = agent.http_addr.clone().expect("metrics address");
    let over_grpc = request("grpc");
    assert_pairs(&phoenix.wait_for_requests(&over_grpc), &over_grpc);

    phoenix.stop();
    let during_outage = request("outage");
    wait_for(
        "the agent notices the outage",
        Duration::from_secs(30),
        || (metric(&addr, "tracer_export_failures_total{exporter=\"otlp\"}") > 0).then_some(()),
    );
    // The outage's six spans wait in the queue (with the metric scrapes' own).
    wait_for(
        "the spans wait in the queue",
        Duration::from_secs(30),
        || (metric(&addr, "tracer_export_queue_spans{exporter=\"otlp\"}") >= 6).then_some(()),
    );
    phoenix.restart();
    assert_pairs(&phoenix.wait_for_requests(&during_outage), &during_outage);
    assert_eq!(
        metric(&addr, "tracer_spans_dropped_total{exporter=\"otlp\"}"),
        0
    );
    wait_for("the queue empties", Duration::from_secs(30), || {
        (metric(&addr, "tracer_export_queue_spans{exporter=\"otlp\"}") == 0).then_some(())
    });
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("accepts spans again"), "{}", run.stderr);
    // The agent's own exports to Phoenix (on this node) are not traced back.
    assert!(
        phoenix
            .spans()
            .iter()
            .all(|s| attribute(s, "user_agent.original")
                .is_none_or(|ua| !ua.starts_with("tracer-agent/"))),
        "an export traced itself"
    );
}

/// A certificate authority of the test's own, the certificates it signs,
/// and an unrelated one (`openssl`, EC keys).
struct TestPki {
    dir: std::path::PathBuf,
}

impl TestPki {
    fn new(dir: std::path::PathBuf) -> TestPki {
        let pki = TestPki { dir };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=tracer test {ca}"),
                "-keyout",
                &pki.path(&format!("{ca}.key")),
                "-out",
                &pki.path(&format!("{ca}.pem")),
            ]);
        }
        pki.sign(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        pki.sign("client", "extendedKeyUsage=clientAuth");
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `name.pem` and `name.key`, signed by `ca` with these extensions.
    fn sign(&self, name: &str, extensions: &str) {
        std::fs::write(self.dir.join(format!("{name}.ext")), extensions).expect("write ext");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &self.path(&format!("{name}.csr")),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &self.path(&format!("{name}.csr")),
            "-CA",
            &self.path("ca.pem"),
            "-CAkey",
            &self.path("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &self.path(&format!("{name}.ext")),
            "-out",
            &self.path(&format!("{name}.pem")),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let made = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl (Debian: apt-get install openssl)");
        assert!(made.status.success(), "openssl {args:?}: {made:?}");
    }
}

/// OTLP/HTTP over TLS and OTLP/gRPC over mutual TLS reach Phoenix through
/// nginx terminating TLS with the test's own CA (given by flag, then by the
/// standard variables); a CA that did not sign the endpoint's certificate
/// fails on one line that says so, and the spans wait in the queue.
#[test]
fn otlp_over_tls_and_mutual_tls_reaches_phoenix() {
    require_root();
    let phoenix = Phoenix::start(temp_dir("phoenix"));
    let pki = TestPki::new(temp_dir("pki"));
    let (https_port, grpc_mtls_port) = (free_port(), free_port());
    let nginx_dir = temp_dir("nginx-otlp-tls");
    let _nginx = run_nginx(
        &nginx_dir,
        &format!(
            "ssl_certificate {server_pem};
    ssl_certificate_key {server_key};
    server {{
        listen 127.0.0.1:{https_port} ssl;
        location / {{ proxy_pass http://127.0.0.1:{http}; }}
    }}
    server {{
        listen 127.0.0.1:{grpc_mtls_port} ssl http2;
        ssl_verify_client on;
        ssl_client_certificate {ca};
        location / {{ grpc_pass grpc://127.0.0.1:{grpc}; }}
    }}",
            server_pem = pki.path("server.pem"),
            server_key = pki.path("server.key"),
            ca = pki.path("ca.pem"),
            http = phoenix.http_port,
            grpc = phoenix.grpc_port,
        ),
        grpc_mtls_port,
    );
    let port = free_port();
    let _server = python_server(port, "inventory");
    let request = |tag: &str| three_requests(port, &format!("/hello-tls/{tag}"));

    let https_endpoint = format!("https://127.0.0.1:{https_port}");
    let agent = Agent::start(&[
        "--otlp-endpoint",
        &https_endpoint,
        "--otlp-certificate",
        &pki.path("ca.pem"),
        "--otlp-batch-delay-ms",
        "200",
    ]);
    let over_https = request("https");
    assert_pairs(&phoenix.wait_for_requests(&over_https), &over_https);
    let run = agent.stop();
    assert!(run.stderr.contains("otlp: exported="), "{}", run.stderr);

    // gRPC with a client certificate, all from the standard variables.
    let agent = Agent::start_with_env(
        &["--otlp-batch-delay-ms", "200"],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("https://127.0.0.1:{grpc_mtls_port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem")),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                pki.path("client.pem"),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("client.key")),
        ],
    );
    let over_mtls = request("mtls");
    assert_pairs(&phoenix.wait_for_requests(&over_mtls), &over_mtls);
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);

    let agent = Agent::start(&[
        "--otlp-endpoint",
        &https_endpoint,
        "--otlp-certificate",
        &pki.path("other-ca.pem"),
        "--otlp-batch-delay-ms",
        "200",
    ]);
    let addr = agent.http_addr.clone().expect("metrics address");
    request("wrong-ca");
    wait_for("the export fails", Duration::from_secs(30), || {
        (metric(&addr, "tracer_export_failures_total{exporter=\"otlp\"}") > 0).then_some(())
    });
    let run = agent.stop();
    let failure: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("OTLP export to"))
        .collect();
    assert_eq!(failure.len(), 1, "{}", run.stderr);
    assert!(
        failure[0].contains("invalid peer certificate")
            && failure[0].contains("--otlp-certificate"),
        "{}",
        failure[0]
    );
}

/// Debian's Prometheus scrapes the agent every second; its query API then
/// returns the request rate and a latency quantile of a traced server.
#[test]
fn prometheus_scrapes_request_rate_and_latency() {
    require_root();
    let agent = Agent::start(&[]);
    let agent_addr = agent.http_addr.clone().expect("agent serves metrics");
    let port = free_port();
    let _server = python_server(port, "checkout");

    let dir = temp_dir("prometheus");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tracer\n    \
             static_configs:\n      - targets: ['{agent_addr}']\n"
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let _prometheus = spawn_logged(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}")),
        &dir.join("prometheus.log"),
    );
    let query = |promql: &str| -> Option<f64> {
        let (status, body) = http_get(
            &format!("http://127.0.0.1:{prometheus_port}/api/v1/query"),
            &[("query", promql)],
        );
        if status != 200 {
            return None;
        }
        let value = json(&body)["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()?;
        (value.is_finite() && value > 0.0).then_some(value)
    };

    let rate = r#"sum(rate(http_server_request_duration_seconds_count{service_name="checkout",http_route="/hello",http_response_status_code="200"}[20s]))"#;
    let p90 = r#"histogram_quantile(0.9, sum by (le) (rate(http_server_request_duration_seconds_bucket{service_name="checkout"}[20s])))"#;
    let (rate, p90) = wait_for(
        "Prometheus has the rate and latency",
        Duration::from_secs(90),
        || {
            curl(&[], &vec![format!("http://127.0.0.1:{port}/hello"); 5]);
            Some((query(rate)?, query(p90)?))
        },
    );
    assert!(
        rate > 0.0 && p90 > 0.0 && p90 <= 10.0,
        "rate {rate}, p90 {p90}"
    );
    let up = query(r#"up{job="tracer"}"#);
    assert_eq!(up, Some(1.0), "the agent's target is up");
    assert!(query("tracer_spans_produced_total").is_some());
    let routes =
        query(r#"count(http_server_request_duration_seconds_count{service_name="checkout"})"#);
    assert_eq!(routes, Some(1.0), "one series: /hello 200");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
}

/// The viewer in headless Chromium: a request through three services shows
/// as one trace whose waterfall has the six spans in parent order, and the
/// service map draws the calls. Screenshots stay in the test's directory.
#[test]
fn viewer_shows_a_trace_waterfall_in_chromium() {
    require_root();
    let chain = chain([Hop::PythonThreads, Hop::Node, Hop::PythonAsyncio]);
    let agent = Agent::start(&[]);
    let addr = agent.http_addr.clone().expect("agent serves the viewer");
    let markers = drive(chain.ports[0], 1, 2);
    let marker = &markers[1];
    // The page, its assets and the API answer without anything else running.
    let (status, page) = http_get(&format!("http://{addr}/"), &[]);
    assert_eq!(status, 200);
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no outside assets"
    );

    // Kept after the run: target/test-output/viewer/*.png.
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/viewer");
    let shown = browser(
        "viewer.js",
        &[format!("http://{addr}/"), format!("/req/{marker}")],
        &out,
    );
    for png in [
        "viewer-traces.png",
        "viewer-waterfall.png",
        "viewer-service-map.png",
        "viewer-bottlenecks.png",
    ] {
        let size = std::fs::metadata(out.join(png))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 1000, "{png} missing or empty");
    }
    assert_eq!(shown["errors"], Value::Array(vec![]), "page errors");

    let spans = shown["spans"].as_array().expect("spans");
    let rows: Vec<(String, String, i64)> = spans
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap_or_default().to_string(),
                s["kind"].as_str().unwrap_or_default().to_string(),
                s["depth"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let expected: Vec<(String, String, i64)> = [
        ("curl", "client"),
        ("svc-a", "server"),
        ("svc-a", "client"),
        ("svc-b", "server"),
        ("svc-b", "client"),
        ("svc-c", "server"),
    ]
    .iter()
    .enumerate()
    .map(|(depth, (service, kind))| (service.to_string(), kind.to_string(), depth as i64))
    .collect();
    assert_eq!(rows, expected, "waterfall rows: {shown:#}");
    for span in spans {
        assert!(
            span["name"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("/req/{marker}")),
            "{span}"
        );
    }
    let details = shown["details"].as_str().unwrap_or_default();
    assert!(details.contains("http.request.method = GET"), "{details}");

    // The API behind it agrees with the page.
    let trace_id = shown["traceId"].as_str().expect("trace id");
    let (status, body) = http_get(&format!("http://{addr}/api/traces/{trace_id}"), &[]);
    assert_eq!(status, 200);
    let trace = json(&body);
    assert_eq!(trace["spans"].as_array().map(Vec::len), Some(6));
    // The critical path covers the root span's time once; in a chain every
    // server span is on it, and the page marks it on their bars.
    let root_ms = trace["spans"][0]["duration_ms"].as_f64().expect("root");
    let path_ms: f64 = trace["critical_path"]
        .as_array()
        .expect("critical path")
        .iter()
        .filter_map(|s| s["duration_ms"].as_f64())
        .sum();
    assert!(
        (path_ms - root_ms).abs() < 0.01,
        "{path_ms} vs {root_ms}: {trace:#}"
    );
    for span in spans.iter().filter(|s| s["kind"] == "server") {
        assert!(span["criticalMs"].as_f64() > Some(0.0), "{span}");
        assert!(span["criticalMarks"].as_i64() > Some(0), "{span}");
    }
    let edges: Vec<(String, String)> = shown["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["caller"].as_str().unwrap_or_default().to_string(),
                e["callee"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (caller, callee) in [("curl", "svc-a"), ("svc-a", "svc-b"), ("svc-b", "svc-c")] {
        assert!(
            edges.contains(&(caller.to_string(), callee.to_string())),
            "service map lacks {caller} → {callee}: {edges:?}"
        );
    }
    // The bottleneck page ranks where the traces' critical-path time went:
    // shares that add up to the whole, the chain's services among them.
    let ranked = shown["bottlenecks"].as_array().expect("bottlenecks");
    let shares: f64 = ranked.iter().filter_map(|b| b["share"].as_f64()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "{ranked:?}");
    for service in ["svc-a", "svc-b", "svc-c"] {
        assert!(ranked.iter().any(|b| b["service"] == service), "{ranked:?}");
    }
    let (status, body) = http_get(
        &format!("http://{addr}/api/bottlenecks"),
        &[("quantile", "2")],
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_get(&format!("http://{addr}/api/traces/{}", "0".repeat(32)), &[]);
    assert_eq!(status, 404, "{body}");
    let (status, body) = http_get(
        &format!("http://{addr}/api/traces"),
        &[("min_duration_ms", "x")],
    );
    assert_eq!(status, 400, "{body}");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
}

/// The viewer on an address of its own, over TLS and behind a token: no
/// token is a 401 that asks for Basic authentication, a bearer token or
/// the Basic password opens it, a client that does not trust the CA is
/// refused; /metrics on its own address stays open and serves nothing else.
#[test]
fn viewer_behind_token_and_tls_while_metrics_stays_open() {
    require_root();
    let pki = TestPki::new(temp_dir("pki"));
    let token_file = pki.dir.join("viewer-token");
    std::fs::write(&token_file, "open-sesame-42\n").expect("write token");
    let (metrics_port, viewer_port) = (free_port(), free_port());
    let agent = Agent::start(&[
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
        "--viewer-addr",
        &format!("127.0.0.1:{viewer_port}"),
        "--viewer-token-file",
        token_file.to_str().expect("utf-8 path"),
        "--viewer-tls-certificate",
        &pki.path("server.pem"),
        "--viewer-tls-key",
        &pki.path("server.key"),
    ]);
    let ca = pki.path("ca.pem");
    // curl's exit code and the HTTP status it saw.
    let fetch = |args: &[&str], url: String| -> (i32, String) {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(url)
            .output()
            .expect("run curl");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let viewer = |path: &str| format!("https://127.0.0.1:{viewer_port}{path}");
    assert_eq!(fetch(&["--cacert", &ca], viewer("/api/store")).1, "401");
    let challenge = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert", &ca])
        .arg(viewer("/"))
        .output()
        .expect("run curl");
    assert!(
        String::from_utf8_lossy(&challenge.stdout)
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{challenge:?}"
    );
    let bearer = "Authorization: Bearer open-sesame-42";
    assert_eq!(
        fetch(&["--cacert", &ca, "-H", bearer], viewer("/api/store")).1,
        "200"
    );
    assert_eq!(
        fetch(
            &["--cacert", &ca, "-H", "Authorization: Bearer open-sesame-4"],
            viewer("/api/store")
        )
        .1,
        "401"
    );
    assert_eq!(
        fetch(&["--cacert", &ca, "-u", "me:open-sesame-42"], viewer("/")).1,
        "200"
    );
    // A client that trusts another CA does not get through the handshake.
    let (code, _) = fetch(
        &["--cacert", &pki.path("other-ca.pem"), "-H", bearer],
        viewer("/"),
    );
    assert_eq!(code, 60, "curl: certificate not verified");

    let metrics = |path: &str| format!("http://127.0.0.1:{metrics_port}{path}");
    assert_eq!(fetch(&[], metrics("/metrics")).1, "200");
    assert_eq!(fetch(&["-H", bearer], metrics("/api/store")).1, "404");
    let run = agent.stop();
    assert!(
        run.stderr.contains(&format!(
            "trace viewer on https://127.0.0.1:{viewer_port}/ (token required)"
        )),
        "{}",
        run.stderr
    );
}
