//! The runtime matrix of the accuracy benchmark: a front service per runtime
//! that awaits a random 0–5 ms, calls an `aux` service, then calls a `leaf`
//! (once, or twice in parallel) through its runtime's usual pooled client.
//! These are the handlers that await before they call: a thread's last read
//! does not tell which request an event loop's call is for.

use std::{path::PathBuf, process::Command};

use crate::{CLIENT, Process, SERVER, SpanRecord, servers_dir, services::spans_of, temp_dir};

#[derive(Clone, Copy, Debug)]
pub enum Front {
    /// Python `ThreadingHTTPServer`; its fan-out goes through a
    /// `concurrent.futures` pool (a hand-off to other threads).
    PythonThreads,
    /// Go `net/http` server and `http.Client`; fan-out in goroutines.
    Go,
    /// Node.js `http` server, `http.Agent` keep-alive; fan-out `Promise.all`.
    NodeHttpAgent,
    /// Node.js `http` server, global `fetch` (undici).
    NodeFetch,
    /// `NodeHttpAgent`, the agent with `--node-context-script`.
    NodeHttpAgentScript,
    /// `NodeFetch`, the agent with `--node-context-script`.
    NodeFetchScript,
    /// aiohttp server and `ClientSession` (asyncio); fan-out `gather`.
    Aiohttp,
    /// Plain asyncio streams, server and a small client pool; fan-out `gather`.
    AsyncioStreams,
}

impl Front {
    pub const ALL: [Front; 8] = [
        Front::PythonThreads,
        Front::Go,
        Front::NodeHttpAgent,
        Front::NodeFetch,
        Front::NodeHttpAgentScript,
        Front::NodeFetchScript,
        Front::Aiohttp,
        Front::AsyncioStreams,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Front::PythonThreads => "Python threads",
            Front::Go => "Go net/http",
            Front::NodeHttpAgent => "Node.js http.Agent",
            Front::NodeFetch => "Node.js fetch",
            Front::NodeHttpAgentScript => "Node.js http.Agent, context script",
            Front::NodeFetchScript => "Node.js fetch, context script",
            Front::Aiohttp => "Python aiohttp",
            Front::AsyncioStreams => "Python asyncio streams",
        }
    }

    /// The agent's options this front is measured with.
    pub fn agent_args(self) -> &'static [&'static str] {
        match self {
            Front::NodeHttpAgentScript | Front::NodeFetchScript => &["--node-context-script"],
            _ => &[],
        }
    }

    /// Starts the front on `port`, calling `aux` then `leaf` (`fanout` times).
    pub fn start(self, port: u16, aux: u16, leaf: u16, fanout: usize) -> Process {
        self.start_with(port, aux, leaf, fanout, &[])
    }

    /// `start`, with more environment for the front (`MAX_SOCKETS` for Node).
    pub fn start_with(
        self,
        port: u16,
        aux: u16,
        leaf: u16,
        fanout: usize,
        env: &[(&str, &str)],
    ) -> Process {
        let servers = servers_dir();
        let mut cmd = match self {
            Front::PythonThreads => {
                let mut cmd = Command::new("python3");
                cmd.arg(servers.join("front_threads.py"));
                cmd
            }
            Front::Go => Command::new(go_front()),
            Front::NodeHttpAgent
            | Front::NodeFetch
            | Front::NodeHttpAgentScript
            | Front::NodeFetchScript => {
                let mut cmd = Command::new("node");
                let client = match self {
                    Front::NodeFetch | Front::NodeFetchScript => "fetch",
                    _ => "agent",
                };
                cmd.arg(servers.join("front_node.js")).env("CLIENT", client);
                cmd
            }
            Front::Aiohttp => {
                let mut cmd = Command::new(crate::test_tools_dir().join("aiohttp/bin/python"));
                cmd.arg(servers.join("front_aiohttp.py"));
                cmd
            }
            Front::AsyncioStreams => {
                let mut cmd = Command::new("python3");
                cmd.arg(servers.join("front_asyncio.py"));
                cmd
            }
        };
        cmd.args([port, aux, leaf].map(|p| p.to_string()))
            .env("FANOUT", fanout.to_string())
            .env("OTEL_SERVICE_NAME", "front")
            .envs(env.iter().copied());
        Process::spawn_until(&mut cmd, "ready")
    }
}

/// CPython versions newer than the machine's `python3` that pyenv holds
/// (`3.12.1`, `3.13.0`, …): run through pyenv's `python3` with
/// `PYENV_VERSION` set. None where pyenv is not installed.
pub fn newer_cpythons() -> Vec<String> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pyenv")));
    let Some(Ok(versions)) = root.map(|root| std::fs::read_dir(root.join("versions"))) else {
        return Vec::new();
    };
    let mut newer: Vec<String> = versions
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let mut parts = name.split('.');
            parts.next() == Some("3")
                && parts
                    .next()
                    .and_then(|minor| minor.parse::<u32>().ok())
                    .is_some_and(|minor| minor >= 12)
        })
        .collect();
    newer.sort();
    newer
}

/// A Python thread-per-connection leaf named `name` (the `aux` and `leaf`
/// services the fronts call).
pub fn python_leaf(port: u16, name: &str) -> Process {
    Process::spawn_until(
        Command::new("python3")
            .arg(servers_dir().join("chain_service.py"))
            .arg(port.to_string())
            .env("OTEL_SERVICE_NAME", name),
        "ready",
    )
}

/// The Go front, built once per run (Debian's golang-go; standard library only).
fn go_front() -> PathBuf {
    go_program("front_go")
}

/// The Go HTTPS client (`servers/go_https_client`), built once per run.
pub fn go_https_client() -> PathBuf {
    go_program("go_https_client")
}

/// The Go program in `servers/NAME/main.go`, built once per run.
fn go_program(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, binary)) = built.iter().find(|(built, _)| built == name) {
        return binary.clone();
    }
    let dir = temp_dir(name);
    let binary = dir.join(name);
    let status = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(servers_dir().join(name).join("main.go"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("run go (cargo xtask setup --test-deps installs golang-go)");
    assert!(status.success(), "go build of {name} failed");
    built.push((name.to_string(), binary.clone()));
    binary
}

/// Why request `marker` is not one whole, correctly parented trace (none
/// when it is): curl → front SERVER → front CLIENT ×(1 + fanout), each the
/// parent of one `aux` or `leaf` SERVER span.
pub fn tree_break(spans: &[SpanRecord], marker: &str, fanout: usize) -> Option<String> {
    let request = spans_of(spans, marker);
    let of = |service: &str, kind: i64| -> Vec<&SpanRecord> {
        request
            .iter()
            .filter(|s| s.service == service && s.kind == kind)
            .copied()
            .collect()
    };
    let (curl, front, calls) = (of("curl", CLIENT), of("front", SERVER), of("front", CLIENT));
    let callees: Vec<&SpanRecord> = of("aux", SERVER)
        .into_iter()
        .chain(of("leaf", SERVER))
        .collect();
    let expected = 4 + 2 * fanout;
    if curl.len() != 1
        || front.len() != 1
        || calls.len() != 1 + fanout
        || callees.len() != 1 + fanout
    {
        return Some(format!(
            "{} spans (want {expected}): curl {}, front server {}, front calls {}, callees {}",
            request.len(),
            curl.len(),
            front.len(),
            calls.len(),
            callees.len()
        ));
    }
    let trace = &curl[0].trace_id;
    if request.iter().any(|s| &s.trace_id != trace) {
        return Some("spans in more than one trace".into());
    }
    if front[0].parent_span_id != curl[0].span_id {
        return Some("front SERVER not under curl".into());
    }
    if calls.iter().any(|c| c.parent_span_id != front[0].span_id) {
        return Some("a front call not under its request".into());
    }
    let mut parents: Vec<&str> = callees.iter().map(|c| c.parent_span_id.as_str()).collect();
    parents.sort_unstable();
    parents.dedup();
    let call_ids: Vec<&str> = calls.iter().map(|c| c.span_id.as_str()).collect();
    if parents.len() != callees.len() || parents.iter().any(|p| !call_ids.contains(p)) {
        return Some("a callee not under its own call".into());
    }
    None
}

/// The front's client spans that start a trace of their own (unlinked).
pub fn unlinked_calls(spans: &[SpanRecord]) -> usize {
    spans
        .iter()
        .filter(|s| s.service == "front" && s.kind == CLIENT && s.parent_span_id.is_empty())
        .count()
}
