//! The agent's cache of which project path an id names ([`super::projects`] fills it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most ids remembered at once.
pub(crate) const CAPACITY: usize = 10_000;
/// How long an id is trusted to name the same path.
pub(crate) const TTL: Duration = Duration::from_secs(300);
/// A bounded map from `(scope, id)` to the project path, with an age per entry.
pub(crate) struct Ids {
    entries: Mutex<HashMap<(String, String), (String, Instant)>>,
    capacity: usize,
    ttl: Duration,
}

impl Ids {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Ids {
        Ids {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn key(scope: &str, id: &str) -> (String, String) {
        (scope.to_ascii_lowercase(), id.to_ascii_lowercase())
    }

    /// The path `id` names, if learned less than the TTL ago.
    pub(crate) fn get(&self, scope: &str, id: &str) -> Option<String> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&Ids::key(scope, id))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(path, _)| path.clone())
    }

    /// Remembers that `id` names `path`.
    pub(crate) fn learn(&self, scope: &str, id: &str, path: &str) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let key = Ids::key(scope, id);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, (_, at))| *at);
                if let Some(oldest) = oldest.map(|(k, _)| k.clone()) {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, (path.to_string(), Instant::now()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded() {
        let ids = Ids::new(2, TTL);
        ids.learn("", "5", "group/repo");
        assert_eq!(ids.get("", "5").as_deref(), Some("group/repo"));
        ids.learn("Acme", "ABC", "acme/p/r");
        assert_eq!(ids.get("acme", "abc").as_deref(), Some("acme/p/r"));
        ids.learn("", "6", "group/other");
        assert_eq!(ids.len(), 2, "the oldest entry made room");
        assert_eq!(ids.get("", "5"), None);
        assert_eq!(ids.get("", "6").as_deref(), Some("group/other"));
    }

    #[test]
    fn entries_expire() {
        let ids = Ids::new(10, Duration::ZERO);
        ids.learn("", "5", "group/repo");
        assert_eq!(ids.get("", "5"), None, "older than the TTL");
    }
}
