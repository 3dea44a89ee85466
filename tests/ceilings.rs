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
