//! What the kernel keeps per TCP socket: read once per connection, used by
//! every syscall on it.

/// Sockets the kernel keeps state for (LRU: long-gone connections age out).
pub const MAX_SOCKETS: u32 = 64 * 1024;

/// One socket's state, by `struct sock` address (`SOCKETS` map). Written at
/// accept/connect, or at the first syscall seen on an older connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketState {
    /// IPv4 addresses in the first 4 bytes.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// `AF_INET` / `AF_INET6`.
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    /// A `Role`: known from accept/connect, else from its first HTTP message.
    pub role: u8,
    /// Non-zero: not a protocol the agent parses; its data syscalls are skipped.
    pub ignored: u8,
    /// Non-zero: the connection's current request (inbound, or a call) is
    /// left out whole under overload; decided at its start.
    pub dropping: u8,
    /// Non-zero from a call's first write to its response's first read: a
    /// write then is more of the same call.
    pub in_call: u8,
    /// Non-zero once a TLS library's plaintext of this connection was
    /// seen: its events come from the TLS probes, its syscalls are skipped.
    pub tls: u8,
    /// Non-zero once the client wrote the HTTP/2 preface: several calls,
    /// from several threads, may be in flight on it at once, so each write
    /// is decided on its own (no call is kept per connection).
    pub multiplexed: u8,
    /// Zero when `SERVER_REQUESTS` holds no request of this connection, so
    /// it is not looked up; non-zero when it may (set after an insert,
    /// cleared before a removal, so a request is never hidden).
    pub request_kept: u8,
    /// The same for a call in `CALLS`.
    pub call_kept: u8,
    pub _pad: [u8; 2],
    /// When the agent was last sent this socket's `Endpoints` (an `Open` or
    /// `Announce` record), CLOCK_MONOTONIC; 0: never.
    pub announced_ns: u64,
}

/// A request as both its ends see it on this node: client and server
/// addresses and ports, and the TCP sequence number of its first byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireKey {
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub seq: u32,
}

/// Calls whose keep-or-drop decision the callee's side looks up under
/// overload (LRU).
pub const MAX_CALL_DECISIONS: u32 = 16 * 1024;

#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketState {}

const _: () = assert!(core::mem::size_of::<SocketState>() == 56);
const _: () = assert!(core::mem::size_of::<WireKey>() == 40);
