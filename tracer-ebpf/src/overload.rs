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

/// A new inbound request on the server connection whose `state` this is,
/// its first byte `seq`: decides whether it is left out. Returns that decision.
#[inline(always)]
pub fn inbound_request(config: &Config, state: &mut SocketState, seq: u32) -> bool {
    let threshold = config.overload_bytes as u64;
    let mut drop = false;
    if threshold != 0 {
        let waiting = waiting_bytes();
        if waiting >= threshold / 2 {
            let key = wire_key(state, seq, false);
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

/// A write (starting at `seq`) on the client connection whose `state` this
/// is, made for the inbound request on `parent_sock` (0: none): the first
/// write of a call decides for the whole call. Returns whether the call is
/// left out.
#[inline(always)]
pub fn call_write(config: &Config, state: &mut SocketState, seq: u32, parent_sock: u64) -> bool {
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
        let key = wire_key(state, seq, true);
        let _ = CALL_DECISIONS.insert(key, drop as u8, 0);
    }
    decided(state, drop)
}

/// The first read of a call's response: the next write starts a new call.
#[inline(always)]
pub fn call_answered(state: &mut SocketState) {
    state.in_call = 0;
}

/// The request starting at `seq` as both its ends see it, from the state of
/// its client's end (`client_end`) or its server's.
#[inline(always)]
fn wire_key(state: &SocketState, seq: u32, client_end: bool) -> WireKey {
    let (client, server) = if client_end {
        (
            (state.local_addr, state.local_port),
            (state.remote_addr, state.remote_port),
        )
    } else {
        (
            (state.remote_addr, state.remote_port),
            (state.local_addr, state.local_port),
        )
    };
    WireKey {
        client_addr: client.0,
        server_addr: server.0,
        client_port: client.1,
        server_port: server.1,
        seq,
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
