//! Go programs: which request a goroutine serves.
//!
//! Go runs goroutines on any thread, so the thread rule of `context` does not
//! hold there; the goroutine does. A goroutine serves a request when it owns
//! the connection the request came on: the first goroutine that read there
//! (`net/http` reads and handles a connection's requests in one goroutine;
//! the next request's bytes may be read by its short-lived background
//! reader, which works for it), or when the goroutine that started it
//! served one at the time (`go` statements in a handler: `runtime.newproc1`)
//! and the new goroutine runs the program's own code (`SpawnRanges`: a
//! goroutine a library starts for itself, such as a pool's loop dialed
//! during one request, may go on to write for others). `net/http`'s client
//! hands each request to its connection's `writeLoop` goroutine, which
//! writes it: the request's own context goes with it (`roundTrip` →
//! `Request.write`), and a `writeLoop` serves no request of its own.
//!
//! A context is a server connection and the sequence number of its request,
//! so it is live only while that request is open: a goroutine that outlives
//! its request (a connection's loops started by the first request's dial)
//! names a request that is over, and its calls stay unlinked.
//!
//! The running goroutine is read at a syscall through the thread pointer
//! (`task->thread.fsbase`, where Go keeps `g`), and in the uprobes from
//! register r14 (Go's internal ABI, 1.17+), whose arguments are in rax, rbx, …

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{
    Counter, GoProcess, KernelOffsets, RUNTIME_GO, RequestContext, event::CONTEXT_FROM_GOROUTINE,
};

use crate::context::open_request;
use crate::maps::{
    GO_CONNECTIONS, GO_HTTP_REQUESTS, GO_PROCESSES, GO_SPAWN_RANGES, GO_SPAWNS, GOROUTINES,
    GoHttpRequestKey, Goroutine, GoroutineKey, count, runtime_followed,
};

/// The Go process `pid`, when the agent found it to be one.
#[inline(always)]
pub fn go_process(pid: u32) -> Option<GoProcess> {
    if !runtime_followed(RUNTIME_GO) {
        return None;
    }
    unsafe { GO_PROCESSES.get(pid) }.copied()
}

#[inline(always)]
fn goid_of(go: &GoProcess, g: u64) -> Option<u64> {
    if g == 0 {
        return None;
    }
    let goid = unsafe { bpf_probe_read_user((g + go.goid_offset as u64) as *const u64) };
    if goid.is_err() {
        count(Counter::GoroutineReadFailed, 1);
    }
    goid.ok()
}

/// The goroutine running on the current thread, at a syscall.
#[inline(always)]
pub fn running_goroutine(offsets: &KernelOffsets, go: &GoProcess) -> Option<u64> {
    let task = unsafe { bpf_get_current_task() };
    let fsbase =
        unsafe { bpf_probe_read_kernel((task + offsets.task_fsbase as u64) as *const u64) }.ok()?;
    let g_slot = (fsbase as i64).wrapping_add(go.tls_g_offset as i64) as u64;
    let Ok(g) = (unsafe { bpf_probe_read_user(g_slot as *const u64) }) else {
        count(Counter::GoroutineReadFailed, 1);
        return None;
    };
    goid_of(go, g)
}

/// Goroutine `reader` of `pid` read a new request on server connection
/// `sock`: the connection's owner serves it.
#[inline(always)]
pub fn request_read(pid: u32, reader: u64, sock: u64, seq: u32) {
    let owner = match unsafe { GO_CONNECTIONS.get(sock) } {
        Some(&owner) => owner,
        None => {
            let _ = GO_CONNECTIONS.insert(sock, reader, 0);
            reader
        }
    };
    serve(pid, owner, sock, seq);
}

/// A connection opened or closed: the socket address may be reused.
#[inline(always)]
pub fn forget_connection(sock: u64) {
    if runtime_followed(RUNTIME_GO) {
        let _ = GO_CONNECTIONS.remove(sock);
    }
}

#[inline(always)]
fn serve(pid: u32, goid: u64, sock: u64, seq: u32) {
    let goroutine = Goroutine {
        sock,
        seq,
        transport_writer: 0,
    };
    let _ = GOROUTINES.insert(key(pid, goid), goroutine, 0);
}

/// The request goroutine `goid` of `pid` works for, while it is open.
#[inline(always)]
pub fn live_request(pid: u32, goid: u64) -> Option<RequestContext> {
    let goroutine = unsafe { GOROUTINES.get(key(pid, goid)) }?;
    open_request(goroutine.sock, goroutine.seq, CONTEXT_FROM_GOROUTINE)
}

#[inline(always)]
fn key(pid: u32, goid: u64) -> GoroutineKey {
    GoroutineKey { pid, _pad: 0, goid }
}

/// The current process, when it is a Go process whose goroutines are followed.
#[inline(always)]
fn followed() -> Option<(u32, GoProcess)> {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let go = go_process(pid)?;
    go.followed().then_some((pid, go))
}

#[inline(always)]
fn register(ctx: &ProbeContext, read: impl FnOnce(&aya_ebpf::bindings::pt_regs) -> u64) -> u64 {
    read(unsafe { &*ctx.regs })
}

/// `runtime.newproc1(fn, callergp, callerpc)` entry, on the thread that
/// starts a goroutine: the request of the parent (`callergp`, rbx), for the
/// return probes, when the goroutine's function (`fn->fn`, rax) is the
/// program's own code (`SpawnRanges`).
#[uprobe]
pub fn go_newproc1(ctx: ProbeContext) -> u32 {
    let Some((pid, go)) = followed() else {
        return 0;
    };
    let thread = bpf_get_current_pid_tgid();
    let function = register(&ctx, |regs| regs.rax);
    let entry = unsafe { bpf_probe_read_user(function as *const u64) }.unwrap_or(0);
    let inherits = unsafe { GO_SPAWN_RANGES.get(pid) }.is_some_and(|own| own.contains(entry));
    let parent = register(&ctx, |regs| regs.rbx);
    let request = if inherits {
        goid_of(&go, parent).and_then(|goid| live_request(pid, goid))
    } else {
        None
    };
    match request {
        Some(request) => {
            let _ = GO_SPAWNS.insert(thread, request, 0);
        }
        None => {
            let _ = GO_SPAWNS.remove(thread);
        }
    }
    0
}

/// The `RET` instructions of `runtime.newproc1` (never a return probe on a Go
/// function: Go moves stacks): the new goroutine (rax) takes over its
/// parent's request.
#[uprobe]
pub fn go_newproc1_return(ctx: ProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    let Some(request) = (unsafe { GO_SPAWNS.get(thread) }).copied() else {
        return 0;
    };
    let _ = GO_SPAWNS.remove(thread);
    let Some((pid, go)) = followed() else {
        return 0;
    };
    let child = register(&ctx, |regs| regs.rax);
    if let Some(goid) = goid_of(&go, child) {
        serve(pid, goid, request.sock, request.seq);
        count(Counter::GoroutinesFollowed, 1);
    }
    0
}

/// `net/http.(*persistConn).roundTrip(pc, req)` entry, in the goroutine that
/// makes a client request: `req` (rbx) is a `*transportRequest`, whose first
/// word is the `*Request` the connection's `writeLoop` will write.
#[uprobe]
pub fn go_round_trip(ctx: ProbeContext) -> u32 {
    let Some((pid, go)) = followed() else {
        return 0;
    };
    let transport_request = register(&ctx, |regs| regs.rbx);
    let Ok(request) = (unsafe { bpf_probe_read_user(transport_request as *const u64) }) else {
        count(Counter::GoroutineReadFailed, 1);
        return 0;
    };
    let http_key = GoHttpRequestKey {
        pid,
        _pad: 0,
        request,
    };
    // A request made outside any request says so too: the `writeLoop` that
    // writes it (maybe one started before the agent, not known as one) must
    // not keep the request it wrote before.
    let goroutine = register(&ctx, |regs| regs.r14);
    let context = goid_of(&go, goroutine)
        .and_then(|goid| live_request(pid, goid))
        .unwrap_or_default();
    let _ = GO_HTTP_REQUESTS.insert(http_key, context, 0);
    0
}

/// `net/http.(*persistConn).writeLoop` entry, as the goroutine starts: it
/// writes other goroutines' requests, so it serves none of its own (it
/// would otherwise keep the request of the goroutine that dialed).
#[uprobe]
pub fn go_write_loop(ctx: ProbeContext) -> u32 {
    let Some((pid, go)) = followed() else {
        return 0;
    };
    let Some(goid) = goid_of(&go, register(&ctx, |regs| regs.r14)) else {
        return 0;
    };
    let writer = Goroutine {
        sock: 0,
        seq: 0,
        transport_writer: 1,
    };
    let _ = GOROUTINES.insert(key(pid, goid), writer, 0);
    0
}

/// `net/http.(*Request).write(r, …)` entry: in a `writeLoop`, the request
/// `r` (rax) brings the context `roundTrip` saw (or none); elsewhere (a
/// program writing a request itself) a known context is taken, and the
/// goroutine's own is kept otherwise.
#[uprobe]
pub fn go_request_write(ctx: ProbeContext) -> u32 {
    let Some((pid, go)) = followed() else {
        return 0;
    };
    let Some(goid) = goid_of(&go, register(&ctx, |regs| regs.r14)) else {
        return 0;
    };
    let http_key = GoHttpRequestKey {
        pid,
        _pad: 0,
        request: register(&ctx, |regs| regs.rax),
    };
    let carried = unsafe { GO_HTTP_REQUESTS.get(http_key) }.copied();
    if carried.is_some() {
        let _ = GO_HTTP_REQUESTS.remove(http_key);
    }
    let goroutine_key = key(pid, goid);
    let transport_writer =
        unsafe { GOROUTINES.get(goroutine_key) }.map_or(0, |goroutine| goroutine.transport_writer);
    let (sock, seq) = match carried {
        Some(context) => (context.sock, context.seq),
        None if transport_writer != 0 => (0, 0),
        None => return 0,
    };
    let goroutine = Goroutine {
        sock,
        seq,
        transport_writer,
    };
    let _ = GOROUTINES.insert(goroutine_key, goroutine, 0);
    0
}
