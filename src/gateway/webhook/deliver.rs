//! The POST to the pool's webhook URL: the VCS's body and kept headers unchanged, plus the
//! gateway's headers naming the pool and event and its own signature ([`super::sign`]).
//!
//! One attempt, within [`DELIVERY_TIMEOUT`], so the agent can answer the VCS inside its
//! 10 s: the VCS records a failed delivery and redelivers; the gateway does not retry.

use super::sign;
use crate::webhook::frames::{Event, Outcome};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a delivery may take in total (connect, TLS, sending, the SaaS's answer).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(8);

fn client() -> &'static ureq::Agent {
    static CLIENT: OnceLock<ureq::Agent> = OnceLock::new();
    CLIENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(DELIVERY_TIMEOUT))
            .user_agent(concat!("vcs-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}

/// Where and as whom a delivery goes.
pub struct Target<'a> {
    pub pool: &'a str,
    pub url: &'a str,
    pub secret: &'a str,
}

/// Delivers one event; the outcome is what the agent answers the VCS.
pub fn deliver(target: &Target, event: &Event, body: &[u8]) -> Outcome {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_secs_f64() * 1000.0;
    let timestamp = crate::clock::now_seconds();
    let mut request = client().post(target.url);
    for (name, value) in &event.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let signature = sign::signature(target.secret, timestamp, body);
    request = request
        .header("X-Vcs-Pool", target.pool)
        .header("X-Vcs-Event", event.event.as_str())
        .header("X-Vcs-Timestamp", timestamp.to_string())
        .header("X-Vcs-Signature-256", signature);
    match request.send(body) {
        Ok(response) => {
            let status = response.status().as_u16();
            let mut outcome = if (200..300).contains(&status) {
                Outcome {
                    status: 200,
                    reason: None,
                    saas_status: None,
                    elapsed_ms: 0.0,
                }
            } else {
                Outcome::failed(502, format!("the SaaS answered {status}"), 0.0)
            };
            outcome.saas_status = Some(status);
            outcome.elapsed_ms = elapsed();
            outcome
        }
        Err(ureq::Error::Timeout(_)) => Outcome::failed(
            504,
            format!(
                "the SaaS did not answer within {} s",
                DELIVERY_TIMEOUT.as_secs()
            ),
            elapsed(),
        ),
        Err(e) => Outcome::failed(502, failure(&e), elapsed()),
    }
}

/// A failure in words that never repeat the URL (it may hold a token).
fn failure(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Io(e) => format!("cannot reach the SaaS's webhook URL: {e}"),
        ureq::Error::HostNotFound => "the SaaS's webhook host was not found".into(),
        ureq::Error::ConnectionFailed => "cannot connect to the SaaS's webhook URL".into(),
        ureq::Error::Tls(e) => format!("TLS with the SaaS's webhook URL failed: {e}"),
        ureq::Error::Rustls(e) => format!("TLS with the SaaS's webhook URL failed: {e}"),
        _ => "the delivery to the SaaS's webhook URL failed".into(),
    }
}
