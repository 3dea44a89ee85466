//! The shipped supervisord example, run for real: a private `supervisord` (own config, socket
//! and logs under a temp dir, in the foreground as our child) runs the agent from
//! `scripts/supervisord/vcs-agent.conf` against a test gateway. Without `supervisord` it fails
//! saying so (`bash scripts/test.sh` installs Debian's `supervisor` first): a test that passes
//! without running proves nothing.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::*;

const TEMPLATE: &str = include_str!("../../scripts/supervisord/vcs-agent.conf");
const ENV_EXAMPLE: &str = include_str!("../../scripts/supervisord/vcs-agent.env.example");

/// Whether `program` is an executable file on `PATH`.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The example program section with this test's paths and name.
fn program(name: &str, env_file: &Path, log_file: &Path) -> String {
    let agent = env!("CARGO_BIN_EXE_vcs-agent");
    TEMPLATE
        .replace("[program:vcs-agent]", &format!("[program:{name}]"))
        .replace(
            "/etc/vcs-agent/vcs-agent.env",
            &env_file.display().to_string(),
        )
        .replace("/usr/local/bin/vcs-agent", agent)
        .replace(
            "/var/log/vcs-agent/vcs-agent.log",
            &log_file.display().to_string(),
        )
        // The test runs as whoever runs it; supervisord refuses `user=` unless root.
        .lines()
        .filter(|l| !l.starts_with("user="))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `KEY='value'` lines, as the example's shell reads them.
fn env_file(path: &Path, vars: &[(&str, &str)]) {
    let text: String = vars
        .iter()
        .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "'\\''")))
        .collect();
    std::fs::write(path, text).expect("env file");
}

/// A private supervisord, shut down (with its programs) on drop.
struct Supervisor {
    proc: Proc,
    conf: PathBuf,
    log: PathBuf,
}

impl Supervisor {
    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("supervisorctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state(&self, program: &str) -> String {
        self.ctl(&["status", program])
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string()
    }

    fn pid(&self, program: &str) -> u32 {
        self.ctl(&["pid", program]).trim().parse().unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_state(&self, program: &str, state: &str, timeout: Duration) {
        let mut last = String::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            last = self.state(program);
            if last == state {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{program} is {last:?}, not {state}; supervisord log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Stops the programs the supervisord way first, so no agent outlives the test.
        let _ = self.ctl(&["shutdown"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn env_example_names_every_variable() {
    for setting in vcs_agent::config::SETTINGS {
        let name = setting.env.split('<').next().unwrap_or(setting.env);
        assert!(
            ENV_EXAMPLE.contains(&format!("#{name}")),
            "{name} is not in scripts/supervisord/vcs-agent.env.example"
        );
    }
    assert!(TEMPLATE.contains("stopsignal=TERM"));
    let stopwait: u64 = TEMPLATE
        .lines()
        .find_map(|l| l.strip_prefix("stopwaitsecs="))
        .and_then(|v| v.trim().parse().ok())
        .expect("stopwaitsecs");
    assert!(
        stopwait > 30 + 2,
        "stopwaitsecs={stopwait} must exceed the default drain timeout (30 s) plus its margin"
    );
}

#[test]
fn supervisord_runs_restarts_drains_and_gives_up_on_bad_config() {
    assert!(
        installed("supervisord") && installed("supervisorctl"),
        "supervisord and supervisorctl are not on PATH: apt-get install supervisor \
         (bash scripts/test.sh installs it when run as root)"
    );
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("supervised");
    let dir = TempDir::new("supervisord");
    let d = &dir.0;
    std::fs::create_dir_all(d.join("logs")).expect("log dir");

    let good_env = d.join("good.env");
    env_file(
        &good_env,
        &[
            ("SPACELIFT_VCS_AGENT_POOL_TOKEN", &token),
            ("SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT", &upstream.base()),
            ("SPACELIFT_VCS_AGENT_VENDOR", "gitlab"),
            ("SPACELIFT_VCS_AGENT_PARALLELISM", "2"),
            ("SPACELIFT_METADATA_runner", "supervisord test"),
        ],
    );
    let bad_env = d.join("bad.env");
    env_file(
        &bad_env,
        &[
            ("SPACELIFT_VCS_AGENT_POOL_TOKEN", &token),
            ("SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT", &upstream.base()),
            ("SPACELIFT_VCS_AGENT_VENDOR", "gitlab"),
            ("SPACELIFT_VCS_AGENT_PARALLELISM", "abc"),
        ],
    );
    let good_log = d.join("logs/vcs-agent.log");
    let bad_log = d.join("logs/vcs-agent-bad.log");
    let conf = d.join("supervisord.conf");
    let log = d.join("supervisord.log");
    let sock = d.join("supervisor.sock");
    std::fs::write(
        &conf,
        format!(
            "[unix_http_server]\nfile={sock}\nchmod=0700\n\n\
             [supervisord]\nnodaemon=true\nlogfile={log}\npidfile={pid}\n\
             childlogdir={logs}\nloglevel=info\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{sock}\n\n{good}\n\n{bad}\n",
            sock = sock.display(),
            log = log.display(),
            pid = d.join("supervisord.pid").display(),
            logs = d.join("logs").display(),
            good = program("vcs-agent", &good_env, &good_log),
            bad = program("vcs-agent-bad", &bad_env, &bad_log),
        ),
    )
    .expect("supervisord.conf");
    let mut command = Command::new("supervisord");
    command.arg("-n").arg("-c").arg(&conf);
    let supervisor = Supervisor {
        proc: Proc::spawn(command),
        conf,
        log,
    };

    // It connects and counts as started.
    gateway.wait_streams("supervised", 2);
    supervisor.wait_state("vcs-agent", "RUNNING", Duration::from_secs(20));
    let first = supervisor.pid("vcs-agent");
    assert!(first > 0);

    // kill -9: supervisord starts it again (a new pid), and it connects again.
    let killed = Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    wait_until(Duration::from_secs(20), "a restarted agent", || {
        let pid = supervisor.pid("vcs-agent");
        pid != 0 && pid != first
    });
    supervisor.wait_state("vcs-agent", "RUNNING", Duration::from_secs(20));
    gateway.wait_streams("supervised", 2);
    assert!(supervisor
        .log_text()
        .contains("exited: vcs-agent (terminated by SIGKILL; not expected)"));

    // supervisorctl stop: SIGTERM, the agent drains and exits 0 (not SIGKILLed after stopwaitsecs).
    let started = Instant::now();
    let stopped = supervisor.ctl(&["stop", "vcs-agent"]);
    assert!(stopped.contains("vcs-agent: stopped"), "{stopped}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the drain took {:?}",
        started.elapsed()
    );
    assert_eq!(supervisor.state("vcs-agent"), "STOPPED");
    let text = supervisor.log_text();
    assert!(
        text.contains("stopped: vcs-agent (exit status 0)"),
        "no clean exit in:\n{text}"
    );
    assert!(!text.contains("stopped: vcs-agent (terminated by SIGKILL)"));
    gateway.wait_streams("supervised", 0);
    let agent_log = std::fs::read_to_string(&good_log).unwrap_or_default();
    assert!(
        agent_log.contains("draining"),
        "the agent did not log its drain:\n{agent_log}"
    );

    // A bad configuration: retried, then FATAL, with the one-line reason in the program's log.
    supervisor.wait_state("vcs-agent-bad", "FATAL", Duration::from_secs(40));
    let bad = std::fs::read_to_string(&bad_log).unwrap_or_default();
    assert!(
        bad.contains(
            "SPACELIFT_VCS_AGENT_PARALLELISM: expected an integer from 1 to 256, got \"abc\""
        ),
        "no one-line reason in the program log:\n{bad}"
    );
    assert!(supervisor.log_text().contains(
        "gave up: vcs-agent-bad entered FATAL state, too many start retries too quickly"
    ));
}
