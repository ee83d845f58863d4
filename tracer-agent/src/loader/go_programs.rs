//! Go programs: the agent tells the kernel which processes are Go (their
//! calls are then never tied to a request by thread), and follows their
//! goroutines where it can: once per executable it reads what the uprobes
//! need (`go_binary`) and attaches them, for every process of that file.
//! The same uprobes read the plaintext of their `crypto/tls` connections
//! (not with `--no-tls`).

use std::{
    collections::HashMap as StdHashMap,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::uprobe::UProbeAttachLocation,
};
use tracer_common::{GoProcess, RUNTIME_GO, SpawnRanges, go::MAX_SPAWN_RANGES};

use super::{
    follow_runtime,
    go_binary::{self, GoBinary},
    uprobes,
};

/// Executables remembered; past this the cache starts over.
const MAX_BINARIES: usize = 1024;

/// The kernel's `GO_PROCESSES` list and the uprobes on Go executables.
pub struct GoPrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    processes: HashMap<MapData, u32, GoProcess>,
    spawn_ranges: HashMap<MapData, u32, SpawnRanges>,
    /// Why goroutines cannot be followed at all (the uprobes did not load).
    disabled: Option<String>,
    /// Read `crypto/tls`.
    tls: bool,
    proc_root: PathBuf,
    /// By (device, inode): what the kernel needs, or none when the
    /// executable's goroutines cannot be followed.
    binaries: StdHashMap<(u64, u64), Option<Followed>>,
}

/// What a followed executable gives each of its processes.
#[derive(Clone, Copy)]
struct Followed {
    process: GoProcess,
    /// With the load bias of a position-independent executable still 0.
    spawn_ranges: SpawnRanges,
    /// `Some(link base)` for a position-independent executable.
    position_independent: Option<u64>,
}

impl GoPrograms {
    pub(super) fn new(
        ebpf: Arc<Mutex<Ebpf>>,
        processes: HashMap<MapData, u32, GoProcess>,
        spawn_ranges: HashMap<MapData, u32, SpawnRanges>,
        disabled: Option<String>,
        tls: bool,
    ) -> Self {
        GoPrograms {
            ebpf,
            processes,
            spawn_ranges,
            disabled,
            tls,
            proc_root: PathBuf::from("/proc"),
            binaries: StdHashMap::new(),
        }
    }

    /// Registers Go process `pid`: its calls are unlinked from now on, and
    /// tied to requests by goroutine once its executable is followed.
    /// Returns whether it is.
    pub fn add(&mut self, pid: u32) -> bool {
        if let Ok(known) = self.processes.get(&pid, 0) {
            return known.followed();
        }
        if let Err(e) = follow_runtime(&self.ebpf, RUNTIME_GO) {
            tracing::debug!("cannot tell the kernel about Go processes: {e}");
            return false;
        }
        if let Err(e) = self.processes.insert(pid, GoProcess::UNSUPPORTED, 0) {
            tracing::debug!("cannot tell the kernel about Go process {pid}: {e}");
            return false;
        }
        let Some(followed) = self.followed(pid) else {
            return false;
        };
        let mut spawn_ranges = followed.spawn_ranges;
        let mut process = followed.process;
        if let Some(link_base) = followed.position_independent {
            match load_address(&self.proc_root, pid) {
                Some(loaded) => {
                    spawn_ranges.load_bias = loaded.wrapping_sub(link_base & !0xfff);
                    process.tcp_conn_itab =
                        process.tcp_conn_itab.wrapping_add(spawn_ranges.load_bias);
                }
                // Not knowing where the code is, nothing inherits, and no
                // TLS connection is known to be on TCP.
                None => {
                    spawn_ranges.count = 0;
                    process.tcp_conn_itab = 0;
                }
            }
        }
        // The ranges first: a goroutine started in between inherits nothing.
        let registered = self
            .spawn_ranges
            .insert(pid, spawn_ranges, 0)
            .and_then(|()| self.processes.insert(pid, process, 0));
        if let Err(e) = registered {
            tracing::debug!("cannot tell the kernel about Go process {pid}: {e}");
            return false;
        }
        true
    }

    fn followed(&mut self, pid: u32) -> Option<Followed> {
        let exe = self.proc_root.join(pid.to_string()).join("exe");
        let metadata = std::fs::metadata(&exe).ok()?;
        let file = (metadata.dev(), metadata.ino());
        if let Some(known) = self.binaries.get(&file) {
            return *known;
        }
        let name = std::fs::read_link(&exe).unwrap_or_else(|_| exe.clone());
        let outcome = match &self.disabled {
            Some(reason) => Err(reason.clone()),
            None => go_binary::inspect(&exe)
                .map_err(|e| e.to_string())
                .and_then(|binary| self.attach(&exe, &binary).map(|()| binary)),
        };
        let known = match outcome {
            Ok(binary) => {
                let tls = match (self.tls, binary.tcp_conn_itab) {
                    (true, Some(_)) => ", reading its crypto/tls",
                    _ => "",
                };
                tracing::info!(
                    "following the goroutines of {} ({}, {} runs of its own code{tls}, pid {pid})",
                    name.display(),
                    binary.version,
                    binary.spawn_ranges.len()
                );
                if binary.spawn_ranges.is_empty() {
                    tracing::warn!(
                        "{}: its own code is spread over more than {MAX_SPAWN_RANGES} runs; \
                         goroutines its handlers start are not followed",
                        name.display()
                    );
                }
                let mut spawn_ranges = SpawnRanges {
                    load_bias: 0,
                    count: binary.spawn_ranges.len() as u32,
                    _pad: 0,
                    ranges: [[0; 2]; MAX_SPAWN_RANGES],
                };
                for (slot, range) in spawn_ranges.ranges.iter_mut().zip(&binary.spawn_ranges) {
                    *slot = *range;
                }
                Some(Followed {
                    process: GoProcess {
                        goid_offset: binary.goid_offset,
                        tls_g_offset: binary.tls_g_offset,
                        tcp_conn_itab: binary.tcp_conn_itab.filter(|_| self.tls).unwrap_or(0),
                    },
                    spawn_ranges,
                    position_independent: binary.position_independent.then_some(binary.link_base),
                })
            }
            Err(reason) => {
                tracing::warn!(
                    "calls of Go program {} (pid {pid}) stay unlinked: {reason}",
                    name.display()
                );
                None
            }
        };
        if self.binaries.len() >= MAX_BINARIES {
            self.binaries.clear();
        }
        self.binaries.insert(file, known);
        known
    }

    /// Attaches every uprobe `binary` needs to the file `exe` names.
    fn attach(&self, exe: &std::path::Path, binary: &GoBinary) -> Result<(), String> {
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        let probes = binary
            .probes
            .iter()
            .filter(|(probe, _)| self.tls || !probe.is_tls());
        for &(probe, offset) in probes {
            let location = UProbeAttachLocation::AbsoluteOffset(offset);
            uprobes::attach(&mut ebpf, probe.program(), location, exe)
                .map_err(|e| format!("{e} (at {offset:#x})"))?;
        }
        Ok(())
    }
}

/// Where process `pid`'s executable is mapped from its start.
fn load_address(proc_root: &std::path::Path, pid: u32) -> Option<u64> {
    let dir = proc_root.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe")).ok()?;
    let maps = std::fs::read_to_string(dir.join("maps")).ok()?;
    uprobes::mapped_start(&maps, exe.to_str()?)
}
