//! Go programs: the agent tells the kernel which processes are Go (their
//! calls are then never tied to a request by thread), and follows their
//! goroutines where it can: once per executable it reads what the uprobes
//! need (`go_binary`) and attaches them, for every process of that file.

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
use tracer_common::GoProcess;

use super::{
    go_binary::{self, GoBinary},
    uprobes,
};

/// Executables remembered; past this the cache starts over.
const MAX_BINARIES: usize = 1024;

/// The kernel's `GO_PROCESSES` list and the uprobes on Go executables.
pub struct GoPrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    processes: HashMap<MapData, u32, GoProcess>,
    /// Why goroutines cannot be followed at all (the uprobes did not load).
    disabled: Option<String>,
    proc_root: PathBuf,
    /// By (device, inode): what the kernel needs, or none when the
    /// executable's goroutines cannot be followed.
    binaries: StdHashMap<(u64, u64), Option<GoProcess>>,
}

impl GoPrograms {
    pub(super) fn new(
        ebpf: Arc<Mutex<Ebpf>>,
        processes: HashMap<MapData, u32, GoProcess>,
        disabled: Option<String>,
    ) -> Self {
        GoPrograms {
            ebpf,
            processes,
            disabled,
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
        if let Err(e) = self.processes.insert(pid, GoProcess::UNSUPPORTED, 0) {
            tracing::debug!("cannot tell the kernel about Go process {pid}: {e}");
            return false;
        }
        let Some(go) = self.followed(pid) else {
            return false;
        };
        if let Err(e) = self.processes.insert(pid, go, 0) {
            tracing::debug!("cannot tell the kernel about Go process {pid}: {e}");
            return false;
        }
        true
    }

    fn followed(&mut self, pid: u32) -> Option<GoProcess> {
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
                tracing::info!(
                    "following the goroutines of {} ({}, pid {pid})",
                    name.display(),
                    binary.version
                );
                Some(GoProcess {
                    goid_offset: binary.goid_offset,
                    tls_g_offset: binary.tls_g_offset,
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
        for &(probe, offset) in &binary.probes {
            let location = UProbeAttachLocation::AbsoluteOffset(offset);
            uprobes::attach(&mut ebpf, probe.program(), location, exe)
                .map_err(|e| format!("{e} (at {offset:#x})"))?;
        }
        Ok(())
    }
}
