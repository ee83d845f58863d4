//! Node.js processes, with `--node-context-script`: the agent runs its
//! script (`node_context.js`) in each through the inspector, and listens
//! to what it says with a uprobe on libuv's `uv_fs_access` (tracer-ebpf's
//! `node`). Opt-in: it runs code inside the service.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::uprobe::UProbeAttachLocation,
};

use tracer_common::RUNTIME_NODE;

use super::{follow_runtime, node_inspector, uprobes};

pub const PROGRAM: &str = "node_context_message";
const SCRIPT: &str = include_str!("node_context.js");
const SIGNAL_FUNCTION: &str = "uv_fs_access";

/// The kernel's `NODE_PROCESSES` list and the uprobes on Node's libuv.
pub struct NodePrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    processes: HashMap<MapData, u32, u8>,
    proc_root: PathBuf,
    /// Files with the uprobe, by (device, inode).
    attached: HashSet<(u64, u64)>,
}

impl NodePrograms {
    pub(super) fn new(ebpf: Arc<Mutex<Ebpf>>, processes: HashMap<MapData, u32, u8>) -> Self {
        NodePrograms {
            ebpf,
            processes,
            proc_root: PathBuf::from("/proc"),
            attached: HashSet::new(),
        }
    }

    /// Whether the executable at `exe` is Node.js (by its name: `node`, `nodejs`).
    pub fn is_node(exe: &Path) -> bool {
        std::fs::read_link(exe).is_ok_and(|target| {
            target
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| matches!(name, "node" | "nodejs"))
        })
    }

    /// Runs the script in process `pid`; logs what happened. Returns whether
    /// its calls are now tied to requests by the script.
    pub fn add(&mut self, pid: u32) -> bool {
        let name = std::fs::read_link(self.proc_root.join(pid.to_string()).join("exe"))
            .map(|exe| exe.display().to_string())
            .unwrap_or_else(|_| "node".into());
        match self.follow(pid) {
            Ok(()) => {
                tracing::info!("running the context script in Node.js process {pid} ({name})");
                true
            }
            Err(reason) => {
                let _ = self.processes.remove(&pid);
                tracing::warn!(
                    "Node.js process {pid} ({name}) runs without the context script: {reason}"
                );
                false
            }
        }
    }

    fn follow(&mut self, pid: u32) -> Result<(), String> {
        follow_runtime(&self.ebpf, RUNTIME_NODE).map_err(|e| e.to_string())?;
        self.attach(pid)?;
        // Listening before the script speaks.
        self.processes
            .insert(pid, 1, 0)
            .map_err(|e| format!("cannot tell the kernel: {e}"))?;
        node_inspector::run_script(&self.proc_root, pid, SCRIPT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The uprobe on `uv_fs_access` in the file that has it: Node's own
    /// executable (libuv built in) or the libuv it loaded.
    fn attach(&mut self, pid: u32) -> Result<(), String> {
        let dir = self.proc_root.join(pid.to_string());
        let mut candidates = vec![dir.join("exe")];
        let maps = std::fs::read_to_string(dir.join("maps")).unwrap_or_default();
        candidates.extend(
            maps.lines()
                .filter_map(|line| line.split_whitespace().nth(5))
                .filter(|path| path.contains("libuv"))
                .map(|path| dir.join("root").join(path.trim_start_matches('/'))),
        );
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_error = String::from("no executable or libuv found");
        for file in candidates {
            let Ok(metadata) = std::fs::metadata(&file) else {
                continue;
            };
            let key = (metadata.dev(), metadata.ino());
            if self.attached.contains(&key) {
                return Ok(());
            }
            let location = UProbeAttachLocation::Symbol(SIGNAL_FUNCTION);
            match uprobes::attach(&mut ebpf, PROGRAM, location, &file) {
                Ok(()) => {
                    self.attached.insert(key);
                    return Ok(());
                }
                Err(e) => last_error = format!("{e} ({SIGNAL_FUNCTION} in {})", file.display()),
            }
        }
        Err(last_error)
    }
}
