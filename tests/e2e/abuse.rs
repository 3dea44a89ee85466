//! The front and the logs under abuse: floods of refused requests, values built to forge log
//! lines, streams held without moving bytes.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Bytes of the captured output of a process so far.
fn log_size(out: &Output) -> usize {
    out.lines().iter().map(|l| l.len() + 1).sum()
}

#[test]
fn ten_seconds_of_unauthenticated_requests_with_huge_paths_grow_the_log_by_little() {
    let gateway = Gateway::start(&[]);
    gateway.create_pool("flooded");
    let before = log_size(&gateway.proc.out);
    let path = format!("/api/v4/projects/{}", "x".repeat(60 * 1024));
    let url = gateway.url("flooded", &path);
    let until = Instant::now() + Duration::from_secs(10);
    let sent: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let client = bare_client();
                    let mut sent = 0;
                    while Instant::now() < until {
                        let response = client.get(&url).call().expect("an answer");
                        assert_eq!(response.status(), 401);
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    // The summary of the last interval reaches the log too.
    gateway
        .proc
        .out
        .wait_for("tunnel requests refused", Duration::from_secs(10));
    let grown = log_size(&gateway.proc.out) - before;
    assert!(sent > 100, "only {sent} requests were sent");
    assert!(
        grown < 1024 * 1024,
        "{sent} refused requests grew the log by {grown} bytes"
    );
    let summary = gateway
        .proc
        .out
        .wait_for("by reason: unauthorized=", Duration::from_secs(1));
    assert!(summary.contains("by address: 127.0.0.1="), "{summary}");
    assert!(
        summary.contains("more bytes]"),
        "examples are cut: {summary}"
    );
}

/// A GraphQL document whose repository owner holds a line break and a whole fake access
/// line, and C1 and direction controls.
fn forging_document() -> String {
    // JSON-escaped GraphQL escapes: the GraphQL string holds CR, LF, ESC, CSI and RLO.
    let owner = r"evil\\r\\n2026-01-01T00:00:00.000Z INFO  access: id=FAKE status=200\\u001b[2K\\u009b\\u202e";
    let query = format!("{{ repository(owner: \\\"{owner}\\\", name: \\\"x\\\") {{ id }} }}");
    format!(r#"{{"query":"{query}"}}"#)
}

/// No line of `out` is the forged one, nor holds a raw control or direction character.
fn assert_no_forged_line(who: &str, out: &Output) {
    for line in out.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000Z") && !line.starts_with(" 2026-01-01"),
            "{who} printed a forged line: {line:?}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
            "{who} printed a raw control character: {line:?}"
        );
    }
}

fn forge_through(pool: &str, format: &str, allowed: Option<&str>) {
    let gateway = match format {
        "json" => Gateway::start(&["--log-format", "json"]),
        _ => Gateway::start(&[]),
    };
    let upstream = upstream::Upstream::start();
    let mut env = vec![
        ("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise"),
        ("SPACELIFT_VCS_AGENT_LOG_FORMAT", format),
    ];
    if let Some(projects) = allowed {
        env.push(("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", projects));
    }
    let agent = gateway.agent_for(pool, &upstream.base(), &env, 2);
    let body = forging_document();
    let response = client()
        .post(gateway.url(pool, "/api/graphql"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .expect("an answer");
    let status = response.status().as_u16();
    let needle = if format == "json" { "\"id\":" } else { "id=" };
    agent.out.wait_for(needle, Duration::from_secs(5));
    gateway.proc.out.wait_for(needle, Duration::from_secs(5));
    assert_no_forged_line("the agent", &agent.out);
    assert_no_forged_line("the gateway", &gateway.proc.out);
    let agent_text = agent.out.text();
    assert!(
        agent_text.contains(r"\r\n2026-01-01"),
        "the project is shown, escaped ({status}):\n{agent_text}"
    );
    if format == "json" {
        for line in agent
            .out
            .lines()
            .iter()
            .chain(gateway.proc.out.lines().iter())
        {
            if line.starts_with('{') {
                let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                assert_ne!(parsed["id"], "FAKE", "{line}");
            }
        }
    }
}

#[test]
fn a_graphql_owner_cannot_forge_a_text_line_on_an_open_pool() {
    forge_through("forge-open", "text", None);
}

#[test]
fn a_graphql_owner_cannot_forge_a_text_line_in_a_denial() {
    forge_through("forge-denied", "text", Some("acme/.*"));
}

#[test]
fn a_graphql_owner_cannot_forge_a_json_line() {
    forge_through("forge-json", "json", Some("acme/.*"));
}

#[test]
fn pool_list_escapes_what_a_description_holds() {
    let dir = TempDir::new("escape-list");
    let data = dir.0.to_string_lossy().to_string();
    let created = std::process::Command::new(GATEWAY)
        .args(["pool", "create", "--data-dir", &data, "--name", "shady"])
        .args([
            "--description",
            "line\nfake \u{1b}[31mred\u{9b} \u{202e}txt",
        ])
        .output()
        .expect("pool create");
    assert!(created.status.success(), "{created:?}");
    let listed = std::process::Command::new(GATEWAY)
        .args(["pool", "list", "--data-dir", &data])
        .output()
        .expect("pool list");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("line\\nfake \\x1b[31mred\\u{9b} \\u{202e}txt"),
        "{text}"
    );
}

const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive";

/// A raw tunnel request head for `path` on `pool`, with `extra` header lines.
fn raw_head(gateway: &Gateway, method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} /private/{path} HTTP/1.1\r\nHost: x\r\n{}{extra}\r\n",
        gateway.auth_line()
    )
}

#[test]
fn a_front_loaded_upload_buys_no_time() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::options("burst")
        .gateway_args(&["--upload-grace", "1s"])
        .agent_env(&[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")])
        .start();
    let mut raw = TcpStream::connect(&gateway.api_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = raw_head(
        &gateway,
        "POST",
        "burst/group/repo.git/git-upload-pack",
        "Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 100000000\r\n",
    );
    raw.write_all(head.as_bytes()).unwrap();
    // 300 KB at once would have bought 20 minutes at 240 bytes/s averaged; then a byte every 3 s.
    raw.write_all(&vec![b'0'; 300_000]).unwrap();
    let started = Instant::now();
    let mut trickle = raw.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(40) && trickle.write_all(b"0").is_ok() {
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let mut answer = String::new();
    let _ = (&raw).read_to_string(&mut answer);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(16), "cut off after {took:?}");
    wait_until(Duration::from_secs(10), "the stream back", || {
        gateway.pool_state("burst") == (1, 1, 0)
    });
    drop(raw);
    dribbler.join().unwrap();
}

/// Reads a response head from `raw` and returns it.
fn read_response_head(raw: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            raw.read(&mut byte).expect("the head"),
            1,
            "closed before the head"
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A caller asks for a 64 MiB answer and then reads it as `read` says; its stream must be
/// released within `within`, with a warning naming the caller as too slow.
fn slow_reader(pool: &str, args: &[&str], within: Duration, read: impl Fn(&mut TcpStream)) {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::options(pool)
        .gateway_args(args)
        .agent_env(&[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")])
        .start();
    let mut raw = TcpStream::connect(&gateway.api_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let path = format!("{pool}{ARCHIVE}?do=bytes&n={}", 64 * 1024 * 1024);
    raw.write_all(raw_head(&gateway, "GET", &path, "").as_bytes())
        .unwrap();
    let head = read_response_head(&mut raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = Instant::now();
    wait_until(within, "the stream released", || {
        read(&mut raw);
        gateway.pool_state(pool).2 == 0
    });
    eprintln!("released after {:?}", started.elapsed());
    let line = gateway
        .proc
        .out
        .wait_for("error=caller_too_slow", Duration::from_secs(5));
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("status=200"), "the head had gone: {line}");
}

#[test]
fn a_caller_that_stops_reading_releases_its_stream() {
    // Nothing read: the first write the caller's socket cannot take fails after the window.
    slow_reader("stopped", &[], Duration::from_secs(20), |_| {});
}

#[test]
fn a_caller_that_reads_too_slowly_releases_its_stream() {
    let args = ["--min-download-rate", "1000000", "--download-grace", "1s"];
    slow_reader("dribble", &args, Duration::from_secs(30), |raw| {
        // 16 KiB every 200 ms: 80 KB/s, below the 1 MB/s asked for.
        let mut buf = vec![0u8; 16 * 1024];
        let _ = raw.read(&mut buf);
        std::thread::sleep(Duration::from_millis(200));
    });
}
