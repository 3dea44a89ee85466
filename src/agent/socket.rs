//! One slot's WebSocket to the gateway and the ways it ends: what the slot loop and the
//! request it serves share.

use crate::net::Stream;
use crate::protocol::link::{Link, LinkError};

/// One stream's connection to the gateway.
pub(crate) type Socket = Link<Stream>;

/// Why a stream ended.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The gateway closed it (after our drain notice, or its own shutdown).
    Closed,
    /// The connection broke or the peer broke the protocol.
    Lost(String),
    /// The gateway closed the stream to cancel a request: not a failure, dial again at once.
    Cancelled,
    /// The stream reached its maximum age and was handed back: dial again at once.
    Retired,
}

impl From<LinkError> for StreamEnd {
    fn from(e: LinkError) -> StreamEnd {
        match e {
            LinkError::Socket(e) => e.into(),
            other => StreamEnd::Lost(other.to_string()),
        }
    }
}

impl From<tungstenite::Error> for StreamEnd {
    fn from(e: tungstenite::Error) -> StreamEnd {
        match e {
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                StreamEnd::Closed
            }
            other => StreamEnd::Lost(other.to_string()),
        }
    }
}
