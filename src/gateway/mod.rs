//! The gateway, one folder per port or lifetime: pools and callers as stored ([`store`]), what
//! the running gateway holds (live pools, their idle streams, figures, records, callers:
//! [`state`]), the agent port ([`agent_port`]), one request over one agent stream and the
//! request itself ([`exchange`]), the api port's `private://` front and its dispatch
//! ([`front`]), the operator's panel, JSON API, `/healthz` and `/metrics` ([`operator`]), and
//! forwarding between replicas ([`replicas`]), and webhooks an agent relays on its way to
//! the SaaS ([`webhook`]). This file wires them up: store → hub →
//! optional peers → the ports; drain. What it starts with, and the start-up policy that
//! checks it, is [`config`].
//!
//! Imports point one way, down this list, and never back up:
//! `front` → `operator` → `replicas` → `exchange` → `state` → `store`; `agent_port` →
//! `webhook` → `state`, and `operator` → `webhook`. Only this file and [`config`] know every folder; no folder imports either.
//!
//! Synchronous throughout: a thread per caller connection, which also runs that caller's
//! exchanges over a borrowed agent stream; idle agent streams wait in their pool's queue and
//! one housekeeping thread keeps them alive. A gateway holding 1 024 agent streams runs six
//! threads; see the README for figures.

pub(crate) mod agent_port;
pub mod config;
pub(crate) mod exchange;
pub(crate) mod front;
pub(crate) mod operator;
pub mod replicas;
pub(crate) mod state;
pub mod store;
pub mod webhook;

use config::GatewayTls;
use config::{Checked, Config, ConfigError};
use state::hub::Hub;
use state::settings::GatewaySettings;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

/// Why the gateway could not start. `Display` is the one line the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A port could not be bound; `flag` names the setting.
    #[error("{flag} {address}: cannot bind: {source}")]
    Bind {
        flag: &'static str,
        address: String,
        source: std::io::Error,
    },
    /// A bound port has no address (the system says why).
    #[error("{0}")]
    Address(#[from] std::io::Error),
    #[error("cannot start a listener thread: {0}")]
    Thread(std::io::Error),
    /// Redis could not be followed (its own sentence).
    #[error(transparent)]
    RedisStore(store::redis::ConnectError),
    #[error(transparent)]
    Peer(#[from] replicas::PeerError),
}

/// Binds `address`, the value of `flag`.
fn bind(flag: &'static str, address: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(address).map_err(|source| StartError::Bind {
        flag,
        address: address.to_string(),
        source,
    })
}

/// A gateway with both ports bound, serving on background threads.
pub struct Gateway {
    pub(crate) hub: Arc<Hub>,
    /// Forwarding to other replicas (`serve --peer-listen`), built before the api port
    /// serves and handed to the front, `/metrics` and `/healthz`.
    peers: Option<Arc<replicas::Peers>>,
    pub agent_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The peer port's bound address, with `serve --peer-listen`.
    pub peer_addr: Option<SocketAddr>,
}

impl Gateway {
    /// `vcs-gateway serve`: checks `config` ([`Config::check`]), starts logging in its
    /// format, opens the store, binds the ports (and the peer port), and logs where and how it
    /// listens and what it loaded.
    pub fn serve(config: Config) -> Result<Gateway, StartError> {
        let log_format = config.log_format;
        let checked = config.check()?;
        crate::observe::logging::init(log_format, None, "info");
        let where_token = checked.where_token.clone();
        let gateway = Gateway::start_checked(checked)?;
        if let Some(addr) = gateway.peer_addr {
            log::info!("peer port listening on {addr} (requests forwarded by other replicas, signed with the peer secret)");
        }
        log::info!("{where_token}");
        gateway.log_ready();
        Ok(gateway)
    }

    /// Starts serving a checked configuration and logs where and how it listens.
    fn start_checked(checked: Checked) -> Result<Gateway, StartError> {
        let Checked {
            store,
            ports,
            settings,
            tls,
            peers,
            ..
        } = checked;
        let (agent_tls, api_tls) = (tls.agent.is_some(), tls.api.is_some());
        let poll_only = settings.poll_only;
        if let Some(id) = &settings.replica_id {
            log::info!(
                "replica {id}: pools and callers in Redis at {}",
                store.describe()
            );
        }
        let gateway = Gateway::start_with_store(
            store,
            &ports.agent,
            &ports.api,
            settings,
            tls,
            poll_only,
            peers,
        )?;
        let scheme = |on: bool| if on { "TLS" } else { "plain, no TLS" };
        log::info!("agent port serves {}", scheme(agent_tls));
        log::info!("api port serves {}", scheme(api_tls));
        log::info!("agent port listening on {}", gateway.agent_addr);
        log::info!("api port listening on {}", gateway.api_addr);
        if let Some(listen) = &ports.metrics {
            let addr = gateway.serve_metrics(listen)?;
            log::info!("metrics port listening on {addr} (/healthz and /metrics without authentication: keep it on a private scrape network)");
        }
        Ok(gateway)
    }

    /// The panel's address, who may use the front and what was loaded.
    fn log_ready(&self) {
        log::info!("panel at http://{}/ (admin token required)", self.api_addr);
        let store = &self.hub.store;
        match self.hub.callers.count() {
            0 => log::warn!(
                "no caller exists yet: the front refuses every tunnel request until one does (vcs-gateway caller create {} --name NAME --pools POOL)",
                match store.shared() {
                    Some(_) => "--redis URL".to_string(),
                    None => format!(
                        "--data-dir {}",
                        store.path().parent().unwrap_or(Path::new("")).display()
                    ),
                }
            ),
            n => log::info!("{n} callers may use the front"),
        }
        log::info!(
            "{} pools loaded from {}",
            self.hub.pools().len(),
            store.describe()
        );
    }

    /// Binds both ports (and the peer port when `peer` says so) and starts serving pools and
    /// callers from `store`; a Redis store is kept current by its own threads (polling alone
    /// when `poll_only`).
    fn start_with_store(
        store: store::Store,
        agent_listen: &str,
        api_listen: &str,
        settings: GatewaySettings,
        tls: GatewayTls,
        poll_only: bool,
        peer: Option<replicas::PeerOptions>,
    ) -> Result<Gateway, StartError> {
        let mut hub = Arc::new(Hub::new(store, settings)?);
        let agent_listener = bind("--agent-listen", agent_listen)?;
        let api_listener = bind("--api-listen", api_listen)?;
        let agent_addr = agent_listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        if let Some(hub) = Arc::get_mut(&mut hub) {
            hub.settings
                .public_url
                .get_or_insert_with(|| format!("ws://{agent_addr}"));
        }
        follow_shared(&hub, poll_only)?;
        let started = peer
            .map(|options| replicas::start(&hub, options))
            .transpose()?;
        let (peers, peer_addr) = match started {
            Some(started) => (Some(started.peers), Some(started.address)),
            None => (None, None),
        };
        spawn_threads(&hub, peers.clone(), agent_listener, api_listener, tls)?;
        Ok(Gateway {
            hub,
            peers,
            agent_addr,
            api_addr,
            peer_addr,
        })
    }

    /// Serves `/healthz` and `/metrics` without authentication on `listen` (a private
    /// scrape network); returns the bound address.
    fn serve_metrics(&self, listen: &str) -> Result<SocketAddr, StartError> {
        let listener = bind("--metrics-listen", listen)?;
        let addr = listener.local_addr()?;
        let (hub, peers) = (Arc::clone(&self.hub), self.peers.clone());
        operator::health::serve_metrics(listener, hub, peers).map_err(StartError::Thread)?;
        Ok(addr)
    }

    /// The first signal: nothing new is dispatched; queued requests get their 503 at once.
    pub fn start_draining(&self) {
        self.hub.start_draining();
    }

    /// Graceful shutdown: nothing new is dispatched, idle agent streams are closed (their
    /// agents dial again, reaching the next gateway), requests in flight may finish for up to
    /// `timeout`. Returns `true` when none was left running.
    pub fn drain(&self, timeout: std::time::Duration) -> bool {
        // Queued requests wake at once to their 503; running ones finish.
        self.hub.start_draining();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.hub.open_requests() == 0 {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }
    /// After a drain: waits (bounded) until every agent stream got its close frame.
    pub fn wait_streams_closed(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.hub.streams() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A Redis store: every change reloads pools and callers, and a replica keeps its presence
/// record (the pools it has streams of) current until it drains.
fn follow_shared(hub: &Arc<Hub>, poll_only: bool) -> Result<(), StartError> {
    let Some(shared) = hub.store.shared().cloned() else {
        return Ok(());
    };
    let weak = Arc::downgrade(hub);
    shared.on_change(move || {
        if let Some(hub) = weak.upgrade() {
            if let Err(e) = hub.reload().and_then(|()| hub.callers.reload()) {
                log::error!("{e}");
            }
        }
    });
    if let Some(replica) = hub.settings.replica_id.clone() {
        let weak = Arc::downgrade(hub);
        shared.record_presence(&replica, move || {
            let hub = weak.upgrade()?;
            if hub.is_draining() {
                return None;
            }
            let pools = hub.live_pools().into_iter();
            Some(
                pools
                    .filter(|p| p.streams() > 0)
                    .map(|p| p.name())
                    .collect(),
            )
        });
    }
    shared.start_sync(poll_only).map_err(StartError::RedisStore)
}

/// The housekeeper and the two ports' accept loops.
fn spawn_threads(
    hub: &Arc<Hub>,
    peers: Option<Arc<replicas::Peers>>,
    agent_listener: TcpListener,
    api_listener: TcpListener,
    tls: GatewayTls,
) -> Result<(), StartError> {
    let cannot = StartError::Thread;
    let h = Arc::clone(hub);
    std::thread::Builder::new()
        .name("housekeeper".into())
        .spawn(move || agent_port::housekeeper(h))
        .map_err(cannot)?;
    let (h, agent_tls) = (Arc::clone(hub), tls.agent);
    let handshakes = crate::net::listen::Limits {
        open: agent_port::MAX_HANDSHAKES,
        per_peer: state::logins::MAX_HANDSHAKES_PER_ADDRESS,
    };
    crate::net::listen::spawn_limited(
        agent_listener,
        "agent-port",
        "agent-stream",
        handshakes,
        move |tcp| agent_port::accept(tcp, &h, agent_tls.clone()),
    )
    .map_err(cannot)?;
    let (h, api_tls) = (Arc::clone(hub), tls.api);
    let limits = crate::net::listen::Limits {
        open: hub.settings.max_callers + front::OPERATOR_RESERVE,
        per_peer: hub.settings.max_per_address,
    };
    crate::net::listen::spawn_with(
        api_listener,
        "api-port",
        "caller",
        limits,
        move |tcp, presence| {
            front::handle_connection(tcp, presence, &h, peers.as_deref(), api_tls.clone())
        },
    )
    .map_err(cannot)?;
    Ok(())
}
