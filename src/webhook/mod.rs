//! Webhooks through the pool: the VCS posts its events to the agent, which checks them and
//! relays them over its authenticated way out to the gateway, which delivers them to the
//! pool's webhook URL and reports back; the VCS hears `2xx` only once the SaaS answered `2xx`.
//!
//! - [`listen`]: the agent's listener (off unless `SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN`), a
//!   thread that accepts and a fixed set of worker threads; a connection beyond them is
//!   answered `503` at once. Each body is read once, into a buffer bounded by the size cap,
//!   so memory is bounded by `SPACELIFT_VCS_AGENT_WEBHOOK_CONCURRENCY × …_WEBHOOK_MAX_BODY`.
//! - [`events`]: per vendor, the events relayed and the project a payload names.
//! - [`relay`]: the agent's side of a relay; [`frames`]: what travels on it.
//! - the gateway's side is [`crate::gateway::webhook`].
//!
//! Both sides write one access line per relayed event ([`AccessLine`], target `webhook`);
//! events refused by the agent are summed up in one line per interval
//! ([`crate::observe::tally`]).

pub mod events;
pub mod frames;
pub mod listen;
pub mod relay;
pub mod settings;

use crate::observe::escape;
use serde_json::Value;

/// The longest a VCS waits for a webhook's answer (GitHub, GitLab: 10 s); the agent answers
/// before it.
pub const VCS_PATIENCE: std::time::Duration = std::time::Duration::from_millis(9_500);

/// One relayed event, as either side logs it.
pub struct AccessLine<'a> {
    /// `agent` or `gateway`.
    pub side: &'static str,
    pub pool: &'a str,
    pub event: &'a str,
    pub rule: &'a str,
    pub project: &'a str,
    /// What the VCS was (or will be) answered.
    pub status: u16,
    pub saas_status: Option<u16>,
    pub bytes: u64,
    pub elapsed_ms: f64,
    pub reason: Option<&'a str>,
}

impl AccessLine<'_> {
    pub fn log(&self) {
        let level = if (200..300).contains(&self.status) {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        if !log::log_enabled!(target: "webhook", level) {
            return;
        }
        if crate::observe::logging::is_json() {
            let fields = self.fields();
            crate::observe::logging::with_fields(
                fields,
                || log::log!(target: "webhook", level, "webhook"),
            );
            return;
        }
        let mut line = format!(
            "webhook side={} pool={} event=\"{}\" for=\"{}\" project={} status={} saas_status={} bytes={} elapsed_ms={:.1}",
            self.side,
            escape::value(self.pool),
            escape::bounded(self.event, 64),
            self.rule,
            escape::value(if self.project.is_empty() { "-" } else { self.project }),
            self.status,
            self.saas_status.map_or("-".to_string(), |s| s.to_string()),
            self.bytes,
            self.elapsed_ms,
        );
        if let Some(reason) = self.reason {
            line.push_str(&format!(" reason=\"{}\"", escape::bounded(reason, 300)));
        }
        log::log!(target: "webhook", level, "{line}");
    }

    fn fields(&self) -> crate::observe::logging::Fields {
        vec![
            ("side", Value::from(self.side)),
            ("pool", Value::from(escape::value(self.pool).as_ref())),
            (
                "event",
                Value::from(escape::bounded(self.event, 64).as_ref()),
            ),
            ("for", Value::from(self.rule)),
            ("project", Value::from(escape::value(self.project).as_ref())),
            ("status", Value::from(self.status)),
            (
                "saas_status",
                self.saas_status.map_or(Value::Null, Value::from),
            ),
            ("bytes", Value::from(self.bytes)),
            ("elapsed_ms", Value::from(self.elapsed_ms)),
            (
                "reason",
                self.reason.map_or(Value::Null, |r| {
                    Value::from(escape::bounded(r, 300).as_ref())
                }),
            ),
        ]
    }
}
