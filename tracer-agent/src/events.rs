//! Ring buffer records → typed events.
//!
//! The reader sleeps on the ring buffer's descriptor (the kernel wakes it once
//! enough bytes wait) and on a short timer that collects the rest, so a quiet
//! node costs nothing and a busy one is read in batches. Each record is
//! decoded where it lies in the ring and handed on as an `Event` that borrows
//! its payload: nothing is allocated or copied per event.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use thiserror::Error;
use tokio::{io::unix::AsyncFd, sync::watch};
use tracer_common::{
    Direction, EventKind, RequestContext, Role, SocketEvent, Source, Syscall,
    event::{AF_INET, AF_INET6, ENDPOINTS_SIZE, Endpoints as WireEndpoints, SOCKET_EVENT_SIZE},
};

use aya::maps::{MapData, RingBuf};

use crate::stats::Stats;

/// A decoded kernel event; its payload is borrowed from the ring buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    pub sock_id: u64,
    /// CLOCK_MONOTONIC nanoseconds at syscall entry and exit.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Bytes the syscall moved; `payload` is a prefix of them.
    pub bytes: u64,
    pub role: Role,
    pub direction: Option<Direction>,
    pub syscall: Syscall,
    /// Where the bytes came from: the socket, or a TLS library's plaintext.
    pub source: Source,
    /// On `Open` and `Announce`: the connection's addresses, and the name
    /// of the thread that opened it or was first seen on it.
    pub endpoints: Option<Endpoints>,
    /// TCP sequence number of the first byte moved (data events).
    pub seq: u32,
    /// The inbound request a client wrote this for, as the kernel decided
    /// (data events).
    pub context: Option<RequestContext>,
    pub ids: KernelIds,
    pub payload: &'a [u8],
}

/// A thread name as the kernel keeps it: up to 16 bytes, NUL-padded.
pub type Comm = [u8; 16];

/// What stays the same for a connection, sent once (see `EventKind::Announce`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The thread's name, NUL-padded (see `comm_text`).
    pub comm: Comm,
}

/// The text of a thread name.
pub fn comm_text(comm: &Comm) -> std::borrow::Cow<'_, str> {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end])
}

/// Trace ids the kernel chose (with `--inject-traceparent`): they went, or
/// will go, on the wire, so the agent's spans must carry the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelIds {
    /// On the read that started an inbound request: its trace id. On an
    /// outbound request with an injected header: the header's trace id.
    pub trace_id: Option<[u8; 16]>,
    /// The span id of an injected `traceparent`.
    pub injected_span_id: Option<[u8; 8]>,
}

impl Event<'_> {
    /// Bytes moved beyond the captured prefix.
    pub fn uncaptured(&self) -> u64 {
        self.bytes.saturating_sub(self.payload.len() as u64)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("record says {captured} payload bytes follow but has {present}")]
    PayloadLength { captured: usize, present: usize },
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown syscall {0}")]
    Syscall(u8),
    #[error("unknown byte source {0}")]
    Source(u8),
    #[error("an open or announce record of {0} payload bytes is too short for its endpoints")]
    Endpoints(usize),
}

/// Decodes one ring buffer record: a `SocketEvent` header and its payload.
pub fn decode(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    if record.len() < SOCKET_EVENT_SIZE {
        return Err(DecodeError::Short(record.len()));
    }
    // SAFETY: the length is checked; `SocketEvent` is plain old data with no
    // invalid bit patterns, read unaligned from the record.
    let header: SocketEvent = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let payload = &record[SOCKET_EVENT_SIZE..];
    let captured = header.captured as usize;
    // The kernel may pad a record to 8 bytes; more payload than announced is fine.
    if payload.len() < captured {
        return Err(DecodeError::PayloadLength {
            captured,
            present: payload.len(),
        });
    }
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::Kind(header.kind))?;
    let syscall = Syscall::from_u8(header.syscall).ok_or(DecodeError::Syscall(header.syscall))?;
    let source = Source::from_u8(header.source).ok_or(DecodeError::Source(header.source))?;
    let mut payload = &payload[..captured];
    let endpoints = match kind {
        EventKind::Open | EventKind::Announce => {
            if captured < ENDPOINTS_SIZE {
                return Err(DecodeError::Endpoints(captured));
            }
            // SAFETY: the length is checked; `Endpoints` is plain old data.
            let wire: WireEndpoints = unsafe { std::ptr::read_unaligned(payload.as_ptr().cast()) };
            payload = &[];
            Some(Endpoints {
                local: socket_addr(wire.family, wire.local_addr, wire.local_port),
                remote: socket_addr(wire.family, wire.remote_addr, wire.remote_port),
                comm: wire.comm,
            })
        }
        EventKind::Data | EventKind::Close => None,
    };
    Ok(Event {
        kind,
        pid: header.pid,
        tid: header.tid,
        fd: header.fd,
        sock_id: header.sock_id,
        start_ns: header.start_ns,
        end_ns: header.end_ns,
        bytes: header.bytes,
        role: Role::from_u8(header.role),
        direction: Direction::from_u8(header.direction),
        syscall,
        source,
        endpoints,
        seq: header.seq,
        context: (header.context.sock != 0).then_some(header.context),
        ids: KernelIds {
            trace_id: (header.trace_id != [0; 16]).then_some(header.trace_id),
            injected_span_id: (header.span_id != [0; 8]).then_some(header.span_id),
        },
        payload,
    })
}

fn socket_addr(family: u16, addr: [u8; 16], port: u16) -> SocketAddr {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        // IPv4-mapped addresses of dual-stack sockets show as IPv4.
        AF_INET6 => Ipv6Addr::from(addr).to_canonical(),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, port)
}

/// How often the reader collects events the kernel did not wake it for.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Why the reader woke.
pub enum Wake {
    /// Records may wait in the ring buffer.
    Records,
    /// The agent is stopping: read what is left, then stop.
    Shutdown,
}

/// The ring buffer, read as its records arrive.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    timer: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
}

impl EventReader {
    pub fn new(ring: RingBuf<MapData>, shutdown: watch::Receiver<bool>) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its descriptor and the AsyncFd owns the
        // RingBuf, so the descriptor stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
        let mut timer = tokio::time::interval(FLUSH_INTERVAL);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(EventReader {
            ring,
            timer,
            shutdown,
        })
    }

    /// Waits until records may be there (the kernel's wake-up or the flush
    /// timer) or the agent stops.
    pub async fn wait(&mut self) -> std::io::Result<Wake> {
        if *self.shutdown.borrow() {
            return Ok(Wake::Shutdown);
        }
        tokio::select! {
            guard = self.ring.readable_mut() => {
                guard?.clear_ready();
                Ok(Wake::Records)
            }
            _ = self.timer.tick() => Ok(Wake::Records),
            _ = self.shutdown.changed() => Ok(Wake::Shutdown),
        }
    }

    /// Hands every record waiting now to `handle`, decoded in place.
    pub fn drain(&mut self, stats: &Stats, mut handle: impl FnMut(Event<'_>)) {
        let ring = self.ring.get_mut();
        while let Some(record) = ring.next() {
            stats.add(&stats.events_read, 1);
            stats.add(&stats.event_bytes_read, record.len() as u64);
            match decode(&record) {
                Ok(event) => handle(event),
                Err(e) => {
                    stats.add(&stats.events_undecodable, 1);
                    tracing::warn!("dropping a kernel event: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(header: &SocketEvent, payload: &[u8]) -> Vec<u8> {
        // SAFETY: SocketEvent is repr(C) plain data with no padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (header as *const SocketEvent).cast::<u8>(),
                SOCKET_EVENT_SIZE,
            )
        };
        let mut out = bytes.to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn endpoints_payload(family: u16, local_addr: [u8; 16], remote_addr: [u8; 16]) -> Vec<u8> {
        let wire = WireEndpoints {
            local_addr,
            remote_addr,
            comm: *b"python3\0\0\0\0\0\0\0\0\0",
            family,
            local_port: 8080,
            remote_port: 50000,
            _pad: 0,
        };
        // SAFETY: Endpoints is repr(C) plain data with no padding.
        unsafe {
            std::slice::from_raw_parts((&raw const wire).cast::<u8>(), ENDPOINTS_SIZE).to_vec()
        }
    }

    fn loopback() -> [u8; 16] {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        addr
    }

    fn header() -> SocketEvent {
        SocketEvent {
            kind: EventKind::Data as u32,
            pid: 10,
            tid: 11,
            fd: 5,
            sock_id: 0xffff_8880_0000_1000,
            start_ns: 100,
            end_ns: 200,
            bytes: 4000,
            captured: 3,
            role: Role::Server as u8,
            direction: Direction::Ingress as u8,
            syscall: Syscall::Read as u8,
            source: Source::Socket as u8,
            seq: 1000,
            _pad: 0,
            context: RequestContext {
                sock: 0xffff_8880_0000_2000,
                seq: 77,
                source: 0,
            },
            trace_id: [7; 16],
            span_id: [0; 8],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = record(&header(), b"GET");
        let event = decode(&bytes).unwrap();
        assert_eq!(event.kind, EventKind::Data);
        assert_eq!((event.pid, event.tid, event.fd), (10, 11, 5));
        assert_eq!(event.endpoints, None);
        assert_eq!(event.role, Role::Server);
        assert_eq!(event.direction, Some(Direction::Ingress));
        assert_eq!(event.payload, b"GET");
        assert_eq!(event.uncaptured(), 3997);
        assert_eq!(event.seq, 1000);
        assert_eq!(
            event.context.map(|c| (c.sock, c.seq)),
            Some((0xffff_8880_0000_2000, 77))
        );
        assert_eq!(event.ids.trace_id, Some([7; 16]));
        assert_eq!(event.ids.injected_span_id, None);
    }

    #[test]
    fn announced_endpoints() {
        let mut h = header();
        h.kind = EventKind::Announce as u32;
        h.captured = ENDPOINTS_SIZE as u32;
        let bytes = record(&h, &endpoints_payload(AF_INET, loopback(), loopback()));
        let event = decode(&bytes).unwrap();
        let endpoints = event.endpoints.unwrap();
        assert_eq!(endpoints.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(endpoints.remote, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(comm_text(&endpoints.comm), "python3");
        assert_eq!(event.payload, b"");
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let mut h = header();
        h.kind = EventKind::Open as u32;
        h.captured = ENDPOINTS_SIZE as u32;
        let local = Ipv6Addr::LOCALHOST.octets();
        let remote = Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets();
        let bytes = record(&h, &endpoints_payload(AF_INET6, local, remote));
        let endpoints = decode(&bytes).unwrap().endpoints.unwrap();
        assert_eq!(endpoints.local, "[::1]:8080".parse().unwrap());
        assert_eq!(endpoints.remote, "10.0.0.2:50000".parse().unwrap());
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(decode(&[0; 10]), Err(DecodeError::Short(10)));
        assert_eq!(
            decode(&record(&header(), b"GE")),
            Err(DecodeError::PayloadLength {
                captured: 3,
                present: 2
            })
        );
        let mut h = header();
        h.kind = 99;
        assert_eq!(decode(&record(&h, b"GET")), Err(DecodeError::Kind(99)));
        h.kind = EventKind::Open as u32;
        assert_eq!(decode(&record(&h, b"GET")), Err(DecodeError::Endpoints(3)));
    }
}
