//! The data directory backend: two small JSON files, `pools.json` and `callers.json`, for
//! a gateway that runs alone.
//!
//! Every change is read-modify-write under an exclusive lock on `pools.lock` (so
//! `vcs-gateway pool create` and a running gateway can change the store side by side) and
//! lands atomically: write a temp file (mode `0600`), fsync it, rename it over the old one,
//! fsync the directory. A crash leaves the old file or the new one, never a torn one. A
//! rename gives the file a new inode, which is how a gateway notices another process's
//! change however coarse file times are ([`Stamp`]).

use super::records::{CallerRecord, PoolRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The data directory could not be read or written. `Display` is the one sentence the
/// operator sees.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
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
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolsFile {
    pools: Vec<PoolRecord>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersFile {
    callers: Vec<CallerRecord>,
}

/// What tells a store's versions apart: for a file its inode (every write is a rename),
/// size and time; for Redis the version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64, u64, Option<SystemTime>);

impl Stamp {
    pub(super) fn version(version: u64) -> Stamp {
        Stamp(version, 0, None)
    }

    fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp(meta.ino(), meta.len(), meta.modified().ok()))
    }
}

/// The data directory of a gateway that runs alone.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (and creates if needed) the data directory.
    pub(super) fn open(dir: &Path) -> Result<FileStore, FileError> {
        fs::create_dir_all(dir).map_err(|source| FileError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn pools_path(&self) -> PathBuf {
        self.dir.join("pools.json")
    }

    pub(super) fn pools_stamp(&self) -> Option<Stamp> {
        Stamp::of(&self.pools_path())
    }

    pub(super) fn callers_stamp(&self) -> Option<Stamp> {
        Stamp::of(&self.dir.join("callers.json"))
    }

    pub(super) fn load_pools(&self) -> Result<Vec<PoolRecord>, FileError> {
        Ok(self.read::<PoolsFile>("pools.json", "pool store")?.pools)
    }

    pub(super) fn load_callers(&self) -> Result<Vec<CallerRecord>, FileError> {
        Ok(self
            .read::<CallersFile>("callers.json", "caller store")?
            .callers)
    }

    /// Runs `change` on the pools under the store lock and saves the result.
    pub(super) fn change_pools<T, E: From<FileError>>(
        &self,
        mut change: impl FnMut(&mut Vec<PoolRecord>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.locked(|| {
            let mut file: PoolsFile = self.read("pools.json", "pool store")?;
            let value = change(&mut file.pools)?;
            self.write("pools.json", &file)?;
            Ok(value)
        })
    }

    /// Runs `change` on the callers (seeing the pools) under the store lock and saves them.
    pub(super) fn change_callers<T, E: From<FileError>>(
        &self,
        mut change: impl FnMut(&mut Vec<CallerRecord>, &[PoolRecord]) -> Result<T, E>,
    ) -> Result<T, E> {
        self.locked(|| {
            let pools = self.load_pools()?;
            let mut file: CallersFile = self.read("callers.json", "caller store")?;
            let value = change(&mut file.callers, &pools)?;
            self.write("callers.json", &file)?;
            Ok(value)
        })
    }

    fn read<T: DeserializeOwned + Default>(
        &self,
        file: &str,
        what: &'static str,
    ) -> Result<T, FileError> {
        let path = self.dir.join(file);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| FileError::Damaged {
                what,
                path,
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(source) => Err(FileError::Read { what, path, source }),
        }
    }

    fn write<T: Serialize>(&self, file: &str, value: &T) -> Result<(), FileError> {
        let path = self.dir.join(file);
        let temp = self.dir.join(format!(".{file}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(value).map_err(FileError::Encode)?;
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
            FileError::Write { path, source }
        })
    }

    /// Runs `change` under the store lock.
    fn locked<T, E: From<FileError>>(&self, change: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let lock_path = self.dir.join("pools.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| FileError::OpenLock {
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| FileError::Lock {
            path: lock_path,
            source,
        })?;
        change()
    }
}
