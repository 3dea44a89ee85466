//! Several gateways sharing pools and callers through a real `redis-server` (started here on
//! a private unix socket, no TCP port, stopped by PID): changes on one replica are in force
//! on the others within a second, by pub/sub or by the polled version alone; a stopped or
//! killed Redis leaves traffic going and changes refused with 503 until it is back.

mod support;

use std::process::Command;
use std::time::Duration;
use support::upstream::Upstream;
use support::*;
use vcs_agent::token::Token;

const ADMIN: &str = "replicas-admin-token-0123456789";

/// A `redis-server` on a unix socket in its own directory, with an append-only file so it
/// comes back with its data after SIGKILL.
struct Redis {
    proc: Option<Proc>,
    dir: TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = TempDir::new("redis");
        let mut redis = Redis { proc: None, dir };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir.0);
        let proc = Proc::spawn(command);
        proc.out
            .wait_for("ready to accept connections", Duration::from_secs(10));
        self.proc = Some(proc);
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.0.join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn signal(&self, signal: &str) {
        if let Some(proc) = &self.proc {
            proc.signal(signal);
        }
    }

    fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("KILL");
            proc.wait_exit(Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Calls of `command` Redis has served, from `INFO commandstats`.
    fn calls(&self, command: &str) -> u64 {
        let output = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(["INFO", "commandstats"])
            .output()
            .expect("redis-cli");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let prefix = format!("cmdstat_{command}:calls=");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// `vcs-gateway` with `args` on the shared Redis; panics with its stderr on failure.
fn cli(redis: &Redis, args: &[&str]) -> String {
    let output = Command::new(GATEWAY)
        .args(args)
        .args(["--redis", &redis.url()])
        .output()
        .expect("vcs-gateway");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf8")
}

struct Replica {
    proc: Proc,
    agent_addr: String,
    api_addr: String,
}

impl Replica {
    fn start(redis: &Redis, id: &str, extra: &[&str]) -> Replica {
        let mut command = Command::new(GATEWAY);
        command
            .args(["serve", "--redis", &redis.url(), "--replica-id", id])
            .args([
                "--agent-listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args(["--admin-token", ADMIN, "--queue-timeout", "5s"])
            .args(extra);
        let proc = Proc::spawn(command);
        let address = |line: String| line.rsplit(' ').next().unwrap_or_default().to_string();
        let agent_addr = address(
            proc.out
                .wait_for("agent port listening on", Duration::from_secs(10)),
        );
        let api_addr = address(
            proc.out
                .wait_for("api port listening on", Duration::from_secs(10)),
        );
        Replica {
            proc,
            agent_addr,
            api_addr,
        }
    }

    /// An admin API call: (status, JSON body).
    fn api(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let url = format!("http://{}/api/{path}", self.api_addr);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Authorization", format!("Bearer {ADMIN}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .expect("request");
        let response = client().run(request).expect("api call");
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    fn health(&self) -> serde_json::Value {
        let response = client()
            .get(format!("http://{}/healthz", self.api_addr))
            .header("Authorization", format!("Bearer {ADMIN}"))
            .call()
            .expect("healthz");
        serde_json::from_str(&response.into_body().read_to_string().unwrap_or_default())
            .unwrap_or_default()
    }

    fn has_pool(&self, pool: &str) -> bool {
        self.health()["pools"].get(pool).is_some()
    }

    fn streams(&self, pool: &str) -> u64 {
        self.health()["pools"][pool]["streams"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A token for `token`'s pool that sends its agent to this replica.
    fn token_here(&self, token: &str) -> String {
        let mut token = Token::decode(token).expect("token");
        token.host = format!("ws://{}", self.agent_addr);
        token.encode()
    }

    /// One tunnel request as `secret`: its status.
    fn get(&self, pool: &str, secret: &str) -> u16 {
        client()
            .get(format!(
                "http://{}/private/{pool}/api/v4/projects/group%2Frepo/repository/archive?do=echo",
                self.api_addr
            ))
            .header(CALLER_HEADER, format!("Bearer {secret}"))
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

fn caller_secret(redis: &Redis) -> String {
    let out = cli(
        redis,
        &["caller", "create", "--name", "saas", "--all-pools"],
    );
    out.trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// A pool made through one replica's API appears on another and takes its agents; its key
/// rotated through a third closes the old streams; all within a second.
fn changes_reach_every_replica(extra: &[&str]) {
    let redis = Redis::start();
    let secret = caller_secret(&redis);
    let upstream = Upstream::start();
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
    let rotated = cli(&redis, &["pool", "rotate", "--name", "beta"]);
    assert_ne!(rotated.trim(), token.trim());
    assert!(cli(&redis, &["pool", "delete", "--name", "beta"]).contains("deleted"));
    assert!(!cli(&redis, &["pool", "list"]).contains("beta"));
}

#[test]
fn requests_do_not_touch_redis() {
    let redis = Redis::start();
    let secret = caller_secret(&redis);
    let upstream = Upstream::start();
    let one = Replica::start(&redis, "one", &[]);
    let (_, created) = one.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    let _agent = start_agent(&agent_env(
        &token,
        &format!("{}/gitlab", upstream.base()),
        &[],
    ));
    wait_until(Duration::from_secs(15), "agent streams", || {
        one.streams("alpha") == 2
    });
    let before = redis.calls("mget");
    for _ in 0..200 {
        assert_eq!(one.get("alpha", &secret), 200);
    }
    // The documents are read only when the version moves; nothing changed meanwhile.
    assert_eq!(redis.calls("mget"), before);
}

#[test]
fn a_stopped_or_killed_redis_leaves_traffic_going_and_refuses_changes() {
    let mut redis = Redis::start();
    let secret = caller_secret(&redis);
    let upstream = Upstream::start();
    let one = Replica::start(&redis, "one", &[]);
    let three = Replica::start(&redis, "three", &[]);
    let (_, created) = one.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    let _agent = start_agent(&agent_env(
        &token,
        &format!("{}/gitlab", upstream.base()),
        &[],
    ));
    wait_until(Duration::from_secs(15), "agent streams", || {
        one.streams("alpha") == 2
    });

    assert_eq!(one.health()["replica"]["redis_reachable"], true);
    redis.signal("STOP");
    let (status, body) = one.api("POST", "pools", r#"{"name":"stopped"}"#);
    assert_eq!(status, 503, "{body}");
    assert_eq!(one.health()["replica"]["redis_reachable"], false);
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Redis is unreachable"));
    for _ in 0..20 {
        assert_eq!(one.get("alpha", &secret), 200);
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
