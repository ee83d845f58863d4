//! The Python case: a keep-alive server and client (both traced), simple GETs.
//!
//! 1. Ring-buffer traffic per request: the agent traces only the server and
//!    its client; its exit summary gives events and bytes read, and the
//!    kernel's run time of its programs.
//! 2. Overhead: rounds of the same client load without the agent and with it
//!    in three configurations (defaults; no metrics/viewer; traceparent
//!    injection), in rotating order; median throughput of each, its ratio to
//!    the run without, and the agent's own CPU time and BPF time per request.

use std::{io::Write, process::Command, time::Duration};

use anyhow::{Context, Result};

use super::{Agent, free_port, json_number, median, spawn_until};
use crate::root;

pub fn measure(rounds: usize, requests: usize) -> Result<()> {
    let port = free_port()?;
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
            .arg(requests.to_string());
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
    let n = requests as f64;
    println!(
        "Ring-buffer traffic, simple GET (\"hello\\n\", keep-alive, Python server and client, both traced):"
    );
    println!("  requests                    {}", requests);
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
            "agent, --inject-traceparent all (a header on every request)",
            &["--inject-traceparent"],
        ),
    ];
    let mut rates = vec![Vec::new(); configurations.len()];
    let mut agent_cpu_us = vec![Vec::new(); configurations.len()];
    let mut bpf_us = vec![Vec::new(); configurations.len()];
    for round in 0..rounds {
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
        rounds, requests
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
