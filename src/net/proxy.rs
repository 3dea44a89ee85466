//! Outbound HTTP proxies, read the way curl reads them, for both of the agent's legs.
//!
//! Why our own reader rather than ureq's `Proxy::try_from_env`: the gateway leg is a raw
//! WebSocket that ureq never sees, the two legs must agree on which proxy applies, and
//! `NO_PROXY` must understand IP addresses and CIDR ranges, which ureq's matcher does not.
//! Parsing is a pure function over a map of variables so it is unit-tested without touching
//! the process environment; [`connect_tunnel`] opens an HTTP `CONNECT` tunnel for the
//! gateway leg. Proxy credentials live in a [`Secret`] and every printable form of a proxy
//! is [`ProxyUrl::redacted`] or goes through [`redact::url`].

use crate::net::tcp;
use crate::observe::redact;
use crate::token::Secret;
use base64::Engine;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

/// Every variable [`ProxyConfig::from_vars`] reads, lower-case spelling first as curl does.
pub(crate) const VARIABLES: &[&str] = &[
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// One proxy: where it is, which variable named it, and its optional Basic credentials.
#[derive(Clone)]
pub(crate) struct ProxyUrl {
    /// The variable it came from, for messages that say what to change.
    pub(crate) variable: &'static str,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Percent-decoded user name and password.
    pub(crate) credentials: Option<(String, Secret)>,
}

/// Why a proxy variable's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("proxy scheme \"{0}\" is not supported: use an http:// proxy (CONNECT is used for TLS targets)")]
    Scheme(String),
    #[error("proxy credentials are not valid UTF-8 once decoded")]
    Credentials,
    /// The value, redacted.
    #[error("expected a proxy URL such as http://proxy.corp:3128, got \"{0}\"")]
    Shape(String),
    #[error("\"{0}\" is not an address range such as 10.0.0.0/8")]
    NotRange(String),
    #[error("\"{raw}\": the prefix length must be from 0 to {max}")]
    Prefix { raw: String, max: u8 },
}

impl ProxyUrl {
    /// Parses `[http://][user[:password]@]host[:port][/]`; only plain-HTTP proxies are supported.
    pub(crate) fn parse(variable: &'static str, text: &str) -> Result<ProxyUrl, ProxyError> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            None => text,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(ProxyError::Scheme(scheme.to_string())),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |part: &str| {
                    percent_encoding::percent_decode_str(part)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| ProxyError::Credentials)
                };
                Some((decode(user)?, Secret::new(decode(password)?)))
            }
        };
        let (host, port) =
            split_host_port(hostport).ok_or_else(|| ProxyError::Shape(redact::url(text)))?;
        Ok(ProxyUrl {
            variable,
            host,
            port: port.unwrap_or(80),
            credentials,
        })
    }

    /// `http://[***@]host:port`, safe for logs.
    pub(crate) fn redacted(&self) -> String {
        let host = host_port(&self.host, self.port);
        match self.credentials {
            Some(_) => format!("http://{}@{host}", redact::MASK),
            None => format!("http://{host}"),
        }
    }

    /// The `Proxy-Authorization` value, when the URL carried credentials.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.credentials.as_ref().map(|(user, password)| {
            let pair = format!("{user}:{}", password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        })
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.redacted(), self.variable)
    }
}

/// `host:port` with brackets around an IPv6 address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for an empty host or bad port.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    Some((host.to_ascii_lowercase(), port))
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bypass {
    All,
    /// A name and all its subdomains (`corp`, `.corp` and `*.corp` all mean this, as in curl).
    Domain(String),
    Ip(IpAddr),
    Cidr(IpAddr, u8),
}

/// The `NO_PROXY` list: hosts that are reached directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy(Vec<Bypass>);

impl NoProxy {
    /// Parses a comma- (or space-) separated list. An address range whose prefix length
    /// does not fit its address (`10.0.0.0/33`) is an error: skipping it would send traffic
    /// meant to stay inside through the proxy.
    pub(crate) fn parse(text: &str) -> Result<NoProxy, ProxyError> {
        let mut entries = Vec::new();
        for raw in text.split([',', ' ', '\t']).map(str::trim) {
            if raw.is_empty() {
                continue;
            }
            if raw == "*" {
                entries.push(Bypass::All);
                continue;
            }
            if let Some((addr, bits)) = raw.split_once('/') {
                entries.push(cidr(raw, addr, bits)?);
                continue;
            }
            let bare = raw.trim_start_matches('[');
            let bare = bare.split_once(']').map(|(h, _)| h).unwrap_or(bare);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                entries.push(Bypass::Ip(ip));
                continue;
            }
            // `host:port` entries: the port is ignored, as curl does for matching names.
            let name = bare.split(':').next().unwrap_or(bare);
            let name = name
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if !name.is_empty() {
                entries.push(Bypass::Domain(name));
            }
        }
        Ok(NoProxy(entries))
    }

    /// Whether `host` (a name or an IP address, brackets allowed) bypasses the proxy.
    pub(crate) fn matches(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.0.iter().any(|entry| match entry {
            Bypass::All => true,
            Bypass::Domain(name) => {
                host == *name
                    || (host.len() > name.len()
                        && host.ends_with(name.as_str())
                        && host.as_bytes()[host.len() - name.len() - 1] == b'.')
            }
            Bypass::Ip(want) => ip == Some(*want),
            Bypass::Cidr(net, bits) => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
        })
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `address/prefix` entry of `NO_PROXY`.
fn cidr(raw: &str, addr: &str, bits: &str) -> Result<Bypass, ProxyError> {
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| ProxyError::NotRange(raw.to_string()))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match bits.parse::<u8>() {
        Ok(bits) if bits <= max => Ok(Bypass::Cidr(ip, bits)),
        _ => Err(ProxyError::Prefix {
            raw: raw.to_string(),
            max,
        }),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let mask = |width: u32| -> u128 {
        if bits == 0 {
            0
        } else {
            (!0u128 << (width - u32::from(bits))) & (!0u128 >> (128 - width))
        }
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = mask(32);
            (u128::from(u32::from(a)) & m) == (u128::from(u32::from(b)) & m)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = mask(128);
            (u128::from(a) & m) == (u128::from(b) & m)
        }
        // An IPv4-mapped IPv6 address matches an IPv4 range.
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_cidr(IpAddr::V4(a), net, bits)),
        _ => false,
    }
}

/// The proxies in force for this process, and the hosts that bypass them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyConfig {
    /// For `https://` and `wss://` targets.
    pub(crate) https: Option<ProxyUrl>,
    /// For `http://` and `ws://` targets.
    pub(crate) http: Option<ProxyUrl>,
    pub(crate) no_proxy: NoProxy,
}

impl ProxyConfig {
    /// Reads `https_proxy`/`HTTPS_PROXY`, `http_proxy`/`HTTP_PROXY`, `all_proxy`/`ALL_PROXY`
    /// and `no_proxy`/`NO_PROXY` (lower case wins when both are set, as in curl). An empty
    /// value counts as unset. `Err` is `(variable, problem)`.
    pub(crate) fn from_vars(
        vars: &BTreeMap<String, String>,
    ) -> Result<ProxyConfig, (&'static str, ProxyError)> {
        let pick = |names: [&'static str; 2]| -> Option<(&'static str, &str)> {
            names.iter().find_map(|name| {
                vars.get(*name)
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                    .map(|v| (*name, v))
            })
        };
        let parse =
            |names: [&'static str; 2]| -> Result<Option<ProxyUrl>, (&'static str, ProxyError)> {
                match pick(names) {
                    None => Ok(None),
                    Some((name, value)) => ProxyUrl::parse(name, value)
                        .map(Some)
                        .map_err(|e| (name, e)),
                }
            };
        let all = parse(["all_proxy", "ALL_PROXY"])?;
        let https = parse(["https_proxy", "HTTPS_PROXY"])?.or_else(|| all.clone());
        let http = parse(["http_proxy", "HTTP_PROXY"])?.or(all);
        let no_proxy = match pick(["no_proxy", "NO_PROXY"]) {
            None => NoProxy::default(),
            Some((name, value)) => NoProxy::parse(value).map_err(|e| (name, e))?,
        };
        Ok(ProxyConfig {
            https,
            http,
            no_proxy,
        })
    }

    /// The proxy for a target: `tls` is true for `https://`/`wss://`. `None` means direct.
    pub(crate) fn for_target(&self, tls: bool, host: &str) -> Option<&ProxyUrl> {
        let proxy = if tls { &self.https } else { &self.http };
        proxy.as_ref().filter(|_| !self.no_proxy.matches(host))
    }
}

/// Why a `CONNECT` tunnel could not be opened; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TunnelError {
    /// The proxy itself could not be reached.
    Unreachable(String),
    /// 407: credentials missing or wrong.
    AuthenticationRequired(String),
    /// Any other status.
    Refused(String),
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelError::Unreachable(m)
            | TunnelError::AuthenticationRequired(m)
            | TunnelError::Refused(m) => f.write_str(m),
        }
    }
}

/// The sentence for a proxy that answered `CONNECT` with `status`.
pub(crate) fn refusal(proxy: &ProxyUrl, target: &str, status: u16, reason: &str) -> TunnelError {
    if status == 407 {
        let (what, fix) = if proxy.credentials.is_some() {
            ("refused the credentials", "check the user:password@ in")
        } else {
            (
                "requires credentials",
                "put user:password@ (percent-encoded) in",
            )
        };
        TunnelError::AuthenticationRequired(format!(
            "proxy {} {what} (407 Proxy Authentication Required) for CONNECT to {target}: {fix} {}",
            proxy.redacted(),
            proxy.variable
        ))
    } else {
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(" {reason}")
        };
        TunnelError::Refused(format!(
            "proxy {} refused CONNECT to {target} with {status}{reason}: allow that host and port on the proxy, or list the host in NO_PROXY",
            proxy.redacted()
        ))
    }
}

/// Opens a TCP connection to `proxy` and asks it for a tunnel to `host:port`. The returned
/// socket carries the target's bytes (TLS or WebSocket) from here on.
pub(crate) fn connect_tunnel(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, TunnelError> {
    let target = host_port(host, port);
    let mut tcp = tcp::connect(&proxy.host, proxy.port, timeout).map_err(|e| {
        TunnelError::Unreachable(format!(
            "proxy {} (from {}) is unreachable: {e}",
            proxy.redacted(),
            proxy.variable
        ))
    })?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.authorization() {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    let broken = |e: std::io::Error| {
        TunnelError::Unreachable(format!(
            "proxy {} broke off the CONNECT to {target}: {e}",
            proxy.redacted()
        ))
    };
    tcp.write_all(request.as_bytes()).map_err(broken)?;
    drop(request);

    // Read the answer's head one byte at a time: nothing past it may be taken from the tunnel.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= 16 * 1024 {
            return Err(TunnelError::Refused(format!(
                "proxy {} sent an oversized answer to CONNECT",
                proxy.redacted()
            )));
        }
        match tcp.read(&mut byte).map_err(broken)? {
            0 => {
                return Err(TunnelError::Refused(format!(
                    "proxy {} closed the connection instead of answering CONNECT to {target}",
                    proxy.redacted()
                )))
            }
            _ => head.push(byte[0]),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let status = match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => response.code.unwrap_or(0),
        _ => 0,
    };
    if !(200..300).contains(&status) {
        let reason = response.reason.unwrap_or("").to_string();
        return Err(refusal(proxy, &target, status, &reason));
    }
    let _ = tcp.set_write_timeout(None);
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn proxy_urls() {
        let p = ProxyUrl::parse("HTTPS_PROXY", "http://us%40r:p%3Ass@Proxy.corp:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        let (user, password) = p.credentials.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("us@r", "p:ss"));
        assert_eq!(p.redacted(), "http://***@proxy.corp:3128");
        assert!(!format!("{p:?}").contains("p:ss"));
        assert_eq!(
            p.authorization().unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("us@r:p:ss")
            )
        );

        let bare = ProxyUrl::parse("HTTP_PROXY", "proxy:8080").unwrap();
        assert_eq!((bare.host.as_str(), bare.port), ("proxy", 8080));
        assert!(bare.credentials.is_none());
        let default_port = ProxyUrl::parse("HTTP_PROXY", "http://proxy").unwrap();
        assert_eq!(default_port.port, 80);
        let v6 = ProxyUrl::parse("HTTP_PROXY", "http://[::1]:3128").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 3128));
        assert_eq!(v6.redacted(), "http://[::1]:3128");
        let user_only = ProxyUrl::parse("HTTP_PROXY", "http://bob@proxy:1").unwrap();
        assert_eq!(user_only.credentials.unwrap().1.expose(), "");

        for bad in [
            "socks5://proxy:1080",
            "https://proxy",
            "http://:3128",
            "http://proxy:x",
            "http://u:secret@proxy:99999",
        ] {
            let err = ProxyUrl::parse("HTTPS_PROXY", bad).unwrap_err();
            assert!(
                !err.to_string().contains("secret"),
                "{err} leaks the password"
            );
        }
    }

    #[test]
    fn variables_like_curl() {
        let c = ProxyConfig::from_vars(&vars(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("HTTP_PROXY", "http://plain:3"),
            ("NO_PROXY", "git.corp"),
        ]))
        .unwrap();
        assert_eq!(c.for_target(true, "gw.example").unwrap().host, "lower");
        assert_eq!(c.for_target(false, "gw.example").unwrap().host, "plain");
        assert!(c.for_target(true, "git.corp").is_none());
        assert!(c.for_target(true, "api.git.corp").is_none());

        let all = ProxyConfig::from_vars(&vars(&[("ALL_PROXY", "http://all:4")])).unwrap();
        assert_eq!(all.for_target(true, "x").unwrap().host, "all");
        assert_eq!(all.for_target(false, "x").unwrap().host, "all");

        let none = ProxyConfig::from_vars(&vars(&[("HTTPS_PROXY", " ")])).unwrap();
        assert!(none.for_target(true, "x").is_none());

        let (variable, _) =
            ProxyConfig::from_vars(&vars(&[("https_proxy", "socks5://s:1")])).unwrap_err();
        assert_eq!(variable, "https_proxy");
    }

    #[test]
    fn no_proxy_matching() {
        let n = NoProxy::parse(
            "localhost, .corp,*.example.org ,10.0.0.0/8, 192.168.1.7,[::1],fd00::/8, internal:8443",
        )
        .unwrap();
        for yes in [
            "localhost",
            "LOCALHOST.",
            "corp",
            "git.corp",
            "a.b.corp",
            "example.org",
            "www.example.org",
            "10.1.2.3",
            "192.168.1.7",
            "::1",
            "[::1]",
            "fd12::1",
            "internal",
        ] {
            assert!(n.matches(yes), "{yes} should bypass");
        }
        for no in [
            "notcorp",
            "corp.evil",
            "xexample.org",
            "11.0.0.1",
            "192.168.1.8",
            "::2",
            "fe80::1",
            "localhost.evil",
        ] {
            assert!(!n.matches(no), "{no} should use the proxy");
        }
        let parse = |text| NoProxy::parse(text).unwrap();
        assert!(parse("*").matches("anything.at.all"));
        assert!(parse("0.0.0.0/0").matches("8.8.8.8"));
        assert!(!parse("0.0.0.0/0").matches("example.com"));
        assert!(parse("127.0.0.0/8").matches("::ffff:127.0.0.1"));
        assert!(parse("::/128").matches("::"));
        assert!(parse("").is_empty());
    }

    #[test]
    fn no_proxy_ranges_that_do_not_fit_are_refused() {
        for (text, max) in [
            ("10.0.0.0/33", 32),
            ("10.0.0.0/99", 32),
            ("fd00::/129", 128),
            ("10.0.0.0/-1", 32),
            ("10.0.0.0/", 32),
        ] {
            let err = NoProxy::parse(&format!("localhost,{text}")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("\"{text}\": the prefix length must be from 0 to {max}")
            );
        }
        assert!(NoProxy::parse("intranet/8").is_err());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let p = ProxyUrl::parse("HTTPS_PROXY", "http://proxy:3128").unwrap();
        let e = refusal(&p, "gw:443", 407, "Proxy Authentication Required").to_string();
        assert!(e.contains("407") && e.contains("HTTPS_PROXY"), "{e}");
        let e = refusal(&p, "gw:443", 403, "Forbidden").to_string();
        assert!(
            e.contains("refused CONNECT to gw:443 with 403 Forbidden"),
            "{e}"
        );
    }
}
