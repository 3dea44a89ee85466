//! The allowlist through the real tunnel: denials reach the caller as 403 with the reason,
//! hostile paths never reach the upstream, and git fetch works while git push is refused.

use crate::support;

use crate::support::hostile_paths;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::upstream::Upstream;
use support::*;

/// Sends one raw request line (no client-side normalisation) and returns the status code.
fn raw_status(api: &str, method: &str, target: &str) -> u16 {
    let mut conn = std::net::TcpStream::connect(api).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\nConnection: close\r\n\r\n",
        auth_line_for(api)
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_paths_never_reach_the_upstream() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start("hostile", &[]);

    let mut cases: Vec<(&str, String)> = hostile_paths::HOSTILE_PATHS
        .iter()
        .map(|(m, t)| (*m, t.to_string()))
        .collect();
    cases.push(("GET", hostile_paths::LONG_PATH.to_string()));
    cases.push(("GET", hostile_paths::LONG_QUERY.to_string()));
    assert!(cases.len() >= 60);
    for (method, target) in &cases {
        let status = raw_status(
            &gateway.api_addr,
            method,
            &format!("/private/hostile{target}"),
        );
        assert!(
            [400, 403, 404, 431].contains(&status),
            "{method} {target:?} answered {status}"
        );
    }
    // A marker request that is allowed: it must be the only thing the upstream ever saw.
    let marker = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";
    assert_eq!(
        raw_status(
            &gateway.api_addr,
            "GET",
            &format!("/private/hostile{marker}")
        ),
        200
    );
    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        1,
        "hostile requests reached the upstream: {seen:?}"
    );
    assert_eq!(seen[0].target, marker);
}

#[test]
fn denials_say_why_to_the_caller_and_in_the_log() {
    let Tunnel {
        agent,
        gateway,
        upstream,
    } = Tunnel::start(
        "strict",
        &[("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "group/.*")],
    );
    let c = client();
    let cases = [
        (
            "POST",
            "/api/v4/projects/1/repository/commits",
            "no rule allows POST /api/v4/projects/1/repository/commits",
        ),
        (
            "GET",
            "/api/v4/projects/secret%2Frepo",
            "project secret/repo is not allowed",
        ),
        (
            "GET",
            "/api/v4/projects/evilgroup%2Frepo/repository/branches",
            "project evilgroup/repo is not allowed",
        ),
        (
            "GET",
            "/api/v4/projects/group%2Frepo/repository/files/%2e%2e/raw",
            "dot segment in path",
        ),
        (
            "DELETE",
            "/api/v4/projects/group%2Frepo",
            "no rule allows DELETE /api/v4/projects/group%2Frepo",
        ),
    ];
    for (method, path, reason) in cases {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(gateway.url("strict", path))
            .body(())
            .unwrap();
        let (status, kind, error) = error_kind(c.run(request).unwrap());
        assert_eq!((status, kind.as_str()), (403, "denied"), "{method} {path}");
        assert_eq!(error, reason, "{method} {path}");
        let line = agent
            .out
            .wait_for(&format!("reason=\"{reason}\""), Duration::from_secs(5));
        assert!(
            line.contains("WARN") && line.contains("error=denied"),
            "{line}"
        );
    }
    // Allowed: a project that matches and a rule without a project.
    for path in [
        "/api/v4/projects/group%2Fsub%2Frepo?do=echo",
        "/api/v4/user?do=echo",
    ] {
        let r = c.get(gateway.url("strict", path)).call().unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(
        upstream.requests().len(),
        2,
        "denied requests reached the upstream"
    );
    let line = agent
        .out
        .wait_for("project=group/sub/repo", Duration::from_secs(5));
    assert!(line.contains("for=\"Get project\""), "{line}");
}

#[test]
fn an_invalid_project_regex_stops_the_agent_at_start() {
    let mut env = agent_env("x", "http://127.0.0.1:1", &[]);
    let token = vcs_agent::token::Token {
        host: "ws://127.0.0.1:1".into(),
        key: vcs_agent::token::Secret::new("k"),
        pool_ulid: "p".into(),
    };
    env.insert("SPACELIFT_VCS_AGENT_POOL_TOKEN".into(), token.encode());
    env.insert(
        "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS".into(),
        "group/(".into(),
    );
    let mut agent = start_agent(&env);
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    agent.out.wait_for(
        "SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
        Duration::from_secs(5),
    );
    let text = agent.out.text();
    assert!(
        text.starts_with("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS: invalid regex"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "one line: {text}");
}

// --- git through the tunnel ---

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.version=2",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git")
}

fn git_ok(dir: &Path, args: &[&str]) {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare repository at `root/<path>` with one commit holding `README.md`.
fn sample_repository(root: &Path, path: &str) {
    let work = root.join("work-seed");
    std::fs::create_dir_all(&work).unwrap();
    git_ok(&work, &["init", "-q"]);
    std::fs::write(work.join("README.md"), "through the tunnel\n").unwrap();
    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("big.bin"), blob).unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-q", "-m", "seed"]);
    let bare = root.join(path);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git_ok(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(&work).unwrap();
}

struct GitServer {
    proc: Proc,
    port: u16,
    log: std::path::PathBuf,
}

fn git_server(root: &Path) -> GitServer {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/git-http-server.py");
    let port_file = root.join("port");
    let log = root.join("requests.log");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("--root")
        .arg(root)
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .arg("--log")
        .arg(&log);
    let proc = Proc::spawn(command);
    wait_until(Duration::from_secs(10), "git server port file", || {
        port_file.exists()
    });
    let port = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    GitServer { proc, port, log }
}

fn clone_and_push(vendor: &str, repo_path: &str, url_path: &str) {
    let dir = TempDir::new("git");
    let root = dir.0.join("repos");
    std::fs::create_dir_all(&root).unwrap();
    sample_repository(&root, repo_path);
    let server = git_server(&root);
    let gateway = Gateway::start(&[]);
    let agent = gateway.agent_for(
        "git",
        &format!("http://127.0.0.1:{}", server.port),
        &[("SPACELIFT_VCS_AGENT_VENDOR", vendor)],
        2,
    );

    let url = gateway.url("git", url_path);
    // `clone -c` keeps the caller header in the clone's config, for the push below too.
    let (name, value) = gateway.caller_header();
    let header = format!("http.extraHeader={name}: {value}");
    git_ok(&dir.0, &["clone", "-q", "-c", &header, &url, "clone"]);
    let clone = dir.0.join("clone");
    assert_eq!(
        std::fs::read_to_string(clone.join("README.md")).unwrap(),
        "through the tunnel\n"
    );
    assert_eq!(
        std::fs::metadata(clone.join("big.bin")).unwrap().len(),
        3_000_000
    );
    agent
        .out
        .wait_for("for=\"Git fetch", Duration::from_secs(5));

    std::fs::write(clone.join("pushed.txt"), "should never land\n").unwrap();
    git_ok(&clone, &["add", "."]);
    git_ok(&clone, &["commit", "-q", "-m", "attempt"]);
    let push = git(&clone, &["push", "-q", "origin", "HEAD:main"]);
    assert!(!push.status.success(), "git push went through the tunnel");
    // The refusal reaches the user as git prints a text answer: `remote: denied: …`.
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(said.contains("remote: denied: "), "git printed: {said}");
    let line = agent.out.wait_for("receive-pack", Duration::from_secs(5));
    assert!(line.contains("error=denied"), "{line}");
    let served = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        !served.contains("receive-pack"),
        "the VCS saw a push request:\n{served}"
    );
    assert!(served.contains("git-upload-pack"), "{served}");
    drop(server.proc);
}

#[test]
fn git_clone_works_and_push_is_denied_for_gitlab() {
    clone_and_push("gitlab", "group/sample.git", "/group/sample.git");
}

#[test]
fn git_clone_works_and_push_is_denied_for_bitbucket() {
    clone_and_push(
        "bitbucket_datacenter",
        "scm/KEY/sample.git",
        "/scm/KEY/sample.git",
    );
}

/// A commit status path GitLab's allowlist lets through for POST.
const STATUSES: &str =
    "/api/v4/projects/group%2Frepo/statuses/0123456789abcdef0123456789abcdef01234567";

/// Requests to one pool of a gateway.
struct Pool<'a> {
    gateway: &'a Gateway,
    name: &'a str,
}

impl Pool<'_> {
    /// Sends `method target` with extra headers and an optional body; returns the status and
    /// the JSON answer.
    fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, serde_json::Value) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.gateway.url(self.name, target));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = match body {
            Some(bytes) => client().run(request.body(bytes.to_vec()).unwrap()),
            None => client().run(request.body(()).unwrap()),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }
}

#[test]
fn method_overrides_never_reach_the_upstream() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start("override", &[]);
    let pool = Pool {
        gateway: &gateway,
        name: "override",
    };
    let json = ("Content-Type", "application/json");
    for name in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let (status, body) = pool.send("POST", STATUSES, &[(name, "DELETE"), json], Some(b"{}"));
        assert_eq!(status, 403, "{name}");
        let reason = format!(
            "method override header {} is not allowed",
            name.to_ascii_lowercase()
        );
        assert_eq!(body["error"], reason.as_str());
        assert_eq!(body["kind"], "denied");
        // What client libraries show: `message` (GitLab, GitHub, Azure), `errors[0].message`
        // (Bitbucket).
        assert_eq!(body["message"], reason.as_str());
        assert_eq!(body["errors"][0]["message"], reason.as_str());
    }
    for query in ["_method=DELETE", "state=success&%5Fmethod=DELETE"] {
        let (status, body) =
            pool.send("POST", &format!("{STATUSES}?{query}"), &[json], Some(b"{}"));
        assert_eq!(status, 403, "{query}");
        assert_eq!(
            body["error"],
            "method override parameter _method is not allowed"
        );
    }
    let (status, body) = pool.send(
        "GET",
        "/api/v4/user",
        &[json],
        Some(b"{\"from_project_id\":99}"),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("a GET request may not carry a body"))
    );
    // The marker: allowed, and the only request the upstream ever saw.
    let (status, _) = pool.send("POST", &format!("{STATUSES}?do=echo"), &[json], Some(b"{}"));
    assert_eq!(status, 200);
    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        1,
        "denied requests reached the upstream: {seen:?}"
    );
}

#[test]
fn graphql_is_inspected_and_forwarded_byte_for_byte() {
    let Tunnel {
        agent,
        gateway,
        upstream,
    } = Tunnel::start(
        "gql",
        &[
            ("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise"),
            ("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "acme/.*"),
        ],
    );
    let pool = Pool {
        gateway: &gateway,
        name: "gql",
    };
    let json = ("Content-Type", "application/json");
    let holes = [
        r#"{"query":"mutation { deleteRef(input: {refId: \"x\"}) { clientMutationId } }"}"#.to_string(),
        r#"{"query":"mutation($i: CreateCommitOnBranchInput!) { createCommitOnBranch(input: $i) { commit { oid } } }","variables":{"i":{"branch":{"repositoryNameWithOwner":"other/secret","branchName":"main"}}}}"#.to_string(),
        r#"{"query":"{ repository(owner: \"other\", name: \"secret\") { object(expression: \"HEAD:main.tf\") { id } } }"}"#.to_string(),
        r#"{"query":"query($o: String!) { repository(owner: $o, name: \"secret\") { id } }","variables":{"o":"other"}}"#.to_string(),
        r#"{"query":"{ node(id: \"MDEwOlJlcG9zaXRvcnkx\") { id } }"}"#.to_string(),
        r#"{"query":"subscription { x }"}"#.to_string(),
        format!(r#"{{"query":"{{ viewer {{ login }} }}","pad":"{}"}}"#, "x".repeat(300 * 1024)),
    ];
    for (i, body) in holes.iter().enumerate() {
        let (status, answer) = pool.send("POST", "/api/graphql", &[json], Some(body.as_bytes()));
        assert_eq!(
            (status, answer["kind"].as_str()),
            (403, Some("denied")),
            "hole {i}: {answer}"
        );
    }
    let (status, answer) = pool.send("POST", "/api/graphql", &[json], Some(holes[6].as_bytes()));
    assert_eq!(status, 403);
    assert_eq!(
        answer["error"],
        "GraphQL body over 256 KiB cannot be inspected"
    );

    // Allowed: the upstream gets exactly the bytes sent, and the log says what it was for.
    let body = br#"{"query":"query Repo($n: String!) { repository(owner: \"acme\", name: $n) { id } }","variables":{"n":"infra"}}"#;
    let (status, _) = pool.send("POST", "/api/graphql", &[json], Some(body));
    assert_eq!(status, 404, "the recording upstream has no GraphQL route");
    // Parameters in the URL would be merged with the body's by the server.
    let (status, _) = pool.send("POST", "/api/graphql?variables=%7B%7D", &[json], Some(body));
    assert_eq!(status, 403);
    let line = agent
        .out
        .wait_for("for=\"GraphQL query Repo", Duration::from_secs(5));
    assert!(
        line.contains("for=\"GraphQL query Repo: repository\"")
            && line.contains("project=acme/infra"),
        "{line}"
    );
    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        1,
        "denied GraphQL reached the upstream: {seen:?}"
    );
    assert_eq!(seen[0].body, body, "forwarded byte for byte");
}

#[test]
fn method_override_in_a_form_body_never_reaches_the_upstream() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start("form", &[]);
    let pool = Pool {
        gateway: &gateway,
        name: "form",
    };
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let (status, answer) = pool.send(
        "POST",
        STATUSES,
        &[form],
        Some(b"state=success&_method=DELETE"),
    );
    assert_eq!(status, 403);
    assert_eq!(
        answer["error"],
        "method override parameter _method is not allowed"
    );
    // Rack reads a body without a Content-Type as a form as well.
    let (status, answer) = pool.send("POST", STATUSES, &[], Some(b"_method=DELETE"));
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            403,
            Some("method override parameter _method is not allowed")
        )
    );
    let multipart = ("Content-Type", "multipart/form-data; boundary=b");
    let (status, answer) = pool.send("POST", STATUSES, &[multipart], Some(b"--b--\r\n"));
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("multipart bodies are not allowed"))
    );
    // A form without the override goes through whole and unchanged.
    let body = b"state=success&description=plan+ok%0A";
    let (status, echo) = pool.send("POST", &format!("{STATUSES}?do=echo"), &[form], Some(body));
    assert_eq!(status, 200);
    let want = support::upstream::Digest::of_reader(&body[..]).unwrap();
    assert_eq!(echo["body_digest"], want.hex());
    assert_eq!(
        upstream.requests().len(),
        1,
        "denied forms reached the upstream"
    );
}

#[test]
fn azure_sdk_discovery_is_the_one_options_request_forwarded() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start("ado", &[("SPACELIFT_VCS_AGENT_VENDOR", "azure_devops")]);
    let pool = Pool {
        gateway: &gateway,
        name: "ado",
    };
    for target in [
        "/acme/_apis/connectionData",
        "/acme/platform/_apis/git/repositories",
    ] {
        let (status, answer) = pool.send("OPTIONS", target, &[], None);
        assert_eq!(status, 403, "{target}");
        assert_eq!(answer["error"], format!("no rule allows OPTIONS {target}"));
    }
    let (status, _) = pool.send("OPTIONS", "/acme/_apis?do=echo", &[], None);
    assert_eq!(status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("OPTIONS", "/acme/_apis?do=echo")
    );
}

#[test]
fn a_project_a_parameter_names_by_id_is_resolved_and_checked() {
    fn projects(r: &support::upstream::Recorded) -> Option<support::upstream::Reply> {
        let path = match r.target.as_str() {
            "/api/v4/projects/5" => "group/other",
            "/api/v4/projects/6" => "other/secret",
            _ => return None,
        };
        let id = r.target.rsplit('/').next().unwrap_or_default();
        let body = format!(r#"{{"id":{id},"path_with_namespace":"{path}"}}"#);
        Some((
            200,
            vec![("Content-Type".into(), "application/json".into())],
            body.into_bytes(),
        ))
    }
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::options("params")
        .upstream(Upstream::with_routes(projects))
        .agent_env(&[("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "group/.*")])
        .start();
    let pool = Pool {
        gateway: &gateway,
        name: "params",
    };
    let compare = "/api/v4/projects/group%2Frepo/repository/compare?from=a&to=b";
    let (status, answer) = pool.send("GET", &format!("{compare}&from_project_id=6"), &[], None);
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            403,
            Some("project other/secret (id 6, from from_project_id) is not allowed")
        )
    );
    let (status, answer) = pool.send(
        "GET",
        &format!("{compare}&from_project_id=other%2Fsecret"),
        &[],
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            403,
            Some("project other/secret (from from_project_id) is not allowed")
        )
    );
    let allowed = format!("{compare}&from_project_id=5&do=echo");
    let (status, _) = pool.send("GET", &allowed, &[], None);
    assert_eq!(status, 200);
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        seen,
        ["/api/v4/projects/6", "/api/v4/projects/5", allowed.as_str()]
    );
}
