//! Several gateways sharing pools and callers through a real `redis-server` (started here on
//! a private unix socket, no TCP port, stopped by PID): changes on one replica are in force
//! on the others within a second, by pub/sub or by the polled version alone; a stopped or
//! killed Redis leaves traffic going and changes refused with 503 until it is back.

use crate::support;

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

    /// Keys matching `pattern`, sorted.
    fn keys(&self, pattern: &str) -> Vec<String> {
        let output = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(["--raw", "KEYS", pattern])
            .output()
            .expect("redis-cli");
        let mut keys: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        keys.sort();
        keys
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

    fn metrics(&self) -> String {
        let response = client()
            .get(format!("http://{}/metrics", self.api_addr))
            .header("Authorization", format!("Bearer {ADMIN}"))
            .call()
            .expect("metrics");
        response.into_body().read_to_string().unwrap_or_default()
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

/// Pool `alpha`, created through `replica`'s API, with an agent of 2 streams connected to it.
fn pool_alpha_with_agent(replica: &Replica, upstream: &Upstream) -> Proc {
    let (_, created) = replica.api("POST", "pools", r#"{"name":"alpha"}"#);
    let token = created["token"].as_str().expect("token").to_string();
    let agent = start_agent(&agent_env(
        &token,
        &format!("{}/gitlab", upstream.base()),
        &[],
    ));
    wait_until(Duration::from_secs(15), "agent streams", || {
        replica.streams("alpha") == 2
    });
    agent
}

#[test]
fn requests_do_not_touch_redis() {
    let redis = Redis::start();
    let secret = caller_secret(&redis);
    let upstream = Upstream::start();
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
    let mut redis = Redis::start();
    let secret = caller_secret(&redis);
    let upstream = Upstream::start();
    let one = Replica::start(&redis, "one", &[]);
    let three = Replica::start(&redis, "three", &[]);
    let _agent = pool_alpha_with_agent(&one, &upstream);

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
