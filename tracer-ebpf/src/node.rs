//! Node.js processes that run the agent's script (`--node-context-script`):
//! the script knows, from Node's own async context, which inbound request
//! each outbound one is made for, and says so in the path of a failing
//! `fs.accessSync`, read here at libuv's `uv_fs_access(loop, req, path, …)`
//! (the messages: tracer-common's `node`).
//!
//! The write that follows takes the answer (`call`); in such a process a
//! call without one stays unlinked.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{
    Counter, RUNTIME_NODE, RequestContext,
    event::CONTEXT_FROM_SCRIPT,
    node::{CALL_FOR, MESSAGE_LEN, REQUEST_STARTED, parse_message},
};

use crate::{
    context::open_request,
    maps::{
        NODE_CALLS, NODE_PROCESSES, NODE_REQUESTS, NodeRequestKey, SERVER_REQUESTS, config, count,
        runtime_followed,
    },
    sockets::tcp_sock_of_fd,
};

/// Whether `pid` runs the script.
#[inline(always)]
pub fn scripted(pid: u32) -> bool {
    runtime_followed(RUNTIME_NODE) && unsafe { NODE_PROCESSES.get(pid) }.is_some()
}

/// A scripted process writes a request on `client`: the request the
/// script said it is made for, while that is open.
#[inline(always)]
pub fn call(client: u64) -> Option<RequestContext> {
    let told = unsafe { NODE_CALLS.get(client) }.copied()?;
    let _ = NODE_CALLS.remove(client);
    open_request(told.sock, told.seq, CONTEXT_FROM_SCRIPT)
}

#[uprobe]
pub fn node_context_message(ctx: ProbeContext) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !scripted(pid) {
        return 0;
    }
    let path = unsafe { (*ctx.regs).rdx };
    let mut text = [0u8; MESSAGE_LEN];
    let Ok(message) = (unsafe { bpf_probe_read_user_str_bytes(path as *const u8, &mut text) })
    else {
        return 0;
    };
    let Some((kind, fd, id)) = parse_message(message) else {
        return 0;
    };
    let Some(config) = config() else { return 0 };
    let Some(sock) = tcp_sock_of_fd(&config.offsets, fd as i64) else {
        return 0;
    };
    let key = NodeRequestKey { pid, _pad: 0, id };
    match kind {
        REQUEST_STARTED => {
            if let Some(request) = unsafe { SERVER_REQUESTS.get(sock) } {
                let context = RequestContext {
                    sock,
                    seq: request.seq,
                    source: CONTEXT_FROM_SCRIPT,
                };
                let _ = NODE_REQUESTS.insert(key, context, 0);
            }
        }
        CALL_FOR => {
            let context = match unsafe { NODE_REQUESTS.get(key) } {
                Some(context) if id != 0 => *context,
                _ => {
                    count(Counter::ScriptCallsWithoutContext, 1);
                    RequestContext::default()
                }
            };
            let _ = NODE_CALLS.insert(sock, context, 0);
        }
        _ => {}
    }
    0
}
