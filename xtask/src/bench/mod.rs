//! `cargo xtask bench`: what tracing costs, and how whole its traces are,
//! measured side by side in one run.
//!
//! `cost` has two cases:
//! - `nginx` (`nginx.rs`): the saturated case users judge an agent by. wrk
//!   with 32 keep-alive connections against nginx (one worker, a 1 KiB
//!   static file), rounds alternating without the agent and with it in each
//!   configuration; throughput and latency ratios, the agent's CPU and the
//!   kernel programs' run time per request, ring traffic, spans, loss, RSS.
//! - `python` (`python.rs`): a Python keep-alive server and client, both
//!   traced; ring traffic per request and throughput per configuration.
//! - `redis` (`redis.rs`): `redis-benchmark -P 16`, a span per pipelined
//!   command: the agent's cost per command at its highest rate.
//! - `memory` (`memory.rs`): the agent's resident memory with 10,000 idle
//!   keep-alive connections and after 100,000 short ones.
//!
//! `pipeline` (`tracer-agent/benches/pipeline.rs`) times the agent's stages
//! on the nginx case's events made up in memory, without the kernel.
//!
//! Timed numbers wander on shared machines (see shared/TOOLCHAIN.md): read the
//! ratios over many rounds, and the per-request CPU and BPF times, not one run.

mod memory;
mod nginx;
mod python;
mod redis;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{agent_binary, cargo, is_root, run_checked};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// `cost` (the default): throughput and latency with and without the
    /// agent, its CPU and BPF time per request, ring traffic, spans, memory.
    /// `accuracy`: share of requests that come out as one whole trace
    /// through nginx and three runtimes, and per runtime (Python threads and
    /// pools, Go, Node.js with and without the context script, aiohttp,
    /// asyncio streams), at concurrency 1, 8 and 32, with the runtime
    /// uprobes' hits and time per request.
    /// `pipeline`: the agent's userspace alone, per request and per stage,
    /// on the nginx case's events made up in memory (no kernel, no root):
    /// steady enough to compare one change to the agent's code.
    #[arg(value_enum, default_value = "cost")]
    pub kind: BenchKind,
    /// Which cost case: `nginx` (wrk against nginx), `python` (a Python
    /// keep-alive server and client), `redis` (redis-benchmark pipelines of
    /// 16 against redis-server), `memory` (the agent's memory with 10,000
    /// idle connections and after 100,000 short ones), or `all`.
    #[arg(long, value_enum, default_value = "all")]
    case: CostCase,
    /// Rounds of each configuration, alternating (medians are reported).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// nginx case: seconds of load per round.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// python case: requests per measurement.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// redis case: SETs, and as many GETs, per round.
    #[arg(long, default_value_t = 200_000)]
    commands: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BenchKind {
    Cost,
    Accuracy,
    Pipeline,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CostCase {
    Nginx,
    Python,
    Redis,
    Memory,
    All,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let BenchKind::Pipeline = args.kind {
        return run_checked(cargo().args([
            "bench",
            "--package",
            "tracer-agent",
            "--bench",
            "pipeline",
        ]));
    }
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run `sudo -E cargo xtask bench`");
    }
    if let BenchKind::Accuracy = args.kind {
        // The scorer lives with the test harness whose services it drives.
        return run_checked(
            cargo()
                .args([
                    "run",
                    "--release",
                    "--package",
                    "tracer-tests",
                    "--bin",
                    "accuracy",
                ])
                .env("TRACER_AGENT_BIN", agent_binary(true)),
        );
    }
    let stats_sysctl = "/proc/sys/kernel/bpf_stats_enabled";
    let previous = std::fs::read_to_string(stats_sysctl).unwrap_or_else(|_| "0".into());
    std::fs::write(stats_sysctl, "1").context("enable kernel.bpf_stats_enabled")?;
    let wanted = |case: CostCase| args.case == case || args.case == CostCase::All;
    let mut result = Ok(());
    if wanted(CostCase::Nginx) {
        result = nginx::measure(args.rounds, args.seconds);
    }
    if result.is_ok() && wanted(CostCase::Python) {
        result = python::measure(args.rounds, args.requests);
    }
    if result.is_ok() && wanted(CostCase::Redis) {
        result = redis::measure(args.rounds, args.commands);
    }
    if result.is_ok() && wanted(CostCase::Memory) {
        result = memory::measure();
    }
    let _ = std::fs::write(stats_sysctl, previous.trim());
    result
}

/// A loopback port free at the moment (for a server the bench starts).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn json_number(text: &str, key: &str) -> Result<f64> {
    let needle = format!("\"{key}\": ");
    let start = text.find(&needle).context("client report")? + needle.len();
    let end = text[start..]
        .find([',', '}'])
        .map_or(text.len(), |e| start + e);
    Ok(text[start..end].trim().parse()?)
}

struct Spawned {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Spawned {
    /// Waits for the process and returns the rest of its stdout.
    fn finish(mut self) -> Result<String> {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("client failed: {status}");
        }
        Ok(rest)
    }
}

/// Spawns and waits for `line` on stdout (an empty `line`: does not wait).
fn spawn_until(cmd: &mut Command, line: &str) -> Result<Spawned> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    if !line.is_empty() {
        let mut seen = String::new();
        while seen.trim() != line {
            seen.clear();
            if stdout.read_line(&mut seen)? == 0 {
                bail!("{cmd:?} exited before printing {line}");
            }
        }
    }
    Ok(Spawned { child, stdout })
}

struct Agent {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

/// The agent's exit summary line, and each kernel program's run count and time.
struct Summary {
    line: String,
    /// (program, runs, run time in ns)
    programs: Vec<(String, f64, f64)>,
}

impl Summary {
    fn get(&self, name: &str) -> f64 {
        let key = format!("{name}=");
        self.line
            .split_whitespace()
            .find_map(|field| field.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// From the agent's debug line `program NAME: runs=N run_time_ns=T`.
    fn add_program(&mut self, line: &str) {
        let Some(rest) = line.split("program ").nth(1) else {
            return;
        };
        let Some((name, stats)) = rest.split_once(": ") else {
            return;
        };
        let field = |key: &str| {
            stats
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(runs), Some(time)) = (field("runs="), field("run_time_ns=")) {
            self.programs.push((name.to_string(), runs, time));
        }
    }
}

impl Agent {
    fn start(args: &[&str]) -> Result<Agent> {
        let mut command = Command::new(agent_binary(true));
        // Debug for the agent's own lines only: each program's run time at exit.
        command.args(["--quiet", "--log-level", "info,tracer_agent=debug"]);
        if !args.contains(&"--metrics-addr") {
            command.args(["--metrics-addr", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, rx) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().context("stderr")?);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .context("agent did not attach within 60 s")?;
            if line.contains("tracepoints attached") {
                return Ok(Agent { child, stderr: rx });
            }
        }
    }

    /// User + system CPU time the agent process has used.
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after = &stat[stat.rfind(')').context("stat")? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks / hz)
    }

    /// The agent's peak resident memory so far (`VmHWM`), in MiB.
    fn peak_rss_mib(&self) -> Result<f64> {
        self.rss_mib("VmHWM:")
    }

    /// A memory figure of the agent's `/proc/PID/status` (`VmRSS:`,
    /// `VmHWM:`), in MiB.
    fn rss_mib(&self, field: &str) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{field} in /proc/PID/status"))?;
        Ok(kib / 1024.0)
    }

    fn stop(mut self) -> Result<Summary> {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        let mut summary = Summary {
            line: String::new(),
            programs: Vec::new(),
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            if line.contains("stopped:") {
                summary.line = line;
            } else if line.contains("run_time_ns=") {
                summary.add_program(&line);
            }
        }
        Ok(summary)
    }
}
