//! Keep-alive pools of HTTP/1.1 connections: the one place that decides whether a connection
//! may carry another request.
//!
//! A shared proxy serves many callers over a few pooled connections, so one connection
//! carries Alice's request, then Bob's. If the far end ever sends more than its answer's
//! framing said (a body after `HEAD`, `204` or `304`, bytes past `Content-Length`, something
//! after the last chunk, a second final answer), those bytes wait on the socket, and the next
//! request on it would read them as its own answer: Bob would get Alice's answer, fetched with
//! Alice's credentials. HAProxy and nginx never reuse a connection that holds unread bytes or
//! whose answer was not framed exactly, and neither does this pool.
//!
//! **The invariant.** A connection carries the next request only if
//! 1. the previous answer ended exactly where its framing said: the caller puts it back only
//!    then (a body dropped before its end takes its connection with it),
//! 2. nothing was read past that end: [`Reusable::leftover`] is zero at [`Pool::checkin`],
//! 3. nothing is waiting on the socket, and it is not closed, at the moment of reuse:
//!    [`Reusable::probe`] is asked in [`Pool::checkout`] before **every** reuse, however short
//!    the idle time.
//!
//! A connection that fails any of these is closed, never reused, and a warning names the far
//! end's fault once. The request then goes on a fresh connection.
//!
//! Bytes still on their way when the probe looks cannot be told from the answer to the
//! request sent next. So a pool is keyed by more than where a connection goes when callers
//! differ: the agent's key holds a digest of the request's credentials, so such bytes can
//! only reach a request of the same caller.

use std::fmt::Display;
use std::io;
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a look at an idle connection's socket found, without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Nothing to read and not closed: the connection may carry a request.
    Quiet,
    /// The far end closed (or reset) it: the usual end of an idle keep-alive connection.
    Closed,
    /// Bytes no request asked for are waiting: the far end broke its framing.
    Unsolicited,
}

/// A connection a [`Pool`] can keep.
pub(crate) trait Reusable {
    /// Where the connection goes: what a request looks it up by.
    type Key: Display;
    fn key(&self) -> &Self::Key;
    /// Bytes read from the connection and not used by the answer (buffered past its end).
    fn leftover(&self) -> usize;
    /// Looks at the socket without waiting.
    fn probe(&mut self) -> Probe;
}

/// Looks at a TCP socket without waiting and without taking anything off it: one
/// `recv(MSG_PEEK | MSG_DONTWAIT)`.
pub(crate) fn probe_tcp(tcp: &TcpStream) -> Probe {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    match socket2::SockRef::from(tcp).recv_with_flags(&mut byte, flags) {
        Ok(0) => Probe::Closed,
        Ok(_) => Probe::Unsolicited,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Probe::Quiet,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Probe::Quiet,
        Err(_) => Probe::Closed,
    }
}

/// How many connections a pool keeps, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// An idle connection older than this is closed instead of reused.
    pub(crate) max_age: Duration,
    /// Most idle connections kept for one key (the oldest goes first).
    pub(crate) per_key: usize,
    /// Most idle connections kept in all.
    pub(crate) total: usize,
}

struct Idle<C> {
    connection: C,
    since: Instant,
}

/// Idle connections by where they go, shared by every thread.
pub(crate) struct Pool<C> {
    /// Who is at the far end, for the warning: "VCS", "replica".
    peer: &'static str,
    limits: Limits,
    idle: Mutex<Vec<Idle<C>>>,
}

impl<C: Reusable> Pool<C>
where
    C::Key: PartialEq,
{
    pub(crate) fn new(peer: &'static str, limits: Limits) -> Pool<C> {
        Pool {
            peer,
            limits,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently kept connection to `key` that passes the probe; connections that
    /// fail it, or are too old, are closed on the way.
    pub(crate) fn checkout<Q: ?Sized>(&self, key: &Q) -> Option<C>
    where
        C::Key: PartialEq<Q>,
    {
        loop {
            let Idle {
                mut connection,
                since,
            } = self.take(key)?;
            if since.elapsed() > self.limits.max_age {
                continue;
            }
            match connection.probe() {
                Probe::Quiet => return Some(connection),
                Probe::Closed => {}
                Probe::Unsolicited => log::warn!(target: "keepalive",
                    "{} at {} sent bytes on an idle connection after a complete answer (its framing was wrong); the connection is closed, not reused",
                    self.peer, connection.key()
                ),
            }
        }
    }

    /// Keeps `connection`, whose answer was read to exactly where its framing ended, for the
    /// next request to where it goes; one holding bytes past that end is closed instead.
    pub(crate) fn checkin(&self, connection: C) {
        let leftover = connection.leftover();
        if leftover > 0 {
            log::warn!(target: "keepalive",
                "{} at {} sent {leftover} bytes past the end of an answer's framing; the connection is closed, not reused",
                self.peer, connection.key()
            );
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let key = connection.key();
        let same = idle.iter().filter(|i| i.connection.key() == key).count();
        if same >= self.limits.per_key {
            if let Some(oldest) = idle.iter().position(|i| i.connection.key() == key) {
                idle.remove(oldest);
            }
        } else if idle.len() >= self.limits.total && !idle.is_empty() {
            idle.remove(0);
        }
        idle.push(Idle {
            connection,
            since: Instant::now(),
        });
    }

    fn take<Q: ?Sized>(&self, key: &Q) -> Option<Idle<C>>
    where
        C::Key: PartialEq<Q>,
    {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let at = idle.iter().rposition(|i| *i.connection.key() == *key)?;
        Some(idle.remove(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    struct Conn {
        key: String,
        tcp: TcpStream,
        leftover: usize,
    }

    fn conn(key: &str, tcp: TcpStream, leftover: usize) -> Conn {
        Conn {
            key: key.into(),
            tcp,
            leftover,
        }
    }

    impl Reusable for Conn {
        type Key = String;
        fn key(&self) -> &String {
            &self.key
        }
        fn leftover(&self) -> usize {
            self.leftover
        }
        fn probe(&mut self) -> Probe {
            probe_tcp(&self.tcp)
        }
    }

    /// Waits (at most 5 s) for loopback to deliver what the other end did.
    fn wait(mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "the condition never held");
            std::thread::yield_now();
        }
    }

    fn pool() -> Pool<Conn> {
        Pool::new(
            "test peer",
            Limits {
                max_age: Duration::from_secs(60),
                per_key: 2,
                total: 3,
            },
        )
    }

    #[test]
    fn a_probe_tells_quiet_from_bytes_waiting_from_closed() {
        let (client, mut server) = pair();
        assert_eq!(probe_tcp(&client), Probe::Quiet);
        server.write_all(b"x").unwrap();
        wait(|| probe_tcp(&client) != Probe::Quiet);
        assert_eq!(probe_tcp(&client), Probe::Unsolicited);
        // Peeking took nothing off the socket.
        assert_eq!(probe_tcp(&client), Probe::Unsolicited);
        let (client, server) = pair();
        drop(server);
        wait(|| probe_tcp(&client) != Probe::Quiet);
        assert_eq!(probe_tcp(&client), Probe::Closed);
    }

    #[test]
    fn a_connection_with_bytes_past_its_answer_is_never_kept() {
        let pool = pool();
        let (tcp, _server) = pair();
        pool.checkin(conn("a", tcp, 1));
        assert!(pool.checkout("a").is_none());
    }

    #[test]
    fn bytes_arriving_while_idle_close_the_connection_at_once() {
        let pool = pool();
        let (tcp, mut server) = pair();
        pool.checkin(conn("a", tcp, 0));
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        let waiting = pool.idle.lock().unwrap()[0].connection.tcp.try_clone();
        let waiting = waiting.unwrap();
        wait(|| probe_tcp(&waiting) != Probe::Quiet);
        assert!(pool.checkout("a").is_none());
        let (tcp, _server) = pair();
        pool.checkin(conn("a", tcp, 0));
        assert!(pool.checkout("a").is_some(), "a quiet one is reused");
    }

    #[test]
    fn limits_per_key_and_in_all_hold() {
        let pool = pool();
        let mut servers = Vec::new();
        for key in ["a", "a", "a", "b", "c"] {
            let (tcp, server) = pair();
            servers.push(server);
            pool.checkin(conn(key, tcp, 0));
        }
        let idle = pool.idle.lock().unwrap();
        assert_eq!(idle.len(), 3);
        assert_eq!(idle.iter().filter(|i| i.connection.key == "a").count(), 1);
    }
}
