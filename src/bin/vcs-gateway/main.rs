//! `vcs-gateway`: manages pools and callers, and serves the agent port and the `private://`
//! front. The command line becomes a [`flags::Command`]; `serve` hands its
//! [`Config`](vcs_agent::gateway::config::Config) to the library, waits for a signal and
//! drains. Every problem exits 2 with one line on stderr.

#![forbid(unsafe_code)]

mod commands;
mod flags;

use flags::{help, Args, CliError, Command, Stop};
use std::process::ExitCode;
use std::time::Duration;
use vcs_agent::gateway::config::Config;
use vcs_agent::gateway::Gateway;
use vcs_agent::shutdown::Shutdown;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcs-gateway: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let code = match Command::parse(Args(lexopt::Parser::from_env())) {
        Ok(command) => run(command).map_or_else(fail, |()| ExitCode::SUCCESS),
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

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::PoolCreate(flags) => commands::pool_create(flags),
        Command::PoolList(store) => commands::pool_list(store),
        Command::PoolRotate(flags) => commands::pool_rotate(flags),
        Command::PoolDelete(flags) => commands::pool_delete(flags),
        Command::PoolUpdate(flags) => commands::pool_update(flags),
        Command::CallerCreate(flags) => commands::caller_create(flags),
        Command::CallerList(store) => commands::caller_list(store),
        Command::CallerRotate(flags) => commands::caller_rotate(flags),
        Command::CallerDelete(flags) => commands::caller_delete(flags),
        Command::Serve(config) => serve(*config),
    }
}

/// `serve`: serves until SIGTERM/SIGINT/SIGHUP, then drains.
fn serve(config: Config) -> Result<(), CliError> {
    let drain_timeout = config.drain_timeout;
    let shutdown = Shutdown::install()?;
    let gateway = Gateway::serve(config)?;
    let drain = shutdown.wait(|| gateway.start_draining());
    if drain.finished(gateway.drain(drain_timeout)).is_some() {
        log::info!("drained: no request in flight; exiting");
    }
    gateway.wait_streams_closed(Duration::from_secs(2));
    Ok(())
}
