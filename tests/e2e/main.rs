//! The end-to-end tests: real gateway and agent processes on loopback, a recording upstream,
//! real git, supervisord, headless Chromium and real Python client libraries. One test crate
//! with a module per subject, so `support` is compiled once and every helper in it is used by
//! some test (`cargo test --test e2e tunnel::` runs one subject).
//!
//! All tests of all modules run as threads of this one process: a test must not change what
//! the others share (environment variables, current directory, fixed ports); what a child
//! process needs goes to its own `Command`.

mod support;

mod abuse;
mod allowlist_answers;
mod allowlist_rules;
mod allowlist_tunnel;
mod api;
mod callers;
mod ceilings;
mod check;
mod cli;
mod hostile_agent;
mod layout;
mod metrics;
mod original;
mod panel_browser;
mod point_back;
mod proxy;
mod readme;
mod real_clients;
mod redaction;
mod reliability;
mod replicas;
mod rules;
mod streaming;
mod supervisord;
mod tls;
mod tunnel;
mod vcs_framing;
mod webhooks;
