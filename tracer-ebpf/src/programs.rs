//! Tracepoint entry points. Each program is named after the tracepoint it
//! attaches to (`syscalls:<name>`), which is how the agent finds them.
//!
//! Syscall tracepoint records (see `/sys/kernel/tracing/events/syscalls/*/format`):
//! arguments are 8-byte fields from offset 16; an exit record's `ret` is at 16.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    Config, Counter, Direction, EventKind, RequestContext, Role, SocketState, Source, Syscall,
    event::AF_INET6,
};

use crate::{
    capture::{capture_buffer, capture_iovecs, capture_msghdr, emit, start_event},
    context, goroutines,
    inject::{self, Head, inbound_trace_id, ipv4_mapped, method_len, new_id, wants_trace_ids},
    maps::{
        BLOCKED_AT_ATTACH, EventBuffer, InFlight, SOCKETS, TRACED_PIDS, config, count,
        in_flight_slot,
    },
    overload,
    sockets::{
        current_netns, is_tcp, next_seq, remember_socket, socket_state, stream_sock_of_fd,
        tcp_sock_of_fd,
    },
    tasks, tls,
};

const MSG_PEEK: u32 = 2;
const EINPROGRESS: i64 = -115;

#[inline(always)]
fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    unsafe { ctx.read_at::<u64>(16 + 8 * index) }.unwrap_or(0)
}

#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}

/// The config when the current process is to be traced.
#[inline(always)]
pub fn traced() -> Option<&'static Config> {
    let config = config()?;
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if pid == config.agent_pid || config.live == 0 {
        return None;
    }
    if config.filter_pids != 0 && unsafe { TRACED_PIDS.get(pid) }.is_none() {
        return None;
    }
    if config.netns_inum != 0 && current_netns(&config.offsets) != config.netns_inum {
        return None;
    }
    Some(config)
}

/// What a socket syscall's exit needs from its start, and the socket's
/// state; none when `fd` is not a TCP socket or is one the agent skips.
#[inline(always)]
fn start_of(
    config: &Config,
    syscall: Syscall,
    fd: i64,
    user_ptr: u64,
    iov_count: u64,
) -> Option<(InFlight, &'static mut SocketState)> {
    // `socket_state` tells a TCP socket from another stream socket.
    let sock = stream_sock_of_fd(&config.offsets, fd)?;
    let state = socket_state(config, sock)?;
    let in_flight = start_on(config, syscall, sock, state, fd, user_ptr, iov_count)?;
    Some((in_flight, state))
}

/// `start_of` for a socket already found; none when the agent skips it.
#[inline(always)]
fn start_on(
    config: &Config,
    syscall: Syscall,
    sock: u64,
    state: &mut SocketState,
    fd: i64,
    user_ptr: u64,
    iov_count: u64,
) -> Option<InFlight> {
    let egress = syscall.direction() == Some(Direction::Egress);
    if config.tls_probes != 0 && tls::syscall_in_call(sock, egress) && state.tls == 0 {
        state.tls = 1;
        // What its ciphertext made the kernel count as a request (a
        // memory-buffer library's ClientHello, read before any TLS call)
        // is none.
        context::server_done_on(sock, state);
    }
    // A connect makes a new connection: what an earlier socket at the same
    // address was (skipped, TLS) is not this one's.
    let data = syscall.direction().is_some();
    if data && state.tls != 0 {
        // Its plaintext comes from the TLS probes.
        count(Counter::SkippedTlsCiphertext, 1);
        return None;
    }
    if data && state.ignored != 0 {
        count(Counter::SkippedIgnoredSockets, 1);
        return None;
    }
    let seq = match syscall.direction() {
        Some(direction) => next_seq(&config.offsets, sock, direction),
        None => 0,
    };
    let mut in_flight = InFlight {
        sock,
        user_ptr,
        iov_count,
        start_ns: unsafe { bpf_ktime_get_ns() },
        fd: fd as i32,
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
    if egress {
        enter_call(config, &mut in_flight, state);
    }
    Some(in_flight)
}

/// Enter of a syscall on `fd`: remember it if `fd` is a TCP socket.
#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: Syscall, user_ptr: u64, iov_count: u64) {
    let Some(config) = traced() else { return };
    let Some((in_flight, _)) = start_of(config, syscall, arg(ctx, 0) as i64, user_ptr, iov_count)
    else {
        return;
    };
    match in_flight_slot(true) {
        Some(slot) => *slot = in_flight,
        None => count(Counter::InFlightMapFull, 1),
    }
}

/// The syscall the current thread is in, from the registers it entered the
/// kernel with (x86-64): its number (`orig_ax`) and first arguments (rdi,
/// rsi, rdx, r10). What a read or a sendfile needs (they have no entry
/// program), and what a write that was already blocked when the agent
/// attached had. None for a thread that did not come from user space (a
/// kernel thread, an io_uring worker: their saved registers are zero).
#[inline(always)]
fn user_syscall() -> Option<UserSyscall> {
    const USER_MODE: u64 = 3;
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    if regs.is_null() {
        return None;
    }
    // A BTF-typed pointer: plain loads, which the verifier turns into
    // fault-safe ones, cost less than a helper call.
    let load = |field: *const u64| unsafe { core::ptr::read_volatile(field) };
    let cs = load(unsafe { &raw const (*regs).cs });
    (cs & USER_MODE == USER_MODE).then(|| UserSyscall {
        number: load(unsafe { &raw const (*regs).orig_rax }),
        args: [
            load(unsafe { &raw const (*regs).rdi }),
            load(unsafe { &raw const (*regs).rsi }),
            load(unsafe { &raw const (*regs).rdx }),
            load(unsafe { &raw const (*regs).r10 }),
        ],
    })
}

struct UserSyscall {
    number: u64,
    args: [u64; 4],
}

/// The read syscalls (x86-64 numbers) whose bytes `sock_recv_length` sends.
#[inline(always)]
fn recv_syscall(number: u64) -> Option<Syscall> {
    match number {
        0 => Some(Syscall::Read),
        19 => Some(Syscall::Readv),
        45 => Some(Syscall::Recvfrom),
        47 => Some(Syscall::Recvmsg),
        _ => None,
    }
}

/// A socket read moved bytes (`sock:sock_recv_length`, at the end of
/// `sock_recvmsg`, inside the syscall): the socket comes with the
/// tracepoint, so no descriptor is looked up, and reads of anything but a
/// socket never get here. The buffer is the syscall's, from the registers.
/// A MSG_PEEK read leaves the bytes in the socket to be read again, so it
/// is not traffic.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let moved: i32 = ctx.arg(1);
    let flags: u32 = ctx.arg(2);
    if moved <= 0 || flags & MSG_PEEK != 0 {
        return 0;
    }
    let Some(config) = traced() else { return 0 };
    let Some(UserSyscall { number, args }) = user_syscall() else {
        return 0;
    };
    // recvmmsg, splice and io_uring reads are not traced.
    let Some(syscall) = recv_syscall(number) else {
        return 0;
    };
    let Some((in_flight, state)) = start_at_end(config, syscall, ctx.arg(0), args, moved) else {
        return 0;
    };
    send_data(
        config,
        syscall,
        moved as i64,
        &in_flight,
        state,
        Source::Socket,
    );
    0
}

/// The start of a read or send that had no entry program, rebuilt at its
/// end from the syscall's registers: its sequence number is moved back over
/// the `moved` bytes the kernel already counted.
#[inline(always)]
fn start_at_end(
    config: &Config,
    syscall: Syscall,
    sock: u64,
    [fd, user_ptr, third, _]: [u64; 4],
    moved: i32,
) -> Option<(InFlight, &'static mut SocketState)> {
    let state = socket_state(config, sock)?;
    let vectored = matches!(syscall, Syscall::Readv | Syscall::Writev);
    let iov_count = if vectored { third } else { 0 };
    let mut in_flight = start_on(config, syscall, sock, state, fd as i64, user_ptr, iov_count)?;
    in_flight.seq = in_flight.seq.wrapping_sub(moved as u32);
    Some((in_flight, state))
}

/// The current thread's write entry, if it has one; it is over either way.
#[inline(always)]
fn take_in_flight() -> Option<InFlight> {
    let slot = in_flight_slot(false)?;
    if slot.sock == 0 {
        return None;
    }
    let in_flight = *slot;
    slot.sock = 0;
    Some(in_flight)
}

/// The write syscalls (x86-64 numbers) whose bytes `sock_send_length` sends.
#[inline(always)]
fn send_syscall(number: u64) -> Option<Syscall> {
    match number {
        1 => Some(Syscall::Write),
        20 => Some(Syscall::Writev),
        40 => Some(Syscall::Sendfile),
        44 => Some(Syscall::Sendto),
        46 => Some(Syscall::Sendmsg),
        _ => None,
    }
}

/// A socket write moved bytes, or failed (`sock:sock_send_length`, at the
/// end of `sock_sendmsg`, inside the syscall): writes to anything but a
/// socket never get here. A write's entry decided its start (its context
/// and start time, before the bytes left); a sendfile, whose bytes are
/// counted, not read, has none: its start is its end (a file server's
/// response starts with its head's write), and one syscall may send in
/// several pieces, each its own event.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    let moved: i32 = ctx.arg(1);
    let sock: u64 = ctx.arg(0);
    // Taken even when nothing moved: the entry is over.
    let entered = take_in_flight().filter(|in_flight| in_flight.sock == sock);
    if moved <= 0 {
        return 0;
    }
    let (config, syscall, in_flight, state) = match entered {
        Some(in_flight) => {
            let Some(config) = config() else { return 0 };
            let (Some(syscall), Some(state)) = (
                Syscall::from_u8(in_flight.syscall),
                socket_state(config, sock),
            ) else {
                return 0;
            };
            (config, syscall, in_flight, state)
        }
        None => match start_in_send(sock, moved) {
            Some(started) => started,
            None => return 0,
        },
    };
    send_data(
        config,
        syscall,
        moved as i64,
        &in_flight,
        state,
        Source::Socket,
    );
    0
}

/// The start of a send with no entry, from the registers: a sendfile, or a
/// write that was already blocked when the agent attached (the agent
/// listed those threads in `BLOCKED_AT_ATTACH`).
#[inline(always)]
fn start_in_send(
    sock: u64,
    moved: i32,
) -> Option<(&'static Config, Syscall, InFlight, &'static mut SocketState)> {
    let config = traced()?;
    let UserSyscall { number, args } = user_syscall()?;
    // splice and io_uring sends are not traced.
    let syscall = send_syscall(number)?;
    let blocked_at_attach = syscall != Syscall::Sendfile;
    if blocked_at_attach {
        let key = bpf_get_current_pid_tgid();
        unsafe { BLOCKED_AT_ATTACH.get(key) }?;
        let _ = BLOCKED_AT_ATTACH.remove(key);
    }
    let (in_flight, state) = start_at_end(config, syscall, sock, args, moved)?;
    if blocked_at_attach {
        count(Counter::BlockedAtAttachTraced, 1);
    }
    Some((config, syscall, in_flight, state))
}

/// Sends a data event for `moved` bytes at `in_flight.user_ptr` (a buffer,
/// iovec array or msghdr, as `syscall` says), and keeps the kernel's count
/// of requests in step with it.
#[inline(always)]
pub fn send_data(
    config: &Config,
    syscall: Syscall,
    moved: i64,
    in_flight: &InFlight,
    state: &mut SocketState,
    source: Source,
) {
    let Some(buffer) = start_event(
        config,
        EventKind::Data,
        syscall,
        in_flight.fd,
        in_flight.sock,
        state,
        Role::from_u8(in_flight.role),
    ) else {
        return;
    };
    buffer.header.source = source as u8;
    buffer.header.start_ns = in_flight.start_ns;
    buffer.header.bytes = moved as u64;
    buffer.header.seq = in_flight.seq;
    let limit = core::cmp::min(moved as u64, config.capture_bytes as u64) as usize;
    let captured = match syscall {
        Syscall::Readv | Syscall::Writev => {
            capture_iovecs(in_flight.user_ptr, in_flight.iov_count, limit)
        }
        Syscall::Recvmsg | Syscall::Sendmsg => capture_msghdr(in_flight.user_ptr, limit),
        Syscall::Sendfile => 0,
        _ => capture_buffer(buffer, in_flight.user_ptr, limit),
    };
    buffer.header.captured = captured as u32;
    count(Counter::BytesNotCaptured, moved as u64 - captured as u64);
    if let Some(direction) = syscall.direction() {
        let mut role = Role::from_u8(buffer.header.role);
        if role == Role::Unknown {
            role = infer_role(buffer, direction);
            if role != Role::Unknown {
                buffer.header.role = role as u8;
                state.role = role as u8;
            }
        }
        track_context(config, buffer, role, direction, in_flight, state);
    }
    // Decided at the request's start (maybe just now, in `track_context`).
    if state.dropping != 0 {
        return;
    }
    emit(config, buffer);
}

/// Keeps the kernel's count of which inbound requests each thread serves
/// (`context`), and fills in the event's ids:
/// - a read on a server connection may start a request (with injection on,
///   its trace id: the inbound `traceparent`'s, else a new one);
/// - a write on a server connection (the response) ends it;
/// - a write on a client connection carries what its entry decided;
/// - a read on a client connection (the response) ends the call.
#[inline(always)]
fn track_context(
    config: &Config,
    buffer: &mut EventBuffer,
    role: Role,
    direction: Direction,
    in_flight: &InFlight,
    state: &mut SocketState,
) {
    let sock = in_flight.sock;
    match (role, direction) {
        (Role::Server, Direction::Ingress) => {
            if context::serving(sock, state) {
                return; // a body read
            }
            let mut trace_id = [0u8; 16];
            if wants_trace_ids(config, buffer.header.pid) {
                let captured = buffer.header.captured as usize;
                if !inbound_trace_id(Head::EventPayload, captured, &mut trace_id) {
                    new_id(&mut trace_id);
                }
            }
            if context::server_read(buffer.header.tid, sock, state, in_flight.seq, &trace_id) {
                buffer.header.trace_id = trace_id;
            }
            overload::inbound_request(config, state, in_flight.seq);
        }
        (Role::Server, Direction::Egress) => {
            tasks::response_written(sock);
            context::server_done_on(sock, state);
        }
        (Role::Client, Direction::Egress) => {
            if in_flight.is_call == 0 {
                // The role was learned only now (a connection older than
                // the agent): decide the call here.
                buffer.header.context =
                    context::call_context(buffer.header.tid, sock, false, Some(state));
            } else {
                buffer.header.context = in_flight.context;
            }
            if in_flight.span_id != [0; 8] {
                buffer.header.trace_id = in_flight.trace_id;
                buffer.header.span_id = in_flight.span_id;
            }
            if state.multiplexed == 0 && http2_preface(buffer) {
                state.multiplexed = 1;
                // The call this write was decided for no longer holds its
                // request back: it goes on as if answered.
                context::call_answered(0, sock, Some(state));
            }
        }
        (Role::Client, Direction::Ingress) => {
            context::call_answered(buffer.header.tid, sock, Some(state));
            overload::call_answered(state);
        }
        _ => {}
    }
}

/// An HTTP/2 client's connection preface (`PRI * HTTP/2.0`) starts the
/// payload. (A connection older than the agent, whose preface was missed,
/// has no role the kernel knows, so none of its writes is linked.)
#[inline(always)]
fn http2_preface(buffer: &EventBuffer) -> bool {
    buffer.header.captured >= 8 && buffer.payload[..8] == *b"PRI * HT"
}

/// The role of a connection opened before the agent started, from the start
/// of an HTTP/1.x message: a response (`HTTP/`) is read by clients and
/// written by servers, a request (`METHOD `) the other way round. Without
/// it, such connections' requests would be missing from the kernel's count
/// of what each thread serves, and a call could be tied to the wrong one.
/// A database command written (a pool opened at start-up: a Redis
/// `*N\r\n$`, a PostgreSQL query or Parse, a MySQL query or prepare)
/// makes a client; read, it proves nothing (a Redis array reply looks the
/// same).
#[inline(always)]
fn infer_role(buffer: &EventBuffer, direction: Direction) -> Role {
    if buffer.header.captured < 8 {
        return Role::Unknown;
    }
    let head = &buffer.payload;
    let response = head[..5] == *b"HTTP/";
    let request = method_len(head) >= 3;
    match (response, request, direction) {
        (true, _, Direction::Ingress) | (false, true, Direction::Egress) => Role::Client,
        (true, _, Direction::Egress) | (false, true, Direction::Ingress) => Role::Server,
        (false, false, Direction::Egress)
            if resp_command(head) || postgres_query(head) || mysql_query(head) =>
        {
            Role::Client
        }
        _ => Role::Unknown,
    }
}

/// A PostgreSQL `Q` (query) or `P` (Parse) message under 16 MiB whose
/// text starts with a letter (a Parse's after a short statement name).
#[inline(always)]
fn postgres_query<const N: usize>(head: &[u8; N]) -> bool {
    if N < 8 || head[1] != 0 {
        return false;
    }
    match head[0] {
        b'Q' => head[5].is_ascii_alphabetic(),
        b'P' => head[5].is_ascii_alphanumeric() || (head[5] == 0 && head[6].is_ascii_alphabetic()),
        _ => false,
    }
}

/// A MySQL `COM_QUERY` or `COM_STMT_PREPARE` under 64 KiB (sequence 0)
/// whose text starts with a letter.
#[inline(always)]
fn mysql_query<const N: usize>(head: &[u8; N]) -> bool {
    N >= 6
        && head[2] == 0
        && head[3] == 0
        && (head[4] == 0x03 || head[4] == 0x16)
        && head[5].is_ascii_alphabetic()
}

/// `*N\r\n$` with N of one or two digits: a RESP array of bulk strings.
#[inline(always)]
fn resp_command<const N: usize>(head: &[u8; N]) -> bool {
    if N < 6 || head[0] != b'*' || !head[1].is_ascii_digit() {
        return false;
    }
    let at = if head[2].is_ascii_digit() { 3 } else { 2 };
    head[at] == b'\r' && head[at + 1] == b'\n' && head[at + 2] == b'$'
}

/// At the entry of a write on a client connection: which inbound request it
/// is made for, and (with injection on) the trace id a header would carry.
#[inline(always)]
fn enter_call(config: &Config, in_flight: &mut InFlight, state: &mut SocketState) {
    if in_flight.role != Role::Client as u8 {
        return;
    }
    in_flight.is_call = 1;
    let tid = bpf_get_current_pid_tgid() as u32;
    in_flight.context = context::call_context(tid, in_flight.sock, false, Some(state));
    if overload::call_write(config, state, in_flight.seq, in_flight.context.sock) {
        // Left out: nothing on the wire names it either.
        return;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if wants_trace_ids(config, pid)
        && !context::trace_id_for_call(in_flight.context.sock, &mut in_flight.trace_id)
    {
        new_id(&mut in_flight.trace_id);
    }
}

/// A new connection on `fd`: remember its role and tell the agent.
#[inline(always)]
fn opened(fd: i64, role: Role, syscall: Syscall, sock: Option<u64>) {
    let Some(config) = traced() else { return };
    let Some(sock) = sock.or_else(|| tcp_sock_of_fd(&config.offsets, fd)) else {
        return;
    };
    // A new connection (the socket address may be reused): new state.
    let Some(state) = remember_socket(config, sock, role) else {
        return;
    };
    goroutines::forget_connection(sock);
    tasks::forget_connection(sock);
    let Some(buffer) = start_event(
        config,
        EventKind::Open,
        syscall,
        fd as i32,
        sock,
        state,
        role,
    ) else {
        return;
    };
    if role == Role::Client {
        let peer = if state.family == AF_INET6 {
            state.remote_addr
        } else {
            let mut ip4 = [0u8; 4];
            ip4.copy_from_slice(&state.remote_addr[..4]);
            ipv4_mapped(ip4)
        };
        inject::connected(config, buffer.header.pid, &peer);
    }
    emit(config, buffer);
}

/// A write's entry: its start, decided before the bytes leave (its end is
/// `sock_send_length`).
macro_rules! write_syscall {
    ($enter:ident, $syscall:expr, |$ctx:ident| ($user_ptr:expr, $iov_count:expr)) => {
        #[tracepoint]
        pub fn $enter($ctx: TracePointContext) -> u32 {
            enter(&$ctx, $syscall, $user_ptr, $iov_count);
            0
        }
    };
}

// write(fd, buf, count)
write_syscall!(sys_enter_write, Syscall::Write, |ctx| (arg(&ctx, 1), 0));
// writev(fd, iov, iovcnt)
write_syscall!(sys_enter_writev, Syscall::Writev, |ctx| (
    arg(&ctx, 1),
    arg(&ctx, 2)
));
// sendto(fd, buf, len, flags, addr, addrlen)
write_syscall!(sys_enter_sendto, Syscall::Sendto, |ctx| (arg(&ctx, 1), 0));
// sendmsg(fd, msg, flags)
write_syscall!(sys_enter_sendmsg, Syscall::Sendmsg, |ctx| (arg(&ctx, 1), 0));

/// accept(fd, ...) returns the new connection's descriptor.
#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    opened(ret(&ctx), Role::Server, Syscall::Accept, None);
    0
}

#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    opened(ret(&ctx), Role::Server, Syscall::Accept, None);
    0
}

/// connect(fd, addr, addrlen): the socket is known at enter; the role is set
/// when the connection is made or under way (non-blocking: -EINPROGRESS).
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    enter(&ctx, Syscall::Connect, 0, 0);
    0
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let Some(in_flight) = take_in_flight() else {
        return 0;
    };
    let rc = ret(&ctx);
    if rc == 0 || rc == EINPROGRESS {
        // An event loop may write this connection's first request turns
        // later, when it serves other requests: decide now.
        let tid = bpf_get_current_pid_tgid() as u32;
        context::call_context(tid, in_flight.sock, true, None);
        opened(
            in_flight.fd as i64,
            Role::Client,
            Syscall::Connect,
            Some(in_flight.sock),
        );
    }
    0
}

/// epoll_ctl(epfd, op, fd, event): an asyncio transport registering a new
/// server connection tells which task owns it (`tasks`).
#[tracepoint]
pub fn sys_enter_epoll_ctl(ctx: TracePointContext) -> u32 {
    const EPOLL_CTL_ADD: u64 = 1;
    if arg(&ctx, 1) != EPOLL_CTL_ADD || !tasks::new_root_pending() {
        return 0;
    }
    let Some(config) = traced() else { return 0 };
    if let Some(sock) = tcp_sock_of_fd(&config.offsets, arg(&ctx, 2) as i64) {
        tasks::registered(sock);
    }
    0
}

/// close(fd): the agent ends the connection's streams. Read at enter, while
/// the descriptor still names the socket.
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let Some(config) = traced() else { return 0 };
    let fd = arg(&ctx, 0) as i64;
    let Some(sock) = stream_sock_of_fd(&config.offsets, fd) else {
        return 0;
    };
    // The agent needs no addresses to end a connection: a socket never
    // seen before gets none read, once it proves to be TCP.
    let mut state = match unsafe { SOCKETS.get(sock) } {
        Some(state) => *state,
        None if is_tcp(&config.offsets, sock) => SocketState::default(),
        None => return 0,
    };
    let _ = SOCKETS.remove(sock);
    goroutines::forget_connection(sock);
    tasks::forget_connection(sock);
    // A request whose connection closes is over, and so is a call.
    context::server_done(sock);
    context::call_answered(0, sock, None);
    let role = Role::from_u8(state.role);
    if let Some(buffer) = start_event(
        config,
        EventKind::Close,
        Syscall::Close,
        fd as i32,
        sock,
        &mut state,
        role,
    ) {
        emit(config, buffer);
    }
    0
}
