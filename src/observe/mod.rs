//! What operators read and scrape: logs, access lines, health and metrics.
//!
//! Logs go to stdout (supervisord and container runtimes collect it) as text or JSON lines
//! ([`logging`]); each request leaves one access line ([`access`]). Counters for Prometheus
//! live in [`metrics`] (agent, with the stream [`gauge`]s) and in the gateway's own module,
//! written in the text format by [`prometheus`]; the agent serves them with `/healthz` on an
//! optional local port ([`endpoint`]). Nothing secret is ever formatted into a line: targets, header values and
//! configured URLs are only printed through [`redact`], the one place that decides what is a
//! secret.

pub mod access;
pub mod endpoint;
pub mod escape;
pub mod gauge;
pub mod logging;
pub mod metrics;
pub mod prometheus;
pub mod redact;
pub mod tally;

pub use logging::LogFormat;

/// Starts text logging on stdout with `default_filter` unless `RUST_LOG` says otherwise.
pub fn init_logging(default_filter: &str) {
    logging::init(LogFormat::Text, None, default_filter);
}

// Short names for the two redactions every log line uses.
pub use redact::{headers as redact_headers, target as redact_target};
