use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracer_agent::{
    export::{Exporter, file::FileExporter, stdout::StdoutExporter},
    loader::{self, LoadOptions, TRACEPOINTS},
    pipeline::{self, PipelineOptions},
    stats::Stats,
};
use tracer_common::{DEFAULT_CAPTURE, MAX_CAPTURE};

/// Traces the HTTP/1.x requests that every process on this machine serves or
/// makes, with no change to those processes, and prints one span per request.
///
/// Needs root (or CAP_BPF and CAP_PERFMON) and a kernel with BTF (Linux 5.8+).
/// Stop it with Ctrl-C or SIGTERM: spans already seen are written before it exits.
#[derive(Debug, Parser)]
#[command(name = "tracer-agent", version, about, long_about)]
struct Cli {
    /// Trace only these processes (repeat the flag or separate by commas).
    /// Default: every process except the agent itself.
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
    pids: Vec<u32>,

    /// Also write spans to PATH as OTLP/JSON lines: one ExportTraceServiceRequest
    /// per line, as the OpenTelemetry Collector's file exporter writes them.
    #[arg(long, value_name = "PATH")]
    export_file: Option<PathBuf>,

    /// Do not print a line per span on stdout.
    #[arg(long, short)]
    quiet: bool,

    /// Payload bytes copied from each socket read or write (the rest is counted,
    /// not copied). Longer request heads than this are missed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CAPTURE,
          value_parser = clap::value_parser!(u32).range(0..=MAX_CAPTURE as i64))]
    capture_bytes: u32,

    /// Size of the kernel-to-agent ring buffer, in MiB (a power of two). Events
    /// that do not fit are counted as lost.
    #[arg(long, value_name = "MIB", default_value_t = 8, value_parser = parse_ring_mib)]
    ring_buffer_mib: u32,

    /// Connections tracked at once; past this the least recently used one is
    /// dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    max_connections: usize,

    /// Add a W3C `traceparent` header to outbound HTTP/1.x requests that have
    /// none, right after the request line (the rest of the request is
    /// unchanged), so that an agent on the next node continues the same
    /// trace. Applies to connections opened after the agent started. Needs
    /// cgroup v2; every TCP client socket then passes an sk_msg program.
    #[arg(long)]
    inject_traceparent: bool,

    /// Trace only processes in this network namespace: a path such as
    /// /run/netns/NAME (from `ip netns add`) or /proc/PID/ns/net. One agent
    /// per namespace stands in for one agent per node.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,

    /// Log level of the agent's own messages on stderr (error, warn, info,
    /// debug, trace). RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

fn parse_ring_mib(value: &str) -> Result<u32, String> {
    let mib: u32 = value.parse().map_err(|e| format!("{e}"))?;
    if mib == 0 || !mib.is_power_of_two() || mib > 1024 {
        return Err("must be a power of two between 1 and 1024".into());
    }
    Ok(mib)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut exporters: Vec<Box<dyn Exporter>> = Vec::new();
    if !cli.quiet {
        exporters.push(Box::new(StdoutExporter::default()));
    }
    if let Some(path) = &cli.export_file {
        let exporter = FileExporter::create(path, host_name())
            .map_err(|e| anyhow::anyhow!("cannot create --export-file {}: {e}", path.display()))?;
        exporters.push(Box::new(exporter));
    }

    let loader::Loaded {
        probes,
        events,
        ignored_sockets,
    } = loader::load(&LoadOptions {
        capture_bytes: cli.capture_bytes,
        ring_buffer_bytes: cli.ring_buffer_mib * 1024 * 1024,
        pids: cli.pids.clone(),
        inject_traceparent: cli.inject_traceparent,
        netns: cli.netns.clone(),
    })?;
    let mut scope = if cli.pids.is_empty() {
        "every process".to_string()
    } else {
        format!("pids {:?}", cli.pids)
    };
    if let Some(netns) = &cli.netns {
        scope += &format!(" in network namespace {}", netns.display());
    }
    let injection = if cli.inject_traceparent {
        "; adding traceparent headers to outbound requests"
    } else {
        ""
    };
    tracing::info!(
        "tracing {scope}: {} tracepoints attached{injection}; Ctrl-C to stop",
        TRACEPOINTS.len()
    );

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("stopping: exporting what was already seen");
        let _ = stop.send(true);
    });

    let stats = Arc::new(Stats::default());
    pipeline::run(
        events,
        ignored_sockets,
        PipelineOptions {
            max_connections: cli.max_connections,
            idle_timeout: Duration::from_secs(300),
            exporters,
        },
        shutdown,
        stats.clone(),
    )
    .await?;

    let kernel: Vec<String> = probes
        .counters()
        .into_iter()
        .map(|(counter, value)| format!("{}={value}", counter.name()))
        .collect();
    let (bpf_run_time, bpf_runs) = probes.run_stats();
    let links: Vec<String> = stats
        .links
        .lock()
        .map(|links| {
            links
                .named()
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect()
        })
        .unwrap_or_default();
    for (name, time, runs) in probes.program_run_stats() {
        tracing::debug!(
            "program {name}: runs={runs} run_time_ns={}",
            time.as_nanos()
        );
    }
    tracing::info!(
        "stopped: events_read={} event_bytes_read={} spans_produced={} spans_exported={} \
                           parse_errors={} connections_evicted={} export_failures={} {} bpf_run_time_ns={} \
         bpf_runs={} kernel: {}",
        Stats::get(&stats.events_read),
        Stats::get(&stats.event_bytes_read),
        Stats::get(&stats.spans_produced),
        Stats::get(&stats.spans_exported),
        Stats::get(&stats.parse_errors),
        Stats::get(&stats.connections_evicted),
        Stats::get(&stats.export_failures),
        links.join(" "),
        bpf_run_time.as_nanos(),
        bpf_runs,
        kernel.join(" ")
    );
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
