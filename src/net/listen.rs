//! The one accept loop every port uses: a thread per connection, so a slow or silent peer
//! never holds up another, and a failed accept (out of file descriptors) is logged and
//! retried shortly instead of ending the port.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Serves `listener` on a background thread named `port`; each connection runs `handle` on a
/// thread of its own named `connection`.
pub fn spawn(
    listener: TcpListener,
    port: &str,
    connection: &str,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let handle = Arc::new(handle);
    let (port_name, connection) = (port.to_string(), connection.to_string());
    std::thread::Builder::new()
        .name(port_name.clone())
        .spawn(move || {
            for accepted in listener.incoming() {
                match accepted {
                    Ok(tcp) => {
                        let handle = Arc::clone(&handle);
                        let spawned = std::thread::Builder::new()
                            .name(connection.clone())
                            .spawn(move || handle(tcp));
                        if let Err(e) = spawned {
                            log::warn!("{port_name}: cannot start a thread for a connection: {e}");
                        }
                    }
                    Err(e) => {
                        log::warn!("{port_name}: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .map(|_| ())
}
