//! The gateway's live state: pools, their idle agent streams, and who is connected.
//!
//! Dispatch is a queue of idle streams per pool ([`super::idle`]), shared by every agent of
//! the pool. The caller's own thread takes one (waiting up to the queue timeout), runs the
//! exchange on it and gives it back, so a request crosses no thread boundary inside the
//! gateway: a thread per agent stream taking jobs from a channel would cost two thread
//! hand-offs per request, which profiling showed to be the main cost of such a design. Idle
//! streams are looked after by one housekeeping thread ([`super::agents::housekeeper`]).
//! Load spreads across agents by who is idle.

use crate::gateway::agents::AgentStream;
use crate::gateway::idle::IdleQueue;
use crate::gateway::stats::Traffic;
use crate::gateway::store::{PoolRecord, Store};
use crate::http1::Framing;
use crate::net::Stream;
use crate::protocol::{ErrorKind, Headers};
use crate::token;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Gateway timings, and what the panel and its API need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a request waits for an idle stream.
    pub queue_timeout: Duration,
    /// Ping idle agent streams this often; drop them after three silent intervals.
    pub keepalive: Duration,
    /// Longest silence from an agent in the middle of an exchange.
    pub exchange_timeout: Duration,
    /// Bearer token for the panel, `/api/…`, `/metrics` and `/healthz`'s figures; `None`
    /// lets nobody in (the `serve` command always sets one).
    pub admin_token: Option<token::Secret>,
    /// Agent URL written into tokens the API creates; `None` means `ws://<agent port>`.
    pub public_url: Option<String>,
    /// Tunnel requests served at once (a connection and thread each).
    pub max_callers: usize,
    /// This replica's name, when pools and callers are in Redis (`serve --redis`).
    pub replica_id: Option<String>,
    /// Changes reach this replica by the polled version alone (tests).
    pub poll_only: bool,
    /// Connections one peer address may hold on the api port.
    pub max_per_address: usize,
    /// Bytes per second a request body must average while it holds an agent stream, after
    /// [`Settings::upload_grace`]; 0 turns the check off.
    pub min_upload_rate: u64,
    pub upload_grace: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            queue_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(20),
            exchange_timeout: Duration::from_secs(120),
            admin_token: None,
            public_url: None,
            max_callers: 1024,
            replica_id: None,
            poll_only: false,
            max_per_address: 256,
            min_upload_rate: 240,
            upload_grace: Duration::from_secs(5),
        }
    }
}

/// A stream counted busy by [`Pool::busy_while`].
pub struct Busy<'a> {
    pool: &'a Pool,
    instance: &'a str,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.pool.set_busy(self.instance, false);
    }
}

/// One tunnel request counted in [`Hub::open_requests`] while it lives.
pub struct OpenRequest<'a>(&'a Hub);

impl Drop for OpenRequest<'_> {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A caller's connection; its own thread serves it from request head to answer.
pub struct Caller {
    pub conn: BufReader<Stream>,
    pub peer: SocketAddr,
    /// For total deadlines on reading a request head or body start.
    pub watchable: crate::net::deadline::Watchable,
}

/// How long a closing caller connection may keep sending before it is cut off.
const CALLER_LINGER: Duration = Duration::from_secs(2);

impl Drop for Caller {
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

/// One request through the front, as the gateway log and the panel show it. Secrets never
/// get here: the path's token-like query values are already masked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestRecord {
    pub id: String,
    /// Unix time in milliseconds when the request arrived.
    pub time_ms: u64,
    pub method: String,
    pub path: String,
    /// What the request was for: the agent's allowlist rule description.
    pub rule: Option<String>,
    pub project: Option<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed_ms: f64,
    /// Error kind and its sentence, when the request failed (a denial's reason is here).
    pub error: Option<ErrorKind>,
    pub reason: Option<String>,
    pub agent: Option<String>,
    /// The caller that sent it (`None`: not authenticated).
    pub caller: Option<String>,
}

impl RequestRecord {
    /// The gateway's log line: joinable with the agent's access line by `id`.
    pub fn log(&self, pool: &str) {
        let line = format!(
            "id={} pool={pool} method={} path={} for=\"{}\" project={} status={} bytes_in={} bytes_out={} elapsed_ms={:.1} agent={} caller={}",
            self.id,
            self.method,
            self.path,
            self.rule.as_deref().unwrap_or("-"),
            self.project.as_deref().unwrap_or("-"),
            self.status,
            self.bytes_in,
            self.bytes_out,
            self.elapsed_ms,
            self.agent.as_deref().unwrap_or("-"),
            self.caller.as_deref().unwrap_or("-"),
        );
        match (&self.error, &self.reason) {
            (Some(kind), Some(reason)) => {
                log::warn!(target: "front", "{line} error={kind} reason=\"{reason}\"")
            }
            (Some(kind), None) => log::warn!(target: "front", "{line} error={kind}"),
            _ => log::info!(target: "front", "{line}"),
        }
    }
}

/// How long a pool whose last stream just left is given to reconnect before `no_agent`.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

/// How many recent requests each pool keeps for the panel.
pub const RECENT_REQUESTS: usize = 500;

/// An agent process as the gateway sees it (all its streams share one instance id).
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub instance: String,
    pub version: String,
    pub metadata: BTreeMap<String, String>,
    pub remote: String,
    pub connected_since: u64,
    pub streams: usize,
    pub busy: usize,
}

pub struct Pool {
    record: RwLock<PoolRecord>,
    /// Idle agent streams of this pool, any agent's: a caller takes one, gives it back.
    pub idle: IdleQueue<AgentStream>,
    pub streams: AtomicUsize,
    pub busy: AtomicUsize,
    /// Requests waiting for an idle stream of this pool.
    pub queued: AtomicUsize,
    pub requests: AtomicU64,
    agents: Mutex<BTreeMap<String, AgentInfo>>,
    recent: Mutex<VecDeque<RequestRecord>>,
    last_stream_left: Mutex<Option<Instant>>,
    /// Counters for `/metrics`.
    pub stats: crate::observe::gateway_metrics::PoolStats,
    /// The last hour minute by minute and its refused requests, for the panel.
    traffic: Mutex<Traffic>,
    /// Set when the pool is deleted: its streams close.
    pub closed: AtomicBool,
}

impl Pool {
    fn new(record: PoolRecord) -> Pool {
        Pool {
            record: RwLock::new(record),
            idle: IdleQueue::default(),
            streams: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            agents: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_REQUESTS)),
            last_stream_left: Mutex::new(None),
            stats: Default::default(),
            traffic: Mutex::new(Traffic::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// A pool with a new key replacing `self`: same history, no streams (they authenticated
    /// with the old key and are closed with `self`).
    fn rekeyed(&self, record: PoolRecord) -> Pool {
        let pool = Pool::new(record);
        pool.requests
            .store(self.requests.load(Ordering::Relaxed), Ordering::Relaxed);
        if let (Ok(mut to), Ok(from)) = (pool.recent.lock(), self.recent.lock()) {
            *to = from.clone();
        }
        if let (Ok(mut to), Ok(from)) = (pool.traffic.lock(), self.traffic.lock()) {
            *to = from.clone();
        }
        pool
    }

    pub fn record(&self) -> PoolRecord {
        match self.record.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn name(&self) -> String {
        match self.record.read() {
            Ok(r) => r.name.clone(),
            Err(poisoned) => poisoned.into_inner().name.clone(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Deleted, or its key rotated: idle streams close now, busy ones when given back, and
    /// queued requests stop waiting.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for stream in self.idle.shut() {
            stream.close("pool deleted or its key rotated");
        }
    }

    /// The gateway drains: the same, for another reason.
    fn shut_for_drain(&self) {
        for stream in self.idle.shut() {
            stream.close("the gateway is shutting down");
        }
    }

    /// Returns a stream after an exchange (or admits a new one); a closed or draining pool
    /// closes it instead.
    pub fn give_back(&self, stream: AgentStream) {
        if let Err(stream) = self.idle.put(stream) {
            stream.close(if self.is_closed() {
                "pool deleted or its key rotated"
            } else {
                "the gateway is shutting down"
            });
        }
    }

    /// Counts a stream in; the first stream of an instance registers the agent.
    pub fn stream_joined(&self, info: &AgentInfo) {
        self.streams.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut agents) = self.agents.lock() {
            agents
                .entry(info.instance.clone())
                .or_insert_with(|| AgentInfo {
                    streams: 0,
                    busy: 0,
                    ..info.clone()
                })
                .streams += 1;
        }
    }

    pub fn stream_left(&self, instance: &str) {
        if let Ok(mut left) = self.last_stream_left.lock() {
            *left = Some(Instant::now());
        }
        self.streams.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut agents) = self.agents.lock() {
            if let Some(agent) = agents.get_mut(instance) {
                agent.streams = agent.streams.saturating_sub(1);
                if agent.streams == 0 {
                    agents.remove(instance);
                }
            }
        }
    }

    /// While a stream left less than [`RECONNECT_GRACE`] ago, the pool counts as reconnecting
    /// (a cancelled request or a gateway blip): requests wait for it until this instant
    /// instead of failing with `no_agent`.
    pub fn reconnecting_until(&self) -> Option<Instant> {
        let left = (*self.last_stream_left.lock().ok()?)?;
        Some(left + RECONNECT_GRACE)
    }

    /// Counts a stream of `instance` as busy until the returned guard is dropped (also when
    /// the exchange panics, so the figures never stay raised).
    pub fn busy_while<'a>(&'a self, instance: &'a str) -> Busy<'a> {
        self.set_busy(instance, true);
        Busy {
            pool: self,
            instance,
        }
    }

    fn set_busy(&self, instance: &str, busy: bool) {
        if busy {
            self.busy.fetch_add(1, Ordering::SeqCst);
        } else {
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
        if let Ok(mut agents) = self.agents.lock() {
            if let Some(agent) = agents.get_mut(instance) {
                if busy {
                    agent.busy += 1;
                } else {
                    agent.busy = agent.busy.saturating_sub(1);
                }
            }
        }
    }

    /// Logs a finished request and keeps it among the recent ones.
    pub fn remember(&self, record: RequestRecord) {
        record.log(&self.name());
        self.stats.observe(&record);
        if let Ok(mut traffic) = self.traffic.lock() {
            traffic.record(&record);
        }
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_REQUESTS {
                recent.pop_front();
            }
            recent.push_back(record);
        }
    }

    /// The latest requests, newest first.
    pub fn recent(&self, limit: usize) -> Vec<RequestRecord> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// Requests and denials in the last hour: `(requests, denials)`.
    pub fn last_hour(&self) -> (u64, u64) {
        let counts = self.traffic(|t, now| t.sum(now, crate::gateway::stats::MINUTES as u64));
        (counts.requests, counts.denied)
    }

    /// Reads the pool's traffic of the last hour; `now` is the time in milliseconds.
    pub fn traffic<R: Default>(&self, read: impl FnOnce(&Traffic, u64) -> R) -> R {
        let now = crate::gateway::store::now_millis();
        self.traffic
            .lock()
            .map(|t| read(&t, now))
            .unwrap_or_default()
    }

    pub fn agents(&self) -> Vec<AgentInfo> {
        self.agents
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Why an agent's upgrade was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    UnknownPool,
    WrongKey,
}

pub struct Hub {
    pub store: Store,
    /// Who may use the front.
    pub callers: crate::gateway::callers::Callers,
    /// Refused agent logins: counted, summed up in the log, slowed down.
    pub logins: crate::gateway::logins::Logins,
    pub settings: Settings,
    /// Set on SIGTERM: no new request is dispatched and idle agent streams are closed.
    draining: AtomicBool,
    /// Tunnel requests being handled, waiting for a stream or running: a drain lets each
    /// get its answer before the process exits.
    open_requests: AtomicUsize,
    /// Serialises reloads, so an older snapshot of the store never lands after a newer one.
    reloading: Mutex<()>,
    /// When the last forced reload ran (ms since the epoch), to rate-limit misses.
    last_forced_reload: AtomicU64,
    pools: RwLock<HashMap<String, Arc<Pool>>>,
    seen: Mutex<Option<crate::gateway::store::Stamp>>,
    /// Forwarding to other replicas (`serve --peer-listen`), once set up.
    pub peers: std::sync::OnceLock<Arc<crate::gateway::peer::Peers>>,
}

impl Hub {
    pub fn new(store: Store, settings: Settings) -> Result<Hub, String> {
        let hub = Hub {
            callers: crate::gateway::callers::Callers::new(store.clone())?,
            logins: Default::default(),
            store,
            settings,
            draining: AtomicBool::new(false),
            open_requests: AtomicUsize::new(0),
            reloading: Mutex::new(()),
            last_forced_reload: AtomicU64::new(0),
            pools: RwLock::new(HashMap::new()),
            seen: Mutex::new(None),
            peers: std::sync::OnceLock::new(),
        };
        hub.reload()?;
        Ok(hub)
    }

    /// Nothing new is dispatched from now on: idle streams close and queued requests wake
    /// to their `503`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for pool in self.live_pools() {
            pool.shut_for_drain();
        }
        // A replica takes itself out of Redis's presence records at once.
        if let Some(shared) = self.store.shared() {
            shared.refresh_presence();
        }
    }

    /// Tunnel requests not yet answered, over all pools.
    pub fn open_requests(&self) -> usize {
        self.open_requests.load(Ordering::SeqCst)
    }

    /// Counts a tunnel request as open until the returned guard is dropped.
    pub fn request_opened(&self) -> OpenRequest<'_> {
        self.open_requests.fetch_add(1, Ordering::SeqCst);
        OpenRequest(self)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Agent streams connected right now, over all pools.
    pub fn streams(&self) -> usize {
        self.pools
            .read()
            .map(|p| p.values().map(|p| p.streams.load(Ordering::SeqCst)).sum())
            .unwrap_or(0)
    }

    /// The live pools, without looking at the store (for the housekeeper).
    pub fn live_pools(&self) -> Vec<Arc<Pool>> {
        self.pools
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Requests being served right now, over all pools.
    pub fn busy(&self) -> usize {
        self.pools
            .read()
            .map(|p| p.values().map(|p| p.busy.load(Ordering::SeqCst)).sum())
            .unwrap_or(0)
    }

    /// Brings the live pools in line with the store: new pools appear, deleted ones close,
    /// a rotated key closes the streams that authenticated with the old one.
    pub fn reload(&self) -> Result<(), String> {
        let _serial = self
            .reloading
            .lock()
            .map_err(|_| "reload lock poisoned".to_string())?;
        let records = self.store.load()?;
        let mut pools = self
            .pools
            .write()
            .map_err(|_| "pool table poisoned".to_string())?;
        for record in &records {
            match pools.get(&record.name) {
                Some(pool) if pool.record().ulid == record.ulid => {
                    if pool.record().key_sha256 != record.key_sha256 {
                        let renewed = Arc::new(pool.rekeyed(record.clone()));
                        pool.close();
                        pools.insert(record.name.clone(), renewed);
                    } else if let Ok(mut r) = pool.record.write() {
                        *r = record.clone();
                    }
                }
                _ => {
                    if let Some(old) = pools.get(&record.name) {
                        old.close();
                    }
                    pools.insert(record.name.clone(), Arc::new(Pool::new(record.clone())));
                }
            }
        }
        pools.retain(|name, pool| {
            let keep = records.iter().any(|r| &r.name == name);
            if !keep {
                pool.close();
            }
            keep
        });
        Ok(())
    }

    /// Reloads when another process changed the store file since the last look.
    pub fn refresh(&self) {
        let modified = self.store.pools_stamp();
        let changed = match self.seen.lock() {
            Ok(mut seen) => {
                let changed = *seen != modified;
                *seen = modified;
                changed
            }
            Err(_) => true,
        };
        if changed {
            if let Err(e) = self.reload() {
                log::error!("{e}");
            }
        }
    }

    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        if let Some(pool) = self.lookup(name) {
            return Some(pool);
        }
        // Maybe created by another process a moment ago (file times can be too coarse to
        // tell): a miss reads the store again, unless the name cannot be a pool's or a miss
        // already did within the last 100 ms (random names must not become disk reads).
        if crate::gateway::store::validate_name(name).is_err() {
            return None;
        }
        let now = crate::gateway::store::now_millis();
        let last = self.last_forced_reload.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 100
            && self
                .last_forced_reload
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.reload_logged();
        } else {
            self.refresh();
        }
        self.lookup(name)
    }

    fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            log::error!("{e}");
        }
    }

    fn lookup(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools.read().ok()?.get(name).cloned()
    }

    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.refresh();
        let mut list = self.live_pools();
        list.sort_by_key(|p| p.name());
        list
    }

    /// Checks an agent's pool id and key. A miss looks at the store again first: the pool
    /// may have been created, or its key rotated, by another process a moment ago. It reads
    /// the store when its file changed, and otherwise at most every 250 ms (file times can be
    /// too coarse to tell), so a flood of wrong keys costs no disk reads.
    pub fn authenticate(&self, ulid: &str, key: &str) -> Result<Arc<Pool>, AuthError> {
        let first = self.check_key(ulid, key);
        if first.is_ok() {
            return first;
        }
        self.refresh();
        if self.reload_due(250) {
            self.reload_logged();
        }
        self.check_key(ulid, key)
    }

    /// Whether a forced reload may run now, at most one per `every_ms` (shared by all misses).
    fn reload_due(&self, every_ms: u64) -> bool {
        let now = crate::gateway::store::now_millis();
        let last = self.last_forced_reload.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every_ms
            && self
                .last_forced_reload
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn check_key(&self, ulid: &str, key: &str) -> Result<Arc<Pool>, AuthError> {
        let pool = self
            .pools
            .read()
            .ok()
            .and_then(|p| p.values().find(|p| p.record().ulid == ulid).cloned())
            .ok_or(AuthError::UnknownPool)?;
        if token::key_matches(key, &pool.record().key_sha256) {
            Ok(pool)
        } else {
            Err(AuthError::WrongKey)
        }
    }
}
