//! This node's IP addresses, for `--inject-traceparent remote`: a call to
//! one of them stays on the node (its callee is traced here and linked by
//! the connection), so it gets no header.
//!
//! "The node" is every network namespace on it (each container's too), read
//! from `/proc/PID/net/{fib_trie,if_inet6}` of one process per namespace, or
//! only the `--netns` namespace, read from a thread that joins it.

use std::{
    collections::BTreeSet,
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::Path,
};

/// The addresses of every network namespace that a process is in.
pub fn node_addresses(proc_root: &Path) -> BTreeSet<IpAddr> {
    let mut namespaces = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return addresses;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        // A process gone since the listing, or one we may not look at: skip.
        let Ok(netns) = std::fs::metadata(dir.join("ns/net")) else {
            continue;
        };
        if namespaces.insert(netns.ino()) {
            addresses.extend(addresses_in(&dir.join("net")));
        }
    }
    addresses
}

/// The node's addresses as the agent sees the node: the namespace at
/// `netns` when it traces only that one, else every namespace.
pub fn listed(netns: Option<&Path>) -> std::io::Result<BTreeSet<IpAddr>> {
    match netns {
        Some(path) => namespace_addresses(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("namespace {}: {e}", path.display()))
        }),
        None => Ok(node_addresses(Path::new("/proc"))),
    }
}

/// The addresses of the network namespace at `netns` (`/run/netns/NAME`).
pub fn namespace_addresses(netns: &Path) -> std::io::Result<BTreeSet<IpAddr>> {
    let file = File::open(netns)?;
    // setns() changes only the calling thread; /proc/thread-self/net is
    // that thread's namespace.
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor this thread owns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(addresses_in(Path::new("/proc/thread-self/net")))
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace probe thread panicked"))?
}

/// The local addresses a `/proc/.../net` directory lists.
fn addresses_in(net: &Path) -> BTreeSet<IpAddr> {
    let read = |name: &str| std::fs::read_to_string(net.join(name)).unwrap_or_default();
    local_ipv4(&read("fib_trie"))
        .into_iter()
        .map(IpAddr::V4)
        .chain(ipv6(&read("if_inet6")).into_iter().map(IpAddr::V6))
        .collect()
}

/// The `host LOCAL` /32 entries of `/proc/net/fib_trie`: each is a line
/// `|-- A.B.C.D` followed by `/32 host LOCAL`.
fn local_ipv4(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut previous: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if line.starts_with("/32 host LOCAL")
            && let Some(address) = previous
        {
            found.push(address);
        }
        previous = line
            .strip_prefix("|-- ")
            .and_then(|a| a.trim().parse().ok());
    }
    found
}

/// The addresses of `/proc/net/if_inet6`: 32 hex digits first on each line.
fn ipv6(if_inet6: &str) -> Vec<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(Ipv6Addr::from)
        })
        .collect()
}

/// The key the kernel's `LOCAL_ADDRESSES` map uses: IPv6, IPv4 mapped.
pub fn map_key(address: &IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_local_ipv4_from_fib_trie() {
        let fib_trie = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.99.0.0/24 2 0 2
        |-- 10.99.0.0
           /24 link UNICAST
        |-- 10.99.0.1
           /32 host LOCAL
        |-- 10.99.0.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.99.0.1
           /32 host LOCAL
|-- garbage
   /32 host LOCAL
";
        assert_eq!(
            local_ipv4(fib_trie),
            [
                Ipv4Addr::new(10, 99, 0, 1),
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(10, 99, 0, 1)
            ]
        );
        assert!(local_ipv4("").is_empty());
    }

    #[test]
    fn reads_ipv6_from_if_inet6() {
        let if_inet6 = "00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000001 02 40 20 80     eth0
nothex 01 80 10 80 x
0001 01 80 10 80 short
";
        assert_eq!(
            ipv6(if_inet6),
            [Ipv6Addr::LOCALHOST, "fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn this_machine_has_loopback() {
        let addresses = node_addresses(Path::new("/proc"));
        assert!(addresses.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            map_key(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))[10..],
            [0xff, 0xff, 10, 0, 0, 2]
        );
    }
}
