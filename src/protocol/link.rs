//! [`Link`]: one framed connection between gateway and agent, a WebSocket that speaks in
//! [`Frame`]s.
//!
//! Every loop that waits for the peer needs the same four things: read one message, decode it,
//! tell a read timeout (the socket's short tick) from a broken connection, and remember when
//! the peer was last heard from (a ping or pong counts: tungstenite answers pings itself). The
//! link owns them, so a caller only says what it waits for: [`Link::recv`] for one tick,
//! [`Link::recv_timeout`] for a frame within a limit. The tick is the socket's read timeout,
//! set by whoever made the socket.

use super::{decode, Control, Frame, ProtocolError};
use crate::net::stream::is_timeout;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nothing but pings and pongs within the limit given to [`Link::recv_timeout`].
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The WebSocket is closed or broken.
    #[error(transparent)]
    Socket(#[from] tungstenite::Error),
}

/// A WebSocket read and written in frames.
pub struct Link<S> {
    socket: WebSocket<S>,
    last_heard: Instant,
}

impl<S: Read + Write> Link<S> {
    pub fn new(socket: WebSocket<S>) -> Link<S> {
        Link {
            socket,
            last_heard: Instant::now(),
        }
    }

    /// Waits one tick: `Ok(None)` when the tick passed with no frame (or only a ping or pong).
    pub fn recv(&mut self) -> Result<Option<Frame>, LinkError> {
        match self.socket.read() {
            Ok(message) => {
                self.last_heard = Instant::now();
                Ok(decode(message)?)
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for a frame, at most about `limit` (checked at each tick).
    pub fn recv_timeout(&mut self, limit: Duration) -> Result<Frame, LinkError> {
        let since = Instant::now();
        loop {
            if let Some(frame) = self.recv()? {
                return Ok(frame);
            }
            if since.elapsed() > limit {
                return Err(LinkError::Timeout(limit));
            }
        }
    }

    /// How long since the peer sent anything at all.
    pub fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Counts the peer as heard from now (the caller just finished an exchange with it).
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Sends a control frame at once.
    pub fn send(&mut self, control: &Control) -> tungstenite::Result<()> {
        self.socket.send(control.to_message())
    }

    /// Sends a message at once (flushing whatever [`Link::queue`] left in the buffer).
    pub fn send_message(&mut self, message: Message) -> tungstenite::Result<()> {
        self.socket.send(message)
    }

    /// Puts a message in the write buffer; it leaves with the next [`Link::send`].
    pub fn queue(&mut self, message: Message) -> tungstenite::Result<()> {
        self.socket.write(message)
    }

    /// Starts the closing handshake.
    pub fn close(&mut self) -> tungstenite::Result<()> {
        self.socket.close(None)
    }

    pub fn get_ref(&self) -> &S {
        self.socket.get_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use tungstenite::protocol::Role;

    fn pair() -> (Link<TcpStream>, WebSocket<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let far = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (near, _) = listener.accept().expect("accept");
        near.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("tick");
        (
            Link::new(WebSocket::from_raw_socket(near, Role::Server, None)),
            WebSocket::from_raw_socket(far, Role::Client, None),
        )
    }

    #[test]
    fn frames_ticks_timeouts_and_broken_peers() {
        let (mut link, mut far) = pair();
        assert!(matches!(link.recv(), Ok(None)), "a tick with nothing");
        assert!(matches!(
            link.recv_timeout(Duration::from_millis(50)),
            Err(LinkError::Timeout(_))
        ));
        far.send(Message::Ping(Default::default())).expect("ping");
        far.send(Control::End.to_message()).expect("end");
        assert!(matches!(
            link.recv_timeout(Duration::from_secs(10)),
            Ok(Frame::Control(Control::End))
        ));
        assert!(link.silent_for() < Duration::from_secs(10));
        far.send(Message::text("not a frame")).expect("text");
        assert!(matches!(
            link.recv_timeout(Duration::from_secs(10)),
            Err(LinkError::Protocol(_))
        ));
        drop(far);
        assert!(matches!(
            link.recv_timeout(Duration::from_secs(10)),
            Err(LinkError::Socket(_))
        ));
    }
}
