//! TLS programs: uprobes on OpenSSL 3's `libssl.so.3` (see `tracer-ebpf`'s
//! `tls`), attached once per library file for every process that maps it,
//! whether started before or after the agent. The files are the system's
//! and any other copy (a container's) mapped by a process running at
//! start-up.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{Ebpf, programs::uprobe::UProbeAttachLocation};

use super::uprobes;

/// (function, its entry program); every one returns to `RETURN_PROGRAM`.
const PROBES: [(&str, &str); 5] = [
    ("SSL_read", "tls_read"),
    ("SSL_read_ex", "tls_read_ex"),
    ("SSL_write", "tls_write"),
    ("SSL_write_ex", "tls_write_ex"),
    ("SSL_do_handshake", "tls_handshake"),
];
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

/// Loads the programs and attaches them to every OpenSSL 3 library found;
/// returns the files attached to.
pub(super) fn attach(ebpf: &mut Ebpf) -> Result<Vec<PathBuf>, String> {
    let programs = PROBES.iter().map(|(_, program)| *program);
    if let Some(reason) = uprobes::load(ebpf, programs.chain([RETURN_PROGRAM])) {
        return Err(reason);
    }
    let mut attached = Vec::new();
    for file in libraries() {
        match attach_file(ebpf, &file) {
            Ok(()) => attached.push(file),
            Err(e) => tracing::warn!("TLS traffic through {} is not read: {e}", file.display()),
        }
    }
    Ok(attached)
}

fn attach_file(ebpf: &mut Ebpf, file: &Path) -> Result<(), String> {
    for (function, program) in PROBES {
        let location = || UProbeAttachLocation::Symbol(function);
        uprobes::attach(ebpf, program, location(), file)?;
        uprobes::attach(ebpf, RETURN_PROGRAM, location(), file)?;
    }
    Ok(())
}

/// Each distinct library file once (by device and inode: `/lib` and
/// `/usr/lib` are often one directory).
fn libraries() -> Vec<PathBuf> {
    let system = SYSTEM_DIRECTORIES
        .iter()
        .map(|dir| Path::new(dir).join(LIBRARY));
    let mapped = mapped_libraries(Path::new("/proc"));
    let mut seen = HashSet::new();
    system
        .chain(mapped)
        .filter(|path| {
            std::fs::metadata(path).is_ok_and(|meta| seen.insert((meta.dev(), meta.ino())))
        })
        .collect()
}

/// The library files processes map now, as this process can open them
/// (through `/proc/PID/root`, so a container's own copy is found too).
fn mapped_libraries(proc_root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut found = HashSet::new();
    for entry in entries.flatten() {
        let pid = entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(maps) = std::fs::read_to_string(entry.path().join("maps")) else {
            continue;
        };
        for path in library_paths(&maps) {
            let relative = path.trim_start_matches('/');
            found.insert(entry.path().join("root").join(relative));
        }
    }
    found.into_iter().collect()
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

    /// This machine's own library is found once, however many processes map it.
    #[test]
    fn each_library_file_once() {
        let files = libraries();
        let mut inodes = HashSet::new();
        for file in &files {
            let meta = std::fs::metadata(file).unwrap();
            assert!(inodes.insert((meta.dev(), meta.ino())), "{files:?}");
        }
    }
}
