//! Which inbound request an outbound request (a "call") is made for.
//!
//! Per thread, the kernel keeps the inbound requests the thread is free to
//! work on: read on a server connection, not yet answered, not waiting for a
//! call of their own. They are of two kinds:
//! - **fresh**: read, no call made yet;
//! - **resumed**: a call made for it got (the start of) its response.
//!
//! A call is made for:
//! - the one fresh request, when there is no resumed one, or when the
//!   thread's last read was that request (an event loop that read a call's
//!   response headers, then a new request, calls for the new one: nginx);
//! - else the one resumed request, when there is no fresh one;
//! - else nothing: with several candidates it stays unlinked (a missing
//!   link, never a wrong one; counted as `calls_ambiguous`).
//!
//! Making the call puts its request to wait; reading the call's response (or
//! closing its connection) resumes it. This is exact for a thread per
//! request, for proxies (nginx), for event loops that call out in the
//! callback that read the request or the previous response (most Node.js
//! handlers), and for any loop while one request is in flight on it.
//!
//! Go processes follow the goroutine instead (`goroutines`); an asyncio
//! task that serves a known request speaks for its thread (`tasks`).
//!
//! Plain fields rather than `Option<struct>` copies throughout: LLVM spills
//! the undefined payload of a `None`, which the verifier rejects.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use tracer_common::{
    Counter, GoProcess, RequestContext, SocketState,
    event::{CONTEXT_FROM_HANDOFF, CONTEXT_FROM_THREAD},
};

use crate::goroutines::{go_process, live_request, request_read, running_goroutine};
use crate::inject::new_id;
use crate::maps::{
    CALLS, REQUEST_FRESH, REQUEST_RESUMED, REQUEST_WAITING, SERVER_REQUESTS, ServerRequest,
    THREAD_CONTEXT, ThreadRequests, config, count,
};
use crate::node;
use crate::pools;
use crate::tasks;

/// Whether an inbound request is being served on server connection `sock`,
/// whose state is `state` (a read there is then more of it).
#[inline(always)]
pub fn serving(sock: u64, state: &SocketState) -> bool {
    state.request_kept != 0 && unsafe { SERVER_REQUESTS.get(sock) }.is_some()
}

/// A read on server connection `sock` (state `state`) by `tid`, not
/// `serving` one: a new inbound request. Returns whether it was recorded.
#[inline(always)]
pub fn server_read(
    tid: u32,
    sock: u64,
    state: &mut SocketState,
    seq: u32,
    trace_id: &[u8; 16],
) -> bool {
    let request = ServerRequest {
        tid,
        seq,
        trace_id: *trace_id,
        state: REQUEST_FRESH,
        _pad: 0,
    };
    if SERVER_REQUESTS.insert(sock, request, 0).is_err() {
        return false;
    }
    state.request_kept = 1;
    tasks::request_read(sock, seq);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(go) = go_process(pid) {
        if go.followed()
            && let Some(config) = config()
            && let Some(goid) = running_goroutine(&config.offsets, &go)
        {
            request_read(pid, goid, sock, seq);
        }
        return true;
    }
    match THREAD_CONTEXT.get_ptr_mut(tid) {
        Some(thread) => {
            let thread = unsafe { &mut *thread };
            thread.fresh += 1;
            thread.fresh_sock = sock;
            thread.fresh_seq = seq;
            thread.last_read_fresh = 1;
        }
        None => {
            let thread = ThreadRequests {
                fresh_sock: sock,
                resumed_sock: 0,
                fresh_seq: seq,
                resumed_seq: 0,
                fresh: 1,
                resumed: 0,
                last_read_fresh: 1,
                _pad: 0,
            };
            let _ = THREAD_CONTEXT.insert(tid, thread, 0);
        }
    }
    true
}

/// `server_done` for a connection whose state is at hand: nothing to look
/// up when no request is kept.
#[inline(always)]
pub fn server_done_on(sock: u64, state: &mut SocketState) {
    if state.request_kept == 0 {
        return;
    }
    // Cleared before the removal: a request another CPU keeps meanwhile
    // sets it again after its insert, so it is never left hidden.
    state.request_kept = 0;
    server_done(sock);
}

/// The server connection `sock` answered (or closed): its request is over.
#[inline(always)]
pub fn server_done(sock: u64) {
    let (tid, state) = match unsafe { SERVER_REQUESTS.get(sock) } {
        Some(request) => (request.tid, request.state),
        None => return,
    };
    let _ = SERVER_REQUESTS.remove(sock);
    let Some(thread) = THREAD_CONTEXT.get_ptr_mut(tid) else {
        return;
    };
    let thread = unsafe { &mut *thread };
    match state {
        REQUEST_FRESH => thread.fresh = thread.fresh.saturating_sub(1),
        REQUEST_RESUMED => thread.resumed = thread.resumed.saturating_sub(1),
        _ => {}
    }
    if thread.fresh_sock == sock {
        thread.fresh_sock = 0;
        thread.last_read_fresh = 0;
    }
    if thread.resumed_sock == sock {
        thread.resumed_sock = 0;
    }
}

/// Thread `tid` writes a request on client connection `client` (state
/// `state`; none while it connects: `connecting`): the inbound request it
/// is made for, `sock` zero for none. A connection's later writes for the
/// same call repeat the answer, unless it is multiplexed (HTTP/2: several
/// calls from several threads at once): then each write is decided on its
/// own, and the request does not wait for the call (which of its calls a
/// response answers is not known).
#[inline(always)]
pub fn call_context(
    tid: u32,
    client: u64,
    connecting: bool,
    state: Option<&mut SocketState>,
) -> RequestContext {
    let (multiplexed, kept) = match &state {
        Some(state) => (state.multiplexed != 0, state.call_kept != 0),
        None => (false, true),
    };
    if !multiplexed
        && kept
        && let Some(call) = unsafe { CALLS.get(client) }
    {
        return *call;
    }
    let mut inserted = false;
    let call = decide_call(tid, client, connecting, multiplexed, &mut inserted);
    if inserted && let Some(state) = state {
        state.call_kept = 1;
    }
    call
}

/// `call_context`'s decision for a write with no call kept; `inserted`:
/// whether it was kept in `CALLS`.
#[inline(always)]
fn decide_call(
    tid: u32,
    client: u64,
    connecting: bool,
    multiplexed: bool,
    inserted: &mut bool,
) -> RequestContext {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(go) = go_process(pid) {
        // A Go connection is dialed for whichever request takes it first.
        if connecting {
            return RequestContext::default();
        }
        return goroutine_call(pid, &go, client, multiplexed, inserted);
    }
    if node::scripted(pid) {
        // The script speaks just before each request is written.
        if connecting {
            return RequestContext::default();
        }
        let Some(request) = node::call(client) else {
            count(Counter::ScriptCallsWithoutContext, 1);
            return RequestContext::default();
        };
        return linked(client, request, multiplexed, inserted);
    }
    // An asyncio task or a pool's work item says which request it serves;
    // else the thread's count.
    let call = match tasks::call_context().or_else(pools::call_context) {
        Some(call) => call,
        None => match thread_choice(tid, true) {
            Some(call) => call,
            None => return RequestContext::default(),
        },
    };
    // A call made by a pool thread for a request handed to it leaves the
    // request where it was: the thread that handed it off goes on serving it
    // (and may hand off more).
    if call.source == CONTEXT_FROM_HANDOFF {
        return linked(client, call, multiplexed, inserted);
    }
    let Some(request) = SERVER_REQUESTS.get_ptr_mut(call.sock) else {
        return RequestContext::default();
    };
    if multiplexed {
        count(Counter::CallsLinked, 1);
        return call;
    }
    if CALLS.insert(client, call, 0).is_err() {
        return RequestContext::default();
    }
    *inserted = true;
    let request = unsafe { &mut *request };
    // The request waits for its call now: off its reader's count.
    if let Some(reader) = THREAD_CONTEXT.get_ptr_mut(request.tid) {
        let reader = unsafe { &mut *reader };
        match request.state {
            REQUEST_FRESH => {
                reader.fresh = reader.fresh.saturating_sub(1);
                if reader.fresh_sock == call.sock {
                    reader.fresh_sock = 0;
                    reader.last_read_fresh = 0;
                }
            }
            REQUEST_RESUMED => {
                reader.resumed = reader.resumed.saturating_sub(1);
                if reader.resumed_sock == call.sock {
                    reader.resumed_sock = 0;
                }
            }
            _ => {}
        }
    }
    request.state = REQUEST_WAITING;
    count(Counter::CallsLinked, 1);
    call
}

/// The one request thread `tid` is free to work on (see the module's rule);
/// `counted`: a call's decision, counted when ambiguous.
#[inline(always)]
pub fn thread_choice(tid: u32, counted: bool) -> Option<RequestContext> {
    let thread = unsafe { THREAD_CONTEXT.get(tid) }?;
    let (sock, seq) = if thread.fresh == 1 && (thread.resumed == 0 || thread.last_read_fresh != 0) {
        (thread.fresh_sock, thread.fresh_seq)
    } else if thread.fresh == 0 && thread.resumed == 1 {
        (thread.resumed_sock, thread.resumed_seq)
    } else {
        if counted && thread.fresh + thread.resumed > 0 {
            count(Counter::CallsAmbiguous, 1);
        }
        return None;
    };
    if sock == 0 {
        // The one candidate is not the latest of its kind: not known which.
        if counted {
            count(Counter::CallsAmbiguous, 1);
        }
        return None;
    }
    Some(RequestContext {
        sock,
        seq,
        source: CONTEXT_FROM_THREAD,
    })
}

/// A Go process's call on `client`: for the request of the goroutine
/// writing it. The request stays as it is (the thread rule's states are not
/// used for Go).
#[inline(always)]
fn goroutine_call(
    pid: u32,
    go: &GoProcess,
    client: u64,
    multiplexed: bool,
    inserted: &mut bool,
) -> RequestContext {
    let request = match config() {
        Some(config) if go.followed() => {
            running_goroutine(&config.offsets, go).and_then(|goid| live_request(pid, goid))
        }
        _ => None,
    };
    let Some(request) = request else {
        count(Counter::GoCallsWithoutContext, 1);
        return RequestContext::default();
    };
    linked(client, request, multiplexed, inserted)
}

/// A call on `client` made for `request`, for its later writes to repeat
/// (not on a `multiplexed` connection; `inserted` says whether it was kept).
#[inline(always)]
fn linked(
    client: u64,
    request: RequestContext,
    multiplexed: bool,
    inserted: &mut bool,
) -> RequestContext {
    if !multiplexed {
        if CALLS.insert(client, request, 0).is_err() {
            return RequestContext::default();
        }
        *inserted = true;
    }
    count(Counter::CallsLinked, 1);
    request
}

/// A read (the response) on client connection `client` by `tid`, or its
/// close (`tid` 0): the request the call was made for can go on. With the
/// connection's `state` at hand, nothing is looked up when no call is kept.
#[inline(always)]
pub fn call_answered(tid: u32, client: u64, state: Option<&mut SocketState>) {
    if tid != 0
        && let Some(thread) = THREAD_CONTEXT.get_ptr_mut(tid)
    {
        unsafe { (*thread).last_read_fresh = 0 };
    }
    if let Some(state) = state {
        if state.call_kept == 0 {
            return;
        }
        // Cleared before the removal, as in `server_done_on`.
        state.call_kept = 0;
    }
    let sock = match unsafe { CALLS.get(client) } {
        Some(call) => call.sock,
        None => return,
    };
    let _ = CALLS.remove(client);
    let Some(request) = SERVER_REQUESTS.get_ptr_mut(sock) else {
        return;
    };
    let request = unsafe { &mut *request };
    if request.state != REQUEST_WAITING {
        return;
    }
    request.state = REQUEST_RESUMED;
    if let Some(thread) = THREAD_CONTEXT.get_ptr_mut(request.tid) {
        let thread = unsafe { &mut *thread };
        thread.resumed += 1;
        thread.resumed_sock = sock;
        thread.resumed_seq = request.seq;
    }
}

/// The request read on server connection `sock` at `seq`, while it is open
/// (`sock` zero: none).
#[inline(always)]
pub fn open_request(sock: u64, seq: u32, source: u32) -> Option<RequestContext> {
    if sock == 0 {
        return None;
    }
    let request = unsafe { SERVER_REQUESTS.get(sock) }?;
    (request.seq == seq).then_some(RequestContext { sock, seq, source })
}

/// The trace id a header on a call made for the inbound request on server
/// connection `sock` carries, into `out`: the request's, or, when it was not
/// read (its process was not yet known to call off the node), a new one
/// kept for the request's later calls. False when there is no request.
#[inline(always)]
pub fn trace_id_for_call(sock: u64, out: &mut [u8; 16]) -> bool {
    if sock == 0 {
        return false;
    }
    let Some(request) = SERVER_REQUESTS.get_ptr_mut(sock) else {
        return false;
    };
    let request = unsafe { &mut *request };
    if request.trace_id == [0; 16] {
        new_id(&mut request.trace_id);
    }
    *out = request.trace_id;
    true
}
