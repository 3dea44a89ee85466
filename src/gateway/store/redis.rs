//! The store of a set of replicas: pools and callers kept in Redis instead of the data
//! directory, so every `vcs-gateway serve --redis` (and `pool …`/`caller …` run with
//! `--redis`) sees the same ones.
//!
//! Redis holds two JSON documents, the same as `pools.json` and `callers.json` (key hashes,
//! never keys), a version number raised by every change, and a channel the change is
//! announced on. A change is one `WATCH`/`MULTI`/`EXEC` transaction that rewrites the
//! documents, raises the version and publishes it; a concurrent change makes it start again.
//!
//! Requests never touch Redis: the gateway works from a [`Snapshot`] in memory. One thread
//! ([`RedisStore::start_sync`]) keeps it current: it reads the version every
//! [`POLL_EVERY`] and whenever the subscriber thread hears an announcement, and reads the
//! documents again when the version moved. Pub/sub makes changes quick; the polled version
//! makes them sure, since pub/sub loses what is published while a subscriber is
//! disconnected. Readers and changes share one connection under a lock, so a replica never
//! opens more than two connections to Redis however busy it is.
//!
//! When Redis cannot be reached the snapshot stays as it was: agents and callers are
//! authenticated from the last state read, changes fail with [`UNREACHABLE`], the outage is
//! logged once a minute, and the next successful poll brings everything back. A Redis that
//! comes back without its data (no version where there was one) is not believed: the last
//! state is kept and the fault logged (once a minute), rather than every pool being closed,
//! and the first change made after it writes that last state back together with itself.
//!
//! A change that cannot reach Redis fails within 1 s (`503` to the API). After a lost
//! connection a replica waits a random 250–1 000 ms before dialling again, so replicas
//! restarted together do not stampede Redis.

use crate::gateway::store::records::{CallerRecord, PoolRecord};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// How often the version is read, whatever pub/sub says.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Longest wait for Redis on one command (a stopped Redis must not hold a change for long).
const TIMEOUT: Duration = Duration::from_secs(1);

/// How often an outage is logged while it lasts.
const LOG_OUTAGE_EVERY: Duration = Duration::from_secs(60);

/// The sentence a change gets while Redis cannot be reached.
pub const UNREACHABLE: &str =
    "Redis is unreachable: pools and callers cannot be changed until it is back (the gateway keeps serving with what it last read)";

const POOLS: &str = "vcs-gateway:pools";
const CALLERS: &str = "vcs-gateway:callers";
const VERSION: &str = "vcs-gateway:version";
const CHANNEL: &str = "vcs-gateway:changed";
const ADMIN_TOKEN: &str = "vcs-gateway:admin-token-sha256";
/// Presence keys: `vcs-gateway:presence:<pool>:<replica>`, one per pool a replica holds
/// streams of, each expiring unless refreshed.
const PRESENCE: &str = "vcs-gateway:presence";
/// `<prefix>:<request id>`: a forwarded request some replica has taken.
const PEER_TAKEN: &str = "vcs-gateway:peer-taken";

/// How long a presence record lives unless refreshed: a crashed replica's lapse after this.
pub const PRESENCE_TTL: Duration = Duration::from_secs(5);

/// How often presence records are refreshed (every other poll).
const PRESENCE_EVERY_POLLS: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolsDoc {
    pools: Vec<PoolRecord>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersDoc {
    callers: Vec<CallerRecord>,
}

/// The state as last read from Redis.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    pub pools: Vec<PoolRecord>,
    pub callers: Vec<CallerRecord>,
}

type Listener = Box<dyn Fn() + Send + Sync>;

/// This replica's id and the pools it holds streams of right now (`None`: draining).
type Holding = Box<dyn Fn() -> Option<Vec<String>> + Send + Sync>;

/// What this replica tells Redis about itself.
#[derive(Default)]
struct Presence {
    replica: String,
    /// Where other replicas forward requests to it (its peer port), or empty.
    address: String,
    holding: Option<Holding>,
    /// The pools recorded at the last refresh.
    recorded: Vec<String>,
}

/// A connection to the replicas' Redis and the state last read from it.
pub struct RedisStore {
    client: redis::Client,
    url_shown: String,
    conn: Mutex<Option<redis::Connection>>,
    snapshot: RwLock<Snapshot>,
    reachable: AtomicBool,
    /// When the outage was last logged.
    outage_logged: Mutex<Option<Instant>>,
    /// When "Redis has lost its data" was last logged (it is noticed on every poll).
    lost_logged: Mutex<Option<Instant>>,
    listeners: Mutex<Vec<Listener>>,
    presence: Mutex<Presence>,
    /// Which replicas hold streams of which pool, as last read; `None` until forwarding is
    /// turned on ([`RedisStore::keep_routes`]).
    routes: RwLock<Option<Routes>>,
    /// No new connection is tried before this (a jittered pause after a failed one).
    retry_at: Mutex<Option<Instant>>,
}

/// A replica holding streams of a pool, and where its peer port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoute {
    pub replica: String,
    pub address: String,
}

/// The routing table read from the presence records.
#[derive(Debug, Default)]
struct Routes {
    by_pool: std::collections::HashMap<String, Vec<PeerRoute>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({})", self.url_shown)
    }
}

/// Redis failed: a typed error, so callers tell an outage from a refused change.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("{UNREACHABLE}")]
    Unreachable,
    #[error("the state in Redis is damaged: {0}")]
    Damaged(String),
}

/// Why a replica could not follow Redis at start. `Display` is the one line the operator
/// sees, naming the flag; never the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--redis-ca: cannot read {}: {source}", path.display())]
    ReadCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("--redis-ca {}: {source}", path.display())]
    BadCa {
        path: std::path::PathBuf,
        source: Box<crate::net::tls::TlsError>,
    },
    #[error("--redis-ca needs a rediss:// URL")]
    CaWithoutTls,
    #[error("--redis: not a Redis URL: {0}")]
    NotAUrl(Box<redis::RedisError>),
    /// Unreachable: where, and in `why` the cause of one more try (or nothing).
    #[error("--redis: cannot reach Redis at {address}{why}")]
    Unreachable { address: String, why: String },
    #[error("--redis: {0}")]
    Store(RedisStoreError),
    #[error("cannot start the Redis thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot start the Redis subscriber: {0}")]
    Subscriber(std::io::Error),
}

impl RedisStore {
    /// Connects and reads the state once; fails (naming `--redis`) when Redis cannot be
    /// reached, so a replica never starts with no pools at all.
    pub fn connect(url: &str) -> Result<Arc<RedisStore>, ConnectError> {
        RedisStore::connect_with(url, None)
    }

    /// [`RedisStore::connect`] trusting the CAs of the PEM file `ca` (for `rediss://`) besides
    /// the system's.
    pub fn connect_with(
        url: &str,
        ca: Option<&std::path::Path>,
    ) -> Result<Arc<RedisStore>, ConnectError> {
        let url_shown = url.split('@').next_back().unwrap_or(url).to_string();
        let client = match ca {
            None => redis::Client::open(url),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ConnectError::ReadCa {
                    path: path.to_path_buf(),
                    source,
                })?;
                crate::net::tls::parse_pem_bundle(&pem).map_err(|source| ConnectError::BadCa {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?;
                if !url.starts_with("rediss://") {
                    return Err(ConnectError::CaWithoutTls);
                }
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(url, certificates)
            }
        }
        .map_err(|e| ConnectError::NotAUrl(Box::new(e)))?;
        let shared = Arc::new(RedisStore {
            client,
            url_shown,
            conn: Mutex::new(None),
            snapshot: RwLock::new(Snapshot::default()),
            reachable: AtomicBool::new(true),
            outage_logged: Mutex::new(None),
            lost_logged: Mutex::new(None),
            listeners: Mutex::new(Vec::new()),
            presence: Mutex::new(Presence::default()),
            routes: RwLock::new(None),
            retry_at: Mutex::new(None),
        });
        match shared.poll() {
            Ok(_) => Ok(shared),
            Err(RedisStoreError::Unreachable) => {
                // Why, in one more try: refused, timed out, or (rediss://) not trusted. The
                // error names the address and the cause, never the password.
                let why = match shared.open() {
                    Err(e) => format!(" ({e})"),
                    Ok(_) => String::new(),
                };
                Err(ConnectError::Unreachable {
                    address: shared.url_shown.clone(),
                    why,
                })
            }
            Err(e) => Err(ConnectError::Store(e)),
        }
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }

    pub fn snapshot(&self) -> Snapshot {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn version(&self) -> u64 {
        self.snapshot.read().map(|s| s.version).unwrap_or(0)
    }

    /// Runs `listener` after each change read from Redis.
    pub fn on_change(&self, listener: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.push(Box::new(listener));
        }
    }

    /// Whether the admin token hashing to `hash` is the replicas' one: the first replica to
    /// ask stores its hash, later ones must match it.
    pub fn same_admin_token(&self, hash: &str) -> Result<bool, RedisStoreError> {
        let stored: Option<String> = self.with_conn(|c| {
            redis::cmd("SET")
                .arg(ADMIN_TOKEN)
                .arg(hash)
                .arg("NX")
                .arg("GET")
                .query(c)
        })?;
        Ok(stored.is_none_or(|s| s == hash))
    }

    /// `true` for the first replica to take forwarded request `id` (one `SET NX` that lapses
    /// after `keep`): a captured request replayed to another replica is refused there.
    pub fn claim_request(&self, id: &str, keep: Duration) -> Result<bool, RedisStoreError> {
        let key = format!("{PEER_TAKEN}:{id}");
        let set: Option<String> = self.with_conn(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(keep.as_millis() as u64)
                .query(c)
        })?;
        Ok(set.is_some())
    }

    /// The other replicas holding streams of `pool`, read from Redis now (one `SCAN` of that
    /// pool's presence records and one `MGET`), and learnt into the routing table: for a
    /// request that found no holder in the table, which is up to a second old.
    pub fn look_up_routes(&self, pool: &str) -> Result<Vec<PeerRoute>, RedisStoreError> {
        let me = self
            .presence
            .lock()
            .map(|p| p.replica.clone())
            .unwrap_or_default();
        let records = self.with_conn(|c| read_presence_of(c, &format!("{PRESENCE}:{pool}:*")))?;
        let mut found: Vec<PeerRoute> = records
            .into_iter()
            .filter(|(of, replica, address)| of == pool && *replica != me && !address.is_empty())
            .map(|(_, replica, address)| PeerRoute { replica, address })
            .collect();
        found.sort_by(|a, b| a.replica.cmp(&b.replica));
        if let (false, Ok(mut routes)) = (found.is_empty(), self.routes.write()) {
            if let Some(table) = routes.as_mut() {
                table.by_pool.insert(pool.to_string(), found.clone());
            }
        }
        Ok(found)
    }

    /// Records, per pool, that `replica` holds streams of it: `holding` says which pools
    /// (`None` once draining); refreshed every second, each record expiring after
    /// [`PRESENCE_TTL`].
    pub fn record_presence(
        &self,
        replica: &str,
        holding: impl Fn() -> Option<Vec<String>> + Send + Sync + 'static,
    ) {
        if let Ok(mut presence) = self.presence.lock() {
            presence.replica = replica.to_string();
            presence.holding = Some(Box::new(holding));
        }
    }

    /// Turns on forwarding: the presence records carry `address` (this replica's peer port)
    /// and the routing table is read again at every refresh.
    pub fn keep_routes(&self, address: &str) {
        if let Ok(mut presence) = self.presence.lock() {
            presence.address = address.to_string();
        }
        if let Ok(mut routes) = self.routes.write() {
            routes.get_or_insert_with(Routes::default);
        }
    }

    /// The other replicas holding streams of `pool`, as last read (at most a second old, or
    /// the last known while Redis is unreachable). Never touches Redis.
    pub fn routes(&self, pool: &str) -> Vec<PeerRoute> {
        let Ok(routes) = self.routes.read() else {
            return Vec::new();
        };
        routes
            .as_ref()
            .and_then(|r| r.by_pool.get(pool))
            .cloned()
            .unwrap_or_default()
    }

    /// The whole routing table: pool → the other replicas holding streams of it.
    pub fn all_routes(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let Ok(routes) = self.routes.read() else {
            return Default::default();
        };
        routes
            .iter()
            .flat_map(|r| r.by_pool.iter())
            .map(|(pool, routes)| {
                (
                    pool.clone(),
                    routes.iter().map(|r| r.replica.clone()).collect(),
                )
            })
            .collect()
    }

    /// Reads every presence record into the routing table (one `SCAN` sweep and one `MGET`):
    /// run by the sync thread, so requests never wait for Redis.
    pub fn refresh_routes(&self) {
        let wanted = self.routes.read().map(|r| r.is_some()).unwrap_or(false);
        if !wanted {
            return;
        }
        let me = self
            .presence
            .lock()
            .map(|p| p.replica.clone())
            .unwrap_or_default();
        let Ok(records) = self.with_conn(read_presence) else {
            return;
        };
        let mut table = Routes::default();
        for (pool, replica, address) in records {
            if replica != me && !address.is_empty() {
                table
                    .by_pool
                    .entry(pool)
                    .or_default()
                    .push(PeerRoute { replica, address });
            }
        }
        for routes in table.by_pool.values_mut() {
            routes.sort_by(|a, b| a.replica.cmp(&b.replica));
        }
        if let Ok(mut routes) = self.routes.write() {
            *routes = Some(table);
        }
    }

    /// Writes this replica's presence records: new and refreshed ones with their expiry, and
    /// removes those of pools it no longer holds (all of them once draining).
    pub fn refresh_presence(&self) {
        let Ok(mut presence) = self.presence.lock() else {
            return;
        };
        let Some(holding) = &presence.holding else {
            return;
        };
        let now = holding().unwrap_or_default();
        let key = |pool: &str| format!("{PRESENCE}:{pool}:{}", presence.replica);
        let mut pipe = redis::pipe();
        let value = if presence.address.is_empty() {
            "1".to_string()
        } else {
            presence.address.clone()
        };
        for pool in &now {
            pipe.cmd("SET")
                .arg(key(pool))
                .arg(&value)
                .arg("PX")
                .arg(PRESENCE_TTL.as_millis() as u64)
                .ignore();
        }
        for gone in presence.recorded.iter().filter(|p| !now.contains(p)) {
            pipe.cmd("DEL").arg(key(gone)).ignore();
        }
        if self.with_conn(|c| pipe.query::<()>(c)).is_ok() {
            presence.recorded = now;
        }
    }

    /// Runs `command` on the shared connection, connecting first if needed; an I/O failure
    /// drops the connection and marks Redis unreachable.
    fn with_conn<T>(
        &self,
        command: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisStoreError> {
        let mut guard = self.conn.lock().map_err(|_| RedisStoreError::Unreachable)?;
        if guard.is_none() {
            if self.pausing() {
                return Err(RedisStoreError::Unreachable);
            }
            *guard = Some(self.open().map_err(|e| self.failed(&e))?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(RedisStoreError::Unreachable);
        };
        match command(conn) {
            Ok(value) => {
                self.recovered();
                Ok(value)
            }
            Err(e) if e.is_io_error() || e.is_unrecoverable_error() || e.is_timeout() => {
                *guard = None;
                Err(self.failed(&e))
            }
            Err(e) => Err(RedisStoreError::Damaged(e.to_string())),
        }
    }

    fn open(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(TIMEOUT)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.set_write_timeout(Some(TIMEOUT))?;
        Ok(conn)
    }

    /// Whether a new connection must wait: after a failure, each replica pauses a random
    /// 250–1 000 ms, so replicas restarted together do not all dial Redis at once.
    fn pausing(&self) -> bool {
        self.retry_at
            .lock()
            .map(|at| at.is_some_and(|at| Instant::now() < at))
            .unwrap_or(false)
    }

    fn failed(&self, error: &redis::RedisError) -> RedisStoreError {
        if let Ok(mut at) = self.retry_at.lock() {
            *at = Some(
                Instant::now() + jitter(Duration::from_millis(250), Duration::from_millis(1000)),
            );
        }
        self.reachable.store(false, Ordering::SeqCst);
        if once_a_minute(&self.outage_logged) {
            log::error!(target: "redis",
                "Redis at {} is unreachable ({}): serving with the pools and callers last read; changes are refused until it is back",
                self.url_shown, error.category()
            );
        }
        RedisStoreError::Unreachable
    }

    fn recovered(&self) {
        if !self.reachable.swap(true, Ordering::SeqCst) {
            if let Ok(mut last) = self.outage_logged.lock() {
                *last = None;
            }
            log::info!(target: "redis", "Redis at {} is reachable again", self.url_shown);
        }
    }

    /// Reads the version and, when it moved, the state; `true` when the snapshot changed.
    pub fn poll(&self) -> Result<bool, RedisStoreError> {
        let version: Option<u64> = self.with_conn(|c| redis::cmd("GET").arg(VERSION).query(c))?;
        let known = self.version();
        match version {
            Some(v) if v == known => return Ok(false),
            None if known > 0 => {
                if once_a_minute(&self.lost_logged) {
                    log::error!(target: "redis",
                    "Redis at {} has lost its data (no version where there was {known}): keeping the pools and callers last read",
                        self.url_shown
                    );
                }
                return Ok(false);
            }
            None => return Ok(false),
            Some(_) => {}
        }
        let (pools, callers, version): (Option<String>, Option<String>, Option<u64>) = self
            .with_conn(|c| {
                redis::cmd("MGET")
                    .arg(POOLS)
                    .arg(CALLERS)
                    .arg(VERSION)
                    .query(c)
            })?;
        let snapshot = Snapshot {
            version: version.unwrap_or(0),
            pools: parse::<PoolsDoc>(pools.as_deref())?.pools,
            callers: parse::<CallersDoc>(callers.as_deref())?.callers,
        };
        // Two threads may poll at once: an older read never replaces a newer one.
        match self.snapshot.write() {
            Ok(mut s) if s.version < snapshot.version => {
                *s = snapshot;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Polls, and tells the listeners when something changed.
    fn sync_once(&self) {
        if let Ok(true) = self.poll() {
            if let Ok(listeners) = self.listeners.lock() {
                for listener in listeners.iter() {
                    listener();
                }
            }
        }
    }

    /// Starts the thread keeping the snapshot current and, unless `poll_only`, the
    /// subscriber that wakes it on announcements.
    pub fn start_sync(self: &Arc<Self>, poll_only: bool) -> Result<(), ConnectError> {
        let (kick, kicked) = crossbeam_channel::bounded::<()>(1);
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("redis-sync".into())
            .spawn(move || {
                for tick in 0u32.. {
                    let _ = kicked.recv_timeout(POLL_EVERY);
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    shared.sync_once();
                    if tick % PRESENCE_EVERY_POLLS == 0 {
                        shared.refresh_presence();
                        shared.refresh_routes();
                    }
                }
            })
            .map_err(ConnectError::Thread)?;
        if !poll_only {
            let weak = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("redis-subscriber".into())
                .spawn(move || subscribe(weak, kick))
                .map_err(ConnectError::Subscriber)?;
        }
        Ok(())
    }

    /// Changes the state in one transaction: `change` sees the pools and callers as Redis
    /// has them (it may run again when another replica changed them meanwhile). The new
    /// state is read back before this returns, so the caller's next look sees it.
    pub fn change<T, E: From<RedisStoreError>>(
        &self,
        mut change: impl FnMut(&mut Vec<PoolRecord>, &mut Vec<CallerRecord>) -> Result<T, E>,
    ) -> Result<T, E> {
        if !self.is_reachable() {
            // Try again at once rather than wait for the next poll to notice it is back.
            self.poll()?;
        }
        let known = self.snapshot();
        let outcome = self.with_conn(|c| {
            redis::transaction(c, &[POOLS, CALLERS, VERSION], |c, pipe| {
                let (pools, callers, version): (Option<String>, Option<String>, Option<u64>) =
                    redis::cmd("MGET")
                        .arg(POOLS)
                        .arg(CALLERS)
                        .arg(VERSION)
                        .query(c)?;
                let (mut p, mut k) = match base(pools, callers, version, &known) {
                    Ok(docs) => docs,
                    Err(e) => return Ok(Some(Err(E::from(e)))),
                };
                let next = version.unwrap_or(known.version) + 1;
                let value = match change(&mut p.pools, &mut k.callers) {
                    Ok(value) => value,
                    Err(e) => return Ok(Some(Err(e))),
                };
                let (Ok(p), Ok(k)) = (serde_json::to_string(&p), serde_json::to_string(&k)) else {
                    let damaged = RedisStoreError::Damaged("cannot encode the state".into());
                    return Ok(Some(Err(E::from(damaged))));
                };
                let done: Option<(u64,)> = pipe
                    .set(POOLS, p)
                    .ignore()
                    .set(CALLERS, k)
                    .ignore()
                    .set(VERSION, next)
                    .ignore()
                    .get(VERSION)
                    .publish(CHANNEL, "changed")
                    .ignore()
                    .query(c)?;
                Ok(done.map(|_| Ok(value)))
            })
        })?;
        if outcome.is_ok() {
            self.sync_once();
        }
        outcome
    }
}

/// What a change starts from: the documents in Redis or, when Redis has come back without
/// its data (no version where this replica read one), the state this replica last read, so
/// that the first change after the loss writes everything back instead of only itself. The
/// new version is then above every replica's, and they all read the refilled state.
fn base(
    pools: Option<String>,
    callers: Option<String>,
    version: Option<u64>,
    known: &Snapshot,
) -> Result<(PoolsDoc, CallersDoc), RedisStoreError> {
    if version.is_none() && known.version > 0 {
        let pools = PoolsDoc {
            pools: known.pools.clone(),
        };
        let callers = CallersDoc {
            callers: known.callers.clone(),
        };
        return Ok((pools, callers));
    }
    Ok((
        parse::<PoolsDoc>(pools.as_deref())?,
        parse::<CallersDoc>(callers.as_deref())?,
    ))
}

fn parse<T: serde::de::DeserializeOwned + Default>(
    raw: Option<&str>,
) -> Result<T, RedisStoreError> {
    match raw {
        None => Ok(T::default()),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| RedisStoreError::Damaged(e.to_string()))
        }
    }
}

/// The subscriber: wakes the sync thread on each announcement; reconnects after a second
/// when the connection is lost (the polled version covers what is missed meanwhile).
fn subscribe(shared: Weak<RedisStore>, kick: crossbeam_channel::Sender<()>) {
    loop {
        let Some(client) = shared.upgrade().map(|s| s.client.clone()) else {
            return;
        };
        if let Ok(mut conn) = client.get_connection_with_timeout(TIMEOUT) {
            let mut pubsub = conn.as_pubsub();
            if pubsub.subscribe(CHANNEL).is_ok() {
                while pubsub.get_message().is_ok() {
                    let _ = kick.try_send(());
                }
            }
        }
        std::thread::sleep(jitter(
            Duration::from_millis(500),
            Duration::from_millis(1500),
        ));
    }
}

/// Every presence record: (pool, replica, peer address or "1").
fn read_presence(c: &mut redis::Connection) -> redis::RedisResult<Vec<(String, String, String)>> {
    read_presence_of(c, &format!("{PRESENCE}:*"))
}

/// The presence records whose keys match `pattern`.
fn read_presence_of(
    c: &mut redis::Connection,
    pattern: &str,
) -> redis::RedisResult<Vec<(String, String, String)>> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // A record that lapsed between the sweep and the read comes back as nothing.
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(c)?;
    let prefix = format!("{PRESENCE}:");
    Ok(keys
        .iter()
        .zip(values)
        .filter_map(|(key, value)| {
            let (pool, replica) = key.strip_prefix(&prefix)?.rsplit_once(':')?;
            Some((pool.to_string(), replica.to_string(), value?))
        })
        .collect())
}

/// A random duration between `low` and `high`.
pub fn jitter(low: Duration, high: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    let random = getrandom::getrandom(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes));
    let span = high.saturating_sub(low).as_micros().max(1) as u64;
    low + Duration::from_micros(random % span)
}

/// `true` at most once per [`LOG_OUTAGE_EVERY`] for the moment stored in `last`, which it
/// updates: a condition noticed on every poll is logged once a minute, not per poll.
fn once_a_minute(last: &Mutex<Option<Instant>>) -> bool {
    last.lock().map_or(true, |mut last| {
        let due = last.is_none_or(|t| t.elapsed() >= LOG_OUTAGE_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    })
}
