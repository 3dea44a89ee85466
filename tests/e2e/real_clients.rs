//! The real client libraries a CI/CD SaaS uses (python-gitlab, PyGithub, atlassian-python-api,
//! the azure-devops SDK; pinned in tests/clients/requirements.txt) driven through gateway +
//! agent against a stub of each vendor that answers plausible JSON (tests/clients/drive.py
//! is the driver). What the platform needs passes and arrives byte for byte; the holes
//! (another project by path or by id, method overrides, a project named in a parameter,
//! GraphQL writes and foreign repositories) are denied with the reason the library shows,
//! and nothing of them reaches the VCS. git itself is driven in allowlist_tunnel.rs.
//!
//! The libraries come from the virtual environment `bash scripts/test.sh` builds; its
//! interpreter is `VCS_TEST_PYTHON`.

use crate::support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::upstream::{Recorded, Reply, Upstream};
use support::*;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const AZURE_REPO: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
const AZURE_OTHER: &str = "9c4f29fb-0d6e-4b3e-a1b3-6f1f2d4b8a77";
const AZURE_PROJECT: &str = "5e0c5b2a-9a53-4a8e-9e0d-0d7b2c1e6f00";

fn python() -> String {
    std::env::var("VCS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("VCS_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`, which installs tests/clients/requirements.txt into a virtual environment and sets it")
    })
}

fn reply(status: u16, content_type: &str, body: &[u8]) -> Option<Reply> {
    Some((
        status,
        vec![("Content-Type".into(), content_type.into())],
        body.to_vec(),
    ))
}

fn ok(value: Value) -> Option<Reply> {
    reply(200, "application/json", value.to_string().as_bytes())
}

const RAW_FILE: &[u8] = b"terraform {}\n";
const TARBALL: &[u8] = b"tarball-bytes";

/// One vendor run: the stub, the agent's log and the driver's steps.
struct Run {
    upstream: Upstream,
    agent: Proc,
    steps: Vec<Value>,
}

impl Run {
    /// Requests that reached the VCS, as `METHOD target`.
    fn arrived(&self) -> Vec<String> {
        self.upstream
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }

    fn request(&self, method: &str, target: &str) -> Recorded {
        self.upstream
            .requests()
            .into_iter()
            .find(|r| r.method == method && r.target == target)
            .unwrap_or_else(|| panic!("{method} {target} did not arrive: {:?}", self.arrived()))
    }

    /// The POST to `target` that reached the VCS, after checking its body is `body` exactly.
    fn posted(&self, target: &str, body: &str) -> Recorded {
        let request = self.request("POST", target);
        assert_eq!(
            String::from_utf8_lossy(&request.body),
            body,
            "POST {target}"
        );
        request
    }
}

/// Starts gateway, stub and agent for `vendor` with `ALLOWED_PROJECTS=projects`, runs the
/// driver and checks that every step went as expected. The stub gets each request and the
/// front URL of the pool.
fn drive(
    vendor: &str,
    projects: &str,
    stub: impl Fn(&Recorded, &str) -> Option<Reply> + Send + Sync + 'static,
) -> Run {
    let python = python();
    let gateway = Gateway::start(&[]);
    let pool = vendor.replace('_', "-");
    // Where answers' own URLs point: the front (PyGithub follows them).
    let front = gateway.url(&pool, "");
    let upstream = Upstream::with_routes(move |r| stub(r, &front));
    let agent = gateway.agent_for(
        &pool,
        &upstream.base(),
        &[
            ("SPACELIFT_VCS_AGENT_VENDOR", vendor),
            ("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", projects),
        ],
        2,
    );
    let home = TempDir::new("clients");
    let mut command = Command::new(&python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/drive.py"
        ))
        .arg(vendor)
        .arg(gateway.url(&pool, ""))
        .env("VCS_TEST_GATEWAY_AUTHORIZATION", gateway.caller_header().1)
        .env("HOME", &home.0)
        .env("AZURE_DEVOPS_CACHE_DIR", home.0.join("azure"))
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy");
    let mut driver = Proc::spawn(command);
    let status = driver.wait_exit(Duration::from_secs(120));
    let steps: Vec<Value> = driver
        .out
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        status.success() && !steps.is_empty(),
        "{vendor}: the driver failed:\n{}\n\nagent:\n{}",
        driver.out.text(),
        agent.out.text()
    );
    // The caller's gateway secret stays at the gateway.
    for r in upstream.requests() {
        assert_eq!(r.header(CALLER_HEADER), None, "{} {}", r.method, r.target);
    }
    Run {
        upstream,
        agent,
        steps,
    }
}

fn gitlab_stub(r: &Recorded, _front: &str) -> Option<Reply> {
    let project = |id: u64, path: &str| json!({"id": id, "path_with_namespace": path, "name": path.rsplit('/').next(), "default_branch": "main"});
    let p = "/api/v4/projects/5";
    match (r.method.as_str(), r.path()) {
        ("GET", "/api/v4/user") => ok(json!({"id": 1, "username": "ci"})),
        ("GET", "/api/v4/projects/group%2Frepo" | "/api/v4/projects/5") => {
            ok(project(5, "group/repo"))
        }
        ("GET", "/api/v4/projects/6") => ok(project(6, "other/secret")),
        ("GET", "/api/v4/projects") => ok(json!([
            project(5, "group/repo"),
            project(6, "other/secret")
        ])),
        ("GET", path) if path == format!("{p}/repository/branches") => {
            ok(json!([{"name": "main", "commit": {"id": SHA}}]))
        }
        ("GET", path) if path == format!("{p}/repository/branches/feature%2Fx") => {
            ok(json!({"name": "feature/x", "commit": {"id": SHA}}))
        }
        ("GET", path) if path == format!("{p}/repository/commits/{SHA}") => {
            ok(json!({"id": SHA, "short_id": "0123456"}))
        }
        ("GET", path) if path == format!("{p}/repository/files/stacks%2Fmain.tf/raw") => {
            reply(200, "text/plain", RAW_FILE)
        }
        ("POST", path) if path == format!("{p}/statuses/{SHA}") => {
            ok(json!({"id": 1, "status": "success", "name": "ci"}))
        }
        ("GET", path) if path == format!("{p}/merge_requests/1") => {
            ok(json!({"id": 11, "iid": 1, "project_id": 5, "title": "Add stack"}))
        }
        ("POST", path) if path == format!("{p}/merge_requests/1/notes") => {
            ok(json!({"id": 3, "body": "plan: 1 to add"}))
        }
        ("GET", path) if path == format!("{p}/repository/archive.tar.gz") => {
            reply(200, "application/octet-stream", TARBALL)
        }
        _ => None,
    }
}

#[test]
fn python_gitlab() {
    let run = drive("gitlab", "group/.*", gitlab_stub);
    let p = "/api/v4/projects/5";
    assert_eq!(
        run.arrived(),
        [
            "GET /api/v4/user".to_string(),
            "GET /api/v4/projects/group%2Frepo".into(),
            // The one lookup that tells the agent what id 5 is, then the id's requests.
            format!("GET {p}"),
            format!("GET {p}/repository/branches"),
            format!("GET {p}/repository/branches/feature%2Fx"),
            format!("GET {p}/repository/commits/{SHA}"),
            format!("GET {p}/repository/files/stacks%2Fmain.tf/raw?ref=main"),
            format!("POST {p}/statuses/{SHA}"),
            format!("GET {p}/merge_requests/1"),
            format!("POST {p}/merge_requests/1/notes"),
            format!("GET {p}/repository/archive.tar.gz?sha={SHA}"),
            "GET /api/v4/projects?search=e".into(),
        ]
    );
    let status = run.posted(
        &format!("{p}/statuses/{SHA}"),
        r#"{"state": "success", "name": "ci"}"#,
    );
    assert_eq!(status.header("private-token"), Some("glpat-ci-secret"));
    assert!(status
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("python-gitlab/8.6.0")));
    run.agent
        .out
        .wait_for("project=group/repo (id 5)", Duration::from_secs(5));
    assert!(run.steps.len() >= 15, "{:?}", run.steps);
}

fn github_repo(front: &str, id: u64, full_name: &str) -> Value {
    let (owner, name) = full_name.split_once('/').unwrap_or((full_name, ""));
    json!({
        "id": id,
        "name": name,
        "full_name": full_name,
        "owner": {"login": owner},
        "default_branch": "main",
        "url": format!("{front}/api/v3/repos/{full_name}"),
    })
}

fn github_stub(r: &Recorded, front: &str) -> Option<Reply> {
    let repo = "/api/v3/repos/acme/infra";
    let url = |path: &str| format!("{front}{repo}{path}");
    match (r.method.as_str(), r.path()) {
        ("GET", "/api/v3/user") => {
            ok(json!({"login": "ci", "id": 1, "url": format!("{front}/api/v3/users/ci")}))
        }
        ("GET", "/api/v3/repos/acme/infra" | "/api/v3/repositories/7") => {
            ok(github_repo(front, 7, "acme/infra"))
        }
        ("GET", "/api/v3/repositories/6") => ok(github_repo(front, 6, "other/secret")),
        ("GET", "/api/v3/user/repos") => ok(json!([
            github_repo(front, 7, "acme/infra"),
            github_repo(front, 6, "other/secret"),
        ])),
        ("POST", "/api/graphql") => ok(json!({"data": {"repository": {"id": "R_1"}}})),
        ("GET", "/_codeload/acme/infra/legacy.tar.gz/main") => {
            reply(200, "application/x-gzip", TARBALL)
        }
        ("GET", path) => match path.strip_prefix(repo) {
            Some("/branches/feature/x") => ok(json!({"name": "feature/x", "commit": {"sha": SHA}})),
            Some(p) if p == format!("/commits/{SHA}") => {
                ok(json!({"sha": SHA, "url": url(&format!("/commits/{SHA}"))}))
            }
            Some("/contents/stacks/main.tf") => ok(json!({
                "type": "file", "encoding": "base64", "content": "dGVycmFmb3JtIHt9Cg==",
                "name": "main.tf", "path": "stacks/main.tf", "sha": "abc", "size": 13,
                "url": url("/contents/stacks/main.tf"),
            })),
            Some("/pulls/8") => ok(json!({
                "number": 8, "id": 80, "url": url("/pulls/8"),
                "issue_url": url("/issues/8"),
            })),
            Some("/tarball/main") => {
                let host = r.header("host").unwrap_or_default();
                let to = format!("http://{host}/_codeload/acme/infra/legacy.tar.gz/main");
                Some((302, vec![("Location".into(), to)], Vec::new()))
            }
            _ => None,
        },
        ("POST", path) => match path.strip_prefix(repo) {
            Some(p) if p == format!("/statuses/{SHA}") => {
                ok(json!({"id": 1, "state": "success", "context": "ci"}))
            }
            Some("/check-runs") => ok(json!({"id": 4, "name": "plan", "head_sha": SHA})),
            Some("/issues/8/comments") => ok(json!({"id": 9, "body": "plan: 1 to add"})),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn pygithub() {
    let run = drive("github_enterprise", "acme/.*", github_stub);
    let repo = "/api/v3/repos/acme/infra";
    assert_eq!(
        run.arrived(),
        [
            "GET /api/v3/user".to_string(),
            format!("GET {repo}"),
            format!("GET {repo}/branches/feature/x"),
            format!("GET {repo}/commits/{SHA}?page=1"),
            format!("GET {repo}/contents/stacks/main.tf?ref=main"),
            format!("POST {repo}/statuses/{SHA}"),
            format!("POST {repo}/check-runs"),
            format!("GET {repo}/pulls/8"),
            format!("POST {repo}/issues/8/comments"),
            format!("GET {repo}/tarball/main"),
            // The redirect to the internal codeload path, followed through the tunnel.
            "GET /_codeload/acme/infra/legacy.tar.gz/main".into(),
            // The lookup that tells the agent what id 7 is, then the request itself.
            "GET /api/v3/repositories/7".into(),
            "GET /api/v3/repositories/7".into(),
            // The listing (filtered) taught the agent id 6 too: no lookup for it later, and
            // nothing of the denied requests.
            "GET /api/v3/user/repos".into(),
            "POST /api/graphql".into(),
        ]
    );
    let check_run = run.posted(
        &format!("{repo}/check-runs"),
        &format!(r#"{{"name": "plan", "head_sha": "{SHA}"}}"#),
    );
    assert_eq!(
        check_run.header("authorization"),
        Some("token ghp-ci-secret")
    );
    assert!(run.steps.len() >= 18, "{:?}", run.steps);
}

fn bitbucket_repo(key: &str, slug: &str) -> Value {
    json!({"slug": slug, "id": 1, "name": slug, "project": {"key": key}})
}

fn bitbucket_stub(r: &Recorded, _front: &str) -> Option<Reply> {
    let repo = "/rest/api/1.0/projects/PLAT/repos/infra";
    match (r.method.as_str(), r.path()) {
        ("GET", "/rest/api/1.0/projects/PLAT/repos") => ok(json!({
            "size": 2, "limit": 25, "isLastPage": true, "start": 0,
            "values": [bitbucket_repo("PLAT", "infra"), bitbucket_repo("PLAT", "secret")],
        })),
        ("GET", path) => match path.strip_prefix(repo) {
            Some("") => ok(bitbucket_repo("PLAT", "infra")),
            Some("/branches") => ok(json!({
                "size": 1, "limit": 25, "isLastPage": true, "start": 0,
                "values": [{"id": "refs/heads/main", "displayId": "main"}],
            })),
            Some(p) if p == format!("/commits/{SHA}") => {
                ok(json!({"id": SHA, "displayId": "0123456"}))
            }
            Some("/raw/stacks/main.tf") => reply(200, "text/plain", RAW_FILE),
            _ => None,
        },
        ("POST", path)
            if path
                == format!("/rest/api/latest/projects/PLAT/repos/infra/commits/{SHA}/builds") =>
        {
            Some((204, vec![], Vec::new()))
        }
        ("POST", path) if path == format!("{repo}/pull-requests/1/comments") => {
            ok(json!({"id": 3, "text": "plan: 1 to add"}))
        }
        _ => None,
    }
}

#[test]
fn atlassian_python_api() {
    let run = drive("bitbucket_datacenter", "PLAT/infra", bitbucket_stub);
    let repo = "/rest/api/1.0/projects/PLAT/repos/infra";
    assert_eq!(
        run.arrived(),
        [
            format!("GET {repo}"),
            format!(
                "GET {repo}/branches?limit=25&orderBy=MODIFICATION&details=True&boostMatches=False"
            ),
            format!("GET {repo}/commits/{SHA}"),
            format!("GET {repo}/raw/stacks/main.tf?at=main"),
            format!("POST /rest/api/latest/projects/PLAT/repos/infra/commits/{SHA}/builds"),
            format!("POST {repo}/pull-requests/1/comments"),
            // Filtered to PLAT/infra; nothing of the denied requests.
            "GET /rest/api/1.0/projects/PLAT/repos?limit=25".into(),
        ]
    );
    let comment = run.posted(
        &format!("{repo}/pull-requests/1/comments"),
        r#"{"text": "plan: 1 to add"}"#,
    );
    assert_eq!(comment.header("authorization"), Some("Bearer bb-ci-secret"));
    assert!(run.steps.len() >= 9, "{:?}", run.steps);
}

/// One entry of the Azure DevOps resource-location answer (`OPTIONS /{org}/_apis`).
fn azure_location(id: &str, area: &str, resource: &str, template: &str) -> Value {
    json!({
        "id": id, "area": area, "resourceName": resource, "routeTemplate": template,
        "resourceVersion": 1, "minVersion": "1.0", "maxVersion": "7.1", "releasedVersion": "7.0",
    })
}

fn azure_locations() -> Value {
    let repo = "{project}/_apis/{area}/repositories/{repositoryId}";
    let locations = [
        azure_location(
            "e81700f7-3be2-46de-8624-2eb35882fcaa",
            "Location",
            "ResourceAreas",
            "_apis/{resource}/{areaId}",
        ),
        azure_location(
            "225f7195-f9c7-4d14-ab28-a83f7ff77e1f",
            "git",
            "repositories",
            "{project}/_apis/{area}/{resource}/{repositoryId}",
        ),
        azure_location(
            "c2570c3b-5b3f-41b8-98bf-5407bfde8d58",
            "git",
            "commits",
            &format!("{repo}/{{resource}}/{{commitId}}"),
        ),
        azure_location(
            "428dd4fb-fda5-4722-af02-9313b80305da",
            "git",
            "statuses",
            &format!("{repo}/commits/{{commitId}}/{{resource}}"),
        ),
        azure_location(
            "9946fd70-0d40-406e-b686-b4744cbbcc37",
            "git",
            "pullRequests",
            &format!("{repo}/{{resource}}/{{pullRequestId}}"),
        ),
        azure_location(
            "ab6e2e5d-a0b7-4153-b64a-a4efe0d49449",
            "git",
            "threads",
            &format!("{repo}/pullRequests/{{pullRequestId}}/{{resource}}/{{threadId}}"),
        ),
    ];
    json!({"count": locations.len(), "value": locations})
}

fn azure_repo(id: &str, project: &str, name: &str) -> Value {
    let project_id = if project == "platform" {
        AZURE_PROJECT
    } else {
        "0-other"
    };
    json!({"id": id, "name": name, "project": {"id": project_id, "name": project}})
}

fn azure_stub(r: &Recorded, _front: &str) -> Option<Reply> {
    let git = "/acme/platform/_apis/git/repositories";
    match (r.method.as_str(), r.path()) {
        ("OPTIONS", "/acme/_apis") => ok(azure_locations()),
        ("GET", "/acme/_apis/ResourceAreas") => ok(json!({"count": 0, "value": []})),
        ("GET", path) if path == git => ok(json!({
            "count": 2,
            "value": [azure_repo(AZURE_REPO, "platform", "infra"), azure_repo("0-legacy", "platform", "legacy")],
        })),
        ("GET", path) if path == format!("/acme/{AZURE_PROJECT}/_apis/git/repositories/infra") => {
            ok(azure_repo(AZURE_REPO, "platform", "infra"))
        }
        ("GET", path)
            if path
                == format!("/acme/{AZURE_PROJECT}/_apis/git/repositories/infra/commits/{SHA}") =>
        {
            ok(json!({"commitId": SHA}))
        }
        ("GET", path) => match path.strip_prefix(git) {
            Some("/infra") => ok(azure_repo(AZURE_REPO, "platform", "infra")),
            Some(p) if p == format!("/{AZURE_REPO}") => {
                ok(azure_repo(AZURE_REPO, "platform", "infra"))
            }
            Some(p) if p == format!("/{AZURE_OTHER}") => {
                ok(azure_repo(AZURE_OTHER, "hr", "secret"))
            }
            Some(p) if p == format!("/{AZURE_REPO}/commits/{SHA}") => ok(json!({"commitId": SHA})),
            Some("/infra/pullRequests/21") => ok(json!({"pullRequestId": 21})),
            _ => None,
        },
        ("POST", path) => match path.strip_prefix(git) {
            Some(p) if p == format!("/infra/commits/{SHA}/statuses") => {
                ok(json!({"state": "succeeded", "description": "ci"}))
            }
            Some("/infra/pullRequests/21/threads") => ok(json!({"id": 3})),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn azure_devops_sdk() {
    let run = drive("azure_devops", "acme/platform/infra", azure_stub);
    let git = "/acme/platform/_apis/git/repositories";
    assert_eq!(
        run.arrived(),
        [
            // Resource-location discovery, the SDK's first request.
            "OPTIONS /acme/_apis".to_string(),
            "GET /acme/_apis/ResourceAreas".into(),
            // Filtered to infra, which teaches the agent its GUID.
            format!("GET {git}"),
            format!("GET {git}/infra"),
            format!("GET {git}/{AZURE_REPO}/commits/{SHA}"),
            // The project given by its GUID: one lookup of the repository in it, then the commit.
            format!("GET /acme/{AZURE_PROJECT}/_apis/git/repositories/infra?api-version=5.0"),
            format!("GET /acme/{AZURE_PROJECT}/_apis/git/repositories/infra/commits/{SHA}"),
            format!("POST {git}/infra/commits/{SHA}/statuses"),
            format!("GET {git}/infra/pullRequests/21"),
            format!("POST {git}/infra/pullRequests/21/threads"),
            // The lookup of the other GUID; nothing of the denied requests.
            format!("GET {git}/{AZURE_OTHER}?api-version=5.0"),
        ]
        .map(|t| if t.contains(' ') {
            t
        } else {
            format!("GET {t}")
        })
    );
    let thread = run.posted(
        &format!("{git}/infra/pullRequests/21/threads"),
        r#"{"comments": [{"content": "plan: 1 to add"}]}"#,
    );
    assert!(thread
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
    let lookup = run.request("GET", &format!("{git}/{AZURE_OTHER}?api-version=5.0"));
    assert_eq!(
        lookup.header("authorization"),
        thread.header("authorization")
    );
    assert!(run.steps.len() >= 9, "{:?}", run.steps);
}
