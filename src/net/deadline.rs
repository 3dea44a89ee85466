//! Total deadlines for blocking reads. A socket read timeout bounds one read, not a
//! conversation: a peer that sends a byte just before each timeout keeps a handshake or a
//! request head going forever, and with a ceiling on connections served at once
//! ([`super::listen`]) a few such peers would lock everyone else out. One reaper thread
//! watches the sockets that are in such a phase and shuts down any still in it at its
//! deadline, which ends the blocked read at once (no thread per watched socket).

use std::collections::BTreeMap;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The process's one reaper, started on first use.
fn reaper() -> &'static Arc<Reaper> {
    static REAPER: OnceLock<Arc<Reaper>> = OnceLock::new();
    REAPER.get_or_init(|| {
        let reaper = Arc::new(Reaper::default());
        let worker = Arc::clone(&reaper);
        // Without the thread no deadline fires, and every read is still bounded by its own
        // socket timeout: log and go on.
        if let Err(e) = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || worker.run())
        {
            log::error!("cannot start the connection reaper thread: {e}");
        }
        reaper
    })
}

/// A connection that phases with a total deadline can be put under: it holds a second handle
/// of the socket (one duplicated descriptor per connection, so watching costs no system call
/// per request). A socket that cannot be duplicated (no descriptor left) is never cut off and
/// keeps only its per-read timeout.
pub struct Watchable(Option<Arc<TcpStream>>);

impl Watchable {
    pub(crate) fn of(tcp: &TcpStream) -> Watchable {
        Watchable(tcp.try_clone().ok().map(Arc::new))
    }

    /// Shuts the socket down if the returned watch still lives after `limit`.
    pub(crate) fn watch(&self, limit: Duration) -> Watch {
        self.watch_to(limit, Shutdown::Both)
    }

    /// Shuts the socket's reading side down (a blocked read returns at once; an answer can
    /// still be written) if the returned watch still lives after `limit`.
    pub(crate) fn watch_reads(&self, limit: Duration) -> Watch {
        self.watch_to(limit, Shutdown::Read)
    }

    fn watch_to(&self, limit: Duration, how: Shutdown) -> Watch {
        let reaper = reaper();
        let key = self.0.as_ref().map(|socket| reaper.add(socket, limit, how));
        Watch { key }
    }
}

#[derive(Default)]
struct Reaper {
    watched: Mutex<Watched>,
    changed: Condvar,
}

#[derive(Default)]
struct Watched {
    next_id: u64,
    /// Keyed by deadline first, so the earliest is the first entry.
    sockets: BTreeMap<(Instant, u64), (Arc<TcpStream>, Shutdown)>,
    /// When the reaper wakes next on its own; `None` while it waits for work.
    wakes_at: Option<Instant>,
}

/// A socket being watched; dropping it ends the watch.
pub(crate) struct Watch {
    key: Option<(Instant, u64)>,
}

impl Reaper {
    fn add(&self, socket: &Arc<TcpStream>, limit: Duration, how: Shutdown) -> (Instant, u64) {
        let mut watched = self.lock();
        watched.next_id += 1;
        let key = (Instant::now() + limit, watched.next_id);
        watched.sockets.insert(key, (Arc::clone(socket), how));
        // The reaper sleeps until its next deadline; wake it only for an earlier one (deadlines
        // mostly come in order, so a busy port rarely wakes it).
        let earlier = watched.wakes_at.is_none_or(|at| key.0 < at);
        drop(watched);
        if earlier {
            self.changed.notify_one();
        }
        key
    }

    fn remove(&self, key: &(Instant, u64)) {
        self.lock().sockets.remove(key);
    }

    fn run(&self) {
        let mut watched = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = watched.sockets.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (socket, how) = entry.remove();
                let _ = socket.shutdown(how);
            }
            watched.wakes_at = watched.sockets.keys().next().map(|(deadline, _)| *deadline);
            watched = match watched.wakes_at {
                Some(at) => {
                    self.changed
                        .wait_timeout(watched, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(watched)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            reaper().remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_trickling_peer_is_cut_off_at_the_deadline() {
        let (mut client, mut server) = pair();
        // Each read would wait up to 10 s; the peer sends a byte every 50 ms for 6 s.
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let trickle = std::thread::spawn(move || {
            for _ in 0..120 {
                if client.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let _watch = Watchable::of(&server).watch(Duration::from_millis(300));
        let mut byte = [0u8; 1];
        while matches!(server.read(&mut byte), Ok(1)) {}
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(4),
            "cut off after {took:?}"
        );
        trickle.join().unwrap();
    }

    #[test]
    fn an_ended_watch_leaves_the_socket_alone() {
        let (mut client, mut server) = pair();
        drop(Watchable::of(&server).watch(Duration::from_millis(50)));
        // Once a later deadline has fired, the ended watch's has passed too.
        let (_probe_client, mut probe) = pair();
        probe
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _probe_watch = Watchable::of(&probe).watch(Duration::from_millis(100));
        let mut byte = [0u8; 1];
        assert!(
            matches!(probe.read(&mut byte), Ok(0)),
            "the probe was not cut off"
        );
        client.write_all(b"ok").unwrap();
        let mut two = [0u8; 2];
        server.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"ok");
    }
}
