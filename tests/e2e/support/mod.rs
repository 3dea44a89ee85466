//! Test support: real gateway and agent processes on loopback port 0, a recording upstream,
//! and waiting on conditions instead of sleeping.

pub mod browser;
mod fixture;
pub mod hostile_paths;
pub mod proxy;
pub mod relay;
pub mod replicas;
pub mod tls;
pub mod upstream;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vcs_agent::allowlist::{Allowed, Allowlist, Decision, Denied};

pub use fixture::Tunnel;

/// The allowlist's verdict on a path alone, ids settled: what most rule tests ask.
pub trait CheckTarget {
    fn check(&self, method: &str, target: &str) -> Result<Allowed, Denied>;
}

impl CheckTarget for Allowlist {
    fn check(&self, method: &str, target: &str) -> Result<Allowed, Denied> {
        self.decide(method, target, &[] as &[(&str, &str)], false)
            .and_then(Decision::settle)
    }
}

pub const GATEWAY: &str = env!("CARGO_BIN_EXE_vcs-gateway");
pub const AGENT: &str = env!("CARGO_BIN_EXE_vcs-agent");

/// How long a process may take to start listening, or an agent to connect its streams: the
/// whole suite runs in one process on a small machine, often beside other builds. Only a
/// failure waits this long.
const START: Duration = Duration::from_secs(30);

/// Reads an HTTP head (request or response) from a raw connection, up to its blank line.
pub fn read_head(reader: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return head,
            Ok(_) if line == "\r\n" || line == "\n" => return head,
            Ok(_) => head.push_str(&line),
        }
    }
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "vcs-test-{tag}-{}-{}",
            std::process::id(),
            ulid::Ulid::new()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Marks the end of a captured stream in [`Output`] (a line no program prints).
const CLOSED: &str = "\u{0}closed\u{0}";

/// Lines a child printed, shared with a reader thread.
#[derive(Clone, Default)]
pub struct Output {
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Output {
    fn capture(&self, stream: impl std::io::Read + Send + 'static) {
        let lines = Arc::clone(&self.lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("VCS_TEST_ECHO").is_some() {
                    eprintln!("{line}");
                }
                let (lock, cv) = &*lines;
                lock.lock().expect("output").push(line);
                cv.notify_all();
            }
            // End of stream: an empty marker nobody matches, counted by `wait_closed`.
            let (lock, cv) = &*lines;
            lock.lock().expect("output").push(String::from(CLOSED));
            cv.notify_all();
        });
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines
            .0
            .lock()
            .map(|l| l.iter().filter(|l| *l != CLOSED).cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until `streams` captured streams reached their end (the child exited).
    pub fn wait_closed(&self, streams: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.lines;
        let mut guard = lock.lock().expect("output");
        while guard.iter().filter(|l| *l == CLOSED).count() < streams {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            guard = cv.wait_timeout(guard, left).expect("output").0;
        }
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.lines;
        let mut guard = lock.lock().expect("output");
        loop {
            if let Some(line) = guard.iter().find(|l| *l != CLOSED && l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line with {needle:?} in:\n{}",
                guard.join("\n")
            );
            guard = cv.wait_timeout(guard, left).expect("output").0;
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub out: Output,
}

impl Proc {
    pub fn spawn(mut command: Command) -> Proc {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command.spawn().expect("spawn");
        let out = Output::default();
        if let Some(stdout) = child.stdout.take() {
            out.capture(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            out.capture(stderr);
        }
        Proc { child, out }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit status, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Everything it printed is captured before the caller looks.
                self.out.wait_closed(2, Duration::from_secs(5));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit in {timeout:?}:\n{}",
                self.out.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Peak resident memory (`VmHWM`) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running gateway with its data directory, a caller allowed to use every pool (created
/// with the CLI before the gateway starts) and the admin token.
pub struct Gateway {
    pub proc: Proc,
    pub dir: TempDir,
    pub agent_addr: String,
    pub api_addr: String,
    /// The secret of the harness's caller (all pools).
    pub caller_secret: String,
    /// The admin token: the one given with `--admin-token`, else the one the gateway made.
    pub admin_token: String,
}

/// The header a caller authenticates with on the front.
pub const CALLER_HEADER: &str = "Vcs-Gateway-Authorization";

/// Caller secrets of the gateways this test process started, by api address: [`client`]
/// sends the right one with every tunnel request, so tests need not thread it through.
fn secrets() -> &'static Mutex<BTreeMap<String, String>> {
    static SECRETS: std::sync::OnceLock<Mutex<BTreeMap<String, String>>> =
        std::sync::OnceLock::new();
    SECRETS.get_or_init(Default::default)
}

/// The caller header line (with its CRLF) for the gateway at `api_addr` this process
/// started, for raw-socket tests that only hold the address.
pub fn auth_line_for(api_addr: &str) -> String {
    let secrets = secrets().lock().expect("secrets");
    let secret = secrets.get(api_addr).expect("a gateway this test started");
    format!("{CALLER_HEADER}: Bearer {secret}\r\n")
}

/// Creates a caller with the CLI; returns its secret (the last line of stdout).
pub fn create_caller(dir: &std::path::Path, name: &str, scope: &[&str]) -> String {
    let output = Command::new(GATEWAY)
        .args(["caller", "create", "--data-dir"])
        .arg(dir)
        .args(["--name", name])
        .args(scope)
        .output()
        .expect("caller create");
    assert!(
        output.status.success(),
        "caller create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf8");
    stdout
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

impl Gateway {
    pub fn start(extra: &[&str]) -> Gateway {
        let dir = TempDir::new("gw");
        Gateway::start_in(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts a gateway with `env` added to its environment (this process's environment is
    /// shared by every test running in it, so it is never changed).
    pub fn start_with_env(env: &[(&str, &str)], extra: &[&str]) -> Gateway {
        let dir = TempDir::new("gw");
        Gateway::spawn(dir, "127.0.0.1:0", "127.0.0.1:0", extra, env)
    }

    /// Starts a gateway on the given data directory and listen addresses.
    pub fn start_in(dir: TempDir, agent_listen: &str, api_listen: &str, extra: &[&str]) -> Gateway {
        Gateway::spawn(dir, agent_listen, api_listen, extra, &[])
    }

    fn spawn(
        dir: TempDir,
        agent_listen: &str,
        api_listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let name = format!("harness-{}", ulid::Ulid::new().to_string().to_lowercase());
        let caller_secret = create_caller(&dir.0, &name, &["--all-pools"]);
        let mut command = Command::new(GATEWAY);
        command
            .args(["serve", "--data-dir"])
            .arg(&dir.0)
            .args(["--agent-listen", agent_listen, "--api-listen", api_listen])
            .args(extra)
            .envs(env.iter().copied());
        let proc = Proc::spawn(command);
        // The last word of the message, in text or JSON lines (`--log-format json`).
        let address = |line: String| {
            let json: Option<serde_json::Value> = serde_json::from_str(&line).ok();
            let msg = json.and_then(|j| j["msg"].as_str().map(str::to_string));
            let msg = msg.unwrap_or(line);
            msg.rsplit(' ').next().unwrap_or_default().to_string()
        };
        let agent_addr = address(proc.out.wait_for("agent port listening on", START));
        let api_addr = address(proc.out.wait_for("api port listening on", START));
        let given = extra
            .windows(2)
            .find(|pair| pair[0] == "--admin-token")
            .map(|pair| pair[1].to_string());
        let admin_token = given.unwrap_or_else(|| {
            std::fs::read_to_string(dir.0.join("admin-token"))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        });
        secrets()
            .lock()
            .expect("secrets")
            .insert(api_addr.clone(), caller_secret.clone());
        Gateway {
            proc,
            dir,
            agent_addr,
            api_addr,
            caller_secret,
            admin_token,
        }
    }

    /// `Vcs-Gateway-Authorization` and its value for the harness's caller.
    pub fn caller_header(&self) -> (&'static str, String) {
        (CALLER_HEADER, format!("Bearer {}", self.caller_secret))
    }

    /// The caller header as a raw request line (with its CRLF), for raw-socket tests.
    pub fn auth_line(&self) -> String {
        format!("{CALLER_HEADER}: Bearer {}\r\n", self.caller_secret)
    }

    /// `Authorization: Bearer <admin token>` as a (name, value) pair.
    pub fn admin_header(&self) -> (&'static str, String) {
        ("Authorization", format!("Bearer {}", self.admin_token))
    }

    /// Creates a pool with the CLI and returns its token.
    pub fn create_pool(&self, name: &str) -> String {
        self.create_pool_for(name, &format!("ws://{}", self.agent_addr))
    }

    /// Creates a pool whose token sends agents to `public_url`.
    pub fn create_pool_for(&self, name: &str, public_url: &str) -> String {
        let output = Command::new(GATEWAY)
            .args(["pool", "create", "--data-dir"])
            .arg(&self.dir.0)
            .args(["--name", name, "--public-url", public_url])
            .output()
            .expect("pool create");
        assert!(
            output.status.success(),
            "pool create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    }

    /// Creates pool `name`, starts an agent for it against `target` (gitlab, `extra` on top of
    /// [`agent_env`]) and waits until the pool has `streams` streams.
    pub fn agent_for(
        &self,
        name: &str,
        target: &str,
        extra: &[(&str, &str)],
        streams: u64,
    ) -> Proc {
        let token = self.create_pool(name);
        let agent = start_agent(&agent_env(&token, target, extra));
        self.wait_streams(name, streams);
        agent
    }

    pub fn url(&self, pool: &str, path: &str) -> String {
        format!("http://{}/private/{pool}{path}", self.api_addr)
    }

    /// `/healthz` figures for one pool: (agents, streams, busy).
    pub fn pool_state(&self, pool: &str) -> (u64, u64, u64) {
        let p = self.health_of(pool);
        let n = |field: &str| p[field].as_u64().unwrap_or(0);
        (n("agents"), n("streams"), n("busy"))
    }

    /// Requests of `pool` waiting for an idle stream, from `/healthz`.
    pub fn queued(&self, pool: &str) -> u64 {
        self.health_of(pool)["queued"].as_u64().unwrap_or(0)
    }

    fn health_of(&self, pool: &str) -> serde_json::Value {
        let (name, value) = self.admin_header();
        let body: serde_json::Value = client()
            .get(format!("http://{}/healthz", self.api_addr))
            .header(name, value)
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        body["pools"][pool].clone()
    }

    pub fn wait_streams(&self, pool: &str, streams: u64) {
        wait_until(START, &format!("{streams} streams in pool {pool}"), || {
            self.pool_state(pool).1 == streams
        });
    }
}

/// Agent environment for `token` against `target`, vendor gitlab, with `extra` on top.
pub fn agent_env(token: &str, target: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("SPACELIFT_VCS_AGENT_POOL_TOKEN", token),
        ("SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT", target),
        ("SPACELIFT_VCS_AGENT_VENDOR", "gitlab"),
        ("SPACELIFT_VCS_AGENT_PARALLELISM", "2"),
        ("RUST_LOG", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

pub fn start_agent(env: &BTreeMap<String, String>) -> Proc {
    start_agent_with_args(env, &[])
}

/// An agent with `env` and its webhook listener on a loopback port: the agent, and the
/// address the listener logged.
pub fn start_webhook_agent(env: &BTreeMap<String, String>) -> (Proc, String) {
    let mut env = env.clone();
    env.insert(
        "SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN".into(),
        "127.0.0.1:0".into(),
    );
    let agent = start_agent(&env);
    let line = agent.out.wait_for("webhook listener (", START);
    let listen = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    (agent, listen)
}

/// An agent with `env` as its whole environment (and `PATH`) and `args` on its command line.
pub fn start_agent_with_args(env: &BTreeMap<String, String>, args: &[&str]) -> Proc {
    let mut command = Command::new(AGENT);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    Proc::spawn(command)
}

/// An HTTP client that reports statuses as they are and follows no redirect. Tunnel
/// requests (`/private/…`) to a gateway this process started carry its harness caller's
/// secret unless the request sets `Vcs-Gateway-Authorization` itself.
pub fn client() -> ureq::Agent {
    client_config().middleware(authenticate).build().into()
}

/// [`client`] without the caller secret: for what unauthenticated callers get.
pub fn bare_client() -> ureq::Agent {
    client_config().build().into()
}

fn client_config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(120)))
}

fn authenticate(
    mut request: ureq::http::Request<ureq::SendBody>,
    next: ureq::middleware::MiddlewareNext,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let uri = request.uri();
    let tunnel = uri.path().starts_with("/private/");
    let secret = uri
        .authority()
        .and_then(|a| secrets().lock().ok()?.get(a.as_str()).cloned());
    if let (true, Some(secret)) = (tunnel, secret) {
        if !request.headers().contains_key(CALLER_HEADER) {
            let value = format!("Bearer {secret}").parse().expect("header value");
            request.headers_mut().insert(CALLER_HEADER, value);
        }
    }
    next.handle(request)
}

/// All values of a response header.
pub fn header_values(response: &ureq::http::Response<ureq::Body>, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_string())
        .collect()
}

/// The `kind` and `error` of a JSON error answer.
pub fn error_kind(response: ureq::http::Response<ureq::Body>) -> (u16, String, String) {
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    (
        status,
        body["kind"].as_str().unwrap_or("").to_string(),
        body["error"].as_str().unwrap_or("").to_string(),
    )
}

/// A client script of `tests/clients` run to its end (at most 120 s) with the test venv's
/// Python, in a HOME of its own, with no proxy, the pool's caller credential in
/// `VCS_TEST_GATEWAY_AUTHORIZATION` and `env` added.
pub struct Client {
    pub status: std::process::ExitStatus,
    pub driver: Proc,
    /// The JSON lines the script printed, one per step.
    pub steps: Vec<serde_json::Value>,
}

pub fn run_client(
    script: &str,
    args: &[&str],
    authorization: &str,
    env: &[(&str, &str)],
) -> Client {
    let python = std::env::var("VCS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("VCS_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`, which installs tests/clients/requirements.txt into a virtual environment and sets it")
    });
    let home = TempDir::new("clients");
    let mut command = Command::new(python);
    command
        .arg(format!(
            "{}/tests/clients/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(args)
        .envs(env.iter().copied())
        .env("VCS_TEST_GATEWAY_AUTHORIZATION", authorization)
        .env("HOME", &home.0)
        .env("AZURE_DEVOPS_CACHE_DIR", home.0.join("azure"))
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy");
    let mut driver = Proc::spawn(command);
    let status = driver.wait_exit(Duration::from_secs(120));
    let steps = driver
        .out
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Client {
        status,
        driver,
        steps,
    }
}
