//! The store: pools (names, descriptions, ids, SHA-256 hashes of agent keys, webhook URLs
//! and their secrets) and callers (the SaaS side's named credentials, the pools each may
//! use, SHA-256 hashes of their secrets). Keys and caller secrets themselves are never
//! stored: they are shown once, when made.
//!
//! [`Store`] is one of two backends: the data directory of a gateway that runs alone
//! ([`FileStore`], `files.rs`) or Redis for replicas ([`redis`]). Both change the records
//! in one step that may run again (a lock, or a Redis transaction) and take the change's
//! own error type, so a refusal made inside a change (a name taken, a pool that does not
//! exist) reaches the caller as it was made. The rules the records follow are in
//! `records.rs`, a leaf both backends and the operator's API use.
//!
//! Deleting a pool takes it out of every caller's pools, so a pool created later under the same
//! name is not theirs.

pub(crate) mod files;
pub(crate) mod records;
pub(crate) mod redis;

pub use files::{FileStore, Stamp};

pub use records::{
    check_webhook_url, validate_caller_name, validate_name, CallerRecord, NameError, PoolRecord,
    Scope, WebhookSecret, WebhookUrlError, MAX_DESCRIPTION, WEBHOOK_SECRET_PREFIX,
};

use crate::clock::now_seconds;
use crate::token::{self, Secret};
use redis::RedisStore;
use std::path::Path;
use std::sync::Arc;

/// Why the store refused or failed a change, or could not be read. `Display` is the one
/// sentence the operator sees (the API answers it, the command line prints it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A pool or caller name that breaks the naming rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A webhook URL the store does not take.
    #[error(transparent)]
    WebhookUrl(#[from] WebhookUrlError),
    #[error("description must be at most 1024 bytes")]
    DescriptionTooLong,
    /// A pool or caller of that name exists already.
    #[error("a {what} named \"{name}\" already exists")]
    Exists { what: &'static str, name: String },
    #[error("a caller needs at least one pool (or all pools)")]
    NoPools,
    #[error("no pool named \"{0}\"")]
    NoSuchPool(String),
    #[error("pool \"{0}\" is named twice")]
    PoolTwice(String),
    #[error(transparent)]
    NoRandomness(#[from] token::NoRandomness),
    /// The data directory could not be read or written.
    #[error(transparent)]
    Files(#[from] files::FileError),
    /// Redis could not make the change (its own sentence).
    #[error(transparent)]
    RedisStore(#[from] redis::RedisStoreError),
    /// A table of the live state, kept in line with the store, was held by a thread that
    /// panicked.
    #[error("{0} poisoned")]
    Poisoned(&'static str),
}

/// Prefix of caller secrets, so secret scanners and people recognise one.
pub const CALLER_SECRET_PREFIX: &str = "vgc_";

/// Where pools and callers live: the data directory (one gateway), or Redis (replicas).
#[derive(Debug, Clone)]
pub enum Store {
    Files(FileStore),
    Redis(Arc<RedisStore>),
}

impl Store {
    /// Opens (and creates if needed) the data directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        Ok(Store::Files(FileStore::open(dir.as_ref())?))
    }

    /// The store of a set of replicas, in Redis (see [`redis`]).
    pub fn redis(shared: Arc<RedisStore>) -> Store {
        Store::Redis(shared)
    }

    /// Redis, when this store is a set of replicas'.
    pub fn shared(&self) -> Option<&Arc<RedisStore>> {
        match self {
            Store::Files(_) => None,
            Store::Redis(shared) => Some(shared),
        }
    }

    /// Whether changes can be made now (Redis reachable; always for the data directory).
    pub fn reachable(&self) -> bool {
        match self {
            Store::Files(_) => true,
            Store::Redis(shared) => shared.is_reachable(),
        }
    }

    /// The pools file (`pools.json` in the data directory; a bare `pools.json` for Redis).
    pub fn path(&self) -> std::path::PathBuf {
        match self {
            Store::Files(files) => files.pools_path(),
            Store::Redis(_) => std::path::PathBuf::from("pools.json"),
        }
    }

    /// Where the pools are, for the log.
    pub fn describe(&self) -> String {
        match self {
            Store::Files(files) => files.pools_path().display().to_string(),
            Store::Redis(shared) => format!("{shared:?}"),
        }
    }

    /// What identifies the current version of the pools, to notice another process's change.
    pub fn pools_stamp(&self) -> Option<Stamp> {
        match self {
            Store::Files(files) => files.pools_stamp(),
            Store::Redis(shared) => Some(Stamp::version(shared.version())),
        }
    }

    /// What identifies the current version of the callers (`None`: there are none yet).
    pub fn callers_stamp(&self) -> Option<Stamp> {
        match self {
            Store::Files(files) => files.callers_stamp(),
            Store::Redis(shared) => Some(Stamp::version(shared.version())),
        }
    }

    pub fn load(&self) -> Result<Vec<PoolRecord>, StoreError> {
        match self {
            Store::Files(files) => Ok(files.load_pools()?),
            Store::Redis(shared) => Ok(shared.snapshot().pools),
        }
    }

    pub fn load_callers(&self) -> Result<Vec<CallerRecord>, StoreError> {
        match self {
            Store::Files(files) => Ok(files.load_callers()?),
            Store::Redis(shared) => Ok(shared.snapshot().callers),
        }
    }

    /// Runs `change` on the pools and saves the result, in one step of either backend.
    fn update<T>(
        &self,
        mut change: impl FnMut(&mut Vec<PoolRecord>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Store::Files(files) => files.change_pools(change),
            Store::Redis(shared) => shared.change(|pools, _| change(pools)),
        }
    }

    /// Runs `change` on the callers (seeing the pools) and saves them.
    fn update_callers<T>(
        &self,
        mut change: impl FnMut(&mut Vec<CallerRecord>, &[PoolRecord]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Store::Files(files) => files.change_callers(change),
            Store::Redis(shared) => shared.change(|pools, callers| change(callers, pools)),
        }
    }

    /// Creates a pool; returns its record and its key (shown once, never stored).
    pub fn create(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(PoolRecord, Secret), StoreError> {
        validate_name(name)?;
        if description.len() > MAX_DESCRIPTION {
            return Err(StoreError::DescriptionTooLong);
        }
        let key = token::new_key()?;
        let record = PoolRecord {
            name: name.to_string(),
            description: description.to_string(),
            ulid: ulid::Ulid::new().to_string(),
            key_sha256: token::key_hash(key.expose()),
            created: now_seconds(),
            webhook_url: None,
            webhook_secret: None,
        };
        let stored = record.clone();
        self.update(move |pools| {
            if pools.iter().any(|p| p.name == stored.name) {
                return Err(StoreError::Exists {
                    what: "pool",
                    name: stored.name.clone(),
                });
            }
            pools.push(stored.clone());
            Ok(())
        })?;
        Ok((record, key))
    }

    /// Removes a pool, and its name from every caller's pools (a pool created later under
    /// the same name is not theirs to use); `false` when there was none of that name.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self.update(|pools| {
            let before = pools.len();
            pools.retain(|p| p.name != name);
            Ok(pools.len() != before)
        })?;
        let scoped = self
            .load_callers()?
            .iter()
            .any(|c| c.pools.iter().any(|p| p == name));
        if scoped {
            self.update_callers(|callers, _| {
                for caller in callers.iter_mut() {
                    caller.pools.retain(|p| p != name);
                }
                Ok(())
            })?;
        }
        Ok(deleted)
    }

    /// Gives a pool a new key; the old one stops working. `None` when there is no such pool.
    pub fn rotate(&self, name: &str) -> Result<Option<(PoolRecord, Secret)>, StoreError> {
        let key = token::new_key()?;
        let hash = token::key_hash(key.expose());
        let record = self.update(|pools| {
            Ok(pools.iter_mut().find(|p| p.name == name).map(|p| {
                p.key_sha256 = hash.clone();
                p.clone()
            }))
        })?;
        Ok(record.map(|r| (r, key)))
    }

    /// Sets (or with `None` clears) a pool's webhook URL. A pool given its first URL gets a
    /// webhook secret, returned to be shown once; clearing drops it. `None`: no such pool.
    pub fn set_webhook(
        &self,
        name: &str,
        url: Option<&str>,
    ) -> Result<Option<(PoolRecord, Option<Secret>)>, StoreError> {
        if let Some(url) = url {
            check_webhook_url(url)?;
        }
        let fresh = WebhookSecret::new()?;
        self.update(|pools| {
            let Some(pool) = pools.iter_mut().find(|p| p.name == name) else {
                return Ok(None);
            };
            let mut shown = None;
            pool.webhook_url = url.map(str::to_string);
            match url {
                None => pool.webhook_secret = None,
                Some(_) if pool.webhook_secret.is_none() => {
                    pool.webhook_secret = Some(fresh.clone());
                    shown = Some(Secret::new(fresh.expose()));
                }
                Some(_) => {}
            }
            Ok(Some((pool.clone(), shown)))
        })
    }
}

impl Store {
    /// Creates a caller allowed to use `scope`; returns its record and its secret (shown
    /// once, never stored). Every named pool must exist.
    pub fn create_caller(
        &self,
        name: &str,
        scope: &Scope,
        client_cert_sha256: Option<String>,
    ) -> Result<(CallerRecord, Secret), StoreError> {
        validate_caller_name(name)?;
        let secret = new_caller_secret()?;
        let record = CallerRecord {
            name: name.to_string(),
            id: ulid::Ulid::new().to_string(),
            secret_sha256: token::key_hash(secret.expose()),
            all_pools: *scope == Scope::All,
            pools: match scope {
                Scope::All => Vec::new(),
                Scope::Pools(pools) => pools.clone(),
            },
            created: now_seconds(),
            client_cert_sha256,
        };
        let stored = record.clone();
        self.update_callers(move |callers, pools| {
            if callers.iter().any(|c| c.name == stored.name) {
                return Err(StoreError::Exists {
                    what: "caller",
                    name: stored.name.clone(),
                });
            }
            check_scope(&stored, pools)?;
            callers.push(stored.clone());
            Ok(())
        })?;
        Ok((record, secret))
    }

    /// Gives a caller a new secret; the old one stops working. `None`: no such caller.
    pub fn rotate_caller(&self, name: &str) -> Result<Option<(CallerRecord, Secret)>, StoreError> {
        let secret = new_caller_secret()?;
        let hash = token::key_hash(secret.expose());
        let record = self.update_callers(|callers, _| {
            Ok(callers.iter_mut().find(|c| c.name == name).map(|c| {
                c.secret_sha256 = hash.clone();
                c.clone()
            }))
        })?;
        Ok(record.map(|r| (r, secret)))
    }

    /// Removes a caller; `false` when there was none of that name.
    pub fn delete_caller(&self, name: &str) -> Result<bool, StoreError> {
        self.update_callers(|callers, _| {
            let before = callers.len();
            callers.retain(|c| c.name != name);
            Ok(callers.len() != before)
        })
    }
}

/// A scope names at least one pool (or all), each existing, none twice.
fn check_scope(caller: &CallerRecord, pools: &[PoolRecord]) -> Result<(), StoreError> {
    if caller.all_pools {
        return Ok(());
    }
    if caller.pools.is_empty() {
        return Err(StoreError::NoPools);
    }
    for (i, name) in caller.pools.iter().enumerate() {
        if !pools.iter().any(|p| &p.name == name) {
            return Err(StoreError::NoSuchPool(name.clone()));
        }
        if caller.pools[..i].contains(name) {
            return Err(StoreError::PoolTwice(name.clone()));
        }
    }
    Ok(())
}

/// A fresh caller secret: the prefix and 256 random bits, base64url.
fn new_caller_secret() -> Result<Secret, StoreError> {
    let key = token::new_key()?;
    Ok(Secret::new(format!(
        "{CALLER_SECRET_PREFIX}{}",
        key.expose()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vcs-store-{tag}-{}", ulid::Ulid::new()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("gitlab-eu-1").is_ok());
        assert!(validate_name(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Upper",
            "under_score",
            "-lead",
            "trail-",
            "sp ace",
            "dot.s",
            &"a".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_list_rotate_delete_survive_reopen() {
        let dir = temp_dir("crud");
        let store = Store::open(&dir).unwrap();
        let (record, key) = store.create("alpha", "first").unwrap();
        assert!(store
            .create("alpha", "again")
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        let raw = fs::read_to_string(dir.join("pools.json")).unwrap();
        assert!(
            !raw.contains(key.expose()),
            "the key itself must not be stored"
        );
        assert!(raw.contains(&record.key_sha256));

        let reopened = Store::open(&dir).unwrap();
        assert_eq!(reopened.load().unwrap(), vec![record.clone()]);

        let (rotated, new_key) = reopened.rotate("alpha").unwrap().unwrap();
        assert_ne!(rotated.key_sha256, record.key_sha256);
        assert!(token::key_matches(new_key.expose(), &rotated.key_sha256));
        assert!(reopened.rotate("nope").unwrap().is_none());

        assert!(reopened.delete("alpha").unwrap());
        assert!(!reopened.delete("alpha").unwrap());
        assert!(reopened.load().unwrap().is_empty());
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_store_is_reported_not_overwritten() {
        let dir = temp_dir("damaged");
        let store = Store::open(&dir).unwrap();
        fs::write(dir.join("pools.json"), b"{not json").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("damaged"));
        assert!(store.create("x", "").is_err());
        assert_eq!(fs::read(dir.join("pools.json")).unwrap(), b"{not json");
        fs::remove_dir_all(dir).unwrap();
    }
}
