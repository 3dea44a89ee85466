//! No level leaks a secret: both programs run at `trace` (by `SPACELIFT_VCS_AGENT_LOG_LEVEL`,
//! by `RUST_LOG`, and both with `SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL`) while requests carry
//! known secrets in every place one travels: the pool key in the agent's upgrade, header
//! tokens, a query token, Basic credentials, the agent's proxy password and the gateway's
//! admin token. Every byte either program wrote is searched for each secret, as it is, in
//! hex (how WebSocket frames are dumped) and in base64 (how Basic credentials travel).

mod support;

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
    // The gateway reads only RUST_LOG, from the environment the test harness passes on.
    std::env::set_var("RUST_LOG", "trace");
    let gateway = Gateway::start(&["--admin-token", ADMIN_TOKEN]);
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
            agent.out.count("status=200") >= 3
        });
        let text = agent.out.text();
        assert!(
            text.contains(" TRACE ") || text.contains(" DEBUG "),
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
