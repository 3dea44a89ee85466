//! The command lines operators type: pool management and configuration errors.

use crate::support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(GATEWAY)
        .args(args)
        .output()
        .expect("vcs-gateway")
}

#[test]
fn pool_create_prints_one_token_line_and_list_never_shows_keys() {
    let dir = TempDir::new("cli");
    let data = dir.0.to_str().unwrap();
    let out = gateway(&[
        "pool",
        "create",
        "--data-dir",
        data,
        "--name",
        "gitlab-eu",
        "--description",
        "EU GitLab",
        "--public-url",
        "wss://gw.example.com",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    let token = vcs_agent::token::Token::decode(stdout.trim()).unwrap();
    assert_eq!(token.host, "wss://gw.example.com");
    assert!(token.key.expose().len() >= 43, "at least 256 bits of key");
    let default = gateway(&["pool", "create", "--data-dir", data, "--name", "second"]);
    let default_token =
        vcs_agent::token::Token::decode(String::from_utf8(default.stdout).unwrap().trim()).unwrap();
    assert_eq!(default_token.host, "ws://127.0.0.1:1984");

    let list = gateway(&["pool", "list", "--data-dir", data]);
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        listing.contains("gitlab-eu")
            && listing.contains("EU GitLab")
            && listing.contains(&token.pool_ulid)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.0.join("pools.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "pools.json holds key hashes");
    let stored = std::fs::read_to_string(dir.0.join("pools.json")).unwrap();
    for secret in [token.key.expose(), default_token.key.expose()] {
        assert!(
            !listing.contains(secret) && !stored.contains(secret),
            "a key was shown or stored"
        );
    }
}

#[test]
fn bad_or_duplicate_pool_names_fail_clearly() {
    let dir = TempDir::new("names");
    let data = dir.0.to_str().unwrap();
    assert!(
        gateway(&["pool", "create", "--data-dir", data, "--name", "ok-1"])
            .status
            .success()
    );
    let cases = [
        ("ok-1", "already exists"),
        ("Bad_Name", "lowercase letters"),
        ("", "1 to 63"),
        (&"x".repeat(64), "1 to 63"),
    ];
    for (name, expected) in cases {
        let out = gateway(&["pool", "create", "--data-dir", data, "--name", name]);
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expected), "{name:?}: {stderr}");
        assert!(out.stdout.is_empty(), "no token for a refused pool");
    }
    let out = gateway(&["pool", "create", "--data-dir", data]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--name is required"));
    for (flag, value) in [("--queue-timeout", "soon"), ("--max-callers", "0")] {
        let out = gateway(&["serve", "--data-dir", data, flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with(&format!("vcs-gateway: {flag}")),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_flag_that_is_not_the_subcommands_is_refused_naming_both() {
    let dir = TempDir::new("cli-foreign");
    let data = dir.0.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["pool", "list", "--data-dir", data, "--tls-cert", "x"],
            "pool list does not take --tls-cert",
        ),
        (
            &[
                "pool",
                "create",
                "--data-dir",
                data,
                "--name",
                "p",
                "--admin-token",
                "x",
            ],
            "pool create does not take --admin-token",
        ),
        (
            &[
                "pool",
                "rotate",
                "--data-dir",
                data,
                "--name",
                "p",
                "--description",
                "d",
            ],
            "pool rotate does not take --description",
        ),
        (
            &[
                "caller",
                "rotate",
                "--data-dir",
                data,
                "--name",
                "c",
                "--pools",
                "p",
            ],
            "caller rotate does not take --pools",
        ),
        (
            &["serve", "--data-dir", data, "--name", "x"],
            "serve does not take --name",
        ),
        (
            &["caller", "list", "--data-dir", data, "--bogus"],
            "caller list does not take --bogus",
        ),
    ];
    for (args, expected) in cases {
        let out = gateway(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("vcs-gateway: {expected}")),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(
        !dir.0.join("pools.json").exists(),
        "a refused command line wrote nothing"
    );
}

#[test]
fn help_of_a_subcommand_shows_its_own_flags() {
    let pool_list = gateway(&["pool", "list", "--help"]);
    assert!(pool_list.status.success());
    let text = String::from_utf8(pool_list.stdout).unwrap();
    assert!(
        text.contains("vcs-gateway pool list --data-dir DIR"),
        "{text}"
    );
    assert!(
        !text.contains("--tls-cert") && !text.contains("pool create"),
        "{text}"
    );
    let serve = gateway(&["serve", "--help"]);
    assert!(serve.status.success());
    let text = String::from_utf8(serve.stdout).unwrap();
    assert!(text.contains("--tls-cert PEM --tls-key PEM"), "{text}");
    assert!(!text.contains("vcs-gateway caller create"), "{text}");
}

fn agent_exit(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let token = vcs_agent::token::Token {
        host: "ws://127.0.0.1:1".into(),
        key: vcs_agent::token::Secret::new("s3cr3t-key"),
        pool_ulid: "01J0000000000000000000000".into(),
    }
    .encode();
    let mut env = agent_env(&token, "http://127.0.0.1:1", &[]);
    for (k, v) in vars {
        if v.is_empty() {
            env.remove(*k);
        } else {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let mut agent = start_agent(&env);
    let status = agent.wait_exit(Duration::from_secs(10));
    wait_until(Duration::from_secs(5), "the error line", || {
        !agent.out.lines().is_empty()
    });
    (status.code(), agent.out.text())
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_variable() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let no_key = b64(r#"{"host":"ws://h","pool_ulid":"p"}"#);
    let not_json = b64("s3cr3t-key but not json");
    let spaced_host = b64(r#"{"host":"ws://gate way:1984","key":"s3cr3t-key","pool_ulid":"p"}"#);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "SPACELIFT_VCS_AGENT_PARALLELISM",
            "abc".into(),
            "SPACELIFT_VCS_AGENT_PARALLELISM: expected an integer from 1 to 256, got \"abc\"",
        ),
        (
            "SPACELIFT_VCS_AGENT_POOL_TOKEN",
            "%%%".into(),
            "SPACELIFT_VCS_AGENT_POOL_TOKEN: not valid base64",
        ),
        (
            "SPACELIFT_VCS_AGENT_POOL_TOKEN",
            not_json,
            "SPACELIFT_VCS_AGENT_POOL_TOKEN: not a JSON object",
        ),
        (
            "SPACELIFT_VCS_AGENT_POOL_TOKEN",
            no_key,
            "SPACELIFT_VCS_AGENT_POOL_TOKEN: field \"key\" is missing",
        ),
        (
            "SPACELIFT_VCS_AGENT_POOL_TOKEN",
            spaced_host,
            "SPACELIFT_VCS_AGENT_POOL_TOKEN: the token's gateway address \"ws://gate way:1984\" is not a URL",
        ),
        (
            "SPACELIFT_VCS_AGENT_KEEPALIVE_INTERVAL",
            "100ms".into(),
            "SPACELIFT_VCS_AGENT_KEEPALIVE_INTERVAL: must be at least 1s",
        ),
        (
            "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
            " ".into(),
            "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS: is set but empty",
        ),
        (
            "NO_PROXY",
            "localhost,fd00::/200".into(),
            "NO_PROXY: \"fd00::/200\": the prefix length must be from 0 to 128",
        ),
        (
            "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT",
            "https://ci:s3cr3t-key@git.internal:99999".into(),
            "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: user:password@ is not allowed",
        ),
        (
            "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT",
            "https://git.internal:99999".into(),
            "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: port must be from 1 to 65535",
        ),
        (
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS",
            "ws://127.0.0.1:2,http://127.0.0.1:3".into(),
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS: entry 2: gateway address \"http://127.0.0.1:3\" must start with ws:// or wss://",
        ),
        (
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS",
            "wss://gw2.example/?key=s3cr3t-key".into(),
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS: entry 1: gateway address",
        ),
        (
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS",
            "ws://127.0.0.1:2,,ws://127.0.0.1:3".into(),
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS: entry 2 is empty",
        ),
        (
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS",
            "ws://127.0.0.1:1/".into(),
            "SPACELIFT_VCS_AGENT_GATEWAY_URLS: entry 1 repeats the token's host or an earlier entry",
        ),
        (
            "SPACELIFT_VCS_AGENT_MAX_STREAM_AGE",
            "soon".into(),
            "SPACELIFT_VCS_AGENT_MAX_STREAM_AGE: ",
        ),
        (
            "SPACELIFT_VCS_AGENT_VENDOR",
            "gitea".into(),
            "SPACELIFT_VCS_AGENT_VENDOR: expected one of",
        ),
        (
            "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT",
            String::new(),
            "SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT: is required but not set",
        ),
    ];
    for (name, value, expected) in cases {
        let (code, text) = agent_exit(&[(name, &value)]);
        assert_eq!(code, Some(2), "{name}={value}: {text}");
        assert!(text.starts_with(expected), "{name}={value}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("s3cr3t-key"), "the key leaked: {text}");
    }
}

#[test]
fn help_and_version() {
    let help = Command::new(AGENT).arg("--help").output().unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for variable in [
        "SPACELIFT_VCS_AGENT_POOL_TOKEN",
        "SPACELIFT_VCS_AGENT_PARALLELISM",
        "SPACELIFT_METADATA_",
        "SPACELIFT_VCS_AGENT_DRAIN_TIMEOUT",
    ] {
        assert!(text.contains(variable), "--help lacks {variable}");
    }
    let version = Command::new(AGENT).arg("--version").output().unwrap();
    assert!(String::from_utf8(version.stdout)
        .unwrap()
        .starts_with("vcs-agent "));
    let gw = gateway(&["--help"]);
    let text = String::from_utf8(gw.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--agent-listen",
        "--api-listen",
        "--queue-timeout",
        "--public-url",
    ] {
        assert!(text.contains(flag), "gateway --help lacks {flag}");
    }
}

#[test]
fn pool_create_refuses_a_public_url_agents_cannot_dial_before_writing() {
    let dir = TempDir::new("cli-url");
    let data = dir.0.to_str().unwrap();
    for url in [
        "ws://gate way.example:1984",
        "wss://gw:70000",
        "ws://u:pw@gw",
        "https://gw",
    ] {
        let out = gateway(&[
            "pool",
            "create",
            "--data-dir",
            data,
            "--name",
            "p",
            "--public-url",
            url,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--public-url"), "{stderr}");
        assert!(!stderr.contains("pw"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(
        !dir.0.join("pools.json").exists(),
        "no pool was written for a refused URL"
    );
}

#[test]
fn serve_refuses_a_front_url_that_is_not_a_plain_http_url() {
    let dir = TempDir::new("cli-front");
    let data = dir.0.to_str().unwrap();
    for url in [
        "gw.example.com",
        "ftp://gw.example.com",
        "https://",
        "https://gw example.com",
        "https://gw.example.com/x?y=1",
        "https://u@gw.example.com",
    ] {
        let out = gateway(&["serve", "--data-dir", data, "--front-url", url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--front-url"), "{stderr}");
    }
}
