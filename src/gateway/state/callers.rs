//! Who may use the `private://` front: callers, the SaaS side's named credentials, each
//! scoped to some pools (or all). A tunnel request presents its caller's secret in a header
//! of its own, `Vcs-Gateway-Authorization: Bearer <secret>`, so the VCS's own
//! `Authorization` (a GitLab or GitHub token the SaaS sends) passes through untouched.
//!
//! There is no anonymous way in: a request without a valid secret is refused before its pool
//! is even looked up, so neither pool names nor agents' allowlists are exposed to whoever
//! reaches the api port. The secret is hashed (SHA-256) and compared with every caller's
//! stored hash in constant time, without stopping at the first match, so timing tells
//! nothing about which caller or how many bytes matched. Secrets are held as [`Secret`]s,
//! stripped from the request before it goes on, and never logged.
//!
//! The live set of callers is a cache of `callers.json`, so authentication costs no disk
//! read. Changes made through the API reload it at once; changes made by another process
//! (`vcs-gateway caller …`) are noticed by the file's stamp (every write is a rename, so a
//! new inode), looked at on every miss and at most every [`LOOK_EVERY_MS`] otherwise: a new
//! caller works at once, a deleted or rotated one stops within that interval.
//!
//! A gateway without callers answers `401` to every tunnel request and says so at start;
//! authentication cannot be switched off, so there is nothing to forget. A pool outside a
//! caller's scope is refused `403 forbidden` with the same sentence as a pool that does not
//! exist, so pool names do not leak between SaaS tenants; only a caller of all pools hears
//! `404 unknown_pool`. A caller's thread remembers the secret it last authenticated (forgotten
//! when the table is reloaded), so a keep-alive connection's later requests skip the SHA-256.

use crate::gateway::store::{CallerRecord, Scope, Stamp, Store, StoreError};
use crate::token::Secret;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// The header a tunnel request authenticates with.
pub const HEADER: &str = "vcs-gateway-authorization";

/// How often a hit looks whether another process changed `callers.json`, at most.
pub const LOOK_EVERY_MS: u64 = 250;

/// One authenticated caller, as the front needs it.
#[derive(Debug)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
    hash: [u8; 32],
    /// SHA-256 of the client certificate that identifies it, if any.
    cert: Option<[u8; 32]>,
}

impl Caller {
    /// Whether this caller may use the pool `name` (existing or not).
    pub fn may_use(&self, pool: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Pools(pools) => pools.iter().any(|p| p == pool),
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Vcs-Gateway-Authorization`, or not `Bearer <secret>`, or more than one.
    Missing,
    /// A secret no caller has.
    Wrong,
}

impl Refusal {
    /// The sentence the caller reads.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this gateway needs a caller secret: send Vcs-Gateway-Authorization: Bearer <secret> (vcs-gateway caller create makes one)"
            }
            Refusal::Wrong => {
                "the caller secret in Vcs-Gateway-Authorization is not valid (deleted or rotated?)"
            }
        }
    }
}

#[derive(Default)]
struct Cached {
    stamp: Option<Stamp>,
    callers: Vec<Arc<Caller>>,
    /// Unique to this load of the table, across every [`Callers`] of the process.
    generation: u64,
}

/// The source of [`Cached::generation`].
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// The last secret this thread authenticated, with the table generation that knew it.
struct Remembered {
    generation: u64,
    secret: Secret,
    caller: Arc<Caller>,
}

thread_local! {
    static REMEMBERED: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

/// The live callers.
pub struct Callers {
    store: Store,
    cached: RwLock<Cached>,
    /// When the file's stamp was last looked at (ms since the epoch).
    looked: AtomicU64,
}

impl Callers {
    pub fn new(store: Store) -> Result<Callers, StoreError> {
        let callers = Callers {
            store,
            cached: RwLock::new(Cached::default()),
            looked: AtomicU64::new(0),
        };
        callers.reload()?;
        Ok(callers)
    }

    /// Reads `callers.json` again.
    pub fn reload(&self) -> Result<(), StoreError> {
        let stamp = self.store.callers_stamp();
        let records = self.store.load_callers()?;
        let callers = records.iter().filter_map(live).collect();
        let mut cached = self
            .cached
            .write()
            .map_err(|_| StoreError::Poisoned("caller table"))?;
        let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        *cached = Cached {
            stamp,
            callers,
            generation,
        };
        Ok(())
    }

    /// How many callers exist.
    pub fn count(&self) -> usize {
        self.cached.read().map(|c| c.callers.len()).unwrap_or(0)
    }

    /// The caller whose secret the request's header values carry.
    pub fn authenticate<'a>(
        &self,
        mut values: impl Iterator<Item = &'a str>,
    ) -> Result<Arc<Caller>, Refusal> {
        let secret = match (values.next(), values.next()) {
            (Some(value), None) => bearer(value).ok_or(Refusal::Missing)?,
            _ => return Err(Refusal::Missing),
        };
        let due = self.look_if_due();
        if let Some(caller) = self.remembered(&secret) {
            return Ok(caller);
        }
        let hash: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        let found = self.find(&hash).or_else(|| {
            if !due {
                // Maybe created by another process a moment ago.
                self.refresh();
            }
            self.find(&hash)
        });
        let (caller, generation) = found.ok_or(Refusal::Wrong)?;
        remember(generation, secret, &caller);
        Ok(caller)
    }

    fn generation(&self) -> Option<u64> {
        self.cached.read().ok().map(|c| c.generation)
    }

    /// The caller this thread last authenticated, if `secret` is its secret and the table
    /// was not reloaded since.
    fn remembered(&self, secret: &Secret) -> Option<Arc<Caller>> {
        let generation = self.generation()?;
        REMEMBERED.with(|r| {
            let r = r.try_borrow().ok()?;
            let r = r.as_ref().filter(|r| r.generation == generation)?;
            let same = r
                .secret
                .expose()
                .as_bytes()
                .ct_eq(secret.expose().as_bytes());
            bool::from(same).then(|| Arc::clone(&r.caller))
        })
    }

    /// Looks at the store for changes made by another process (a caller deleted or rotated
    /// there stops working within [`LOOK_EVERY_MS`]); `true` when it was due and looked.
    fn look_if_due(&self) -> bool {
        let now = crate::clock::now_millis();
        let due = now.saturating_sub(self.looked.load(Ordering::Relaxed)) >= LOOK_EVERY_MS;
        if due {
            self.looked.store(now, Ordering::Relaxed);
            self.refresh();
        }
        due
    }

    /// Reloads when `callers.json` changed since it was last read.
    fn refresh(&self) {
        let stamp = self.store.callers_stamp();
        let changed = self.cached.read().map(|c| c.stamp != stamp).unwrap_or(true);
        if changed {
            if let Err(e) = self.reload() {
                log::error!("{e}");
            }
        }
    }

    /// The caller a client certificate (its DER) identifies, when the api port asks for
    /// one (`--api-client-ca`): the certificate was verified in the TLS handshake.
    pub fn by_certificate(&self, der: &[u8]) -> Option<Arc<Caller>> {
        let hash: [u8; 32] = Sha256::digest(der).into();
        let due = self.look_if_due();
        let find = || {
            let cached = self.cached.read().ok()?;
            let found = cached.callers.iter().find(|c| c.cert == Some(hash));
            found.cloned()
        };
        find().or_else(|| {
            if !due {
                self.refresh();
            }
            find()
        })
    }

    /// Compares with every caller, in constant time each, without stopping early; the
    /// caller with the generation of the table it was found in.
    fn find(&self, hash: &[u8; 32]) -> Option<(Arc<Caller>, u64)> {
        let cached = self.cached.read().ok()?;
        let mut found = None;
        for caller in &cached.callers {
            if bool::from(caller.hash.ct_eq(hash)) {
                found = Some(Arc::clone(caller));
            }
        }
        found.map(|caller| (caller, cached.generation))
    }
}

/// Makes `caller` this thread's remembered one, as found in table `generation`.
fn remember(generation: u64, secret: Secret, caller: &Arc<Caller>) {
    REMEMBERED.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            *r = Some(Remembered {
                generation,
                secret,
                caller: Arc::clone(caller),
            });
        }
    });
}

/// A stored record as a live caller; a record with a damaged hash matches nothing.
fn live(record: &CallerRecord) -> Option<Arc<Caller>> {
    let hash = hex32(&record.secret_sha256)?;
    Some(Arc::new(Caller {
        name: record.name.clone(),
        scope: record.scope(),
        hash,
        cert: record.client_cert_sha256.as_deref().and_then(hex32),
    }))
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The secret of `Bearer <secret>` (scheme in any case).
fn bearer(value: &str) -> Option<Secret> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let secret = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then(|| Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("vcs-callers-{tag}-{}", ulid::Ulid::new()));
        (Store::open(&dir).unwrap(), dir)
    }

    #[test]
    fn only_a_live_secret_in_one_bearer_header_authenticates() {
        let (store, dir) = temp_store("auth");
        store.create("alpha", "").unwrap();
        let (_, secret) = store
            .create_caller("saas", &Scope::Pools(vec!["alpha".into()]), None)
            .unwrap();
        let callers = Callers::new(store.clone()).unwrap();
        let header = format!("Bearer {}", secret.expose());
        let caller = callers.authenticate([header.as_str()].into_iter()).unwrap();
        assert_eq!(caller.name, "saas");
        assert!(caller.may_use("alpha") && !caller.may_use("beta"));
        let lower = format!("bearer {}", secret.expose());
        assert!(callers.authenticate([lower.as_str()].into_iter()).is_ok());
        let refused = |values: &[&str]| callers.authenticate(values.iter().copied()).err();
        assert_eq!(refused(&[]), Some(Refusal::Missing));
        assert_eq!(refused(&[secret.expose()]), Some(Refusal::Missing));
        assert_eq!(refused(&[&header, &header]), Some(Refusal::Missing));
        assert_eq!(refused(&["Bearer vgc_nope"]), Some(Refusal::Wrong));

        // Another process rotates it: the old secret stops working.
        let (_, new) = Store::open(&dir)
            .unwrap()
            .rotate_caller("saas")
            .unwrap()
            .unwrap();
        callers.looked.store(0, Ordering::Relaxed);
        assert_eq!(refused(&[&header]), Some(Refusal::Wrong));
        let fresh = format!("Bearer {}", new.expose());
        assert!(callers.authenticate([fresh.as_str()].into_iter()).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_caller_made_by_another_process_works_at_once() {
        let (store, dir) = temp_store("fresh");
        let callers = Callers::new(store.clone()).unwrap();
        let header = |s: &Secret| format!("Bearer {}", s.expose());
        let (_, first) = store.create_caller("one", &Scope::All, None).unwrap();
        assert!(callers
            .authenticate([header(&first).as_str()].into_iter())
            .is_ok());
        let (_, second) = store.create_caller("two", &Scope::All, None).unwrap();
        assert!(callers
            .authenticate([header(&second).as_str()].into_iter())
            .is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_remembered_secret_counts_only_for_its_table_and_until_a_reload() {
        let (store, dir) = temp_store("remembered");
        let (_, secret) = store.create_caller("saas", &Scope::All, None).unwrap();
        let header = format!("Bearer {}", secret.expose());
        let callers = Callers::new(store.clone()).unwrap();
        assert!(callers.authenticate([header.as_str()].into_iter()).is_ok());
        assert!(callers.authenticate([header.as_str()].into_iter()).is_ok());

        // Another gateway's table (another data directory) never knew this secret.
        let (other_store, other_dir) = temp_store("remembered-other");
        let other = Callers::new(other_store).unwrap();
        let refused = other.authenticate([header.as_str()].into_iter()).err();
        assert_eq!(refused, Some(Refusal::Wrong));

        // Deleted and reloaded: the same thread's next request with it is refused.
        assert!(callers.authenticate([header.as_str()].into_iter()).is_ok());
        assert!(store.delete_caller("saas").unwrap());
        callers.reload().unwrap();
        let refused = callers.authenticate([header.as_str()].into_iter()).err();
        assert_eq!(refused, Some(Refusal::Wrong));
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other_dir).unwrap();
    }
}
