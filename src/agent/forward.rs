//! The HTTP leg: one request to the internal VCS with a shared blocking `ureq::Agent`.
//!
//! The client is set up to add and change nothing: no redirects followed, no decompression,
//! no `User-Agent`/`Accept`/`Accept-Encoding` of its own, no proxy from the environment unless
//! configured, HTTP error statuses returned as answers. Its connection pool is shared by all
//! slots; a connection goes back to the pool only when its body was read to the end.

use crate::config::AgentConfig;
use crate::protocol::{ErrorKind, Headers};
use std::io::{self, Read};
use ureq::config::AutoHeaderValue;
use ureq::http;

/// Builds the client every slot shares.
pub fn client(config: &AgentConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .allow_non_standard_methods(true)
        .no_delay(true)
        .timeout_connect(Some(config.upstream_connect_timeout))
        // An idle-read timeout, not a total cap: a slow archive keeps going while bytes flow.
        .timeout_per_read(Some(config.upstream_read_timeout))
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
/// whose query may carry a token).
pub fn classify(error: &ureq::Error, authority: &str) -> UpstreamError {
    let (kind, message) = match error {
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
    if crate::net::stream::is_timeout(error)
        || error.to_string().to_ascii_lowercase().contains("timeout")
    {
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

/// Sends the request, with `body` streamed when there is one.
pub fn send(
    client: &ureq::Agent,
    builder: http::request::Builder,
    body: Option<&mut dyn Read>,
    authority: &str,
) -> Result<http::Response<ureq::Body>, UpstreamError> {
    let invalid = |e: http::Error| UpstreamError {
        kind: ErrorKind::BadRequest,
        message: format!("invalid request: {e}"),
    };
    let result = match body {
        Some(reader) => client.run(
            builder
                .body(ureq::SendBody::from_reader(reader))
                .map_err(invalid)?,
        ),
        None => client.run(builder.body(()).map_err(invalid)?),
    };
    result.map_err(|e| classify(&e, authority))
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
