//! Who may use the panel and its API: the holder of the admin token, or anyone on loopback.
//!
//! The panel and `/api/…` create and delete pools and hand out pool tokens, so they must not
//! be open to whoever can reach the api port. The `private://` tunnel on the same port stays
//! open: the SaaS calls it, and the agents' allowlists are its guard. A gateway without an
//! admin token therefore only binds its api port to loopback ([`check_bind`]), where reaching
//! it already takes a shell on the host.
//!
//! A hostile web page open in the operator's browser must not drive the API either: requests
//! whose `Origin` is not the API's own host are refused ([`check_origin`]), and without an
//! admin token the API only answers requests addressed to a loopback name, which defeats DNS
//! rebinding (a page whose own name resolves to 127.0.0.1).
//!
//! The token is compared in constant time, after hashing both sides to the same length, so
//! neither its bytes nor its length leak through timing. It is held as a [`Secret`] and never
//! logged.

use crate::token::Secret;
use sha2::{Digest, Sha256};
use std::net::ToSocketAddrs;
use subtle::ConstantTimeEq;

/// Shortest admin token accepted: a guessable one would defeat the point.
pub const MIN_TOKEN_LEN: usize = 16;

/// Whether a request's `Authorization` header carries the admin token. Always true when no
/// token is configured.
pub fn authorized(configured: Option<&Secret>, authorization: Option<&str>) -> bool {
    let Some(expected) = configured else {
        return true;
    };
    let presented = authorization
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .unwrap_or("");
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    bool::from(a.ct_eq(&b)) && !presented.is_empty()
}

/// Checks a configured admin token for length; the message names the flag, not the value.
pub fn check_token(token: &Secret) -> Result<(), String> {
    if token.expose().trim() != token.expose() {
        // A client sends `Bearer <token>` without the white space: it could never match.
        return Err(
            "--admin-token (or VCS_GATEWAY_ADMIN_TOKEN) starts or ends with white space".into(),
        );
    }
    if token.expose().chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "--admin-token must be at least {MIN_TOKEN_LEN} characters (try: openssl rand -hex 32)"
        ));
    }
    Ok(())
}

/// Refuses an api address that is not loopback when no admin token protects it.
pub fn check_bind(api_listen: &str, has_token: bool) -> Result<(), String> {
    if has_token {
        return Ok(());
    }
    let addrs: Vec<_> = api_listen
        .to_socket_addrs()
        .map_err(|e| format!("--api-listen {api_listen}: {e}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "--api-listen {api_listen} is not loopback: set --admin-token (or VCS_GATEWAY_ADMIN_TOKEN) to protect the panel and the API"
        ));
    }
    Ok(())
}

/// Refuses requests a web page elsewhere could have made the browser send: an `Origin` that
/// is not this host, and, without an admin token, a `Host` that is not a loopback name.
pub fn check_origin(
    has_token: bool,
    host: Option<&str>,
    origin: Option<&str>,
) -> Result<(), String> {
    let host = host.unwrap_or("").trim();
    if !has_token && !loopback_host(host) {
        return Err(
            "without an admin token the API only answers requests to 127.0.0.1, [::1] or localhost"
                .into(),
        );
    }
    if let Some(origin) = origin.map(str::trim) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return Err("cross-origin API requests are refused".into());
        }
    }
    Ok(())
}

/// Whether a `Host` header names this machine's loopback: `127.0.0.1:1985`, `[::1]`,
/// `localhost:1985`.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map(|(ip, _)| ip).unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(n, _)| n).unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let token = Secret::new("0123456789abcdef-admin");
        let t = Some(&token);
        assert!(authorized(t, Some("Bearer 0123456789abcdef-admin")));
        assert!(authorized(t, Some("bearer  0123456789abcdef-admin ")));
        assert!(!authorized(t, Some("Bearer 0123456789abcdef-admiN")));
        assert!(!authorized(t, Some("Bearer 0123456789abcdef")));
        assert!(!authorized(t, Some("Basic 0123456789abcdef-admin")));
        assert!(!authorized(t, Some("0123456789abcdef-admin")));
        assert!(!authorized(t, None));
        assert!(authorized(None, None), "no token configured: open");
    }

    #[test]
    fn only_loopback_binds_without_a_token() {
        assert!(check_bind("127.0.0.1:0", false).is_ok());
        assert!(check_bind("[::1]:1985", false).is_ok());
        let refused = check_bind("0.0.0.0:1985", false).unwrap_err();
        assert!(refused.contains("--admin-token"), "{refused}");
        assert!(check_bind("0.0.0.0:1985", true).is_ok());
    }

    #[test]
    fn foreign_pages_cannot_drive_the_api() {
        for host in [
            "127.0.0.1:1985",
            "[::1]:1985",
            "localhost:1985",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(check_origin(false, Some(host), None).is_ok(), "{host}");
        }
        // DNS rebinding: evil.example resolves to 127.0.0.1, so its page is "same-origin".
        assert!(check_origin(
            false,
            Some("evil.example:1985"),
            Some("http://evil.example:1985")
        )
        .is_err());
        assert!(check_origin(false, None, None).is_err());
        assert!(check_origin(true, Some("gw.corp:1985"), None).is_ok());
        assert!(check_origin(true, Some("gw.corp:1985"), Some("https://gw.corp:1985")).is_ok());
        assert!(check_origin(true, Some("gw.corp:1985"), Some("https://evil.example")).is_err());
        assert!(check_origin(false, Some("127.0.0.1:1985"), Some("null")).is_err());
    }

    #[test]
    fn short_tokens_are_refused_without_showing_them() {
        let e = check_token(&Secret::new("hunter2")).unwrap_err();
        assert!(!e.contains("hunter2"));
        assert!(check_token(&Secret::new("a".repeat(32))).is_ok());
    }

    #[test]
    fn tokens_with_surrounding_white_space_are_refused_without_showing_them() {
        for token in [
            " 0123456789abcdef0123",
            "0123456789abcdef0123\n",
            "\t0123456789abcdef",
        ] {
            let e = check_token(&Secret::new(token)).unwrap_err();
            assert!(e.contains("white space"), "{e}");
            assert!(!e.contains("0123456789abcdef"), "{e}");
        }
    }
}
