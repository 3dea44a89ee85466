//! One authenticated agent stream as the gateway holds it, and the agent process behind it.
//!
//! Idle, a stream waits in its pool's queue ([`crate::gateway::state::pool`]); a caller's thread
//! takes it for one exchange and gives it back, and the housekeeper
//! ([`crate::gateway::agent_port::housekeeper`]) keeps it alive meanwhile. Dropping an
//! [`AgentStream`] closes the connection, counts it out of whatever it belongs to (its pool,
//! through [`Membership`], so this module needs nothing above it) and logs why it ended.

use crate::net::Stream;
use crate::protocol::link::Link;
use crate::protocol::{self, Control, Frame, ProtocolError};
use log::info;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message, WebSocket};

/// How often idle streams are looked after, and how long a stream may sit idle before an
/// exchange first reads what arrived meanwhile.
pub const TICK: Duration = Duration::from_millis(250);

/// An agent process as the gateway sees it (all its streams share one instance id).
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub instance: String,
    pub version: String,
    pub metadata: BTreeMap<String, String>,
    pub remote: String,
    pub connected_since: u64,
    pub streams: usize,
    pub busy: usize,
}

/// Why an idle stream ends: the end of its log line.
#[derive(Debug, thiserror::Error)]
pub enum AgentStreamEnd {
    #[error("socket error: {0}")]
    Socket(std::io::Error),
    #[error("agent is draining")]
    Draining,
    #[error("agent closed the stream")]
    Closed,
    #[error("protocol violation: {0} while idle")]
    Violation(&'static str),
    #[error("connection lost: {0}")]
    Lost(tungstenite::Error),
    #[error(transparent)]
    Protocol(ProtocolError),
    #[error("no frame from the agent for {0:?}")]
    Silent(Duration),
    #[error("ping failed: {0}")]
    Ping(tungstenite::Error),
}

/// What a stream belongs to, told when the stream ends: the pool, which counts its streams.
pub trait Membership: Send + Sync {
    /// The name the stream's log lines give.
    fn name(&self) -> String;
    /// A stream of agent `instance` is gone.
    fn stream_left(&self, instance: &str);
}

/// One authenticated agent stream. Idle, it waits in its pool's queue; a caller's thread
/// takes it, runs one exchange and gives it back. Dropping it closes the connection and
/// counts it out of the pool.
pub struct AgentStream {
    /// The connection, read and written in frames; it knows when the agent was last heard.
    pub link: Link<Stream>,
    pool: Arc<dyn Membership>,
    pub instance: String,
    pub peer: SocketAddr,
    /// The framing bytes an exchange writes to its caller ([`crate::gateway::exchange`]):
    /// one buffer for every exchange on this stream, not one per request.
    pub pending: Vec<u8>,
    last_ping: Instant,
    /// Why it ended, for the log line written when it is dropped.
    end: String,
}

impl AgentStream {
    /// A stream just upgraded and authenticated; the caller has counted it into `pool`.
    pub fn new(
        socket: WebSocket<Stream>,
        pool: Arc<dyn Membership>,
        instance: String,
        peer: SocketAddr,
    ) -> AgentStream {
        AgentStream {
            link: Link::new(socket),
            pool,
            instance,
            peer,
            pending: Vec::new(),
            last_ping: Instant::now(),
            end: String::from("closed"),
        }
    }

    /// Before an exchange: after a pause, reads what arrived meanwhile, so a closed or
    /// draining stream is not given a request. Back-to-back exchanges skip this.
    pub fn ready(&mut self) -> Result<(), AgentStreamEnd> {
        if self.link.silent_for() > TICK {
            self.poll()?;
        }
        Ok(())
    }

    /// After an exchange: the agent was heard from just now.
    pub fn heard(&mut self) {
        self.link.heard();
    }

    /// Idle housekeeping: take in pongs and drain notices, ping after a keepalive interval
    /// of silence, give up after three.
    pub fn keep_alive(&mut self, keepalive: Duration) -> Result<(), AgentStreamEnd> {
        self.poll()?;
        let silent = self.link.silent_for();
        if silent > keepalive * 3 {
            return Err(AgentStreamEnd::Silent(silent));
        }
        if self.last_ping.elapsed() >= keepalive {
            self.last_ping = Instant::now();
            self.link
                .send_message(Message::Ping(Bytes::new()))
                .map_err(AgentStreamEnd::Ping)?;
        }
        Ok(())
    }

    /// Ends the stream with a close frame (the agent dials again, or finishes its drain).
    pub fn close(mut self, reason: &str) {
        let _ = self.link.get_ref().set_nonblocking(true);
        self.say_goodbye();
        self.end = reason.to_string();
    }

    /// Ends the stream without ceremony (it is broken).
    pub fn drop_with(mut self, reason: impl std::fmt::Display) {
        self.end = reason.to_string();
    }

    fn say_goodbye(&mut self) {
        let _ = self.link.close();
        let _ = self.link.flush();
    }

    /// Reads whatever the agent sent while idle, without blocking. `Err` ends the stream.
    fn poll(&mut self) -> Result<(), AgentStreamEnd> {
        if let Err(e) = self.link.get_ref().set_nonblocking(true) {
            return Err(AgentStreamEnd::Socket(e));
        }
        // A bounded number of messages per look: a chatty agent cannot hold the housekeeper.
        let seen = self.link.recv_waiting(64);
        let _ = self.link.get_ref().set_nonblocking(false);
        let received = match seen {
            Ok(None) => return Ok(()),
            Ok(Some(received)) => received,
            Err(e) => return Err(AgentStreamEnd::Lost(e)),
        };
        match received.frame() {
            Ok(Frame::Control(Control::Draining)) => {
                // Acknowledge: the agent waits for our close to finish its drain.
                self.say_goodbye();
                Err(AgentStreamEnd::Draining)
            }
            Ok(Frame::Closed) => Err(AgentStreamEnd::Closed),
            Ok(other) => Err(AgentStreamEnd::Violation(protocol::describe(&other))),
            Err(e) => Err(AgentStreamEnd::Protocol(e)),
        }
    }
}

impl Drop for AgentStream {
    fn drop(&mut self) {
        self.pool.stream_left(&self.instance);
        info!(
            "agent stream closed: pool={} agent={} remote={}: {}",
            self.pool.name(),
            self.instance,
            self.peer,
            self.end
        );
    }
}
