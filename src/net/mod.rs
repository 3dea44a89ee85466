//! Sockets: the byte streams both sides talk over, TLS for them, outbound proxies, how the
//! agent dials the gateway, and how the gateway accepts and bounds connections.
pub(crate) mod deadline;
pub mod dial;
pub(crate) mod keepalive;
pub(crate) mod listen;
pub(crate) mod proxy;
pub(crate) mod rate;
pub(crate) mod stream;
pub(crate) mod tcp;
pub mod tls;

pub use stream::Stream;
