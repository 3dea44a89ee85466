//! The command line, read per subcommand: the words (`pool create`, `serve`, …) come first
//! and pick a small struct of flags ([`Flags`]); a flag that belongs to another subcommand, or
//! to none, is refused with one line naming it and the subcommand, so a typo or a misplaced
//! `--tls-cert` never passes silently. `serve`'s flags are the library's
//! [`config::SETTINGS`], and its `--help` is printed from them.

use lexopt::prelude::*;
use std::path::PathBuf;
use vcs_agent::gateway::config::{self, Config, ConfigError, Shown, StoreFlags};
use vcs_agent::gateway::store::{check_webhook_url, validate_name, Scope, StoreError};
use vcs_agent::gateway::StartError;
use vcs_agent::shutdown::SignalError;

const ABOUT: &str = "vcs-gateway: the gateway side of VCS Agent Pools.\n\nUSAGE:\n";

/// Each subcommand's words and its part of `--help`, in the order `--help` lists them.
pub const USAGE: &[(&str, &str)] = &[
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
"),
];

const FOOTER: &str = "    vcs-gateway [COMMAND] --help | --version

Every command takes --redis URL instead of --data-dir DIR: pools and callers then live in
Redis, shared by every gateway serving with the same --redis (see the README, \"Run several
gateways\"). URL: redis://[:PASSWORD@]HOST:PORT[/DB] or unix:///PATH/redis.sock; prefer
VCS_GATEWAY_REDIS_URL for a URL with a password (not in `ps`), used when neither is given.
rediss://HOST:PORT (TLS) also works; --redis-ca PEM adds CAs to trust for it.
    serve --redis URL also takes:
";

/// After the settings `serve` takes with Redis.
const FOOTER_END: &str = "        --admin-token (or VCS_GATEWAY_ADMIN_TOKEN) is then required, the same on every replica.

Durations: 30, 30s, 500ms, 2m. Port 0 picks a free port; the bound addresses are logged.
";

/// `--help`: every subcommand, or only `command`'s.
pub fn help(command: Option<&str>) -> String {
    let mut text = String::from(ABOUT);
    for (words, usage) in USAGE {
        if command.is_none_or(|c| c == *words) {
            text.push_str(usage);
            if *words == "serve" {
                text.push_str(&config::help(Shown::Always));
            }
        }
    }
    text.push_str(FOOTER);
    text.push_str(&config::help(Shown::WithRedis));
    text.push_str(FOOTER_END);
    text
}

/// Why the command line was not turned into a [`Command`]: `--help`, `--version`, or a
/// problem (one line).
pub enum Stop {
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
pub enum CliError {
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
    #[error("--name: no {kind} named \"{name}\"")]
    NoSuch { kind: &'static str, name: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Signals(#[from] SignalError),
}

/// `flag`'s value was refused for `problem`.
pub fn invalid(flag: &str, problem: impl Into<config::Problem>) -> CliError {
    CliError::Config(config::invalid(flag, problem))
}

/// `what` is required.
pub fn required(what: &'static str) -> CliError {
    CliError::Config(ConfigError::Required(what))
}

/// One subcommand with its flags.
pub enum Command {
    PoolCreate(PoolCreate),
    PoolList(StoreFlags),
    PoolRotate(PoolRotate),
    PoolDelete(Named),
    PoolUpdate(PoolUpdate),
    CallerCreate(CallerCreate),
    CallerList(StoreFlags),
    CallerRotate(Named),
    CallerDelete(Named),
    Serve(Box<Config>),
}

impl Command {
    /// The subcommand's words, then its flags.
    pub fn parse(mut args: Args) -> Result<Command, Stop> {
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
}

/// The command line, read with lexopt.
pub struct Args(pub lexopt::Parser);

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
}

/// The flags of one subcommand.
pub trait Flags: Default {
    /// Reads `flag` (`--name`) and its value, if it takes one; `Ok(false)` when the flag is
    /// not one of this subcommand's.
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError>;
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

/// `serve`: the settings of [`config::SETTINGS`], then the store's.
impl Flags for Config {
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, CliError> {
        let Some(setting) = config::find(flag) else {
            return self.store.take(flag, args);
        };
        let value = match setting.value {
            "" => String::new(),
            _ => args.text()?,
        };
        Ok(self.set(flag, &value)?)
    }
}

/// A subcommand about one pool or caller: the store and `--name`.
#[derive(Default)]
pub struct Named {
    pub store: StoreFlags,
    pub name: Option<String>,
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
    pub fn name(&self) -> Result<String, CliError> {
        self.name.clone().ok_or(required("--name"))
    }
}

/// `pool rotate`: a pool, and the agent URL its new token carries.
#[derive(Default)]
pub struct PoolRotate {
    pub named: Named,
    pub public_url: Option<String>,
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
pub struct PoolCreate {
    pub pool: PoolRotate,
    pub description: String,
    pub webhook_url: Option<String>,
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

/// `pool update`: a pool's webhook URL, set or cleared.
#[derive(Default)]
pub struct PoolUpdate {
    pub named: Named,
    pub webhook_url: Option<Option<String>>,
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

/// `--webhook-url`: an http(s) URL with a host (only https:// is delivered unless the
/// serving gateway allows http://).
fn webhook_url(url: String) -> Result<String, CliError> {
    check_webhook_url(&url).map_err(|e| invalid("--webhook-url", e.to_string()))?;
    Ok(url)
}

/// `caller create`: a caller, the pools it may use, maybe its client certificate.
#[derive(Default)]
pub struct CallerCreate {
    pub named: Named,
    pub scope: Option<Scope>,
    pub client_cert: Option<PathBuf>,
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
