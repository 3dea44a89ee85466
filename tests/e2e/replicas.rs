//! Several gateways sharing pools and callers through a real `redis-server` (started here on
//! a private unix socket, no TCP port, stopped by PID): changes on one replica are in force
//! on the others within a second, by pub/sub or by the polled version alone; a stopped or
//! killed Redis leaves traffic going and changes refused with 503 until it is back; requests
//! reaching a replica without an idle stream of their pool are forwarded, signed, over the
//! peer port to one with streams, and a replica killed under load fails only what was in
//! flight on it.

use crate::support;

use std::process::Command;
use std::time::Duration;
use support::replicas::*;
use support::upstream::Upstream;
use support::*;
use vcs_agent::token::Token;

/// A pool made through one replica's API appears on another and takes its agents; its key
/// rotated through a third closes the old streams; all within a second.
fn changes_reach_every_replica(extra: &[&str]) {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", extra);
    let two = Replica::start(&redis, "two", extra);
    let three = Replica::start(&redis, "three", extra);

    let (status, created) = one.api("POST", "pools", r#"{"name":"alpha"}"#);
    assert_eq!(status, 201, "{created}");
    wait_until(Duration::from_secs(1), "alpha on replica three", || {
        three.has_pool("alpha")
    });
    let token = three.token_here(created["token"].as_str().expect("token"));
    let target = format!("{}/gitlab", upstream.base());
    let _agent = start_agent(&agent_env(&token, &target, &[]));
    wait_until(Duration::from_secs(15), "agent streams on three", || {
        three.streams("alpha") == 2
    });
    assert_eq!(three.get("alpha", &secret), 200);

    let (status, rotated) = two.api("POST", "pools/alpha/rotate", "");
    assert_eq!(status, 200, "{rotated}");
    wait_until(
        Duration::from_secs(1),
        "old streams closed on three",
        || three.streams("alpha") == 0,
    );
    // The agent with the old key stays out; a request finds no stream.
    assert_ne!(three.get("alpha", &secret), 200);
    assert_eq!(three.streams("alpha"), 0);
}

#[test]
fn changes_reach_every_replica_within_a_second() {
    changes_reach_every_replica(&[]);
}

#[test]
fn changes_reach_every_replica_by_polling_alone() {
    changes_reach_every_replica(&["--redis-poll-only"]);
}

#[test]
fn the_cli_changes_pools_and_callers_in_redis() {
    let redis = Redis::start();
    let token = cli(&redis, &["pool", "create", "--name", "beta"]);
    assert!(Token::decode(token.trim()).is_ok());
    assert!(cli(&redis, &["pool", "list"]).contains("beta"));
    // The URL may come from the environment instead (a password stays out of `ps`).
    let listed = Command::new(GATEWAY)
        .args(["pool", "list"])
        .env("VCS_GATEWAY_REDIS_URL", redis.url())
        .output()
        .expect("pool list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("beta"));
    let secret = caller_secret(&redis);
    assert!(cli(&redis, &["caller", "list"]).contains("saas"));
    // Only hashes are stored.
    let dump = Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["MGET", "vcs-gateway:pools", "vcs-gateway:callers"])
        .output()
        .expect("redis-cli");
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    let key = Token::decode(token.trim()).expect("token").key;
    assert!(dump.contains("beta") && dump.contains("saas"));
    assert!(!dump.contains(key.expose()) && !dump.contains(&secret));
    // The first replica stores the admin token's hash; one with another token is refused.
    let _one = Replica::start(&redis, "one", &[]);
    let stored = Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["GET", "vcs-gateway:admin-token-sha256"])
        .output()
        .expect("redis-cli");
    let stored = String::from_utf8_lossy(&stored.stdout).trim().to_string();
    assert_eq!(stored.len(), 64, "{stored}");
    assert!(!stored.contains(ADMIN));
    let other = Command::new(GATEWAY)
        .args([
            "serve",
            "--redis",
            &redis.url(),
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(["--agent-listen", "127.0.0.1:0"])
        .args(["--admin-token", "another-admin-token-0123456789"])
        .output()
        .expect("serve");
    assert_eq!(other.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("--admin-token"), "{stderr}");
    let rotated = cli(&redis, &["pool", "rotate", "--name", "beta"]);
    assert_ne!(rotated.trim(), token.trim());
    assert!(cli(&redis, &["pool", "delete", "--name", "beta"]).contains("deleted"));
    assert!(!cli(&redis, &["pool", "list"]).contains("beta"));
}

#[test]
fn requests_do_not_touch_redis() {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", &[]);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    let before = redis.calls("mget");
    for _ in 0..200 {
        assert_eq!(one.get("alpha", &secret), 200);
    }
    // The documents are read only when the version moves; nothing changed meanwhile.
    assert_eq!(redis.calls("mget"), before);
}

#[test]
fn a_stopped_or_killed_redis_leaves_traffic_going_and_refuses_changes() {
    let Cluster {
        mut redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let three = Replica::start(&redis, "three", PEER);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    wait_until(Duration::from_secs(5), "three forwards to one", || {
        three.get("alpha", &secret) == 200
    });

    assert_eq!(one.health()["replica"]["redis_reachable"], true);
    redis.signal("STOP");
    let (status, body) = one.api("POST", "pools", r#"{"name":"stopped"}"#);
    assert_eq!(status, 503, "{body}");
    assert_eq!(one.health()["replica"]["redis_reachable"], false);
    assert!(one
        .metrics()
        .contains("vcs_gateway_redis_reachable{replica=\"one\"} 0"));
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Redis is unreachable"));
    for _ in 0..20 {
        assert_eq!(one.get("alpha", &secret), 200);
        // Forwarding goes on with the routing last read.
        assert_eq!(three.get("alpha", &secret), 200);
    }
    redis.signal("CONT");
    redis.kill();
    for _ in 0..20 {
        assert_eq!(one.get("alpha", &secret), 200);
    }
    let (status, _) = three.api("DELETE", "pools/alpha", "");
    assert_eq!(status, 503);
    one.proc
        .out
        .wait_for("is unreachable", Duration::from_secs(5));

    redis.run();
    wait_until(Duration::from_secs(10), "a change accepted again", || {
        one.api("POST", "pools", r#"{"name":"after"}"#).0 == 201
    });
    wait_until(
        Duration::from_secs(2),
        "the change on replica three",
        || three.has_pool("after"),
    );
    assert!(three.has_pool("alpha"), "data kept by the append-only file");
    assert_eq!(one.get("alpha", &secret), 200);
    one.proc
        .out
        .wait_for("reachable again", Duration::from_secs(5));
}

#[test]
fn presence_records_lapse_after_a_crash_and_leave_at_once_on_drain() {
    let redis = Redis::start();
    let upstream = Upstream::start();
    let one = Replica::start(&redis, "one", &[]);
    let two = Replica::start(&redis, "two", &[]);
    let (_, created) = one.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    let target = format!("{}/gitlab", upstream.base());
    let _agent_one = start_agent(&agent_env(&token, &target, &[]));
    let _agent_two = start_agent(&agent_env(&two.token_here(&token), &target, &[]));
    let both = vec![
        "vcs-gateway:presence:alpha:one".to_string(),
        "vcs-gateway:presence:alpha:two".to_string(),
    ];
    wait_until(Duration::from_secs(15), "both replicas present", || {
        redis.keys("vcs-gateway:presence:*") == both
    });
    assert!(redis.keys("vcs-gateway:presence:beta:*").is_empty());

    // Draining: its record goes at once (well before it would expire).
    two.proc.signal("TERM");
    wait_until(Duration::from_secs(2), "two's record removed", || {
        redis.keys("vcs-gateway:presence:*") == both[..1]
    });
    // Crashed: its record lapses within the expiry.
    one.proc.signal("KILL");
    wait_until(Duration::from_secs(7), "one's record lapsed", || {
        redis.keys("vcs-gateway:presence:*").is_empty()
    });
}

#[test]
fn a_redis_restarted_empty_is_logged_once_a_minute_and_refilled_by_the_next_change() {
    let mut redis = Redis::start();
    let one = Replica::start(&redis, "one", &[]);
    let three = Replica::start(&redis, "three", &[]);
    assert_eq!(one.api("POST", "pools", r#"{"name":"alpha"}"#).0, 201);
    wait_until(Duration::from_secs(2), "the pool on replica three", || {
        three.has_pool("alpha")
    });

    // Killed, and its append-only file lost: it comes back empty.
    redis.kill();
    std::fs::remove_dir_all(redis.dir.0.join("appendonlydir")).expect("remove the AOF");
    redis.run();
    one.proc
        .out
        .wait_for("has lost its data", Duration::from_secs(10));
    // Each replica polls the version every 500 ms: after several more polls the loss is
    // still one line, not one per poll.
    let polls = redis.calls("get");
    wait_until(Duration::from_secs(10), "six more polls", || {
        redis.calls("get") >= polls + 6
    });
    assert_eq!(one.proc.out.count("has lost its data"), 1);
    assert!(one.has_pool("alpha"), "the last state read is kept");

    // The first change made now writes the last state back with itself, and reaches the
    // other replica.
    let (status, body) = one.api("POST", "pools", r#"{"name":"after"}"#);
    assert_eq!(status, 201, "{body}");
    wait_until(
        Duration::from_secs(2),
        "the change on replica three",
        || three.has_pool("after"),
    );
    assert!(
        three.has_pool("alpha"),
        "the pools from before the loss are written back"
    );
    assert_eq!(redis.keys("vcs-gateway:pools").len(), 1);
}

/// The figures of `replica`'s `/healthz` `replica` object.
fn peer_figures(replica: &Replica) -> (u64, u64, u64) {
    let health = replica.health();
    let figure = |name: &str| health["replica"][name].as_u64().unwrap_or(0);
    (
        figure("forwarded_in"),
        figure("forwarded_out"),
        figure("peer_errors"),
    )
}

#[test]
fn requests_reaching_replicas_without_streams_are_forwarded_to_the_one_with_them() {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let two = Replica::start(&redis, "two", PEER);
    let three = Replica::start(&redis, "three", PEER);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    assert_eq!((two.streams("alpha"), three.streams("alpha")), (0, 0));
    // The routing table is read once a second.
    wait_until(Duration::from_secs(5), "two and three forward", || {
        two.echo("alpha", &secret, "warm").0 == 200 && three.echo("alpha", &secret, "warm").0 == 200
    });

    let before = redis.total_calls();
    let started = std::time::Instant::now();
    let mut last_id = String::new();
    for i in 0..200 {
        let replica = if i % 2 == 0 { &two } else { &three };
        let marker = format!("r{i}");
        let (status, target, id) = replica.echo("alpha", &secret, &marker);
        assert_eq!(status, 200, "request {i}");
        assert!(target.ends_with(&format!("m={marker}")), "{target}");
        assert_eq!(id.len(), 26, "one request id: {id}");
        last_id = id;
    }
    let (calls, seconds) = (
        redis.total_calls() - before,
        started.elapsed().as_secs_f64(),
    );
    // Three replicas poll and refresh presence and routing in the background, a handful of
    // commands a second each; each of the 200 forwarded requests adds one `SET NX` (its id,
    // served once across all replicas), and nothing else.
    assert!(
        (calls as f64) < 10.0 + 12.0 * seconds + 200.0,
        "{calls} Redis commands in {seconds:.1} s for 200 forwarded requests"
    );
    println!("{calls} Redis commands in {seconds:.1} s for 200 forwarded requests");
    // One id, logged by the replica that received the request and the one that served it.
    let needle = format!("id={last_id}");
    let received = three.proc.out.wait_for(&needle, Duration::from_secs(5));
    let served = one.proc.out.wait_for(&needle, Duration::from_secs(5));
    assert!(received.contains("agent=replica:one"), "{received}");
    assert!(
        served.contains("status=200") && served.contains("caller=saas"),
        "{served}"
    );
    let (forwarded_in, _, errors) = peer_figures(&one);
    assert!(forwarded_in >= 202, "{forwarded_in}");
    assert_eq!(errors, 0);
    assert!(peer_figures(&two).1 >= 101 && peer_figures(&three).1 >= 101);
    assert!(two
        .metrics()
        .contains("vcs_gateway_forwarded_out_total{replica=\"two\"}"));
    // The replica holding streams serves its own requests locally.
    assert_eq!(one.echo("alpha", &secret, "local").0, 200);
    assert_eq!(peer_figures(&one).1, 0);
}

/// A raw HTTP/1.1 request on `addr`: the status code, 0 when the connection yields none.
fn raw_status(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    // The final status, after any `100 Continue`.
    let status = answer
        .trim_start_matches("HTTP/1.1 100 Continue\r\n\r\n")
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A forwarded request as `from` would sign it with `secret`, `age_ms` old.
fn peer_request(secret: &str, target: &str, age_ms: u64) -> String {
    peer_request_with(secret, "GET", target, age_ms, &[], b"")
}

/// A signed forwarded request with `headers` (after `Host` and `Connection`) and a body.
fn peer_request_with(
    secret: &str,
    method: &str,
    target: &str,
    age_ms: u64,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    use vcs_agent::gateway::replicas::signing;
    let secret = signing::PeerSecret::new(vcs_agent::token::Secret::new(secret)).expect("secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let length = body.len().to_string();
    let mut sent = vec![("Host", "x"), ("Connection", "close")];
    sent.extend_from_slice(headers);
    if !body.is_empty() {
        sent.push(("Content-Length", &length));
    }
    let signed = signing::Signed {
        method,
        target,
        id: "01JAAAAAAAAAAAAAAAAAAAAAAA",
        from: "two",
        caller: "saas",
        time_ms: now - age_ms,
        headers: signing::headers_digest(sent.iter().copied()),
        body: signing::body_digest(body),
        front: "",
    };
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in sent {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in signing::headers(&secret, &signed) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request + "\r\n" + &String::from_utf8_lossy(body)
}

#[test]
fn a_captured_peer_request_is_served_once_across_replicas_and_only_as_signed() {
    let Cluster {
        redis, upstream, ..
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let three = Replica::start(&redis, "three", PEER);
    let (_, created) = one.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    let vcs = format!("{}/gitlab", upstream.base());
    let _agents = [&one, &three].map(|r| start_agent(&agent_env(&r.token_here(&token), &vcs, &[])));
    wait_until(Duration::from_secs(30), "streams on both replicas", || {
        one.streams("alpha") == 2 && three.streams("alpha") == 2
    });
    let target = "/private/alpha/api/v4/projects/group%2Frepo/statuses/0123456789abcdef0123456789abcdef01234567?do=echo";
    let body = br#"{"state":"success"}"#;
    let json = [("Content-Type", "application/json")];
    let captured = peer_request_with(PEER_SECRET, "POST", target, 0, &json, body);
    let (status, answer) = raw_status(&one.peer_addr, &captured);
    assert_eq!(status, 200, "{answer}");
    // Replayed to another replica: it was served already, somewhere.
    let (status, answer) = raw_status(&three.peer_addr, &captured);
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("already served"), "{answer}");
    // With a header added, or another body of the same length: the signature does not hold.
    let with_token = captured.replacen(
        "Content-Type: application/json\r\n",
        "Content-Type: application/json\r\nPRIVATE-TOKEN: glpat-swapped\r\n",
        1,
    );
    let swapped_body = captured.replace(r#"{"state":"success"}"#, r#"{"state":"failure"}"#);
    for (what, request) in [("header", with_token), ("body", swapped_body)] {
        let fresh = request.replace("01JAAAAAAAAAAAAAAAAAAAAAAA", "01JBBBBBBBBBBBBBBBBBBBBBBB");
        for replica in [&one, &three] {
            let (status, answer) = raw_status(&replica.peer_addr, &fresh);
            assert_eq!(status, 403, "{what}: {answer}");
            assert!(
                answer.contains("signed with the peer secret"),
                "{what}: {answer}"
            );
        }
    }
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the request as signed reached the VCS"
    );
}

#[test]
fn the_peer_port_serves_only_signed_forwarded_requests_and_the_api_port_never_them() {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    let target = "/private/alpha/api/v4/projects/group%2Frepo/repository/archive?do=echo";

    // Signed with the replicas' secret: served.
    let (status, answer) = raw_status(&one.peer_addr, &peer_request(PEER_SECRET, target, 0));
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("01JAAAAAAAAAAAAAAAAAAAAAAA"), "{answer}");
    // The same signed request again: refused (each id is served once).
    let (status, answer) = raw_status(&one.peer_addr, &peer_request(PEER_SECRET, target, 0));
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("already served"), "{answer}");
    // Unsigned, forged (another secret), too old, or changed after signing: refused.
    let unsigned = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let forged = peer_request("another-secret-0123456789abcdef-987654", target, 0);
    let old = peer_request(PEER_SECRET, target, 60_000);
    let changed = peer_request(PEER_SECRET, target, 0).replace("do=echo", "do=hang");
    for (what, request) in [
        ("unsigned", &unsigned),
        ("forged", &forged),
        ("old", &old),
        ("changed", &changed),
    ] {
        let (status, answer) = raw_status(&one.peer_addr, request);
        assert_eq!(status, 403, "{what}: {answer}");
        assert!(
            answer.contains("signed with the peer secret"),
            "{what}: {answer}"
        );
    }
    one.proc
        .out
        .wait_for("does not match", Duration::from_secs(5));
    assert_eq!(peer_figures(&one).2, 5);
    // The peer port serves no api, panel or health; the api port takes a signed request as
    // any other: without a caller's secret it is refused.
    for path in ["/healthz", "/metrics", "/api/pools", "/"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
        assert_eq!(raw_status(&one.peer_addr, &request).0, 403, "{path}");
    }
    let (status, answer) = raw_status(&one.api_addr, &peer_request(PEER_SECRET, target, 0));
    assert_eq!(status, 401, "{answer}");
    assert_eq!(one.get("alpha", &secret), 200);
    // Refusals of one kind are logged once every 5 s, not once each.
    assert_eq!(one.proc.out.count("is not signed"), 1);
    let secret_seen = one.proc.out.text().contains(PEER_SECRET);
    assert!(!secret_seen, "the peer secret reached the log");
}

#[test]
fn a_replica_with_another_peer_secret_is_refused_and_a_weak_or_missing_secret_exits_2() {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    let wrong = Replica::start_with(
        &redis,
        "wrong",
        &["--peer-listen", "127.0.0.1:0", "--queue-timeout", "2s"],
        &[(
            "VCS_GATEWAY_PEER_SECRET",
            "not-the-replicas-secret-0123456789abc",
        )],
    );
    // Its forwards are refused (once it has read the routing table): requests wait out
    // their queue timeout.
    wait_until(Duration::from_secs(10), "a forward refused", || {
        assert_eq!(wrong.echo("alpha", &secret, "x").0, 503);
        peer_figures(&wrong).2 >= 1
    });
    one.proc
        .out
        .wait_for("signature does not match", Duration::from_secs(5));
    wrong
        .proc
        .out
        .wait_for("refused a forwarded request (403)", Duration::from_secs(5));
    assert!(peer_figures(&wrong).2 >= 1);

    for (env, flags, needle) in [
        ("", vec!["--peer-listen", "127.0.0.1:0"], "--peer-secret"),
        (
            "short",
            vec!["--peer-listen", "127.0.0.1:0"],
            "--peer-secret",
        ),
        (
            PEER_SECRET,
            vec!["--peer-listen", "0.0.0.0:0"],
            "--peer-advertise",
        ),
    ] {
        let output = Command::new(GATEWAY)
            .args(["serve", "--redis", &redis.url(), "--admin-token", ADMIN])
            .args([
                "--agent-listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args(&flags)
            .env("VCS_GATEWAY_PEER_SECRET", env)
            .output()
            .expect("serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(env.is_empty() || !stderr.contains(env), "{stderr}");
    }
}

/// Callers and requests each for the load test with a replica killed midway.
const CALLERS: usize = 64;
const REQUESTS_EACH: usize = 2000;

#[test]
fn a_replica_killed_under_load_fails_only_the_requests_in_flight_on_it() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    // Access lines (two per forwarded request) stay out of the captured output.
    let quiet = [("RUST_LOG", "info,front=warn")];
    // 64 callers share six streams, two of them redialling after the kill: on a loaded
    // machine a request may wait longer than the usual 5 s for one, which is not what this
    // test is about (a queue timeout is a 503 too).
    let flags = [PEER, &["--queue-timeout", "60s"]].concat();
    let start = |id: &str| Replica::start_with(&redis, id, &flags, &quiet);
    let replicas = [start("one"), start("two"), start("three")];
    let (status, created) = replicas[0].api("POST", "pools", r#"{"name":"alpha"}"#);
    assert_eq!(status, 201, "{created}");
    let token = replicas[0].token_here(created["token"].as_str().expect("token"));
    let others = format!(
        "ws://{},ws://{}",
        replicas[1].agent_addr, replicas[2].agent_addr
    );
    let _agent = start_agent(&agent_env(
        &token,
        &format!("{}/gitlab", upstream.base()),
        &[
            ("SPACELIFT_VCS_AGENT_PARALLELISM", "6"),
            ("SPACELIFT_VCS_AGENT_GATEWAY_URLS", &others),
            ("RUST_LOG", "warn"),
        ],
    ));
    wait_until(
        Duration::from_secs(30),
        "two streams on each replica",
        || replicas.iter().all(|r| r.streams("alpha") == 2),
    );
    // Every replica has read the routing table: it knows the two others hold streams.
    wait_until(Duration::from_secs(5), "routes on every replica", || {
        replicas.iter().all(|r| {
            r.health()["replica"]["routes"]["alpha"]
                .as_array()
                .map_or(0, Vec::len)
                == 2
        })
    });

    let (done, killed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let failures = std::sync::Mutex::new(Vec::new());
    let victim = 1;
    std::thread::scope(|scope| {
        for c in 0..CALLERS {
            let (replicas, secret, done, killed, failures) =
                (&replicas, &secret, &done, &killed, &failures);
            scope.spawn(move || {
                let client = bare_client();
                for k in 0..REQUESTS_EACH {
                    let after_kill = killed.load(Ordering::SeqCst);
                    let mut index = (c + k) % 3;
                    if after_kill && index == victim {
                        index = (index + 1) % 3;
                    }
                    let marker = format!("c{c}k{k}");
                    let (status, target, _) =
                        replicas[index].echo_with(&client, "alpha", secret, &marker);
                    if status == 200 {
                        assert!(
                            target.ends_with(&format!("m={marker}")),
                            "{marker}: {target}"
                        );
                    } else {
                        failures
                            .lock()
                            .expect("failures")
                            .push((c, k, index, status, after_kill));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        wait_until(Duration::from_secs(300), "half the requests", || {
            done.load(Ordering::SeqCst) >= CALLERS * REQUESTS_EACH / 2
        });
        replicas[victim].proc.signal("KILL");
        killed.store(true, Ordering::SeqCst);
    });
    let failures = failures.into_inner().expect("failures");
    println!(
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        CALLERS * REQUESTS_EACH
    );
    // Only requests in flight when the replica died: sent to it, or forwarded to it (502).
    assert!(failures.len() <= CALLERS, "{failures:?}");
    for (c, k, index, status, after_kill) in &failures {
        assert!(
            !after_kill,
            "caller {c} request {k} started after the kill: {status}"
        );
        assert!(
            *index == victim || *status == 502,
            "caller {c} request {k} on {index}: {status}"
        );
    }
    // Streams were often all busy on the replica a request reached: others served it.
    let forwarded = peer_figures(&replicas[0]).1 + peer_figures(&replicas[2]).1;
    assert!(forwarded > 0, "no request was forwarded");
    println!("{forwarded} requests forwarded by the survivors");
    // The agent's slots on the killed replica come back on the others.
    wait_until(
        Duration::from_secs(15),
        "six streams on the survivors",
        || replicas[0].streams("alpha") + replicas[2].streams("alpha") == 6,
    );
}

#[test]
fn rediss_with_a_private_ca_given_by_redis_ca() {
    use support::tls::Ca;
    let dir = TempDir::new("redis-tls");
    let ca = Ca::new("redis test CA");
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(&dir, "redis");
    let ca_path = ca.write(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port", &port])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .args(["--tls-auth-clients", "no", "--save", ""])
        .arg("--dir")
        .arg(&dir.0);
    let _redis = Proc::spawn(command);
    _redis
        .out
        .wait_for("eady to accept connections", Duration::from_secs(10));
    let url = format!("rediss://127.0.0.1:{port}");
    let run = |args: &[&str], ca: bool| {
        let mut command = Command::new(GATEWAY);
        command.args(args).args(["--redis", &url]);
        if ca {
            command.arg("--redis-ca").arg(&ca_path);
        }
        command.output().expect("vcs-gateway")
    };
    let created = run(&["pool", "create", "--name", "tls"], true);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = run(&["pool", "list"], true);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("tls"));
    // Without the CA the server is not trusted: nothing is read, exit 2 naming --redis.
    let refused = run(&["pool", "list"], false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--redis") && stderr.contains("certificate"),
        "{stderr}"
    );
    // A replica serves over it.
    let mut command = Command::new(GATEWAY);
    command
        .args(["serve", "--redis", &url, "--redis-ca"])
        .arg(&ca_path)
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-token", ADMIN]);
    let replica = Proc::spawn(command);
    replica
        .out
        .wait_for("1 pools loaded", Duration::from_secs(10));
}

#[test]
fn a_peer_without_a_free_stream_says_so_and_the_request_waits_for_one() {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let two = Replica::start(&redis, "two", PEER);
    let (_, created) = one.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    let target = format!("{}/gitlab", upstream.base());
    let _agent = start_agent(&agent_env(
        &token,
        &target,
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")],
    ));
    wait_until(Duration::from_secs(15), "routes on two", || {
        two.health()["replica"]["routes"]["alpha"] == serde_json::json!(["one"])
    });
    // The only stream is busy with a slow request.
    let (api, bearer) = (one.api_addr.clone(), format!("Bearer {secret}"));
    let slow = std::thread::spawn(move || {
        bare_client()
            .get(format!(
                "http://{api}/private/alpha/api/v4/projects/group%2Frepo/repository/archive?do=sleep&n=1500"
            ))
            .header(CALLER_HEADER, bearer)
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    wait_until(Duration::from_secs(5), "the stream busy", || {
        one.health()["pools"]["alpha"]["busy"] == 1
    });
    // Two forwards, hears "no free stream" at once, and tries again until it is free.
    let started = std::time::Instant::now();
    let (status, target, _) = two.echo("alpha", &secret, "waited");
    assert_eq!(status, 200);
    assert!(target.ends_with("m=waited"), "{target}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.join().expect("slow request"), 200);
    // Only the request that ran counts as forwarded; "no free stream" is no error.
    assert_eq!(peer_figures(&one).0, 1);
    assert_eq!(peer_figures(&two), (0, 1, 0));
}

#[test]
fn forwarded_bodies_stream_both_ways_at_constant_memory() {
    use support::upstream::{echo_pattern, Digest, PatternReader};
    const MIB: u64 = 1024 * 1024;
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let two = Replica::start(&redis, "two", PEER);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    wait_until(Duration::from_secs(5), "two forwards", || {
        two.get("alpha", &secret) == 200
    });
    let bearer = format!("Bearer {secret}");
    let transfer = |len: u64, route: &str| {
        let url = format!(
            "http://{}/private/alpha/api/v4/projects/group%2Frepo/repository/archive.tar.gz?do={route}&n={len}",
            two.api_addr
        );
        let response = bare_client()
            .get(url)
            .header(CALLER_HEADER, &bearer)
            .call()
            .expect("download");
        assert_eq!(response.status(), 200);
        let got = Digest::of_reader(response.into_body().into_reader()).expect("body");
        let want = Digest::of_reader(PatternReader { pos: 0, len }).expect("pattern");
        assert_eq!((got.0, got.1), (want.0, want.1), "{route} of {len} bytes");
        let upload = bare_client()
            .post(format!(
                "http://{}/private/alpha/api/v4/projects/group%2Frepo/statuses/0123abc?do=echo",
                two.api_addr
            ))
            .header(CALLER_HEADER, &bearer);
        echo_pattern(upload, len / 4, "upload");
    };
    transfer(4 * MIB, "bytes");
    transfer(4 * MIB, "chunked");
    let (two_small, one_small) = (two.proc.peak_rss_kib(), one.proc.peak_rss_kib());
    transfer(200 * MIB, "bytes");
    transfer(100 * MIB, "chunked");
    let (two_large, one_large) = (two.proc.peak_rss_kib(), one.proc.peak_rss_kib());
    println!(
        "peak RSS KiB: forwarding {two_small} -> {two_large}, serving {one_small} -> {one_large}"
    );
    assert!(
        two_large < two_small + 8 * 1024,
        "{two_small} -> {two_large} KiB"
    );
    assert!(
        one_large < one_small + 8 * 1024,
        "{one_small} -> {one_large} KiB"
    );
    assert!(peer_figures(&one).0 >= 8);
}

#[test]
fn a_replica_asks_redis_before_saying_no_agent_so_failover_has_no_gap() {
    let Cluster {
        redis,
        secret,
        upstream,
    } = Cluster::start();
    let one = Replica::start(&redis, "one", PEER);
    let two = Replica::start(&redis, "two", PEER);
    let (_, created) = two.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    wait_until(Duration::from_secs(10), "the pool on replica one", || {
        one.has_pool("alpha")
    });
    // Before any agent: no holder anywhere, a clear 503.
    assert_eq!(one.get("alpha", &secret), 503);
    let vcs = format!("{}/gitlab", upstream.base());
    let _agent = start_agent(&agent_env(&two.token_here(&token), &vcs, &[]));
    wait_until(Duration::from_secs(15), "two's presence in Redis", || {
        !redis.keys("vcs-gateway:presence:alpha:two").is_empty()
    });
    // At once, before replica one's routing table (read once a second) can know it.
    assert_eq!(one.get("alpha", &secret), 200);
}

/// A request forwarded to the replica with the streams is answered with URLs on the front
/// the caller used, the receiving replica's: the peer request carries it.
#[test]
fn a_forwarded_request_is_answered_with_the_callers_front() {
    let redis = Redis::start();
    let secret = caller_secret(&redis);
    let upstream = Upstream::with_routes(|r| {
        let vcs = format!("http://{}/gitlab", r.header("host").unwrap_or(""));
        let own = format!("{vcs}/api/v4/projects/1");
        r.target.contains("do=self").then(|| {
            let headers = vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("Link".to_string(), format!("<{own}?page=2>; rel=\"next\"")),
            ];
            (
                200,
                headers,
                serde_json::json!({ "self": own }).to_string().into_bytes(),
            )
        })
    });
    let one = Replica::start(&redis, "one", PEER);
    let two = Replica::start(&redis, "two", PEER);
    let _agent = pool_alpha_with_agent(&one, &upstream);
    wait_until(Duration::from_secs(5), "two forwards", || {
        two.echo("alpha", &secret, "warm").0 == 200
    });
    let front = format!("http://{}/private/alpha", two.api_addr);
    let response = bare_client()
        .get(format!(
            "{front}/api/v4/projects/group%2Frepo/repository/archive?do=self"
        ))
        .header(CALLER_HEADER, format!("Bearer {secret}"))
        .call()
        .unwrap();
    assert_eq!(
        header_values(&response, "link"),
        [format!("<{front}/api/v4/projects/1?page=2>; rel=\"next\"")]
    );
    let body: serde_json::Value =
        serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(body["self"], format!("{front}/api/v4/projects/1"));
    assert!(peer_figures(&one).0 >= 2, "served by replica one");
}

/// A webhook relayed by an agent reaches the SaaS through the replica the agent dialled, with
/// the webhook URL and secret set on another replica's command line (both in Redis).
#[test]
fn a_webhook_is_delivered_by_the_replica_the_agent_reached() {
    let redis = Redis::start();
    let one = Replica::start(&redis, "one", &["--allow-http-webhooks"]);
    let two = Replica::start(&redis, "two", &["--allow-http-webhooks"]);
    let saas = Upstream::start();
    let url = format!("{}/status/202", saas.base());
    let public = format!("ws://{}", two.agent_addr);
    let token = cli(
        &redis,
        &[
            "pool",
            "create",
            "--name",
            "hooked",
            "--public-url",
            &public,
        ],
    );
    let secret = cli(
        &redis,
        &["pool", "update", "--name", "hooked", "--webhook-url", &url],
    );
    let secret = secret.trim().to_string();
    wait_until(Duration::from_secs(10), "replica two sees the URL", || {
        bare_client()
            .get(format!("http://{}/api/pools/hooked", two.api_addr))
            .header("Authorization", format!("Bearer {ADMIN}"))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .is_some_and(|t| t.contains(&url))
    });
    let upstream = Upstream::start();
    let env = agent_env(token.trim(), &upstream.base(), &[]);
    let (_agent, listen) = start_webhook_agent(&env);
    let body = br#"{"object_kind":"push","ref":"refs/heads/main","project":{"path_with_namespace":"group/repo"}}"#;
    let response = bare_client()
        .post(format!("http://{listen}/"))
        .header("Content-Type", "application/json")
        .header("X-Gitlab-Event", "Push Hook")
        .send(&body[..])
        .expect("the agent answers");
    assert_eq!(response.status().as_u16(), 200);
    let got = saas.wait_for_requests(1, Duration::from_secs(10));
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].header("X-Vcs-Pool"), Some("hooked"));
    let timestamp = got[0].header("X-Vcs-Timestamp").unwrap_or_default();
    let signature =
        vcs_agent::gateway::webhook::sign::signature(&secret, timestamp.parse().unwrap_or(0), body);
    assert_eq!(
        got[0].header("X-Vcs-Signature-256"),
        Some(signature.as_str())
    );
    two.proc
        .out
        .wait_for("webhook side=gateway pool=hooked", Duration::from_secs(10));
    assert_eq!(one.proc.out.count("webhook side=gateway"), 0);
}
