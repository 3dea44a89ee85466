//! The forwarding side: sends a validated tunnel request to another replica's peer port and
//! writes its answer to the caller, on the caller's own thread.
//!
//! The peer request is HTTP/1.1 with the caller's end-to-end headers, the caller's framing
//! and the signing headers, and always `Expect: 100-continue`: the peer answers `100
//! Continue` when it holds a stream for it, or at once a `503` with [`BUSY`] when it
//! has none. Until the `100`, nothing has reached an agent and the request may go elsewhere;
//! after it, a lost peer fails the request (`502 agent_lost`, or a visibly cut answer), as a
//! lost agent does.

use super::conn::{self, PeerConn, BUSY};
use super::peers::Peers;
use super::signing;
use crate::gateway::exchange::job::{Connection, Job};
use crate::gateway::exchange::local::Served;
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::settings::GatewaySettings;
use crate::gateway::store::redis::PeerRoute;
use crate::http1::{self, BodyReader, Framing};
use crate::protocol::{ErrorKind, Headers, MAX_CHUNK};
use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a peer may take to say whether it holds a stream.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries the replicas holding streams of `pool` in turn, each request starting at the
/// next; `None` when none took it (nothing reached an agent, the job is untouched).
pub(crate) fn forward_to_any(
    peers: &Peers,
    pool: &str,
    caller_name: &str,
    job: &mut Job,
    caller: &mut Connection,
    settings: &crate::gateway::state::settings::GatewaySettings,
) -> Option<Served> {
    for route in peers.routes(pool) {
        match forward(peers, &route, pool, caller_name, job, caller, settings) {
            Forwarded::NotTaken => continue,
            Forwarded::Done { reusable, record } => {
                return Some(Served::Exchanged { record, reusable })
            }
        }
    }
    None
}

/// How a forwarding attempt ended.
pub enum Forwarded {
    /// Nothing reached an agent (the peer had no free stream, was unreachable, or refused
    /// the request): the request may go to another stream.
    NotTaken,
    /// The peer ran it; `reusable` says whether the caller's connection can take another.
    Done {
        reusable: bool,
        record: Box<RequestRecord>,
    },
}

/// What the peer said before the body.
enum Start {
    Go(PeerConn),
    NotTaken,
    /// No answer in time: the peer may have taken the request, so it goes nowhere else.
    Silent(String),
}

/// A response head from a peer.
struct ResponseHead {
    status: u16,
    headers: Headers,
}

impl ResponseHead {
    fn has(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Forwards `job` (of `pool`, authenticated as `caller_name`) to the replica of `route`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    peers: &Peers,
    route: &PeerRoute,
    pool: &str,
    caller_name: &str,
    job: &mut Job,
    caller: &mut Connection,
    settings: &GatewaySettings,
) -> Forwarded {
    let started = Instant::now();
    let head = request_head(peers, pool, caller_name, job);
    let mut record = RequestRecord {
        id: job.id.clone(),
        time_ms: crate::clock::now_millis(),
        method: job.method.clone(),
        path: crate::observe::redact_target(&job.target),
        agent: Some(format!("replica:{}", route.replica)),
        ..RequestRecord::default()
    };
    let mut conn = match start(peers, route, &head) {
        Start::Go(conn) => conn,
        Start::NotTaken => return Forwarded::NotTaken,
        Start::Silent(reason) => {
            let reusable = lost(caller, &mut record, reason);
            record.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            return Forwarded::Done {
                reusable,
                record: Box::new(record),
            };
        }
    };
    peers.counters.forwarded_out.fetch_add(1, Ordering::Relaxed);
    let _ = conn
        .tcp()
        .set_read_timeout(Some(settings.exchange_timeout + START_TIMEOUT));
    let reusable = match send_body(&mut conn, job, caller, &mut record) {
        Err(PeerFailure::Caller(reason)) => {
            // The caller broke off its own request: closing the peer connection cancels it.
            record.error = Some(ErrorKind::BadRequest);
            record.reason = Some(reason);
            false
        }
        Err(PeerFailure::Peer(reason)) => {
            peers.error();
            lost(caller, &mut record, reason)
        }
        Ok(()) => relay(peers, conn, job, caller, &mut record),
    };
    record.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Forwarded::Done {
        reusable,
        record: Box::new(record),
    }
}

/// The peer request's head: the caller's end-to-end headers and framing, signed with them
/// and with the start of the body ([`sign`]).
fn request_head(peers: &Peers, pool: &str, caller_name: &str, job: &Job) -> Vec<u8> {
    let target = format!("/private/{pool}{}", job.target);
    let framing = match job.framing {
        Framing::Chunked => Some(("Transfer-Encoding".to_string(), "chunked".to_string())),
        _ => None,
    };
    let expect = ("Expect".to_string(), "100-continue".to_string());
    let sent: Vec<&(String, String)> = job
        .headers
        .iter()
        .filter(|(n, _)| !n.to_ascii_lowercase().starts_with(signing::PREFIX))
        .chain(framing.iter())
        .chain(std::iter::once(&expect))
        .collect();
    let signed = signing::Signed {
        method: &job.method,
        target: &target,
        id: &job.id,
        from: &peers.replica,
        caller: caller_name,
        time_ms: crate::clock::now_millis(),
        headers: signing::headers_digest(sent.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        body: signing::body_digest(&job.body.bytes),
        front: job.front.as_deref().unwrap_or(""),
    };
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(format!("{} {target} HTTP/1.1\r\n", job.method).as_bytes());
    let mut ours = signing::headers(&peers.secret, &signed);
    if let Some(front) = &job.front {
        ours.push((signing::FRONT.to_string(), front.clone()));
    }
    http1::end_head(&mut head, sent.into_iter().chain(ours.iter()));
    head
}

/// Sends the head on a kept connection (or a new one when it turns out closed) and reads
/// whether the peer took the request.
fn start(peers: &Peers, route: &PeerRoute, head: &[u8]) -> Start {
    let silent = |e: io::Error| {
        peers.error();
        Start::Silent(format!(
            "replica {} did not say within {START_TIMEOUT:?} whether it took the request ({e}); it may have, so it was not sent elsewhere",
            route.replica
        ))
    };
    if let Some(conn) = peers.reuse(&route.address) {
        // A kept connection the peer closed meanwhile fails before any answer: nothing
        // reached an agent, so a new connection may carry the request.
        match try_start(peers, route, conn, head) {
            Ok(start) => return start,
            Err(e) if crate::net::stream::is_timeout(&e) => return silent(e),
            Err(_) => {}
        }
    }
    let conn = match conn::connect(&route.address) {
        Ok(tcp) => PeerConn::new(&route.address, tcp),
        Err(e) => {
            peers.error();
            peers.mark_down(&route.address);
            log::warn!(target: "peer", "replica {} at {} is unreachable: {e}", route.replica, route.address);
            return Start::NotTaken;
        }
    };
    match try_start(peers, route, conn, head) {
        Ok(start) => start,
        Err(e) if crate::net::stream::is_timeout(&e) => silent(e),
        Err(e) => {
            peers.error();
            peers.mark_down(&route.address);
            log::warn!(target: "peer", "replica {} at {} failed before taking a request: {e}", route.replica, route.address);
            Start::NotTaken
        }
    }
}

fn try_start(
    peers: &Peers,
    route: &PeerRoute,
    mut conn: PeerConn,
    head: &[u8],
) -> io::Result<Start> {
    let _ = conn.tcp().set_read_timeout(Some(START_TIMEOUT));
    let _ = conn.tcp().set_write_timeout(Some(Duration::from_secs(30)));
    conn.tcp().write_all(head)?;
    let answer = read_response_head(&mut conn.reader)?;
    if answer.status == 100 {
        return Ok(Start::Go(conn));
    }
    // Anything before the `100` means no agent saw the request; the body was not sent.
    let length = answer
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if answer.header(BUSY).is_some() {
        if length == 0 && !answer.has("connection", "close") {
            peers.keep(conn);
        }
        return Ok(Start::NotTaken);
    }
    let mut text = String::new();
    let _ = (&mut conn.reader)
        .take(length.min(4096))
        .read_to_string(&mut text);
    peers.error();
    log::warn!(target: "peer",
        "replica {} at {} refused a forwarded request ({}): {}",
        route.replica, route.address, answer.status, text.chars().take(300).collect::<String>()
    );
    Ok(Start::NotTaken)
}

/// Which side failed while the body was on its way.
enum PeerFailure {
    Caller(String),
    Peer(String),
}

/// Sends the request body to the peer in the caller's framing, in pieces of at most
/// [`MAX_CHUNK`].
fn send_body(
    conn: &mut PeerConn,
    job: &mut Job,
    caller: &mut Connection,
    record: &mut RequestRecord,
) -> Result<(), PeerFailure> {
    if job.framing == Framing::Empty {
        return Ok(());
    }
    let chunked = job.framing == Framing::Chunked;
    let peer_lost = |e: io::Error| {
        PeerFailure::Peer(format!(
            "the replica serving the request was lost while the body was sent: {e}"
        ))
    };
    let write = |conn: &mut PeerConn, data: &[u8]| -> io::Result<()> {
        if chunked {
            http1::write_chunk(conn.tcp(), data)
        } else {
            conn.tcp().write_all(data)
        }
    };
    record.bytes_in += job.body.bytes.len() as u64;
    write(conn, &job.body.bytes).map_err(peer_lost)?;
    if let Some(rest) = job.body.rest.take() {
        let mut reader = BodyReader::resume(&mut caller.conn, rest);
        let mut buffer = vec![0u8; MAX_CHUNK];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    record.bytes_in += n as u64;
                    write(conn, &buffer[..n]).map_err(peer_lost)?;
                }
                Err(e) => {
                    return Err(PeerFailure::Caller(format!(
                        "caller's request body failed: {e}"
                    )))
                }
            }
        }
    }
    if chunked {
        http1::write_last_chunk(conn.tcp()).map_err(peer_lost)?;
    }
    conn.tcp().flush().map_err(peer_lost)
}

/// How the answer's body is delimited on the peer connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PeerBody {
    Framed(Framing),
    UntilClose,
}

/// Reads the peer's answer and writes it to the caller; keeps the peer connection when it
/// can carry another request. Returns whether the caller's connection can.
fn relay(
    peers: &Peers,
    mut conn: PeerConn,
    job: &Job,
    caller: &mut Connection,
    record: &mut RequestRecord,
) -> bool {
    let answer = loop {
        match read_response_head(&mut conn.reader) {
            Ok(head) if (100..200).contains(&head.status) => continue,
            Ok(head) => break head,
            Err(e) => {
                peers.error();
                return lost(
                    caller,
                    record,
                    format!("the replica serving the request was lost before it answered: {e}"),
                );
            }
        }
    };
    record.status = answer.status;
    let peer_body = peer_body(job, &answer);
    // Re-framed for the caller: chunked stays chunked for HTTP/1.1, becomes close-delimited
    // for HTTP/1.0, as a local exchange does.
    let chunked_out = job.version >= 1 && peer_body == PeerBody::Framed(Framing::Chunked);
    let until_close = peer_body == PeerBody::UntilClose
        || (job.version == 0 && peer_body == PeerBody::Framed(Framing::Chunked));
    let headers = caller_headers(&answer, chunked_out, !job.keep_alive || until_close);
    let mut pending = Vec::with_capacity(1024);
    let _ = http1::write_head(&mut pending, answer.status, &headers);
    let copied = copy_body(
        &mut conn,
        peer_body,
        chunked_out,
        &mut pending,
        caller,
        record,
    );
    match copied {
        Ok(()) => {
            if !answer.has("connection", "close") && peer_body != PeerBody::UntilClose {
                peers.keep(conn);
            }
            job.keep_alive && !until_close
        }
        Err(PeerFailure::Peer(reason)) => {
            // Closing the caller short of the body's end makes the cut visible.
            peers.error();
            record.error = Some(ErrorKind::AgentLost);
            record.reason = Some(reason);
            false
        }
        Err(PeerFailure::Caller(reason)) => {
            // Dropping the peer connection is the cancellation signal.
            record.reason = Some(reason);
            false
        }
    }
}

/// How the peer delimits the answer's body, from its head and the request's method.
fn peer_body(job: &Job, answer: &ResponseHead) -> PeerBody {
    if !crate::protocol::response_has_body(&job.method, answer.status) {
        return PeerBody::Framed(Framing::Empty);
    }
    if answer.has("transfer-encoding", "chunked") {
        return PeerBody::Framed(Framing::Chunked);
    }
    match answer
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(0) => PeerBody::Framed(Framing::Empty),
        Some(n) => PeerBody::Framed(Framing::Length(n)),
        None => PeerBody::UntilClose,
    }
}

/// The answer's headers as the caller gets them: the peer connection's own framing and
/// connection headers left out, this connection's put in.
fn caller_headers(answer: &ResponseHead, chunked: bool, close: bool) -> Headers {
    let mut headers: Headers = answer
        .headers
        .iter()
        .filter(|(n, _)| {
            !["transfer-encoding", "connection", "keep-alive"]
                .iter()
                .any(|h| n.eq_ignore_ascii_case(h))
        })
        .cloned()
        .collect();
    if chunked {
        headers.push(("Transfer-Encoding".into(), "chunked".into()));
    }
    if close {
        headers.push(("Connection".into(), "close".into()));
    }
    headers
}

/// Copies the answer's body from the peer to the caller, in pieces of at most
/// [`MAX_CHUNK`]; `pending` (the head, chunk framing) leaves with the next piece.
fn copy_body(
    conn: &mut PeerConn,
    peer_body: PeerBody,
    chunked_out: bool,
    pending: &mut Vec<u8>,
    caller: &mut Connection,
    record: &mut RequestRecord,
) -> Result<(), PeerFailure> {
    let out = caller.conn.get_mut();
    let caller_gone =
        |e: io::Error| PeerFailure::Caller(format!("caller went away ({e}); request cancelled"));
    let mut buffer = vec![0u8; MAX_CHUNK];
    let mut body: Box<dyn Read + '_> = match peer_body {
        PeerBody::Framed(framing) => Box::new(BodyReader::new(&mut conn.reader, framing)),
        PeerBody::UntilClose => Box::new(&mut conn.reader),
    };
    loop {
        let n = match body.read(&mut buffer) {
            Ok(n) => n,
            Err(e) => {
                let _ = crate::net::stream::write_both(out, pending, &[]);
                return Err(PeerFailure::Peer(format!("answer broke off: {e}")));
            }
        };
        if n == 0 {
            break;
        }
        record.bytes_out += n as u64;
        if chunked_out {
            pending.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        }
        crate::net::stream::write_both(out, pending, &buffer[..n]).map_err(caller_gone)?;
        pending.clear();
        if chunked_out {
            pending.extend_from_slice(b"\r\n");
        }
    }
    if chunked_out {
        pending.extend_from_slice(b"0\r\n\r\n");
    }
    crate::net::stream::write_both(out, pending, &[]).map_err(caller_gone)?;
    out.flush().map_err(caller_gone)
}

/// The peer went away before its answer's head: `502 agent_lost`, as for a lost agent.
fn lost(caller: &mut Connection, record: &mut RequestRecord, reason: String) -> bool {
    record.status = ErrorKind::AgentLost.status();
    record.error = Some(ErrorKind::AgentLost);
    let _ = crate::gateway::exchange::write_error(
        caller.conn.get_mut(),
        Some(&record.id),
        ErrorKind::AgentLost,
        "the gateway replica serving this request was lost before it answered",
        false,
    );
    record.reason = Some(reason);
    false
}

/// Reads one response head, consuming exactly its bytes.
fn read_response_head<R: BufRead>(reader: &mut R) -> io::Result<ResponseHead> {
    let mut collected: Vec<u8> = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            ));
        }
        let before = collected.len();
        let take = available.len().min(http1::MAX_HEAD + 1 - before);
        collected.extend_from_slice(&available[..take]);
        let mut storage = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut storage);
        match response.parse(&collected) {
            Ok(httparse::Status::Complete(used)) => {
                reader.consume(used - before);
                let headers = response
                    .headers
                    .iter()
                    .filter_map(|h| {
                        Some((
                            h.name.to_string(),
                            std::str::from_utf8(h.value).ok()?.to_string(),
                        ))
                    })
                    .collect();
                return Ok(ResponseHead {
                    status: response.code.unwrap_or(0),
                    headers,
                });
            }
            Ok(httparse::Status::Partial) if collected.len() <= http1::MAX_HEAD => {
                reader.consume(take)
            }
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "answer head too large",
                ))
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn a_response_head_is_read_without_its_body() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Vcs-Request-Id: 01J\r\n\r\nhi";
        let mut reader = BufReader::with_capacity(5, &raw[..]);
        assert_eq!(read_response_head(&mut reader).unwrap().status, 100);
        let head = read_response_head(&mut reader).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-vcs-request-id"), Some("01J"));
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "hi");
        let mut cut = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-"[..]);
        assert!(read_response_head(&mut cut).is_err());
    }
}
