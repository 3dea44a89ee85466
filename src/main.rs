//! `vcs-agent`: reads its configuration from the environment and its flags, and serves until
//! SIGTERM, SIGINT or SIGHUP.

#![forbid(unsafe_code)]

use lexopt::ValueExt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use vcs_agent::agent::Agent;
use vcs_agent::allowlist::print::{self, Format};
use vcs_agent::allowlist::Vendor;
use vcs_agent::config::{self, AgentConfig, Flags};
use vcs_agent::shutdown::{Shutdown, SignalError};

fn help() -> String {
    let mut text = format!(
        "vcs-agent {}\n\
         Serves private:// requests from a VCS Agent Pools gateway against an internal VCS.\n\n\
         USAGE:\n    vcs-agent [serve] [FLAGS]  run (`serve` is optional, as the original agent's image passes it)\n    \
         vcs-agent check [FLAGS]    preflight: token, gateway login, VCS reachability, project regex;\n                               \
         one `ok`/`FAIL` line per check, exit 0 only when all pass\n    \
         vcs-agent rules [--vendor V] [--format text|json]\n                               \
         print the allowlist: method, path, what it is for, source (V: gitlab,\n                               \
         github-enterprise, bitbucket-datacenter, azure-devops; all without it)\n    \
         vcs-agent --help           print this help\n    vcs-agent --version        print the version\n\n\
         SETTINGS (variable, then the flags that set it too and win over it; default in brackets):\n",
        vcs_agent::BUILD
    );
    for setting in config::SETTINGS {
        text.push_str(&format!("    {}\n", setting.env));
        if !setting.flags.is_empty() {
            let value = if config::is_switch(setting) {
                "[=BOOL]"
            } else {
                " VALUE"
            };
            let flags: Vec<String> = setting
                .flags
                .iter()
                .map(|f| format!("{f}{value}"))
                .collect();
            text.push_str(&format!("    {}\n", flags.join(", ")));
        }
        text.push_str(&format!(
            "        [{}] {}\n",
            setting.default, setting.meaning
        ));
    }
    text.push_str(
        "\nBooleans: true/false, 1/0, t/f, yes/no, on/off (any case); empty is false.\n\
         \nSIGNALS:\n    SIGTERM/SIGINT/SIGHUP drain: finish in-flight requests, then exit 0; a second signal exits at once.\n",
    );
    text
}

fn main() -> ExitCode {
    let code = dispatch();
    vcs_agent::observe::logging::flush();
    code
}

/// What the command line asks for.
enum Invocation {
    Help,
    Version,
    Serve(Flags),
    Check(Flags),
    Rules(Vec<Vendor>, Format),
}

/// Why the command line was refused: one line, exit 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("unknown argument \"{0}\" (see vcs-agent --help)")]
    Unknown(String),
    #[error("unknown flag {0} (see vcs-agent --help)")]
    UnknownFlag(String),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("{0}")]
    Args(#[from] lexopt::Error),
    #[error(transparent)]
    Vendor(#[from] print::VendorError),
    #[error(transparent)]
    Format(#[from] print::FormatError),
}

/// `-token` (Go's single-dash spelling of a long flag, which the original agent accepts) is
/// read as `--token`; `-h` and `-V` stay short flags.
fn long_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|arg| match arg.to_str() {
        Some(a) if a.len() > 2 && a.starts_with('-') && !a.starts_with("--") => {
            format!("-{a}").into()
        }
        _ => arg,
    })
    .collect()
}

/// Reads the command line: `serve` or `check` (once, anywhere), settings' flags, `--help`,
/// `--version`.
fn parse(args: Vec<std::ffi::OsString>) -> Result<Invocation, CliError> {
    use lexopt::Arg::{Long, Short, Value};
    let mut parser = lexopt::Parser::from_args(args);
    let (mut command, mut flags) = (None, Flags::default());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Invocation::Help),
            Short('V') | Long("version") => return Ok(Invocation::Version),
            Value(word) if command.is_none() => match word.to_str() {
                Some("help") => return Ok(Invocation::Help),
                Some("rules") => return parse_rules(parser),
                Some(w @ ("serve" | "check")) => command = Some(w == "check"),
                _ => return Err(CliError::Unknown(word.to_string_lossy().into_owned())),
            },
            Long(name) => {
                let flag = format!("--{name}");
                let setting = config::setting_for_flag(&flag)
                    .ok_or_else(|| CliError::UnknownFlag(flag.clone()))?;
                let value = match config::is_switch(setting) {
                    true => parser.optional_value().unwrap_or_else(|| "true".into()),
                    false => parser.value()?,
                };
                let value = value
                    .into_string()
                    .map_err(|_| CliError::NotUtf8(flag.clone()))?;
                flags.0.push((setting.env, flag, value));
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(match command {
        Some(true) => Invocation::Check(flags),
        _ => Invocation::Serve(flags),
    })
}

/// The rest of `vcs-agent rules`: `--vendor V` (repeatable) and `--format text|json`.
fn parse_rules(mut parser: lexopt::Parser) -> Result<Invocation, CliError> {
    use lexopt::Arg::{Long, Short};
    let (mut vendors, mut format) = (Vec::new(), Format::default());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Invocation::Help),
            Long("vendor") => vendors.push(print::vendor_named(&parser.value()?.string()?)?),
            Long("format") => format = parser.value()?.string()?.parse()?,
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Invocation::Rules(vendors, format))
}

fn dispatch() -> ExitCode {
    match parse(long_flags(std::env::args_os().skip(1))) {
        Ok(Invocation::Serve(flags)) => run(&flags),
        Ok(Invocation::Check(flags)) => check(&flags),
        Ok(Invocation::Rules(vendors, format)) => {
            print!("{}", print::render(&vendors, format));
            ExitCode::SUCCESS
        }
        Ok(Invocation::Help) => {
            print!("{}", help());
            ExitCode::SUCCESS
        }
        Ok(Invocation::Version) => {
            println!("vcs-agent {}", vcs_agent::BUILD);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vcs-agent: {e}");
            ExitCode::from(2)
        }
    }
}

/// A misconfiguration: one line naming the variable, exit 2.
fn misconfigured(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(2)
}

/// `vcs-agent check`: exit 0 only when every preflight check passed.
fn check(flags: &Flags) -> ExitCode {
    match AgentConfig::load(flags) {
        Ok(config) if vcs_agent::agent::check::run(&config) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => misconfigured(e),
    }
}

/// `vcs-agent`: serves until SIGTERM/SIGINT/SIGHUP, then drains.
fn run(flags: &Flags) -> ExitCode {
    let config = match AgentConfig::load(flags) {
        Ok(config) => config,
        Err(e) => return misconfigured(e),
    };
    vcs_agent::observe::logging::init(config.log_format, config.log_level.as_deref(), "info");
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the agent could not start serving (exit 1).
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Signals(#[from] SignalError),
    #[error("cannot start the agent: {0}")]
    Agent(std::io::Error),
    #[error("{}: cannot listen on {addr}: {error}", config::METRICS_ADDR)]
    Metrics {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

fn serve(config: AgentConfig) -> Result<(), StartError> {
    let shutdown = Shutdown::install()?;
    let drain_timeout = config.drain_timeout;
    let metrics_addr = config.metrics_addr;
    let agent = Agent::start(config).map_err(StartError::Agent)?;
    if let Some(addr) = metrics_addr {
        let bound = vcs_agent::observe::endpoint::start(addr, agent.shared().clone())
            .map_err(|error| StartError::Metrics { addr, error })?;
        log::info!("health and metrics endpoint listening on {bound}");
    }
    // Slots end on their own by the drain timeout; the margin covers closing handshakes.
    let drain = shutdown.wait(|| agent.drain());
    if let Some(took) = drain.finished(agent.wait(drain_timeout + Duration::from_secs(2))) {
        log::info!("drained in {:.1}s; exiting", took.as_secs_f64());
    }
    Ok(())
}
