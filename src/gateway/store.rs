//! The pool store: one small JSON file, `pools.json`, in the data directory.
//!
//! It holds names, descriptions, ids and SHA-256 hashes of keys, never keys. Every change is
//! read-modify-write under an exclusive lock on `pools.lock` (so `vcs-gateway pool create` and
//! a running gateway can change it side by side) and lands atomically: write a temp file,
//! fsync it, rename it over the old one, fsync the directory. A crash leaves the old file or
//! the new one, never a torn one.

use crate::token::{self, Secret};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRecord {
    pub name: String,
    pub description: String,
    pub ulid: String,
    pub key_sha256: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    pools: Vec<PoolRecord>,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Pool names: 1–63 of `a-z 0-9 -`, not starting or ending with `-` (they appear in URLs).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!(
            "pool name must be 1 to 63 characters, got {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "pool name \"{name}\" may only hold lowercase letters a-z, digits 0-9 and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "pool name \"{name}\" must not start or end with '-'"
        ));
    }
    Ok(())
}

impl Store {
    /// Opens (and creates if needed) the data directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, String> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        Ok(Store { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("pools.json")
    }

    /// When the file last changed, to notice changes made by another process.
    pub fn modified(&self) -> Option<SystemTime> {
        fs::metadata(self.path()).and_then(|m| m.modified()).ok()
    }

    pub fn load(&self) -> Result<Vec<PoolRecord>, String> {
        Ok(self.read()?.pools)
    }

    fn read(&self) -> Result<StoreFile, String> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("pool store {} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
            Err(e) => Err(format!("cannot read pool store {}: {e}", path.display())),
        }
    }

    fn write(&self, file: &StoreFile) -> Result<(), String> {
        let path = self.path();
        let temp = self
            .dir
            .join(format!(".pools.json.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
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
        result.map_err(|e| {
            let _ = fs::remove_file(&temp);
            format!("cannot write pool store {}: {e}", path.display())
        })
    }

    /// Runs `change` on the pools under the store lock and saves the result.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<PoolRecord>) -> Result<T, String>,
    ) -> Result<T, String> {
        let lock_path = self.dir.join("pools.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let mut file = self.read()?;
        let value = change(&mut file.pools)?;
        self.write(&file)?;
        Ok(value)
    }

    /// Creates a pool; returns its record and its key (shown once, never stored).
    pub fn create(&self, name: &str, description: &str) -> Result<(PoolRecord, Secret), String> {
        validate_name(name)?;
        if description.len() > 1024 {
            return Err("description must be at most 1024 bytes".into());
        }
        let key = token::new_key()?;
        let record = PoolRecord {
            name: name.to_string(),
            description: description.to_string(),
            ulid: ulid::Ulid::new().to_string(),
            key_sha256: token::key_hash(key.expose()),
            created: now_seconds(),
        };
        let stored = record.clone();
        self.update(move |pools| {
            if pools.iter().any(|p| p.name == stored.name) {
                return Err(format!("a pool named \"{}\" already exists", stored.name));
            }
            pools.push(stored);
            Ok(())
        })?;
        Ok((record, key))
    }

    /// Removes a pool; `false` when there was none of that name.
    pub fn delete(&self, name: &str) -> Result<bool, String> {
        self.update(|pools| {
            let before = pools.len();
            pools.retain(|p| p.name != name);
            Ok(pools.len() != before)
        })
    }

    /// Gives a pool a new key; the old one stops working. `None` when there is no such pool.
    pub fn rotate(&self, name: &str) -> Result<Option<(PoolRecord, Secret)>, String> {
        let key = token::new_key()?;
        let hash = token::key_hash(key.expose());
        let record = self.update(|pools| {
            Ok(pools.iter_mut().find(|p| p.name == name).map(|p| {
                p.key_sha256 = hash;
                p.clone()
            }))
        })?;
        Ok(record.map(|r| (r, key)))
    }
}

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-27T19:08:09Z` for a Unix time.
pub fn format_time(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(seconds))
        .to_string()
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
        assert!(store.load().unwrap_err().contains("damaged"));
        assert!(store.create("x", "").is_err());
        assert_eq!(fs::read(store.path()).unwrap(), b"{not json");
        fs::remove_dir_all(dir).unwrap();
    }
}
