//! What `vcs-gateway serve` runs with, and the start-up policy that checks it before anything
//! listens: the store (`--data-dir` or `--redis`), the admin token (given, or made on first
//! start and kept in the data directory; with Redis given, and the same on every replica),
//! the peer port's secret, the TLS files, and the public and front URLs.
//!
//! Each `serve` setting is defined once, in [`SETTINGS`]: its flag, value name, default and
//! meaning; the binary reads the command line against it and prints `serve --help` from it.
//! Every problem is a [`ConfigError`], one line that names the flag.

use super::operator::admin;
use super::replicas::signing::PeerSecret;
use super::replicas::PeerOptions;
use super::state::settings::GatewaySettings;
use super::store::redis::RedisStore;
use super::store::{validate_name, Store, StoreError};
use crate::observe::logging::{LogFormat, UnknownLogFormat};
use crate::token::Secret;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where `serve --help` lists a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Among `serve`'s options.
    Always,
    /// Under "serve --redis URL also takes".
    WithRedis,
    /// Not listed (for tests).
    Hidden,
}

/// One `serve` setting: its flag, the name of its value (empty for a switch), a second flag
/// listed with it (a certificate's key), its default (in brackets; `None` for none), its
/// meaning (lines of `serve --help`) and where it is listed.
#[derive(Debug)]
pub struct Setting {
    pub flag: &'static str,
    pub value: &'static str,
    pub with: Option<&'static str>,
    pub default: Option<&'static str>,
    pub meaning: &'static str,
    pub shown: Shown,
}

const fn setting(
    flag: &'static str,
    value: &'static str,
    default: Option<&'static str>,
    meaning: &'static str,
) -> Setting {
    Setting {
        flag,
        value,
        with: None,
        default,
        meaning,
        shown: Shown::Always,
    }
}

const fn with_redis(setting: Setting) -> Setting {
    Setting {
        shown: Shown::WithRedis,
        ..setting
    }
}

const fn paired(setting: Setting, with: &'static str) -> Setting {
    Setting {
        with: Some(with),
        ..setting
    }
}

/// Every `serve` setting, in the order `serve --help` lists them.
pub const SETTINGS: &[Setting] = &[
    setting("--agent-listen", "ADDR", Some("127.0.0.1:1984"), "agent WebSocket port"),
    setting("--api-listen", "ADDR", Some("127.0.0.1:1985"), "private:// front, /healthz, /metrics, the panel (/) and /api"),
    setting("--metrics-listen", "ADDR", Some("off"), "also serve /healthz and /metrics in full, without the admin\ntoken, on this address (a private scrape network)"),
    setting("--queue-timeout", "DUR", Some("30s"), "how long a request waits for an idle stream"),
    setting("--keepalive", "DUR", Some("20s"), "ping idle agent streams; drop after 3 silent intervals"),
    setting("--exchange-timeout", "DUR", Some("120s"), "longest silence from an agent inside one request"),
    setting("--drain-timeout", "DUR", Some("30s"), "on SIGTERM/SIGINT/SIGHUP, how long requests in flight may finish"),
    setting("--log-format", "FORMAT", Some("text"), "text or json (one object a line, the agent's fields)"),
    setting("--max-callers", "N", Some("1024"), "tunnel requests served at once (a connection and thread\neach); idle connections are closed to admit new ones"),
    setting("--min-upload-rate", "BYTES", Some("240; 0 = off"), "a request body holding an agent stream must bring this many\nbytes/s in every 5 s window after the grace, else 408"),
    setting("--upload-grace", "DUR", Some("5s"), "how long before the upload rate is enforced"),
    setting("--min-download-rate", "BYTES", Some("1024; 0 = off"), "a caller must take an answer that holds an agent stream at\nthis many bytes/s in every 5 s it keeps the gateway waiting,\nafter the grace, else it is cut off"),
    setting("--download-grace", "DUR", Some("10s"), "waiting for the caller before the download rate counts"),
    setting("--download-stall", "DUR", Some("30s"), "longest a write to a caller may take nothing, rate or not"),
    setting("--max-callers-per-address", "N", Some("256"), "connections one peer address may hold on the api port"),
    paired(setting("--tls-cert", "PEM", Some("plain"), "serve the agent port over TLS (tokens then use wss://)"), "--tls-key"),
    paired(setting("--api-tls-cert", "PEM", Some("plain"), "serve the api port over TLS (may be the same files)"), "--api-tls-key"),
    setting("--api-client-ca", "PEM", Some("off"), "ask api-port clients for a certificate from these CAs; one\nregistered with `caller create --client-cert` identifies its\ncaller without the secret header (needs --api-tls-cert)"),
    setting("--public-url", "URL", Some("ws://<agent port>"), "agent URL put in tokens the panel/API creates"),
    setting("--front-url", "URL", Some("the api port's\nscheme and the caller's Host"), "the URL callers reach the api port at, behind a reverse\nproxy (http(s)://host[:port][/prefix]); answers point their\nVCS URLs back at URL/private/<pool>/..."),
    setting("--allow-http-webhooks", "", Some("https:// only"), "also deliver webhooks to http:// URLs (tests)"),
    setting("--admin-token", "TOKEN", None, "protects the panel (/), the API (/api/...), /metrics and the\nfigures of /healthz, at least 16 characters; prefer env\nVCS_GATEWAY_ADMIN_TOKEN (not in `ps`). Without it one is made\non first start and kept in DIR/admin-token (0600)."),
    with_redis(setting("--replica-id", "ID", Some("generated"), "this replica's name in logs and Redis")),
    with_redis(setting("--peer-listen", "ADDR", Some("off"), "the replica-to-replica port: a request for a pool with no\nidle stream here goes to a replica that has one")),
    with_redis(setting("--peer-advertise", "ADDR", Some("the bound one;\nrequired when --peer-listen binds 0.0.0.0 or ::"), "the address other replicas reach this one at")),
    with_redis(setting("--peer-secret", "SECRET", None, "signs forwarded requests, the same on every replica, at least\n32 characters; prefer env VCS_GATEWAY_PEER_SECRET (not in `ps`)")),
    Setting {
        shown: Shown::Hidden,
        ..setting("--redis-poll-only", "", None, "changes reach this replica by the polled version alone")
    },
];

/// The setting `flag` belongs to (its own flag, or the one listed with it).
pub fn find(flag: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.flag == flag || s.with == Some(flag))
}

/// The `serve --help` lines of the settings listed `shown`: the flags and value names in a
/// column of 24, then the meaning and the default in brackets.
pub fn help(shown: Shown) -> String {
    let mut text = String::new();
    for setting in SETTINGS.iter().filter(|s| s.shown == shown) {
        let value = |flag: &str| match setting.value {
            "" => flag.to_string(),
            value => format!("{flag} {value}"),
        };
        let mut head = value(setting.flag);
        if let Some(with) = setting.with {
            head = format!("{head} {}", value(with));
        }
        let mut meaning = setting.meaning.to_string();
        if let Some(default) = setting.default {
            meaning = format!("{meaning} [{default}]");
        }
        let meaning = meaning.replace('\n', &format!("\n{:32}", ""));
        if head.len() < 24 {
            text.push_str(&format!("        {head:<23} {meaning}\n"));
        } else {
            text.push_str(&format!("        {head}\n{:32}{meaning}\n", ""));
        }
    }
    text
}

/// Why the gateway's settings were refused: one line naming the flag (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Required(&'static str),
    #[error("{flag}: {problem}")]
    Invalid { flag: String, problem: Problem },
    #[error("{0} and {1} go together")]
    Together(&'static str, &'static str),
    #[error("--redis and --data-dir: give one of them")]
    TwoStores,
    #[error("{0} needs {1}")]
    Needs(&'static str, &'static str),
    #[error(
        "--peer-listen needs --peer-secret (or VCS_GATEWAY_PEER_SECRET), the same on every replica"
    )]
    PeerSecretRequired,
    /// The peer secret was refused (its own sentence).
    #[error(transparent)]
    PeerSecret(#[from] crate::gateway::replicas::signing::WeakSecret),
    #[error("--api-client-ca needs --api-tls-cert and --api-tls-key")]
    ClientCaAlone,
    #[error("--admin-token (or VCS_GATEWAY_ADMIN_TOKEN) is required with --redis: give every replica the same one")]
    AdminTokenRequired,
    #[error("--admin-token: not the admin token the other replicas use (its SHA-256 is in Redis): give every replica the same one")]
    AdminTokenDiffers,
    #[error(transparent)]
    AdminToken(#[from] admin::TokenError),
    /// Redis could not be followed (its own sentence).
    #[error(transparent)]
    Redis(Box<crate::gateway::store::redis::ConnectError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is wrong with a flag's value.
pub type Problem = Box<dyn std::error::Error + Send + Sync>;

/// `flag`'s value was refused for `problem`.
pub fn invalid(flag: &str, problem: impl Into<Problem>) -> ConfigError {
    ConfigError::Invalid {
        flag: flag.into(),
        problem: problem.into(),
    }
}

/// Where pools and callers live: `--data-dir DIR` or `--redis URL` (every subcommand).
#[derive(Debug, Default)]
pub struct StoreFlags {
    pub data_dir: Option<PathBuf>,
    pub redis: Option<String>,
    pub redis_ca: Option<PathBuf>,
}

/// Where the store is, once the flags and `VCS_GATEWAY_REDIS_URL` are read.
pub(crate) enum Location {
    Dir(PathBuf),
    /// The URL, and the CAs of `--redis-ca` for `rediss://`.
    Redis(String, Option<PathBuf>),
}

impl StoreFlags {
    pub(crate) fn location(self) -> Result<Location, ConfigError> {
        let ca = self.redis_ca;
        match (self.data_dir, self.redis) {
            (Some(_), Some(_)) => Err(ConfigError::TwoStores),
            (Some(_), None) if ca.is_some() => Err(ConfigError::Needs("--redis-ca", "--redis")),
            (Some(dir), None) => Ok(Location::Dir(dir)),
            (None, Some(url)) => Ok(Location::Redis(url, ca)),
            // A URL with a password stays out of `ps` this way.
            (None, None) => std::env::var("VCS_GATEWAY_REDIS_URL")
                .ok()
                .filter(|url| !url.trim().is_empty())
                .map(|url| Location::Redis(url, ca))
                .ok_or(ConfigError::Required("--data-dir (or --redis)")),
        }
    }

    pub fn open(self) -> Result<Store, ConfigError> {
        self.location()?.open()
    }
}

impl Location {
    pub(crate) fn open(&self) -> Result<Store, ConfigError> {
        match self {
            Location::Dir(dir) => Ok(Store::open(dir)?),
            Location::Redis(url, ca) => RedisStore::connect_with(url, ca.as_deref())
                .map(Store::redis)
                .map_err(|e| ConfigError::Redis(Box::new(e))),
        }
    }
}

/// TLS for the two ports: `None` serves plain (loopback, or behind a TLS-terminating load
/// balancer). Handshakes run on each connection's own thread.
#[derive(Clone, Default)]
pub(crate) struct GatewayTls {
    pub agent: Option<Arc<rustls::ServerConfig>>,
    pub api: Option<Arc<rustls::ServerConfig>>,
}

/// `serve`'s TLS files, each named by its flag.
#[derive(Debug, Default)]
pub(crate) struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub api_cert: Option<PathBuf>,
    pub api_key: Option<PathBuf>,
    pub api_client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The server configurations of both ports; a certificate without its key is refused.
    fn configs(&self) -> Result<GatewayTls, ConfigError> {
        let agent = server_tls(&self.cert, &self.key, "--tls-cert", "--tls-key")?;
        let api = match (&self.api_cert, &self.api_key, &self.api_client_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(
                crate::net::tls::server_config_for_clients(cert, key, Some(ca))
                    .map_err(|e| invalid("--api-tls-cert/--api-tls-key/--api-client-ca", e))?,
            ),
            (_, _, Some(_)) => return Err(ConfigError::ClientCaAlone),
            (cert, key, None) => server_tls(cert, key, "--api-tls-cert", "--api-tls-key")?,
        };
        Ok(GatewayTls { agent, api })
    }
}

/// A TLS server configuration from a certificate/key flag pair; both or neither.
fn server_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    cert_flag: &'static str,
    key_flag: &'static str,
) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => crate::net::tls::server_config(cert, key)
            .map(Some)
            .map_err(|e| invalid(&format!("{cert_flag}/{key_flag}"), e)),
        _ => Err(ConfigError::Together(cert_flag, key_flag)),
    }
}

/// `--peer-listen`, `--peer-advertise`, `--peer-secret`.
#[derive(Debug, Default)]
pub(crate) struct PeerFlags {
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub secret: Option<String>,
}

impl PeerFlags {
    /// Checked before anything starts: `--peer-listen` needs `--redis` and a strong
    /// `--peer-secret` (or `VCS_GATEWAY_PEER_SECRET`, which stays out of `ps`).
    fn options(self, location: &Location) -> Result<Option<PeerOptions>, ConfigError> {
        let secret = self
            .secret
            .or_else(|| std::env::var("VCS_GATEWAY_PEER_SECRET").ok())
            .filter(|s| !s.is_empty());
        let Some(listen) = self.listen else {
            if self.advertise.is_some() {
                return Err(ConfigError::Needs("--peer-advertise", "--peer-listen"));
            }
            return Ok(None);
        };
        if let Location::Dir(_) = location {
            return Err(ConfigError::Needs("--peer-listen", "--redis"));
        }
        let secret = secret.ok_or(ConfigError::PeerSecretRequired)?;
        let secret = PeerSecret::new(Secret::new(secret)).map_err(ConfigError::PeerSecret)?;
        Ok(Some(PeerOptions {
            listen,
            advertise: self.advertise,
            secret,
        }))
    }
}

/// The admin token and where it came from (logged at start, never its value).
pub(crate) enum AdminToken {
    Given(Secret),
    Made(Secret, PathBuf),
    Kept(Secret, PathBuf),
}

impl AdminToken {
    /// `--admin-token` or `VCS_GATEWAY_ADMIN_TOKEN`; else, with a data directory, the one kept
    /// in it (made on first start). Replicas sharing Redis must be given the same one.
    fn resolve(given: Option<String>, location: &Location) -> Result<AdminToken, ConfigError> {
        let given = given
            .or_else(|| std::env::var("VCS_GATEWAY_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        match (given, location) {
            (Some(token), _) => {
                admin::check_token(&token)?;
                Ok(AdminToken::Given(token))
            }
            (None, Location::Redis(..)) => Err(ConfigError::AdminTokenRequired),
            (None, Location::Dir(dir)) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    invalid(
                        "--data-dir",
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
                let path = admin::token_path(dir);
                Ok(match admin::load_or_create(dir)? {
                    (token, true) => AdminToken::Made(token, path),
                    (token, false) => AdminToken::Kept(token, path),
                })
            }
        }
    }

    /// Replicas sharing Redis must use one admin token: its hash is kept there.
    fn check_shared(&self, store: &Store) -> Result<(), ConfigError> {
        let (Some(shared), AdminToken::Given(token)) = (store.shared(), self) else {
            return Ok(());
        };
        let hash = crate::token::key_hash(token.expose());
        if !shared
            .same_admin_token(&hash)
            .map_err(|e| invalid("--redis", e.to_string()))?
        {
            return Err(ConfigError::AdminTokenDiffers);
        }
        Ok(())
    }

    /// Where the token came from, for the log.
    fn describe(&self) -> String {
        match self {
            AdminToken::Given(_) => "the admin token is the one given (--admin-token or VCS_GATEWAY_ADMIN_TOKEN)".to_string(),
            AdminToken::Made(_, path) => format!(
                "no admin token given: made one and wrote it to {} (mode 0600); the panel, /api, /metrics and /healthz figures need it",
                path.display()
            ),
            AdminToken::Kept(_, path) => format!(
                "no admin token given: using the one in {}",
                path.display()
            ),
        }
    }

    fn secret(self) -> Secret {
        match self {
            AdminToken::Given(s) | AdminToken::Made(s, _) | AdminToken::Kept(s, _) => s,
        }
    }
}

/// The agent URL put in tokens must be one an agent can dial, or every token made with it
/// is refused by the agent it is given to.
pub fn check_public_url(url: &str) -> Result<(), ConfigError> {
    crate::net::dial::GatewayAddress::parse(url)
        .map(|_| ())
        .map_err(|e| invalid("--public-url", e))
}

/// `--front-url`: an `http` or `https` URL with a host, maybe a path prefix, no query or
/// fragment; kept without its trailing `/`.
fn front_url(url: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| invalid("--front-url", why.to_string());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("expected http://HOST[:PORT][/PREFIX] or https://..."))?;
    let host = rest.split('/').next().unwrap_or("");
    let plain = |b: u8| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b);
    if host.is_empty() || !host.bytes().all(plain) {
        return Err(bad("expected a host (and port) after the scheme"));
    }
    if rest.contains(['?', '#'])
        || rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("a query, fragment or space has no place in it"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Where `serve` listens.
#[derive(Debug)]
pub(crate) struct Ports {
    pub agent: String,
    pub api: String,
    pub metrics: Option<String>,
}

/// What `serve` runs with, as given: [`Config::set`] takes each setting of [`SETTINGS`];
/// [`Config::check`] applies the start-up policy.
pub struct Config {
    pub store: StoreFlags,
    pub(crate) ports: Ports,
    pub(crate) settings: GatewaySettings,
    pub drain_timeout: Duration,
    pub(crate) tls: TlsFiles,
    pub(crate) public_url: Option<String>,
    pub(crate) admin_token: Option<String>,
    pub(crate) replica_id: Option<String>,
    pub(crate) poll_only: bool,
    pub(crate) peer: PeerFlags,
    pub(crate) log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            store: StoreFlags::default(),
            ports: Ports {
                agent: "127.0.0.1:1984".into(),
                api: "127.0.0.1:1985".into(),
                metrics: None,
            },
            settings: GatewaySettings::default(),
            drain_timeout: Duration::from_secs(30),
            tls: TlsFiles::default(),
            public_url: None,
            admin_token: None,
            replica_id: None,
            poll_only: false,
            peer: PeerFlags::default(),
            log_format: LogFormat::Text,
        }
    }
}

fn duration(flag: &str, value: &str) -> Result<Duration, ConfigError> {
    crate::duration::parse(value).map_err(|e| invalid(flag, e))
}

/// Bytes per second for `flag` (0 turns the check off).
fn rate(flag: &str, value: &str) -> Result<u64, ConfigError> {
    value
        .parse::<u64>()
        .map_err(|_| invalid(flag, "expected bytes per second (0 turns it off)"))
}

/// A number of connections for `flag`: 1 to 65536.
fn connections(flag: &str, value: &str) -> Result<usize, ConfigError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=65_536).contains(n))
        .ok_or_else(|| invalid(flag, "expected a number from 1 to 65536"))
}

impl Config {
    /// Sets `flag` (one of [`SETTINGS`]) to `value` (ignored for a switch); `Ok(false)` when
    /// the flag is none of them.
    pub fn set(&mut self, flag: &str, value: &str) -> Result<bool, ConfigError> {
        let settings = &mut self.settings;
        let file = || Some(PathBuf::from(value));
        match flag {
            "--agent-listen" => self.ports.agent = value.into(),
            "--api-listen" => self.ports.api = value.into(),
            "--metrics-listen" => self.ports.metrics = Some(value.into()),
            "--queue-timeout" => settings.queue_timeout = duration(flag, value)?,
            "--keepalive" => settings.keepalive = duration(flag, value)?,
            "--exchange-timeout" => settings.exchange_timeout = duration(flag, value)?,
            "--drain-timeout" => self.drain_timeout = duration(flag, value)?,
            "--log-format" => {
                self.log_format = value
                    .parse()
                    .map_err(|e: UnknownLogFormat| invalid(flag, e))?
            }
            "--upload-grace" => settings.upload_grace = duration(flag, value)?,
            "--max-callers" => settings.max_callers = connections(flag, value)?,
            "--max-callers-per-address" => settings.max_per_address = connections(flag, value)?,
            "--min-upload-rate" => settings.min_upload_rate = rate(flag, value)?,
            "--min-download-rate" => settings.min_download_rate = rate(flag, value)?,
            "--download-grace" => settings.download_grace = duration(flag, value)?,
            "--download-stall" => {
                settings.download_stall = duration(flag, value)?;
                if settings.download_stall.is_zero() {
                    return Err(invalid(flag, "expected a duration of more than 0"));
                }
            }
            "--tls-cert" => self.tls.cert = file(),
            "--tls-key" => self.tls.key = file(),
            "--api-tls-cert" => self.tls.api_cert = file(),
            "--api-tls-key" => self.tls.api_key = file(),
            "--api-client-ca" => self.tls.api_client_ca = file(),
            "--public-url" => self.public_url = Some(value.into()),
            "--front-url" => settings.front_url = Some(front_url(value)?),
            "--allow-http-webhooks" => settings.allow_http_webhooks = true,
            "--admin-token" => self.admin_token = Some(value.into()),
            "--replica-id" => self.replica_id = Some(value.into()),
            "--redis-poll-only" => self.poll_only = true,
            "--peer-listen" => self.peer.listen = Some(value.into()),
            "--peer-advertise" => self.peer.advertise = Some(value.into()),
            "--peer-secret" => self.peer.secret = Some(value.into()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The start-up policy, before anything listens: the TLS files load, the public URL is
    /// one an agent can dial, the store opens, the admin token is resolved (and with Redis
    /// the one the other replicas use), the peer port has its secret.
    pub(crate) fn check(self) -> Result<Checked, ConfigError> {
        let tls = self.tls.configs()?;
        if let Some(url) = &self.public_url {
            check_public_url(url)?;
        }
        let location = self.store.location()?;
        let admin_token = AdminToken::resolve(self.admin_token, &location)?;
        let peers = self.peer.options(&location)?;
        let store = location.open()?;
        admin_token.check_shared(&store)?;
        let mut settings = self.settings;
        settings.public_url = self.public_url;
        if store.shared().is_some() {
            let id = match self.replica_id {
                Some(id) => {
                    validate_name(&id).map_err(|e| invalid("--replica-id", e))?;
                    id
                }
                None => ulid::Ulid::new().to_string().to_ascii_lowercase(),
            };
            settings.replica_id = Some(id);
            settings.poll_only = self.poll_only;
        }
        let where_token = admin_token.describe();
        settings.admin_token = Some(admin_token.secret());
        Ok(Checked {
            store,
            ports: self.ports,
            settings,
            tls,
            peers,
            where_token,
        })
    }
}

/// A [`Config`] that passed [`Config::check`]: the open store and what the ports serve with.
pub(crate) struct Checked {
    pub store: Store,
    pub ports: Ports,
    pub settings: GatewaySettings,
    pub tls: GatewayTls,
    pub peers: Option<PeerOptions>,
    /// Where the admin token came from, for the log.
    pub where_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value each setting accepts, by its value name.
    fn sample(setting: &Setting) -> &'static str {
        match setting.value {
            "DUR" => "1s",
            "N" | "BYTES" => "1",
            "FORMAT" => "json",
            "URL" => "http://127.0.0.1:1",
            _ => "x",
        }
    }

    #[test]
    fn every_listed_flag_is_one_config_set_takes_and_no_other() {
        for setting in SETTINGS {
            for flag in std::iter::once(setting.flag).chain(setting.with) {
                let mut config = Config::default();
                let taken = config.set(flag, sample(setting));
                assert!(matches!(taken, Ok(true)), "{flag}: {taken:?}");
                assert_eq!(find(flag).map(|s| s.flag), Some(setting.flag));
            }
        }
        assert!(matches!(
            Config::default().set("--data-dir", "x"),
            Ok(false)
        ));
        assert!(find("--data-dir").is_none());
    }

    #[test]
    fn help_lists_pairs_on_one_line_long_heads_alone_and_hidden_flags_nowhere() {
        let text = help(Shown::Always);
        assert!(text.contains("\n        --tls-cert PEM --tls-key PEM\n                                serve the agent port over TLS"));
        assert!(text.contains(
            "        --queue-timeout DUR     how long a request waits for an idle stream [30s]\n"
        ));
        assert!(!text.contains("--replica-id"));
        assert!(help(Shown::WithRedis).starts_with("        --replica-id ID "));
        let all = [Shown::Always, Shown::WithRedis].map(super::help).concat();
        assert!(!all.contains("--redis-poll-only"));
    }
}
