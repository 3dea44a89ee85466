//! Webhooks through the pool: a VCS posts to the agent's webhook listener, the agent checks
//! the event (POST, the vendor's event table, the size cap, JSON, the project against
//! `ALLOWED_PROJECTS`) and relays it through the gateway, which delivers it to the pool's
//! webhook URL with the VCS's bytes and headers unchanged plus its own signature. Payloads
//! and headers follow each vendor's webhook documentation.

use crate::support;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::upstream::{Recorded, Upstream};
use support::*;

/// The VCS's webhook secret (GitHub, Bitbucket sign with it; GitLab sends it as a token).
const VCS_SECRET: &str = "It's a Secret to Everybody";

const START: Duration = Duration::from_secs(30);

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A gateway (delivering to http:// for the test), a pool whose webhook URL is the SaaS
/// stand-in's `path`, and an agent of `vendor` with its webhook listener on.
struct Hooks {
    gateway: Gateway,
    agent: Proc,
    saas: Upstream,
    /// Where the VCS posts.
    listen: String,
    /// The pool's webhook secret, shown once by `pool update`.
    secret: String,
}

impl Hooks {
    fn start(vendor: &str, projects: &str, path: &str) -> Hooks {
        let saas = Upstream::with_routes(|r| {
            (r.path() == "/hooks").then(|| (202, vec![], b"queued".to_vec()))
        });
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", saas.base())
        };
        Hooks::start_with(vendor, projects, &url, saas, &[])
    }

    fn start_with(
        vendor: &str,
        projects: &str,
        url: &str,
        saas: Upstream,
        extra: &[(&str, &str)],
    ) -> Hooks {
        let gateway = Gateway::start(&["--allow-http-webhooks"]);
        let token = gateway.create_pool("hooks");
        let secret = set_webhook(&gateway, "hooks", url);
        let (name, value) = gateway.admin_header();
        wait_until(START, "the gateway sees the webhook URL", || {
            client()
                .get(format!("http://{}/api/pools/hooks", gateway.api_addr))
                .header(name, &value)
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .is_some_and(|t| t.contains(url))
        });
        let mut env = agent_env(&token, &saas.base(), extra);
        env.insert("SPACELIFT_VCS_AGENT_VENDOR".into(), vendor.into());
        env.insert(
            "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS".into(),
            projects.into(),
        );
        let (agent, listen) = start_webhook_agent(&env);
        gateway.wait_streams("hooks", 2);
        Hooks {
            gateway,
            agent,
            saas,
            listen,
            secret,
        }
    }

    /// Posts `body` with `headers` as the VCS would; returns the status and the answer.
    fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut request = bare_client().post(format!("http://{}/", self.listen));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send(body).expect("the agent answers");
        let status = response.status().as_u16();
        (
            status,
            response.into_body().read_to_string().unwrap_or_default(),
        )
    }

    /// Waits for `line` in the gateway's `/metrics`.
    fn metric(&self, line: &str) {
        let (name, value) = self.gateway.admin_header();
        wait_until(START, line, || {
            client()
                .get(format!("http://{}/metrics", self.gateway.api_addr))
                .header(name, &value)
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .is_some_and(|t| t.lines().any(|l| l == line))
        });
    }

    /// The one delivery the SaaS got, checked for the gateway's signature.
    fn delivered(&self, body: &[u8]) -> Recorded {
        let got = self.saas.wait_for_requests(1, START);
        assert_eq!(got.len(), 1);
        let r = got[0].clone();
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, body, "the VCS's bytes, unchanged");
        assert_eq!(r.header("X-Vcs-Pool"), Some("hooks"));
        let timestamp = r.header("X-Vcs-Timestamp").expect("timestamp").to_string();
        let now = vcs_agent::clock::now_seconds();
        let ts: u64 = timestamp.parse().expect("seconds");
        assert!(ts <= now && now - ts < 60, "a fresh timestamp");
        let want = format!(
            "sha256={}",
            hmac_hex(&self.secret, &[timestamp.as_bytes(), b".", body])
        );
        assert_eq!(r.header("X-Vcs-Signature-256"), Some(want.as_str()));
        r
    }
}

/// `pool update --webhook-url`: the secret, alone on stdout.
fn set_webhook(gateway: &Gateway, pool: &str, url: &str) -> String {
    let output = Command::new(GATEWAY)
        .args(["pool", "update", "--data-dir"])
        .arg(&gateway.dir.0)
        .args(["--name", pool, "--webhook-url", url])
        .output()
        .expect("pool update");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(secret.starts_with("vgw_"), "{secret}");
    secret
}

fn gitlab_push(project: &str) -> Vec<u8> {
    serde_json::json!({
        "object_kind": "push", "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "ref": "refs/heads/master", "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "user_id": 4, "user_name": "John Smith", "user_username": "jsmith", "project_id": 15,
        "project": {"id": 15, "name": "Diaspora", "path_with_namespace": project,
            "default_branch": "master", "web_url": format!("http://example.com/{project}")},
        "commits": [{"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00", "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
            "added": ["CHANGELOG"], "modified": ["app/controller/application.rb"], "removed": []}],
        "total_commits_count": 1
    })
    .to_string()
    .into_bytes()
}

fn gitlab_headers(event: &str) -> Vec<(&str, &str)> {
    vec![
        ("Content-Type", "application/json"),
        ("User-Agent", "GitLab/17.5.0"),
        ("X-Gitlab-Event", event),
        ("X-Gitlab-Token", VCS_SECRET),
        ("X-Gitlab-Instance", "https://gitlab.internal"),
        (
            "X-Gitlab-Webhook-UUID",
            "9ac1b2b1-8d3e-4b64-9a6a-6dcd3ea0e5a6",
        ),
        (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        ),
    ]
}

#[test]
fn a_gitlab_push_reaches_the_saas_with_its_token_and_the_gateways_signature() {
    let hooks = Hooks::start("gitlab", "mike/.*", "/hooks");
    let body = gitlab_push("mike/diaspora");
    let (status, text) = hooks.post(&gitlab_headers("Push Hook"), &body);
    assert_eq!(status, 200, "{text}");
    let r = hooks.delivered(&body);
    assert_eq!(r.header("X-Gitlab-Token"), Some(VCS_SECRET));
    assert_eq!(r.header("X-Gitlab-Event"), Some("Push Hook"));
    assert_eq!(r.header("X-Vcs-Event"), Some("Push Hook"));
    assert_eq!(
        r.header("X-Gitlab-Event-UUID"),
        Some("13792a34-cac6-4fda-95a8-c58e00a3954e")
    );
    assert_eq!(r.header("User-Agent"), Some("GitLab/17.5.0"));
    hooks.agent.out.wait_for("event=\"Push Hook\" for=\"push to a branch\" project=mike/diaspora status=200 saas_status=202", START);
    hooks
        .gateway
        .proc
        .out
        .wait_for("webhook side=gateway pool=hooks event=\"Push Hook\"", START);
    hooks.metric(
        "vcs_gateway_webhooks_total{pool=\"hooks\",event=\"Push Hook\",outcome=\"delivered\"} 1",
    );
    let (name, value) = hooks.gateway.admin_header();
    let pool: serde_json::Value = client()
        .get(format!("http://{}/api/pools/hooks", hooks.gateway.api_addr))
        .header(name, &value)
        .call()
        .ok()
        .and_then(|r| r.into_body().read_to_string().ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let last = &pool["pool"]["webhooks"][0];
    assert_eq!(
        (last["event"].as_str(), last["status"].as_u64()),
        (Some("Push Hook"), Some(200)),
        "{pool}"
    );
    assert_eq!(last["project"], "mike/diaspora");
    // The pool's streams still carry requests beside the relays.
    client()
        .get(
            hooks
                .gateway
                .url("hooks", "/api/v4/projects/mike%2Fdiaspora"),
        )
        .call()
        .expect("tunnel");
    let got = hooks.saas.wait_for_requests(2, START);
    assert_eq!(got[1].path(), "/api/v4/projects/mike%2Fdiaspora");
}

#[test]
fn refused_events_never_leave_the_network() {
    let hooks = Hooks::start("gitlab", "mike/.*", "/hooks");
    let outside = gitlab_push("other/secret-repo");
    let (status, text) = hooks.post(&gitlab_headers("Push Hook"), &outside);
    assert_eq!(status, 403);
    assert!(
        text.contains("project other/secret-repo is not allowed"),
        "{text}"
    );
    let (status, text) = hooks.post(
        &gitlab_headers("Wiki Page Hook"),
        &gitlab_push("mike/diaspora"),
    );
    assert_eq!(
        (status, text.trim()),
        (403, "event \"Wiki Page Hook\" is not relayed")
    );
    let (status, _) = hooks.post(
        &[("X-Gitlab-Token", VCS_SECRET)],
        &gitlab_push("mike/diaspora"),
    );
    assert_eq!(status, 403, "no event header");
    let (status, text) = hooks.post(&gitlab_headers("Push Hook"), b"project=mike/diaspora");
    assert_eq!((status, text.trim()), (400, "the body is not JSON"));
    let response = bare_client()
        .get(format!("http://{}/", hooks.listen))
        .call()
        .expect("answer");
    assert_eq!(response.status().as_u16(), 405);
    // 26 MB announced: refused on the head, before the body is sent.
    let mut tcp = TcpStream::connect(&hooks.listen).expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: agent\r\nX-Gitlab-Event: Push Hook\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        26 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).expect("head");
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    // The refusals are summed up in the log, and nothing reached the SaaS.
    hooks.agent.out.wait_for("webhooks refused", START);
    assert!(
        hooks.saas.requests().is_empty(),
        "{:?}",
        hooks.saas.requests()
    );
}

fn github_headers<'a>(event: &'a str, signature: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Hook-ID", "292430182"),
        ("X-GitHub-Enterprise-Host", "github.internal"),
        ("X-GitHub-Enterprise-Version", "3.14.0"),
        ("X-Hub-Signature-256", signature),
    ]
}

#[test]
fn github_push_and_pull_request_keep_the_vcs_signature_valid() {
    let hooks = Hooks::start("github_enterprise", "octo/.*", "/hooks");
    let push = serde_json::json!({
        "ref": "refs/heads/main", "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0000000000000000000000000000000000000000", "created": false, "deleted": false,
        "repository": {"id": 186853002, "name": "hello", "full_name": "octo/hello", "private": true,
            "owner": {"login": "octo"}, "default_branch": "main"},
        "pusher": {"name": "octo", "email": "octo@github.internal"},
        "sender": {"login": "octo", "id": 21031067}, "commits": []
    })
    .to_string();
    let pull = serde_json::json!({
        "action": "opened", "number": 2,
        "pull_request": {"number": 2, "state": "open", "title": "Update the README",
            "head": {"ref": "feature", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821"},
            "base": {"ref": "main", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"}},
        "repository": {"id": 186853002, "name": "hello", "full_name": "octo/hello"},
        "sender": {"login": "octo"}
    })
    .to_string();
    for (n, (event, body)) in [("push", push), ("pull_request", pull)]
        .into_iter()
        .enumerate()
    {
        let signature = format!("sha256={}", hmac_hex(VCS_SECRET, &[body.as_bytes()]));
        let (status, text) = hooks.post(&github_headers(event, &signature), body.as_bytes());
        assert_eq!(status, 200, "{event}: {text}");
        let got = hooks.saas.wait_for_requests(n + 1, START);
        let r = &got[n];
        assert_eq!(r.header("X-GitHub-Event"), Some(event));
        assert_eq!(
            r.header("X-GitHub-Delivery"),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        // The SaaS checks the VCS's own signature over the bytes it got.
        let check = format!("sha256={}", hmac_hex(VCS_SECRET, &[&r.body]));
        assert_eq!(
            r.header("X-Hub-Signature-256"),
            Some(check.as_str()),
            "{event}"
        );
        assert_eq!(r.body, body.as_bytes());
    }
}

#[test]
fn a_bitbucket_push_is_relayed() {
    let hooks = Hooks::start("bitbucket_datacenter", "PROJ/.*", "/hooks");
    let body = serde_json::json!({
        "eventKey": "repo:refs_changed", "date": "2017-09-19T09:58:11+1000",
        "actor": {"name": "admin", "emailAddress": "admin@example.com", "id": 1, "displayName": "Administrator", "slug": "admin", "type": "NORMAL"},
        "repository": {"slug": "repository", "id": 84, "name": "repository", "scmId": "git", "state": "AVAILABLE",
            "project": {"key": "PROJ", "id": 84, "name": "project", "public": false, "type": "NORMAL"}},
        "changes": [{"ref": {"id": "refs/heads/master", "displayId": "master", "type": "BRANCH"},
            "refId": "refs/heads/master", "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
            "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc", "type": "UPDATE"}]
    })
    .to_string();
    let signature = format!("sha256={}", hmac_hex(VCS_SECRET, &[body.as_bytes()]));
    let headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("X-Event-Key", "repo:refs_changed"),
        ("X-Request-Id", "2f3b9c2e-7f7e-4c4d-9b1a-3d2e1f0a9b8c"),
        ("X-Hub-Signature", signature.as_str()),
    ];
    let (status, text) = hooks.post(&headers, body.as_bytes());
    assert_eq!(status, 200, "{text}");
    let r = hooks.delivered(body.as_bytes());
    assert_eq!(r.header("X-Event-Key"), Some("repo:refs_changed"));
    assert_eq!(r.header("X-Hub-Signature"), Some(signature.as_str()));
    assert_eq!(
        r.header("X-Request-Id"),
        Some("2f3b9c2e-7f7e-4c4d-9b1a-3d2e1f0a9b8c")
    );
}

#[test]
fn an_azure_devops_push_is_relayed_by_its_event_type() {
    let hooks = Hooks::start("azure_devops", "fabrikam/.*", "/hooks");
    let body = serde_json::json!({
        "subscriptionId": "00000000-0000-0000-0000-000000000000", "notificationId": 1,
        "id": "03c164c2-8912-4d5e-8009-3707d5f83734", "eventType": "git.push", "publisherId": "tfs",
        "message": {"text": "Jamal Hartnett pushed updates to Fabrikam-Fiber-Git:master."},
        "resource": {
            "commits": [{"commitId": "33b55f7cb7e7e245323987634f960cf4a6e6bc74", "comment": "Fixed bug in web.config file"}],
            "refUpdates": [{"name": "refs/heads/master", "oldObjectId": "aad331d8d3b131fa9ae03cf5e53965b51942618a",
                "newObjectId": "33b55f7cb7e7e245323987634f960cf4a6e6bc74"}],
            "repository": {"id": "278d5cd2-584d-4b63-824a-2ba458937249", "name": "Fabrikam-Fiber-Git",
                "url": "https://dev.azure.com/fabrikam/_apis/git/repositories/278d5cd2-584d-4b63-824a-2ba458937249",
                "project": {"id": "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "name": "Fabrikam-Fiber-Git", "state": "wellFormed"},
                "defaultBranch": "refs/heads/master",
                "remoteUrl": "https://dev.azure.com/fabrikam/Fabrikam-Fiber-Git/_git/Fabrikam-Fiber-Git"},
            "pushId": 14, "date": "2014-05-02T19:17:13.3309587Z"},
        "resourceVersion": "1.0", "createdDate": "2024-09-19T13:03:27.0379153Z"
    })
    .to_string();
    let (status, text) = hooks.post(
        &[("Content-Type", "application/json; charset=utf-8")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let r = hooks.delivered(body.as_bytes());
    assert_eq!(r.header("X-Vcs-Event"), Some("git.push"));
    let build = body.replace("git.push", "build.complete");
    let (status, text) = hooks.post(&[("Content-Type", "application/json")], build.as_bytes());
    assert_eq!(
        (status, text.trim()),
        (403, "event \"build.complete\" is not relayed")
    );
}

#[test]
fn a_saas_that_is_down_or_slow_is_a_failed_delivery_within_the_vcs_timeout() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!("http://{}/hooks", closed.local_addr().expect("addr"));
    drop(closed);
    let hooks = Hooks::start("gitlab", "mike/.*", &down);
    let (status, text) = hooks.post(&gitlab_headers("Push Hook"), &gitlab_push("mike/diaspora"));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("SaaS"), "{text}");
    hooks.agent.out.wait_for("status=502", START);

    let slow = Hooks::start("gitlab", "mike/.*", "/sleep/9500");
    let started = Instant::now();
    let (status, text) = slow.post(&gitlab_headers("Push Hook"), &gitlab_push("mike/diaspora"));
    assert_eq!(status, 504, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let failing = Hooks::start("gitlab", "mike/.*", "/status/500");
    let (status, text) = failing.post(&gitlab_headers("Push Hook"), &gitlab_push("mike/diaspora"));
    assert_eq!((status, text.trim()), (502, "the SaaS answered 500"));
    failing.metric(
        "vcs_gateway_webhooks_total{pool=\"hooks\",event=\"Push Hook\",outcome=\"saas_error\"} 1",
    );
    slow.metric(
        "vcs_gateway_webhooks_total{pool=\"hooks\",event=\"Push Hook\",outcome=\"timeout\"} 1",
    );
    hooks.metric(
        "vcs_gateway_webhooks_total{pool=\"hooks\",event=\"Push Hook\",outcome=\"undelivered\"} 1",
    );
}

/// A gateway from before webhooks: it takes every upgrade for a stream and never confirms.
#[test]
fn a_gateway_that_does_not_relay_is_a_502() {
    let old = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = old.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in old.incoming().flatten() {
            std::thread::spawn(move || {
                if let Ok(mut socket) = tungstenite::accept(tcp) {
                    while socket.read().is_ok() {}
                }
            });
        }
    });
    let token = vcs_agent::token::Token {
        host: format!("ws://{address}"),
        key: vcs_agent::token::Secret::new("k".repeat(43)),
        pool_ulid: ulid::Ulid::new().to_string(),
    };
    let upstream = Upstream::start();
    let env = agent_env(&token.encode(), &upstream.base(), &[]);
    let (_agent, listen) = start_webhook_agent(&env);
    let mut request = bare_client().post(format!("http://{listen}/"));
    for (name, value) in gitlab_headers("Push Hook") {
        request = request.header(name, value);
    }
    let response = request
        .send(&gitlab_push("mike/diaspora")[..])
        .expect("answer");
    assert_eq!(response.status().as_u16(), 502);
    let text = response.into_body().read_to_string().unwrap_or_default();
    assert!(text.contains("does not relay webhooks"), "{text}");
}

#[test]
fn the_api_and_the_cli_set_and_clear_a_pools_webhook_url() {
    let gateway = Gateway::start(&[]);
    gateway.create_pool("api-hooks");
    let (name, value) = gateway.admin_header();
    let patch = |pool: &str, body: &str| {
        let response = client()
            .patch(format!("http://{}/api/pools/{pool}", gateway.api_addr))
            .header(name, &value)
            .header("Content-Type", "application/json")
            .send(body)
            .expect("api");
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
        )
    };
    let (status, first) = patch(
        "api-hooks",
        r#"{"webhook_url": "https://saas.example/hooks"}"#,
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["pool"]["webhook_url"], "https://saas.example/hooks");
    assert!(first["webhook_secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("vgw_")));
    let (status, again) = patch(
        "api-hooks",
        r#"{"webhook_url": "https://saas.example/other"}"#,
    );
    assert_eq!(status, 200);
    assert!(again.get("webhook_secret").is_none(), "shown once: {again}");
    let (status, bad) = patch("api-hooks", r#"{"webhook_url": "ftp://saas.example/"}"#);
    assert_eq!(status, 400, "{bad}");
    assert_eq!(patch("nope", r#"{"webhook_url": null}"#).0, 404);
    let (status, cleared) = patch("api-hooks", r#"{"webhook_url": null}"#);
    assert_eq!(status, 200);
    assert!(cleared["pool"]["webhook_url"].is_null(), "{cleared}");
    // The command line: a bad URL exits 2 naming the flag; clearing works on a stopped store too.
    let output = Command::new(GATEWAY)
        .args(["pool", "update", "--data-dir"])
        .arg(&gateway.dir.0)
        .args(["--name", "api-hooks", "--webhook-url", "not a url"])
        .output()
        .expect("pool update");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--webhook-url"));
    let secret = set_webhook(&gateway, "api-hooks", "https://saas.example/hooks");
    assert_ne!(
        Some(secret.as_str()),
        first["webhook_secret"].as_str(),
        "a new secret after clearing"
    );
    let output = Command::new(GATEWAY)
        .args(["pool", "update", "--data-dir"])
        .arg(&gateway.dir.0)
        .args(["--name", "api-hooks", "--no-webhook-url"])
        .output()
        .expect("pool update");
    assert!(output.status.success());
    let store = std::fs::read_to_string(gateway.dir.0.join("pools.json")).expect("store");
    assert!(!store.contains("vgw_"), "{store}");
}

/// A VCS that insists on HTTPS: the listener serves the operator's certificate.
#[test]
fn the_listener_speaks_https_with_the_operators_certificate() {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let ca = support::tls::Ca::new("webhook ca");
    let dir = TempDir::new("hook-tls");
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(&dir, "listener");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let saas =
        Upstream::with_routes(|r| (r.path() == "/hooks").then(|| (200, vec![], b"ok".to_vec())));
    let url = format!("{}/hooks", saas.base());
    let extra = [
        ("SPACELIFT_VCS_AGENT_WEBHOOK_TLS_CERT", cert.as_str()),
        ("SPACELIFT_VCS_AGENT_WEBHOOK_TLS_KEY", key.as_str()),
    ];
    let hooks = Hooks::start_with("gitlab", "mike/.*", &url, saas, &extra);
    let root = Certificate::from_pem(ca.pem().as_bytes()).expect("ca");
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&[root]))
        .build();
    let https: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(tls)
        .build()
        .into();
    let mut request = https.post(format!("https://{}/", hooks.listen));
    for (name, value) in gitlab_headers("Push Hook") {
        request = request.header(name, value);
    }
    let body = gitlab_push("mike/diaspora");
    let response = request.send(&body[..]).expect("https answer");
    assert_eq!(response.status().as_u16(), 200);
    hooks.delivered(&body);
}

/// Every worker busy and the hand-over queue full: a further webhook is answered 503 at once.
#[test]
fn a_flood_beyond_the_concurrency_cap_is_answered_503() {
    let saas = Upstream::start();
    let url = format!("{}/hooks", saas.base());
    let extra = [("SPACELIFT_VCS_AGENT_WEBHOOK_CONCURRENCY", "1")];
    let hooks = Hooks::start_with("gitlab", "mike/.*", &url, saas, &extra);
    // Connections that send nothing hold the one worker and the one queue place; at most
    // two are held, so by the third at least one is refused.
    let mut held = Vec::new();
    let mut refused = false;
    for _ in 0..3 {
        let tcp = TcpStream::connect(&hooks.listen).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        held.push(tcp);
    }
    for tcp in &held {
        let mut line = String::new();
        if BufReader::new(tcp).read_line(&mut line).is_ok() && line.starts_with("HTTP/1.1 503") {
            refused = true;
        }
    }
    assert!(refused, "one of three connections is answered 503");
    hooks.agent.out.wait_for("too many webhooks at once", START);
}

/// What a relay asks of the gateway is held to the same bounds whoever sends it: headers
/// outside the kept list and bodies over the gateway's cap are refused, nothing delivered.
#[test]
fn the_gateway_refuses_relays_outside_its_bounds() {
    use tungstenite::client::IntoClientRequest;
    use vcs_agent::protocol;
    use vcs_agent::webhook::frames::{self, Event, Outcome};
    let saas = Upstream::start();
    let gateway = Gateway::start(&["--allow-http-webhooks"]);
    let token = gateway.create_pool("bounds");
    set_webhook(&gateway, "bounds", &format!("{}/hooks", saas.base()));
    let token = vcs_agent::token::Token::decode(&token).expect("token");
    let relay = |event: &Event| -> Outcome {
        let url = format!("ws://{}{}", gateway.agent_addr, protocol::CONNECT_PATH);
        let mut request = url.into_client_request().expect("request");
        let headers = request.headers_mut();
        for (name, value) in [
            (protocol::HEADER_POOL_ULID, token.pool_ulid.as_str()),
            (protocol::HEADER_KEY, token.key.expose()),
            (protocol::HEADER_PROTOCOL, protocol::PROTOCOL_VERSION),
            (frames::HEADER_RELAY, frames::RELAY_ASKED),
        ] {
            headers.insert(name, value.parse().expect("value"));
        }
        let (mut socket, response) = tungstenite::connect(request).expect("upgrade");
        assert_eq!(
            response
                .headers()
                .get(frames::HEADER_RELAY)
                .and_then(|v| v.to_str().ok()),
            Some(frames::RELAY_CONFIRMED)
        );
        let text = serde_json::to_string(event).expect("json");
        socket
            .send(tungstenite::Message::text(text))
            .expect("event");
        loop {
            if let tungstenite::Message::Text(text) = socket.read().expect("outcome") {
                return serde_json::from_str(text.as_str()).expect("an outcome");
            }
        }
    };
    let event = |headers: Vec<(String, String)>, length: u64| Event {
        vendor: "gitlab".into(),
        event: "Push Hook".into(),
        rule: "push to a branch".into(),
        project: "group/repo".into(),
        headers,
        length,
    };
    let smuggled = relay(&event(vec![("Authorization".into(), "Bearer x".into())], 2));
    assert_eq!(smuggled.status, 502, "{smuggled:?}");
    let spoofed = relay(&event(
        vec![("X-Vcs-Signature-256".into(), "sha256=00".into())],
        2,
    ));
    assert_eq!(spoofed.status, 502, "{spoofed:?}");
    let huge = relay(&event(vec![], frames::GATEWAY_MAX_BODY + 1));
    assert_eq!(huge.status, 413, "{huge:?}");
    assert!(saas.requests().is_empty());
}

/// A listener that cannot start stops the agent with one line naming the variable: a port
/// in use exits 1 (like the metrics port), an unusable setting exits 2.
#[test]
fn a_webhook_listener_that_cannot_listen_names_its_variable() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let upstream = Upstream::start();
    let token = vcs_agent::token::Token {
        host: "ws://127.0.0.1:9".into(),
        key: vcs_agent::token::Secret::new("k".repeat(43)),
        pool_ulid: ulid::Ulid::new().to_string(),
    };
    let mut env = agent_env(&token.encode(), &upstream.base(), &[]);
    env.insert("SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN".into(), address);
    let mut agent = start_agent(&env);
    assert_eq!(agent.wait_exit(START).code(), Some(1));
    agent.out.wait_for(
        "SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN: cannot listen on",
        START,
    );
    env.insert(
        "SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN".into(),
        "127.0.0.1:0".into(),
    );
    env.insert(
        "SPACELIFT_VCS_AGENT_WEBHOOK_TLS_CERT".into(),
        "/nonexistent/cert.pem".into(),
    );
    let mut agent = start_agent(&env);
    assert_eq!(agent.wait_exit(START).code(), Some(2));
    agent
        .out
        .wait_for("SPACELIFT_VCS_AGENT_WEBHOOK_TLS_KEY: is required", START);
    env.insert(
        "SPACELIFT_VCS_AGENT_WEBHOOK_TLS_KEY".into(),
        "/nonexistent/key.pem".into(),
    );
    let mut agent = start_agent(&env);
    assert_eq!(agent.wait_exit(START).code(), Some(2));
    agent
        .out
        .wait_for("SPACELIFT_VCS_AGENT_WEBHOOK_TLS_CERT: ", START);
    drop(taken);
}
