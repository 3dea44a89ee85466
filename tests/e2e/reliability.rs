//! Staying up and accounting for every request: truncation, cancellation, half-open
//! connections, graceful drains, a gateway restart under load, and load itself.

use crate::support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::relay::Relay;
use support::upstream::{Digest, PatternReader, Upstream};
use support::*;

/// An allowlisted GitLab path whose upstream route is `route`.
fn get(route: &str) -> String {
    format!("/api/v4/projects/group%2Frepo/repository/archive?do={route}")
}

#[test]
fn an_upstream_dying_mid_body_is_a_failed_transfer_for_the_caller() {
    let Tunnel {
        agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start("cut", &[]);
    for route in ["cut&n=300000", "cutchunked&n=300000"] {
        let response = client()
            .get(gateway.url("cut", &get(route)))
            .call()
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{route}: the head had already gone out"
        );
        let mut body = Vec::new();
        let read = response.into_body().into_reader().read_to_end(&mut body);
        assert!(
            read.is_err(),
            "{route}: a truncated body read as complete ({} bytes)",
            body.len()
        );
    }
    agent
        .out
        .wait_for("broke off the body", Duration::from_secs(5));
    // The stream survives an aborted answer.
    let r = client()
        .get(gateway.url("cut", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_caller_going_away_cancels_the_upstream_read() {
    // One stream only: after the cancellation the pool has no stream until the agent redials.
    let Tunnel {
        agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start("cancel", &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")]);
    let mut conn = std::net::TcpStream::connect(&gateway.api_addr).unwrap();
    let request = format!(
        "GET /private/cancel{} HTTP/1.1\r\nHost: x\r\n{}\r\n",
        get("slowbytes&n=100000000"),
        gateway.auth_line()
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut first = [0u8; 4096];
    assert!(conn.read(&mut first).unwrap() > 0);
    wait_until(
        Duration::from_secs(5),
        "the download to be in flight",
        || gateway.pool_state("cancel").2 == 1,
    );
    let gone = Instant::now();
    drop(conn);
    // A request sent while the only stream reconnects waits for it instead of failing.
    let r = client()
        .get(gateway.url("cancel", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200, "a request during the reconnect failed");
    eprintln!(
        "next request served {:?} after the caller left",
        gone.elapsed()
    );
    agent.out.wait_for("cancelled", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(5),
        "the stream to be idle again",
        || {
            let (_, streams, busy) = gateway.pool_state("cancel");
            streams == 1 && busy == 0
        },
    );
}

#[test]
fn half_open_gateway_connections_are_found_by_keepalive() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&["--keepalive", "300ms"]);
    let relay = Relay::start(gateway.agent_addr.clone());
    let token = gateway.create_pool_for("halfopen", &format!("ws://{}", relay.addr));
    let agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        // The shortest interval the agent accepts: silence is noticed after about 3 s.
        &[("SPACELIFT_VCS_AGENT_KEEPALIVE_INTERVAL", "1s")],
    ));
    gateway.wait_streams("halfopen", 2);
    relay.freeze_current();
    let frozen = Instant::now();
    agent
        .out
        .wait_for("no frame from the gateway", Duration::from_secs(10));
    gateway
        .proc
        .out
        .wait_for("no frame from the agent", Duration::from_secs(10));
    eprintln!("half-open connection found after {:?}", frozen.elapsed());
    // New connections through the relay work: the pool is whole again.
    gateway.wait_streams("halfopen", 2);
    let r = client()
        .get(gateway.url("halfopen", &get("echo")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn sigterm_lets_a_long_download_finish_then_exits_0() {
    let Tunnel {
        mut agent,
        gateway,
        upstream,
    } = Tunnel::start("drain", &[]);
    let len = 8 * 1024 * 1024;
    let url = gateway.url("drain", &get(&format!("slowbytes&n={len}")));
    let download = std::thread::spawn(move || {
        let response = client().get(url).call().unwrap();
        Digest::of_reader(response.into_body().into_reader())
    });
    upstream.wait_for_requests(1, Duration::from_secs(5));
    agent.signal("TERM");
    agent.out.wait_for("draining", Duration::from_secs(5));
    // Idle streams leave at once; the busy one stays until its answer is done.
    wait_until(Duration::from_secs(5), "the idle stream to leave", || {
        gateway.pool_state("drain").1 == 1
    });
    let got = download.join().unwrap().expect("the download completed");
    let want = Digest::of_reader(PatternReader { pos: 0, len }).unwrap();
    assert_eq!((got.0, got.1), (want.0, want.1));
    let status = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", agent.out.text());
    assert_eq!(gateway.pool_state("drain").1, 0);
}

#[test]
fn gateway_sigterm_finishes_requests_in_flight_and_refuses_new_ones() {
    let Tunnel {
        agent,
        mut gateway,
        upstream,
    } = Tunnel::start("gwdrain", &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")]);
    let url = gateway.url("gwdrain", &get("held"));
    let slow = std::thread::spawn(move || client().get(url).call().map(|r| r.status().as_u16()));
    upstream.wait_for_requests(1, Duration::from_secs(5));
    // A second request waits for the only stream.
    let url = gateway.url("gwdrain", &get("echo"));
    let queued = std::thread::spawn(move || client().get(url).call().map(error_kind));
    wait_until(Duration::from_secs(5), "a queued request", || {
        gateway.queued("gwdrain") == 1
    });
    gateway.proc.signal("TERM");
    // The queued one is woken by the drain and answered at once, long before the request in
    // flight finishes.
    let (status, kind, message) = queued.join().unwrap().unwrap();
    assert_eq!((status, kind.as_str()), (503, "no_agent"), "{message}");
    assert!(message.contains("shutting down"), "{message}");
    assert!(
        !slow.is_finished(),
        "the queued request waited for the drain to end"
    );
    gateway
        .proc
        .out
        .wait_for("draining", Duration::from_secs(5));
    let (status, kind, message) = error_kind(
        client()
            .get(gateway.url("gwdrain", &get("echo")))
            .call()
            .unwrap(),
    );
    assert_eq!((status, kind.as_str()), (503, "no_agent"), "{message}");
    assert!(message.contains("shutting down"), "{message}");
    upstream.release_held();
    assert_eq!(
        slow.join().unwrap().unwrap(),
        200,
        "the request in flight finished"
    );
    let exit = gateway.proc.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0));
    agent
        .out
        .wait_for("the gateway closed the stream", Duration::from_secs(5));
}

/// Either program, draining with a request in flight, exits at once with 130 on a second
/// signal instead of waiting for it.
#[test]
fn a_second_signal_ends_the_drain_at_once_with_130() {
    for program in ["agent", "gateway"] {
        let Tunnel {
            mut agent,
            mut gateway,
            upstream,
        } = Tunnel::start("twice", &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")]);
        let url = gateway.url("twice", &get("hang"));
        std::thread::spawn(move || client().get(url).call().map(|r| r.status().as_u16()));
        upstream.wait_for_requests(1, Duration::from_secs(5));
        let proc = match program {
            "agent" => &mut agent,
            _ => &mut gateway.proc,
        };
        proc.signal("TERM");
        proc.out.wait_for("draining", Duration::from_secs(5));
        proc.signal("TERM");
        let status = proc.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(130), "{program}: {}", proc.out.text());
        assert!(proc.out.text().contains("second signal"), "{program}");
    }
}

#[test]
fn a_gateway_restart_under_load_recovers_quickly() {
    let upstream = Upstream::start();
    let first = Gateway::start(&[]);
    let (agent_addr, api_addr) = (first.agent_addr.clone(), first.api_addr.clone());
    let _agent = first.agent_for(
        "restart",
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "4")],
        4,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = first.url("restart", &get("sleep&n=5"));
    let workers: Vec<_> =
        (0..6)
            .map(|_| {
                let (stop, ok, failed, url) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    url.clone(),
                );
                std::thread::spawn(move || {
                    let c = client();
                    while !stop.load(Ordering::SeqCst) {
                        match c.get(&url).call().and_then(|r| {
                            Ok((r.status().as_u16(), r.into_body().read_to_string()?))
                        }) {
                            Ok((200, body)) if body == "slept" => ok.fetch_add(1, Ordering::SeqCst),
                            // During the outage: refused connections or clean 5xx answers, never a wrong body.
                            Ok((status, body)) => {
                                assert!(status >= 500, "unexpected {status}: {body}");
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                            Err(_) => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
    wait_until(Duration::from_secs(10), "load to flow", || {
        ok.load(Ordering::SeqCst) > 50
    });

    let mut first = first;
    first.proc.child.kill().unwrap();
    let _ = first.proc.wait_exit(Duration::from_secs(5));
    let dir = std::mem::replace(&mut first.dir, TempDir::new("unused"));
    drop(first);
    let second = Gateway::start_in(dir, &agent_addr, &api_addr, &[]);
    let listening = Instant::now();
    second.wait_streams("restart", 4);
    let reconnect = listening.elapsed();
    eprintln!("all 4 streams back {reconnect:?} after the gateway listened again");
    assert!(
        reconnect < Duration::from_secs(5),
        "reconnect took {reconnect:?}"
    );

    let before = ok.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(10), "load to flow again", || {
        ok.load(Ordering::SeqCst) > before + 50
    });
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!(
        "{} ok, {} failed during the restart",
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
}

#[test]
fn twenty_thousand_requests_each_reach_their_caller() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("load");
    let four = [("SPACELIFT_VCS_AGENT_PARALLELISM", "4")];
    let a = start_agent(&agent_env(&token, &upstream.base(), &four));
    let b = start_agent(&agent_env(&token, &upstream.base(), &four));
    gateway.wait_streams("load", 8);

    const CALLERS: usize = 64;
    const TOTAL: usize = 20_000;
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let base = gateway.url("load", &get("echo"));
            std::thread::spawn(move || {
                let c = client();
                let mut i = caller;
                while i < TOTAL {
                    let rid = format!("{caller}-{i}");
                    let response = c.get(format!("{base}&rid={rid}")).call().unwrap();
                    assert_eq!(response.status(), 200);
                    let echo: serde_json::Value =
                        serde_json::from_str(&response.into_body().read_to_string().unwrap())
                            .unwrap();
                    let target = echo["target"].as_str().unwrap_or("");
                    assert!(
                        target.ends_with(&format!("&rid={rid}")),
                        "caller {caller} got the answer for {target}"
                    );
                    i += CALLERS;
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(upstream.requests().len(), TOTAL);
    wait_until(Duration::from_secs(10), "every access line", || {
        a.out.count("access: id=") + b.out.count("access: id=") == TOTAL
    });
    let (served_a, served_b) = (a.out.count("access: id="), b.out.count("access: id="));
    eprintln!(
        "{TOTAL} requests in {elapsed:?} ({:.0}/s); agent a {served_a}, agent b {served_b}",
        TOTAL as f64 / elapsed.as_secs_f64()
    );
    assert!(
        served_a > TOTAL / 10 && served_b > TOTAL / 10,
        "unfair share: {served_a} / {served_b}"
    );
}
