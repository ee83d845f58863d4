//! Who a process is, for the span's resource: `service.name` from its
//! `OTEL_SERVICE_NAME`, else its executable's name; its container, if any.

use std::{path::PathBuf, sync::Arc};

use foldhash::HashMap;

use crate::events::{Comm, comm_text};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub service_name: String,
    pub executable_name: String,
    pub container_id: Option<String>,
    /// A Go program: its goroutines move between threads, so the thread
    /// that writes a call does not tell which request it is for.
    pub go: bool,
}

/// Most processes remembered; past this the cache starts over.
const MAX_CACHED: usize = 4096;

/// Process facts read from procfs once per (pid, thread name).
#[derive(Debug)]
pub struct ProcessCache {
    proc_root: PathBuf,
    entries: HashMap<(u32, Comm), Arc<ProcessInfo>>,
}

impl Default for ProcessCache {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcessCache {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        ProcessCache {
            proc_root: proc_root.into(),
            entries: HashMap::default(),
        }
    }

    /// The process `pid`, whose thread that made the event is named `comm`.
    /// Keying by `comm` too notices a reused pid or an exec.
    pub fn get(&mut self, pid: u32, comm: &Comm) -> Arc<ProcessInfo> {
        if let Some(info) = self.entries.get(&(pid, *comm)) {
            return info.clone();
        }
        if self.entries.len() >= MAX_CACHED {
            self.entries.clear();
        }
        let info = Arc::new(self.read(pid, &comm_text(comm)));
        self.entries.insert((pid, *comm), info.clone());
        info
    }

    fn read(&self, pid: u32, comm: &str) -> ProcessInfo {
        let dir = self.proc_root.join(pid.to_string());
        // A process that already exited (a short curl) keeps its thread name.
        let executable_name = std::fs::read_link(dir.join("exe"))
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| comm.to_string());
        let service_name = std::fs::read(dir.join("environ"))
            .ok()
            .and_then(|environ| env_value(&environ, b"OTEL_SERVICE_NAME"))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| executable_name.clone());
        let container_id = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|cgroup| container_id(&cgroup));
        ProcessInfo {
            pid,
            service_name,
            executable_name,
            container_id,
            go: crate::loader::go_binary::is_go_executable(&dir.join("exe")),
        }
    }
}

/// The value of `name` in a NUL-separated environment block.
fn env_value(environ: &[u8], name: &[u8]) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name)?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// A 64-hex-digit container id in a cgroup path (docker, containerd, cri-o).
fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().rev().find_map(|line| {
        line.split(['/', '-', '.', ':'])
            .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_from_environment() {
        let environ = b"PATH=/bin\0OTEL_SERVICE_NAME=checkout\0HOME=/root\0";
        assert_eq!(
            env_value(environ, b"OTEL_SERVICE_NAME").as_deref(),
            Some("checkout")
        );
        assert_eq!(
            env_value(b"OTEL_SERVICE_NAMESPACE=x\0", b"OTEL_SERVICE_NAME"),
            None
        );
    }

    #[test]
    fn container_ids() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id.clone())
        );
        assert_eq!(
            container_id(&format!("0::/kubepods/besteffort/pod1/{id}\n")),
            Some(id)
        );
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
    }

    #[test]
    fn this_process() {
        let mut cache = ProcessCache::default();
        let me = cache.get(std::process::id(), b"test\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(!me.executable_name.is_empty());
        let gone = cache.get(u32::MAX - 1, b"curl\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(gone.service_name, "curl");
    }
}
