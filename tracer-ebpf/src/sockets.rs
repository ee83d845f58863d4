//! From a file descriptor of the current task to its TCP `struct sock`.
//!
//! Kernel layout used (offsets from BTF, see `KernelOffsets`):
//! `current->files->fdt->fd[fd]` is the `struct file`; a socket's `f_op` is
//! the kernel's `socket_file_ops` (learned, see `SOCKET_FILE_OPS`; until
//! then its inode mode is `S_IFSOCK`) and its `private_data` is the
//! `struct socket`, whose `sk` is the `struct sock`. Everything else (files,
//! pipes, ttys, UDP, unix sockets) is rejected here, before any map or
//! ring-buffer work. From the task to its descriptor table the walk is
//! plain loads (`fd_table`); past it, each read is a helper call, so fields
//! that lie together are read together (`KernelOffsets::walk_shortcuts`).

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel, generated::bpf_get_current_task_btf,
};
use tracer_common::{
    Config, Counter, Direction, KernelOffsets, Role, SocketState, WALK_FILE_WINDOW,
    WALK_SOCKET_HEAD,
    event::{AF_INET, AF_INET6},
};

use crate::maps::{NEW_SOCKET, SOCKET_FILE_OPS, SOCKETS, count};

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

/// `struct file` from `f_op` (`WALK_FILE_WINDOW`).
#[repr(C)]
struct FileWindow {
    op: u64,
    _mapping: u64,
    private_data: u64,
    inode: u64,
}

/// `struct socket`'s first 32 bytes (`WALK_SOCKET_HEAD`).
#[repr(C)]
struct SocketHead {
    _state: u32,
    kind: i16,
    _pad: u16,
    _flags: u64,
    _file: u64,
    sk: u64,
}

/// Offsets of the descriptor table's fields, which the loader writes into
/// the read-only data before loading: the verifier reads them as constants,
/// so the walk from the current task to its table is plain loads that it
/// checks against the kernel's BTF and makes fault-safe, not a helper call
/// per field (about 75 ns less per descriptor looked up).
#[unsafe(no_mangle)]
static TASK_FILES: u32 = 0;
#[unsafe(no_mangle)]
static FILES_FDT: u32 = 0;
#[unsafe(no_mangle)]
static FDTABLE_MAX_FDS: u32 = 0;
#[unsafe(no_mangle)]
static FDTABLE_FD: u32 = 0;

/// The current task's descriptor table: its size and its array of files.
#[inline(always)]
fn fd_table() -> Option<(u32, u64)> {
    let offset = |field: &u32| unsafe { core::ptr::read_volatile(field) } as usize;
    let load = |base: *const u8, at: usize| unsafe {
        core::ptr::read_volatile(base.add(at) as *const u64)
    };
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    if task.is_null() {
        return None;
    }
    let files = load(task, offset(&TASK_FILES)) as *const u8;
    if files.is_null() {
        return None;
    }
    let fdt = load(files, offset(&FILES_FDT)) as *const u8;
    if fdt.is_null() {
        return None;
    }
    let max_fds =
        unsafe { core::ptr::read_volatile(fdt.add(offset(&FDTABLE_MAX_FDS)) as *const u32) };
    Some((max_fds, load(fdt, offset(&FDTABLE_FD))))
}

/// The `struct sock` address of `fd` when it is a TCP (IPv4/IPv6) socket.
#[inline(always)]
pub fn tcp_sock_of_fd(offsets: &KernelOffsets, fd: i64) -> Option<u64> {
    stream_sock_of_fd(offsets, fd).filter(|sock| is_tcp(offsets, *sock))
}

/// The `struct sock` of `fd` when it is a stream socket: TCP, or another
/// family's (unix). `SOCKETS` holds TCP sockets only, so a caller that finds
/// it there need not read its family and protocol (`is_tcp`) again.
#[inline(always)]
pub fn stream_sock_of_fd(offsets: &KernelOffsets, fd: i64) -> Option<u64> {
    if !(0..=i32::MAX as i64).contains(&fd) {
        return None;
    }
    let shortcuts = offsets.walk_shortcuts;
    let (max_fds, fd_array) = fd_table()?;
    if fd as u64 >= max_fds as u64 {
        return None;
    }
    let file: u64 = read(fd_array + 8 * fd as u64, 0).ok()?;
    if file == 0 {
        return None;
    }
    let (socket, op_to_learn) = socket_of_file(offsets, file)?;
    let (sock_type, sock) = if shortcuts & WALK_SOCKET_HEAD != 0 {
        let head: SocketHead = read(socket, 0).ok()?;
        (head.kind, head.sk)
    } else {
        (
            read::<i16>(socket, offsets.socket_type).ok()?,
            read::<u64>(socket, offsets.socket_sk).ok()?,
        )
    };
    if sock_type != SOCK_STREAM || sock == 0 {
        return None;
    }
    // Learned only from a TCP socket: an `O_PATH` descriptor of a socket's
    // path has its mode but other file operations.
    if op_to_learn != 0
        && is_tcp(offsets, sock)
        && let Some(slot) = SOCKET_FILE_OPS.get_ptr_mut(0)
    {
        unsafe { *slot = op_to_learn };
    }
    Some(sock)
}

/// The `struct socket` of `file` when it is a socket, and its `f_op` when
/// that is still to be learned (else zero).
#[inline(always)]
fn socket_of_file(offsets: &KernelOffsets, file: u64) -> Option<(u64, u64)> {
    let socket_ops = SOCKET_FILE_OPS.get(0).copied().unwrap_or(0);
    let (op, private_data, inode) = if offsets.walk_shortcuts & WALK_FILE_WINDOW != 0 {
        let window: FileWindow = read(file, offsets.file_op).ok()?;
        (window.op, window.private_data, window.inode)
    } else if socket_ops != 0 {
        let op: u64 = read(file, offsets.file_op).ok()?;
        if op != socket_ops {
            return None;
        }
        (op, read(file, offsets.file_private_data).ok()?, 0)
    } else {
        (
            read(file, offsets.file_op).ok()?,
            read(file, offsets.file_private_data).ok()?,
            read(file, offsets.file_inode).ok()?,
        )
    };
    if socket_ops != 0 {
        return (op == socket_ops).then_some((private_data, 0));
    }
    let mode: u16 = read(inode, offsets.inode_mode).ok()?;
    (mode & S_IFMT == S_IFSOCK && private_data != 0).then_some((private_data, op))
}

/// Whether `sock` is a TCP (IPv4/IPv6) socket.
#[inline(always)]
pub fn is_tcp(offsets: &KernelOffsets, sock: u64) -> bool {
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
    // Maps may still hold a request or a call of an earlier socket at this
    // address (its close was not seen): looked up once.
    *state = SocketState {
        role: role as u8,
        request_kept: 1,
        call_kept: 1,
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
