//! `vcs-agent check`: the preflight an operator runs after editing the environment file,
//! before waiting for a SaaS request to fail with a vague "no agent" or "bad gateway".
//!
//! It walks the chain a request takes, in order, and says where it breaks: the token decodes
//! to a gateway address; the vendor's allowlist and the project regex compile; the gateway
//! accepts the token (a real WebSocket login); the VCS base endpoint answers HTTP. Each check
//! prints one line, `ok   <check>: <detail>` or `FAIL <check>: <reason>`, and the process
//! exits 0 only when every check passed (configuration errors exit 2 before any check runs).
//!
//! The gateway login must not turn the check into a serving stream: right after the upgrade
//! it sends the `draining` frame, which makes the gateway close the stream before handing it
//! work. If a request was dispatched in the instant before the gateway read that frame, it is
//! refused with `no_agent` so the caller can retry, never forwarded. The VCS probe sends no
//! credentials, so any HTTP answer (even 401) proves reachability; only connection, DNS,
//! TLS or timeout errors fail it. Nothing secret is printed: not the key, not a header.

use crate::agent::forward;
use crate::allowlist::Vendor;
use crate::config::AgentConfig;
use crate::net::dial::{self, AddressError, DialError, GatewayAddress, Identity};
use crate::net::tls::TlsError;
use crate::protocol::link::Link;
use crate::protocol::{Control, ErrorKind, Frame};
use std::io::Write;
use std::time::{Duration, Instant};

/// How long the check waits for the gateway to close the stream after the drain notice.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// One check's result: a detail when it passed, a reason when it failed.
pub(crate) type Outcome = Result<String, CheckError>;

/// Why a check failed, as its line says it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{url}: {reason}")]
    Login { url: String, reason: DialError },
    #[error("logged in, then the connection broke: {0}")]
    Broke(tungstenite::Error),
    #[error("GET {url}: {message}")]
    Probe { url: String, message: String },
}

/// The line printed for one check.
pub(crate) fn line(name: &str, outcome: &Outcome) -> String {
    match outcome {
        Ok(detail) => format!("ok   {name}: {detail}"),
        Err(reason) => format!("FAIL {name}: {reason}"),
    }
}

/// Runs every check (the gateway check once per gateway address), printing each line as it
/// completes; `true` when all passed.
pub fn run(config: &AgentConfig) -> bool {
    let mut all_ok = true;
    let mut out = std::io::stdout();
    let mut report = |name: &str, outcome: Outcome| {
        all_ok &= outcome.is_ok();
        let _ = writeln!(out, "{}", line(name, &outcome));
        let _ = out.flush();
    };
    report("token", token(config));
    report("allowlist", allowlist(config));
    for host in &config.gateways {
        report("gateway", gateway(config, host));
    }
    report("vcs", vcs(config));
    all_ok
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// The token decodes (already done by the configuration) to a `ws://` or `wss://` gateway
/// address; whether TLS to it works is the gateway check's business.
fn token(config: &AgentConfig) -> Outcome {
    GatewayAddress::parse(&config.token.host)?;
    Ok(format!(
        "pool {} at gateway {}",
        config.token.pool_ulid, config.token.host
    ))
}

/// The vendor's rule table and the project regex.
fn allowlist(config: &AgentConfig) -> Outcome {
    let projects = match &config.allowed_projects {
        None => "every project allowed (SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS is not set)".into(),
        Some(re) => format!("projects must match {}", re.as_str()),
    };
    Ok(format!(
        "vendor {} with {} rules; {projects}",
        config.vendor,
        config.vendor.rules().len()
    ))
}

/// Logs in to the gateway at `host` with the pool token, then leaves without taking work.
fn gateway(config: &AgentConfig, host: &str) -> Outcome {
    let address = GatewayAddress::parse(host)?;
    let (route, _) = crate::agent::legs(config)?;
    let identity = Identity {
        metadata: config.metadata.clone(),
        instance: format!("check-{}", ulid::Ulid::new()),
        version: crate::BUILD,
        route,
    };
    let started = Instant::now();
    let socket = dial::connect(
        &config.token,
        host,
        &identity,
        config.upstream_connect_timeout,
    )
    .map_err(|reason| CheckError::Login {
        url: address.connect_url.clone(),
        reason,
    })?;
    let took = started.elapsed();
    let mut link = Link::new(socket);
    link.send(&Control::Draining).map_err(CheckError::Broke)?;
    let _ = link
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)));
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut closing = false;
    loop {
        match link.recv() {
            Ok(Some(received)) => {
                if let Ok(Frame::Control(Control::Request { id, .. })) = received.frame() {
                    // Dispatched before the gateway saw the drain notice: refuse, never forward.
                    let refusal = Control::Error {
                        id,
                        kind: ErrorKind::NoAgent,
                        message: "the stream was a preflight check (vcs-agent check); retry".into(),
                        rule: None,
                        project: None,
                    };
                    let _ = link.send(&refusal);
                }
            }
            Ok(None) if Instant::now() > deadline && !closing => {
                // The gateway did not close: close from this side.
                closing = true;
                let _ = link.close();
            }
            Ok(None) if Instant::now() > deadline + CLOSE_WAIT => break,
            Ok(None) => {}
            // Closed (the normal end) or broken: the login already succeeded either way.
            Err(_) => break,
        }
    }
    Ok(format!(
        "{} accepted the pool token in {} ms; closed without taking requests",
        address.connect_url,
        millis(took)
    ))
}

/// An unauthenticated endpoint of each vendor, under the base endpoint.
pub(crate) fn probe_path(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Gitlab => "/api/v4/version",
        Vendor::BitbucketDatacenter => "/rest/api/1.0/application-properties",
        Vendor::GithubEnterprise => "/api/v3/meta",
        Vendor::AzureDevops => "/_apis/connectionData",
    }
}

/// Reaches the VCS base endpoint: any HTTP answer passes.
fn vcs(config: &AgentConfig) -> Outcome {
    let url = config.target.url_for(probe_path(config.vendor));
    let (_, client) = crate::agent::legs(config)?;
    let started = Instant::now();
    let none = forward::Payload::None;
    let response = forward::send(
        &client,
        "GET",
        url.clone(),
        &Vec::new(),
        none,
        &config.target.authority,
    )
    .map_err(|e| CheckError::Probe {
        url: url.to_string(),
        message: e.message,
    })?;
    Ok(format!(
        "GET {url} answered {} in {} ms (reachable; the check sends no credentials, so 401 or 403 is fine)",
        response.status().as_u16(),
        millis(started.elapsed())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_a_fixed_width_verdict() {
        assert_eq!(line("vcs", &Ok("fine".into())), "ok   vcs: fine");
        let down = CheckError::Probe {
            url: "https://vcs/".into(),
            message: "down".into(),
        };
        assert_eq!(line("vcs", &Err(down)), "FAIL vcs: GET https://vcs/: down");
    }

    #[test]
    fn every_vendor_has_a_probe_under_the_base() {
        for vendor in Vendor::ALL {
            assert!(probe_path(vendor).starts_with('/'), "{vendor}");
        }
    }
}
