//! What the kernel needs to follow a request through a Go program's
//! goroutines (`GO_PROCESSES`, written by the agent).

/// A Go process, by pid. Go moves goroutines between threads, so the thread
/// that writes a call does not tell which request it is for; the goroutine
/// does. `goid_offset` zero: the agent could not find how to read the
/// goroutine (a stripped binary, an unsupported Go version): such a
/// process's calls are left unlinked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoProcess {
    /// `runtime.g.goid`: byte offset of the goroutine id in its `g`.
    pub goid_offset: u32,
    /// Where the running goroutine's `g` pointer lives, relative to the
    /// thread pointer (`fsbase`): -8 for Go's own linker on amd64.
    pub tls_g_offset: i32,
    /// The process's address of the itab of `*net.TCPConn` as a
    /// `net.Conn`: a `crypto/tls.Conn` whose connection has it is on a TCP
    /// socket the kernel can find (0: its TLS plaintext is not read).
    pub tcp_conn_itab: u64,
}

impl GoProcess {
    /// A Go process whose goroutines cannot be followed.
    pub const UNSUPPORTED: GoProcess = GoProcess {
        goid_offset: 0,
        tls_g_offset: 0,
        tcp_conn_itab: 0,
    };

    pub const fn followed(&self) -> bool {
        self.goid_offset != 0
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for GoProcess {}

const _: () = assert!(core::mem::size_of::<GoProcess>() == 16);

/// Ranges of a Go executable's code whose `go` statements pass the request
/// on (`GO_SPAWN_RANGES`, by pid): the program's own packages (`main` and
/// its module's), `errgroup` and `net/http`'s `TimeoutHandler`. A goroutine
/// a library starts for itself (a connection pool's loop, dialed while
/// serving one request and writing for others later) does not inherit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnRanges {
    /// Added to a link-time address to get the process's (PIE executables).
    pub load_bias: u64,
    pub count: u32,
    pub _pad: u32,
    /// [start, end) link-time addresses of goroutine entry functions.
    pub ranges: [[u64; 2]; MAX_SPAWN_RANGES],
}

/// Most ranges a program's own code may take (functions of its packages
/// sit together; more than this many runs and nothing inherits).
pub const MAX_SPAWN_RANGES: usize = 32;

impl SpawnRanges {
    /// Whether a goroutine starting at `pc` (the process's address) inherits.
    #[inline(always)]
    pub fn contains(&self, pc: u64) -> bool {
        let address = pc.wrapping_sub(self.load_bias);
        let mut i = 0;
        while i < MAX_SPAWN_RANGES {
            if i as u32 >= self.count {
                return false;
            }
            let [start, end] = self.ranges[i];
            if start <= address && address < end {
                return true;
            }
            i += 1;
        }
        false
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SpawnRanges {}

const _: () = assert!(core::mem::size_of::<SpawnRanges>() == 16 + 16 * MAX_SPAWN_RANGES);
