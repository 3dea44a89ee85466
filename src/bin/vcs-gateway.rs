//! `vcs-gateway`: manages pools and callers, and serves the agent port and the `private://`
//! front.
//!
//! The command line is read per subcommand: the words (`pool create`, `serve`, …) come first
//! and pick a small struct of flags ([`Flags`]); a flag that belongs to another subcommand, or
//! to none, is refused with one line naming it and the subcommand, so a typo or a misplaced
//! `--tls-cert` never passes silently. Every problem exits 2 with one line on stderr.

#![forbid(unsafe_code)]

use lexopt::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use vcs_agent::clock::format_time;
use vcs_agent::gateway::operator::admin;
use vcs_agent::gateway::replicas::signing::PeerSecret;
use vcs_agent::gateway::replicas::PeerOptions;
use vcs_agent::gateway::state::settings::GatewaySettings;
use vcs_agent::gateway::store::redis::RedisStore;
use vcs_agent::gateway::store::{validate_caller_name, validate_name, Scope, Store, StoreError};
use vcs_agent::gateway::{Gateway, GatewayTls, StartError};
use vcs_agent::shutdown::{Shutdown, SignalError};
use vcs_agent::token::{Secret, Token};

const ABOUT: &str = "vcs-gateway: the gateway side of VCS Agent Pools.\n\nUSAGE:\n";

/// Each subcommand's words and its part of `--help`, in the order `--help` lists them.
const USAGE: &[(&str, &str)] = &[
    ("pool create", "    vcs-gateway pool create --data-dir DIR --name NAME [--description TEXT] [--public-url URL] [--webhook-url URL]
        Create a pool and print its token (one line) on stdout. NAME: 1-63 of a-z 0-9 -.
        --public-url is the agent URL put in the token [ws://127.0.0.1:1984].
        --webhook-url: where the gateway delivers the webhooks the pool's agents relay; the
        pool's webhook secret is then printed once on stderr.
"),
    ("pool update", "    vcs-gateway pool update --data-dir DIR --name NAME (--webhook-url URL | --no-webhook-url)
        Set or clear a pool's webhook URL (https://). A pool's first URL gets a webhook secret,
        printed once, alone on stdout; the gateway signs deliveries with it (X-Vcs-Signature-256).
        Clearing the URL drops the secret.
"),
    ("pool list", "    vcs-gateway pool list --data-dir DIR
        List pools (name, id, created, description); keys are never shown or stored.
"),
    ("pool rotate", "    vcs-gateway pool rotate --data-dir DIR --name NAME [--public-url URL]
        Give a pool a new key and print its new token; agents with the old one are cut off.
"),
    ("pool delete", "    vcs-gateway pool delete --data-dir DIR --name NAME
        Delete a pool (its agents are cut off; it leaves every caller's pools).
"),
    ("caller create", "    vcs-gateway caller create --data-dir DIR --name NAME (--pools POOL,POOL... | --all-pools)
        Create a caller (a credential of the SaaS side) that may use those pools; its secret
        is printed once, alone on the last line of stdout. Only its hash is stored.
        --client-cert PEM: a client certificate that identifies the caller instead of the
        secret, on an api port with --api-client-ca.
"),
    ("caller list", "    vcs-gateway caller list --data-dir DIR
        List callers (name, id, created, pools); secrets are never shown or stored.
"),
    ("caller rotate", "    vcs-gateway caller rotate --data-dir DIR --name NAME
        Give a caller a new secret (printed like create); the old one stops working.
"),
    ("caller delete", "    vcs-gateway caller delete --data-dir DIR --name NAME
"),
    ("serve", "    vcs-gateway serve --data-dir DIR [OPTIONS]
        --agent-listen ADDR     agent WebSocket port [127.0.0.1:1984]
        --api-listen ADDR       private:// front, /healthz, /metrics, the panel (/) and /api [127.0.0.1:1985]
        --metrics-listen ADDR   also serve /healthz and /metrics in full, without the admin
                                token, on this address (a private scrape network) [off]
        --queue-timeout DUR     how long a request waits for an idle stream [30s]
        --keepalive DUR         ping idle agent streams; drop after 3 silent intervals [20s]
        --exchange-timeout DUR  longest silence from an agent inside one request [120s]
        --drain-timeout DUR     on SIGTERM/SIGINT/SIGHUP, how long requests in flight may finish [30s]
        --log-format FORMAT     text or json (one object a line, the agent's fields) [text]
        --max-callers N         tunnel requests served at once (a connection and thread
                                each); idle connections are closed to admit new ones [1024]
        --min-upload-rate BYTES a request body holding an agent stream must bring this many
                                bytes/s in every 5 s window after the grace, else 408 [240; 0 = off]
        --upload-grace DUR      how long before the upload rate is enforced [5s]
        --min-download-rate BYTES
                                a caller must take an answer that holds an agent stream at
                                this many bytes/s in every 5 s it keeps the gateway waiting,
                                after the grace, else it is cut off [1024; 0 = off]
        --download-grace DUR    waiting for the caller before the download rate counts [10s]
        --download-stall DUR    longest a write to a caller may take nothing, rate or not [30s]
        --max-callers-per-address N
                                connections one peer address may hold on the api port [256]
        --tls-cert PEM --tls-key PEM
                                serve the agent port over TLS (tokens then use wss://) [plain]
        --api-tls-cert PEM --api-tls-key PEM
                                serve the api port over TLS (may be the same files) [plain]
        --api-client-ca PEM     ask api-port clients for a certificate from these CAs; one
                                registered with `caller create --client-cert` identifies its
                                caller without the secret header (needs --api-tls-cert) [off]
        --public-url URL        agent URL put in tokens the panel/API creates [ws://<agent port>]
        --front-url URL         the URL callers reach the api port at, behind a reverse
                                proxy (http(s)://host[:port][/prefix]); answers point their
                                VCS URLs back at URL/private/<pool>/... [the api port's
                                scheme and the caller's Host]
        --allow-http-webhooks   also deliver webhooks to http:// URLs (tests) [https:// only]
        --admin-token TOKEN     protects the panel (/), the API (/api/...), /metrics and the
                                figures of /healthz, at least 16 characters; prefer env
                                VCS_GATEWAY_ADMIN_TOKEN (not in `ps`). Without it one is made
                                on first start and kept in DIR/admin-token (0600).
"),
];

const FOOTER: &str = "    vcs-gateway [COMMAND] --help | --version

Every command takes --redis URL instead of --data-dir DIR: pools and callers then live in
Redis, shared by every gateway serving with the same --redis (see the README, \"Run several
gateways\"). URL: redis://[:PASSWORD@]HOST:PORT[/DB] or unix:///PATH/redis.sock; prefer
VCS_GATEWAY_REDIS_URL for a URL with a password (not in `ps`), used when neither is given.
rediss://HOST:PORT (TLS) also works; --redis-ca PEM adds CAs to trust for it.
    serve --redis URL also takes:
        --replica-id ID         this replica's name in logs and Redis [generated]
        --peer-listen ADDR      the replica-to-replica port: a request for a pool with no
                                idle stream here goes to a replica that has one [off]
        --peer-advertise ADDR   the address other replicas reach this one at [the bound one;
                                required when --peer-listen binds 0.0.0.0 or ::]
        --peer-secret SECRET    signs forwarded requests, the same on every replica, at least
                                32 characters; prefer env VCS_GATEWAY_PEER_SECRET (not in `ps`)
        --admin-token (or VCS_GATEWAY_ADMIN_TOKEN) is then required, the same on every replica.

Durations: 30, 30s, 500ms, 2m. Port 0 picks a free port; the bound addresses are logged.
";

/// `--help`: every subcommand, or only `command`'s.
fn help(command: Option<&str>) -> String {
    let mut text = String::from(ABOUT);
    for (words, usage) in USAGE {
        if command.is_none_or(|c| c == *words) {
            text.push_str(usage);
        }
    }
    text.push_str(FOOTER);
    text
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcs-gateway: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let code = match Command::parse(Args(lexopt::Parser::from_env())) {
        Ok(command) => command.run().unwrap_or_else(fail),
        Err(Stop::Help(command)) => {
            print!("{}", help(command));
            ExitCode::SUCCESS
        }
        Err(Stop::Version) => {
            println!("vcs-gateway {}", vcs_agent::BUILD);
            ExitCode::SUCCESS
        }
        Err(Stop::Fail(message)) => fail(message),
    };
    vcs_agent::observe::logging::flush();
    code
}

/// Why the command line was not turned into a [`Command`]: `--help`, `--version`, or a
/// problem (one line).
enum Stop {
    Help(Option<&'static str>),
    Version,
    Fail(CliError),
}

impl<E: Into<CliError>> From<E> for Stop {
    fn from(error: E) -> Stop {
        Stop::Fail(error.into())
    }
}

/// The subcommands, for a line that asks for one.
const COMMANDS: &str = "pool create, pool list, pool update, caller create, caller list, caller rotate, caller delete or serve (see --help)";

/// Why a command failed: one line on stderr, exit 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("a command is required: {COMMANDS}")]
    NoCommand,
    #[error("a command is required before {0}: {COMMANDS}")]
    FlagFirst(String),
    #[error("unknown command \"{0}\" (see --help)")]
    UnknownCommand(String),
    #[error("{command} does not take {flag} (see vcs-gateway {command} --help)")]
    NotItsFlag { command: &'static str, flag: String },
    #[error("{0}")]
    Args(#[from] lexopt::Error),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
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
    #[error("--api-client-ca needs --api-tls-cert and --api-tls-key")]
    ClientCaAlone,
    #[error("--name: no {kind} named \"{name}\"")]
    NoSuch { kind: &'static str, name: String },
    #[error("--admin-token (or VCS_GATEWAY_ADMIN_TOKEN) is required with --redis: give every replica the same one")]
    AdminTokenRequired,
    #[error("--admin-token: not the admin token the other replicas use (its SHA-256 is in Redis): give every replica the same one")]
    AdminTokenDiffers,
    /// A problem the gateway's library reported, already one line.
    #[error("{0}")]
    Gateway(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    AdminToken(#[from] admin::TokenError),
    #[error(transparent)]
    Signals(#[from] SignalError),
}

/// What is wrong with a flag's value.
type Problem = Box<dyn std::error::Error + Send + Sync>;

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::Gateway(message)
    }
}

/// `flag`'s value was refused for `problem`.
fn invalid(flag: &str, problem: impl Into<Problem>) -> CliError {
    CliError::Invalid {
        flag: flag.into(),
        problem: problem.into(),
    }
}

/// One subcommand with its flags.
enum Command {
    PoolCreate(PoolCreate),
    PoolList(StoreFlags),
    PoolRotate(PoolRotate),
    PoolDelete(Named),
    PoolUpdate(PoolUpdate),
    CallerCreate(CallerCreate),
    CallerList(StoreFlags),
    CallerRotate(Named),
    CallerDelete(Named),
    Serve(Box<ServeFlags>),
}

impl Command {
    /// The subcommand's words, then its flags.
    fn parse(mut args: Args) -> Result<Command, Stop> {
        let words = args.command_words()?;
        Ok(match words {
            "pool create" => Command::PoolCreate(args.flags(words)?),
            "pool list" => Command::PoolList(args.flags(words)?),
            "pool rotate" => Command::PoolRotate(args.flags(words)?),
            "pool delete" => Command::PoolDelete(args.flags(words)?),
            "pool update" => Command::PoolUpdate(args.flags(words)?),
            "caller create" => Command::CallerCreate(args.flags(words)?),
            "caller list" => Command::CallerList(args.flags(words)?),
            "caller rotate" => Command::CallerRotate(args.flags(words)?),
            "caller delete" => Command::CallerDelete(args.flags(words)?),
            "serve" => Command::Serve(Box::new(args.flags(words)?)),
            other => return Err(CliError::UnknownCommand(other.into()).into()),
        })
    }

    fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Command::PoolCreate(flags) => pool_create(flags),
            Command::PoolList(store) => pool_list(store),
            Command::PoolRotate(flags) => pool_rotate(flags),
            Command::PoolDelete(flags) => pool_delete(flags),
            Command::PoolUpdate(flags) => pool_update(flags),
            Command::CallerCreate(flags) => caller_create(flags),
            Command::CallerList(store) => caller_list(store),
            Command::CallerRotate(flags) => caller_rotate(flags),
            Command::CallerDelete(flags) => caller_delete(flags),
            Command::Serve(flags) => serve(*flags),
        }?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The command line, read with lexopt.
struct Args(lexopt::Parser);

impl Args {
    /// The subcommand's words (`serve`, `pool create`, …), which come before any flag.
    fn command_words(&mut self) -> Result<&'static str, Stop> {
        let mut words = String::new();
        loop {
            match self.0.next()? {
                Some(Short('h') | Long("help")) => return Err(Stop::Help(None)),
                Some(Short('V') | Long("version")) if words.is_empty() => {
                    return Err(Stop::Version)
                }
                Some(Value(word)) => {
                    let word = word
                        .into_string()
                        .map_err(|_| CliError::NotUtf8("an argument"))?;
                    words = if words.is_empty() {
                        word
                    } else {
                        format!("{words} {word}")
                    };
                }
                None if words.is_empty() => return Err(CliError::NoCommand.into()),
                Some(Long(flag)) if words.is_empty() => {
                    return Err(CliError::FlagFirst(format!("--{flag}")).into())
                }
                Some(Short(flag)) if words.is_empty() => {
                    return Err(CliError::FlagFirst(format!("-{flag}")).into())
                }
                _ => return Err(CliError::UnknownCommand(words).into()),
            }
            let known = USAGE
                .iter()
                .map(|(known, _)| *known)
                .find(|known| *known == words);
            if let Some(known) = known {
                return Ok(known);
            }
        }
    }

    /// The flags of `command` up to the end of the line.
    fn flags<F: Flags>(&mut self, command: &'static str) -> Result<F, Stop> {
        let mut flags = F::default();
        while let Some(arg) = self.0.next()? {
            let flag = match arg {
                Short('h') | Long("help") => return Err(Stop::Help(Some(command))),
                Long(flag) => format!("--{flag}"),
                Short(flag) => format!("-{flag}"),
                Value(word) => {
                    let word = word.to_string_lossy();
                    return Err(CliError::UnknownCommand(format!("{command} {word}")).into());
                }
            };
            if !flags.take(&flag, self)? {
                return Err(CliError::NotItsFlag { command, flag }.into());
            }
        }
        Ok(flags)
    }

    /// The value of the flag just read, as text.
    fn text(&mut self) -> Result<String, CliError> {
        self.0
            .value()?
            .into_string()
            .map_err(|_| CliError::NotUtf8("a value"))
    }

    fn path(&mut self) -> Result<PathBuf, CliError> {
        self.text().map(PathBuf::from)
    }

    fn duration(&mut self, flag: &str) -> Result<Duration, CliError> {
        vcs_agent::duration::parse(&self.text()?).map_err(|e| invalid(flag, e))
    }

    /// Bytes per second for `flag` (0 turns the check off).
    fn rate(&mut self, flag: &str) -> Result<u64, CliError> {
        self.text()?
            .parse::<u64>()
            .map_err(|_| invalid(flag, "expected bytes per second (0 turns it off)"))
    }

    /// A number of connections for `flag`: 1 to 65536.
    fn connections(&mut self, flag: &str) -> Result<usize, CliError> {
        self.text()?
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=65_536).contains(n))
            .ok_or_else(|| invalid(flag, "expected a number from 1 to 65536"))
    }
}

/// The flags of one subcommand.
trait Flags: Default {
    /// Reads `flag` (`--name`) and its value, if it takes one; `Ok(false)` when the flag is
    /// not one of this subcommand's.
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError>;
}

/// Where pools and callers live: `--data-dir DIR` or `--redis URL` (every subcommand).
#[derive(Default)]
struct StoreFlags {
    data_dir: Option<PathBuf>,
    redis: Option<String>,
    redis_ca: Option<PathBuf>,
}

impl Flags for StoreFlags {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        match flag {
            "--data-dir" => self.data_dir = Some(args.path()?),
            "--redis" => self.redis = Some(args.text()?),
            "--redis-ca" => self.redis_ca = Some(args.path()?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Where the store is, once the flags and `VCS_GATEWAY_REDIS_URL` are read.
enum Location {
    Dir(PathBuf),
    /// The URL, and the CAs of `--redis-ca` for `rediss://`.
    Redis(String, Option<PathBuf>),
}

impl StoreFlags {
    fn location(self) -> Result<Location, CliError> {
        let ca = self.redis_ca;
        match (self.data_dir, self.redis) {
            (Some(_), Some(_)) => Err(CliError::TwoStores),
            (Some(_), None) if ca.is_some() => Err(CliError::Needs("--redis-ca", "--redis")),
            (Some(dir), None) => Ok(Location::Dir(dir)),
            (None, Some(url)) => Ok(Location::Redis(url, ca)),
            // A URL with a password stays out of `ps` this way.
            (None, None) => std::env::var("VCS_GATEWAY_REDIS_URL")
                .ok()
                .filter(|url| !url.trim().is_empty())
                .map(|url| Location::Redis(url, ca))
                .ok_or(CliError::Required("--data-dir (or --redis)")),
        }
    }

    fn open(self) -> Result<Store, CliError> {
        self.location()?.open()
    }
}

impl Location {
    fn open(&self) -> Result<Store, CliError> {
        match self {
            Location::Dir(dir) => Ok(Store::open(dir)?),
            Location::Redis(url, ca) => {
                Ok(Store::redis(RedisStore::connect_with(url, ca.as_deref())?))
            }
        }
    }
}

/// A subcommand about one pool or caller: the store and `--name`.
#[derive(Default)]
struct Named {
    store: StoreFlags,
    name: Option<String>,
}

impl Flags for Named {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        match flag {
            "--name" => self.name = Some(args.text()?),
            _ => return self.store.take(flag, args),
        }
        Ok(true)
    }
}

impl Named {
    fn name(&self) -> Result<String, CliError> {
        self.name.clone().ok_or(CliError::Required("--name"))
    }
}

/// `pool rotate`: a pool, and the agent URL its new token carries.
#[derive(Default)]
struct PoolRotate {
    named: Named,
    public_url: Option<String>,
}

impl Flags for PoolRotate {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        match flag {
            "--public-url" => self.public_url = Some(args.text()?),
            _ => return self.named.take(flag, args),
        }
        Ok(true)
    }
}

/// `pool create`: as `pool rotate`, with a description and maybe a webhook URL.
#[derive(Default)]
struct PoolCreate {
    pool: PoolRotate,
    description: String,
    webhook_url: Option<String>,
}

impl Flags for PoolCreate {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        match flag {
            "--description" => self.description = args.text()?,
            "--webhook-url" => self.webhook_url = Some(webhook_url(args.text()?)?),
            _ => return self.pool.take(flag, args),
        }
        Ok(true)
    }
}

#[derive(Default)]
struct CallerCreate {
    named: Named,
    scope: Option<Scope>,
    client_cert: Option<PathBuf>,
}

impl Flags for CallerCreate {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        match flag {
            "--pools" => self.scope = Some(parse_pools(&args.text()?)?),
            "--all-pools" => self.scope = Some(Scope::All),
            "--client-cert" => self.client_cert = Some(args.path()?),
            _ => return self.named.take(flag, args),
        }
        Ok(true)
    }
}

/// `serve`'s TLS files, each named by its flag.
#[derive(Default)]
struct TlsFlags {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    api_cert: Option<PathBuf>,
    api_key: Option<PathBuf>,
    api_client_ca: Option<PathBuf>,
}

impl Flags for TlsFlags {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        let file = match flag {
            "--tls-cert" => &mut self.cert,
            "--tls-key" => &mut self.key,
            "--api-tls-cert" => &mut self.api_cert,
            "--api-tls-key" => &mut self.api_key,
            "--api-client-ca" => &mut self.api_client_ca,
            _ => return Ok(false),
        };
        *file = Some(args.path()?);
        Ok(true)
    }
}

impl TlsFlags {
    /// The server configurations of both ports; a certificate without its key is refused.
    fn configs(&self) -> Result<GatewayTls, CliError> {
        let agent = server_tls(&self.cert, &self.key, "--tls-cert", "--tls-key")?;
        let api = match (&self.api_cert, &self.api_key, &self.api_client_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(
                vcs_agent::net::tls::server_config_for_clients(cert, key, Some(ca))
                    .map_err(|e| invalid("--api-tls-cert/--api-tls-key/--api-client-ca", e))?,
            ),
            (_, _, Some(_)) => return Err(CliError::ClientCaAlone),
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
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, CliError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => vcs_agent::net::tls::server_config(cert, key)
            .map(Some)
            .map_err(|e| invalid(&format!("{cert_flag}/{key_flag}"), e)),
        _ => Err(CliError::Together(cert_flag, key_flag)),
    }
}

/// Where `serve` listens.
struct Ports {
    agent: String,
    api: String,
    metrics: Option<String>,
}

struct ServeFlags {
    store: StoreFlags,
    ports: Ports,
    settings: GatewaySettings,
    drain_timeout: Duration,
    tls: TlsFlags,
    public_url: Option<String>,
    admin_token: Option<String>,
    replica_id: Option<String>,
    poll_only: bool,
    peer: PeerFlags,
    log_format: vcs_agent::observe::LogFormat,
}

/// `--peer-listen`, `--peer-advertise`, `--peer-secret`.
#[derive(Default)]
struct PeerFlags {
    listen: Option<String>,
    advertise: Option<String>,
    secret: Option<String>,
}

impl PeerFlags {
    /// Checked before anything starts: `--peer-listen` needs `--redis` and a strong
    /// `--peer-secret` (or `VCS_GATEWAY_PEER_SECRET`, which stays out of `ps`).
    fn options(self, location: &Location) -> Result<Option<PeerOptions>, CliError> {
        let secret = self
            .secret
            .or_else(|| std::env::var("VCS_GATEWAY_PEER_SECRET").ok())
            .filter(|s| !s.is_empty());
        let Some(listen) = self.listen else {
            if self.advertise.is_some() {
                return Err(CliError::Needs("--peer-advertise", "--peer-listen"));
            }
            return Ok(None);
        };
        if let Location::Dir(_) = location {
            return Err(CliError::Needs("--peer-listen", "--redis"));
        }
        let secret = secret.ok_or(CliError::PeerSecretRequired)?;
        Ok(Some(PeerOptions {
            listen,
            advertise: self.advertise,
            secret: PeerSecret::new(Secret::new(secret))?,
        }))
    }
}

impl Default for ServeFlags {
    fn default() -> ServeFlags {
        ServeFlags {
            store: StoreFlags::default(),
            ports: Ports {
                agent: "127.0.0.1:1984".into(),
                api: "127.0.0.1:1985".into(),
                metrics: None,
            },
            settings: GatewaySettings::default(),
            drain_timeout: Duration::from_secs(30),
            tls: TlsFlags::default(),
            public_url: None,
            admin_token: None,
            replica_id: None,
            poll_only: false,
            peer: PeerFlags::default(),
            log_format: vcs_agent::observe::LogFormat::Text,
        }
    }
}

impl Flags for ServeFlags {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        let settings = &mut self.settings;
        match flag {
            "--agent-listen" => self.ports.agent = args.text()?,
            "--api-listen" => self.ports.api = args.text()?,
            "--metrics-listen" => self.ports.metrics = Some(args.text()?),
            "--queue-timeout" => settings.queue_timeout = args.duration(flag)?,
            "--keepalive" => settings.keepalive = args.duration(flag)?,
            "--exchange-timeout" => settings.exchange_timeout = args.duration(flag)?,
            "--drain-timeout" => self.drain_timeout = args.duration(flag)?,
            "--log-format" => {
                self.log_format = args
                    .text()?
                    .parse()
                    .map_err(|e: vcs_agent::observe::logging::UnknownLogFormat| invalid(flag, e))?
            }
            "--upload-grace" => settings.upload_grace = args.duration(flag)?,
            "--max-callers" => settings.max_callers = args.connections(flag)?,
            "--max-callers-per-address" => settings.max_per_address = args.connections(flag)?,
            "--min-upload-rate" => settings.min_upload_rate = args.rate(flag)?,
            "--min-download-rate" => settings.min_download_rate = args.rate(flag)?,
            "--download-grace" => settings.download_grace = args.duration(flag)?,
            "--download-stall" => {
                settings.download_stall = args.duration(flag)?;
                if settings.download_stall.is_zero() {
                    return Err(invalid(flag, "expected a duration of more than 0"));
                }
            }
            "--public-url" => self.public_url = Some(args.text()?),
            "--front-url" => settings.front_url = Some(front_url(&args.text()?)?),
            "--allow-http-webhooks" => settings.allow_http_webhooks = true,
            "--admin-token" => self.admin_token = Some(args.text()?),
            "--replica-id" => self.replica_id = Some(args.text()?),
            // For tests: changes reach this replica by the polled version alone.
            "--redis-poll-only" => self.poll_only = true,
            "--peer-listen" => self.peer.listen = Some(args.text()?),
            "--peer-advertise" => self.peer.advertise = Some(args.text()?),
            "--peer-secret" => self.peer.secret = Some(args.text()?),
            _ => return Ok(self.tls.take(flag, args)? || self.store.take(flag, args)?),
        }
        Ok(true)
    }
}

fn pool_create(flags: PoolCreate) -> Result<(), CliError> {
    let PoolCreate {
        pool,
        description,
        webhook_url,
    } = flags;
    let name = pool.named.name()?;
    let public_url = token_host(pool.public_url)?;
    let store = pool.named.store.open()?;
    let (record, key) = store.create(&name, &description)?;
    if let Some(url) = webhook_url {
        if let Some((_, Some(secret))) = store.set_webhook(&name, Some(&url))? {
            eprintln!(
                "webhook secret of pool {name} (shown once): {}",
                secret.expose()
            );
        }
    }
    print_token(public_url, key, record.ulid);
    Ok(())
}

/// `pool update`: a pool's webhook URL, set or cleared.
#[derive(Default)]
struct PoolUpdate {
    named: Named,
    webhook_url: Option<Option<String>>,
}

impl Flags for PoolUpdate {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        match flag {
            "--webhook-url" => self.webhook_url = Some(Some(webhook_url(args.text()?)?)),
            "--no-webhook-url" => self.webhook_url = Some(None),
            _ => return self.named.take(flag, args),
        }
        Ok(true)
    }
}

fn pool_update(flags: PoolUpdate) -> Result<(), CliError> {
    let name = flags.named.name()?;
    let url = flags
        .webhook_url
        .ok_or(CliError::Required("--webhook-url or --no-webhook-url"))?;
    let (_, secret) = flags
        .named
        .store
        .open()?
        .set_webhook(&name, url.as_deref())?
        .ok_or(CliError::NoSuch { kind: "pool", name })?;
    match (url, secret) {
        (Some(_), Some(secret)) => println!("{}", secret.expose()),
        (Some(_), None) => eprintln!("webhook URL set; the pool keeps its webhook secret"),
        (None, _) => eprintln!("webhook URL cleared"),
    }
    Ok(())
}

/// `--webhook-url`: an http(s) URL with a host (only https:// is delivered unless the
/// serving gateway allows http://).
fn webhook_url(url: String) -> Result<String, CliError> {
    vcs_agent::gateway::store::check_webhook_url(&url)
        .map_err(|e| invalid("--webhook-url", e.to_string()))?;
    Ok(url)
}

fn pool_rotate(flags: PoolRotate) -> Result<(), CliError> {
    let name = flags.named.name()?;
    let public_url = token_host(flags.public_url)?;
    let (record, key) = flags
        .named
        .store
        .open()?
        .rotate(&name)?
        .ok_or(CliError::NoSuch { kind: "pool", name })?;
    print_token(public_url, key, record.ulid);
    Ok(())
}

fn pool_delete(flags: Named) -> Result<(), CliError> {
    let name = flags.name()?;
    if !flags.store.open()?.delete(&name)? {
        return Err(CliError::NoSuch { kind: "pool", name });
    }
    println!("pool {name} deleted");
    Ok(())
}

fn pool_list(store: StoreFlags) -> Result<(), CliError> {
    let store = store.open()?;
    println!("{:<24} {:<26} {:<20} DESCRIPTION", "NAME", "ID", "CREATED");
    for pool in store.load()? {
        println!(
            "{:<24} {:<26} {:<20} {}",
            pool.name,
            pool.ulid,
            format_time(pool.created),
            vcs_agent::observe::escape::text(&pool.description)
        );
    }
    Ok(())
}

/// The agent URL a CLI-made token carries: `--public-url`, checked, or the default agent port.
fn token_host(public_url: Option<String>) -> Result<String, CliError> {
    let public_url = public_url.unwrap_or_else(|| "ws://127.0.0.1:1984".into());
    check_public_url(&public_url)?;
    Ok(public_url)
}

/// The agent URL put in tokens must be one an agent can dial, or every token made with it
/// is refused by the agent it is given to.
fn check_public_url(url: &str) -> Result<(), CliError> {
    vcs_agent::net::dial::GatewayAddress::parse(url)
        .map(|_| ())
        .map_err(|e| invalid("--public-url", e))
}

/// `--front-url`: an `http` or `https` URL with a host, maybe a path prefix, no query or
/// fragment; kept without its trailing `/`.
fn front_url(url: &str) -> Result<String, CliError> {
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

/// Prints a pool token, alone on its line (its only copy: the store keeps a hash).
fn print_token(host: String, key: Secret, pool_ulid: String) {
    let token = Token {
        host,
        key,
        pool_ulid,
    };
    println!("{}", token.encode());
}

fn caller_create(flags: CallerCreate) -> Result<(), CliError> {
    let CallerCreate {
        named,
        scope,
        client_cert,
    } = flags;
    let store = named.store.open()?;
    let scope = scope.ok_or(CliError::Required("--pools POOL,POOL... or --all-pools"))?;
    let name = named.name.ok_or(CliError::Required("--name"))?;
    validate_caller_name(&name).map_err(|e| invalid("--name", e))?;
    if let Scope::Pools(pools) = &scope {
        let known = store.load()?;
        if let Some(missing) = pools.iter().find(|p| !known.iter().any(|k| &k.name == *p)) {
            let problem = format!("no pool named \"{missing}\" (see pool list)");
            return Err(invalid("--pools", problem));
        }
    }
    let fingerprint = match &client_cert {
        None => None,
        Some(path) => Some(certificate_sha256(path)?),
    };
    let (record, secret) = store.create_caller(&name, &scope, fingerprint)?;
    println!(
        "caller {name} created ({}), may use {}; its secret, shown only now:",
        record.id,
        describe_scope(&record.scope())
    );
    println!("{}", secret.expose());
    Ok(())
}

fn caller_rotate(flags: Named) -> Result<(), CliError> {
    let store = flags.store.open()?;
    let name = flags.name.ok_or(CliError::Required("--name"))?;
    let (_, secret) = store
        .rotate_caller(&name)?
        .ok_or_else(|| CliError::NoSuch {
            kind: "caller",
            name: name.clone(),
        })?;
    println!("caller {name} has a new secret (the old one no longer works), shown only now:");
    println!("{}", secret.expose());
    Ok(())
}

fn caller_delete(flags: Named) -> Result<(), CliError> {
    let store = flags.store.open()?;
    let name = flags.name.ok_or(CliError::Required("--name"))?;
    if !store.delete_caller(&name)? {
        return Err(CliError::NoSuch {
            kind: "caller",
            name,
        });
    }
    println!("caller {name} deleted");
    Ok(())
}

fn caller_list(store: StoreFlags) -> Result<(), CliError> {
    let store = store.open()?;
    println!("{:<24} {:<26} {:<20} POOLS", "NAME", "ID", "CREATED");
    for c in store.load_callers()? {
        let pools = describe_scope(&c.scope());
        println!(
            "{:<24} {:<26} {:<20} {pools}",
            c.name,
            c.id,
            format_time(c.created)
        );
    }
    Ok(())
}

/// `--pools a,b`: pool names, each valid, at least one.
fn parse_pools(text: &str) -> Result<Scope, CliError> {
    let pools: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if pools.is_empty() {
        return Err(invalid(
            "--pools",
            "expected pool names separated by commas (or --all-pools)",
        ));
    }
    for pool in &pools {
        validate_name(pool).map_err(|e| invalid("--pools", e))?;
    }
    Ok(Scope::Pools(pools))
}

/// `--client-cert PEM`: the SHA-256 (hex) of the file's first certificate.
fn certificate_sha256(path: &Path) -> Result<String, CliError> {
    use sha2::Digest;
    let certs =
        vcs_agent::net::tls::pem_certificates(path).map_err(|e| invalid("--client-cert", e))?;
    let digest = sha2::Sha256::digest(certs[0].as_ref());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn describe_scope(scope: &Scope) -> String {
    match scope {
        Scope::All => "all pools".into(),
        Scope::Pools(pools) => pools.join(","),
    }
}

/// The admin token and where it came from (logged at start, never its value).
enum AdminToken {
    Given(Secret),
    Made(Secret, PathBuf),
    Kept(Secret, PathBuf),
}

impl AdminToken {
    /// `--admin-token` or `VCS_GATEWAY_ADMIN_TOKEN`; else, with a data directory, the one kept
    /// in it (made on first start). Replicas sharing Redis must be given the same one.
    fn resolve(given: Option<String>, location: &Location) -> Result<AdminToken, CliError> {
        let given = given
            .or_else(|| std::env::var("VCS_GATEWAY_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        match (given, location) {
            (Some(token), _) => {
                admin::check_token(&token)?;
                Ok(AdminToken::Given(token))
            }
            (None, Location::Redis(..)) => Err(CliError::AdminTokenRequired),
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
    fn check_shared(&self, store: &Store) -> Result<(), CliError> {
        let (Some(shared), AdminToken::Given(token)) = (store.shared(), self) else {
            return Ok(());
        };
        let hash = vcs_agent::token::key_hash(token.expose());
        if !shared
            .same_admin_token(&hash)
            .map_err(|e| invalid("--redis", e.to_string()))?
        {
            return Err(CliError::AdminTokenDiffers);
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

/// `serve`: checks every flag, then serves until SIGTERM/SIGINT/SIGHUP and drains.
fn serve(flags: ServeFlags) -> Result<(), CliError> {
    let tls = flags.tls.configs()?;
    if let Some(url) = &flags.public_url {
        check_public_url(url)?;
    }
    let location = flags.store.location()?;
    let admin_token = AdminToken::resolve(flags.admin_token, &location)?;
    let peers = flags.peer.options(&location)?;
    let store = location.open()?;
    admin_token.check_shared(&store)?;
    let mut settings = flags.settings;
    settings.public_url = flags.public_url;
    if store.shared().is_some() {
        let id = match flags.replica_id {
            Some(id) => {
                validate_name(&id).map_err(|e| invalid("--replica-id", e))?;
                id
            }
            None => ulid::Ulid::new().to_string().to_ascii_lowercase(),
        };
        settings.replica_id = Some(id);
        settings.poll_only = flags.poll_only;
    }
    vcs_agent::observe::logging::init(flags.log_format, None, "info");
    let shutdown = Shutdown::install()?;
    let where_token = admin_token.describe();
    settings.admin_token = Some(admin_token.secret());
    let gateway = start(store, &flags.ports, settings, tls, peers)?;
    if let Some(addr) = gateway.peer_addr {
        log::info!("peer port listening on {addr} (requests forwarded by other replicas, signed with the peer secret)");
    }
    log::info!("{where_token}");
    log_ready(&gateway);
    let drain = shutdown.wait(|| gateway.hub.start_draining());
    if drain.finished(gateway.drain(flags.drain_timeout)).is_some() {
        log::info!("drained: no request in flight; exiting");
    }
    gateway.wait_streams_closed(Duration::from_secs(2));
    Ok(())
}

/// Starts serving and logs where and how it listens.
fn start(
    store: Store,
    ports: &Ports,
    settings: GatewaySettings,
    tls: GatewayTls,
    peers: Option<PeerOptions>,
) -> Result<Gateway, CliError> {
    let (agent_tls, api_tls) = (tls.agent.is_some(), tls.api.is_some());
    let poll_only = settings.poll_only;
    if let Some(id) = &settings.replica_id {
        log::info!(
            "replica {id}: pools and callers in Redis at {}",
            store.describe()
        );
    }
    let gateway = Gateway::start_with_store(
        store,
        &ports.agent,
        &ports.api,
        settings,
        tls,
        poll_only,
        peers,
    )?;
    let scheme = |on: bool| if on { "TLS" } else { "plain, no TLS" };
    log::info!("agent port serves {}", scheme(agent_tls));
    log::info!("api port serves {}", scheme(api_tls));
    log::info!("agent port listening on {}", gateway.agent_addr);
    log::info!("api port listening on {}", gateway.api_addr);
    if let Some(listen) = &ports.metrics {
        let addr = gateway.serve_metrics(listen)?;
        log::info!("metrics port listening on {addr} (/healthz and /metrics without authentication: keep it on a private scrape network)");
    }
    Ok(gateway)
}

/// The panel's address, who may use the front and what was loaded.
fn log_ready(gateway: &Gateway) {
    log::info!(
        "panel at http://{}/ (admin token required)",
        gateway.api_addr
    );
    let store = &gateway.hub.store;
    match gateway.hub.callers.count() {
        0 => log::warn!(
            "no caller exists yet: the front refuses every tunnel request until one does (vcs-gateway caller create {} --name NAME --pools POOL)",
            match store.shared() {
                Some(_) => "--redis URL".to_string(),
                None => format!(
                    "--data-dir {}",
                    store.path().parent().unwrap_or(Path::new("")).display()
                ),
            }
        ),
        n => log::info!("{n} callers may use the front"),
    }
    log::info!(
        "{} pools loaded from {}",
        gateway.hub.pools().len(),
        store.describe()
    );
}
