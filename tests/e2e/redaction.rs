//! Secrets never reach a log, whatever the level.
//!
//! At the default level with `SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL`, a token after a `;`
//! query separator, a `Referer` with a token in its query and custom auth headers are masked
//! in both access lines, the debug dump and the panel's request log.
//!
//! At `trace` (the agent by `SPACELIFT_VCS_AGENT_LOG_LEVEL`, by `RUST_LOG`, and by both with
//! `SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL` and JSON lines; the gateway by `RUST_LOG`) requests
//! carry known secrets in every place one travels: the pool key in the agent's upgrade, header
//! tokens, a query token, Basic credentials, the agent's proxy password, the gateway's
//! admin token and the caller's secret. Every byte either program wrote is searched for each
//! secret, as it is and in hex (how WebSocket frames are dumped); Basic credentials also in
//! base64, the way they travel.

use crate::support;

use base64::Engine;
use std::time::Duration;
use support::proxy::{ConnectProxy, Policy};
use support::upstream::Upstream;
use support::*;
use vcs_agent::token::Token;

/// An allowlisted GitLab path the test upstream echoes.
const PATH: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

const HEADER_TOKEN: &str = "HeaderTokenSecret01";
const BEARER: &str = "BearerSecret02";
const COOKIE: &str = "CookieSecret03";
const QUERY_TOKEN: &str = "QueryTokenSecret04";
const BASIC_PASSWORD: &str = "BasicPassword05";
const PROXY_PASSWORD: &str = "ProxyPassword06";
const ADMIN_TOKEN: &str = "AdminTokenSecret07xyz";

/// The forms of `secret` that must not appear: as it is and as lowercase hex.
fn forms(secret: &str) -> Vec<String> {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    vec![secret.to_string(), hex]
}

fn assert_no_secret(who: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{who} printed the secret {secret:?} (as {form:?}):\n{text}"
            );
        }
    }
}

/// Sends the requests carrying the caller-side secrets through the gateway.
fn send_requests(gateway: &Gateway, pool: &str) {
    let http = client();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{BASIC_PASSWORD}"));
    let with_query = format!("{PATH}&private_token={QUERY_TOKEN}");
    let response = http
        .get(gateway.url(pool, &with_query))
        .header("PRIVATE-TOKEN", HEADER_TOKEN)
        .header("Cookie", format!("_gitlab_session={COOKIE}"))
        .call()
        .expect("request with header and query tokens");
    assert_eq!(response.status(), 200);
    let response = http
        .get(gateway.url(pool, PATH))
        .header("Authorization", format!("Bearer {BEARER}"))
        .call()
        .expect("request with a bearer token");
    assert_eq!(response.status(), 200);
    let response = http
        .get(gateway.url(pool, PATH))
        .header("Authorization", format!("Basic {basic}"))
        .call()
        .expect("request with Basic credentials");
    assert_eq!(response.status(), 200);
    let response = http
        .get(format!("http://{}/api/pools", gateway.api_addr))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .call()
        .expect("admin API request");
    assert_eq!(response.status(), 200);
}

#[test]
fn both_programs_at_trace_print_no_secret() {
    // The gateway reads only RUST_LOG.
    let gateway =
        Gateway::start_with_env(&[("RUST_LOG", "trace")], &["--admin-token", ADMIN_TOKEN]);
    let upstream = Upstream::start();
    let proxy = ConnectProxy::start(Policy {
        credentials: Some(format!("agent:{PROXY_PASSWORD}")),
        refuse_with: None,
    });
    let proxy_url = proxy.url(Some(&format!("agent:{PROXY_PASSWORD}")));
    let levels: [&[(&str, &str)]; 3] = [
        &[("SPACELIFT_VCS_AGENT_LOG_LEVEL", "trace")],
        &[("RUST_LOG", "trace")],
        &[
            (
                "RUST_LOG",
                "trace,tungstenite=trace,ureq=trace,rustls=trace",
            ),
            ("SPACELIFT_VCS_AGENT_LOG_LEVEL", "trace"),
            ("SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL", "true"),
            ("SPACELIFT_VCS_AGENT_LOG_FORMAT", "json"),
        ],
    ];
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{BASIC_PASSWORD}"));
    let mut secrets: Vec<String> = [
        HEADER_TOKEN,
        BEARER,
        COOKIE,
        QUERY_TOKEN,
        BASIC_PASSWORD,
        PROXY_PASSWORD,
        ADMIN_TOKEN,
        &basic,
        &gateway.caller_secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (i, level) in levels.iter().enumerate() {
        let pool = format!("trace{i}");
        let token = gateway.create_pool(&pool);
        secrets.push(
            Token::decode(&token)
                .expect("token")
                .key
                .expose()
                .to_string(),
        );
        let mut extra = level.to_vec();
        extra.push(("http_proxy", &proxy_url));
        let agent = start_agent(&agent_env(&token, &upstream.base(), &extra));
        gateway.wait_streams(&pool, 2);
        send_requests(&gateway, &pool);
        // The agent writes each access line after its answer: wait for all three.
        wait_until(Duration::from_secs(5), "three agent access lines", || {
            agent.out.count("status=200") + agent.out.count("\"status\":200") >= 3
        });
        let text = agent.out.text();
        let detailed = [
            " TRACE ",
            " DEBUG ",
            "\"level\":\"trace\"",
            "\"level\":\"debug\"",
        ];
        assert!(
            detailed.iter().any(|d| text.contains(d)),
            "the agent did not log at trace with {level:?}:\n{text}"
        );
        assert_no_secret(&format!("the agent with {level:?}"), &text, &secrets);
    }
    assert_eq!(
        upstream.requests().len(),
        9,
        "every request reached the VCS"
    );
    assert!(!proxy.tunnels().is_empty(), "the agent used the proxy");
    let text = gateway.proc.out.text();
    assert_no_secret("the gateway at RUST_LOG=trace", &text, &secrets);
}

#[test]
fn default_level_masks_semicolon_queries_referers_and_custom_auth_headers() {
    let gateway = Gateway::start(&[]);
    let upstream = Upstream::start();
    let token = gateway.create_pool("masked");
    let agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL", "true")],
    ));
    gateway.wait_streams("masked", 2);
    let secrets: Vec<String> = [
        "SemicolonSecret11",
        "RefererSecret12",
        "XAuthSecret13",
        "SessionSecret14",
        "ApiKeySecret15",
        &gateway.caller_secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let response = client()
        .get(gateway.url(
            "masked",
            &format!(
                "/api/v4/projects/group%2Frepo/repository/archive?x=1;private_token={}&do=echo",
                secrets[0]
            ),
        ))
        .header(
            "Referer",
            format!("https://saas.example/x?a=1&private_token={}", secrets[1]),
        )
        .header("X-Auth", &secrets[2])
        .header("X-Session-Id", &secrets[3])
        .header("X-Custom-Key", &secrets[4])
        .call()
        .expect("request");
    assert_eq!(response.status(), 200);
    // The upstream got every secret: masking is for logs only.
    let seen = upstream.requests();
    assert!(seen[0]
        .target
        .contains(&format!(";private_token={}&", secrets[0])));

    agent.out.wait_for("status=200", Duration::from_secs(5));
    let line = gateway
        .proc
        .out
        .wait_for("pool=masked method=GET", Duration::from_secs(5));
    assert!(line.contains(";private_token=***"), "{line}");
    let panel_log = || {
        client()
            .get(format!(
                "http://{}/api/pools/masked/log?limit=10",
                gateway.api_addr
            ))
            .header("Authorization", format!("Bearer {}", gateway.admin_token))
            .call()
            .expect("panel log")
            .body_mut()
            .read_to_string()
            .expect("panel log body")
    };
    wait_until(
        Duration::from_secs(5),
        "the request in the panel's log",
        || panel_log().contains("private_token"),
    );
    let log = panel_log();
    assert!(log.contains(";private_token=***"), "{log}");
    let agent_text = agent.out.text();
    assert!(agent_text.contains("x-auth: ***"), "{agent_text}");
    assert_no_secret("the agent", &agent_text, &secrets);
    assert_no_secret("the gateway", &gateway.proc.out.text(), &secrets);
    assert_no_secret("the panel's request log", &log, &secrets);
}
