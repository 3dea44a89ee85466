//! The HTTP leg: one request to the internal VCS with shared blocking `ureq::Agent`s.
//!
//! The client is set up to add and change nothing: no redirects followed, no decompression,
//! no `User-Agent`/`Accept`/`Accept-Encoding` of its own, HTTP error statuses returned as
//! answers. Its connection pool is shared by all slots; a connection goes back to the pool
//! only when its body was read to the end.
//!
//! TLS trusts the same roots as the gateway leg ([`crate::net::tls::Roots`]), so a custom CA
//! and a proxy work together. The proxy is never taken from ureq's own reading of the
//! environment: [`Client`] holds one agent without a proxy and, when one applies to the VCS
//! scheme, one with it, and picks per request host with our `NO_PROXY` matcher (which knows
//! CIDR ranges). ureq tunnels through the proxy with `CONNECT` for http and https targets.

use crate::config::AgentConfig;
use crate::net::proxy::{NoProxy, ProxyUrl};
use crate::net::tls::{self, Roots};
use crate::protocol::{ErrorKind, Headers};
use std::io::{self, Read};
use std::sync::Arc;
use ureq::config::AutoHeaderValue;
use ureq::http;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The upstream client: a direct agent and, when configured, a proxied one.
pub struct Client {
    direct: ureq::Agent,
    proxied: Option<(ureq::Agent, ProxyUrl)>,
    no_proxy: NoProxy,
}

impl Client {
    /// The agent for `host` and the proxy it goes through, if any.
    fn route(&self, host: &str) -> (&ureq::Agent, Option<&ProxyUrl>) {
        match &self.proxied {
            Some((agent, proxy)) if !self.no_proxy.matches(host) => (agent, Some(proxy)),
            _ => (&self.direct, None),
        }
    }
}

impl Client {
    /// A line for the start-up log: how requests to `host` are sent (no secret in it).
    pub fn describe(&self, host: &str) -> String {
        match self.route(host) {
            (_, Some(p)) => format!(
                "VCS {host} is reached through the proxy {} (from {})",
                p.redacted(),
                p.variable
            ),
            (_, None) => format!("VCS {host} is reached directly"),
        }
    }
}

/// Builds the client every slot shares, trusting `roots`.
pub fn client(config: &AgentConfig, roots: &Roots) -> Result<Client, String> {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(
            roots
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
        )))
        .unversioned_rustls_crypto_provider(tls::provider())
        .build();
    let direct = agent(config, tls.clone(), None);
    let https = config.target.scheme == "https";
    let proxied = match if https {
        &config.proxy.https
    } else {
        &config.proxy.http
    } {
        None => None,
        Some(url) => {
            let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
                .host(&url.host)
                .port(url.port);
            if let Some((user, password)) = &url.credentials {
                builder = builder.username(user).password(password.expose());
            }
            let proxy = builder
                .build()
                .map_err(|_| format!("{}: not a usable proxy", url.variable))?;
            Some((agent(config, tls, Some(proxy)), url.clone()))
        }
    };
    Ok(Client {
        direct,
        proxied,
        no_proxy: config.proxy.no_proxy.clone(),
    })
}

fn agent(config: &AgentConfig, tls: TlsConfig, proxy: Option<ureq::Proxy>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .allow_non_standard_methods(true)
        .no_delay(true)
        .timeout_connect(Some(config.upstream_connect_timeout))
        // An idle-read timeout, not a total cap: a slow archive keeps going while bytes flow.
        .timeout_per_read(Some(config.upstream_read_timeout))
        // An upstream that stops reading an upload must not pin the slot either.
        .timeout_per_write(Some(config.upstream_read_timeout))
        .timeout_recv_response(Some(config.upstream_read_timeout))
        .max_idle_connections_per_host(config.parallelism.max(4))
        .build()
        .into()
}

/// Why the upstream gave no (complete) answer.
#[derive(Debug)]
pub struct UpstreamError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Maps a ureq failure to an error kind and a sentence that holds no secret (never the URL,
/// whose query may carry a token, nor the proxy's credentials).
fn classify_via(error: &ureq::Error, authority: &str, proxy: Option<&ProxyUrl>) -> UpstreamError {
    let peer = format!("the VCS at {authority}");
    let via = proxy
        .map(|p| format!(" through the proxy {}", p.redacted()))
        .unwrap_or_default();
    let tls_failure = |e: &rustls::Error| {
        (
            ErrorKind::UpstreamUnreachable,
            tls::describe_tls_error(e, &peer),
        )
    };
    let (kind, message) = match error {
        ureq::Error::Rustls(e) => tls_failure(e),
        ureq::Error::Io(e) if tls::rustls_error_in(e).is_some() => match tls::rustls_error_in(e) {
            Some(inner) => tls_failure(inner),
            None => (
                ErrorKind::UpstreamUnreachable,
                format!("TLS with {peer} failed"),
            ),
        },
        ureq::Error::ConnectProxyFailed(reason) => {
            let status = reason
                .split(|c: char| !c.is_ascii_digit())
                .find_map(|n| n.parse::<u16>().ok().filter(|n| (100..600).contains(n)));
            let target = authority.to_string();
            match (proxy, status) {
                (Some(p), Some(status)) => (
                    ErrorKind::UpstreamUnreachable,
                    crate::net::proxy::refusal(p, &target, status, "").to_string(),
                ),
                _ => (
                    ErrorKind::UpstreamUnreachable,
                    format!(
                        "the proxy failed to reach {peer}: {}",
                        reason.chars().take(120).collect::<String>()
                    ),
                ),
            }
        }
        ureq::Error::ConnectionFailed if proxy.is_some() => (
            ErrorKind::UpstreamUnreachable,
            format!("could not connect to {peer}{via}: check that the proxy is reachable"),
        ),
        ureq::Error::Timeout(what) => (
            ErrorKind::UpstreamTimeout,
            format!("the VCS at {authority} did not answer in time ({what})"),
        ),
        ureq::Error::Io(e) if crate::net::stream::is_timeout(e) => (
            ErrorKind::UpstreamTimeout,
            format!("the VCS at {authority} did not answer in time"),
        ),
        ureq::Error::HostNotFound => (
            ErrorKind::UpstreamUnreachable,
            format!("the VCS host {authority} was not found"),
        ),
        ureq::Error::ConnectionFailed => (
            ErrorKind::UpstreamUnreachable,
            format!("could not connect to the VCS at {authority}"),
        ),
        ureq::Error::Io(e) => (
            ErrorKind::UpstreamUnreachable,
            format!("connection to the VCS at {authority} failed: {}", e.kind()),
        ),
        ureq::Error::Http(_) | ureq::Error::BadUri(_) => (
            ErrorKind::BadRequest,
            "the request could not be expressed as a valid HTTP request".to_string(),
        ),
        other => (
            ErrorKind::UpstreamUnreachable,
            format!(
                "the VCS at {authority} failed: {}",
                other.to_string().chars().take(200).collect::<String>()
            ),
        ),
    };
    UpstreamError { kind, message }
}

/// The same for an error while reading the response body.
pub fn classify_read(error: &io::Error, authority: &str) -> UpstreamError {
    // ureq's body reader hands its own errors over wrapped in an `io::Error`.
    let ureq_timeout = matches!(
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<ureq::Error>()),
        Some(ureq::Error::Timeout(_))
    );
    if crate::net::stream::is_timeout(error) || ureq_timeout {
        UpstreamError {
            kind: ErrorKind::UpstreamTimeout,
            message: format!("the VCS at {authority} went silent in the middle of the body"),
        }
    } else {
        UpstreamError {
            kind: ErrorKind::UpstreamUnreachable,
            message: format!(
                "the VCS at {authority} broke off the body: {}",
                error.kind()
            ),
        }
    }
}

/// Starts the upstream request: method, URL and headers; the caller adds the body.
pub fn build(method: &str, url: &str, headers: &Headers) -> Result<http::request::Builder, String> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("invalid method {method:?}"))?;
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name}"))?;
        builder = builder.header(name, value);
    }
    Ok(builder)
}

/// Sends the request, with `body` streamed when there is one, directly or through the
/// proxy as `NO_PROXY` decides for the request's host.
pub fn send(
    client: &Client,
    builder: http::request::Builder,
    body: Option<&mut dyn Read>,
    authority: &str,
) -> Result<http::Response<ureq::Body>, UpstreamError> {
    let host = builder
        .uri_ref()
        .and_then(|u| u.host())
        .unwrap_or_default()
        .to_string();
    let (agent, proxy) = client.route(&host);
    let invalid = |e: http::Error| UpstreamError {
        kind: ErrorKind::BadRequest,
        message: format!("invalid request: {e}"),
    };
    let result = match body {
        Some(reader) => agent.run(
            builder
                .body(ureq::SendBody::from_reader(reader))
                .map_err(invalid)?,
        ),
        None => agent.run(builder.body(()).map_err(invalid)?),
    };
    result.map_err(|e| classify_via(&e, authority, proxy))
}

/// Response headers as a list, repeated values kept in order.
pub fn response_headers(headers: &http::HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_read_timeout_is_told_by_its_type() {
        let timeout = ureq::Error::Timeout(ureq::Timeout::PerRead).into_io();
        assert_eq!(
            classify_read(&timeout, "vcs").kind,
            ErrorKind::UpstreamTimeout
        );
        let stalled = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            classify_read(&stalled, "vcs").kind,
            ErrorKind::UpstreamTimeout
        );
        // Words are not types: a message that says "timeout" is not one.
        let broken = io::Error::other("connection reset, not a timeout");
        let error = classify_read(&broken, "vcs");
        assert_eq!(error.kind, ErrorKind::UpstreamUnreachable);
        assert!(
            error.message.contains("broke off the body"),
            "{}",
            error.message
        );
    }
}
