//! The agent: a fixed pool of slot threads, one per `SPACELIFT_VCS_AGENT_PARALLELISM`, each
//! owning one WebSocket to the gateway ([`slot`]) and serving one request at a time on it
//! ([`request`]) through the allowlist and the HTTP leg ([`forward`]).
//!
//! Shutdown is one call, [`Agent::drain`]: it flips a flag every slot looks at between ticks
//! and closes a channel that wakes slots sleeping in a backoff. Idle slots tell the gateway
//! they are draining at once; busy ones finish their request first. A slot that panics is
//! logged and started again; the others never notice.

pub mod check;
pub(crate) mod forward;
pub(crate) mod ids;
pub(crate) mod listing;
pub(crate) mod projects;
pub(crate) mod rebase;
pub(crate) mod redirect;
pub(crate) mod request;
pub(crate) mod shared;
pub(crate) mod slot;
pub(crate) mod socket;
pub(crate) mod upstream;

use crate::config::AgentConfig;
use crate::net::dial::{Identity, Route};
use crate::net::tls::{Roots, TlsError};
use log::{error, info, warn};
use shared::Shared;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
pub(crate) fn legs(config: &AgentConfig) -> Result<(Route, forward::Client), TlsError> {
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
        let shared = Arc::new(Shared::new(config, http, identity));
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
        self.shared.start_draining();
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
    use std::sync::atomic::{AtomicU32, Ordering};

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
}
