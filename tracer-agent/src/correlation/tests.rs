use tracer_common::RequestContext;

use super::*;
use crate::{
    connections::ConnectionInfo,
    protocols::{
        ChunkMeta, Exchange, Output, Protocol, RequestStart, Stream,
        http1::{Http1, Http1Exchange, RequestHead},
    },
};

const CLIENT: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:8080";

/// Every request in these tests is read or written by thread 1.
fn meta(seq: u32, context: Option<(u64, u32)>) -> ChunkMeta {
    ChunkMeta {
        first_ns: 1,
        last_ns: 2,
        pid: 1,
        tid: 1,
        seq,
        context: context.map(|(sock, seq)| RequestContext {
            sock,
            seq,
            source: 0,
        }),
        ids: Default::default(),
    }
}

/// A request as the parser reports it, on connection `sock` with `role`.
fn started(
    sock_id: u64,
    role: Role,
    index: u64,
    seq: u32,
    context: Option<(u64, u32)>,
    extra_header: &str,
) -> StartedRequest {
    let head = format!("GET /x HTTP/1.1\r\nHost: h\r\n{extra_header}\r\n");
    let mut parser = Http1.parser(0, tracer_common::Source::Socket);
    let mut out = Vec::new();
    parser.feed(
        Stream::Requests,
        head.as_bytes(),
        0,
        meta(seq, context),
        &mut out,
    );
    let Some(Output::Request(start)) = out.into_iter().next() else {
        panic!("no request start")
    };
    let (local, remote) = match role {
        Role::Client => (CLIENT, SERVER),
        _ => (SERVER, CLIENT),
    };
    StartedRequest {
        start: RequestStart { index, ..start },
        connection: ConnectionInfo {
            sock_id,
            role,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            comm: *b"t\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        },
    }
}

/// What finishing `request`'s exchange gives: its span's ids, or none when
/// the application's SDK reports the span.
fn completed(correlator: &mut Correlator, request: &StartedRequest) -> Option<SpanIds> {
    completion(correlator, request).map(|completion| completion.ids)
}

fn completion(correlator: &mut Correlator, request: &StartedRequest) -> Option<Completion> {
    correlator.exchange_completed(&CompletedExchange {
        exchange: Exchange {
            index: request.start.index,
            request_start: request.start.start,
            response_end: request.start.start,
            description: Box::new(Http1Exchange {
                request: std::sync::Arc::new(RequestHead::new("GET", "/x", 1, std::iter::empty())),
                response: None,
                request_body_bytes: 0,
                response_body_bytes: 0,
                secure: false,
            }),
        },
        connection: request.connection.clone(),
    })
}

/// Starts `request` in a process whose threads tell which request a call is for.
fn start(correlator: &mut Correlator, request: &StartedRequest) {
    correlator.request_started(request, false);
}

/// `request` as written with a header the kernel injected, carrying these ids.
fn injected(mut request: StartedRequest, trace_id: [u8; 16], span_id: [u8; 8]) -> StartedRequest {
    request.start.start.ids = crate::events::KernelIds {
        trace_id: Some(trace_id),
        injected_span_id: Some(span_id),
    };
    request
}

fn ids_of(correlator: &mut Correlator, request: &StartedRequest) -> SpanIds {
    completed(correlator, request).expect("the agent makes this span")
}

#[test]
fn server_span_is_child_of_the_client_span_on_its_connection() {
    let mut c = Correlator::new();
    let client = started(1, Role::Client, 0, 1000, None, "");
    let server = started(2, Role::Server, 0, 1000, None, "");
    start(&mut c, &client);
    start(&mut c, &server);
    let (client_ids, server_ids) = (ids_of(&mut c, &client), ids_of(&mut c, &server));
    assert_eq!(server_ids.trace_id, client_ids.trace_id);
    assert_eq!(server_ids.parent_span_id, Some(client_ids.span_id));
    assert_eq!(client_ids.parent_span_id, None);
    assert_eq!(
        c.links,
        LinkCounts {
            by_connection: 1,
            roots: 1,
            ..Default::default()
        }
    );
    assert_eq!(c.waiting(), 0);
}

/// The callee's read can be seen before the caller's write returns (the
/// caller was preempted): the server request is adopted when its caller
/// shows up, and spans it already caused follow it into the caller's trace.
#[test]
fn server_seen_before_its_caller_is_adopted() {
    let mut c = Correlator::new();
    let server = started(2, Role::Server, 0, 1000, None, "");
    start(&mut c, &server);
    let nested_call = started(3, Role::Client, 0, 5, Some((2, 1000)), "");
    start(&mut c, &nested_call);
    let client = started(1, Role::Client, 0, 1000, None, "");
    start(&mut c, &client);
    let client_ids = ids_of(&mut c, &client);
    let server_ids = ids_of(&mut c, &server);
    let nested_ids = ids_of(&mut c, &nested_call);
    assert_eq!(server_ids.parent_span_id, Some(client_ids.span_id));
    assert_eq!(server_ids.trace_id, client_ids.trace_id);
    assert_eq!(nested_ids.parent_span_id, Some(server_ids.span_id));
    assert_eq!(nested_ids.trace_id, client_ids.trace_id);
    // Only the nested call waits for a server (this test has none for it).
    assert_eq!(c.waiting(), 1);
    assert_eq!((c.links.by_connection, c.links.adopted), (1, 1));
}

/// The server answered before its caller's event came (a TLS library's
/// write returns after the server's reply): its span, held back a batch,
/// still gets its caller, and the span of the call it made its trace.
#[test]
fn server_ended_before_its_caller_is_adopted_while_held() {
    let mut c = Correlator::new();
    let server = started(2, Role::Server, 0, 1000, None, "");
    start(&mut c, &server);
    let nested_call = started(3, Role::Client, 0, 5, Some((2, 1000)), "");
    start(&mut c, &nested_call);
    let nested_ids = ids_of(&mut c, &nested_call);
    let server_ids = ids_of(&mut c, &server);
    let mut held = [span(nested_ids), span(server_ids)];
    let client = started(1, Role::Client, 0, 1000, None, "");
    start(&mut c, &client);
    let client_ids = ids_of(&mut c, &client);
    assert!(c.retraced(), "spans built before need settling");
    c.settle(&mut held);
    c.settled();
    assert!(!c.retraced());
    let [nested, server] = held;
    assert_eq!(server.parent_span_id, Some(client_ids.span_id));
    assert_eq!(server.trace_id, client_ids.trace_id);
    assert_eq!(nested.parent_span_id, Some(server_ids.span_id));
    assert_eq!(nested.trace_id, client_ids.trace_id);
    assert_eq!((c.links.by_connection, c.links.adopted), (1, 1));
}

/// The common case (a client that starts the trace, a server on its
/// connection): no adoption can change either span, so neither waits.
#[test]
fn spans_no_adoption_can_change_leave_at_once() {
    let mut c = Correlator::new();
    let client = started(1, Role::Client, 0, 1000, None, "");
    let server = started(2, Role::Server, 0, 1000, None, "");
    start(&mut c, &client);
    start(&mut c, &server);
    let server_done = completion(&mut c, &server).unwrap();
    let client_done = completion(&mut c, &client).unwrap();
    assert_eq!((server_done.wait, client_done.wait), (Wait::No, Wait::No));
}

/// While a server request is in progress, a call it makes can still move
/// its trace (`join_wire_trace`): the spans of that trace wait until it ends.
#[test]
fn spans_wait_while_a_server_request_of_their_trace_is_in_progress() {
    let mut c = Correlator::new();
    let client = started(1, Role::Client, 0, 1000, None, "");
    let server = started(2, Role::Server, 0, 1000, None, "");
    let nested_call = started(3, Role::Client, 0, 5, Some((2, 1000)), "");
    for request in [&client, &server, &nested_call] {
        start(&mut c, request);
    }
    let call = completion(&mut c, &nested_call).unwrap();
    assert_eq!(call.wait, Wait::WhileTraceLive);
    assert!(c.quiesced().is_empty());
    assert_eq!(completion(&mut c, &server).unwrap().wait, Wait::No);
    assert_eq!(c.quiesced(), [call.ids.trace_id], "its spans may leave now");
    assert_eq!(completion(&mut c, &client).unwrap().wait, Wait::No);
    assert!(c.live_traces.is_empty(), "every count went back to zero");
}

/// An orphan that ended waits for its caller; the spans of its subtree
/// wait while it is in progress, and still do once its caller renamed the
/// trace (the count follows the rename).
#[test]
fn orphans_and_their_subtrees_wait_until_adopted() {
    let mut c = Correlator::new();
    let orphan = started(2, Role::Server, 0, 1000, None, "");
    start(&mut c, &orphan);
    let first_call = started(3, Role::Client, 0, 5, Some((2, 1000)), "");
    let second_call = started(4, Role::Client, 0, 7, Some((2, 1000)), "");
    start(&mut c, &first_call);
    start(&mut c, &second_call);
    assert_eq!(
        completion(&mut c, &first_call).unwrap().wait,
        Wait::WhileTraceLive
    );
    let caller = started(1, Role::Client, 0, 1000, None, "");
    start(&mut c, &caller);
    let second = completion(&mut c, &second_call).unwrap();
    assert!(
        second.wait == Wait::WhileTraceLive,
        "its trace has a server request in progress"
    );
    let adopted = completion(&mut c, &orphan).unwrap();
    assert_eq!(adopted.ids.trace_id, second.ids.trace_id);
    assert_eq!(adopted.wait, Wait::No, "adopted already");
    assert_eq!(completion(&mut c, &caller).unwrap().wait, Wait::No);
    assert!(c.live_traces.is_empty(), "the count moved with the trace");

    let ended_orphan = started(5, Role::Server, 0, 2000, None, "");
    start(&mut c, &ended_orphan);
    assert_eq!(
        completion(&mut c, &ended_orphan).unwrap().wait,
        Wait::ForCaller
    );
}

/// `request` as if its caller were at `caller` (and no longer on loopback).
fn from(mut request: StartedRequest, caller: &str) -> StartedRequest {
    request.connection.remote = caller.parse().unwrap();
    request.connection.local = "10.0.0.1:8080".parse().unwrap();
    request
}

/// A server request whose caller is not at one of the node's addresses
/// has no caller here that could show up late: it is no orphan, and its
/// trace's spans leave once it ends. One from an address a traced
/// connection has as its own end still waits.
#[test]
fn a_request_from_off_the_node_is_no_orphan() {
    let mut c = Correlator::on_node(["10.0.0.1".parse().unwrap()]);
    let remote = from(
        started(2, Role::Server, 0, 1000, None, ""),
        "192.0.2.7:40000",
    );
    start(&mut c, &remote);
    assert!(c.orphans.is_empty());
    let done = completion(&mut c, &remote).unwrap();
    assert_eq!(done.wait, Wait::No);
    assert_eq!(c.quiesced(), [done.ids.trace_id]);

    let container = from(
        started(3, Role::Server, 0, 1000, None, ""),
        "10.0.0.2:40000",
    );
    start(&mut c, &container);
    assert!(c.orphans.is_empty(), "10.0.0.2 is not known yet");
    completion(&mut c, &container);
    c.local_addresses_seen(&["10.0.0.2".parse().unwrap()]);
    let orphan = from(
        started(4, Role::Server, 0, 1000, None, ""),
        "10.0.0.2:40001",
    );
    start(&mut c, &orphan);
    assert_eq!(completion(&mut c, &orphan).unwrap().wait, Wait::ForCaller);

    let unknown_node = Correlator::new();
    assert!(unknown_node.node.may_be_local("192.0.2.7".parse().unwrap()));
}

/// A span with `ids` (what `settle` looks at).
fn span(ids: SpanIds) -> Span {
    Span {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        name: "GET /x".into(),
        kind: crate::spans::SpanKind::Server,
        start_unix_ns: 1,
        end_unix_ns: 2,
        attributes: Vec::new(),
        status: crate::spans::SpanStatus::Unset,
        protocol: &crate::protocols::http1::FACTS,
        process: std::sync::Arc::new(crate::process::ProcessInfo {
            pid: 1,
            service_name: "s".into(),
            executable_name: "s".into(),
            container_id: None,
            pod: None,
            team: "unowned".into(),
            go: false,
        }),
        tid: 1,
    }
}

/// A different sequence number is a different request: no link.
#[test]
fn sequence_numbers_must_match() {
    let mut c = Correlator::new();
    start(&mut c, &started(1, Role::Client, 0, 1000, None, ""));
    let server = started(2, Role::Server, 0, 1001, None, "");
    start(&mut c, &server);
    assert_eq!(ids_of(&mut c, &server).parent_span_id, None);
    assert_eq!(c.waiting(), 1);
}

#[test]
fn client_span_is_child_of_the_request_the_kernel_named() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, "");
    start(&mut c, &inbound);
    let outbound = started(8, Role::Client, 0, 9000, Some((7, 500)), "");
    start(&mut c, &outbound);
    let (inbound_ids, outbound_ids) = (ids_of(&mut c, &inbound), ids_of(&mut c, &outbound));
    assert_eq!(outbound_ids.trace_id, inbound_ids.trace_id);
    assert_eq!(outbound_ids.parent_span_id, Some(inbound_ids.span_id));
    assert_eq!(c.links.by_context, 1);
}

/// No context from the kernel (it could not tell which request a call is
/// for): the call starts a trace of its own.
#[test]
fn no_context_gives_no_link() {
    let mut c = Correlator::new();
    start(&mut c, &started(7, Role::Server, 0, 500, None, ""));
    let outbound = started(8, Role::Client, 0, 1, None, "");
    start(&mut c, &outbound);
    assert_eq!(ids_of(&mut c, &outbound).parent_span_id, None);
}

/// On a keep-alive connection the kernel's sequence number picks the request.
#[test]
fn context_sequence_number_picks_the_request_on_its_connection() {
    let mut c = Correlator::new();
    let first = started(7, Role::Server, 0, 500, None, "");
    let second = started(7, Role::Server, 1, 900, None, "");
    start(&mut c, &first);
    start(&mut c, &second);
    let call = started(8, Role::Client, 0, 1, Some((7, 500)), "");
    start(&mut c, &call);
    let first_ids = c.active[&(7, 0)].ids;
    assert_eq!(
        ids_of(&mut c, &call).parent_span_id,
        Some(first_ids.span_id)
    );
    let call = started(8, Role::Client, 1, 90, Some((7, 900)), "");
    start(&mut c, &call);
    let second_ids = c.active[&(7, 1)].ids;
    assert_eq!(
        ids_of(&mut c, &call).parent_span_id,
        Some(second_ids.span_id)
    );
}

/// HTTP/2 streams on one connection: the kernel names the read (its first
/// byte), the stream's HEADERS may start later in it. A call is linked while
/// its stream is the only one in flight there, never when two are.
#[test]
fn a_multiplexed_connection_names_a_request_only_while_it_is_alone() {
    let stream = |index, seq| {
        let mut request = started(7, Role::Server, index, seq, None, "");
        request.start.offset = 9; // after a WINDOW_UPDATE frame
        request.start.multiplexed = true;
        request
    };
    let mut c = Correlator::new();
    let first = stream(0, 500);
    start(&mut c, &first);
    let call = started(8, Role::Client, 0, 1, Some((7, 500)), "");
    start(&mut c, &call);
    let first_ids = c.active[&(7, 0)].ids;
    assert_eq!(
        ids_of(&mut c, &call).parent_span_id,
        Some(first_ids.span_id)
    );
    start(&mut c, &stream(1, 900));
    let call = started(8, Role::Client, 1, 90, Some((7, 500)), "");
    start(&mut c, &call);
    assert_eq!(ids_of(&mut c, &call).parent_span_id, None);
    assert_eq!(c.links.context_not_found, 1);
}

/// With `--inject-traceparent` the kernel's ids went on the wire: the
/// inbound root takes the kernel's trace id, the call the injected ids.
#[test]
fn injected_ids_are_the_spans_ids() {
    let mut c = Correlator::new();
    let mut inbound = started(7, Role::Server, 0, 500, None, "");
    inbound.start.start.ids.trace_id = Some([3; 16]);
    start(&mut c, &inbound);
    let call = injected(
        started(8, Role::Client, 0, 1, Some((7, 500)), ""),
        [3; 16],
        [4; 8],
    );
    start(&mut c, &call);
    let inbound_ids = ids_of(&mut c, &inbound);
    let call_ids = ids_of(&mut c, &call);
    assert_eq!(inbound_ids.trace_id, [3; 16]);
    assert_eq!(
        call_ids,
        SpanIds {
            trace_id: [3; 16],
            span_id: [4; 8],
            parent_span_id: Some(inbound_ids.span_id),
        }
    );
}

const TRACEPARENT: &str =
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n";

#[test]
fn inbound_traceparent_is_continued() {
    let mut c = Correlator::new();
    let server = started(2, Role::Server, 0, 1000, None, TRACEPARENT);
    start(&mut c, &server);
    let ids = ids_of(&mut c, &server);
    assert_eq!(ids.trace_id[..2], [0x4b, 0xf9]);
    assert_eq!(ids.parent_span_id.unwrap()[..2], [0x00, 0xf0]);
}

/// The application's own SDK put a traceparent on its outbound request: the
/// SDK reports that call's span, so the agent makes none, and the callee's
/// server span hangs under the span the header names.
#[test]
fn outbound_traceparent_of_the_sdk_replaces_the_client_span() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, "");
    start(&mut c, &inbound);
    let outbound = started(8, Role::Client, 0, 42, Some((7, 500)), TRACEPARENT);
    let downstream = started(9, Role::Server, 0, 42, None, TRACEPARENT);
    start(&mut c, &outbound);
    start(&mut c, &downstream);
    assert_eq!(completed(&mut c, &outbound), None);
    let downstream_ids = ids_of(&mut c, &downstream);
    assert_eq!(downstream_ids.trace_id[..2], [0x4b, 0xf9]);
    assert_eq!(downstream_ids.parent_span_id.unwrap()[..2], [0x00, 0xf0]);
    assert_eq!(c.links.left_to_sdk, 1);
    assert_eq!(c.links.by_connection, 1);
    // Nothing about the call is left behind.
    assert!(c.sdk_calls.is_empty() && c.active.len() == 1);
}

/// A proxy passes its caller's traceparent on unchanged: that header is not
/// an SDK's, so the proxy's client span is made, under its server span.
#[test]
fn forwarded_traceparent_keeps_the_proxys_client_span() {
    for kernel_context in [Some((7, 500)), None] {
        let mut c = Correlator::new();
        let inbound = started(7, Role::Server, 0, 500, None, TRACEPARENT);
        start(&mut c, &inbound);
        let outbound = started(8, Role::Client, 0, 42, kernel_context, TRACEPARENT);
        start(&mut c, &outbound);
        let outbound_ids = ids_of(&mut c, &outbound);
        let inbound_ids = ids_of(&mut c, &inbound);
        assert_eq!(c.links.left_to_sdk, 0);
        assert_eq!(outbound_ids.trace_id, inbound_ids.trace_id);
        assert_eq!(outbound_ids.parent_span_id, Some(inbound_ids.span_id));
    }
}

/// The callee on this node read the request before the agent saw its
/// caller write it: the caller's SDK header is still the SDK's, not one
/// the caller forwarded from the callee's own request.
#[test]
fn a_call_read_before_it_was_seen_written_is_not_forwarded_from_itself() {
    let mut c = Correlator::new();
    let callee = started(9, Role::Server, 0, 42, None, TRACEPARENT);
    start(&mut c, &callee);
    let call = started(8, Role::Client, 0, 42, None, TRACEPARENT);
    start(&mut c, &call);
    assert_eq!(completed(&mut c, &call), None, "the SDK reports this call");
    assert_eq!(c.links.left_to_sdk, 1);
    let callee_ids = ids_of(&mut c, &callee);
    assert_eq!(callee_ids.parent_span_id.unwrap()[..2], [0x00, 0xf0]);
}

/// A proxy forwards its caller's header, and its callee on this node reads
/// the call before the agent sees the proxy write it: the callee, first
/// linked by the header, becomes the proxy's client span's child when that
/// comes, in the header's trace.
#[test]
fn a_callee_seen_before_its_proxy_call_is_adopted_by_it() {
    let mut c = Correlator::new();
    let proxy_in = started(7, Role::Server, 0, 500, None, TRACEPARENT);
    start(&mut c, &proxy_in);
    let callee = started(9, Role::Server, 0, 42, None, TRACEPARENT);
    start(&mut c, &callee);
    let proxy_call = started(8, Role::Client, 0, 42, Some((7, 500)), TRACEPARENT);
    start(&mut c, &proxy_call);
    let call_ids = ids_of(&mut c, &proxy_call);
    let callee_ids = ids_of(&mut c, &callee);
    assert_eq!(callee_ids.parent_span_id, Some(call_ids.span_id));
    assert_eq!(callee_ids.trace_id[..2], [0x4b, 0xf9]);
    assert_eq!(call_ids.trace_id, callee_ids.trace_id);
    assert_eq!(
        (c.links.by_header, c.links.adopted),
        (1, 1),
        "{:?}",
        c.links
    );
}

/// Without the kernel's context, a forwarded header names its request only
/// while one request being served carries it.
#[test]
fn forwarded_traceparent_on_two_requests_links_neither() {
    let mut c = Correlator::new();
    for sock in [7, 17] {
        start(
            &mut c,
            &started(sock, Role::Server, 0, 500, None, TRACEPARENT),
        );
    }
    let outbound = started(8, Role::Client, 0, 42, None, TRACEPARENT);
    start(&mut c, &outbound);
    assert_eq!(ids_of(&mut c, &outbound).parent_span_id, None);
    assert_eq!(c.links.left_to_sdk, 0);
}

#[test]
fn sequence_space_wraps() {
    assert!(seq_at_or_after(5, 5));
    assert!(seq_at_or_after(10, u32::MAX - 10));
    assert!(!seq_at_or_after(u32::MAX - 10, 10));
}

#[test]
fn closed_connections_are_forgotten() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, "");
    start(&mut c, &inbound);
    c.connection_closed(7);
    let outbound = started(8, Role::Client, 0, 1, Some((7, 500)), "");
    start(&mut c, &outbound);
    assert_eq!(ids_of(&mut c, &outbound).parent_span_id, None);
}

/// The kernel injected a header with a trace id of its own into a call made
/// for a request whose trace id it had not read: a request that started its
/// own trace moves to the wire's trace, with the spans it caused so far.
#[test]
fn a_root_request_joins_the_trace_its_call_put_on_the_wire() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, "");
    start(&mut c, &inbound);
    let earlier_call = started(9, Role::Client, 0, 1, Some((7, 500)), "");
    start(&mut c, &earlier_call);
    let outbound = injected(
        started(8, Role::Client, 0, 42, Some((7, 500)), ""),
        [5; 16],
        [6; 8],
    );
    start(&mut c, &outbound);
    let outbound_ids = ids_of(&mut c, &outbound);
    let inbound_ids = ids_of(&mut c, &inbound);
    let earlier_ids = ids_of(&mut c, &earlier_call);
    assert_eq!(outbound_ids.trace_id, [5; 16]);
    assert_eq!(outbound_ids.span_id, [6; 8]);
    assert_eq!(inbound_ids.trace_id, [5; 16]);
    assert_eq!(earlier_ids.trace_id, [5; 16]);
    assert_eq!(outbound_ids.parent_span_id, Some(inbound_ids.span_id));
}

/// The caller's event comes after its callee's request went off the node
/// in the wire's trace: the late caller joins that trace (the next node's
/// spans are in it), not the other way round.
#[test]
fn a_late_caller_joins_the_trace_its_callee_put_on_the_wire() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, "");
    start(&mut c, &inbound);
    let outbound = injected(
        started(8, Role::Client, 0, 42, Some((7, 500)), ""),
        [5; 16],
        [6; 8],
    );
    start(&mut c, &outbound);
    let caller = started(6, Role::Client, 0, 500, None, "");
    start(&mut c, &caller);
    let caller_ids = ids_of(&mut c, &caller);
    let inbound_ids = ids_of(&mut c, &inbound);
    let outbound_ids = ids_of(&mut c, &outbound);
    assert_eq!(inbound_ids.parent_span_id, Some(caller_ids.span_id));
    assert_eq!(outbound_ids.trace_id, [5; 16]);
    assert_eq!(inbound_ids.trace_id, [5; 16]);
    assert_eq!(caller_ids.trace_id, [5; 16]);
}

/// A request that continues a trace received in a header keeps it: that
/// trace's ids were made elsewhere.
#[test]
fn a_request_with_an_upstream_trace_keeps_it() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, TRACEPARENT);
    start(&mut c, &inbound);
    let outbound = injected(
        started(8, Role::Client, 0, 42, Some((7, 500)), ""),
        [5; 16],
        [6; 8],
    );
    start(&mut c, &outbound);
    let outbound_ids = ids_of(&mut c, &outbound);
    let inbound_ids = ids_of(&mut c, &inbound);
    assert_eq!(inbound_ids.trace_id[..2], [0x4b, 0xf9]);
    assert_eq!(outbound_ids.trace_id, inbound_ids.trace_id);
}

/// In a Go program the thread that writes a call does not tell which request
/// it is for (goroutines move between threads): a context from the thread is
/// not used, and the call is unlinked, counted; one from the goroutine is.
#[test]
fn go_calls_are_linked_by_goroutine_only() {
    let mut c = Correlator::new();
    let inbound = started(7, Role::Server, 0, 500, None, "");
    c.request_started(&inbound, true);
    let by_thread = started(8, Role::Client, 0, 1, Some((7, 500)), "");
    c.request_started(&by_thread, true);
    assert_eq!(ids_of(&mut c, &by_thread).parent_span_id, None);
    assert_eq!(c.links.go_calls_unlinked, 1);
    assert_eq!(c.links.by_context, 0);

    let mut by_goroutine = started(9, Role::Client, 0, 1, Some((7, 500)), "");
    if let Some(context) = by_goroutine.start.start.context.as_mut() {
        context.source = tracer_common::event::CONTEXT_FROM_GOROUTINE;
    }
    c.request_started(&by_goroutine, true);
    let parent = ids_of(&mut c, &inbound);
    assert_eq!(
        ids_of(&mut c, &by_goroutine).parent_span_id,
        Some(parent.span_id)
    );
    assert_eq!(c.links.go_calls_unlinked, 1);
    assert_eq!(c.links.by_context, 1);
}

/// A trace this agent starts is told apart from one received in a header
/// by its id's tag, with no set of every trace started here; one the kernel
/// started is remembered.
#[test]
fn traces_started_here_are_recognised() {
    let mut correlator = Correlator::new();
    let local = correlator.local_root().trace_id;
    assert!(correlator.is_local_trace(&local));
    assert!(correlator.local_traces.is_empty(), "no set entry per root");
    let received: [u8; 16] = [0x4b; 16];
    assert!(!correlator.is_local_trace(&received));
    correlator.started_here(received);
    assert!(correlator.is_local_trace(&received));
    // Another agent's (another key's) ids are not this one's.
    assert!(!Correlator::new().is_local_trace(&local));
}
