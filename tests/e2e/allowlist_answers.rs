//! What the agent does beyond matching paths, through the real tunnel: projects given by id
//! are resolved with one lookup carrying the caller's credentials, listings across projects
//! are filtered while projects are restricted, and redirects into the VCS stay in the tunnel.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::upstream::{Recorded, Reply, Upstream};
use support::*;

fn json_reply(value: &Value) -> Option<Reply> {
    Some((
        200,
        vec![("Content-Type".into(), "application/json".into())],
        value.to_string().into_bytes(),
    ))
}

/// A listing as GitLab spells it: the allowed entry must come out byte for byte.
const LISTING: &str = r#"[{"id":6,"path_with_namespace":"other/secret","name":"secret"}, {"id": 10, "path_with_namespace": "group/listed", "name": "listed"}]"#;

/// GitLab projects 5 (`group/repo`) and 6 (`other/secret`); 7 does not exist.
fn gitlab_projects(r: &Recorded) -> Option<Reply> {
    let project = |id: u64, path: &str| json!({"id": id, "path_with_namespace": path});
    match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/api/v4/projects/5") => json_reply(&project(5, "group/repo")),
        ("GET", "/api/v4/projects/6") => json_reply(&project(6, "other/secret")),
        ("GET", "/api/v4/projects/8") => json_reply(&project(9, "group/repo")),
        ("GET", "/api/v4/projects/7") => Some((404, vec![], b"{\"message\":\"404\"}".to_vec())),
        ("GET", t) if t.starts_with("/api/v4/projects?") && t.contains("big=1") => {
            let filler = "x".repeat(9 << 20);
            json_reply(&json!([{"id": 5, "path_with_namespace": "group/repo", "f": filler}]))
        }
        ("GET", t) if t.starts_with("/api/v4/projects?") && t.contains("gzip=1") => Some((
            200,
            vec![("Content-Encoding".into(), "gzip".into())],
            support::upstream::GZIP_HELLO.to_vec(),
        )),
        ("GET", t) if t.starts_with("/api/v4/projects?") && t.contains("status=") => {
            let status = if t.contains("status=203") { 203 } else { 404 };
            let body = match status {
                203 => LISTING.to_string(),
                _ => r#"{"message":"404 Project Not Found"}"#.to_string(),
            };
            Some((
                status,
                vec![("Link".into(), "<http://x/?page=9>; rel=\"last\"".into())],
                body.into_bytes(),
            ))
        }
        ("GET", t) if t.starts_with("/api/v4/projects?") && t.contains("chunked=1") => Some((
            200,
            vec![("Transfer-Encoding".into(), "chunked".into())],
            LISTING.as_bytes().to_vec(),
        )),
        ("GET" | "HEAD", t) if t.starts_with("/api/v4/projects?") => Some((
            200,
            vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Total".into(), "2".into()),
                ("X-Total-Pages".into(), "1".into()),
                ("X-Per-Page".into(), "20".into()),
            ],
            LISTING.as_bytes().to_vec(),
        )),
        _ => None,
    }
}

/// GitLab with projects restricted to `group/`, against an upstream that lists projects.
fn strict_gitlab(pool: &str) -> Tunnel {
    Tunnel::options(pool)
        .upstream(Upstream::with_routes(gitlab_projects))
        .agent_env(&[("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "group/.*")])
        .start()
}

fn targets(upstream: &Upstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect()
}

#[test]
fn numeric_ids_are_resolved_once_with_the_callers_credentials() {
    let Tunnel {
        agent,
        gateway,
        upstream,
    } = strict_gitlab("ids");
    let c = client();
    let branches = "/api/v4/projects/5/repository/branches?do=echo";
    for _ in 0..2 {
        let r = c
            .get(gateway.url("ids", branches))
            .header("PRIVATE-TOKEN", "glpat-secret")
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // One lookup before the first request, none for the second (cached).
    assert_eq!(
        targets(&upstream),
        ["/api/v4/projects/5", branches, branches]
    );
    let lookup = &upstream.requests()[0];
    assert_eq!(lookup.method, "GET");
    assert_eq!(lookup.header("private-token"), Some("glpat-secret"));
    let line = agent
        .out
        .wait_for("project=group/repo (id 5)", Duration::from_secs(5));
    assert!(line.contains("status=200"), "{line}");
    assert!(!agent.out.text().contains("glpat-secret"));

    // An id naming a project outside the regex, an id that does not resolve, an answer
    // about another id: denied with the reason, and only the lookup reached the VCS.
    for (id, reason) in [
        ("6", "project other/secret (id 6) is not allowed"),
        (
            "7",
            "project id 7 could not be resolved: the VCS answered 404 to the lookup",
        ),
        (
            "8",
            "project id 8 could not be resolved: the lookup answer is about another id",
        ),
    ] {
        let before = upstream.requests().len();
        let path = format!("/api/v4/projects/{id}/repository/branches?do=echo");
        let (status, kind, error) = error_kind(c.get(gateway.url("ids", &path)).call().unwrap());
        assert_eq!(
            (status, kind.as_str(), error.as_str()),
            (403, "denied", reason)
        );
        assert_eq!(
            targets(&upstream)[before..],
            [format!("/api/v4/projects/{id}")]
        );
    }
}

#[test]
fn listings_show_only_allowed_projects_and_teach_their_ids() {
    let Tunnel {
        agent,
        gateway,
        upstream,
    } = strict_gitlab("lists");
    let c = client();
    let r = c
        .get(gateway.url("lists", "/api/v4/projects?search=e"))
        .header("Accept-Encoding", "gzip, deflate")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let length = header_values(&r, "content-length");
    let r_headers = r.headers().clone();
    let body = r.into_body().read_to_string().unwrap();
    assert_eq!(
        body,
        r#"[{"id": 10, "path_with_namespace": "group/listed", "name": "listed"}]"#
    );
    assert_eq!(length, [body.len().to_string()]);
    // Counts of the whole listing go; pagination stays. A HEAD gives no length away either.
    assert!(r_headers.get("x-total").is_none() && r_headers.get("x-total-pages").is_none());
    assert_eq!(
        r_headers.get("x-per-page").map(|v| v.as_bytes()),
        Some(&b"20"[..])
    );
    let head = c
        .head(gateway.url("lists", "/api/v4/projects?search=e"))
        .call()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        header_values(&head, "content-length").is_empty()
            && header_values(&head, "x-total").is_empty()
    );
    // Asked uncompressed, so the agent can read it.
    let asked = &upstream.requests()[0];
    assert_eq!(asked.header("accept-encoding"), Some("identity"));
    // A chunked answer is read to its end and sent with its new length.
    let r = c
        .get(gateway.url("lists", "/api/v4/projects?chunked=1"))
        .call()
        .unwrap();
    assert_eq!(header_values(&r, "transfer-encoding"), Vec::<String>::new());
    let length = header_values(&r, "content-length");
    assert_eq!(r.into_body().read_to_string().unwrap(), body);
    assert_eq!(length, [body.len().to_string()]);

    // Ids seen in the listing need no lookup, whichever way they go.
    let path = "/api/v4/projects/10/repository/branches?do=echo";
    assert_eq!(
        c.get(gateway.url("lists", path)).call().unwrap().status(),
        200
    );
    let (status, _, error) = error_kind(
        c.get(gateway.url("lists", "/api/v4/projects/6/repository/branches"))
            .call()
            .unwrap(),
    );
    assert_eq!(
        (status, error.as_str()),
        (403, "project other/secret (id 6) is not allowed")
    );
    assert_eq!(
        targets(&upstream),
        [
            "/api/v4/projects?search=e",
            "/api/v4/projects?search=e",
            "/api/v4/projects?chunked=1",
            path
        ]
    );

    // Compressed although asked plain: it cannot be read, so nothing of it is sent.
    let (status, kind, error) = error_kind(
        c.get(gateway.url("lists", "/api/v4/projects?gzip=1"))
            .call()
            .unwrap(),
    );
    assert_eq!((status, kind.as_str()), (403, "denied"));
    assert_eq!(
        error,
        "the listing answer is compressed and cannot be filtered"
    );

    // Too large to filter within the bound: denied, saying so.
    let (status, kind, error) = error_kind(
        c.get(gateway.url("lists", "/api/v4/projects?big=1"))
            .call()
            .unwrap(),
    );
    assert_eq!((status, kind.as_str()), (403, "denied"));
    assert!(error.contains("over 8 MiB"), "{error}");
    agent.out.wait_for("over 8 MiB", Duration::from_secs(5));
}

/// With the URL rewrite off: with it on, the agent asks for uncompressed answers so it can
/// read them (point_back.rs).
#[test]
fn listings_are_filtered_whatever_the_status() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = strict_gitlab("statuses");
    let c = client();
    let r = c
        .get(gateway.url("statuses", "/api/v4/projects?status=203"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 203);
    assert!(
        header_values(&r, "link").is_empty(),
        "rel=last tells the size"
    );
    let body = r.into_body().read_to_string().unwrap();
    assert!(
        body.contains("group/listed") && !body.contains("other/secret"),
        "{body}"
    );
    // An answer that is not a listing cannot be filtered: denied, naming the VCS's status.
    let (status, kind, error) = error_kind(
        c.get(gateway.url("statuses", "/api/v4/projects?status=404"))
            .call()
            .unwrap(),
    );
    assert_eq!((status, kind.as_str()), (403, "denied"));
    assert!(error.ends_with("(the VCS answered 404)"), "{error}");
}

#[test]
fn listings_pass_untouched_when_projects_are_not_restricted() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::options("open")
        .upstream(Upstream::with_routes(gitlab_projects))
        .agent_env(&[("SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE", "true")])
        .start();
    let r = client()
        .get(gateway.url("open", "/api/v4/projects?search=e"))
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    let body: Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(2));
    assert_eq!(
        upstream.requests()[0].header("accept-encoding"),
        Some("gzip")
    );
}

/// Without the front (an older gateway, or the rewrite off) a redirect into the VCS comes back
/// relative; with it, absolute on the front (point_back.rs).
#[test]
fn redirects_into_the_vcs_stay_in_the_tunnel() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start(
        "gh",
        &[
            ("SPACELIFT_VCS_AGENT_VENDOR", "github_enterprise"),
            ("SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE", "true"),
        ],
    );
    let c = client();
    let tarball = "/api/v3/repos/acme/infra/tarball/main";
    let cases = [
        (
            "http://HOST/_codeload/acme/infra/legacy.tar.gz/main?token=t",
            "../../../../../../_codeload/acme/infra/legacy.tar.gz/main?token=t",
        ),
        (
            "/_codeload/acme/infra/legacy.tar.gz/main",
            "../../../../../../_codeload/acme/infra/legacy.tar.gz/main",
        ),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
    ];
    for (to, expected) in cases {
        let r = c
            .get(gateway.url("gh", &format!("{tarball}?do=location&to={to}")))
            .call()
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(header_values(&r, "location"), [expected], "{to}");
    }
    // Resolved against the URL asked for, it is the same pool's front URL again.
    let asked = gateway.url("gh", tarball);
    let resolved = resolve(&asked, cases[1].1);
    assert_eq!(
        resolved,
        gateway.url("gh", "/_codeload/acme/infra/legacy.tar.gz/main")
    );
    let r = c.get(format!("{resolved}?do=echo")).call().unwrap();
    assert_eq!(r.status(), 200);
}

/// RFC 3986 §5.2 for a reference made of `../` steps and a path.
fn resolve(base: &str, reference: &str) -> String {
    let mut dir: Vec<&str> = base.split('/').collect();
    dir.pop();
    let mut rest = reference;
    while let Some(after) = rest.strip_prefix("../") {
        dir.pop();
        rest = after;
    }
    format!("{}/{rest}", dir.join("/"))
}

/// The value of the agent's `/metrics` sample line that starts with `series`.
fn agent_sample(metrics: &str, series: &str) -> Option<f64> {
    let scrape = client()
        .get(metrics)
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Denials the agent makes after the allowlist's check (an id that does not resolve, a
/// listing it cannot filter) are counted under their class like the allowlist's own.
#[test]
fn denials_are_counted_by_class() {
    let Tunnel { agent, gateway, .. } = Tunnel::options("classes")
        .upstream(Upstream::with_routes(gitlab_projects))
        .agent_env(&[
            ("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "group/.*"),
            ("SPACELIFT_VCS_AGENT_METRICS_ADDR", "127.0.0.1:0"),
        ])
        .start();
    let line = agent.out.wait_for(
        "health and metrics endpoint listening on",
        Duration::from_secs(10),
    );
    let metrics = format!("http://{}/metrics", line.rsplit(' ').next().unwrap_or(""));
    let override_header = ("X-HTTP-Method-Override", "DELETE");
    let requests = [
        (
            "/api/v4/projects/7/repository/branches",
            None,
            "project id 7 could not be resolved: the VCS answered 404 to the lookup",
        ),
        (
            "/api/v4/projects/6/repository/branches",
            None,
            "project other/secret (id 6) is not allowed",
        ),
        (
            "/api/v4/projects?gzip=1",
            None,
            "the listing answer is compressed and cannot be filtered",
        ),
        (
            "/api/v4/projects",
            Some(override_header),
            "method override header x-http-method-override is not allowed",
        ),
        ("/admin/secrets", None, "no rule allows GET /admin/secrets"),
    ];
    for (target, header, reason) in requests {
        let mut call = client().get(gateway.url("classes", target));
        if let Some((name, value)) = header {
            call = call.header(name, value);
        }
        let (status, kind, error) = error_kind(call.call().unwrap());
        assert_eq!(
            (status, kind.as_str(), error.as_str()),
            (403, "denied", reason)
        );
    }
    let counts = [
        ("project", 2.0),
        ("path", 1.0),
        ("method", 1.0),
        ("no_rule", 1.0),
    ];
    wait_until(
        Duration::from_secs(10),
        "the denials counted by class",
        || {
            counts.iter().all(|(class, n)| {
                let series = format!("vcs_agent_denials_total{{reason=\"{class}\"}}");
                agent_sample(&metrics, &series) == Some(*n)
            })
        },
    );
}

const REPO_OK: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
const REPO_HR: &str = "9b1f0c2e-1111-4a8e-9e0d-0d7b2c1e6f00";
const PROJECT_PLATFORM: &str = "5e0c5b2a-9a53-4a8e-9e0d-0d7b2c1e6f00";
const PROJECT_HR: &str = "7a7a7a7a-2222-4a8e-9e0d-0d7b2c1e6f00";

/// An Azure DevOps organisation `acme` with `platform/infra` and `hr/payroll`, answering
/// lookups whatever the casing of the path, as its servers do.
fn azure_projects(r: &Recorded) -> Option<Reply> {
    let repo = |id: &str, name: &str, project: &str, project_name: &str| json!({"id": id, "name": name, "project": {"id": project, "name": project_name}});
    let target = r.target.to_ascii_lowercase();
    let pr = |n: u64, repository: Value| json!({"pullRequestId": n, "repository": repository});
    let infra = repo(REPO_OK, "infra", PROJECT_PLATFORM, "platform");
    let payroll = repo(REPO_HR, "payroll", PROJECT_HR, "hr");
    match target.split('?').next()? {
        t if t.ends_with(&format!("/_apis/git/repositories/{REPO_OK}")) => json_reply(&infra),
        t if t.ends_with(&format!("/_apis/git/repositories/{REPO_HR}")) => json_reply(&payroll),
        t if t == format!("/acme/{PROJECT_PLATFORM}/_apis/git/pullrequests/21") => {
            json_reply(&pr(21, infra))
        }
        t if t == format!("/acme/{PROJECT_HR}/_apis/git/pullrequests/7") => {
            json_reply(&pr(7, payroll))
        }
        _ => None,
    }
}

#[test]
fn azure_guids_and_policy_evaluations_are_judged_by_what_they_name() {
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::options("ado-ids")
        .upstream(Upstream::with_routes(azure_projects))
        .agent_env(&[
            ("SPACELIFT_VCS_AGENT_VENDOR", "azure_devops"),
            ("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", "acme/platform/.*"),
        ])
        .start();
    let c = client();
    let get = |path: &str| c.get(gateway.url("ado-ids", path)).call().unwrap();
    // A GUID under the allowed project is resolved, not matched as text: this one is hr's.
    let (status, _, error) = error_kind(get(&format!(
        "/acme/platform/_apis/git/repositories/{REPO_HR}/items?path=/x"
    )));
    assert_eq!(
        (status, error.as_str()),
        (
            403,
            format!("project acme/hr/payroll (id {REPO_HR}) is not allowed").as_str()
        )
    );
    // One caller's casing of the organisation serves every other caller's.
    let before = upstream.requests().len();
    for org in ["ACME", "acme", "Acme"] {
        let path =
            format!("/{org}/platform/_apis/git/repositories/{REPO_OK}/items?path=/x&do=echo");
        assert_eq!(get(&path).status(), 200, "{path}");
    }
    let lookups = upstream.requests()[before..]
        .iter()
        .filter(|r| r.target.contains("api-version=5.0"))
        .count();
    assert_eq!(lookups, 1, "{:?}", targets(&upstream));

    // Policy evaluations: the pull request the artifactId names decides.
    let evaluations = |project: &str, artifact_project: &str, n: u32| {
        format!("/acme/{project}/_apis/policy/evaluations?artifactId=vstfs:///CodeReview/CodeReviewId/{artifact_project}/{n}")
    };
    for (path, reason) in [
        (
            evaluations("other", PROJECT_PLATFORM, 21),
            "not in the project other",
        ),
        (evaluations("platform", PROJECT_HR, 7), "acme/hr/payroll"),
        (
            "/acme/platform/_apis/policy/evaluations".to_string(),
            "without artifactId",
        ),
    ] {
        let before = upstream.requests().len();
        let (status, _, error) = error_kind(get(&path));
        assert_eq!(status, 403, "{path}");
        assert!(error.contains(reason), "{path}: {error}");
        let reached = &upstream.requests()[before..];
        assert!(
            reached.iter().all(|r| !r.target.contains("/policy/")),
            "{path} reached the VCS"
        );
    }
    let path = evaluations("platform", PROJECT_PLATFORM, 21) + "&do=echo";
    assert_eq!(get(&path).status(), 200);
    assert_eq!(targets(&upstream).last(), Some(&path));
}
