//! The gateway's record of one request through the front: what the log line says (joinable
//! with the agent's access line by `id`), what the panel lists and what `/metrics` counts.

use crate::protocol::ErrorKind;
use serde::Serialize;

/// One request through the front, as the gateway log and the panel show it. Secrets never
/// get here: the path's token-like query values are already masked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestRecord {
    pub id: String,
    /// Unix time in milliseconds when the request arrived.
    pub time_ms: u64,
    pub method: String,
    pub path: String,
    /// What the request was for: the agent's allowlist rule description.
    pub rule: Option<String>,
    pub project: Option<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed_ms: f64,
    /// Error kind and its sentence, when the request failed (a denial's reason is here).
    pub error: Option<ErrorKind>,
    pub reason: Option<String>,
    pub agent: Option<String>,
    /// The caller that sent it (`None`: not authenticated).
    pub caller: Option<String>,
}

impl RequestRecord {
    /// The gateway's log line: joinable with the agent's access line by `id`.
    pub fn log(&self, pool: &str) {
        let line = format!(
            "id={} pool={pool} method={} path={} for=\"{}\" project={} status={} bytes_in={} bytes_out={} elapsed_ms={:.1} agent={} caller={}",
            self.id,
            self.method,
            self.path,
            self.rule.as_deref().unwrap_or("-"),
            crate::observe::escape::value(self.project.as_deref().unwrap_or("-")),
            self.status,
            self.bytes_in,
            self.bytes_out,
            self.elapsed_ms,
            self.agent.as_deref().unwrap_or("-"),
            self.caller.as_deref().unwrap_or("-"),
        );
        match (&self.error, &self.reason) {
            (Some(kind), Some(reason)) => {
                log::warn!(target: "front", "{line} error={kind} reason=\"{reason}\"")
            }
            (Some(kind), None) => log::warn!(target: "front", "{line} error={kind}"),
            _ => log::info!(target: "front", "{line}"),
        }
    }
}
