//! Types shared by the kernel programs (`tracer-ebpf`) and the agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree on
//! the layout byte for byte; the size asserts at the bottom catch a drift at
//! compile time. Integer flags stand in for `bool` and enums so that no value
//! the kernel writes can be an invalid Rust value on the user side.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod config;
pub mod counters;
pub mod event;
pub mod go;
pub mod node;
pub mod python;
pub mod socket;

pub use config::{
    Config, InjectMode, KernelOffsets, RUNTIME_GO, RUNTIME_NODE, RUNTIME_PYTHON, WALK_FILE_WINDOW,
    WALK_SOCKET_HEAD, wakes_reader,
};
pub use counters::Counter;
pub use event::{Direction, EventKind, RequestContext, Role, SocketEvent, Source, Syscall};
pub use go::{GoProcess, SpawnRanges};
pub use python::PyFrames;
pub use socket::{MAX_CALL_DECISIONS, MAX_SOCKETS, SocketState, WireKey};

/// Largest payload prefix one event can carry. The capture length the agent
/// configures (`Config::capture_bytes`) is at most this. A power of two: the
/// kernel side masks offsets with `MAX_CAPTURE - 1` to satisfy the verifier.
/// The kernel's scratch buffer holds twice this plus a header, and a per-CPU
/// map value may not exceed 32 KiB, so 8 KiB is the most it can be.
pub const MAX_CAPTURE: usize = 8 * 1024;

/// Default payload prefix captured per syscall.
pub const DEFAULT_CAPTURE: u32 = 4096;

/// How many iovec entries of a readv/writev/recvmsg/sendmsg are copied from:
/// the kernel's own limit (`UIO_MAXIOV`), so every entry is. The copy stops
/// at the capture length.
pub const MAX_IOVECS: u32 = 1024;

/// Threads the per-thread LRU maps (goroutine starts, pool hand-offs,
/// asyncio tasks) follow at once. The syscall and TLS call in progress are
/// kept in task-local storage instead, which has no such bound.
pub const MAX_THREADS_FOLLOWED: u32 = 16 * 1024;

/// Go TLS reads in progress at once.
pub const MAX_GO_TLS_READS: u32 = 16 * 1024;

/// TLS sessions (`SSL*` per process) whose socket the kernel remembers (LRU).
pub const MAX_TLS_SESSIONS: u32 = 64 * 1024;

/// Threads whose inbound requests the kernel keeps count of (LRU).
pub const MAX_THREAD_CONTEXTS: u32 = 64 * 1024;

/// Inbound requests being served, and outbound requests waiting for their
/// response, that the kernel remembers (LRU each).
pub const MAX_SERVER_REQUESTS: u32 = 64 * 1024;
pub const MAX_CALLS: u32 = 64 * 1024;

/// Client sockets whose requests can get a `traceparent` (`--inject-traceparent`).
pub const MAX_INJECT_SOCKETS: u32 = 64 * 1024;

/// How far into a request the kernel looks for a `traceparent` header (the
/// inbound one it continues, or an outbound one it must not duplicate).
pub const TRACEPARENT_SCAN: usize = 1024;

/// `traceparent: 00-<32 hex>-<16 hex>-01\r\n`
pub const TRACEPARENT_HEADER_LEN: usize = 70;

/// Addresses of this node (every network namespace's, or `--netns`'s), as
/// IPv6 (IPv4 mapped): calls to them are not injected in `InjectMode::Remote`.
pub const MAX_LOCAL_ADDRESSES: u32 = 4096;

/// Processes that connected to a peer off this node (LRU): with
/// `InjectMode::Remote`, only their inbound requests are scanned for the
/// `traceparent` their calls continue.
pub const MAX_REMOTE_CALLERS: u32 = 16 * 1024;

/// Go processes, as the agent found them (LRU).
pub const MAX_GO_PROCESSES: u32 = 16 * 1024;

/// asyncio processes whose Python frames the kernel can read (LRU).
pub const MAX_PYTHON_PROCESSES: u32 = 16 * 1024;

/// Python source files whose origin (program or library) the kernel keeps (LRU).
pub const MAX_PYTHON_FILES: u32 = 16 * 1024;

/// Goroutines of Go processes that serve a request, or were started (at any
/// depth) by one that does (LRU; goroutine ids are never reused, so an old
/// entry only ages out).
pub const MAX_GOROUTINES: u32 = 64 * 1024;

/// `net/http` client requests between the goroutine that makes them and the
/// transport goroutine that writes them (LRU).
pub const MAX_GO_HTTP_REQUESTS: u32 = 16 * 1024;

/// asyncio tasks whose request the kernel keeps (LRU; a task's address
/// may be reused, so each task's creation overwrites its entry).
pub const MAX_TASKS: u32 = 64 * 1024;

/// Node.js processes running the agent's script (`--node-context-script`).
pub const MAX_NODE_PROCESSES: u32 = 4096;

/// Processes `--pid` can name.
pub const MAX_TRACED_PIDS: u32 = 1024;

/// Threads found blocked in a socket syscall when the agent attached.
pub const MAX_BLOCKED_AT_ATTACH: u32 = 16 * 1024;
