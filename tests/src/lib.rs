//! Helpers for the privileged end-to-end tests: run the real agent binary,
//! real servers and real clients, and read back the spans it exported.
//!
//! The agent writes OTLP/JSON lines (`--export-file`); the tests parse that
//! file, so they check the exported format too.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod runtimes;
pub mod services;

/// Fails the test unless it runs as root: these tests load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs: run them as root (`sudo -E cargo xtask test`)"
    );
}

/// The agent binary under test: `TRACER_AGENT_BIN`, else the debug build
/// next to this test binary (`cargo xtask test` builds it first).
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TRACER_AGENT_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let target_profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = target_profile_dir.join("tracer-agent");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        binary.display()
    );
    binary
}

/// Where `cargo xtask setup --test-deps` puts the test tools that come from
/// language registries (Phoenix's virtualenv, playwright-core):
/// `TRACER_TEST_TOOLS`, else `~/.cache/tracer-tests`.
pub fn test_tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRACER_TEST_TOOLS") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/tracer-tests")
}

pub fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("servers")
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A new empty directory, unique to this call (two agents in one test each
/// get their own).
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tracer-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A child process killed when dropped, so a failing test leaves nothing behind.
pub struct Process {
    pub child: Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns `cmd` with piped stdin/stdout and waits for `line` on its stdout.
    pub fn spawn_until(cmd: &mut Command, line: &str) -> Process {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut seen = String::new();
        loop {
            seen.clear();
            let n = stdout.read_line(&mut seen).expect("read child stdout");
            assert!(n > 0, "{cmd:?} exited before printing {line:?}");
            if seen.trim() == line {
                break;
            }
        }
        Process {
            child,
            stdout: Some(stdout),
        }
    }

    /// Wraps an already spawned child.
    pub fn from_child(child: Child) -> Process {
        Process {
            child,
            stdout: None,
        }
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("piped stdin")
    }

    /// The rest of stdout, after the child exits.
    pub fn wait_output(mut self) -> String {
        let mut rest = String::new();
        if let Some(mut stdout) = self.stdout.take() {
            std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read child stdout");
        }
        let status = self.child.wait().expect("wait child");
        assert!(status.success(), "child failed: {status}");
        rest
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `server.py`-style servers from `tests/servers` on `port`.
pub fn python_server(port: u16, service_name: &str) -> Process {
    Process::spawn_until(
        Command::new("python3")
            .arg(servers_dir().join("http11_server.py"))
            .arg(port.to_string())
            .env("OTEL_SERVICE_NAME", service_name),
        "ready",
    )
}

pub fn node_server(port: u16) -> Process {
    Process::spawn_until(
        Command::new("node")
            .arg(servers_dir().join("node_server.js"))
            .arg(port.to_string())
            .env_remove("OTEL_SERVICE_NAME"),
        "ready",
    )
}

/// GET `url` with `query` pairs (URL-encoded by curl); the status and body.
pub fn http_get(url: &str, query: &[(&str, &str)]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--get", "--write-out", "\n%{http_code}"]);
    for (key, value) in query {
        cmd.arg("--data-urlencode").arg(format!("{key}={value}"));
    }
    let output = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Runs `tests/browser/SCRIPT` (playwright-core in the test tools, driving
/// Debian's Chromium) with `args` then `out` (where it keeps screenshots);
/// what it printed, as JSON.
pub fn browser(script: &str, args: &[String], out: &Path) -> Value {
    std::fs::create_dir_all(out).expect("create screenshot directory");
    let output = Command::new("node")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("browser")
                .join(script),
        )
        .args(args)
        .arg(out)
        .env("NODE_PATH", test_tools_dir().join("browser/node_modules"))
        .output()
        .expect("run node (cargo xtask setup --test-deps installs playwright-core)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    println!("screenshots in {}", out.display());
    json(&String::from_utf8_lossy(&output.stdout))
}

/// The running agent.
pub struct Agent {
    child: Child,
    export: PathBuf,
    stderr: Arc<Mutex<String>>,
    /// Where it serves metrics and the viewer (`host:port`), if it does.
    pub http_addr: Option<String>,
}

/// What an agent run produced.
pub struct AgentRun {
    pub spans: Vec<SpanRecord>,
    pub stderr: String,
    pub status: ExitStatus,
}

impl AgentRun {
    /// A `name=value` field of the agent's exit summary line.
    pub fn summary(&self, name: &str) -> u64 {
        let key = format!("{name}=");
        self.stderr
            .lines()
            .filter(|l| l.contains("stopped:"))
            .flat_map(|l| l.split_whitespace())
            .find_map(|field| field.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the agent's summary:\n{}", self.stderr))
    }

    /// Spans whose server port is `port` (the traffic of one test).
    pub fn spans_on_port(&self, port: u16) -> Vec<&SpanRecord> {
        self.spans
            .iter()
            .filter(|s| s.int("server.port") == Some(port as i64))
            .collect()
    }
}

impl Agent {
    /// Starts the agent with `args` (plus `--export-file`, `--quiet`, and
    /// metrics on a free port unless `args` name one) and waits until its
    /// programs are attached.
    pub fn start(args: &[&str]) -> Agent {
        Agent::launch(&[], args, &[])
    }

    /// `start` with these environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, String)]) -> Agent {
        Agent::launch(&[], args, env)
    }

    /// `start` with the agent run by `command` (`setpriv ... -- AGENT`,
    /// `podman run ... IMAGE`), which must end where the agent's flags begin.
    pub fn start_as(command: &[&str], args: &[&str]) -> Agent {
        Agent::launch(command, args, &[])
    }

    fn launch(runner: &[&str], args: &[&str], env: &[(&str, String)]) -> Agent {
        let export = temp_dir("agent").join("spans.jsonl");
        let mut command = match runner.split_first() {
            Some((program, runner_args)) => {
                let mut command = Command::new(program);
                command.args(runner_args);
                command
            }
            None => Command::new(agent_binary()),
        };
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command.args(["--quiet", "--export-file"]).arg(&export);
        if !args.contains(&"--metrics-addr") {
            command.args(["--metrics-addr", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tracer-agent");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = BufReader::new(child.stderr.take().expect("piped stderr"));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if line.contains("tracepoints attached") {
                    let _ = ready_tx.send(());
                }
                let mut all = sink.lock().expect("stderr lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        let started = Instant::now();
        while ready_rx.recv_timeout(Duration::from_millis(100)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "agent exited ({status}) before attaching:\n{}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "agent did not attach within 60 s:\n{}",
                stderr.lock().unwrap()
            );
        }
        let http_addr = stderr
            .lock()
            .expect("stderr lock")
            .lines()
            .find_map(|l| l.split("metrics on http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .map(str::to_string);
        Agent {
            child,
            export,
            stderr,
            http_addr,
        }
    }

    /// Freezes it (SIGSTOP): it reads no events until `resume`, as an agent
    /// starved of CPU would, while its kernel programs go on.
    pub fn pause(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    /// Its Prometheus text, once the spans made so far reached the metrics
    /// (the pipeline holds spans 100 ms before passing them on).
    pub fn metrics(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let addr = self.http_addr.as_deref().expect("the agent serves metrics");
        let scrape = Command::new("curl")
            .args(["-s", &format!("http://{addr}/metrics")])
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&scrape.stdout).into_owned()
    }

    /// Stops it with SIGINT (as Ctrl-C would) and reads what it exported.
    pub fn stop(self) -> AgentRun {
        self.stop_with(libc::SIGINT)
    }

    /// Stops it with `signal` and reads what it exported.
    pub fn stop_with(mut self, signal: i32) -> AgentRun {
        // Give the reader's timer a moment to collect the last events.
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        // Let the stderr thread read the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr.lock().expect("stderr lock").clone();
        let text = std::fs::read_to_string(&self.export).unwrap_or_default();
        let spans = parse_spans(&text);
        AgentRun {
            spans,
            stderr,
            status,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait agent") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "agent did not exit within {limit:?} of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One exported span, flattened with its resource.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub service: String,
    pub pid: i64,
    pub name: String,
    /// OTLP SpanKind: 2 server, 3 client.
    pub kind: i64,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// OTLP status code: 0 unset, 2 error.
    pub status_code: i64,
    pub resource: HashMap<String, Value>,
    pub attributes: HashMap<String, Value>,
}

pub const SERVER: i64 = 2;
pub const CLIENT: i64 = 3;

impl SpanRecord {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key)?.get("stringValue")?.as_str()
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.attributes
            .get(key)?
            .get("intValue")?
            .as_str()?
            .parse()
            .ok()
    }

    pub fn duration_secs(&self) -> f64 {
        (self.end_ns as f64 - self.start_ns as f64) / 1e9
    }
}

/// Parses OTLP/JSON lines as the agent writes them.
pub fn parse_spans(text: &str) -> Vec<SpanRecord> {
    let mut spans = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let request: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {line}"));
        for resource_spans in request["resourceSpans"].as_array().expect("resourceSpans") {
            let resource = key_values(&resource_spans["resource"]["attributes"]);
            let service = resource["service.name"]["stringValue"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let pid = resource["process.pid"]["intValue"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for scope in resource_spans["scopeSpans"].as_array().expect("scopeSpans") {
                for span in scope["spans"].as_array().expect("spans") {
                    let ns =
                        |key: &str| span[key].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
                    spans.push(SpanRecord {
                        service: service.clone(),
                        pid,
                        name: span["name"].as_str().unwrap_or_default().to_string(),
                        kind: span["kind"].as_i64().unwrap_or(0),
                        trace_id: span["traceId"].as_str().unwrap_or_default().to_string(),
                        span_id: span["spanId"].as_str().unwrap_or_default().to_string(),
                        parent_span_id: span["parentSpanId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        start_ns: ns("startTimeUnixNano"),
                        end_ns: ns("endTimeUnixNano"),
                        status_code: span["status"]["code"].as_i64().unwrap_or(0),
                        resource: resource.clone(),
                        attributes: key_values(&span["attributes"]),
                    });
                }
            }
        }
    }
    spans
}

fn key_values(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| Some((kv["key"].as_str()?.to_string(), kv["value"].clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Three GETs of `prefix0`..`prefix2` to 127.0.0.1:`port` (curl, one
/// connection); their paths.
pub fn three_requests(port: u16, prefix: &str) -> Vec<String> {
    let paths: Vec<String> = (0..3).map(|i| format!("{prefix}{i}")).collect();
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("http://127.0.0.1:{port}{p}"))
        .collect();
    curl(&[], &urls);
    paths
}

/// Runs curl on `urls` (one keep-alive connection) with `extra` arguments.
/// Returns the total time curl observed per transfer, in seconds.
pub fn curl(extra: &[&str], urls: &[String]) -> Vec<f64> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--output", "/dev/null"])
        // A service that stops answering fails its test instead of hanging it.
        .args(["--max-time", "30"])
        .args(["--write-out", "%{time_total}\\n"])
        .args(extra)
        .args(
            urls.iter()
                .flat_map(|u| ["--output", "/dev/null", u.as_str()]),
        )
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("curl time_total"))
        .collect()
}

/// Sends a line to a child waiting on stdin.
pub fn signal_go(process: &mut Process) {
    writeln!(process.stdin(), "go").expect("write to child");
}
