//! One kept-open connection to another replica's peer port, as the keep-alive pool
//! ([`crate::net::keepalive`]) holds it, and how one is opened. A leaf of the replicas
//! folder: the client, the server and [`super::peers`] use it.

use crate::net::keepalive::{self, Probe, Reusable};
use std::io::BufReader;
use std::net::TcpStream;
use std::time::Duration;

/// The header of the peer's answer saying it had no free stream (and took nothing).
pub const BUSY: &str = "X-Vcs-Peer-Busy";

/// A kept-open connection to a peer port.
pub struct PeerConn {
    /// The peer port's address: what the connection is kept by.
    pub(crate) address: String,
    pub(crate) reader: BufReader<TcpStream>,
}

impl Reusable for PeerConn {
    type Key = String;

    fn key(&self) -> &String {
        &self.address
    }

    fn leftover(&self) -> usize {
        self.reader.buffer().len()
    }

    fn probe(&mut self) -> Probe {
        keepalive::probe_tcp(self.reader.get_ref())
    }
}

impl PeerConn {
    pub(crate) fn new(address: &str, tcp: TcpStream) -> PeerConn {
        PeerConn {
            address: address.to_string(),
            reader: BufReader::with_capacity(16 * 1024, tcp),
        }
    }

    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}

/// Opens a connection to a peer port (loopback or a private network: a second at most).
pub(crate) fn connect(address: &str) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::other("no address");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
