//! Protocol parsers: pure functions and state machines over captured bytes,
//! no I/O and no eBPF, so they are unit-tested and fuzzed in isolation.

pub mod http1;
