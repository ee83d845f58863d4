//! The one event record the kernel writes to the `EVENTS` ring buffer.
//!
//! A record is a `SocketEvent` header followed by `captured` payload bytes.
//! What stays the same for a connection (its addresses, the name of the
//! thread that opened it) is not in every header: an `Open` or `Announce`
//! record carries it once, as its payload (`Endpoints`).

/// What the event reports. Ids are never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Bytes read from or written to a TCP socket.
    Data = 1,
    /// A connection was accepted (server side) or connected (client side).
    Open = 2,
    /// The last descriptor of a TCP socket in a process was closed.
    Close = 3,
    /// A socket seen without its `Open` (a connection older than the
    /// agent, or one whose state the kernel had to drop), or not announced
    /// for `Config::reannounce_ns`: its `Endpoints`, just before its next
    /// event.
    Announce = 4,
}

impl EventKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Data),
            2 => Some(Self::Open),
            3 => Some(Self::Close),
            4 => Some(Self::Announce),
            _ => None,
        }
    }
}

/// Which side of the connection the traced process is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opened before the agent started: the agent infers the role.
    Unknown = 0,
    /// The process called `connect()`.
    Client = 1,
    /// The process got the socket from `accept()`.
    Server = 2,
}

impl Role {
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Client,
            2 => Self::Server,
            _ => Self::Unknown,
        }
    }
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The process read these bytes from the socket.
    Ingress = 1,
    /// The process wrote these bytes to the socket.
    Egress = 2,
}

impl Direction {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Ingress),
            2 => Some(Self::Egress),
            _ => None,
        }
    }
}

/// The syscall an event came from (for diagnostics and tests).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Read = 1,
    Write = 2,
    Readv = 3,
    Writev = 4,
    Recvfrom = 5,
    Sendto = 6,
    Recvmsg = 7,
    Sendmsg = 8,
    Sendfile = 9,
    Accept = 10,
    Connect = 11,
    Close = 12,
    /// A TLS library's read (`SSL_read`, `SSL_read_ex`): plaintext.
    TlsRead = 13,
    /// A TLS library's write (`SSL_write`, `SSL_write_ex`): plaintext.
    TlsWrite = 14,
}

impl Syscall {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::Readv,
            4 => Self::Writev,
            5 => Self::Recvfrom,
            6 => Self::Sendto,
            7 => Self::Recvmsg,
            8 => Self::Sendmsg,
            9 => Self::Sendfile,
            10 => Self::Accept,
            11 => Self::Connect,
            12 => Self::Close,
            13 => Self::TlsRead,
            14 => Self::TlsWrite,
            _ => return None,
        })
    }

    /// The direction bytes move in for a data syscall.
    pub fn direction(self) -> Option<Direction> {
        match self {
            Self::Read | Self::Readv | Self::Recvfrom | Self::Recvmsg | Self::TlsRead => {
                Some(Direction::Ingress)
            }
            Self::Write
            | Self::Writev
            | Self::Sendto
            | Self::Sendmsg
            | Self::Sendfile
            | Self::TlsWrite => Some(Direction::Egress),
            Self::Accept | Self::Connect | Self::Close => None,
        }
    }
}

/// Where a data event's bytes came from. A TLS connection's bytes come
/// twice: as ciphertext from the socket and as plaintext from the TLS
/// library; each is parsed on its own, so that the ciphertext being no
/// protocol the agent parses does not hide the plaintext.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A socket syscall: the bytes on the wire.
    Socket = 0,
    /// A TLS library's read or write: the plaintext.
    Tls = 1,
}

impl Source {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Socket),
            1 => Some(Self::Tls),
            _ => None,
        }
    }
}

/// The inbound request a thread is serving: the server connection and the
/// TCP sequence number of the read that started it. Zero `sock`: none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub sock: u64,
    pub seq: u32,
    /// How the kernel knew: one of the `CONTEXT_FROM_*` values.
    pub source: u32,
}

/// The thread that wrote the call was free to work on that request only.
pub const CONTEXT_FROM_THREAD: u32 = 0;
/// The goroutine that wrote the call works for that request (Go).
pub const CONTEXT_FROM_GOROUTINE: u32 = 1;
/// The agent's script in the process said so (Node.js, `--node-context-script`).
pub const CONTEXT_FROM_SCRIPT: u32 = 2;
/// The asyncio task that wrote the call serves that request (Python).
pub const CONTEXT_FROM_TASK: u32 = 3;
/// The thread took the request with a work item from another (Python
/// thread pools).
pub const CONTEXT_FROM_HANDOFF: u32 = 4;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEvent {
    /// `EventKind` as u32.
    pub kind: u32,
    /// Process id (thread group id).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The file descriptor in `pid`.
    pub fd: i32,
    /// Kernel address of the `struct sock`: the same for the connection's
    /// whole life, in every process that shares it.
    pub sock_id: u64,
    /// CLOCK_MONOTONIC at syscall entry and exit.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The syscall's result: bytes actually moved (partial reads/writes are exact).
    pub bytes: u64,
    /// Payload bytes that follow this header (a prefix of `bytes`; for
    /// `Open` and `Announce`, an `Endpoints`).
    pub captured: u32,
    /// `Role` as u8.
    pub role: u8,
    /// `Direction` as u8 (0 for open/close).
    pub direction: u8,
    /// `Syscall` as u8.
    pub syscall: u8,
    /// `Source` as u8.
    pub source: u8,
    /// TCP sequence number of the first byte this syscall moved.
    pub seq: u32,
    pub _pad: u32,
    /// On a client write: the inbound request it was made for (`sock` zero
    /// when the kernel could not tell which one; see `tracer-ebpf`'s `context`).
    pub context: RequestContext,
    /// With traceparent injection on: on the server read that starts a
    /// request, the trace id the kernel gave it (the inbound `traceparent`'s,
    /// or new); on a client write the kernel injected a header into, the
    /// trace id it carries. Zero otherwise.
    pub trace_id: [u8; 16],
    /// The span id of an injected `traceparent` (zero: nothing injected).
    pub span_id: [u8; 8],
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketEvent {}

/// The payload of an `Open` or `Announce` record: what stays the same for
/// the connection's life.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// IPv4 addresses use the first four bytes (network order).
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// The name (`comm`) of the thread the record came from, NUL-padded.
    pub comm: [u8; 16],
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
}

pub const ENDPOINTS_SIZE: usize = core::mem::size_of::<Endpoints>();
const _: () = assert!(ENDPOINTS_SIZE == 56);

pub const SOCKET_EVENT_SIZE: usize = core::mem::size_of::<SocketEvent>();
const _: () = assert!(SOCKET_EVENT_SIZE == 104);
const _: () = assert!(SOCKET_EVENT_SIZE.is_multiple_of(8));
// No implicit padding: `span_id` ends exactly at the struct's end.
const _: () = assert!(core::mem::offset_of!(SocketEvent, span_id) + 8 == SOCKET_EVENT_SIZE);
