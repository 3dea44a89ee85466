//! Dispatch for the front: an idle stream of this replica's at once, else (on a replica with a
//! peer port) another replica's, else a short wait on the local queue, and again until the
//! queue timeout. A request the peer port receives never comes here: it is served from this
//! replica's own streams only ([`crate::gateway::replicas::server`]), so a request crosses at
//! most one hop.
//!
//! Imports point down: to the local stream seam ([`crate::gateway::exchange::local`]), the
//! replicas' client side ([`crate::gateway::replicas`]) and the state.

use crate::gateway::exchange::job::{Connection, Job};
use crate::gateway::exchange::local::{self, Refused, Served};
use crate::gateway::replicas::Peers;
use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::Pool;
use crate::protocol::ErrorKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The pause between rounds of tries while no stream anywhere is free, waiting on the local
/// queue (which wakes the request at once when a stream of its own comes free): it starts at
/// [`FIRST_PAUSE`] and grows fourfold up to [`MAX_PAUSE`], or, when this replica has streams of the
/// pool (one of them soon free), up to [`MAX_PAUSE_WITH_STREAMS`], so that requests queued
/// everywhere do not keep asking each other.
pub const FIRST_PAUSE: Duration = Duration::from_millis(2);
pub const MAX_PAUSE: Duration = Duration::from_millis(50);
pub const MAX_PAUSE_WITH_STREAMS: Duration = Duration::from_millis(250);

/// The pause after `pause` (see [`FIRST_PAUSE`]).
pub fn next_pause(pause: Duration, local_streams: bool) -> Duration {
    let ceiling = if local_streams {
        MAX_PAUSE_WITH_STREAMS
    } else {
        MAX_PAUSE
    };
    (pause * 4).min(ceiling)
}

/// The front's dispatch: an idle stream of this replica's at once, else (on a replica with a
/// peer port) another replica's, else a short wait on the local queue, and again until the
/// queue timeout. Without a peer port, or with no other replica holding streams of the pool,
/// it is [`local::serve_locally`].
pub fn serve(
    hub: &Hub,
    peers: Option<&Peers>,
    pool: &Pool,
    caller_name: &str,
    job: &mut Job,
    caller: &mut Connection,
) -> Served {
    let Some(peers) = peers else {
        return local::serve_locally(hub, pool, job, caller);
    };
    let name = pool.name();
    let deadline = Instant::now() + hub.settings.queue_timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if hub.is_draining() {
            return Served::Refused(Refused::shutting_down());
        }
        if let Some(stream) = pool.idle.try_take() {
            return local::serve_on(hub, pool, stream, job, caller, deadline);
        }
        if !peers.has_routes(&name) || pool.is_closed() {
            return local::serve_until(hub, pool, job, caller, deadline);
        }
        if let Some(served) = peers.forward_to_any(&name, caller_name, job, caller, &hub.settings) {
            return served;
        }
        if Instant::now() >= deadline {
            let message = format!(
                "all streams of pool \"{name}\", here and on the other replicas, stayed busy for {:?}",
                hub.settings.queue_timeout
            );
            let reusable = job.body.rest.is_none();
            return Served::Refused(Refused::new(ErrorKind::QueueTimeout, message, reusable));
        }
        let until = deadline.min(Instant::now() + pause);
        pause = next_pause(pause, pool.streams.load(Ordering::SeqCst) > 0);
        // A drain, or the pool's deletion, shuts the queue and wakes this at once.
        pool.queued.fetch_add(1, Ordering::SeqCst);
        let taken = pool.idle.take_until(until);
        pool.queued.fetch_sub(1, Ordering::SeqCst);
        if let Some(stream) = taken {
            if hub.is_draining() {
                stream.close("the gateway is shutting down");
                continue;
            }
            return local::serve_on(hub, pool, stream, job, caller, deadline);
        }
    }
}
