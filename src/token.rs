//! The pool token: what an operator pastes into `SPACELIFT_VCS_AGENT_POOL_TOKEN`.
//!
//! Same format as the original system, so existing tokens keep working: standard base64 of
//! `{"host": "<gateway agent URL>", "key": "<secret>", "pool_ulid": "<pool id>"}`. The key is a
//! [`Secret`]: its `Debug` and `Display` print `***`, so no log line or error can leak it.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A value that must never reach a log. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The gateway's agent URL, `ws://…` or `wss://…`. A token whose host is the original
    /// system's dial target, `host:port` without a scheme, is read as `wss://host:port`
    /// (dialed as `ws://` with `SPACELIFT_VCS_AGENT_DIAL_INSECURE`, as the original does).
    pub host: String,
    pub key: Secret,
    pub pool_ulid: String,
}

/// Why a pool token was refused. No message shows the token or its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not valid base64 ({0})")]
    Base64(#[from] base64::DecodeError),
    /// The JSON error's class only: the full error may quote part of the input.
    #[error("not a JSON object after base64 decoding ({0})")]
    Json(&'static str),
    #[error("not a JSON object after base64 decoding")]
    NotAnObject,
    #[error("field \"{0}\" is missing")]
    Missing(&'static str),
    #[error("field \"{0}\" is not a non-empty string")]
    NotAString(&'static str),
    #[error("field \"host\" must start with ws:// or wss://, or be host:port, got \"{0}\"")]
    Scheme(String),
}

impl Token {
    /// Decodes a token; every error says what is wrong without showing the value.
    pub fn decode(text: &str) -> Result<Token, TokenError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
        let value: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| TokenError::Json(e.classify_name()))?;
        let field = |name: &'static str| -> Result<String, TokenError> {
            match value.get(name) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(TokenError::NotAString(name)),
                None => Err(TokenError::Missing(name)),
            }
        };
        if !value.is_object() {
            return Err(TokenError::NotAnObject);
        }
        let token = Token {
            host: field("host")?,
            key: Secret(field("key")?),
            pool_ulid: field("pool_ulid")?,
        };
        Ok(Token {
            host: dial_url(&token.host).ok_or(TokenError::Scheme(token.host.clone()))?,
            ..token
        })
    }

    pub fn encode(&self) -> String {
        let json = serde_json::json!({
            "host": self.host,
            "key": self.key.expose(),
            "pool_ulid": self.pool_ulid,
        });
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    }
}

/// A token's `host` as the URL to dial: `ws://…` and `wss://…` as they are, a bare
/// `host[:port]` (no scheme, path, credentials, query or fragment) as `wss://host[:port]`;
/// `None` for anything else.
fn dial_url(host: &str) -> Option<String> {
    if host.starts_with("ws://") || host.starts_with("wss://") {
        return Some(host.to_string());
    }
    let bare = !host.is_empty() && !host.contains(['/', '@', '?', '#', ' ']);
    bare.then(|| format!("wss://{host}"))
}

/// What the gateway stores instead of a key: its SHA-256, hex.
pub fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares a presented key with a stored hash in constant time.
pub(crate) fn key_matches(key: &str, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    key_hash(key)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// The operating system gave no random bytes, so no key can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no system randomness: {0}")]
pub struct NoRandomness(getrandom::Error);

/// A fresh key: 256 random bits, base64url without padding.
pub(crate) fn new_key() -> Result<Secret, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(NoRandomness)?;
    Ok(Secret(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    // The full serde error may quote part of the input, which holds the key: name the class only.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_token_format_round_trips() {
        let original = base64::engine::general_purpose::STANDARD.encode(
            r#"{"host":"wss://gw.example:443","key":"s3cr3t","pool_ulid":"01HZY8M9F0000000000000000"}"#,
        );
        let t = Token::decode(&original).unwrap();
        assert_eq!(t.host, "wss://gw.example:443");
        assert_eq!(t.key.expose(), "s3cr3t");
        assert_eq!(Token::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn errors_name_the_problem_and_never_the_key() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases = [
            ("%%%".to_string(), "base64"),
            (b64("not json s3cr3t"), "JSON"),
            (b64(r#"["s3cr3t"]"#), "JSON object"),
            (
                b64(r#"{"host":"ws://h","pool_ulid":"p"}"#),
                "\"key\" is missing",
            ),
            (
                b64(r#"{"host":"ws://h","key":"s3cr3t"}"#),
                "\"pool_ulid\" is missing",
            ),
            (
                b64(r#"{"host":"http://h","key":"s3cr3t","pool_ulid":"p"}"#),
                "ws://",
            ),
            (
                b64(r#"{"host":"dns:///gw:443","key":"s3cr3t","pool_ulid":"p"}"#),
                "or be host:port",
            ),
            (
                b64(r#"{"host":"gw:443/agent","key":"s3cr3t","pool_ulid":"p"}"#),
                "or be host:port",
            ),
            (
                b64(r#"{"host":"ws://h","key":7,"pool_ulid":"p"}"#),
                "\"key\" is not",
            ),
        ];
        for (token, expected) in cases {
            let err = Token::decode(&token).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should mention {expected}");
            assert!(!err.contains("s3cr3t"), "{err:?} leaks the key");
        }
    }

    #[test]
    fn the_original_systems_host_port_is_dialed_over_tls() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for (host, url) in [
            ("gw.example:443", "wss://gw.example:443"),
            ("10.0.0.7:1984", "wss://10.0.0.7:1984"),
            ("[::1]:1984", "wss://[::1]:1984"),
            ("gw.example", "wss://gw.example"),
            ("ws://gw:80", "ws://gw:80"),
        ] {
            let json = format!(r#"{{"host":"{host}","key":"k","pool_ulid":"p"}}"#);
            assert_eq!(Token::decode(&b64(&json)).unwrap().host, url, "{host}");
        }
    }

    #[test]
    fn secrets_print_masked() {
        let s = Secret::new("s3cr3t");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn keys_are_long_random_and_checked_by_hash() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        let stored = key_hash(a.expose());
        assert!(key_matches(a.expose(), &stored));
        assert!(!key_matches(b.expose(), &stored));
    }
}
