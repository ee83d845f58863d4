//! Python asyncio: which request a task serves. Uprobes on the `_asyncio`
//! module (CPython's C accelerator) keep the task running on each thread
//! (`task_step_impl`: `task_step` is inlined into some of its callers) and
//! pass a task's request to the tasks it creates (`Task.__init__` runs in
//! the creating task's step: `create_task`, `gather`).
//!
//! A server connection belongs to one task, and each request read there goes
//! to it. The owner is, first found first:
//! 1. the task created outside any task just before the connection is
//!    registered with epoll (`connection_made` makes the connection's task
//!    in asyncio streams and aiohttp, and the transport's `_add_reader`
//!    registers the socket next, with no task step or accept in between);
//! 2. the task that reads a request in its own step (`sock_recv` servers);
//! 3. the root of the task that answered a request there (the task at the
//!    top of its creators: aiohttp's per-request tasks descend from the
//!    connection's task).
//!
//! Calls written outside any task, or by a task with no open request,
//! follow the thread rule (`context`).
//!
//! A created task takes over its creator's request only when the
//! program's own code creates it (`created_by_program`): a library's task
//! made lazily while one request is served and kept (a client's writer
//! task, fed by a queue) would otherwise write other requests' calls as
//! that one's.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf, generated::bpf_loop,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    Counter, PyFrames, RUNTIME_PYTHON, RequestContext, Role,
    event::CONTEXT_FROM_TASK,
    python::{MAX_PY_FRAMES, MAX_PY_THREADS, NO_CFRAME, PY_FILENAME_BYTES},
};

use crate::{
    context::open_request,
    inject::at,
    maps::{
        PY_CONNECTIONS, PY_CURRENT, PY_FILE_ORIGINS, PY_FILENAME, PY_FRAMES, PY_NEW_ROOT, PY_TASKS,
        PyFileKey, PyTask, TaskKey, count, role_of, runtime_followed,
    },
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
    if !runtime_followed(RUNTIME_PYTHON) {
        return;
    }
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
    if !runtime_followed(RUNTIME_PYTHON) {
        return;
    }
    if unsafe { PY_CONNECTIONS.get(sock) }.is_some() {
        return;
    }
    let Some((pid, task)) = current_task() else {
        return;
    };
    let root = unsafe { PY_TASKS.get(key(pid, task)) }.map_or(task, |known| known.root);
    let _ = PY_CONNECTIONS.insert(sock, root, 0);
}

/// A connection opened or closed: the socket address may be reused. A
/// task created before an accept is not the new connection's.
#[inline(always)]
pub fn forget_connection(sock: u64) {
    if !runtime_followed(RUNTIME_PYTHON) {
        return;
    }
    let _ = PY_CONNECTIONS.remove(sock);
    let _ = PY_NEW_ROOT.remove(bpf_get_current_pid_tgid());
}

/// Whether this thread just created a task outside any task (cheap first
/// test for every `epoll_ctl`, whose program is attached only with the
/// CPython probes: no `runtime_followed` check needed).
#[inline(always)]
pub fn new_root_pending() -> bool {
    unsafe { PY_NEW_ROOT.get(bpf_get_current_pid_tgid()) }.is_some()
}

/// `epoll_ctl(ADD)` of `sock` by this thread: a server connection without an
/// owner goes to the task created outside any task just before (rule 1).
#[inline(always)]
pub fn registered(sock: u64) {
    let thread = bpf_get_current_pid_tgid();
    let Some(&task) = (unsafe { PY_NEW_ROOT.get(thread) }) else {
        return;
    };
    let _ = PY_NEW_ROOT.remove(thread);
    let server = role_of(sock) == Role::Server;
    if server && unsafe { PY_CONNECTIONS.get(sock) }.is_none() {
        let _ = PY_CONNECTIONS.insert(sock, task, 0);
    }
}

/// The open request the task running on this thread serves.
#[inline(always)]
pub fn call_context() -> Option<RequestContext> {
    if !runtime_followed(RUNTIME_PYTHON) {
        return None;
    }
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
    let thread = bpf_get_current_pid_tgid();
    let _ = PY_CURRENT.insert(thread, task, 0);
    let _ = PY_NEW_ROOT.remove(thread);
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
    match current_task() {
        Some((_, parent)) => {
            entry.root = parent;
            if let Some(known) = unsafe { PY_TASKS.get(key(pid, parent)) } {
                entry.root = known.root;
                if let Some(context) =
                    open_request(known.context.sock, known.context.seq, CONTEXT_FROM_TASK)
                {
                    if created_by_program(pid) == Some(true) {
                        entry.context = context;
                        count(Counter::TasksFollowed, 1);
                    } else {
                        count(Counter::TasksNotFollowed, 1);
                    }
                }
            }
        }
        // A connection's task, maybe (rule 1).
        None => {
            let _ = PY_NEW_ROOT.insert(bpf_get_current_pid_tgid(), child, 0);
        }
    }
    // Also for a task created outside any: the address may be a dead task's.
    let _ = PY_TASKS.insert(key(pid, child), entry, 0);
    0
}

/// Where the code creating a task comes from.
#[derive(PartialEq, Eq)]
#[repr(u8)]
enum Origin {
    /// asyncio's own (`create_task`, `ensure_future`, `gather`): look at its caller.
    Asyncio,
    /// The program's own code, or aiohttp's request dispatch (its
    /// `web_protocol.py` makes the task that serves each request).
    Program,
    /// The standard library or an installed package, or unknown.
    Library,
}

const ASYNCIO: u8 = Origin::Asyncio as u8;
const PROGRAM: u8 = Origin::Program as u8;

/// Whether the program's own code is creating a task on this thread: the
/// innermost Python frame outside asyncio is not a library's. `None` when
/// the frames cannot be read (not a CPython the agent could inspect).
#[inline(always)]
fn created_by_program(pid: u32) -> Option<bool> {
    let frames = unsafe { PY_FRAMES.get(pid) }?;
    let name = unsafe { &mut *PY_FILENAME.get_ptr_mut(0)? };
    let tstate = thread_state(frames)?;
    let holder = match frames.cframe {
        NO_CFRAME => tstate,
        cframe => read(tstate + u64::from(cframe))?,
    };
    let mut frame: u64 = read(holder + u64::from(frames.current_frame))?;
    for _ in 0..MAX_PY_FRAMES {
        if frame == 0 {
            return None;
        }
        let code: u64 = read(frame + u64::from(frames.f_code))?;
        let filename: u64 = read(code + u64::from(frames.co_filename))?;
        let file = PyFileKey {
            pid,
            _pad: 0,
            interpreter: frames.interpreter(),
            filename,
        };
        let known = match unsafe { PY_FILE_ORIGINS.get(file) } {
            Some(&known) => known,
            None => {
                let found = origin(frames, filename, name)? as u8;
                let _ = PY_FILE_ORIGINS.insert(file, found, 0);
                found
            }
        };
        match known {
            ASYNCIO => frame = read(frame + u64::from(frames.previous))?,
            PROGRAM => return Some(true),
            _ => return Some(false),
        }
    }
    None
}

/// The current thread's `PyThreadState*`: where 3.11 keeps it, else found
/// by kernel thread id in the main interpreter's threads.
#[inline(always)]
fn thread_state(frames: &PyFrames) -> Option<u64> {
    if frames.tstate_current != 0 {
        return read(frames.tstate_current);
    }
    let interpreter: u64 = read(frames.main_interpreter)?;
    let mut tstate: u64 = read(interpreter + u64::from(frames.threads_head))?;
    let thread = u64::from(bpf_get_current_pid_tgid() as u32);
    for _ in 0..MAX_PY_THREADS {
        if tstate == 0 {
            return None;
        }
        let id: u64 = read(tstate + u64::from(frames.native_thread_id))?;
        if id == thread {
            return Some(tstate);
        }
        tstate = read(tstate + u64::from(frames.next_thread))?;
    }
    None
}

/// `PyASCIIObject.length` and `.state` (stable since 3.3).
const STR_LENGTH: u64 = 16;
const STR_STATE: u64 = 32;
/// `state`'s `compact` and `ascii` bits: the bytes follow the header.
const STR_COMPACT_ASCII: u32 = 0b11 << 5;
const AIOHTTP_DISPATCH: &[u8] = b"/aiohttp/web_protocol.py";

/// Where the code object whose `co_filename` is string `filename` comes
/// from, by its path: asyncio's package, an installed package
/// (`…-packages/`), the standard library (`…/python3.X/`), or the program.
#[inline(always)]
fn origin(frames: &PyFrames, filename: u64, name: &mut [u8; PY_FILENAME_BYTES]) -> Option<Origin> {
    let state: u32 = read(filename + STR_STATE)?;
    if state & STR_COMPACT_ASCII != STR_COMPACT_ASCII {
        return Some(Origin::Library);
    }
    let length: u64 = read(filename + STR_LENGTH)?;
    if length == 0 {
        // Not a source file (an interpreter shim frame): unknown.
        return Some(Origin::Library);
    }
    let len = (length as usize).min(PY_FILENAME_BYTES);
    let start = (filename + u64::from(frames.ascii_data)) as *const u8;
    unsafe { bpf_probe_read_user_buf(start, name.get_mut(..len)?) }.ok()?;
    let mut scan = PathScan {
        len: len as u64,
        found: 0,
    };
    unsafe {
        bpf_loop(
            len as u32,
            path_part_at as *mut c_void,
            (&mut scan as *mut PathScan).cast(),
            0,
        )
    };
    if scan.found & IN_ASYNCIO != 0 {
        return Some(Origin::Asyncio);
    }
    let whole = length as usize == len;
    if whole
        && len >= AIOHTTP_DISPATCH.len()
        && has_at(name, len, len - AIOHTTP_DISPATCH.len(), AIOHTTP_DISPATCH)
    {
        return Some(Origin::Program);
    }
    Some(if scan.found & IN_LIBRARY != 0 {
        Origin::Library
    } else {
        Origin::Program
    })
}

/// State of the scan of a path in `PY_FILENAME` by `bpf_loop` (one call per
/// position: a loop in the program is verified once per iteration, eight
/// frames of 256 positions are past the verifier's limit).
#[repr(C)]
struct PathScan {
    /// Bytes of the path that are valid.
    len: u64,
    /// `IN_ASYNCIO` and `IN_LIBRARY`, as found.
    found: u64,
}

const IN_ASYNCIO: u64 = 1;
const IN_LIBRARY: u64 = 2;

/// `bpf_loop` callback: does `/asyncio/`, `/python3.` or `-packages/` start
/// at position `i` of the path?
extern "C" fn path_part_at(i: u64, scan: *mut c_void) -> i64 {
    let scan = unsafe { &mut *(scan as *mut PathScan) };
    let (i, len) = (i as usize, scan.len as usize);
    let Some(name) = PY_FILENAME.get_ptr(0) else {
        return 1;
    };
    let name = unsafe { &*name };
    match at(name, i) {
        b'/' if has_at(name, len, i + 1, b"asyncio/") => {
            scan.found |= IN_ASYNCIO;
            return 1;
        }
        b'/' if has_at(name, len, i + 1, b"python3.") => scan.found |= IN_LIBRARY,
        b'-' if has_at(name, len, i + 1, b"packages/") => scan.found |= IN_LIBRARY,
        _ => {}
    }
    0
}

/// Whether `pattern` is at `at` in the first `len` bytes of `name`.
#[inline(always)]
fn has_at(name: &[u8; PY_FILENAME_BYTES], len: usize, start: usize, pattern: &[u8]) -> bool {
    for (k, &expected) in pattern.iter().enumerate() {
        let i = start + k;
        if i >= len || at(name, i) != expected {
            return false;
        }
    }
    true
}

#[inline(always)]
fn read<T>(address: u64) -> Option<T> {
    unsafe { bpf_probe_read_user(address as *const T) }.ok()
}
