//! One caller and one request on the api port, as the front hands them to an exchange.
//!
//! A [`Connection`] is the connection (its own thread serves it from request head to answer) and
//! ends through one `Drop`, which closes it lingering so a last error answer is never turned
//! into a reset. A [`Job`] is a validated tunnel request, made by the front before an agent
//! stream is taken; its [`BodyStart`] is the part of the body read by then, so a caller that
//! sends slowly holds only its own thread, never a stream of the pool.

use crate::http1::{self, Framing};
use crate::net::Stream;
use crate::protocol::Headers;
use crate::protocol::MAX_CHUNK;
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// A caller's connection; its own thread serves it from request head to answer.
pub struct Connection {
    pub conn: BufReader<Stream>,
    pub peer: SocketAddr,
    /// For total deadlines on reading a request head or body start.
    pub watchable: crate::net::deadline::Watchable,
    /// `https` on an api port with TLS, else `http`: the scheme of the caller's URLs.
    pub scheme: &'static str,
}

/// How long a closing caller connection may keep sending before it is cut off.
const CALLER_LINGER: Duration = Duration::from_secs(2);

impl Drop for Connection {
    /// Every way a caller connection ends goes through here, so none of them can turn the
    /// last answer (often an error sent without reading the request body) into a reset.
    fn drop(&mut self) {
        self.conn.get_mut().close_lingering(CALLER_LINGER);
    }
}

/// One request waiting for a stream.
pub struct Job {
    pub id: String,
    pub method: String,
    /// Path and query relative to the VCS base endpoint.
    pub target: String,
    pub headers: Headers,
    pub framing: Framing,
    /// HTTP minor version of the caller, and whether it wants keep-alive.
    pub version: u8,
    pub keep_alive: bool,
    pub body: BodyStart,
    /// The base URL the caller used for the pool, passed to the agent so that URLs in
    /// answers point back through it ([`crate::protocol::Control::Request`]'s `front`).
    pub front: Option<String>,
}

/// The start of a request body, read before an agent stream is taken: all of a body up to
/// one piece ([`crate::protocol::MAX_CHUNK`]), so a caller that sends slowly holds only its
/// own thread, never a stream of the pool. A larger body goes on from `rest` while the
/// stream is held.
#[derive(Debug, Default)]
pub struct BodyStart {
    pub bytes: Vec<u8>,
    pub rest: Option<crate::http1::BodyProgress>,
}

/// `/private/<pool>` + target: the target is what follows the pool name, query included;
/// `None` when that is not a path.
pub fn tunnel_target(full: &str, pool_name: &str) -> Option<String> {
    let prefix_len = "/private/".len() + pool_name.len();
    let target = match &full[prefix_len..] {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    target.starts_with('/').then_some(target)
}

/// Reads the first piece of the request body (all of a small one) before a stream is taken;
/// sends `100 Continue` first when the caller waits for it.
pub fn read_body_start(
    caller: &mut Connection,
    framing: http1::Framing,
    send_continue: bool,
) -> std::io::Result<BodyStart> {
    if framing == http1::Framing::Empty {
        return Ok(BodyStart::default());
    }
    if send_continue {
        let out = caller.conn.get_mut();
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    let capacity = match framing {
        http1::Framing::Length(n) => usize::try_from(n).unwrap_or(MAX_CHUNK).min(MAX_CHUNK),
        _ => 8 * 1024,
    };
    let mut bytes = Vec::with_capacity(capacity);
    let mut reader = http1::BodyReader::new(&mut caller.conn, framing);
    (&mut reader)
        .take(MAX_CHUNK as u64)
        .read_to_end(&mut bytes)?;
    if bytes.len() == MAX_CHUNK {
        // Exactly one piece so far: a chunked body may still have only its last size line and
        // trailers to come, which decide whether the body is whole.
        reader.settle()?;
    }
    Ok(BodyStart {
        bytes,
        rest: reader.pause(),
    })
}
