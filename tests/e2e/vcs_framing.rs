//! A VCS that frames its answers wrongly never makes one caller read another's answer.
//!
//! A hostile stand-in VCS echoes, in headers and body, the path and `PRIVATE-TOKEN` each
//! request arrived with, and misframes the answers to requests marked `hostile`: bytes past
//! `Content-Length` a moment later, a body after `HEAD`, `204` or `304`, two final answers
//! after `100 Continue`, garbage after the last chunk, a close in the middle of the body.
//! Alice and Bob, with different tokens, take turns on a pool of one stream, back to back and
//! with short gaps: each gets its own answer or a clear error, never the other's bytes.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// How the stand-in misframes the answer to a hostile request.
#[derive(Debug, Clone, Copy)]
enum Mode {
    LateExtra,
    HeadWithBody,
    NoContentWithBody,
    NotModifiedWithBody,
    TwoAfterContinue,
    ChunkedGarbage,
    CloseMidBody,
}

/// The request as the stand-in saw it.
struct Seen {
    method: String,
    path: String,
    token: String,
}

fn read_request(reader: &mut impl BufRead) -> Option<Seen> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let mut token = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        if header == "\r\n" {
            return Some(Seen {
                method,
                path,
                token,
            });
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("private-token") {
                token = value.trim().to_string();
            }
        }
    }
}

/// An answer echoing `seen`, with `status` and `framing` (a `Content-Length` or chunked).
fn echo(seen: &Seen, status: &str, chunked: bool) -> Vec<u8> {
    let body = format!(r#"{{"for_path":"{}","token":"{}"}}"#, seen.path, seen.token);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-For-Path: {}\r\nX-Token-Seen: {}\r\n{framing}\r\n\r\n",
        seen.path, seen.token
    )
    .into_bytes();
    let carries_body =
        seen.method != "HEAD" && !status.starts_with("204") && !status.starts_with("304");
    match (carries_body, chunked) {
        (false, _) => {}
        (true, false) => answer.extend_from_slice(body.as_bytes()),
        (true, true) => {
            answer.extend_from_slice(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes())
        }
    }
    answer
}

/// The misframed answer to a hostile request: what goes at once, and what follows 30 ms later.
fn hostile(mode: Mode, seen: &Seen) -> (Vec<u8>, Vec<u8>) {
    let again = echo(seen, "200 OK", false);
    let body = format!(r#"{{"for_path":"{}","token":"{}"}}"#, seen.path, seen.token);
    let now = match mode {
        Mode::LateExtra | Mode::HeadWithBody => echo(seen, "200 OK", false),
        Mode::NoContentWithBody => echo(seen, "204 No Content", false),
        Mode::NotModifiedWithBody => echo(seen, "304 Not Modified", false),
        Mode::TwoAfterContinue => [
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            echo(seen, "200 OK", false),
        ]
        .concat(),
        Mode::ChunkedGarbage => echo(seen, "200 OK", true),
        Mode::CloseMidBody => {
            let whole = echo(seen, "200 OK", false);
            let promised = format!("Content-Length: {}", body.len());
            let more = format!("Content-Length: {}", body.len() * 2);
            let text = String::from_utf8_lossy(&whole).replace(&promised, &more);
            return (text.into_bytes(), Vec::new());
        }
    };
    // The body after `HEAD`, `204` or `304`, the bytes past the length or the last chunk, the
    // second final answer: a well-formed answer to the same request, which no later request
    // may read as its own. (Bytes past the framing in the same segment as the answer are the
    // unit tests' case.)
    (now, again)
}

fn serve(tcp: TcpStream, mode: Mode, late_sent: &AtomicUsize) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut writer) = tcp.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(tcp);
    while let Some(seen) = read_request(&mut reader) {
        if !seen.path.contains("hostile") {
            if writer.write_all(&echo(&seen, "200 OK", false)).is_err() {
                return;
            }
            continue;
        }
        let (now, later) = hostile(mode, &seen);
        if writer.write_all(&now).is_err() {
            return;
        }
        if matches!(mode, Mode::CloseMidBody) {
            late_sent.fetch_add(1, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
        let written = writer.write_all(&later);
        late_sent.fetch_add(1, Ordering::SeqCst);
        if written.is_err() {
            return;
        }
    }
}

/// The stand-in VCS on loopback port 0: its base URL, and how many hostile answers it has
/// finished (the late part sent, or the connection closed).
fn start_vcs(mode: Mode) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let late_sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&late_sent);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || serve(tcp, mode, &counter));
        }
    });
    (format!("http://{addr}"), late_sent)
}

/// What one caller got: its own answer, a clear error, or another's bytes (a failure).
fn check_answer(
    who: &str,
    path: &str,
    method: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) {
    let Ok(response) = response else {
        return;
    };
    let status = response.status().as_u16();
    let token = header_values(&response, "x-token-seen");
    let seen_path = header_values(&response, "x-for-path");
    let mut body = String::new();
    let read = response.into_body().into_reader().read_to_string(&mut body);
    if status >= 500 && token.is_empty() {
        return; // The tunnel's own error: clear, and nobody's answer.
    }
    assert_eq!(
        token,
        [who],
        "{who}'s request {path} got an answer for {token:?} ({status})"
    );
    assert_eq!(
        seen_path,
        [path],
        "{who}'s request {path} got an answer for {seen_path:?}"
    );
    if read.is_ok() && method == "GET" && !body.is_empty() {
        let expected = format!(r#"{{"for_path":"{path}","token":"{who}"}}"#);
        assert_eq!(body, expected, "{who}'s request {path}: body");
    }
}

/// One request of a round: who sends it, whether the stand-in misframes its answer, and
/// whether the next request waits until the late part of that answer has been sent.
const ROUND: [(usize, bool, bool); 6] = [
    // Back to back: Bob right after Alice's misframed answer.
    (0, true, false),
    (1, false, true),
    // Alice again once her late bytes wait on the connection the probe looks at.
    (0, false, false),
    (1, true, false),
    (0, false, true),
    (1, false, false),
];

fn alternate(mode: Mode) {
    let gateway = Gateway::start(&[]);
    let pool = format!("framing-{}", format!("{mode:?}").to_lowercase());
    let (vcs, late_sent) = start_vcs(mode);
    let _agent = gateway.agent_for(&pool, &vcs, &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")], 1);
    let trigger = if matches!(mode, Mode::HeadWithBody) {
        "HEAD"
    } else {
        "GET"
    };
    let mut hostile_sent = 0;
    for step in 0..2 * ROUND.len() {
        let (caller, hostile, wait) = ROUND[step % ROUND.len()];
        let (who, name) = [("glpat-ALICE", "alice"), ("glpat-BOB", "bob")][caller];
        let path = match hostile {
            true => format!("/api/v4/user?who={name}-{step}-hostile"),
            false => format!("/api/v4/user?who={name}-{step}"),
        };
        let method = if hostile { trigger } else { "GET" };
        let url = gateway.url(&pool, &path);
        let request = match method {
            "HEAD" => client().head(&url).header("PRIVATE-TOKEN", who).call(),
            _ => client().get(&url).header("PRIVATE-TOKEN", who).call(),
        };
        check_answer(who, &path, method, request);
        hostile_sent += usize::from(hostile);
        if wait {
            wait_until(Duration::from_secs(5), "the stand-in's late bytes", || {
                late_sent.load(Ordering::SeqCst) >= hostile_sent
            });
        }
    }
}

#[test]
fn late_bytes_past_content_length_reach_nobody() {
    alternate(Mode::LateExtra);
}

#[test]
fn a_body_after_head_reaches_nobody() {
    alternate(Mode::HeadWithBody);
}

#[test]
fn a_body_after_204_reaches_nobody() {
    alternate(Mode::NoContentWithBody);
}

#[test]
fn a_body_after_304_reaches_nobody() {
    alternate(Mode::NotModifiedWithBody);
}

#[test]
fn a_second_final_answer_after_100_reaches_nobody() {
    alternate(Mode::TwoAfterContinue);
}

#[test]
fn garbage_after_the_last_chunk_reaches_nobody() {
    alternate(Mode::ChunkedGarbage);
}

#[test]
fn a_close_mid_body_fails_that_answer_only() {
    alternate(Mode::CloseMidBody);
}

#[test]
fn the_agent_names_the_vcs_fault_once_per_connection() {
    let gateway = Gateway::start(&[]);
    let (vcs, late_sent) = start_vcs(Mode::LateExtra);
    let agent = gateway.agent_for(
        "framing-warn",
        &vcs,
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")],
        1,
    );
    let url = gateway.url("framing-warn", "/api/v4/user?who=alice-hostile");
    let response = client()
        .get(&url)
        .header("PRIVATE-TOKEN", "glpat-ALICE")
        .call();
    check_answer(
        "glpat-ALICE",
        "/api/v4/user?who=alice-hostile",
        "GET",
        response,
    );
    // The late answer arrives while the connection idles; the next request finds it there.
    wait_until(Duration::from_secs(5), "the stand-in's late bytes", || {
        late_sent.load(Ordering::SeqCst) == 1
    });
    for _ in 0..3 {
        let url = gateway.url("framing-warn", "/api/v4/user?who=alice-1");
        let response = client()
            .get(&url)
            .header("PRIVATE-TOKEN", "glpat-ALICE")
            .call();
        check_answer("glpat-ALICE", "/api/v4/user?who=alice-1", "GET", response);
    }
    agent
        .out
        .wait_for("framing was wrong", Duration::from_secs(5));
    assert_eq!(
        agent.out.count("framing was wrong"),
        1,
        "{}",
        agent.out.text()
    );
}
