//! Limits an attacker cannot exhaust: connections that never send a request head are closed
//! to admit new ones, one address holds only its share and its idle connections make room
//! for its new ones, a slow upload loses its agent stream,
//! and a flood of wrong agent keys is slowed down and summed up in the log.

use crate::support;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::*;

const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

#[test]
fn idle_connections_beyond_the_ceiling_do_not_keep_a_caller_out() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::options("busy")
        .gateway_args(&["--max-callers-per-address", "5000"])
        .start();
    // More idle connections than the api port serves (1 024 tunnel requests + 64 reserve).
    let idle: Vec<TcpStream> = (0..1200)
        .map(|_| TcpStream::connect(&gateway.api_addr).unwrap())
        .collect();
    let started = Instant::now();
    let response = client()
        .get(gateway.url("busy", ARCHIVE))
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call()
        .expect("a good request during the flood");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    eprintln!("answered in {elapsed:?} with 1200 idle connections open");
    // The oldest idle ones were closed to make room.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(first.read(&mut byte), Ok(0) | Err(_)));
    drop(idle);
}

#[test]
fn idle_connections_of_one_address_make_room_for_its_callers_and_its_operator() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start("nat", &[]);
    // Everyone behind one NAT: 256 idle sockets (the per-address ceiling) from 127.0.0.1.
    let idle: Vec<TcpStream> = (0..256)
        .map(|_| TcpStream::connect(&gateway.api_addr).unwrap())
        .collect();
    let quick = |request: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
        request
            .config()
            .timeout_global(Some(Duration::from_secs(1)))
            .build()
            .call()
    };
    let caller = quick(client().get(gateway.url("nat", ARCHIVE))).expect("the caller answered");
    assert_eq!(caller.status(), 200);
    let (name, value) = gateway.admin_header();
    let health = format!("http://{}/healthz", gateway.api_addr);
    let operator = quick(client().get(&health).header(name, value)).expect("the operator answered");
    assert_eq!(operator.status(), 200);
    // The oldest idle ones were closed to make room.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(first.read(&mut byte), Ok(0) | Err(_)));
}

#[test]
fn an_address_whose_connections_all_work_gets_no_more() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::options("held")
        .gateway_args(&["--max-callers-per-address", "2"])
        .start();
    let held = "/api/v4/projects/group%2Frepo/repository/archive?do=held";
    std::thread::scope(|scope| {
        let working: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| client().get(gateway.url("held", held)).call()))
            .collect();
        // (Not through /healthz: that would be a third connection from this address.)
        upstream.wait_for_requests(2, Duration::from_secs(10));
        let mut third = TcpStream::connect(&gateway.api_addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(third.read(&mut byte), Ok(0) | Err(_)));
        gateway.proc.out.wait_for(
            "all working, the most one address may",
            Duration::from_secs(5),
        );
        upstream.release_held();
        for request in working {
            assert_eq!(request.join().unwrap().unwrap().status(), 200);
        }
    });
}

#[test]
fn a_slow_upload_is_cut_off_after_the_grace_and_its_stream_released() {
    use std::io::Write;
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::options("slow")
        .gateway_args(&["--upload-grace", "1s", "--min-upload-rate", "10000"])
        .agent_env(&[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")])
        .start();
    let mut raw = TcpStream::connect(&gateway.api_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // More than the first 64 KiB (read before a stream is taken), then a byte at a time.
    let head = format!(
        "POST /private/slow/group/repo.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n{}\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 100000000\r\n\r\n",
        gateway.auth_line()
    );
    raw.write_all(head.as_bytes()).unwrap();
    raw.write_all(&vec![b'0'; 70_000]).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the upload to hold the stream",
        || gateway.pool_state("slow").2 == 1,
    );
    // The caller keeps sending (10 bytes a second, far below the rate) for this long: an
    // answer before it ends was the gateway cutting the upload off, not the caller stopping.
    let dribble = Duration::from_secs(15);
    let started = Instant::now();
    let mut trickle = raw.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        while trickle.write_all(b"0").is_ok() && started.elapsed() < dribble {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut answer = String::new();
    let _ = (&raw).read_to_string(&mut answer);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"kind\":\"bad_request\""), "{answer}");
    assert!(
        took < dribble,
        "cut off after {took:?}, not while the body came"
    );
    // The stream is free again at once: the next request is served.
    wait_until(Duration::from_secs(10), "the stream back", || {
        gateway.pool_state("slow").1 == 1 && gateway.pool_state("slow").2 == 0
    });
    let ok = client().get(gateway.url("slow", ARCHIVE)).call().unwrap();
    assert_eq!(ok.status(), 200);
    drop(raw);
    dribbler.join().unwrap();
}

/// One agent login with `key` for `ulid`; returns the status and how long the answer took.
fn login(agent_addr: &str, ulid: &str, key: &str) -> (u16, Duration) {
    use vcs_agent::protocol;
    let started = Instant::now();
    let tcp = TcpStream::connect(agent_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let url = format!("ws://{agent_addr}{}", protocol::CONNECT_PATH);
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    let headers = request.headers_mut();
    for (name, value) in [
        (protocol::HEADER_POOL_ULID, ulid),
        (protocol::HEADER_KEY, key),
        (protocol::HEADER_PROTOCOL, protocol::PROTOCOL_VERSION),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let status = match tungstenite::client::client(request, tcp) {
        Ok(_) => 101,
        Err(tungstenite::handshake::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            r.status().as_u16()
        }
        Err(_) => 0,
    };
    (status, started.elapsed())
}

#[test]
fn a_wrong_key_flood_is_slowed_and_summed_up_while_a_valid_agent_logs_in() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("target");
    let ulid = vcs_agent::token::Token::decode(&token).unwrap().pool_ulid;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (addr, ulid, stop) = (gateway.agent_addr.clone(), ulid.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    answers.push(login(&addr, &ulid, "guessed-key"));
                }
                answers
            })
        })
        .collect();
    // A valid agent logs in during the flood.
    gateway
        .proc
        .out
        .wait_for("agent logins refused", Duration::from_secs(10));
    let _agent = start_agent(&agent_env(&token, &upstream.base(), &[]));
    gateway.wait_streams("target", 2);
    // And without delay: refused logins from this address now wait up to 5 s (doubling from
    // 250 ms with each failure), a valid key's handshake is answered at once.
    let key = vcs_agent::token::Token::decode(&token).unwrap().key;
    let (status, valid) = login(&gateway.agent_addr, &ulid, key.expose());
    assert_eq!(status, 101, "the valid key was refused");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<(u16, Duration)> = flood.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        answers.iter().all(|(status, _)| *status == 401),
        "{answers:?}"
    );
    assert!(answers.len() >= 16, "only {} refusals", answers.len());
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    assert!(
        slowest >= Duration::from_millis(250),
        "no refusal was delayed"
    );
    assert!(
        valid < Duration::from_millis(2500),
        "a valid login took {valid:?} during the flood"
    );
    // One summary line per interval (5 s), not one line per refusal.
    let lines = gateway.proc.out.count("refused");
    let intervals = flood_started.elapsed().as_secs() as usize / 5 + 1;
    assert!(
        lines <= intervals && lines < answers.len(),
        "{lines} log lines for {} refusals:\n{}",
        answers.len(),
        gateway.proc.out.text()
    );
    let summary = gateway
        .proc
        .out
        .wait_for("agent logins refused", Duration::from_secs(1));
    assert!(
        summary.contains(&ulid) && summary.contains("127.0.0.1="),
        "{summary}"
    );
}

#[test]
fn past_max_callers_tunnel_requests_are_refused_and_the_operator_still_gets_in() {
    use std::io::{BufRead, BufReader, Write};
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::options("full")
        .gateway_args(&["--max-callers", "2"])
        .agent_env(&[("SPACELIFT_VCS_AGENT_PARALLELISM", "2")])
        .start();
    // Two endless answers hold both tunnel places.
    let slow = "/api/v4/projects/group%2Frepo/repository/archive?do=slowbytes&n=100000000";
    let held: Vec<BufReader<TcpStream>> = (0..2)
        .map(|_| {
            let mut tcp = TcpStream::connect(&gateway.api_addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let request = format!(
                "GET /private/full{slow} HTTP/1.1\r\nHost: x\r\n{}\r\n",
                gateway.auth_line()
            );
            tcp.write_all(request.as_bytes()).unwrap();
            let mut reader = BufReader::new(tcp);
            let mut status = String::new();
            reader.read_line(&mut status).unwrap();
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            reader
        })
        .collect();
    let (status, kind, error) =
        error_kind(client().get(gateway.url("full", ARCHIVE)).call().unwrap());
    assert_eq!((status, kind.as_str()), (503, "queue_timeout"), "{error}");
    assert!(error.contains("at most 2"), "{error}");
    // The operator's endpoints answer from the connections kept for them.
    let (name, value) = gateway.admin_header();
    let health = bare_client()
        .get(format!("http://{}/healthz", gateway.api_addr))
        .header(name, value)
        .call()
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(held);
}
