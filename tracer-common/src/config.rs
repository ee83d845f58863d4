//! Settings the agent writes into the `CONFIG` map before attaching programs.

/// Byte offsets of the kernel struct members the programs read, taken from
/// `/sys/kernel/btf/vmlinux` at start-up (Rust eBPF has no CO-RE relocations).
/// Each is the offset from the start of the named struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.files` (this and the next three also go to the
    /// programs' read-only data, where the verifier reads them as constants:
    /// see `tracer-ebpf`'s `fd_table`)
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdtable_max_fds: u32,
    /// `fdtable.fd`
    pub fdtable_fd: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `file.private_data`
    pub file_private_data: u32,
    /// `file.f_op`: a socket's is the kernel's `socket_file_ops`.
    pub file_op: u32,
    /// `inode.i_mode`
    pub inode_mode: u32,
    /// `socket.type`
    pub socket_type: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.__sk_common.skc_family`
    pub sock_family: u32,
    /// `sock.sk_protocol`
    pub sock_protocol: u32,
    /// `sock.__sk_common.skc_num` (local port, host order)
    pub sock_num: u32,
    /// `sock.__sk_common.skc_dport` (remote port, network order)
    pub sock_dport: u32,
    /// `sock.__sk_common.skc_daddr`
    pub sock_daddr: u32,
    /// `sock.__sk_common.skc_rcv_saddr`
    pub sock_rcv_saddr: u32,
    /// `sock.__sk_common.skc_v6_daddr`
    pub sock_v6_daddr: u32,
    /// `sock.__sk_common.skc_v6_rcv_saddr`
    pub sock_v6_rcv_saddr: u32,
    /// `tcp_sock.write_seq`: sequence number of the next byte written.
    pub tcp_write_seq: u32,
    /// `tcp_sock.copied_seq`: sequence number of the next byte read.
    pub tcp_copied_seq: u32,
    /// `task_struct.nsproxy`
    pub task_nsproxy: u32,
    /// `nsproxy.net_ns`
    pub nsproxy_net_ns: u32,
    /// `net.ns.inum`: the network namespace's inode number.
    pub net_inum: u32,
    /// `task_struct.thread.fsbase`: the thread pointer of a user thread (x86-64),
    /// where Go keeps the running goroutine.
    pub task_fsbase: u32,
    /// `WALK_*` bits: which of the descriptor walk's fields lie together,
    /// so that one read gets them all (`KernelOffsets::with_shortcuts`).
    pub walk_shortcuts: u32,
}

/// `file.f_op`, then 8 bytes on `f_mapping`, `private_data`, `f_inode`.
pub const WALK_FILE_WINDOW: u32 = 2;
/// `socket.type` at 4 and `socket.sk` at 24: the first 32 bytes hold both.
pub const WALK_SOCKET_HEAD: u32 = 4;

impl KernelOffsets {
    /// These offsets with `walk_shortcuts` set from where the fields lie.
    pub fn with_shortcuts(mut self) -> KernelOffsets {
        let mut bits = 0;
        if self.file_op.is_multiple_of(8)
            && self.file_private_data == self.file_op + 16
            && self.file_inode == self.file_op + 24
        {
            bits |= WALK_FILE_WINDOW;
        }
        if self.socket_type == 4 && self.socket_sk == 24 {
            bits |= WALK_SOCKET_HEAD;
        }
        self.walk_shortcuts = bits;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub offsets: KernelOffsets,
    /// The agent's own process id: never traced.
    pub agent_pid: u32,
    /// Non-zero: only processes in the `TRACED_PIDS` map are traced.
    pub filter_pids: u32,
    /// Payload prefix copied per syscall, at most `MAX_CAPTURE`.
    pub capture_bytes: u32,
    /// The ring buffer wakes the reader once this many bytes wait (see
    /// `wakes_reader`); below it the reader's timer collects them (fewer
    /// wake-ups under load).
    pub wakeup_bytes: u32,
    /// Which outbound HTTP/1.x requests without a `traceparent` get one
    /// (`--inject-traceparent`): an `InjectMode` as u32.
    pub inject_traceparent: u32,
    /// Non-zero: only processes in the network namespace with this inode
    /// number are traced (`--netns`).
    pub netns_inum: u32,
    /// Ring-buffer bytes waiting for the agent above which new requests
    /// are left out whole (overload); from half of it on, each call's
    /// decision is kept for its callee on this node. 0: never.
    pub overload_bytes: u32,
    /// With `netns_inum`: the namespace's cookie, which socket programs see.
    pub netns_cookie: u64,
    /// Non-zero once TLS library probes are attached: socket syscalls made
    /// inside a TLS call tell the call its socket.
    pub tls_probes: u32,
    /// Non-zero once every tracepoint program is attached; until then they
    /// do nothing, so that no connection is seen in part (a response
    /// without its request's events) while they are attached one by one.
    pub live: u32,
    /// Which runtimes' maps may hold entries (`RUNTIME_*` bits), set by the
    /// agent before their first entry: until then the programs skip those
    /// lookups (about 0.6 µs of BPF per request of a node with none).
    pub runtimes: u32,
    pub _pad: u32,
    /// A socket's `Endpoints` are sent again before its next event once
    /// this long has passed since they were last sent: the agent forgets a
    /// connection it has not heard from for longer than twice this.
    pub reannounce_ns: u64,
}

/// `Config::runtimes`: a Go process is registered (`GO_PROCESSES`).
pub const RUNTIME_GO: u32 = 1;
/// `Config::runtimes`: CPython probes are attached (asyncio tasks, queues).
pub const RUNTIME_PYTHON: u32 = 2;
/// `Config::runtimes`: a Node.js process runs the context script.
pub const RUNTIME_NODE: u32 = 4;

/// Which outbound requests get a `traceparent` (`Config::inject_traceparent`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectMode {
    /// None.
    Off = 0,
    /// Those to a peer that is not on this node (not loopback, not an
    /// address in `LOCAL_ADDRESSES`): calls within the node are linked by
    /// their connection already.
    Remote = 1,
    /// Every client connection's (tests, and nodes behind address translation).
    All = 2,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}

/// Above the wake-up mark, the reader is woken again each time this many
/// more bytes wait (a power of two: 64 KiB).
const WAKE_STEP_SHIFT: u32 = 16;

/// Whether a record of `len` bytes, written when `pending` bytes wait,
/// wakes the reader: when it crosses the `wakeup` mark, and above the mark
/// when it crosses a further `WAKE_STEP_SHIFT` step (in case two CPUs
/// crossed the mark together, each seeing the other's bytes not yet there).
/// Not at every record above the mark: each wake-up is an IRQ-work
/// interrupt on the writing CPU, and until the reader catches up the
/// traced program would pay for one per record.
#[inline(always)]
pub fn wakes_reader(pending: u64, len: u64, wakeup: u64) -> bool {
    let after = pending + len;
    after >= wakeup && (pending < wakeup || after >> WAKE_STEP_SHIFT != pending >> WAKE_STEP_SHIFT)
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 100);
const _: () = assert!(core::mem::size_of::<Config>() == 160);

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: u64 = 1 << 20;

    #[test]
    fn the_reader_is_woken_when_the_mark_is_crossed() {
        assert!(!wakes_reader(0, 100, MARK));
        assert!(!wakes_reader(MARK - 101, 100, MARK));
        assert!(wakes_reader(MARK - 100, 100, MARK));
        assert!(wakes_reader(MARK - 1, 100, MARK));
    }

    #[test]
    fn above_the_mark_only_each_further_step_wakes_it() {
        let step = 1 << WAKE_STEP_SHIFT;
        assert!(!wakes_reader(MARK, 100, MARK));
        assert!(!wakes_reader(MARK + step - 101, 100, MARK));
        assert!(wakes_reader(MARK + step - 50, 100, MARK));
        // Every step above the mark wakes it once.
        let woken = (MARK..MARK + 8 * step)
            .step_by(1000)
            .filter(|&pending| wakes_reader(pending, 1000, MARK))
            .count();
        assert_eq!(woken, 8);
    }
}
