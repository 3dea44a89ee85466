//! `vcs-agent`: reads its configuration from the environment and serves until SIGTERM/SIGINT.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;
use vcs_agent::agent::Agent;
use vcs_agent::config::{self, AgentConfig};

fn help() -> String {
    let mut text = format!(
        "vcs-agent {}\n\
         Serves private:// requests from a VCS Agent Pools gateway against an internal VCS.\n\n\
         USAGE:\n    vcs-agent            run (configured by the environment below)\n    \
         vcs-agent check      preflight: token, gateway login, VCS reachability, project regex;\n                         \
         one `ok`/`FAIL` line per check, exit 0 only when all pass\n    \
         vcs-agent --help     print this help\n    vcs-agent --version  print the version\n\n\
         ENVIRONMENT (default in brackets):\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, default, meaning) in config::VARIABLES {
        text.push_str(&format!("    {name}\n        [{default}] {meaning}\n"));
    }
    text.push_str("\nSIGNALS:\n    SIGTERM/SIGINT drain: finish in-flight requests, then exit 0; a second signal exits at once.\n");
    text
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("--help" | "-h" | "help") => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("vcs-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("check") => {
            return match AgentConfig::from_env() {
                Ok(config) if vcs_agent::agent::check::run(&config) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(other) => {
            eprintln!("vcs-agent: unknown argument \"{other}\" (see vcs-agent --help)");
            return ExitCode::from(2);
        }
    }

    let config = match AgentConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    vcs_agent::observe::logging::init(config.log_format, config.log_level.as_deref(), "info");

    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let drain_timeout = config.drain_timeout;
    let metrics_addr = config.metrics_addr;
    let agent = match Agent::start(config) {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("cannot start the agent: {e}");
            return ExitCode::FAILURE;
        }
    };

    if let Some(addr) = metrics_addr {
        match vcs_agent::observe::endpoint::start(addr, agent.shared().clone()) {
            Ok(bound) => log::info!("health and metrics endpoint listening on {bound}"),
            Err(e) => {
                eprintln!("{}: cannot listen on {addr}: {e}", config::METRICS_ADDR);
                return ExitCode::FAILURE;
            }
        }
    }

    let (signalled, first_signal) = crossbeam_channel::bounded(1);
    let mut signals = signals;
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen == 1 {
                    log::info!(
                        "signal {signal} received: draining (a second signal exits at once)"
                    );
                    let _ = signalled.send(());
                } else {
                    log::warn!("second signal {signal}: exiting now");
                    std::process::exit(130);
                }
            }
        });

    let _ = first_signal.recv();
    agent.drain();
    let started = std::time::Instant::now();
    // Slots end on their own by the drain timeout; the margin covers closing handshakes.
    if agent.wait(drain_timeout + Duration::from_secs(2)) {
        log::info!(
            "drained in {:.1}s; exiting",
            started.elapsed().as_secs_f64()
        );
    } else {
        log::warn!("drain timeout reached with requests still running; exiting");
    }
    ExitCode::SUCCESS
}
