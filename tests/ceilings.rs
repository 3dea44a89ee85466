//! Ceilings idle peers cannot fill: connections that never send a request head are closed to
//! admit new ones, and one address holds only its share.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::*;

const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

#[test]
fn idle_connections_beyond_the_ceiling_do_not_keep_a_caller_out() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&["--max-callers-per-address", "5000"]);
    let _agent = gateway.agent_for("busy", &upstream.base(), &[], 2);
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
fn one_address_cannot_hold_more_than_its_share() {
    let gateway = Gateway::start(&["--max-callers-per-address", "3"]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&gateway.api_addr).unwrap())
        .collect();
    let mut fourth = TcpStream::connect(&gateway.api_addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(fourth.read(&mut byte), Ok(0) | Err(_)));
    gateway
        .proc
        .out
        .wait_for("the most one address may", Duration::from_secs(5));
    drop(held);
}

#[test]
fn a_slow_upload_is_cut_off_after_the_grace_and_its_stream_released() {
    use std::io::Write;
    let upstream = Upstream::start();
    let gateway = Gateway::start(&["--upload-grace", "1s", "--min-upload-rate", "10000"]);
    let _agent = gateway.agent_for(
        "slow",
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")],
        1,
    );
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
    let started = Instant::now();
    let mut trickle = raw.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        while trickle.write_all(b"0").is_ok() && started.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut answer = String::new();
    let _ = (&raw).read_to_string(&mut answer);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"kind\":\"bad_request\""), "{answer}");
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    // The stream is free again at once: the next request is served.
    wait_until(Duration::from_secs(10), "the stream back", || {
        gateway.pool_state("slow").1 == 1 && gateway.pool_state("slow").2 == 0
    });
    let ok = client().get(gateway.url("slow", ARCHIVE)).call().unwrap();
    assert_eq!(ok.status(), 200);
    drop(raw);
    dribbler.join().unwrap();
}
