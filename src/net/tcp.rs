//! Opening TCP connections, for every outbound leg (gateway, VCS, proxies). Its own module so
//! that the proxy code and the dialer both use it without depending on each other.
//!
//! The error is typed: the VCS leg tells "host not found" from "refused" from "timed out" by
//! variant and [`io::ErrorKind`], never by the words of a message.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why no TCP connection could be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The name did not resolve.
    Resolve { host: String, error: io::Error },
    /// It resolved to no address at all.
    NoAddress { host: String },
    /// Every address failed; this is the last one's error.
    Connect {
        host: String,
        port: u16,
        address: SocketAddr,
        error: io::Error,
    },
}

impl ConnectError {
    /// Whether the last attempt ran out of time rather than being refused.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Connect { error, .. } if crate::net::stream::is_timeout(error))
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve { host, error } => write!(f, "cannot resolve {host}: {error}"),
            ConnectError::NoAddress { host } => write!(f, "{host} resolved to no address"),
            ConnectError::Connect {
                host,
                port,
                address,
                error,
            } => write!(f, "cannot connect to {host}:{port} ({address}): {error}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Opens a TCP connection with a timeout on each resolved address, `TCP_NODELAY` set.
pub(crate) fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let addresses = (host, port)
        .to_socket_addrs()
        .map_err(|error| ConnectError::Resolve {
            host: host.to_string(),
            error,
        })?;
    let mut last = ConnectError::NoAddress {
        host: host.to_string(),
    };
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => {
                last = ConnectError::Connect {
                    host: host.to_string(),
                    port,
                    address,
                    error,
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_port_is_a_connect_error_that_is_not_a_timeout() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let error = connect("127.0.0.1", port, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(error, ConnectError::Connect { .. }), "{error}");
        assert!(!error.is_timeout());
        assert!(error
            .to_string()
            .starts_with("cannot connect to 127.0.0.1:"));
    }
}
