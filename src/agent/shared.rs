//! The state every slot of one agent shares: configuration, allowlist, HTTP client, gauges
//! and counters, the project id cache, and the drain flag with the bell that wakes slots.

use crate::agent::forward;
use crate::agent::ids::{self, Ids};
use crate::allowlist::Allowlist;
use crate::config::{AgentConfig, BaseEndpoint};
use crate::net::dial::Identity;
use crate::observe::endpoint::Health;
use crate::observe::gauge::StreamGauges;
use crate::observe::metrics::AgentMetrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// State every slot reads; counters the health endpoint reports.
pub struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) allowlist: Allowlist,
    pub(crate) http: forward::Client,
    pub(crate) identity: Identity,
    /// Streams connected and streams busy right now.
    pub(crate) gauges: StreamGauges,
    /// Counters for `/metrics`.
    pub(crate) metrics: AgentMetrics,
    /// Which project paths the ids in request paths name.
    pub(crate) ids: Ids,
    draining: AtomicBool,
    alarm: Alarm,
    codeload: BaseEndpoint,
}

/// Wakes slots sleeping in a backoff: at drain, and when one slot finds the gateway back
/// after an outage (so the others reconnect at once instead of waiting out their backoff).
#[derive(Default)]
struct Alarm {
    rings: Mutex<u64>,
    bell: Condvar,
}

impl Alarm {
    fn ring(&self) {
        if let Ok(mut rings) = self.rings.lock() {
            *rings += 1;
        }
        self.bell.notify_all();
    }

    /// Waits for `delay` or the next ring, whichever comes first.
    fn nap(&self, delay: Duration) {
        let Ok(rings) = self.rings.lock() else { return };
        let seen = *rings;
        let _ = self.bell.wait_timeout_while(rings, delay, |r| *r == seen);
    }
}

impl Shared {
    /// The state of an agent about to start its slots.
    pub(crate) fn new(config: AgentConfig, http: forward::Client, identity: Identity) -> Shared {
        let mut codeload = config.target.clone();
        codeload.authority = format!("codeload.{}", codeload.authority);
        codeload.host = format!("codeload.{}", codeload.host);
        Shared {
            allowlist: Allowlist::for_base(
                config.vendor,
                config.allowed_projects.clone(),
                &config.target.host,
                &config.target.path,
            ),
            http,
            identity,
            gauges: StreamGauges::default(),
            metrics: Default::default(),
            ids: Ids::new(ids::CAPACITY, ids::TTL),
            draining: AtomicBool::new(false),
            alarm: Alarm::default(),
            codeload,
            config,
        }
    }

    /// Nothing new is taken from now on; slots sleeping in a backoff wake up.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.alarm.ring();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sleeps for `delay`, or less when the agent starts draining or another slot reached
    /// the gateway; returns `true` when draining.
    pub(crate) fn sleep_unless_draining(&self, delay: Duration) -> bool {
        if self.is_draining() {
            return true;
        }
        self.alarm.nap(delay);
        self.is_draining()
    }

    /// Called by a slot that connected after failures: the others stop waiting.
    pub(crate) fn gateway_is_back(&self) {
        self.alarm.ring();
    }

    /// The base endpoint on the `codeload.` subdomain (GitHub Enterprise subdomain isolation).
    pub(crate) fn codeload_base(&self) -> &BaseEndpoint {
        &self.codeload
    }
}

impl Health for Shared {
    fn gauges(&self) -> &StreamGauges {
        &self.gauges
    }

    fn configured(&self) -> usize {
        self.config.parallelism
    }

    fn draining(&self) -> bool {
        self.is_draining()
    }

    fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn the_alarm_cuts_a_nap_short() {
        let alarm = Arc::new(Alarm::default());
        let done = Arc::new(AtomicBool::new(false));
        let (ringer, stop) = (Arc::clone(&alarm), Arc::clone(&done));
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            // Ring until the napper has certainly started waiting and woke up.
            while !stop.load(Ordering::SeqCst) {
                ringer.ring();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        alarm.nap(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        done.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }
}
