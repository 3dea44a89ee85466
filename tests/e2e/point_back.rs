//! Answers that name the VCS point back through the pool. A stand-in GitHub Enterprise
//! answers with its own absolute URLs, as a real one does (`url`, `*_url`, pagination
//! `Link` on `http://<its host>/api/v3/…`); the agent rewrites them to the front URL the
//! caller used, so PyGithub's completed objects and `Link` pagination work through the
//! tunnel, while web pages (`html_url`) keep the VCS's own host. Without a front (the
//! rewrite off, as with a gateway that does not send one) answers are as the VCS wrote
//! them, and the redirect rewrite of allowlist_answers.rs stays relative.

use crate::support;

use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;
use support::upstream::{Recorded, Reply, Upstream};
use support::*;

const REPO: &str = "/api/v3/repos/acme/infra";

fn json_reply(value: Value, headers: &[(&str, String)]) -> Option<Reply> {
    let mut all = vec![(
        "Content-Type".to_string(),
        "application/json; charset=utf-8".to_string(),
    )];
    all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.clone())));
    Some((200, all, value.to_string().into_bytes()))
}

/// The stand-in's own base URL, as a real server names itself: from the `Host` it was asked.
fn own(r: &Recorded) -> String {
    format!("http://{}", r.header("host").unwrap_or("ghe.invalid"))
}

fn repository(vcs: &str) -> Value {
    json!({
        "id": 7, "name": "infra", "full_name": "acme/infra",
        "owner": {"login": "acme", "url": format!("{vcs}/api/v3/users/acme"), "html_url": format!("{vcs}/acme")},
        "url": format!("{vcs}{REPO}"),
        "html_url": format!("{vcs}/acme/infra"),
        "branches_url": format!("{vcs}{REPO}/branches{{/branch}}"),
        "pulls_url": format!("{vcs}{REPO}/pulls{{/number}}"),
        "clone_url": format!("{vcs}/acme/infra.git"),
        "default_branch": "main",
    })
}

fn pull(vcs: &str) -> Value {
    json!({
        "id": 100, "number": 1, "title": "Add a check", "state": "open",
        "url": format!("{vcs}{REPO}/pulls/1"),
        "html_url": format!("{vcs}/acme/infra/pull/1"),
        "issue_url": format!("{vcs}{REPO}/issues/1"),
        "comments_url": format!("{vcs}{REPO}/issues/1/comments"),
        "head": {"ref": "feature", "sha": "0123456789abcdef0123456789abcdef01234567", "repo": repository(vcs)},
        "base": {"ref": "main", "sha": "89abcdef0123456789abcdef0123456789abcdef", "repo": repository(vcs)},
    })
}

/// Three pages of two branches each, linked like GitHub does.
fn branches(r: &Recorded, vcs: &str) -> Option<Reply> {
    let page: u64 = r
        .target
        .split_once("page=")
        .and_then(|(_, p)| p.split('&').next()?.parse().ok())
        .unwrap_or(1);
    let link = |n: u64, rel: &str| format!("<{vcs}{REPO}/branches?page={n}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page < 3 {
        links.push(link(page + 1, "next"));
        links.push(link(3, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    let names = [2 * page - 1, 2 * page].map(|i| {
        json!({"name": format!("b{i}"), "protected": false,
               "commit": {"sha": "0123456789abcdef0123456789abcdef01234567",
                          "url": format!("{vcs}{REPO}/commits/0123456789abcdef0123456789abcdef01234567")}})
    });
    json_reply(json!(names), &[("Link", links.join(", "))])
}

/// The stand-in GitHub Enterprise.
fn ghe(r: &Recorded) -> Option<Reply> {
    let vcs = own(r);
    match (r.method.as_str(), r.path()) {
        ("GET", REPO) => json_reply(repository(&vcs), &[]),
        ("GET", p) if p == format!("{REPO}/branches") => branches(r, &vcs),
        ("GET", p) if p == format!("{REPO}/pulls/1") => json_reply(pull(&vcs), &[]),
        ("GET", p) if p == format!("{REPO}/pulls/1/files") => json_reply(
            json!([{"filename": "main.tf", "status": "added", "sha": "0123456789abcdef0123456789abcdef01234567",
                    "blob_url": format!("{vcs}/acme/infra/blob/feature/main.tf"),
                    "contents_url": format!("{vcs}{REPO}/contents/main.tf?ref=feature")}]),
            &[],
        ),
        ("POST", p) if p == format!("{REPO}/issues/1/comments") => {
            let url = format!("{vcs}{REPO}/issues/comments/42");
            let comment = json!({"id": 42, "body": "planned: 1 to add", "url": url,
                                 "html_url": format!("{vcs}/acme/infra/pull/1#issuecomment-42")});
            let (_, headers, body) = json_reply(comment, &[("Location", url)])?;
            Some((201, headers, body))
        }
        _ => None,
    }
}

fn ghe_tunnel(pool: &str, agent_env: &[(&str, &str)], gateway_args: &[&str]) -> Tunnel {
    let mut env = vec![("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise")];
    env.extend_from_slice(agent_env);
    Tunnel::options(pool)
        .upstream(Upstream::with_routes(ghe))
        .agent_env(&env)
        .gateway_args(gateway_args)
        .start()
}

#[test]
fn pygithub_follows_the_urls_a_ghe_answers_with() {
    let tunnel = ghe_tunnel("ghe-follow", &[], &[]);
    let front = tunnel.gateway.url("ghe-follow", "");
    let authorization = tunnel.gateway.caller_header().1;
    let Client {
        status,
        driver,
        steps,
    } = run_client("follow.py", &[&front], &authorization, &[]);
    assert!(
        status.success() && steps.len() == 8,
        "the driver failed:\n{}\n\nagent:\n{}",
        driver.out.text(),
        tunnel.agent.out.text()
    );
    // Every follow-up reached the VCS through the tunnel, the pages one by one.
    let arrived: Vec<String> = tunnel
        .upstream
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    for expected in [
        format!("GET {REPO}/branches?page=2"),
        format!("GET {REPO}/branches?page=3"),
        format!("POST {REPO}/issues/1/comments"),
        format!("GET {REPO}/pulls/1/files"),
    ] {
        assert!(arrived.contains(&expected), "{expected} in {arrived:?}");
    }
    // The access line says what was rewritten.
    tunnel
        .agent
        .out
        .wait_for("rewritten=", Duration::from_secs(5));
}

/// The answer to `path` through the tunnel: status, headers and body as JSON.
fn get(tunnel: &Tunnel, pool: &str, path: &str) -> (u16, ureq::http::HeaderMap, Value) {
    let r = client().get(tunnel.gateway.url(pool, path)).call().unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.into_body().read_to_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    // A length, when there is one, is the rewritten body's.
    for length in all(&headers, "content-length") {
        assert_eq!(length, text.len().to_string(), "{path}");
    }
    (status, headers, body)
}

fn all(headers: &ureq::http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn links_and_api_urls_point_at_the_front_and_web_urls_stay() {
    let tunnel = ghe_tunnel("ghe-links", &[], &[]);
    let front = tunnel.gateway.url("ghe-links", "");
    let vcs = tunnel.upstream.base();
    let (status, headers, page) = get(&tunnel, "ghe-links", &format!("{REPO}/branches"));
    assert_eq!(status, 200);
    let link = all(&headers, "link").join(", ");
    assert_eq!(
        link,
        format!("<{front}{REPO}/branches?page=2>; rel=\"next\", <{front}{REPO}/branches?page=3>; rel=\"last\"")
    );
    assert!(!link.contains(&vcs), "{link}");
    assert_eq!(
        page[0]["commit"]["url"],
        format!("{front}{REPO}/commits/0123456789abcdef0123456789abcdef01234567")
    );
    // The length changed: a small answer leaves with its new one (checked by `get`).
    assert_eq!(all(&headers, "content-length").len(), 1);
    // The second page, fetched where the first one's Link points: through the front.
    let next = format!("{REPO}/branches?page=2");
    let (_, headers, second) = get(&tunnel, "ghe-links", &next);
    assert_eq!(second[0]["name"], "b3");
    assert!(all(&headers, "link")
        .join(",")
        .contains(&format!("<{front}{REPO}/branches?page=1>; rel=\"first\"")));
    // API URLs on the front, web pages and git on the VCS's terms.
    let (_, _, repo) = get(&tunnel, "ghe-links", REPO);
    assert_eq!(repo["url"], format!("{front}{REPO}"));
    assert_eq!(repo["owner"]["url"], format!("{front}/api/v3/users/acme"));
    assert_eq!(
        repo["branches_url"],
        format!("{front}{REPO}/branches{{/branch}}")
    );
    assert_eq!(
        repo["html_url"],
        format!("{vcs}/acme/infra"),
        "a web page stays"
    );
    assert_eq!(repo["owner"]["html_url"], format!("{vcs}/acme"));
    assert_eq!(
        repo["clone_url"],
        format!("{front}/acme/infra.git"),
        "git goes through the pool"
    );
    // A created object's Location, too.
    let r = client()
        .post(
            tunnel
                .gateway
                .url("ghe-links", &format!("{REPO}/issues/1/comments")),
        )
        .header("Content-Type", "application/json")
        .send(r#"{"body":"x"}"#)
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header_values(&r, "location"),
        [format!("{front}{REPO}/issues/comments/42")]
    );
    tunnel
        .agent
        .out
        .wait_for("rewritten=", Duration::from_secs(5));
}

#[test]
fn a_configured_front_url_names_the_reverse_proxy() {
    let tunnel = ghe_tunnel(
        "ghe-proxy",
        &[],
        &["--front-url", "https://vcs.example.com/tunnel/"],
    );
    let (_, _, repo) = get(&tunnel, "ghe-proxy", REPO);
    let front = "https://vcs.example.com/tunnel/private/ghe-proxy";
    assert_eq!(repo["url"], format!("{front}{REPO}"));
    let (_, headers, _) = get(&tunnel, "ghe-proxy", &format!("{REPO}/branches"));
    assert!(all(&headers, "link")[0].starts_with(&format!("<{front}{REPO}/branches?page=2>")));
    // The caller's X-Forwarded-Host is no one's word for it.
    let tunnel = ghe_tunnel("ghe-fwd", &[], &[]);
    let r = client()
        .get(tunnel.gateway.url("ghe-fwd", REPO))
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .call()
        .unwrap();
    let body: Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(body["url"], tunnel.gateway.url("ghe-fwd", REPO));
}

#[test]
fn with_the_rewrite_off_answers_are_as_the_vcs_wrote_them() {
    let tunnel = ghe_tunnel(
        "ghe-off",
        &[("SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE", "true")],
        &[],
    );
    let vcs = tunnel.upstream.base();
    let r = client()
        .get(tunnel.gateway.url("ghe-off", &format!("{REPO}/branches")))
        .call()
        .unwrap();
    assert!(header_values(&r, "link")[0].starts_with(&format!("<{vcs}{REPO}/branches?page=2>")));
    let length = header_values(&r, "content-length");
    let body = r.into_body().read_to_string().unwrap();
    assert_eq!(length, [body.len().to_string()], "the VCS's framing kept");
    assert!(
        body.contains(&format!("\"url\":\"{vcs}{REPO}/commits/")),
        "{body}"
    );
}

#[test]
fn a_redirect_into_the_vcs_comes_back_absolute_on_the_front() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start(
        "gh-abs",
        &[("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise")],
    );
    let tarball = "/api/v3/repos/acme/infra/tarball/main";
    let to = "/_codeload/acme/infra/legacy.tar.gz/main";
    let r = client()
        .get(gateway.url(
            "gh-abs",
            &format!("{tarball}?do=location&to=http://HOST{to}"),
        ))
        .call()
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(header_values(&r, "location"), [gateway.url("gh-abs", to)]);
}

#[test]
fn compressed_and_non_json_answers_pass_untouched() {
    let vcs_url = |r: &Recorded| format!("{}{REPO}", own(r));
    let upstream = Upstream::with_routes(move |r| {
        let url = vcs_url(r);
        match r.path() {
            "/api/v3/repos/acme/infra/contents/plain.txt" => Some((
                200,
                vec![("Content-Type".into(), "text/plain".into())],
                format!("\"{url}\"").into_bytes(),
            )),
            "/api/v3/repos/acme/infra/contents/packed.json" => Some((
                200,
                vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Content-Encoding".into(), "gzip".into()),
                ],
                format!("{{\"url\":\"{url}\"}}").into_bytes(),
            )),
            _ => None,
        }
    });
    let tunnel = Tunnel::options("ghe-raw")
        .upstream(upstream)
        .agent_env(&[("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise")])
        .start();
    let vcs = tunnel.upstream.base();
    for (file, encoding) in [("plain.txt", "gzip"), ("packed.json", "gzip")] {
        let r = client()
            .get(
                tunnel
                    .gateway
                    .url("ghe-raw", &format!("{REPO}/contents/{file}")),
            )
            .header("Accept-Encoding", encoding)
            .call()
            .unwrap();
        let mut raw = Vec::new();
        r.into_body().into_reader().read_to_end(&mut raw).unwrap();
        assert!(
            String::from_utf8_lossy(&raw).contains(&format!("{vcs}{REPO}")),
            "{file}"
        );
    }
    // Asked uncompressed, so the agent could read a JSON answer; told when it could not.
    let asked = tunnel.upstream.requests();
    assert!(asked
        .iter()
        .all(|r| r.header("accept-encoding") == Some("identity")));
    tunnel
        .agent
        .out
        .wait_for("not_rewritten=compressed", Duration::from_secs(5));
}

#[test]
fn a_large_json_answer_streams_through_at_constant_agent_memory() {
    const MIB: usize = 1 << 20;
    fn listing(vcs: &str, size: usize) -> Vec<u8> {
        let entry = format!(
            r#"{{"url":"{vcs}{REPO}/commits/0123456789abcdef","html_url":"{vcs}/acme/infra/commit/0"}},"#
        );
        let mut body = Vec::with_capacity(size + entry.len() + 2);
        body.push(b'[');
        while body.len() < size {
            body.extend_from_slice(entry.as_bytes());
        }
        body.extend_from_slice(format!(r#"{{"url":"{vcs}{REPO}"}}]"#).as_bytes());
        body
    }
    let upstream = Upstream::with_routes(|r| {
        let size = if r.target.contains("large") {
            100 * MIB
        } else {
            MIB / 2
        };
        Some((
            200,
            vec![("Content-Type".into(), "application/json".into())],
            listing(&own(r), size),
        ))
    });
    let tunnel = Tunnel::options("ghe-large")
        .upstream(upstream)
        .agent_env(&[("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise")])
        .start();
    let front = tunnel.gateway.url("ghe-large", "");
    let fetch = |which: &str| {
        let url = tunnel
            .gateway
            .url("ghe-large", &format!("{REPO}/commits?{which}=1"));
        let r = client().get(url).call().unwrap();
        // Over the size read whole: it streams, chunked.
        let chunked = header_values(&r, "transfer-encoding") == ["chunked"];
        assert_eq!(chunked, which == "large", "{which}");
        let mut reader = r.into_body().into_reader();
        let (mut seen, mut urls, mut tail) = (0usize, 0usize, Vec::new());
        let mut buffer = vec![0u8; 64 * 1024];
        let needle = format!("\"url\":\"{front}{REPO}");
        loop {
            let n = reader.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&tail).into_owned();
            urls += text.matches(&needle).count();
            // What is kept cannot hold a whole match, so none is counted twice.
            let keep = (needle.len() - 1).min(tail.len());
            tail.drain(..tail.len() - keep);
            seen += n;
        }
        (seen, urls)
    };
    let (_, small_urls) = fetch("small");
    assert!(small_urls > 500, "{small_urls}");
    let small = tunnel.agent.peak_rss_kib();
    let (seen, urls) = fetch("large");
    let large = tunnel.agent.peak_rss_kib();
    eprintln!("rewrote {urls} URLs in {seen} bytes; agent peak RSS {small} -> {large} KiB");
    assert!(seen > 100 * MIB && urls > 100 * small_urls, "{seen} {urls}");
    assert!(
        large < small + 8 * 1024,
        "agent grew from {small} to {large} KiB"
    );
}
