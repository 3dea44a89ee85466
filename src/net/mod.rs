//! Sockets: the byte streams both sides talk over, TLS for them, outbound proxies, and how
//! the agent dials the gateway.
pub mod dial;
pub mod listen;
pub mod proxy;
pub mod stream;
pub mod tls;

pub use stream::Stream;
