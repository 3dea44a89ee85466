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

pub(crate) mod client;
pub(crate) mod server;
pub mod signing;

use crate::gateway::exchange::job::{Connection, Job};
use crate::gateway::exchange::local::Served;
use crate::gateway::state::hub::Hub;
use crate::gateway::store::redis::{PeerRoute, RedisStore, RedisStoreError};
use crate::net::keepalive;
use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The header of the peer's answer saying it had no free stream (and took nothing).
pub const BUSY: &str = "X-Vcs-Peer-Busy";

/// How long a replica that could not be reached is not tried again.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Refused peer requests of one kind are logged at most this often.
const LOG_REFUSALS_EVERY: Duration = Duration::from_secs(5);

/// Idle connections kept open to each other replica.
const IDLE_PER_PEER: usize = 64;
/// How long a pool found held by no replica is not looked up in Redis again.
const MISS_KEPT: Duration = Duration::from_secs(1);
/// Pools remembered as found nowhere, at most.
const MISSES_AT_MOST: usize = 4096;

/// Most idle connections kept to all peers together.
const IDLE_IN_ALL: usize = 1024;

/// An idle connection to a peer is not reused after this (the peer closes its side later).
const IDLE_REUSE: Duration = Duration::from_secs(30);

/// Counters shown per replica in `/healthz` and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests this replica served for others from its own streams.
    pub forwarded_in: AtomicU64,
    /// Requests this replica forwarded to others (each try that reached a peer's stream).
    pub forwarded_out: AtomicU64,
    /// Peers unreachable, refusing, or lost mid-request; and refused peer requests.
    pub errors: AtomicU64,
}

/// This replica's side of forwarding: its name, the shared secret, the routing table (in
/// [`RedisStore`]), the connections kept open to the others, and the counters.
pub struct Peers {
    pub replica: String,
    secret: signing::PeerSecret,
    shared: Arc<RedisStore>,
    idle: keepalive::Pool<client::PeerConn>,
    down: Mutex<HashMap<String, Instant>>,
    /// Pools looked up in Redis and found held by no replica, and when.
    misses: Mutex<HashMap<String, Instant>>,
    turn: AtomicUsize,
    /// Request ids the peer port took (each runs once).
    seen: signing::Seen,
    /// Per kind of refused peer request: when it was last logged, and how many since.
    refusals: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
    pub counters: Counters,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peers({})", self.replica)
    }
}

impl Peers {
    /// Forwarding for `replica`, reachable by the others at `address` (recorded in Redis).
    pub fn new(
        replica: &str,
        address: &str,
        secret: signing::PeerSecret,
        shared: Arc<RedisStore>,
    ) -> Arc<Peers> {
        shared.keep_routes(address);
        Arc::new(Peers {
            replica: replica.to_string(),
            secret,
            shared,
            idle: keepalive::Pool::new(
                "replica",
                keepalive::Limits {
                    max_age: IDLE_REUSE,
                    per_key: IDLE_PER_PEER,
                    total: IDLE_IN_ALL,
                },
            ),
            down: Mutex::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
            seen: signing::Seen::default(),
            refusals: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// The replicas to try for `pool`, in turn (each request starts at the next one), those
    /// found unreachable within the last second left out.
    pub fn routes(&self, pool: &str) -> Vec<PeerRoute> {
        let mut routes = self.shared.routes(pool);
        if let Ok(down) = self.down.lock() {
            let now = Instant::now();
            routes.retain(|r| down.get(&r.address).is_none_or(|until| *until <= now));
        }
        if !routes.is_empty() {
            let start = self.turn.fetch_add(1, Ordering::Relaxed) % routes.len();
            routes.rotate_left(start);
        }
        routes
    }

    /// Leaves `address` out of routing for a moment.
    fn mark_down(&self, address: &str) {
        if let Ok(mut down) = self.down.lock() {
            down.insert(address.to_string(), Instant::now() + DOWN_FOR);
        }
    }

    /// An idle connection to `address` kept from an earlier request that passed the look at
    /// its socket ([`keepalive`]), if any.
    fn reuse(&self, address: &str) -> Option<client::PeerConn> {
        self.idle.checkout(address)
    }

    /// Keeps `conn`, whose answer was read to its end, for the next request to its replica.
    fn keep(&self, conn: client::PeerConn) {
        self.idle.checkin(conn);
    }

    /// Logs a refused peer request: the first of each kind at once, then at most one line per
    /// kind every [`LOG_REFUSALS_EVERY`] with how many were refused meanwhile, so a flood of
    /// bad requests cannot flood the log.
    fn log_refused(&self, kind: &'static str, from: std::net::SocketAddr, why: &str) {
        let Ok(mut refusals) = self.refusals.lock() else {
            return;
        };
        let now = Instant::now();
        let entry = refusals.entry(kind).or_insert((None, 0));
        if entry
            .0
            .is_some_and(|last| now.duration_since(last) < LOG_REFUSALS_EVERY)
        {
            entry.1 += 1;
            return;
        }
        let more = match std::mem::take(&mut entry.1) {
            0 => String::new(),
            n => format!(" ({n} more {kind} ones since the last line)"),
        };
        entry.0 = Some(now);
        log::warn!(target: "peer", "refused a request from {from} on the peer port: {why}{more}");
    }

    fn error(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// `(forwarded in, forwarded out, peer errors)`.
    pub fn figures(&self) -> (u64, u64, u64) {
        let c = &self.counters;
        (
            c.forwarded_in.load(Ordering::Relaxed),
            c.forwarded_out.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        )
    }
}

/// Opens a connection to a peer port (loopback or a private network: a second at most).
fn connect(address: &str) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::other("no address");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Peers {
    /// Whether another replica is known to hold streams of `pool`.
    pub fn has_routes(&self, pool: &str) -> bool {
        !self.shared.routes(pool).is_empty() || self.look_up(pool)
    }

    /// For a pool the routing table (up to a second old) says no other replica holds: asks
    /// Redis once, so a request right after the pool's agent connected elsewhere finds it.
    /// A pool found nowhere is not asked about again for [`MISS_KEPT`], so a flood of
    /// requests for a pool without agents costs Redis nothing.
    fn look_up(&self, pool: &str) -> bool {
        let now = Instant::now();
        if let Ok(mut misses) = self.misses.lock() {
            if misses
                .get(pool)
                .is_some_and(|at| now.duration_since(*at) < MISS_KEPT)
            {
                return false;
            }
            if misses.len() >= MISSES_AT_MOST {
                misses.retain(|_, at| now.duration_since(*at) < MISS_KEPT);
            }
        }
        let found = self
            .shared
            .look_up_routes(pool)
            .is_ok_and(|routes| !routes.is_empty());
        if !found {
            if let Ok(mut misses) = self.misses.lock() {
                misses.insert(pool.to_string(), now);
            }
        }
        found
    }

    /// `true` the first time any replica takes forwarded request `id`: once here ([`Seen`]),
    /// and once across all replicas (one `SET NX` in Redis). While Redis cannot say, this
    /// replica's own memory decides, so forwarding goes on through an outage (a replay to a
    /// third replica then needs a capture and the outage within the same 10 s).
    ///
    /// [`Seen`]: signing::Seen
    fn claim(&self, id: &str) -> bool {
        self.seen.first(id, crate::clock::now_millis())
            && match self.shared.claim_request(id, 2 * signing::WINDOW) {
                Ok(first) => first,
                Err(RedisStoreError::Unreachable) => true,
                Err(_) => false,
            }
    }

    /// Tries the replicas holding streams of `pool` in turn, each request starting at the
    /// next; `None` when none took it (nothing reached an agent, the job is untouched).
    pub(crate) fn forward_to_any(
        &self,
        pool: &str,
        caller_name: &str,
        job: &mut Job,
        caller: &mut Connection,
        settings: &crate::gateway::state::settings::GatewaySettings,
    ) -> Option<Served> {
        for route in self.routes(pool) {
            match client::forward(self, &route, pool, caller_name, job, caller, settings) {
                client::Forwarded::NotTaken => continue,
                client::Forwarded::Done { reusable, record } => {
                    return Some(Served::Exchanged { record, reusable })
                }
            }
        }
        None
    }
}

impl Peers {
    /// The counters for `/healthz`'s `replica` object, and the routing table (which other
    /// replicas hold streams of which pool, as this one last read it).
    pub fn health(&self) -> serde_json::Value {
        let (forwarded_in, forwarded_out, errors) = self.figures();
        serde_json::json!({
            "forwarded_in": forwarded_in,
            "forwarded_out": forwarded_out,
            "peer_errors": errors,
            "routes": self.shared.all_routes(),
        })
    }

    /// The counters in `/metrics`, labelled with this replica's name.
    pub fn render(&self, out: &mut crate::observe::prometheus::Exposition) {
        let (forwarded_in, forwarded_out, errors) = self.figures();
        let label = [("replica", self.replica.as_str())];
        let families = [
            (
                "vcs_gateway_forwarded_in_total",
                "Requests this replica served for other replicas from its own streams.",
                forwarded_in,
            ),
            (
                "vcs_gateway_forwarded_out_total",
                "Requests this replica forwarded to another replica's streams.",
                forwarded_out,
            ),
            (
                "vcs_gateway_peer_errors_total",
                "Other replicas unreachable, refusing or lost mid-request, and refused peer requests.",
                errors,
            ),
        ];
        for (name, help, value) in families {
            out.family(name, "counter", help);
            out.sample(name, &label, value);
        }
    }
}

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
