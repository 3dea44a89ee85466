//! The agent's side of a relay: dial the gateway like a stream, asking for a webhook relay;
//! send the checked event and its body; wait for the gateway's [`Outcome`] until the VCS's
//! patience runs out.

use super::frames::{self, Event, Outcome, HEADER_RELAY, RELAY_ASKED, RELAY_CONFIRMED};
use crate::agent::shared::Shared;
use crate::net::dial;
use crate::net::Stream;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Relays `event` with `body`; the outcome says what to answer the VCS, by `deadline`.
pub fn relay(shared: &Shared, event: &Event, body: &[u8], deadline: Instant) -> Outcome {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_secs_f64() * 1000.0;
    let mut socket = match dial_relay(shared, deadline) {
        Ok(socket) => socket,
        Err(e) => return Outcome::failed(502, e.to_string(), elapsed()),
    };
    let outcome = exchange(&mut socket, event, body, deadline)
        .unwrap_or_else(|(status, reason)| Outcome::failed(status, reason, elapsed()));
    let _ = socket.close(None);
    let _ = socket.flush();
    outcome
}

/// Why no gateway took the relay. `Display` is the reason the VCS is answered with.
#[derive(Debug, thiserror::Error)]
enum DialRelayError {
    #[error("no gateway address")]
    NoGateway,
    #[error("the gateway does not relay webhooks (it is older than this agent): upgrade it")]
    NotConfirmed,
    #[error("cannot reach the gateway: {0}")]
    Unreachable(dial::DialError),
}

/// The first gateway address that takes the relay.
fn dial_relay(shared: &Shared, deadline: Instant) -> Result<WebSocket<Stream>, DialRelayError> {
    let config = &shared.config;
    let mut last = DialRelayError::NoGateway;
    for host in &config.gateways {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = config.upstream_connect_timeout.min(left);
        let asked = [(HEADER_RELAY, RELAY_ASKED)];
        match dial::connect_with(&config.token, host, &shared.identity, timeout, &asked) {
            Ok((mut socket, response)) => {
                let confirmed = response
                    .headers()
                    .get(HEADER_RELAY)
                    .and_then(|v| v.to_str().ok())
                    == Some(RELAY_CONFIRMED);
                if confirmed {
                    return Ok(socket);
                }
                let _ = socket.close(None);
                let _ = socket.flush();
                last = DialRelayError::NotConfirmed;
            }
            Err(e) => last = DialRelayError::Unreachable(e),
        }
    }
    Err(last)
}

/// Sends the event and its body, reads the outcome; `Err((status, reason))` on failure.
fn exchange(
    socket: &mut WebSocket<Stream>,
    event: &Event,
    body: &[u8],
    deadline: Instant,
) -> Result<Outcome, (u16, String)> {
    let lost = |e: tungstenite::Error| (502, format!("the relay to the gateway broke: {e}"));
    let text = serde_json::to_string(event).map_err(|e| (502, e.to_string()))?;
    let _ = socket
        .get_ref()
        .tcp()
        .set_write_timeout(Some(Duration::from_secs(5)));
    socket.send(Message::text(text)).map_err(lost)?;
    for piece in body.chunks(frames::MAX_CHUNK) {
        socket
            .write(Message::binary(piece.to_vec()))
            .map_err(lost)?;
    }
    socket.flush().map_err(lost)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let _ = socket.get_ref().set_read_timeout(Some(left));
        match socket.read() {
            Ok(Message::Text(text)) => {
                return serde_json::from_str(text.as_str())
                    .map_err(|e| (502, format!("the gateway's answer is not an outcome: {e}")));
            }
            Ok(Message::Close(_)) => {
                return Err((502, "the gateway closed the relay without an answer".into()))
            }
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(lost(e)),
        }
    }
}

fn timed_out() -> (u16, String) {
    (
        504,
        format!(
            "no delivery result from the gateway within {} s",
            super::VCS_PATIENCE.as_secs_f64()
        ),
    )
}
