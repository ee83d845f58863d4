//! TLS plaintext: uprobes on OpenSSL's `SSL_read`, `SSL_write`, their
//! `_ex` variants, `SSL_do_handshake` and where a connection starts
//! (`SSL_set_connect_state`, `SSL_set_accept_state`), attached once per
//! file that exports them (every process that runs it, started before or
//! after the agent). Go's `crypto/tls` (`go_tls`) shares the sessions,
//! offsets and events kept here.
//!
//! - **Which socket**: a TLS call's socket is the one of the first socket
//!   syscall the thread makes during the call (`syscall_in_call`); a
//!   session (`SSL*`) keeps it for calls served from the library's buffer
//!   with no syscall. A library that reads and writes memory buffers
//!   instead (Node.js: its event loop moves the ciphertext) makes none
//!   during any call: a call that returns with its session's socket still
//!   unknown leaves the thread a `BIND`, and the thread's next socket write
//!   (the ciphertext the call left, written before the event loop goes on)
//!   names the socket. Its handshake's ciphertext is the first such write,
//!   so a session seen from its start knows its socket either way.
//! - **Pairing the two ends**: instead of the TCP sequence number, an event
//!   carries the offset of its first byte in its direction's plaintext,
//!   counted from the connection's start: the same at the client's write
//!   and the server's read of a request, however the library cut it into
//!   records or buffered them. A session whose start was not seen starts
//!   its counts at a random offset, so that its requests are left unpaired
//!   rather than paired wrongly.
//! - **One source per connection**: a socket used inside a TLS call is
//!   ciphertext from that syscall on: its syscalls are skipped (a
//!   handshake's reply is not the answer to a client's call), and its
//!   plaintext events keep the kernel's count of requests (`context`) as
//!   socket events do on clear-text connections.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{Config, Counter, RequestContext, Source, Syscall};

use crate::{
    context,
    maps::{
        InFlight, TLS_SESSIONS, TlsCall, TlsSession, TlsSessionKey, config, count, tls_call_slot,
    },
    programs::{send_data, traced},
    sockets::socket_state,
};

/// No call: the thread's `TLS_CALLS` slot is free.
const NONE: u8 = 0;
const READ: u8 = 1;
const WRITE: u8 = 2;
const HANDSHAKE: u8 = 3;
/// Not a call: the thread's next socket write names its session's socket.
const BIND: u8 = 4;

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

/// `SSL_set_connect_state(ssl)`, `SSL_set_accept_state(ssl)`: a new
/// connection, before its handshake: its plaintext offsets start at 0, its
/// socket is named by the first call that finds one. (A library on memory
/// buffers, Node.js's, may never call `SSL_do_handshake`: its first read
/// makes the handshake.)
#[uprobe]
pub fn tls_start(ctx: ProbeContext) -> u32 {
    if traced().is_some() {
        start_session(ctx.arg(0).unwrap_or(0));
    }
    0
}

/// A new connection's session `ssl` of the current process (a library's
/// connection object), before its handshake: offsets at 0, socket unknown.
#[inline(always)]
pub fn start_session(ssl: u64) {
    let key = session_key(ssl);
    let session = TlsSession {
        sock: 0,
        written: 0,
        read: 0,
    };
    if TLS_SESSIONS.insert(key, session, 0).is_err() {
        count(Counter::TlsSessionsMapFull, 1);
    }
}

/// The current process's session `ssl`.
#[inline(always)]
pub fn session_key(ssl: u64) -> TlsSessionKey {
    TlsSessionKey {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        ssl,
    }
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
    match tls_call_slot(true) {
        Some(slot) => *slot = call,
        None => count(Counter::TlsCallsMapFull, 1),
    }
}

/// A socket syscall on `sock` (a write when `egress`): if the thread is
/// inside a TLS call that has no socket yet, this is its socket; if a call
/// left the thread a `BIND`, a write is its session's. Returns whether
/// `sock` is a TLS call's: its bytes are ciphertext, from this syscall on
/// (a handshake's reply read by a client is not the answer to its call).
#[inline(always)]
pub fn syscall_in_call(sock: u64, egress: bool) -> bool {
    let Some(call) = tls_call_slot(false).filter(|call| call.kind != NONE) else {
        return false;
    };
    if call.kind != BIND {
        if call.sock == 0 {
            call.sock = sock;
        }
        return call.sock == sock;
    }
    if !egress {
        return false;
    }
    call.kind = NONE;
    let Some(session) = TLS_SESSIONS.get_ptr_mut(session_key(call.ssl)) else {
        return false;
    };
    let session = unsafe { &mut *session };
    if session.sock != 0 {
        return false;
    }
    session.sock = sock;
    true
}

#[inline(always)]
fn returned(ctx: &RetProbeContext) {
    let Some(slot) = tls_call_slot(false).filter(|call| call.kind != NONE) else {
        return;
    };
    let call = *slot;
    slot.kind = NONE;
    let Some(config) = config() else {
        return;
    };
    let Some(session) = session(&session_key(call.ssl), call.sock, call.kind == HANDSHAKE) else {
        count(Counter::TlsSessionsMapFull, 1);
        return;
    };
    if session.sock == 0 {
        slot.kind = BIND;
    }
    let moved = match call.kind {
        HANDSHAKE => 0,
        _ => moved(ctx, &call),
    };
    let plaintext = Plaintext {
        read: call.kind == READ,
        buf: call.buf,
        moved,
        start_ns: call.start_ns,
    };
    send_plaintext(config, session, &plaintext);
}

/// What a TLS library call moved: `moved` bytes (0 or less: none) at `buf`,
/// read or written, by a call that began at `start_ns`.
pub struct Plaintext {
    pub read: bool,
    pub buf: u64,
    pub moved: i64,
    pub start_ns: u64,
}

/// Sends the `plaintext` of `session` as an event of its socket, at its
/// offset in its direction's plaintext (the offsets go on even when the
/// socket is not known yet, so that the next calls still pair).
#[inline(always)]
pub fn send_plaintext(config: &Config, session: &mut TlsSession, plaintext: &Plaintext) {
    let moved = plaintext.moved;
    if moved <= 0 {
        return;
    }
    let (syscall, offset) = if plaintext.read {
        (Syscall::TlsRead, &mut session.read)
    } else {
        (Syscall::TlsWrite, &mut session.written)
    };
    let seq = *offset;
    *offset = offset.wrapping_add(moved as u32);
    let sock = session.sock;
    if sock == 0 {
        count(Counter::TlsSocketUnknown, 1);
        return;
    }
    let Some(state) = socket_state(config, sock) else {
        return;
    };
    if state.tls == 0 {
        state.tls = 1;
        // What its ciphertext (the handshake) made the kernel count as a
        // request is none.
        context::server_done_on(sock, state);
    }
    let in_flight = InFlight {
        sock,
        user_ptr: plaintext.buf,
        iov_count: 0,
        start_ns: plaintext.start_ns,
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

/// The bytes a read or write call moved (0 or less: none).
#[inline(always)]
fn moved(ctx: &RetProbeContext, call: &TlsCall) -> i64 {
    // Each returns a C `int`: the upper half of the register is not its.
    let result = ctx.ret::<i32>() as i64;
    if call.moved_ptr == 0 {
        return result;
    }
    if result != 1 {
        return 0;
    }
    unsafe { bpf_probe_read_user(call.moved_ptr as *const u64) }.unwrap_or(0) as i64
}

/// The session `key`, on `sock` when the call found one (0: the socket
/// stays as the session knows it, maybe unknown; a session that did not
/// know its socket takes the call's). A handshake on a known socket starts
/// the plaintext offsets at 0 (a process may free an `SSL*` and get the
/// same address, even the same socket address, for its next connection);
/// a session first seen without one, or on a new socket, at a random
/// point. A handshake on a session that has moved data but does not know
/// the call's socket is a memory-buffer library's next connection on a
/// reused `SSL*` that `tls_start` missed: a new session.
#[inline(always)]
pub fn session(key: &TlsSessionKey, sock: u64, handshake: bool) -> Option<&'static mut TlsSession> {
    let known = unsafe { TLS_SESSIONS.get(key) }.copied();
    let renew = match known {
        None => true,
        Some(session) if sock == 0 || session.sock == 0 => {
            handshake && (session.written != 0 || session.read != 0)
        }
        Some(session) => handshake || session.sock != sock,
    };
    if renew {
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
    let session = unsafe { &mut *TLS_SESSIONS.get_ptr_mut(key)? };
    if session.sock == 0 {
        session.sock = sock;
    }
    Some(session)
}
