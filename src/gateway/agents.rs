//! The agent port: authenticate each agent stream at the WebSocket upgrade, then give it a
//! thread that takes jobs from its pool's channel and runs them ([`super::exchange`]).
//!
//! While idle the thread wakes every tick to read what the agent sent (pongs, a drain
//! notice, a close) without blocking, pings after a keepalive interval of silence, and drops
//! the stream after three silent intervals, so a vanished agent stops taking jobs.

use crate::gateway::exchange;
use crate::gateway::hub::{AgentInfo, AuthError, Hub, Outcome, Pool};
use crate::net::dial::websocket_config;
use crate::net::stream::is_timeout;
use crate::net::Stream;
use crate::protocol::{self, Control, Frame};
use crossbeam_channel::RecvTimeoutError;
use log::{debug, info, warn};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Bytes, Message, WebSocket};

const TICK: Duration = Duration::from_millis(250);

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
    let peer = match tcp.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let _ = tcp.set_nodelay(true);
    // A client that connects and says nothing must not hold a thread forever.
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => match crate::net::tls::accept(config, tcp, Duration::from_secs(10)) {
            Ok(tls) => Stream::TlsServer(Box::new(tls)),
            Err(e) => {
                debug!("{}", e.describe(&format!("agent {peer}")));
                return;
            }
        },
    };

    let mut admitted: Option<(Arc<Pool>, AgentInfo)> = None;
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
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
        let pool = match hub.authenticate(ulid, key) {
            Ok(pool) => pool,
            Err(AuthError::UnknownPool) => {
                warn!("agent from {peer} refused: no pool has id {ulid:?}");
                return Err(refuse(401, "unknown pool id"));
            }
            Err(AuthError::WrongKey) => {
                warn!("agent from {peer} refused for pool {ulid}: wrong key");
                return Err(refuse(401, "wrong pool key"));
            }
        };
        let metadata: BTreeMap<String, String> = header(request, protocol::HEADER_METADATA)
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        let info = AgentInfo {
            instance: header(request, protocol::HEADER_INSTANCE)
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .collect(),
            version: header(request, protocol::HEADER_VERSION)
                .unwrap_or("unknown")
                .chars()
                .take(32)
                .collect(),
            metadata,
            remote: peer.to_string(),
            connected_since: crate::gateway::store::now_seconds(),
            streams: 0,
            busy: 0,
        };
        admitted = Some((pool, info));
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
    let Some((pool, info)) = admitted else {
        return;
    };
    pool.stream_joined(&info);
    info!(
        "agent stream connected: pool={} agent={} remote={peer} version={}",
        pool.name(),
        info.instance,
        info.version
    );
    let reason = run_stream(socket, &pool, hub, &info, peer);
    pool.stream_left(&info.instance);
    info!(
        "agent stream closed: pool={} agent={} remote={peer}: {reason}",
        pool.name(),
        info.instance
    );
}

/// Takes jobs until the stream ends; returns why it ended.
fn run_stream(
    mut socket: WebSocket<Stream>,
    pool: &Pool,
    hub: &Hub,
    info: &AgentInfo,
    peer: SocketAddr,
) -> String {
    let keepalive = hub.settings.keepalive;
    // Inside an exchange a read wakes at least this often to check the exchange timeout.
    let tick = keepalive.min(hub.settings.exchange_timeout);
    if let Err(e) = socket.get_ref().set_read_timeout(Some(tick)) {
        return format!("socket error: {e}");
    }
    let mut last_heard = Instant::now();
    let mut last_ping = Instant::now();
    loop {
        if pool.is_closed() {
            return close(socket, "pool deleted");
        }
        if hub.is_draining() {
            return close(socket, "the gateway is shutting down");
        }
        match pool.queue.recv_timeout(TICK) {
            Ok(job) => {
                // After a pause, look at what arrived meanwhile: a closed or draining stream must
                // not start the job. Back-to-back jobs skip this (the last exchange just read it).
                let checked = if last_heard.elapsed() > TICK {
                    poll(&mut socket, &mut last_heard)
                } else {
                    Ok(())
                };
                if let Err(reason) = checked {
                    let reply = job.reply.clone();
                    let _ = reply.send(Outcome::NotStarted(job));
                    return reason;
                }
                pool.requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pool.set_busy(&info.instance, true);
                let result = exchange::run(&mut socket, job, &hub.settings, &info.instance, peer);
                pool.set_busy(&info.instance, false);
                last_heard = Instant::now();
                match result {
                    exchange::StreamState::Usable => {}
                    exchange::StreamState::Draining => return close(socket, "agent is draining"),
                    exchange::StreamState::Broken(reason) => return reason,
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(reason) = poll(&mut socket, &mut last_heard) {
                    return reason;
                }
                if last_heard.elapsed() > keepalive * 3 {
                    return format!("no frame from the agent for {:?}", last_heard.elapsed());
                }
                if last_ping.elapsed() >= keepalive {
                    last_ping = Instant::now();
                    if let Err(e) = socket.send(Message::Ping(Bytes::new())) {
                        return format!("ping failed: {e}");
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return "pool closed".into(),
        }
    }
}

/// Sends a close frame and waits briefly for the agent's reply.
fn close(mut socket: WebSocket<Stream>, reason: &str) -> String {
    let _ = socket.close(None);
    let _ = socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(2)));
    for _ in 0..16 {
        if socket.read().is_err() {
            break;
        }
    }
    reason.to_string()
}

/// Reads whatever the agent sent while idle, without blocking. `Err` ends the stream.
fn poll(socket: &mut WebSocket<Stream>, last_heard: &mut Instant) -> Result<(), String> {
    if let Err(e) = socket.get_ref().set_nonblocking(true) {
        return Err(format!("socket error: {e}"));
    }
    let result = loop {
        match socket.read() {
            Ok(message) => {
                *last_heard = Instant::now();
                match protocol::decode(message) {
                    Ok(None) => {}
                    Ok(Some(Frame::Control(Control::Draining))) => {
                        break Err("draining".to_string());
                    }
                    Ok(Some(Frame::Closed)) => break Err("agent closed the stream".into()),
                    Ok(Some(other)) => {
                        break Err(format!(
                            "protocol violation: {} while idle",
                            protocol::describe(&other)
                        ))
                    }
                    Err(e) => break Err(e.to_string()),
                }
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => break Ok(()),
            Err(e) => break Err(format!("connection lost: {e}")),
        }
    };
    let _ = socket.get_ref().set_nonblocking(false);
    match result {
        Err(reason) if reason == "draining" => {
            // Acknowledge: the agent waits for our close to finish its drain.
            let _ = socket.close(None);
            let _ = socket.flush();
            Err("agent is draining".into())
        }
        other => other,
    }
}
