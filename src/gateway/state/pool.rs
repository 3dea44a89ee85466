//! A pool as the gateway lives it: its queue of idle agent streams, who is connected and
//! busy, and what it served (counters for `/metrics`, the recent-request ring and the last
//! hour for the panel).
//!
//! Every finished request passes through [`LivePool::remember`], the one place that logs it and
//! feeds the counters, so the log, the panel and `/metrics` can never disagree. The figures
//! that must follow a stream's life (streams, busy) are kept by guards and `Drop`s, so a
//! panicking exchange never leaves them raised.
//!
//! A pool whose streams are only reconnecting (after a cancellation or a blip) is given up to
//! [`RECONNECT_GRACE`] before `no_agent`; a pool deleted or re-keyed while a request waited
//! answers `no_agent`.

use crate::gateway::state::idle::IdleQueue;
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::stats::Traffic;
use crate::gateway::state::stream::{AgentInfo, AgentStream};
use crate::gateway::store::PoolRecord;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a pool whose last stream just left is given to reconnect before `no_agent`.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

/// How many recent requests each pool keeps for the panel.
pub const RECENT_REQUESTS: usize = 500;

/// A stream counted busy by [`LivePool::busy_while`].
pub struct Busy<'a> {
    pool: &'a LivePool,
    instance: &'a str,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.pool.set_busy(self.instance, false);
    }
}

pub struct LivePool {
    record: RwLock<PoolRecord>,
    /// Idle agent streams of this pool, any agent's: a caller takes one, gives it back.
    pub idle: IdleQueue<AgentStream>,
    streams: AtomicUsize,
    busy: AtomicUsize,
    /// Requests waiting for an idle stream of this pool.
    queued: AtomicUsize,
    requests: AtomicU64,
    agents: Mutex<BTreeMap<String, AgentInfo>>,
    recent: Mutex<VecDeque<RequestRecord>>,
    last_stream_left: Mutex<Option<Instant>>,
    /// Counters for `/metrics`.
    pub stats: PoolStats,
    /// The last hour minute by minute and its refused requests, for the panel.
    traffic: Mutex<Traffic>,
    /// Set when the pool is deleted: its streams close.
    closed: AtomicBool,
    /// Its last relayed webhooks (`crate::gateway::webhook`).
    pub webhooks: super::webhooks::Recent,
}

impl LivePool {
    pub(super) fn new(record: PoolRecord) -> LivePool {
        LivePool {
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
            webhooks: Default::default(),
        }
    }

    /// A pool with a new key replacing `self`: same history, no streams (they authenticated
    /// with the old key and are closed with `self`).
    pub(super) fn rekeyed(&self, record: PoolRecord) -> LivePool {
        let pool = LivePool::new(record);
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

    /// Takes in a changed record of the same pool (same id, same key).
    pub(super) fn set_record(&self, record: PoolRecord) {
        if let Ok(mut r) = self.record.write() {
            *r = record;
        }
    }

    pub fn name(&self) -> String {
        match self.record.read() {
            Ok(r) => r.name.clone(),
            Err(poisoned) => poisoned.into_inner().name.clone(),
        }
    }

    /// Streams connected now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// Streams serving a request now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Requests waiting for an idle stream now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Requests served over this pool's streams since the gateway started.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Counts one request served over a stream of this pool.
    pub(crate) fn count_served(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for an idle stream until `until`, counted as queued meanwhile. A drain, or the
    /// pool's deletion, shuts the queue and wakes this at once.
    pub(crate) fn take_idle_until(&self, until: Instant) -> Option<AgentStream> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let taken = self.idle.take_until(until);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        taken
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
    pub(super) fn shut_for_drain(&self) {
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
        self.count(record);
    }

    /// Counts `record` in the pool's figures and recent requests, without a log line (a
    /// refusal, summed up in the log with the others).
    pub fn count(&self, record: RequestRecord) {
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
        let counts =
            self.traffic(|t, now| t.sum(now, crate::gateway::state::stats::MINUTES as u64));
        (counts.requests, counts.denied)
    }

    /// Reads the pool's traffic of the last hour; `now` is the time in milliseconds.
    pub fn traffic<R: Default>(&self, read: impl FnOnce(&Traffic, u64) -> R) -> R {
        let now = crate::clock::now_millis();
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

/// Counters of one pool, for `/metrics` ([`crate::gateway::operator::metrics`]).
#[derive(Default)]
pub struct PoolStats {
    by_status: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl PoolStats {
    pub fn observe(&self, record: &RequestRecord) {
        if let Ok(mut map) = self.by_status.lock() {
            *map.entry(record.status).or_insert(0) += 1;
        }
        if let Some(kind) = record.error {
            if let Ok(mut map) = self.errors.lock() {
                *map.entry(kind.as_str()).or_insert(0) += 1;
            }
        }
        self.bytes_in.fetch_add(record.bytes_in, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(record.bytes_out, Ordering::Relaxed);
    }

    /// Finished requests by HTTP status.
    pub fn by_status(&self) -> Vec<(u16, u64)> {
        self.by_status
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// Failed requests by error kind.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        self.errors
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// Request body bytes received from callers.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Response body bytes sent to callers.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
}

impl crate::gateway::state::stream::Membership for LivePool {
    fn name(&self) -> String {
        LivePool::name(self)
    }

    fn stream_left(&self, instance: &str) {
        LivePool::stream_left(self, instance)
    }
}
