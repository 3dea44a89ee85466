//! The agent port and the life of an agent stream: authenticate it at the WebSocket upgrade,
//! then put it in its pool's queue of idle streams, where callers' threads take it for one
//! exchange at a time ([`crate::gateway::exchange`]) and give it back.
//!
//! Idle streams need no thread of their own: one [`housekeeper`] wakes every tick, reads what
//! each idle agent sent (pongs, a drain notice, a close) without blocking, pings after a
//! keepalive interval of silence and drops a stream after three silent intervals, so a
//! vanished agent stops being handed requests. The stream itself, and what its end does, is
//! [`crate::gateway::state::stream`].
//!
//! Upgrades are handled at most `MAX_HANDSHAKES` at a time, at most 64 from one address
//! (`MAX_HANDSHAKES_PER_ADDRESS`), each with 10 s in total for TLS and the upgrade, so slow or
//! hostile dialers cannot hold the port.

use crate::gateway::state::hub::{AuthError, Hub};
use crate::gateway::state::pool::LivePool;
use crate::gateway::state::settings::GatewaySettings;
use crate::gateway::state::stream::{AgentInfo, AgentStream, TICK};
use crate::net::Stream;
use crate::protocol;
use crate::protocol::websocket_config;
use log::{debug, info, warn};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::WebSocket;

/// Agent upgrades handled at once. A thread serves a connection only until its handshake is
/// done (the stream then waits in its pool), so this bounds handshakes, not streams: a
/// gateway restart with 1 024 streams dialling back at once just queues them briefly.
pub const MAX_HANDSHAKES: usize = 256;

/// Longest a handshake (TLS and the upgrade) may take, in total.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

#[allow(clippy::result_large_err)]
fn refuse(status: u16, reason: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(reason.to_string()));
    *response.status_mut() = tungstenite::http::StatusCode::from_u16(status)
        .unwrap_or(tungstenite::http::StatusCode::BAD_REQUEST);
    response
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Handshake, then the stream's life.
#[allow(clippy::result_large_err)] // the error type is tungstenite's callback contract
pub(crate) fn accept(tcp: TcpStream, hub: &Hub, tls: Option<Arc<rustls::ServerConfig>>) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    // A client that connects and says nothing, or dribbles its upgrade, must not hold one of
    // the MAX_HANDSHAKES places: each read waits at most 10 s, the whole handshake 10 s.
    let _ = tcp.set_read_timeout(Some(HANDSHAKE_LIMIT));
    let handshake = crate::net::deadline::Watchable::of(&tcp).watch(HANDSHAKE_LIMIT);
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => match crate::net::tls::accept(config, tcp, HANDSHAKE_LIMIT) {
            Ok(tls) => Stream::TlsServer(Box::new(tls)),
            Err(e) => {
                debug!("{}", e.describe(&format!("agent {peer}")));
                return;
            }
        },
    };
    let mut admitted: Option<(Arc<LivePool>, AgentInfo)> = None;
    let mut relay = false;
    let callback = |request: &Request, mut response: Response| {
        admitted = Some(admit(hub, peer, request)?);
        relay = crate::gateway::webhook::confirm(request, &mut response);
        Ok(response)
    };
    let socket =
        match tungstenite::accept_hdr_with_config(stream, callback, Some(websocket_config())) {
            Ok(socket) => socket,
            Err(e) => {
                debug!("agent upgrade from {peer} failed: {e}");
                return;
            }
        };
    drop(handshake);
    let Some((pool, info)) = admitted else {
        return;
    };
    if relay {
        return crate::gateway::webhook::serve(socket, &pool, hub, peer);
    }
    if let Err(e) = set_timeouts(&socket, &hub.settings) {
        debug!("agent stream from {peer}: socket error: {e}");
        return;
    }
    pool.stream_joined(&info);
    info!(
        "agent stream connected: pool={} agent={} remote={peer} version={}",
        pool.name(),
        info.instance,
        info.version
    );
    let stream = AgentStream::new(socket, Arc::clone(&pool) as _, info.instance, peer);
    // The connection's thread ends here: an idle stream waits in its pool's queue.
    pool.give_back(stream);
}

/// Decides an agent's upgrade request: the agent endpoint, our protocol version, a known
/// pool and its key. Refusals are summed up in one line per interval, and repeated ones
/// from an address wait longer and longer (see `logins`).
#[allow(clippy::result_large_err)] // the error type is tungstenite's callback contract
fn admit(
    hub: &Hub,
    peer: SocketAddr,
    request: &Request,
) -> Result<(Arc<LivePool>, AgentInfo), ErrorResponse> {
    if request.uri().path() != protocol::CONNECT_PATH {
        return Err(refuse(404, "not an agent endpoint"));
    }
    let protocol_version = header(request, protocol::HEADER_PROTOCOL).unwrap_or("");
    if protocol_version != protocol::PROTOCOL_VERSION {
        warn!("agent from {peer} refused: protocol version {protocol_version:?}, this gateway speaks {}", protocol::PROTOCOL_VERSION);
        return Err(refuse(
            400,
            &format!(
                "protocol version {protocol_version:?} is not supported; this gateway speaks {}",
                protocol::PROTOCOL_VERSION
            ),
        ));
    }
    let ulid = header(request, protocol::HEADER_POOL_ULID).unwrap_or("");
    let key = header(request, protocol::HEADER_KEY).unwrap_or("");
    match hub.authenticate(ulid, key) {
        Ok(pool) => {
            hub.logins.admitted(peer.ip());
            Ok((pool, agent_info(request, peer)))
        }
        Err(e) => {
            let (label, answer) = match e {
                AuthError::UnknownPool => ("(unknown pool id)".to_string(), "unknown pool id"),
                AuthError::WrongKey => (ulid.to_string(), "wrong pool key"),
            };
            debug!("agent from {peer} refused for pool {label}: {answer}");
            std::thread::sleep(hub.logins.refused(&label, peer.ip()));
            Err(refuse(401, answer))
        }
    }
}

/// The agent process as its upgrade describes it (bounded: these are the agent's words).
fn agent_info(request: &Request, peer: SocketAddr) -> AgentInfo {
    let metadata: BTreeMap<String, String> = header(request, protocol::HEADER_METADATA)
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let bounded = |name: &str, max: usize| -> String {
        header(request, name)
            .unwrap_or("unknown")
            .chars()
            .take(max)
            .collect()
    };
    AgentInfo {
        instance: bounded(protocol::HEADER_INSTANCE, 64),
        version: bounded(protocol::HEADER_VERSION, 32),
        metadata,
        remote: peer.to_string(),
        connected_since: crate::clock::now_seconds(),
        streams: 0,
        busy: 0,
    }
}

/// Inside an exchange a read wakes at least every keepalive tick to check the exchange
/// timeout; writes (request bodies) must not block forever on an agent that stopped reading.
fn set_timeouts(socket: &WebSocket<Stream>, settings: &GatewaySettings) -> std::io::Result<()> {
    let tick = settings.keepalive.min(settings.exchange_timeout);
    socket.get_ref().set_read_timeout(Some(tick))?;
    socket
        .get_ref()
        .tcp()
        .set_write_timeout(Some(settings.exchange_timeout))
}

/// Looks after idle streams of every pool, forever: keepalive, drain notices, silent agents,
/// and closing them when the gateway drains.
pub fn housekeeper(hub: Arc<Hub>) {
    loop {
        std::thread::sleep(TICK);
        hub.logins.flush();
        hub.refusals.flush();
        for pool in hub.live_pools() {
            // One at a time, so callers can take the others meanwhile.
            for _ in 0..pool.idle.len() {
                let Some(mut stream) = pool.idle.try_take() else {
                    break;
                };
                if hub.is_draining() {
                    stream.close("the gateway is shutting down");
                    continue;
                }
                match stream.keep_alive(hub.settings.keepalive) {
                    Ok(()) => pool.give_back(stream),
                    Err(reason) => stream.drop_with(reason),
                }
            }
        }
    }
}
