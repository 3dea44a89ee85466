//! The agent's configuration: read from the environment once, at start, into typed values.
//!
//! Every problem is reported as one line that names the variable and says what is wrong
//! (`SPACELIFT_VCS_AGENT_PARALLELISM: expected an integer from 1 to 256, got "abc"`); the
//! binary prints it and exits with code 2. Secrets are held in [`Secret`](crate::token::Secret) and never printed.

use crate::allowlist::{self, Vendor};
use crate::blocklist::Blocklist;
use crate::duration;
use crate::net::dial::GatewayAddress;
use crate::net::proxy::{self, ProxyConfig};
use crate::net::tls::{self, CustomCas};
use crate::observe::redact;
use crate::token::Token;
use crate::webhook::settings::{
    SettingError, WebhookConfig, WEBHOOK_CONCURRENCY, WEBHOOK_LISTEN, WEBHOOK_MAX_BODY,
    WEBHOOK_TLS_CERT, WEBHOOK_TLS_KEY,
};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub(crate) const POOL_TOKEN: &str = "SPACELIFT_VCS_AGENT_POOL_TOKEN";
pub(crate) const TARGET_BASE_ENDPOINT: &str = "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT";
pub(crate) const VENDOR: &str = "SPACELIFT_VCS_AGENT_VENDOR";
pub(crate) const ALLOWED_PROJECTS: &str = "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS";
pub(crate) const PARALLELISM: &str = "SPACELIFT_VCS_AGENT_PARALLELISM";
pub(crate) const METADATA_PREFIX: &str = "SPACELIFT_METADATA_";
pub(crate) const KEEPALIVE_INTERVAL: &str = "SPACELIFT_VCS_AGENT_KEEPALIVE_INTERVAL";
pub(crate) const UPSTREAM_CONNECT_TIMEOUT: &str = "SPACELIFT_VCS_AGENT_UPSTREAM_CONNECT_TIMEOUT";
pub(crate) const UPSTREAM_READ_TIMEOUT: &str = "SPACELIFT_VCS_AGENT_UPSTREAM_READ_TIMEOUT";
pub(crate) const DRAIN_TIMEOUT: &str = "SPACELIFT_VCS_AGENT_DRAIN_TIMEOUT";
pub(crate) const DEBUG_PRINT_ALL: &str = "SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL";
pub(crate) const CA_CERT: &str = "SPACELIFT_VCS_AGENT_CA_CERT";
pub(crate) const CA_CERT_FILE: &str = "SPACELIFT_VCS_AGENT_CA_CERT_FILE";
pub(crate) const DIAL_INSECURE: &str = "SPACELIFT_VCS_AGENT_DIAL_INSECURE";
pub(crate) const GATEWAY_URLS: &str = "SPACELIFT_VCS_AGENT_GATEWAY_URLS";
pub(crate) const MAX_STREAM_AGE: &str = "SPACELIFT_VCS_AGENT_MAX_STREAM_AGE";
pub const METRICS_ADDR: &str = "SPACELIFT_VCS_AGENT_METRICS_ADDR";
pub(crate) const LOG_FORMAT: &str = "SPACELIFT_VCS_AGENT_LOG_FORMAT";
pub(crate) const LOG_LEVEL: &str = "SPACELIFT_VCS_AGENT_LOG_LEVEL";

pub(crate) const BLOCKLIST_PATH: &str = "SPACELIFT_VCS_AGENT_BLOCKLIST_PATH";
pub(crate) const HTTP_DISABLE_RESPONSE_COMPRESSION: &str =
    "SPACELIFT_VCS_AGENT_HTTP_DISABLE_RESPONSE_COMPRESSION";
pub(crate) const DISABLE_URL_REWRITE: &str = "SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE";
pub(crate) const BUGSNAG_API_KEY: &str = "SPACELIFT_VCS_AGENT_BUGSNAG_API_KEY";
pub(crate) const BUGSNAG_DISABLE: &str = "SPACELIFT_VCS_AGENT_BUGSNAG_DISABLE";
pub(crate) const USE_ALLOWLIST: &str = "SPACELIFT_VCS_AGENT_USE_ALLOWLIST";
/// The prefix of the agent's own variables: a name with it that no [`Setting`] has is
/// warned about at start.
pub(crate) const AGENT_PREFIX: &str = "SPACELIFT_VCS_AGENT_";

/// How a setting's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value: `--flag VALUE` or `--flag=VALUE`.
    Value,
    /// A boolean: `--flag` alone means true, `--flag=false` false.
    Switch,
    /// Accepted for the original agent's sake and ignored, with a warning at start that
    /// says why (the reason).
    Ignored(&'static str),
    /// An ignored boolean (`--flag` alone is accepted).
    IgnoredSwitch(&'static str),
}

impl Kind {
    fn is_switch(self) -> bool {
        matches!(self, Kind::Switch | Kind::IgnoredSwitch(_))
    }

    fn ignored(self) -> Option<&'static str> {
        match self {
            Kind::Ignored(why) | Kind::IgnoredSwitch(why) => Some(why),
            Kind::Value | Kind::Switch => None,
        }
    }
}

/// One input of the agent: its variable, the flags that set it too (a flag wins over the
/// variable), its default and what it means. [`SETTINGS`] is the one list of them: `--help`
/// is made from it and a test holds the README's table to it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub env: &'static str,
    /// Ours (the variable's name after `SPACELIFT_VCS_AGENT_`, lower case, `-` for `_`) and
    /// the original agent's spelling where it differs; none for variables that are not the
    /// agent's own (proxies, `RUST_LOG`).
    pub flags: &'static [&'static str],
    pub default: &'static str,
    pub meaning: &'static str,
    pub(crate) kind: Kind,
}

const fn setting(
    env: &'static str,
    flags: &'static [&'static str],
    default: &'static str,
    meaning: &'static str,
) -> Setting {
    Setting {
        env,
        flags,
        default,
        meaning,
        kind: Kind::Value,
    }
}

const fn switch(
    env: &'static str,
    flags: &'static [&'static str],
    meaning: &'static str,
) -> Setting {
    Setting {
        env,
        flags,
        default: "false",
        meaning,
        kind: Kind::Switch,
    }
}

const BUGSNAG: &str = "error reporting to Bugsnag is not part of this agent";

/// Every input the agent reads.
pub const SETTINGS: &[Setting] = &[
    setting(
        POOL_TOKEN,
        &["--token", "--pool-token"],
        "required",
        "pool token printed by `vcs-gateway pool create` (or the original's); its host is a ws:// or wss:// URL, or host:port dialed as wss://",
    ),
    setting(
        TARGET_BASE_ENDPOINT,
        &["--target-base-endpoint"],
        "required",
        "internal VCS base URL: scheme, host, optional port and sub-path (no credentials, query or fragment)",
    ),
    setting(
        VENDOR,
        &["--vendor"],
        "required",
        "gitlab | bitbucket_datacenter | github_enterprise | azure_devops",
    ),
    setting(
        ALLOWED_PROJECTS,
        &["--allowed-projects"],
        "unset",
        "regex matched against the whole project (e.g. group/repo); unset allows every project",
    ),
    setting(
        PARALLELISM,
        &["--parallelism"],
        "4",
        "streams to the gateway (1-256); each serves one request at a time",
    ),
    setting(
        BLOCKLIST_PATH,
        &["--blocklist-path"],
        "none",
        "YAML file of rules (name, method and path regexes) that deny requests the allowlist would let through",
    ),
    setting(
        "SPACELIFT_METADATA_<name>",
        &[],
        "none",
        "tags shown on the gateway for this agent",
    ),
    setting(
        KEEPALIVE_INTERVAL,
        &["--keepalive-interval"],
        "20s",
        "ping idle streams this often (at least 1s); drop after 3 silent intervals",
    ),
    setting(
        UPSTREAM_CONNECT_TIMEOUT,
        &["--upstream-connect-timeout"],
        "10s",
        "connect timeout to the VCS",
    ),
    setting(
        UPSTREAM_READ_TIMEOUT,
        &["--upstream-read-timeout"],
        "60s",
        "longest silence while reading from the VCS (no total cap)",
    ),
    setting(
        DRAIN_TIMEOUT,
        &["--drain-timeout"],
        "30s",
        "on SIGTERM/SIGINT/SIGHUP, how long in-flight requests may finish",
    ),
    switch(
        DEBUG_PRINT_ALL,
        &["--debug-print-all"],
        "log full request and response heads, secrets redacted",
    ),
    switch(
        HTTP_DISABLE_RESPONSE_COMPRESSION,
        &["--http-disable-response-compression"],
        "ask the VCS for uncompressed answers (Accept-Encoding: identity)",
    ),
    switch(
        DISABLE_URL_REWRITE,
        &["--disable-url-rewrite"],
        "leave the VCS's own API URLs in answers instead of pointing them back through the gateway",
    ),
    setting(
        CA_CERT,
        &["--ca-cert"],
        "none",
        "base64-encoded PEM bundle of extra CAs, trusted for the gateway and the VCS",
    ),
    setting(
        CA_CERT_FILE,
        &["--ca-cert-file"],
        "none",
        "path of a PEM bundle of extra CAs, trusted for the gateway and the VCS",
    ),
    setting(
        GATEWAY_URLS,
        &["--gateway-urls"],
        "none",
        "further ws:// or wss:// gateway addresses of the pool, comma-separated; slot i dials address i mod N first",
    ),
    setting(
        MAX_STREAM_AGE,
        &["--max-stream-age"],
        "off",
        "an idle stream older than this (±10%) is handed back and dialed again, so streams rebalance over the gateways",
    ),
    switch(
        DIAL_INSECURE,
        &["--dial-insecure"],
        "dial the gateway without TLS (a wss:// or host:port token host is dialed as ws://)",
    ),
    setting(
        "HTTPS_PROXY",
        &[],
        "none",
        "http://[user:password@]host:port proxy for https:// and wss:// targets (https_proxy too)",
    ),
    setting(
        "HTTP_PROXY",
        &[],
        "none",
        "proxy for http:// and ws:// targets (http_proxy too)",
    ),
    setting(
        "ALL_PROXY",
        &[],
        "none",
        "proxy for both when the specific one is unset (all_proxy too)",
    ),
    setting(
        "NO_PROXY",
        &[],
        "none",
        "hosts reached directly: names, .domain suffixes, IPs, CIDR ranges, *",
    ),
    setting(
        "SSL_CERT_FILE",
        &[],
        "system store",
        "PEM file the system CA store is read from",
    ),
    setting(
        "SSL_CERT_DIR",
        &[],
        "system store",
        "directory the system CA store is read from",
    ),
    setting(
        METRICS_ADDR,
        &["--metrics-addr"],
        "off",
        "serve /healthz and /metrics (Prometheus) on this address, e.g. 127.0.0.1:9090",
    ),
    setting(
        LOG_FORMAT,
        &["--log-format"],
        "text",
        "log line format: text | json",
    ),
    setting(
        LOG_LEVEL,
        &["--log-level"],
        "info",
        "error | warn | info | debug | trace; wins over RUST_LOG",
    ),
    setting(
        "RUST_LOG",
        &[],
        "info",
        "log filter (env_logger syntax), used when LOG_LEVEL is not set",
    ),
    // The webhook listener (crate::webhook).
    setting(
        WEBHOOK_LISTEN,
        &["--webhook-listen"],
        "off",
        "receive the VCS's webhooks on this address (e.g. 0.0.0.0:8080) and relay the allowed ones through the pool to its webhook URL",
    ),
    setting(
        WEBHOOK_TLS_CERT,
        &["--webhook-tls-cert"],
        "unset",
        "PEM certificate (chain) file: the webhook listener speaks HTTPS (with WEBHOOK_TLS_KEY)",
    ),
    setting(
        WEBHOOK_TLS_KEY,
        &["--webhook-tls-key"],
        "unset",
        "PEM private key file of WEBHOOK_TLS_CERT",
    ),
    setting(
        WEBHOOK_MAX_BODY,
        &["--webhook-max-body"],
        "25MiB",
        "largest webhook body (bytes, KiB or MiB, at most 64MiB); a larger one is answered 413 unread",
    ),
    setting(
        WEBHOOK_CONCURRENCY,
        &["--webhook-concurrency"],
        "8",
        "webhooks handled at once (1-256); more are answered 503; memory is bounded by this times WEBHOOK_MAX_BODY",
    ),
    Setting {
        env: BUGSNAG_API_KEY,
        flags: &["--bugsnag-api-key"],
        default: "ignored",
        meaning: "accepted and ignored (warned about at start): error reporting to Bugsnag is not part of this agent",
        kind: Kind::Ignored(BUGSNAG),
    },
    Setting {
        env: BUGSNAG_DISABLE,
        flags: &["--disable-bugsnag", "--bugsnag-disable"],
        default: "ignored",
        meaning: "accepted and ignored (warned about at start): there is no Bugsnag reporting to disable",
        kind: Kind::IgnoredSwitch(BUGSNAG),
    },
    Setting {
        env: USE_ALLOWLIST,
        flags: &["--use-allowlist"],
        default: "ignored",
        meaning: "accepted and ignored (warned about at start): the vendor allowlist is always on",
        kind: Kind::IgnoredSwitch("the vendor allowlist is always on"),
    },
];

/// The setting a flag (`--token`) sets.
pub fn setting_for_flag(flag: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.flags.contains(&flag))
}

/// Whether a setting given by flag takes no value (`--dial-insecure` alone means true).
pub fn is_switch(setting: &Setting) -> bool {
    setting.kind.is_switch()
}

/// The VCS base endpoint split into what a forwarded URL is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseEndpoint {
    /// `http` or `https`.
    pub(crate) scheme: String,
    /// `host[:port]`.
    pub(crate) authority: String,
    pub(crate) host: String,
    /// Sub-path without trailing slash (`""` or `/gitlab`).
    pub(crate) path: String,
}

/// Why `SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT` was refused; each message quotes the URL
/// with any credentials masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error("not a URL ({problem}), got \"{shown}\"")]
    NotAUrl { problem: String, shown: String },
    #[error("expected an http:// or https:// URL, got \"{0}\"")]
    Scheme(String),
    #[error("no host in \"{0}\"")]
    NoHost(String),
    #[error("user:password@ is not allowed (the SaaS sends its own credentials), got \"{0}\"")]
    Credentials(String),
    #[error("a query or fragment is not allowed, got \"{0}\"")]
    QueryOrFragment(String),
    #[error("port must be from 1 to 65535, got \"{0}\"")]
    Port(String),
}

impl BaseEndpoint {
    pub(crate) fn parse(text: &str) -> Result<BaseEndpoint, EndpointError> {
        let shown = || redact::url(text);
        let uri: ureq::http::Uri =
            text.parse()
                .map_err(|e: ureq::http::uri::InvalidUri| EndpointError::NotAUrl {
                    problem: e.to_string(),
                    shown: shown(),
                })?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return Err(EndpointError::Scheme(shown())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| EndpointError::NoHost(shown()))?;
        if authority.as_str().contains('@') {
            return Err(EndpointError::Credentials(shown()));
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(EndpointError::QueryOrFragment(shown()));
        }
        if crate::net::dial::explicit_port(&uri).is_err() {
            return Err(EndpointError::Port(shown()));
        }
        Ok(BaseEndpoint {
            scheme,
            authority: authority.as_str().to_string(),
            host: authority.host().to_string(),
            path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The URL a request for `target` (path and query) is sent to.
    pub(crate) fn url_for(&self, target: &str) -> String {
        let parts = [
            self.scheme.as_str(),
            "://",
            &self.authority,
            &self.path,
            target,
        ];
        let mut url = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|part| url.push_str(part));
        url
    }
}

impl fmt::Display for BaseEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub(crate) token: Token,
    /// Gateway addresses to dial: the token's host first, then `SPACELIFT_VCS_AGENT_GATEWAY_URLS`.
    pub(crate) gateways: Vec<String>,
    /// `SPACELIFT_VCS_AGENT_MAX_STREAM_AGE`: an idle stream older than this is dialed again.
    pub(crate) max_stream_age: Option<Duration>,
    pub(crate) target: BaseEndpoint,
    pub(crate) vendor: Vendor,
    /// The anchored project regex, `None` when every project is allowed.
    pub(crate) allowed_projects: Option<regex::Regex>,
    pub(crate) parallelism: usize,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) keepalive: Duration,
    pub(crate) upstream_connect_timeout: Duration,
    pub(crate) upstream_read_timeout: Duration,
    pub drain_timeout: Duration,
    pub(crate) debug_print_all: bool,
    /// `SPACELIFT_VCS_AGENT_HTTP_DISABLE_RESPONSE_COMPRESSION`: every request asks the VCS
    /// for `Accept-Encoding: identity`, whatever the caller sent.
    pub(crate) disable_response_compression: bool,
    /// `SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE`: answers keep the VCS's own API URLs
    /// ([`crate::agent::rebase`]).
    pub(crate) disable_url_rewrite: bool,
    /// `SPACELIFT_VCS_AGENT_BLOCKLIST_PATH`: the operator's rules, checked after the allowlist.
    pub(crate) blocklist: Blocklist,
    /// Lines to log as warnings once logging is up (ignored or unknown settings, a GitLab
    /// over plain HTTP).
    pub warnings: Vec<String>,
    /// CAs from `SPACELIFT_VCS_AGENT_CA_CERT` and `..._CA_CERT_FILE`, for both legs.
    pub(crate) custom_cas: CustomCas,
    pub(crate) dial_insecure: bool,
    /// From `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (either case).
    pub(crate) proxy: ProxyConfig,
    /// Where `/healthz` and `/metrics` are served; `None` when off.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub log_format: crate::observe::LogFormat,
    /// One of [`crate::observe::logging::LEVELS`]; `None` leaves it to `RUST_LOG`.
    pub log_level: Option<String>,
    /// The webhook listener ([`crate::webhook`]); `None` when off.
    pub webhook: Option<WebhookConfig>,
}

/// One line naming the variable and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) variable: String,
    pub(crate) problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl From<SettingError> for ConfigError {
    fn from(e: SettingError) -> ConfigError {
        ConfigError {
            variable: e.variable.to_string(),
            problem: e.problem,
        }
    }
}

fn error(variable: &str, problem: impl fmt::Display) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        problem: problem.to_string(),
    }
}

/// Settings given on the command line, in order: the setting's variable, the flag as it was
/// typed, the value (`true` for a switch given alone).
#[derive(Debug, Clone, Default)]
pub struct Flags(pub Vec<(&'static str, String, String)>);

impl AgentConfig {
    /// Reads the process environment, then `flags` on top (a flag wins over its variable).
    /// An error about a value given by flag names the flag and its variable.
    pub fn load(flags: &Flags) -> Result<AgentConfig, ConfigError> {
        let mut vars = env_vars()?;
        for (env, _, value) in &flags.0 {
            vars.insert(env.to_string(), value.clone());
        }
        AgentConfig::from_vars(&vars).map_err(|mut e| {
            if let Some((_, flag, _)) = flags.0.iter().rev().find(|(env, ..)| *env == e.variable) {
                e.variable = format!("{flag} ({})", e.variable);
            }
            e
        })
    }
}

/// The variables the agent reads from the process environment: `SPACELIFT_*` and proxies.
fn env_vars() -> Result<BTreeMap<String, String>, ConfigError> {
    {
        let mut vars = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with("SPACELIFT_") && !proxy::VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| error(&name, "value is not valid UTF-8"))?;
            vars.insert(name, value);
        }
        Ok(vars)
    }
}

impl AgentConfig {
    /// Builds the configuration from a set of variables (the environment, or a test's map).
    /// The first problem found is the one reported.
    pub(crate) fn from_vars(vars: &BTreeMap<String, String>) -> Result<AgentConfig, ConfigError> {
        let v = Vars(vars);
        let token = Token::decode(v.required(POOL_TOKEN)?).map_err(|e| error(POOL_TOKEN, e))?;
        GatewayAddress::parse(&token.host)
            .map_err(|e| error(POOL_TOKEN, format!("the token's {e}")))?;
        let gateways = gateway_urls(&token.host, vars.get(GATEWAY_URLS))?;
        let target = BaseEndpoint::parse(v.required(TARGET_BASE_ENDPOINT)?)
            .map_err(|e| error(TARGET_BASE_ENDPOINT, e))?;
        let vendor: Vendor = v.required(VENDOR)?.parse().map_err(|e| error(VENDOR, e))?;
        let allowed_projects = allowed_projects(&v)?;
        let parallelism = parallelism(&v)?;
        let metadata = vars
            .iter()
            .filter_map(|(name, value)| {
                let tag = name.strip_prefix(METADATA_PREFIX)?;
                (!tag.is_empty()).then(|| (tag.to_string(), value.clone()))
            })
            .collect();
        let custom_cas = custom_cas(&v)?;
        let proxy = ProxyConfig::from_vars(vars).map_err(|(name, e)| error(name, e))?;
        let blocklist = match v.get(BLOCKLIST_PATH) {
            None => Blocklist::default(),
            Some(path) => Blocklist::load(path).map_err(|e| error(BLOCKLIST_PATH, e))?,
        };
        let warnings = start_warnings(vars, vendor, &target);
        Ok(AgentConfig {
            blocklist,
            warnings,
            disable_response_compression: v.flag(HTTP_DISABLE_RESPONSE_COMPRESSION)?,
            disable_url_rewrite: v.flag(DISABLE_URL_REWRITE)?,
            token,
            gateways,
            target,
            vendor,
            allowed_projects,
            parallelism,
            metadata,
            keepalive: keepalive(v.duration(KEEPALIVE_INTERVAL, Duration::from_secs(20))?)?,
            upstream_connect_timeout: v
                .duration(UPSTREAM_CONNECT_TIMEOUT, Duration::from_secs(10))?,
            upstream_read_timeout: v.duration(UPSTREAM_READ_TIMEOUT, Duration::from_secs(60))?,
            drain_timeout: v.duration(DRAIN_TIMEOUT, Duration::from_secs(30))?,
            max_stream_age: v
                .get(MAX_STREAM_AGE)
                .map(|t| duration::parse(t).map_err(|e| error(MAX_STREAM_AGE, e)))
                .transpose()?,
            debug_print_all: v.flag(DEBUG_PRINT_ALL)?,
            custom_cas,
            dial_insecure: v.flag(DIAL_INSECURE)?,
            proxy,
            metrics_addr: metrics_addr(&v)?,
            log_format: match v.get(LOG_FORMAT) {
                None => crate::observe::LogFormat::Text,
                Some(text) => text.parse().map_err(|e| error(LOG_FORMAT, e))?,
            },
            log_level: log_level(&v)?,
            webhook: crate::webhook::settings::from_vars(vars)?,
        })
    }
}

/// The variables, each read trimmed; set but blank counts as unset.
struct Vars<'a>(&'a BTreeMap<String, String>);

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name)
            .ok_or_else(|| error(name, "is required but not set"))
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => duration::parse(text).map_err(|e| error(name, e)),
        }
    }

    /// A boolean, spelled as Go's `strconv.ParseBool` reads it (`1`, `t`, `T`, `TRUE`,
    /// `true`, `True` and the same for false) or as `yes`/`no`, `on`/`off`, in any case.
    fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "f" | "0" | "no" | "off") => Ok(false),
            Some("true" | "t" | "1" | "yes" | "on") => Ok(true),
            Some(_) => Err(error(
                name,
                format!(
                    "expected true or false (or 1/0, t/f, yes/no, on/off), got \"{}\"",
                    self.get(name).unwrap_or_default()
                ),
            )),
        }
    }
}

/// One warning naming every variable that is set and ignored: those the original agent
/// reads that mean nothing here, and `SPACELIFT_VCS_AGENT_*` names no setting has (a typo
/// would otherwise go unnoticed); and one for a GitLab over plain `http://`.
fn start_warnings(
    vars: &BTreeMap<String, String>,
    vendor: Vendor,
    target: &BaseEndpoint,
) -> Vec<String> {
    let mut ignored = Vec::new();
    for (name, value) in vars.iter().filter(|(n, _)| n.starts_with(AGENT_PREFIX)) {
        match SETTINGS.iter().find(|s| s.env == name) {
            Some(s) => match s.kind.ignored() {
                Some(why) if !value.trim().is_empty() => ignored.push(format!("{name} ({why})")),
                _ => {}
            },
            None => ignored.push(format!("{name} (not a setting of this agent)")),
        }
    }
    let mut warnings = Vec::new();
    if !ignored.is_empty() {
        warnings.push(format!("ignored settings: {}", ignored.join(", ")));
    }
    if vendor == Vendor::Gitlab && target.scheme == "http" {
        warnings.push(format!(
            "{TARGET_BASE_ENDPOINT} is plain http://: the SaaS's GitLab tokens cross the network in clear, and GitLab may not work correctly over HTTP; use https://"
        ));
    }
    warnings
}

/// The anchored project regex; set but blank is refused rather than read as "every project".
fn allowed_projects(v: &Vars) -> Result<Option<regex::Regex>, ConfigError> {
    if v.0
        .get(ALLOWED_PROJECTS)
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(error(
            ALLOWED_PROJECTS,
            "is set but empty: unset it to allow every project, or give a regex of the projects to allow",
        ));
    }
    let Some(pattern) = v.get(ALLOWED_PROJECTS) else {
        return Ok(None);
    };
    allowlist::project_pattern(pattern).map(Some).map_err(|e| {
        error(
            ALLOWED_PROJECTS,
            format!("invalid regex: {}", e.to_string().replace('\n', " ")),
        )
    })
}

fn parallelism(v: &Vars) -> Result<usize, ConfigError> {
    let Some(text) = v.get(PARALLELISM) else {
        return Ok(4);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(error(
            PARALLELISM,
            format!("expected an integer from 1 to 256, got \"{text}\""),
        )),
    }
}

/// CAs given inline (base64 PEM) and in a file; both add to the system's.
fn custom_cas(v: &Vars) -> Result<CustomCas, ConfigError> {
    let mut custom_cas = CustomCas::default();
    if let Some(text) = v.get(CA_CERT) {
        custom_cas
            .0
            .extend(tls::decode_base64_bundle(text).map_err(|e| error(CA_CERT, e))?);
    }
    if let Some(path) = v.get(CA_CERT_FILE) {
        custom_cas
            .0
            .extend(tls::read_bundle_file(path).map_err(|e| error(CA_CERT_FILE, e))?);
    }
    Ok(custom_cas)
}

fn metrics_addr(v: &Vars) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(text) = v.get(METRICS_ADDR) else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        error(
            METRICS_ADDR,
            format!("expected an address such as 127.0.0.1:9090, got \"{text}\""),
        )
    })
}

fn log_level(v: &Vars) -> Result<Option<String>, ConfigError> {
    match v.get(LOG_LEVEL).map(str::to_ascii_lowercase) {
        None => Ok(None),
        Some(level) if crate::observe::logging::LEVELS.contains(&level.as_str()) => Ok(Some(level)),
        Some(other) => Err(error(
            LOG_LEVEL,
            format!("expected error, warn, info, debug or trace, got \"{other}\""),
        )),
    }
}

/// The token's host, then each further gateway of the comma-separated list. An entry must
/// be a `ws://` or `wss://` URL like the token's host; an empty entry or one listed twice
/// (the token's host included) is refused, so a typo does not silently shrink the list.
fn gateway_urls(host: &str, list: Option<&String>) -> Result<Vec<String>, ConfigError> {
    let mut gateways = vec![host.to_string()];
    let Some(list) = list.filter(|l| !l.trim().is_empty()) else {
        return Ok(gateways);
    };
    for (i, entry) in list.split(',').map(str::trim).enumerate() {
        let n = i + 1;
        if entry.is_empty() {
            return Err(error(GATEWAY_URLS, format!("entry {n} is empty")));
        }
        let address = GatewayAddress::parse(entry)
            .map_err(|e| error(GATEWAY_URLS, format!("entry {n}: {e}")))?;
        let same = |g: &String| {
            GatewayAddress::parse(g).is_ok_and(|a| a.connect_url == address.connect_url)
        };
        if gateways.iter().any(same) {
            return Err(error(
                GATEWAY_URLS,
                format!("entry {n} repeats the token's host or an earlier entry"),
            ));
        }
        gateways.push(entry.to_string());
    }
    Ok(gateways)
}

/// The keepalive interval, at least a second: pings more often only load both sides.
fn keepalive(interval: Duration) -> Result<Duration, ConfigError> {
    if interval < Duration::from_secs(1) {
        return Err(error(
            KEEPALIVE_INTERVAL,
            format!("must be at least 1s, got {} ms", interval.as_millis()),
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;

    fn token() -> String {
        token_for("ws://127.0.0.1:1984")
    }

    fn token_for(host: &str) -> String {
        Token {
            host: host.into(),
            key: Secret::new("k3y"),
            pool_ulid: "01J0000000000000000000000".into(),
        }
        .encode()
    }

    fn vars(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut v: BTreeMap<String, String> = [
            (POOL_TOKEN, token().as_str()),
            (TARGET_BASE_ENDPOINT, "https://git.internal:8443/gitlab/"),
            (VENDOR, "gitlab"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        for (a, b) in extra {
            v.insert(a.to_string(), b.to_string());
        }
        v
    }

    #[test]
    fn defaults_and_metadata() {
        let c = AgentConfig::from_vars(&vars(&[("SPACELIFT_METADATA_site", "eu-1")])).unwrap();
        assert_eq!(c.parallelism, 4);
        assert_eq!(c.keepalive, Duration::from_secs(20));
        assert_eq!(
            c.target.url_for("/api/v4/user?a=1"),
            "https://git.internal:8443/gitlab/api/v4/user?a=1"
        );
        assert_eq!(c.metadata.get("site").map(String::as_str), Some("eu-1"));
        assert!(c.allowed_projects.is_none());
        assert!(!format!("{c:?}").contains("k3y"), "Debug leaks the key");
    }

    #[test]
    fn gateway_urls_follow_the_token_host() {
        let c = AgentConfig::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.gateways, ["ws://127.0.0.1:1984"]);
        let listed = " wss://gw-2.example/vcs , ws://127.0.0.1:1985 ";
        let c = AgentConfig::from_vars(&vars(&[(GATEWAY_URLS, listed)])).unwrap();
        assert_eq!(
            c.gateways,
            [
                "ws://127.0.0.1:1984",
                "wss://gw-2.example/vcs",
                "ws://127.0.0.1:1985"
            ]
        );
        for repeated in ["ws://127.0.0.1:1984/", "ws://a:1,ws://a:1"] {
            let e = AgentConfig::from_vars(&vars(&[(GATEWAY_URLS, repeated)])).unwrap_err();
            assert_eq!(e.variable, GATEWAY_URLS, "{repeated}");
            assert!(e.problem.contains("repeats"), "{repeated}: {e}");
        }
    }

    #[test]
    fn each_error_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(PARALLELISM, "abc")],
                "SPACELIFT_VCS_AGENT_PARALLELISM: expected an integer from 1 to 256, got \"abc\"",
            ),
            (
                &[(PARALLELISM, "0")],
                "SPACELIFT_VCS_AGENT_PARALLELISM: expected an integer from 1 to 256, got \"0\"",
            ),
            (
                &[(PARALLELISM, "257")],
                "SPACELIFT_VCS_AGENT_PARALLELISM: expected",
            ),
            (
                &[(VENDOR, "gitea")],
                "SPACELIFT_VCS_AGENT_VENDOR: expected one of",
            ),
            (
                &[(TARGET_BASE_ENDPOINT, "ftp://x")],
                "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: expected an http",
            ),
            (
                &[(TARGET_BASE_ENDPOINT, "https://u:pw@x")],
                "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: user:password@ is not allowed (the SaaS sends its own credentials), got \"https://***@x\"",
            ),
            (
                &[(TARGET_BASE_ENDPOINT, "https://x/?private_token=pw")],
                "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: a query or fragment is not allowed, got \"https://x/?private_token=***\"",
            ),
            (
                &[(TARGET_BASE_ENDPOINT, "https://x/a#top")],
                "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: a query or fragment is not allowed",
            ),
            (
                &[(TARGET_BASE_ENDPOINT, "https://x:70000/")],
                "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: port must be from 1 to 65535",
            ),
            (
                &[(TARGET_BASE_ENDPOINT, "https://x:0/")],
                "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: port must be from 1 to 65535",
            ),
            (
                &[(ALLOWED_PROJECTS, "  ")],
                "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS: is set but empty: unset it to allow every project",
            ),
            (
                &[(ALLOWED_PROJECTS, "")],
                "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS: is set but empty",
            ),
            (
                &[(POOL_TOKEN, &token_for("ws://gateway example:1984"))],
                "SPACELIFT_VCS_AGENT_POOL_TOKEN: the token's gateway address",
            ),
            (
                &[(POOL_TOKEN, &token_for("ws://gateway:99999"))],
                "SPACELIFT_VCS_AGENT_POOL_TOKEN: the token's gateway address",
            ),
            (
                &[(KEEPALIVE_INTERVAL, "500ms")],
                "SPACELIFT_VCS_AGENT_KEEPALIVE_INTERVAL: must be at least 1s, got 500 ms",
            ),
            (
                &[("NO_PROXY", "localhost,10.0.0.0/33")],
                "NO_PROXY: ",
            ),
            (
                &[(ALLOWED_PROJECTS, "(")],
                "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS: invalid regex",
            ),
            (
                &[(POOL_TOKEN, "!!")],
                "SPACELIFT_VCS_AGENT_POOL_TOKEN: not valid base64",
            ),
            (
                &[(KEEPALIVE_INTERVAL, "soon")],
                "SPACELIFT_VCS_AGENT_KEEPALIVE_INTERVAL: expected a duration",
            ),
            (
                &[(DEBUG_PRINT_ALL, "maybe")],
                "SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL: expected true or false",
            ),
            (
                &[(CA_CERT, "not base64!")],
                "SPACELIFT_VCS_AGENT_CA_CERT: not valid base64",
            ),
            (
                &[(CA_CERT, "aGVsbG8=")],
                "SPACELIFT_VCS_AGENT_CA_CERT: no certificate",
            ),
            (
                &[(CA_CERT_FILE, "/nonexistent/ca.pem")],
                "SPACELIFT_VCS_AGENT_CA_CERT_FILE: cannot read",
            ),
            (
                &[(DIAL_INSECURE, "perhaps")],
                "SPACELIFT_VCS_AGENT_DIAL_INSECURE: expected true or false",
            ),
            (
                &[("HTTPS_PROXY", "socks5://u:pw@proxy:1080")],
                "HTTPS_PROXY: proxy scheme",
            ),
        ];
        for (extra, expected) in cases {
            let err = AgentConfig::from_vars(&vars(extra))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
            assert!(!err.contains('\n'), "{err:?} is not one line");
            assert!(!err.contains("pw"), "{err:?} leaks a password");
        }
        let mut missing = vars(&[]);
        missing.remove(POOL_TOKEN);
        assert_eq!(
            AgentConfig::from_vars(&missing).unwrap_err().to_string(),
            "SPACELIFT_VCS_AGENT_POOL_TOKEN: is required but not set"
        );
    }

    #[test]
    fn proxies_and_insecure_dial() {
        let c = AgentConfig::from_vars(&vars(&[
            ("HTTPS_PROXY", "http://user:pr0xy-pw@proxy.corp:3128"),
            ("NO_PROXY", "git.internal"),
            (DIAL_INSECURE, "true"),
        ]))
        .unwrap();
        assert!(c.dial_insecure);
        assert_eq!(c.proxy.https.as_ref().unwrap().host, "proxy.corp");
        assert!(c.proxy.for_target(true, "git.internal").is_none());
        assert!(
            !format!("{c:?}").contains("pr0xy-pw"),
            "Debug leaks the proxy password"
        );
    }

    #[test]
    fn observability_variables() {
        let c = AgentConfig::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.log_format, crate::observe::LogFormat::Text);
        assert_eq!(c.log_level, None);
        let c = AgentConfig::from_vars(&vars(&[
            (METRICS_ADDR, "127.0.0.1:9090"),
            (LOG_FORMAT, "json"),
            (LOG_LEVEL, "DEBUG"),
        ]))
        .unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.log_format, crate::observe::LogFormat::Json);
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        for (name, value, expected) in [
            (METRICS_ADDR, "localhost", "SPACELIFT_VCS_AGENT_METRICS_ADDR: expected an address such as 127.0.0.1:9090, got \"localhost\""),
            (LOG_FORMAT, "xml", "SPACELIFT_VCS_AGENT_LOG_FORMAT: expected text or json, got \"xml\""),
            (LOG_LEVEL, "loud", "SPACELIFT_VCS_AGENT_LOG_LEVEL: expected error, warn, info, debug or trace, got \"loud\""),
        ] {
            let err = AgentConfig::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
        for name in [METRICS_ADDR, LOG_FORMAT, LOG_LEVEL] {
            assert!(
                SETTINGS.iter().any(|s| s.env == name),
                "{name} not in --help"
            );
        }
    }

    #[test]
    fn booleans_read_gos_spellings_and_ours() {
        for (value, expected) in [
            ("1", true),
            ("t", true),
            ("T", true),
            ("TRUE", true),
            ("true", true),
            ("True", true),
            ("yes", true),
            ("on", true),
            ("0", false),
            ("f", false),
            ("F", false),
            ("FALSE", false),
            ("false", false),
            ("False", false),
            ("no", false),
            ("off", false),
            ("", false),
        ] {
            let c = AgentConfig::from_vars(&vars(&[(DIAL_INSECURE, value)])).unwrap();
            assert_eq!(c.dial_insecure, expected, "{value:?}");
        }
        let e = AgentConfig::from_vars(&vars(&[(DEBUG_PRINT_ALL, "tru")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL: expected true or false (or 1/0, t/f, yes/no, on/off), got \"tru\""
        );
    }

    #[test]
    fn ignored_and_unknown_agent_variables_make_one_warning() {
        let c = AgentConfig::from_vars(&vars(&[])).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = AgentConfig::from_vars(&vars(&[
            (BUGSNAG_API_KEY, "b5g-s3cr3t"),
            (USE_ALLOWLIST, "true"),
            ("SPACELIFT_VCS_AGENT_PARALELISM", "8"),
            ("SPACELIFT_METADATA_site", "eu"),
            (BUGSNAG_DISABLE, ""),
        ]))
        .unwrap();
        assert_eq!(
            c.warnings,
            ["ignored settings: SPACELIFT_VCS_AGENT_BUGSNAG_API_KEY (error reporting to Bugsnag is not part of this agent), SPACELIFT_VCS_AGENT_PARALELISM (not a setting of this agent), SPACELIFT_VCS_AGENT_USE_ALLOWLIST (the vendor allowlist is always on)"]
        );
        assert!(!format!("{:?}", c.warnings).contains("s3cr3t"));
    }

    #[test]
    fn a_gitlab_over_plain_http_is_warned_about() {
        let plain = AgentConfig::from_vars(&vars(&[(TARGET_BASE_ENDPOINT, "http://git:80")]));
        let warnings = plain.unwrap().warnings;
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("plain http://"), "{warnings:?}");
        let github = [
            (TARGET_BASE_ENDPOINT, "http://git"),
            (VENDOR, "github_enterprise"),
        ];
        assert!(AgentConfig::from_vars(&vars(&github))
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn response_compression_and_blocklist_settings() {
        let c = AgentConfig::from_vars(&vars(&[])).unwrap();
        assert!(!c.disable_response_compression && c.blocklist.is_empty());
        let c = AgentConfig::from_vars(&vars(&[(HTTP_DISABLE_RESPONSE_COMPRESSION, "t")]));
        assert!(c.unwrap().disable_response_compression);
        let c = AgentConfig::from_vars(&vars(&[]));
        assert!(!c.unwrap().disable_url_rewrite, "on by default");
        let c = AgentConfig::from_vars(&vars(&[(DISABLE_URL_REWRITE, "true")]));
        assert!(c.unwrap().disable_url_rewrite);
        let e = AgentConfig::from_vars(&vars(&[(BLOCKLIST_PATH, "/nonexistent.yaml")]));
        let e = e.unwrap_err().to_string();
        assert!(
            e.starts_with("SPACELIFT_VCS_AGENT_BLOCKLIST_PATH: cannot read \"/nonexistent.yaml\""),
            "{e}"
        );
    }

    #[test]
    fn every_agent_variable_has_our_flag_and_one_entry() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert!(
                SETTINGS[..i].iter().all(|o| o.env != s.env),
                "{} twice",
                s.env
            );
            for flag in s.flags {
                assert_eq!(setting_for_flag(flag).map(|o| o.env), Some(s.env), "{flag}");
            }
            let Some(rest) = s.env.strip_prefix(AGENT_PREFIX) else {
                assert!(s.flags.is_empty(), "{}", s.env);
                continue;
            };
            let ours = format!("--{}", rest.to_ascii_lowercase().replace('_', "-"));
            assert!(s.flags.contains(&ours.as_str()), "{} lacks {ours}", s.env);
        }
        for original in [
            "--token",
            "--target-base-endpoint",
            "--vendor",
            "--allowed-projects",
            "--parallelism",
            "--bugsnag-api-key",
            "--disable-bugsnag",
            "--use-allowlist",
            "--blocklist-path",
            "--debug-print-all",
            "--http-disable-response-compression",
            "--ca-cert",
            "--dial-insecure",
        ] {
            assert!(setting_for_flag(original).is_some(), "{original}");
        }
    }

    /// The README's table of agent settings names exactly the settings of [`SETTINGS`], with
    /// their flags and defaults: the two cannot drift apart.
    #[test]
    fn the_readme_table_is_the_settings_table() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("| variable | flags | default | meaning |")
            .expect("the agent settings table");
        let quoted = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let mut seen = Vec::new();
        for row in readme[start..].lines().skip(2) {
            let Some(row) = row.strip_prefix('|') else {
                break;
            };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let names = quoted(cells[0]);
            for name in &names {
                let s = SETTINGS.iter().find(|s| s.env == name);
                let s = s.unwrap_or_else(|| panic!("README lists {name}, no setting has it"));
                let flags: Vec<&str> = s.flags.to_vec();
                assert_eq!(quoted(cells[1]), flags, "flags of {name}");
                let default = cells[2].trim_matches('`');
                assert_eq!(default, s.default, "default of {name}");
                seen.push(s.env);
            }
        }
        for s in SETTINGS {
            assert!(seen.contains(&s.env), "README's table lacks {}", s.env);
        }
    }

    #[test]
    fn allowed_projects_is_anchored() {
        let c = AgentConfig::from_vars(&vars(&[(ALLOWED_PROJECTS, "group/.*")])).unwrap();
        let re = c.allowed_projects.unwrap();
        assert!(re.is_match("group/repo"));
        assert!(!re.is_match("evil/group/repo"));
    }
}
