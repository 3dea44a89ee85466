//! The store: two small JSON files in the data directory, `pools.json` (pools: names,
//! descriptions, ids, SHA-256 hashes of agent keys) and `callers.json` (callers: the SaaS
//! side's named credentials, the pools each may use, SHA-256 hashes of their secrets). Keys
//! and secrets themselves are never stored: they are shown once, when made.
//!
//! Every change is read-modify-write under an exclusive lock on `pools.lock` (so
//! `vcs-gateway pool create` and a running gateway can change the store side by side) and
//! lands atomically: write a temp file (mode `0600`), fsync it, rename it over the old one,
//! fsync the directory. A crash leaves the old file or the new one, never a torn one. A
//! rename gives the file a new inode, which is how a gateway notices another process's
//! change to `callers.json` however coarse file times are.

pub(crate) mod records;
pub(crate) mod redis;

pub use records::{
    check_webhook_url, validate_caller_name, validate_name, CallerRecord, NameError, PoolRecord,
    Scope, WebhookSecret, WebhookUrlError, MAX_DESCRIPTION, WEBHOOK_SECRET_PREFIX,
};

use crate::clock::now_seconds;
use crate::token::{self, Secret};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    #[error("cannot create data directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} is damaged: {source}", path.display())]
    Damaged {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {}: {source}", path.display())]
    OpenLock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Redis refused or failed the change (its own sentence).
    #[error("{0}")]
    RedisStore(String),
    /// A table of the live state, kept in line with the store, was held by a thread that
    /// panicked.
    #[error("{0} poisoned")]
    Poisoned(&'static str),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    pools: Vec<PoolRecord>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersFile {
    callers: Vec<CallerRecord>,
}

/// What tells a store file's versions apart: inode (every write is a rename), size, time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64, u64, Option<SystemTime>);

/// Prefix of caller secrets, so secret scanners and people recognise one.
pub const CALLER_SECRET_PREFIX: &str = "vgc_";

/// Where pools and callers live: the data directory (one gateway), or Redis (replicas).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    shared: Option<std::sync::Arc<crate::gateway::store::redis::RedisStore>>,
}

impl Store {
    /// Opens (and creates if needed) the data directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Store { dir, shared: None })
    }

    /// The store of a set of replicas, in Redis (see [`crate::gateway::store::redis`]).
    pub fn redis(shared: std::sync::Arc<crate::gateway::store::redis::RedisStore>) -> Store {
        Store {
            dir: PathBuf::new(),
            shared: Some(shared),
        }
    }

    /// Redis, when this store is a set of replicas'.
    pub fn shared(&self) -> Option<&std::sync::Arc<crate::gateway::store::redis::RedisStore>> {
        self.shared.as_ref()
    }

    /// Whether changes can be made now (Redis reachable; always for the data directory).
    pub fn reachable(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.is_reachable())
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("pools.json")
    }

    /// Where the pools are, for the log.
    pub fn describe(&self) -> String {
        match &self.shared {
            Some(shared) => format!("{shared:?}"),
            None => self.path().display().to_string(),
        }
    }

    /// What identifies the current version of the pools, to notice another process's change.
    pub fn pools_stamp(&self) -> Option<Stamp> {
        if let Some(shared) = &self.shared {
            return Some(Stamp(shared.version(), 0, None));
        }
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(self.path()).ok()?;
        Some(Stamp(meta.ino(), meta.len(), meta.modified().ok()))
    }

    pub fn load(&self) -> Result<Vec<PoolRecord>, StoreError> {
        if let Some(shared) = &self.shared {
            return Ok(shared.snapshot().pools);
        }
        Ok(self.read::<StoreFile>("pools.json", "pool store")?.pools)
    }

    pub fn callers_path(&self) -> PathBuf {
        self.dir.join("callers.json")
    }

    pub fn load_callers(&self) -> Result<Vec<CallerRecord>, StoreError> {
        if let Some(shared) = &self.shared {
            return Ok(shared.snapshot().callers);
        }
        Ok(self
            .read::<CallersFile>("callers.json", "caller store")?
            .callers)
    }

    /// What identifies the current version of `callers.json` (`None`: there is none).
    pub fn callers_stamp(&self) -> Option<Stamp> {
        if let Some(shared) = &self.shared {
            return Some(Stamp(shared.version(), 0, None));
        }
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(self.callers_path()).ok()?;
        Some(Stamp(meta.ino(), meta.len(), meta.modified().ok()))
    }

    fn read<T: DeserializeOwned + Default>(
        &self,
        file: &str,
        what: &'static str,
    ) -> Result<T, StoreError> {
        let path = self.dir.join(file);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Damaged {
                what,
                path,
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(source) => Err(StoreError::Read { what, path, source }),
        }
    }

    fn write<T: Serialize>(&self, file: &str, value: &T) -> Result<(), StoreError> {
        let path = self.dir.join(file);
        let temp = self.dir.join(format!(".{file}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(value).map_err(StoreError::Encode)?;
        let result = (|| -> std::io::Result<()> {
            // Key hashes: readable by the gateway's user only.
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            out.set_permissions(fs::Permissions::from_mode(0o600))?;
            out.write_all(&json)?;
            out.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|source| {
            let _ = fs::remove_file(&temp);
            StoreError::Write { path, source }
        })
    }

    /// Runs `change` under the store lock.
    fn locked<T>(&self, change: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let lock_path = self.dir.join("pools.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StoreError::OpenLock {
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| StoreError::Lock {
            path: lock_path,
            source,
        })?;
        change()
    }

    /// Runs `change` on the pools under the store lock and saves the result.
    fn update<T>(
        &self,
        mut change: impl FnMut(&mut Vec<PoolRecord>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(shared) = &self.shared {
            return in_shared(shared, |pools, _| change(pools));
        }
        self.locked(|| {
            let mut file: StoreFile = self.read("pools.json", "pool store")?;
            let value = change(&mut file.pools)?;
            self.write("pools.json", &file)?;
            Ok(value)
        })
    }

    /// Runs `change` on the callers (seeing the pools) under the store lock and saves them.
    fn update_callers<T>(
        &self,
        mut change: impl FnMut(&mut Vec<CallerRecord>, &[PoolRecord]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(shared) = &self.shared {
            return in_shared(shared, |pools, callers| change(callers, pools));
        }
        self.locked(|| {
            let pools = self.load()?;
            let mut file: CallersFile = self.read("callers.json", "caller store")?;
            let value = change(&mut file.callers, &pools)?;
            self.write("callers.json", &file)?;
            Ok(value)
        })
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

/// Runs `change` in a Redis transaction. Redis's own failures arrive as sentences; the
/// change's refusal is kept whole, so it reaches the caller typed.
fn in_shared<T>(
    shared: &crate::gateway::store::redis::RedisStore,
    mut change: impl FnMut(&mut Vec<PoolRecord>, &mut Vec<CallerRecord>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut refused = None;
    let outcome = shared.change(|pools, callers| {
        change(pools, callers).map_err(|e| {
            let message = e.to_string();
            refused = Some(e);
            message
        })
    });
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(refused.take().unwrap_or(StoreError::RedisStore(message))),
        Err(e) => Err(StoreError::RedisStore(e.to_string())),
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
        let raw = fs::read_to_string(store.path()).unwrap();
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
        fs::write(store.path(), b"{not json").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("damaged"));
        assert!(store.create("x", "").is_err());
        assert_eq!(fs::read(store.path()).unwrap(), b"{not json");
        fs::remove_dir_all(dir).unwrap();
    }
}
