//! `vcs-gateway`: manages pools and serves the agent port and the `private://` front.

use lexopt::prelude::*;
use std::path::PathBuf;
use std::process::ExitCode;
use vcs_agent::config::parse_duration;
use vcs_agent::gateway::admin;
use vcs_agent::gateway::hub::Settings;
use vcs_agent::gateway::peer::sign::PeerSecret;
use vcs_agent::gateway::peer::PeerOptions;
use vcs_agent::gateway::shared::Shared;
use vcs_agent::gateway::store::{format_time, validate_caller_name, validate_name, Scope, Store};
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
    vcs-gateway pool rotate --data-dir DIR --name NAME [--public-url URL]
        Give a pool a new key and print its new token; agents with the old one are cut off.
    vcs-gateway pool delete --data-dir DIR --name NAME
        Delete a pool (its agents are cut off; it leaves every caller's pools).
    vcs-gateway caller create --data-dir DIR --name NAME (--pools POOL,POOL... | --all-pools)
        Create a caller (a credential of the SaaS side) that may use those pools; its secret
        is printed once, alone on the last line of stdout. Only its hash is stored.
        --client-cert PEM: a client certificate that identifies the caller instead of the
        secret, on an api port with --api-client-ca.
    vcs-gateway caller list --data-dir DIR
        List callers (name, id, created, pools); secrets are never shown or stored.
    vcs-gateway caller rotate --data-dir DIR --name NAME
        Give a caller a new secret (printed like create); the old one stops working.
    vcs-gateway caller delete --data-dir DIR --name NAME
    vcs-gateway serve --data-dir DIR [OPTIONS]
        --agent-listen ADDR     agent WebSocket port [127.0.0.1:1984]
        --api-listen ADDR       private:// front, /healthz, /metrics, the panel (/) and /api [127.0.0.1:1985]
        --metrics-listen ADDR   also serve /healthz and /metrics in full, without the admin
                                token, on this address (a private scrape network) [off]
        --queue-timeout DUR     how long a request waits for an idle stream [30s]
        --keepalive DUR         ping idle agent streams; drop after 3 silent intervals [20s]
        --exchange-timeout DUR  longest silence from an agent inside one request [120s]
        --drain-timeout DUR     on SIGTERM/SIGINT, how long requests in flight may finish [30s]
        --max-callers N         tunnel requests served at once (a connection and thread
                                each); idle connections are closed to admit new ones [1024]
        --min-upload-rate BYTES a request body holding an agent stream must average this many
                                bytes/s after the grace, else 408 [240; 0 = off]
        --upload-grace DUR      how long before the upload rate is enforced [5s]
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
        --admin-token TOKEN     protects the panel (/), the API (/api/...), /metrics and the
                                figures of /healthz, at least 16 characters; prefer env
                                VCS_GATEWAY_ADMIN_TOKEN (not in `ps`). Without it one is made
                                on first start and kept in DIR/admin-token (0600).
    vcs-gateway --help | --version

Every command takes --redis URL instead of --data-dir DIR: pools and callers then live in
Redis, shared by every gateway serving with the same --redis (see the README, \"Run several
gateways\"). URL: redis://[:PASSWORD@]HOST:PORT[/DB] or unix:///PATH/redis.sock; prefer
VCS_GATEWAY_REDIS_URL for a URL with a password (not in `ps`), used when neither is given.
    serve --redis URL also takes:
        --replica-id ID         this replica's name in logs and Redis [generated]
        --peer-listen ADDR      the replica-to-replica port: a request for a pool with no
                                idle stream here goes to a replica that has one [off]
        --peer-advertise ADDR   the address other replicas reach this one at [the bound one;
                                required when --peer-listen binds 0.0.0.0 or ::]
        --peer-secret SECRET    signs forwarded requests, the same on every replica, at least
                                32 characters; prefer env VCS_GATEWAY_PEER_SECRET (not in `ps`)
        --redis-ca PEM          with a rediss:// URL: trust these CAs too (any command)
        --admin-token (or VCS_GATEWAY_ADMIN_TOKEN) is then required, the same on every replica.

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
    let mut redis_url: Option<String> = None;
    let mut replica_id: Option<String> = None;
    let mut poll_only = false;
    let mut redis_ca: Option<PathBuf> = None;
    let mut peer_listen: Option<String> = None;
    let mut peer_advertise: Option<String> = None;
    let mut peer_secret: Option<String> = None;
    let mut name: Option<String> = None;
    let mut description = String::new();
    let mut public_url: Option<String> = None;
    let mut admin_token: Option<String> = None;
    let mut scope: Option<Scope> = None;
    let mut client_cert: Option<PathBuf> = None;
    let mut api_client_ca: Option<PathBuf> = None;
    let mut agent_listen = String::from("127.0.0.1:1984");
    let mut api_listen = String::from("127.0.0.1:1985");
    let mut metrics_listen: Option<String> = None;
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
            Long("redis") => redis_url = Some(text(&mut parser)?),
            Long("replica-id") => replica_id = Some(text(&mut parser)?),
            // For tests: changes reach this replica by the polled version alone.
            Long("redis-poll-only") => poll_only = true,
            Long("redis-ca") => redis_ca = Some(PathBuf::from(text(&mut parser)?)),
            Long("peer-listen") => peer_listen = Some(text(&mut parser)?),
            Long("peer-advertise") => peer_advertise = Some(text(&mut parser)?),
            Long("peer-secret") => peer_secret = Some(text(&mut parser)?),
            Long("name") => name = Some(text(&mut parser)?),
            Long("description") => description = text(&mut parser)?,
            Long("public-url") => public_url = Some(text(&mut parser)?),
            Long("admin-token") => admin_token = Some(text(&mut parser)?),
            Long("pools") => scope = Some(parse_pools(&text(&mut parser)?)?),
            Long("all-pools") => scope = Some(Scope::All),
            Long("client-cert") => client_cert = Some(PathBuf::from(text(&mut parser)?)),
            Long("api-client-ca") => api_client_ca = Some(PathBuf::from(text(&mut parser)?)),
            Long("agent-listen") => agent_listen = text(&mut parser)?,
            Long("api-listen") => api_listen = text(&mut parser)?,
            Long("metrics-listen") => metrics_listen = Some(text(&mut parser)?),
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
                settings.max_callers = connections("--max-callers", &text(&mut parser)?)?
            }
            Long("max-callers-per-address") => {
                settings.max_per_address =
                    connections("--max-callers-per-address", &text(&mut parser)?)?
            }
            Long("min-upload-rate") => {
                settings.min_upload_rate = text(&mut parser)?
                    .parse::<u64>()
                    .map_err(|_| "--min-upload-rate: expected bytes per second (0 turns it off)")?
            }
            Long("upload-grace") => {
                settings.upload_grace = parse_duration(&text(&mut parser)?)
                    .map_err(|e| format!("--upload-grace: {e}"))?
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
    if redis_url.is_some() && data_dir.is_some() {
        return Err("--redis and --data-dir: give one of them".into());
    }
    if redis_url.is_none() && data_dir.is_none() {
        // A URL with a password stays out of `ps` this way.
        redis_url = std::env::var("VCS_GATEWAY_REDIS_URL")
            .ok()
            .filter(|url| !url.trim().is_empty());
    }
    let data_dir = || {
        data_dir
            .clone()
            .ok_or_else(|| "--data-dir (or --redis) is required".to_string())
    };
    let open_store = || -> Result<Store, String> {
        match &redis_url {
            Some(url) => Ok(Store::redis(Shared::connect_with(
                url,
                redis_ca.as_deref(),
            )?)),
            None => Store::open(data_dir()?),
        }
    };
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pool", "create"] => {
            let name = name.ok_or("--name is required")?;
            let public_url = token_host(public_url)?;
            let (record, key) = open_store()?.create(&name, &description)?;
            print_token(public_url, key, record.ulid)
        }
        ["pool", "rotate"] => {
            let name = name.ok_or("--name is required")?;
            let public_url = token_host(public_url)?;
            let (record, key) = open_store()?
                .rotate(&name)?
                .ok_or_else(|| format!("--name: no pool named \"{name}\""))?;
            print_token(public_url, key, record.ulid)
        }
        ["pool", "delete"] => {
            let name = name.ok_or("--name is required")?;
            if !open_store()?.delete(&name)? {
                return Err(format!("--name: no pool named \"{name}\""));
            }
            println!("pool {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        ["pool", "list"] => {
            let store = open_store()?;
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
                api: match (&tls_files[2], &tls_files[3], &api_client_ca) {
                    (Some(cert), Some(key), Some(ca)) => Some(
                        vcs_agent::net::tls::server_config_for_clients(cert, key, Some(ca))
                            .map_err(|e| format!("--api-tls-cert/--api-tls-key/--api-client-ca: {e}"))?,
                    ),
                    (_, _, Some(_)) => {
                        return Err("--api-client-ca needs --api-tls-cert and --api-tls-key".into())
                    }
                    _ => server_tls(&tls_files[2], &tls_files[3], "--api-tls-cert", "--api-tls-key")?,
                },
            };
            if let Some(url) = &public_url {
                check_public_url(url)?;
            }
            settings.public_url = public_url;
            let admin_token = admin_token
                .or_else(|| std::env::var("VCS_GATEWAY_ADMIN_TOKEN").ok())
                .filter(|t| !t.is_empty())
                .map(Secret::new);
            let admin_token = match admin_token {
                Some(token) => {
                    admin::check_token(&token)?;
                    AdminToken::Given(token)
                }
                None if redis_url.is_some() => {
                    return Err("--admin-token (or VCS_GATEWAY_ADMIN_TOKEN) is required with --redis: give every replica the same one".into())
                }
                None => {
                    std::fs::create_dir_all(data_dir()?).map_err(|e| {
                        format!("--data-dir: cannot create {}: {e}", data_dir().unwrap_or_default().display())
                    })?;
                    match admin::load_or_create(&data_dir()?)? {
                        (token, true) => AdminToken::Made(token),
                        (token, false) => AdminToken::Kept(token),
                    }
                }
            };
            let peers = peer_options(redis_url.is_some(), peer_listen, peer_advertise, peer_secret)?;
            let store = open_store()?;
            if let (Some(shared), AdminToken::Given(token)) = (store.shared(), &admin_token) {
                let hash = vcs_agent::token::key_hash(token.expose());
                if !shared.same_admin_token(&hash).map_err(|e| format!("--redis: {e}"))? {
                    return Err("--admin-token: not the admin token the other replicas use (its SHA-256 is in Redis): give every replica the same one".into());
                }
            }
            if store.shared().is_some() {
                let id = match replica_id {
                    Some(id) => {
                        validate_name(&id).map_err(|e| format!("--replica-id: {e}"))?;
                        id
                    }
                    None => ulid::Ulid::new().to_string().to_ascii_lowercase(),
                };
                settings.replica_id = Some(id);
                settings.poll_only = poll_only;
            }
            let ports = Ports {
                agent: &agent_listen,
                api: &api_listen,
                metrics: metrics_listen.as_deref(),
                peers,
            };
            serve(
                store,
                ports,
                settings,
                admin_token,
                drain_timeout,
                tls,
            )
        }
        ["caller", command] => caller(command, open_store()?, name, scope, client_cert),
        [] => Err("a command is required: pool create, pool list, caller create, caller list, caller rotate, caller delete or serve (see --help)".into()),
        other => Err(format!(
            "unknown command \"{}\" (see --help)",
            other.join(" ")
        )),
    }
}

/// Where `serve` listens.
struct Ports<'a> {
    agent: &'a str,
    api: &'a str,
    metrics: Option<&'a str>,
    peers: Option<PeerOptions>,
}

/// `--peer-listen`, checked before anything starts: it needs `--redis` and a strong
/// `--peer-secret` (or `VCS_GATEWAY_PEER_SECRET`, which stays out of `ps`).
fn peer_options(
    redis: bool,
    listen: Option<String>,
    advertise: Option<String>,
    secret: Option<String>,
) -> Result<Option<PeerOptions>, String> {
    let secret = secret
        .or_else(|| std::env::var("VCS_GATEWAY_PEER_SECRET").ok())
        .filter(|s| !s.is_empty());
    let Some(listen) = listen else {
        if advertise.is_some() {
            return Err("--peer-advertise needs --peer-listen".into());
        }
        return Ok(None);
    };
    if !redis {
        return Err("--peer-listen needs --redis: forwarding is between replicas".into());
    }
    let Some(secret) = secret else {
        return Err("--peer-listen needs --peer-secret (or VCS_GATEWAY_PEER_SECRET), the same on every replica".into());
    };
    Ok(Some(PeerOptions {
        listen,
        advertise,
        secret: PeerSecret::new(Secret::new(secret))?,
    }))
}

/// The admin token and where it came from (logged at start, never its value).
enum AdminToken {
    Given(Secret),
    Made(Secret),
    Kept(Secret),
}

impl AdminToken {
    fn secret(self) -> Secret {
        match self {
            AdminToken::Given(s) | AdminToken::Made(s) | AdminToken::Kept(s) => s,
        }
    }
}

/// `--client-cert PEM`: the SHA-256 (hex) of the file's first certificate.
fn certificate_sha256(path: &std::path::Path) -> Result<String, String> {
    use sha2::Digest;
    let certs =
        vcs_agent::net::tls::pem_certificates(path).map_err(|e| format!("--client-cert: {e}"))?;
    let digest = sha2::Sha256::digest(certs[0].as_ref());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// `--pools a,b`: pool names, each valid, at least one.
fn parse_pools(text: &str) -> Result<Scope, String> {
    let pools: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if pools.is_empty() {
        return Err("--pools: expected pool names separated by commas (or --all-pools)".into());
    }
    for pool in &pools {
        validate_name(pool).map_err(|e| format!("--pools: {e}"))?;
    }
    Ok(Scope::Pools(pools))
}

/// `caller create|list|rotate|delete`.
fn caller(
    command: &str,
    store: Store,
    name: Option<String>,
    scope: Option<Scope>,
    client_cert: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let name = || name.clone().ok_or("--name is required");
    match command {
        "create" => {
            let scope = scope.ok_or("--pools POOL,POOL... or --all-pools is required")?;
            let name = name()?;
            validate_caller_name(&name).map_err(|e| format!("--name: {e}"))?;
            if let Scope::Pools(pools) = &scope {
                let known = store.load()?;
                if let Some(missing) = pools.iter().find(|p| !known.iter().any(|k| &k.name == *p)) {
                    return Err(format!(
                        "--pools: no pool named \"{missing}\" (see pool list)"
                    ));
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
        }
        "rotate" => {
            let name = name()?;
            let (_, secret) = store
                .rotate_caller(&name)?
                .ok_or_else(|| format!("--name: no caller named \"{name}\""))?;
            println!(
                "caller {name} has a new secret (the old one no longer works), shown only now:"
            );
            println!("{}", secret.expose());
        }
        "delete" => {
            let name = name()?;
            if !store.delete_caller(&name)? {
                return Err(format!("--name: no caller named \"{name}\""));
            }
            println!("caller {name} deleted");
        }
        "list" => {
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
        }
        other => return Err(format!("unknown command \"caller {other}\" (see --help)")),
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_scope(scope: &Scope) -> String {
    match scope {
        Scope::All => "all pools".into(),
        Scope::Pools(pools) => pools.join(","),
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
    store: Store,
    ports: Ports,
    mut settings: Settings,
    admin_token: AdminToken,
    drain_timeout: std::time::Duration,
    tls: GatewayTls,
) -> Result<ExitCode, String> {
    vcs_agent::observe::init_logging("info");
    let data_dir = store.path().parent().map(PathBuf::from).unwrap_or_default();
    let data_dir = data_dir.as_path();
    let where_token = match &admin_token {
        AdminToken::Given(_) => "the admin token is the one given (--admin-token or VCS_GATEWAY_ADMIN_TOKEN)".to_string(),
        AdminToken::Made(_) => format!(
            "no admin token given: made one and wrote it to {} (mode 0600); the panel, /api, /metrics and /healthz figures need it",
            admin::token_path(data_dir).display()
        ),
        AdminToken::Kept(_) => format!(
            "no admin token given: using the one in {}",
            admin::token_path(data_dir).display()
        ),
    };
    settings.admin_token = Some(admin_token.secret());
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let (agent_tls, api_tls) = (tls.agent.is_some(), tls.api.is_some());
    let poll_only = settings.poll_only;
    if let Some(id) = &settings.replica_id {
        log::info!(
            "replica {id}: pools and callers in Redis at {}",
            store.describe()
        );
    }
    let gateway =
        Gateway::start_with_store(store, ports.agent, ports.api, settings, tls, poll_only)?;
    let scheme = |on: bool| if on { "TLS" } else { "plain, no TLS" };
    log::info!("agent port serves {}", scheme(agent_tls));
    log::info!("api port serves {}", scheme(api_tls));
    log::info!("agent port listening on {}", gateway.agent_addr);
    log::info!("api port listening on {}", gateway.api_addr);
    if let Some(options) = ports.peers {
        let addr = vcs_agent::gateway::peer::start(&gateway.hub, options)?;
        log::info!("peer port listening on {addr} (requests forwarded by other replicas, signed with the peer secret)");
    }
    if let Some(listen) = ports.metrics {
        let addr = gateway.serve_metrics(listen)?;
        log::info!("metrics port listening on {addr} (/healthz and /metrics without authentication: keep it on a private scrape network)");
    }
    log::info!("{where_token}");
    log::info!(
        "panel at http://{}/ (admin token required)",
        gateway.api_addr
    );
    match gateway.hub.callers.count() {
        0 => log::warn!(
            "no caller exists yet: the front refuses every tunnel request until one does (vcs-gateway caller create {} --name NAME --pools POOL)",
            match gateway.hub.store.shared() {
                Some(_) => "--redis URL".to_string(),
                None => format!("--data-dir {}", data_dir.display()),
            }
        ),
        n => log::info!("{n} callers may use the front"),
    }
    log::info!(
        "{} pools loaded from {}",
        gateway.hub.pools().len(),
        gateway.hub.store.describe()
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

/// The agent URL a CLI-made token carries: `--public-url`, checked, or the default agent port.
fn token_host(public_url: Option<String>) -> Result<String, String> {
    let public_url = public_url.unwrap_or_else(|| "ws://127.0.0.1:1984".into());
    check_public_url(&public_url)?;
    Ok(public_url)
}

/// Prints a pool token, alone on its line (its only copy: the store keeps a hash).
fn print_token(host: String, key: Secret, pool_ulid: String) -> Result<ExitCode, String> {
    let token = Token {
        host,
        key,
        pool_ulid,
    };
    println!("{}", token.encode());
    Ok(ExitCode::SUCCESS)
}

/// A number of connections for `flag`: 1 to 65536.
fn connections(flag: &str, value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=65_536).contains(n))
        .ok_or_else(|| format!("{flag}: expected a number from 1 to 65536"))
}
