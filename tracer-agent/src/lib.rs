pub mod events;
pub mod loader;
pub mod protocols;
pub mod stats;
