//! One request over one agent stream, run on the caller's thread: send the request head and
//! body to the agent, then write the agent's answer straight to the caller's socket.
//!
//! The caller gets exactly what the frames say. A body of known length keeps its
//! `Content-Length`; one of unknown length is sent chunked (or close-delimited to an HTTP/1.0
//! caller). When the answer breaks off (`abort`, a lost agent) the caller's connection is
//! closed without the terminating chunk or short of its length, so a truncated download can
//! never look complete. When the caller goes away, the agent's WebSocket is closed: that is
//! the cancellation signal.

use crate::gateway::record::RequestRecord;
use crate::gateway::request::{BodyStart, Caller, Job};
use crate::gateway::settings::Settings;
use crate::http1::{self, BodyReader, Framing};
use crate::net::stream::is_timeout;
use crate::net::Stream;
use crate::protocol::{self, AnswerState, Control, ErrorKind, Frame, MAX_CHUNK};
use log::warn;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message, WebSocket};

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

/// Runs `job` over `socket`, on the caller's own thread, writing the answer to `caller`.
/// After `NotStarted` the job is untouched and may run on another stream.
pub fn run(
    socket: &mut WebSocket<Stream>,
    job: &mut Job,
    caller: &mut Caller,
    settings: &Settings,
    agent: &str,
    agent_peer: SocketAddr,
) -> Exchanged {
    let started = Instant::now();
    let Job {
        id,
        method,
        target,
        headers,
        framing,
        version,
        keep_alive,
        body,
    } = job;
    let (framing, version, keep_alive) = (*framing, *version, *keep_alive);
    let mut tally = RequestRecord {
        id: id.clone(),
        time_ms: crate::clock::now_millis(),
        method: method.clone(),
        path: crate::observe::redact_target(target),
        agent: Some(agent.to_string()),
        ..RequestRecord::default()
    };
    let head = Control::Request {
        id: id.clone(),
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        body: framing != Framing::Empty,
    };
    if let Err(e) = socket.send(head.to_message()) {
        return Exchanged::NotStarted(format!("request head could not be sent: {e}"));
    }
    let (state, reusable) = relay(
        socket, caller, id, method, framing, body, version, keep_alive, settings, &mut tally,
    );
    tally.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let StreamState::Broken(reason) = &state {
        warn!(target: "front", "id={id} agent={agent} agent_addr={agent_peer} stream ended: {reason}");
    }
    Exchanged::Done {
        state,
        reusable,
        record: Box::new(tally),
    }
}

/// Which side failed while a request body was on its way.
enum BodyFailure {
    Agent(String),
    Caller(String),
    /// The caller sent its body slower than the minimum upload rate.
    TooSlow(String),
}

/// Until when the body must have gone on past `received` bytes, counted from `since` (when
/// the stream was taken): the minimum rate averaged since then, after the grace period.
/// `None` when no minimum rate is set.
fn upload_deadline(since: Instant, received: u64, settings: &Settings) -> Option<Instant> {
    let rate = settings.min_upload_rate;
    if rate == 0 {
        return None;
    }
    let earned = Duration::from_secs_f64(received as f64 / rate as f64);
    Some(since + earned.max(settings.upload_grace))
}

/// Sends the request body to the agent in pieces of at most [`MAX_CHUNK`]: the start read
/// before the stream was taken, then (a large body) the rest from the caller, then `end`. A
/// whole small body leaves together with its `end` in one write.
fn send_body(
    socket: &mut WebSocket<Stream>,
    caller: &mut Caller,
    body: &mut BodyStart,
    settings: &Settings,
    tally: &mut RequestRecord,
) -> Result<(), BodyFailure> {
    let agent_lost = |what: &str, e: tungstenite::Error| {
        BodyFailure::Agent(format!("{what} could not be sent: {e}"))
    };
    let rest = body.rest.take();
    if !body.bytes.is_empty() {
        tally.bytes_in += body.bytes.len() as u64;
        // A whole body is handed over as it is; the start of a larger one is copied, its
        // allocation becoming the buffer for the rest.
        let sent = if rest.is_none() {
            socket.write(Message::Binary(Bytes::from(std::mem::take(
                &mut body.bytes,
            ))))
        } else {
            socket.send(Message::Binary(Bytes::copy_from_slice(&body.bytes)))
        };
        sent.map_err(|e| agent_lost("request body", e))?;
    }
    if let Some(rest) = rest {
        // While the body holds a stream it must keep coming at the minimum rate: a read that
        // would end past the rate's deadline is cut off there (reading side only, so the
        // caller still hears why).
        let (since, mut received) = (Instant::now(), 0u64);
        let watchable = &caller.watchable;
        let mut reader = BodyReader::resume(&mut caller.conn, rest);
        // The start of a body this large filled a whole piece: its allocation is the buffer.
        let mut buffer = std::mem::take(&mut body.bytes);
        buffer.resize(MAX_CHUNK, 0);
        loop {
            let deadline = upload_deadline(since, received, settings);
            let watch = deadline
                .map(|at| watchable.watch_reads(at.saturating_duration_since(Instant::now())));
            let read = reader.read(&mut buffer);
            drop(watch);
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(BodyFailure::TooSlow(format!(
                    "the request body arrived slower than {} bytes/s (after a {:?} grace) while it held an agent stream",
                    settings.min_upload_rate, settings.upload_grace
                )));
            }
            match read {
                Ok(0) => break,
                Ok(n) => {
                    received += n as u64;
                    tally.bytes_in += n as u64;
                    socket
                        .send(Message::Binary(Bytes::copy_from_slice(&buffer[..n])))
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
    socket
        .send(Control::End.to_message())
        .map_err(|e| agent_lost("end of body", e))
}

/// Runs the exchange; returns the stream state and whether the caller connection is reusable.
#[allow(clippy::too_many_arguments)]
fn relay(
    socket: &mut WebSocket<Stream>,
    caller: &mut Caller,
    id: &str,
    method: &str,
    framing: Framing,
    body: &mut BodyStart,
    version: u8,
    keep_alive: bool,
    settings: &Settings,
    tally: &mut RequestRecord,
) -> (StreamState, bool) {
    // 1. The request body.
    if framing != Framing::Empty {
        match send_body(socket, caller, body, settings, tally) {
            Ok(()) => {}
            Err(BodyFailure::Agent(reason)) => {
                tally.status = ErrorKind::AgentLost.status();
                let _ = write_error(
                    caller.conn.get_mut(),
                    Some(id),
                    ErrorKind::AgentLost,
                    "the agent connection was lost while sending the request body",
                    false,
                );
                return (StreamState::Broken(reason), false);
            }
            // The caller broke off its own request: tell the agent by closing.
            Err(BodyFailure::Caller(reason)) => return (StreamState::Broken(reason), false),
            // Too slow: the stream is released at once (closed: the agent dials again).
            Err(BodyFailure::TooSlow(reason)) => {
                tally.status = 408;
                tally.error = Some(ErrorKind::BadRequest);
                tally.reason = Some(reason.clone());
                let _ = write_error_status(
                    caller.conn.get_mut(),
                    Some(id),
                    408,
                    ErrorKind::BadRequest,
                    &reason,
                    false,
                );
                return (StreamState::Broken(reason), false);
            }
        }
    }

    // 2. The answer (the socket's read timeout, a keepalive tick, is set once per stream).
    let mut answer = AnswerState::AwaitingHead;
    let mut mode = BodyMode::None;
    let mut draining = false;
    let mut last_heard = Instant::now();
    // Framing bytes (the head, chunk size lines) wait here and leave with the next body
    // piece in one vectored write: a small answer costs the caller's socket one system call.
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    let out = caller.conn.get_mut();
    loop {
        let frame = match socket.read() {
            Ok(message) => {
                last_heard = Instant::now();
                match protocol::decode(message) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => continue,
                    Err(e) => return lost(out, answer, tally, e.to_string()),
                }
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if last_heard.elapsed() >= settings.exchange_timeout {
                    return lost(
                        out,
                        answer,
                        tally,
                        format!("no answer from the agent for {:?}", last_heard.elapsed()),
                    );
                }
                continue;
            }
            Err(e) => return lost(out, answer, tally, format!("connection lost: {e}")),
        };
        let next = match answer.next(&frame) {
            Ok(next) => next,
            Err(e) => return lost(out, answer, tally, e.to_string()),
        };
        match frame {
            Frame::Control(Control::Draining) => draining = true,
            Frame::Control(Control::Response {
                id: answer_id,
                status,
                headers,
                body,
                rule,
                project,
            }) => {
                tally.rule = rule;
                tally.project = project;
                if answer_id != id {
                    return lost(
                        out,
                        answer,
                        tally,
                        format!("answer for {answer_id} while serving {id}"),
                    );
                }
                tally.status = status;
                // Nothing the agent sends reaches the caller unchecked.
                if !(200..=599).contains(&status) {
                    return lost(out, answer, tally, format!("answer with status {status}"));
                }
                if let Some((name, _)) = headers.iter().find(|(n, v)| !protocol::valid_header(n, v))
                {
                    let name: String = name.chars().take(40).collect();
                    return lost(
                        out,
                        answer,
                        tally,
                        format!("answer with invalid header {name:?}"),
                    );
                }
                let mut headers = protocol::end_to_end(headers);
                let length = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok());
                mode = if !body || !protocol::response_has_body(method, status) {
                    BodyMode::None
                } else if let Some(n) = length {
                    BodyMode::Length(n)
                } else if version >= 1 {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
                    headers.push(("Transfer-Encoding".into(), "chunked".into()));
                    BodyMode::Chunked
                } else {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
                    BodyMode::UntilClose
                };
                if !keep_alive || mode == BodyMode::UntilClose {
                    headers.push(("Connection".into(), "close".into()));
                }
                headers.push(("X-Vcs-Request-Id".into(), id.to_string()));
                let _ = http1::write_head(&mut pending, status, &headers);
                if mode == BodyMode::None {
                    if let Err(e) = send_pending(out, &mut pending, &[]) {
                        return cancelled(socket, e);
                    }
                }
            }
            Frame::Control(Control::Error {
                kind,
                message,
                rule,
                project,
                ..
            }) => {
                tally.status = kind.status();
                tally.error = Some(kind);
                tally.reason = Some(message.clone());
                tally.rule = rule;
                tally.project = project;
                if let Err(e) = write_error(out, Some(&tally.id), kind, &message, keep_alive) {
                    return cancelled(socket, e);
                }
            }
            Frame::Data(data) => {
                tally.bytes_out += data.len() as u64;
                let written = match mode {
                    BodyMode::None => {
                        return lost(out, answer, tally, "body for an answer without one".into());
                    }
                    BodyMode::Chunked if data.is_empty() => Ok(()),
                    BodyMode::Chunked => {
                        pending.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        let sent = send_pending(out, &mut pending, &data);
                        // The chunk's closing CRLF leaves with the next piece.
                        pending.extend_from_slice(b"\r\n");
                        sent
                    }
                    BodyMode::Length(n) if tally.bytes_out > n => {
                        return lost(
                            out,
                            AnswerState::Body,
                            tally,
                            "agent sent more than Content-Length".into(),
                        );
                    }
                    _ => send_pending(out, &mut pending, &data),
                };
                if let Err(e) = written {
                    return cancelled(socket, e);
                }
            }
            Frame::Control(Control::End) => {
                if mode == BodyMode::Chunked {
                    pending.extend_from_slice(b"0\r\n\r\n");
                }
                let finished = send_pending(out, &mut pending, &[]);
                if let Err(e) = finished {
                    return cancelled(socket, e);
                }
                if let BodyMode::Length(n) = mode {
                    if tally.bytes_out != n {
                        tally.error = Some(ErrorKind::AgentLost);
                        tally.reason =
                            Some(format!("answer ended at {} of {n} bytes", tally.bytes_out));
                        // Short of its length: closing makes the truncation visible.
                        return (usable(draining), false);
                    }
                }
            }
            Frame::Control(Control::Abort { kind, message, .. }) => {
                tally.error = Some(kind);
                tally.reason = Some(format!("answer broke off: {message}"));
                // Close the caller without ending the body: the transfer shows as failed.
                let _ = send_pending(out, &mut pending, &[]);
                return (usable(draining), false);
            }
            Frame::Closed | Frame::Control(_) => {
                return lost(out, answer, tally, "unexpected frame".into());
            }
        }
        answer = next;
        if answer == AnswerState::Done {
            let reusable = keep_alive && mode != BodyMode::UntilClose;
            return (usable(draining), reusable);
        }
    }
}

/// Writes the pending framing bytes and `data` together, then empties `pending`.
fn send_pending(out: &mut Stream, pending: &mut Vec<u8>, data: &[u8]) -> std::io::Result<()> {
    crate::net::stream::write_both(out, pending, data)?;
    pending.clear();
    out.flush()
}

fn usable(draining: bool) -> StreamState {
    if draining {
        StreamState::Draining
    } else {
        StreamState::Usable
    }
}

/// The agent went away or broke the protocol mid-exchange.
fn lost(
    out: &mut Stream,
    answer: AnswerState,
    tally: &mut RequestRecord,
    reason: String,
) -> (StreamState, bool) {
    tally.error = Some(ErrorKind::AgentLost);
    tally.reason = Some(reason.clone());
    if answer == AnswerState::AwaitingHead {
        tally.status = ErrorKind::AgentLost.status();
        let _ = write_error(
            out,
            Some(&tally.id),
            ErrorKind::AgentLost,
            "the agent serving this request was lost before it answered",
            false,
        );
    }
    (StreamState::Broken(reason), false)
}

/// The caller went away: closing the agent stream is the cancellation signal.
fn cancelled(socket: &mut WebSocket<Stream>, error: std::io::Error) -> (StreamState, bool) {
    let _ = socket.get_ref().tcp().shutdown(std::net::Shutdown::Both);
    (
        StreamState::Broken(format!("caller went away ({error}); request cancelled")),
        false,
    )
}
