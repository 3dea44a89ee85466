//! Several gateways on one real `redis-server` (started on a private unix socket, no TCP
//! port, stopped by PID): [`Redis`], a [`Replica`] process with its ports and views, and
//! [`Cluster`], the set-up most replica tests share (Redis, the caller `saas`, a stand-in
//! GitLab).

use super::upstream::Upstream;
use super::*;
use std::process::Command;
use std::time::Duration;
use vcs_agent::token::Token;

/// The admin token of every replica these tests start.
pub const ADMIN: &str = "replicas-admin-token-0123456789";

/// A `redis-server` on a unix socket in its own directory, with an append-only file so it
/// comes back with its data after SIGKILL.
pub struct Redis {
    pub proc: Option<Proc>,
    pub dir: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = TempDir::new("redis");
        let mut redis = Redis { proc: None, dir };
        redis.run();
        redis
    }

    pub fn run(&mut self) {
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

    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.0.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn signal(&self, signal: &str) {
        if let Some(proc) = &self.proc {
            proc.signal(signal);
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("KILL");
            proc.wait_exit(Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Keys matching `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
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

    /// `INFO commandstats`: each command Redis has served with its count of calls.
    fn command_calls(&self) -> Vec<(String, u64)> {
        let output = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(["INFO", "commandstats"])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
                let calls = rest.split(',').next()?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }

    /// Calls of `command` Redis has served.
    pub fn calls(&self, command: &str) -> u64 {
        self.command_calls()
            .into_iter()
            .filter(|(name, _)| name == command)
            .map(|(_, calls)| calls)
            .sum()
    }

    /// Commands of every kind Redis has served.
    pub fn total_calls(&self) -> u64 {
        self.command_calls()
            .into_iter()
            .map(|(_, calls)| calls)
            .sum()
    }
}

/// `vcs-gateway` with `args` on the shared Redis; panics with its stderr on failure.
pub fn cli(redis: &Redis, args: &[&str]) -> String {
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

pub struct Replica {
    pub proc: Proc,
    pub agent_addr: String,
    pub api_addr: String,
    /// The peer port, when started with one.
    pub peer_addr: String,
}

/// The peer secret of the replicas in these tests.
pub const PEER_SECRET: &str = "peer-secret-0123456789abcdef-0123456789";

/// Flags that give a replica a peer port (its secret comes from the environment).
pub const PEER: &[&str] = &["--peer-listen", "127.0.0.1:0"];

impl Replica {
    pub fn start(redis: &Redis, id: &str, extra: &[&str]) -> Replica {
        Replica::start_with(redis, id, extra, &[])
    }

    pub fn start_with(redis: &Redis, id: &str, extra: &[&str], env: &[(&str, &str)]) -> Replica {
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
            .args(extra)
            .env("VCS_GATEWAY_PEER_SECRET", PEER_SECRET)
            .envs(env.iter().copied());
        let proc = Proc::spawn(command);
        let address = |line: String| {
            line.split(' ')
                .skip_while(|w| *w != "on")
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        let agent_addr = address(
            proc.out
                .wait_for("agent port listening on", Duration::from_secs(10)),
        );
        let api_addr = address(
            proc.out
                .wait_for("api port listening on", Duration::from_secs(10)),
        );
        let peer_addr = if extra.contains(&"--peer-listen") {
            address(
                proc.out
                    .wait_for("peer port listening on", Duration::from_secs(10)),
            )
        } else {
            String::new()
        };
        Replica {
            proc,
            agent_addr,
            api_addr,
            peer_addr,
        }
    }

    /// One tunnel request whose echo names `marker`: (status, echoed target, request id).
    pub fn echo(&self, pool: &str, secret: &str, marker: &str) -> (u16, String, String) {
        self.echo_with(&bare_client(), pool, secret, marker)
    }

    /// [`Replica::echo`] on `client`'s kept connections.
    pub fn echo_with(
        &self,
        client: &ureq::Agent,
        pool: &str,
        secret: &str,
        marker: &str,
    ) -> (u16, String, String) {
        let response = client
            .get(format!(
                "http://{}/private/{pool}/api/v4/projects/group%2Frepo/repository/archive?do=echo&m={marker}",
                self.api_addr
            ))
            .header(CALLER_HEADER, format!("Bearer {secret}"))
            .call();
        let Ok(response) = response else {
            return (0, String::new(), String::new());
        };
        let status = response.status().as_u16();
        let id = header_values(&response, "x-vcs-request-id").join(",");
        let body = response.into_body().read_to_string().unwrap_or_default();
        let echoed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            status,
            echoed["target"].as_str().unwrap_or_default().to_string(),
            id,
        )
    }

    /// An admin API call: (status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
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

    pub fn health(&self) -> serde_json::Value {
        let response = client()
            .get(format!("http://{}/healthz", self.api_addr))
            .header("Authorization", format!("Bearer {ADMIN}"))
            .call()
            .expect("healthz");
        serde_json::from_str(&response.into_body().read_to_string().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        let response = client()
            .get(format!("http://{}/metrics", self.api_addr))
            .header("Authorization", format!("Bearer {ADMIN}"))
            .call()
            .expect("metrics");
        response.into_body().read_to_string().unwrap_or_default()
    }

    pub fn has_pool(&self, pool: &str) -> bool {
        self.health()["pools"].get(pool).is_some()
    }

    pub fn streams(&self, pool: &str) -> u64 {
        self.health()["pools"][pool]["streams"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A token for `token`'s pool that sends its agent to this replica.
    pub fn token_here(&self, token: &str) -> String {
        let mut token = Token::decode(token).expect("token");
        token.host = format!("ws://{}", self.agent_addr);
        token.encode()
    }

    /// One tunnel request as `secret`: its status.
    pub fn get(&self, pool: &str, secret: &str) -> u16 {
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

pub fn caller_secret(redis: &Redis) -> String {
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

/// Pool `alpha`, created through `replica`'s API, with an agent of 2 streams connected to it.
pub fn pool_alpha_with_agent(replica: &Replica, upstream: &Upstream) -> Proc {
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

/// Redis, the caller `saas` (every pool) with its secret, and a stand-in GitLab for agents:
/// what most replica tests start with, before their replicas.
pub struct Cluster {
    pub redis: Redis,
    pub secret: String,
    pub upstream: Upstream,
}

impl Cluster {
    pub fn start() -> Cluster {
        let redis = Redis::start();
        let secret = caller_secret(&redis);
        Cluster {
            redis,
            secret,
            upstream: Upstream::start(),
        }
    }
}
