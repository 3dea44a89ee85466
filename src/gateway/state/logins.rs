//! Agent logins under attack: a flood of wrong pool keys must cost little and say little.
//!
//! Refusals are counted per pool and per address and logged as one line per interval
//! ([`Logins::flush`], called by the housekeeper), not one line each: thousands of refusals a
//! second once wrote megabytes of log. Repeated failures from one address wait longer and
//! longer before their `401` ([`Logins::refused`]), which slows a guesser down to a few tries a
//! second; a valid key is never delayed, and since the delay holds only the refused
//! connection's own handshake place (and one address holds at most
//! [`MAX_HANDSHAKES_PER_ADDRESS`] of them), agents elsewhere log in as fast as before.
//!
//! The summary line comes at most every `SUMMARY_EVERY` (5 s). A wrong key reads `pools.json` again
//! only when the file changed, and at most every 250 ms, so a flood costs no disk reads. From the
//! fourth refusal within a minute an address waits before each `401`: 250 ms, doubling up to 5 s.

use crate::observe::tally::Counts;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use crate::observe::tally::SUMMARY_EVERY;

/// Handshakes one address may run at once on the agent port.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 64;

/// Failures from one address within this long count together; older ones are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// Failures from one address answered without delay.
const FREE_FAILURES: u32 = 3;

/// The first delay, doubled with each further failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Addresses remembered at most (a flood from many addresses forgets the oldest).
const MAX_ADDRESSES: usize = 4096;

#[derive(Default)]
pub struct Logins {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Refusals since the last summary, by pool (id, or why there is none) and by address.
    by_pool: Counts<String>,
    by_address: Counts<IpAddr>,
    last_summary: Option<Instant>,
    /// Recent failures per address, for the delay.
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl Logins {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a refusal of `pool` (its id as the agent sent it, or a reason) from `peer` and
    /// returns how long to wait before answering it.
    pub fn refused(&self, pool: &str, peer: IpAddr) -> Duration {
        let mut state = self.lock();
        let label: String = pool.chars().take(40).collect();
        state.by_pool.add(label);
        state.by_address.add(peer);
        if state.failures.len() >= MAX_ADDRESSES && !state.failures.contains_key(&peer) {
            state
                .failures
                .retain(|_, (_, last)| last.elapsed() < FAILURE_MEMORY);
            if state.failures.len() >= MAX_ADDRESSES {
                state.failures.clear();
            }
        }
        let now = Instant::now();
        let entry = state.failures.entry(peer).or_insert((0, now));
        if entry.1.elapsed() >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay(entry.0)
    }

    /// A valid login from `peer` clears its failures.
    pub fn admitted(&self, peer: IpAddr) {
        self.lock().failures.remove(&peer);
    }

    /// Logs the refusals counted since the last summary, once per [`SUMMARY_EVERY`].
    pub fn flush(&self) {
        let mut state = self.lock();
        if state.by_pool.is_empty()
            || state
                .last_summary
                .is_some_and(|at| at.elapsed() < SUMMARY_EVERY)
        {
            return;
        }
        state.last_summary = Some(Instant::now());
        let total = state.by_pool.total();
        let pools = state.by_pool.take_top();
        let addresses = state.by_address.take_top();
        log::warn!(
            target: "agents",
            "agent logins refused: {total} since the last summary (at most one every {:?}); by pool: {pools}; by address: {addresses}",
            SUMMARY_EVERY
        );
    }
}

/// The delay before answering the `n`th recent failure of one address.
fn delay(n: u32) -> Duration {
    if n <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_FAILURES - 1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_from_the_fourth_failure_and_are_capped() {
        let delays: Vec<u64> = (1..=10).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [0, 0, 0, 250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn failures_are_per_address_and_cleared_by_a_valid_login() {
        let logins = Logins::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..5 {
            logins.refused("pool", a);
        }
        assert!(logins.refused("pool", a) > Duration::ZERO);
        assert_eq!(logins.refused("pool", b), Duration::ZERO);
        logins.admitted(a);
        assert_eq!(logins.refused("pool", a), Duration::ZERO);
    }
}
