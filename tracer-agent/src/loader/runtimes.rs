//! Language runtimes whose requests the kernel follows with help: Go and
//! Python asyncio (uprobes on the runtime) and Node.js (with
//! `--node-context-script`), and the TLS libraries processes run. One
//! thread finds their processes, at start, as they appear and as their
//! traffic shows up, and sets each up.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{
    GoPrograms, go_binary, node_programs::NodePrograms, python_programs::PythonPrograms,
    tls_programs::TlsPrograms,
};

/// How often new processes are looked for. A Go process's calls before it
/// is found stay unlinked (the kernel's thread rule is not taken for Go); a
/// Node.js process's calls follow the thread rule until its script runs.
const SCAN_INTERVAL: Duration = Duration::from_millis(500);

pub struct RuntimePrograms {
    pub(super) go: GoPrograms,
    pub(super) python: Option<PythonPrograms>,
    pub(super) node: Option<NodePrograms>,
    pub(super) tls: Option<TlsPrograms>,
    pub(super) proc_root: PathBuf,
    /// `--pid`: only these processes are set up (none: all).
    pub(super) pids: Option<HashSet<u32>>,
    /// `--netns`: only processes in the network namespace with this inode.
    pub(super) netns_inum: Option<u64>,
}

impl RuntimePrograms {
    /// Sets up the processes running now, then goes on, on a thread of its
    /// own (reading an executable's DWARF or talking to an inspector takes
    /// a while), with those that start and with those sent to it as their
    /// first request is seen (a program may load `_asyncio` late).
    pub fn spawn(mut self) -> std::io::Result<mpsc::Sender<u32>> {
        let (sender, receiver) = mpsc::channel::<u32>();
        let started = Instant::now();
        let mut running = self.scan(&HashSet::new());
        tracing::debug!(
            "language runtimes looked for in {} ms",
            started.elapsed().as_millis()
        );
        if self.tls.as_ref().is_some_and(|tls| tls.attached() == 0) {
            tracing::info!("no OpenSSL 3 found yet: TLS traffic is read once a process runs it");
        }
        std::thread::Builder::new()
            .name("runtimes".into())
            .spawn(move || {
                loop {
                    running = self.scan(&running);
                    match receiver.recv_timeout(SCAN_INTERVAL) {
                        Ok(pid) => self.add(pid, false),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(sender)
    }

    /// Sets up the processes among those running now that were not in
    /// `known`; returns the pids running now.
    fn scan(&mut self, known: &HashSet<u32>) -> HashSet<u32> {
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else {
            return known.clone();
        };
        let running: HashSet<u32> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        for &pid in running.difference(known) {
            if pid == std::process::id() {
                continue;
            }
            self.add(pid, true);
        }
        running
    }

    /// Whether `pid` is one the agent traces (`--pid`, `--netns`): no other
    /// process gets uprobes or, above all, the Node.js script.
    fn in_scope(&self, pid: u32) -> bool {
        if self.pids.as_ref().is_some_and(|pids| !pids.contains(&pid)) {
            return false;
        }
        let Some(inum) = self.netns_inum else {
            return true;
        };
        let netns = self.proc_root.join(pid.to_string()).join("ns/net");
        std::fs::metadata(netns).is_ok_and(|metadata| metadata.ino() == inum)
    }

    /// Sets up process `pid` for its runtime; its TLS library and a Node.js
    /// process only when first seen by a scan (its script runs once).
    fn add(&mut self, pid: u32, scanned: bool) {
        if !self.in_scope(pid) {
            return;
        }
        let dir = self.proc_root.join(pid.to_string());
        if scanned && let Some(tls) = &mut self.tls {
            tls.add_process(&dir);
        }
        let exe = dir.join("exe");
        if go_binary::is_go_executable(&exe) {
            self.go.add(pid);
            return;
        }
        if let Some(python) = &mut self.python {
            python.add(pid);
        }
        if scanned
            && let Some(node) = &mut self.node
            && NodePrograms::is_node(&exe)
        {
            node.add(pid);
        }
    }
}
