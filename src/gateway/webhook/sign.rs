//! The gateway's own signature on a delivered webhook, and the per-pool secret it signs with.
//!
//! `X-Vcs-Timestamp` is the Unix time in seconds of the delivery, `X-Vcs-Signature-256` is
//! `sha256=` and the lower-case hex HMAC-SHA256, keyed with the pool's webhook secret, of
//! the timestamp, a `.`, and the body exactly as sent. The SaaS recomputes it, compares in
//! constant time, and refuses timestamps more than a few minutes old (replays).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `sha256=<hex HMAC-SHA256(secret, timestamp "." body)>`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published vector.
        let expected = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        assert_eq!(signature("key", 0, b"").len(), expected.len());
        let split = b"The quick brown fox jumps over the lazy dog";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(split);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(format!("sha256={hex}"), expected);
        assert_ne!(signature("key", 1, b"a"), signature("key", 2, b"a"));
        assert_ne!(signature("key", 1, b"a"), signature("other", 1, b"a"));
    }
}
