//! TLS plaintext: uprobes on OpenSSL's `SSL_read`, `SSL_write`, their
//! `_ex` variants and `SSL_do_handshake`, attached once per library file
//! (every process that maps it, started before or after the agent).
//!
//! - **Which socket**: a TLS call's socket is the one of the first socket
//!   syscall the thread makes during the call (`syscall_in_call`); a
//!   session (`SSL*`) keeps it for calls served from the library's buffer
//!   with no syscall. The handshake always makes syscalls, so a session
//!   seen from its start always knows its socket.
//! - **Pairing the two ends**: instead of the TCP sequence number, an event
//!   carries the offset of its first byte in its direction's plaintext,
//!   counted from the handshake: the same at the client's write and the
//!   server's read of a request, however the library cut it into records
//!   or buffered them. A session whose handshake was not seen starts its
//!   counts at a random offset, so that its requests are left unpaired
//!   rather than paired wrongly.
//! - **One source per connection**: once a connection's plaintext is seen,
//!   its socket syscalls (the ciphertext) are skipped, and its plaintext
//!   events keep the kernel's count of requests (`context`) as socket
//!   events do on clear-text connections.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{Counter, RequestContext, Source, Syscall};

use crate::{
    context,
    maps::{InFlight, TLS_CALLS, TLS_SESSIONS, TlsCall, TlsSession, TlsSessionKey, config, count},
    programs::{send_data, traced},
    sockets::socket_state,
};

const READ: u8 = 1;
const WRITE: u8 = 2;
const HANDSHAKE: u8 = 3;

/// `SSL_read(ssl, buf, num)`.
#[uprobe]
pub fn tls_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, READ, false);
    0
}

/// `SSL_read_ex(ssl, buf, num, size_t *readbytes)`.
#[uprobe]
pub fn tls_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, READ, true);
    0
}

/// `SSL_write(ssl, buf, num)`.
#[uprobe]
pub fn tls_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, WRITE, false);
    0
}

/// `SSL_write_ex(ssl, buf, num, size_t *written)`.
#[uprobe]
pub fn tls_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, WRITE, true);
    0
}

/// `SSL_do_handshake(ssl)` (`SSL_connect` and `SSL_accept` call it).
#[uprobe]
pub fn tls_handshake(ctx: ProbeContext) -> u32 {
    enter(&ctx, HANDSHAKE, false);
    0
}

/// The return of any of them.
#[uretprobe]
pub fn tls_return(ctx: RetProbeContext) -> u32 {
    returned(&ctx);
    0
}

#[inline(always)]
fn enter(ctx: &ProbeContext, kind: u8, reports_moved: bool) {
    if traced().is_none() {
        return;
    }
    let call = TlsCall {
        ssl: ctx.arg(0).unwrap_or(0),
        buf: ctx.arg(1).unwrap_or(0),
        moved_ptr: if reports_moved {
            ctx.arg(3).unwrap_or(0)
        } else {
            0
        },
        start_ns: unsafe { bpf_ktime_get_ns() },
        sock: 0,
        kind,
        _pad: [0; 7],
    };
    if TLS_CALLS
        .insert(bpf_get_current_pid_tgid(), call, 0)
        .is_err()
    {
        count(Counter::TlsCallsMapFull, 1);
    }
}

/// A socket syscall on `sock`: if the thread is inside a TLS call that has
/// no socket yet, this is its socket.
#[inline(always)]
pub fn syscall_in_call(sock: u64) {
    if let Some(call) = TLS_CALLS.get_ptr_mut(bpf_get_current_pid_tgid()) {
        let call = unsafe { &mut *call };
        if call.sock == 0 {
            call.sock = sock;
        }
    }
}

#[inline(always)]
fn returned(ctx: &RetProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = (unsafe { TLS_CALLS.get(pid_tgid) }).copied() else {
        return;
    };
    let _ = TLS_CALLS.remove(pid_tgid);
    let Some(config) = config() else {
        return;
    };
    let key = TlsSessionKey {
        pid: (pid_tgid >> 32) as u32,
        _pad: 0,
        ssl: call.ssl,
    };
    let session = session(&key, call.sock, call.kind == HANDSHAKE);
    if call.kind == HANDSHAKE {
        return;
    }
    let Some(session) = session else {
        count(Counter::TlsSocketUnknown, 1);
        return;
    };
    // Each returns a C `int`: the upper half of the register is not its.
    let result = ctx.ret::<i32>() as i64;
    let moved = if call.moved_ptr != 0 {
        if result != 1 {
            return;
        }
        unsafe { bpf_probe_read_user(call.moved_ptr as *const u64) }.unwrap_or(0) as i64
    } else {
        result
    };
    if moved <= 0 {
        return;
    }
    let sock = session.sock;
    let Some(state) = socket_state(config, sock) else {
        return;
    };
    if state.tls == 0 {
        state.tls = 1;
        // What its ciphertext (the handshake) made the kernel count as a
        // request is none.
        context::server_done(sock);
    }
    let (syscall, offset) = if call.kind == READ {
        (Syscall::TlsRead, &mut session.read)
    } else {
        (Syscall::TlsWrite, &mut session.written)
    };
    let seq = *offset;
    *offset = offset.wrapping_add(moved as u32);
    let in_flight = InFlight {
        sock,
        user_ptr: call.buf,
        iov_count: 0,
        start_ns: call.start_ns,
        fd: -1,
        seq,
        syscall: syscall as u8,
        is_call: 0,
        inject_checked: 0,
        role: state.role,
        _pad: [0; 4],
        context: RequestContext::default(),
        trace_id: [0; 16],
        span_id: [0; 8],
    };
    send_data(config, syscall, moved, &in_flight, state, Source::Tls);
}

/// The session `key`, on `sock` when the call found one. A handshake
/// starts its plaintext offsets at 0 (a process may free an `SSL*` and get
/// the same address, even the same socket address, for its next
/// connection); a session first seen on a new socket without one, at a
/// random point.
#[inline(always)]
fn session(key: &TlsSessionKey, sock: u64, handshake: bool) -> Option<&'static mut TlsSession> {
    if sock != 0 {
        let known = TLS_SESSIONS
            .get_ptr_mut(key)
            .is_some_and(|session| unsafe { (*session).sock } == sock);
        if handshake || !known {
            let start = if handshake {
                0
            } else {
                unsafe { bpf_get_prandom_u32() }
            };
            let session = TlsSession {
                sock,
                written: start,
                read: start,
            };
            TLS_SESSIONS.insert(key, session, 0).ok()?;
        }
    }
    Some(unsafe { &mut *TLS_SESSIONS.get_ptr_mut(key)? })
}
