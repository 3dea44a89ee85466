//! What operators read and scrape: logs, access lines, health and metrics.
//!
//! Logs go to stdout (supervisord and container runtimes collect it) as text or JSON lines
//! ([`logging`]); each request leaves one access line ([`access`]). Counters for Prometheus
//! live in [`metrics`] (agent, with the stream [`gauge`]s) and in the gateway's own module,
//! written in the text format by [`prometheus`]; the agent serves them with `/healthz` on an
//! optional local port ([`endpoint`]). Nothing secret is ever formatted into a line: targets, header values and
//! configured URLs are only printed through [`redact`], the one place that decides what is a
//! secret.

pub(crate) mod access;
pub mod endpoint;
pub mod escape;
pub(crate) mod gauge;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod prometheus;
pub(crate) mod redact;
pub(crate) mod tally;

pub use logging::LogFormat;

// Short names for the two redactions every log line uses.
pub(crate) use redact::{headers as redact_headers, target as redact_target};
