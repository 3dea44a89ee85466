//! Dispatch: a validated request ([`Job`]) gets an agent stream of its pool and runs its
//! exchange on it, on the caller's own thread.
//!
//! **The seam.** [`serve_locally`] is the one function that, given a validated request,
//! obtains a stream and runs the exchange. Today every stream is local: it waits for an idle
//! stream in the pool's queue ([`crate::gateway::state::idle`]) up to the queue timeout, drops
//! streams that died while idle and takes the next, runs [`exchange::run`] and gives the
//! stream back (or closes it). A gateway with replicas adds "no local stream → forward to
//! another replica" where the front calls it, and a port that serves other replicas calls
//! it directly: it never forwards, so a request crosses at most one hop.
//!
//! What it cannot serve is a [`Refused`]: the kind and sentence the caller hears, and whether
//! the connection stays usable. The caller of this module writes the answer and the record.

use crate::gateway::exchange::job::{Connection, Job};
use crate::gateway::exchange::{self, Exchanged, StreamState};
use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::LivePool;
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::stream::AgentStream;
use crate::protocol::ErrorKind;
use std::time::Instant;

/// What a request hears while the gateway drains.
pub const SHUTTING_DOWN: &str =
    "the gateway is shutting down; retry on another gateway or in a moment";

/// An error answer the gateway decides itself.
#[derive(Debug)]
pub struct Refused {
    pub kind: ErrorKind,
    pub message: String,
    /// Whether the caller's connection can take another request after it (nothing of this
    /// request is left unread).
    pub reusable: bool,
}

impl Refused {
    pub fn new(kind: ErrorKind, message: impl Into<String>, reusable: bool) -> Refused {
        Refused {
            kind,
            message: message.into(),
            reusable,
        }
    }

    /// The gateway drains: the connection closes too.
    pub fn shutting_down() -> Refused {
        Refused::new(ErrorKind::NoAgent, SHUTTING_DOWN, false)
    }
}

/// How a request left [`serve_locally`].
pub enum Served {
    /// An agent answered (or the exchange broke off): its record, and whether the caller's
    /// connection can take another request.
    Exchanged {
        record: Box<RequestRecord>,
        reusable: bool,
    },
    /// No stream could take it.
    Refused(Refused),
}

/// Serves `job` from this gateway's own streams of `pool`: takes an idle one (waiting up to
/// the queue timeout), runs the exchange, gives it back.
pub fn serve_locally(hub: &Hub, pool: &LivePool, job: &mut Job, caller: &mut Connection) -> Served {
    serve_until(
        hub,
        pool,
        job,
        caller,
        Instant::now() + hub.settings.queue_timeout,
    )
}

/// [`serve_locally`], waiting for a stream until `deadline`.
pub fn serve_until(
    hub: &Hub,
    pool: &LivePool,
    job: &mut Job,
    caller: &mut Connection,
    deadline: Instant,
) -> Served {
    match take_stream(hub, pool, deadline, job.body.rest.is_none()) {
        Ok(stream) => serve_on(hub, pool, stream, job, caller, deadline),
        Err(refused) => Served::Refused(refused),
    }
}

/// Serves `job` on `stream`, already taken from `pool`'s idle queue (the peer port takes it
/// before it accepts a forwarded request); when that stream turns out dead, on the next idle
/// one, waiting until `deadline`.
pub fn serve_on(
    hub: &Hub,
    pool: &LivePool,
    mut stream: AgentStream,
    job: &mut Job,
    caller: &mut Connection,
    deadline: Instant,
) -> Served {
    // With the body read whole (or none), an error answer leaves the connection usable.
    let body_read = job.body.rest.is_none();
    loop {
        // A stream that died or started draining while idle: drop it, take another.
        if let Err(reason) = stream.ready() {
            stream.drop_with(reason);
            stream = match take_stream(hub, pool, deadline, body_read) {
                Ok(stream) => stream,
                Err(refused) => return Served::Refused(refused),
            };
            continue;
        }
        let instance = stream.instance.clone();
        let busy = pool.busy_while(&instance);
        let exchanged = exchange::run(&mut stream, job, caller, &hub.settings);
        drop(busy);
        stream.heard();
        match exchanged {
            Exchanged::NotStarted(reason) => {
                stream.drop_with(reason);
                stream = match take_stream(hub, pool, deadline, body_read) {
                    Ok(stream) => stream,
                    Err(refused) => return Served::Refused(refused),
                };
            }
            Exchanged::Done {
                state,
                reusable,
                record,
            } => {
                put_back(hub, pool, stream, state);
                pool.count_served();
                return Served::Exchanged { record, reusable };
            }
        }
    }
}

/// Waits for an idle stream of `pool` until `deadline` (shorter while the pool has none and
/// is only reconnecting). A drain, or the pool's deletion, shuts the queue and wakes this at
/// once.
fn take_stream(
    hub: &Hub,
    pool: &LivePool,
    deadline: Instant,
    body_read: bool,
) -> Result<AgentStream, Refused> {
    if hub.is_draining() {
        return Err(Refused::shutting_down());
    }
    let wait_until = waiting_limit(pool, deadline).unwrap_or_else(Instant::now);
    let received = pool.take_idle_until(wait_until);
    if hub.is_draining() {
        if let Some(stream) = received {
            stream.close("the gateway is shutting down");
        }
        return Err(Refused::shutting_down());
    }
    received.ok_or_else(|| none_taken(hub, pool, body_read))
}

/// Why no stream came.
fn none_taken(hub: &Hub, pool: &LivePool, body_read: bool) -> Refused {
    let name = pool.name();
    if pool.is_closed() {
        let message =
            format!("pool \"{name}\" was deleted or its key rotated while the request waited");
        Refused::new(ErrorKind::NoAgent, message, body_read)
    } else if no_agent(pool) {
        Refused::new(ErrorKind::NoAgent, no_agent_message(&name), body_read)
    } else {
        let message = format!(
            "all streams of pool \"{name}\" stayed busy for {:?}",
            hub.settings.queue_timeout
        );
        Refused::new(ErrorKind::QueueTimeout, message, body_read)
    }
}

/// After an exchange: a usable stream goes back to the queue, unless the gateway drains.
fn put_back(hub: &Hub, pool: &LivePool, stream: AgentStream, state: StreamState) {
    match state {
        StreamState::Usable if !hub.is_draining() => pool.give_back(stream),
        StreamState::Usable => stream.close("the gateway is shutting down"),
        StreamState::Draining => stream.close("agent is draining"),
        StreamState::Broken(reason) => stream.drop_with(reason),
    }
}

/// What a caller hears when its pool has no agent connected.
pub fn no_agent_message(pool: &str) -> String {
    format!("no agent of pool \"{pool}\" is connected")
}

/// Until when a request may wait for a stream of `pool`: its `deadline`, or, while the pool
/// has no stream at all, only as long as it counts as reconnecting; `None`: not at all.
pub fn waiting_limit(pool: &LivePool, deadline: Instant) -> Option<Instant> {
    if !no_agent(pool) {
        return Some(deadline);
    }
    pool.reconnecting_until()
        .filter(|until| *until > Instant::now())
        .map(|until| until.min(deadline))
}

fn no_agent(pool: &LivePool) -> bool {
    pool.streams() == 0
}
