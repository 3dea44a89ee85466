//! One request over one agent stream, run on the caller's thread: send the request head and
//! body to the agent, then write the agent's answer straight to the caller's socket.
//!
//! The caller gets exactly what the frames say. A body of known length keeps its
//! `Content-Length`; one of unknown length is sent chunked (or close-delimited to an HTTP/1.0
//! caller). When the answer breaks off (`abort`, a lost agent) the caller's connection is
//! closed without the terminating chunk or short of its length, so a truncated download can
//! never look complete. When the caller goes away, the agent's WebSocket is closed: that is
//! the cancellation signal.
//!
//! Read it in the order it runs: [`run`] sends the request head; `send_body` the body (the
//! start the front read before taking the stream, then the rest at a minimum rate); then an
//! `Answer` takes the agent's frames one at a time, checks each against the protocol's
//! order ([`AnswerState`]) and hands it to a `ToCaller`, the writer that frames the answer
//! for the caller's HTTP version (head, data, end, or a break-off). Every way it ends is one
//! `Ending`: what is left of the agent stream, and whether the caller's connection can take
//! another request. The request's record is filled on the way and returned, for the front to
//! log once.
//!
//! An agent answering outside the protocol (a header with CR, LF or NUL or a name that is not a
//! token, a status outside 200–599, two different `Content-Length`s, a body for a status that
//! has none, more bytes than its `Content-Length`) reaches the caller no further than what was
//! valid: `502 agent_lost`, or a cut transfer after the head, and the stream is dropped.
//! Hop-by-hop headers are never passed on; the gateway frames the body itself.

pub mod job;
pub mod local;

use crate::gateway::exchange::job::{BodyStart, Connection, Job};
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::settings::GatewaySettings;
use crate::gateway::state::stream::AgentStream;
use crate::http1::{self, BodyProgress, BodyReader, Framing};
use crate::net::rate::{Meter, TooSlow};
use crate::net::Stream;
use crate::protocol::link::{Link, LinkError};
use crate::protocol::{self, AnswerState, Control, ErrorKind, Frame, HeaderPairs, MAX_CHUNK};
use log::warn;
use std::borrow::Cow;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message};

/// What is left of the agent stream after an exchange.
pub enum StreamState {
    Usable,
    /// The agent said it is draining: close the stream.
    Draining,
    Broken(String),
}

/// How the answer's body goes to the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The most room an idle stream keeps for the caller's framing bytes: a head of many headers.
const PENDING_KEPT: usize = 16 * 1024;

/// The JSON body of every error answer. `error` and `kind` are ours; `message` is where
/// GitLab, GitHub and Azure DevOps clients look for a reason (python-gitlab, PyGithub, the
/// Azure SDK), `errors[0].message` where Bitbucket's do (atlassian-python-api prints
/// "Unknown error" without it). The gateway does not know the pool's vendor, so every
/// body carries both.
pub fn error_body(kind: ErrorKind, message: &str) -> String {
    serde_json::json!({
        "error": message,
        "kind": kind.as_str(),
        "message": message,
        "errors": [{ "message": message }],
    })
    .to_string()
}

/// Writes a JSON error answer ([`error_body`]); `id` (the request id, when there is one)
/// goes in `X-Vcs-Request-Id` like on every tunnelled answer.
pub fn write_error(
    out: &mut impl Write,
    id: Option<&str>,
    kind: ErrorKind,
    message: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    write_error_status(out, id, kind.status(), kind, message, keep_alive)
}

/// [`write_error`] with a status of its own (a `408` of kind `bad_request`).
pub fn write_error_status(
    out: &mut impl Write,
    id: Option<&str>,
    status: u16,
    kind: ErrorKind,
    message: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    let body = error_body(kind, message);
    let extra: Vec<(String, String)> = id
        .map(|id| ("X-Vcs-Request-Id".to_string(), id.to_string()))
        .into_iter()
        .collect();
    http1::write_simple_with(
        out,
        status,
        "application/json",
        body.as_bytes(),
        keep_alive,
        &extra,
    )
}

/// The agent's own error answer for a git client: `text/plain`, which git prints to the
/// user as `remote: …`, naming the reason (a JSON body would only show as an HTTP status).
fn write_git_error(
    out: &mut impl Write,
    id: &str,
    kind: ErrorKind,
    message: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    let body = format!("{kind}: {message}\n");
    let extra = [("X-Vcs-Request-Id".to_string(), id.to_string())];
    let status = kind.status();
    http1::write_simple_with(
        out,
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        keep_alive,
        &extra,
    )
}

/// Whether a request is git's smart HTTP (clone, fetch, push): its errors go as text.
fn is_git_request(job: &Job) -> bool {
    let path = job.target.split('?').next().unwrap_or("");
    let smart = ["/info/refs", "/git-upload-pack", "/git-receive-pack"];
    let agent = job.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("user-agent") && v.to_ascii_lowercase().starts_with("git/")
    });
    agent || smart.iter().any(|end| path.ends_with(end))
}

/// How an exchange ended.
pub enum Exchanged {
    /// The request head could not be sent: no agent saw it, another stream may take it.
    NotStarted(String),
    /// It ran; `reusable` says whether the caller's connection can take another request.
    Done {
        state: StreamState,
        reusable: bool,
        record: Box<RequestRecord>,
    },
}

/// How an exchange ended for the agent stream, and whether the caller's connection can take
/// another request.
type Ending = (StreamState, bool);

/// Runs `job` over `stream`, on the caller's own thread, writing the answer to `caller`.
/// After `NotStarted` the job is untouched and may run on another stream.
pub fn run(
    stream: &mut AgentStream,
    job: &mut Job,
    caller: &mut Connection,
    settings: &GatewaySettings,
) -> Exchanged {
    let started = Instant::now();
    let mut tally = RequestRecord {
        id: job.id.clone(),
        time_ms: crate::clock::now_millis(),
        method: job.method.clone(),
        path: crate::observe::redact_target(&job.target),
        agent: Some(stream.instance.clone()),
        ..RequestRecord::default()
    };
    if let Err(e) = stream.link.send(&request_head(job)) {
        return Exchanged::NotStarted(format!("request head could not be sent: {e}"));
    }
    let pending = &mut stream.pending;
    let (state, reusable) = relay(&mut stream.link, pending, job, caller, settings, &mut tally);
    // An answer with a huge head leaves no huge buffer on the idle stream.
    pending.clear();
    pending.shrink_to(PENDING_KEPT);
    tally.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let StreamState::Broken(reason) = &state {
        warn!(target: "front", "id={} agent={} agent_addr={} stream ended: {reason}", job.id, stream.instance, stream.peer);
    }
    Exchanged::Done {
        state,
        reusable,
        record: Box::new(tally),
    }
}

/// The `request` frame of `job`, borrowing its strings.
fn request_head(job: &Job) -> Control<'_> {
    Control::Request {
        id: job.id.as_str().into(),
        method: job.method.as_str().into(),
        target: job.target.as_str().into(),
        headers: job
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().into(), v.as_str().into()))
            .collect(),
        body: job.framing != Framing::Empty,
        front: job.front.as_deref().map(Cow::Borrowed),
    }
}

/// The body, then the answer; the socket's read timeout (a keepalive tick) is set once per
/// stream. `pending` is the stream's buffer for the caller's framing bytes, emptied first
/// (and given back down to [`PENDING_KEPT`] by [`run`] after the answer).
fn relay(
    link: &mut Link<Stream>,
    pending: &mut Vec<u8>,
    job: &mut Job,
    caller: &mut Connection,
    settings: &GatewaySettings,
    tally: &mut RequestRecord,
) -> Ending {
    if job.framing != Framing::Empty {
        if let Err(failure) = send_body(link, caller, &mut job.body, settings, tally) {
            return body_failed(failure, caller.conn.get_mut(), tally);
        }
    }
    pending.clear();
    Answer {
        link,
        to: ToCaller {
            out: caller.conn.get_mut(),
            pending,
            mode: BodyMode::None,
            version: job.version,
            keep_alive: job.keep_alive,
            git: is_git_request(job),
            pace: Pace::new(settings),
        },
        method: &job.method,
        tally,
        timeout: settings.exchange_timeout,
        state: AnswerState::AwaitingHead,
        draining: false,
    }
    .run()
}

/// Which side failed while a request body was on its way.
enum BodyFailure {
    Agent(String),
    Caller(String),
    /// The caller sent its body slower than the minimum upload rate.
    TooSlow(String),
}

fn agent_lost(what: &str, e: tungstenite::Error) -> BodyFailure {
    BodyFailure::Agent(format!("{what} could not be sent: {e}"))
}

/// Sends the request body to the agent in pieces of at most [`MAX_CHUNK`]: the start read
/// before the stream was taken, then (a large body) the rest from the caller, then `end`. A
/// whole small body leaves together with its `end` in one write.
fn send_body(
    link: &mut Link<Stream>,
    caller: &mut Connection,
    body: &mut BodyStart,
    settings: &GatewaySettings,
    tally: &mut RequestRecord,
) -> Result<(), BodyFailure> {
    let rest = body.rest.take();
    if !body.bytes.is_empty() {
        tally.bytes_in += body.bytes.len() as u64;
        // A whole body is handed over as it is; the start of a larger one is copied, its
        // allocation becoming the buffer for the rest.
        let sent = if rest.is_none() {
            link.queue(Message::Binary(Bytes::from(std::mem::take(
                &mut body.bytes,
            ))))
        } else {
            link.send_message(Message::Binary(Bytes::copy_from_slice(&body.bytes)))
        };
        sent.map_err(|e| agent_lost("request body", e))?;
    }
    if let Some(rest) = rest {
        // The start of a body this large filled a whole piece: its allocation is the buffer.
        let buffer = std::mem::take(&mut body.bytes);
        send_rest(link, caller, rest, buffer, settings, tally)?;
    }
    link.send(&Control::End)
        .map_err(|e| agent_lost("end of body", e))
}

/// The rest of a large body, read from the caller while the stream is held. It must keep
/// coming at the minimum rate in every window ([`crate::net::rate`]): a read that would end
/// past the current window's deadline is cut off there (reading side only, so the caller
/// still hears why).
fn send_rest(
    link: &mut Link<Stream>,
    caller: &mut Connection,
    rest: BodyProgress,
    mut buffer: Vec<u8>,
    settings: &GatewaySettings,
    tally: &mut RequestRecord,
) -> Result<(), BodyFailure> {
    let mut meter = Meter::start(settings.upload_rate(), Instant::now());
    let watchable = &caller.watchable;
    let mut reader = BodyReader::resume(&mut caller.conn, rest);
    buffer.resize(MAX_CHUNK, 0);
    let too_slow = |e: TooSlow| {
        BodyFailure::TooSlow(format!(
            "the request body arrived with {e} while it held an agent stream"
        ))
    };
    loop {
        let deadline = meter.as_ref().map(Meter::deadline);
        let watch =
            deadline.map(|at| watchable.watch_reads(at.saturating_duration_since(Instant::now())));
        let read = reader.read(&mut buffer);
        drop(watch);
        if let Some(meter) = &mut meter {
            let taken = *read.as_ref().unwrap_or(&0);
            meter.moved(taken, Instant::now()).map_err(too_slow)?;
        }
        match read {
            Ok(0) => return Ok(()),
            Ok(n) => {
                tally.bytes_in += n as u64;
                link.send_message(Message::Binary(Bytes::copy_from_slice(&buffer[..n])))
                    .map_err(|e| agent_lost("request body", e))?;
            }
            Err(e) => {
                return Err(BodyFailure::Caller(format!(
                    "caller's request body failed: {e}"
                )))
            }
        }
    }
}

/// What the caller hears, and what is left, when the request body did not get through.
fn body_failed(failure: BodyFailure, out: &mut Stream, tally: &mut RequestRecord) -> Ending {
    match failure {
        BodyFailure::Agent(reason) => {
            tally.status = ErrorKind::AgentLost.status();
            let _ = write_error(
                out,
                Some(&tally.id),
                ErrorKind::AgentLost,
                "the agent connection was lost while sending the request body",
                false,
            );
            (StreamState::Broken(reason), false)
        }
        // The caller broke off its own request: tell the agent by closing.
        BodyFailure::Caller(reason) => (StreamState::Broken(reason), false),
        // Too slow: the stream is released at once (closed: the agent dials again).
        BodyFailure::TooSlow(reason) => {
            tally.status = 408;
            tally.error = Some(ErrorKind::BadRequest);
            tally.reason = Some(reason.clone());
            let _ = write_error_status(
                out,
                Some(&tally.id),
                408,
                ErrorKind::BadRequest,
                &reason,
                false,
            );
            (StreamState::Broken(reason), false)
        }
    }
}

/// The answer phase: the agent's frames, checked in order, written to the caller.
struct Answer<'a> {
    link: &'a mut Link<Stream>,
    to: ToCaller<'a>,
    method: &'a str,
    tally: &'a mut RequestRecord,
    /// Longest silence from the agent.
    timeout: Duration,
    state: AnswerState,
    /// The agent said it drains: the stream closes after this exchange.
    draining: bool,
}

impl Answer<'_> {
    fn run(mut self) -> Ending {
        loop {
            let received = match self.link.recv_while_heard(self.timeout) {
                Ok(received) => received,
                Err(LinkError::Timeout(silent)) => {
                    return self.lost(format!("no answer from the agent for {silent:?}"))
                }
                Err(LinkError::Socket(e)) => return self.lost(format!("connection lost: {e}")),
            };
            // The frame borrows from `received`: a head's headers are never copied here.
            let frame = match received.frame() {
                Ok(frame) => frame,
                Err(e) => return self.lost(e.to_string()),
            };
            let next = match self.state.next(&frame) {
                Ok(next) => next,
                Err(e) => return self.lost(e.to_string()),
            };
            if let Some(ending) = self.take(frame) {
                return ending;
            }
            self.state = next;
            if self.state == AnswerState::Done {
                let reusable = self.to.keep_alive && self.to.mode != BodyMode::UntilClose;
                return (usable(self.draining), reusable);
            }
        }
    }

    /// Handles one frame; `Some` when the exchange ends with it before its natural end.
    fn take(&mut self, frame: Frame<'_>) -> Option<Ending> {
        match frame {
            Frame::Control(Control::Draining) => {
                self.draining = true;
                None
            }
            Frame::Control(Control::Response {
                id,
                status,
                headers,
                body,
                rule,
                project,
            }) => {
                self.tally.rule = rule.map(Cow::into_owned);
                self.tally.project = project.map(Cow::into_owned);
                self.head(&id, status, &headers, body)
            }
            Frame::Control(Control::Error {
                kind,
                message,
                rule,
                project,
                ..
            }) => {
                self.tally.status = kind.status();
                self.tally.error = Some(kind);
                self.tally.reason = Some(message.to_string());
                self.tally.rule = rule.map(Cow::into_owned);
                self.tally.project = project.map(Cow::into_owned);
                let written = self.to.error(&self.tally.id, kind, &message);
                written.err().map(|e| self.cancelled(e))
            }
            Frame::Data(data) => self.data(&data),
            Frame::Control(Control::End) => self.end(),
            Frame::Control(Control::Abort { kind, message, .. }) => {
                self.tally.error = Some(kind);
                self.tally.reason = Some(format!("answer broke off: {message}"));
                // Close the caller without ending the body: the transfer shows as failed.
                self.to.abort();
                Some((usable(self.draining), false))
            }
            Frame::Closed | Frame::Control(_) => Some(self.lost("unexpected frame".into())),
        }
    }

    /// The agent's response head; nothing it sends reaches the caller unchecked.
    fn head(&mut self, id: &str, status: u16, headers: &HeaderPairs, body: bool) -> Option<Ending> {
        if id != self.tally.id {
            let reason = format!("answer for {id} while serving {}", self.tally.id);
            return Some(self.lost(reason));
        }
        self.tally.status = status;
        if !(200..=599).contains(&status) {
            return Some(self.lost(format!("answer with status {status}")));
        }
        if let Some((name, _)) = headers.iter().find(|(n, v)| !protocol::valid_header(n, v)) {
            let name: String = name.chars().take(40).collect();
            return Some(self.lost(format!("answer with invalid header {name:?}")));
        }
        let mut lengths = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim());
        if let Some(first) = lengths.next() {
            if lengths.any(|other| other != first) {
                return Some(self.lost("answer with conflicting Content-Length values".into()));
            }
        }
        let body = body && protocol::response_has_body(self.method, status);
        let written = self.to.head(&self.tally.id, status, headers, body);
        written.err().map(|e| self.cancelled(e))
    }

    fn data(&mut self, data: &[u8]) -> Option<Ending> {
        self.tally.bytes_out += data.len() as u64;
        match self.to.mode {
            BodyMode::None => return Some(self.lost("body for an answer without one".into())),
            BodyMode::Length(n) if self.tally.bytes_out > n => {
                return Some(self.lost("agent sent more than Content-Length".into()))
            }
            _ => {}
        }
        self.to.data(data).err().map(|e| self.cancelled(e))
    }

    fn end(&mut self) -> Option<Ending> {
        if let Err(e) = self.to.end() {
            return Some(self.cancelled(e));
        }
        if let BodyMode::Length(n) = self.to.mode {
            if self.tally.bytes_out != n {
                self.tally.error = Some(ErrorKind::AgentLost);
                self.tally.reason = Some(format!(
                    "answer ended at {} of {n} bytes",
                    self.tally.bytes_out
                ));
                // Short of its length: closing makes the truncation visible.
                return Some((usable(self.draining), false));
            }
        }
        None
    }

    /// The agent went away or broke the protocol mid-exchange.
    fn lost(&mut self, reason: String) -> Ending {
        self.tally.error = Some(ErrorKind::AgentLost);
        self.tally.reason = Some(reason.clone());
        if self.state == AnswerState::AwaitingHead {
            self.tally.status = ErrorKind::AgentLost.status();
            let _ = write_error(
                self.to.out,
                Some(&self.tally.id),
                ErrorKind::AgentLost,
                "the agent serving this request was lost before it answered",
                false,
            );
        }
        (StreamState::Broken(reason), false)
    }

    /// The caller went away, or took the answer too slowly: closing the agent stream is the
    /// cancellation signal, and the stream is released at once.
    fn cancelled(&mut self, error: std::io::Error) -> Ending {
        let _ = self.link.get_ref().tcp().shutdown(std::net::Shutdown::Both);
        if too_slow(&error) {
            let reason =
                format!("the caller took the answer too slowly ({error}); request cancelled");
            self.tally.error = Some(ErrorKind::CallerTooSlow);
            self.tally.reason = Some(reason.clone());
            let _ = self.to.out.tcp().shutdown(std::net::Shutdown::Both);
            return (StreamState::Broken(reason), false);
        }
        (
            StreamState::Broken(format!("caller went away ({error}); request cancelled")),
            false,
        )
    }
}

fn usable(draining: bool) -> StreamState {
    if draining {
        StreamState::Draining
    } else {
        StreamState::Usable
    }
}

/// The answer as the caller's connection gets it: a head, body pieces, then an end or a
/// break-off. Framing bytes (the head, chunk size lines) wait in `pending` and leave with the
/// next body piece in one vectored write: a small answer costs the caller's socket one
/// system call.
struct ToCaller<'a> {
    out: &'a mut Stream,
    pending: &'a mut Vec<u8>,
    mode: BodyMode,
    /// HTTP minor version of the caller, and whether it wants keep-alive.
    version: u8,
    keep_alive: bool,
    /// A git client: the agent's error answers go as text ([`write_git_error`]).
    git: bool,
    pace: Pace,
}

/// How fast the caller takes the answer, measured on a clock that runs only while the
/// gateway waits for the caller's socket (a slow agent or VCS is never the caller's fault),
/// against the minimum download rate ([`crate::net::rate`]).
struct Pace {
    meter: Option<Meter>,
    /// Where the clock started, and how long writes to the caller have blocked since.
    base: Instant,
    blocked: Duration,
}

impl Pace {
    fn new(settings: &GatewaySettings) -> Pace {
        let base = Instant::now();
        Pace {
            meter: Meter::start(settings.download_rate(), base),
            base,
            blocked: Duration::ZERO,
        }
    }

    /// Counts `n` bytes taken by the caller, `during` into the current write.
    fn taken(&mut self, n: usize, during: Duration) -> std::io::Result<()> {
        let now = self.base + self.blocked + during;
        match &mut self.meter {
            Some(meter) => meter.moved(n, now).map_err(std::io::Error::other),
            None => Ok(()),
        }
    }

    /// The write took `took` in all.
    fn wrote(&mut self, took: Duration) -> std::io::Result<()> {
        self.blocked += took;
        match &self.meter {
            Some(meter) => meter
                .check(self.base + self.blocked)
                .map_err(std::io::Error::other),
            None => Ok(()),
        }
    }
}

/// Whether a failed write to the caller means the caller was too slow (below the minimum
/// download rate, or nothing taken for the socket's write timeout), not gone.
fn too_slow(error: &std::io::Error) -> bool {
    crate::net::stream::is_timeout(error)
        || error
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<TooSlow>().is_some())
}

impl ToCaller<'_> {
    /// The response head, framed for the caller: a known length stays, an unknown one goes
    /// chunked (or until close to an HTTP/1.0 caller). Without a body it leaves at once. The
    /// agent's end-to-end headers are written straight from the frame into `pending`.
    fn head(
        &mut self,
        id: &str,
        status: u16,
        headers: &HeaderPairs,
        body: bool,
    ) -> std::io::Result<()> {
        let pairs = || headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
        let named = protocol::connection_tokens(pairs());
        let kept = || pairs().filter(|(n, _)| protocol::is_end_to_end(n, &named));
        let is_length = |name: &str| name.eq_ignore_ascii_case("content-length");
        let length = kept()
            .find(|(n, _)| is_length(n))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        self.mode = match length {
            _ if !body => BodyMode::None,
            Some(n) => BodyMode::Length(n),
            None if self.version >= 1 => BodyMode::Chunked,
            None => BodyMode::UntilClose,
        };
        // A length this side does not frame the body by does not go on.
        let framed_here = matches!(self.mode, BodyMode::Chunked | BodyMode::UntilClose);
        http1::status_line(self.pending, status);
        for (name, value) in kept().filter(|(n, _)| !(framed_here && is_length(n))) {
            http1::header_line(self.pending, name, value);
        }
        if self.mode == BodyMode::Chunked {
            http1::header_line(self.pending, "Transfer-Encoding", "chunked");
        }
        if !self.keep_alive || self.mode == BodyMode::UntilClose {
            http1::header_line(self.pending, "Connection", "close");
        }
        http1::header_line(self.pending, "X-Vcs-Request-Id", id);
        self.pending.extend_from_slice(b"\r\n");
        if self.mode == BodyMode::None {
            return self.send(&[]);
        }
        Ok(())
    }

    /// The agent's own error answer, instead of a head.
    fn error(&mut self, id: &str, kind: ErrorKind, message: &str) -> std::io::Result<()> {
        if self.git {
            return write_git_error(self.out, id, kind, message, self.keep_alive);
        }
        write_error(self.out, Some(id), kind, message, self.keep_alive)
    }

    /// One piece of the body.
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self.mode {
            BodyMode::Chunked if data.is_empty() => Ok(()),
            BodyMode::Chunked => {
                self.pending
                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                let sent = self.send(data);
                // The chunk's closing CRLF leaves with the next piece.
                self.pending.extend_from_slice(b"\r\n");
                sent
            }
            _ => self.send(data),
        }
    }

    /// The end of the body (a chunked one gets its terminator).
    fn end(&mut self) -> std::io::Result<()> {
        if self.mode == BodyMode::Chunked {
            self.pending.extend_from_slice(b"0\r\n\r\n");
        }
        self.send(&[])
    }

    /// The body breaks off: what is pending goes, the terminator never does.
    fn abort(&mut self) {
        let _ = self.send(&[]);
    }

    /// Writes the pending framing bytes and `data` together, then empties `pending`; the
    /// caller must take them at the minimum download rate ([`Pace`]).
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        let started = Instant::now();
        let pace = &mut self.pace;
        crate::net::stream::write_both_with(self.out, self.pending, data, |n| {
            pace.taken(n, started.elapsed())
        })?;
        self.pending.clear();
        self.out.flush()?;
        self.pace.wrote(started.elapsed())
    }
}
