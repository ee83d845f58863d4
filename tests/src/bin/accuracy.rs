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
    services::{Hop, chain, drive, mixed_traces, nginx, whole_chain},
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
        let whole = markers
            .iter()
            .filter(|marker| whole_chain(&run.spans, marker, &HOPS))
            .count();
        let mut broken: std::collections::BTreeMap<String, usize> = Default::default();
        for marker in &markers {
            let spans = tracer_tests::services::spans_of(&run.spans, marker);
            let why = if spans.len() != HOPS.len() {
                let missing: Vec<String> = HOPS
                    .iter()
                    .filter(|(service, kind)| {
                        !spans
                            .iter()
                            .any(|s| s.service == *service && s.kind == *kind)
                    })
                    .map(|(service, kind)| {
                        format!(
                            "{service} {}",
                            if *kind == SERVER { "SERVER" } else { "CLIENT" }
                        )
                    })
                    .collect();
                format!("{} spans, missing {missing:?}", spans.len())
            } else {
                HOPS.windows(2)
                    .find(|pair| {
                        let parent = spans.iter().find(|s| s.service == pair[0].0 && s.kind == pair[0].1);
                        let child = spans.iter().find(|s| s.service == pair[1].0 && s.kind == pair[1].1);
                        !matches!((parent, child), (Some(p), Some(c)) if c.parent_span_id == p.span_id)
                    })
                    .map(|pair| format!("{} {} -> {} {}", pair[0].0, pair[0].1, pair[1].0, pair[1].1))
                    .unwrap_or_else(|| "whole".into())
            };
            *broken.entry(why).or_default() += 1;
        }
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
