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
    /// The gateway's log line: joinable with the agent's access line by `id`. In the JSON
    /// format the facts are fields (the agent's names, plus `pool`, `agent` and `caller`),
    /// every key on every line.
    pub fn log(&self, pool: &str) {
        let level = match self.error {
            Some(_) => log::Level::Warn,
            None => log::Level::Info,
        };
        if crate::observe::logging::is_json() {
            if log::log_enabled!(target: "front", level) {
                let fields = self.fields(pool);
                crate::observe::logging::with_fields(
                    fields,
                    || log::log!(target: "front", level, "request"),
                );
            }
            return;
        }
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

    fn fields(&self, pool: &str) -> crate::observe::logging::Fields {
        use crate::observe::escape;
        use serde_json::Value;
        let text = |v: Option<&str>| v.map_or(Value::Null, Value::from);
        vec![
            ("id", Value::from(self.id.as_str())),
            ("pool", Value::from(pool)),
            ("method", Value::from(self.method.as_str())),
            ("path", Value::from(self.path.as_str())),
            ("for", text(self.rule.as_deref())),
            (
                "project",
                text(self.project.as_deref().map(escape::value).as_deref()),
            ),
            ("status", Value::from(self.status)),
            ("bytes_in", Value::from(self.bytes_in)),
            ("bytes_out", Value::from(self.bytes_out)),
            ("elapsed_ms", Value::from(self.elapsed_ms)),
            ("agent", text(self.agent.as_deref())),
            ("caller", text(self.caller.as_deref())),
            ("error", text(self.error.map(|e| e.as_str()))),
            ("reason", text(self.reason.as_deref())),
        ]
    }
}
