//! `cargo xtask bench accuracy`: how many requests come out as one whole,
//! correctly-parented trace, and how many traces mix two requests.
//!
//! 1. The chain: nginx (load balancer, event loop) → svc-a (Python threads)
//!    → svc-b (Node.js event loop) → svc-c (Python asyncio), each service
//!    waiting a random 0–5 ms.
//! 2. The runtime matrix (`runtimes.rs`): per runtime, a front that awaits
//!    0–5 ms, calls `aux`, then `leaf` through its usual pooled client
//!    (and a fan-out case: two parallel leaf calls).
//!
//! Under curl load at concurrency 1, 8 and 32. Every request's path carries
//! a marker the services forward and only this scorer reads.

use std::process::ExitCode;

use tracer_tests::{
    Agent, CLIENT, SERVER, free_port,
    runtimes::{Front, python_leaf, tree_break, unlinked_calls},
    services::{Hop, chain, chain_break, drive, mixed_traces, nginx},
};

/// The spans of one request, parent before child.
const HOPS: [(&str, i64); 8] = [
    ("curl", CLIENT),
    ("nginx", SERVER),
    ("nginx", CLIENT),
    ("svc-a", SERVER),
    ("svc-a", CLIENT),
    ("svc-b", SERVER),
    ("svc-b", CLIENT),
    ("svc-c", SERVER),
];

/// (concurrency, requests per curl worker)
const LOADS: [(usize, usize); 3] = [(1, 60), (8, 25), (32, 8)];

fn main() -> ExitCode {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("accuracy: loads eBPF programs; run `sudo -E cargo xtask bench accuracy`");
        return ExitCode::FAILURE;
    }
    let _stats = BpfStats::enable();
    let services = chain([Hop::PythonThreads, Hop::Node, Hop::PythonAsyncio]);
    let proxy = tracer_tests::free_port();
    let _nginx = nginx(proxy, services.ports[0]);
    println!(
        "chain: curl → nginx → svc-a (Python threads) → svc-b (Node.js) → svc-c (Python asyncio)"
    );
    println!(
        "{:>11} {:>8} {:>14} {:>14} {:>24}",
        "concurrency", "requests", "whole traces", "mixed traces", "kernel linked/ambiguous"
    );
    for (concurrency, per_worker) in LOADS {
        let agent = Agent::start(&[]);
        let markers = drive(proxy, concurrency, per_worker);
        let run = agent.stop();
        if !run.status.success() {
            eprintln!("the agent failed:\n{}", run.stderr);
            return ExitCode::FAILURE;
        }
        // Why each request is not whole ("whole" when it is), tallied.
        let mut broken: std::collections::BTreeMap<String, usize> = Default::default();
        for marker in &markers {
            let why = chain_break(&run.spans, marker, &HOPS).unwrap_or_else(|| "whole".into());
            *broken.entry(why).or_default() += 1;
        }
        let whole = broken.get("whole").copied().unwrap_or(0);
        eprintln!("{broken:?}");
        let mixed_list = mixed_traces(&run.spans);
        let mixed = mixed_list.len();
        // The first few, spelled out: a mixed trace is a wrong link to find.
        for (trace, markers) in mixed_list.iter().take(3) {
            eprintln!("trace {trace} mixes {markers:?}:");
            for span in run.spans.iter().filter(|s| &s.trace_id == trace) {
                eprintln!(
                    "  {:<6} {} {:<24} span={} parent={}",
                    span.service,
                    if span.kind == SERVER {
                        "SERVER"
                    } else {
                        "CLIENT"
                    },
                    span.str("url.path").unwrap_or(""),
                    span.span_id,
                    span.parent_span_id
                );
            }
        }
        println!(
            "{concurrency:>11} {:>8} {:>8} ({:>3.0}%) {:>14} {:>12}/{}",
            markers.len(),
            whole,
            100.0 * whole as f64 / markers.len() as f64,
            mixed,
            run.summary("calls_linked"),
            run.summary("calls_ambiguous"),
        );
    }
    if let Err(failure) = runtime_matrix() {
        eprintln!("{failure}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `kernel.bpf_stats_enabled` on while it lives (the programs' run time per
/// request), as it was before afterwards.
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> BpfStats {
        let previous = std::fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
        if let Err(e) = std::fs::write(BPF_STATS, "1") {
            eprintln!("cannot enable {BPF_STATS} ({e}): BPF times will read 0");
        }
        BpfStats(previous.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// The runtime matrix's table: whole share, mixed traces and the front's
/// calls left unlinked, per runtime, fan-out and concurrency.
fn runtime_matrix() -> Result<(), String> {
    let (aux, leaf) = (free_port(), free_port());
    let _aux = python_leaf(aux, "aux");
    let _leaf = python_leaf(leaf, "leaf");
    println!("\nruntime matrix: curl → front (awaits 0–5 ms, calls aux, then leaf) → aux, leaf");
    println!(
        "| front | leaf calls | concurrency | requests | whole, correctly parented | mixed traces | front calls unlinked | uprobe hits / request | uprobe µs / request | BPF µs / request, machine-wide | most common break |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for front in Front::ALL {
        for fanout in [1, 2] {
            let port = free_port();
            let _front = front.start(port, aux, leaf, fanout);
            for (concurrency, per_worker) in LOADS {
                let agent = Agent::start(front.agent_args());
                let markers = drive(port, concurrency, per_worker);
                let run = agent.stop();
                if !run.status.success() {
                    return Err(format!("the agent failed:\n{}", run.stderr));
                }
                let mut broken: std::collections::BTreeMap<String, usize> = Default::default();
                for marker in &markers {
                    if let Some(why) = tree_break(&run.spans, marker, fanout) {
                        *broken.entry(why).or_default() += 1;
                    }
                }
                let whole = markers.len() - broken.values().sum::<usize>();
                let worst = broken
                    .iter()
                    .max_by_key(|(_, n)| **n)
                    .map_or(String::from("–"), |(why, n)| format!("{why} ({n})"));
                let requests = markers.len() as f64;
                println!(
                    "| {} | {fanout} | {concurrency} | {} | {whole} ({:.0}%) | {} | {} | {:.1} | {:.2} | {:.0} | {worst} |",
                    front.name(),
                    markers.len(),
                    100.0 * whole as f64 / requests,
                    mixed_traces(&run.spans).len(),
                    unlinked_calls(&run.spans),
                    run.summary("uprobe_runs") as f64 / requests,
                    run.summary("uprobe_run_time_ns") as f64 / requests / 1e3,
                    run.summary("bpf_run_time_ns") as f64 / requests / 1e3,
                );
            }
        }
    }
    Ok(())
}
