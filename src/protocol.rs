//! The wire between gateway and agent: one WebSocket per agent stream, one request at a time.
//!
//! # Upgrade
//! The agent opens `GET /agent/v1/connect` on the gateway's agent port and upgrades to a
//! WebSocket. The upgrade request carries (header names follow the original system):
//!
//! | header | value |
//! |---|---|
//! | `vcs-agent-pool-ulid` | the pool id from the token |
//! | `vcs-agent-key` | the pool key from the token (the gateway compares its SHA-256 in constant time) |
//! | `vcs-agent-metadata` | JSON object of the `SPACELIFT_METADATA_*` tags |
//! | `vcs-agent-version` | the agent's version |
//! | `vcs-agent-instance` | a random id shared by every stream of one agent process |
//! | `vcs-agent-protocol` | [`PROTOCOL_VERSION`]; any other value is refused with 400 and a reason |
//!
//! A wrong pool or key is refused with 401 before the upgrade; the body says why.
//!
//! # Frames
//! Text messages hold one JSON [`Control`] object; binary messages hold body bytes, at most
//! [`MAX_CHUNK`] each. One exchange is:
//!
//! ```text
//! gateway → agent   request{id, method, target, headers, body, front?}   [binary … end]   (body part only if body=true)
//! agent → gateway   response{id, status, headers, body, rule?, project?}  [binary … end]   (body part only if body=true)
//!               or  error{id, kind, message, rule?, project?}     (instead of a response: nothing was answered)
//!               or  response … binary … abort{id, kind, message} (the answer broke off: the caller must see a failure)
//! agent → gateway   draining                                     (at any time: send nothing new; the gateway closes)
//! ```
//!
//! Headers are a list of `[name, value]` pairs so repeated headers keep every value in order.
//! Both sides check this order and drop a stream that breaks it ([`ProtocolError`]). Liveness is
//! WebSocket ping/pong in both directions. Cancellation is the gateway closing the WebSocket: the
//! agent's next write fails, it drops the upstream connection and dials again.
//!
//! On the gateway side the caller's own thread borrows an idle stream and relays the answer
//! straight to the caller's socket, instead of a stream thread relaying through a per-job
//! channel. That saves a copy and two thread hops
//! per request and gives the same backpressure (a slow caller slows the agent's socket).

pub(crate) mod link;

use bytes::{BufMut, BytesMut};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, Utf8Bytes};

/// Version of this wire protocol, sent at the upgrade.
pub const PROTOCOL_VERSION: &str = "1";
/// The path of the agent upgrade on the gateway's agent port.
pub const CONNECT_PATH: &str = "/agent/v1/connect";
/// Largest body piece in one binary message.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;
/// Largest WebSocket message either side accepts: a control frame with many headers, never a body.
pub(crate) const MAX_MESSAGE: usize = 1024 * 1024;

/// WebSocket limits for both sides: no message may be big, since bodies travel in pieces.
///
/// The read buffer is small because tungstenite zeroes the free part of it (up to its size)
/// before every read, whatever arrives: with 32 KiB that zeroing was a fifth of the
/// instructions per small request on each side (callgrind). The gateway reads with 16 KiB
/// (an idle stream costs it less than 32 KiB; a 64 KiB answer piece takes four reads), the
/// agent, whose only large reads are uploads, with 8 KiB ([`agent_websocket_config`]).
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(16 * 1024)
}

/// The agent's side of [`websocket_config`]: an 8 KiB read buffer, as it reads once per
/// request for a head of a few hundred bytes.
pub fn agent_websocket_config() -> WebSocketConfig {
    websocket_config().read_buffer_size(8 * 1024)
}

pub const HEADER_POOL_ULID: &str = "vcs-agent-pool-ulid";
pub const HEADER_KEY: &str = "vcs-agent-key";
pub const HEADER_METADATA: &str = "vcs-agent-metadata";
pub const HEADER_VERSION: &str = "vcs-agent-version";
pub const HEADER_INSTANCE: &str = "vcs-agent-instance";
pub const HEADER_PROTOCOL: &str = "vcs-agent-protocol";

/// Header list that keeps repeated names and their order.
pub type Headers = Vec<(String, String)>;

/// The header list of a frame: each name and value borrowed from the frame's text (owned
/// only where the JSON escaped it), or from whatever the sender encodes it from.
pub type HeaderPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// What went wrong, in a form both programs and people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    UnknownPool,
    NoAgent,
    QueueTimeout,
    Denied,
    UpstreamUnreachable,
    UpstreamTimeout,
    AgentLost,
    BadRequest,
    /// The gateway's front: no valid caller secret.
    Unauthorized,
    /// The gateway's front: a pool this caller may not use (or one that does not exist).
    Forbidden,
    /// The gateway's front: the caller took the answer slower than the minimum download
    /// rate, or nothing of it for the write timeout.
    CallerTooSlow,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownPool => "unknown_pool",
            ErrorKind::NoAgent => "no_agent",
            ErrorKind::QueueTimeout => "queue_timeout",
            ErrorKind::Denied => "denied",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::AgentLost => "agent_lost",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::CallerTooSlow => "caller_too_slow",
        }
    }

    /// The HTTP status the caller sees for this kind.
    pub(crate) fn status(self) -> u16 {
        match self {
            ErrorKind::UnknownPool => 404,
            ErrorKind::NoAgent | ErrorKind::QueueTimeout => 503,
            ErrorKind::Denied | ErrorKind::Forbidden => 403,
            ErrorKind::Unauthorized => 401,
            ErrorKind::UpstreamUnreachable | ErrorKind::AgentLost => 502,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::BadRequest => 400,
            ErrorKind::CallerTooSlow => 408,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One text frame. Written with serde's internal tagging; read through `FlatControl` (one pass).
/// Its strings borrow: from the received frame's text when it is read, from what the sender
/// holds when it is written, so neither side copies a header to pass it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control<'a> {
    Request {
        id: Cow<'a, str>,
        method: Cow<'a, str>,
        /// Path and query relative to the VCS base endpoint, e.g. `/api/v4/user?x=1`.
        target: Cow<'a, str>,
        headers: HeaderPairs<'a>,
        body: bool,
        /// The base URL the caller used for the pool (`https://<host>/private/<pool>`), so
        /// the agent can point URLs in answers back through it. Optional: a gateway that
        /// does not send it gets answers as the VCS wrote them, and an agent that does not
        /// know it ignores it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        front: Option<Cow<'a, str>>,
    },
    Response {
        id: Cow<'a, str>,
        status: u16,
        headers: HeaderPairs<'a>,
        body: bool,
        /// What the request was for (the allowlist rule's description), for the gateway's log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<Cow<'a, str>>,
        /// The project the request touched, when the rule names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<Cow<'a, str>>,
    },
    End,
    Error {
        id: Cow<'a, str>,
        kind: ErrorKind,
        message: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<Cow<'a, str>>,
    },
    Abort {
        id: Cow<'a, str>,
        kind: ErrorKind,
        message: Cow<'a, str>,
    },
    Draining,
}

impl Control<'_> {
    /// The frame as a text message.
    pub fn to_message(&self) -> Message {
        self.encode_into(&mut BytesMut::new())
    }

    /// The frame as a text message written into `buffer`'s room, grown to the frame's size
    /// at once (serde_json would start small and grow it, copying, for a head with many
    /// headers). The message shares the allocation: once it was sent and dropped, the next
    /// frame written into the same buffer takes it back, so a link that keeps its buffer
    /// allocates nothing per frame.
    pub(crate) fn encode_into(&self, buffer: &mut BytesMut) -> Message {
        buffer.clear();
        buffer.reserve(self.encoded_size_hint());
        let written = serde_json::to_writer((&mut *buffer).writer(), self);
        let json = buffer.split().freeze();
        // Serialising these plain structs cannot fail; fall back to an empty object anyway.
        match written.ok().and_then(|()| Utf8Bytes::try_from(json).ok()) {
            Some(text) => Message::Text(text),
            None => Message::text("{}"),
        }
    }

    /// About the length of the frame's JSON: its strings plus room for the field names and
    /// punctuation (escapes may make it longer, and the buffer then grows).
    fn encoded_size_hint(&self) -> usize {
        let len = |value: &Option<Cow<str>>| value.as_ref().map_or(0, |s| s.len());
        let list = |headers: &HeaderPairs| -> usize {
            headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum()
        };
        128 + match self {
            Control::Request {
                id,
                method,
                target,
                headers,
                front,
                ..
            } => id.len() + method.len() + target.len() + list(headers) + len(front),
            Control::Response {
                id,
                headers,
                rule,
                project,
                ..
            } => id.len() + list(headers) + len(rule) + len(project),
            Control::Error {
                id,
                message,
                rule,
                project,
                ..
            } => id.len() + message.len() + len(rule) + len(project),
            Control::Abort { id, message, .. } => id.len() + message.len(),
            Control::End | Control::Draining => 0,
        }
    }
}

/// One decoded message of an exchange; a control frame borrows from the message it was
/// decoded from ([`Received::frame`]).
#[derive(Debug)]
pub enum Frame<'a> {
    Control(Control<'a>),
    Data(tungstenite::Bytes),
    /// The peer closed the WebSocket.
    Closed,
}

/// A message as it was read, not a ping or pong (tungstenite answers those): decoding it
/// gives a [`Frame`] whose strings borrow from it, so it is kept for as long as they are used.
#[derive(Debug)]
pub(crate) struct Received(Message);

impl Received {
    /// `None` for a ping or pong.
    pub(crate) fn new(message: Message) -> Option<Received> {
        match message {
            Message::Ping(_) | Message::Pong(_) => None,
            message => Some(Received(message)),
        }
    }

    /// Decodes the message; `Err` when the peer broke the protocol.
    pub(crate) fn frame(&self) -> Result<Frame<'_>, ProtocolError> {
        decode(&self.0)?.ok_or_else(|| ProtocolError("ping or pong taken for a frame".into()))
    }
}

/// A peer that broke the protocol: the stream is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol violation: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Turns a WebSocket message into a frame borrowing from it; `None` for ping and pong, which
/// tungstenite answers.
pub fn decode(message: &Message) -> Result<Option<Frame<'_>>, ProtocolError> {
    match message {
        Message::Text(text) => serde_json::from_str::<FlatControl>(text.as_str())
            .map_err(|e| ProtocolError(format!("bad control frame: {e}")))
            .and_then(FlatControl::into_control)
            .map(|c| Some(Frame::Control(c))),
        Message::Binary(data) => {
            if data.len() > MAX_CHUNK {
                return Err(ProtocolError(format!(
                    "body piece of {} bytes is over {MAX_CHUNK}",
                    data.len()
                )));
            }
            Ok(Some(Frame::Data(data.clone())))
        }
        Message::Ping(_) | Message::Pong(_) => Ok(None),
        Message::Close(_) => Ok(Some(Frame::Closed)),
        Message::Frame(_) => Err(ProtocolError("raw frame".into())),
    }
}

/// Every control frame's fields in one flat struct, for decoding the same JSON in one pass.
/// Serde reads an internally tagged enum (`Control`) by first copying the whole frame into a
/// tree of its own and then matching the tag; on the gateway that was a tenth of the CPU per
/// request (measured with `perf record`). Unknown fields are ignored; a known field must have its
/// type whatever the frame (`{"type":"end","id":1}` is refused), which every frame either
/// side writes satisfies. Strings borrow from the frame's text unless JSON escapes in them
/// force a copy.
#[derive(Deserialize)]
struct FlatControl<'a> {
    #[serde(rename = "type")]
    frame: FrameType,
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    method: Option<Text<'a>>,
    #[serde(borrow)]
    target: Option<Text<'a>>,
    #[serde(borrow)]
    headers: Option<Pairs<'a>>,
    body: Option<bool>,
    status: Option<u16>,
    #[serde(borrow)]
    rule: Option<Text<'a>>,
    #[serde(borrow)]
    project: Option<Text<'a>>,
    #[serde(borrow)]
    front: Option<Text<'a>>,
    kind: Option<ErrorKind>,
    #[serde(borrow)]
    message: Option<Text<'a>>,
}

/// A JSON string borrowed from the frame's text, or owned when it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'a>, D::Error> {
        struct Borrowing;
        impl<'de> Visitor<'de> for Borrowing {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Borrowing)
    }
}

/// A header list of `[name, value]` pairs, borrowed like [`Text`], in one allocation for
/// the usual number of headers (none for an empty list).
struct Pairs<'a>(HeaderPairs<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Pairs<'a>, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pairs<'de>, A::Error> {
                let mut pairs = Vec::new();
                while let Some((Text(name), Text(value))) = seq.next_element()? {
                    if pairs.is_empty() {
                        pairs.reserve(16);
                    }
                    pairs.push((name, value));
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_seq(List)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FrameType {
    Request,
    Response,
    End,
    Error,
    Abort,
    Draining,
}

impl<'a> FlatControl<'a> {
    fn into_control(self) -> Result<Control<'a>, ProtocolError> {
        fn need<T>(value: Option<T>, field: &str) -> Result<T, ProtocolError> {
            value
                .ok_or_else(|| ProtocolError(format!("bad control frame: missing field `{field}`")))
        }
        let text = |value: Option<Text<'a>>| value.map(|t| t.0);
        Ok(match self.frame {
            FrameType::Request => Control::Request {
                id: need(text(self.id), "id")?,
                method: need(text(self.method), "method")?,
                target: need(text(self.target), "target")?,
                headers: need(self.headers, "headers")?.0,
                body: need(self.body, "body")?,
                front: text(self.front),
            },
            FrameType::Response => Control::Response {
                id: need(text(self.id), "id")?,
                status: need(self.status, "status")?,
                headers: need(self.headers, "headers")?.0,
                body: need(self.body, "body")?,
                rule: text(self.rule),
                project: text(self.project),
            },
            FrameType::End => Control::End,
            FrameType::Error => Control::Error {
                id: need(text(self.id), "id")?,
                kind: need(self.kind, "kind")?,
                message: need(text(self.message), "message")?,
                rule: text(self.rule),
                project: text(self.project),
            },
            FrameType::Abort => Control::Abort {
                id: need(text(self.id), "id")?,
                kind: need(self.kind, "kind")?,
                message: need(text(self.message), "message")?,
            },
            FrameType::Draining => Control::Draining,
        })
    }
}

/// Names a frame for error messages without printing its content (which may be secret).
pub(crate) fn describe(frame: &Frame) -> &'static str {
    match frame {
        Frame::Control(Control::Request { .. }) => "request",
        Frame::Control(Control::Response { .. }) => "response",
        Frame::Control(Control::End) => "end",
        Frame::Control(Control::Error { .. }) => "error",
        Frame::Control(Control::Abort { .. }) => "abort",
        Frame::Control(Control::Draining) => "draining",
        Frame::Data(_) => "binary",
        Frame::Closed => "close",
    }
}

/// Where an answer stands, as the gateway sees it: the order `response (binary* end)? | error`,
/// then `abort` allowed only once the head was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerState {
    AwaitingHead,
    Body,
    Done,
}

impl AnswerState {
    /// Checks that `frame` may come now and returns the next state.
    pub(crate) fn next(self, frame: &Frame) -> Result<AnswerState, ProtocolError> {
        use AnswerState::*;
        match (self, frame) {
            (AwaitingHead, Frame::Control(Control::Response { body: true, .. })) => Ok(Body),
            (AwaitingHead, Frame::Control(Control::Response { body: false, .. })) => Ok(Done),
            (AwaitingHead, Frame::Control(Control::Error { .. })) => Ok(Done),
            (Body, Frame::Data(_)) => Ok(Body),
            (Body, Frame::Control(Control::End)) => Ok(Done),
            (Body, Frame::Control(Control::Abort { .. })) => Ok(Done),
            (_, Frame::Control(Control::Draining)) => Ok(self),
            (state, frame) => Err(ProtocolError(format!(
                "{} while {}",
                describe(frame),
                match state {
                    AwaitingHead => "awaiting a response head",
                    Body => "reading a response body",
                    Done => "the exchange was over",
                }
            ))),
        }
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), plus the ones
/// this proxy sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Keeps the end-to-end headers: drops hop-by-hop ones, those `Connection` names, and
/// `X-Forwarded-*`.
pub(crate) fn end_to_end(headers: impl IntoIterator<Item = (String, String)>) -> Headers {
    let mut headers: Headers = headers.into_iter().collect();
    let named = connection_tokens(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let named: Vec<String> = named.into_iter().map(str::to_string).collect();
    headers.retain(|(name, _)| is_end_to_end(name, &named));
    headers
}

/// [`end_to_end`] over borrowed pairs: nothing is copied.
pub(crate) fn end_to_end_refs<'a, I>(headers: I) -> Vec<(&'a str, &'a str)>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    I::IntoIter: Clone,
{
    let headers = headers.into_iter();
    let named = connection_tokens(headers.clone());
    headers
        .filter(|(name, _)| is_end_to_end(name, &named))
        .collect()
}

/// The header names the `Connection` headers list that would otherwise be forwarded: none,
/// and no allocation, in the usual case (`keep-alive`, `close`, `upgrade` are dropped anyway).
pub(crate) fn connection_tokens<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<&'a str> {
    headers
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(str::trim))
        .filter(|t| !t.is_empty() && is_end_to_end::<&str>(t, &[]))
        .collect()
}

/// Whether `name` is forwarded: not hop-by-hop, not `Proxy-*` or `X-Forwarded-*`, not one
/// of the `named` tokens of `Connection` (compared without regard to case, without copies).
pub(crate) fn is_end_to_end<T: AsRef<str>>(name: &str, named: &[T]) -> bool {
    let starts = |prefix: &str| {
        name.len() >= prefix.len()
            && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        && !starts("proxy-")
        && !starts("x-forwarded-")
        && !named.iter().any(|t| name.eq_ignore_ascii_case(t.as_ref()))
}

/// Whether a header may be written on an HTTP/1.1 connection: the name a token (RFC 9110
/// §5.1), the value free of CR, LF and NUL. A peer that sends anything else is broken or
/// hostile, and its bytes must never reach a caller's connection.
pub(crate) fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(is_token_byte)
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// A byte of an RFC 9110 token: a letter, a digit or one of ``!#$%&'*+-.^_`|~``.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Whether a response to `method` with `status` carries a body at all (RFC 9110 §6.4.1).
pub(crate) fn response_has_body(method: &str, status: u16) -> bool {
    !(method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(pairs: &[(&'static str, &'static str)]) -> HeaderPairs<'static> {
        pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect()
    }

    fn control(message: &Message) -> Control<'_> {
        match decode(message) {
            Ok(Some(Frame::Control(control))) => control,
            other => panic!("not a control frame: {other:?}"),
        }
    }

    #[test]
    fn control_frames_round_trip_as_tagged_json() {
        let c = Control::Request {
            id: "r1".into(),
            method: "GET".into(),
            target: "/x?y=1".into(),
            headers: pairs(&[("Link", "a"), ("Link", "b")]),
            body: false,
            front: None,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.starts_with(r#"{"type":"request","#), "{text}");
        let message = c.to_message();
        assert_eq!(
            message.to_text().unwrap(),
            text,
            "to_message writes the same JSON"
        );
        assert_eq!(control(&message), c);
        assert_eq!(control(&Message::text(r#"{"type":"end"}"#)), Control::End);
    }

    #[test]
    fn every_control_frame_decodes_to_what_was_encoded() {
        let frames = [
            Control::Response {
                id: "r".into(),
                status: 204,
                headers: pairs(&[("Set-Cookie", "a"), ("Set-Cookie", "b")]),
                body: false,
                rule: Some("read a file".into()),
                project: Some("group/repo".into()),
            },
            Control::Response {
                id: "r".into(),
                status: 200,
                headers: vec![],
                body: true,
                rule: None,
                project: None,
            },
            Control::End,
            Control::Error {
                id: "r".into(),
                kind: ErrorKind::Denied,
                message: "no rule allows POST /x".into(),
                rule: None,
                project: Some("g/r".into()),
            },
            Control::Abort {
                id: "r".into(),
                kind: ErrorKind::UpstreamTimeout,
                message: "silent".into(),
            },
            Control::Draining,
        ];
        for c in frames {
            assert_eq!(control(&c.to_message()), c);
        }
        // Unknown fields are ignored, so a newer peer may add some.
        let extra = Message::text(r#"{"type":"end","later":1}"#);
        assert_eq!(control(&extra), Control::End);
    }

    #[test]
    fn a_frame_missing_a_field_names_it() {
        let e = decode(&Message::text(
            r#"{"type":"response","id":"r","headers":[],"body":true}"#,
        ))
        .unwrap_err();
        assert!(e.0.contains("`status`"), "{e}");
        let e = decode(&Message::text(
            r#"{"type":"request","id":"r","method":"GET","target":"/","body":false}"#,
        ))
        .unwrap_err();
        assert!(e.0.contains("`headers`"), "{e}");
        assert!(decode(&Message::text(r#"{"id":"r"}"#)).is_err(), "no type");
        assert!(
            decode(&Message::text(r#"{"type":"end","type":"end"}"#)).is_err(),
            "duplicate"
        );
    }

    #[test]
    fn the_wire_format_is_what_every_version_writes() {
        let head = Control::Response {
            id: "r".into(),
            status: 200,
            headers: pairs(&[("Content-Type", "text/plain"), ("ETag", "\"x\"")]),
            body: true,
            rule: Some("read a file".into()),
            project: None,
        };
        let text = r#"{"type":"response","id":"r","status":200,"headers":[["Content-Type","text/plain"],["ETag","\"x\""]],"body":true,"rule":"read a file"}"#;
        assert_eq!(head.to_message().to_text().unwrap(), text);
        assert_eq!(control(&Message::text(text)), head);
        let request = Control::Request {
            id: "q".into(),
            method: "GET".into(),
            target: "/api/v4/user".into(),
            headers: vec![],
            body: false,
            front: None,
        };
        let text = r#"{"type":"request","id":"q","method":"GET","target":"/api/v4/user","headers":[],"body":false}"#;
        assert_eq!(request.to_message().to_text().unwrap(), text);
        assert_eq!(control(&Message::text(text)), request);
    }

    #[test]
    fn the_front_is_optional_on_the_request_frame_both_ways() {
        // A gateway that knows nothing of the front writes what every version wrote, and
        // the request decodes without one: the agent answers as the VCS wrote it.
        let old =
            r#"{"type":"request","id":"q","method":"GET","target":"/","headers":[],"body":false}"#;
        assert!(matches!(
            control(&Message::text(old)),
            Control::Request { front: None, .. }
        ));
        // A gateway that knows it sends it as one more field...
        let request = Control::Request {
            id: "q".into(),
            method: "GET".into(),
            target: "/".into(),
            headers: vec![],
            body: false,
            front: Some("https://gw.example/private/p".into()),
        };
        let text = r#"{"type":"request","id":"q","method":"GET","target":"/","headers":[],"body":false,"front":"https://gw.example/private/p"}"#;
        assert_eq!(request.to_message().to_text().unwrap(), text);
        assert_eq!(control(&Message::text(text)), request);
        // An agent of an earlier version decodes frames like this one without the field:
        // it skips fields it does not know (`borrowed_decoding_keeps_the_rules_of_the_frame`).
    }

    #[test]
    fn frames_written_into_one_buffer_stay_whole_and_share_its_allocation() {
        let mut buffer = BytesMut::new();
        let head = Control::Request {
            id: "r".into(),
            method: "GET".into(),
            target: "/a".repeat(100).into(),
            headers: pairs(&[("Accept", "*/*")]),
            body: false,
            front: None,
        };
        let first = head.encode_into(&mut buffer);
        let start = first.to_text().unwrap().as_ptr() as usize;
        let room = first.len() + buffer.capacity();
        assert_eq!(first, head.to_message());
        drop(first);
        // Sent and dropped: the next frame is written in the same allocation.
        let next = Control::Draining.encode_into(&mut buffer);
        assert_eq!(next, Control::Draining.to_message());
        let at = next.to_text().unwrap().as_ptr() as usize;
        // A frame written while an earlier one is still held leaves that one untouched.
        let held = Control::End.encode_into(&mut buffer);
        assert_eq!(next, Control::Draining.to_message());
        assert_eq!(held, Control::End.to_message());
        assert!((start..start + room).contains(&at), "a new allocation");
    }

    #[test]
    fn strings_borrow_from_the_frame_unless_escaped() {
        let message = Message::text(
            r#"{"type":"response","id":"r","status":200,"headers":[["X-Plain","a b"],["X-Escaped","q\"\\\n\u00e9\ud83d\ude00"]],"body":false,"rule":"r\/1","project":"g/p"}"#,
        );
        let Control::Response {
            id,
            headers,
            rule,
            project,
            ..
        } = control(&message)
        else {
            panic!("not a response")
        };
        assert!(matches!(id, Cow::Borrowed("r")));
        assert!(matches!(
            &headers[0],
            (Cow::Borrowed("X-Plain"), Cow::Borrowed("a b"))
        ));
        assert!(matches!(headers[1].0, Cow::Borrowed("X-Escaped")));
        assert!(matches!(&headers[1].1, Cow::Owned(v) if v == "q\"\\\né😀"));
        assert_eq!(rule.as_deref(), Some("r/1"));
        assert!(matches!(project, Some(Cow::Borrowed("g/p"))));
        // What a sender escapes comes back as it was.
        let tricky = Control::Error {
            id: "e".into(),
            kind: ErrorKind::Denied,
            message: "\"quoted\"\ttab\u{1}\\ é".into(),
            rule: None,
            project: Some("</script>".into()),
        };
        assert_eq!(control(&tricky.to_message()), tricky);
    }

    #[test]
    fn borrowed_decoding_keeps_the_rules_of_the_frame() {
        let refused = |text: &str| decode(&Message::text(text.to_string())).unwrap_err().0;
        // Missing fields are named.
        let e =
            refused(r#"{"type":"request","method":"GET","target":"/","headers":[],"body":false}"#);
        assert!(e.contains("missing field `id`"), "{e}");
        let e = refused(r#"{"type":"abort","id":"r","kind":"denied"}"#);
        assert!(e.contains("missing field `message`"), "{e}");
        // Duplicate fields are refused, borrowed or not.
        let e = refused(
            r#"{"type":"response","id":"r","id":"s","status":200,"headers":[],"body":false}"#,
        );
        assert!(e.contains("duplicate field `id`"), "{e}");
        let e = refused(
            r#"{"type":"response","id":"r","status":200,"headers":[],"headers":[],"body":false}"#,
        );
        assert!(e.contains("duplicate field `headers`"), "{e}");
        // Headers are pairs of strings, nothing else.
        for bad in [
            r#"[["a"]]"#,
            r#"[["a","b","c"]]"#,
            r#"[["a",1]]"#,
            r#"{"a":"b"}"#,
        ] {
            let text = format!(
                r#"{{"type":"response","id":"r","status":200,"headers":{bad},"body":false}}"#
            );
            assert!(refused(&text).starts_with("bad control frame"), "{bad}");
        }
        // Unknown fields are ignored, whatever they hold.
        let message = Message::text(
            r#"{"later":{"x":[1,"two"]},"type":"request","id":"q","method":"GET","target":"/","headers":[["A","1"]],"body":false,"more":"s\"t"}"#,
        );
        assert_eq!(
            control(&message),
            Control::Request {
                id: "q".into(),
                method: "GET".into(),
                target: "/".into(),
                headers: pairs(&[("A", "1")]),
                body: false,
                front: None,
            }
        );
    }

    #[test]
    fn a_received_message_decodes_into_a_frame_borrowing_from_it() {
        assert!(Received::new(Message::Ping(Default::default())).is_none());
        assert!(Received::new(Message::Pong(Default::default())).is_none());
        let received = Received::new(Control::End.to_message()).expect("a frame");
        assert!(matches!(received.frame(), Ok(Frame::Control(Control::End))));
        let received = Received::new(Message::binary(vec![1u8, 2])).expect("a frame");
        assert!(matches!(received.frame(), Ok(Frame::Data(d)) if d[..] == [1, 2]));
        let received = Received::new(Message::text("[]")).expect("a message");
        assert!(received.frame().is_err());
    }

    #[test]
    fn garbage_and_oversized_frames_are_protocol_errors() {
        assert!(decode(&Message::text("{nope")).is_err());
        assert!(decode(&Message::text(r#"{"type":"launch"}"#)).is_err());
        assert!(decode(&Message::binary(vec![0u8; MAX_CHUNK + 1])).is_err());
        assert!(decode(&Message::binary(vec![0u8; MAX_CHUNK])).is_ok());
    }

    #[test]
    fn answer_order_is_enforced() {
        let head = |body| {
            Frame::Control(Control::Response {
                id: "r".into(),
                status: 200,
                headers: vec![],
                body,
                rule: None,
                project: None,
            })
        };
        let data = Frame::Data(tungstenite::Bytes::from_static(b"x"));
        let end = Frame::Control(Control::End);
        let abort = Frame::Control(Control::Abort {
            id: "r".into(),
            kind: ErrorKind::UpstreamUnreachable,
            message: "".into(),
        });
        let s = AnswerState::AwaitingHead;
        assert!(s.next(&data).is_err(), "body before head");
        assert!(s.next(&end).is_err(), "end before head");
        assert!(s.next(&abort).is_err(), "abort before head");
        let s = s.next(&head(true)).unwrap();
        assert!(s.next(&head(true)).is_err(), "second head");
        let s = s.next(&data).unwrap().next(&end).unwrap();
        assert_eq!(s, AnswerState::Done);
        assert!(s.next(&data).is_err(), "body after end");
        assert_eq!(
            AnswerState::AwaitingHead.next(&head(false)).unwrap(),
            AnswerState::Done
        );
        assert_eq!(AnswerState::Body.next(&abort).unwrap(), AnswerState::Done);
    }

    #[test]
    fn hop_by_hop_and_forwarded_headers_are_dropped() {
        let kept = end_to_end(h(&[
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "x"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic x"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Host", "gateway"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Encoding", "gzip"),
        ]));
        assert_eq!(
            kept,
            h(&[
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("Content-Encoding", "gzip")
            ])
        );
    }

    #[test]
    fn borrowed_headers_are_filtered_alike() {
        let pairs = [
            ("connection", "close, X-Hop"),
            ("x-hop", "1"),
            ("PROXY-Thing", "1"),
            ("X-Forwarded-Host", "h"),
            ("Accept", "*/*"),
            ("ETag", "\"x\""),
        ];
        assert_eq!(
            end_to_end_refs(pairs.iter().copied()),
            vec![("Accept", "*/*"), ("ETag", "\"x\"")]
        );
    }

    #[test]
    fn header_validation() {
        assert!(valid_header("X-Custom", "a b\tc"));
        assert!(!valid_header("X Custom", "v"));
        assert!(!valid_header("", "v"));
        assert!(!valid_header("X", "a\r\nSet-Cookie: evil"));
        assert!(!valid_header("X", "a\0"));
    }

    #[test]
    fn bodiless_answers() {
        assert!(!response_has_body("HEAD", 200));
        assert!(!response_has_body("GET", 204));
        assert!(!response_has_body("GET", 304));
        assert!(response_has_body("GET", 200));
        assert!(response_has_body("POST", 201));
    }
}
