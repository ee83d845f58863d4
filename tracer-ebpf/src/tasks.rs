//! Python asyncio: which request a task serves. Uprobes on the `_asyncio`
//! module (CPython's C accelerator) keep the task running on each thread
//! (`task_step_impl`: `task_step` is inlined into some of its callers) and pass a task's request to the tasks it creates
//! (`Task.__init__` runs in the creating task's step: `create_task`,
//! `gather`). A server connection belongs to a task:
//! - the task that reads a request in its own step (a server that reads
//!   with `sock_recv`), or else
//! - the root of the task that answered its request (the task created
//!   outside any other task, in a protocol callback: the connection's own
//!   task in asyncio streams and aiohttp, whose per-request tasks descend
//!   from it),
//! and each request read there goes to that task. A connection's first
//! request is read before its task is known: its calls follow the thread
//! rule (`context`), as do calls written outside any task.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{Counter, RequestContext, event::CONTEXT_FROM_TASK};

use crate::{
    context::open_request,
    maps::{PY_CONNECTIONS, PY_CURRENT, PY_TASKS, PyTask, TaskKey, count},
};

/// The task running on the current thread, as (pid, task).
#[inline(always)]
fn current_task() -> Option<(u32, u64)> {
    let thread = bpf_get_current_pid_tgid();
    let task = *unsafe { PY_CURRENT.get(thread) }?;
    (task != 0).then_some(((thread >> 32) as u32, task))
}

#[inline(always)]
fn key(pid: u32, task: u64) -> TaskKey {
    TaskKey { pid, _pad: 0, task }
}

/// Task `task` of `pid` now serves `context`.
#[inline(always)]
fn serve(pid: u32, task: u64, context: RequestContext) {
    match PY_TASKS.get_ptr_mut(key(pid, task)) {
        Some(known) => unsafe { (*known).context = context },
        None => {
            let entry = PyTask {
                context,
                root: task,
            };
            let _ = PY_TASKS.insert(key(pid, task), entry, 0);
        }
    }
}

/// A new request read on server connection `sock` at `seq`.
#[inline(always)]
pub fn request_read(sock: u64, seq: u32) {
    let context = RequestContext {
        sock,
        seq,
        source: CONTEXT_FROM_TASK,
    };
    if let Some((pid, task)) = current_task() {
        let _ = PY_CONNECTIONS.insert(sock, task, 0);
        serve(pid, task, context);
    } else if let Some(&owner) = unsafe { PY_CONNECTIONS.get(sock) } {
        let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
        serve(pid, owner, context);
    }
}

/// The response on server connection `sock` is being written: a task
/// writing it makes its root the connection's owner, if it has none.
#[inline(always)]
pub fn response_written(sock: u64) {
    if unsafe { PY_CONNECTIONS.get(sock) }.is_some() {
        return;
    }
    let Some((pid, task)) = current_task() else {
        return;
    };
    let root = unsafe { PY_TASKS.get(key(pid, task)) }.map_or(task, |known| known.root);
    let _ = PY_CONNECTIONS.insert(sock, root, 0);
}

/// A connection opened or closed: the socket address may be reused.
#[inline(always)]
pub fn forget_connection(sock: u64) {
    let _ = PY_CONNECTIONS.remove(sock);
}

/// The open request the task running on this thread serves.
#[inline(always)]
pub fn call_context() -> Option<RequestContext> {
    let (pid, task) = current_task()?;
    let known = unsafe { PY_TASKS.get(key(pid, task)) }?;
    open_request(known.context.sock, known.context.seq, CONTEXT_FROM_TASK)
}

/// `task_step_impl(task, exc)` (CPython 3.11) entry: `task` runs on this thread.
#[uprobe]
pub fn py_task_step(ctx: ProbeContext) -> u32 {
    step_started(unsafe { (*ctx.regs).rdi })
}

/// `task_step_impl(state, task, exc)` (CPython 3.12+) entry.
#[uprobe]
pub fn py_task_step_with_state(ctx: ProbeContext) -> u32 {
    step_started(unsafe { (*ctx.regs).rsi })
}

#[inline(always)]
fn step_started(task: u64) -> u32 {
    let _ = PY_CURRENT.insert(bpf_get_current_pid_tgid(), task, 0);
    0
}

/// `task_step_impl`'s return (a C function: a return probe is safe): no task runs.
#[uretprobe]
pub fn py_task_step_return(_ctx: RetProbeContext) -> u32 {
    let _ = PY_CURRENT.remove(bpf_get_current_pid_tgid());
    0
}

/// `Task.__init__(self, …)` entry, in the step of the task creating it (if
/// any): the new task takes over that task's request and root.
#[uprobe]
pub fn py_task_init(ctx: ProbeContext) -> u32 {
    let child = unsafe { (*ctx.regs).rdi };
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let mut entry = PyTask {
        context: RequestContext::default(),
        root: child,
    };
    if let Some((_, parent)) = current_task() {
        entry.root = parent;
        if let Some(known) = unsafe { PY_TASKS.get(key(pid, parent)) } {
            entry.root = known.root;
            if let Some(context) =
                open_request(known.context.sock, known.context.seq, CONTEXT_FROM_TASK)
            {
                entry.context = context;
                count(Counter::TasksFollowed, 1);
            }
        }
    }
    // Also for a task created outside any: the address may be a dead task's.
    let _ = PY_TASKS.insert(key(pid, child), entry, 0);
    0
}
