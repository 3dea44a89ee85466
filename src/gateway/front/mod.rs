//! The api port: `private://<pool>/<path>` arrives as `/private/<pool>/<path>?<query>`, with
//! a caller's secret ([`crate::gateway::state::callers`]), and is handed to an idle stream of that pool;
//! `/healthz` tells anyone liveness and the operator (admin token) pools and streams;
//! `/metrics` gives the operator per-pool figures in the Prometheus text format (both also on
//! `--metrics-listen`, [`serve_metrics`]); the panel (`/`) and its JSON API (`/api/…`) are
//! served by [`crate::gateway::operator::panel`] and [`crate::gateway::operator::api`].
//!
//! The port is exposed to the SaaS side, so nothing here trusts where a request comes from:
//! a tunnel request is authenticated before its pool is even looked up, a first request head
//! has 10 s, the connection counts idle while it waits for a head (closed first when the port
//! is full, [`crate::net::listen`]), and a request body that holds an agent stream must keep a
//! minimum rate ([`crate::gateway::exchange`]).
//!
//! A thread per caller connection reads request heads (keep-alive) and routes them. For a
//! tunnel request it reads the start of the body (all of a small one), takes an idle agent
//! stream of the pool (waiting up to the queue timeout), runs the exchange itself, writing
//! the answer straight to its caller, and gives the stream back: no thread hand-off on the
//! way, and a caller that sends slowly keeps no stream waiting.
//!
//! A tunnel request is a `Tunnel`: it admits the request (caller, scope, pool: all decided
//! from the head), makes its [`Job`] (target, headers, the start of the body) and hands it to
//! [`dispatch::serve`]: [`local::serve_locally`], the one place a job gets a
//! stream, or on a replica with a peer port, another replica's stream when none here is idle.
//! Whatever ends it (a refusal, or the exchange's record) leaves one record, logged when the
//! `Tunnel` is dropped.
//!
//! Imports point down: to the operator's pages ([`crate::gateway::operator`]), the
//! replicas' client side, the exchange, the state and the store; nothing imports the front
//! but the gateway's wiring.
//!
//! **Ceilings.** `--max-callers` tunnel requests run at once, a connection and a thread each;
//! one more is answered `503 queue_timeout`. The port holds `OPERATOR_RESERVE` connections
//! beyond that for the panel, the API and health checks, so a flood of tunnel requests cannot
//! lock the operator out. The idlest connection making room is what nginx does; only when every
//! connection is working do new ones wait in the kernel's accept backlog. At the
//! `--max-callers-per-address` ceiling that address's own idlest connection is closed, so idle
//! sockets cannot lock out everyone behind one NAT; when all of them are working the new one is
//! closed at once.
//!
//! **Total deadlines per phase**, however the bytes trickle in, so an idle or dribbling peer
//! cannot keep its place: TLS handshake 10 s, a keep-alive head 75 s, the start of a body 75 s;
//! a request refused `401` closes its connection. The upload rate holds in every 5 s window
//! after `--upload-grace` (bytes that came earlier buy nothing, as with Kestrel's
//! `MinRequestBodyDataRate`), else `408` and the stream is released at once.
//! `--min-download-rate` counts only time spent waiting for the caller's socket, so a slow agent
//! or VCS never counts against the caller; a caller cut off is logged `caller_too_slow`.
//!
//! **Refusals are counted, not narrated.** A tunnel request the gateway answers itself (`401`,
//! `403`, unknown pool, bad request, a `503`) writes no line of its own: one `WARN` summary by
//! reason, address and pool, with three examples of at most 200 bytes, at most every 5 s, so a
//! client without credentials cannot make the log grow faster than that. The panel, `/healthz`
//! and `/metrics` still count each one. A request refused without reading its body gets its
//! answer, then a lingering close (FIN, the rest of the upload read and dropped for up to 2 s or
//! 16 MiB), so the caller reads the answer rather than a reset.
//!
//! **The front URL** the agent is told with each request is the api port's scheme and the
//! caller's `Host`, or `--front-url`; never `X-Forwarded-*`, in which a caller could name any
//! host. `Expect: 100-continue` is answered here once the pool is found, and not forwarded. Only
//! a request whose stream proved dead before its head was written is dispatched again: nothing
//! is retried once an agent may have started it.

mod dispatch;

use crate::gateway::exchange::job::{read_body_start, tunnel_target, Connection, Job};
use crate::gateway::exchange::local::{self, Refused, Served};
use crate::gateway::exchange::write_error;
use crate::gateway::operator::health;
use crate::gateway::replicas::Peers;
use crate::gateway::state::callers;
use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::LivePool;
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::settings::GatewaySettings;
use crate::gateway::store::Scope;
use crate::http1::{self, Framing, HeadError, RequestHead};
use crate::net::deadline::Watchable;
use crate::net::listen::Presence;
use crate::net::Stream;
use crate::protocol::{self, ErrorKind};

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an idle keep-alive connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// Longest a new connection may take to send its first request head, in total: until a
/// request is served, nothing says the peer is anyone.
const FIRST_HEAD_LIMIT: Duration = Duration::from_secs(10);

/// Connections the api port serves beyond `--max-callers`, so the operator's panel, API and
/// health checks get in while every tunnel slot is in use.
pub const OPERATOR_RESERVE: usize = 64;

/// Longest a TLS handshake on the api port may take, in total.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Longest the start of a request body (up to one piece, read before a stream is taken) may
/// take to arrive, in total.
const BODY_START_LIMIT: Duration = Duration::from_secs(75);

/// Serves one caller connection, request after request (keep-alive), until either side
/// closes it.
pub(crate) fn handle_connection(
    tcp: TcpStream,
    presence: &Presence,
    hub: &Hub,
    peers: Option<&Peers>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let Some((mut caller, certificate)) = open(tcp, tls, hub.settings.caller_write_timeout())
    else {
        return;
    };
    let mut limit = FIRST_HEAD_LIMIT;
    loop {
        // Waiting for the next request and reading its head: a total deadline however the
        // bytes trickle in, so idle or dribbling peers cannot keep their place for long; and
        // meanwhile the connection counts idle, to be closed first when the port is full.
        presence.idle();
        let waiting = caller.watchable.watch(limit);
        let head = http1::read_request_head(&mut caller.conn);
        drop(waiting);
        presence.busy();
        limit = IDLE_TIMEOUT;
        let head = match head {
            Ok(head) => head,
            Err(HeadError::Closed) | Err(HeadError::Io(_)) => return,
            Err(e) => {
                let out = caller.conn.get_mut();
                let _ = write_error(out, None, ErrorKind::BadRequest, &e.to_string(), false);
                return;
            }
        };
        match route(head, caller, hub, peers, certificate.as_deref()) {
            Some(next) => caller = next,
            None => return,
        }
    }
}

/// A new connection on the api port, through its TLS handshake when there is TLS; with the
/// client certificate the handshake verified (`--api-client-ca`), which may name a caller.
fn open(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    write_timeout: Duration,
) -> Option<(Connection, Option<Vec<u8>>)> {
    let peer = tcp.peer_addr().ok()?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(IDLE_TIMEOUT));
    // A caller that takes nothing of what is written for this long is cut off.
    let _ = tcp.set_write_timeout(Some(write_timeout));
    let watchable = Watchable::of(&tcp);
    let handshake = tls.is_some().then(|| watchable.watch(TLS_HANDSHAKE_LIMIT));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => match crate::net::tls::accept(config, tcp, TLS_HANDSHAKE_LIMIT) {
            Ok(tls) => Stream::TlsServer(Box::new(tls)),
            Err(e) => {
                log::debug!("{}", e.describe(&format!("caller {peer}")));
                return None;
            }
        },
    };
    drop(handshake);
    let certificate: Option<Vec<u8>> = match &stream {
        Stream::TlsServer(tls) => tls
            .conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|der| der.to_vec()),
        _ => None,
    };
    let caller = Connection {
        conn: BufReader::with_capacity(16 * 1024, stream),
        peer,
        watchable,
        scheme,
    };
    Some((caller, certificate))
}

/// Serves one request; returns the connection when it can take another.
fn route(
    head: RequestHead,
    mut caller: Connection,
    hub: &Hub,
    peers: Option<&Peers>,
    certificate: Option<&[u8]>,
) -> Option<Connection> {
    let keep_alive = head.keep_alive();
    let path = head.target.split('?').next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("/private/") {
        let (pool, _) = rest.split_once('/').unwrap_or((rest, ""));
        let pool = pool.to_string();
        return tunnel(head, caller, hub, peers, &pool, certificate);
    }
    if path == "/api" || path.starts_with("/api/") {
        return crate::gateway::operator::api::serve(head, caller, hub);
    }
    // A body we do not read would be taken for the next request: such a connection closes.
    let has_body = !matches!(head.framing(), Ok(http1::Framing::Empty));
    let written = match (head.method.as_str(), path) {
        // Liveness for anyone; pool names and figures only for the operator.
        ("GET", "/healthz") if !admin(&head, hub) => http1::write_simple(
            caller.conn.get_mut(),
            200,
            "application/json",
            br#"{"status":"ok"}"#,
            keep_alive,
        ),
        ("GET", "/metrics") if !admin(&head, hub) => http1::write_simple_with(
            caller.conn.get_mut(),
            401,
            "application/json",
            br#"{"error":"/metrics needs the admin token: send Authorization: Bearer <token>, or scrape --metrics-listen","kind":"unauthorized"}"#,
            keep_alive,
            &[("WWW-Authenticate".into(), "Bearer realm=\"vcs-gateway\"".into())],
        ),
        ("GET", "/healthz" | "/metrics") => health::write_monitoring(caller.conn.get_mut(), path, hub, peers, keep_alive),
        ("GET", _) if crate::gateway::operator::panel::asset(path).is_some() => {
            crate::gateway::operator::panel::write(caller.conn.get_mut(), path, keep_alive)
        }
        _ => http1::write_simple(
            caller.conn.get_mut(),
            404,
            "application/json",
            br#"{"error":"not found: tunnel requests go to /private/<pool>/<path>","message":"not found: tunnel requests go to /private/<pool>/<path>","errors":[{"message":"not found: tunnel requests go to /private/<pool>/<path>"}]}"#,
            keep_alive && !has_body,
        ),
    };
    (written.is_ok() && keep_alive && !has_body).then_some(caller)
}

/// Whether the request carries the admin token.
fn admin(head: &RequestHead, hub: &Hub) -> bool {
    crate::gateway::operator::admin::authorized(
        hub.settings.admin_token.as_ref(),
        head.header("authorization"),
    )
}

/// The caller a request's `Vcs-Gateway-Authorization` header names, or without one, the
/// client certificate of its connection.
fn authenticate(
    head: &RequestHead,
    hub: &Hub,
    certificate: Option<&[u8]>,
) -> Result<Arc<callers::Caller>, callers::Refusal> {
    let mut values = head
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(callers::HEADER))
        .map(|(_, value)| value.as_str())
        .peekable();
    match (values.peek(), certificate) {
        (None, Some(der)) => hub
            .callers
            .by_certificate(der)
            .ok_or(callers::Refusal::Wrong),
        _ => hub.callers.authenticate(values),
    }
}

/// A tunnel request: authenticate and validate it, read the start of its body, then have it
/// served (by this gateway's streams or, on a replica, another's: [`dispatch::serve`]);
/// its record is logged once, when it ends.
fn tunnel(
    head: RequestHead,
    mut caller: Connection,
    hub: &Hub,
    peers: Option<&Peers>,
    pool_name: &str,
    certificate: Option<&[u8]>,
) -> Option<Connection> {
    let _open = hub.request_opened();
    let who = authenticate(&head, hub, certificate);
    let mut tunnel = Tunnel::new(hub, peers, &head, pool_name, &who, caller.peer.ip());
    let (who, pool, framing) = match tunnel.admit(&head, who) {
        Ok(admitted) => admitted,
        Err(refused) => return tunnel.fail(caller, refused),
    };
    let mut job = match tunnel.job(&pool, head, framing, &mut caller) {
        Ok(job) => job,
        Err(refused) => return tunnel.fail(caller, refused),
    };
    match dispatch::serve(hub, peers, &pool, &who.name, &mut job, &mut caller) {
        Served::Exchanged {
            mut record,
            reusable,
        } => {
            record.caller = Some(who.name.clone());
            tunnel.served(*record);
            reusable.then_some(caller)
        }
        Served::Refused(refused) => tunnel.fail(caller, refused),
    }
}

/// One tunnel request from its head to its answer. It ends through [`Tunnel::fail`] or
/// [`Tunnel::served`], which both consume it, and its record is written when it is dropped:
/// exactly once. A served request's record goes to its pool's log line and figures; a
/// refused one (the gateway answered, no agent was involved) into the pool's figures once
/// the pool is known, and into the summary of refusals ([`Hub::refusals`]) instead of a line
/// of its own, so refusals cannot flood the log.
struct Tunnel<'h> {
    hub: &'h Hub,
    /// Forwarding to other replicas, on a replica with a peer port.
    peers: Option<&'h Peers>,
    /// The caller's address, for the summary of refusals.
    address: std::net::IpAddr,
    /// Whether the record is a refusal ([`Tunnel::fail`]).
    refused: bool,
    id: String,
    started: Instant,
    method: String,
    /// The request's target as the log may show it.
    path: String,
    pool_name: String,
    pool: Option<Arc<LivePool>>,
    caller: Option<String>,
    keep_alive: bool,
    record: Option<RequestRecord>,
}

impl Drop for Tunnel<'_> {
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        if !self.refused {
            match &self.pool {
                Some(pool) => pool.remember(record),
                None => record.log(&self.pool_name),
            }
            return;
        }
        let reason = record.error.map_or("refused", |kind| kind.as_str());
        self.hub.refusals.count(crate::observe::tally::Event {
            reason,
            address: self.address,
            pool: &self.pool_name,
            example: &|| format!("{} {} ({})", record.method, record.path, record.status),
        });
        if let Some(pool) = &self.pool {
            pool.count(record);
        }
    }
}

impl<'h> Tunnel<'h> {
    fn new(
        hub: &'h Hub,
        peers: Option<&'h Peers>,
        head: &RequestHead,
        pool_name: &str,
        who: &Result<Arc<callers::Caller>, callers::Refusal>,
        address: std::net::IpAddr,
    ) -> Tunnel<'h> {
        Tunnel {
            hub,
            peers,
            address,
            refused: false,
            id: ulid::Ulid::new().to_string(),
            started: Instant::now(),
            method: head.method.clone(),
            path: crate::observe::redact_target(&head.target),
            pool_name: pool_name.to_string(),
            pool: None,
            caller: who.as_ref().ok().map(|who| who.name.clone()),
            keep_alive: head.keep_alive(),
            record: None,
        }
    }

    /// Who may use which pool, and whether the request can be read: everything decided from
    /// the head alone. Nobody unauthenticated learns anything, not even whether the pool
    /// exists; a pool outside the caller's scope answers exactly like one that does not
    /// exist, and is decided before the pool table is consulted, so timing does not tell them
    /// apart either.
    fn admit(
        &mut self,
        head: &RequestHead,
        who: Result<Arc<callers::Caller>, callers::Refusal>,
    ) -> Result<(Arc<callers::Caller>, Arc<LivePool>, Framing), Refused> {
        let (hub, pool_name) = (self.hub, self.pool_name.as_str());
        let framing = head.framing();
        let no_body = framing == Ok(Framing::Empty);
        // The connection closes: it has not shown it belongs to anyone.
        let who =
            who.map_err(|refusal| Refused::new(ErrorKind::Unauthorized, refusal.message(), false))?;
        if hub.open_requests() > hub.settings.max_callers {
            let message = format!(
                "the gateway serves at most {} tunnel requests at once and all are in use; retry in a moment",
                hub.settings.max_callers
            );
            return Err(Refused::new(ErrorKind::QueueTimeout, message, no_body));
        }
        let framing = framing.map_err(|reason| {
            Refused::new(
                ErrorKind::BadRequest,
                format!("bad request: {reason}"),
                false,
            )
        })?;
        let not_for = || Refused::new(ErrorKind::Forbidden, not_for(&who, pool_name), no_body);
        if !who.may_use(pool_name) {
            return Err(not_for());
        }
        let pool = match hub.pool(pool_name) {
            Some(pool) => pool,
            None if who.scope == Scope::All => {
                let message = format!("no pool named \"{pool_name}\"");
                return Err(Refused::new(ErrorKind::UnknownPool, message, no_body));
            }
            None => return Err(not_for()),
        };
        self.pool = Some(Arc::clone(&pool));
        Ok((who, pool, framing))
    }

    /// The job of an admitted request: its target, the headers that go on, and the start of
    /// its body. What would fail anyway fails before the body is asked for (`100 Continue`)
    /// or read.
    fn job(
        &self,
        pool: &LivePool,
        head: RequestHead,
        framing: Framing,
        caller: &mut Connection,
    ) -> Result<Job, Refused> {
        let no_body = framing == Framing::Empty;
        let target = tunnel_target(&head.target, &self.pool_name).ok_or_else(|| {
            Refused::new(
                ErrorKind::BadRequest,
                "bad request: malformed tunnel path",
                no_body,
            )
        })?;
        if self.hub.is_draining() {
            return Err(Refused::shutting_down());
        }
        let deadline = Instant::now() + self.hub.settings.queue_timeout;
        // Asked only when no stream here can serve it (it may ask Redis).
        let elsewhere = || self.peers.is_some_and(|p| p.has_routes(&self.pool_name));
        if local::waiting_limit(pool, deadline).is_none() && !elsewhere() {
            let message = local::no_agent_message(&self.pool_name);
            return Err(Refused::new(ErrorKind::NoAgent, message, no_body));
        }
        let reading = (!no_body).then(|| caller.watchable.watch(BODY_START_LIMIT));
        let body = read_body_start(caller, framing, head.expects_continue());
        drop(reading);
        let body = body.map_err(|e| {
            let message = format!("bad request: the request body broke off: {e}");
            Refused::new(ErrorKind::BadRequest, message, false)
        })?;
        let front = front_base(&self.hub.settings, caller.scheme, &head, &self.pool_name);
        Ok(Job {
            id: self.id.clone(),
            front,
            headers: forwarded_headers(head.headers),
            method: head.method,
            target,
            framing,
            version: head.version,
            keep_alive: self.keep_alive,
            body,
        })
    }

    /// Answers an error the gateway itself decided; its record is logged first.
    fn fail(mut self, mut caller: Connection, refused: Refused) -> Option<Connection> {
        self.refused = true;
        self.record = Some(RequestRecord {
            id: self.id.clone(),
            time_ms: crate::clock::now_millis(),
            method: self.method.clone(),
            path: self.path.clone(),
            status: refused.kind.status(),
            elapsed_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            error: Some(refused.kind),
            reason: Some(refused.message.clone()),
            caller: self.caller.clone(),
            ..RequestRecord::default()
        });
        let (id, reusable) = (self.id.clone(), self.keep_alive && refused.reusable);
        drop(self);
        let out = caller.conn.get_mut();
        let ok = write_error(out, Some(&id), refused.kind, &refused.message, reusable).is_ok();
        (ok && reusable).then_some(caller)
    }

    /// The exchange ran: its record is the request's.
    fn served(mut self, record: RequestRecord) {
        self.record = Some(record);
    }
}

/// The base URL the caller used for `pool`, for the agent to point URLs in answers back
/// through: `--front-url` when it is set (a gateway behind a reverse proxy), else the api
/// port's scheme and the caller's `Host`. Never `X-Forwarded-*`: a caller could name any
/// host in them. `None` when the `Host` is missing or not a plain `host[:port]`; the answer
/// then keeps the VCS's own URLs.
fn front_base(
    settings: &GatewaySettings,
    scheme: &str,
    head: &RequestHead,
    pool: &str,
) -> Option<String> {
    if let Some(url) = &settings.front_url {
        return Some(format!("{url}/private/{pool}"));
    }
    let host = head.header("host")?.trim();
    let plain =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']');
    (!host.is_empty() && host.bytes().all(plain))
        .then(|| format!("{scheme}://{host}/private/{pool}"))
}

/// The request headers that go on to the VCS. `Expect: 100-continue` is answered here,
/// where the body is read; the agent gets the body without having to ask again. The caller
/// secret is the gateway's, never the VCS's: it goes no further.
fn forwarded_headers(mut headers: crate::protocol::Headers) -> crate::protocol::Headers {
    headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("expect") && !name.eq_ignore_ascii_case(callers::HEADER)
    });
    protocol::end_to_end(headers)
}

/// What a caller hears for a pool it may not use, the same whether the pool exists or not.
fn not_for(who: &callers::Caller, pool: &str) -> String {
    format!(
        "caller \"{}\" may not use a pool named \"{pool}\" (or there is none)",
        who.name
    )
}
