//! Forwarding between replicas (`serve --redis … --peer-listen ADDR --peer-secret …`).
//!
//! An agent stream serves the replica it is connected to. A request that reaches a replica
//! with no idle stream of its pool is forwarded, over the peer port, to another replica that
//! holds streams of it, the way GitLab's KAS forwards to the replica holding an agent's
//! tunnel:
//!
//! - **Routing** comes from the presence records in Redis (`vcs-gateway:presence:<pool>:<replica>`,
//!   whose value is the replica's peer address), read by the Redis thread once a second into
//!   a table in memory ([`crate::gateway::store::redis::RedisStore::routes`]): a request never waits
//!   for Redis (a lookup per request was what overloaded KAS's Redis), and while Redis is
//!   unreachable the last table is used.
//! - **One hop.** The receiving replica serves a forwarded request only from its own idle
//!   streams and never forwards it again. Without a free stream it answers at once with a
//!   distinct `503` ([`BUSY`]); the first replica then tries the next replica, its own queue,
//!   and again, until the queue timeout.
//! - **Never two agents.** The peer answers `100 Continue` once it holds a stream, before
//!   anything reaches the agent; the first replica re-dispatches a request only when it got
//!   no `100` (no free stream, peer unreachable or refused), so a request is never run twice.
//! - **Signed.** Every forwarded request carries an HMAC over its method, target, id, sender,
//!   caller and time ([`sign`]); the peer port refuses anything else, and it serves nothing
//!   but forwarded requests, the api port never them.
//! - **Constant memory.** Bodies go both ways in pieces of at most
//!   [`crate::protocol::MAX_CHUNK`], on the caller's own thread on one side and the peer
//!   connection's thread on the other, as for a local request.
//!
//! Connections between replicas are kept open (HTTP/1.1 keep-alive) and reused, so a
//! forwarded request costs one round trip more than a local one, not a TCP handshake.
//!
//! **Presence.** A replica's record of a pool is refreshed every second with a
//! `PRESENCE_TTL` (5 s) expiry and removed within a second of its last stream of the pool
//! leaving; a draining replica removes its own at once. One thread per replica does all
//! background Redis work.
//!
//! **What a request costs Redis.** A request served locally costs nothing. A forwarded one costs
//! one `SET NX` of its id, so it runs once across replicas. A pool the table says nobody holds is
//! asked about once before `503 no_agent` (no gap just after an agent moved to another replica),
//! and not again for a second, so a flood for a pool without agents costs Redis nothing. A
//! replica that failed is left out for a second; only its in-flight requests fail.

pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod peers;
pub(crate) mod server;
pub mod signing;

pub use peers::{Counters, Peers};

use crate::gateway::state::hub::Hub;
use std::sync::Arc;

/// What `serve --peer-listen` was given.
pub struct PeerOptions {
    pub listen: String,
    /// The address other replicas reach this one at; the bound one when `None`.
    pub advertise: Option<String>,
    pub secret: signing::PeerSecret,
}

/// Why forwarding between replicas could not start. `Display` is the one line the operator
/// sees.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("--peer-listen needs --redis: forwarding is between replicas")]
    NoRedis,
    #[error("--peer-listen {address}: cannot bind: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    /// A bound port has no address (the system says why).
    #[error("{0}")]
    Address(std::io::Error),
    #[error("--peer-advertise {address}: not HOST:PORT ({source})")]
    Advertise {
        address: String,
        source: std::io::Error,
    },
    #[error("--peer-advertise is required when --peer-listen binds every address ({0}): the address other replicas reach this one at")]
    AdvertiseRequired(std::net::SocketAddr),
    #[error("cannot start a listener thread: {0}")]
    Thread(std::io::Error),
}

/// This replica's forwarding: the handle the front, `/metrics` and `/healthz` use, and the
/// peer port's bound address.
pub struct Started {
    pub peers: Arc<Peers>,
    pub address: std::net::SocketAddr,
}

/// Binds the peer port, records its address with this replica's presence and starts
/// serving it. Needs a replica (`serve --redis`).
pub fn start(hub: &Arc<Hub>, options: PeerOptions) -> Result<Started, PeerError> {
    let (Some(shared), Some(replica)) = (hub.store.shared(), &hub.settings.replica_id) else {
        return Err(PeerError::NoRedis);
    };
    let listener =
        std::net::TcpListener::bind(&options.listen).map_err(|source| PeerError::Bind {
            address: options.listen.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(PeerError::Address)?;
    let advertise = match options.advertise {
        Some(address) => {
            use std::net::ToSocketAddrs;
            if let Err(source) = address.to_socket_addrs() {
                return Err(PeerError::Advertise { address, source });
            }
            address
        }
        None if bound.ip().is_unspecified() => return Err(PeerError::AdvertiseRequired(bound)),
        None => bound.to_string(),
    };
    let peers = Peers::new(replica, &advertise, options.secret, Arc::clone(shared));
    server::serve(listener, Arc::clone(hub), Arc::clone(&peers)).map_err(PeerError::Thread)?;
    Ok(Started {
        peers,
        address: bound,
    })
}
