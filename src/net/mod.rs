//! Sockets: the byte streams both sides talk over, TLS for them, outbound proxies, how the
//! agent dials the gateway, and how the gateway accepts and bounds connections.
pub mod deadline;
pub mod dial;
pub mod keepalive;
pub mod listen;
pub mod proxy;
pub mod rate;
pub mod stream;
pub mod tcp;
pub mod tls;

pub use stream::Stream;
