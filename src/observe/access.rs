//! The agent's access line: one per request, the same facts as text or as JSON fields.
//!
//! The text form is what operators grep (`id=… method=… path=… for="…" …`); the JSON form
//! carries the same facts as typed fields (`id`, `method`, `raw_path`, `path`, `query`,
//! `for`, `project`, `status`, `bytes_in`, `bytes_out`, `elapsed_ms`, `error`, `reason`), and
//! the original agent's names beside them so log pipelines built on its lines keep working:
//! `pool_id`, `raw_path` (the path as sent, percent-encoded) and `path` (decoded), both
//! without the query, `status_code`, `elapsed` (as Go prints a duration: `12.5ms`, `1m3.2s`),
//! `name` (the rule, as `for`) and `blocked_by` (the blocklist rule that denied it). Every key
//! is present on every line (`null` when there is nothing to say), so a log shipper's schema
//! never changes. The target must already be redacted ([`super::redact_target`]).

use super::logging::{self, Fields};
use serde_json::Value;
use std::time::Duration;

/// The facts of one finished request.
#[derive(Debug, Clone)]
pub(crate) struct Access<'a> {
    pub(crate) id: &'a str,
    /// The pool this agent serves.
    pub(crate) pool_id: &'a str,
    pub(crate) method: &'a str,
    /// Redacted path and query.
    pub(crate) path: &'a str,
    /// What the request was for: the allowlist rule's description, `-` when none matched.
    pub(crate) rule: &'a str,
    pub(crate) project: Option<&'a str>,
    pub(crate) status: Option<u16>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) elapsed_ms: f64,
    /// Error kind (`denied`, `upstream_timeout`, ...) when the request failed.
    pub(crate) error: Option<&'a str>,
    pub(crate) reason: Option<&'a str>,
    /// The blocklist rule that denied the request.
    pub(crate) blocked_by: Option<&'a str>,
    /// How many VCS URLs of the answer were pointed back through the gateway.
    pub(crate) rewritten: Option<u64>,
    /// Why the body of a JSON answer was left as the VCS wrote it (`compressed`).
    pub(crate) not_rewritten: Option<&'a str>,
}

impl Access<'_> {
    /// Writes the line: `info` when served, `warn` when it failed.
    pub(crate) fn emit(&self) {
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
    pub(crate) fn text(&self) -> String {
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
        if let Some(count) = self.rewritten {
            line.push_str(&format!(" rewritten={count}"));
        }
        if let Some(why) = self.not_rewritten {
            line.push_str(&format!(" not_rewritten={why}"));
        }
        if let Some(error) = self.error {
            line.push_str(&format!(" error={error}"));
            if let Some(reason) = self.reason {
                line.push_str(&format!(" reason=\"{reason}\""));
            }
        }
        line
    }

    /// The JSON fields, in a fixed order.
    pub(crate) fn fields(&self) -> Fields {
        let text = |v: Option<&str>| v.map_or(Value::Null, Value::from);
        let (raw_path, query) = match self.path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.path, None),
        };
        let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
        let status = self.status.map_or(Value::Null, Value::from);
        let elapsed = Duration::from_nanos((self.elapsed_ms * 1e6) as u64);
        vec![
            ("id", Value::from(self.id)),
            ("pool_id", Value::from(self.pool_id)),
            ("method", Value::from(self.method)),
            ("raw_path", Value::from(raw_path)),
            ("path", Value::from(decoded.as_ref())),
            ("query", text(query)),
            ("for", Value::from(self.rule)),
            ("name", Value::from(self.rule)),
            ("project", text(self.project)),
            ("status", status.clone()),
            ("status_code", status),
            ("bytes_in", Value::from(self.bytes_in)),
            ("bytes_out", Value::from(self.bytes_out)),
            (
                "elapsed_ms",
                Value::from((self.elapsed_ms * 10.0).round() / 10.0),
            ),
            ("elapsed", Value::from(go_duration(elapsed))),
            ("error", text(self.error)),
            ("reason", text(self.reason)),
            ("blocked_by", text(self.blocked_by)),
            ("rewritten", self.rewritten.map_or(Value::Null, Value::from)),
            ("not_rewritten", text(self.not_rewritten)),
        ]
    }
}

/// A duration as Go's `time.Duration` prints it: `0s`, `850ns`, `1.5µs`, `12.345ms`,
/// `3.2s`, `1m3.2s`, `2h0m5s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let with_fraction = |value: u128, unit: u128, suffix: &str| {
        let digits = unit.ilog10() as usize;
        let fraction = format!("{:0digits$}", value % unit);
        let fraction = fraction.trim_end_matches('0');
        let dot = if fraction.is_empty() { "" } else { "." };
        format!("{}{dot}{fraction}{suffix}", value / unit)
    };
    match ns {
        0 => "0s".to_string(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => with_fraction(ns, 1_000, "µs"),
        1_000_000..=999_999_999 => with_fraction(ns, 1_000_000, "ms"),
        _ => {
            let minutes = ns / 60_000_000_000;
            let seconds = with_fraction(ns % 60_000_000_000, 1_000_000_000, "s");
            match (minutes / 60, minutes % 60) {
                (0, 0) => seconds,
                (0, m) => format!("{m}m{seconds}"),
                (h, m) => format!("{h}h{m}m{seconds}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> Access<'static> {
        Access {
            id: "01J",
            pool_id: "01POOL",
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
            blocked_by: None,
            rewritten: None,
            not_rewritten: None,
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
                "pool_id",
                "method",
                "raw_path",
                "path",
                "query",
                "for",
                "name",
                "project",
                "status",
                "status_code",
                "bytes_in",
                "bytes_out",
                "elapsed_ms",
                "elapsed",
                "error",
                "reason",
                "blocked_by",
                "rewritten",
                "not_rewritten"
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
        assert_eq!(get("elapsed"), Some(Value::from("1.234ms")));
        assert_eq!(get("status_code"), Some(Value::from(403)));
        assert_eq!(get("raw_path"), Some(Value::from("/admin")));
        assert_eq!(get("query"), Some(Value::from("private_token=***")));
        assert_eq!(get("name"), Some(Value::from("-")));
    }

    #[test]
    fn the_line_says_when_an_answer_was_rewritten() {
        let served = Access {
            status: Some(200),
            error: None,
            reason: None,
            rewritten: Some(3),
            ..denied()
        };
        assert!(served.text().ends_with(" rewritten=3"), "{}", served.text());
        let fields = served.fields();
        assert!(fields.contains(&("rewritten", Value::from(3))));
        let compressed = Access {
            not_rewritten: Some("compressed"),
            ..served
        };
        assert!(compressed
            .text()
            .ends_with(" rewritten=3 not_rewritten=compressed"));
    }

    #[test]
    fn the_path_is_decoded_beside_the_raw_one() {
        let access = Access {
            path: "/api/v4/projects/g%2Fr/repository/files/a%20b",
            ..denied()
        };
        let fields = access.fields();
        let get = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        assert_eq!(
            get("raw_path"),
            Some(&Value::from(
                "/api/v4/projects/g%2Fr/repository/files/a%20b"
            ))
        );
        assert_eq!(
            get("path"),
            Some(&Value::from("/api/v4/projects/g/r/repository/files/a b"))
        );
        assert_eq!(get("query"), Some(&Value::Null));
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_nanos(12_345_678), "12.345678ms"),
            (Duration::from_millis(3_200), "3.2s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(63_200), "1m3.2s"),
            (Duration::from_secs(7_205), "2h0m5s"),
        ];
        for (d, expected) in cases {
            assert_eq!(go_duration(d), expected, "{d:?}");
        }
    }
}
