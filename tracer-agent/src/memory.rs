//! Giving memory the agent freed back to the system. The allocator
//! (mimalloc, `main.rs`) keeps freed pages mapped for reuse; after a burst
//! that will not come back soon (start-up, thousands of idle connections
//! parked) the agent's resident memory would stay at the burst's size.

/// Returns freed memory to the system now (a few milliseconds: call it
/// after a burst, not per event).
pub fn release_freed() {
    // SAFETY: mi_collect has no preconditions; with another global
    // allocator (unit tests) it has nothing to release.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
