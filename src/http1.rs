//! The HTTP/1.1 server side both binaries need (the gateway's front and api, the agent's
//! metrics port): read a request head with `httparse`, read its body by its framing, write an
//! answer. The agent's requests to the VCS go through `ureq-proto` (`agent::upstream`); this is
//! only the small part it does not do.
//!
//! Request smuggling is refused, not guessed at: a request with both `Content-Length` and
//! `Transfer-Encoding`, an unknown transfer coding, or more than one `Content-Length` (even
//! equal ones) is a `400`.

use crate::protocol::Headers;
use std::io::{self, BufRead, Read, Write};

/// Largest request head accepted (request line and headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) version: u8,
    pub headers: Headers,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
pub enum HeadError {
    /// The peer closed the connection before sending a byte: the normal end of keep-alive.
    Closed,
    Io(io::Error),
    TooLarge,
    Malformed(String),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Closed => f.write_str("connection closed"),
            HeadError::Io(e) => write!(f, "read error: {e}"),
            HeadError::TooLarge => write!(f, "request head over {MAX_HEAD} bytes"),
            HeadError::Malformed(m) => write!(f, "malformed request: {m}"),
        }
    }
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the caller waits for `100 Continue` before it sends the body (RFC 9110 §10.1.1;
    /// curl does for larger uploads). HTTP/1.0 callers cannot ask for it.
    pub(crate) fn expects_continue(&self) -> bool {
        self.version >= 1 && self.header_has_token("expect", "100-continue")
    }

    /// Whether the connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        if self.version == 0 {
            self.header_has_token("connection", "keep-alive")
        } else {
            !self.header_has_token("connection", "close")
        }
    }

    /// The body's framing, or why it cannot be trusted.
    pub fn framing(&self) -> Result<Framing, FramingError> {
        let encodings: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .map(|(_, v)| v.as_str())
            .collect();
        let lengths: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect();
        if !encodings.is_empty() {
            if !lengths.is_empty() {
                return Err(FramingError::Both);
            }
            let joined = encodings.join(",");
            if joined.trim().eq_ignore_ascii_case("chunked") {
                return Ok(Framing::Chunked);
            }
            return Err(FramingError::TransferEncoding(joined));
        }
        let Some(first) = lengths.first() else {
            return Ok(Framing::Empty);
        };
        // Equal copies too: a server behind us may read either one, or the list as a whole.
        if lengths.len() > 1 {
            return Err(FramingError::ManyLengths);
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FramingError::Length(first.to_string()));
        }
        match first.parse::<u64>() {
            Ok(0) => Ok(Framing::Empty),
            Ok(n) => Ok(Framing::Length(n)),
            Err(_) => Err(FramingError::Length(first.to_string())),
        }
    }
}

/// Why a request's body framing cannot be trusted (each a request-smuggling risk: a server
/// behind us could read the body's end elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding")]
    Both,
    #[error("unsupported Transfer-Encoding \"{0}\"")]
    TransferEncoding(String),
    #[error("more than one Content-Length")]
    ManyLengths,
    #[error("invalid Content-Length \"{0}\"")]
    Length(String),
}

/// Reads one request head, consuming exactly its bytes from `reader`. A head that arrived
/// whole (the usual case) is parsed in the reader's buffer; one that comes in pieces is
/// gathered first.
pub fn read_request_head<R: BufRead>(reader: &mut R) -> Result<RequestHead, HeadError> {
    let mut collected: Vec<u8> = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        };
        if available.is_empty() {
            return Err(if collected.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed("connection closed inside the request head".into())
            });
        }
        let before = collected.len();
        let take = available.len().min(MAX_HEAD + 1 - before);
        let parsed = if before == 0 {
            parse_head(&available[..take])?
        } else {
            collected.extend_from_slice(&available[..take]);
            parse_head(&collected)?
        };
        match parsed {
            Some((used, head)) => {
                reader.consume(used - before);
                return Ok(head);
            }
            None => {
                if before == 0 {
                    collected.extend_from_slice(&available[..take]);
                }
                reader.consume(take);
                if collected.len() > MAX_HEAD {
                    return Err(HeadError::TooLarge);
                }
            }
        }
    }
}

/// The head at the start of `bytes` and its length, `None` when it is not complete yet.
fn parse_head(bytes: &[u8]) -> Result<Option<(usize, RequestHead)>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let used = match request.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Malformed(format!(
                "more than {MAX_HEADERS} headers"
            )))
        }
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let mut headers = Vec::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed(format!("header {} is not valid UTF-8", h.name)))?;
        headers.push((h.name.to_string(), value.to_string()));
    }
    let head = RequestHead {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        version: request.version.unwrap_or(1),
        headers,
    };
    Ok(Some((used, head)))
}

/// A request body as a `Read`, bounded by its framing; leaves the connection positioned at
/// the next request.
pub struct BodyReader<'a, R: BufRead> {
    inner: &'a mut R,
    state: BodyState,
}

#[derive(Debug)]
enum BodyState {
    Length(u64),
    /// Bytes left in the current chunk; `None` before reading a size line.
    Chunk(Option<u64>),
    Done,
}

/// Where a [`BodyReader`] stopped, so reading can go on later (after the connection was
/// used for something else, such as waiting for an agent stream).
#[derive(Debug)]
pub struct BodyProgress(BodyState);

impl<'a, R: BufRead> BodyReader<'a, R> {
    pub fn new(inner: &'a mut R, framing: Framing) -> BodyReader<'a, R> {
        let state = match framing {
            Framing::Empty => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunk(None),
        };
        BodyReader { inner, state }
    }

    /// Goes on where [`BodyReader::pause`] stopped.
    pub(crate) fn resume(inner: &'a mut R, progress: BodyProgress) -> BodyReader<'a, R> {
        BodyReader {
            inner,
            state: progress.0,
        }
    }

    /// Stops here, keeping the place; `None` when the whole body was read.
    pub(crate) fn pause(self) -> Option<BodyProgress> {
        match self.state {
            BodyState::Done | BodyState::Length(0) => None,
            state => Some(BodyProgress(state)),
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        (&mut *self.inner).take(4096).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(bad_data("chunk line too long or cut off"));
        }
        Ok(line)
    }
}

fn bad_data(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

impl<R: BufRead> BodyReader<'_, R> {
    /// Reads framing (the CRLF after a chunk, the next size line, the trailers after the
    /// last chunk) up to the next data byte or the end of the body, consuming no data.
    pub(crate) fn settle(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                BodyState::Length(0) => self.state = BodyState::Done,
                BodyState::Done | BodyState::Length(_) => return Ok(()),
                BodyState::Chunk(Some(0)) => {
                    let line = self.read_line()?;
                    if line != b"\r\n" && line != b"\n" {
                        return Err(bad_data("chunk not followed by CRLF"));
                    }
                    self.state = BodyState::Chunk(None);
                }
                BodyState::Chunk(Some(_)) => return Ok(()),
                BodyState::Chunk(None) => {
                    let line = self.read_line()?;
                    let size = match httparse::parse_chunk_size(&line) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return Err(bad_data("invalid chunk size line")),
                    };
                    if size == 0 {
                        // Trailer section: skip lines up to the empty one.
                        loop {
                            let line = self.read_line()?;
                            if line == b"\r\n" || line == b"\n" {
                                break;
                            }
                        }
                        self.state = BodyState::Done;
                    } else {
                        self.state = BodyState::Chunk(Some(size));
                    }
                }
            }
        }
    }
}

impl<R: BufRead> Read for BodyReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.settle()?;
        let (left, cut_off) = match self.state {
            BodyState::Length(left) => (left, "request body shorter than its Content-Length"),
            BodyState::Chunk(Some(left)) => (left, "chunked request body cut off"),
            // `settle` leaves only these three states.
            BodyState::Done | BodyState::Chunk(None) => return Ok(0),
        };
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, cut_off));
        }
        let left = left - n as u64;
        self.state = match self.state {
            BodyState::Length(_) => BodyState::Length(left),
            _ => BodyState::Chunk(Some(left)),
        };
        Ok(n)
    }
}

/// Writes a status line and headers in one write.
pub fn write_head<W: Write>(
    out: &mut W,
    status: u16,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(256);
    status_line(&mut head, status);
    end_head(&mut head, headers);
    out.write_all(&head)
}

/// Appends the status line of an answer, `HTTP/1.1 <status> <reason>`.
pub(crate) fn status_line(head: &mut Vec<u8>, status: u16) {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    head.extend_from_slice(b"HTTP/1.1 ");
    if (100..1000).contains(&status) {
        let digit = |n: u16| b'0' + (n % 10) as u8;
        head.extend_from_slice(&[digit(status / 100), digit(status / 10), digit(status)]);
    } else {
        head.extend_from_slice(status.to_string().as_bytes());
    }
    head.push(b' ');
    head.extend_from_slice(reason.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Appends one header line.
pub(crate) fn header_line(head: &mut Vec<u8>, name: &str, value: &str) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Appends header lines and the blank line that ends a head, after its first line.
pub(crate) fn end_head<'a>(
    head: &mut Vec<u8>,
    headers: impl IntoIterator<Item = &'a (String, String)>,
) {
    for (name, value) in headers {
        header_line(head, name, value);
    }
    head.extend_from_slice(b"\r\n");
}

/// Writes one piece of a chunked body; an empty piece is skipped (it would end the body).
pub fn write_chunk<W: Write>(out: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let size = format!("{:x}\r\n", data.len());
    out.write_all(size.as_bytes())?;
    out.write_all(data)?;
    out.write_all(b"\r\n")
}

/// Ends a chunked body.
pub fn write_last_chunk<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(b"0\r\n\r\n")
}

/// A complete small answer with a body (errors, health, API replies), in one write.
pub(crate) fn write_simple<W: Write>(
    out: &mut W,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    write_simple_with(out, status, content_type, body, keep_alive, &[])
}

/// The same with `extra` headers.
pub(crate) fn write_simple_with<W: Write>(
    out: &mut W,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[(String, String)],
) -> io::Result<()> {
    let mut headers = vec![
        ("Content-Type".to_string(), content_type.to_string()),
        ("Content-Length".to_string(), body.len().to_string()),
    ];
    headers.extend_from_slice(extra);
    if !keep_alive {
        headers.push(("Connection".into(), "close".into()));
    }
    let mut head = Vec::with_capacity(256);
    write_head(&mut head, status, &headers)?;
    crate::net::stream::write_both(out, &head, body)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn parse(raw: &str) -> Result<RequestHead, HeadError> {
        read_request_head(&mut BufReader::new(raw.as_bytes()))
    }

    #[test]
    fn reads_head_and_leaves_body() {
        let raw = b"POST /p?q=1 HTTP/1.1\r\nHost: x\r\nLink: a\r\nLink: b\r\nContent-Length: 5\r\n\r\nhelloGET";
        let mut r = BufReader::with_capacity(7, &raw[..]);
        let head = read_request_head(&mut r).unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/p?q=1");
        assert_eq!(head.headers.iter().filter(|(n, _)| n == "Link").count(), 2);
        assert_eq!(head.framing().unwrap(), Framing::Length(5));
        let mut body = String::new();
        BodyReader::new(&mut r, Framing::Length(5))
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "hello");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "GET");
    }

    #[test]
    fn decodes_chunked_bodies_with_trailers() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut r = BufReader::with_capacity(3, &raw[..]);
        let mut body = String::new();
        BodyReader::new(&mut r, Framing::Chunked)
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "hello world");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn a_body_read_in_parts_pauses_and_resumes_where_it_stopped() {
        let raw = b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut r = BufReader::with_capacity(4, &raw[..]);
        let mut first = Vec::new();
        let mut reader = BodyReader::new(&mut r, Framing::Chunked);
        (&mut reader).take(5).read_to_end(&mut first).unwrap();
        reader.settle().unwrap();
        let progress = reader.pause().expect("a second chunk to come");
        let mut rest = String::new();
        BodyReader::resume(&mut r, progress)
            .read_to_string(&mut rest)
            .unwrap();
        assert_eq!((first.as_slice(), rest.as_str()), (&b"hello"[..], " world"));

        // Settling after the last data byte reads the terminating chunk and trailers: whole.
        let raw = b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut r = BufReader::new(&raw[..]);
        let mut reader = BodyReader::new(&mut r, Framing::Chunked);
        let mut body = Vec::new();
        (&mut reader).take(5).read_to_end(&mut body).unwrap();
        reader.settle().unwrap();
        assert!(reader.pause().is_none(), "the body was whole");
        let mut next = String::new();
        r.read_to_string(&mut next).unwrap();
        assert_eq!(next, "NEXT");

        let mut r = BufReader::new(&b"abcdef"[..]);
        let mut reader = BodyReader::new(&mut r, Framing::Length(3));
        (&mut reader).take(3).read_to_end(&mut body).unwrap();
        assert!(reader.pause().is_none());
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let mut r = BufReader::new(&b"abc"[..]);
        let mut sink = Vec::new();
        assert!(BodyReader::new(&mut r, Framing::Length(5))
            .read_to_end(&mut sink)
            .is_err());
        let mut r = BufReader::new(&b"5\r\nab"[..]);
        assert!(BodyReader::new(&mut r, Framing::Chunked)
            .read_to_end(&mut sink)
            .is_err());
        let mut r = BufReader::new(&b"zz\r\n"[..]);
        assert!(BodyReader::new(&mut r, Framing::Chunked)
            .read_to_end(&mut sink)
            .is_err());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let te_cl =
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .unwrap();
        assert!(te_cl.framing().is_err());
        let two =
            parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").unwrap();
        assert!(two.framing().is_err());
        for equal in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
        ] {
            let head = parse(equal).unwrap();
            assert_eq!(head.framing(), Err(FramingError::ManyLengths));
        }
        let gzip = parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert!(gzip.framing().is_err());
        let neg = parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").unwrap();
        assert!(neg.framing().is_err());
    }

    #[test]
    fn keep_alive_rules() {
        assert!(parse("GET / HTTP/1.1\r\n\r\n").unwrap().keep_alive());
        assert!(!parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
        assert!(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .keep_alive());
    }

    #[test]
    fn head_errors() {
        assert!(matches!(parse(""), Err(HeadError::Closed)));
        assert!(matches!(parse("GET / HT"), Err(HeadError::Malformed(_))));
        assert!(matches!(
            parse("\x01\x02 / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&huge), Err(HeadError::TooLarge)));
        // Also when the whole of it is at hand at once.
        let mut whole = huge.as_bytes();
        assert!(matches!(
            read_request_head(&mut whole),
            Err(HeadError::TooLarge)
        ));
        let mut whole = &b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n"[..];
        assert!(matches!(
            read_request_head(&mut whole),
            Err(HeadError::Malformed(m)) if m.contains("UTF-8")
        ));
    }

    #[test]
    fn a_head_at_hand_is_read_where_it_lies() {
        let mut input = &b"PUT /x HTTP/1.0\r\nA: 1\r\nA: 2\r\n\r\nbody"[..];
        let head = read_request_head(&mut input).unwrap();
        assert_eq!((head.method.as_str(), head.target.as_str()), ("PUT", "/x"));
        assert_eq!(head.version, 0);
        assert_eq!(
            head.headers,
            vec![("A".into(), "1".into()), ("A".into(), "2".into())]
        );
        assert_eq!(input, b"body", "exactly the head was consumed");
    }

    #[test]
    fn status_lines_and_heads() {
        let mut out = Vec::new();
        write_head(&mut out, 404, &[("X".into(), "y".into())]).unwrap();
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nX: y\r\n\r\n");
        for (status, line) in [
            (200, "HTTP/1.1 200 OK\r\n"),
            (101, "HTTP/1.1 101 Switching Protocols\r\n"),
            (599, "HTTP/1.1 599 Status\r\n"),
            (42, "HTTP/1.1 42 Status\r\n"),
        ] {
            let mut out = Vec::new();
            status_line(&mut out, status);
            assert_eq!(String::from_utf8(out).unwrap(), line);
        }
    }

    #[test]
    fn chunk_writer() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello").unwrap();
        write_chunk(&mut out, b"").unwrap();
        write_last_chunk(&mut out).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
    }
}
