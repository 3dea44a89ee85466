//! The one accept loop every port uses: a thread per connection, so a slow or silent peer
//! never holds up another, and a failed accept (out of file descriptors) is logged and
//! retried shortly instead of ending the port.
//!
//! Each port has a ceiling on connections served at once, so a flood of connections cannot
//! exhaust the process's threads or memory. Idle peers must not be able to fill it either:
//! connections say when they are idle (no request head yet, or keep-alive between requests,
//! [`Presence::idle`]) and when they work ([`Presence::busy`]). At the ceiling the loop closes
//! the connection idle longest to admit the new one, as nginx reuses idle keep-alive
//! connections when it runs out; only when every connection is working does it stop
//! accepting until one ends, leaving further peers in the kernel's accept backlog. One peer
//! address may hold at most [`Limits::per_peer`] connections: at that ceiling its own
//! connection idle longest is closed to admit the new one, and only when all of them work is
//! the new one closed at once.
//! Reaching either limit is logged at most once a minute.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How many connections a port serves at once, and how many of them one peer address may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) open: usize,
    pub(crate) per_peer: usize,
}

/// Serves `listener` on a background thread named `port`; each connection runs `handle` on a
/// thread of its own named `connection`, at most `max_open` at once, none of them ever
/// counted idle (for ports whose connections do not say).
pub(crate) fn spawn(
    listener: TcpListener,
    port: &str,
    connection: &str,
    max_open: usize,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let limits = Limits {
        open: max_open,
        per_peer: max_open,
    };
    serve(listener, port, connection, limits, false, move |tcp, _| {
        handle(tcp)
    })
}

/// [`spawn`] with a limit per peer address; connections never count idle.
pub(crate) fn spawn_limited(
    listener: TcpListener,
    port: &str,
    connection: &str,
    limits: Limits,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> std::io::Result<()> {
    serve(listener, port, connection, limits, false, move |tcp, _| {
        handle(tcp)
    })
}

/// [`spawn`] for connections that say when they are idle, with a limit per peer address.
pub(crate) fn spawn_with(
    listener: TcpListener,
    port: &str,
    connection: &str,
    limits: Limits,
    handle: impl Fn(TcpStream, &Presence) + Send + Sync + 'static,
) -> std::io::Result<()> {
    serve(listener, port, connection, limits, true, handle)
}

/// The accept loop; new connections count as idle from the start when `start_idle`.
fn serve(
    listener: TcpListener,
    port: &str,
    connection: &str,
    limits: Limits,
    start_idle: bool,
    handle: impl Fn(TcpStream, &Presence) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let handle = Arc::new(handle);
    let table = Arc::new(Table::default());
    let (port_name, connection) = (port.to_string(), connection.to_string());
    std::thread::Builder::new()
        .name(port_name.clone())
        .spawn(move || loop {
            table.make_room(limits.open, &port_name);
            match listener.accept() {
                Ok((tcp, peer)) => {
                    let admitted = table.enter(&tcp, peer.ip(), limits.per_peer, &port_name);
                    let Some(presence) = admitted else { continue };
                    if !start_idle {
                        presence.busy();
                    }
                    let handle = Arc::clone(&handle);
                    let spawned = std::thread::Builder::new()
                        .name(connection.clone())
                        .spawn(move || handle(tcp, &presence));
                    if let Err(e) = spawned {
                        log::warn!("{port_name}: cannot start a thread for a connection: {e}");
                    }
                }
                Err(e) => {
                    log::warn!("{port_name}: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
        .map(|_| ())
}

/// How often reaching a limit is logged, at most.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The connections a port is serving now.
#[derive(Default)]
struct Table {
    state: Mutex<State>,
    closed: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: HashMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
    ceiling_logged: Option<Instant>,
    peer_logged: Option<Instant>,
}

struct Entry {
    peer: IpAddr,
    /// A second handle of the socket, to close it when evicted (`None`: cannot be evicted).
    socket: Option<TcpStream>,
    /// Since when it is idle; `None` while it works.
    idle_since: Option<Instant>,
}

impl State {
    /// Closes the connection idle longest among those `which` picks; whether there was one.
    /// Working connections are never closed.
    fn evict_idlest(&mut self, which: impl Fn(&Entry) -> bool) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, e)| e.socket.is_some() && which(e))
            .filter_map(|(id, e)| e.idle_since.map(|since| (since, *id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        if let Some(socket) = self.open.get(&id).and_then(|e| e.socket.as_ref()) {
            // Its thread's next read fails at once and the thread ends.
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.remove(id);
        true
    }

    fn remove(&mut self, id: u64) {
        if let Some(entry) = self.open.remove(&id) {
            if let Some(n) = self.per_peer.get_mut(&entry.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_peer.remove(&entry.peer);
                }
            }
        }
    }
}

fn due(last: &mut Option<Instant>) -> bool {
    let due = last.is_none_or(|at| at.elapsed() >= LIMIT_LOG_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once fewer than `max` connections are open: closes the one idle longest, or
    /// waits until one ends when none is idle.
    fn make_room(&self, max: usize, port: &str) {
        let mut state = self.lock();
        while state.open.len() >= max {
            if state.evict_idlest(|_| true) {
                continue;
            }
            if due(&mut state.ceiling_logged) {
                log::warn!(
                    "{port}: {} connections open and working, the most it serves at once; new ones wait until one ends (logged at most once a minute)",
                    state.open.len()
                );
            }
            state = self
                .closed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Counts a new connection in, idle; `None` (and the connection is closed) when its
    /// peer address already holds `per_peer`.
    fn enter(
        self: &Arc<Self>,
        tcp: &TcpStream,
        peer: IpAddr,
        per_peer: usize,
        port: &str,
    ) -> Option<Presence> {
        let mut state = self.lock();
        let held = state.per_peer.get(&peer).copied().unwrap_or(0);
        // At its own ceiling an address's idlest connection makes room, as at the port's:
        // idle sockets from one address (every client behind one NAT) never lock it out.
        if held >= per_peer && !state.evict_idlest(|e| e.peer == peer) {
            if due(&mut state.peer_logged) {
                log::warn!(
                    "{port}: {peer} holds {held} connections, all working, the most one address may; more are closed at once (logged at most once a minute)"
                );
            }
            return None;
        }
        state.next_id += 1;
        let id = state.next_id;
        *state.per_peer.entry(peer).or_insert(0) += 1;
        let entry = Entry {
            peer,
            socket: tcp.try_clone().ok(),
            idle_since: Some(Instant::now()),
        };
        state.open.insert(id, entry);
        Some(Presence {
            table: Arc::clone(self),
            id,
        })
    }
}

/// One open connection, counted until its thread ends (even by a panic), or until the thread
/// could not start and it is dropped unused, or until it is evicted.
pub(crate) struct Presence {
    table: Arc<Table>,
    id: u64,
}

impl Presence {
    /// Waiting for a request head: may be closed to admit a new connection.
    pub(crate) fn idle(&self) {
        self.set_idle(Some(Instant::now()));
    }

    /// Serving a request: never closed to admit another.
    pub(crate) fn busy(&self) {
        self.set_idle(None);
    }

    fn set_idle(&self, since: Option<Instant>) {
        let mut state = self.table.lock();
        if let Some(entry) = state.open.get_mut(&self.id) {
            entry.idle_since = since;
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
        self.table.closed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::mpsc;

    #[test]
    fn at_the_ceiling_new_connections_wait_until_one_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, served) = mpsc::channel();
        spawn(listener, "test-port", "test-conn", 2, move |mut tcp| {
            let mut byte = [0u8; 1];
            // Serve: tell the test, then hold the connection until the peer closes it.
            let _ = tcp.write_all(b"+");
            let _ = accepted.send(());
            while matches!(tcp.read(&mut byte), Ok(n) if n > 0) {}
        })
        .unwrap();
        let greeted = |tcp: &mut TcpStream| {
            let mut byte = [0u8; 1];
            tcp.read_exact(&mut byte).is_ok() && byte == *b"+"
        };
        let mut first = TcpStream::connect(addr).unwrap();
        let mut second = TcpStream::connect(addr).unwrap();
        assert!(greeted(&mut first) && greeted(&mut second));
        served.recv().unwrap();
        served.recv().unwrap();

        // The third connects (kernel backlog) but is not served while two are open.
        let mut third = TcpStream::connect(addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(!greeted(&mut third), "served beyond the ceiling");

        drop(first);
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(greeted(&mut third), "not served after a connection ended");
        drop(second);
    }

    /// Connects and waits for the server's greeting byte.
    fn greeted(addr: std::net::SocketAddr) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).unwrap();
        tcp
    }

    #[test]
    fn at_the_ceiling_the_connection_idle_longest_makes_room() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            open: 2,
            per_peer: 2,
        };
        spawn_with(
            listener,
            "test-port",
            "test-conn",
            limits,
            |mut tcp, presence| {
                // Greets, then idles (like keep-alive between requests) until closed.
                let _ = tcp.write_all(b"+");
                presence.idle();
                let mut byte = [0u8; 1];
                while matches!(tcp.read(&mut byte), Ok(n) if n > 0) {}
            },
        )
        .unwrap();
        let mut first = greeted(addr);
        let _second = greeted(addr);
        // Both idle: a third is admitted at once, and the first (idle longest) is closed.
        let _third = greeted(addr);
        let mut byte = [0u8; 1];
        assert!(
            matches!(first.read(&mut byte), Ok(0) | Err(_)),
            "the idle connection was not closed"
        );
    }

    /// A port where each connection is greeted, then idle (or working when `busy`) until its
    /// peer closes.
    fn one_per_address(busy: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            open: 10,
            per_peer: 1,
        };
        spawn_with(
            listener,
            "test-port",
            "test-conn",
            limits,
            move |mut tcp, presence| {
                if busy {
                    presence.busy();
                }
                let _ = tcp.write_all(b"+");
                let mut byte = [0u8; 1];
                while matches!(tcp.read(&mut byte), Ok(n) if n > 0) {}
            },
        )
        .unwrap();
        addr
    }

    fn closed(tcp: &mut TcpStream) -> bool {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut byte = [0u8; 1];
        matches!(tcp.read(&mut byte), Ok(0) | Err(_))
    }

    #[test]
    fn one_address_whose_connections_work_holds_at_most_its_share() {
        let addr = one_per_address(true);
        let _first = greeted(addr);
        let mut second = TcpStream::connect(addr).unwrap();
        assert!(
            closed(&mut second),
            "a second connection from the same address was served"
        );
    }

    #[test]
    fn an_idle_connection_of_the_address_makes_room_for_its_new_one() {
        let addr = one_per_address(false);
        let mut first = greeted(addr);
        let _second = greeted(addr);
        assert!(closed(&mut first), "the idle one stayed open");
    }
}
