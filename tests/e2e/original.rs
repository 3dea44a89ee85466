//! What an operator of the original agent brings along works unchanged: its image's `serve`
//! argument and its flags, its boolean spellings, its token's `host:port`, SIGHUP, its
//! compression switch, its blocklist file, its JSON log fields.

use crate::support;

use std::time::Duration;
use support::tls::{start_tls_gateway, Ca};
use support::upstream::Upstream;
use support::*;
use vcs_agent::token::Token;

/// An allowlisted GitLab path (archive download), routed by the upstream's `do=`.
const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive";
/// An allowlisted write (commit status).
const STATUS: &str = "/api/v4/projects/group%2Frepo/statuses/0123abc";

/// `token` with its host replaced, as the original system's tokens spell it.
fn with_host(token: &str, host: &str) -> String {
    let mut t = Token::decode(token).expect("token");
    t.host = host.to_string();
    t.encode()
}

/// Runs an agent that must stop at once: its exit code and what it printed.
fn agent_exit(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let token = Token {
        host: "ws://127.0.0.1:1".into(),
        key: vcs_agent::token::Secret::new("s3cr3t-key"),
        pool_ulid: "01J0000000000000000000000".into(),
    }
    .encode();
    let mut agent = start_agent_with_args(&agent_env(&token, "http://127.0.0.1:1", env), args);
    let status = agent.wait_exit(Duration::from_secs(10));
    (status.code(), agent.out.text())
}

#[test]
fn serve_and_the_originals_flags_win_over_the_variables() {
    let gateway = Gateway::start(&[]);
    let upstream = Upstream::start();
    let token = gateway.create_pool("flags");
    // The variables say 2 streams and a VCS nobody listens on; the flags (one in Go's
    // single-dash spelling) say 3 streams and the upstream.
    let env = agent_env(
        &token,
        "http://127.0.0.1:9",
        &[
            ("SPACELIFT_VCS_AGENT_BUGSNAG_API_KEY", "b5g-s3cr3t"),
            ("SPACELIFT_VCS_AGENT_PARALELISM", "8"),
        ],
    );
    let target = format!("-target-base-endpoint={}", upstream.base());
    let args = ["serve", "--parallelism", "3", &target, "--disable-bugsnag"];
    let agent = start_agent_with_args(&env, &args);
    gateway.wait_streams("flags", 3);
    let url = gateway.url("flags", &format!("{ARCHIVE}?do=echo"));
    assert_eq!(client().get(url).call().unwrap().status(), 200);
    assert_eq!(upstream.requests().len(), 1);
    let warning = agent
        .out
        .wait_for("ignored settings:", Duration::from_secs(5));
    assert!(warning.contains(" WARN "), "{warning}");
    for named in [
        "SPACELIFT_VCS_AGENT_BUGSNAG_API_KEY (error reporting to Bugsnag",
        "SPACELIFT_VCS_AGENT_BUGSNAG_DISABLE (",
        "SPACELIFT_VCS_AGENT_PARALELISM (not a setting of this agent)",
    ] {
        assert!(warning.contains(named), "{named} not in {warning}");
    }
    assert_eq!(agent.out.count("ignored settings:"), 1);
    assert!(!agent.out.text().contains("b5g-s3cr3t"), "the key leaked");
}

/// Variables, arguments, and the start of the one line the agent must print.
type Mistake<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

#[test]
fn command_line_mistakes_exit_2_with_one_line() {
    let cases: [Mistake; 6] = [
        (
            &[],
            &["serve", "--parallelism", "abc"],
            "--parallelism (SPACELIFT_VCS_AGENT_PARALLELISM): expected an integer from 1 to 256, got \"abc\"",
        ),
        (
            &[("SPACELIFT_VCS_AGENT_PARALLELISM", "abc")],
            &["--parallelism=3", "--dial-insecure=maybe"],
            "--dial-insecure (SPACELIFT_VCS_AGENT_DIAL_INSECURE): expected true or false",
        ),
        (
            &[("SPACELIFT_VCS_AGENT_DIAL_INSECURE", "yes please")],
            &["serve"],
            "SPACELIFT_VCS_AGENT_DIAL_INSECURE: expected true or false (or 1/0, t/f, yes/no, on/off), got \"yes please\"",
        ),
        (
            &[],
            &["--no-such-flag"],
            "vcs-agent: unknown flag --no-such-flag",
        ),
        (&[], &["run"], "vcs-agent: unknown argument \"run\""),
        (
            &[],
            &["serve", "--token"],
            "vcs-agent: missing argument for option '--token'",
        ),
    ];
    for (env, args, expected) in cases {
        let (code, text) = agent_exit(env, args);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(text.starts_with(expected), "{args:?}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    let help = std::process::Command::new(AGENT)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("vcs-agent [serve]"), "{help}");
    assert!(help.contains("--token VALUE, --pool-token VALUE"), "{help}");
    assert!(help.contains("--dial-insecure[=BOOL]"), "{help}");
}

#[test]
fn a_host_port_token_is_dialed_over_tls_or_plain_with_dial_insecure() {
    let upstream = Upstream::start();
    let ca = Ca::new("Host Port CA");
    let tls = start_tls_gateway(&ca.leaf(&["localhost", "127.0.0.1"]), false);
    tls.proc
        .out
        .wait_for("agent port serves TLS", Duration::from_secs(5));
    let url = format!("wss://{}", tls.agent_addr);
    let token = with_host(&tls.create_pool_for("hostport", &url), &tls.agent_addr);
    let ca_var = [("SPACELIFT_VCS_AGENT_CA_CERT", ca.base64())];
    let ca_var: Vec<(&str, &str)> = ca_var.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let agent = start_agent(&agent_env(&token, &upstream.base(), &ca_var));
    tls.wait_streams("hostport", 2);
    assert!(agent.out.text().contains("is dialed over TLS, directly"));
    let r = client().get(tls.url("hostport", &format!("{ARCHIVE}?do=echo")));
    assert_eq!(r.call().unwrap().status(), 200);

    let plain = Gateway::start(&[]);
    let token = with_host(&plain.create_pool("insecure"), &plain.agent_addr);
    let insecure = [("SPACELIFT_VCS_AGENT_DIAL_INSECURE", "t")];
    let agent = start_agent(&agent_env(&token, &upstream.base(), &insecure));
    plain.wait_streams("insecure", 2);
    assert!(agent
        .out
        .text()
        .contains("without TLS (SPACELIFT_VCS_AGENT_DIAL_INSECURE)"));
    let r = client().get(plain.url("insecure", &format!("{ARCHIVE}?do=echo")));
    assert_eq!(r.call().unwrap().status(), 200);
    assert_eq!(upstream.requests().len(), 2);
}

#[test]
fn sighup_lets_a_request_in_flight_finish_then_exits_0() {
    let Tunnel {
        mut agent,
        gateway,
        upstream,
    } = Tunnel::start("hup", &[]);
    let url = gateway.url("hup", &format!("{ARCHIVE}?do=held"));
    let held = std::thread::spawn(move || client().get(url).call().map(|r| r.status().as_u16()));
    upstream.wait_for_requests(1, Duration::from_secs(5));
    agent.signal("HUP");
    agent.out.wait_for("draining", Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "the idle stream to leave", || {
        gateway.pool_state("hup").1 == 1
    });
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "exited mid-request"
    );
    upstream.release_held();
    assert_eq!(held.join().unwrap().unwrap(), 200);
    let status = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", agent.out.text());
}

#[test]
fn disabling_response_compression_asks_the_vcs_for_identity() {
    let compression = [(
        "SPACELIFT_VCS_AGENT_HTTP_DISABLE_RESPONSE_COMPRESSION",
        "TRUE",
    )];
    let tunnel = Tunnel::start("identity", &compression);
    let url = tunnel
        .gateway
        .url("identity", &format!("{ARCHIVE}?do=echo"));
    let r = client()
        .get(url)
        .header("Accept-Encoding", "gzip, br")
        .call();
    assert_eq!(r.unwrap().status(), 200);
    let seen = tunnel.upstream.requests();
    let encodings: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("accept-encoding"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(encodings, ["identity"]);
}

const BLOCKLIST: &str = r#"version: "1.0"
rules:
  - name: No commit statuses
    method: ^POST$
    path: /statuses/
"#;

#[test]
fn a_blocklist_denies_posting_statuses_while_get_passes() {
    let dir = TempDir::new("blocklist");
    let file = dir.0.join("blocklist.yaml");
    std::fs::write(&file, BLOCKLIST).unwrap();
    let file = file.display().to_string();
    let env = [
        ("SPACELIFT_VCS_AGENT_BLOCKLIST_PATH", file.as_str()),
        ("SPACELIFT_VCS_AGENT_LOG_FORMAT", "json"),
        ("SPACELIFT_VCS_AGENT_METRICS_ADDR", "127.0.0.1:0"),
    ];
    let tunnel = Tunnel::start("blocked", &env);
    let gateway = &tunnel.gateway;
    let post = client().post(gateway.url("blocked", &format!("{STATUS}?do=echo")));
    let (status, kind, message) = error_kind(post.send("{\"state\":\"success\"}").unwrap());
    assert_eq!((status, kind.as_str()), (403, "denied"), "{message}");
    assert!(
        message.contains("blocked by rule \"No commit statuses\""),
        "{message}"
    );
    let get = client().get(gateway.url("blocked", &format!("{ARCHIVE}?do=echo")));
    assert_eq!(get.call().unwrap().status(), 200);
    let seen = tunnel.upstream.requests();
    assert_eq!(seen.len(), 1, "the blocked request reached the VCS");
    assert_eq!(seen[0].method, "GET");

    // Counted like any denial, under its own reason.
    let out = &tunnel.agent.out;
    let listening = out.wait_for("metrics endpoint listening on", Duration::from_secs(5));
    let metrics_json: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let msg = metrics_json["msg"].as_str().unwrap();
    let addr = msg.rsplit(' ').next().unwrap();
    let metrics = client()
        .get(format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("vcs_agent_denials_total{reason=\"blocked\"} 1"),
        "{metrics}"
    );

    // The denied line names the rule that allowed it, the project and the blocking rule.
    let line = out.wait_for("blocked by rule", Duration::from_secs(5));
    let denied: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(denied["level"], "warning", "{denied}");
    assert_eq!(denied["blocked_by"], "No commit statuses", "{denied}");
    assert_eq!(denied["project"], "group/repo", "{denied}");
    assert!(
        denied["name"].as_str().is_some_and(|n| n != "-"),
        "{denied}"
    );
    assert_eq!(denied["name"], denied["for"]);
    assert_eq!(denied["status_code"], 403);
}

#[test]
fn each_invalid_blocklist_stops_the_agent_naming_the_rule() {
    let dir = TempDir::new("blocklist-bad");
    let cases = [
        (
            "rules: [{name: a}, {name: a, method: POST}]",
            "rule \"a\" is named twice",
        ),
        ("rules: [{method: GET, path: x}]", "rule 1 has no name"),
        (
            "rules: [{name: brackets, path: '['}]",
            "rule \"brackets\": invalid path regex",
        ),
        (
            "rules: [{name: verbs, method: '(('}]",
            "rule \"verbs\": invalid method regex",
        ),
        ("rules: {", "is not a blocklist file"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.0.join(format!("{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let path = file.display().to_string();
        let (code, out) = agent_exit(&[("SPACELIFT_VCS_AGENT_BLOCKLIST_PATH", &path)], &[]);
        assert_eq!(code, Some(2), "{text}: {out}");
        let prefix = format!("SPACELIFT_VCS_AGENT_BLOCKLIST_PATH: \"{path}\"");
        assert!(out.starts_with(&prefix), "{text}: {out}");
        assert!(out.contains(expected), "{text}: {out}");
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    let missing = dir.0.join("missing.yaml").display().to_string();
    let (code, out) = agent_exit(&[], &["--blocklist-path", &missing]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.starts_with(&format!(
            "--blocklist-path (SPACELIFT_VCS_AGENT_BLOCKLIST_PATH): cannot read \"{missing}\""
        )),
        "{out}"
    );
}

#[test]
fn a_project_denial_names_the_rule_and_the_project_it_judged() {
    let only_other = [("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "other/.*")];
    let tunnel = Tunnel::start("judged", &only_other);
    let url = tunnel.gateway.url("judged", &format!("{ARCHIVE}?do=echo"));
    let (status, kind, message) = error_kind(client().get(url).call().unwrap());
    assert_eq!((status, kind.as_str()), (403, "denied"), "{message}");
    let line = tunnel
        .agent
        .out
        .wait_for("error=denied", Duration::from_secs(5));
    assert!(line.contains(" project=group/repo "), "{line}");
    assert!(!line.contains("for=\"-\""), "{line}");
    assert!(
        line.contains("reason=\"project group/repo is not allowed\""),
        "{line}"
    );
    assert!(tunnel.upstream.requests().is_empty());
}
