//! What the kernel programs need to know about the network namespace the
//! agent is limited to (`--netns`), and where cgroup v2 is mounted (the
//! `sock_ops` program of `--inject-traceparent` attaches there).

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use super::LoadError;

/// `SO_NETNS_COOKIE` (Linux 5.14+; not in every libc crate version).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// A network namespace as the kernel programs see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetnsIds {
    /// Its inode number: what tasks' `nsproxy->net_ns->ns.inum` reads.
    pub inum: u32,
    /// Its cookie: what `bpf_get_netns_cookie` returns for its sockets.
    pub cookie: u64,
}

/// The ids of the namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`).
pub fn netns_ids(path: &Path) -> Result<NetnsIds, LoadError> {
    let error = |reason: String| LoadError::Netns {
        path: path.display().to_string(),
        reason,
    };
    let file = File::open(path).map_err(|e| error(e.to_string()))?;
    let inum = file.metadata().map_err(|e| error(e.to_string()))?.ino();
    let inum = u32::try_from(inum).map_err(|_| error("inode number out of range".into()))?;
    let file_for_thread = file.try_clone().map_err(|e| error(e.to_string()))?;
    // setns() changes only the calling thread: a short-lived one joins the
    // namespace, opens a socket there and asks for the namespace's cookie.
    let cookie = std::thread::spawn(move || cookie_of(&file_for_thread))
        .join()
        .map_err(|_| error("the namespace probe thread panicked".into()))?
        .map_err(|e| error(e.to_string()))?;
    Ok(NetnsIds { inum, cookie })
}

fn cookie_of(netns: &File) -> std::io::Result<u64> {
    // SAFETY: plain syscalls on descriptors this function owns or borrows.
    unsafe {
        if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let socket = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        let result = if rc == 0 {
            Ok(cookie)
        } else {
            Err(std::io::Error::last_os_error())
        };
        libc::close(socket);
        result
    }
}

/// The first cgroup v2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> Result<PathBuf, LoadError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    cgroup2_in_mountinfo(&mountinfo).ok_or(LoadError::NoCgroup2)
}

/// Mountinfo lines: `id parent major:minor root mount-point options ... - fstype source ...`.
fn cgroup2_in_mountinfo(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        let mount_point = before.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_a_hybrid_layout() {
        let mountinfo = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(
            cgroup2_in_mountinfo(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_in_mountinfo("1 2 0:1 / / rw - ext4 /dev/sda rw"),
            None
        );
    }

    #[test]
    fn current_namespace_has_ids() {
        if unsafe { libc::geteuid() } != 0 {
            return; // setns needs CAP_SYS_ADMIN, even into one's own namespace
        }
        let ids = netns_ids(Path::new("/proc/self/ns/net")).unwrap();
        assert!(ids.inum != 0 && ids.cookie != 0);
    }
}
