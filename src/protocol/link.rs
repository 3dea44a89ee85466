//! [`Link`]: one framed connection between gateway and agent, a WebSocket that speaks in
//! [`Frame`](super::Frame)s.
//!
//! Every loop that waits for the peer needs the same four things: read one message, keep
//! pings and pongs out of its way, tell a read timeout (the socket's short tick) from a broken connection, and remember when
//! the peer was last heard from (a ping or pong counts: tungstenite answers pings itself). The
//! link owns them, so a caller only says what it waits for: [`Link::recv`] for one tick,
//! [`Link::recv_timeout`] for a frame within a limit. The tick is the socket's read timeout,
//! set by whoever made the socket.
//!
//! A message comes back [`Received`], not decoded: its caller decodes it with
//! [`Received::frame`] into a frame that borrows from it (the headers of a head are not
//! copied), and keeps it as long as it uses the frame.

use super::{Control, Received};
use crate::net::stream::is_timeout;
use bytes::BytesMut;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// Nothing but pings and pongs within the limit given to [`Link::recv_timeout`].
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The WebSocket is closed or broken.
    #[error(transparent)]
    Socket(#[from] tungstenite::Error),
}

/// The most a link keeps allocated for writing control frames between them.
const JSON_KEPT: usize = 16 * 1024;

/// A WebSocket read and written in frames.
pub struct Link<S> {
    socket: WebSocket<S>,
    last_heard: Instant,
    /// Where control frames are written ([`Control::encode_into`]): reused frame after frame.
    json: BytesMut,
}

impl<S: Read + Write> Link<S> {
    pub(crate) fn new(socket: WebSocket<S>) -> Link<S> {
        Link {
            socket,
            last_heard: Instant::now(),
            json: BytesMut::new(),
        }
    }

    /// Waits one tick: `Ok(None)` when the tick passed with no message (or only a ping or pong).
    pub(crate) fn recv(&mut self) -> Result<Option<Received>, LinkError> {
        match self.socket.read() {
            Ok(message) => {
                self.last_heard = Instant::now();
                Ok(Received::new(message))
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for a message, at most about `limit` (checked at each tick).
    pub(crate) fn recv_timeout(&mut self, limit: Duration) -> Result<Received, LinkError> {
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

    /// Waits for a message for as long as the peer keeps talking: gives up once it has been
    /// silent for `limit`, counted from this call or from the last thing it sent (a ping
    /// included), whichever is later. `Timeout` carries how long it was silent.
    pub(crate) fn recv_while_heard(&mut self, limit: Duration) -> Result<Received, LinkError> {
        let since = Instant::now();
        loop {
            if let Some(frame) = self.recv()? {
                return Ok(frame);
            }
            let silent = self.last_heard.max(since).elapsed();
            if silent >= limit {
                return Err(LinkError::Timeout(silent));
            }
        }
    }

    /// Reads what already arrived, for a socket in non-blocking mode: the first message
    /// among at most `max`, `None` when nothing (or only pings and pongs) was waiting.
    /// Bounded, so a chatty peer cannot hold the reader.
    pub(crate) fn recv_waiting(
        &mut self,
        max: usize,
    ) -> Result<Option<Received>, tungstenite::Error> {
        for _ in 0..max {
            match self.socket.read() {
                Ok(message) => {
                    self.last_heard = Instant::now();
                    if let Some(received) = Received::new(message) {
                        return Ok(Some(received));
                    }
                }
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// How long since the peer sent anything at all.
    pub(crate) fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Counts the peer as heard from now (the caller just finished an exchange with it).
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Sends a control frame at once.
    pub(crate) fn send(&mut self, control: &Control<'_>) -> tungstenite::Result<()> {
        let message = self.encode(control);
        self.socket.send(message)
    }

    /// Puts a control frame in the write buffer; it leaves with the next [`Link::send`].
    pub(crate) fn queue_control(&mut self, control: &Control<'_>) -> tungstenite::Result<()> {
        let message = self.encode(control);
        self.socket.write(message)
    }

    /// Encodes into the kept buffer; after a frame larger than [`JSON_KEPT`] (a head with
    /// many or long headers) the buffer starts afresh, so an idle link never holds one.
    fn encode(&mut self, control: &Control<'_>) -> Message {
        let message = control.encode_into(&mut self.json);
        if message.len() > JSON_KEPT {
            // The buffer would take the frame's allocation back once the frame is sent.
            self.json = BytesMut::new();
        }
        message
    }

    /// Sends a message at once (flushing whatever [`Link::queue`] left in the buffer).
    pub(crate) fn send_message(&mut self, message: Message) -> tungstenite::Result<()> {
        self.socket.send(message)
    }

    /// Puts a message in the write buffer; it leaves with the next [`Link::send`].
    pub(crate) fn queue(&mut self, message: Message) -> tungstenite::Result<()> {
        self.socket.write(message)
    }

    /// Starts the closing handshake.
    pub(crate) fn close(&mut self) -> tungstenite::Result<()> {
        self.socket.close(None)
    }

    /// Writes out whatever is buffered (a close frame after [`Link::close`]).
    pub fn flush(&mut self) -> tungstenite::Result<()> {
        self.socket.flush()
    }

    pub(crate) fn get_ref(&self) -> &S {
        self.socket.get_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;
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
        let received = link.recv_timeout(Duration::from_secs(10)).expect("end");
        assert!(matches!(received.frame(), Ok(Frame::Control(Control::End))));
        assert!(link.silent_for() < Duration::from_secs(10));
        far.send(Message::text("not a frame")).expect("text");
        let received = link.recv_timeout(Duration::from_secs(10)).expect("text");
        assert!(received.frame().is_err(), "a protocol violation");
        drop(far);
        assert!(matches!(
            link.recv_timeout(Duration::from_secs(10)),
            Err(LinkError::Socket(_))
        ));
    }

    #[test]
    fn silence_counts_from_the_last_thing_heard() {
        let (mut link, mut far) = pair();
        let limit = Duration::from_millis(1000);
        assert!(matches!(
            link.recv_while_heard(limit),
            Err(LinkError::Timeout(silent)) if silent >= limit
        ));
        // A ping now and then keeps the wait going past the limit.
        let talker = std::thread::spawn(move || {
            for _ in 0..15 {
                std::thread::sleep(Duration::from_millis(100));
                far.send(Message::Ping(Default::default())).expect("ping");
            }
            far.send(Control::End.to_message()).expect("end");
            far
        });
        let since = Instant::now();
        let received = link.recv_while_heard(limit).expect("end");
        assert!(matches!(received.frame(), Ok(Frame::Control(Control::End))));
        assert!(since.elapsed() > limit, "pings extended the wait");
        drop(talker.join().expect("talker"));
    }

    #[test]
    fn a_huge_control_frame_leaves_no_huge_buffer_on_the_link() {
        let (mut link, mut far) = pair();
        let long = "v".repeat(200 * 1024);
        let head = Control::Error {
            id: "r".into(),
            kind: crate::protocol::ErrorKind::Denied,
            message: long.as_str().into(),
            rule: None,
            project: None,
        };
        link.send(&head).expect("huge head");
        let Message::Text(text) = far.read().expect("read") else {
            panic!("not a text frame")
        };
        assert!(text.as_str().len() > 200 * 1024, "the frame went whole");
        // The next frame would reclaim the whole allocation of the huge one, were it kept.
        link.send(&Control::End).expect("end");
        assert!(matches!(far.read().expect("read"), Message::Text(_)));
        assert!(
            link.json.capacity() <= JSON_KEPT,
            "{}",
            link.json.capacity()
        );
    }

    #[test]
    fn waiting_messages_are_read_without_waiting_for_more() {
        let (mut link, mut far) = pair();
        assert!(matches!(link.recv_waiting(8), Ok(None)), "nothing waiting");
        far.send(Message::Ping(Default::default())).expect("ping");
        far.send(Control::Draining.to_message()).expect("draining");
        far.send(Control::End.to_message()).expect("end");
        let first = wait_for_message(&mut link);
        assert!(matches!(
            first.frame(),
            Ok(Frame::Control(Control::Draining))
        ));
        let next = link.recv_waiting(8).expect("read").expect("end waiting");
        assert!(matches!(next.frame(), Ok(Frame::Control(Control::End))));
        drop(far);
        assert!(link.recv_waiting(8).is_err(), "a broken peer");
    }

    /// The peer's messages may take a moment to arrive on loopback.
    fn wait_for_message(link: &mut Link<TcpStream>) -> Received {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(received) = link.recv_waiting(8).expect("read") {
                return received;
            }
        }
        panic!("no frame within 10 s");
    }
}
