//! Counting instead of narrating: what arrives in floods is logged as one summary line per
//! interval, never one line per event.
//!
//! Anyone can send requests that are refused before they reach anything (no secret, a wrong
//! one, a pool that does not exist, a malformed head, a full gateway). One log line each
//! would let a client without credentials grow the log as fast as it can send; a [`Tally`]
//! counts them by reason, address and pool, keeps a few examples, and says it all in one
//! line at most every [`SUMMARY_EVERY`]. Memory stays bounded whatever the flood: at most
//! [`MAX_KEYS`] names per count, the rest counted together as `(others)`.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a summary is logged, at most.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Names counted apart per summary; further ones are counted as `(others)`.
pub(crate) const MAX_KEYS: usize = 1024;

/// Names shown per count in one summary, at most.
const SUMMARY_NAMES: usize = 5;

/// Examples kept per summary.
const EXAMPLES: usize = 3;

/// Counts by name; past [`MAX_KEYS`] names, new ones go to one bucket.
#[derive(Debug)]
pub(crate) struct Counts<K> {
    counts: HashMap<K, u64>,
    others: u64,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            counts: HashMap::new(),
            others: 0,
        }
    }
}

impl<K: Hash + Eq + Display> Counts<K> {
    pub(crate) fn add(&mut self, key: K) {
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < MAX_KEYS {
            self.counts.insert(key, 1);
        } else {
            self.others += 1;
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.others
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.others == 0
    }

    /// `a=3, b=1 (+2 more)`, the largest counts first; empties the counts.
    pub(crate) fn take_top(&mut self) -> String {
        let mut counts: Vec<(K, u64)> = std::mem::take(&mut self.counts).into_iter().collect();
        counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let more = counts.len().saturating_sub(SUMMARY_NAMES);
        let mut text = counts
            .iter()
            .take(SUMMARY_NAMES)
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            text.push_str(&format!(" (+{more} more)"));
        }
        let others = std::mem::take(&mut self.others);
        if others > 0 {
            text.push_str(&format!(" (others={others})"));
        }
        text
    }
}

/// One event of a flood: why, from where, for which pool, and what it looked like.
pub(crate) struct Event<'a> {
    pub(crate) reason: &'a str,
    pub(crate) address: IpAddr,
    pub(crate) pool: &'a str,
    /// Made only when the example is kept.
    pub(crate) example: &'a dyn Fn() -> String,
}

#[derive(Default)]
struct State {
    by_reason: Counts<String>,
    by_address: Counts<IpAddr>,
    by_pool: Counts<String>,
    examples: Vec<String>,
    last_summary: Option<Instant>,
}

/// Events of one kind, counted and summed up in the log (see the module docs).
pub struct Tally {
    /// What the summary line says happened, e.g. "tunnel requests refused".
    what: &'static str,
    target: &'static str,
    state: Mutex<State>,
}

impl Tally {
    pub(crate) fn new(target: &'static str, what: &'static str) -> Tally {
        Tally {
            what,
            target,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn count(&self, event: Event) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.by_reason.add(event.reason.chars().take(40).collect());
        state.by_address.add(event.address);
        state.by_pool.add(event.pool.chars().take(64).collect());
        if state.examples.len() < EXAMPLES {
            let example = (event.example)();
            state
                .examples
                .push(super::escape::bounded(&example, 200).into_owned());
        }
    }

    /// Logs what was counted since the last summary, at most once per [`SUMMARY_EVERY`].
    pub fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.by_reason.is_empty()
            || state
                .last_summary
                .is_some_and(|at| at.elapsed() < SUMMARY_EVERY)
        {
            return;
        }
        state.last_summary = Some(Instant::now());
        let total = state.by_reason.total();
        let reasons = state.by_reason.take_top();
        let addresses = state.by_address.take_top();
        let pools = state.by_pool.take_top();
        let examples = std::mem::take(&mut state.examples).join(" | ");
        log::warn!(
            target: self.target,
            "{}: {total} since the last summary (at most one every {SUMMARY_EVERY:?}); by reason: {reasons}; by address: {addresses}; by pool: {pools}; for example: {examples}",
            self.what
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_largest_counts() {
        let mut counts = Counts::default();
        for (i, name) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            for _ in 0..i {
                counts.add(name.to_string());
            }
        }
        assert_eq!(counts.take_top(), "g=6, f=5, e=4, d=3, c=2 (+1 more)");
        assert!(counts.is_empty());
    }

    #[test]
    fn counts_stay_bounded_whatever_the_number_of_names() {
        let mut counts = Counts::default();
        for i in 0..(MAX_KEYS + 10) {
            counts.add(i);
        }
        assert_eq!(counts.counts.len(), MAX_KEYS);
        assert_eq!(counts.total(), (MAX_KEYS + 10) as u64);
        assert!(counts.take_top().ends_with("(others=10)"));
    }

    #[test]
    fn examples_are_kept_few_and_short() {
        let tally = Tally::new("test", "things");
        let long = "x".repeat(1000);
        for _ in 0..10 {
            tally.count(Event {
                reason: "unauthorized",
                address: "10.0.0.1".parse().unwrap(),
                pool: "p",
                example: &|| long.clone(),
            });
        }
        let state = tally.state.lock().unwrap();
        assert_eq!(state.examples.len(), EXAMPLES);
        assert!(state.examples[0].len() < 240);
        assert_eq!(state.by_reason.total(), 10);
    }
}
