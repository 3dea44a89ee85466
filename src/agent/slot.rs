//! One agent stream's whole life: dial the gateway, serve requests one at a time, and dial
//! again with backoff when the connection is lost.
//!
//! Everything happens on this slot's own thread and its own WebSocket, so there are no locks
//! on the hot path. The socket's read timeout is a short tick: between ticks the slot notices
//! a drain, sends keepalive pings and detects a silent gateway (three keepalive intervals with
//! no frame at all). A request body is pulled from the socket as ureq reads it; the response
//! body is read from ureq in [`MAX_CHUNK`] pieces and sent as binary messages, so memory does
//! not grow with the body. Cancellation needs no extra thread: when the caller goes away the
//! gateway closes the WebSocket, the next write here fails, and the upstream connection is
//! dropped with the reader.

use crate::agent::forward;
use crate::agent::Shared;
use crate::agent::{listing, projects, redirect};
use crate::allowlist::{self, Allowed, BodyVerdict, Decision, Denied, Vendor};
use crate::net::dial::{self, DialError};
use crate::net::stream::is_timeout;
use crate::net::Stream;
use crate::observe::access::Access;
use crate::observe::metrics::{AgentMetrics, Observation};
use crate::observe::{redact_headers, redact_target};
use crate::protocol::{self, Control, ErrorKind, Frame, Headers, MAX_CHUNK};
use log::{debug, error, info, warn};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message, WebSocket};

type Socket = WebSocket<Stream>;

/// How often an idle slot wakes up to look at drain and keepalive.
const TICK: Duration = Duration::from_millis(250);
/// Longest a write to the gateway may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(180);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Why a stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// The gateway closed it (after our drain notice, or its own shutdown).
    Closed,
    /// The connection broke or the peer broke the protocol.
    Lost(String),
    /// The gateway closed the stream to cancel a request: not a failure, dial again at once.
    Cancelled,
}

impl From<tungstenite::Error> for StreamEnd {
    fn from(e: tungstenite::Error) -> StreamEnd {
        match e {
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                StreamEnd::Closed
            }
            other => StreamEnd::Lost(other.to_string()),
        }
    }
}

/// Exponential backoff with full jitter: the next wait is uniform in `[floor, min(cap, base·2ⁿ)]`.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            attempt: 0,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.base / 5).min(ceiling);
        floor + ceiling.saturating_sub(floor).mul_f64(random_unit())
    }

    /// Jumps straight to the cap (a refused token will not fix itself soon).
    pub fn to_cap(&mut self) {
        self.attempt = 16;
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs one slot until the agent drains.
pub fn run(shared: &Shared, index: usize) {
    let mut backoff = Backoff::default();
    let mut buffer = vec![0u8; MAX_CHUNK];
    let mut failures_in_a_row = 0u32;
    let mut connected_before = false;
    while !shared.is_draining() {
        let dial_timeout = shared.config.upstream_connect_timeout;
        match dial::connect(&shared.config.token, &shared.identity, dial_timeout) {
            Ok(mut socket) => {
                if failures_in_a_row > 0 {
                    shared.gateway_is_back();
                    info!("slot {index}: connected to the gateway again after {failures_in_a_row} failed attempts");
                } else {
                    debug!("slot {index}: connected to the gateway");
                }
                if failures_in_a_row > 0 || connected_before {
                    shared.metrics.reconnected();
                }
                connected_before = true;
                failures_in_a_row = 0;
                let since = Instant::now();
                shared.connected.fetch_add(1, Ordering::SeqCst);
                let end = serve(shared, &mut socket, &mut buffer);
                shared.connected.fetch_sub(1, Ordering::SeqCst);
                if since.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                match end {
                    StreamEnd::Closed if shared.is_draining() => break,
                    StreamEnd::Closed => {
                        warn!("slot {index}: the gateway closed the stream; dialing again")
                    }
                    StreamEnd::Lost(reason) => {
                        warn!("slot {index}: stream lost: {reason}; dialing again")
                    }
                    StreamEnd::Cancelled => {
                        debug!("slot {index}: request cancelled by the gateway; dialing again");
                        continue;
                    }
                }
            }
            Err(DialError::Unauthorized(reason)) => {
                failures_in_a_row += 1;
                shared.metrics.dial_failed();
                backoff.to_cap();
                error!("slot {index}: {}", DialError::Unauthorized(reason));
            }
            Err(e) => {
                failures_in_a_row += 1;
                shared.metrics.dial_failed();
                // The first failure and then every tenth: a long outage must not flood the log.
                if failures_in_a_row == 1 || failures_in_a_row.is_multiple_of(10) {
                    warn!(
                        "slot {index}: cannot reach the gateway (attempt {failures_in_a_row}): {e}"
                    );
                } else {
                    debug!(
                        "slot {index}: cannot reach the gateway (attempt {failures_in_a_row}): {e}"
                    );
                }
            }
        }
        if shared.sleep_unless_draining(backoff.next_delay()) {
            break;
        }
    }
}

/// Serves requests on one connected socket until it ends.
fn serve(shared: &Shared, socket: &mut Socket, buffer: &mut [u8]) -> StreamEnd {
    if let Err(e) = socket.get_ref().set_read_timeout(Some(TICK)) {
        return StreamEnd::Lost(format!("cannot set a read timeout: {e}"));
    }
    // A gateway that stops reading must not pin the slot; it gives up on a stalled caller
    // after 120 s itself, so wait longer than that.
    if let Err(e) = socket
        .get_ref()
        .tcp()
        .set_write_timeout(Some(WRITE_TIMEOUT))
    {
        return StreamEnd::Lost(format!("cannot set a write timeout: {e}"));
    }
    let keepalive = shared.config.keepalive;
    let mut last_heard = Instant::now();
    let mut last_ping = Instant::now();
    let mut drain_sent: Option<Instant> = None;
    loop {
        if shared.is_draining() && drain_sent.is_none() {
            if let Err(e) = socket.send(Control::Draining.to_message()) {
                return e.into();
            }
            drain_sent = Some(Instant::now());
        }
        if let Some(at) = drain_sent {
            if at.elapsed() > shared.config.drain_timeout {
                let _ = socket.close(None);
                return StreamEnd::Closed;
            }
        }
        match socket.read() {
            Ok(message) => {
                last_heard = Instant::now();
                match protocol::decode(message) {
                    Ok(None) => {}
                    Ok(Some(Frame::Control(Control::Request {
                        id,
                        method,
                        target,
                        headers,
                        body,
                    }))) => {
                        let request = Request {
                            id,
                            method,
                            target,
                            headers,
                            body,
                        };
                        shared.busy.fetch_add(1, Ordering::SeqCst);
                        let outcome = handle(shared, socket, request, buffer);
                        shared.busy.fetch_sub(1, Ordering::SeqCst);
                        if let Err(end) = outcome {
                            return end;
                        }
                        last_heard = Instant::now();
                    }
                    Ok(Some(Frame::Closed)) => return finish_close(socket),
                    Ok(Some(other)) => {
                        return StreamEnd::Lost(format!(
                            "protocol violation: {} while idle",
                            protocol::describe(&other)
                        ))
                    }
                    Err(e) => return StreamEnd::Lost(e.to_string()),
                }
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if last_heard.elapsed() > keepalive * 3 {
                    return StreamEnd::Lost(format!(
                        "no frame from the gateway for {:?} (3 keepalive intervals)",
                        last_heard.elapsed()
                    ));
                }
                if last_ping.elapsed() >= keepalive {
                    last_ping = Instant::now();
                    if let Err(e) = socket.send(Message::Ping(Bytes::new())) {
                        return e.into();
                    }
                }
            }
            Err(e) => return e.into(),
        }
    }
}

/// After the gateway's close frame: let tungstenite send its reply and see the end.
fn finish_close(socket: &mut Socket) -> StreamEnd {
    for _ in 0..8 {
        match socket.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => continue,
            Err(_) => break,
        }
    }
    StreamEnd::Closed
}

struct Request {
    id: String,
    method: String,
    target: String,
    headers: Headers,
    body: bool,
}

/// What the access line says about one request.
struct Record<'a> {
    request: &'a Request,
    description: &'static str,
    /// What an inspected body says the request was for (`GraphQL query …`), in place of
    /// the rule's description on the access line.
    detail: Option<String>,
    project: Option<String>,
    status: Option<u16>,
    bytes_in: u64,
    bytes_out: u64,
    started: Instant,
    problem: Option<(ErrorKind, String)>,
    /// Time until the VCS answered, when the request was forwarded.
    upstream: Option<Duration>,
    metrics: &'a AgentMetrics,
}

impl Record<'_> {
    /// What the request was for: the inspected body's words, else the rule's.
    fn rule_text(&self) -> &str {
        self.detail.as_deref().unwrap_or(self.description)
    }

    /// Writes the access line and counts the request (once per request).
    fn log(&self) {
        let path = redact_target(&self.request.target);
        let kind = self.problem.as_ref().map(|(kind, _)| kind.as_str());
        Access {
            id: &self.request.id,
            method: &self.request.method,
            path: &path,
            rule: self.rule_text(),
            project: self.project.as_deref(),
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            elapsed_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            error: kind,
            reason: self.problem.as_ref().map(|(_, reason)| reason.as_str()),
        }
        .emit();
        self.metrics.observe(&Observation {
            rule: self.description,
            status: self.status,
            error: kind,
            denial: match &self.problem {
                Some((ErrorKind::Denied, reason)) => Some(reason),
                _ => None,
            },
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            upstream: self.upstream,
        });
    }
}

/// Pulls the request body out of the socket as ureq reads it.
struct RequestBody<'a> {
    socket: &'a mut Socket,
    piece: Bytes,
    offset: usize,
    done: bool,
    bytes: u64,
    /// Set when the gateway side broke: the stream cannot go on.
    broken: Option<String>,
    idle_limit: Duration,
}

impl<'a> RequestBody<'a> {
    fn new(socket: &'a mut Socket, expected: bool, idle_limit: Duration) -> RequestBody<'a> {
        RequestBody {
            socket,
            piece: Bytes::new(),
            offset: 0,
            done: !expected,
            bytes: 0,
            broken: None,
            idle_limit,
        }
    }

    fn next_piece(&mut self) -> Result<(), String> {
        let waiting_since = Instant::now();
        loop {
            match self.socket.read() {
                Ok(message) => match protocol::decode(message) {
                    Ok(None) => {}
                    Ok(Some(Frame::Data(data))) => {
                        self.bytes += data.len() as u64;
                        self.piece = data;
                        self.offset = 0;
                        return Ok(());
                    }
                    Ok(Some(Frame::Control(Control::End))) => {
                        self.done = true;
                        return Ok(());
                    }
                    Ok(Some(other)) => {
                        return Err(format!(
                            "protocol violation: {} inside a request body",
                            protocol::describe(&other)
                        ))
                    }
                    Err(e) => return Err(e.to_string()),
                },
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                    if waiting_since.elapsed() > self.idle_limit {
                        return Err("the request body stalled".into());
                    }
                }
                Err(e) => return Err(format!("gateway connection lost in a request body: {e}")),
            }
        }
    }

    /// Reads and drops what is left, so the socket is positioned after the body.
    fn skip_rest(&mut self) -> Result<(), String> {
        if let Some(reason) = &self.broken {
            return Err(reason.clone());
        }
        while !self.done {
            self.next_piece()?;
        }
        Ok(())
    }
}

impl Read for RequestBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.offset < self.piece.len() {
                let n = buf.len().min(self.piece.len() - self.offset);
                buf[..n].copy_from_slice(&self.piece[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if let Some(reason) = &self.broken {
                return Err(io::Error::other(reason.clone()));
            }
            if let Err(reason) = self.next_piece() {
                self.broken = Some(reason.clone());
                return Err(io::Error::other(reason));
            }
        }
    }
}

/// Serves one request. `Err` means the stream is unusable and must be dropped.
fn handle(
    shared: &Shared,
    socket: &mut Socket,
    request: Request,
    buffer: &mut [u8],
) -> Result<(), StreamEnd> {
    let mut record = Record {
        request: &request,
        description: "-",
        detail: None,
        project: None,
        status: None,
        bytes_in: 0,
        bytes_out: 0,
        started: Instant::now(),
        problem: None,
        upstream: None,
        metrics: &shared.metrics,
    };
    // How long a request body may pause: longer than the gateway's 75 s idle read from the
    // caller, so the gateway, which sees the caller, is the one that decides.
    let idle_limit = (shared.config.keepalive * 3).max(Duration::from_secs(90));
    let authority = shared.config.target.authority.clone();
    if shared.config.debug_print_all {
        info!(
            target: "debug",
            "request id={} {} {} headers: {}",
            request.id,
            request.method,
            redact_target(&request.target),
            redact_headers(&request.headers)
        );
    }

    let allowed = match admit(shared, &request) {
        Ok(allowed) => allowed,
        Err(denied) => {
            let mut body = RequestBody::new(socket, request.body, idle_limit);
            body.skip_rest().map_err(StreamEnd::Lost)?;
            record.bytes_in = body.bytes;
            record.status = Some(ErrorKind::Denied.status());
            record.problem = Some((ErrorKind::Denied, denied.reason.clone()));
            record.log();
            send_error(socket, &record, ErrorKind::Denied, &denied.reason)?;
            return Ok(());
        }
    };
    record.description = allowed.description;
    record.project = allowed.project.clone();

    // Bodies the allowlist must see are read whole (bounded) before anything is forwarded.
    let whole = match read_for_inspection(shared, socket, &request, &allowed, idle_limit)? {
        Inspected::Stream => None,
        Inspected::Whole(bytes, verdict) => {
            record.detail = verdict.description;
            if record.project.is_none() && !verdict.projects.is_empty() {
                record.project = Some(verdict.projects.join(","));
            }
            Some(bytes)
        }
        Inspected::Denied(reason, bytes_in) => {
            record.bytes_in = bytes_in;
            record.status = Some(ErrorKind::Denied.status());
            record.problem = Some((ErrorKind::Denied, reason.clone()));
            record.log();
            send_error(socket, &record, ErrorKind::Denied, &reason)?;
            return Ok(());
        }
    };

    let url = if allowed.codeload {
        shared.codeload_base().url_for(&request.target)
    } else {
        shared.config.target.url_for(&request.target)
    };
    let mut headers = protocol::end_to_end(request.headers.iter().cloned());
    if filters(shared, &allowed) {
        // A compressed listing could not be read: ask for it plain (see `listing`).
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("accept-encoding"));
        headers.push(("Accept-Encoding".into(), "identity".into()));
    }

    // Send the request; the body streams from the socket while ureq writes it upstream (or
    // goes as read for inspection, byte for byte).
    let streamed = request.body && whole.is_none();
    let mut body = RequestBody::new(socket, streamed, idle_limit);
    let mut whole_reader = whole.as_deref();
    let asked = Instant::now();
    let outcome = {
        let reader: Option<&mut dyn Read> = match whole_reader.as_mut() {
            Some(bytes) => Some(bytes),
            None if streamed => Some(&mut body),
            None => None,
        };
        match forward::build(&request.method, &url, &headers) {
            Ok(builder) => forward::send(&shared.http, builder, reader, &authority),
            Err(message) => Err(forward::UpstreamError {
                kind: ErrorKind::BadRequest,
                message,
            }),
        }
    };
    record.upstream = Some(asked.elapsed());
    // The gateway writes the whole body before it reads an answer: consume it first.
    body.skip_rest().map_err(StreamEnd::Lost)?;
    record.bytes_in = body.bytes + whole.as_ref().map_or(0, |w| w.len() as u64);

    let response = match outcome.and_then(final_answer) {
        Ok(response) => response,
        Err(error) => {
            record.status = Some(error.kind.status());
            record.problem = Some((error.kind, error.message.clone()));
            record.log();
            send_error(socket, &record, error.kind, &error.message)?;
            return Ok(());
        }
    };

    let status = response.status().as_u16();
    record.status = Some(status);
    let has_body = protocol::response_has_body(&request.method, status);
    let mut headers = protocol::end_to_end(forward::response_headers(response.headers()));
    let bases = [&shared.config.target, shared.codeload_base()];
    redirect::rewrite(status, &mut headers, &request.target, &bases);
    if shared.config.debug_print_all {
        info!(
            target: "debug",
            "response id={} {status} headers: {}",
            request.id,
            redact_headers(&headers)
        );
    }
    if filters(shared, &allowed) && (200..300).contains(&status) {
        listing::strip_totals(&mut headers);
        if has_body {
            let body = read_listing(response, &headers, &authority);
            return answer_listing(shared, socket, &mut record, headers, body);
        }
    }
    let head = response_head(&record, status, headers, has_body);
    // With a body to follow, the head waits in tungstenite's buffer and leaves with the first
    // piece in one write.
    let sent = if has_body {
        socket.write(head.to_message())
    } else {
        socket.send(head.to_message())
    };
    if let Err(e) = sent {
        record.problem = Some((
            ErrorKind::AgentLost,
            format!("gateway connection lost: {e}"),
        ));
        record.log();
        return Err(e.into());
    }
    if !has_body {
        record.log();
        return Ok(());
    }

    let length = response
        .headers()
        .get(ureq::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut reader = response.into_body().into_reader();
    loop {
        match reader.read(buffer) {
            Ok(0) => {
                socket
                    .send(Control::End.to_message())
                    .map_err(StreamEnd::from)?;
                break;
            }
            Ok(n) => {
                let piece = Message::Binary(Bytes::copy_from_slice(&buffer[..n]));
                // The last piece of a known length waits for `end`: one write for both.
                let sent = if length == Some(record.bytes_out + n as u64) {
                    socket.write(piece)
                } else {
                    socket.send(piece)
                };
                if let Err(e) = sent {
                    // The gateway hung up: the caller went away. Dropping `reader` drops the
                    // upstream connection.
                    record.problem = Some((
                        ErrorKind::AgentLost,
                        format!("cancelled: the gateway closed the stream ({e})"),
                    ));
                    record.log();
                    return Err(StreamEnd::Cancelled);
                }
                record.bytes_out += n as u64;
            }
            Err(e) => {
                let error = forward::classify_read(&e, &authority);
                record.problem = Some((error.kind, error.message.clone()));
                record.log();
                let abort = Control::Abort {
                    id: request.id.clone(),
                    kind: error.kind,
                    message: error.message,
                };
                socket.send(abort.to_message()).map_err(StreamEnd::from)?;
                return Ok(());
            }
        }
    }
    record.log();
    Ok(())
}

/// A request body after the allowlist's body step.
enum Inspected {
    /// Not inspected: it streams as it arrives.
    Stream,
    /// Read whole and allowed: forward these bytes.
    Whole(Vec<u8>, BodyVerdict),
    /// Denied with this reason; the body was consumed (this many bytes).
    Denied(String, u64),
}

/// Reads a body the allowlist must inspect, at most [`allowlist::body::MAX_BODY`] bytes
/// kept (a larger one is consumed and denied), and asks the allowlist about it.
fn read_for_inspection(
    shared: &Shared,
    socket: &mut Socket,
    request: &Request,
    allowed: &allowlist::Allowed,
    idle_limit: Duration,
) -> Result<Inspected, StreamEnd> {
    let inspection =
        match shared
            .allowlist
            .body_inspection(&request.method, allowed, &request.headers)
        {
            Ok(None) => return Ok(Inspected::Stream),
            // No body, no form to read (a GraphQL request without one is still denied below).
            Ok(Some(allowlist::Inspection::Form)) if !request.body => return Ok(Inspected::Stream),
            Ok(Some(inspection)) => Ok(inspection),
            Err(denied) => Err(denied.reason),
        };
    let mut body = RequestBody::new(socket, request.body, idle_limit);
    let mut whole = Vec::new();
    if inspection.is_ok() {
        let limit = allowlist::body::MAX_BODY as u64 + 1;
        // A read error is kept in `body` and returned by `skip_rest` below.
        let _ = (&mut body).take(limit).read_to_end(&mut whole);
    }
    body.skip_rest().map_err(StreamEnd::Lost)?;
    let inspection = match inspection {
        Ok(inspection) => inspection,
        Err(reason) => return Ok(Inspected::Denied(reason, body.bytes)),
    };
    if whole.len() > allowlist::body::MAX_BODY {
        return Ok(Inspected::Denied(inspection.too_large().reason, body.bytes));
    }
    Ok(match shared.allowlist.check_body(inspection, &whole) {
        Ok(verdict) => Inspected::Whole(whole, verdict),
        Err(denied) => Inspected::Denied(denied.reason, body.bytes),
    })
}

/// The allowlist's verdict, with a project given by an id resolved to its path.
fn admit(shared: &Shared, request: &Request) -> Result<Allowed, Denied> {
    let decision = shared.allowlist.decide_request(
        &request.method,
        &request.target,
        &request.headers,
        request.body,
    )?;
    let mut allowed = match decision {
        Decision::Allowed(allowed) => allowed,
        Decision::ById(mut allowed, id) => {
            let path = projects::resolve(shared, &id, &request.headers).map_err(Denied::new)?;
            if !shared.allowlist.allows_project(&path) {
                return Err(Denied::new(format!(
                    "project {path} (id {id}) is not allowed"
                )));
            }
            allowed.project = Some(format!("{path} (id {id})"));
            allowed
        }
    };
    // Projects a parameter names by id go through the same resolution.
    for (param, id) in std::mem::take(&mut allowed.param_ids) {
        let path = projects::resolve(shared, &id, &request.headers).map_err(Denied::new)?;
        if !shared.allowlist.allows_project(&path) {
            return Err(Denied::new(format!(
                "project {path} (id {id}, from {param}) is not allowed"
            )));
        }
        allowed.other_projects.push(path);
    }
    Ok(allowed)
}

/// Whether the answer to this request is a listing to filter (projects are restricted).
fn filters(shared: &Shared, allowed: &Allowed) -> bool {
    allowed.listing && shared.allowlist.restricted()
}

/// An informational status (1xx) is not an answer: `101 Switching Protocols` would turn the
/// VCS connection into something else, and the others only announce one. Whatever reaches
/// us as the final status is refused here, so the caller gets a `502` that says why and the
/// stream stays usable (the gateway drops a stream that relays a 1xx).
fn final_answer(
    response: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, forward::UpstreamError> {
    let status = response.status();
    if !status.is_informational() {
        return Ok(response);
    }
    Err(forward::UpstreamError {
        kind: ErrorKind::UpstreamUnreachable,
        message: format!(
            "the VCS answered {} {} instead of a final status: the tunnel relays HTTP answers, not protocol switches",
            status.as_u16(),
            status.canonical_reason().unwrap_or("(informational)")
        ),
    })
}

fn response_head(record: &Record, status: u16, headers: Headers, body: bool) -> Control {
    Control::Response {
        id: record.request.id.clone(),
        status,
        headers,
        body,
        rule: Some(record.rule_text().to_string()),
        project: record.project.clone(),
    }
}

/// A listing answer read whole, at most [`listing::LIMIT`] bytes and not compressed.
fn read_listing(
    response: ureq::http::Response<ureq::Body>,
    headers: &Headers,
    authority: &str,
) -> Result<Vec<u8>, (ErrorKind, String)> {
    let encoded = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-encoding")
            && !value.trim().eq_ignore_ascii_case("identity")
    });
    if encoded {
        let reason = "the listing answer is compressed and cannot be filtered";
        return Err((ErrorKind::Denied, reason.into()));
    }
    let mut bytes = Vec::new();
    let limit = listing::LIMIT as u64;
    if let Err(e) = response
        .into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
    {
        let error = forward::classify_read(&e, authority);
        return Err((error.kind, error.message));
    }
    if bytes.len() as u64 > limit {
        let reason = format!(
            "the listing answer is over {} MiB and cannot be filtered: ask for smaller pages",
            listing::LIMIT >> 20
        );
        return Err((ErrorKind::Denied, reason));
    }
    Ok(bytes)
}

/// Sends the allowed entries of a listing (or the reason it cannot be filtered), with its
/// `Content-Length` recomputed.
fn answer_listing(
    shared: &Shared,
    socket: &mut Socket,
    record: &mut Record,
    mut headers: Headers,
    body: Result<Vec<u8>, (ErrorKind, String)>,
) -> Result<(), StreamEnd> {
    let vendor = shared.allowlist.vendor();
    let org = match vendor {
        Vendor::AzureDevops => first_segment(&record.request.target),
        _ => String::new(),
    };
    let filtered = body.and_then(|bytes| {
        let keep = |path: &str| shared.allowlist.allows_project(path);
        let mut learn = |id: &str, path: &str| shared.ids.learn(&org, id, path);
        listing::filter(vendor, &org, &bytes, &keep, &mut learn)
            .map_err(|e| (ErrorKind::Denied, e.0))
    });
    let bytes = match filtered {
        Ok(bytes) => bytes,
        Err((kind, reason)) => {
            record.status = Some(kind.status());
            record.problem = Some((kind, reason.clone()));
            record.log();
            return send_error(socket, record, kind, &reason);
        }
    };
    headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
    });
    headers.push(("Content-Length".into(), bytes.len().to_string()));
    let status = record.status.unwrap_or(200);
    let head = response_head(record, status, headers, true);
    let mut sent = socket.write(head.to_message());
    for piece in bytes.chunks(MAX_CHUNK) {
        let message = Message::Binary(Bytes::copy_from_slice(piece));
        sent = sent.and_then(|()| socket.send(message));
        if sent.is_ok() {
            record.bytes_out += piece.len() as u64;
        }
    }
    if let Err(e) = sent.and_then(|()| socket.send(Control::End.to_message())) {
        // The gateway hung up: the caller went away.
        let why = format!("cancelled: the gateway closed the stream ({e})");
        record.problem = Some((ErrorKind::AgentLost, why));
        record.log();
        return Err(StreamEnd::Cancelled);
    }
    record.log();
    Ok(())
}

/// The first segment of a target's path, percent-decoded (an Azure DevOps organisation).
fn first_segment(target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    percent_encoding::percent_decode_str(first)
        .decode_utf8_lossy()
        .into_owned()
}

fn send_error(
    socket: &mut Socket,
    record: &Record,
    kind: ErrorKind,
    message: &str,
) -> Result<(), StreamEnd> {
    let frame = Control::Error {
        id: record.request.id.clone(),
        kind,
        message: message.to_string(),
        rule: (record.description != "-").then(|| record.rule_text().to_string()),
        project: record.project.clone(),
    };
    socket.send(frame.to_message()).map_err(StreamEnd::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn informational_statuses_are_not_answers() {
        let answer = |status: u16| {
            let response = ureq::http::Response::builder()
                .status(status)
                .body(ureq::Body::builder().data(""))
                .expect("response");
            final_answer(response).map(|r| r.status().as_u16())
        };
        for status in [100, 101, 102, 103, 199] {
            let error = answer(status).expect_err("a 1xx is refused");
            assert_eq!(error.kind, ErrorKind::UpstreamUnreachable);
            assert!(
                error.message.contains(&status.to_string()),
                "{}",
                error.message
            );
        }
        assert!(answer(101)
            .expect_err("101")
            .message
            .contains("101 Switching Protocols"));
        for status in [200, 204, 304, 404, 502] {
            assert_eq!(answer(status).ok(), Some(status));
        }
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::default();
        let first: Vec<Duration> = (0..3).map(|_| b.next_delay()).collect();
        assert!(first
            .iter()
            .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2)));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(30) && d >= Duration::from_millis(100));
        }
        // Full jitter: many draws at the cap are not all the same.
        let draws: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
        b.to_cap();
        let capped: Vec<Duration> = (0..50).map(|_| b.next_delay()).collect();
        assert!(capped.iter().any(|d| *d > Duration::from_secs(5)));
    }
}
