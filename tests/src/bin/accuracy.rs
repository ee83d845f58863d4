//! `cargo xtask bench accuracy`: how many requests come out as one whole,
//! correctly-parented trace, and how many traces mix two requests.
//!
//! nginx (load balancer, event loop) → svc-a (Python threads) → svc-b
//! (Node.js event loop) → svc-c (Python asyncio), each service waiting a
//! random 0–5 ms, under curl load at concurrency 1, 8 and 32. Every request's
//! path carries a marker the services forward and only this scorer reads.

use std::process::ExitCode;

use tracer_tests::{
    Agent, CLIENT, SERVER,
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
    ExitCode::SUCCESS
}
