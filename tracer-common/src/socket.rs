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
    /// `AF_INET` / `AF_INET6`; 0: the addresses are not read yet (the agent
    /// marked a socket ignored that the kernel had forgotten).
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    /// A `Role`: known from accept/connect, else from its first HTTP message.
    pub role: u8,
    /// Non-zero: not a protocol the agent parses; its data syscalls are skipped.
    pub ignored: u8,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketState {}

const _: () = assert!(core::mem::size_of::<SocketState>() == 40);
