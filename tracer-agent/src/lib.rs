//! The tracer agent as a library: one module per stage of the pipeline
//! (see `pipeline` for how they are wired).
//!
//! loader → events → connections → protocols → spans → correlation →
//! export / metrics / viewer

pub mod clock;
pub mod connections;
pub mod correlation;
pub mod events;
pub mod export;
pub mod http_client;
pub mod kubernetes;
pub mod loader;
pub mod memory;
pub mod metrics;
pub mod owners;
pub mod pipeline;
pub mod process;
pub mod protocols;
pub mod spans;
pub mod stats;
pub mod viewer;
