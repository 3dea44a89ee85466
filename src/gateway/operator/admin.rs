//! Who may use the panel, its API, `/metrics` and `/healthz`'s figures: the holder of the
//! admin token, and nobody else, on any address.
//!
//! The panel and `/api/…` create and delete pools and callers and hand out their secrets, so
//! they must not be open to whoever can reach the api port. Where a request comes from proves
//! nothing: a reverse proxy on the same host forwards outside requests from loopback, often
//! with `Host: 127.0.0.1`. So there is no open mode: `serve` without `--admin-token` makes
//! one on first start, keeps it in `DIR/admin-token` (`0600`) and logs where it is, never
//! what it is ([`load_or_create`]).
//!
//! A hostile web page open in the operator's browser must not drive the API either: requests
//! whose `Origin` is not the API's own host are refused ([`check_origin`]).
//!
//! The token is compared in constant time, after hashing both sides to the same length, so
//! neither its bytes nor its length leak through timing. It is held as a [`Secret`] and never
//! logged.

use crate::token::Secret;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Shortest admin token accepted: a guessable one would defeat the point.
pub const MIN_TOKEN_LEN: usize = 16;

/// Whether a request's `Authorization` header carries the admin token. Never true when no
/// token is configured: nothing is open by default.
pub fn authorized(configured: Option<&Secret>, authorization: Option<&str>) -> bool {
    let Some(expected) = configured else {
        return false;
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

/// Why an admin token cannot be used. Messages name the flag or the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--admin-token (or VCS_GATEWAY_ADMIN_TOKEN) starts or ends with white space")]
    WhiteSpace,
    #[error(
        "--admin-token must be at least {MIN_TOKEN_LEN} characters (try: openssl rand -hex 32)"
    )]
    TooShort,
    #[error("{} holds no usable admin token (16+ characters): delete it to have a new one made", .0.display())]
    Unusable(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    NoRandomness(#[from] crate::token::NoRandomness),
}

/// A request a web page elsewhere could have made the browser send.
#[derive(Debug, thiserror::Error)]
#[error("cross-origin API requests are refused")]
pub struct CrossOrigin;

/// Checks a configured admin token for length; the message names the flag, not the value.
pub fn check_token(token: &Secret) -> Result<(), TokenError> {
    if token.expose().trim() != token.expose() {
        // A client sends `Bearer <token>` without the white space: it could never match.
        return Err(TokenError::WhiteSpace);
    }
    if token.expose().chars().count() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort);
    }
    Ok(())
}

/// Where a generated admin token is kept.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// The admin token of `DIR/admin-token`, made (256 random bits, file `0600`) when there is
/// none yet; `true` when it was made just now.
pub fn load_or_create(data_dir: &Path) -> Result<(Secret, bool), TokenError> {
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = Secret::new(text.trim());
            check_token(&token).map_err(|_| TokenError::Unusable(path))?;
            return Ok((token, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(TokenError::Read { path, source }),
    }
    let token = crate::token::new_key()?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(format!("{}\n", token.expose()).as_bytes())?;
            file.sync_all()
        });
    match written {
        Ok(()) => Ok((token, true)),
        // Another gateway on the same directory made it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(data_dir),
        Err(source) => Err(TokenError::Write { path, source }),
    }
}

/// Refuses requests a web page elsewhere could have made the browser send: an `Origin` that
/// is not this host.
pub fn check_origin(host: Option<&str>, origin: Option<&str>) -> Result<(), CrossOrigin> {
    let host = host.unwrap_or("").trim();
    if let Some(origin) = origin.map(str::trim) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return Err(CrossOrigin);
        }
    }
    Ok(())
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
        assert!(!authorized(None, None), "no token configured: closed");
        assert!(
            !authorized(None, Some("Bearer ")),
            "no token configured: closed"
        );
    }

    #[test]
    fn a_token_is_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vcs-admin-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let (made, fresh) = load_or_create(&dir).unwrap();
        assert!(fresh && made.expose().len() >= 43);
        let mode = std::fs::metadata(token_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, fresh) = load_or_create(&dir).unwrap();
        assert!(!fresh && again == made);
        std::fs::write(token_path(&dir), "short").unwrap();
        let e = load_or_create(&dir).unwrap_err().to_string();
        assert!(e.contains("admin-token") && !e.contains("short"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn foreign_pages_cannot_drive_the_api() {
        assert!(check_origin(Some("gw.corp:1985"), None).is_ok());
        assert!(check_origin(Some("gw.corp:1985"), Some("https://gw.corp:1985")).is_ok());
        assert!(check_origin(Some("gw.corp:1985"), Some("https://evil.example")).is_err());
        assert!(check_origin(Some("127.0.0.1:1985"), Some("null")).is_err());
        assert!(check_origin(None, Some("http://x")).is_err());
    }

    #[test]
    fn short_tokens_are_refused_without_showing_them() {
        let e = check_token(&Secret::new("hunter2"))
            .unwrap_err()
            .to_string();
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
            let e = check_token(&Secret::new(token)).unwrap_err().to_string();
            assert!(e.contains("white space"), "{e}");
            assert!(!e.contains("0123456789abcdef"), "{e}");
        }
    }
}
