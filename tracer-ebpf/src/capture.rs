//! Building an event in the per-CPU scratch buffer, copying a bounded payload
//! prefix from user memory, and writing the record to the ring buffer.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::{self, bpf_loop},
    },
};
use tracer_common::{
    Config, Counter, EventKind, MAX_CAPTURE, MAX_IOVECS, RequestContext, Role, SocketState, Source,
    Syscall,
    event::{ENDPOINTS_SIZE, Endpoints, SOCKET_EVENT_SIZE},
    wakes_reader,
};

use crate::maps::{EVENTS, EventBuffer, IOVEC_COPY, IovecCopy, SCRATCH, count};

/// Byte offset of `msg_iov` / `msg_iovlen` in the user-space `struct msghdr`
/// (64-bit ABI: `msg_name` 8, `msg_namelen` 4 + 4 padding).
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;

/// The scratch buffer with its header filled for `kind` on `sock`, as
/// `role` (the caller decided it). An `Open` gets the socket's `Endpoints`
/// as its payload. Before a `Data` event, an `Announce` record with them
/// goes out first, when the agent was never sent them or was last sent
/// them `reannounce_ns` ago.
#[inline(always)]
pub fn start_event(
    config: &Config,
    kind: EventKind,
    syscall: Syscall,
    fd: i32,
    sock: u64,
    state: &mut SocketState,
    role: Role,
) -> Option<&'static mut EventBuffer> {
    let buffer = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let now = unsafe { bpf_ktime_get_ns() };
    let announce = match kind {
        EventKind::Open => true,
        EventKind::Data => now.wrapping_sub(state.announced_ns) >= config.reannounce_ns,
        EventKind::Close | EventKind::Announce => false,
    };
    if announce {
        state.announced_ns = now;
        let record = match kind {
            EventKind::Open => kind,
            _ => EventKind::Announce,
        };
        fill_header(buffer, record, syscall, fd, sock, role, now);
        let endpoints = buffer.payload.as_mut_ptr() as *mut Endpoints;
        unsafe {
            *endpoints = Endpoints {
                local_addr: state.local_addr,
                remote_addr: state.remote_addr,
                comm: bpf_get_current_comm().unwrap_or([0; 16]),
                family: state.family,
                local_port: state.local_port,
                remote_port: state.remote_port,
                _pad: 0,
            };
        }
        buffer.header.captured = ENDPOINTS_SIZE as u32;
        if kind == EventKind::Open {
            return Some(buffer);
        }
        emit(config, buffer);
    }
    fill_header(buffer, kind, syscall, fd, sock, role, now);
    Some(buffer)
}

#[inline(always)]
fn fill_header(
    buffer: &mut EventBuffer,
    kind: EventKind,
    syscall: Syscall,
    fd: i32,
    sock: u64,
    role: Role,
    now: u64,
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let header = &mut buffer.header;
    header.kind = kind as u32;
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.fd = fd;
    header.sock_id = sock;
    header.end_ns = now;
    header.start_ns = now;
    header.bytes = 0;
    header.captured = 0;
    header.role = role as u8;
    header.direction = syscall.direction().map_or(0, |d| d as u8);
    header.syscall = syscall as u8;
    header.source = Source::Socket as u8;
    header.seq = 0;
    header._pad = 0;
    header.context = RequestContext::default();
    header.trace_id = [0; 16];
    header.span_id = [0; 8];
}

/// Sends `header` plus its `captured` payload bytes.
#[inline(always)]
pub fn emit(config: &Config, buffer: &EventBuffer) {
    let captured = buffer.header.captured as usize;
    let captured = if captured > MAX_CAPTURE {
        MAX_CAPTURE
    } else {
        captured
    };
    let len = SOCKET_EVENT_SIZE + captured;
    let record =
        unsafe { core::slice::from_raw_parts(buffer as *const EventBuffer as *const u8, len) };
    let pending = EVENTS.query(0);
    let flags = if wakes_reader(pending, len as u64, config.wakeup_bytes as u64) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    match EVENTS.output::<[u8]>(record, flags as u64) {
        Ok(()) => count(Counter::EventsSent, 1),
        Err(_) => count(Counter::EventsLostRingFull, 1),
    }
}

/// Copies up to `limit` bytes from user address `src` into the payload at `offset`.
/// Returns the bytes copied (0 on a failed read, which is counted).
#[inline(always)]
fn copy_user(buffer: &mut EventBuffer, offset: usize, src: u64, limit: usize) -> usize {
    let offset = offset & (MAX_CAPTURE - 1);
    let len = if limit > MAX_CAPTURE {
        MAX_CAPTURE
    } else {
        limit
    };
    if len == 0 {
        return 0;
    }
    let dst = unsafe { buffer.payload.as_mut_ptr().add(offset) } as *mut c_void;
    let rc = unsafe { generated::bpf_probe_read_user(dst, len as u32, src as *const c_void) };
    if rc < 0 {
        count(Counter::PayloadReadFailed, 1);
        return 0;
    }
    len
}

/// Copies the first `limit` bytes of a contiguous user buffer.
#[inline(always)]
pub fn capture_buffer(buffer: &mut EventBuffer, src: u64, limit: usize) -> usize {
    copy_user(buffer, 0, src, limit)
}

/// Copies the first `limit` bytes spread over a user iovec array (into the
/// scratch buffer's payload). A `bpf_loop` of one call per iovec: runtimes
/// write a message's frames as many small iovecs (grpcio up to 24; the
/// kernel accepts `MAX_IOVECS`), and an unrolled loop is verified once per
/// iteration.
#[inline(always)]
pub fn capture_iovecs(iov: u64, iov_count: u64, limit: usize) -> usize {
    let loops = core::cmp::min(iov_count, MAX_IOVECS as u64) as u32;
    let Some(copy) = IOVEC_COPY.get_ptr_mut(0) else {
        return 0;
    };
    let copy = unsafe { &mut *copy };
    *copy = IovecCopy {
        iov,
        limit: limit as u64,
        copied: 0,
    };
    if loops == 0 || limit == 0 {
        return 0;
    }
    unsafe { bpf_loop(loops, copy_iovec as *mut c_void, core::ptr::null_mut(), 0) };
    copy.copied as usize
}

/// `bpf_loop` callback: copies iovec `i`, up to the limit. Stops (returns 1)
/// at the limit or at a read that failed or came short.
extern "C" fn copy_iovec(i: u64, _: *mut c_void) -> i64 {
    let (Some(copy), Some(buffer)) = (IOVEC_COPY.get_ptr_mut(0), SCRATCH.get_ptr_mut(0)) else {
        return 1;
    };
    let copy = unsafe { &mut *copy };
    let Ok([base, len]) = (unsafe { bpf_probe_read_user((copy.iov + 16 * i) as *const [u64; 2]) })
    else {
        count(Counter::PayloadReadFailed, 1);
        return 1;
    };
    let want = core::cmp::min(len, copy.limit.saturating_sub(copy.copied)) as usize;
    let got = copy_user(unsafe { &mut *buffer }, copy.copied as usize, base, want);
    copy.copied += got as u64;
    (got < want || copy.copied >= copy.limit) as i64
}

/// Copies the first `limit` bytes of the iovecs a user `struct msghdr` names.
#[inline(always)]
pub fn capture_msghdr(msghdr: u64, limit: usize) -> usize {
    let iov = unsafe { bpf_probe_read_user((msghdr + MSGHDR_IOV) as *const u64) };
    let iov_count = unsafe { bpf_probe_read_user((msghdr + MSGHDR_IOVLEN) as *const u64) };
    match (iov, iov_count) {
        (Ok(iov), Ok(iov_count)) => capture_iovecs(iov, iov_count, limit),
        _ => {
            count(Counter::PayloadReadFailed, 1);
            0
        }
    }
}
