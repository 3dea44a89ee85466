//! The gateway's side of webhooks: a relay arrives on the agent port as an authenticated
//! upgrade that asks for it ([`crate::webhook::frames`]); the connection's thread reads the
//! event and its body, delivers it to the pool's webhook URL ([`deliver`]) and answers the
//! agent with the outcome. Any replica can deliver: the one the agent dialled does.
//!
//! Bounded: a body is at most [`GATEWAY_MAX_BODY`], and the bodies held at once at most
//! [`IN_FLIGHT_BUDGET`] bytes together (a relay beyond it is answered `503`); relays take
//! the agent port's handshake places ([`crate::gateway::agent_port::MAX_HANDSHAKES`]) while
//! they last.

pub(crate) mod deliver;
pub mod sign;

use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::LivePool;
use crate::gateway::state::webhooks::WebhookRecord;
use crate::net::Stream;
use crate::observe::prometheus::Exposition;
use crate::webhook::frames::{
    Event, Outcome, GATEWAY_MAX_BODY, HEADER_RELAY, MAX_EVENT_MESSAGE, RELAY_ASKED, RELAY_CONFIRMED,
};
use crate::webhook::AccessLine;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Message, WebSocket};

/// Body bytes all relays of this gateway may hold at once.
pub const IN_FLIGHT_BUDGET: u64 = 256 * 1024 * 1024;
/// Longest the agent may leave the relay silent while it sends the event.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// Relays by pool, event and outcome, for `/metrics`. Event names come from agents: past
/// [`MAX_SERIES`] series, new ones are counted under the event `(others)`.
static COUNTS: Mutex<BTreeMap<(String, String, &'static str), u64>> = Mutex::new(BTreeMap::new());
const MAX_SERIES: usize = 1024;

/// The outcome label of a relay.
fn outcome_label(outcome: &Outcome) -> &'static str {
    match (outcome.status, outcome.saas_status) {
        (200..=299, _) => "delivered",
        (_, Some(_)) => "saas_error",
        (504, None) => "timeout",
        (502, None) => "undelivered",
        _ => "refused",
    }
}

fn count(pool: &str, event: &str, outcome: &Outcome) {
    let mut counts = COUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    let label = outcome_label(outcome);
    let mut key = (pool.to_string(), event.chars().take(64).collect(), label);
    if counts.len() >= MAX_SERIES && !counts.contains_key(&key) {
        key.1 = "(others)".into();
    }
    *counts.entry(key).or_insert(0) += 1;
}

/// The `vcs_gateway_webhooks_total` family.
pub fn metrics(out: &mut Exposition) {
    let name = "vcs_gateway_webhooks_total";
    out.family(name, "counter", "Webhooks relayed by agents, by pool, event and outcome (delivered, saas_error, undelivered, timeout, refused).");
    let counts = COUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    for ((pool, event, outcome), n) in counts.iter() {
        let labels = [
            ("pool", pool.as_str()),
            ("event", event.as_str()),
            ("outcome", *outcome),
        ];
        out.sample(name, &labels, n);
    }
}

/// Body bytes reserved in [`IN_FLIGHT`] until dropped.
struct Reserved(u64);

impl Reserved {
    fn take(bytes: u64) -> Option<Reserved> {
        let mut now = IN_FLIGHT.load(Ordering::SeqCst);
        loop {
            let next = now.checked_add(bytes).filter(|n| *n <= IN_FLIGHT_BUDGET)?;
            match IN_FLIGHT.compare_exchange(now, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(Reserved(bytes)),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(self.0, Ordering::SeqCst);
    }
}

/// Whether an agent's upgrade asks for a webhook relay; if so, `response` confirms it.
pub fn confirm(request: &Request, response: &mut Response) -> bool {
    let asked = request
        .headers()
        .get(HEADER_RELAY)
        .and_then(|v| v.to_str().ok())
        == Some(RELAY_ASKED);
    if asked {
        response.headers_mut().insert(
            HEADER_RELAY,
            tungstenite::http::HeaderValue::from_static(RELAY_CONFIRMED),
        );
    }
    asked
}

/// One relay, on the agent port connection's thread.
pub fn serve(mut socket: WebSocket<Stream>, pool: &LivePool, hub: &Hub, peer: SocketAddr) {
    let started = Instant::now();
    let _ = socket.get_ref().set_read_timeout(Some(READ_TIMEOUT));
    let _ = socket.get_ref().tcp().set_write_timeout(Some(READ_TIMEOUT));
    let name = pool.name();
    let (event, outcome) = match receive(&mut socket) {
        Ok((event, body, _reserved)) => {
            let outcome = send_on(pool, hub, &event, &body);
            (event, outcome)
        }
        Err(outcome) => {
            log::debug!(
                "webhook relay from {peer} for pool {name} refused: {:?}",
                outcome.reason
            );
            count(&name, "(unread)", &outcome);
            let _ = answer(&mut socket, &outcome);
            return;
        }
    };
    let _ = answer(&mut socket, &outcome);
    count(&name, &event.event, &outcome);
    let time_ms = crate::clock::now_millis().saturating_sub(started.elapsed().as_millis() as u64);
    pool.webhooks
        .remember(WebhookRecord::new(time_ms, &event, &outcome));
    AccessLine {
        side: "gateway",
        pool: &name,
        event: &event.event,
        rule: crate::observe::escape::bounded(&event.rule, 100).as_ref(),
        project: &event.project,
        status: outcome.status,
        saas_status: outcome.saas_status,
        bytes: event.length,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        reason: outcome.reason.as_deref(),
    }
    .log();
}

fn answer(socket: &mut WebSocket<Stream>, outcome: &Outcome) -> tungstenite::Result<()> {
    let text = serde_json::to_string(outcome).unwrap_or_default();
    socket.send(Message::text(text))?;
    let _ = socket.close(None);
    socket.flush()
}

/// The event and its whole body, within the bounds.
fn receive(socket: &mut WebSocket<Stream>) -> Result<(Event, Vec<u8>, Reserved), Outcome> {
    let broke = |what: &str| Outcome::failed(502, format!("the relay broke: {what}"), 0.0);
    let event: Event = match socket.read() {
        Ok(Message::Text(text)) if text.len() <= MAX_EVENT_MESSAGE => {
            serde_json::from_str(text.as_str()).map_err(|e| broke(&e.to_string()))?
        }
        Ok(_) => return Err(broke("expected the event first")),
        Err(e) => return Err(broke(&e.to_string())),
    };
    for (name, value) in &event.headers {
        if !crate::webhook::frames::kept(name) || !crate::protocol::valid_header(name, value) {
            return Err(broke("a header the agent does not relay"));
        }
    }
    if event.length > GATEWAY_MAX_BODY {
        let reason = format!("the gateway takes bodies of at most {GATEWAY_MAX_BODY} bytes");
        return Err(Outcome::failed(413, reason, 0.0));
    }
    let Some(reserved) = Reserved::take(event.length) else {
        let reason = "the gateway is relaying too many webhooks at once; redeliver later";
        return Err(Outcome::failed(503, reason, 0.0));
    };
    let mut body = Vec::with_capacity(usize::try_from(event.length).unwrap_or(0));
    while (body.len() as u64) < event.length {
        match socket.read() {
            Ok(Message::Binary(piece)) => {
                if body.len() as u64 + piece.len() as u64 > event.length {
                    return Err(broke("more body than announced"));
                }
                body.extend_from_slice(&piece);
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(_) => return Err(broke("expected body pieces")),
            Err(e) => return Err(broke(&e.to_string())),
        }
    }
    Ok((event, body, reserved))
}

/// Delivers to the pool's webhook URL, when it has one the gateway may deliver to.
fn send_on(pool: &LivePool, hub: &Hub, event: &Event, body: &[u8]) -> Outcome {
    let record = pool.record();
    let (Some(url), Some(secret)) = (&record.webhook_url, &record.webhook_secret) else {
        let reason = format!("pool {} has no webhook URL", record.name);
        return Outcome::failed(502, reason, 0.0);
    };
    if url.starts_with("http://") && !hub.settings.allow_http_webhooks {
        let reason = "the pool's webhook URL is http://; this gateway delivers to https:// only";
        return Outcome::failed(502, reason, 0.0);
    }
    let target = deliver::Target {
        pool: &record.name,
        url,
        secret: secret.expose(),
    };
    deliver::deliver(&target, event, body)
}
