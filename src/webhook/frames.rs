//! The webhook relay's frames, between an agent and the gateway's agent port.
//!
//! A relay is a short-lived WebSocket of its own, dialled like an agent stream (same path,
//! pool id and key, TLS and proxy) with [`HEADER_RELAY`]` = `[`RELAY_ASKED`] on the upgrade.
//! A gateway that relays answers the upgrade with [`HEADER_RELAY`]` = `[`RELAY_CONFIRMED`];
//! one that does not (an older gateway) would take the connection for an idle stream, so the
//! agent closes it at once and answers the VCS `502`. Agents that never ask never see any
//! of this: the stream frames ([`crate::protocol`]) are unchanged.
//!
//! On the relay, in order: the agent sends one text message, the [`Event`] as JSON; then the
//! body in binary messages of at most [`MAX_CHUNK`] bytes until [`Event::length`] bytes came;
//! the gateway answers one text message, the [`Outcome`] as JSON, and closes.

use serde::{Deserialize, Serialize};

/// The upgrade header that asks for, and confirms, a webhook relay.
pub const HEADER_RELAY: &str = "X-Vcs-Webhook-Relay";
/// The agent's value: "relay this event".
pub const RELAY_ASKED: &str = "1";
/// The gateway's value: "this connection is a relay, not a stream".
pub const RELAY_CONFIRMED: &str = "accepted";
/// Largest body piece in one binary message.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Largest body a gateway takes from a relay, whatever the agent's own cap.
pub const GATEWAY_MAX_BODY: u64 = 64 * 1024 * 1024;
/// Largest [`Event`] message (its headers are bounded by the agent's HTTP head limit).
pub const MAX_EVENT_MESSAGE: usize = 96 * 1024;

/// What the agent checked and relays, before the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The vendor's name for it (`vendor` of the agent).
    pub vendor: String,
    /// The event as the vendor names it (`Push Hook`, `push`, `repo:refs_changed`, `git.push`).
    pub event: String,
    /// The description of the agent's event rule.
    pub rule: String,
    /// The project the payload names (empty for a ping that names none).
    pub project: String,
    /// The VCS's headers worth keeping (signatures, event, delivery id, content type).
    pub headers: Vec<(String, String)>,
    /// Body bytes that follow.
    pub length: u64,
}

/// How the delivery went, as the gateway saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// What the agent answers the VCS: `202` once the SaaS answered `2xx`, else `502`/`504`.
    pub status: u16,
    /// Why it failed, one sentence (no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The SaaS's own status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saas_status: Option<u16>,
    pub elapsed_ms: f64,
}

impl Outcome {
    pub fn failed(status: u16, reason: impl Into<String>, elapsed_ms: f64) -> Outcome {
        Outcome {
            status,
            reason: Some(reason.into()),
            saas_status: None,
            elapsed_ms,
        }
    }
}

/// The VCS headers relayed to the SaaS unchanged (compared without regard to case).
pub const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-id",
    "x-github-hook-installation-target-type",
    "x-github-enterprise-host",
    "x-github-enterprise-version",
    "x-gitlab-event",
    "x-gitlab-token",
    "x-gitlab-instance",
    "x-gitlab-webhook-uuid",
    "x-gitlab-event-uuid",
    "idempotency-key",
    "x-event-key",
    "x-request-id",
    "x-attempt-number",
];

/// Whether `name` is a header the relay keeps.
pub fn kept(name: &str) -> bool {
    KEPT_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_outcomes_omit_what_they_lack() {
        let event = Event {
            vendor: "gitlab".into(),
            event: "Push Hook".into(),
            rule: "push to a branch".into(),
            project: "group/repo".into(),
            headers: vec![("X-Gitlab-Token".into(), "t".into())],
            length: 12,
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        let failed = serde_json::to_string(&Outcome::failed(504, "slow", 1.0)).unwrap();
        assert!(!failed.contains("saas_status"), "{failed}");
        assert!(kept("X-Hub-Signature-256") && kept("content-type"));
        assert!(!kept("Authorization") && !kept("Cookie") && !kept("Host"));
    }
}
