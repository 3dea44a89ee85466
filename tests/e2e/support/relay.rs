//! A TCP relay between agent and gateway that can freeze: it stops forwarding on every
//! connection open at that moment without closing anything, like a peer that vanished
//! without a FIN (a half-open connection). New connections are forwarded normally.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Relay {
    pub addr: SocketAddr,
    /// Connections opened before this generation are frozen.
    frozen_before: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl Relay {
    pub fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let frozen_before = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let (f, g) = (Arc::clone(&frozen_before), Arc::clone(&generation));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let id = g.fetch_add(1, Ordering::SeqCst);
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let f = Arc::clone(&f);
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if id < f.load(Ordering::SeqCst) {
                                // Frozen: hold both sockets open, forward nothing.
                                std::thread::sleep(Duration::from_secs(60));
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Relay {
            addr,
            frozen_before,
            generation,
        }
    }

    /// Freezes every connection open now.
    pub fn freeze_current(&self) {
        self.frozen_before
            .store(self.generation.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}
