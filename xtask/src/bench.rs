//! `cargo xtask bench`: what tracing costs, measured side by side in one run.
//!
//! 1. Ring-buffer traffic per request: the agent traces only a keep-alive
//!    server and its client, which send N simple GETs; its exit summary gives
//!    events and bytes read, and the kernel's run time of its programs.
//! 2. Overhead: rounds of the same client load without the agent and with it
//!    in three configurations (defaults; no metrics/viewer; traceparent
//!    injection), in rotating order; median throughput of each, its ratio to
//!    the run without, and the agent's own CPU time and BPF time per request.
//!
//! Timed numbers wander on shared machines (see shared/TOOLCHAIN.md): read the
//! ratio over many rounds, and the per-request CPU and BPF times, not one run.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{agent_binary, cargo, is_root, root, run_checked};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// `cost` (the default): ring-buffer traffic, BPF and agent time per
    /// request, throughput with and without the agent. `accuracy`: share of
    /// requests that come out as one whole trace through nginx and three
    /// runtimes at concurrency 1, 8 and 32.
    #[arg(value_enum, default_value = "cost")]
    pub kind: BenchKind,
    /// Requests per measurement.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Rounds with and without the agent, alternating.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BenchKind {
    Cost,
    Accuracy,
}

pub fn run(args: BenchArgs) -> Result<()> {
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
    let result = measure(&args);
    let _ = std::fs::write(stats_sysctl, previous.trim());
    result
}

fn measure(args: &BenchArgs) -> Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let servers = root().join("tests/servers");
    let mut server = spawn_until(
        Command::new("python3")
            .arg(servers.join("http11_server.py"))
            .arg(port.to_string()),
        "ready",
    )?;
    let client = |wait: bool| {
        let mut cmd = Command::new("python3");
        cmd.arg(servers.join("keepalive_client.py"))
            .arg(port.to_string())
            .arg(args.requests.to_string());
        if wait {
            cmd.arg("--wait");
        }
        cmd
    };

    // 1. Ring-buffer traffic per request.
    let mut waiting = spawn_until(&mut client(true), "connected")?;
    let pids = format!("{},{}", server.child.id(), waiting.child.id());
    let agent = Agent::start(&["--pid", &pids])?;
    writeln!(waiting.child.stdin.as_mut().context("client stdin")?, "go")?;
    waiting.finish()?;
    let summary = agent.stop()?;
    let n = args.requests as f64;
    println!(
        "Ring-buffer traffic, simple GET (\"hello\\n\", keep-alive, Python server and client, both traced):"
    );
    println!("  requests                    {}", args.requests);
    println!(
        "  spans per request           {:.2}",
        summary.get("spans_produced") / n
    );
    println!(
        "  events per request          {:.2}",
        summary.get("events_read") / n
    );
    println!(
        "  ring bytes per request      {:.0}",
        summary.get("event_bytes_read") / n
    );
    println!(
        "  BPF run time per request    {:.2} µs",
        summary.get("bpf_run_time_ns") / n / 1e3
    );
    println!(
        "  events lost (ring full)     {}",
        summary.get("events_lost_ring_full")
    );

    // 2. Throughput without the agent and with it in each configuration,
    // in rotating order so no configuration always runs first.
    let configurations: [(&str, &[&str]); 4] = [
        ("without agent", &[]),
        ("agent, defaults (metrics + viewer store on)", &[]),
        (
            "agent, --metrics-addr none (no viewer store)",
            &["--metrics-addr", "none"],
        ),
        (
            "agent, --inject-traceparent (sk_msg on every write)",
            &["--inject-traceparent"],
        ),
    ];
    let mut rates = vec![Vec::new(); configurations.len()];
    let mut agent_cpu_us = vec![Vec::new(); configurations.len()];
    let mut bpf_us = vec![Vec::new(); configurations.len()];
    for round in 0..args.rounds {
        for step in 0..configurations.len() {
            let which = (round + step) % configurations.len();
            let agent = match which {
                0 => None,
                _ => Some(Agent::start(configurations[which].1)?),
            };
            // Start-up (BTF parsing, loading) is not per-request cost.
            let cpu_before = agent.as_ref().map(Agent::cpu_seconds).transpose()?;
            let report = spawn_until(&mut client(false), "")?.finish()?;
            let elapsed = json_number(&report, "elapsed")?;
            rates[which].push(n / elapsed);
            if let (Some(agent), Some(cpu_before)) = (agent, cpu_before) {
                // The reader collects the last events within its 20 ms timer.
                std::thread::sleep(Duration::from_millis(100));
                let cpu = agent.cpu_seconds()? - cpu_before;
                let summary = agent.stop()?;
                agent_cpu_us[which].push(cpu / n * 1e6);
                bpf_us[which].push(summary.get("bpf_run_time_ns") / n / 1e3);
            }
        }
    }
    println!(
        "\nOverhead, {} rounds of {} requests each, agents tracing every process (medians):",
        args.rounds, args.requests
    );
    println!(
        "  {:<54} {:>9} {:>11} {:>14} {:>10}",
        "configuration", "req/s", "vs without", "agent CPU/req", "BPF/req"
    );
    let baseline = median(&mut rates[0]);
    for (which, (name, _)) in configurations.iter().enumerate() {
        let rate = median(&mut rates[which]);
        let (cpu, bpf) = if which == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1} µs", median(&mut agent_cpu_us[which])),
                format!("{:.2} µs", median(&mut bpf_us[which])),
            )
        };
        println!(
            "  {name:<54} {rate:>9.0} {:>11.3} {cpu:>14} {bpf:>10}",
            rate / baseline
        );
    }
    server.child.kill()?;
    Ok(())
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

struct Summary(String);

impl Summary {
    fn get(&self, name: &str) -> f64 {
        let key = format!("{name}=");
        self.0
            .split_whitespace()
            .find_map(|field| field.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl Agent {
    fn start(args: &[&str]) -> Result<Agent> {
        let mut command = Command::new(agent_binary(true));
        command.arg("--quiet");
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

    fn stop(mut self) -> Result<Summary> {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        let mut summary = String::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            if line.contains("stopped:") {
                summary = line;
            }
        }
        Ok(Summary(summary))
    }
}
