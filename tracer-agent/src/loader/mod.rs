//! Loading and attaching the kernel programs, and the checks before it that
//! turn a kernel's refusal into a message that says what to do.

mod addresses;
pub use addresses::listed as node_addresses;
mod blocked;
mod btf;
mod dwarf;
pub mod go_binary;
mod go_programs;
mod netns;
mod node_inspector;
mod node_programs;
mod python_programs;
mod runtimes;
mod tls_programs;
mod uprobes;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf, SockHash},
    programs::{
        CgroupAttachMode, Program, ProgramError, RawTracePoint, SkMsg, SockOps, TracePoint,
    },
};
use thiserror::Error;
use tracer_common::{
    Config, Counter, InjectMode, KernelOffsets, MAX_BLOCKED_AT_ATTACH, MAX_CAPTURE,
    MAX_TRACED_PIDS, RUNTIME_PYTHON, SocketState,
};

pub use btf::{VMLINUX_BTF, kernel_offsets_in_child};
pub use go_programs::GoPrograms;
pub use runtimes::RuntimePrograms;

/// The kernel programs, built by build.rs and embedded in the binary.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// The programs on `syscalls:` tracepoints, each named after its tracepoint.
pub const TRACEPOINTS: &[&str] = &[
    "sys_enter_write",
    "sys_enter_writev",
    "sys_enter_sendto",
    "sys_enter_sendmsg",
    "sys_exit_accept",
    "sys_exit_accept4",
    "sys_enter_connect",
    "sys_exit_connect",
    "sys_enter_close",
];

/// The programs on `sock:` tracepoints (raw: the `struct sock` itself is the
/// first argument), each named after its tracepoint. Linux 6.3+.
pub const SOCK_TRACEPOINTS: &[&str] = &["sock_recv_length", "sock_send_length"];

/// The `syscalls:` program only asyncio needs (which task a new connection
/// goes to): attached with the first CPython probes, as it runs for every
/// `epoll_ctl` of every process (two per request of an event-loop server).
const ASYNCIO_TRACEPOINT: &str = "sys_enter_epoll_ctl";

/// Every tracepoint program with its tracepoint's category.
fn tracepoints() -> impl Iterator<Item = (&'static str, &'static str)> {
    let syscalls = TRACEPOINTS.iter().chain([&ASYNCIO_TRACEPOINT]);
    let syscalls = syscalls.map(|&name| ("syscalls", name));
    syscalls.chain(SOCK_TRACEPOINTS.iter().map(|&name| ("sock", name)))
}

fn attach_error(category: &'static str, name: &'static str) -> impl Fn(ProgramError) -> LoadError {
    move |source| LoadError::Attach {
        category,
        name,
        source,
    }
}

/// The programs of `--inject-traceparent`.
const SOCK_OPS_PROGRAM: &str = "watch_client_sockets";
const SK_MSG_PROGRAM: &str = "inject_traceparent";

/// The reader is woken once this many bytes of events wait: about a
/// millisecond of a saturated nginx's events. The agent's bursts of work
/// are then short, and so is the time a traced program waits for a CPU
/// behind them: against a 1 MiB mark, throughput went up by 7% (OTLP) to
/// 22% (file) and p99 latency down by 40-48%, for 1.2-1.4 µs more agent
/// CPU per request (BENCHMARKS.md). Below the mark, the reader's 20 ms
/// timer collects.
const WAKEUP_BYTES: u32 = 64 * 1024;

const TRACEFS: &str = "/sys/kernel/tracing";
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "tracer-agent needs root, or the capabilities CAP_BPF and CAP_PERFMON: run it with sudo"
    )]
    NotPrivileged,
    #[error(
        "no kernel BTF at {path}: tracer-agent needs Linux 6.3+ built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf { path: String },
    #[error("cannot read kernel BTF at {path}: {reason}")]
    BtfUnreadable { path: String, reason: String },
    #[error(
        "kernel BTF has no member {strct}.{member}: this kernel's layout is not supported yet (please report `uname -r`)"
    )]
    BtfMember {
        strct: &'static str,
        member: &'static str,
    },
    #[error("kernel member {strct}.{member} is a bitfield: this kernel is not supported yet")]
    BtfBitfield {
        strct: &'static str,
        member: &'static str,
    },
    #[error(
        "tracefs is not mounted and mounting it failed ({reason}): run `mount -t tracefs nodev {TRACEFS}`"
    )]
    Tracefs { reason: String },
    #[error(
        "the kernel has no tracepoint {0}:{1}: tracer-agent needs Linux 6.3+ built with CONFIG_FTRACE_SYSCALLS=y"
    )]
    MissingTracepoint(&'static str, &'static str),
    #[error("--capture-bytes must be between 0 and {MAX_CAPTURE}, not {0}")]
    CaptureBytes(u32),
    #[error("--pid names {0} processes; at most {MAX_TRACED_PIDS} can be traced by pid")]
    TooManyPids(usize),
    #[error("the kernel refused the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error(
        "the eBPF object has no map or program {0}: the build is broken, rebuild with `cargo xtask build`"
    )]
    Missing(&'static str),
    #[error("cannot attach to tracepoint {category}:{name}: {source}")]
    Attach {
        category: &'static str,
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot use network namespace {path} (--netns): {reason}")]
    Netns { path: String, reason: String },
    #[error(
        "--inject-traceparent all needs cgroup v2, and none is mounted: mount it with `mount -t cgroup2 none /sys/fs/cgroup/unified`, or choose --inject-traceparent off"
    )]
    NoCgroup2,
    #[error("cannot attach {name} for --inject-traceparent: {source}")]
    AttachInjection {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot open cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// What the agent asks of the kernel side.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Kernel struct offsets (`kernel_offsets_in_child`).
    pub offsets: KernelOffsets,
    /// Payload prefix copied per syscall.
    pub capture_bytes: u32,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Backlog in the ring buffer above which new requests are left out
    /// whole (0: never).
    pub overload_bytes: u32,
    /// Only these processes are traced; all when empty.
    pub pids: Vec<u32>,
    /// Which outbound HTTP/1.x requests without a `traceparent` get one.
    pub inject: InjectMode,
    /// Only processes in this network namespace are traced (and get headers).
    pub netns: Option<PathBuf>,
    /// Run the context script in Node.js processes (`--node-context-script`).
    pub node_context_script: bool,
    /// Read TLS plaintext with uprobes on OpenSSL (not `--no-tls`).
    pub tls: bool,
    /// How long after a socket's endpoints were sent the kernel sends them
    /// again (`Config::reannounce_ns`).
    pub reannounce_after: std::time::Duration,
}

/// The loaded, attached programs. Dropping it detaches everything.
pub struct Probes {
    /// Holds the programs and their links (shared with `GoPrograms`, which
    /// attaches uprobes as it finds Go programs).
    ebpf: Arc<Mutex<Ebpf>>,
    counters: Arc<KernelCounters>,
}

impl Probes {
    /// Attaches the tracepoint programs: from now on the ring buffer fills,
    /// so the agent calls this when it is about to read it (a busy node
    /// fills the ring in a fraction of a second, and requests left out then
    /// would start connections mid-stream). They do nothing until all are
    /// attached (`Config::live`).
    pub fn attach_tracepoints(&self) -> Result<(), LoadError> {
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        for &name in SOCK_TRACEPOINTS {
            let program: &mut RawTracePoint =
                program_mut(&mut ebpf, name, attach_error("sock", name))?;
            program.attach(name).map_err(attach_error("sock", name))?;
        }
        for &name in TRACEPOINTS {
            let program: &mut TracePoint =
                program_mut(&mut ebpf, name, attach_error("syscalls", name))?;
            program
                .attach("syscalls", name)
                .map_err(attach_error("syscalls", name))?;
        }
        // All at once from here on.
        let mut config_map: Array<_, Config> = map_mut(&mut ebpf, "CONFIG")?;
        let config = config_map.get(&0, 0).map_err(map_error("CONFIG"))?;
        let live = Config { live: 1, ..config };
        config_map.set(0, live, 0).map_err(map_error("CONFIG"))?;
        // A write entered from now on is seen at its enter.
        let mut blocked: HashMap<_, u64, u8> = map_mut(&mut ebpf, "BLOCKED_AT_ATTACH")?;
        let threads = blocked::threads_in_socket_writes(std::process::id());
        for key in threads.iter().take(MAX_BLOCKED_AT_ATTACH as usize) {
            blocked
                .insert(key, 0, 0)
                .map_err(map_error("BLOCKED_AT_ATTACH"))?;
        }
        tracing::debug!("{} threads were in a socket write at attach", threads.len());
        Ok(())
    }

    /// The kernel-side counters, summed over CPUs.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        self.counters.read()
    }

    /// The same counters, for a reader that outlives this borrow (metrics).
    pub fn kernel_counters(&self) -> Arc<KernelCounters> {
        self.counters.clone()
    }
}

/// The programs' `COUNTERS` map.
pub struct KernelCounters(PerCpuArray<MapData, u64>);

impl KernelCounters {
    pub fn read(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let total = self
                    .0
                    .get(&(counter as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (counter, total)
            })
            .collect()
    }
}

impl Probes {
    /// Total run time and runs of the agent's programs. The kernel counts
    /// these only while `kernel.bpf_stats_enabled` is 1; otherwise zero.
    pub fn run_stats(&self) -> (std::time::Duration, u64) {
        self.program_run_stats()
            .into_iter()
            .fold((std::time::Duration::ZERO, 0), |(time, runs), (_, t, n)| {
                (time + t, runs + n)
            })
    }

    /// Run time and runs of the uprobes on language runtimes (Go), a part
    /// of `run_stats`.
    pub fn uprobe_run_stats(&self) -> (std::time::Duration, u64) {
        let ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        ebpf.programs()
            .filter(|(_, program)| matches!(program, Program::UProbe(_)))
            .filter_map(|(_, program)| program.info().ok())
            .fold((std::time::Duration::ZERO, 0), |(time, runs), info| {
                (time + info.run_time(), runs + info.run_count())
            })
    }

    /// Run time and runs of each program, by name.
    pub fn program_run_stats(&self) -> Vec<(String, std::time::Duration, u64)> {
        let ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        ebpf.programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some((name.to_string(), info.run_time(), info.run_count()))
            })
            .collect()
    }
}

/// What `load` hands out: the attached programs, the ring buffer their events
/// arrive on, the kernel's list of sockets to skip, its list of Go
/// processes, and (with `InjectMode::Remote`) its list of this node's addresses.
pub struct Loaded {
    pub probes: Probes,
    pub events: RingBuf<MapData>,
    pub ignored_sockets: IgnoredSockets,
    pub runtimes: RuntimePrograms,
    pub local_addresses: Option<LocalAddresses>,
}

/// The kernel's list of this node's addresses (`LOCAL_ADDRESSES`): calls to
/// them get no `traceparent` with `InjectMode::Remote`. Containers come and
/// go, so the agent refreshes it now and then.
pub struct LocalAddresses {
    map: HashMap<MapData, [u8; 16], u8>,
    netns: Option<PathBuf>,
}

impl LocalAddresses {
    /// How often the list is read again.
    pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

    /// Lists the node's addresses again (blocking: reads `/proc`) and makes
    /// the kernel's map the same, logging what could not be done.
    pub fn refresh(&mut self) {
        let now = match addresses::listed(self.netns.as_deref()) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("cannot list this node's addresses: {e}");
                return;
            }
        };
        let wanted: std::collections::BTreeSet<[u8; 16]> =
            now.iter().map(addresses::map_key).collect();
        let stale: Vec<[u8; 16]> = self
            .map
            .keys()
            .flatten()
            .filter(|key| !wanted.contains(key))
            .collect();
        for key in &stale {
            let _ = self.map.remove(key);
        }
        let mut full = 0usize;
        for key in &wanted {
            if self.map.insert(key, 1, 0).is_err() {
                full += 1;
            }
        }
        if full > 0 {
            tracing::warn!(
                "{full} of this node's {} addresses do not fit the kernel's list \
                 (MAX_LOCAL_ADDRESSES): calls to them get a traceparent",
                wanted.len()
            );
        }
    }
}

/// The kernel's per-socket state, where the agent marks the connections it
/// does not parse so that their syscalls are skipped (the kernel starts a
/// socket's state over at accept/connect and forgets it at close).
pub struct IgnoredSockets(HashMap<MapData, u64, SocketState>);

/// `BPF_EXIST` (linux/bpf.h): update an entry only if it is there.
const BPF_EXIST: u64 = 2;

impl IgnoredSockets {
    /// Marks the connection on `sock_id` with these `ports` (local, remote)
    /// if the kernel still has it. The agent reads events behind the
    /// kernel: by now the connection may be closed and its `struct sock`
    /// reused by a newer one (other ports), which must not be skipped; a
    /// closed one needs no mark.
    pub fn ignore(&mut self, sock_id: u64, ports: (u16, u16)) -> Result<(), aya::maps::MapError> {
        let Ok(mut state) = self.0.get(&sock_id, 0) else {
            return Ok(());
        };
        if (state.local_port, state.remote_port) != ports {
            return Ok(());
        }
        state.ignored = 1;
        self.0.insert(sock_id, state, BPF_EXIST)
    }
}

/// Checks the machine, loads the programs, configures and attaches them.
pub fn load(options: &LoadOptions) -> Result<Loaded, LoadError> {
    check_privileges()?;
    if options.capture_bytes as usize > MAX_CAPTURE {
        return Err(LoadError::CaptureBytes(options.capture_bytes));
    }
    if options.pids.len() > MAX_TRACED_PIDS as usize {
        return Err(LoadError::TooManyPids(options.pids.len()));
    }
    let netns = options.netns.as_deref().map(netns::netns_ids).transpose()?;
    ensure_tracefs()?;
    for (category, name) in tracepoints() {
        if !Path::new(&format!("{TRACEFS}/events/{category}/{name}")).exists() {
            return Err(LoadError::MissingTracepoint(category, name));
        }
    }

    // No kernel BTF for aya: the programs need no CO-RE relocation (offsets
    // come in CONFIG), and parsing vmlinux's BTF a second time here would add
    // tens of MiB to the agent's start-up peak.
    // `IN_FLIGHT` and `TLS_CALLS` are task storage maps, a type aya does
    // not wrap: aya creates them, and only the programs use them.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .allow_unsupported_maps()
        .override_global("TASK_FILES", &options.offsets.task_files, true)
        .override_global("FILES_FDT", &options.offsets.files_fdt, true)
        .override_global("FDTABLE_MAX_FDS", &options.offsets.fdtable_max_fds, true)
        .override_global("FDTABLE_FD", &options.offsets.fdtable_fd, true)
        .map_max_entries("EVENTS", options.ring_buffer_bytes)
        .load(EBPF_OBJECT)?;

    let config = Config {
        offsets: options.offsets,
        agent_pid: std::process::id(),
        filter_pids: u32::from(!options.pids.is_empty()),
        capture_bytes: options.capture_bytes,
        wakeup_bytes: WAKEUP_BYTES,
        inject_traceparent: options.inject as u32,
        netns_inum: netns.map_or(0, |n| n.inum),
        overload_bytes: options.overload_bytes,
        netns_cookie: netns.map_or(0, |n| n.cookie),
        tls_probes: 0,
        live: 0,
        runtimes: 0,
        _pad: 0,
        reannounce_ns: options.reannounce_after.as_nanos() as u64,
    };
    let mut config_map: Array<_, Config> = map_mut(&mut ebpf, "CONFIG")?;
    config_map.set(0, config, 0).map_err(map_error("CONFIG"))?;
    let mut pids: HashMap<_, u32, u8> = map_mut(&mut ebpf, "TRACED_PIDS")?;
    for pid in &options.pids {
        pids.insert(pid, 1, 0).map_err(map_error("TRACED_PIDS"))?;
    }

    // Verified now, attached by `Probes::attach_tracepoints` once the agent
    // is ready to read what they send.
    for &name in TRACEPOINTS.iter().chain([&ASYNCIO_TRACEPOINT]) {
        let error = attach_error("syscalls", name);
        let program: &mut TracePoint = program_mut(&mut ebpf, name, error)?;
        program.load().map_err(attach_error("syscalls", name))?;
    }
    for &name in SOCK_TRACEPOINTS {
        let error = attach_error("sock", name);
        let program: &mut RawTracePoint = program_mut(&mut ebpf, name, error)?;
        program.load().map_err(attach_error("sock", name))?;
    }

    let mut inject = options.inject;
    if inject != InjectMode::Off
        && let Err(e) =
            netns::cgroup2_root().and_then(|cgroup| attach_injection(&mut ebpf, &cgroup))
    {
        // The default degrades (calls across nodes are then split there);
        // `all`, asked for by name, is an error.
        if inject == InjectMode::All {
            return Err(e);
        }
        tracing::warn!(
            "no traceparent injection: {e}; traces that cross nodes will be split there"
        );
        inject = InjectMode::Off;
        let mut config_map: Array<_, Config> = map_mut(&mut ebpf, "CONFIG")?;
        let off = Config {
            inject_traceparent: InjectMode::Off as u32,
            ..config
        };
        config_map.set(0, off, 0).map_err(map_error("CONFIG"))?;
    }
    // Loaded now, attached per Go executable as they are found.
    let go_disabled = uprobes::load(
        &mut ebpf,
        go_binary::GoProbe::ALL.map(go_binary::GoProbe::program),
    );
    if let Some(reason) = &go_disabled {
        tracing::warn!("calls of Go programs will stay unlinked: {reason}");
    }
    let python_disabled = uprobes::load(&mut ebpf, python_programs::PROGRAMS);
    if let Some(reason) = &python_disabled {
        tracing::warn!("asyncio calls will follow the thread rule: {reason}");
    }
    let node_enabled = options.node_context_script
        && match uprobes::load(&mut ebpf, [node_programs::PROGRAM]) {
            None => true,
            Some(reason) => {
                tracing::warn!("no context script for Node.js processes: {reason}");
                false
            }
        };
    // Loaded now, attached per file that exports OpenSSL, from the system's
    // and as processes are found.
    let tls_enabled = options.tls
        && match tls_programs::load(&mut ebpf) {
            None => true,
            Some(reason) => {
                tracing::warn!("TLS traffic is not read: {reason}");
                false
            }
        };
    if tls_enabled {
        let mut config_map: Array<_, Config> = map_mut(&mut ebpf, "CONFIG")?;
        let current = config_map.get(&0, 0).map_err(map_error("CONFIG"))?;
        let with_tls = Config {
            tls_probes: 1,
            ..current
        };
        config_map
            .set(0, with_tls, 0)
            .map_err(map_error("CONFIG"))?;
    }
    let mut local_addresses = LocalAddresses {
        map: take_map(&mut ebpf, "LOCAL_ADDRESSES")?,
        netns: options.netns.clone(),
    };
    // Before any connection is judged: calls to the node itself get no header.
    if inject == InjectMode::Remote {
        local_addresses.refresh();
    }
    let events = take_map(&mut ebpf, "EVENTS")?;
    let counters = take_map(&mut ebpf, "COUNTERS")?;
    let ignored = take_map(&mut ebpf, "SOCKETS")?;
    let go_processes = take_map(&mut ebpf, "GO_PROCESSES")?;
    let go_spawn_ranges = take_map(&mut ebpf, "GO_SPAWN_RANGES")?;
    let node_processes = take_map(&mut ebpf, "NODE_PROCESSES")?;
    let python_frames = take_map(&mut ebpf, "PY_FRAMES")?;
    let ebpf = Arc::new(Mutex::new(ebpf));
    Ok(Loaded {
        probes: Probes {
            ebpf: ebpf.clone(),
            counters: Arc::new(KernelCounters(counters)),
        },
        events,
        ignored_sockets: IgnoredSockets(ignored),
        runtimes: RuntimePrograms {
            go: GoPrograms::new(
                ebpf.clone(),
                go_processes,
                go_spawn_ranges,
                go_disabled,
                tls_enabled,
            ),
            python: python_disabled
                .is_none()
                .then(|| python_programs::PythonPrograms::new(ebpf.clone(), python_frames)),
            node: node_enabled
                .then(|| node_programs::NodePrograms::new(ebpf.clone(), node_processes)),
            tls: tls_enabled.then(|| tls_programs::TlsPrograms::new(ebpf)),
            proc_root: PathBuf::from("/proc"),
            pids: (!options.pids.is_empty()).then(|| options.pids.iter().copied().collect()),
            netns_inum: netns.map(|ids| u64::from(ids.inum)),
        },
        local_addresses: (inject == InjectMode::Remote).then_some(local_addresses),
    })
}

/// `sock_ops` on the cgroup v2 root (every socket of the machine passes it;
/// it keeps client sockets of the traced namespace), `sk_msg` on the map it
/// fills. Attached by a BPF link, which other links on the root cgroup
/// (another agent's, one per `--netns`) sit beside.
fn attach_injection(ebpf: &mut Ebpf, cgroup: &Path) -> Result<(), LoadError> {
    let attach_error = |name| move |source| LoadError::AttachInjection { name, source };
    let sockets: SockHash<_, u64> = map_mut(ebpf, "INJECT_SOCKETS")?;
    let sockets_fd = sockets
        .fd()
        .try_clone()
        .map_err(|e| map_error("INJECT_SOCKETS")(e.into()))?;
    let sk_msg: &mut SkMsg = program_mut(ebpf, SK_MSG_PROGRAM, attach_error(SK_MSG_PROGRAM))?;
    sk_msg.load().map_err(attach_error(SK_MSG_PROGRAM))?;
    sk_msg
        .attach(&sockets_fd)
        .map_err(attach_error(SK_MSG_PROGRAM))?;

    let cgroup_dir = std::fs::File::open(cgroup).map_err(|source| LoadError::Cgroup {
        path: cgroup.display().to_string(),
        source,
    })?;
    let sock_ops: &mut SockOps =
        program_mut(ebpf, SOCK_OPS_PROGRAM, attach_error(SOCK_OPS_PROGRAM))?;
    sock_ops.load().map_err(attach_error(SOCK_OPS_PROGRAM))?;
    // Attached by a BPF link (Linux 5.7+), which takes no flags and leaves
    // room for other agents' programs (one agent per namespace) beside it.
    sock_ops
        .attach(cgroup_dir, CgroupAttachMode::Single)
        .map_err(attach_error(SOCK_OPS_PROGRAM))?;
    Ok(())
}

/// Sets `runtime` (a `RUNTIME_*` bit) in the kernel's config: called before
/// its maps get their first entry or its probes are attached, as the
/// programs skip that runtime's lookups until it is set. CPython's also
/// attaches `ASYNCIO_TRACEPOINT`.
fn follow_runtime(ebpf: &Mutex<Ebpf>, runtime: u32) -> Result<(), LoadError> {
    let mut ebpf = ebpf.lock().unwrap_or_else(|e| e.into_inner());
    let config_map: Array<_, Config> = map_mut(&mut ebpf, "CONFIG")?;
    let config = config_map.get(&0, 0).map_err(map_error("CONFIG"))?;
    if config.runtimes & runtime != 0 {
        return Ok(());
    }
    if runtime == RUNTIME_PYTHON {
        let error = attach_error("syscalls", ASYNCIO_TRACEPOINT);
        let program: &mut TracePoint = program_mut(&mut ebpf, ASYNCIO_TRACEPOINT, error)?;
        program
            .attach("syscalls", ASYNCIO_TRACEPOINT)
            .map_err(attach_error("syscalls", ASYNCIO_TRACEPOINT))?;
    }
    let mut config_map: Array<_, Config> = map_mut(&mut ebpf, "CONFIG")?;
    let runtimes = config.runtimes | runtime;
    config_map
        .set(0, Config { runtimes, ..config }, 0)
        .map_err(map_error("CONFIG"))
}

fn map_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

/// The map `name`, borrowed from the loaded object as a `T`.
fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or(LoadError::Missing(name))?;
    T::try_from(map).map_err(map_error(name))
}

/// The program `name` of the loaded object as a `T` (a wrong type is
/// reported through `error`, like the attach failures of that program).
fn program_mut<'a, T>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
    error: impl FnOnce(ProgramError) -> LoadError,
) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(LoadError::Missing(name))?;
    program.try_into().map_err(error)
}

/// The map `name`, taken out of the loaded object as a `T`.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::Missing(name))?;
    T::try_from(map).map_err(map_error(name))
}

/// Root, or CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN on older kernels).
fn check_privileges() -> Result<(), LoadError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(LoadError::NotPrivileged)
    }
}

/// Mounts tracefs where the tracepoints are looked up, if it is not there.
fn ensure_tracefs() -> Result<(), LoadError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(());
    }
    let source = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("mounted tracefs at {TRACEFS}");
        Ok(())
    } else {
        Err(LoadError::Tracefs {
            reason: std::io::Error::last_os_error().to_string(),
        })
    }
}
