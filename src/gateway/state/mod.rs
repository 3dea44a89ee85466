//! What the gateway holds while it runs: the registry of live pools ([`hub`]), each pool's
//! idle streams and figures ([`pool`], [`idle`], [`stats`]), one agent stream ([`stream`]),
//! the record every finished request leaves ([`record`]), who may use the front
//! ([`callers`]), refused agent logins ([`logins`]) and the timings and limits
//! ([`settings`]).
//!
//! Imports point down, to the store ([`crate::gateway::store`]) and the crate's shared
//! modules: nothing here knows a port, an exchange or the replicas. Within it, `hub` →
//! `pool` → `stream`/`idle`/`stats` → `record`.

pub(crate) mod callers;
pub(crate) mod hub;
pub(crate) mod idle;
pub(crate) mod logins;
pub(crate) mod pool;
pub(crate) mod record;
pub mod settings;
pub(crate) mod stats;
pub(crate) mod stream;
pub(crate) mod webhooks;
