//! The agent's userspace per request, without the kernel: the events the
//! programs send for the nginx case of `cargo xtask bench cost` (a client
//! writes a request on one of 32 keep-alive connections, nginx reads it,
//! writes its head, sends a 1 KiB file, the client reads the response), fed
//! through the pipeline's stages in batches as the ring buffer hands them
//! over. Prints nanoseconds per request per stage, the median of several
//! rounds: a change to one stage shows there, away from the machine's noise
//! that the end-to-end benchmark carries.
//!
//! Run: `cargo bench -p tracer-agent --bench pipeline` (or `cargo xtask bench
//! pipeline`).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tracer_agent::{
    clock::Clock,
    connections::{ConnectionTable, Handled},
    correlation::Correlator,
    events::decode,
    export::{
        Exporter,
        encoded::{Format, SpanQueue},
        file::FileExporter,
    },
    metrics::Metrics,
    owners::Owners,
    pipeline::{build_spans, export_batch},
    process::ProcessCache,
    spans::{Span, SpanBuilder},
    stats::Stats,
    viewer::store::{StoreLimits, TraceStore},
};
use tracer_common::{
    DEFAULT_CAPTURE, EventKind, RequestContext, Role, SocketEvent, Source, Syscall,
    event::{AF_INET, ENDPOINTS_SIZE, Endpoints, SOCKET_EVENT_SIZE},
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONNECTIONS: u64 = 32;
/// Requests per batch: about what one ring buffer read holds under load.
const BATCH_REQUESTS: u64 = 32;
const REQUESTS: u64 = 64 * 1024;
const ROUNDS: usize = 7;
const SERVER_PORT: u16 = 8080;

const REQUEST: &[u8] = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Thu, 03 Dec 2026 18:52:10 GMT\r\nContent-Type: text/plain\r\n\
Content-Length: 1024\r\nLast-Modified: Thu, 03 Dec 2026 06:08:10 GMT\r\n\
Connection: keep-alive\r\nETag: \"6b11074a-400\"\r\nAccept-Ranges: bytes\r\n\r\n";
const BODY: usize = 1024;

/// One side of one connection, as the kernel reports it.
#[derive(Clone, Copy)]
struct Side {
    pid: u32,
    sock: u64,
    local_port: u16,
    remote_port: u16,
    role: Role,
    comm: &'static [u8],
}

/// Ring buffer records: a `SocketEvent` header and its payload each.
struct Records {
    bytes: Vec<u8>,
    /// Where each record ends.
    ends: Vec<usize>,
    clock_ns: u64,
}

impl Records {
    fn push(&mut self, side: Side, kind: EventKind, data: Option<(Syscall, u32, u64, &[u8])>) {
        self.clock_ns += 1_000;
        let mut header = SocketEvent {
            kind: kind as u32,
            pid: side.pid,
            tid: side.pid,
            fd: 7,
            sock_id: side.sock,
            start_ns: self.clock_ns - 500,
            end_ns: self.clock_ns,
            bytes: 0,
            captured: 0,
            role: side.role as u8,
            direction: 0,
            syscall: match kind {
                EventKind::Open if side.role == Role::Server => Syscall::Accept,
                EventKind::Open => Syscall::Connect,
                _ => Syscall::Close,
            } as u8,
            source: Source::Socket as u8,
            seq: 0,
            _pad: 0,
            context: RequestContext::default(),
            trace_id: [0; 16],
            span_id: [0; 8],
        };
        let mut endpoints = Endpoints {
            local_addr: [0; 16],
            remote_addr: [0; 16],
            comm: [0; 16],
            family: AF_INET,
            local_port: side.local_port,
            remote_port: side.remote_port,
            _pad: 0,
        };
        endpoints.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        endpoints.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        endpoints.comm[..side.comm.len()].copy_from_slice(side.comm);
        // SAFETY: `Endpoints` is plain old data, `ENDPOINTS_SIZE` long.
        let endpoint_bytes = unsafe {
            std::slice::from_raw_parts((&raw const endpoints).cast::<u8>(), ENDPOINTS_SIZE)
        };
        let mut payload: &[u8] = &[];
        if kind == EventKind::Open {
            header.captured = ENDPOINTS_SIZE as u32;
            payload = endpoint_bytes;
        }
        if let Some((syscall, seq, bytes, captured)) = data {
            header.syscall = syscall as u8;
            header.direction = syscall.direction().map_or(0, |d| d as u8);
            header.seq = seq;
            header.bytes = bytes;
            header.captured = captured.len() as u32;
            payload = captured;
        }
        // SAFETY: `SocketEvent` is plain old data, `SOCKET_EVENT_SIZE` long.
        let header_bytes = unsafe {
            std::slice::from_raw_parts((&raw const header).cast::<u8>(), SOCKET_EVENT_SIZE)
        };
        self.bytes.extend_from_slice(header_bytes);
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }
}

/// The events of `REQUESTS` requests, as batches of records.
fn nginx_case(client_pid: u32, server_pid: u32) -> Vec<Records> {
    let response_bytes: Vec<u8> = RESPONSE_HEAD
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', BODY))
        .collect();
    let response_len = response_bytes.len();
    let captured_response = &response_bytes[..response_len.min(DEFAULT_CAPTURE as usize)];
    let sides: Vec<(Side, Side)> = (0..CONNECTIONS)
        .map(|i| {
            let port = 40_000 + i as u16;
            let client = Side {
                pid: client_pid,
                sock: 0x1000 + i,
                local_port: port,
                remote_port: SERVER_PORT,
                role: Role::Client,
                comm: b"wrk",
            };
            let server = Side {
                pid: server_pid,
                sock: 0x2000 + i,
                local_port: SERVER_PORT,
                remote_port: port,
                role: Role::Server,
                comm: b"nginx",
            };
            (client, server)
        })
        .collect();
    let mut batches = Vec::new();
    let mut records = Records {
        bytes: Vec::new(),
        ends: Vec::new(),
        clock_ns: 1_000_000,
    };
    for (client, server) in &sides {
        records.push(*client, EventKind::Open, None);
        records.push(*server, EventKind::Open, None);
    }
    let mut request_seq = vec![1u32; CONNECTIONS as usize];
    let mut response_seq = vec![1u32; CONNECTIONS as usize];
    for n in 0..REQUESTS {
        let i = (n % CONNECTIONS) as usize;
        let (client, server) = sides[i];
        let (request, response) = (request_seq[i], response_seq[i]);
        let request_len = REQUEST.len() as u64;
        let head_len = RESPONSE_HEAD.len() as u64;
        let data = |syscall, seq, bytes, captured| Some((syscall, seq, bytes, captured));
        records.push(
            client,
            EventKind::Data,
            data(Syscall::Write, request, request_len, REQUEST),
        );
        records.push(
            server,
            EventKind::Data,
            data(Syscall::Recvfrom, request, request_len, REQUEST),
        );
        records.push(
            server,
            EventKind::Data,
            data(Syscall::Writev, response, head_len, RESPONSE_HEAD),
        );
        let body_seq = response.wrapping_add(head_len as u32);
        records.push(
            server,
            EventKind::Data,
            data(Syscall::Sendfile, body_seq, BODY as u64, &[]),
        );
        records.push(
            client,
            EventKind::Data,
            data(
                Syscall::Read,
                response,
                response_len as u64,
                captured_response,
            ),
        );
        request_seq[i] = request.wrapping_add(request_len as u32);
        response_seq[i] = response.wrapping_add(response_len as u32);
        if (n + 1) % BATCH_REQUESTS == 0 {
            let clock_ns = records.clock_ns;
            batches.push(std::mem::replace(
                &mut records,
                Records {
                    bytes: Vec::new(),
                    ends: Vec::new(),
                    clock_ns,
                },
            ));
        }
    }
    batches
}

/// The stages timed, in the order `round` runs them; the first four are
/// what the agent does with its defaults (metrics and viewer on, no
/// exporter).
const STAGES: [&str; 7] = [
    "events → connections → HTTP/1 (decode, parse)",
    "spans (correlate, build)",
    "metrics: request durations",
    "export stage with defaults: self times, viewer store",
    "--export-file (OTLP/JSON lines)",
    "--otlp-endpoint, protobuf: encode, request body",
    "--otlp-endpoint, JSON: encode, request body",
];
const DEFAULT_STAGES: usize = 4;

/// Time spent per stage (as `STAGES`) over one round, and spans built.
#[derive(Default)]
struct Round {
    took: [Duration; STAGES.len()],
    built: usize,
}

fn round(batches: &[Records]) -> Round {
    let stats = Arc::new(Stats::default());
    let processes = ProcessCache::new("/proc", Owners::default(), None);
    let mut builder = SpanBuilder::new(Clock::now(), processes);
    let mut correlator = Correlator::new();
    let mut table = ConnectionTable::new(64 * 1024);
    let mut handled = Handled::default();
    let metrics = Metrics::new(stats.clone(), None, false);
    let store = TraceStore::new(
        StoreLimits {
            max_traces: 10_000,
            max_bytes: 8 * 1024 * 1024,
        },
        Vec::new(),
    );
    let mut file: Vec<Box<dyn Exporter>> = vec![Box::new(
        FileExporter::create(
            Path::new("/dev/null"),
            "bench".into(),
            stats.exporter("file"),
        )
        .expect("open /dev/null"),
    )];
    let mut queue = SpanQueue::default();
    let mut request = Vec::new();
    let mut round = Round::default();
    let took = &mut round.took;
    let timed = |total: &mut Duration, work: &mut dyn FnMut()| {
        let start = Instant::now();
        work();
        *total += start.elapsed();
    };
    for records in batches {
        handled.clear();
        timed(&mut took[0], &mut || {
            let mut start = 0;
            for &end in &records.ends {
                let event = decode(&records.bytes[start..end]).expect("a valid record");
                table.handle(event, &mut handled);
                start = end;
            }
        });
        let mut batch: Vec<Span> = Vec::new();
        timed(&mut took[1], &mut || {
            let built = build_spans(&handled, &mut builder, &mut correlator, &stats, |_| {});
            batch = built.ready;
            batch.extend(built.while_trace_live);
            batch.extend(built.for_caller);
            correlator.clear_quiesced();
        });
        round.built += batch.len();
        timed(&mut took[2], &mut || metrics.record_durations(&batch));
        timed(&mut took[4], &mut || file[0].export(&batch));
        for (format, stage) in [(Format::Protobuf, 5), (Format::Json, 6)] {
            // As the OTLP exporter does, less the HTTP request itself.
            timed(&mut took[stage], &mut || {
                let mut encoded = queue.spare();
                encoded.add(format, &batch);
                queue.push(encoded);
                let taken = queue.take(usize::MAX);
                taken.write_request(format, "bench", &mut request);
                queue.recycle(taken);
            });
        }
        timed(&mut took[3], &mut || {
            export_batch(
                std::mem::take(&mut batch),
                &mut [],
                Some(&metrics),
                Some(&store),
            );
        });
    }
    round
}

fn main() {
    let client_pid = std::process::id();
    let server_pid = std::os::unix::process::parent_id();
    let batches = nginx_case(client_pid, server_pid);
    let rounds: Vec<Round> = (0..ROUNDS).map(|_| round(&batches)).collect();
    let spans_per_request = rounds[0].built as f64 / REQUESTS as f64;
    println!(
        "pipeline, nginx case: {REQUESTS} requests, {CONNECTIONS} connections, \
         {spans_per_request:.3} spans per request; ns per request, median of {ROUNDS} rounds"
    );
    let mut defaults = 0.0;
    for (index, name) in STAGES.iter().enumerate() {
        let mut per_request: Vec<f64> = rounds
            .iter()
            .map(|r| r.took[index].as_nanos() as f64 / REQUESTS as f64)
            .collect();
        per_request.sort_by(f64::total_cmp);
        let median = per_request[ROUNDS / 2];
        if index < DEFAULT_STAGES {
            defaults += median;
        }
        println!("{median:8.0}  {name}");
    }
    println!("{defaults:8.0}  with defaults (the first {DEFAULT_STAGES})");
}
