//! The agent's access line: one per request, the same facts as text or as JSON fields.
//!
//! The text form is what operators grep (`id=… method=… path=… for="…" …`); the JSON form
//! carries the same facts as typed fields (`id`, `method`, `path`, `for`, `project`,
//! `status`, `bytes_in`, `bytes_out`, `elapsed_ms`, `error`, `reason`), every key present on
//! every line (`null` when there is nothing to say), so a log shipper's schema never changes.
//! The path must already be redacted ([`super::redact_target`]).

use super::logging::{self, Fields};
use serde_json::Value;

/// The facts of one finished request.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub id: &'a str,
    pub method: &'a str,
    /// Redacted path and query.
    pub path: &'a str,
    /// What the request was for: the allowlist rule's description, `-` when none matched.
    pub rule: &'a str,
    pub project: Option<&'a str>,
    pub status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed_ms: f64,
    /// Error kind (`denied`, `upstream_timeout`, ...) when the request failed.
    pub error: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl Access<'_> {
    /// Writes the line: `info` when served, `warn` when it failed.
    pub fn emit(&self) {
        let level = if self.error.is_some() {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        if !log::log_enabled!(target: "access", level) {
            return;
        }
        if logging::is_json() {
            logging::with_fields(
                self.fields(),
                || log::log!(target: "access", level, "request"),
            );
        } else {
            log::log!(target: "access", level, "{}", self.text());
        }
    }

    /// The text form.
    pub fn text(&self) -> String {
        let mut line = format!(
            "id={} method={} path={} for=\"{}\" project={} status={} bytes_in={} bytes_out={} elapsed_ms={:.1}",
            self.id,
            self.method,
            self.path,
            self.rule,
            super::escape::value(self.project.unwrap_or("-")),
            self.status
                .map_or_else(|| "-".to_string(), |s| s.to_string()),
            self.bytes_in,
            self.bytes_out,
            self.elapsed_ms,
        );
        if let Some(error) = self.error {
            line.push_str(&format!(" error={error}"));
            if let Some(reason) = self.reason {
                line.push_str(&format!(" reason=\"{reason}\""));
            }
        }
        line
    }

    /// The JSON fields, in a fixed order.
    pub fn fields(&self) -> Fields {
        let text = |v: Option<&str>| v.map_or(Value::Null, Value::from);
        vec![
            ("id", Value::from(self.id)),
            ("method", Value::from(self.method)),
            ("path", Value::from(self.path)),
            ("for", Value::from(self.rule)),
            ("project", text(self.project)),
            ("status", self.status.map_or(Value::Null, Value::from)),
            ("bytes_in", Value::from(self.bytes_in)),
            ("bytes_out", Value::from(self.bytes_out)),
            (
                "elapsed_ms",
                Value::from((self.elapsed_ms * 10.0).round() / 10.0),
            ),
            ("error", text(self.error)),
            ("reason", text(self.reason)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> Access<'static> {
        Access {
            id: "01J",
            method: "GET",
            path: "/admin?private_token=***",
            rule: "-",
            project: None,
            status: Some(403),
            bytes_in: 0,
            bytes_out: 0,
            elapsed_ms: 1.234,
            error: Some("denied"),
            reason: Some("no rule allows GET /admin"),
        }
    }

    #[test]
    fn text_form_is_the_classic_line() {
        assert_eq!(
            denied().text(),
            "id=01J method=GET path=/admin?private_token=*** for=\"-\" project=- status=403 bytes_in=0 bytes_out=0 elapsed_ms=1.2 error=denied reason=\"no rule allows GET /admin\""
        );
    }

    #[test]
    fn json_fields_are_all_present_and_typed() {
        let fields = denied().fields();
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "id",
                "method",
                "path",
                "for",
                "project",
                "status",
                "bytes_in",
                "bytes_out",
                "elapsed_ms",
                "error",
                "reason"
            ]
        );
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("status"), Some(Value::from(403)));
        assert_eq!(get("project"), Some(Value::Null));
        assert_eq!(get("elapsed_ms"), Some(Value::from(1.2)));
    }
}
