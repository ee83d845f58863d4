//! `--inject-traceparent`: a W3C `traceparent` header in outbound HTTP/1.x
//! requests, so that an agent on the next node continues the same trace.
//!
//! `sock_ops` puts each client socket, once connected, into `INJECT_SOCKETS`;
//! the `sk_msg` program attached to that map sees every message written to
//! them. On a write the syscall tracepoints marked as a call, it looks at the
//! message's first bytes: a request line, and no `traceparent` of the
//! application's own, get `traceparent: 00-<trace>-<span>-01` inserted right
//! after the request line. The request's other bytes are unchanged; the
//! application's write still returns its own byte count. The ids go back to
//! the exit tracepoint through the syscall's `IN_FLIGHT` entry, and from
//! there to the agent in the event.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, sk_action::SK_PASS},
    helpers::{
        bpf_get_prandom_u32, bpf_probe_read_kernel_buf,
        generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_loop, bpf_msg_pull_data},
    },
    macros::{sk_msg, sock_ops},
    programs::{SkMsgContext, SockOpsContext},
};
use tracer_common::{
    Config, Counter, InjectMode, TRACEPARENT_HEADER_LEN, TRACEPARENT_SCAN, event::AF_INET6,
};

use core::ffi::c_void;

use crate::maps::{
    HEAD_SCRATCH, INJECT_SOCKETS, LOCAL_ADDRESSES, REMOTE_CALLERS, SCRATCH, config, count,
    in_flight_slot,
};

/// Room for a request head prefix of `TRACEPARENT_SCAN` bytes and the
/// longest match that can start inside it.
pub const HEAD_SCRATCH_LEN: usize = 2 * TRACEPARENT_SCAN;

/// Longest request line a header is inserted after.
const MAX_REQUEST_LINE: usize = 256;

const NAME: &[u8; 12] = b"traceparent:";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Fills `id` with random bytes, never all zero (W3C forbids it).
#[inline(always)]
pub fn new_id<const N: usize>(id: &mut [u8; N]) {
    for chunk in id.chunks_mut(4) {
        let random = unsafe { bpf_get_prandom_u32() }.to_le_bytes();
        for (byte, value) in chunk.iter_mut().zip(random) {
            *byte = value;
        }
    }
    id[0] |= 1;
}

/// Where the bytes a scan looks at are: both are per-CPU map values that
/// `bpf_loop` callbacks look up again (they cannot borrow the caller's).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Head {
    /// The payload of the event being built (a server read).
    EventPayload = 0,
    /// `HEAD_SCRATCH`: the start of an outbound message (`sk_msg`).
    Outbound = 1,
}

#[inline(always)]
fn head_bytes(head: Head) -> Option<&'static [u8; HEAD_SCRATCH_LEN]> {
    let bytes: *const [u8; HEAD_SCRATCH_LEN] = match head {
        Head::EventPayload => {
            let buffer = SCRATCH.get_ptr_mut(0)?;
            unsafe { core::ptr::addr_of!((*buffer).payload) }.cast()
        }
        Head::Outbound => HEAD_SCRATCH.get_ptr_mut(0)?.cast_const(),
    };
    Some(unsafe { &*bytes })
}

/// `bytes[i]`, or 0 past its end: no panic path for the verifier to reject.
#[inline(always)]
pub fn at<const N: usize>(bytes: &[u8; N], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// State of a scan run by `bpf_loop` (one call per position): loops in the
/// program itself are verified once per iteration, and their many exits
/// multiply the rest of the program, past the verifier's limit.
#[repr(C)]
struct Scan {
    head: Head,
    /// Bytes of the head that are valid.
    len: u64,
    /// What the callback found; 0 for nothing.
    found: u64,
}

/// Runs `callback` over positions `0..positions` of `head[..len]`; what it found.
#[inline(always)]
fn scan(
    head: Head,
    len: usize,
    positions: usize,
    callback: extern "C" fn(u64, *mut c_void) -> i64,
) -> usize {
    let mut state = Scan {
        head,
        len: len as u64,
        found: 0,
    };
    unsafe {
        bpf_loop(
            positions as u32,
            callback as *mut c_void,
            (&mut state as *mut Scan).cast(),
            0,
        )
    };
    state.found as usize
}

/// `bpf_loop` callback: does a `traceparent:` header start after position
/// `i`? Then `found` is where its value starts. The name is matched without
/// regard to case (`| 0x20` lowercases letters and keeps ':').
extern "C" fn traceparent_at(i: u64, state: *mut c_void) -> i64 {
    let state = unsafe { &mut *(state as *mut Scan) };
    let i = i as usize;
    let Some(bytes) = head_bytes(state.head) else {
        return 1;
    };
    if i + 1 + NAME.len() > state.len as usize {
        return 1;
    }
    if at(bytes, i) != b'\n' {
        return 0;
    }
    for (k, expected) in NAME.iter().enumerate() {
        if at(bytes, i + 1 + k) | 0x20 != *expected | 0x20 {
            return 0;
        }
    }
    let mut value = i + 1 + NAME.len();
    if at(bytes, value) == b' ' {
        value += 1;
    }
    state.found = value as u64;
    1
}

/// `bpf_loop` callback: does the request line end at position `i`? Then
/// `found` is `i`.
extern "C" fn line_end_at(i: u64, state: *mut c_void) -> i64 {
    let state = unsafe { &mut *(state as *mut Scan) };
    let i = i as usize;
    let Some(bytes) = head_bytes(state.head) else {
        return 1;
    };
    if i + 2 > state.len as usize {
        return 1;
    }
    if at(bytes, i) == b'\r' && at(bytes, i + 1) == b'\n' {
        state.found = i as u64;
        return 1;
    }
    0
}

/// Where the value of a `traceparent` header starts in `head[..len]`, if
/// the head has one.
#[inline(always)]
fn traceparent_value(head: Head, len: usize) -> Option<usize> {
    match scan(head, len, TRACEPARENT_SCAN, traceparent_at) {
        0 => None,
        value => Some(value),
    }
}

/// The trace id of a `traceparent` in `head[..len]` (version 00), into `out`.
#[inline(always)]
pub fn inbound_trace_id(head: Head, len: usize, out: &mut [u8; 16]) -> bool {
    let Some(value) = traceparent_value(head, len) else {
        return false;
    };
    let Some(bytes) = head_bytes(head) else {
        return false;
    };
    if value > TRACEPARENT_SCAN + NAME.len() + 2 || value + 35 > len {
        return false;
    }
    if at(bytes, value) != b'0' || at(bytes, value + 1) != b'0' || at(bytes, value + 2) != b'-' {
        return false;
    }
    let mut any = 0u8;
    for (i, byte) in out.iter_mut().enumerate() {
        let (Some(high), Some(low)) = (
            hex_value(at(bytes, value + 3 + 2 * i)),
            hex_value(at(bytes, value + 4 + 2 * i)),
        ) else {
            return false;
        };
        *byte = high << 4 | low;
        any |= *byte;
    }
    any != 0
}

#[inline(always)]
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The length of the method a request starts with (upper-case letters, then
/// a space, within the first 8 bytes); 0 when `bytes` does not start so.
#[inline(always)]
pub fn method_len<const N: usize>(bytes: &[u8; N]) -> usize {
    for (i, byte) in bytes.iter().enumerate().take(8) {
        if byte.is_ascii_uppercase() {
            continue;
        }
        return if *byte == b' ' { i } else { 0 };
    }
    0
}

/// Where a header can be inserted in `head[..len]`: just after its request
/// line (`METHOD target HTTP/1.x\r\n`); 0 when it does not start with one.
#[inline(always)]
fn after_request_line(head: Head, len: usize) -> usize {
    let Some(bytes) = head_bytes(head) else {
        return 0;
    };
    if method_len(bytes) == 0 {
        return 0;
    }
    let end = scan(head, len, MAX_REQUEST_LINE, line_end_at);
    if end < 16 {
        return 0;
    }
    for (k, expected) in b"HTTP/1.".iter().enumerate() {
        if at(bytes, end - 8 + k) != *expected {
            return 0;
        }
    }
    end + 2
}

/// `traceparent: 00-<trace>-<span>-01\r\n`
#[inline(always)]
fn header(trace_id: &[u8; 16], span_id: &[u8; 8]) -> [u8; TRACEPARENT_HEADER_LEN] {
    let mut out = [0u8; TRACEPARENT_HEADER_LEN];
    out[..12].copy_from_slice(b"traceparent:");
    out[12..16].copy_from_slice(b" 00-");
    for (i, byte) in trace_id.iter().enumerate() {
        out[16 + 2 * i] = HEX[(byte >> 4) as usize];
        out[17 + 2 * i] = HEX[(byte & 15) as usize];
    }
    out[48] = b'-';
    for (i, byte) in span_id.iter().enumerate() {
        out[49 + 2 * i] = HEX[(byte >> 4) as usize];
        out[50 + 2 * i] = HEX[(byte & 15) as usize];
    }
    out[65..].copy_from_slice(b"-01\r\n");
    out
}

/// An IPv4 address (network order) as the IPv4-mapped IPv6 address the
/// agent keys `LOCAL_ADDRESSES` with.
#[inline(always)]
pub fn ipv4_mapped(ip4: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&ip4);
    out
}

/// Whether a peer at `addr` (IPv6, IPv4 mapped) is on this node: loopback,
/// unspecified, or one of the node's addresses the agent listed.
#[inline(always)]
pub fn peer_is_on_this_node(addr: &[u8; 16]) -> bool {
    let mapped = addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff;
    let loopback = (mapped && (addr[12] == 127 || addr[12..] == [0; 4]))
        || (addr[..15] == [0; 15] && addr[15] <= 1);
    loopback || unsafe { LOCAL_ADDRESSES.get(addr) }.is_some()
}

/// Whether calls on a new client connection to `peer` get a header.
#[inline(always)]
pub fn injects_to(config: &Config, peer: &[u8; 16]) -> bool {
    match config.inject_traceparent {
        mode if mode == InjectMode::All as u32 => true,
        mode if mode == InjectMode::Remote as u32 => !peer_is_on_this_node(peer),
        _ => false,
    }
}

/// A process connected to `peer`: with `InjectMode::Remote`, remember it
/// when the peer is off this node (its inbound requests' trace ids are then
/// worth reading, for its calls to carry).
#[inline(always)]
pub fn connected(config: &Config, pid: u32, peer: &[u8; 16]) {
    if config.inject_traceparent == InjectMode::Remote as u32 && !peer_is_on_this_node(peer) {
        let _ = REMOTE_CALLERS.insert(pid, 1, 0);
    }
}

/// Whether the trace id of an inbound request of process `pid` is needed:
/// its calls may get a header.
#[inline(always)]
pub fn wants_trace_ids(config: &Config, pid: u32) -> bool {
    match config.inject_traceparent {
        mode if mode == InjectMode::All as u32 => true,
        mode if mode == InjectMode::Remote as u32 => unsafe { REMOTE_CALLERS.get(pid) }.is_some(),
        _ => false,
    }
}

/// Puts connected client sockets whose calls get a header where
/// `inject_traceparent` sees their writes; other sockets never pass it.
#[sock_ops]
pub fn watch_client_sockets(ctx: SockOpsContext) -> u32 {
    if ctx.op() != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        return 1;
    }
    let Some(config) = config() else { return 1 };
    let peer = if ctx.family() == AF_INET6 as u32 {
        let mut peer = [0u8; 16];
        for i in 0..4 {
            // One 4-byte load per word: the verifier refuses wider context
            // loads, which the compiler would otherwise merge these into.
            let word = unsafe { core::ptr::read_volatile(&(*ctx.ops).remote_ip6[i]) };
            peer[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
        }
        peer
    } else {
        ipv4_mapped(ctx.remote_ip4().to_ne_bytes())
    };
    if !injects_to(config, &peer) {
        return 1;
    }
    let ops = ctx.ops;
    if config.netns_inum != 0 && unsafe { bpf_get_netns_cookie(ops.cast()) } != config.netns_cookie
    {
        return 1;
    }
    let key = unsafe { bpf_get_socket_cookie(ops.cast()) };
    if INJECT_SOCKETS
        .update(key, unsafe { &mut *ops }, BPF_ANY as u64)
        .is_err()
    {
        count(Counter::InjectFailed, 1);
    }
    1
}

/// Adds a `traceparent` to the request a call writes. Never blocks a message.
#[sk_msg]
pub fn inject_traceparent(ctx: SkMsgContext) -> u32 {
    if try_inject(&ctx).is_err() {
        count(Counter::InjectFailed, 1);
    }
    SK_PASS
}

/// `Ok` when a header was added or none was due; `Err` when one was due and
/// could not be added.
#[inline(always)]
fn try_inject(ctx: &SkMsgContext) -> Result<(), ()> {
    let Some(in_flight) = in_flight_slot(false).filter(|slot| slot.sock != 0) else {
        return Ok(());
    };
    // Only a call's first message can start a request; a call with no
    // trace id (left out under overload) gets no header.
    if in_flight.is_call == 0 || in_flight.inject_checked != 0 || in_flight.trace_id == [0; 16] {
        return Ok(());
    }
    in_flight.inject_checked = 1;

    let size = ctx.size() as usize;
    let len = if size < TRACEPARENT_SCAN {
        size
    } else {
        TRACEPARENT_SCAN
    };
    if len < 16 {
        return Ok(());
    }
    if unsafe { bpf_msg_pull_data(ctx.msg, 0, len as u32, 0) } != 0 {
        return Err(());
    }
    let head = unsafe { &mut *HEAD_SCRATCH.get_ptr_mut(0).ok_or(())? };
    let available = ctx.data_end().saturating_sub(ctx.data());
    let len = if available < len { available } else { len };
    if !(16..=TRACEPARENT_SCAN).contains(&len) {
        return Ok(());
    }
    unsafe { bpf_probe_read_kernel_buf(ctx.data() as *const u8, &mut head[..len]) }
        .map_err(|_| ())?;

    let insert_at = after_request_line(Head::Outbound, len);
    if insert_at == 0 || traceparent_value(Head::Outbound, len).is_some() {
        return Ok(());
    }
    let mut span_id = [0u8; 8];
    new_id(&mut span_id);
    let bytes = header(&in_flight.trace_id, &span_id);

    ctx.push_data(insert_at as u32, TRACEPARENT_HEADER_LEN as u32, 0)
        .map_err(|_| ())?;
    let end = (insert_at + TRACEPARENT_HEADER_LEN) as u32;
    if unsafe { bpf_msg_pull_data(ctx.msg, 0, end, 0) } != 0 {
        return Err(());
    }
    let start = ctx.data() + (insert_at & (MAX_REQUEST_LINE * 2 - 1));
    if start + TRACEPARENT_HEADER_LEN > ctx.data_end() {
        return Err(());
    }
    let target = start as *mut u8;
    for (i, byte) in bytes.iter().enumerate() {
        unsafe { *target.add(i) = *byte };
    }
    in_flight.span_id = span_id;
    count(Counter::TraceparentInjected, 1);
    Ok(())
}
