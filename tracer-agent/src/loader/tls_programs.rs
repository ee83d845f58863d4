//! TLS programs: uprobes on OpenSSL 3 (see `tracer-ebpf`'s `tls`),
//! attached once per file that exports its functions, for every process
//! that runs it: the system's `libssl.so.3`, any other copy a process maps
//! (a container's), and executables that link OpenSSL in and export it
//! (Debian's `node`). Files of processes running at start-up are attached
//! before the agent is ready; those of processes started later when the
//! runtimes' scan finds them (within half a second), so a connection such
//! a process opens before that is read without its start: spans, but not
//! paired with its peer's.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{Ebpf, programs::uprobe::UProbeAttachLocation};

use super::uprobes;

/// (function, its entry program); the first `RETURNING` return to
/// `RETURN_PROGRAM`.
const PROBES: [(&str, &str); 7] = [
    ("SSL_read", "tls_read"),
    ("SSL_read_ex", "tls_read_ex"),
    ("SSL_write", "tls_write"),
    ("SSL_write_ex", "tls_write_ex"),
    ("SSL_do_handshake", "tls_handshake"),
    ("SSL_set_connect_state", "tls_start"),
    ("SSL_set_accept_state", "tls_start"),
];
const RETURNING: usize = 5;
const RETURN_PROGRAM: &str = "tls_return";

/// The library's name as a process maps it.
const LIBRARY: &str = "libssl.so.3";

/// Where distributions install it.
const SYSTEM_DIRECTORIES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib64",
];

/// Executables known to link OpenSSL in, attached at start so that a
/// process started later is read from its first connection.
const SYSTEM_EXECUTABLES: [&str; 3] = ["/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node"];

/// Loads the programs; the reason when the kernel refuses one.
pub(super) fn load(ebpf: &mut Ebpf) -> Option<String> {
    let programs = PROBES.iter().map(|(_, program)| *program);
    let unique: HashSet<&str> = programs.chain([RETURN_PROGRAM]).collect();
    uprobes::load(ebpf, unique)
}

/// Files looked at and left alone, remembered at most: past this the list
/// starts over (such a file is read again; an attached one never twice).
const MAX_LEFT_ALONE: usize = 4096;

/// The files with the uprobes, and those looked at. Both by (device,
/// inode): `/lib` and `/usr/lib` are often one directory, and most
/// processes share files.
pub struct TlsPrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    attached: HashSet<(u64, u64)>,
    /// Files that export no OpenSSL, or that could not be attached to.
    left_alone: HashSet<(u64, u64)>,
}

impl TlsPrograms {
    /// Attaches to the system's files.
    pub(super) fn new(ebpf: Arc<Mutex<Ebpf>>) -> Self {
        let mut programs = TlsPrograms {
            ebpf,
            attached: HashSet::new(),
            left_alone: HashSet::new(),
        };
        let libraries = SYSTEM_DIRECTORIES
            .iter()
            .map(|dir| Path::new(dir).join(LIBRARY));
        let executables = SYSTEM_EXECUTABLES.iter().map(PathBuf::from);
        for file in libraries.chain(executables) {
            programs.add_file(&file);
        }
        programs
    }

    /// Attaches to the files process `dir` (`/proc/PID`) runs that export
    /// OpenSSL: its executable and the `libssl.so.3` it maps (through
    /// `/proc/PID/root`, so a container's own copy is found too).
    pub fn add_process(&mut self, dir: &Path) {
        let maps = std::fs::read_to_string(dir.join("maps")).unwrap_or_default();
        let libraries = library_paths(&maps)
            .map(|path| dir.join("root").join(path.trim_start_matches('/')))
            .collect::<Vec<_>>();
        for file in std::iter::once(dir.join("exe")).chain(libraries) {
            self.add_file(&file);
        }
    }

    /// How many files have the uprobes.
    pub fn attached(&self) -> usize {
        self.attached.len()
    }

    fn add_file(&mut self, file: &Path) {
        let Ok(metadata) = std::fs::metadata(file) else {
            return;
        };
        let key = (metadata.dev(), metadata.ino());
        if self.attached.contains(&key) || self.left_alone.contains(&key) {
            return;
        }
        if self.attach(file) {
            self.attached.insert(key);
        } else {
            if self.left_alone.len() >= MAX_LEFT_ALONE {
                self.left_alone.clear();
            }
            self.left_alone.insert(key);
        }
    }

    /// Attaches the uprobes to `file` if it exports OpenSSL; whether it did.
    fn attach(&mut self, file: &Path) -> bool {
        let functions = PROBES.map(|(function, _)| function);
        let Some(offsets) = uprobes::exported_offsets(file, &functions) else {
            return false;
        };
        // `/proc/PID/exe` names the file by a link.
        let name = std::fs::read_link(file).unwrap_or_else(|_| file.to_path_buf());
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        let attached =
            PROBES
                .iter()
                .zip(offsets)
                .enumerate()
                .try_for_each(|(at, ((_, program), offset))| {
                    let location = || UProbeAttachLocation::AbsoluteOffset(offset);
                    uprobes::attach(&mut ebpf, program, location(), file)?;
                    if at < RETURNING {
                        uprobes::attach(&mut ebpf, RETURN_PROGRAM, location(), file)?;
                    }
                    Ok::<(), String>(())
                });
        match attached {
            Ok(()) => {
                tracing::info!("reading TLS plaintext through {}", name.display());
                true
            }
            Err(e) => {
                tracing::warn!("TLS traffic through {} is not read: {e}", name.display());
                false
            }
        }
    }
}

/// The paths of the OpenSSL 3 libraries in a `/proc/PID/maps` text.
fn library_paths(maps: &str) -> impl Iterator<Item = &str> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.rsplit('/').next() == Some(LIBRARY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_found_in_process_maps() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r--p 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.30
7f0000005000-7f0000006000 rw-p 00000000 00:00 0 [heap]
";
        let paths: HashSet<&str> = library_paths(maps).collect();
        assert_eq!(
            paths,
            HashSet::from(["/usr/lib/x86_64-linux-gnu/libssl.so.3"])
        );
    }

    /// The system's library and `node` (which links OpenSSL in and exports
    /// it) export the functions; the agent's own executable does not.
    #[test]
    fn exporting_files_are_recognised() {
        let functions = PROBES.map(|(function, _)| function);
        let library = SYSTEM_DIRECTORIES
            .iter()
            .map(|dir| Path::new(dir).join(LIBRARY))
            .find(|path| path.exists())
            .expect("libssl3 installed");
        let offsets = uprobes::exported_offsets(&library, &functions).expect("exported");
        assert_eq!(HashSet::<u64>::from_iter(offsets).len(), PROBES.len());
        let node = SYSTEM_EXECUTABLES
            .iter()
            .find(|path| Path::new(path).exists());
        if let Some(node) = node {
            assert!(uprobes::exported_offsets(Path::new(node), &functions).is_some());
        }
        let own = std::env::current_exe().unwrap();
        assert!(uprobes::exported_offsets(&own, &functions).is_none());
    }
}
