//! vcs-agent: VCS Agent Pools as a synchronous thread-pool proxy.
//!
//! A SaaS reaches a VCS server inside a private network through two programs: the **agent**
//! runs inside the network and dials OUT to the **gateway**; the SaaS sends
//! `private://<pool>/<path>` requests to the gateway, which hands each to an idle agent
//! stream; the agent checks it against its vendor's allowlist, forwards it to the VCS and
//! streams the answer back. No async runtime: OS threads and blocking sockets.
//!
//! The map:
//! - [`agent`]: slot threads, one WebSocket each ([`agent::slot`]), the HTTP leg ([`agent::forward`]).
//! - [`gateway`]: pool store, dispatch hub, agent port, `private://` front.
//! - [`protocol`]: the frames both sides speak and their order.
//! - [`allowlist`]: canonical paths and per-vendor rules, failing closed.
//! - [`config`] and [`token`]: the agent's environment and the pool token.
//! - [`net`]: sockets and dialing; [`http1`]: the small HTTP/1.1 server side.
//! - [`observe`]: logging and redaction.

pub mod agent;
pub mod allowlist;
pub mod config;
pub mod gateway;
pub mod http1;
pub mod net;
pub mod observe;
pub mod protocol;
pub mod token;
