//! The one accept loop every port uses: a thread per connection, so a slow or silent peer
//! never holds up another, and a failed accept (out of file descriptors) is logged and
//! retried shortly instead of ending the port.
//!
//! Each port has a ceiling on connections served at once. At the ceiling the loop stops
//! accepting until one ends: further peers wait in the kernel's accept backlog instead of
//! each costing a thread, so a flood of connections cannot exhaust the process's threads or
//! memory. Reaching the ceiling is logged, at most once a minute.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Serves `listener` on a background thread named `port`; each connection runs `handle` on a
/// thread of its own named `connection`, at most `max_open` at once.
pub fn spawn(
    listener: TcpListener,
    port: &str,
    connection: &str,
    max_open: usize,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let handle = Arc::new(handle);
    let open = Arc::new(OpenCount::default());
    let (port_name, connection) = (port.to_string(), connection.to_string());
    std::thread::Builder::new()
        .name(port_name.clone())
        .spawn(move || loop {
            open.wait_below(max_open, &port_name);
            match listener.accept() {
                Ok((tcp, _)) => {
                    let (handle, slot) = (Arc::clone(&handle), OpenSlot::take(&open));
                    let spawned =
                        std::thread::Builder::new()
                            .name(connection.clone())
                            .spawn(move || {
                                let _slot = slot;
                                handle(tcp)
                            });
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

/// How often reaching the ceiling is logged, at most.
const CEILING_LOG_EVERY: Duration = Duration::from_secs(60);

/// Connections a port is serving now.
#[derive(Default)]
struct OpenCount {
    open: Mutex<usize>,
    closed: Condvar,
    last_logged: Mutex<Option<Instant>>,
}

impl OpenCount {
    /// Returns once fewer than `max` connections are open.
    fn wait_below(&self, max: usize, port: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if *open < max {
            return;
        }
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= CEILING_LOG_EVERY) {
            *last = Some(Instant::now());
            log::warn!(
                "{port}: {open} connections open, the most it serves at once; new ones wait until one ends (logged at most once a minute)"
            );
        }
        drop(last);
        while *open >= max {
            open = self
                .closed
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One open connection, counted until its thread ends (even by a panic), or until the thread
/// could not start and the slot is dropped unused.
struct OpenSlot(Arc<OpenCount>);

impl OpenSlot {
    fn take(count: &Arc<OpenCount>) -> OpenSlot {
        *count.open.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        OpenSlot(Arc::clone(count))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(PoisonError::into_inner);
        *open = open.saturating_sub(1);
        self.0.closed.notify_one();
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
}
