//! Building an event in the per-CPU scratch buffer, copying a bounded payload
//! prefix from user memory, and writing the record to the ring buffer.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated,
    },
};
use tracer_common::{
    Config, Counter, EventKind, MAX_CAPTURE, MAX_IOVECS, RequestContext, Role, SocketState, Source,
    Syscall, event::SOCKET_EVENT_SIZE,
};

use crate::maps::{EVENTS, EventBuffer, SCRATCH, count};

/// Byte offset of `msg_iov` / `msg_iovlen` in the user-space `struct msghdr`
/// (64-bit ABI: `msg_name` 8, `msg_namelen` 4 + 4 padding).
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;

/// The scratch buffer with its header filled for `kind` on `sock`, from
/// the socket's `state` and the `role` the caller decided with.
#[inline(always)]
pub fn start_event(
    kind: EventKind,
    syscall: Syscall,
    fd: i32,
    sock: u64,
    state: &SocketState,
    role: Role,
) -> Option<&'static mut EventBuffer> {
    let buffer = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let pid_tgid = bpf_get_current_pid_tgid();
    let header = &mut buffer.header;
    header.kind = kind as u32;
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.fd = fd;
    header.sock_id = sock;
    header.end_ns = unsafe { bpf_ktime_get_ns() };
    header.start_ns = header.end_ns;
    header.bytes = 0;
    header.captured = 0;
    header.role = role as u8;
    header.direction = syscall.direction().map_or(0, |d| d as u8);
    header.syscall = syscall as u8;
    header.source = Source::Socket as u8;
    header._pad = [0; 2];
    header.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    header.seq = 0;
    header._pad2 = 0;
    header.context = RequestContext::default();
    header.trace_id = [0; 16];
    header.span_id = [0; 8];
    header.family = state.family;
    header.local_port = state.local_port;
    header.remote_port = state.remote_port;
    header.local_addr = state.local_addr;
    header.remote_addr = state.remote_addr;
    Some(buffer)
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
    let flags = if pending + len as u64 >= config.wakeup_bytes as u64 {
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

/// Copies the first `limit` bytes spread over a user iovec array.
#[inline(always)]
pub fn capture_iovecs(buffer: &mut EventBuffer, iov: u64, iov_count: u64, limit: usize) -> usize {
    let mut copied = 0usize;
    for i in 0..MAX_IOVECS as u64 {
        if i >= iov_count || copied >= limit {
            break;
        }
        let Ok(base) = (unsafe { bpf_probe_read_user((iov + 16 * i) as *const u64) }) else {
            count(Counter::PayloadReadFailed, 1);
            break;
        };
        let Ok(len) = (unsafe { bpf_probe_read_user((iov + 16 * i + 8) as *const u64) }) else {
            count(Counter::PayloadReadFailed, 1);
            break;
        };
        let want = core::cmp::min(len as usize, limit - copied);
        let got = copy_user(buffer, copied, base, want);
        if got < want {
            copied += got;
            break;
        }
        copied += got;
    }
    copied
}

/// Copies the first `limit` bytes of the iovecs a user `struct msghdr` names.
#[inline(always)]
pub fn capture_msghdr(buffer: &mut EventBuffer, msghdr: u64, limit: usize) -> usize {
    let iov = unsafe { bpf_probe_read_user((msghdr + MSGHDR_IOV) as *const u64) };
    let iov_count = unsafe { bpf_probe_read_user((msghdr + MSGHDR_IOVLEN) as *const u64) };
    match (iov, iov_count) {
        (Ok(iov), Ok(iov_count)) => capture_iovecs(buffer, iov, iov_count, limit),
        _ => {
            count(Counter::PayloadReadFailed, 1);
            0
        }
    }
}
