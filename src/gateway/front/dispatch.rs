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
use crate::gateway::state::pool::LivePool;
use crate::protocol::ErrorKind;
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
    pool: &LivePool,
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
        if let Some(served) = crate::gateway::replicas::client::forward_to_any(
            peers,
            &name,
            caller_name,
            job,
            caller,
            &hub.settings,
        ) {
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
        pause = next_pause(pause, pool.streams() > 0);
        let taken = pool.take_idle_until(until);
        if let Some(stream) = taken {
            if hub.is_draining() {
                stream.close("the gateway is shutting down");
                continue;
            }
            return local::serve_on(hub, pool, stream, job, caller, deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::exchange::job::BodyStart;
    use crate::gateway::state::settings::GatewaySettings;
    use crate::gateway::store::Store;
    use crate::net::Stream;
    use std::io::BufReader;
    use std::net::{TcpListener, TcpStream};

    fn hub_with_pool(name: &str) -> Hub {
        let dir = std::env::temp_dir().join(format!("vcs-dispatch-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir).unwrap();
        store.create(name, "").unwrap();
        Hub::new(store, GatewaySettings::default()).unwrap()
    }

    /// A caller connection on loopback (dispatch never reads it when no stream is taken).
    fn connection() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (tcp, peer) = listener.accept().unwrap();
        let watchable = crate::net::deadline::Watchable::of(&tcp);
        let conn = BufReader::new(Stream::Plain(tcp));
        let connection = Connection {
            conn,
            peer,
            watchable,
            scheme: "http",
        };
        (connection, client)
    }

    fn job() -> Job {
        Job {
            id: "01job".into(),
            method: "GET".into(),
            target: "/api/v4/version".into(),
            headers: Vec::new(),
            framing: crate::http1::Framing::Empty,
            version: 1,
            keep_alive: true,
            body: BodyStart::default(),
            front: None,
        }
    }

    fn refused(served: Served) -> Refused {
        match served {
            Served::Refused(refused) => refused,
            Served::Exchanged { .. } => panic!("no stream exists, nothing can be exchanged"),
        }
    }

    #[test]
    fn a_pool_without_streams_is_refused_at_once_as_no_agent() {
        let hub = hub_with_pool("alpha");
        let pool = hub.pool("alpha").unwrap();
        let (mut caller, _client) = connection();
        let started = Instant::now();
        let refused = refused(serve(&hub, None, &pool, "saas", &mut job(), &mut caller));
        assert_eq!(refused.kind, ErrorKind::NoAgent);
        assert_eq!(refused.message, local::no_agent_message("alpha"));
        assert!(refused.reusable, "nothing of the request is left unread");
        assert!(
            started.elapsed() < hub.settings.queue_timeout,
            "a pool with no agent waits for none"
        );
    }

    #[test]
    fn a_draining_gateway_dispatches_nothing() {
        let hub = hub_with_pool("alpha");
        let pool = hub.pool("alpha").unwrap();
        hub.start_draining();
        let (mut caller, _client) = connection();
        let refused = refused(serve(&hub, None, &pool, "saas", &mut job(), &mut caller));
        assert_eq!(refused.kind, ErrorKind::NoAgent);
        assert_eq!(refused.message, local::SHUTTING_DOWN);
        assert!(!refused.reusable, "the connection closes while draining");
    }

    #[test]
    fn a_deleted_pool_says_so() {
        let hub = hub_with_pool("alpha");
        let pool = hub.pool("alpha").unwrap();
        hub.store.delete("alpha").unwrap();
        hub.reload().unwrap();
        let (mut caller, _client) = connection();
        let refused = refused(serve(&hub, None, &pool, "saas", &mut job(), &mut caller));
        assert_eq!(refused.kind, ErrorKind::NoAgent);
        assert!(
            refused.message.contains("was deleted"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn pauses_between_rounds_grow_to_their_ceiling() {
        let mut pause = FIRST_PAUSE;
        for _ in 0..10 {
            pause = next_pause(pause, false);
        }
        assert_eq!(pause, MAX_PAUSE);
        assert_eq!(next_pause(MAX_PAUSE, true), MAX_PAUSE * 4);
        assert_eq!(next_pause(MAX_PAUSE * 4, true), MAX_PAUSE_WITH_STREAMS);
        assert_eq!(next_pause(FIRST_PAUSE, false), FIRST_PAUSE * 4);
    }
}
