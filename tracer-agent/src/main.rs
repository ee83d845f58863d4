use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracer_agent::{
    export::{
        Exporter,
        file::FileExporter,
        otlp::{OtlpExporter, OtlpOptions, Protocol, TlsFiles, parse_headers},
        stdout::StdoutExporter,
    },
    kubernetes::{PodSource, Pods},
    loader::{self, LoadOptions, SOCK_TRACEPOINTS, TRACEPOINTS},
    metrics::Metrics,
    owners::Owners,
    pipeline::{self, KernelLists, PipelineOptions},
    process::ProcessCache,
    stats::Stats,
    viewer::{
        self, Parts,
        access::{self, Access},
        store::{StoreLimits, TraceStore},
    },
};
use tracer_common::{DEFAULT_CAPTURE, InjectMode, KernelOffsets, MAX_CAPTURE};

/// A connection the agent has not heard from for this long is ended.
const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Events are decoded on one thread and their spans freed on another: glibc's
/// allocator spent about 40% of the agent's time there under load (perf,
/// nginx case); mimalloc's per-thread free lists make that a fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Traces the HTTP/1.x, HTTP/2 and gRPC requests (clear text, or HTTPS through
/// OpenSSL 3 or Go's crypto/tls) that every process on this machine serves or makes, and its
/// Redis, PostgreSQL and MySQL/MariaDB calls, with no change to those
/// processes, and prints one span per request or database command.
///
/// Needs root (or CAP_BPF and CAP_PERFMON) and a kernel with BTF (Linux 6.3+).
/// Stop it with Ctrl-C or SIGTERM: spans already seen are written before it exits.
#[derive(Debug, Parser)]
#[command(name = "tracer-agent", version, about, long_about)]
struct Cli {
    /// Trace only these processes (repeat the flag or separate by commas).
    /// Default: every process except the agent itself.
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
    pids: Vec<u32>,

    /// Which team owns which service: a TOML file of `[[team]]` tables (or
    /// YAML, .yaml/.yml: a `team:` list), each with a `name` and any of
    /// `services` (service.name globs), `cgroups` (cgroup path globs),
    /// `namespaces` and `workloads` (Kubernetes namespace and Deployment/...
    /// name globs), `pod_labels` (label = value glob, all must match); the
    /// first match wins. Without a match, the pod's `team` label, else the
    /// process's OTEL_RESOURCE_ATTRIBUTES `team` (else `service.namespace`)
    /// names it, else it is "unowned". Spans carry it as the `team`
    /// resource attribute, the duration metrics as a `team` label.
    #[arg(long, value_name = "PATH")]
    owners: Option<PathBuf>,

    /// Also write spans to PATH as OTLP/JSON lines: one ExportTraceServiceRequest
    /// per line, as the OpenTelemetry Collector's file exporter writes them.
    #[arg(long, value_name = "PATH")]
    export_file: Option<PathBuf>,

    /// Send spans to this OpenTelemetry (OTLP) endpoint: for grpc the server
    /// (http://HOST:4317), for http/* the base URL (http://HOST:4318, to
    /// which /v1/traces is added). OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, a full
    /// traces URL, wins over this. Unset: no OTLP export. https:// uses TLS,
    /// trusting the system's certificate authorities unless --otlp-certificate
    /// names others.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    /// PEM file of the certificate authorities that signed the OTLP
    /// endpoint's certificate, trusted instead of the system's (a private
    /// CA). OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE wins over this.
    #[arg(long, value_name = "PATH", env = "OTEL_EXPORTER_OTLP_CERTIFICATE")]
    otlp_certificate: Option<PathBuf>,

    /// Mutual TLS: the agent's PEM certificate (chain) for the OTLP endpoint,
    /// with --otlp-client-key. OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE
    /// wins over this.
    #[arg(
        long,
        value_name = "PATH",
        env = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
    )]
    otlp_client_certificate: Option<PathBuf>,

    /// Mutual TLS: the PEM private key of --otlp-client-certificate.
    /// OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY wins over this.
    #[arg(long, value_name = "PATH", env = "OTEL_EXPORTER_OTLP_CLIENT_KEY")]
    otlp_client_key: Option<PathBuf>,

    /// OTLP transport: grpc, http/protobuf or http/json.
    #[arg(
        long,
        value_name = "PROTOCOL",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    otlp_protocol: Protocol,

    /// Headers sent with every OTLP request, as key=value pairs separated by
    /// commas (values percent-encoded), e.g. an API key.
    #[arg(long, value_name = "K=V,...", env = "OTEL_EXPORTER_OTLP_HEADERS",
          value_parser = parse_headers_arg, hide_env_values = true)]
    otlp_headers: Option<Headers>,

    /// Time limit of one OTLP send attempt, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        env = "OTEL_EXPORTER_OTLP_TIMEOUT",
        default_value_t = 10_000
    )]
    otlp_timeout_ms: u64,

    /// Spans waiting for the OTLP backend at most (while it is down or slow);
    /// past this new spans are dropped and counted.
    #[arg(long, value_name = "N", env = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..))]
    otlp_queue_spans: u64,

    /// Spans in one OTLP request at most.
    #[arg(long, value_name = "N", env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..))]
    otlp_batch_spans: u64,

    /// A smaller OTLP batch is sent after this many milliseconds.
    #[arg(
        long,
        value_name = "MS",
        env = "OTEL_BSP_SCHEDULE_DELAY",
        default_value_t = 1_000
    )]
    otlp_batch_delay_ms: u64,

    /// Where to serve Prometheus metrics (/metrics) and, unless --viewer-addr
    /// moves it, the built-in trace viewer (/ and /api/...), or "none". The
    /// default listens on this host only; use 0.0.0.0:9464 to let a
    /// Prometheus elsewhere scrape it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", value_parser = parse_listen_addr)]
    metrics_addr: ListenAddr,

    /// Serve the trace viewer and its API on this address of its own
    /// (HOST:PORT), leaving only /metrics on --metrics-addr.
    #[arg(long, value_name = "ADDR")]
    viewer_addr: Option<SocketAddr>,

    /// Require this token (the file's first line) for the viewer and its
    /// API: `Authorization: Bearer TOKEN`, or HTTP Basic authentication with
    /// any user name and the token as password (browsers ask for it).
    /// /metrics never requires it. Set it before exposing the viewer beyond
    /// this host: the traces show URLs and database statements.
    #[arg(long, value_name = "PATH", env = "TRACER_VIEWER_TOKEN_FILE")]
    viewer_token_file: Option<PathBuf>,

    /// Serve the viewer over TLS (HTTPS) with this PEM certificate (chain),
    /// with --viewer-tls-key. When the viewer shares --metrics-addr,
    /// /metrics is HTTPS too.
    #[arg(long, value_name = "PATH")]
    viewer_tls_certificate: Option<PathBuf>,

    /// The PEM private key of --viewer-tls-certificate.
    #[arg(long, value_name = "PATH")]
    viewer_tls_key: Option<PathBuf>,

    /// Traces the viewer keeps at most (the oldest are evicted); 0 turns the
    /// trace store off.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    viewer_max_traces: usize,

    /// Memory the viewer's traces take at most, in MiB (the oldest are
    /// evicted). The default keeps the whole agent within 64 MiB under a
    /// saturated load (the 4 MiB ring buffer counts twice: it is mapped
    /// twice); 8 MiB holds a few thousand traces.
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    viewer_max_mib: usize,

    /// Name the pod, namespace, container and workload of each span's
    /// process (k8s.* resource attributes) from this node's pod list:
    /// `auto` fetches it from the API server when the agent runs in a pod
    /// with a service account (the node from K8S_NODE_NAME, else the host
    /// name), every 30 s; `off` never.
    #[arg(long, value_name = "MODE", value_enum, default_value = "auto")]
    kubernetes: KubernetesMode,

    /// Read the pod list from this file instead of the API server: the
    /// API's PodList JSON (`kubectl get pods -o json`), read again every
    /// 30 s.
    #[arg(long, value_name = "PATH")]
    kubernetes_pods_file: Option<PathBuf>,

    /// Do not print a line per span on stdout.
    #[arg(long, short)]
    quiet: bool,

    /// Payload bytes copied from each socket read or write (the rest is counted,
    /// not copied). Longer request heads than this are missed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CAPTURE,
          value_parser = clap::value_parser!(u32).range(0..=MAX_CAPTURE as i64))]
    capture_bytes: u32,

    /// Size of the kernel-to-agent ring buffer, in MiB (a power of two). The
    /// agent is woken when 64 KiB of events wait, and past half of it (by
    /// default, see --overload-kib) new requests are left out whole. It
    /// counts twice in the agent's resident memory (it is mapped twice). A
    /// node whose agent may be held off the CPU for long (bursts, a busy
    /// machine) wants more room; events that do not fit are counted as lost.
    #[arg(long, value_name = "MIB", default_value_t = 4, value_parser = parse_ring_mib)]
    ring_buffer_mib: u32,

    /// Overload: when more than this many KiB of events wait in the ring
    /// buffer for the agent, new requests are left out whole (decided in the
    /// kernel at each request's start; a call shares its request's fate, a
    /// callee on this node its caller's) and counted as
    /// tracer_kernel_requests_dropped_overload_total, so traces stay whole
    /// and the traced programs are never slowed. Default: half the ring
    /// buffer. 0: never (events that do not fit are lost, counted).
    #[arg(long, value_name = "KIB")]
    overload_kib: Option<u32>,

    /// Connections tracked at once; past this the least recently used one is
    /// dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    max_connections: usize,

    /// Which outbound HTTP/1.x requests without a W3C `traceparent` get one,
    /// inserted right after the request line (the rest of the request is
    /// unchanged), so that the agent on the next node continues the same
    /// trace: `remote` (the default) those to a peer off this node (not
    /// loopback, not an address of any network namespace here, or of
    /// --netns); `all` every client connection's (the flag alone means all);
    /// `off` none. Connections opened after the agent started only; needs
    /// cgroup v2. Client sockets that get headers pass an sk_msg program.
    #[arg(long, value_name = "MODE", value_enum, default_value = "remote",
          num_args = 0..=1, default_missing_value = "all")]
    inject_traceparent: Injection,

    /// Trace only processes in this network namespace: a path such as
    /// /run/netns/NAME (from `ip netns add`) or /proc/PID/ns/net. One agent
    /// per namespace stands in for one agent per node.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,

    /// Tie each Node.js outbound request to the inbound request it is made
    /// for exactly (across timers, promises, `await`, Promise.all and
    /// queued http.Agent requests) by running a small script inside every
    /// Node.js process it traces (executables named node or nodejs; with
    /// --pid or --netns, only those processes): the agent sends
    /// the process SIGUSR1, which opens Node's inspector on 127.0.0.1:9229,
    /// evaluates the script there, and closes the inspector again. Each
    /// process is logged. Skipped for processes started with --inspect.
    /// Without it, Node.js calls are linked by the thread rule (exact when
    /// a call is made in the callback that read its request, else unlinked).
    #[arg(long)]
    node_context_script: bool,

    /// Do not read TLS plaintext. By default the agent attaches uprobes to
    /// OpenSSL 3 (libssl.so.3: the system's and any other copy a process
    /// maps; executables that link it in and export it, like node) and to
    /// Go programs' crypto/tls, so HTTPS traffic gives spans like HTTP, with
    /// url.scheme=https.
    #[arg(long)]
    no_tls: bool,

    /// Log level of the agent's own messages on stderr (error, warn, info,
    /// debug, trace). RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KubernetesMode {
    Auto,
    Off,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Injection {
    Off,
    Remote,
    All,
}

impl From<Injection> for InjectMode {
    fn from(value: Injection) -> Self {
        match value {
            Injection::Off => InjectMode::Off,
            Injection::Remote => InjectMode::Remote,
            Injection::All => InjectMode::All,
        }
    }
}

#[derive(Clone, Debug)]
enum ListenAddr {
    Off,
    At(SocketAddr),
}

fn parse_listen_addr(value: &str) -> Result<ListenAddr, String> {
    if value == "none" {
        return Ok(ListenAddr::Off);
    }
    value
        .parse()
        .map(ListenAddr::At)
        .map_err(|_| format!("{value:?} is not HOST:PORT (e.g. 127.0.0.1:9464) or none"))
}

/// The listening sockets of /metrics and the viewer, and how the viewer is
/// protected.
struct Endpoints {
    listeners: Vec<(tokio::net::TcpListener, Parts)>,
    access: Access,
    tls: Option<access::TlsConfig>,
}

impl Endpoints {
    /// None when nothing is served.
    async fn open(cli: &Cli) -> anyhow::Result<Option<Endpoints>> {
        let bind = |addr: SocketAddr, what: &'static str, flag: &'static str| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} for {what}: {e} (choose another with {flag} \
                     HOST:PORT{})",
                    if flag == "--metrics-addr" {
                        ", or --metrics-addr none"
                    } else {
                        ""
                    }
                )
            })
        };
        let mut listeners = Vec::new();
        match (&cli.metrics_addr, cli.viewer_addr) {
            (ListenAddr::At(metrics), None) => listeners.push((
                bind(*metrics, "metrics and the viewer", "--metrics-addr").await?,
                Parts::MetricsAndViewer,
            )),
            (metrics, Some(viewer)) => {
                if let ListenAddr::At(metrics) = metrics {
                    listeners.push((
                        bind(*metrics, "metrics", "--metrics-addr").await?,
                        Parts::Metrics,
                    ));
                }
                listeners.push((
                    bind(viewer, "the viewer", "--viewer-addr").await?,
                    Parts::Viewer,
                ));
            }
            (ListenAddr::Off, None) => {
                if cli.viewer_token_file.is_some() || cli.viewer_tls_certificate.is_some() {
                    anyhow::bail!(
                        "the viewer's token or TLS settings are given but no viewer is served \
                         (--metrics-addr none and no --viewer-addr)"
                    );
                }
                return Ok(None);
            }
        }
        let access = match &cli.viewer_token_file {
            Some(path) => Access::from_token_file(path)?,
            None => Access::default(),
        };
        let tls = match (&cli.viewer_tls_certificate, &cli.viewer_tls_key) {
            (Some(certificate), Some(key)) => Some(access::tls_config(certificate, key).await?),
            (None, None) => None,
            _ => anyhow::bail!(
                "the viewer's TLS needs both --viewer-tls-certificate and --viewer-tls-key"
            ),
        };
        Ok(Some(Endpoints {
            listeners,
            access,
            tls,
        }))
    }

    fn addresses(&self) -> anyhow::Result<Vec<SocketAddr>> {
        Ok(self
            .listeners
            .iter()
            .map(|(listener, _)| listener.local_addr())
            .collect::<Result<_, _>>()?)
    }

    /// Starts serving; whether /metrics is among what is served.
    fn serve(self, metrics: &Arc<Metrics>, store: &Arc<TraceStore>) -> anyhow::Result<bool> {
        let mut serves_metrics = false;
        for (listener, parts) in self.listeners {
            let addr = listener.local_addr()?;
            let tls = (parts != Parts::Metrics)
                .then(|| self.tls.clone())
                .flatten();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let token = if self.access.requires_token() {
                " (token required)"
            } else {
                ""
            };
            match parts {
                Parts::MetricsAndViewer => tracing::info!(
                    "metrics on {scheme}://{addr}/metrics, trace viewer on {scheme}://{addr}/{token}"
                ),
                Parts::Metrics => tracing::info!("metrics on {scheme}://{addr}/metrics"),
                Parts::Viewer => tracing::info!("trace viewer on {scheme}://{addr}/{token}"),
            }
            if parts != Parts::Metrics && !addr.ip().is_loopback() && !self.access.requires_token()
            {
                tracing::warn!(
                    "the trace viewer on {addr} answers anyone who reaches it, and traces show \
                     URLs and database statements: set --viewer-token-file (and TLS) to protect it"
                );
            }
            serves_metrics |= parts != Parts::Viewer;
            let app = viewer::router(parts, metrics.clone(), store.clone(), &self.access);
            tokio::spawn(viewer::serve(listener, app, tls));
        }
        Ok(serves_metrics)
    }
}

/// Header pairs as one flag value (clap would take a bare `Vec` as a list of values).
#[derive(Clone, Debug)]
struct Headers(Vec<(String, String)>);

fn parse_headers_arg(value: &str) -> Result<Headers, String> {
    parse_headers(value).map(Headers)
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
    // Before the runtime's threads start: the offsets are read in a child process.
    let result = loader::kernel_offsets_in_child(loader::VMLINUX_BTF)
        .map_err(anyhow::Error::from)
        .and_then(|offsets| run(cli, offsets));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli, offsets: KernelOffsets) -> anyhow::Result<()> {
    let ring_buffer_bytes = cli.ring_buffer_mib * 1024 * 1024;
    let overload_bytes = match cli.overload_kib {
        None => ring_buffer_bytes / 2,
        Some(kib) if u64::from(kib) * 1024 < u64::from(ring_buffer_bytes) => kib * 1024,
        Some(kib) => anyhow::bail!(
            "--overload-kib {kib} is not below the ring buffer's {} KiB: the ring would fill \
             before any request is left out (choose less, or a larger --ring-buffer-mib)",
            ring_buffer_bytes / 1024
        ),
    };
    let owners = match &cli.owners {
        Some(path) => Owners::load(path)?,
        None => Owners::default(),
    };
    let stats = Arc::new(Stats::default());
    let mut exporters: Vec<Box<dyn Exporter>> = Vec::new();
    if !cli.quiet {
        exporters.push(Box::new(StdoutExporter::new(stats.exporter("stdout"))));
    }
    if let Some(path) = &cli.export_file {
        let exporter = FileExporter::create(path, host_name(), stats.exporter("file"))
            .map_err(|e| anyhow::anyhow!("cannot create --export-file {}: {e}", path.display()))?;
        exporters.push(Box::new(exporter));
    }
    let mut otlp_destination = None;
    if let Some(options) = otlp_options(&cli)? {
        otlp_destination = Some(format!("{} ({:?})", options.endpoint, options.protocol));
        exporters.push(Box::new(OtlpExporter::start(
            options,
            stats.exporter("otlp"),
        )?));
    }
    // Bound and read before the programs load, so a mistake fails at once.
    let endpoints = Endpoints::open(&cli).await?;
    let pod_source = match (&cli.kubernetes_pods_file, cli.kubernetes) {
        (Some(path), _) => Some(PodSource::File(path.clone())),
        (None, KubernetesMode::Auto) => PodSource::in_cluster(),
        (None, KubernetesMode::Off) => None,
    };
    let pods = match pod_source {
        Some(source) => Some(Pods::start(source).await?),
        None => None,
    };
    let loader::Loaded {
        probes,
        events,
        ignored_sockets,
        runtimes,
        local_addresses,
    } = loader::load(&LoadOptions {
        offsets,
        capture_bytes: cli.capture_bytes,
        ring_buffer_bytes,
        overload_bytes,
        pids: cli.pids.clone(),
        inject: cli.inject_traceparent.into(),
        netns: cli.netns.clone(),
        node_context_script: cli.node_context_script,
        tls: !cli.no_tls,
        // Sent again before the agent forgets an idle connection.
        reannounce_after: CONNECTION_IDLE_TIMEOUT / 2,
    })?;
    if let Some(destination) = otlp_destination {
        tracing::info!("exporting spans over OTLP to {destination}");
    }
    let (metrics, store) = match endpoints {
        None => (None, None),
        Some(endpoints) => {
            let metrics = Arc::new(Metrics::new(
                stats.clone(),
                Some(probes.kernel_counters()),
                pods.is_some(),
            ));
            let store = Arc::new(TraceStore::new(
                StoreLimits {
                    max_traces: cli.viewer_max_traces,
                    max_bytes: cli.viewer_max_mib.saturating_mul(1024 * 1024),
                },
                endpoints.addresses()?,
            ));
            let serves_metrics = endpoints.serve(&metrics, &store)?;
            (
                serves_metrics.then_some(metrics),
                store.enabled().then_some(store),
            )
        }
    };

    // Before traffic is expected: Go and Node.js processes already running
    // are followed from their first request.
    let processes_seen = runtimes.spawn()?;
    let mut scope = if cli.pids.is_empty() {
        "every process".to_string()
    } else {
        format!("pids {:?}", cli.pids)
    };
    if let Some(netns) = &cli.netns {
        scope += &format!(" in network namespace {}", netns.display());
    }
    let injection = match (cli.inject_traceparent, &local_addresses) {
        (Injection::All, _) => "; adding traceparent to outbound requests",
        (Injection::Remote, Some(_)) => {
            "; adding traceparent to outbound requests that leave the node"
        }
        _ => "",
    };
    if let Some(mut local_addresses) = local_addresses {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(loader::LocalAddresses::REFRESH).await;
                local_addresses = match tokio::task::spawn_blocking(move || {
                    local_addresses.refresh();
                    local_addresses
                })
                .await
                {
                    Ok(refreshed) => refreshed,
                    Err(_) => return,
                };
            }
        });
    }
    // Server requests from elsewhere have no caller here to wait for.
    let node_addresses = match loader::node_addresses(cli.netns.as_deref()) {
        Ok(addresses) if !addresses.is_empty() => Some(addresses.into_iter().collect()),
        Ok(_) => {
            tracing::warn!(
                "found none of this node's addresses in /proc: every server request whose \
                 caller is not seen yet waits for it, as if it came from this node"
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                "cannot list this node's addresses ({e}): every server request whose caller \
                 is not seen yet waits for it, as if it came from this node"
            );
            None
        }
    };
    // Read while they still run: a process that exits before its first
    // event is handled is still named from its environment.
    let mut processes = ProcessCache::new("/proc", owners, pods);
    let running = processes.read_running(&cli.pids);
    tracing::debug!("read {running} running processes");
    // Loading (the kernel's BTF, the eBPF object) freed about 20 MiB.
    tracer_agent::memory::release_freed();
    // Last: the pipeline reads the ring buffer from now on.
    probes.attach_tracepoints()?;
    tracing::info!(
        "tracing {scope}: {} tracepoints attached{injection}; Ctrl-C to stop",
        TRACEPOINTS.len() + SOCK_TRACEPOINTS.len()
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

    pipeline::run(
        events,
        KernelLists {
            ignored_sockets,
            processes_seen,
        },
        PipelineOptions {
            max_connections: cli.max_connections,
            idle_timeout: CONNECTION_IDLE_TIMEOUT,
            exporters,
            metrics,
            store,
            processes,
            node_addresses,
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
    let (uprobe_run_time, uprobe_runs) = probes.uprobe_run_stats();
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
    let exported: Vec<String> = stats
        .exporters()
        .iter()
        .map(|(name, s)| {
            format!(
                "{name}: exported={} failures={} dropped={}",
                Stats::get(&s.spans_exported),
                Stats::get(&s.failures),
                Stats::get(&s.spans_dropped)
            )
        })
        .collect();
    tracing::info!(
        "stopped: events_read={} event_bytes_read={} spans_produced={} \
         parse_errors={} connections_evicted={} {} bpf_run_time_ns={} \
         bpf_runs={} uprobe_run_time_ns={} uprobe_runs={} kernel: {} exporters: [{}]",
        Stats::get(&stats.events_read),
        Stats::get(&stats.event_bytes_read),
        Stats::get(&stats.spans_produced),
        Stats::get(&stats.parse_errors),
        Stats::get(&stats.connections_evicted),
        links.join(" "),
        bpf_run_time.as_nanos(),
        bpf_runs,
        uprobe_run_time.as_nanos(),
        uprobe_runs,
        kernel.join(" "),
        exported.join("; ")
    );
    Ok(())
}

/// The OTLP exporter's options from the flags and the standard variables;
/// none when no endpoint is set.
fn otlp_options(cli: &Cli) -> anyhow::Result<Option<OtlpOptions>> {
    let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let protocol = match non_empty("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(p) => p
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: {e}"))?,
        None => cli.otlp_protocol,
    };
    let endpoint = match non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(url) => OtlpOptions::endpoint_url(&url, protocol, true),
        None => match cli
            .otlp_endpoint
            .as_deref()
            .filter(|e| !e.trim().is_empty())
        {
            Some(base) => OtlpOptions::endpoint_url(base, protocol, false),
            None => return Ok(None),
        },
    };
    Ok(Some(OtlpOptions {
        endpoint,
        protocol,
        headers: cli
            .otlp_headers
            .clone()
            .map(|Headers(pairs)| pairs)
            .unwrap_or_default(),
        timeout: Duration::from_millis(cli.otlp_timeout_ms.max(1)),
        max_queue_spans: cli.otlp_queue_spans as usize,
        max_batch_spans: cli.otlp_batch_spans as usize,
        batch_delay: Duration::from_millis(cli.otlp_batch_delay_ms),
        shutdown_timeout: Duration::from_secs(10),
        host_name: host_name(),
        tls: TlsFiles {
            ca_file: traces_path("CERTIFICATE", &cli.otlp_certificate),
            client_certificate: traces_path("CLIENT_CERTIFICATE", &cli.otlp_client_certificate),
            client_key: traces_path("CLIENT_KEY", &cli.otlp_client_key),
        },
    }))
}

/// A file named by `OTEL_EXPORTER_OTLP_TRACES_<NAME>`, else by the flag (or
/// its general variable).
fn traces_path(name: &str, flag: &Option<PathBuf>) -> Option<PathBuf> {
    std::env::var_os(format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| flag.clone())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
