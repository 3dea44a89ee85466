//! The pool's one-answer-per-request rule against a VCS that frames its answers wrongly.
//!
//! A scripted VCS on loopback answers request `k` (named by its `X-Seq` header) with a head
//! carrying `X-Seq: k` and a body of one letter, then sends whatever the script says after
//! it: random bytes, a second final answer to the same request, a body after `HEAD`, `204` or
//! `304`, garbage after the last chunk; at once, or only after the client read the answer.
//! Whatever the order of bytes, every answer a request gets must be its own: its head says its
//! own sequence number and its body is exactly the one sent for it, or the request fails.

use super::tests::pool;
use super::*;
use proptest::prelude::*;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Condvar, Mutex};

/// How the genuine answer to a request is framed.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    NoContent,
    NotModified,
    /// `100 Continue`, then an answer with a length.
    ContinueFirst,
}

/// What comes after the genuine answer.
#[derive(Debug, Clone)]
enum Surplus {
    Nothing,
    Random(Vec<u8>),
    /// A second final answer to the same request: what the next caller must never get.
    SecondAnswer,
    /// Body bytes (for `HEAD`, `204`, `304`, or past the length).
    Body(usize),
    /// Garbage after a chunked body's last chunk.
    AfterLastChunk(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Exchange {
    head: bool,
    framing: Framing,
    body_len: usize,
    surplus: Surplus,
    /// The surplus leaves only after the client read the whole answer.
    late: bool,
}

fn tag(k: usize) -> u8 {
    b'a' + (k % 26) as u8
}

impl Exchange {
    /// The body the request must read.
    fn expected_body(&self, k: usize) -> Vec<u8> {
        match self.framing {
            _ if self.head => Vec::new(),
            Framing::NoContent | Framing::NotModified => Vec::new(),
            _ => vec![tag(k); self.body_len],
        }
    }

    /// The answer's bytes, and what follows them.
    fn bytes(&self, k: usize) -> (Vec<u8>, Vec<u8>) {
        let body = vec![tag(k); self.body_len];
        let mut answer = Vec::new();
        let length = |answer: &mut Vec<u8>, status: &str| {
            let head = format!(
                "HTTP/1.1 {status}\r\nX-Seq: {k}\r\nContent-Length: {}\r\n\r\n",
                self.body_len
            );
            answer.extend_from_slice(head.as_bytes());
            if !self.head {
                answer.extend_from_slice(&body);
            }
        };
        match self.framing {
            Framing::Length => length(&mut answer, "200 OK"),
            Framing::ContinueFirst => {
                answer.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                length(&mut answer, "200 OK");
            }
            Framing::Chunked => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nX-Seq: {k}\r\nTransfer-Encoding: chunked\r\n\r\n");
                answer.extend_from_slice(head.as_bytes());
                if !self.head {
                    if !body.is_empty() {
                        answer.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                        answer.extend_from_slice(&body);
                        answer.extend_from_slice(b"\r\n");
                    }
                    answer.extend_from_slice(b"0\r\n\r\n");
                }
            }
            Framing::NoContent => answer.extend_from_slice(
                format!("HTTP/1.1 204 No Content\r\nX-Seq: {k}\r\n\r\n").as_bytes(),
            ),
            Framing::NotModified => answer.extend_from_slice(
                format!("HTTP/1.1 304 Not Modified\r\nX-Seq: {k}\r\n\r\n").as_bytes(),
            ),
        }
        let surplus = match &self.surplus {
            Surplus::Nothing => Vec::new(),
            Surplus::Random(bytes) | Surplus::AfterLastChunk(bytes) => bytes.clone(),
            Surplus::SecondAnswer => {
                format!("HTTP/1.1 200 OK\r\nX-Seq: {k}\r\nContent-Length: 3\r\n\r\nold")
                    .into_bytes()
            }
            Surplus::Body(n) => vec![tag(k); *n],
        };
        (answer, surplus)
    }
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let framing = prop_oneof![
        Just(Framing::Length),
        Just(Framing::Chunked),
        Just(Framing::NoContent),
        Just(Framing::NotModified),
        Just(Framing::ContinueFirst),
    ];
    let surplus = prop_oneof![
        2 => Just(Surplus::Nothing),
        1 => proptest::collection::vec(any::<u8>(), 1..48).prop_map(Surplus::Random),
        2 => Just(Surplus::SecondAnswer),
        1 => (1usize..40).prop_map(Surplus::Body),
        1 => proptest::collection::vec(any::<u8>(), 1..16).prop_map(Surplus::AfterLastChunk),
    ];
    (any::<bool>(), framing, 0usize..300, surplus, any::<bool>()).prop_map(
        |(head, framing, body_len, surplus, late)| Exchange {
            head,
            framing,
            body_len,
            surplus,
            late,
        },
    )
}

/// How far the client got, so a late surplus leaves only after the answer was read, and the
/// next request only after the surplus left.
#[derive(Default)]
struct Progress {
    /// Answers the client finished reading.
    read: Mutex<usize>,
    /// Surpluses the VCS finished writing.
    written: Mutex<usize>,
    changed: Condvar,
}

impl Progress {
    fn set(&self, which: &Mutex<usize>, value: usize) {
        *which.lock().unwrap() = value;
        self.changed.notify_all();
    }

    /// Waits (at most 5 s) until `which` reaches `value`.
    fn wait(&self, which: &Mutex<usize>, value: usize) {
        let guard = which.lock().unwrap();
        let wait = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(5), |v| *v < value);
        assert!(
            !wait.unwrap().1.timed_out(),
            "the other side never got to {value}"
        );
    }
}

/// The scripted VCS: answers each request by its `X-Seq` from `script`.
fn scripted_vcs(script: Arc<Vec<Exchange>>, progress: Arc<Progress>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (script, progress) = (Arc::clone(&script), Arc::clone(&progress));
            std::thread::spawn(move || serve_script(tcp, &script, &progress));
        }
    });
    port
}

fn serve_script(tcp: TcpStream, script: &[Exchange], progress: &Progress) {
    // A late surplus must be on its way when the VCS says it wrote it, not held back until
    // the client acknowledges the answer.
    tcp.set_nodelay(true).unwrap();
    let mut writer = tcp.try_clone().unwrap();
    let mut reader = BufReader::new(tcp);
    while let Some(k) = read_seq(&mut reader) {
        let exchange = &script[k];
        let (answer, surplus) = exchange.bytes(k);
        if exchange.late {
            if writer.write_all(&answer).is_err() {
                return;
            }
            progress.wait(&progress.read, k + 1);
            let _ = writer.write_all(&surplus);
            progress.set(&progress.written, k + 1);
        } else {
            let _ = writer.write_all(&[answer, surplus].concat());
        }
    }
}

/// The `X-Seq` of the next request's head, or `None` when the connection ends.
fn read_seq(reader: &mut impl BufRead) -> Option<usize> {
    read_header(reader, "x-seq")?.parse().ok()
}

/// Header `wanted` of the next request's head, or `None` when the connection ends.
fn read_header(reader: &mut impl BufRead, wanted: &str) -> Option<String> {
    let mut found = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return found;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case(wanted) {
                found = Some(value.trim().to_string());
            }
        }
    }
}

/// Request `k`: its answer's sequence number and body, or `None` when it failed.
fn request(pool: &Arc<Pool>, port: u16, k: usize, head: bool) -> Option<(String, Vec<u8>)> {
    let target = Target {
        tls: false,
        host: "127.0.0.1".into(),
        port,
    };
    let uri: http::Uri = format!("http://127.0.0.1:{port}/x").parse().unwrap();
    let seq = k.to_string();
    let outgoing = Outgoing {
        method: if head { "HEAD" } else { "GET" },
        uri: &uri,
        headers: &[("X-Seq", &seq)],
    };
    let response = pool.send(&outgoing, &target, None, Payload::None).ok()?;
    let answered = response.headers().get("x-seq")?.to_str().ok()?.to_string();
    let mut body = Vec::new();
    response.into_body().read_to_end(&mut body).ok()?;
    Some((answered, body))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_ever_reads_bytes_sent_after_the_previous_answer(
        script in proptest::collection::vec(exchange(), 1..7)
    ) {
        let script = Arc::new(script);
        let progress = Arc::new(Progress::default());
        let port = scripted_vcs(Arc::clone(&script), Arc::clone(&progress));
        let pool = pool();
        for (k, exchange) in script.iter().enumerate() {
            let got = request(&pool, port, k, exchange.head);
            progress.set(&progress.read, k + 1);
            if exchange.late {
                progress.wait(&progress.written, k + 1);
            }
            // A request may fail (the VCS framed its answer so that it cannot be read), but an
            // answer it gets is its own.
            if let Some((seq, body)) = got {
                prop_assert_eq!(seq, k.to_string(), "request {} got another request's answer", k);
                prop_assert_eq!(body, exchange.expected_body(k), "request {}'s body", k);
            }
        }
    }
}

/// The first answer's late surplus (a second answer to it) never reaches the second request,
/// which goes on a fresh connection and gets its own answer.
#[test]
fn a_second_answer_that_arrives_late_is_never_read_by_the_next_request() {
    let exchange = Exchange {
        head: false,
        framing: Framing::Length,
        body_len: 5,
        surplus: Surplus::SecondAnswer,
        late: true,
    };
    let plain = Exchange {
        surplus: Surplus::Nothing,
        late: false,
        ..exchange.clone()
    };
    let script = Arc::new(vec![exchange, plain]);
    let progress = Arc::new(Progress::default());
    let port = scripted_vcs(Arc::clone(&script), Arc::clone(&progress));
    let pool = pool();
    assert_eq!(
        request(&pool, port, 0, false),
        Some(("0".into(), b"aaaaa".to_vec()))
    );
    progress.set(&progress.read, 1);
    progress.wait(&progress.written, 1);
    assert_eq!(
        request(&pool, port, 1, false),
        Some(("1".into(), b"bbbbb".to_vec()))
    );
}

/// A VCS whose every answer goes out twice, the copy only when the next request on the same
/// connection arrives: bytes that come too late for any look at the socket to see them.
fn answering_twice_too_late() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = tcp.try_clone().unwrap();
                let mut reader = BufReader::new(tcp);
                let mut copy: Option<Vec<u8>> = None;
                while let Some(who) = read_header(&mut reader, "authorization") {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nX-Who: {who}\r\nContent-Length: {}\r\n\r\n{who}",
                        who.len()
                    );
                    let late = copy
                        .replace(answer.clone().into_bytes())
                        .unwrap_or_default();
                    if writer
                        .write_all(&[late, answer.into_bytes()].concat())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_answer_too_late_to_be_seen_reaches_only_a_request_with_the_same_credentials(
        callers in proptest::collection::vec(0usize..3, 2..10)
    ) {
        let port = answering_twice_too_late();
        let pool = pool();
        let target = Target { tls: false, host: "127.0.0.1".into(), port };
        let uri: http::Uri = format!("http://127.0.0.1:{port}/x").parse().unwrap();
        for caller in callers {
            let who = ["Bearer alice", "Bearer bob", "Bearer carol"][caller];
            let outgoing = Outgoing { method: "GET", uri: &uri, headers: &[("Authorization", who)] };
            let Ok(response) = pool.send(&outgoing, &target, None, Payload::None) else {
                continue;
            };
            let answered = response.headers().get("x-who").map(|v| v.to_str().unwrap().to_string());
            prop_assert_eq!(answered.as_deref(), Some(who), "a request got another caller's answer");
            let mut body = String::new();
            if response.into_body().read_to_string(&mut body).is_ok() {
                prop_assert_eq!(body.as_str(), who);
            }
        }
    }
}

#[test]
fn credentials_are_told_apart_by_header_and_token_parameter() {
    let uri: http::Uri = "http://vcs/x?private_token=a&page=2".parse().unwrap();
    let other: http::Uri = "http://vcs/x?private_token=b&page=2".parse().unwrap();
    let plain: http::Uri = "http://vcs/x?page=3".parse().unwrap();
    let of = |uri: &http::Uri, headers: &[(&str, &str)]| {
        Credentials::of(&Outgoing {
            method: "GET",
            uri,
            headers,
        })
    };
    assert_ne!(of(&uri, &[]), of(&other, &[]));
    assert_eq!(
        of(&plain, &[("Accept", "a")]),
        of(&plain, &[("Accept", "b")])
    );
    assert_ne!(
        of(&plain, &[("PRIVATE-TOKEN", "a")]),
        of(&plain, &[("private-token", "b")])
    );
    assert_eq!(
        of(&plain, &[("PRIVATE-TOKEN", "a")]),
        of(&plain, &[("private-token", "a")])
    );
    assert_ne!(of(&plain, &[("Authorization", "a")]), of(&plain, &[]));
}
