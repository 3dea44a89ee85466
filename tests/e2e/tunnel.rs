//! The end-to-end tunnel: a real gateway, real agent processes and a real upstream on loopback.

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;
use support::upstream::{echo_pattern, Digest, PatternReader, Upstream, GZIP_HELLO};
use support::*;

/// An allowlisted GitLab path (archive download) whose upstream route is `route`.
fn get(route: &str) -> String {
    format!("/api/v4/projects/group%2Frepo/repository/archive?do={route}")
}

/// An allowlisted GitLab POST (commit status).
fn post(route: &str) -> String {
    format!("/api/v4/projects/group%2Frepo/statuses/0123abc?do={route}")
}

/// An allowlisted GitLab PUT (edit a merge request note).
fn put(route: &str) -> String {
    format!("/api/v4/projects/group%2Frepo/merge_requests/1/notes/2?do={route}")
}

#[test]
fn requests_and_answers_pass_through_faithfully() {
    let s = Tunnel::options("faithful").base_path("/gitlab").start();
    let response = client()
        .get(s.gateway.url(
            "faithful",
            &format!("{}&per_page=5&private_token=glpat-secret", get("echo")),
        ))
        .header("Accept", "application/json")
        .header("User-Agent", "saas-caller/1.0")
        .header("Link", "<a>")
        .header("X-Custom", "one")
        .header("X-Forwarded-For", "10.1.2.3")
        .header("Connection", "keep-alive, X-Custom")
        .header("Proxy-Authorization", "Basic c2VjcmV0")
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header_values(&response, "set-cookie"),
        ["a=1; Path=/", "b=2; Path=/"]
    );
    assert_eq!(
        header_values(&response, "link").len(),
        2,
        "repeated Link values kept"
    );
    assert!(
        header_values(&response, "x-hop").is_empty(),
        "header named by Connection dropped"
    );
    assert!(header_values(&response, "keep-alive").is_empty());
    let id = header_values(&response, "x-vcs-request-id")
        .pop()
        .expect("request id header");
    let echo: serde_json::Value =
        serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(
        echo["target"],
        format!(
            "/gitlab{}&per_page=5&private_token=glpat-secret",
            get("echo")
        ),
        "sub-path and query kept byte for byte"
    );
    let headers: Vec<(String, String)> = serde_json::from_value(echo["headers"].clone()).unwrap();
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone());
    assert_eq!(
        host.as_deref(),
        Some(s.upstream.addr.to_string().as_str()),
        "Host is the target's"
    );
    assert!(has("accept") && has("link"));
    for dropped in [
        "x-custom",
        "x-forwarded-for",
        "proxy-authorization",
        "connection",
        "keep-alive",
    ] {
        assert!(!has(dropped), "{dropped} reached the upstream: {headers:?}");
    }
    let user_agents: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        user_agents,
        ["saas-caller/1.0"],
        "the caller's User-Agent, and no other"
    );
    let names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| n != "link")
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "no header doubled: {headers:?}");

    // Both logs carry the id; neither carries the token value.
    let access = s
        .agent
        .out
        .wait_for(&format!("id={id}"), Duration::from_secs(5));
    assert!(
        access.contains("method=GET") && access.contains("status=200"),
        "{access}"
    );
    assert!(
        access.contains("private_token=***") && access.contains("bytes_out="),
        "{access}"
    );
    assert!(access.contains("for=\""), "{access}");
    let front = s
        .gateway
        .proc
        .out
        .wait_for(&format!("id={id}"), Duration::from_secs(5));
    assert!(front.contains("status=200"), "{front}");
    assert!(
        !s.agent.out.text().contains("glpat-secret")
            && !s.gateway.proc.out.text().contains("glpat-secret")
    );
}

#[test]
fn redirects_compression_and_bodiless_answers_are_left_alone() {
    let s = Tunnel::start("alone", &[]);
    let c = client();
    let r = c
        .get(s.gateway.url("alone", &get("redirect")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 302);
    // A redirect to another host is not followed and passes untouched (one into the VCS
    // is rewritten: tests/allowlist_answers.rs).
    assert_eq!(
        header_values(&r, "location"),
        ["https://elsewhere.example/next"]
    );

    let r = c
        .get(s.gateway.url("alone", &get("gzip")))
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(header_values(&r, "content-encoding"), ["gzip"]);
    let mut raw = Vec::new();
    r.into_body().into_reader().read_to_end(&mut raw).unwrap();
    assert_eq!(raw, GZIP_HELLO, "body must not be decompressed");

    let r = c
        .head(s.gateway.url("alone", &get("bytes&n=1000")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header_values(&r, "content-length"), ["1000"]);
    for code in [204, 304] {
        let r = c
            .get(s.gateway.url("alone", &get(&format!("status&n={code}"))))
            .call()
            .unwrap();
        assert_eq!(r.status(), code);
        assert_eq!(r.into_body().read_to_string().unwrap(), "");
    }
    // And the keep-alive connection still works after bodiless answers.
    let r = c
        .get(s.gateway.url("alone", &get("status&n=418")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 418);
}

/// Request bodies of every size arrive whole, with a length or chunked. The gateway reads up
/// to one piece (64 KiB) before it takes a stream and the rest while holding it, hence the
/// sizes around one piece; the largest crosses many pieces.
#[test]
fn request_bodies_of_every_size_arrive_whole_with_length_or_chunked() {
    let s = Tunnel::start("bodies", &[]);
    for len in [1, 65_535, 65_536, 65_537, 200_000, 3 * 1024 * 1024 + 17] {
        let with_length = client()
            .post(s.gateway.url("bodies", &post("echo")))
            .header("Content-Length", &len.to_string());
        echo_pattern(
            with_length,
            len,
            &format!("POST of {len} bytes with a length"),
        );
        let chunked = client().put(s.gateway.url("bodies", &put("echo")));
        let echo = echo_pattern(chunked, len, &format!("chunked PUT of {len} bytes"));
        assert_eq!(echo["method"], "PUT");
    }
}

/// A caller that sends its small body slowly must not hold the pool's only stream: the
/// gateway reads the body before it takes one. `Expect: 100-continue` is answered by the
/// gateway (that is also how the test knows the gateway is reading the body), and the
/// header goes no further.
#[test]
fn a_slow_small_upload_holds_no_stream_and_gets_100_continue() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::options("one")
        .gateway_args(&["--queue-timeout", "1s"])
        .agent_env(&[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")])
        .start();
    let body = br#"{"state":"success","name":"ci"}"#;
    let mut slow = std::net::TcpStream::connect(&gateway.api_addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        slow,
        "POST /private/one{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
         {}Expect: 100-continue\r\n\r\n",
        post("echo"),
        body.len(),
        gateway.auth_line()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    slow.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    slow.write_all(&body[..10]).unwrap();

    // Meanwhile another caller gets the only stream at once.
    let r = client()
        .get(gateway.url("one", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200, "the slow upload held the pool's stream");
    // The gateway counts the stream idle just after the answer's last byte; the slow upload
    // still sends nothing, so a stream it held would stay busy.
    wait_until(Duration::from_secs(5), "no busy stream", || {
        gateway.pool_state("one").2 == 0
    });

    slow.write_all(&body[10..]).unwrap();
    let mut answer = Vec::new();
    let mut reader = std::io::BufReader::new(slow);
    let head = support::read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    answer.resize(length, 0);
    reader.read_exact(&mut answer).unwrap();
    let echo: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(echo["body_len"], body.len());
    let forwarded = echo["headers"].to_string().to_ascii_lowercase();
    assert!(
        !forwarded.contains("100-continue"),
        "Expect reached the VCS: {forwarded}"
    );
}

#[test]
fn response_bodies_of_unknown_length_come_back_chunked_and_whole() {
    let s = Tunnel::start("chunked", &[]);
    let len = 5 * 1024 * 1024 + 3;
    let r = client()
        .get(s.gateway.url("chunked", &get(&format!("chunked&n={len}"))))
        .call()
        .unwrap();
    assert_eq!(header_values(&r, "transfer-encoding"), ["chunked"]);
    let got = Digest::of_reader(r.into_body().into_reader()).unwrap();
    let want = Digest::of_reader(PatternReader { pos: 0, len }).unwrap();
    assert_eq!((got.0, got.1), (want.0, want.1));
}

#[test]
fn error_kinds_name_the_failing_part() {
    let upstream = Upstream::start();
    // A no_agent answer is timed against it: it must come before a queued request would.
    let queue_timeout = Duration::from_secs(3);
    let gateway = Gateway::start(&["--queue-timeout", "3s"]);
    let c = client();

    // Unknown pool, and error answers carry the request id too.
    let r = c.get(gateway.url("missing", "/x")).call().unwrap();
    assert_eq!(
        header_values(&r, "x-vcs-request-id").len(),
        1,
        "no request id on an error"
    );
    let (status, kind, _) = error_kind(c.get(gateway.url("missing", "/x")).call().unwrap());
    assert_eq!((status, kind.as_str()), (404, "unknown_pool"));

    // A pool with no agent answers at once.
    let _token = gateway.create_pool("empty");
    let started = std::time::Instant::now();
    let (status, kind, message) = error_kind(c.get(gateway.url("empty", "/x")).call().unwrap());
    assert_eq!((status, kind.as_str()), (503, "no_agent"), "{message}");
    assert!(
        started.elapsed() < queue_timeout,
        "no_agent must not wait for the queue"
    );

    // Queue timeout: one stream, busy.
    let _agent = gateway.agent_for(
        "busy",
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")],
        1,
    );
    let slow_url = gateway.url("busy", &get("held"));
    let slow =
        std::thread::spawn(move || client().get(slow_url).call().map(|r| r.status().as_u16()));
    wait_until(
        Duration::from_secs(5),
        "the slow request to occupy the stream",
        || gateway.pool_state("busy").2 == 1,
    );
    let (status, kind, _) = error_kind(c.get(gateway.url("busy", &get("echo"))).call().unwrap());
    assert_eq!((status, kind.as_str()), (503, "queue_timeout"));
    upstream.release_held();
    assert_eq!(slow.join().unwrap().unwrap(), 200);

    // Bad request: conflicting framing never reaches an agent.
    let mut raw = std::net::TcpStream::connect(&gateway.api_addr).unwrap();
    let request = format!("POST /private/busy/api/v4/projects/g%2Fr/statuses/0123abc HTTP/1.1\r\nHost: x\r\n{}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", gateway.auth_line());
    raw.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"kind\":\"bad_request\""), "{answer}");

    // Upstream unreachable: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let _agent2 = gateway.agent_for("dead", &dead, &[], 2);
    let (status, kind, message) =
        error_kind(c.get(gateway.url("dead", &get("echo"))).call().unwrap());
    assert_eq!(
        (status, kind.as_str()),
        (502, "upstream_unreachable"),
        "{message}"
    );

    // Upstream timeout: accepted, never answered.
    let _agent3 = gateway.agent_for(
        "silent",
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_UPSTREAM_READ_TIMEOUT", "700ms")],
        2,
    );
    let (status, kind, message) =
        error_kind(c.get(gateway.url("silent", &get("hang"))).call().unwrap());
    assert_eq!(
        (status, kind.as_str()),
        (504, "upstream_timeout"),
        "{message}"
    );
}

/// A refused upload: the gateway answers 404 without reading the body, then must close with
/// FIN and keep draining what the caller still sends, not reset the connection (a reset lets
/// the caller's kernel report an error instead of the answer).
#[test]
fn an_answer_refusing_an_unread_body_is_not_lost_to_a_reset() {
    let gateway = Gateway::start(&[]);
    let mut raw = std::net::TcpStream::connect(&gateway.api_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body_len = 512 * 1024;
    let auth = gateway.auth_line();
    // More body than the gateway's 16 KiB read buffer takes in: the rest waits in the socket.
    let mut first = format!(
        "POST /private/missing/api/v4/projects/g%2Fr/statuses/0123abc HTTP/1.1\r\n\
         Host: x\r\n{auth}Content-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    first.extend(std::iter::repeat_n(b'x', 64 * 1024));
    raw.write_all(&first).unwrap();

    let mut answer = Vec::new();
    let read = raw.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "the answer ended in {read:?} instead of a clean close; got {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("\"kind\":\"unknown_pool\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // The gateway still drains the rest of the upload instead of resetting it.
    let rest = vec![b'x'; body_len - 64 * 1024];
    raw.write_all(&rest)
        .expect("the gateway reset the connection while the caller was still sending");
}

#[test]
fn a_killed_agent_gives_agent_lost() {
    let s = Tunnel::start("lost", &[]);
    let url = s.gateway.url("lost", &get("sleep&n=20000"));
    let call = std::thread::spawn(move || error_kind(client().get(url).call().unwrap()));
    s.upstream.wait_for_requests(1, Duration::from_secs(5));
    let mut agent = s.agent;
    agent.child.kill().unwrap();
    let (status, kind, _) = call.join().unwrap();
    assert_eq!((status, kind.as_str()), (502, "agent_lost"));
    let _ = agent.wait_exit(Duration::from_secs(5));
}

#[test]
fn two_agents_in_one_pool_share_the_load() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("shared");
    let a = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_METADATA_name", "a")],
    ));
    let b = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_METADATA_name", "b")],
    ));
    gateway.wait_streams("shared", 4);
    assert_eq!(gateway.pool_state("shared").0, 2, "two agents");
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let url = gateway.url("shared", &get("sleep&n=20"));
            std::thread::spawn(move || {
                let c = client();
                for i in 0..10 {
                    let r = c.get(format!("{url}&w={w}&i={i}")).call().unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // An agent logs its line right after the last byte: wait for all 80 lines.
    wait_until(Duration::from_secs(5), "80 access lines", || {
        a.out.count("access: id=") + b.out.count("access: id=") == 80
    });
    let served_a = a.out.count("access: id=");
    let served_b = b.out.count("access: id=");
    assert!(
        served_a > 0 && served_b > 0,
        "a served {served_a}, b served {served_b}"
    );
}

#[test]
fn a_wrong_key_is_refused_at_the_handshake() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("locked");
    let mut decoded = vcs_agent::token::Token::decode(&token).unwrap();
    decoded.key = vcs_agent::token::Secret::new("wrong-key-value");
    let agent = start_agent(&agent_env(&decoded.encode(), &upstream.base(), &[]));
    agent
        .out
        .wait_for("refused the pool token", Duration::from_secs(10));
    let refusal = gateway
        .proc
        .out
        .wait_for("agent logins refused", Duration::from_secs(5));
    assert!(
        refusal.contains(&decoded.pool_ulid),
        "the gateway names the pool: {refusal}"
    );
    assert!(!gateway.proc.out.text().contains("wrong-key-value"));
    assert!(!agent.out.text().contains("wrong-key-value"));
    assert_eq!(gateway.pool_state("locked").1, 0);
}

#[test]
fn slots_match_parallelism_and_carry_metadata() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start("wide", &[("SPACELIFT_VCS_AGENT_PARALLELISM", "7")]);
    assert_eq!(
        gateway.pool_state("wide").0,
        1,
        "seven streams of one agent"
    );
}

#[test]
fn two_content_lengths_are_a_bad_request_even_when_equal() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start("twice", &[]);
    let mut raw = std::net::TcpStream::connect(&gateway.api_addr).unwrap();
    raw.write_all(
        format!(
            "POST /private/twice{} HTTP/1.1\r\nHost: x\r\n{}Content-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            post("echo"),
            gateway.auth_line()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"kind\":\"bad_request\""), "{answer}");
    assert!(answer.contains("Content-Length"), "{answer}");
    assert!(upstream.requests().is_empty(), "it reached the VCS");
}

#[test]
fn an_upstream_switching_protocols_is_upstream_unreachable_and_the_stream_stays() {
    let Tunnel {
        agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start("switch", &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")]);
    // Other 1xx statuses are interim answers ureq reads past; 101 is the one that ends an
    // exchange, so it is the one that must not reach the gateway.
    let code = 101;
    let (status, kind, message) = error_kind(
        client()
            .get(gateway.url("switch", &get(&format!("status&n={code}"))))
            .call()
            .unwrap(),
    );
    assert_eq!(
        (status, kind.as_str()),
        (502, "upstream_unreachable"),
        "{message}\nagent:\n{}\ngateway:\n{}",
        agent.out.text(),
        gateway.proc.out.text()
    );
    assert!(
        message.contains(&format!("{code} Switching Protocols")),
        "{message}"
    );
    let line = agent
        .out
        .wait_for(&format!("n={code} "), Duration::from_secs(5));
    assert!(
        line.contains("status=502 ") && line.contains("error=upstream_unreachable"),
        "{line}"
    );
    // The one stream is still there and serves the next request.
    let r = client()
        .get(gateway.url("switch", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gateway.pool_state("switch").1, 1);
}

/// `SPACELIFT_VCS_AGENT_GATEWAY_URLS`: the slots spread over the token's gateway and the
/// listed one (two gateways sharing a data directory, so one pool token works on both), each
/// front answers, and when one gateway dies its slots fall back to the other.
#[test]
fn slots_spread_over_gateway_urls_and_fall_back_when_one_dies() {
    let upstream = Upstream::start();
    let first = Gateway::start(&[]);
    let token = first.create_pool("spread");
    let shared_dir = TempDir(first.dir.0.clone());
    let second = Gateway::start_in(shared_dir, "127.0.0.1:0", "127.0.0.1:0", &[]);
    let second_url = format!("ws://{}", second.agent_addr);
    let target = format!("{}/gitlab", upstream.base());
    let extra = [
        ("SPACELIFT_VCS_AGENT_PARALLELISM", "4"),
        ("SPACELIFT_VCS_AGENT_GATEWAY_URLS", second_url.as_str()),
    ];
    let agent = start_agent(&agent_env(&token, &target, &extra));
    first.wait_streams("spread", 2);
    second.wait_streams("spread", 2);
    agent.out.wait_for(&second_url, Duration::from_secs(5));
    for gateway in [&first, &second] {
        let response = client()
            .get(gateway.url("spread", &get("echo")))
            .call()
            .unwrap();
        assert_eq!(response.status(), 200, "through {}", gateway.api_addr);
    }
    second.proc.signal("KILL");
    first.wait_streams("spread", 4);
    let response = client()
        .get(first.url("spread", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// `SPACELIFT_VCS_AGENT_MAX_STREAM_AGE`: after a gateway comes back, streams that fell back
/// to the other one are handed back when they age out and return to their own address.
#[test]
fn aged_streams_rebalance_when_a_gateway_returns() {
    let upstream = Upstream::start();
    let first = Gateway::start(&[]);
    let token = first.create_pool("rebalance");
    let second = Gateway::start_in(
        TempDir(first.dir.0.clone()),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[],
    );
    let second_url = format!("ws://{}", second.agent_addr);
    let target = format!("{}/gitlab", upstream.base());
    let extra = [
        ("SPACELIFT_VCS_AGENT_PARALLELISM", "4"),
        ("SPACELIFT_VCS_AGENT_GATEWAY_URLS", second_url.as_str()),
        ("SPACELIFT_VCS_AGENT_MAX_STREAM_AGE", "1s"),
    ];
    let _agent = start_agent(&agent_env(&token, &target, &extra));
    second.wait_streams("rebalance", 2);
    second.proc.signal("KILL");
    first.wait_streams("rebalance", 4);
    let back = Gateway::start_in(
        TempDir(first.dir.0.clone()),
        &second.agent_addr,
        "127.0.0.1:0",
        &[],
    );
    back.wait_streams("rebalance", 2);
    first.wait_streams("rebalance", 2);
    let response = client()
        .get(back.url("rebalance", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
}
