//! Go's `crypto/tls`, which Go programs link in (no OpenSSL to probe):
//! uprobes on `(*Conn).Write` (its plaintext is there at entry),
//! `(*Conn).Read` and its `RET` instructions (Go moves goroutine stacks, so
//! return probes are not safe), and the handshakes (`clientHandshake`,
//! `serverHandshake`: a connection's start, where its plaintext offsets
//! begin). Go's register ABI: the receiver in RAX, a slice's pointer and
//! length in RBX and RCX, the first result in RAX, the running goroutine's
//! `g` in R14.
//!
//! The socket comes from the `Conn` itself, when its `net.Conn` holds a
//! `*net.TCPConn` (the interface's itab is the one the agent found in the
//! executable): `TCPConn.conn.fd` → `netFD.pfd.Sysfd`, a descriptor of the
//! process. Sessions, offsets and events are OpenSSL's (`tls`).

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{Config, Counter};

use crate::{
    goroutines::go_process,
    maps::{GO_TLS_READS, GoTlsRead, GoTlsReadKey, config, count},
    programs::traced,
    sockets::tcp_sock_of_fd,
    tls::{self, Plaintext},
};

/// `poll.FD.Sysfd`'s offset in `net.netFD` (its first field, `pfd`, starts
/// with the 16-byte `fdMutex`): the same from Go 1.9 on.
const NETFD_SYSFD: u64 = 16;

#[inline(always)]
fn register(ctx: &ProbeContext, read: impl FnOnce(&pt_regs) -> u64) -> u64 {
    read(unsafe { &*ctx.regs })
}

/// `func (c *Conn) Write(b []byte) (int, error)`.
#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    let Some(config) = traced() else { return 0 };
    let plaintext = Plaintext {
        read: false,
        buf: register(&ctx, |regs| regs.rbx),
        moved: register(&ctx, |regs| regs.rcx) as i64,
        start_ns: unsafe { bpf_ktime_get_ns() },
    };
    send(config, register(&ctx, |regs| regs.rax), &plaintext);
    0
}

/// `func (c *Conn) Read(b []byte) (int, error)`: kept for its returns.
#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    if traced().is_none() {
        return 0;
    }
    let read = GoTlsRead {
        conn: register(&ctx, |regs| regs.rax),
        buf: register(&ctx, |regs| regs.rbx),
        start_ns: unsafe { bpf_ktime_get_ns() },
    };
    if GO_TLS_READS.insert(read_key(&ctx), read, 0).is_err() {
        count(Counter::TlsCallsMapFull, 1);
    }
    0
}

/// A `RET` of `(*Conn).Read`: RAX holds the bytes read.
#[uprobe]
pub fn go_tls_read_return(ctx: ProbeContext) -> u32 {
    let key = read_key(&ctx);
    let Some(read) = (unsafe { GO_TLS_READS.get(key) }).copied() else {
        return 0;
    };
    let _ = GO_TLS_READS.remove(key);
    let Some(config) = config() else { return 0 };
    let plaintext = Plaintext {
        read: true,
        buf: read.buf,
        moved: register(&ctx, |regs| regs.rax) as i64,
        start_ns: read.start_ns,
    };
    send(config, read.conn, &plaintext);
    0
}

/// `(*Conn).clientHandshake`, `(*Conn).serverHandshake`: a new connection.
#[uprobe]
pub fn go_tls_start(ctx: ProbeContext) -> u32 {
    if traced().is_some() {
        tls::start_session(register(&ctx, |regs| regs.rax));
    }
    0
}

#[inline(always)]
fn read_key(ctx: &ProbeContext) -> GoTlsReadKey {
    GoTlsReadKey {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        goroutine: register(ctx, |regs| regs.r14),
    }
}

/// The plaintext of `*tls.Conn` `conn`, on its session.
#[inline(always)]
fn send(config: &Config, conn: u64, plaintext: &Plaintext) {
    let sock = tcp_socket(config, conn).unwrap_or(0);
    let Some(session) = tls::session(&tls::session_key(conn), sock, false) else {
        count(Counter::TlsSessionsMapFull, 1);
        return;
    };
    tls::send_plaintext(config, session, plaintext);
}

/// The TCP socket under `*tls.Conn` `conn`, when its `net.Conn` (the
/// struct's first field: itab, data) holds a `*net.TCPConn`.
#[inline(always)]
fn tcp_socket(config: &Config, conn: u64) -> Option<u64> {
    let go = go_process((bpf_get_current_pid_tgid() >> 32) as u32)?;
    let read = |address: u64| unsafe { bpf_probe_read_user(address as *const u64) }.ok();
    if go.tcp_conn_itab == 0 || read(conn)? != go.tcp_conn_itab {
        return None;
    }
    let tcp_conn = read(conn + 8)?;
    let net_fd = read(tcp_conn)?;
    let sysfd = read(net_fd + NETFD_SYSFD)?;
    tcp_sock_of_fd(&config.offsets, sysfd as i64)
}
