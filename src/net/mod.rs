//! Sockets: the byte streams both sides talk over, and how the agent dials the gateway.
pub mod dial;
pub mod stream;

pub use stream::Stream;
