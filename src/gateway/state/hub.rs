//! The gateway's live state: the registry of pools, kept in line with the store, and what
//! the whole process counts (open tunnel requests, draining).
//!
//! Dispatch is a queue of idle streams per pool ([`super::idle`], held by
//! [`super::pool::LivePool`]), shared by every agent of the pool. The caller's own thread takes
//! one (waiting up to the queue timeout), runs the exchange on it and gives it back, so a
//! request crosses no thread boundary inside the gateway: a thread per agent stream taking
//! jobs from a channel would cost two thread hand-offs per request, which profiling showed to
//! be the main cost of such a design. Idle streams are looked after by one housekeeping
//! thread ([`crate::gateway::agent_port::housekeeper`]). Load spreads across agents by who is idle.
//!
//! Pools and their keys live in the store ([`crate::gateway::store`]), which other processes change
//! too (`vcs-gateway pool create`, another replica): [`Hub::reload`] brings the live pools in
//! line with it, and a miss (an unknown pool name, a key that does not match) reads it again
//! before it is believed.

use crate::gateway::state::pool::LivePool;
use crate::gateway::state::settings::GatewaySettings;
use crate::gateway::store::{Store, StoreError};
use crate::token;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// One tunnel request counted in [`Hub::open_requests`] while it lives.
pub struct OpenRequest<'a>(&'a Hub);

impl Drop for OpenRequest<'_> {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::SeqCst);
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
    pub callers: crate::gateway::state::callers::Callers,
    /// Refused agent logins: counted, summed up in the log, slowed down.
    pub logins: crate::gateway::state::logins::Logins,
    /// Tunnel requests the gateway refused itself: counted, summed up in the log.
    pub refusals: crate::observe::tally::Tally,
    pub settings: GatewaySettings,
    /// Set on SIGTERM: no new request is dispatched and idle agent streams are closed.
    draining: AtomicBool,
    /// Tunnel requests being handled, waiting for a stream or running: a drain lets each
    /// get its answer before the process exits.
    open_requests: AtomicUsize,
    /// Serialises reloads, so an older snapshot of the store never lands after a newer one.
    reloading: Mutex<()>,
    /// When the last forced reload ran (ms since the epoch), to rate-limit misses.
    last_forced_reload: AtomicU64,
    pools: RwLock<HashMap<String, Arc<LivePool>>>,
    seen: Mutex<Option<crate::gateway::store::Stamp>>,
}

impl Hub {
    pub fn new(store: Store, settings: GatewaySettings) -> Result<Hub, StoreError> {
        let hub = Hub {
            callers: crate::gateway::state::callers::Callers::new(store.clone())?,
            logins: Default::default(),
            refusals: crate::observe::tally::Tally::new(
                "front",
                "tunnel requests refused by the gateway",
            ),
            store,
            settings,
            draining: AtomicBool::new(false),
            open_requests: AtomicUsize::new(0),
            reloading: Mutex::new(()),
            last_forced_reload: AtomicU64::new(0),
            pools: RwLock::new(HashMap::new()),
            seen: Mutex::new(None),
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
            .map(|p| p.values().map(|p| p.streams()).sum())
            .unwrap_or(0)
    }

    /// The live pools, without looking at the store (for the housekeeper).
    pub fn live_pools(&self) -> Vec<Arc<LivePool>> {
        self.pools
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Requests being served right now, over all pools.
    pub fn busy(&self) -> usize {
        self.pools
            .read()
            .map(|p| p.values().map(|p| p.busy()).sum())
            .unwrap_or(0)
    }

    /// Brings the live pools in line with the store: new pools appear, deleted ones close,
    /// a rotated key closes the streams that authenticated with the old one.
    pub fn reload(&self) -> Result<(), StoreError> {
        let _serial = self
            .reloading
            .lock()
            .map_err(|_| StoreError::Poisoned("reload lock"))?;
        let records = self.store.load()?;
        let mut pools = self
            .pools
            .write()
            .map_err(|_| StoreError::Poisoned("pool table"))?;
        for record in &records {
            match pools.get(&record.name) {
                Some(pool) if pool.record().ulid == record.ulid => {
                    if pool.record().key_sha256 != record.key_sha256 {
                        let renewed = Arc::new(pool.rekeyed(record.clone()));
                        pool.close();
                        pools.insert(record.name.clone(), renewed);
                    } else {
                        pool.set_record(record.clone());
                    }
                }
                _ => {
                    if let Some(old) = pools.get(&record.name) {
                        old.close();
                    }
                    pools.insert(record.name.clone(), Arc::new(LivePool::new(record.clone())));
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

    pub fn pool(&self, name: &str) -> Option<Arc<LivePool>> {
        if let Some(pool) = self.lookup(name) {
            return Some(pool);
        }
        // Maybe created by another process a moment ago (file times can be too coarse to
        // tell): a miss reads the store again, unless the name cannot be a pool's or a miss
        // already did within the last 100 ms (random names must not become disk reads).
        if crate::gateway::store::validate_name(name).is_err() {
            return None;
        }
        let now = crate::clock::now_millis();
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

    fn lookup(&self, name: &str) -> Option<Arc<LivePool>> {
        self.pools.read().ok()?.get(name).cloned()
    }

    pub fn pools(&self) -> Vec<Arc<LivePool>> {
        self.refresh();
        let mut list = self.live_pools();
        list.sort_by_key(|p| p.name());
        list
    }

    /// Checks an agent's pool id and key. A miss looks at the store again first: the pool
    /// may have been created, or its key rotated, by another process a moment ago. It reads
    /// the store when its file changed, and otherwise at most every 250 ms (file times can be
    /// too coarse to tell), so a flood of wrong keys costs no disk reads.
    pub fn authenticate(&self, ulid: &str, key: &str) -> Result<Arc<LivePool>, AuthError> {
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
        let now = crate::clock::now_millis();
        let last = self.last_forced_reload.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every_ms
            && self
                .last_forced_reload
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn check_key(&self, ulid: &str, key: &str) -> Result<Arc<LivePool>, AuthError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with_pool(name: &str) -> (Hub, Store) {
        let dir = std::env::temp_dir().join(format!("vcs-hub-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir).unwrap();
        store.create(name, "").unwrap();
        (
            Hub::new(store.clone(), GatewaySettings::default()).unwrap(),
            store,
        )
    }

    #[test]
    fn a_hub_is_built_from_a_file_store_and_follows_it() {
        let (hub, store) = hub_with_pool("alpha");
        let pool = hub.pool("alpha").expect("the stored pool is live");
        assert_eq!((hub.streams(), hub.busy(), hub.open_requests()), (0, 0, 0));
        assert!(hub.pool("beta").is_none());
        store.create("beta", "").unwrap();
        assert!(hub.pool("beta").is_some(), "a miss reads the store again");
        store.delete("alpha").unwrap();
        hub.reload().unwrap();
        assert!(hub.pool("alpha").is_none());
        assert!(pool.is_closed(), "a deleted pool closes");
    }

    #[test]
    fn agents_authenticate_with_their_pool_key_only() {
        let (hub, store) = hub_with_pool("alpha");
        let (record, key) = store.create("gamma", "").unwrap();
        hub.reload().unwrap();
        let pool = hub.authenticate(&record.ulid, key.expose()).unwrap();
        assert_eq!(pool.name(), "gamma");
        let wrong = hub.authenticate(&record.ulid, "not-the-key");
        assert_eq!(wrong.err(), Some(AuthError::WrongKey));
        let unknown = hub.authenticate("01nosuchpool", key.expose());
        assert_eq!(unknown.err(), Some(AuthError::UnknownPool));
    }

    #[test]
    fn open_requests_are_counted_while_their_guard_lives() {
        let (hub, _store) = hub_with_pool("alpha");
        let guard = hub.request_opened();
        assert_eq!(hub.open_requests(), 1);
        drop(guard);
        assert_eq!(hub.open_requests(), 0);
        assert!(!hub.is_draining());
        hub.start_draining();
        assert!(hub.is_draining());
    }
}
