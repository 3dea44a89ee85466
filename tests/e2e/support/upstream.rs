//! A real HTTP/1.1 upstream on loopback port 0 that records every request it receives.
//!
//! Routes, picked by `?do=NAME&n=ARG` (so tests can use allowlisted paths) or else by the
//! path's last segments:
//! `/echo` JSON of what arrived · `/bytes/N` N bytes with Content-Length · `/chunked/N` the
//! same chunked · `/redirect` 302 to another host · `/gzip` gzip bytes with Content-Encoding · `/status/N` ·
//! `/sleep/MS` answer after MS · `/held` answer once the test calls [`Upstream::release_held`] ·
//! `/slowbytes/N` N bytes, 64 KiB every 20 ms · `/hang` never answer · `/cut/N` promise 2N bytes, send N,
//! close · `/cutchunked/N` N bytes chunked, close without the last chunk ·
//! `?do=location&to=URL` 302 to URL, `HOST` in it replaced by the request's `Host`.
//!
//! [`Upstream::with_routes`] puts a test's own answers (a vendor stub) in front of these.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vcs_agent::http1::{self, BodyReader};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// The first [`KEPT_BODY`] bytes of the body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The path, before any `?`.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Request body bytes kept in [`Recorded::body`].
pub const KEPT_BODY: usize = 64 * 1024;

/// A test's own answer: status, headers, body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);
/// A test's own routes, asked first with the whole request; `None` falls back to the
/// built-in routes.
pub type Routes = Arc<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Recorded>>,
    changed: Condvar,
    /// Whether `held` requests may be answered ([`Upstream::release_held`]).
    released: Mutex<bool>,
    release: Condvar,
}

/// The longest a `held` request waits for [`Upstream::release_held`].
const HELD_AT_MOST: Duration = Duration::from_secs(60);

pub struct Upstream {
    pub addr: SocketAddr,
    log: Arc<Log>,
}

/// Copies the first [`KEPT_BODY`] bytes read into `kept`.
struct Tee<'a, R> {
    inner: R,
    kept: &'a mut Vec<u8>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = KEPT_BODY.saturating_sub(self.kept.len()).min(n);
        self.kept.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

/// Deterministic body bytes: position-dependent so reordering or loss shows.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(i >> 8) % 251) as u8
}

/// FNV-1a over a stream, to compare bodies without keeping them.
#[derive(Clone, Copy)]
pub struct Digest(pub u64, pub u64);

impl Default for Digest {
    fn default() -> Digest {
        Digest(0xcbf29ce484222325, 0)
    }
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
        self.1 += data.len() as u64;
    }
    pub fn of_reader(mut r: impl Read) -> std::io::Result<Digest> {
        let mut d = Digest::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(d);
            }
            d.update(&buf[..n]);
        }
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// A reader of `len` pattern bytes, generated as read (no memory held).
pub struct PatternReader {
    pub pos: u64,
    pub len: u64,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(self.pos + i as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Sends `len` pattern bytes as the body of `request` (to an `echo` route), checks that the
/// upstream got all of them intact, and returns the echo. The body is labelled
/// `application/octet-stream` like a real client's (the agent reads an unlabelled `POST`
/// body as a form, whole and bounded).
pub fn echo_pattern(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    len: u64,
    what: &str,
) -> serde_json::Value {
    let r = request
        .header("Content-Type", "application/octet-stream")
        .send(ureq::SendBody::from_owned_reader(PatternReader {
            pos: 0,
            len,
        }))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let echo: serde_json::Value =
        serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
    let want = Digest::of_reader(PatternReader { pos: 0, len }).unwrap();
    assert_eq!(echo["body_len"], len, "{what}");
    assert_eq!(echo["body_digest"], want.hex(), "{what}");
    echo
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::start_routes(None)
    }

    /// An upstream that answers with `routes` first.
    pub fn with_routes(
        routes: impl Fn(&Recorded) -> Option<Reply> + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::start_routes(Some(Arc::new(routes)))
    }

    fn start_routes(routes: Option<Routes>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let log = Arc::new(Log::default());
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (l, routes) = (Arc::clone(&l), routes.clone());
                std::thread::spawn(move || serve_connection(conn, &l, routes.as_ref()));
            }
        });
        Upstream { addr, log }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` requests arrived (headers read), or panics after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.log.requests.lock().expect("log");
        while guard.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "upstream saw {} requests, expected {n}",
                guard.len()
            );
            guard = self.log.changed.wait_timeout(guard, left).expect("log").0;
        }
        guard.clone()
    }

    /// Lets every `held` request, waiting or still to come, be answered: a request stays in
    /// flight exactly as long as a test needs, whatever the machine's load.
    pub fn release_held(&self) {
        *self.log.released.lock().expect("released") = true;
        self.log.release.notify_all();
    }
}

/// Waits until [`Upstream::release_held`], at most [`HELD_AT_MOST`].
fn wait_released(log: &Log) {
    let released = log.released.lock().expect("released");
    let _ = log
        .release
        .wait_timeout_while(released, HELD_AT_MOST, |released| !*released);
}

fn serve_connection(conn: TcpStream, log: &Log, routes: Option<&Routes>) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn);
    loop {
        let head = match http1::read_request_head(&mut reader) {
            Ok(h) => h,
            Err(_) => return,
        };
        let path = head.target.split('?').next().unwrap_or("").to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let framing = head.framing().unwrap_or(http1::Framing::Empty);
        // Record first (so a test can see a request arrived before its answer), body after.
        let index = {
            let mut requests = log.requests.lock().expect("log");
            requests.push(Recorded {
                method: head.method.clone(),
                target: head.target.clone(),
                headers: head.headers.clone(),
                body_len: 0,
                body: Vec::new(),
            });
            log.changed.notify_all();
            requests.len() - 1
        };
        // `?do=NAME&n=ARG` picks the route, so tests can use allowlisted paths; else the path.
        let query = head.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let route: Vec<&str> = segments.iter().rev().take(2).rev().copied().collect();
        let last = route.last().copied().unwrap_or("");
        let (name, arg): (&str, u64) = match param("do") {
            Some(name) => (name, param("n").and_then(|n| n.parse().ok()).unwrap_or(0)),
            None if route.len() == 2 && last.parse::<u64>().is_ok() => {
                (route[0], last.parse().unwrap_or(0))
            }
            None => (last, 0),
        };
        if name == "hang" {
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        let mut kept = Vec::new();
        let tee = Tee {
            inner: BodyReader::new(&mut reader, framing),
            kept: &mut kept,
        };
        let digest = match Digest::of_reader(tee) {
            Ok(d) => d,
            Err(_) => return,
        };
        let recorded = match log.requests.lock() {
            Ok(mut requests) => {
                requests[index].body_len = digest.1;
                requests[index].body = kept;
                requests[index].clone()
            }
            Err(_) => return,
        };
        let out = reader.get_mut();
        let head_only = head.method == "HEAD";
        let own = routes.and_then(|r| r(&recorded));
        let name = if own.is_some() { "own" } else { name };
        let result = match name {
            "own" => match own {
                // A route that says `Transfer-Encoding: chunked` gets its body in two chunks.
                Some((status, headers, body))
                    if headers.iter().any(|(n, v)| {
                        n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked"
                    }) =>
                {
                    (|| {
                        http1::write_head(out, status, &headers)?;
                        let (first, second) = body.split_at(body.len() / 2);
                        http1::write_chunk(out, first)?;
                        http1::write_chunk(out, second)?;
                        http1::write_last_chunk(out)
                    })()
                }
                Some((status, headers, body)) => {
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    respond(out, status, &headers, &body, head_only)
                }
                None => return,
            },
            "location" => {
                let host = recorded.header("host").unwrap_or("");
                let to = param("to").unwrap_or("/").replace("HOST", host);
                respond(out, 302, &[("Location", &to)], b"moved", head_only)
            }
            "echo" => {
                let body = serde_json::json!({
                    "method": head.method,
                    "target": head.target,
                    "headers": head.headers,
                    "body_len": digest.1,
                    "body_digest": digest.hex(),
                })
                .to_string();
                respond(
                    out,
                    200,
                    &[
                        ("Content-Type", "application/json"),
                        ("Set-Cookie", "a=1; Path=/"),
                        ("Set-Cookie", "b=2; Path=/"),
                        ("Link", "<https://x/1>; rel=\"next\""),
                        ("Link", "<https://x/9>; rel=\"last\""),
                        ("Connection", "keep-alive, X-Hop"),
                        ("X-Hop", "must-not-pass"),
                        ("Keep-Alive", "timeout=5"),
                    ],
                    body.as_bytes(),
                    head_only,
                )
            }
            "bytes" => {
                let len = arg.to_string();
                let w = |o: &mut TcpStream| -> std::io::Result<()> {
                    http1::write_head(
                        o,
                        200,
                        &[
                            ("Content-Length".into(), len.clone()),
                            ("Content-Type".into(), "application/octet-stream".into()),
                        ],
                    )?;
                    if !head_only {
                        std::io::copy(&mut PatternReader { pos: 0, len: arg }, o)?;
                    }
                    Ok(())
                };
                w(out)
            }
            "slowbytes" => (|| {
                // N bytes in 64 KiB pieces, 20 ms apart: a long download to interrupt.
                http1::write_head(out, 200, &[("Content-Length".into(), arg.to_string())])?;
                let mut r = PatternReader { pos: 0, len: arg };
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })(),
            "chunked" => (|| {
                http1::write_head(out, 200, &[("Transfer-Encoding".into(), "chunked".into())])?;
                let mut r = PatternReader { pos: 0, len: arg };
                let mut buf = vec![0u8; 50_000];
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    http1::write_chunk(out, &buf[..n])?;
                }
                http1::write_last_chunk(out)
            })(),
            "redirect" => respond(
                out,
                302,
                &[("Location", "https://elsewhere.example/next")],
                b"moved",
                head_only,
            ),
            "gzip" => respond(
                out,
                200,
                &[("Content-Encoding", "gzip"), ("Content-Type", "text/plain")],
                &GZIP_HELLO,
                head_only,
            ),
            "status" => {
                let code = arg as u16;
                if code == 204 || code == 304 {
                    http1::write_head(out, code, &[("X-Status".into(), code.to_string())])
                } else {
                    respond(
                        out,
                        code,
                        &[],
                        format!("status {code}").as_bytes(),
                        head_only,
                    )
                }
            }
            "held" => {
                wait_released(log);
                respond(out, 200, &[], b"held", head_only)
            }
            "sleep" => {
                std::thread::sleep(Duration::from_millis(arg));
                respond(out, 200, &[], b"slept", head_only)
            }
            "cut" => {
                let _ = http1::write_head(
                    out,
                    200,
                    &[("Content-Length".into(), (arg * 2).to_string())],
                );
                let _ = std::io::copy(&mut PatternReader { pos: 0, len: arg }, out);
                let _ = out.flush();
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
            "cutchunked" => {
                let _ =
                    http1::write_head(out, 200, &[("Transfer-Encoding".into(), "chunked".into())]);
                let mut data = vec![0u8; arg as usize];
                let _ = PatternReader { pos: 0, len: arg }.read(&mut data);
                let _ = http1::write_chunk(out, &data);
                let _ = out.flush();
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
            _ => respond(
                out,
                404,
                &[("Content-Type", "application/json")],
                b"{\"message\":\"404 Not Found\"}",
                head_only,
            ),
        };
        if result.is_err() {
            return;
        }
        let _ = out.flush();
        if !head.keep_alive() {
            return;
        }
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    list.push(("Content-Length".into(), body.len().to_string()));
    http1::write_head(out, status, &list)?;
    if !head_only {
        out.write_all(body)?;
    }
    Ok(())
}

/// "hello\n" gzip-compressed.
pub const GZIP_HELLO: [u8; 26] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7,
    0x02, 0x00, 0x20, 0x30, 0x3a, 0x36, 0x06, 0x00, 0x00, 0x00,
];
