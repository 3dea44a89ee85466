//! `vcs-agent`: reads its configuration from the environment and serves until SIGTERM/SIGINT.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use vcs_agent::agent::Agent;
use vcs_agent::config::{self, AgentConfig};
use vcs_agent::shutdown::{Shutdown, SignalError};

fn help() -> String {
    let mut text = format!(
        "vcs-agent {}\n\
         Serves private:// requests from a VCS Agent Pools gateway against an internal VCS.\n\n\
         USAGE:\n    vcs-agent            run (configured by the environment below)\n    \
         vcs-agent check      preflight: token, gateway login, VCS reachability, project regex;\n                         \
         one `ok`/`FAIL` line per check, exit 0 only when all pass\n    \
         vcs-agent --help     print this help\n    vcs-agent --version  print the version\n\n\
         ENVIRONMENT (default in brackets):\n",
        vcs_agent::BUILD
    );
    for (name, default, meaning) in config::VARIABLES {
        text.push_str(&format!("    {name}\n        [{default}] {meaning}\n"));
    }
    text.push_str("\nSIGNALS:\n    SIGTERM/SIGINT drain: finish in-flight requests, then exit 0; a second signal exits at once.\n");
    text
}

fn main() -> ExitCode {
    let code = dispatch();
    vcs_agent::observe::logging::flush();
    code
}

fn dispatch() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => run(),
        Some("--help" | "-h" | "help") => {
            print!("{}", help());
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("vcs-agent {}", vcs_agent::BUILD);
            ExitCode::SUCCESS
        }
        Some("check") => check(),
        Some(other) => {
            eprintln!("vcs-agent: unknown argument \"{other}\" (see vcs-agent --help)");
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
fn check() -> ExitCode {
    match AgentConfig::from_env() {
        Ok(config) if vcs_agent::agent::check::run(&config) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => misconfigured(e),
    }
}

/// `vcs-agent`: serves until SIGTERM/SIGINT, then drains.
fn run() -> ExitCode {
    let config = match AgentConfig::from_env() {
        Ok(config) => config,
        Err(e) => return misconfigured(e),
    };
    vcs_agent::observe::logging::init(config.log_format, config.log_level.as_deref(), "info");
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
