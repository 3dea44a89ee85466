//! The agent's keep-alive connections to the VCS, driven by `ureq-proto`, the sans-IO HTTP/1.1
//! core that ureq itself is built on: the same request writing, response parsing, body framing
//! and connection rules (`Connection: close`, HTTP/1.0, 1xx, `Expect: 100-continue`) as ureq,
//! without ureq's per-request machinery around them (timeout bookkeeping on every read,
//! building a request twice).
//!
//! A [`Pool`] keeps the connections whose last answer was read to exactly where its framing
//! ended, keyed by scheme, host, port, proxy and the request's [`Credentials`], in a
//! [`keepalive::Pool`]: together they hold the rule that one caller never reads another's
//! answer. An answer is read only up to its framing
//! (its length, the chunked end, nothing for `HEAD`, `1xx`, `204` and `304`), a connection
//! that read a byte past that end is closed, and every reuse first looks at the socket: bytes
//! waiting there (the VCS sent more than it framed, or a second answer) close the connection
//! before anything is sent on it. Bytes still on their way at that look cannot be seen by
//! anyone; since a connection only carries requests with the same credentials, they can only
//! reach a request the VCS would have answered alike. One idle longer than [`MAX_IDLE`] is dropped, as ureq does.
//! Should a reused connection turn out closed anyway (the VCS closed it as it was taken),
//! before a single byte of the answer, a request whose body can be sent again goes once more
//! on a new connection.
//!
//! Timeouts are set once per connection on its socket: connect, then an idle read and write
//! timeout; the answer's head must also arrive within the read timeout in total.

use crate::net::keepalive::{self, Probe, Reusable};
use crate::net::proxy::{self, ProxyUrl, TunnelError};
use crate::net::stream::is_timeout;
use crate::net::{tcp, tls, Stream};
use rustls::ClientConfig;
use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq_proto::client::state::{RecvBody, RecvResponse, SendBody, SendRequest};
use ureq_proto::client::{
    Await100Result, Call, RecvBodyResult, RecvResponseResult, SendRequestResult,
};
use ureq_proto::http::{self, header, Request, Response};
use ureq_proto::BodyMode;

/// An idle connection older than this is closed instead of reused (ureq's default).
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(15);
/// Largest response head read (ureq's default).
const MAX_HEAD: usize = 64 * 1024;
/// Each connection's read buffer: one read can fill a whole body piece.
const INPUT: usize = 64 * 1024;
/// Each connection's write buffer for the request head and body.
const OUTPUT: usize = 16 * 1024;
/// How long a request with `Expect: 100-continue` waits before it sends its body anyway.
const AWAIT_100: Duration = Duration::from_secs(1);

/// Why a request got no (complete) answer, by type.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No TCP connection to the VCS.
    Connect(tcp::ConnectError),
    /// The proxy gave no tunnel.
    Proxy(TunnelError),
    /// TLS with the VCS failed.
    Tls(tls::HandshakeError),
    /// The connection failed while the request went out or the answer came in.
    Io(io::Error),
    /// The answer's head did not arrive within the read timeout.
    HeadTimeout,
    /// The VCS closed the connection before a complete answer head.
    Closed,
    /// The answer is not HTTP/1.1 this client can read, or the request could not be written.
    Protocol(ureq_proto::Error),
    /// The request cannot be expressed as HTTP/1.1 (a method or header the tunnel got).
    Invalid(String),
}

impl Failure {
    /// The connection was found closed or reset: what a reused keep-alive connection does
    /// when the VCS closed it in the meantime.
    fn is_closed_connection(&self) -> bool {
        match self {
            Failure::Closed => true,
            Failure::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<ureq_proto::Error> for Failure {
    fn from(e: ureq_proto::Error) -> Failure {
        Failure::Protocol(e)
    }
}

/// What a request sends as its body.
pub(crate) enum Payload<'a> {
    None,
    /// Bytes at hand: sent again as they are if a reused connection was dead.
    Bytes(&'a [u8]),
    /// Read as it is sent: never sent twice.
    Stream(&'a mut dyn Read),
}

/// A request as the tunnel has it: built into `http` types for each attempt.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a str,
    pub(crate) uri: &'a http::Uri,
    pub(crate) headers: &'a [(&'a str, &'a str)],
}

impl Outgoing<'_> {
    fn request(&self) -> Result<Request<()>, Failure> {
        let method = http::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| Failure::Invalid(format!("invalid method {:?}", self.method)))?;
        let mut builder = Request::builder().method(method).uri(self.uri.clone());
        for &(name, value) in self.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Failure::Invalid(format!("invalid header name {name:?}")))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|_| Failure::Invalid(format!("invalid value for header {name}")))?;
            builder = builder.header(name, value);
        }
        builder
            .body(())
            .map_err(|e| Failure::Invalid(format!("invalid request: {e}")))
    }
}

/// Where a connection goes: the key of the pool. A request's borrows its host from the
/// request's URL; a connection keeps its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub(crate) tls: bool,
    pub(crate) host: Cow<'a, str>,
    pub(crate) port: u16,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// What a pooled connection is looked up by: where it goes, whether through the proxy, and
/// whose credentials its requests carried.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    target: Target<'static>,
    proxied: bool,
    credentials: Credentials,
}

/// The key a request looks for, borrowed from the request.
struct Wanted<'a, 'b> {
    target: &'a Target<'b>,
    proxied: bool,
    credentials: Credentials,
}

impl PartialEq<Wanted<'_, '_>> for Key {
    fn eq(&self, wanted: &Wanted) -> bool {
        self.credentials == wanted.credentials
            && self.proxied == wanted.proxied
            && self.target == *wanted.target
    }
}

/// The SHA-256 of the credentials a request carries: the headers that say who is asking
/// (`Authorization`, GitLab's `Private-Token`, `Job-Token` and `Deploy-Token`, `Cookie`) and
/// query parameters named `…token` (GitLab's `private_token`, `access_token`, `job_token`).
///
/// A connection only ever carries requests with the same credentials. The probe before each
/// reuse catches bytes a VCS sent too many, but not bytes still on their way when it looks;
/// those can only be read by the next request on that connection, so the next request on it
/// is always one the VCS would have given that answer to anyway. A digest, not the values:
/// idle connections keep no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Credentials([u8; 32]);

/// Request headers that carry a caller's identity to the VCS.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "private-token",
    "job-token",
    "deploy-token",
    "cookie",
];

impl Credentials {
    fn of(outgoing: &Outgoing) -> Credentials {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        let mut add = |name: &str, value: &str| {
            for part in [name.as_bytes(), b"\0", value.as_bytes(), b"\0"] {
                digest.update(part);
            }
        };
        for &(name, value) in outgoing.headers {
            if CREDENTIAL_HEADERS
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
            {
                add(&name.to_ascii_lowercase(), value);
            }
        }
        let query = outgoing.uri.query().unwrap_or("");
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            let name = name.as_bytes();
            let suffix = &name[name.len().saturating_sub(5)..];
            if suffix.eq_ignore_ascii_case(b"token") {
                add("?", pair);
            }
        }
        Credentials(digest.finalize().into())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.target.fmt(f)?;
        if self.proxied {
            f.write_str(" (through the proxy)")?;
        }
        Ok(())
    }
}

/// The settings of every connection.
pub(crate) struct Settings {
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) connect_timeout: Duration,
    /// Idle read and write timeout, and the total for an answer's head.
    pub(crate) read_timeout: Duration,
    pub(crate) max_idle: usize,
}

/// One connection to the VCS with its buffers.
struct Connection {
    stream: Stream,
    key: Key,
    input: Input,
    output: Vec<u8>,
    /// Taken from the pool: it carried an answer before.
    reused: bool,
}

impl Reusable for Connection {
    type Key = Key;

    fn key(&self) -> &Key {
        &self.key
    }

    fn leftover(&self) -> usize {
        self.input.len()
    }

    fn probe(&mut self) -> Probe {
        self.stream.probe()
    }
}

/// The idle keep-alive connections, shared by every slot.
pub(crate) struct Pool {
    settings: Settings,
    idle: keepalive::Pool<Connection>,
}

impl Pool {
    pub(crate) fn new(settings: Settings) -> Arc<Pool> {
        let limits = keepalive::Limits {
            max_age: MAX_IDLE,
            per_key: settings.max_idle,
            total: settings.max_idle,
        };
        Arc::new(Pool {
            settings,
            idle: keepalive::Pool::new("VCS", limits),
        })
    }

    /// Sends the request to `target` (through `proxy`, if any) and reads the answer's head;
    /// the body is read from the returned response.
    pub(crate) fn send(
        self: &Arc<Pool>,
        outgoing: &Outgoing,
        target: &Target,
        proxy: Option<&ProxyUrl>,
        mut payload: Payload,
    ) -> Result<Response<Body>, Failure> {
        let credentials = Credentials::of(outgoing);
        let mut connection = self.checkout(target, proxy, credentials)?;
        loop {
            let call = Call::new(outgoing.request()?)?;
            match exchange(&mut connection, call, &mut payload, &self.settings) {
                Ok((response, call)) => return Ok(self.respond(response, call, connection)),
                // The keep-alive race: the VCS closed the idle connection as we reused it.
                Err((failure, Heard::Nothing))
                    if connection.reused
                        && !matches!(payload, Payload::Stream(_))
                        && failure.is_closed_connection() =>
                {
                    connection = self.open(target, proxy, credentials)?;
                }
                Err((failure, _)) => return Err(failure),
            }
        }
    }

    /// The response with its body reader (the connection goes back to the pool from there).
    fn respond(
        self: &Arc<Pool>,
        response: Response<()>,
        call: RecvResponseResult,
        connection: Connection,
    ) -> Response<Body> {
        let state = match call {
            RecvResponseResult::RecvBody(call) => Some(Reading {
                call,
                connection,
                remote_closed: false,
            }),
            RecvResponseResult::Redirect(call) => {
                self.checkin(connection, call.must_close_connection());
                None
            }
            RecvResponseResult::Cleanup(call) => {
                self.checkin(connection, call.must_close_connection());
                None
            }
        };
        let (parts, ()) = response.into_parts();
        Response::from_parts(
            parts,
            Body {
                state,
                pool: Some(Arc::clone(self)),
            },
        )
    }

    /// A pooled connection to `target` that passed the look at its socket, or a new one.
    fn checkout(
        &self,
        target: &Target,
        proxy: Option<&ProxyUrl>,
        credentials: Credentials,
    ) -> Result<Connection, Failure> {
        let wanted = Wanted {
            target,
            proxied: proxy.is_some(),
            credentials,
        };
        match self.idle.checkout(&wanted) {
            Some(mut connection) => {
                connection.reused = true;
                Ok(connection)
            }
            None => self.open(target, proxy, credentials),
        }
    }

    /// A connection whose answer was read to the end goes back, unless it must close (the
    /// keep-alive pool refuses one that read past the answer).
    fn checkin(&self, connection: Connection, must_close: bool) {
        if !must_close {
            self.idle.checkin(connection);
        }
    }

    /// Opens a new connection: TCP (or a proxy's `CONNECT` tunnel), then TLS for https.
    fn open(
        &self,
        target: &Target,
        proxy: Option<&ProxyUrl>,
        credentials: Credentials,
    ) -> Result<Connection, Failure> {
        let timeout = self.settings.connect_timeout;
        let tcp = match proxy {
            Some(proxy) => proxy::connect_tunnel(proxy, &target.host, target.port, timeout)
                .map_err(Failure::Proxy)?,
            None => tcp::connect(&target.host, target.port, timeout).map_err(Failure::Connect)?,
        };
        let stream = if target.tls {
            let tls = tls::connect(self.settings.tls.clone(), &target.host, tcp, timeout)
                .map_err(Failure::Tls)?;
            Stream::TlsClient(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        let read = Some(self.settings.read_timeout);
        stream.set_read_timeout(read)?;
        stream.tcp().set_write_timeout(read)?;
        let target = Target {
            host: Cow::Owned(target.host.to_string()),
            ..*target
        };
        Ok(Connection {
            stream,
            key: Key {
                target,
                proxied: proxy.is_some(),
                credentials,
            },
            input: Input::new(),
            output: vec![0; OUTPUT],
            reused: false,
        })
    }
}

/// Whether any byte of the answer had arrived when an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Nothing,
    Something,
}

type Exchanged = (Response<()>, RecvResponseResult);

/// Writes the request (and its body) and reads the answer's head.
fn exchange(
    connection: &mut Connection,
    mut call: Call<ureq_proto::client::state::Prepare>,
    payload: &mut Payload,
    settings: &Settings,
) -> Result<Exchanged, (Failure, Heard)> {
    let nothing = |f: Failure| (f, Heard::Nothing);
    call.allow_non_standard_methods(true);
    let has_body = !matches!(payload, Payload::None);
    let framed = call.headers().contains_key(header::CONTENT_LENGTH)
        || call.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body && !framed {
        // A body of unknown length goes chunked, as ureq sends one.
        call.header(header::TRANSFER_ENCODING, "chunked")
            .map_err(|e| nothing(e.into()))?;
    }
    let call = send_head(connection, call.proceed()).map_err(nothing)?;
    let call = match call {
        SendRequestResult::Await100(call) => match await_100(connection, call, settings)? {
            Await100Result::SendBody(call) => send_body(connection, call, payload)?,
            Await100Result::RecvResponse(call) => call,
        },
        SendRequestResult::SendBody(call) => send_body(connection, call, payload)?,
        SendRequestResult::RecvResponse(call) => call,
    };
    recv_head(connection, call, settings.read_timeout)
}

/// The request line and headers, in one write when they fit the buffer.
fn send_head(
    connection: &mut Connection,
    mut call: Call<SendRequest>,
) -> Result<SendRequestResult, Failure> {
    while !call.can_proceed() {
        let n = call.write(&mut connection.output)?;
        connection.stream.write_all(&connection.output[..n])?;
    }
    call.proceed()?.ok_or(Failure::Closed)
}

/// Waits up to [`AWAIT_100`] for `100 Continue` (or an early final answer).
fn await_100(
    connection: &mut Connection,
    mut call: Call<ureq_proto::client::state::Await100>,
    settings: &Settings,
) -> Result<Await100Result, (Failure, Heard)> {
    let nothing = |f: Failure| (f, Heard::Nothing);
    let short = connection.stream.set_read_timeout(Some(AWAIT_100));
    short.map_err(|e| nothing(e.into()))?;
    let mut outcome = Ok(());
    while call.can_keep_await_100() {
        match connection.input.fill(&mut connection.stream) {
            Ok(0) => {
                outcome = Err(Failure::Closed);
                break;
            }
            Ok(_) => match call.try_read_100(connection.input.data()) {
                Ok(0) => {}
                Ok(used) => {
                    connection.input.consume(used);
                    break;
                }
                Err(e) => {
                    outcome = Err(e.into());
                    break;
                }
            },
            Err(e) if is_timeout(&e) => break,
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        }
    }
    let heard = match connection.input.is_empty() {
        true => Heard::Nothing,
        false => Heard::Something,
    };
    let restored = connection
        .stream
        .set_read_timeout(Some(settings.read_timeout));
    outcome
        .and(restored.map_err(Failure::from))
        .map_err(|f| (f, heard))?;
    call.proceed().map_err(|e| (e.into(), heard))
}

/// The request body: written as it is read (chunked when its length is not known).
fn send_body(
    connection: &mut Connection,
    mut call: Call<SendBody>,
    payload: &mut Payload,
) -> Result<Call<RecvResponse>, (Failure, Heard)> {
    let fail = |f: Failure| (f, Heard::Nothing);
    let mut bytes: &[u8] = match payload {
        Payload::Bytes(bytes) => bytes,
        _ => &[],
    };
    let mut tmp = [0u8; OUTPUT / 2];
    while !call.can_proceed() {
        let reader: &mut dyn Read = match payload {
            Payload::Stream(reader) => *reader,
            _ => &mut bytes,
        };
        let output = &mut connection.output;
        let written = if call.is_chunked() {
            let max = call.calculate_max_input(output.len()).min(tmp.len());
            let n = reader.read(&mut tmp[..max]).map_err(|e| fail(e.into()))?;
            let (_, written) = call.write(&tmp[..n], output).map_err(|e| fail(e.into()))?;
            written
        } else {
            let n = reader.read(output).map_err(|e| fail(e.into()))?;
            call.consume_direct_write(n).map_err(|e| fail(e.into()))?;
            n
        };
        let sent = connection.stream.write_all(&connection.output[..written]);
        sent.map_err(|e| fail(e.into()))?;
    }
    call.proceed().ok_or_else(|| fail(Failure::Closed))
}

/// Reads until the answer's head is complete (1xx interim answers are read past), within
/// `timeout` in total.
fn recv_head(
    connection: &mut Connection,
    mut call: Call<RecvResponse>,
    timeout: Duration,
) -> Result<Exchanged, (Failure, Heard)> {
    let started = Instant::now();
    let mut heard = Heard::Nothing;
    loop {
        if !connection.input.is_empty() {
            heard = Heard::Something;
            let (used, response) = call
                .try_response(connection.input.data(), false)
                .map_err(|e| (e.into(), heard))?;
            connection.input.consume(used);
            if let Some(response) = response {
                let next = call.proceed().ok_or((Failure::Closed, heard))?;
                return Ok((response, next));
            }
            if used > 0 {
                continue;
            }
            if connection.input.len() >= MAX_HEAD {
                let too_large = ureq_proto::Error::HttpParseTooManyHeaders;
                return Err((Failure::Protocol(too_large), heard));
            }
        }
        if started.elapsed() > timeout {
            return Err((Failure::HeadTimeout, heard));
        }
        match connection.input.fill(&mut connection.stream) {
            Ok(0) => return Err((Failure::Closed, heard)),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err((Failure::HeadTimeout, heard)),
            Err(e) => return Err((e.into(), heard)),
        }
    }
}

/// A response body being read, with the connection it comes on.
struct Reading {
    call: Call<RecvBody>,
    connection: Connection,
    remote_closed: bool,
}

/// The answer's body. Read to the end, its connection goes back to the pool; dropped before
/// that, the connection is closed.
pub(crate) struct Body {
    state: Option<Reading>,
    pool: Option<Arc<Pool>>,
}

impl Body {
    /// A body with nothing in it.
    #[cfg(test)]
    pub(crate) fn empty() -> Body {
        Body {
            state: None,
            pool: None,
        }
    }

    /// The end of the body: the connection goes back unless it must close.
    fn finish(&mut self) -> io::Result<()> {
        let Some(reading) = self.state.take() else {
            return Ok(());
        };
        let Reading {
            call, connection, ..
        } = reading;
        // A chunked body whose last chunk came just before the VCS closed is whole, but its
        // connection cannot be reused.
        let ended_chunked = call.is_ended_chunked();
        let must_close = match call.proceed() {
            Some(RecvBodyResult::Cleanup(call)) => call.must_close_connection(),
            Some(RecvBodyResult::Redirect(call)) => call.must_close_connection(),
            None if ended_chunked => true,
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        };
        if let Some(pool) = &self.pool {
            pool.checkin(connection, must_close);
        }
        Ok(())
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(reading) = &mut self.state else {
                return Ok(0);
            };
            let fulfilled = match reading.call.body_mode() {
                BodyMode::LengthDelimited(_) | BodyMode::Chunked => reading.call.can_proceed(),
                BodyMode::CloseDelimited => false,
                BodyMode::NoBody => true,
            };
            if fulfilled {
                self.finish()?;
                return Ok(0);
            }
            let input = &mut reading.connection.input;
            if !input.is_empty() {
                let (used, produced) = reading.call.read(input.data(), buf).map_err(proto_io)?;
                input.consume(used);
                if produced > 0 {
                    return Ok(produced);
                }
                if used > 0 {
                    continue;
                }
            }
            if reading.remote_closed {
                self.finish()?;
                return Ok(0);
            }
            match input.fill(&mut reading.connection.stream) {
                Ok(0) => reading.remote_closed = true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    reading.remote_closed = true
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn proto_io(e: ureq_proto::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A connection's read buffer: bytes `start..end` are read and not yet used.
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Input {
    fn new() -> Input {
        Input {
            buf: vec![0; INPUT],
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// One read from `stream` after what is buffered; `Ok(0)` at the end of the stream or
    /// when the buffer is full.
    fn fill(&mut self, stream: &mut Stream) -> io::Result<usize> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(0);
        }
        loop {
            match stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod framing_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::{CustomCas, Roots};
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A VCS on loopback answering `ok` to each request; with `close`, it closes each
    /// connection after one answer without saying so. Counts the connections it accepted.
    fn vcs(close: bool) -> (Target<'static>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(tcp, close));
            }
        });
        let target = Target {
            tls: false,
            host: "127.0.0.1".into(),
            port,
        };
        (target, accepted)
    }

    fn serve(tcp: std::net::TcpStream, close: bool) {
        let mut writer = tcp.try_clone().unwrap();
        let mut reader = io::BufReader::new(tcp);
        loop {
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
            }
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if writer.write_all(answer).is_err() || close {
                return;
            }
        }
    }

    /// A pool for tests: no custom CA, 5 s timeouts, 4 idle connections.
    pub(super) fn pool() -> Arc<Pool> {
        Pool::new(Settings {
            tls: Roots::load(&CustomCas(Vec::new())).client_config().unwrap(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            max_idle: 4,
        })
    }

    fn get(pool: &Arc<Pool>, target: &Target) -> String {
        let outgoing = Outgoing {
            method: "GET",
            uri: &format!("http://127.0.0.1:{}/x", target.port)
                .parse()
                .unwrap(),
            headers: &[("Accept", "*/*")],
        };
        let response = pool.send(&outgoing, target, None, Payload::None).unwrap();
        let mut body = String::new();
        response.into_body().read_to_string(&mut body).unwrap();
        body
    }

    #[test]
    fn a_connection_read_to_the_end_is_used_again() {
        let (target, accepted) = vcs(false);
        let pool = pool();
        for _ in 0..3 {
            assert_eq!(get(&pool, &target), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_request_on_a_reused_connection_the_vcs_closed_goes_again_on_a_new_one() {
        let (target, accepted) = vcs(true);
        let pool = pool();
        assert_eq!(get(&pool, &target), "ok");
        // Taken from the pool unprobed (idle under a second), found closed, sent again.
        assert_eq!(get(&pool, &target), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
        let (target, accepted) = vcs(false);
        let pool = pool();
        let outgoing = Outgoing {
            method: "GET",
            uri: &format!("http://127.0.0.1:{}/x", target.port)
                .parse()
                .unwrap(),
            headers: &[],
        };
        drop(pool.send(&outgoing, &target, None, Payload::None).unwrap());
        assert_eq!(get(&pool, &target), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
