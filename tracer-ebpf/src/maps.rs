//! Every map the programs use, each with a fixed size.

use core::ffi::c_void;

use crate::inject::HEAD_SCRATCH_LEN;
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_map_type},
    helpers::generated::{bpf_get_current_task_btf, bpf_task_storage_get},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, SockHash},
};
use tracer_common::{
    Config, Counter, GoProcess, MAX_BLOCKED_AT_ATTACH, MAX_CALL_DECISIONS, MAX_CALLS, MAX_CAPTURE,
    MAX_GO_HTTP_REQUESTS, MAX_GO_PROCESSES, MAX_GO_TLS_READS, MAX_GOROUTINES, MAX_INJECT_SOCKETS,
    MAX_LOCAL_ADDRESSES, MAX_NODE_PROCESSES, MAX_PYTHON_FILES, MAX_PYTHON_PROCESSES,
    MAX_REMOTE_CALLERS, MAX_SERVER_REQUESTS, MAX_SOCKETS, MAX_TASKS, MAX_THREAD_CONTEXTS,
    MAX_THREADS_FOLLOWED, MAX_TLS_SESSIONS, MAX_TRACED_PIDS, PyFrames, RequestContext, Role,
    SocketEvent, SocketState, SpawnRanges, WireKey, python::PY_FILENAME_BYTES,
};

/// Events to the agent. The agent resizes it at load time (`--ring-buffer-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// One `Config`, written by the agent before any program is attached.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Processes to trace when `Config::filter_pids` is set (`--pid`).
#[map]
pub static TRACED_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TRACED_PIDS, 0);

/// The write syscall each thread is in, from its enter tracepoint to the
/// send (`InFlight::sock` zero: none). Task-local storage: found through
/// the thread itself, with no hashing, no lock and no element to allocate
/// and free per syscall, and freed with the thread.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "IN_FLIGHT")]
pub static IN_FLIGHT: TaskStorage<InFlight> = TaskStorage::new();

/// A `BPF_MAP_TYPE_TASK_STORAGE` map, which aya-ebpf does not wrap: its
/// definition in the BTF layout the loader reads (`.maps` section: each
/// field a pointer to the type whose size says the value).
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are placeholders the loader reads from BTF; they are
// never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        TaskStorage {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The current thread's value (null when it has none); with `create`,
    /// a zeroed one is made when it has none (null when it could not be:
    /// out of memory, or the storage busy on this CPU).
    #[inline(always)]
    fn current(&self, create: bool) -> *mut T {
        let flags = if create {
            BPF_LOCAL_STORAGE_GET_F_CREATE as u64
        } else {
            0
        };
        unsafe {
            bpf_task_storage_get(
                self as *const Self as *mut c_void,
                bpf_get_current_task_btf(),
                core::ptr::null_mut(),
                flags,
            )
        }
        .cast()
    }
}

/// The current thread's `IN_FLIGHT` slot; `create` makes one for a thread
/// that has none.
#[inline(always)]
pub fn in_flight_slot(create: bool) -> Option<&'static mut InFlight> {
    unsafe { IN_FLIGHT.current(create).as_mut() }
}

/// The current thread's `TLS_CALLS` slot; `create` makes one for a thread
/// that has none.
#[inline(always)]
pub fn tls_call_slot(create: bool) -> Option<&'static mut TlsCall> {
    unsafe { TLS_CALLS.current(create).as_mut() }
}

/// Threads the agent found blocked in a socket syscall when it attached (by
/// pid_tgid): their syscall's enter was never seen, so its exit reads the
/// arguments from the thread's registers instead. Each entry is used once.
#[map]
pub static BLOCKED_AT_ATTACH: HashMap<u64, u8> =
    HashMap::with_max_entries(MAX_BLOCKED_AT_ATTACH, 0);

/// Each TCP socket's role, addresses and whether it is skipped, by
/// `struct sock` address: one lookup per syscall instead of a map per fact
/// and the addresses read again. Written at accept/connect (or at the first
/// syscall seen on an older connection), removed at close; the agent marks
/// connections it does not parse (TLS ciphertext, a database server's
/// side) `ignored`. LRU: sockets of connections whose close was not seen
/// age out.
#[map]
pub static SOCKETS: LruHashMap<u64, SocketState> = LruHashMap::with_max_entries(MAX_SOCKETS, 0);

/// Per thread: how many inbound requests it is free to work on, and the
/// latest of them (see `context`).
#[map]
pub static THREAD_CONTEXT: LruHashMap<u32, ThreadRequests> =
    LruHashMap::with_max_entries(MAX_THREAD_CONTEXTS, 0);

/// Inbound requests read and not yet answered, by server `struct sock`.
#[map]
pub static SERVER_REQUESTS: LruHashMap<u64, ServerRequest> =
    LruHashMap::with_max_entries(MAX_SERVER_REQUESTS, 0);

/// Outbound requests waiting for their response, by client `struct sock`:
/// the inbound request they were made for (also set at `connect()`, as an
/// event loop may write a new connection's first request turns later).
#[map]
pub static CALLS: LruHashMap<u64, RequestContext> = LruHashMap::with_max_entries(MAX_CALLS, 0);

/// Client sockets the `sk_msg` program sees (by socket cookie); `sock_ops`
/// adds them when they connect. Only used with `--inject-traceparent`.
#[map]
pub static INJECT_SOCKETS: SockHash<u64> = SockHash::with_max_entries(MAX_INJECT_SOCKETS, 0);

/// This node's addresses (IPv6, IPv4 mapped), kept by the agent: with
/// `InjectMode::Remote`, client sockets connected to them get no header.
#[map]
pub static LOCAL_ADDRESSES: HashMap<[u8; 16], u8> =
    HashMap::with_max_entries(MAX_LOCAL_ADDRESSES, 0);

/// Processes (by pid) that connected to a peer off this node: with
/// `InjectMode::Remote` only theirs are calls that get a header.
#[map]
pub static REMOTE_CALLERS: LruHashMap<u32, u8> =
    LruHashMap::with_max_entries(MAX_REMOTE_CALLERS, 0);

/// Go processes (by pid), as the agent found them: their calls get their
/// context from the goroutine, not the thread (`goroutines`).
#[map]
pub static GO_PROCESSES: LruHashMap<u32, GoProcess> =
    LruHashMap::with_max_entries(MAX_GO_PROCESSES, 0);

/// The code whose goroutines inherit a request, by pid (`goroutines`).
#[map]
pub static GO_SPAWN_RANGES: LruHashMap<u32, SpawnRanges> =
    LruHashMap::with_max_entries(MAX_GO_PROCESSES, 0);

/// The request each goroutine works for (`goroutines`).
#[map]
pub static GOROUTINES: LruHashMap<GoroutineKey, Goroutine> =
    LruHashMap::with_max_entries(MAX_GOROUTINES, 0);

/// The goroutine that owns each server connection of a Go process (the
/// first that read there), by `struct sock`: its requests are that goroutine's.
#[map]
pub static GO_CONNECTIONS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_SOCKETS, 0);

/// A goroutine being started, by the thread starting it (pid_tgid): its
/// parent's request, from `runtime.newproc1`'s entry to its return.
#[map]
pub static GO_SPAWNS: LruHashMap<u64, RequestContext> =
    LruHashMap::with_max_entries(MAX_THREADS_FOLLOWED, 0);

/// `net/http` client requests (by `*Request`) on their way from the
/// goroutine that made them to the transport goroutine that writes them.
#[map]
pub static GO_HTTP_REQUESTS: LruHashMap<GoHttpRequestKey, RequestContext> =
    LruHashMap::with_max_entries(MAX_GO_HTTP_REQUESTS, 0);

/// Node.js processes running the agent's script (`node`), by pid.
#[map]
pub static NODE_PROCESSES: LruHashMap<u32, u8> =
    LruHashMap::with_max_entries(MAX_NODE_PROCESSES, 0);

/// Inbound requests of scripted Node.js processes, by the script's id.
#[map]
pub static NODE_REQUESTS: LruHashMap<NodeRequestKey, RequestContext> =
    LruHashMap::with_max_entries(MAX_SERVER_REQUESTS, 0);

/// What the script said the next request written on a client socket is
/// made for, by `struct sock`, until that write takes it.
#[map]
pub static NODE_CALLS: LruHashMap<u64, RequestContext> = LruHashMap::with_max_entries(MAX_CALLS, 0);

/// Work items in Python `SimpleQueue`s (thread pools), by object: the
/// request of the thread that put them (`pools`).
#[map]
pub static QUEUED_ITEMS: LruHashMap<QueuedItemKey, RequestContext> =
    LruHashMap::with_max_entries(MAX_CALLS, 0);

/// The request each pool thread took with its current work item, by
/// pid_tgid (`pools`).
#[map]
pub static HANDED_OFF: LruHashMap<u64, RequestContext> =
    LruHashMap::with_max_entries(MAX_THREADS_FOLLOWED, 0);

/// The asyncio task running on each thread (pid_tgid), while it runs (`tasks`).
#[map]
pub static PY_CURRENT: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_THREADS_FOLLOWED, 0);

/// The task a thread created outside any task, until its next task step or
/// accept, or the socket registration it precedes (`tasks`).
#[map]
pub static PY_NEW_ROOT: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(MAX_THREADS_FOLLOWED, 0);

/// asyncio tasks: the request each serves, and its root task (`tasks`).
#[map]
pub static PY_TASKS: LruHashMap<TaskKey, PyTask> = LruHashMap::with_max_entries(MAX_TASKS, 0);

/// How to read the Python frames of asyncio processes, by pid (`tasks`:
/// who creates a task).
#[map]
pub static PY_FRAMES: LruHashMap<u32, PyFrames> =
    LruHashMap::with_max_entries(MAX_PYTHON_PROCESSES, 0);

/// Where each Python source file's code comes from (`tasks::Origin`), by
/// process and file name string: a module's code objects share one, so a task
/// created from known code costs a lookup, not a scan of its path.
#[map]
pub static PY_FILE_ORIGINS: LruHashMap<PyFileKey, u8> =
    LruHashMap::with_max_entries(MAX_PYTHON_FILES, 0);

/// Per-CPU room for the file name of a Python frame (`tasks`).
#[map]
pub static PY_FILENAME: PerCpuArray<[u8; PY_FILENAME_BYTES]> = PerCpuArray::with_max_entries(1, 0);

/// The task that owns each server connection of an asyncio program, by
/// `struct sock` (`tasks`).
#[map]
pub static PY_CONNECTIONS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_SOCKETS, 0);

/// Per-CPU room to look at the start of an outbound request (`inject`).
#[map]
pub static HEAD_SCRATCH: PerCpuArray<[u8; HEAD_SCRATCH_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Under overload, each call's keep-or-drop decision for its callee's side
/// on this node (`overload`), by the request as both ends see it.
#[map]
pub static CALL_DECISIONS: LruHashMap<WireKey, u8> =
    LruHashMap::with_max_entries(MAX_CALL_DECISIONS, 0);

/// The kernel's `socket_file_ops` (every socket file's `f_op`), learned
/// from the first TCP socket the descriptor walk finds (`sockets`): from
/// then on, a file is a socket exactly when its `f_op` is this, as the
/// kernel's own `sock_from_file` tests. Zero until then.
#[map]
pub static SOCKET_FILE_OPS: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU room to build a new socket's state (`sockets::remember_socket`).
#[map]
pub static NEW_SOCKET: PerCpuArray<SocketState> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room to build one event (too large for the 512-byte stack).
#[map]
pub static SCRATCH: PerCpuArray<EventBuffer> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU state of the iovec copy in progress (`capture::capture_iovecs`):
/// in a map, not on the stack, so that the verifier does not follow each
/// `bpf_loop` iteration's exact count (it would never converge).
#[map]
pub static IOVEC_COPY: PerCpuArray<IovecCopy> = PerCpuArray::with_max_entries(1, 0);

/// An iovec array being copied into the scratch buffer's payload.
#[repr(C)]
pub struct IovecCopy {
    /// The user address of the array.
    pub iov: u64,
    /// Bytes to copy at most, and copied so far.
    pub limit: u64,
    pub copied: u64,
}

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::SLOTS, 0);

/// Each thread's TLS library call in progress, from its entry uprobe to
/// its return, or a returned call whose session's socket the thread's next
/// socket write names (`tls`; `TlsCall::kind` zero: none). Task-local
/// storage, like `IN_FLIGHT`: every socket syscall looks here, and a
/// thread with none is told so without a hash lookup.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "TLS_CALLS")]
pub static TLS_CALLS: TaskStorage<TlsCall> = TaskStorage::new();

/// Go TLS reads in progress (`go_tls`). LRU: a goroutine that never
/// returns (its program exited) leaves its entry.
#[map]
pub static GO_TLS_READS: LruHashMap<GoTlsReadKey, GoTlsRead> =
    LruHashMap::with_max_entries(MAX_GO_TLS_READS, 0);

/// Each TLS session's socket and plaintext offsets, by process and `SSL*`
/// (`tls`). LRU: sessions whose process freed them age out.
#[map]
pub static TLS_SESSIONS: LruHashMap<TlsSessionKey, TlsSession> =
    LruHashMap::with_max_entries(MAX_TLS_SESSIONS, 0);

#[inline(always)]
pub fn role_of(sock: u64) -> Role {
    Role::from_u8(unsafe { SOCKETS.get(sock) }.map_or(Role::Unknown as u8, |s| s.role))
}

/// What the enter tracepoint keeps for the exit tracepoint.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InFlight {
    pub sock: u64,
    /// The user buffer, iovec array or msghdr, depending on `syscall`.
    pub user_ptr: u64,
    /// Entries in the iovec array (readv/writev).
    pub iov_count: u64,
    pub start_ns: u64,
    pub fd: i32,
    /// TCP sequence number of the first byte the syscall moves.
    pub seq: u32,
    pub syscall: u8,
    /// Non-zero on a write to a client connection: `sk_msg` may inject there.
    pub is_call: u8,
    /// Non-zero once `sk_msg` looked at this syscall's first message.
    pub inject_checked: u8,
    /// The socket's `Role` at entry.
    pub role: u8,
    pub _pad: [u8; 4],
    /// A call's inbound request (`sock` zero: none).
    pub context: RequestContext,
    /// A call's trace id (with injection), and the span id injected.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// What a TLS call's entry keeps for its return.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    pub ssl: u64,
    /// The plaintext buffer.
    pub buf: u64,
    /// `SSL_read_ex`/`SSL_write_ex`: where the library writes the bytes
    /// moved (0 for the calls that return them).
    pub moved_ptr: u64,
    pub start_ns: u64,
    /// The socket of the first socket syscall made during the call (0: none yet).
    pub sock: u64,
    /// What the call is (`tls`'s `READ`, `WRITE`, `HANDSHAKE`, `BIND`).
    pub kind: u8,
    pub _pad: [u8; 7],
}

/// A goroutine in Go's `crypto/tls.(*Conn).Read`, by process and `g`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoTlsReadKey {
    pub pid: u32,
    pub _pad: u32,
    pub goroutine: u64,
}

/// What a Go TLS read's entry keeps for its returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoTlsRead {
    /// The `*tls.Conn`.
    pub conn: u64,
    /// The plaintext buffer.
    pub buf: u64,
    pub start_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsSessionKey {
    pub pid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

/// A TLS session's socket, and the plaintext bytes written and read on it
/// so far: the offset of a request's first byte in its direction's
/// plaintext is the same at the client and the server, which is how the
/// agent pairs the two ends (as it does with TCP sequence numbers).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsSession {
    pub sock: u64,
    pub written: u32,
    pub read: u32,
}

/// A thread's inbound requests it is free to work on (see `context`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadRequests {
    /// The latest request read that has made no call yet (0: not known).
    pub fresh_sock: u64,
    /// The latest request a call's response came back for (0: not known).
    pub resumed_sock: u64,
    pub fresh_seq: u32,
    pub resumed_seq: u32,
    /// How many of each kind the thread has.
    pub fresh: u32,
    pub resumed: u32,
    /// Non-zero while the thread's last read was `fresh_sock`'s request.
    pub last_read_fresh: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ServerRequest {
    /// The thread that read it.
    pub tid: u32,
    /// TCP sequence number of its first byte.
    pub seq: u32,
    /// Its trace id (with injection).
    pub trace_id: [u8; 16],
    /// `REQUEST_FRESH`, `REQUEST_WAITING` or `REQUEST_RESUMED`.
    pub state: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoroutineKey {
    pub pid: u32,
    pub _pad: u32,
    pub goid: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Goroutine {
    /// The server connection of its request, zero for none.
    pub sock: u64,
    /// Its request's first sequence number.
    pub seq: u32,
    /// Non-zero for a `net/http` `writeLoop`: its request is the one it writes.
    pub transport_writer: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoHttpRequestKey {
    pub pid: u32,
    pub _pad: u32,
    /// The `*http.Request`.
    pub request: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct NodeRequestKey {
    pub pid: u32,
    pub _pad: u32,
    /// The script's id of the request.
    pub id: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct QueuedItemKey {
    pub pid: u32,
    pub _pad: u32,
    /// The item object's address.
    pub item: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskKey {
    pub pid: u32,
    pub _pad: u32,
    /// The task object's address.
    pub task: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyFileKey {
    pub pid: u32,
    pub _pad: u32,
    /// `PyFrames::interpreter()`: where the process's interpreter was
    /// loaded tells a reused pid's entries apart.
    pub interpreter: u64,
    /// The `co_filename` string object's address.
    pub filename: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyTask {
    /// The request it serves (`sock` zero: none).
    pub context: RequestContext,
    /// The task at the top of its creators (itself when created outside any task).
    pub root: u64,
}

/// Read, no call made yet.
pub const REQUEST_FRESH: u32 = 0;
/// A call made for it waits for its response.
pub const REQUEST_WAITING: u32 = 1;
/// A call's response (its first bytes, at least) came back.
pub const REQUEST_RESUMED: u32 = 2;

/// An event under construction. The payload area is twice `MAX_CAPTURE` so a
/// copy at any offset below `MAX_CAPTURE` of up to `MAX_CAPTURE` bytes stays
/// inside it, which is what the verifier checks.
#[repr(C)]
pub struct EventBuffer {
    pub header: SocketEvent,
    pub payload: [u8; 2 * MAX_CAPTURE],
}

pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// Whether the maps of `runtime` (a `RUNTIME_*` bit) may hold entries: a
/// node without that runtime skips their lookups.
#[inline(always)]
pub fn runtime_followed(runtime: u32) -> bool {
    config().is_some_and(|config| config.runtimes & runtime != 0)
}

#[inline(always)]
pub fn count(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other CPU writes it, so no atomic is needed.
        unsafe { *slot += n };
    }
}
