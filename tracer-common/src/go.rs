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
}

impl GoProcess {
    /// A Go process whose goroutines cannot be followed.
    pub const UNSUPPORTED: GoProcess = GoProcess {
        goid_offset: 0,
        tls_g_offset: 0,
    };

    pub const fn followed(&self) -> bool {
        self.goid_offset != 0
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for GoProcess {}

const _: () = assert!(core::mem::size_of::<GoProcess>() == 8);
