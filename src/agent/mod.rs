//! The agent: a fixed pool of slot threads, one per `SPACELIFT_VCS_AGENT_PARALLELISM`, each
//! owning one WebSocket to the gateway ([`slot`]) and serving one request at a time on it
//! ([`request`]) through the allowlist and the HTTP leg ([`forward`]).
//!
//! Shutdown is one call, [`Agent::drain`]: it flips a flag every slot looks at between ticks
//! and closes a channel that wakes slots sleeping in a backoff. Idle slots tell the gateway
//! they are draining at once; busy ones finish their request first. A slot that panics is
//! logged and started again; the others never notice.

pub mod check;
pub mod forward;
pub mod listing;
pub mod projects;
pub mod rebase;
pub mod redirect;
pub mod request;
pub mod slot;
pub mod upstream;

use crate::allowlist::Allowlist;
use crate::config::{AgentConfig, BaseEndpoint};
use crate::net::dial::{Identity, Route};
use crate::net::tls::Roots;
use crate::observe::endpoint::Health;
use crate::observe::gauge::StreamGauges;
use crate::observe::metrics::AgentMetrics;
use log::{error, info, warn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// State every slot reads; counters the health endpoint reports.
pub struct Shared {
    pub config: AgentConfig,
    pub allowlist: Allowlist,
    pub http: forward::Client,
    pub identity: Identity,
    /// Streams connected and streams busy right now.
    pub gauges: StreamGauges,
    /// Counters for `/metrics`.
    pub metrics: AgentMetrics,
    /// Which project paths the ids in request paths name.
    pub ids: projects::Ids,
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
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sleeps for `delay`, or less when the agent starts draining or another slot reached
    /// the gateway; returns `true` when draining.
    pub fn sleep_unless_draining(&self, delay: Duration) -> bool {
        if self.is_draining() {
            return true;
        }
        self.alarm.nap(delay);
        self.is_draining()
    }

    /// Called by a slot that connected after failures: the others stop waiting.
    pub fn gateway_is_back(&self) {
        self.alarm.ring();
    }

    /// The base endpoint on the `codeload.` subdomain (GitHub Enterprise subdomain isolation).
    pub fn codeload_base(&self) -> &BaseEndpoint {
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

/// A running agent.
pub struct Agent {
    shared: Arc<Shared>,
    slots: Vec<JoinHandle<()>>,
    /// Disconnects when the last slot thread ends: each holds a sender it never uses, and
    /// a thread's end (even by a panic) drops it.
    all_ended: crossbeam_channel::Receiver<()>,
}

/// The two legs' transport, built once from the configuration: how the gateway is dialed
/// (TLS trust, proxies) and the HTTP client for the VCS. Shared by the agent and `check`.
pub fn legs(config: &AgentConfig) -> Result<(Route, forward::Client), String> {
    let roots = Roots::load(&config.custom_cas);
    info!("TLS trusts {}", roots.source);
    let route = Route {
        tls: Some(roots.client_config()?),
        proxy: config.proxy.clone(),
        insecure: config.dial_insecure,
    };
    let http = forward::client(config, &roots)?;
    Ok((route, http))
}

impl Agent {
    /// Starts one thread per parallelism slot; they dial the gateway at once.
    pub fn start(config: AgentConfig) -> std::io::Result<Agent> {
        let instance = ulid::Ulid::new().to_string();
        let (route, http) = legs(&config).map_err(std::io::Error::other)?;
        if config.dial_insecure {
            warn!("SPACELIFT_VCS_AGENT_DIAL_INSECURE is set: the gateway is dialed without TLS");
        }
        let identity = Identity {
            metadata: config.metadata.clone(),
            instance,
            version: crate::BUILD,
            route,
        };
        for host in &config.gateways {
            info!("{}", identity.route.describe(host));
        }
        info!("{}", http.describe(&config.target.host));
        if !config.blocklist.is_empty() {
            let rules = config.blocklist.len();
            info!("blocklist: {rules} rules deny requests the allowlist allows, first match");
        }
        let mut codeload = config.target.clone();
        codeload.authority = format!("codeload.{}", codeload.authority);
        codeload.host = format!("codeload.{}", codeload.host);
        let shared = Arc::new(Shared {
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
            ids: projects::Ids::new(projects::CAPACITY, projects::TTL),
            draining: AtomicBool::new(false),
            alarm: Alarm::default(),
            codeload,
            config,
        });
        info!(
            "agent {} starting {} streams to {} for {} at {} (vendor {})",
            shared.identity.instance,
            shared.config.parallelism,
            shared.config.gateways.join(", "),
            shared.config.token.pool_ulid,
            shared.config.target,
            shared.config.vendor.as_str()
        );
        crate::webhook::listen::start(&shared)?;
        let mut slots = Vec::with_capacity(shared.config.parallelism);
        let (alive, all_ended) = crossbeam_channel::bounded::<()>(0);
        for index in 0..shared.config.parallelism {
            let (shared, alive) = (Arc::clone(&shared), alive.clone());
            slots.push(
                std::thread::Builder::new()
                    .name(format!("slot-{index}"))
                    .spawn(move || {
                        let _alive = alive;
                        supervise(&shared, index)
                    })?,
            );
        }
        Ok(Agent {
            shared,
            slots,
            all_ended,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts a graceful drain: nothing new is taken, requests in flight finish.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.alarm.ring();
    }

    /// Waits for every slot to end, at most `timeout`; `true` when all ended.
    pub fn wait(self, timeout: Duration) -> bool {
        match self.all_ended.recv_timeout(timeout) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                for slot in self.slots {
                    let _ = slot.join();
                }
                true
            }
            _ => false,
        }
    }
}

/// Runs a slot and restarts it if it panics, so one bad request cannot shrink the pool.
fn supervise(shared: &Shared, index: usize) {
    restart_on_panic(
        &format!("slot {index}"),
        &|| shared.is_draining(),
        &|pause| shared.sleep_unless_draining(pause),
        &|| slot::run(shared, index),
    );
}

/// Runs `body` until it returns normally; after a panic, logs it, pauses, and runs it again
/// unless `stopping` (checked after the pause, which `pause` may cut short by returning true).
fn restart_on_panic(
    name: &str,
    stopping: &dyn Fn() -> bool,
    pause: &dyn Fn(Duration) -> bool,
    body: &dyn Fn(),
) {
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(()) => return,
            Err(_) if stopping() => return,
            Err(_) => {
                error!("{name} panicked; starting it again");
                if pause(Duration::from_millis(500)) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Instant;

    #[test]
    fn a_panicking_slot_is_started_again() {
        let runs = AtomicU32::new(0);
        restart_on_panic("test", &|| false, &|_| false, &|| {
            if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("boom");
            }
        });
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a normal return"
        );
    }

    #[test]
    fn no_restart_while_stopping() {
        let runs = AtomicU32::new(0);
        restart_on_panic("test", &|| true, &|_| false, &|| {
            runs.fetch_add(1, Ordering::SeqCst);
            panic!("boom");
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

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
