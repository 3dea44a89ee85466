//! This replica's side of forwarding ([`Peers`]): its name and secret, the routing table
//! it reads from Redis, the connections kept open to the others, which replicas are down
//! for a moment, the request ids already served, and the counters. The client and the
//! server take it; it knows neither.

use super::conn::PeerConn;
use super::signing;
use crate::gateway::store::redis::{PeerRoute, RedisStore, RedisStoreError};
use crate::net::keepalive;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    pub(crate) secret: signing::PeerSecret,
    shared: Arc<RedisStore>,
    idle: keepalive::Pool<PeerConn>,
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
    pub(crate) fn mark_down(&self, address: &str) {
        if let Ok(mut down) = self.down.lock() {
            down.insert(address.to_string(), Instant::now() + DOWN_FOR);
        }
    }

    /// An idle connection to `address` kept from an earlier request that passed the look at
    /// its socket ([`keepalive`]), if any.
    pub(crate) fn reuse(&self, address: &str) -> Option<PeerConn> {
        self.idle.checkout(address)
    }

    /// Keeps `conn`, whose answer was read to its end, for the next request to its replica.
    pub(crate) fn keep(&self, conn: PeerConn) {
        self.idle.checkin(conn);
    }

    /// Logs a refused peer request: the first of each kind at once, then at most one line per
    /// kind every [`LOG_REFUSALS_EVERY`] with how many were refused meanwhile, so a flood of
    /// bad requests cannot flood the log.
    pub(crate) fn log_refused(&self, kind: &'static str, from: std::net::SocketAddr, why: &str) {
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

    pub(crate) fn error(&self) {
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
    pub(crate) fn claim(&self, id: &str) -> bool {
        self.seen.first(id, crate::clock::now_millis())
            && match self.shared.claim_request(id, 2 * signing::WINDOW) {
                Ok(first) => first,
                Err(RedisStoreError::Unreachable) => true,
                Err(_) => false,
            }
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
