//! Where spans go. Each exporter takes batches of spans in order and is
//! flushed before the agent exits.

pub mod file;
pub mod otlp;
pub mod stdout;

use crate::spans::Span;

pub trait Exporter: Send {
    fn export(&mut self, spans: &[Span]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}
