//! Overload: above the rate the agent reads events at, whole requests are
//! left out, decided once at each request's start, never half of one.
//!
//! A request is left out when the ring buffer holds more than
//! `Config::overload_bytes` the agent has not read yet. What was decided
//! follows the request: a call made for an inbound request shares its
//! fate; the callee's side on this node looks up the call's decision
//! (`CALL_DECISIONS`, written from half the threshold on, so that a call
//! decided just before the threshold is crossed is found too). Only an
//! inbound request with no decision to follow (its caller is off this
//! node, or not traced) and a call made for no inbound request decide by
//! the ring's fill. Left-out requests are counted
//! (`requests_dropped_overload`); their events are never sent.

use aya_ebpf::bindings::BPF_RB_AVAIL_DATA;
use tracer_common::{Config, Counter, SocketState, WireKey};

use crate::maps::{CALL_DECISIONS, EVENTS, SOCKETS, count};

/// Bytes in the ring buffer the agent has not read yet.
#[inline(always)]
fn waiting_bytes() -> u64 {
    EVENTS.query(BPF_RB_AVAIL_DATA as u64)
}

/// A new inbound request on server connection `sock`, whose first byte is
/// `seq`: decides whether it is left out. Returns that decision.
#[inline(always)]
pub fn inbound_request(config: &Config, sock: u64, seq: u32) -> bool {
    let Some(state) = SOCKETS.get_ptr_mut(sock) else {
        return false;
    };
    let state = unsafe { &mut *state };
    let threshold = config.overload_bytes as u64;
    let mut drop = false;
    if threshold != 0 {
        let waiting = waiting_bytes();
        if waiting >= threshold / 2 {
            let key = WireKey {
                client_addr: state.remote_addr,
                server_addr: state.local_addr,
                client_port: state.remote_port,
                server_port: state.local_port,
                seq,
            };
            drop = match unsafe { CALL_DECISIONS.get(key) } {
                Some(decision) => {
                    let decision = *decision != 0;
                    let _ = CALL_DECISIONS.remove(key);
                    decision
                }
                None => waiting >= threshold,
            };
        }
    }
    decided(state, drop)
}

/// A write on client connection `sock` (starting at `seq`) made for the
/// inbound request on `parent_sock` (0: none): the first write of a call
/// decides for the whole call. Returns whether the call is left out.
#[inline(always)]
pub fn call_write(config: &Config, sock: u64, seq: u32, parent_sock: u64) -> bool {
    let Some(state) = SOCKETS.get_ptr_mut(sock) else {
        return false;
    };
    let state = unsafe { &mut *state };
    if state.in_call != 0 {
        return state.dropping != 0;
    }
    state.in_call = 1;
    let threshold = config.overload_bytes as u64;
    if threshold == 0 {
        return decided(state, false);
    }
    let waiting = waiting_bytes();
    let drop = if parent_sock != 0 {
        unsafe { SOCKETS.get(parent_sock) }.is_some_and(|parent| parent.dropping != 0)
    } else {
        waiting >= threshold
    };
    if waiting >= threshold / 2 {
        let key = WireKey {
            client_addr: state.local_addr,
            server_addr: state.remote_addr,
            client_port: state.local_port,
            server_port: state.remote_port,
            seq,
        };
        let _ = CALL_DECISIONS.insert(key, drop as u8, 0);
    }
    decided(state, drop)
}

/// The first read of a call's response: the next write starts a new call.
#[inline(always)]
pub fn call_answered(sock: u64) {
    if let Some(state) = SOCKETS.get_ptr_mut(sock) {
        unsafe { (*state).in_call = 0 };
    }
}

#[inline(always)]
fn decided(state: &mut SocketState, drop: bool) -> bool {
    state.dropping = drop as u8;
    if drop {
        count(Counter::RequestsDroppedOverload, 1);
    }
    drop
}
