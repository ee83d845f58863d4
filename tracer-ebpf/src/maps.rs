//! Every map the programs use, each with a fixed size.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    Config, Counter, MAX_CAPTURE, MAX_CONNECT_CONTEXTS, MAX_IGNORED_SOCKETS, MAX_IN_FLIGHT,
    MAX_ROLES, MAX_THREAD_CONTEXTS, MAX_TRACED_PIDS, RequestContext, SocketEvent,
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

/// A syscall between its enter and exit tracepoints, by thread (pid_tgid).
#[map]
pub static IN_FLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// The role of sockets seen at accept/connect, by `struct sock` address.
/// LRU: sockets of long-gone connections age out without a delete.
#[map]
pub static ROLES: LruHashMap<u64, u8> = LruHashMap::with_max_entries(MAX_ROLES, 0);

/// The inbound request each thread is serving, by thread id: set when it reads
/// from a server connection, cleared when it writes the response there.
#[map]
pub static THREAD_CONTEXT: LruHashMap<u32, RequestContext> =
    LruHashMap::with_max_entries(MAX_THREAD_CONTEXTS, 0);

/// The context of the thread that called `connect()`, by socket: an event
/// loop (nginx) writes a new connection's first request later, when the
/// thread may serve another request.
#[map]
pub static CONNECT_CONTEXT: LruHashMap<u64, RequestContext> =
    LruHashMap::with_max_entries(MAX_CONNECT_CONTEXTS, 0);

/// Sockets whose traffic the agent does not parse (TLS, databases, …), by
/// `struct sock` address: their syscalls are skipped at entry. The agent adds
/// them; accept/connect and close remove them (the address may be reused).
#[map]
pub static IGNORED_SOCKETS: LruHashMap<u64, u8> =
    LruHashMap::with_max_entries(MAX_IGNORED_SOCKETS, 0);

/// Per-CPU room to build one event (too large for the 512-byte stack).
#[map]
pub static SCRATCH: PerCpuArray<EventBuffer> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::SLOTS, 0);

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
    pub _pad: [u8; 7],
}

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

#[inline(always)]
pub fn count(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other CPU writes it, so no atomic is needed.
        unsafe { *slot += n };
    }
}
