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
use std::time::Duration;
use support::upstream::{Recorded, Reply, Upstream};
use support::*;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const DISCUSSION: &str = "6a9c1750b37d513a43987b574953fceb50b03ce7";
const AZURE_REPO: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
const AZURE_OTHER: &str = "9c4f29fb-0d6e-4b3e-a1b3-6f1f2d4b8a77";
const AZURE_PROJECT: &str = "5e0c5b2a-9a53-4a8e-9e0d-0d7b2c1e6f00";
const AZURE_HR_PROJECT: &str = "7a7a7a7a-2222-4a8e-9e0d-0d7b2c1e6f00";

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

/// How one run is set up beyond the vendor and its stub.
#[derive(Default)]
struct Setup<'a> {
    /// `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS`; `None` runs the agent without it.
    projects: Option<&'a str>,
    /// Appended to the stub's URL to make the agent's base endpoint (`/tfs/DefaultCollection`).
    base_path: &'a str,
    /// More environment for the driver.
    env: &'a [(&'a str, &'a str)],
}

/// Starts gateway, stub and agent for `vendor` with `ALLOWED_PROJECTS=projects` (or without
/// it), runs the driver and checks that every step went as expected. The stub gets each
/// request and the front URL of the pool.
fn drive(
    vendor: &str,
    projects: Option<&str>,
    stub: impl Fn(&Recorded, &str) -> Option<Reply> + Send + Sync + 'static,
) -> Run {
    let setup = Setup {
        projects,
        ..Setup::default()
    };
    drive_with(vendor, &setup, stub)
}

fn drive_with(
    vendor: &str,
    setup: &Setup,
    stub: impl Fn(&Recorded, &str) -> Option<Reply> + Send + Sync + 'static,
) -> Run {
    let gateway = Gateway::start(&[]);
    let pool = vendor.replace('_', "-");
    // Where answers' own URLs point: the front (PyGithub follows them).
    let front = gateway.url(&pool, "");
    let upstream = Upstream::with_routes(move |r| stub(r, &front));
    let mut env = vec![("SPACELIFT_VCS_AGENT_VENDOR", vendor)];
    if let Some(projects) = setup.projects {
        env.push(("SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS", projects));
    }
    let base = format!("{}{}", upstream.base(), setup.base_path);
    let agent = gateway.agent_for(&pool, &base, &env, 2);
    let mode = match setup.projects {
        Some(_) => "restricted",
        None => "open",
    };
    let url = gateway.url(&pool, "");
    let authorization = gateway.caller_header().1;
    let Client {
        status,
        driver,
        steps,
    } = run_client("drive.py", &[vendor, &url, mode], &authorization, setup.env);
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
        ("GET", path) if path == format!("{p}/environments/8") => {
            ok(json!({"id": 8, "name": "production", "external_url": null}))
        }
        ("PUT", path) if path == format!("{p}/environments/8") => {
            ok(json!({"id": 8, "name": "production", "external_url": "https://ci.example/8"}))
        }
        ("POST", path) if path == format!("{p}/merge_requests/1/discussions") => ok(json!({
            "id": DISCUSSION, "individual_note": false, "notes": [{"id": 4, "body": "typo"}],
        })),
        ("GET", path) if path == format!("{p}/merge_requests/1/approval_state") => {
            ok(json!({"approval_rules_overwritten": false, "rules": []}))
        }
        ("GET", path) if path == format!("{p}/repository/commits/{SHA}/refs") => {
            ok(json!([{"type": "branch", "name": "main"}]))
        }
        ("GET", path) if path == format!("{p}/repository/blobs/{SHA}") => ok(json!({
            "sha": SHA, "size": 13, "encoding": "base64", "content": "dGVycmFmb3JtIHt9Cg==",
        })),
        ("GET", path) if path == format!("{p}/repository/archive.tar.gz") => {
            reply(200, "application/octet-stream", TARBALL)
        }
        _ => None,
    }
}

/// What python-gitlab sends for the driver's steps that pass, projects restricted.
fn gitlab_arrived() -> Vec<String> {
    let p = "/api/v4/projects/5";
    vec![
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
        format!("POST {p}/merge_requests/1/discussions"),
        format!("GET {p}/merge_requests/1/approval_state"),
        format!("GET {p}/environments/8"),
        format!("PUT {p}/environments/8"),
        format!("GET {p}/repository/commits/{SHA}/refs?type=all"),
        format!("GET {p}/repository/blobs/{SHA}"),
        format!("GET {p}/repository/archive.tar.gz?sha={SHA}"),
        "GET /api/v4/projects?search=e".into(),
    ]
}

#[test]
fn python_gitlab() {
    let run = drive("gitlab", Some("group/.*"), gitlab_stub);
    let p = "/api/v4/projects/5";
    assert_eq!(run.arrived(), gitlab_arrived());
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
    assert!(run.steps.len() >= 21, "{:?}", run.steps);
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
        ("GET", "/api/v3/orgs/acme") => ok(json!({
            "login": "acme", "id": 3, "url": format!("{front}/api/v3/orgs/acme"),
        })),
        ("PUT", "/api/v3/repos/acme/infra/environments/production") => ok(json!({
            "id": 12, "name": "production", "url": url("/environments/production"),
        })),
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
            Some("/commits/feature/x") => ok(json!({"sha": SHA, "url": url("/commits/feature/x")})),
            Some(p) if p == format!("/statuses/{SHA}") => {
                ok(json!([{"id": 1, "state": "success", "context": "ci"}]))
            }
            Some(p) if p == format!("/commits/{SHA}/check-suites") => ok(json!({
                "total_count": 1,
                "check_suites": [{"id": 5, "head_sha": SHA, "status": "completed"}],
            })),
            Some("/pulls/8/comments") => ok(json!([{"id": 77, "body": "typo", "path": "main.tf"}])),
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
            Some("/statuses/main") => ok(json!({"id": 2, "state": "pending", "context": "ci"})),
            Some("/pulls/8/comments") => ok(json!({"id": 78, "body": "typo", "path": "main.tf"})),
            Some("/pulls/8/comments/77/replies") => ok(json!({"id": 79, "body": "fixed"})),
            _ => None,
        },
        _ => None,
    }
}

/// What PyGithub sends for the driver's steps that pass, projects restricted.
fn github_arrived() -> Vec<String> {
    let repo = "/api/v3/repos/acme/infra";
    vec![
        "GET /api/v3/user".to_string(),
        format!("GET {repo}"),
        format!("GET {repo}/branches/feature/x"),
        format!("GET {repo}/commits/{SHA}?page=1"),
        format!("GET {repo}/contents/stacks/main.tf?ref=main"),
        format!("POST {repo}/statuses/{SHA}"),
        format!("GET {repo}/statuses/{SHA}"),
        format!("GET {repo}/commits/{SHA}/check-suites"),
        format!("GET {repo}/commits/feature/x"),
        format!("POST {repo}/statuses/main"),
        format!("PUT {repo}/environments/production"),
        "GET /api/v3/orgs/acme".into(),
        format!("POST {repo}/check-runs"),
        format!("GET {repo}/pulls/8"),
        format!("POST {repo}/issues/8/comments"),
        format!("GET {repo}/pulls/8/comments"),
        format!("POST {repo}/pulls/8/comments"),
        format!("POST {repo}/pulls/8/comments/77/replies"),
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
}

#[test]
fn pygithub() {
    let run = drive("github_enterprise", Some("acme/.*"), github_stub);
    let repo = "/api/v3/repos/acme/infra";
    assert_eq!(run.arrived(), github_arrived());
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
        ("GET", "/rest/api/1.0/users/~jdoe/repos/tools") => ok(bitbucket_repo("~JDOE", "tools")),
        ("GET", path) => match path.strip_prefix(repo) {
            Some("") => ok(bitbucket_repo("PLAT", "infra")),
            Some("/commits/refs%2Fheads%2Fmain") => ok(json!({"id": SHA, "displayId": "0123456"})),
            Some(p) if p == format!("/commits/{SHA}/changes") => ok(json!({
                "size": 1, "limit": 25, "isLastPage": true, "start": 0,
                "values": [{"path": {"toString": "stacks/main.tf"}, "type": "MODIFY"}],
            })),
            Some("/compare/diff/stacks/main.tf") => ok(json!({"diffs": []})),
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

/// What atlassian-python-api sends for the driver's steps that pass.
fn bitbucket_arrived() -> Vec<String> {
    let repo = "/rest/api/1.0/projects/PLAT/repos/infra";
    vec![
        format!("GET {repo}"),
        format!(
            "GET {repo}/branches?limit=25&orderBy=MODIFICATION&details=True&boostMatches=False"
        ),
        format!("GET {repo}/commits/{SHA}"),
        format!("GET {repo}/commits/refs%2Fheads%2Fmain"),
        format!("GET {repo}/commits/{SHA}/changes?merges=include"),
        format!("GET {repo}/compare/diff/stacks/main.tf?from=a1b2c3d&to={SHA}"),
        // atlassian-python-api's spelling of a personal repository.
        "GET /rest/api/1.0/users/~jdoe/repos/tools".into(),
        format!("GET {repo}/raw/stacks/main.tf?at=main"),
        format!("POST /rest/api/latest/projects/PLAT/repos/infra/commits/{SHA}/builds"),
        format!("POST {repo}/pull-requests/1/comments"),
        // Filtered to PLAT/infra; nothing of the denied requests.
        "GET /rest/api/1.0/projects/PLAT/repos?limit=25".into(),
    ]
}

#[test]
fn atlassian_python_api() {
    let run = drive(
        "bitbucket_datacenter",
        Some("PLAT/infra|~jdoe/tools"),
        bitbucket_stub,
    );
    let repo = "/rest/api/1.0/projects/PLAT/repos/infra";
    assert_eq!(run.arrived(), bitbucket_arrived());
    let comment = run.posted(
        &format!("{repo}/pull-requests/1/comments"),
        r#"{"text": "plan: 1 to add"}"#,
    );
    assert_eq!(comment.header("authorization"), Some("Bearer bb-ci-secret"));
    assert!(run.steps.len() >= 9, "{:?}", run.steps);
}

/// Without a project regex the same operations pass, nothing is looked up and listings
/// come whole; method overrides are still refused.
#[test]
fn the_libraries_without_a_project_regex() {
    let run = drive("gitlab", None, gitlab_stub);
    let mut expected = gitlab_arrived();
    // No lookup of id 5: there is no regex to hold its path to.
    expected.retain(|t| t != "GET /api/v4/projects/5");
    assert_eq!(run.arrived(), expected);

    let run = drive("github_enterprise", None, github_stub);
    let mut expected = github_arrived();
    let lookup = expected
        .iter()
        .position(|t| t == "GET /api/v3/repositories/7");
    expected.remove(lookup.unwrap());
    assert_eq!(run.arrived(), expected);

    let run = drive("bitbucket_datacenter", None, bitbucket_stub);
    assert_eq!(run.arrived(), bitbucket_arrived());
}

/// One entry of the Azure DevOps resource-location answer (`OPTIONS /{org}/_apis`).
fn azure_location(id: &str, area: &str, resource: &str, template: &str) -> Value {
    json!({
        "id": id, "area": area, "resourceName": resource, "routeTemplate": template,
        "resourceVersion": 1, "minVersion": "1.0", "maxVersion": "7.1", "releasedVersion": "7.0",
    })
}

/// How a server spells its resource locations: the cloud service's casing, or another
/// server's (`resourceAreas`, `connectionData`, `Git`, `pullrequests`), which the SDK then
/// uses in every URL it builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Casing {
    Cloud,
    Server,
}

fn azure_locations(casing: Casing) -> Value {
    let cloud = casing == Casing::Cloud;
    let pick = |a: &'static str, b: &'static str| if cloud { a } else { b };
    let git = pick("git", "Git");
    let pulls = pick("pullRequests", "pullrequests");
    let repo = "{project}/_apis/{area}/repositories/{repositoryId}";
    let locations = [
        azure_location(
            "e81700f7-3be2-46de-8624-2eb35882fcaa",
            "Location",
            pick("ResourceAreas", "resourceAreas"),
            "_apis/{resource}/{areaId}",
        ),
        azure_location(
            "00d9565f-ed9c-4a06-9a50-00e7896ccab4",
            "Location",
            pick("ConnectionData", "connectionData"),
            "_apis/{resource}",
        ),
        azure_location(
            "225f7195-f9c7-4d14-ab28-a83f7ff77e1f",
            git,
            "repositories",
            "{project}/_apis/{area}/{resource}/{repositoryId}",
        ),
        azure_location(
            "c2570c3b-5b3f-41b8-98bf-5407bfde8d58",
            git,
            "commits",
            &format!("{repo}/{{resource}}/{{commitId}}"),
        ),
        azure_location(
            "428dd4fb-fda5-4722-af02-9313b80305da",
            git,
            "statuses",
            &format!("{repo}/commits/{{commitId}}/{{resource}}"),
        ),
        azure_location(
            "9946fd70-0d40-406e-b686-b4744cbbcc37",
            git,
            pulls,
            &format!("{repo}/{{resource}}/{{pullRequestId}}"),
        ),
        azure_location(
            "52823034-34a8-4576-922c-8d8b77e9e4c4",
            git,
            "pullRequestCommits",
            &format!("{repo}/{pulls}/{{pullRequestId}}/commits"),
        ),
        azure_location(
            "ab6e2e5d-a0b7-4153-b64a-a4efe0d49449",
            git,
            "threads",
            &format!("{repo}/{pulls}/{{pullRequestId}}/{{resource}}/{{threadId}}"),
        ),
        azure_location(
            "c23ddff5-229c-4d04-a80b-0fdce9f360c8",
            pick("policy", "Policy"),
            "evaluations",
            "{project}/_apis/{area}/{resource}",
        ),
    ];
    json!({"count": locations.len(), "value": locations})
}

/// A repository as the server describes it, with its absolute `url` on the server.
fn azure_repo(r: &Recorded, prefix: &str, id: &str, project: &str, name: &str) -> Value {
    let project_id = match project {
        "platform" => AZURE_PROJECT,
        _ => AZURE_HR_PROJECT,
    };
    let host = r.header("host").unwrap_or_default();
    json!({
        "id": id, "name": name,
        "url": format!("http://{host}{prefix}/{project_id}/_apis/git/repositories/{id}"),
        "project": {"id": project_id, "name": project},
    })
}

/// A stub of an Azure DevOps organisation (or collection) at `prefix` on the server, paths
/// compared without regard to case as the server does.
fn azure_stub(
    prefix: &'static str,
    casing: Casing,
) -> impl Fn(&Recorded, &str) -> Option<Reply> + Send + Sync + 'static {
    move |r, _front| {
        let path = r.path().to_ascii_lowercase();
        let rest = path.strip_prefix(&prefix.to_ascii_lowercase())?;
        let repo = |id: &str, project: &str, name: &str| azure_repo(r, prefix, id, project, name);
        let infra = || repo(AZURE_REPO, "platform", "infra");
        let secret = || repo(AZURE_OTHER, "hr", "secret");
        let git = "/platform/_apis/git/repositories";
        let pr =
            |n: u64, repository: Value| ok(json!({"pullRequestId": n, "repository": repository}));
        let evaluations =
            json!({"count": 1, "value": [{"evaluationId": "e1", "status": "approved"}]});
        let found = match (r.method.as_str(), rest) {
            ("OPTIONS", "/_apis") => ok(azure_locations(casing)),
            ("GET", "/_apis/resourceareas") => ok(json!({"count": 0, "value": []})),
            ("GET", "/_apis/connectiondata") => ok(json!({
                "authenticatedUser": {"id": "c0ffee00-0000-4000-8000-000000000001", "providerDisplayName": "ci"},
                "instanceId": "1e1e1e1e-0000-4000-8000-000000000001",
            })),
            ("GET", p) if p == git => ok(json!({
                "count": 2,
                "value": [infra(), repo("0-legacy", "platform", "legacy")],
            })),
            ("GET", p) if p == format!("/_apis/git/repositories/{AZURE_REPO}") => ok(infra()),
            ("GET", p) if p == format!("/{AZURE_PROJECT}/_apis/git/repositories/infra") => {
                ok(infra())
            }
            ("GET", p)
                if p == format!("/{AZURE_PROJECT}/_apis/git/repositories/infra/commits/{SHA}") =>
            {
                ok(json!({"commitId": SHA}))
            }
            ("GET", p) if p == format!("/{AZURE_PROJECT}/_apis/git/pullrequests/21") => {
                pr(21, infra())
            }
            ("GET", p) if p == format!("/{AZURE_HR_PROJECT}/_apis/git/pullrequests/7") => {
                pr(7, secret())
            }
            ("GET", "/platform/_apis/policy/evaluations" | "/hr/_apis/policy/evaluations") => {
                ok(evaluations)
            }
            (method, p) => match (method, p.strip_prefix(git)?) {
                ("GET", "/infra") => ok(infra()),
                ("GET", p) if p == format!("/{AZURE_REPO}") => ok(infra()),
                ("GET", p) if p == format!("/{AZURE_OTHER}") => ok(secret()),
                ("GET", p) if p == format!("/{AZURE_REPO}/commits/{SHA}") => {
                    ok(json!({"commitId": SHA}))
                }
                ("GET", "/infra/pullrequests/21") => ok(json!({"pullRequestId": 21})),
                ("GET", "/infra/pullrequests/21/commits") => {
                    ok(json!({"count": 1, "value": [{"commitId": SHA}]}))
                }
                ("POST", p) if p == format!("/infra/commits/{SHA}/statuses") => {
                    ok(json!({"state": "succeeded", "description": "ci"}))
                }
                ("POST", "/infra/pullrequests/21/threads") => ok(json!({"id": 3})),
                ("PATCH", "/infra/pullrequests/21/threads/3") => {
                    ok(json!({"id": 3, "status": "fixed"}))
                }
                _ => None,
            },
        };
        found
    }
}

/// What the SDK sends for the Azure DevOps steps of the driver, under `org` (the path from the
/// base endpoint to the organisation, empty when the base endpoint names it), with projects
/// restricted (lookups, and the other project's GUID looked up and refused) or not.
fn azure_arrived(org: &str, restricted: bool, casing: Casing) -> Vec<String> {
    let cloud = casing == Casing::Cloud;
    let (areas, connection) = match cloud {
        true => ("ResourceAreas", "ConnectionData"),
        false => ("resourceAreas", "connectionData"),
    };
    let (git_area, pulls, policy) = match cloud {
        true => ("git", "pullRequests", "policy"),
        false => ("Git", "pullrequests", "Policy"),
    };
    let git = format!("{org}/platform/_apis/{git_area}/repositories");
    let by_guid = format!("{org}/{AZURE_PROJECT}/_apis/{git_area}/repositories/infra");
    let lookup = |target: String| [target].into_iter().filter(move |_| restricted);
    let artifact = format!("vstfs%3A%2F%2F%2FCodeReview%2FCodeReviewId%2F{AZURE_PROJECT}%2F21");
    let mut arrived: Vec<String> = vec![
        // Resource-location discovery, the SDK's first request.
        format!("OPTIONS {}/_apis", org.to_lowercase()),
        format!("GET {org}/_apis/{areas}"),
        format!("GET {org}/_apis/{connection}"),
        // Filtered to infra while restricted, which teaches the agent its GUID.
        format!("GET {git}"),
        format!("GET {git}/infra"),
        format!("GET {git}/{AZURE_REPO}/commits/{SHA}"),
    ];
    // The project given by its GUID: one lookup of the repository in it, then the commit.
    arrived.extend(lookup(format!(
        "GET {org}/{AZURE_PROJECT}/_apis/git/repositories/infra?api-version=5.0"
    )));
    arrived.extend([
        format!("GET {by_guid}/commits/{SHA}"),
        format!("POST {git}/infra/commits/{SHA}/statuses"),
        format!("GET {git}/infra/{pulls}/21"),
        format!("POST {git}/infra/{pulls}/21/threads"),
        format!("GET {git}/infra/{pulls}/21/commits"),
        format!("PATCH {git}/infra/{pulls}/21/threads/3"),
        format!("GET {org}/_apis/{git_area}/repositories/{AZURE_REPO}"),
    ]);
    // The pull request an evaluation names, looked up once; the evaluations under hr (of
    // platform's pull request) and of hr's pull request never arrive while restricted.
    arrived.extend(lookup(format!(
        "GET {org}/{AZURE_PROJECT}/_apis/git/pullRequests/21?api-version=5.0"
    )));
    arrived.push(format!(
        "GET {org}/platform/_apis/{policy}/evaluations?artifactId={artifact}"
    ));
    arrived.extend(lookup(format!(
        "GET {org}/{AZURE_HR_PROJECT}/_apis/git/pullRequests/7?api-version=5.0"
    )));
    // The lookup of the other GUID; nothing of the denied requests.
    arrived.extend(lookup(format!(
        "GET {org}/platform/_apis/git/repositories/{AZURE_OTHER}?api-version=5.0"
    )));
    arrived
}

/// The thread posted and the lookups' credentials, the caller's own.
fn azure_checks(run: &Run, org: &str, git_area: &str, pulls: &str, restricted: bool) {
    let git = format!("{org}/platform/_apis/{git_area}/repositories");
    let thread = run.posted(
        &format!("{git}/infra/{pulls}/21/threads"),
        r#"{"comments": [{"content": "plan: 1 to add"}]}"#,
    );
    assert!(thread
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
    if restricted {
        let other = format!("{org}/platform/_apis/git/repositories/{AZURE_OTHER}?api-version=5.0");
        let lookup = run.request("GET", &other);
        assert_eq!(
            lookup.header("authorization"),
            thread.header("authorization")
        );
    }
    let steps = if restricted { 18 } else { 14 };
    assert_eq!(run.steps.len(), steps, "{:?}", run.steps);
}

#[test]
fn azure_devops_sdk() {
    let run = drive(
        "azure_devops",
        Some("acme/platform/infra"),
        azure_stub("/acme", Casing::Cloud),
    );
    assert_eq!(run.arrived(), azure_arrived("/acme", true, Casing::Cloud));
    azure_checks(&run, "/acme", "git", "pullRequests", true);
}

#[test]
fn azure_devops_sdk_without_a_project_regex() {
    let run = drive("azure_devops", None, azure_stub("/acme", Casing::Cloud));
    assert_eq!(run.arrived(), azure_arrived("/acme", false, Casing::Cloud));
    azure_checks(&run, "/acme", "git", "pullRequests", false);
}

/// Azure DevOps Server at the host's root, with the `tfs` virtual directory, spelling its
/// resource locations its own way: the SDK is given the collection's URL.
#[test]
fn azure_devops_server_with_its_collection_in_the_path() {
    for projects in [Some("DefaultCollection/platform/infra"), None] {
        let setup = Setup {
            projects,
            env: &[
                ("VCS_TEST_AZURE_ORG", "tfs/DefaultCollection"),
                ("VCS_TEST_AZURE_COLLECTION", "DefaultCollection"),
            ],
            ..Setup::default()
        };
        let org = "/tfs/DefaultCollection";
        let run = drive_with("azure_devops", &setup, azure_stub(org, Casing::Server));
        let restricted = projects.is_some();
        assert_eq!(
            run.arrived(),
            azure_arrived(org, restricted, Casing::Server)
        );
        azure_checks(&run, org, "Git", "pullrequests", restricted);
    }
}

/// Azure DevOps Server whose base endpoint ends in the collection: the SDK is given the
/// pool's front, and the targets start at the project.
#[test]
fn azure_devops_server_with_its_collection_in_the_base_endpoint() {
    let org = "/tfs/DefaultCollection";
    let setup = Setup {
        projects: Some("defaultcollection/platform/infra"),
        base_path: org,
        env: &[
            ("VCS_TEST_AZURE_ORG", ""),
            ("VCS_TEST_AZURE_COLLECTION", "DefaultCollection"),
        ],
    };
    let run = drive_with("azure_devops", &setup, azure_stub(org, Casing::Cloud));
    let mut arrived = azure_arrived(org, true, Casing::Cloud);
    // The SDK asks for the locations in lower case: of the front here, the base path is the
    // agent's.
    arrived[0] = format!("OPTIONS {org}/_apis");
    assert_eq!(run.arrived(), arrived);
    azure_checks(&run, org, "git", "pullRequests", true);
}
