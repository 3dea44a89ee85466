//! How an agent stream reaches the gateway: TCP (directly or through an HTTP `CONNECT`
//! proxy), TLS for `wss://`, then the WebSocket upgrade that authenticates the stream with
//! the pool id and key (see [`crate::protocol`]).

use crate::net::proxy::{self, host_port, ProxyConfig};
use crate::net::{tcp, tls, Stream};
use crate::protocol::{self, agent_websocket_config};
use crate::token::Token;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::WebSocket;

/// Who is dialing: sent with every upgrade.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) metadata: BTreeMap<String, String>,
    /// Shared by every stream of one agent process.
    pub(crate) instance: String,
    pub(crate) version: &'static str,
    /// How to get there: TLS trust, proxies, plaintext override.
    pub(crate) route: Route,
}

/// The transport settings of a dial, shared by every stream of one agent process.
#[derive(Clone, Default)]
pub(crate) struct Route {
    /// Trust for `wss://` gateways; `None` refuses `wss://` (only tests build it so).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) proxy: ProxyConfig,
    /// `SPACELIFT_VCS_AGENT_DIAL_INSECURE`: a `wss://` gateway is dialed as plain `ws://`.
    pub(crate) insecure: bool,
}

impl Route {
    /// A line for the start-up log: how `host_url` is reached (no secret in it).
    pub(crate) fn describe(&self, host_url: &str) -> String {
        let Ok(address) = GatewayAddress::parse(host_url) else {
            return format!("gateway address \"{host_url}\" is not usable");
        };
        let tls = address.tls && !self.insecure;
        let how = match (address.tls, tls) {
            (true, false) => "without TLS (SPACELIFT_VCS_AGENT_DIAL_INSECURE)",
            (_, true) => "over TLS",
            (false, false) => "without TLS",
        };
        match self.proxy.for_target(tls, &address.host) {
            Some(p) => format!(
                "gateway {} is dialed {how} through the proxy {} (from {})",
                host_port(&address.host, address.port),
                p.redacted(),
                p.variable
            ),
            None => format!(
                "gateway {} is dialed {how}, directly",
                host_port(&address.host, address.port)
            ),
        }
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("tls", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .field("insecure", &self.insecure)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialError {
    /// 401: the pool id or key was refused.
    Unauthorized(String),
    /// Any other refusal by the gateway, with its status.
    Refused { status: u16, reason: String },
    /// The gateway could not be reached or the upgrade broke off.
    Failed(String),
    /// The token names no address that can be dialed.
    Address(AddressError),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Unauthorized(reason) => write!(
                f,
                "the gateway refused the pool token ({reason}): the token is wrong or its key was rotated or revoked"
            ),
            DialError::Refused { status, reason } => {
                write!(f, "the gateway refused the connection with {status}: {reason}")
            }
            DialError::Failed(reason) => f.write_str(reason),
            DialError::Address(error) => error.fmt(f),
        }
    }
}

/// The parts of the token's `host` URL a dial needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddress {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `ws[s]://host:port/prefix/agent/v1/connect`.
    pub(crate) connect_url: String,
}

/// Why a gateway address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address and what the URL parser said.
    #[error("gateway address \"{url}\" is not a URL ({reason})")]
    NotUrl { url: String, reason: String },
    #[error("gateway address \"{0}\" must start with ws:// or wss://")]
    Scheme(String),
    #[error("gateway address \"{0}\" has no host")]
    NoHost(String),
    #[error("gateway address \"{0}\" has a port outside 1 to 65535")]
    Port(String),
    /// The address, redacted.
    #[error("gateway address \"{0}\" must not have credentials, a query or a fragment")]
    Extras(String),
}

impl GatewayAddress {
    pub fn parse(host_url: &str) -> Result<GatewayAddress, AddressError> {
        let uri: ureq::http::Uri =
            host_url
                .parse()
                .map_err(|e: ureq::http::uri::InvalidUri| AddressError::NotUrl {
                    url: host_url.to_string(),
                    reason: e.to_string(),
                })?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(AddressError::Scheme(host_url.to_string())),
        };
        let host = uri
            .host()
            .ok_or_else(|| AddressError::NoHost(host_url.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = explicit_port(&uri)
            .map_err(|_| AddressError::Port(host_url.to_string()))?
            .unwrap_or(if tls { 443 } else { 80 });
        if uri.query().is_some() || host_url.contains(['#', '@']) {
            return Err(AddressError::Extras(crate::observe::redact::url(host_url)));
        }
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let prefix = uri.path().trim_end_matches('/');
        Ok(GatewayAddress {
            tls,
            host,
            port,
            connect_url: format!(
                "{}://{authority}{prefix}{}",
                if tls { "wss" } else { "ws" },
                protocol::CONNECT_PATH
            ),
        })
    }
}

/// A URL's port that is not a number from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortOutOfRange;

/// The port written in a URL's authority: `Ok(None)` when there is none, `Err` when it is
/// not a number from 1 to 65535 (`Uri::port` reads 70000 as no port at all).
pub(crate) fn explicit_port(uri: &ureq::http::Uri) -> Result<Option<u16>, PortOutOfRange> {
    let Some(authority) = uri.authority() else {
        return Ok(None);
    };
    let after_userinfo = authority.as_str().rsplit('@').next().unwrap_or_default();
    let after_host = match after_userinfo.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
        None => after_userinfo.split_once(':').map_or("", |(_, port)| port),
    };
    let port = after_host.strip_prefix(':').unwrap_or(after_host);
    match port {
        "" if !after_userinfo.ends_with(':') => Ok(None),
        _ => match port.parse::<u16>() {
            Ok(port @ 1..) => Ok(Some(port)),
            _ => Err(PortOutOfRange),
        },
    }
}

/// JSON of the metadata tags with non-ASCII escaped, so it is a valid header value.
fn metadata_header(metadata: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Dials the gateway at `host_url` (the token's host or another address of the same pool)
/// and upgrades to an authenticated WebSocket.
pub(crate) fn connect(
    token: &Token,
    host_url: &str,
    identity: &Identity,
    timeout: Duration,
) -> Result<WebSocket<Stream>, DialError> {
    connect_with(token, host_url, identity, timeout, &[]).map(|(socket, _)| socket)
}

/// [`connect`] with `extra` headers on the upgrade; returns the gateway's upgrade answer too
/// (a webhook relay reads the gateway's confirmation from it).
pub(crate) fn connect_with(
    token: &Token,
    host_url: &str,
    identity: &Identity,
    timeout: Duration,
    extra: &[(&'static str, &str)],
) -> Result<(WebSocket<Stream>, tungstenite::handshake::client::Response), DialError> {
    let address = GatewayAddress::parse(host_url).map_err(DialError::Address)?;
    let use_tls = address.tls && !identity.route.insecure;
    let stream = transport(&address, &identity.route, use_tls, timeout)?;
    let connect_url = if address.tls && !use_tls {
        address.connect_url.replacen("wss://", "ws://", 1)
    } else {
        address.connect_url.clone()
    };
    let mut request = upgrade_request(token, identity, &connect_url)?;
    for (name, value) in extra {
        let value = tungstenite::http::HeaderValue::from_str(value)
            .map_err(|_| DialError::Failed(format!("header {name} has an invalid value")))?;
        request.headers_mut().insert(*name, value);
    }
    match tungstenite::client::client_with_config(request, stream, Some(agent_websocket_config())) {
        Ok((socket, response)) => {
            let _ = socket.get_ref().tcp().set_write_timeout(None);
            Ok((socket, response))
        }
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => Err(refused(&response)),
        Err(HandshakeError::Failure(e)) => Err(DialError::Failed(format!(
            "WebSocket upgrade to {connect_url} failed: {e}"
        ))),
        Err(HandshakeError::Interrupted(_)) => Err(DialError::Failed(format!(
            "WebSocket upgrade to {connect_url} timed out"
        ))),
    }
}

/// TCP to the gateway (directly or through the proxy), then TLS when `use_tls`; the upgrade
/// itself must not hang on a gateway that accepted TCP and went silent either.
fn transport(
    address: &GatewayAddress,
    route: &Route,
    use_tls: bool,
    timeout: Duration,
) -> Result<Stream, DialError> {
    let tcp = match route.proxy.for_target(use_tls, &address.host) {
        Some(proxy) => proxy::connect_tunnel(proxy, &address.host, address.port, timeout)
            .map_err(|e| DialError::Failed(e.to_string()))?,
        None => tcp::connect(&address.host, address.port, timeout)
            .map_err(|e| DialError::Failed(e.to_string()))?,
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    if !use_tls {
        return Ok(Stream::Plain(tcp));
    }
    let config = route.tls.clone().ok_or_else(|| {
        DialError::Failed(format!("{}: no TLS trust configured", address.connect_url))
    })?;
    let target = host_port(&address.host, address.port);
    let tls = tls::connect(config, &address.host, tcp, timeout)
        .map_err(|e| DialError::Failed(e.describe(&format!("the gateway at {target}"))))?;
    Ok(Stream::TlsClient(Box::new(tls)))
}

/// The upgrade request with the pool's credentials and this agent's identity.
fn upgrade_request(
    token: &Token,
    identity: &Identity,
    connect_url: &str,
) -> Result<tungstenite::handshake::client::Request, DialError> {
    let mut request = connect_url
        .into_client_request()
        .map_err(|e| DialError::Failed(format!("bad gateway address: {e}")))?;
    let headers = request.headers_mut();
    let pairs = [
        (protocol::HEADER_POOL_ULID, token.pool_ulid.clone()),
        (protocol::HEADER_KEY, token.key.expose().to_string()),
        (
            protocol::HEADER_METADATA,
            metadata_header(&identity.metadata),
        ),
        (protocol::HEADER_VERSION, identity.version.to_string()),
        (protocol::HEADER_INSTANCE, identity.instance.clone()),
        (
            protocol::HEADER_PROTOCOL,
            protocol::PROTOCOL_VERSION.to_string(),
        ),
    ];
    for (name, value) in pairs {
        let value = tungstenite::http::HeaderValue::from_str(&value)
            .map_err(|_| DialError::Failed(format!("header {name} has an invalid value")))?;
        headers.insert(name, value);
    }
    Ok(request)
}

/// The gateway's refusal of the upgrade, with the reason its body gives.
fn refused(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> DialError {
    let status = response.status().as_u16();
    let reason = response
        .body()
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| response.status().to_string());
    if status == 401 {
        DialError::Unauthorized(reason)
    } else {
        DialError::Refused { status, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_addresses() {
        let a = GatewayAddress::parse("ws://127.0.0.1:1984").unwrap();
        assert_eq!((a.tls, a.host.as_str(), a.port), (false, "127.0.0.1", 1984));
        assert_eq!(a.connect_url, "ws://127.0.0.1:1984/agent/v1/connect");
        let b = GatewayAddress::parse("wss://gw.example/vcs/").unwrap();
        assert_eq!((b.tls, b.port), (true, 443));
        assert_eq!(b.connect_url, "wss://gw.example/vcs/agent/v1/connect");
        assert!(GatewayAddress::parse("http://x").is_err());
        assert_eq!(GatewayAddress::parse("ws://[::1]:99").unwrap().port, 99);
        for bad in [
            "ws://gate way:1984",
            "ws://gw:0",
            "ws://gw:70000",
            "wss://gw:",
            "ws://gw/?a=b",
            "ws://u:pw@gw",
            "ws://gw/#x",
        ] {
            let err = GatewayAddress::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("gateway address \""), "{bad}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }

    #[test]
    fn metadata_is_ascii_json() {
        let mut m = BTreeMap::new();
        m.insert("site".to_string(), "Zürich".to_string());
        let h = metadata_header(&m);
        assert!(h.is_ascii());
        let back: BTreeMap<String, String> = serde_json::from_str(&h).unwrap();
        assert_eq!(back, m);
    }
}
