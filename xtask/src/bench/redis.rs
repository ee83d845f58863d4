//! The Redis pipeline case: `redis-benchmark -P 16` (8 connections, SET
//! and GET) against Debian's `redis-server`, both traced; rounds
//! alternating without the agent and with it. Every pipelined command is
//! its own span, so this is the agent's load per command at its highest:
//! commands/s and their ratio, the agent's CPU and the kernel programs'
//! time per command, spans per command, events lost.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{Agent, free_port, median};

const CONNECTIONS: &str = "8";
const PIPELINE: &str = "16";

pub fn measure(rounds: usize, commands: usize) -> Result<()> {
    let port = free_port()?;
    let _server = RedisServer::start(port)?;
    // Each round runs SET then GET, `commands` of each.
    let total = 2.0 * commands as f64;
    let mut rates = [Vec::new(), Vec::new()];
    let (mut cpu_us, mut bpf_us, mut spans, mut lost) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        for step in 0..2 {
            let with_agent = (round + step) % 2 == 1;
            let agent = with_agent.then(|| Agent::start(&[])).transpose()?;
            let cpu_before = agent.as_ref().map(Agent::cpu_seconds).transpose()?;
            let elapsed = benchmark(port, commands)?;
            rates[with_agent as usize].push(total / elapsed);
            if let (Some(agent), Some(cpu_before)) = (agent, cpu_before) {
                std::thread::sleep(Duration::from_millis(300));
                let cpu = agent.cpu_seconds()? - cpu_before;
                let summary = agent.stop()?;
                cpu_us.push(cpu / total * 1e6);
                bpf_us.push(summary.get("bpf_run_time_ns") / total / 1e3);
                spans.push(summary.get("spans_produced") / total);
                lost.push(summary.get("events_lost_ring_full"));
            }
        }
    }
    let without = median(&mut rates[0]);
    let with = median(&mut rates[1]);
    println!(
        "\nRedis pipelines: redis-benchmark -c {CONNECTIONS} -P {PIPELINE} -t set,get, \
         {commands} of each per round, {rounds} rounds (medians):"
    );
    println!("  commands/s without agent    {without:.0}");
    println!(
        "  commands/s with agent       {with:.0} (ratio {:.3})",
        with / without
    );
    println!(
        "  agent CPU per command       {:.2} µs",
        median(&mut cpu_us)
    );
    println!(
        "  BPF run time per command    {:.2} µs",
        median(&mut bpf_us)
    );
    println!("  spans per command           {:.3}", median(&mut spans));
    println!("  events lost (ring full)     {:.0}", median(&mut lost));
    Ok(())
}

/// Runs the benchmark; its wall time in seconds.
fn benchmark(port: u16, commands: usize) -> Result<f64> {
    let started = Instant::now();
    let output = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", CONNECTIONS, "-P", PIPELINE])
        .args(["-n", &commands.to_string(), "-t", "set,get", "-q"])
        .output()
        .context("run redis-benchmark (Debian: redis-tools)")?;
    if !output.status.success() {
        bail!("redis-benchmark failed: {output:?}");
    }
    Ok(started.elapsed().as_secs_f64())
}

struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> Result<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("start redis-server (Debian: redis-server)")?;
        let server = RedisServer(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server did not listen on {port}")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
