//! `vcs-gateway`: manages pools and serves the agent port and the `private://` front.

use lexopt::prelude::*;
use std::path::PathBuf;
use std::process::ExitCode;
use vcs_agent::config::parse_duration;
use vcs_agent::gateway::admin;
use vcs_agent::gateway::hub::Settings;
use vcs_agent::gateway::store::{format_time, Store};
use vcs_agent::gateway::{Gateway, GatewayTls};
use vcs_agent::token::{Secret, Token};

const HELP: &str = "\
vcs-gateway: the gateway side of VCS Agent Pools.

USAGE:
    vcs-gateway pool create --data-dir DIR --name NAME [--description TEXT] [--public-url URL]
        Create a pool and print its token (one line) on stdout. NAME: 1-63 of a-z 0-9 -.
        --public-url is the agent URL put in the token [ws://127.0.0.1:1984].
    vcs-gateway pool list --data-dir DIR
        List pools (name, id, created, description); keys are never shown or stored.
    vcs-gateway serve --data-dir DIR [OPTIONS]
        --agent-listen ADDR     agent WebSocket port [127.0.0.1:1984]
        --api-listen ADDR       private:// front, /healthz, /metrics, the panel (/) and /api [127.0.0.1:1985]
        --queue-timeout DUR     how long a request waits for an idle stream [30s]
        --keepalive DUR         ping idle agent streams; drop after 3 silent intervals [20s]
        --exchange-timeout DUR  longest silence from an agent inside one request [120s]
        --drain-timeout DUR     on SIGTERM/SIGINT, how long requests in flight may finish [30s]
        --max-callers N         caller connections served at once (a thread each); more wait
                                to be accepted [1024]
        --tls-cert PEM --tls-key PEM
                                serve the agent port over TLS (tokens then use wss://) [plain]
        --api-tls-cert PEM --api-tls-key PEM
                                serve the api port over TLS (may be the same files) [plain]
        --public-url URL        agent URL put in tokens the panel/API creates [ws://<agent port>]
        --admin-token TOKEN     protects the panel (/) and the API (/api/...), at least 16
                                characters; prefer env VCS_GATEWAY_ADMIN_TOKEN (not in `ps`).
                                Without it the api port may only listen on loopback.
    vcs-gateway --help | --version

Durations: 30, 30s, 500ms, 2m. Port 0 picks a free port; the bound addresses are logged.
";

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcs-gateway: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => fail(message),
    }
}

fn run() -> Result<ExitCode, String> {
    let mut parser = lexopt::Parser::from_env();
    let mut words: Vec<String> = Vec::new();
    let mut data_dir: Option<PathBuf> = None;
    let mut name: Option<String> = None;
    let mut description = String::new();
    let mut public_url: Option<String> = None;
    let mut admin_token: Option<String> = None;
    let mut agent_listen = String::from("127.0.0.1:1984");
    let mut api_listen = String::from("127.0.0.1:1985");
    let mut settings = Settings::default();
    let mut drain_timeout = std::time::Duration::from_secs(30);
    let mut tls_files: [Option<PathBuf>; 4] = Default::default();
    let text = |parser: &mut lexopt::Parser| -> Result<String, String> {
        parser
            .value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| "a value is not valid UTF-8".to_string())
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            Short('V') | Long("version") => {
                println!("vcs-gateway {}", env!("CARGO_PKG_VERSION"));
                return Ok(ExitCode::SUCCESS);
            }
            Long("data-dir") => data_dir = Some(PathBuf::from(text(&mut parser)?)),
            Long("name") => name = Some(text(&mut parser)?),
            Long("description") => description = text(&mut parser)?,
            Long("public-url") => public_url = Some(text(&mut parser)?),
            Long("admin-token") => admin_token = Some(text(&mut parser)?),
            Long("agent-listen") => agent_listen = text(&mut parser)?,
            Long("api-listen") => api_listen = text(&mut parser)?,
            Long("tls-cert") => tls_files[0] = Some(PathBuf::from(text(&mut parser)?)),
            Long("tls-key") => tls_files[1] = Some(PathBuf::from(text(&mut parser)?)),
            Long("api-tls-cert") => tls_files[2] = Some(PathBuf::from(text(&mut parser)?)),
            Long("api-tls-key") => tls_files[3] = Some(PathBuf::from(text(&mut parser)?)),
            Long("queue-timeout") => {
                settings.queue_timeout = parse_duration(&text(&mut parser)?)
                    .map_err(|e| format!("--queue-timeout: {e}"))?
            }
            Long("keepalive") => {
                settings.keepalive =
                    parse_duration(&text(&mut parser)?).map_err(|e| format!("--keepalive: {e}"))?
            }
            Long("drain-timeout") => {
                drain_timeout = parse_duration(&text(&mut parser)?)
                    .map_err(|e| format!("--drain-timeout: {e}"))?
            }
            Long("max-callers") => {
                settings.max_callers = text(&mut parser)?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=65_536).contains(n))
                    .ok_or("--max-callers: expected a number from 1 to 65536")?
            }
            Long("exchange-timeout") => {
                settings.exchange_timeout = parse_duration(&text(&mut parser)?)
                    .map_err(|e| format!("--exchange-timeout: {e}"))?
            }
            Value(word) => words.push(
                word.into_string()
                    .map_err(|_| "an argument is not valid UTF-8".to_string())?,
            ),
            other => return Err(format!("{} (see vcs-gateway --help)", other.unexpected())),
        }
    }
    let data_dir = || {
        data_dir
            .clone()
            .ok_or_else(|| "--data-dir is required".to_string())
    };
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pool", "create"] => {
            let name = name.ok_or("--name is required")?;
            let public_url = public_url.unwrap_or_else(|| "ws://127.0.0.1:1984".into());
            check_public_url(&public_url)?;
            let store = Store::open(data_dir()?)?;
            let (record, key) = store.create(&name, &description)?;
            let token = Token {
                host: public_url,
                key,
                pool_ulid: record.ulid,
            };
            println!("{}", token.encode());
            Ok(ExitCode::SUCCESS)
        }
        ["pool", "list"] => {
            let store = Store::open(data_dir()?)?;
            println!("{:<24} {:<26} {:<20} DESCRIPTION", "NAME", "ID", "CREATED");
            for pool in store.load()? {
                println!(
                    "{:<24} {:<26} {:<20} {}",
                    pool.name,
                    pool.ulid,
                    format_time(pool.created),
                    pool.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ["serve"] => {
            let tls = GatewayTls {
                agent: server_tls(&tls_files[0], &tls_files[1], "--tls-cert", "--tls-key")?,
                api: server_tls(
                    &tls_files[2],
                    &tls_files[3],
                    "--api-tls-cert",
                    "--api-tls-key",
                )?,
            };
            if let Some(url) = &public_url {
                check_public_url(url)?;
            }
            settings.public_url = public_url;
            let admin_token = admin_token
                .or_else(|| std::env::var("VCS_GATEWAY_ADMIN_TOKEN").ok())
                .filter(|t| !t.is_empty())
                .map(Secret::new);
            if let Some(token) = &admin_token {
                admin::check_token(token)?;
            }
            admin::check_bind(&api_listen, admin_token.is_some())?;
            settings.admin_token = admin_token;
            serve(
                &data_dir()?,
                &agent_listen,
                &api_listen,
                settings,
                drain_timeout,
                tls,
            )
        }
        [] => Err("a command is required: pool create, pool list or serve (see --help)".into()),
        other => Err(format!(
            "unknown command \"{}\" (see --help)",
            other.join(" ")
        )),
    }
}

/// A TLS server configuration from a certificate/key flag pair; both or neither.
fn server_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    cert_flag: &str,
    key_flag: &str,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => vcs_agent::net::tls::server_config(cert, key)
            .map(Some)
            .map_err(|e| format!("{cert_flag}/{key_flag}: {e}")),
        _ => Err(format!("{cert_flag} and {key_flag} go together")),
    }
}

/// The agent URL put in tokens must be one an agent can dial, or every token made with it
/// is refused by the agent it is given to.
fn check_public_url(url: &str) -> Result<(), String> {
    vcs_agent::net::dial::GatewayAddress::parse(url)
        .map(|_| ())
        .map_err(|e| format!("--public-url: {e}"))
}

fn serve(
    data_dir: &std::path::Path,
    agent_listen: &str,
    api_listen: &str,
    settings: Settings,
    drain_timeout: std::time::Duration,
    tls: GatewayTls,
) -> Result<ExitCode, String> {
    vcs_agent::observe::init_logging("info");
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let (agent_tls, api_tls) = (tls.agent.is_some(), tls.api.is_some());
    let gateway = Gateway::start_with_tls(data_dir, agent_listen, api_listen, settings, tls)?;
    let scheme = |on: bool| if on { "TLS" } else { "plain, no TLS" };
    log::info!("agent port serves {}", scheme(agent_tls));
    log::info!("api port serves {}", scheme(api_tls));
    log::info!("agent port listening on {}", gateway.agent_addr);
    log::info!("api port listening on {}", gateway.api_addr);
    let protected = if gateway.hub.settings.admin_token.is_some() {
        "admin token required"
    } else {
        "no admin token: loopback only"
    };
    log::info!("panel at http://{}/ ({protected})", gateway.api_addr);
    log::info!(
        "{} pools loaded from {}",
        gateway.hub.pools().len(),
        gateway.hub.store.path().display()
    );
    let (first, first_signal) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        for (seen, signal) in signals.forever().enumerate() {
            if seen == 0 {
                let _ = first.send(signal);
            } else {
                log::warn!("second signal {signal}: exiting now");
                std::process::exit(130);
            }
        }
    });
    if let Ok(signal) = first_signal.recv() {
        gateway.hub.start_draining();
        log::info!("signal {signal} received: draining (a second signal exits at once)");
    }
    if gateway.drain(drain_timeout) {
        log::info!("drained: no request in flight; exiting");
    } else {
        log::warn!("drain timeout reached with requests still running; exiting");
    }
    gateway.wait_streams_closed(std::time::Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}
