//! The peer port: serves requests forwarded by other replicas from this replica's own idle
//! agent streams, and nothing else.
//!
//! Every request must be signed ([`super::signing`]); anything else gets `403` and the
//! connection closes. A signed request for a pool with no idle stream here gets `503` with
//! [`BUSY`] at once, before its body is sent, so the forwarding replica can try
//! elsewhere; with a stream, `100 Continue` tells it the request is taken, and the exchange
//! runs on this connection's thread exactly as for a caller of the api port. Nothing here is
//! ever forwarded again.

use super::conn::BUSY;
use super::peers::Peers;
use super::signing;
use crate::gateway::exchange::job::{self, Connection, Job};
use crate::gateway::exchange::local::{self, Served};
use crate::gateway::exchange::{self, write_error};
use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::LivePool;
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::stream::AgentStream;
use crate::http1::{self, Framing, HeadError, RequestHead};
use crate::net::deadline::Watchable;
use crate::net::Stream;
use crate::protocol::{self, ErrorKind};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kept-open connection from another replica is closed after this long without a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections the peer port serves at once beyond `--max-callers`.
const RESERVE: usize = 64;

/// Serves the peer port on background threads.
pub fn serve(listener: TcpListener, hub: Arc<Hub>, peers: Arc<Peers>) -> std::io::Result<()> {
    let open = hub.settings.max_callers + RESERVE;
    crate::net::listen::spawn(listener, "peer-port", "peer", open, move |tcp| {
        connection(tcp, &hub, &peers)
    })
}

fn connection(tcp: TcpStream, hub: &Hub, peers: &Peers) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(120)));
    let watchable = Watchable::of(&tcp);
    let mut caller = Connection {
        conn: BufReader::with_capacity(16 * 1024, Stream::Plain(tcp)),
        peer,
        watchable,
        scheme: "http",
    };
    loop {
        let head = match http1::read_request_head(&mut caller.conn) {
            Ok(head) => head,
            Err(HeadError::Closed) | Err(HeadError::Io(_)) => return,
            Err(e) => {
                peers.error();
                let message = format!("peer port: {e}");
                let _ = write_error(
                    caller.conn.get_mut(),
                    None,
                    ErrorKind::BadRequest,
                    &message,
                    false,
                );
                return;
            }
        };
        match serve_one(head, caller, hub, peers) {
            Some(next) => caller = next,
            None => return,
        }
    }
}

/// Serves one forwarded request; returns the connection when it can take another.
fn serve_one(
    head: RequestHead,
    mut caller: Connection,
    hub: &Hub,
    peers: &Peers,
) -> Option<Connection> {
    let signed = match signing::verify(&peers.secret, &head, crate::clock::now_millis()) {
        Ok(signed) => signed,
        Err(refusal) => {
            peers.error();
            peers.log_refused(refusal.kind(), caller.peer, &refusal.to_string());
            let message = format!(
                "the peer port serves only requests signed with the peer secret: {refusal}"
            );
            let _ = write_error(
                caller.conn.get_mut(),
                None,
                ErrorKind::Forbidden,
                &message,
                false,
            );
            return None;
        }
    };
    let (id, from, who, body_sha) = (
        signed.id.to_string(),
        signed.from.to_string(),
        signed.caller.to_string(),
        signed.body.clone(),
    );
    let Some((pool_name, framing)) = forwarded_pool(&head) else {
        peers.error();
        let message = "the peer port serves only forwarded tunnel requests (/private/<pool>/…) with a valid body framing";
        let _ = write_error(
            caller.conn.get_mut(),
            Some(&id),
            ErrorKind::BadRequest,
            message,
            false,
        );
        return None;
    };
    let _open = hub.request_opened();
    let Some((pool, stream)) = take(hub, &pool_name) else {
        return busy(caller, &peers.replica, &pool_name, &id, framing);
    };
    if !peers.claim(&id) {
        pool.give_back(stream);
        peers.error();
        let why = format!("request id {id} was already served (a replay)");
        peers.log_refused("replayed", caller.peer, &why);
        let message = "the peer port serves only requests signed with the peer secret, each once: this request id was already served";
        let _ = write_error(
            caller.conn.get_mut(),
            Some(&id),
            ErrorKind::Forbidden,
            message,
            false,
        );
        return None;
    }
    // Taken: from here on the request is this replica's to answer.
    let Some(mut job) = accept(&mut caller, &head, &pool_name, id, framing) else {
        pool.give_back(stream);
        return None;
    };
    // Nothing has reached the agent yet: a body start other than the signed one goes nowhere.
    if !signing::body_matches(&body_sha, &job.body.bytes) {
        pool.give_back(stream);
        peers.error();
        let why = format!(
            "request id {} came with another body than it was signed with",
            job.id
        );
        peers.log_refused("forged", caller.peer, &why);
        let message = "the peer port serves only requests signed with the peer secret: the body is not the one signed";
        let _ = write_error(
            caller.conn.get_mut(),
            Some(&job.id),
            ErrorKind::Forbidden,
            message,
            false,
        );
        return None;
    }
    peers.counters.forwarded_in.fetch_add(1, Ordering::Relaxed);
    log::debug!(target: "peer", "id={} pool={pool_name} forwarded by replica {from}", job.id);
    run(hub, &pool, stream, &mut job, caller, &who)
}

/// The pool a forwarded request is for, and its body's framing; `None` when it is not a
/// well-formed tunnel request.
fn forwarded_pool(head: &RequestHead) -> Option<(String, Framing)> {
    let path = head.target.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/private/")?;
    let pool = rest.split('/').next().unwrap_or(rest);
    let framing = head.framing().ok()?;
    (!pool.is_empty()).then(|| (pool.to_string(), framing))
}

/// Tells the forwarding replica the request is taken (`100 Continue`), reads the start of
/// its body, and makes the job as the front would have; `None` when that replica went away.
fn accept(
    caller: &mut Connection,
    head: &RequestHead,
    pool_name: &str,
    id: String,
    framing: Framing,
) -> Option<Job> {
    let out = caller.conn.get_mut();
    out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    out.flush().ok()?;
    let body = job::read_body_start(caller, framing, false).ok()?;
    let target = job::tunnel_target(&head.target, pool_name)?;
    // The forwarding replica sent the headers the front keeps, and the peer protocol's own.
    let headers = protocol::end_to_end(
        head.headers
            .iter()
            .filter(|(name, _)| {
                !name.to_ascii_lowercase().starts_with(signing::PREFIX)
                    && !name.eq_ignore_ascii_case("expect")
            })
            .cloned(),
    );
    let front = head.header(signing::FRONT).map(str::to_string);
    Some(Job {
        id,
        front,
        method: head.method.clone(),
        target,
        headers,
        framing,
        version: 1,
        keep_alive: head.keep_alive(),
        body,
    })
}

/// An idle stream of `pool_name` here, at once, or `None`.
fn take(hub: &Hub, pool_name: &str) -> Option<(Arc<LivePool>, AgentStream)> {
    let pool = hub.pool(pool_name)?;
    loop {
        if hub.is_draining() || pool.is_closed() {
            return None;
        }
        let mut stream = pool.idle.try_take()?;
        match stream.ready() {
            Ok(()) => return Some((pool, stream)),
            Err(reason) => stream.drop_with(reason),
        }
    }
}

/// "No free stream here": nothing was taken, the forwarding replica tries elsewhere. A body
/// announced but not sent (it waits for `100`) would be read as the next request: that
/// connection closes.
fn busy(
    mut caller: Connection,
    replica: &str,
    pool: &str,
    id: &str,
    framing: Framing,
) -> Option<Connection> {
    let keep = framing == Framing::Empty;
    let message = format!("replica {replica} has no free stream of pool \"{pool}\"");
    let body = exchange::error_body(ErrorKind::NoAgent, &message);
    let extra = [
        (BUSY.to_string(), "1".to_string()),
        ("X-Vcs-Request-Id".to_string(), id.to_string()),
    ];
    let written = http1::write_simple_with(
        caller.conn.get_mut(),
        503,
        "application/json",
        body.as_bytes(),
        keep,
        &extra,
    );
    (written.is_ok() && keep).then_some(caller)
}

/// Runs `job` on `stream` (or, should that stream turn out dead, the next idle one) as a
/// local request runs, and logs it here too, under the same id.
fn run(
    hub: &Hub,
    pool: &LivePool,
    stream: AgentStream,
    job: &mut Job,
    mut caller: Connection,
    who: &str,
) -> Option<Connection> {
    let deadline = Instant::now() + hub.settings.queue_timeout;
    match local::serve_on(hub, pool, stream, job, &mut caller, deadline) {
        Served::Exchanged {
            mut record,
            reusable,
        } => {
            record.caller = Some(who.to_string());
            pool.remember(*record);
            reusable.then_some(caller)
        }
        Served::Refused(refused) => {
            let record = RequestRecord {
                id: job.id.clone(),
                time_ms: crate::clock::now_millis(),
                method: job.method.clone(),
                path: crate::observe::redact_target(&job.target),
                status: refused.kind.status(),
                error: Some(refused.kind),
                reason: Some(refused.message.clone()),
                caller: Some(who.to_string()),
                ..RequestRecord::default()
            };
            pool.remember(record);
            let out = caller.conn.get_mut();
            let written = write_error(
                out,
                Some(&job.id),
                refused.kind,
                &refused.message,
                refused.reusable,
            );
            (written.is_ok() && refused.reusable).then_some(caller)
        }
    }
}
