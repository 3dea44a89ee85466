//! The front and the logs under abuse: floods of refused requests, values built to forge log
//! lines, streams held without moving bytes.

use crate::support;

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
