//! The HTTP leg: one request to the internal VCS over the keep-alive connections of
//! [`upstream`], shared by all slots.
//!
//! The client adds and changes nothing: no redirects followed, no decompression, no
//! `User-Agent`/`Accept`/`Accept-Encoding` of its own, HTTP error statuses returned as
//! answers. A connection goes back to the pool only when its body was read to the end.
//!
//! TLS trusts the same roots as the gateway leg ([`crate::net::tls::Roots`]), so a custom CA
//! and a proxy work together. The proxy is the one configured for the VCS scheme, unless our
//! `NO_PROXY` matcher (which knows CIDR ranges) exempts the request's host; connections go
//! through it as an HTTP `CONNECT` tunnel for http and https targets alike. Failures come
//! typed from [`upstream::Failure`] and are told apart by variant and I/O error kind.

use crate::agent::upstream::{Failure, Outgoing, Pool, Settings, Target};
use crate::config::AgentConfig;
use crate::net::proxy::{NoProxy, ProxyUrl, TunnelError};
use crate::net::tcp::ConnectError;
use crate::net::tls::{self, HandshakeError, Roots, TlsError};
use crate::protocol::{self, ErrorKind, HeaderPairs};
use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use ureq_proto::http;

pub(crate) use crate::agent::upstream::{Body, Payload};

/// An answer of the VCS: its head, and its body to read.
pub(crate) type Response = http::Response<Body>;

/// The upstream client: the connection pool and the proxy for the VCS scheme, if any.
pub(crate) struct Client {
    pool: Arc<Pool>,
    proxy: Option<ProxyUrl>,
    no_proxy: NoProxy,
}

impl Client {
    /// The proxy requests to `host` go through, if any.
    fn route(&self, host: &str) -> Option<&ProxyUrl> {
        self.proxy.as_ref().filter(|_| !self.no_proxy.matches(host))
    }

    /// A line for the start-up log: how requests to `host` are sent (no secret in it).
    pub(crate) fn describe(&self, host: &str) -> String {
        match self.route(host) {
            Some(p) => format!(
                "VCS {host} is reached through the proxy {} (from {})",
                p.redacted(),
                p.variable
            ),
            None => format!("VCS {host} is reached directly"),
        }
    }
}

/// Builds the client every slot shares, trusting `roots`.
pub(crate) fn client(config: &AgentConfig, roots: &Roots) -> Result<Client, TlsError> {
    let proxy = match config.target.scheme.as_str() {
        "https" => config.proxy.https.clone(),
        _ => config.proxy.http.clone(),
    };
    let pool = Pool::new(Settings {
        tls: roots.client_config()?,
        connect_timeout: config.upstream_connect_timeout,
        // An idle-read timeout, not a total cap: a slow archive keeps going while bytes
        // flow; an upstream that stops reading an upload must not pin the slot either.
        read_timeout: config.upstream_read_timeout,
        max_idle: config.parallelism.max(4),
    });
    Ok(Client {
        pool,
        proxy,
        no_proxy: config.proxy.no_proxy.clone(),
    })
}

/// Why the upstream gave no (complete) answer.
#[derive(Debug)]
pub(crate) struct UpstreamError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl UpstreamError {
    fn new(kind: ErrorKind, message: String) -> UpstreamError {
        UpstreamError { kind, message }
    }
}

/// Maps a failure to an error kind and a sentence that holds no secret (never the URL,
/// whose query may carry a token, nor the proxy's credentials).
fn classify(failure: Failure, authority: &str, proxy: Option<&ProxyUrl>) -> UpstreamError {
    use ErrorKind::{BadRequest, UpstreamTimeout, UpstreamUnreachable};
    let peer = format!("the VCS at {authority}");
    match failure {
        Failure::Connect(e) => classify_connect(&e, authority),
        Failure::Proxy(e) => classify_proxy(e, &peer, proxy),
        Failure::Tls(HandshakeError::Timeout) => UpstreamError::new(
            UpstreamTimeout,
            format!("{peer} did not answer in time (TLS handshake)"),
        ),
        Failure::Tls(e) => UpstreamError::new(UpstreamUnreachable, e.describe(&peer)),
        Failure::Io(e) => match tls::rustls_error_in(&e) {
            Some(inner) => {
                UpstreamError::new(UpstreamUnreachable, tls::describe_tls_error(inner, &peer))
            }
            None if crate::net::stream::is_timeout(&e) => {
                UpstreamError::new(UpstreamTimeout, format!("{peer} did not answer in time"))
            }
            None => UpstreamError::new(
                UpstreamUnreachable,
                format!("connection to {peer} failed: {}", e.kind()),
            ),
        },
        Failure::HeadTimeout => UpstreamError::new(
            UpstreamTimeout,
            format!("{peer} did not answer in time (no response head)"),
        ),
        Failure::Closed => UpstreamError::new(
            UpstreamUnreachable,
            format!("{peer} closed the connection without an answer"),
        ),
        Failure::Protocol(e) => UpstreamError::new(
            UpstreamUnreachable,
            format!("{peer} sent an answer that is not valid HTTP/1.1: {e}"),
        ),
        Failure::Invalid(message) => UpstreamError::new(BadRequest, message),
    }
}

fn classify_connect(error: &ConnectError, authority: &str) -> UpstreamError {
    match error {
        ConnectError::Resolve { .. } | ConnectError::NoAddress { .. } => UpstreamError::new(
            ErrorKind::UpstreamUnreachable,
            format!("the VCS host {authority} was not found"),
        ),
        e if e.is_timeout() => UpstreamError::new(
            ErrorKind::UpstreamTimeout,
            format!("the VCS at {authority} did not answer in time (connect)"),
        ),
        ConnectError::Connect { error, .. } => UpstreamError::new(
            ErrorKind::UpstreamUnreachable,
            format!(
                "connection to the VCS at {authority} failed: {}",
                error.kind()
            ),
        ),
    }
}

fn classify_proxy(error: TunnelError, peer: &str, proxy: Option<&ProxyUrl>) -> UpstreamError {
    let message = match (error, proxy) {
        (TunnelError::Unreachable(_), Some(p)) => format!(
            "could not connect to {peer} through the proxy {}: check that the proxy is reachable",
            p.redacted()
        ),
        (e, _) => e.to_string(),
    };
    UpstreamError::new(ErrorKind::UpstreamUnreachable, message)
}

/// The same for an error while reading the response body.
pub(crate) fn classify_read(error: &io::Error, authority: &str) -> UpstreamError {
    if crate::net::stream::is_timeout(error) {
        UpstreamError::new(
            ErrorKind::UpstreamTimeout,
            format!("the VCS at {authority} went silent in the middle of the body"),
        )
    } else {
        UpstreamError::new(
            ErrorKind::UpstreamUnreachable,
            format!(
                "the VCS at {authority} broke off the body: {}",
                error.kind()
            ),
        )
    }
}

/// Sends `method url` with `headers` and the body in `payload`, directly or through the
/// proxy as `NO_PROXY` decides for the request's host, and reads the answer's head. The URL
/// is taken as it is (not copied) into the request.
pub(crate) fn send(
    client: &Client,
    method: &str,
    url: String,
    headers: &[(&str, &str)],
    payload: Payload,
    authority: &str,
) -> Result<Response, UpstreamError> {
    let invalid = || {
        UpstreamError::new(
            ErrorKind::BadRequest,
            "the request could not be expressed as a valid HTTP request".to_string(),
        )
    };
    let uri = http::Uri::try_from(url).map_err(|_| invalid())?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or_else(invalid)?;
    let target = Target {
        tls,
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
    };
    let proxy = client.route(host);
    let outgoing = Outgoing {
        method,
        uri: &uri,
        headers,
    };
    client
        .pool
        .send(&outgoing, &target, proxy, payload)
        .map_err(|f| classify(f, authority, proxy))
}

/// The answer's end-to-end headers as a list, repeated values kept in order (hop-by-hop
/// ones left out in the same pass, see [`protocol::end_to_end`]), borrowed from the answer:
/// a value is copied only when it is not UTF-8 (its invalid bytes replaced).
pub(crate) fn response_headers(headers: &http::HeaderMap) -> HeaderPairs<'_> {
    let named = protocol::connection_tokens(
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| ("connection", v)),
    );
    let mut pairs = Vec::with_capacity(headers.len());
    pairs.extend(
        headers
            .iter()
            .filter(|(name, _)| protocol::is_end_to_end(name.as_str(), &named))
            .map(|(name, value)| {
                let value = match value.to_str() {
                    Ok(text) => Cow::Borrowed(text),
                    Err(_) => String::from_utf8_lossy(value.as_bytes()),
                };
                (Cow::Borrowed(name.as_str()), value)
            }),
    );
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_read_timeout_is_told_by_its_type() {
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
