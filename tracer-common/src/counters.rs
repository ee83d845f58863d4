//! Kernel-side counters, one slot each in the per-CPU `COUNTERS` array.
//! Ids are never reused; add new ones at the end.

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Events written to the ring buffer.
    EventsSent = 0,
    /// Events lost because the ring buffer was full.
    EventsLostRingFull = 1,
    /// Socket writes not traced because the thread's in-flight slot could
    /// not be made (the kernel out of memory, or its task storage busy on
    /// that CPU).
    InFlightMapFull = 2,
    /// A kernel struct read (`bpf_probe_read_kernel`) failed.
    KernelReadFailed = 3,
    /// Copying a payload from user memory failed (the event is still sent,
    /// with no captured bytes).
    PayloadReadFailed = 4,
    /// Bytes of socket traffic beyond the captured prefix (counted, not copied).
    BytesNotCaptured = 5,
    /// Syscalls on sockets the agent asked to skip (not a protocol it parses).
    SkippedIgnoredSockets = 6,
    /// Outbound requests tied to the one inbound request their thread was
    /// free to work on.
    CallsLinked = 7,
    /// Outbound requests left unlinked: their thread had several inbound
    /// requests it could be working on.
    CallsAmbiguous = 8,
    /// `traceparent` headers added to outbound requests.
    TraceparentInjected = 9,
    /// Outbound requests that could not get a header (the kernel refused to
    /// grow the message, or the socket map was full).
    InjectFailed = 10,
    /// Socket syscalls that were already blocked when the agent attached,
    /// traced from their exit (their arguments read from the thread's
    /// registers).
    BlockedAtAttachTraced = 11,
    /// Outbound requests of Go processes left unlinked: the goroutine that
    /// wrote them serves no request that is still open, and was not started
    /// by one that does.
    GoCallsWithoutContext = 12,
    /// Reading the running goroutine of a Go process failed.
    GoroutineReadFailed = 13,
    /// Goroutines that took over the request of the goroutine that started them.
    GoroutinesFollowed = 14,
    /// Outbound requests of Node.js processes running the agent's script
    /// that it did not tie to an open inbound request (left unlinked).
    ScriptCallsWithoutContext = 15,
    /// asyncio tasks that took over the request of the task that created them.
    TasksFollowed = 16,
    /// Pool threads that took a request with a work item (Python thread pools).
    HandOffsFollowed = 17,
    /// Requests (inbound, or calls) left out whole because the ring buffer
    /// was filling faster than the agent read it (`Config::overload_bytes`).
    RequestsDroppedOverload = 18,
    /// asyncio tasks that did not take over their creator's request: a
    /// library (the standard library, `site-packages`) created them, or the
    /// creating code could not be read. Their calls follow the thread rule.
    TasksNotFollowed = 19,
    /// TLS library reads and writes whose socket was not known (no socket
    /// syscall during the call or an earlier one on the same session, no
    /// socket write after an earlier call of a memory-buffer library):
    /// their plaintext is not sent.
    TlsSocketUnknown = 20,
    /// TLS library calls not followed because the thread's slot for its
    /// call in progress could not be made (as `InFlightMapFull`).
    TlsCallsMapFull = 21,
    /// Socket syscalls on TLS connections whose plaintext the TLS probes
    /// send: the ciphertext is skipped.
    SkippedTlsCiphertext = 22,
    /// TLS library calls not followed because a new session could not be
    /// kept in the map of sessions.
    TlsSessionsMapFull = 23,
}

impl Counter {
    pub const ALL: [Counter; 24] = [
        Counter::EventsSent,
        Counter::EventsLostRingFull,
        Counter::InFlightMapFull,
        Counter::KernelReadFailed,
        Counter::PayloadReadFailed,
        Counter::BytesNotCaptured,
        Counter::SkippedIgnoredSockets,
        Counter::CallsLinked,
        Counter::CallsAmbiguous,
        Counter::TraceparentInjected,
        Counter::InjectFailed,
        Counter::BlockedAtAttachTraced,
        Counter::GoCallsWithoutContext,
        Counter::GoroutineReadFailed,
        Counter::GoroutinesFollowed,
        Counter::ScriptCallsWithoutContext,
        Counter::TasksFollowed,
        Counter::HandOffsFollowed,
        Counter::RequestsDroppedOverload,
        Counter::TasksNotFollowed,
        Counter::TlsSocketUnknown,
        Counter::TlsCallsMapFull,
        Counter::SkippedTlsCiphertext,
        Counter::TlsSessionsMapFull,
    ];
    /// Slots in the `COUNTERS` map.
    pub const SLOTS: u32 = Self::ALL.len() as u32;

    pub const fn name(self) -> &'static str {
        match self {
            Counter::EventsSent => "events_sent",
            Counter::EventsLostRingFull => "events_lost_ring_full",
            Counter::InFlightMapFull => "in_flight_map_full",
            Counter::KernelReadFailed => "kernel_read_failed",
            Counter::PayloadReadFailed => "payload_read_failed",
            Counter::BytesNotCaptured => "bytes_not_captured",
            Counter::SkippedIgnoredSockets => "skipped_ignored_sockets",
            Counter::CallsLinked => "calls_linked",
            Counter::CallsAmbiguous => "calls_ambiguous",
            Counter::TraceparentInjected => "traceparent_injected",
            Counter::InjectFailed => "inject_failed",
            Counter::BlockedAtAttachTraced => "blocked_at_attach_traced",
            Counter::GoCallsWithoutContext => "go_calls_without_context",
            Counter::GoroutineReadFailed => "goroutine_read_failed",
            Counter::GoroutinesFollowed => "goroutines_followed",
            Counter::ScriptCallsWithoutContext => "script_calls_without_context",
            Counter::TasksFollowed => "tasks_followed",
            Counter::HandOffsFollowed => "hand_offs_followed",
            Counter::RequestsDroppedOverload => "requests_dropped_overload",
            Counter::TasksNotFollowed => "tasks_not_followed",
            Counter::TlsSocketUnknown => "tls_socket_unknown",
            Counter::TlsCallsMapFull => "tls_calls_map_full",
            Counter::SkippedTlsCiphertext => "skipped_tls_ciphertext",
            Counter::TlsSessionsMapFull => "tls_sessions_map_full",
        }
    }
}
