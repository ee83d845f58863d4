//! Python thread pools (`concurrent.futures.ThreadPoolExecutor`): a request
//! handed to another thread. The pool's work queue is a `queue.SimpleQueue`
//! (C, `_queue` module): the thread that puts a work item works for one
//! request (its asyncio task's, asyncio's `run_in_executor`; the one it took
//! with its own work item; or the one it is free to work on by the thread
//! rule), and the worker that gets the item works for that request until it
//! gets its next item.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{Counter, RUNTIME_PYTHON, RequestContext, event::CONTEXT_FROM_HANDOFF};

use crate::{
    context::{open_request, thread_choice},
    maps::{HANDED_OFF, QUEUED_ITEMS, QueuedItemKey, count, runtime_followed},
};

/// The request the current thread took from a work item, while it is open.
#[inline(always)]
pub fn call_context() -> Option<RequestContext> {
    if !runtime_followed(RUNTIME_PYTHON) {
        return None;
    }
    let handed = unsafe { HANDED_OFF.get(bpf_get_current_pid_tgid()) }?;
    open_request(handed.sock, handed.seq, CONTEXT_FROM_HANDOFF)
}

/// `SimpleQueue.put(self, item)` entry (Argument Clinic fast call: the
/// arguments array is rsi): the item carries the putting thread's request.
#[uprobe]
pub fn py_queue_put(ctx: ProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    let arguments = unsafe { (*ctx.regs).rsi };
    let Ok(item) = (unsafe { bpf_probe_read_user(arguments as *const u64) }) else {
        return 0;
    };
    let key = QueuedItemKey {
        pid: (thread >> 32) as u32,
        _pad: 0,
        item,
    };
    let context = crate::tasks::call_context()
        .or_else(call_context)
        .or_else(|| thread_choice(thread as u32, false));
    match context {
        Some(context) => {
            let _ = QUEUED_ITEMS.insert(key, context, 0);
        }
        // The address may be an earlier item's.
        None => {
            let _ = QUEUED_ITEMS.remove(key);
        }
    }
    0
}

/// The `RET` of `SimpleQueue.get()`'s implementation (a probe on the
/// instruction, not a return probe: a worker that was already waiting in
/// `get()` when the agent attached passes it too): the item (rax) brings
/// its request to this thread, or none.
#[uprobe]
pub fn py_queue_got(ctx: ProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    let item = unsafe { (*ctx.regs).rax };
    let key = QueuedItemKey {
        pid: (thread >> 32) as u32,
        _pad: 0,
        item,
    };
    match unsafe { QUEUED_ITEMS.get(key) }.copied() {
        Some(context) => {
            let _ = QUEUED_ITEMS.remove(key);
            let _ = HANDED_OFF.insert(thread, context, 0);
            count(Counter::HandOffsFollowed, 1);
        }
        None => {
            let _ = HANDED_OFF.remove(thread);
        }
    }
    0
}
