//! The records the store keeps, and the rules their fields follow, in one place: pool and
//! caller names, the pool description limit, a caller's scope. Both backends
//! ([`super::Store`] over files, [`super::redis`]) and the operator's API use these.
//!
//! A leaf: it imports nothing of the gateway.

use serde::{Deserialize, Serialize};

/// Longest pool description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;

/// A pool or caller name that breaks the naming rules. `Display` is the one sentence the
/// operator sees.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("{what} name must be 1 to 63 characters, got {len}")]
    Length { what: &'static str, len: usize },
    #[error("{what} name \"{name}\" may only hold lowercase letters a-z, digits 0-9 and '-'")]
    Characters { what: &'static str, name: String },
    #[error("{what} name \"{name}\" must not start or end with '-'")]
    Dash { what: &'static str, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRecord {
    pub name: String,
    pub description: String,
    pub ulid: String,
    pub key_sha256: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Where the gateway delivers the pool's webhooks (`crate::gateway::webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// What it signs them with: kept, since the gateway signs with it (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<WebhookSecret>,
}

/// A caller: a named credential of the SaaS side, allowed to use some pools (or all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerRecord {
    pub name: String,
    pub id: String,
    pub secret_sha256: String,
    /// Every pool, present and future.
    #[serde(default)]
    pub all_pools: bool,
    /// The pools it may use when not `all_pools`.
    #[serde(default)]
    pub pools: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// SHA-256 (hex) of a client certificate (DER) that identifies this caller on an api
    /// port with `--api-client-ca`, instead of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_sha256: Option<String>,
}

/// Which pools a caller may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Pools(Vec<String>),
}

impl CallerRecord {
    pub fn scope(&self) -> Scope {
        if self.all_pools {
            Scope::All
        } else {
            Scope::Pools(self.pools.clone())
        }
    }
}

/// Pool names: 1–63 of `a-z 0-9 -`, not starting or ending with `-` (they appear in URLs).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    validate("pool", name)
}

/// Caller names follow the pool name rules (they appear in log lines and URLs).
pub fn validate_caller_name(name: &str) -> Result<(), NameError> {
    validate("caller", name)
}

fn validate(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 63 {
        return Err(NameError::Length {
            what,
            len: name.len(),
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::Characters {
            what,
            name: name.to_string(),
        });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Dash {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Prefix of pool webhook secrets, so secret scanners and people recognise one.
pub const WEBHOOK_SECRET_PREFIX: &str = "vgw_";

/// A pool's webhook secret. The gateway must sign with it, so the store keeps it (the
/// store's files are `0600`; Redis is the replicas' own); it is shown once when made, and
/// never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    /// A fresh secret: the prefix and 256 random bits.
    pub fn new() -> Result<WebhookSecret, crate::token::NoRandomness> {
        let key = crate::token::new_key()?;
        Ok(WebhookSecret(format!(
            "{WEBHOOK_SECRET_PREFIX}{}",
            key.expose()
        )))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A webhook URL the store does not take. `Display` is the one sentence the operator sees.
#[derive(Debug, thiserror::Error)]
#[error("webhook URL \"{0}\" is not an https:// URL with a host")]
pub struct WebhookUrlError(String);

/// A pool's webhook URL as the store takes it: `http` or `https`, a host, no fragment
/// (whether `http://` is delivered is the serving gateway's choice).
pub fn check_webhook_url(url: &str) -> Result<(), WebhookUrlError> {
    let refused = || WebhookUrlError(url.to_string());
    let uri: ureq::http::Uri = url.parse().map_err(|_| refused())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) || url.contains('#') {
        return Err(refused());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_secret_has_its_prefix_and_never_shows_in_debug() {
        let secret = WebhookSecret::new().unwrap();
        assert!(secret.expose().starts_with(WEBHOOK_SECRET_PREFIX));
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }
}
