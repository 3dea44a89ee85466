//! `vcs-agent check`: the preflight, against a real gateway and upstream on loopback.

use crate::support;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;
use support::upstream::Upstream;
use support::*;
use vcs_agent::token::{Secret, Token};

fn check(env: &std::collections::BTreeMap<String, String>) -> Output {
    Command::new(AGENT)
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .expect("vcs-agent check")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The verdict line of one check.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l[5.min(l.len())..].starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn all_checks_pass_and_the_check_never_serves() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("preflight");
    let env = agent_env(
        &token,
        &format!("{}/gitlab", upstream.base()),
        &[("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "infra/.*")],
    );
    let out = check(&env);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("ok   ")), "{text}");
    assert!(line(&text, "token").contains("ws://"), "{text}");
    assert!(line(&text, "allowlist").contains("vendor gitlab"), "{text}");
    assert!(
        line(&text, "allowlist").contains("^(?:infra/.*)$"),
        "{text}"
    );
    assert!(
        line(&text, "gateway").contains("accepted the pool token"),
        "{text}"
    );
    assert!(line(&text, "vcs").contains("answered 404"), "{text}");

    // The probe went to the base endpoint's sub-path, with no credentials.
    let probe = upstream.wait_for_requests(1, Duration::from_secs(5));
    assert_eq!(probe[0].method, "GET");
    assert_eq!(probe[0].target, "/gitlab/api/v4/version");
    assert!(!probe[0]
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization")
            || n.eq_ignore_ascii_case("private-token")));

    // The gateway saw a stream that said it was draining and closed it; none is left serving.
    gateway
        .proc
        .out
        .wait_for("agent is draining", Duration::from_secs(5));
    gateway.wait_streams("preflight", 0);
    let key = Token::decode(&token).expect("token").key;
    assert!(!text.contains(key.expose()), "the key was printed");
}

#[test]
fn a_wss_gateway_with_a_private_ca_passes_and_without_the_ca_is_named() {
    let ca = support::tls::Ca::new("Check Test CA");
    let gateway = support::tls::start_tls_gateway(&ca.leaf(&["localhost", "127.0.0.1"]), false);
    let address = format!("wss://{}", gateway.agent_addr);
    let token = gateway.create_pool_for("preflight-tls", &address);
    let upstream = Upstream::start();
    let trusted = agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_CA_CERT", &ca.base64())],
    );
    let out = check(&trusted);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(line(&text, "token").contains(&address), "{text}");
    assert!(
        line(&text, "gateway").contains("accepted the pool token"),
        "{text}"
    );

    // Without the CA the token still decodes; the gateway check says the certificate is
    // not trusted and how to fix it.
    let out = check(&agent_env(&token, &upstream.base(), &[]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "token").starts_with("ok   token:"), "{text}");
    assert!(
        line(&text, "gateway").contains("SPACELIFT_VCS_AGENT_CA_CERT"),
        "{text}"
    );
}

#[test]
fn each_broken_link_is_named_and_fails_the_check() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("broken");
    let decoded = Token::decode(&token).expect("token");

    // A key the gateway does not know: the gateway check fails, the others still run.
    let wrong = Token {
        key: Secret::new("not-the-key"),
        ..decoded.clone()
    }
    .encode();
    let out = check(&agent_env(&wrong, &upstream.base(), &[]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "gateway").starts_with("FAIL gateway:"),
        "{text}"
    );
    assert!(
        line(&text, "gateway").contains("refused the pool token"),
        "{text}"
    );
    assert!(line(&text, "vcs").starts_with("ok   vcs:"), "{text}");
    assert!(!text.contains("not-the-key"), "the key was printed");

    // A gateway that is not there.
    let nowhere = Token {
        host: format!("ws://127.0.0.1:{}", closed_port()),
        ..decoded.clone()
    }
    .encode();
    let out = check(&agent_env(&nowhere, &upstream.base(), &[]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "gateway").contains("cannot connect"), "{text}");

    // A VCS that is not there.
    let out = check(&agent_env(
        &token,
        &format!("http://127.0.0.1:{}", closed_port()),
        &[],
    ));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "gateway").starts_with("ok   gateway:"),
        "{text}"
    );
    assert!(line(&text, "vcs").starts_with("FAIL vcs:"), "{text}");
    assert!(line(&text, "vcs").contains("connection refused"), "{text}");

    // A TLS endpoint that speaks plain HTTP: a TLS failure, not reachability.
    let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = plain.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in plain.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let out = check(&agent_env(
        &token,
        &format!("https://127.0.0.1:{port}"),
        &[],
    ));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "vcs").starts_with("FAIL vcs:"), "{text}");
}

#[test]
fn an_unauthenticated_401_counts_as_reachable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            read_head(&mut reader);
            let _ = reader.get_mut().write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("auth");
    let out = check(&agent_env(&token, &format!("http://{addr}"), &[]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(line(&text, "vcs").contains("answered 401"), "{text}");
}

#[test]
fn configuration_errors_exit_2_with_one_line() {
    let out = check(&agent_env(
        "irrelevant",
        "http://127.0.0.1:1",
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "abc")],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    // The token is read first: its error is the one reported.
    assert!(err.starts_with("SPACELIFT_VCS_AGENT_POOL_TOKEN: "), "{err}");

    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("config");
    let out = check(&agent_env(
        &token,
        "http://127.0.0.1:1",
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "abc")],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "SPACELIFT_VCS_AGENT_PARALLELISM: expected an integer from 1 to 256, got \"abc\""
    );
}

#[test]
fn help_lists_every_variable_and_both_binaries_print_versions() {
    let help = Command::new(AGENT).arg("--help").output().expect("--help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("vcs-agent check"), "{help}");
    for setting in vcs_agent::config::SETTINGS {
        assert!(help.contains(setting.env), "{} not in --help", setting.env);
        assert!(
            help.contains(&format!("[{}] {}", setting.default, setting.meaning)),
            "default and meaning of {} not in --help",
            setting.env
        );
        for flag in setting.flags {
            assert!(help.contains(flag), "{flag} not in --help");
        }
    }
    let version = format!("{}\n", expected_build());
    for (binary, name) in [(AGENT, "vcs-agent"), (GATEWAY, "vcs-gateway")] {
        let out = Command::new(binary)
            .arg("--version")
            .output()
            .expect("--version");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name} {version}")
        );
    }
    let gateway_help = Command::new(GATEWAY)
        .arg("--help")
        .output()
        .expect("--help");
    assert!(String::from_utf8_lossy(&gateway_help.stdout).contains("/metrics"));
}

/// With `SPACELIFT_VCS_AGENT_GATEWAY_URLS` every address gets its own gateway line, in
/// order: the token's host passes, a listed address nobody listens on fails the check.
#[test]
fn every_gateway_address_is_checked() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("several");
    let dead = format!("ws://127.0.0.1:{}", closed_port());
    let env = agent_env(
        &token,
        &format!("{}/gitlab", upstream.base()),
        &[("SPACELIFT_VCS_AGENT_GATEWAY_URLS", dead.as_str())],
    );
    let out = check(&env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let gateways: Vec<&str> = text
        .lines()
        .filter(|l| l[5.min(l.len())..].starts_with("gateway:"))
        .collect();
    assert_eq!(gateways.len(), 2, "{text}");
    assert!(gateways[0].starts_with("ok   gateway:"), "{text}");
    assert!(gateways[1].starts_with("FAIL gateway:"), "{text}");
    assert!(gateways[1].contains(&dead), "{text}");
}

/// What `--version` should name, found here without src/build.rs: the crate version, and in a
/// git checkout (as this one is in CI) `+` the commit, `-dirty` when a file the binaries are
/// built from differs from it.
fn expected_build() -> String {
    let build = vcs_agent::BUILD.to_string();
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let version = env!("CARGO_PKG_VERSION");
    // Sources unpacked inside another repository are not a checkout of their own.
    let top = git(&["rev-parse", "--show-toplevel"]).map(std::path::PathBuf::from);
    let ours =
        top.and_then(|t| t.canonicalize().ok()) == std::path::Path::new(root).canonicalize().ok();
    if !ours {
        assert_eq!(build, version);
        return build;
    }
    // Built from this checkout: the version, the commit built (HEAD then, HEAD or before it
    // now: a commit may land while the tests run), and `-dirty` when sources had changes.
    let rest = build
        .strip_prefix(&format!("{version}+"))
        .expect("a commit in the build");
    let commit = rest.strip_suffix("-dirty").unwrap_or(rest);
    assert!(
        commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{build}"
    );
    let ancestor = ["merge-base", "--is-ancestor", commit, "HEAD"];
    assert!(git(&ancestor).is_some(), "{build} is not this checkout's");
    build
}
