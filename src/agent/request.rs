//! One request on an agent stream: check it against the allowlist, forward it to the VCS,
//! stream the answer back, and write its access line.
//!
//! The request arrives as a `request` frame (and body pieces) on the slot's socket; the answer
//! leaves on the same socket through an [`Answer`] (head, body pieces, end, or an error or abort
//! instead). What the access line says is gathered in a [`Record`] that writes the line when it
//! is dropped, so every way out of [`handle`] (answers, refusals, a gateway that went away, a
//! panic) writes it exactly once. A request body is pulled from the socket as the upstream
//! client sends it; the response body is read in [`MAX_CHUNK`] pieces, so memory does not
//! grow with it.
//! Cancellation needs no extra thread: when the caller goes away the gateway closes the
//! WebSocket, the next write here fails, and the upstream connection is dropped with the reader.

use crate::agent::rebase::{self, BodyRewriter, Rebase};
use crate::agent::shared::Shared;
use crate::agent::socket::{Socket, StreamEnd};
use crate::agent::{forward, listing, projects, redirect};
use crate::allowlist::{self, Allowed, BodyVerdict, Decision, DenialClass, Denied};
use crate::observe::access::Access;
use crate::observe::metrics::{AgentMetrics, Observation};
use crate::observe::{redact_headers, redact_target};
use crate::protocol::link::LinkError;
use crate::protocol::{self, Control, ErrorKind, Frame, HeaderPairs, ProtocolError, MAX_CHUNK};
use log::info;
use std::borrow::Cow;
use std::io::{self, Read};
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message};

use forward::Response;

/// A `request` frame's fields, borrowed from the frame.
pub(crate) struct Request<'a> {
    pub(crate) id: Cow<'a, str>,
    pub(crate) method: Cow<'a, str>,
    pub(crate) target: Cow<'a, str>,
    pub(crate) headers: HeaderPairs<'a>,
    pub(crate) body: bool,
    /// The base URL the caller used, when the gateway sends it ([`rebase`]).
    pub(crate) front: Option<Cow<'a, str>>,
}

/// What the access line says about one request; the line is written (and the request counted)
/// when the record is dropped.
struct Record<'a> {
    request: &'a Request<'a>,
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
    /// What the allowlist's refusal was about, when it refused the request.
    denial: Option<DenialClass>,
    /// Time until the VCS answered, when the request was forwarded.
    upstream: Option<Duration>,
    /// The blocklist rule that denied the request.
    blocked_by: Option<String>,
    /// URLs of the answer pointed back through the gateway ([`rebase`]).
    rewritten: u64,
    /// Why a JSON answer's body was left as the VCS wrote it.
    not_rewritten: Option<&'static str>,
    pool_id: &'a str,
    metrics: &'a AgentMetrics,
}

impl<'a> Record<'a> {
    fn new(request: &'a Request<'a>, shared: &'a Shared) -> Record<'a> {
        Record {
            request,
            description: "-",
            detail: None,
            project: None,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            started: Instant::now(),
            problem: None,
            denial: None,
            upstream: None,
            blocked_by: None,
            rewritten: 0,
            not_rewritten: None,
            pool_id: &shared.config.token.pool_ulid,
            metrics: &shared.metrics,
        }
    }

    /// What the request was for: the inspected body's words, else the rule's.
    fn rule_text(&self) -> &str {
        self.detail.as_deref().unwrap_or(self.description)
    }

    /// The request is answered with an error of this kind instead of the VCS's answer.
    fn fail(&mut self, kind: ErrorKind, reason: String) {
        self.status = Some(kind.status());
        self.problem = Some((kind, reason));
    }

    /// What an allowed body says about the request.
    fn inspected(&mut self, verdict: BodyVerdict) {
        self.detail = verdict.description;
        if self.project.is_none() && !verdict.projects.is_empty() {
            self.project = Some(verdict.projects.join(","));
        }
    }

    /// Writes the access line and counts the request.
    fn log(&self) {
        let path = redact_target(&self.request.target);
        let kind = self.problem.as_ref().map(|(kind, _)| kind.as_str());
        Access {
            id: &self.request.id,
            pool_id: self.pool_id,
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
            blocked_by: self.blocked_by.as_deref(),
            rewritten: (self.rewritten > 0).then_some(self.rewritten),
            not_rewritten: self.not_rewritten,
        }
        .emit();
        self.metrics.observe(&Observation {
            rule: self.description,
            status: self.status,
            error: kind,
            denial: self.denial,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            upstream: self.upstream,
        });
    }
}

impl Drop for Record<'_> {
    /// A request the stream lost before it had an outcome (the gateway side broke while its
    /// body was read) has no line here: the gateway's own line tells of it.
    fn drop(&mut self) {
        if self.status.is_some() || self.problem.is_some() {
            self.log();
        }
    }
}

/// The answer's way to the gateway: a head and body pieces and `end`, or an error or an abort.
struct Answer<'s> {
    socket: &'s mut Socket,
}

impl Answer<'_> {
    /// With a body to follow, the head waits in tungstenite's buffer and leaves with the first
    /// piece in one write.
    fn head(&mut self, head: Control<'_>, body_follows: bool) -> tungstenite::Result<()> {
        if body_follows {
            self.socket.queue_control(&head)
        } else {
            self.socket.send(&head)
        }
    }

    /// One body piece; the `last` piece waits for `end`: one write for both.
    fn data(&mut self, piece: &[u8], last: bool) -> tungstenite::Result<()> {
        let message = Message::Binary(Bytes::copy_from_slice(piece));
        if last {
            self.socket.queue(message)
        } else {
            self.socket.send_message(message)
        }
    }

    fn end(&mut self) -> tungstenite::Result<()> {
        self.socket.send(&Control::End)
    }

    /// An `error` or `abort` frame; the record is logged before it leaves.
    fn close_with(&mut self, record: Record, frame: Control<'_>) -> Result<(), StreamEnd> {
        drop(record);
        self.socket.send(&frame).map_err(StreamEnd::from)
    }

    /// Answers with an error of `kind` instead of the VCS's answer.
    fn refuse(
        &mut self,
        mut record: Record,
        kind: ErrorKind,
        reason: String,
    ) -> Result<(), StreamEnd> {
        let request = record.request;
        let frame = Control::Error {
            id: Cow::Borrowed(&request.id),
            kind,
            message: Cow::Owned(reason.clone()),
            rule: (record.description != "-").then(|| record.rule_text().to_string().into()),
            project: record.project.clone().map(Cow::Owned),
        };
        record.fail(kind, reason);
        self.close_with(record, frame)
    }

    /// Answers with the allowlist's refusal, counted under its class; the line names the
    /// rule that matched and the project judged, when the denial knows them.
    fn deny(&mut self, mut record: Record, denied: Denied) -> Result<(), StreamEnd> {
        record.denial = Some(denied.class);
        if let Some(rule) = denied.rule {
            record.description = rule;
        }
        if denied.project.is_some() {
            record.project = denied.project;
        }
        self.refuse(record, ErrorKind::Denied, denied.reason)
    }

    /// Breaks off an answer whose head was sent.
    fn abort(
        &mut self,
        mut record: Record,
        error: forward::UpstreamError,
    ) -> Result<(), StreamEnd> {
        let request = record.request;
        let frame = Control::Abort {
            id: Cow::Borrowed(&request.id),
            kind: error.kind,
            message: Cow::Owned(error.message.clone()),
        };
        record.problem = Some((error.kind, error.message));
        self.close_with(record, frame)
    }
}

/// The record of a request the gateway stopped reading: the caller went away.
fn cancelled(record: &mut Record, e: tungstenite::Error) -> StreamEnd {
    let why = format!("cancelled: the gateway closed the stream ({e})");
    record.problem = Some((ErrorKind::AgentLost, why));
    StreamEnd::Cancelled
}

/// Pulls the request body out of the socket as the upstream client sends it.
struct RequestBody<'a> {
    socket: &'a mut Socket,
    piece: Bytes,
    offset: usize,
    done: bool,
    bytes: u64,
    /// Set when the gateway side broke: the stream cannot go on.
    broken: Option<BodyError>,
    idle_limit: Duration,
}

/// Why a request body could not be read from the gateway to its end.
#[derive(Debug, Clone, thiserror::Error)]
enum BodyError {
    #[error("the request body stalled")]
    Stalled,
    /// What the WebSocket said.
    #[error("gateway connection lost in a request body: {0}")]
    Lost(String),
    /// The frame that came instead of body data.
    #[error("protocol violation: {0} inside a request body")]
    Unexpected(&'static str),
    #[error(transparent)]
    Frame(ProtocolError),
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

    fn next_piece(&mut self) -> Result<(), BodyError> {
        let received = match self.socket.recv_timeout(self.idle_limit) {
            Ok(received) => received,
            Err(LinkError::Timeout(_)) => return Err(BodyError::Stalled),
            Err(LinkError::Socket(e)) => return Err(BodyError::Lost(e.to_string())),
        };
        match received.frame() {
            Ok(Frame::Data(data)) => {
                self.bytes += data.len() as u64;
                self.piece = data;
                self.offset = 0;
                Ok(())
            }
            Ok(Frame::Control(Control::End)) => {
                self.done = true;
                Ok(())
            }
            Ok(other) => Err(BodyError::Unexpected(protocol::describe(&other))),
            Err(e) => Err(BodyError::Frame(e)),
        }
    }

    /// Reads and drops what is left, so the socket is positioned after the body.
    fn skip_rest(&mut self) -> Result<(), BodyError> {
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

/// How long a request body may pause: longer than the gateway's 75 s idle read from the
/// caller, so the gateway, which sees the caller, is the one that decides.
fn idle_limit(shared: &Shared) -> Duration {
    (shared.config.keepalive * 3).max(Duration::from_secs(90))
}

/// Serves one request. `Err` means the stream is unusable and must be dropped.
pub(crate) fn handle(
    shared: &Shared,
    socket: &mut Socket,
    request: Request,
    buffer: &mut [u8],
) -> Result<(), StreamEnd> {
    let mut record = Record::new(&request, shared);
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
        Err(denied) => return deny_unread(shared, socket, record, denied),
    };
    record.description = allowed.description;
    record.project = allowed.project.clone();
    if let Some(denied) = blocked(shared, &request, &mut record) {
        return deny_unread(shared, socket, record, denied);
    }

    // Bodies the allowlist must see are read whole (bounded) before anything is forwarded.
    let whole = match read_for_inspection(shared, socket, &request, &allowed)? {
        Inspected::Stream => None,
        Inspected::Whole(bytes, verdict) => {
            record.inspected(verdict);
            Some(bytes)
        }
        Inspected::Denied(denied, bytes_in) => {
            record.bytes_in = bytes_in;
            return Answer { socket }.deny(record, denied);
        }
    };
    let forwarded = forward_request(shared, socket, &allowed, whole.as_deref(), &mut record)?;
    match forwarded.and_then(final_answer) {
        Ok(response) => answer(shared, socket, record, &allowed, response, buffer),
        Err(error) => Answer { socket }.refuse(record, error.kind, error.message),
    }
}

/// Denies a request whose body was not read yet: the body is consumed first, so the stream
/// is positioned after it.
fn deny_unread(
    shared: &Shared,
    socket: &mut Socket,
    mut record: Record,
    denied: Denied,
) -> Result<(), StreamEnd> {
    let mut body = RequestBody::new(socket, record.request.body, idle_limit(shared));
    body.skip_rest()
        .map_err(|e| StreamEnd::Lost(e.to_string()))?;
    record.bytes_in = body.bytes;
    Answer { socket }.deny(record, denied)
}

/// The operator's blocklist, after the allowlist allowed the request: the denial of the
/// first rule that matches (named on the access line), if one does.
fn blocked(shared: &Shared, request: &Request, record: &mut Record) -> Option<Denied> {
    let blocklist = &shared.config.blocklist;
    if blocklist.is_empty() {
        return None;
    }
    let path = crate::blocklist::decoded_path(&shared.config.target.path, &request.target);
    let rule = blocklist.blocking(&request.method, &path)?;
    record.blocked_by = Some(rule.to_string());
    Some(Denied::blocked(rule))
}

/// Sends the request to the VCS; the body streams from the socket while it is written
/// upstream (or goes as read for inspection, byte for byte). `Err` when the stream broke.
fn forward_request(
    shared: &Shared,
    socket: &mut Socket,
    allowed: &Allowed,
    whole: Option<&[u8]>,
    record: &mut Record,
) -> Result<Result<Response, forward::UpstreamError>, StreamEnd> {
    let request = record.request;
    let url = if allowed.codeload {
        shared.codeload_base().url_for(&request.target)
    } else {
        shared.config.target.url_for(&request.target)
    };
    let pairs = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_ref(), v.as_ref()));
    let mut headers = protocol::end_to_end_refs(pairs);
    let rewrites = rebasing(shared, request).is_some() && rebase::asks_identity(&request.target);
    if filters(shared, allowed) || shared.config.disable_response_compression || rewrites {
        // A compressed listing could not be read: ask for it plain (see `listing`), and so
        // an answer whose URLs are rewritten (see `rebase`); the operator may ask for every
        // answer plain.
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("accept-encoding"));
        headers.push(("Accept-Encoding", "identity"));
    }
    let streamed = request.body && whole.is_none();
    let mut body = RequestBody::new(socket, streamed, idle_limit(shared));
    let asked = Instant::now();
    let outcome = {
        let payload = match whole {
            Some(bytes) => forward::Payload::Bytes(bytes),
            None if streamed => forward::Payload::Stream(&mut body),
            None => forward::Payload::None,
        };
        let authority = &shared.config.target.authority;
        forward::send(
            &shared.http,
            &request.method,
            url,
            &headers,
            payload,
            authority,
        )
    };
    record.upstream = Some(asked.elapsed());
    // The gateway writes the whole body before it reads an answer: consume it first.
    body.skip_rest()
        .map_err(|e| StreamEnd::Lost(e.to_string()))?;
    record.bytes_in = body.bytes + whole.map_or(0, |w| w.len() as u64);
    Ok(outcome)
}

/// The VCS's answer, as it is or (a listing) with what the caller may not see taken out.
fn answer(
    shared: &Shared,
    socket: &mut Socket,
    mut record: Record,
    allowed: &Allowed,
    response: Response,
    buffer: &mut [u8],
) -> Result<(), StreamEnd> {
    let status = response.status().as_u16();
    record.status = Some(status);
    let has_body = protocol::response_has_body(&record.request.method, status);
    let rebase = rebasing(shared, record.request);
    let mut headers = answer_headers(shared, &mut record, rebase.as_ref(), status, &response);
    let rewriter = match rebase
        .as_ref()
        .filter(|_| has_body)
        .map(|_| rebase::json_body(&headers))
    {
        Some(Ok(true)) => rebase.as_ref().map(BodyRewriter::new),
        Some(Err(why)) => {
            record.not_rewritten = Some(why);
            None
        }
        _ => None,
    };
    if filters(shared, allowed) {
        listing::strip_totals(&mut headers);
        if has_body {
            // The listing is read whole, past the response its headers borrow from.
            let headers = owned(headers);
            let body = read_listing(response, &headers, &shared.config.target.authority);
            return answer_listing(shared, socket, record, headers, body, rewriter);
        }
    }
    let known = content_length(&response).filter(|&n| n <= rebase::WHOLE_MAX as u64);
    let rewriter = match (rewriter, known) {
        // Not large: read whole, and sent with its new length.
        (Some(rewriter), Some(length)) => {
            let headers = owned(headers);
            return answer_whole(shared, socket, record, headers, response, length, rewriter);
        }
        // The body's length changes as it passes: the gateway sends it chunked.
        (Some(rewriter), None) => {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
            Some(rewriter)
        }
        (None, _) => None,
    };
    let head = response_head(&record, status, headers, has_body);
    let mut out = Answer { socket };
    if let Err(e) = out.head(head, has_body) {
        let why = format!("gateway connection lost: {e}");
        record.problem = Some((ErrorKind::AgentLost, why));
        return Err(e.into());
    }
    if !has_body {
        return Ok(());
    }
    match rewriter {
        Some(rewriter) => stream_rewritten(shared, out, record, response, buffer, rewriter),
        None => stream_body(shared, out, record, response, buffer),
    }
}

/// A JSON answer of known `length` (at most [`rebase::WHOLE_MAX`]) read whole, its URLs
/// pointed back at the front, and sent with its new `Content-Length`.
fn answer_whole(
    shared: &Shared,
    socket: &mut Socket,
    mut record: Record,
    headers: HeaderPairs,
    response: Response,
    length: u64,
    mut rewriter: BodyRewriter,
) -> Result<(), StreamEnd> {
    let mut bytes = Vec::with_capacity(length as usize);
    // Read to the body's own end (its framing is `length`), so that the connection goes
    // back to the pool; the bound only guards against a reader that would not stop.
    let bound = rebase::WHOLE_MAX as u64 + 1;
    if let Err(e) = response.into_body().take(bound).read_to_end(&mut bytes) {
        let error = forward::classify_read(&e, &shared.config.target.authority);
        return Answer { socket }.refuse(record, error.kind, error.message);
    }
    let bytes = rewriter.whole(&bytes);
    record.rewritten += rewriter.rewritten;
    send_whole(socket, record, headers, bytes)
}

/// The `Content-Length` of an answer, when it has one.
fn content_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(ureq_proto::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Where answers to `request` point back to, when the gateway said where the caller stands
/// and the operator did not turn the rewrite off.
fn rebasing<'s>(shared: &'s Shared, request: &'s Request) -> Option<Rebase<'s>> {
    let front = request.front.as_deref()?;
    let config = &shared.config;
    (!config.disable_url_rewrite).then(|| {
        let vendor = shared.allowlist.vendor();
        Rebase::new(front, &config.target, shared.codeload_base(), vendor)
    })
}

/// The answer's end-to-end headers, borrowed from the VCS's answer, with URLs into the VCS
/// pointed back at the front ([`rebase`]), or without a front, redirects into the VCS
/// pointed back at the tunnel ([`redirect`]).
fn answer_headers<'r>(
    shared: &Shared,
    record: &mut Record,
    rebase: Option<&Rebase>,
    status: u16,
    response: &'r Response,
) -> HeaderPairs<'r> {
    let request = record.request;
    let mut headers = forward::response_headers(response.headers());
    if let Some(rebase) = rebase {
        record.rewritten += rebase.headers(status, &mut headers);
    }
    // What the front rewrite left (all of it without a front): a `Location` into the VCS
    // climbs back to the tunnel root, one outside it is made absolute on the VCS, one that
    // cannot be read for sure is removed.
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
    headers
}

/// Relays the VCS's body in [`MAX_CHUNK`] pieces, then `end`; a read error aborts the answer.
fn stream_body(
    shared: &Shared,
    mut out: Answer,
    mut record: Record,
    response: Response,
    buffer: &mut [u8],
) -> Result<(), StreamEnd> {
    let length = content_length(&response);
    let mut reader = response.into_body();
    loop {
        match reader.read(buffer) {
            Ok(0) => {
                return out.end().map_err(|e| {
                    let why = format!("gateway connection lost: {e}");
                    record.problem = Some((ErrorKind::AgentLost, why));
                    StreamEnd::from(e)
                })
            }
            Ok(n) => {
                let last = length == Some(record.bytes_out + n as u64);
                // When the gateway hung up, dropping `reader` drops the upstream connection.
                out.data(&buffer[..n], last)
                    .map_err(|e| cancelled(&mut record, e))?;
                record.bytes_out += n as u64;
            }
            Err(e) => {
                let error = forward::classify_read(&e, &shared.config.target.authority);
                return out.abort(record, error);
            }
        }
    }
}

/// Relays the VCS's JSON body with its URLs into the VCS pointed back at the front, in
/// pieces of at most [`MAX_CHUNK`], then `end`; a read error aborts the answer.
fn stream_rewritten(
    shared: &Shared,
    mut out: Answer,
    mut record: Record,
    response: Response,
    buffer: &mut [u8],
    mut rewriter: BodyRewriter,
) -> Result<(), StreamEnd> {
    let mut reader = response.into_body();
    let mut rewritten = Vec::new();
    loop {
        let n = match reader.read(buffer) {
            Ok(n) => n,
            Err(e) => {
                let error = forward::classify_read(&e, &shared.config.target.authority);
                record.rewritten += rewriter.rewritten;
                return out.abort(record, error);
            }
        };
        if n == 0 {
            rewriter.finish(&mut rewritten);
        } else {
            rewriter.piece(&buffer[..n], &mut rewritten);
        }
        for piece in rewritten.chunks(MAX_CHUNK) {
            out.data(piece, false)
                .map_err(|e| cancelled(&mut record, e))?;
            record.bytes_out += piece.len() as u64;
        }
        if n == 0 {
            record.rewritten += rewriter.rewritten;
            return out.end().map_err(|e| cancelled(&mut record, e));
        }
    }
}

/// A request body after the allowlist's body step.
enum Inspected {
    /// Not inspected: it streams as it arrives.
    Stream,
    /// Read whole and allowed: forward these bytes.
    Whole(Vec<u8>, BodyVerdict),
    /// Denied; the body was consumed (this many bytes).
    Denied(Denied, u64),
}

/// Reads a body the allowlist must inspect, at most [`allowlist::body::MAX_BODY`] bytes
/// kept (a larger one is consumed and denied), and asks the allowlist about it.
fn read_for_inspection(
    shared: &Shared,
    socket: &mut Socket,
    request: &Request,
    allowed: &allowlist::Allowed,
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
            Err(denied) => Err(denied),
        };
    let mut body = RequestBody::new(socket, request.body, idle_limit(shared));
    let mut whole = Vec::new();
    if inspection.is_ok() {
        let limit = allowlist::body::MAX_BODY as u64 + 1;
        // A read error is kept in `body` and returned by `skip_rest` below.
        let _ = (&mut body).take(limit).read_to_end(&mut whole);
    }
    body.skip_rest()
        .map_err(|e| StreamEnd::Lost(e.to_string()))?;
    let inspection = match inspection {
        Ok(inspection) => inspection,
        Err(denied) => return Ok(Inspected::Denied(denied, body.bytes)),
    };
    if whole.len() > allowlist::body::MAX_BODY {
        return Ok(Inspected::Denied(inspection.too_large(), body.bytes));
    }
    Ok(match shared.allowlist.check_body(inspection, &whole) {
        Ok(verdict) => Inspected::Whole(whole, verdict),
        Err(denied) => Inspected::Denied(denied, body.bytes),
    })
}

/// The allowlist's verdict, with a project given by an id resolved to its path.
fn admit(shared: &Shared, request: &Request) -> Result<Allowed, Denied> {
    let decision = shared.allowlist.decide(
        &request.method,
        &request.target,
        &request.headers,
        request.body,
    )?;
    let mut allowed = match decision {
        Decision::Allowed(allowed) => allowed,
        Decision::ById(mut allowed, id) => {
            let about = |d: Denied| d.about(allowed.description, Some(id.to_string()));
            let path = projects::resolve(shared, &id, &request.headers)
                .map_err(|reason| about(Denied::project(reason.to_string())))?;
            if !shared.allowlist.allows_project(&path) {
                let reason = format!("project {path} (id {id}) is not allowed");
                let judged = Some(format!("{path} (id {id})"));
                return Err(Denied::project(reason).about(allowed.description, judged));
            }
            allowed.project = Some(format!("{path} (id {id})"));
            allowed
        }
    };
    // Projects a parameter names by id go through the same resolution.
    for (param, id) in std::mem::take(&mut allowed.param_ids) {
        let path = projects::resolve(shared, &id, &request.headers)
            .map_err(|reason| Denied::project(reason.to_string()))?;
        if !shared.allowlist.allows_project(&path) {
            return Err(Denied::project(format!(
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
fn final_answer(response: Response) -> Result<Response, forward::UpstreamError> {
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

/// The `response` frame, borrowing from the record and the VCS's answer.
fn response_head<'r>(
    record: &'r Record,
    status: u16,
    headers: HeaderPairs<'r>,
    body: bool,
) -> Control<'r> {
    Control::Response {
        id: Cow::Borrowed(&record.request.id),
        status,
        headers,
        body,
        rule: Some(Cow::Borrowed(record.rule_text())),
        project: record.project.as_deref().map(Cow::Borrowed),
    }
}

/// Headers that no longer borrow from the answer.
fn owned(headers: HeaderPairs) -> HeaderPairs<'static> {
    headers
        .into_iter()
        .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned())))
        .collect()
}

/// A listing answer read whole, at most [`listing::LIMIT`] bytes and not compressed.
fn read_listing(
    response: Response,
    headers: &HeaderPairs,
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
    if let Err(e) = response.into_body().take(limit + 1).read_to_end(&mut bytes) {
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
    mut record: Record,
    headers: HeaderPairs,
    body: Result<Vec<u8>, (ErrorKind, String)>,
    rewriter: Option<BodyRewriter>,
) -> Result<(), StreamEnd> {
    let vendor = shared.allowlist.vendor();
    let org = shared.allowlist.organisation(&record.request.target);
    let filtered = body.and_then(|bytes| {
        let keep = |path: &str| shared.allowlist.allows_project(path);
        let mut learn = |id: &str, path: &str| shared.ids.learn(&org, id, path);
        listing::filter(vendor, &org, &bytes, &keep, &mut learn).map_err(|e| {
            let status = record.status.unwrap_or_default();
            let reason = format!("{} (the VCS answered {status})", e.0);
            (ErrorKind::Denied, reason)
        })
    });
    let mut out = Answer { socket };
    let bytes = match filtered {
        Ok(bytes) => match rewriter {
            Some(mut rewriter) => {
                let bytes = rewriter.whole(&bytes);
                record.rewritten += rewriter.rewritten;
                bytes
            }
            None => bytes,
        },
        // A listing that cannot be filtered is refused for what the request asked for.
        Err((ErrorKind::Denied, reason)) => return out.deny(record, Denied::path(reason)),
        Err((kind, reason)) => return out.refuse(record, kind, reason),
    };
    send_whole(out.socket, record, headers, bytes)
}

/// Sends an answer's body read whole (and changed), with its `Content-Length` recomputed.
fn send_whole(
    socket: &mut Socket,
    mut record: Record,
    mut headers: HeaderPairs,
    bytes: Vec<u8>,
) -> Result<(), StreamEnd> {
    headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
    });
    headers.push(("Content-Length".into(), bytes.len().to_string().into()));
    let status = record.status.unwrap_or(200);
    let head = response_head(&record, status, headers, true);
    let mut out = Answer { socket };
    let mut sent = out.head(head, true);
    for piece in bytes.chunks(MAX_CHUNK) {
        sent = sent.and_then(|()| out.data(piece, false));
        if sent.is_ok() {
            record.bytes_out += piece.len() as u64;
        }
    }
    // The gateway hung up: the caller went away.
    sent.and_then(|()| out.end())
        .map_err(|e| cancelled(&mut record, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn informational_statuses_are_not_answers() {
        let answer = |status: u16| {
            let response = ureq_proto::http::Response::builder()
                .status(status)
                .body(forward::Body::empty())
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
}
