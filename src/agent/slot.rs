//! One agent stream's whole life: dial the gateway, wait for requests and hand each to
//! [`request::handle`], and dial again with backoff when the connection is lost.
//!
//! Everything happens on this slot's own thread and its own WebSocket, so there are no locks
//! on the hot path. The socket's read timeout is a short tick: between ticks the slot notices
//! a drain, sends keepalive pings and detects a silent gateway (three keepalive intervals with
//! no frame at all). The `connected` and `busy` gauges are held by guards, so a slot that
//! panics in a request (and is started again) leaves them right.

use crate::agent::request::{self, Request};
use crate::agent::shared::Shared;
use crate::agent::socket::{Socket, StreamEnd};
use crate::net::dial::{self, DialError};
use crate::net::Stream;
use crate::protocol::link::Link;
use crate::protocol::{self, Control, Frame, Received, MAX_CHUNK};
use log::{debug, error, info, warn};
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message, WebSocket};

/// How often an idle slot wakes up to look at drain and keepalive.
const TICK: Duration = Duration::from_millis(250);
/// Longest a write to the gateway may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(180);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Exponential backoff with full jitter: the next wait is uniform in `[floor, min(cap, base·2ⁿ)]`.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            attempt: 0,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.base / 5).min(ceiling);
        floor + ceiling.saturating_sub(floor).mul_f64(random_unit())
    }

    /// Jumps straight to the cap (a refused token will not fix itself soon).
    pub(crate) fn jump_to_cap(&mut self) {
        self.attempt = 16;
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs one slot until the agent drains.
pub(crate) fn run(shared: &Shared, index: usize) {
    let mut backoff = Backoff::default();
    let mut buffer = vec![0u8; MAX_CHUNK];
    let mut failures_in_a_row = 0u32;
    let mut connected_before = false;
    while !shared.is_draining() {
        match dial_any(shared, index) {
            Ok(socket) => {
                let mut socket = Link::new(socket);
                if failures_in_a_row > 0 {
                    shared.gateway_is_back();
                    info!("slot {index}: connected to the gateway again after {failures_in_a_row} failed attempts");
                } else {
                    debug!("slot {index}: connected to the gateway");
                }
                if failures_in_a_row > 0 || connected_before {
                    shared.metrics.reconnected();
                }
                connected_before = true;
                failures_in_a_row = 0;
                let since = Instant::now();
                let end = {
                    let _connected = shared.gauges.connected.raise();
                    serve(shared, &mut socket, &mut buffer)
                };
                if since.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                match end {
                    StreamEnd::Closed if shared.is_draining() => break,
                    end if redial_at_once(index, &end) => continue,
                    _ => {}
                }
            }
            Err(DialError::Unauthorized(reason)) => {
                failures_in_a_row += 1;
                shared.metrics.dial_failed();
                backoff.jump_to_cap();
                error!("slot {index}: {}", DialError::Unauthorized(reason));
            }
            Err(e) => {
                failures_in_a_row += 1;
                shared.metrics.dial_failed();
                // The first failure and then every tenth: a long outage must not flood the log.
                if failures_in_a_row == 1 || failures_in_a_row.is_multiple_of(10) {
                    warn!(
                        "slot {index}: cannot reach the gateway (attempt {failures_in_a_row}): {e}"
                    );
                } else {
                    debug!(
                        "slot {index}: cannot reach the gateway (attempt {failures_in_a_row}): {e}"
                    );
                }
            }
        }
        if shared.sleep_unless_draining(backoff.next_delay()) {
            break;
        }
    }
}

/// Logs why a stream ended; `true` when the slot dials again at once (no backoff).
fn redial_at_once(index: usize, end: &StreamEnd) -> bool {
    match end {
        StreamEnd::Closed => warn!("slot {index}: the gateway closed the stream; dialing again"),
        StreamEnd::Lost(reason) => warn!("slot {index}: stream lost: {reason}; dialing again"),
        StreamEnd::Cancelled => {
            debug!("slot {index}: request cancelled by the gateway; dialing again");
            return true;
        }
        StreamEnd::Retired => {
            debug!("slot {index}: stream reached its maximum age; dialing again");
            return true;
        }
    }
    false
}

/// One round over the gateway addresses: slot `index` starts at address `index mod N` (so
/// the slots spread over the gateways) and falls back to the next address in turn. Returns
/// the first socket, or the last failure when every address failed.
fn dial_any(shared: &Shared, index: usize) -> Result<WebSocket<Stream>, DialError> {
    let gateways = &shared.config.gateways;
    let timeout = shared.config.upstream_connect_timeout;
    let mut last = DialError::Failed("no gateway address".into());
    for k in 0..gateways.len() {
        let host = &gateways[(index + k) % gateways.len()];
        match dial::connect(&shared.config.token, host, &shared.identity, timeout) {
            Ok(socket) => {
                debug!("slot {index}: connected to {host}");
                return Ok(socket);
            }
            Err(e) => {
                if gateways.len() > 1 {
                    debug!("slot {index}: {host} failed ({e}); trying the next address");
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// Serves requests on one connected socket until it ends.
fn serve(shared: &Shared, socket: &mut Socket, buffer: &mut [u8]) -> StreamEnd {
    let mut retired = false;
    match serve_until_end(shared, socket, buffer, &mut retired) {
        StreamEnd::Closed if retired && !shared.is_draining() => StreamEnd::Retired,
        end => end,
    }
}

/// [`serve`]'s loop; `retired` is set when the stream was handed back for its age.
fn serve_until_end(
    shared: &Shared,
    socket: &mut Socket,
    buffer: &mut [u8],
    retired: &mut bool,
) -> StreamEnd {
    if let Err(end) = set_timeouts(socket) {
        return end;
    }
    let mut last_ping = Instant::now();
    let mut drain_sent: Option<Instant> = None;
    let retire_at = shared
        .config
        .max_stream_age
        .map(|age| Instant::now() + age.mul_f64(0.9 + 0.2 * random_unit()));
    loop {
        let retiring = retire_at.is_some_and(|at| Instant::now() >= at);
        *retired |= retiring;
        if let Some(end) = drain(shared, socket, &mut drain_sent, retiring) {
            return end;
        }
        let step = match socket.recv() {
            Ok(Some(received)) => on_frame(shared, socket, buffer, &received),
            Ok(None) => on_quiet(shared, socket, &mut last_ping),
            Err(e) => Err(e.into()),
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// The read tick, and a write timeout: a gateway that stops reading must not pin the slot;
/// it gives up on a stalled caller after 120 s itself, so wait longer than that.
fn set_timeouts(socket: &mut Socket) -> Result<(), StreamEnd> {
    let stream = socket.get_ref();
    stream
        .set_read_timeout(Some(TICK))
        .map_err(|e| StreamEnd::Lost(format!("cannot set a read timeout: {e}")))?;
    stream
        .tcp()
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| StreamEnd::Lost(format!("cannot set a write timeout: {e}")))
}

/// A frame on an idle stream: a request to serve (its strings borrowed from `received`), or
/// the gateway's close.
fn on_frame(
    shared: &Shared,
    socket: &mut Socket,
    buffer: &mut [u8],
    received: &Received,
) -> Result<(), StreamEnd> {
    let frame = received
        .frame()
        .map_err(|e| StreamEnd::Lost(e.to_string()))?;
    match frame {
        Frame::Control(Control::Request {
            id,
            method,
            target,
            headers,
            body,
            front,
        }) => {
            let request = Request {
                id,
                method,
                target,
                headers,
                body,
                front,
            };
            {
                let _busy = shared.gauges.busy.raise();
                request::handle(shared, socket, request, buffer)?;
            }
            socket.heard();
            Ok(())
        }
        Frame::Closed => Err(finish_close(socket)),
        other => Err(StreamEnd::Lost(format!(
            "protocol violation: {} while idle",
            protocol::describe(&other)
        ))),
    }
}

/// A read tick without a frame: ping when due, give up on a silent gateway.
fn on_quiet(
    shared: &Shared,
    socket: &mut Socket,
    last_ping: &mut Instant,
) -> Result<(), StreamEnd> {
    let keepalive = shared.config.keepalive;
    if socket.silent_for() > keepalive * 3 {
        return Err(StreamEnd::Lost(format!(
            "no frame from the gateway for {:?} (3 keepalive intervals)",
            socket.silent_for()
        )));
    }
    if last_ping.elapsed() >= keepalive {
        *last_ping = Instant::now();
        socket.send_message(Message::Ping(Bytes::new()))?;
    }
    Ok(())
}

/// Tells the gateway once that this stream drains (the agent drains, or the stream reached
/// its maximum age: the gateway then sends it no new request and closes it, so no request is
/// lost to the close), and closes the stream when the gateway has not done so within the
/// drain timeout; `Some` when the stream ends here.
fn drain(
    shared: &Shared,
    socket: &mut Socket,
    sent: &mut Option<Instant>,
    retiring: bool,
) -> Option<StreamEnd> {
    if (shared.is_draining() || retiring) && sent.is_none() {
        if retiring {
            debug!("the stream reached its maximum age: handing it back to dial again");
        }
        if let Err(e) = socket.send(&Control::Draining) {
            return Some(e.into());
        }
        *sent = Some(Instant::now());
    }
    match sent {
        Some(at) if at.elapsed() > shared.config.drain_timeout => {
            let _ = socket.close();
            Some(StreamEnd::Closed)
        }
        _ => None,
    }
}

/// After the gateway's close frame: let tungstenite send its reply and see the end.
fn finish_close(socket: &mut Socket) -> StreamEnd {
    for _ in 0..8 {
        if socket.recv().is_err() {
            break;
        }
    }
    StreamEnd::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::default();
        let first: Vec<Duration> = (0..3).map(|_| b.next_delay()).collect();
        assert!(first
            .iter()
            .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2)));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(30) && d >= Duration::from_millis(100));
        }
        // Full jitter: many draws at the cap are not all the same.
        let draws: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
        b.jump_to_cap();
        let capped: Vec<Duration> = (0..50).map(|_| b.next_delay()).collect();
        assert!(capped.iter().any(|d| *d > Duration::from_secs(5)));
    }
}
