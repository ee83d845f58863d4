//! From a file descriptor of the current task to its TCP `struct sock`.
//!
//! Kernel layout used (offsets from BTF, see `KernelOffsets`):
//! `current->files->fdt->fd[fd]` is the `struct file`; a socket's inode mode is
//! `S_IFSOCK` and its `private_data` is the `struct socket`, whose `sk` is the
//! `struct sock`. Everything else (files, pipes, ttys, UDP, unix sockets) is
//! rejected here, before any map or ring-buffer work.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use tracer_common::{
    Config, Counter, Direction, KernelOffsets, Role, SocketState,
    event::{AF_INET, AF_INET6},
};

use crate::maps::{NEW_SOCKET, SOCKETS, count};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: i16 = 1;
const IPPROTO_TCP: u16 = 6;

#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Result<T, ()> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.map_err(|_| {
        count(Counter::KernelReadFailed, 1);
    })
}

/// The `struct sock` address of `fd` when it is a TCP (IPv4/IPv6) socket.
#[inline(always)]
pub fn tcp_sock_of_fd(offsets: &KernelOffsets, fd: i64) -> Option<u64> {
    if !(0..=i32::MAX as i64).contains(&fd) {
        return None;
    }
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, offsets.task_files).ok()?;
    let fdt: u64 = read(files, offsets.files_fdt).ok()?;
    let max_fds: u32 = read(fdt, offsets.fdtable_max_fds).ok()?;
    if fd as u64 >= max_fds as u64 {
        return None;
    }
    let fd_array: u64 = read(fdt, offsets.fdtable_fd).ok()?;
    let file: u64 = read(fd_array + 8 * fd as u64, 0).ok()?;
    if file == 0 {
        return None;
    }
    let inode: u64 = read(file, offsets.file_inode).ok()?;
    let mode: u16 = read(inode, offsets.inode_mode).ok()?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, offsets.file_private_data).ok()?;
    let sock_type: i16 = read(socket, offsets.socket_type).ok()?;
    if sock_type != SOCK_STREAM {
        return None;
    }
    let sock: u64 = read(socket, offsets.socket_sk).ok()?;
    if sock == 0 {
        return None;
    }
    is_tcp(offsets, sock).then_some(sock)
}

/// Whether `sock` is a TCP (IPv4/IPv6) socket.
#[inline(always)]
fn is_tcp(offsets: &KernelOffsets, sock: u64) -> bool {
    let family: u16 = read(sock, offsets.sock_family).unwrap_or(0);
    if family != AF_INET && family != AF_INET6 {
        return false;
    }
    read::<u16>(sock, offsets.sock_protocol) == Ok(IPPROTO_TCP)
}

/// The TCP sequence number of the next byte a read (`copied_seq`) or a write
/// (`write_seq`) on `sock` moves, read before the syscall moves it.
#[inline(always)]
pub fn next_seq(offsets: &KernelOffsets, sock: u64, direction: Direction) -> u32 {
    let offset = match direction {
        Direction::Ingress => offsets.tcp_copied_seq,
        Direction::Egress => offsets.tcp_write_seq,
    };
    read(sock, offset).unwrap_or(0)
}

/// Reads the socket's family, addresses and ports into `state`.
#[inline(always)]
pub fn read_addresses(config: &Config, sock: u64, state: &mut SocketState) {
    let offsets = &config.offsets;
    let family: u16 = read(sock, offsets.sock_family).unwrap_or(0);
    state.family = family;
    state.local_port = read(sock, offsets.sock_num).unwrap_or(0);
    state.remote_port = u16::from_be(read(sock, offsets.sock_dport).unwrap_or(0));
    if family == AF_INET6 {
        state.local_addr = read(sock, offsets.sock_v6_rcv_saddr).unwrap_or([0; 16]);
        state.remote_addr = read(sock, offsets.sock_v6_daddr).unwrap_or([0; 16]);
    } else {
        let local: [u8; 4] = read(sock, offsets.sock_rcv_saddr).unwrap_or([0; 4]);
        let remote: [u8; 4] = read(sock, offsets.sock_daddr).unwrap_or([0; 4]);
        state.local_addr = [0; 16];
        state.remote_addr = [0; 16];
        state.local_addr[..4].copy_from_slice(&local);
        state.remote_addr[..4].copy_from_slice(&remote);
    }
}

/// A new connection's state, its addresses read now (accept/connect).
#[inline(always)]
pub fn remember_socket(config: &Config, sock: u64, role: Role) -> Option<&'static mut SocketState> {
    // Built in per-CPU scratch: the exit programs' stack is full.
    let state = unsafe { &mut *NEW_SOCKET.get_ptr_mut(0)? };
    *state = SocketState {
        role: role as u8,
        ..SocketState::default()
    };
    read_addresses(config, sock, state);
    SOCKETS.insert(sock, *state, 0).ok()?;
    unsafe { SOCKETS.get_ptr_mut(sock)?.as_mut() }
}

/// The state of `sock`, in the map (read it at once: another CPU may reuse
/// an LRU entry). A socket seen for the first time (a connection older than
/// the agent, or any socket a `sock:` tracepoint hands over) is checked to
/// be TCP and gets its addresses read once, here.
#[inline(always)]
pub fn socket_state(config: &Config, sock: u64) -> Option<&'static mut SocketState> {
    match SOCKETS.get_ptr_mut(sock) {
        Some(state) => Some(unsafe { &mut *state }),
        None if is_tcp(&config.offsets, sock) => remember_socket(config, sock, Role::Unknown),
        None => None,
    }
}

/// The inode number of the current task's network namespace
/// (`current->nsproxy->net_ns->ns.inum`); 0 when it cannot be read.
#[inline(always)]
pub fn current_netns(offsets: &KernelOffsets) -> u32 {
    let task = unsafe { bpf_get_current_task() };
    let Ok(nsproxy) = read::<u64>(task, offsets.task_nsproxy) else {
        return 0;
    };
    let Ok(net) = read::<u64>(nsproxy, offsets.nsproxy_net_ns) else {
        return 0;
    };
    read(net, offsets.net_inum).unwrap_or(0)
}
