//! What the operator sees and uses on the api port and the metrics port: the panel
//! ([`panel`]) and its JSON API ([`api`]) behind the admin token ([`admin`]), `/healthz` and `/metrics`
//! ([`health`], [`metrics`]).
//!
//! Imports point down, to the state ([`crate::gateway::state`]) and the store
//! ([`crate::gateway::store`]); the front routes here, nothing here knows the front.

pub mod admin;
pub(crate) mod api;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod panel;
