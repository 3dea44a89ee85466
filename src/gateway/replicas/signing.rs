//! Signing of replica-to-replica requests: the peer port trusts a request only when it
//! carries an HMAC-SHA256, made with the secret every replica shares, over its method,
//! target, request id, sending replica, caller, a timestamp, **every other header** (a
//! SHA-256 of them in order) and **the start of its body** (a SHA-256 of the first piece,
//! all of a body up to 64 KiB, which both sides read the same way before anything reaches
//! an agent; [`BODY`]). A request signed more than [`WINDOW`] away from the receiver's clock
//! is refused, so a captured request cannot be replayed later; a request id is served once
//! ([`Seen`] on each replica, and once across all replicas through Redis, see
//! [`super::Peers::claim`]), so one captured within the window cannot be replayed at a third
//! replica either; swapping a header, a token or a small body breaks the signature. The
//! signature is compared in constant time.
//!
//! The signature of this version travels in [`SIGNATURE_2`]; the older one (method to time
//! only) still goes in [`SIGNATURE`] so replicas of the version before keep taking requests
//! from this one during a rolling upgrade. This version takes only [`SIGNATURE_2`].
//!
//! Beyond the signed start, the rest of a body is covered by the signed `Content-Length` and
//! the private network. Each replica also remembers served ids for twice the window, which
//! stops replays while Redis is away. Mutual TLS between replicas would also do, but operators
//! would have to run a certificate authority for it. During a rolling upgrade, requests
//! forwarded by an older replica are refused by the newer ones. Refusals on the peer port are
//! logged at most once every 5 s per kind.

use crate::http1::RequestHead;
use crate::token::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How far a request's timestamp may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Shortest peer secret accepted: it is the only thing between the peer port and the
/// agents of every pool.
pub const MIN_SECRET_LEN: usize = 32;

/// The request id (the same as the caller's `X-Vcs-Request-Id`).
pub const ID: &str = "X-Vcs-Peer-Request-Id";
/// Milliseconds since the Unix epoch when the request was signed.
pub const TIME: &str = "X-Vcs-Peer-Time";
/// The replica that forwarded the request.
pub const FROM: &str = "X-Vcs-Peer-From";
/// The caller the forwarding replica authenticated.
pub const CALLER: &str = "X-Vcs-Peer-Caller";
/// Hex HMAC-SHA256 over the request's method, target, id, sender, caller and time (what
/// the version before this one checks).
pub const SIGNATURE: &str = "X-Vcs-Peer-Signature";
/// Hex HMAC-SHA256 over all of [`SIGNATURE`]'s fields, the other headers and [`BODY`].
pub const SIGNATURE_2: &str = "X-Vcs-Peer-Signature-2";
/// Hex SHA-256 of the start of the body (its first piece, or all of a small one).
pub const BODY: &str = "X-Vcs-Peer-Body-Sha256";

/// The base URL the caller used ([`crate::gateway::exchange::job::Job::front`]), when the
/// forwarding replica knows it. Not signed, like the caller's own headers: a replica that
/// does not know it ignores it, and one that gets none answers with the VCS's own URLs.
pub const FRONT: &str = "X-Vcs-Peer-Front";

/// Every header of the peer protocol starts with this; none of them reaches an agent.
pub const PREFIX: &str = "x-vcs-peer-";

/// The secret the replicas share; never shown (`Debug` prints `***`).
#[derive(Debug, Clone)]
pub struct PeerSecret(Secret);

/// A peer secret refused at start; the message names the flag and its variable, never the
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    #[error("--peer-secret (or VCS_GATEWAY_PEER_SECRET) contains white space")]
    WhiteSpace,
    #[error("--peer-secret (or VCS_GATEWAY_PEER_SECRET) is too weak: at least {MIN_SECRET_LEN} characters, not a repeated few (try: openssl rand -hex 32)")]
    TooWeak,
}

impl PeerSecret {
    /// Checks strength.
    pub fn new(secret: Secret) -> Result<PeerSecret, WeakSecret> {
        let text = secret.expose();
        if text.trim() != text || text.chars().any(char::is_whitespace) {
            return Err(WeakSecret::WhiteSpace);
        }
        let distinct: std::collections::BTreeSet<char> = text.chars().collect();
        if text.chars().count() < MIN_SECRET_LEN || distinct.len() < 8 {
            return Err(WeakSecret::TooWeak);
        }
        Ok(PeerSecret(secret))
    }
}

/// What a signature covers.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub id: &'a str,
    pub from: &'a str,
    pub caller: &'a str,
    pub time_ms: u64,
    /// Hex SHA-256 of the other headers ([`headers_digest`]).
    pub headers: String,
    /// Hex SHA-256 of the body's start ([`body_digest`]).
    pub body: String,
    /// The front the caller used ([`FRONT`]; empty without one): answers point there.
    pub front: &'a str,
}

/// Hex SHA-256 of the request's headers other than the peer protocol's own, in order, each
/// as `lowercase-name:value` and a line break.
pub fn headers_digest<'h>(headers: impl Iterator<Item = (&'h str, &'h str)>) -> String {
    use sha2::Digest;
    let mut digest = Sha256::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if !name.starts_with(PREFIX) {
            digest.update(format!("{name}:{value}\n").as_bytes());
        }
    }
    hex(&digest.finalize())
}

/// Hex SHA-256 of the start of a body.
pub fn body_digest(start: &[u8]) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(start))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the start of the body the receiver read is the one that was signed.
pub fn body_matches(signed: &str, start: &[u8]) -> bool {
    bool::from(body_digest(start).as_bytes().ct_eq(signed.as_bytes()))
}

/// Why the peer port refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    #[error("the request is not signed (peer headers missing)")]
    Unsigned,
    #[error("the signature's time is more than 10 s away from this replica's clock")]
    Expired,
    #[error("the signature does not match (another peer secret, or a forged request)")]
    Forged,
}

impl SignatureRefusal {
    /// A short name, for counting refusals of each kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureRefusal::Unsigned => "unsigned",
            SignatureRefusal::Expired => "expired",
            SignatureRefusal::Forged => "forged",
        }
    }
}

/// The hex signature of `what`: of its head fields only ([`SIGNATURE`]), or of all of it
/// ([`SIGNATURE_2`]).
fn sign(secret: &PeerSecret, what: &Signed, all: bool) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.0.expose().as_bytes()) else {
        // HMAC takes keys of any length; this cannot happen.
        return String::new();
    };
    let Signed {
        method,
        target,
        id,
        from,
        caller,
        time_ms,
        headers,
        body,
        front,
    } = what;
    // Header values hold no line breaks, so the fields cannot run into one another.
    mac.update(format!("{method}\n{target}\n{id}\n{from}\n{caller}\n{time_ms}").as_bytes());
    if all {
        mac.update(format!("\n{headers}\n{body}\n{front}\nv2").as_bytes());
    }
    hex(&mac.finalize().into_bytes())
}

/// The signing headers for `what`, to add to the forwarded request.
pub fn headers(secret: &PeerSecret, what: &Signed) -> Vec<(String, String)> {
    vec![
        (ID.into(), what.id.into()),
        (TIME.into(), what.time_ms.to_string()),
        (FROM.into(), what.from.into()),
        (CALLER.into(), what.caller.into()),
        (BODY.into(), what.body.clone()),
        (SIGNATURE.into(), sign(secret, what, false)),
        (SIGNATURE_2.into(), sign(secret, what, true)),
    ]
}

/// Checks a request that arrived on the peer port; on success returns what was signed.
pub fn verify<'a>(
    secret: &PeerSecret,
    head: &'a RequestHead,
    now_ms: u64,
) -> Result<Signed<'a>, SignatureRefusal> {
    let one = |name: &str| {
        let mut values = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        match (values.next(), values.next()) {
            (Some((_, value)), None) => Ok(value.as_str()),
            _ => Err(SignatureRefusal::Unsigned),
        }
    };
    let signature = one(SIGNATURE_2)?;
    let time_ms: u64 = one(TIME)?.parse().map_err(|_| SignatureRefusal::Unsigned)?;
    let pairs = head.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let what = Signed {
        method: &head.method,
        target: &head.target,
        id: one(ID)?,
        from: one(FROM)?,
        caller: one(CALLER)?,
        time_ms,
        headers: headers_digest(pairs),
        body: one(BODY)?.to_string(),
        front: match one(FRONT) {
            Ok(front) => front,
            Err(_)
                if !head
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(FRONT)) =>
            {
                ""
            }
            Err(refusal) => return Err(refusal),
        },
    };
    let expected = sign(secret, &what, true);
    if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
        return Err(SignatureRefusal::Forged);
    }
    if now_ms.abs_diff(time_ms) > WINDOW.as_millis() as u64 {
        return Err(SignatureRefusal::Expired);
    }
    Ok(what)
}

/// Request ids a peer port has taken within the last two windows, so a signed request runs
/// once however often it is sent. Bounded: past [`Seen::MAX`] ids the oldest are forgotten.
#[derive(Debug, Default)]
pub struct Seen {
    ids: std::sync::Mutex<Ids>,
}

/// The ids, and when each was taken, oldest first.
#[derive(Debug, Default)]
struct Ids {
    set: HashSet<String>,
    order: VecDeque<(u64, String)>,
}

impl Seen {
    /// Ids remembered at most (a few tens of MiB at worst).
    pub const MAX: usize = 500_000;

    /// `true` the first time `id` is taken; `now_ms` prunes ids older than two windows (the
    /// signature's time may be a window away from this clock either way).
    pub fn first(&self, id: &str, now_ms: u64) -> bool {
        let Ok(mut guard) = self.ids.lock() else {
            return false;
        };
        let Ids { set, order } = &mut *guard;
        let keep_from = now_ms.saturating_sub(2 * WINDOW.as_millis() as u64);
        while let Some((at, _)) = order.front() {
            if *at >= keep_from && order.len() < Self::MAX {
                break;
            }
            if let Some((_, old)) = order.pop_front() {
                set.remove(&old);
            }
        }
        if !set.insert(id.to_string()) {
            return false;
        }
        order.push_back((now_ms, id.to_string()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> PeerSecret {
        PeerSecret::new(Secret::new(text)).expect("a strong secret")
    }

    fn head(method: &str, target: &str, headers: Vec<(String, String)>) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            version: 1,
            headers,
        }
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    fn signed(time_ms: u64) -> Signed<'static> {
        Signed {
            method: "GET",
            target: "/private/alpha/api/v4/projects",
            id: "01JREQUEST",
            from: "two",
            caller: "saas",
            time_ms,
            headers: headers_digest(std::iter::empty()),
            body: body_digest(b""),
            front: "",
        }
    }

    #[test]
    fn a_signed_request_passes_within_the_window() {
        let s = secret(STRONG);
        let what = signed(1_000_000);
        let h = head("GET", what.target, headers(&s, &what));
        assert!(verify(&s, &h, 1_000_000 + 9_000).is_ok());
        assert!(verify(&s, &h, 1_000_000 - 9_000).is_ok());
        assert_eq!(
            verify(&s, &h, 1_000_000 + 11_000).unwrap_err(),
            SignatureRefusal::Expired
        );
    }

    #[test]
    fn any_changed_field_or_secret_is_refused() {
        let s = secret(STRONG);
        let what = signed(5_000);
        let signed_headers = headers(&s, &what);
        let other_target = head(
            "GET",
            "/private/beta/api/v4/projects",
            signed_headers.clone(),
        );
        assert_eq!(
            verify(&s, &other_target, 5_000).unwrap_err(),
            SignatureRefusal::Forged
        );
        let other_method = head("DELETE", what.target, signed_headers.clone());
        assert_eq!(
            verify(&s, &other_method, 5_000).unwrap_err(),
            SignatureRefusal::Forged
        );
        let mut changed = signed_headers.clone();
        changed[3].1 = "admin".into();
        let other_caller = head("GET", what.target, changed);
        assert_eq!(
            verify(&s, &other_caller, 5_000).unwrap_err(),
            SignatureRefusal::Forged
        );
        let wrong = secret("fedcba9876543210fedcba9876543210");
        let h = head("GET", what.target, signed_headers);
        assert_eq!(
            verify(&wrong, &h, 5_000).unwrap_err(),
            SignatureRefusal::Forged
        );
    }

    #[test]
    fn unsigned_or_doubled_headers_are_refused() {
        let s = secret(STRONG);
        let h = head("GET", "/private/alpha/", vec![]);
        assert_eq!(verify(&s, &h, 0).unwrap_err(), SignatureRefusal::Unsigned);
        let what = signed(7);
        let mut doubled = headers(&s, &what);
        doubled.push((SIGNATURE_2.into(), "00".into()));
        let h = head("GET", what.target, doubled);
        assert_eq!(verify(&s, &h, 7).unwrap_err(), SignatureRefusal::Unsigned);
    }

    #[test]
    fn another_header_or_body_breaks_the_signature() {
        let s = secret(STRONG);
        let what = signed(5_000);
        let mut sent = headers(&s, &what);
        assert!(verify(&s, &head("GET", what.target, sent.clone()), 5_000).is_ok());
        sent.push(("PRIVATE-TOKEN".into(), "glpat-swapped".into()));
        let swapped = head("GET", what.target, sent);
        assert_eq!(
            verify(&s, &swapped, 5_000).unwrap_err(),
            SignatureRefusal::Forged
        );
        let mut other_body = headers(&s, &what);
        other_body[4].1 = body_digest(b"another body");
        let h = head("GET", what.target, other_body);
        assert_eq!(verify(&s, &h, 5_000).unwrap_err(), SignatureRefusal::Forged);
        let mut other_front = headers(&s, &what);
        other_front.push((
            FRONT.into(),
            "https://attacker.example/private/alpha".into(),
        ));
        let h = head("GET", what.target, other_front);
        assert_eq!(verify(&s, &h, 5_000).unwrap_err(), SignatureRefusal::Forged);
        assert!(body_matches(&what.body, b""));
        assert!(!body_matches(&what.body, b"x"));
    }

    #[test]
    fn only_the_older_signature_is_not_enough() {
        let s = secret(STRONG);
        let what = signed(5_000);
        let old: Vec<_> = headers(&s, &what)
            .into_iter()
            .filter(|(n, _)| n != SIGNATURE_2)
            .collect();
        let h = head("GET", what.target, old);
        assert_eq!(
            verify(&s, &h, 5_000).unwrap_err(),
            SignatureRefusal::Unsigned
        );
    }

    #[test]
    fn an_id_is_taken_once_within_two_windows() {
        let seen = Seen::default();
        assert!(seen.first("a", 1_000));
        assert!(!seen.first("a", 5_000));
        assert!(seen.first("b", 5_000));
        // Two windows later "a" is forgotten: its signature has long expired.
        assert!(seen.first("c", 1_000 + 2 * WINDOW.as_millis() as u64 + 1));
        assert!(seen.first("a", 1_000 + 2 * WINDOW.as_millis() as u64 + 1));
    }

    #[test]
    fn weak_secrets_are_refused_without_showing_them() {
        for weak in [
            "short",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "0123456789abcdef 0123456789abcdef",
        ] {
            let error = PeerSecret::new(Secret::new(weak)).unwrap_err();
            let error = error.to_string();
            assert!(error.starts_with("--peer-secret"), "{error}");
            assert!(!error.contains(weak), "{error}");
        }
        assert!(format!("{:?}", secret(STRONG)).contains("***"));
    }
}
