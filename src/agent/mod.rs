//! The agent: a fixed pool of slot threads, one per `SPACELIFT_VCS_AGENT_PARALLELISM`, each
//! owning one WebSocket to the gateway and serving one request at a time ([`slot`]) through
//! the allowlist and the HTTP leg ([`forward`]).
//!
//! Shutdown is one call, [`Agent::drain`]: it flips a flag every slot looks at between ticks
//! and closes a channel that wakes slots sleeping in a backoff. Idle slots tell the gateway
//! they are draining at once; busy ones finish their request first. A slot that panics is
//! logged and started again; the others never notice.

pub mod check;
pub mod forward;
pub mod slot;

use crate::allowlist::Allowlist;
use crate::config::{AgentConfig, BaseEndpoint};
use crate::net::dial::Identity;
use crossbeam_channel::{Receiver, Sender};
use log::{error, info};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// State every slot reads; counters the health endpoint reports.
pub struct Shared {
    pub config: AgentConfig,
    pub allowlist: Allowlist,
    pub http: ureq::Agent,
    pub identity: Identity,
    /// Streams connected to the gateway right now.
    pub connected: AtomicUsize,
    /// Streams serving a request right now.
    pub busy: AtomicUsize,
    /// Counters for `/metrics`.
    pub metrics: crate::observe::metrics::AgentMetrics,
    draining: AtomicBool,
    /// Dropped at drain, which wakes every `recv_timeout` on `wake`.
    stop: Mutex<Option<Sender<()>>>,
    wake: Receiver<()>,
    codeload: BaseEndpoint,
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sleeps for `delay`; returns `true` early when the agent starts draining.
    pub fn sleep_unless_draining(&self, delay: Duration) -> bool {
        if self.is_draining() {
            return true;
        }
        let _ = self.wake.recv_timeout(delay);
        self.is_draining()
    }

    /// The base endpoint on the `codeload.` subdomain (GitHub Enterprise subdomain isolation).
    pub fn codeload_base(&self) -> &BaseEndpoint {
        &self.codeload
    }
}

/// A running agent.
pub struct Agent {
    shared: Arc<Shared>,
    slots: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Starts one thread per parallelism slot; they dial the gateway at once.
    pub fn start(config: AgentConfig) -> std::io::Result<Agent> {
        let instance = ulid::Ulid::new().to_string();
        let identity = Identity {
            metadata: config.metadata.clone(),
            instance,
            version: env!("CARGO_PKG_VERSION"),
        };
        let (stop, wake) = crossbeam_channel::bounded(0);
        let mut codeload = config.target.clone();
        codeload.authority = format!("codeload.{}", codeload.authority);
        codeload.host = format!("codeload.{}", codeload.host);
        let shared = Arc::new(Shared {
            allowlist: Allowlist::new(config.vendor, config.allowed_projects.clone()),
            http: forward::client(&config),
            identity,
            connected: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            metrics: Default::default(),
            draining: AtomicBool::new(false),
            stop: Mutex::new(Some(stop)),
            wake,
            codeload,
            config,
        });
        info!(
            "agent {} starting {} streams to {} for {} at {} (vendor {})",
            shared.identity.instance,
            shared.config.parallelism,
            shared.config.token.host,
            shared.config.token.pool_ulid,
            shared.config.target,
            shared.config.vendor.as_str()
        );
        let mut slots = Vec::with_capacity(shared.config.parallelism);
        for index in 0..shared.config.parallelism {
            let shared = Arc::clone(&shared);
            slots.push(
                std::thread::Builder::new()
                    .name(format!("slot-{index}"))
                    .spawn(move || supervise(&shared, index))?,
            );
        }
        Ok(Agent { shared, slots })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts a graceful drain: nothing new is taken, requests in flight finish.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        if let Ok(mut stop) = self.shared.stop.lock() {
            stop.take();
        }
    }

    /// Waits for every slot to end, at most `timeout`; `true` when all ended.
    pub fn wait(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.slots.iter().all(|s| s.is_finished()) {
                for slot in self.slots {
                    let _ = slot.join();
                }
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Runs a slot and restarts it if it panics, so one bad request cannot shrink the pool.
fn supervise(shared: &Shared, index: usize) {
    loop {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot::run(shared, index)));
        match result {
            Ok(()) => return,
            Err(_) if shared.is_draining() => return,
            Err(_) => {
                error!("slot {index} panicked; starting it again");
                if shared.sleep_unless_draining(Duration::from_millis(500)) {
                    return;
                }
            }
        }
    }
}
