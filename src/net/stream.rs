//! One type for every connection this program holds, so WebSocket and HTTP code are written
//! once whatever the transport underneath: plain TCP, or TLS as client (agent → gateway) or
//! server (gateway ports). The TLS variants are boxed: a rustls connection is large and the
//! plain case should not pay for it. Timeouts and shutdown always act on the TCP socket
//! underneath, so the read-tick and keepalive logic is the same with and without TLS.

use super::keepalive::{probe_tcp, Probe};
use rustls::{ClientConnection, ConnectionCommon, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

pub enum Stream {
    Plain(TcpStream),
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath, for timeouts and shutdown.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::TlsClient(s) => &s.sock,
            Stream::TlsServer(s) => &s.sock,
        }
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.tcp().set_nonblocking(nonblocking)
    }

    /// Looks at an idle connection without waiting: whether it is closed, quiet, or holds
    /// bytes no request asked for. Over TLS, what waits on the socket is taken in: a
    /// `close_notify` is a close, application data is unsolicited, and anything else (a
    /// session ticket, a record only partly arrived) counts as closed too, since the rest of
    /// a partial record cannot be told from the start of an answer.
    pub(crate) fn probe(&mut self) -> Probe {
        match self {
            Stream::Plain(tcp) => probe_tcp(tcp),
            Stream::TlsClient(s) => probe_tls(&mut s.conn, &s.sock),
            Stream::TlsServer(s) => probe_tls(&mut s.conn, &s.sock),
        }
    }

    /// Ends a connection without losing what was last written to it. Closing a socket that
    /// still holds unread bytes (a request body refused without being read) makes the kernel
    /// send RST instead of FIN, and a peer that gets RST may throw away the answer it has
    /// not read yet. So this says goodbye first (TLS `close_notify`, then FIN), then reads and
    /// drops whatever the peer still sends until it closes, for at most `linger` and
    /// [`LINGER_BYTES`]: the same "lingering close" web servers do.
    pub(crate) fn close_lingering(&mut self, linger: Duration) {
        match self {
            Stream::Plain(_) => {}
            Stream::TlsClient(s) => s.conn.send_close_notify(),
            Stream::TlsServer(s) => s.conn.send_close_notify(),
        }
        // A peer that stopped reading must not hold this past `linger` either.
        if self.tcp().set_write_timeout(Some(linger)).is_ok() {
            let _ = self.flush();
        }
        let mut tcp = self.tcp();
        if tcp.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + linger;
        let mut scratch = [0u8; 8192];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match tcp.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    }
}

/// [`Stream::probe`] over TLS: what rustls holds decrypted, then what waits on the socket,
/// read without waiting and decrypted.
fn probe_tls<D>(conn: &mut ConnectionCommon<D>, sock: &TcpStream) -> Probe {
    let Ok(state) = conn.process_new_packets() else {
        return Probe::Closed;
    };
    if state.plaintext_bytes_to_read() > 0 {
        return Probe::Unsolicited;
    }
    if state.peer_has_closed() {
        return Probe::Closed;
    }
    match probe_tcp(sock) {
        Probe::Unsolicited => {}
        other => return other,
    }
    if sock.set_nonblocking(true).is_err() {
        return Probe::Closed;
    }
    let mut reader = sock;
    let read = conn.read_tls(&mut reader);
    if sock.set_nonblocking(false).is_err() {
        return Probe::Closed;
    }
    match (read, conn.process_new_packets()) {
        (Ok(0), _) | (Err(_), _) | (_, Err(_)) => Probe::Closed,
        (Ok(_), Ok(state)) if state.plaintext_bytes_to_read() > 0 => Probe::Unsolicited,
        (Ok(_), Ok(_)) => Probe::Closed,
    }
}

/// Most bytes [`Stream::close_lingering`] reads and drops before it closes anyway.
pub(crate) const LINGER_BYTES: usize = 16 * 1024 * 1024;

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::TlsClient(s) => s.read(buf),
            Stream::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::TlsClient(s) => s.write(buf),
            Stream::TlsServer(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            Stream::TlsClient(s) => s.write_vectored(bufs),
            Stream::TlsServer(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::TlsClient(s) => s.flush(),
            Stream::TlsServer(s) => s.flush(),
        }
    }
}

/// Writes `first` then `second` with as few system calls as the stream allows (one, for a
/// plain socket): a small answer's head and body leave in one packet.
pub(crate) fn write_both<W: Write>(out: &mut W, first: &[u8], second: &[u8]) -> io::Result<()> {
    write_both_with(out, first, second, |_| Ok(()))
}

/// [`write_both`], telling `progress` how many bytes each system call took; an error it
/// returns ends the write.
pub(crate) fn write_both_with<W: Write>(
    out: &mut W,
    first: &[u8],
    second: &[u8],
    mut progress: impl FnMut(usize) -> io::Result<()>,
) -> io::Result<()> {
    let mut slices = [io::IoSlice::new(first), io::IoSlice::new(second)];
    let mut remaining: &mut [io::IoSlice<'_>] = &mut slices;
    io::IoSlice::advance_slices(&mut remaining, 0);
    while !remaining.is_empty() {
        match out.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                progress(n)?;
                io::IoSlice::advance_slices(&mut remaining, n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether an I/O error only means "nothing arrived in time".
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod write_tests {
    use super::*;

    /// A writer that takes at most 3 bytes a call, to exercise partial vectored writes.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_both_writes_everything_in_order() {
        let mut out = Trickle(Vec::new());
        write_both(&mut out, b"HTTP/1.1 200 OK\r\n\r\n", b"body").unwrap();
        assert_eq!(out.0, b"HTTP/1.1 200 OK\r\n\r\nbody");
        let mut out = Trickle(Vec::new());
        write_both(&mut out, b"", b"").unwrap();
        write_both(&mut out, b"", b"x").unwrap();
        assert_eq!(out.0, b"x");
    }
}
