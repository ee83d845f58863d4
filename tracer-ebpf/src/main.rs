//! Kernel programs of the tracer: syscall tracepoints that see TCP socket
//! traffic of every process and stream it to the agent through a ring buffer.
//!
//! Layout: `maps` (every map, sized), `sockets` (fd → TCP `struct sock`, with
//! offsets from BTF), `capture` (bounded payload copies and event emission),
//! `context` (which inbound request an outbound one is made for),
//! `goroutines` (the same for Go, with uprobes on its runtime), `node` (for
//! Node.js, as the agent's script in the process tells it), `tasks` (for
//! Python asyncio, with uprobes on `_asyncio`), `pools` (Python thread pools,
//! with uprobes on `_queue`), `tls` (TLS plaintext, with uprobes on
//! OpenSSL), `go_tls` (the same for Go's `crypto/tls`), `inject`
//! (`traceparent` injection: `sock_ops` + `sk_msg`), `programs` (the thin
//! tracepoint entry points).
#![no_std]
#![no_main]

mod capture;
mod context;
mod go_tls;
mod goroutines;
mod inject;
mod maps;
mod node;
mod overload;
mod pools;
mod programs;
mod sockets;
mod tasks;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program; the verifier rejects code that could panic.
    loop {}
}

// GPL-compatible: bpf_probe_read_user and the ring buffer helpers require it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
