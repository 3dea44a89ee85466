//! The panel's JSON API against a real gateway process: admin authentication, pool
//! lifecycle, validation, and what creating, rotating and deleting a pool does to live agents.

use crate::support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::upstream::Upstream;
use support::*;
use vcs_agent::token::Token;

const ADMIN: &str = "test-admin-token-0123456789abcdef";

fn gateway() -> Gateway {
    Gateway::start(&["--admin-token", ADMIN])
}

/// Calls the API with the admin token (or `auth`); returns status and JSON body.
fn call(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(gw, Some(ADMIN), method, path, body)
}

fn call_as(
    gw: &Gateway,
    admin: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", gw.api_addr);
    let agent = client();
    let request = ureq::http::Request::builder().method(method).uri(&url);
    let request = match admin {
        Some(token) => request.header("Authorization", format!("Bearer {token}")),
        None => request,
    };
    let response = match body {
        Some(body) => agent.run(
            request
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .unwrap(),
        ),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let content_type = header_values(&response, "content-type").join(",");
    let text = response.into_body().read_to_string().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{method} {path}: {status} {content_type}: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

fn create(gw: &Gateway, name: &str, description: &str) -> (Value, String) {
    let (status, body) = call(
        gw,
        "POST",
        "/api/pools",
        Some(json!({ "name": name, "description": description })),
    );
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    (body["pool"].clone(), token)
}

#[test]
fn the_api_needs_the_admin_token() {
    let gw = gateway();
    for wrong in [None, Some("nope"), Some(&ADMIN[..ADMIN.len() - 1])] {
        let (status, body) = call_as(&gw, wrong, "GET", "/api/pools", None);
        assert_eq!(status, 401, "{wrong:?}");
        assert!(body["error"].as_str().unwrap().contains("admin token"));
        let (status, _) = call_as(
            &gw,
            wrong,
            "POST",
            "/api/pools",
            Some(json!({"name": "sneaky"})),
        );
        assert_eq!(status, 401);
    }
    assert_eq!(call(&gw, "GET", "/api/pools", None).0, 200);
    assert!(
        gw.dir.0.join("pools.json").metadata().is_err()
            || !std::fs::read_to_string(gw.dir.0.join("pools.json"))
                .unwrap()
                .contains("sneaky"),
        "an unauthenticated create changed the store"
    );

    // The panel's static page and /healthz (liveness) stay open; the tunnel takes a caller.
    let page = client()
        .get(format!("http://{}/", gw.api_addr))
        .call()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(header_values(&page, "content-type")[0].starts_with("text/html"));
    let health = client()
        .get(format!("http://{}/healthz", gw.api_addr))
        .call()
        .unwrap();
    assert_eq!(health.status(), 200);
    let (status, kind, _) = error_kind(client().get(gw.url("nowhere", "/x")).call().unwrap());
    assert_eq!((status, kind.as_str()), (404, "unknown_pool"));

    assert!(
        !gw.proc.out.text().contains(ADMIN),
        "the admin token reached the log"
    );
}

#[test]
fn pools_are_created_listed_fetched_rotated_and_deleted() {
    let gw = gateway();
    let (pool, token) = create(&gw, "gitlab-eu", "GitLab in Frankfurt");
    assert_eq!(pool["name"], "gitlab-eu");
    assert_eq!(pool["description"], "GitLab in Frankfurt");
    assert_eq!(pool["agents"], 0);
    let decoded = Token::decode(&token).unwrap();
    assert_eq!(decoded.host, format!("ws://{}", gw.agent_addr));
    assert_eq!(decoded.pool_ulid, pool["id"].as_str().unwrap());

    create(&gw, "second", "");
    let (status, list) = call(&gw, "GET", "/api/pools", None);
    assert_eq!(status, 200);
    let names: Vec<&str> = list["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gitlab-eu", "second"]);
    let listed = list.to_string();
    assert!(
        !listed.contains(decoded.key.expose()),
        "keys are never listed"
    );

    let (status, got) = call(&gw, "GET", "/api/pools/gitlab-eu", None);
    assert_eq!(
        (status, got["pool"]["id"].clone()),
        (200, pool["id"].clone())
    );

    // Rotation: a new key, same pool id.
    let (status, rotated) = call(&gw, "POST", "/api/pools/gitlab-eu/rotate", None);
    assert_eq!(status, 200);
    let new = Token::decode(rotated["token"].as_str().unwrap()).unwrap();
    assert_eq!(new.pool_ulid, decoded.pool_ulid);
    assert_ne!(new.key, decoded.key);

    let (status, deleted) = call(&gw, "DELETE", "/api/pools/gitlab-eu", None);
    assert_eq!(
        (status, deleted["deleted"].as_str()),
        (200, Some("gitlab-eu"))
    );
    assert_eq!(call(&gw, "GET", "/api/pools/gitlab-eu", None).0, 404);
    assert_eq!(call(&gw, "DELETE", "/api/pools/gitlab-eu", None).0, 404);
    assert_eq!(
        call(&gw, "POST", "/api/pools/gitlab-eu/rotate", None).0,
        404
    );
    assert_eq!(call(&gw, "GET", "/api/pools/gitlab-eu/log", None).0, 404);

    // The CLI sees what the API did.
    let listing = Command::new(GATEWAY)
        .args(["pool", "list", "--data-dir"])
        .arg(&gw.dir.0)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("second") && !listing.contains("gitlab-eu"));

    let log = gw.proc.out.text();
    for secret in [decoded.key.expose(), new.key.expose(), token.as_str()] {
        assert!(!log.contains(secret), "a pool key reached the log");
    }
}

#[test]
fn bad_requests_get_json_errors_naming_the_field() {
    let gw = gateway();
    create(&gw, "taken", "");
    let post = |body: Value| call(&gw, "POST", "/api/pools", Some(body));
    let field = |(status, body): (u16, Value)| {
        (
            status,
            body["field"].as_str().unwrap_or("").to_string(),
            body["error"].as_str().unwrap_or("").to_string(),
        )
    };
    let (status, f, error) = field(post(json!({"name": "Not Valid"})));
    assert_eq!((status, f.as_str()), (400, "name"));
    assert!(error.contains("lowercase"), "{error}");
    assert_eq!(field(post(json!({"description": "x"}))).1, "name");
    assert_eq!(field(post(json!({"name": ""}))).1, "name");
    let (status, f, _) = field(post(json!({"name": "ok", "description": "d".repeat(1025)})));
    assert_eq!((status, f.as_str()), (400, "description"));
    let (status, f, error) = field(post(json!({"name": "taken"})));
    assert_eq!((status, f.as_str()), (409, "name"));
    assert!(error.contains("already exists"));
    assert_eq!(post(json!(["not", "an", "object"])).0, 400);

    // Bodies are bounded.
    let huge = json!({ "name": "big", "description": "x".repeat(70 * 1024) });
    let (status, body) = call(&gw, "POST", "/api/pools", Some(huge));
    assert_eq!(status, 413, "{body}");

    assert_eq!(call(&gw, "GET", "/api/nothing", None).0, 404);
    assert_eq!(call(&gw, "PUT", "/api/pools/taken", None).0, 405);
    assert_eq!(
        call(&gw, "GET", "/api/pools/taken/log?limit=0", None).0,
        400
    );
    let (status, list) = call(&gw, "GET", "/api/pools", None);
    assert_eq!((status, list["pools"].as_array().unwrap().len()), (200, 1));
}

#[test]
fn an_api_pool_serves_at_once_and_a_rotated_key_refuses_old_agents() {
    let upstream = Upstream::start();
    let gw = gateway();
    let (_, token) = create(&gw, "live", "made through the API");
    let env = |token: &str| {
        agent_env(
            token,
            &upstream.base(),
            &[("SPACELIFT_METADATA_team", "infra")],
        )
    };
    let old_agent = start_agent(&env(&token));
    gw.wait_streams("live", 2);

    let (_, agents) = call(&gw, "GET", "/api/pools/live/agents", None);
    let agent = &agents["agents"][0];
    assert_eq!(agent["metadata"]["team"], "infra", "{agents}");
    assert_eq!(agent["streams"], 2);
    // The build, commit and all, so the panel's mixed-versions warning names builds.
    assert_eq!(agent["version"], vcs_agent::BUILD, "{agents}");
    assert!(agent["remote"].as_str().unwrap().starts_with("127.0.0.1:"));

    // One allowed request and one denied, both in the pool's log and hourly counts.
    let archive = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";
    let ok = client().get(gw.url("live", archive)).call().unwrap();
    assert_eq!(ok.status(), 200);
    // The record lands just after the caller has its answer: await it, so that the two
    // records cannot land in the other order.
    wait_until(
        Duration::from_secs(5),
        "the first record in the log",
        || {
            let log = call(&gw, "GET", "/api/pools/live/log?limit=10", None).1;
            log["requests"].as_array().map_or(0, Vec::len) == 1
        },
    );
    let denied = client()
        .get(gw.url("live", "/api/v4/admin/secrets"))
        .call()
        .unwrap();
    assert_eq!(denied.status(), 403);
    let mut log = Value::Null;
    wait_until(Duration::from_secs(5), "two records in the log", || {
        log = call(&gw, "GET", "/api/pools/live/log?limit=10", None).1;
        log["requests"].as_array().map_or(0, Vec::len) == 2
    });
    let requests = log["requests"].as_array().unwrap();
    assert_eq!(requests[0]["error"], "denied", "newest first: {log}");
    assert!(requests[0]["reason"].as_str().is_some());
    assert_eq!(requests[1]["rule"], "Download repository archive");
    assert_eq!(requests[1]["status"], 200);
    assert_eq!(requests[1]["path"], archive);
    let (_, pool) = call(&gw, "GET", "/api/pools/live", None);
    assert_eq!(pool["pool"]["requests_last_hour"], 2, "{pool}");
    assert_eq!(pool["pool"]["denials_last_hour"], 1, "{pool}");

    // Rotate: the streams on the old key close, the old agent is refused from then on.
    let (status, rotated) = call(&gw, "POST", "/api/pools/live/rotate", None);
    assert_eq!(status, 200);
    gw.wait_streams("live", 0);
    old_agent
        .out
        .wait_for("refused the pool token", Duration::from_secs(15));
    gw.proc
        .out
        .wait_for("agent logins refused", Duration::from_secs(5));
    assert_eq!(gw.pool_state("live").1, 0);
    let (_, log) = call(&gw, "GET", "/api/pools/live/log", None);
    assert_eq!(
        log["requests"].as_array().unwrap().len(),
        2,
        "the log survives rotation"
    );

    let _new_agent = start_agent(&env(rotated["token"].as_str().unwrap()));
    gw.wait_streams("live", 2);
    let ok = client().get(gw.url("live", archive)).call().unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(gw.pool_state("live").1, 2, "the old agent stays out");
}

#[test]
fn deleting_a_pool_disconnects_its_agents() {
    let upstream = Upstream::start();
    let gw = gateway();
    let (_, token) = create(&gw, "doomed", "");
    let agent = start_agent(&agent_env(&token, &upstream.base(), &[]));
    gw.wait_streams("doomed", 2);
    assert_eq!(call(&gw, "DELETE", "/api/pools/doomed", None).0, 200);
    wait_until(Duration::from_secs(5), "both streams closed", || {
        gw.proc.out.count("pool=doomed") >= 2 && gw.proc.out.count("pool deleted") >= 2
    });
    agent
        .out
        .wait_for("refused the pool token", Duration::from_secs(15));
    let (status, kind, _) = error_kind(client().get(gw.url("doomed", "/x")).call().unwrap());
    assert_eq!((status, kind.as_str()), (404, "unknown_pool"));
}

/// A request queued on a pool that is deleted meanwhile is answered at once, not at the end
/// of the queue timeout.
#[test]
fn a_request_queued_on_a_deleted_pool_is_answered_at_once() {
    let upstream = Upstream::start();
    let gw = gateway();
    let (_, token) = create(&gw, "brief", "");
    let _agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_PARALLELISM", "1")],
    ));
    gw.wait_streams("brief", 1);
    let slow_url = gw.url("brief", "/api/v4/projects/g%2Fr/repository/archive?do=held");
    let slow = std::thread::spawn(move || client().get(slow_url).call().map(|_| ()));
    wait_until(Duration::from_secs(5), "the stream busy", || {
        gw.pool_state("brief").2 == 1
    });
    let url = gw.url("brief", "/api/v4/projects/g%2Fr/repository/archive?do=echo");
    let queued = std::thread::spawn(move || client().get(url).call().map(error_kind));
    wait_until(Duration::from_secs(5), "a queued request", || {
        gw.queued("brief") == 1
    });
    assert_eq!(call(&gw, "DELETE", "/api/pools/brief", None).0, 200);
    let (status, kind, message) = queued.join().unwrap().unwrap();
    assert_eq!((status, kind.as_str()), (503, "no_agent"), "{message}");
    assert!(message.contains("deleted"), "{message}");
    assert!(
        !slow.is_finished(),
        "answered only after the request in flight"
    );
    upstream.release_held();
}

#[test]
fn short_admin_tokens_are_refused_and_given_ones_never_logged() {
    let dir = TempDir::new("bind");
    let short = Command::new(GATEWAY)
        .args(["serve", "--data-dir"])
        .arg(&dir.0)
        .args(["--api-listen", "0.0.0.0:0", "--admin-token", "hunter2"])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--admin-token")
            && stderr.contains("at least")
            && !stderr.contains("hunter2"),
        "{stderr}"
    );

    // A token from the environment: a public address is fine, and nothing is written.
    let mut command = Command::new(GATEWAY);
    command
        .args(["serve", "--data-dir"])
        .arg(&dir.0)
        .args(["--agent-listen", "127.0.0.1:0", "--api-listen", "0.0.0.0:0"])
        .env("VCS_GATEWAY_ADMIN_TOKEN", ADMIN);
    let gw = Proc::spawn(command);
    gw.out
        .wait_for("the admin token is the one given", Duration::from_secs(10));
    gw.out
        .wait_for("api port listening", Duration::from_secs(10));
    assert!(!gw.out.text().contains(ADMIN));
    assert!(!dir.0.join("admin-token").exists());
}

#[test]
fn foreign_web_pages_cannot_use_the_api() {
    // With a token: a cross-origin request is refused even with the right token.
    let gw = gateway();
    let url = format!("http://{}/api/pools", gw.api_addr);
    let response = client()
        .post(&url)
        .header("Authorization", format!("Bearer {ADMIN}"))
        .header("Origin", "https://evil.example")
        .header("Content-Type", "text/plain")
        .send(r#"{"name":"planted"}"#)
        .unwrap();
    assert_eq!(response.status(), 403);
    let same_origin = client()
        .get(&url)
        .header("Authorization", format!("Bearer {ADMIN}"))
        .header("Origin", format!("http://{}", gw.api_addr))
        .call()
        .unwrap();
    assert_eq!(same_origin.status(), 200);
}

#[test]
fn the_last_hour_is_counted_per_minute_grouped_when_refused_and_filterable() {
    let upstream = Upstream::start();
    let gw = gateway();
    let (_, token) = create(&gw, "hour", "");
    let _agent = start_agent(&agent_env(&token, &upstream.base(), &[]));
    gw.wait_streams("hour", 2);
    // A request is counted just after its caller has the answer: each is awaited before the
    // next is sent, so that they are recorded in the order sent (the refused view keeps the
    // latest example).
    let sent = std::cell::Cell::new(0);
    let send = |path: &str, status: u16| {
        let response = client().get(gw.url("hour", path)).call().unwrap();
        assert_eq!(response.status(), status, "{path}");
        sent.set(sent.get() + 1);
        wait_until(Duration::from_secs(5), "the request counted", || {
            call(&gw, "GET", "/api/pools/hour", None).1["pool"]["requests_last_hour"] == sent.get()
        });
    };
    send(
        "/api/v4/projects/group%2Frepo/repository/archive?do=echo",
        200,
    );
    send("/api/v4/projects/3/hooks?private_token=secret-value", 403);
    send("/api/v4/projects/group%2Frepo/hooks", 403);
    send(
        "/api/v4/projects/group%2Frepo/repository/archive?do=status&n=502",
        502,
    );
    let pool = call(&gw, "GET", "/api/pools/hour", None).1["pool"].clone();
    assert_eq!(pool["requests_last_hour"], 4, "{pool}");
    let minutes = pool["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60, "{pool}");
    let sum = |field: &str| -> u64 { minutes.iter().map(|m| m[field].as_u64().unwrap()).sum() };
    assert_eq!((sum("requests"), sum("denied"), sum("errors")), (4, 2, 1));
    assert_eq!(pool["errors_last_hour"], 1);
    assert_eq!(pool["state"], "failing", "a quarter failed: {pool}");
    assert_eq!(
        pool["warnings"][0],
        "only one agent is connected: nothing takes over if it stops"
    );

    // The two hook paths are one shape, without the query, naming the caller.
    let (_, callers) = call(&gw, "GET", "/api/callers", None);
    let harness = callers["callers"][0]["name"].as_str().unwrap().to_string();
    let (status, refused) = call(&gw, "GET", "/api/pools/hour/refused", None);
    assert_eq!(status, 200);
    let group = &refused["groups"][0];
    assert_eq!(
        group["shape"], "/api/v4/projects/{project}/hooks",
        "{refused}"
    );
    assert_eq!(group["method"], "GET");
    assert_eq!(group["count"], 2);
    assert_eq!(group["example"], "/api/v4/projects/group%2Frepo/hooks");
    assert_eq!(group["callers"], json!([harness]));
    assert!(!refused.to_string().contains("secret-value"), "{refused}");
    let (_, all) = call(&gw, "GET", "/api/refused", None);
    assert_eq!(all["groups"][0]["pool"], "hour", "{all}");
    assert_eq!(call(&gw, "POST", "/api/refused", None).0, 405);

    // Each caller's hour, in all and per pool.
    let (_, traffic) = call(&gw, "GET", "/api/traffic", None);
    let mine = &traffic["callers"][harness.as_str()];
    assert_eq!(
        (mine["requests"].clone(), mine["denied"].clone()),
        (json!(4), json!(2))
    );
    assert_eq!(mine["pools"]["hour"]["errors"], 1, "{traffic}");

    // The log filters by outcome, caller and path.
    let count = |query: &str| {
        let (status, log) = call(&gw, "GET", &format!("/api/pools/hour/log?{query}"), None);
        assert_eq!(status, 200, "{query}: {log}");
        log["requests"].as_array().unwrap().len()
    };
    assert_eq!(count("outcome=denied"), 2);
    assert_eq!(count("outcome=errors"), 1);
    assert_eq!(count("path=HOOKS"), 2);
    assert_eq!(count(&format!("caller={harness}")), 4);
    assert_eq!(count("caller=nobody"), 0);
    assert_eq!(count("outcome=denied&path=group%252Frepo&limit=1"), 1);
    let (status, body) = call(&gw, "GET", "/api/pools/hour/log?outcome=maybe", None);
    assert_eq!((status, body["field"].clone()), (400, json!("outcome")));
}
