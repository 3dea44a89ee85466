//! What the real client libraries and servers send, decided on purpose: the CI/CD operations
//! a SaaS needs pass in both modes, Azure DevOps is read as its servers read it.

use super::tests::Entry;
use super::*;

fn open(vendor: Vendor) -> Allowlist {
    Allowlist::new(vendor, None)
}

fn restricted(vendor: Vendor, re: &str) -> Allowlist {
    Allowlist::new(vendor, Some(project_pattern(re).unwrap()))
}

/// The operations the client libraries send for CI/CD work, each with the project it is
/// about: allowed with no project regex, and with one that names just that project.
const CI_CD: &[(Vendor, &str, &str, &str)] = &[
    // python-gitlab: env.save(), mr.discussions.create(), mr.approval_state.get(),
    // commit.refs(), project.repository_blob().
    (Vendor::Gitlab, "PUT", "/api/v4/projects/group%2Frepo/environments/8", "group/repo"),
    (Vendor::Gitlab, "POST", "/api/v4/projects/group%2Frepo/merge_requests/3/discussions", "group/repo"),
    (Vendor::Gitlab, "GET", "/api/v4/projects/group%2Frepo/merge_requests/3/discussions", "group/repo"),
    (Vendor::Gitlab, "PUT", "/api/v4/projects/group%2Frepo/merge_requests/3/discussions/6a9c1750b37d513a43987b574953fceb50b03ce7", "group/repo"),
    (Vendor::Gitlab, "GET", "/api/v4/projects/group%2Frepo/merge_requests/3/approval_state", "group/repo"),
    (Vendor::Gitlab, "GET", "/api/v4/projects/group%2Frepo/repository/commits/0123abcd/refs?type=all", "group/repo"),
    (Vendor::Gitlab, "GET", "/api/v4/projects/group%2Frepo/repository/blobs/0123456789abcdef0123456789abcdef01234567", "group/repo"),
    // PyGithub and go-github.
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/statuses/0123456789abcdef0123456789abcdef01234567", "o/r"),
    (Vendor::GithubEnterprise, "POST", "/api/v3/repos/o/r/statuses/abc123", "o/r"),
    (Vendor::GithubEnterprise, "POST", "/repos/o/r/statuses/main", "o/r"),
    (Vendor::GithubEnterprise, "PUT", "/api/v3/repos/o/r/environments/production", "o/r"),
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/commits/0123abc/check-suites", "o/r"),
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/check-suites/5", "o/r"),
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/pulls/4/comments", "o/r"),
    (Vendor::GithubEnterprise, "POST", "/api/v3/repos/o/r/pulls/4/comments", "o/r"),
    (Vendor::GithubEnterprise, "PATCH", "/api/v3/repos/o/r/pulls/comments/9", "o/r"),
    (Vendor::GithubEnterprise, "POST", "/api/v3/repos/o/r/pulls/4/comments/9/replies", "o/r"),
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/commits/feature/x", "o/r"),
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/commits/0123abc/branches-where-head", "o/r"),
    (Vendor::GithubEnterprise, "GET", "/api/v3/repos/o/r/commits/0123abc/comments", "o/r"),
    // atlassian-python-api.
    (Vendor::BitbucketDatacenter, "GET", "/rest/api/1.0/users/~jdoe/repos/tools", "~jdoe/tools"),
    (Vendor::BitbucketDatacenter, "GET", "/rest/api/1.0/users/~jdoe/repos/tools/branches", "~jdoe/tools"),
    (Vendor::BitbucketDatacenter, "GET", "/rest/api/1.0/projects/PLAT/repos/infra/commits/0123abcd/changes", "PLAT/infra"),
    (Vendor::BitbucketDatacenter, "GET", "/rest/api/1.0/projects/PLAT/repos/infra/compare/diff/stacks/main.tf?from=a&to=b", "PLAT/infra"),
    (Vendor::BitbucketDatacenter, "GET", "/rest/api/1.0/projects/PLAT/repos/infra/commits/refs%2Fheads%2Fmain", "PLAT/infra"),
    // azure-devops (the SDK), with the REST reference's casing and the server's.
    (Vendor::AzureDevops, "GET", "/acme/platform/_apis/git/repositories/infra/pullRequests/4/commits", "acme/platform/infra"),
    (Vendor::AzureDevops, "PATCH", "/acme/platform/_apis/git/repositories/infra/pullRequests/4/threads/2", "acme/platform/infra"),
    (Vendor::AzureDevops, "GET", "/acme/platform/_apis/git/repositories/infra/pullrequests/1", "acme/platform/infra"),
    (Vendor::AzureDevops, "GET", "/acme/platform/_apis/Git/Repositories/infra/Commits?api-version=7.1", "acme/platform/infra"),
];

#[test]
fn ci_cd_operations_pass_in_both_modes() {
    for &(vendor, method, target, project) in CI_CD {
        for list in [open(vendor), restricted(vendor, &regex::escape(project))] {
            let allowed = list
                .check(method, target)
                .unwrap_or_else(|d| panic!("{vendor} {method} {target}: {d}"));
            assert_eq!(allowed.project.as_deref(), Some(project), "{target}");
        }
        let other = restricted(vendor, "elsewhere/x|a/b/c");
        let d = other.check(method, target).unwrap_err();
        assert_eq!(d.class, DenialClass::Project, "{target}: {}", d.reason);
    }
}

/// Reads and calls that are not about one repository: allowed, with no project.
#[test]
fn account_level_reads_pass_without_a_project() {
    for (vendor, method, target) in [
        (Vendor::GithubEnterprise, "GET", "/api/v3/orgs/acme"),
        (Vendor::AzureDevops, "GET", "/acme/_apis/ConnectionData"),
        (Vendor::AzureDevops, "GET", "/acme/_apis/resourceAreas"),
        (Vendor::AzureDevops, "OPTIONS", "/acme/_apis"),
    ] {
        let allowed = restricted(vendor, "acme/infra")
            .check(method, target)
            .unwrap_or_else(|d| panic!("{target}: {d}"));
        assert_eq!(allowed.project, None, "{target}");
    }
}

#[test]
fn azure_project_names_are_compared_as_the_server_does() {
    let list = restricted(Vendor::AzureDevops, "acme/platform/infra");
    for target in [
        "/ACME/Platform/_apis/git/repositories/INFRA/items?path=/x",
        "/acme/platform/_APIS/GIT/REPOSITORIES/infra/refs",
        "/Acme/platform/_git/Infra/info/refs?service=git-upload-pack",
    ] {
        let method = "GET";
        assert!(list.check(method, target).is_ok(), "{target}");
    }
    // Case folds literals, never the rest of the rules: a query is still exact.
    assert!(list
        .check(
            "GET",
            "/acme/platform/_git/infra/info/refs?service=GIT-RECEIVE-PACK"
        )
        .is_err());
    // Other vendors' literals keep their case.
    assert!(open(Vendor::Gitlab)
        .check("GET", "/API/v4/projects/5")
        .is_err());
}

const GUID: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
const PROJECT_GUID: &str = "5e0c5b2a-9a53-4a8e-9e0d-0d7b2c1e6f00";

fn by_id(list: &Allowlist, method: &str, target: &str) -> ProjectId {
    match list.decide_target(method, target) {
        Ok(Decision::ById(_, id)) => id,
        other => panic!("{target}: {other:?}"),
    }
}

#[test]
fn azure_guids_are_always_resolved_never_matched_as_text() {
    let list = restricted(Vendor::AzureDevops, "acme/platform/.*");
    let target = format!("/acme/platform/_apis/git/repositories/{GUID}/items");
    let id = by_id(&list, "GET", &target);
    assert_eq!((id.id.as_str(), id.scope.as_str()), (GUID, "acme"));
    // The repository by GUID without its project.
    let id = by_id(
        &list,
        "GET",
        &format!("/ACME/_apis/git/repositories/{GUID}"),
    );
    assert_eq!(
        id.scope, "acme",
        "one canonical scope whatever the caller's casing"
    );
    assert_eq!(
        id.lookup,
        format!("/ACME/_apis/git/repositories/{GUID}?api-version=5.0")
    );
    // ... and by name without its project: nothing to check it against.
    let d = list
        .check("GET", "/acme/_apis/git/repositories/infra")
        .unwrap_err();
    assert_eq!(d.class, DenialClass::Project, "{}", d.reason);
    // Without a project regex nothing needs resolving.
    assert!(matches!(
        open(Vendor::AzureDevops).decide_target("GET", &target),
        Ok(Decision::Allowed(_))
    ));
}

#[test]
fn azure_policy_evaluations_are_held_to_the_pull_request_they_name() {
    let list = restricted(Vendor::AzureDevops, "acme/platform/infra");
    let artifact = format!("vstfs:///CodeReview/CodeReviewId/{PROJECT_GUID}/21");
    let target = format!("/acme/other/_apis/policy/evaluations?artifactId={artifact}");
    let Ok(Decision::Allowed(allowed)) = list.decide_target("GET", &target) else {
        panic!("{target}");
    };
    let (param, id) = &allowed.param_ids[0];
    assert_eq!(*param, "artifactId");
    assert_eq!(id.id, format!("{PROJECT_GUID}/21"));
    assert_eq!(
        id.kind,
        IdKind::PullRequest {
            within: "other".into()
        }
    );
    assert_eq!(
        id.lookup,
        format!("/acme/{PROJECT_GUID}/_apis/git/pullRequests/21?api-version=5.0")
    );
    // Never forwarded unresolved, and nothing project-wide while restricted.
    assert!(list.check("GET", &target).is_err());
    for target in [
        "/acme/platform/_apis/policy/evaluations".to_string(),
        "/acme/platform/_apis/policy/evaluations?artifactId=vstfs:///Git/x".to_string(),
        format!("/acme/platform/_apis/policy/evaluations?artifactId=vstfs:///CodeReview/CodeReviewId/{PROJECT_GUID}/x"),
    ] {
        let d = list.check("GET", &target).unwrap_err();
        assert_eq!(d.class, DenialClass::Project, "{target}: {}", d.reason);
    }
    assert!(open(Vendor::AzureDevops)
        .check("GET", "/acme/platform/_apis/policy/evaluations")
        .is_ok());
}

#[test]
fn azure_devops_server_collections_in_every_spelling() {
    let re = "DefaultCollection/platform/infra";
    // At the host's root, with or without the `tfs` virtual directory.
    let root = restricted(Vendor::AzureDevops, re);
    for target in [
        "/tfs/DefaultCollection/platform/_apis/git/repositories/infra/commits",
        "/DefaultCollection/platform/_apis/git/repositories/infra/commits",
        "/TFS/defaultcollection/Platform/_apis/git/repositories/infra/commits",
        "/tfs/DefaultCollection/platform/_git/infra/git-upload-pack",
    ] {
        let method = if target.ends_with("pack") {
            "POST"
        } else {
            "GET"
        };
        let allowed = root
            .check(method, target)
            .unwrap_or_else(|d| panic!("{target}: {d}"));
        assert!(allowed.project.is_some(), "{target}");
    }
    let id = by_id(
        &root,
        "GET",
        &format!("/tfs/DefaultCollection/platform/_apis/git/repositories/{GUID}"),
    );
    assert_eq!(id.scope, "defaultcollection");
    assert_eq!(
        id.lookup,
        format!("/tfs/DefaultCollection/platform/_apis/git/repositories/{GUID}?api-version=5.0")
    );
    // A base endpoint that ends in the collection: targets start at the project.
    let projects = Some(project_pattern(re).unwrap());
    for (host, path) in [
        ("tfs.corp", "/tfs/DefaultCollection"),
        ("tfs.corp", "/DefaultCollection"),
    ] {
        let list = Allowlist::for_base(Vendor::AzureDevops, projects.clone(), host, path);
        let target = "/platform/_apis/git/repositories/infra/pullRequests/3";
        let allowed = list
            .check("GET", target)
            .unwrap_or_else(|d| panic!("{path}{target}: {d}"));
        assert_eq!(
            allowed.project.as_deref(),
            Some("DefaultCollection/platform/infra")
        );
        assert!(list.check("GET", "/_apis/connectionData").is_ok());
        assert!(list.check("OPTIONS", "/_apis").is_ok());
        assert_eq!(
            list.organisation("/platform/_apis/git/repositories"),
            "defaultcollection"
        );
        let id = by_id(&list, "GET", &format!("/_apis/git/repositories/{GUID}"));
        assert_eq!(
            id.lookup,
            format!("/_apis/git/repositories/{GUID}?api-version=5.0")
        );
    }
    // The cloud: the organisation in the base endpoint's path or host.
    for (host, path) in [("dev.azure.com", "/acme"), ("acme.visualstudio.com", "")] {
        let list = Allowlist::for_base(
            Vendor::AzureDevops,
            Some(project_pattern("acme/platform/infra").unwrap()),
            host,
            path,
        );
        assert!(list
            .check("GET", "/platform/_apis/git/repositories/infra")
            .is_ok());
    }
    // On the cloud service `tfs` is an organisation like any other.
    let cloud = Allowlist::for_base(
        Vendor::AzureDevops,
        Some(project_pattern("tfs/platform/infra").unwrap()),
        "dev.azure.com",
        "",
    );
    assert!(cloud
        .check("GET", "/tfs/platform/_apis/git/repositories/infra")
        .is_ok());
}

/// What we make of one of the original agent's own test vectors.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Allowed, about this project (`None`: a request without one).
    Allowed(Option<&'static str>),
    /// Refused on purpose, for this reason.
    Refused(&'static str),
}

use Verdict::{Allowed as Pass, Refused};

/// The test vectors of the original agent (spacelift-io/vcs-agent,
/// `privatevcs/validation/allowlist/azure_devops_test.go` and `github_enterprise_test.go`):
/// method, path, the original's rule name, and what we decide. The original has no vectors
/// for GitLab or Bitbucket Data Center.
const ORIGINAL_AZURE: &[(&str, &str, &str, Verdict)] = &[
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/diffs/commits?api-version=7.1-preview.1", "Get Commit Diff", Pass(Some("spacelift-development/backend/infra"))),
    ("POST", "/spacelift-development/backend/_apis/git/repositories/infra/pullRequests/12345/threads?api-version=7.1-preview.1", "Create Pull Request Thread", Pass(Some("spacelift-development/backend/infra"))),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/stats/branches?api-version=7.1-preview.1", "List Branch Stats", Pass(Some("spacelift-development/backend/infra"))),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/items?path=%2FREADME.md&api-version=7.1-preview.1", "Get Item", Pass(Some("spacelift-development/backend/infra"))),
    ("POST", "/spacelift-development/backend/_apis/git/repositories/infra/commits/a171eaa2c3790cbff77ec96f429e7aee5a3e724c/statuses?api-version=7.1-preview.1", "Create Commit Status", Pass(Some("spacelift-development/backend/infra"))),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/pullRequests?api-version=7.1-preview.1", "List Pull Requests", Pass(Some("spacelift-development/backend/infra"))),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/pullRequests/1234?api-version=7.1-preview.1", "Get Pull Request", Pass(Some("spacelift-development/backend/infra"))),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/pullRequests/1234/labels?api-version=7.1-preview.1", "List Pull Request Labels", Pass(Some("spacelift-development/backend/infra"))),
    ("GET", "/spacelift-development/backend/_apis/git/repositories?api-version=7.1-preview.1", "List Repositories", Pass(None)),
    ("GET", "/spacelift-development/_apis/git/repositories?api-version=7.1-preview.1", "List Repositories", Pass(None)),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/infra/commits/a171eaa2c3790cbff77ec96f429e7aee5a3e724c?api-version=7.1-preview.1", "Get Commit", Pass(Some("spacelift-development/backend/infra"))),
    ("OPTIONS", "/spacelift-development/_apis", "List Resource Locations", Pass(None)),
    ("GET", "/spacelift-development/_apis/ResourceAreas", "List Resource Areas", Pass(None)),
    // Allowed with no project regex; while projects are restricted it needs an artifactId
    // naming a pull request of an allowed repository (it is project-wide otherwise).
    ("GET", "/spacelift-development/backend/_apis/policy/evaluations", "List Policy Evaluations", Pass(None)),
    ("GET", "/spacelift-development/_apis/UnknownResource", "Unknown Request", Refused("the original's catch-all lets every unmatched request through; an allowlist that fails closed denies what no rule names")),
    ("GET", "/spacelift-development/backend/_apis/git/repositories/spacelift-dev-stack/pullRequests/123/threads/1", "Get Pull Request Thread", Pass(Some("spacelift-development/backend/spacelift-dev-stack"))),
    ("PATCH", "/spacelift-development/backend/_apis/git/repositories/spacelift-dev-stack/pullRequests/123/threads/1/comments/1", "Update Pull Request Comment", Pass(Some("spacelift-development/backend/spacelift-dev-stack"))),
];

const ORIGINAL_GITHUB: &[(&str, &str, &str, Verdict)] = &[
    (
        "GET",
        "/api/v3/repos/octocats/infra/compare/abc...123",
        "Compare Trees",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/repos/octocats/infra/compare/abc...123",
        "Compare Trees",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/api/v3/repos/octocats/infra/statuses/abc123",
        "Create Commit Status",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/repos/octocats/infra/statuses/abc123",
        "Create Commit Status",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/api/v3/repos/octocats/infra/check-runs",
        "Create Check Run",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/repos/octocats/infra/check-runs",
        "Create Check Run",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/api/v3/repos/octocats/infra/deployments",
        "Create Deployment",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/repos/octocats/infra/deployments",
        "Create Deployment",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/api/v3/repos/octocats/infra/deployments/123456/statuses",
        "Create Deployment Status",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/repos/octocats/infra/deployments/123456/statuses",
        "Create Deployment Status",
        Pass(Some("octocats/infra")),
    ),
    (
        "DELETE",
        "/api/v3/repos/octocats/infra/deployments/123456",
        "Delete Deployment",
        Pass(Some("octocats/infra")),
    ),
    (
        "DELETE",
        "/repos/octocats/infra/deployments/123456",
        "Delete Deployment",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/api/v3/repos/octocats/infra/commits/565958b65e14a5e06c1c467a66b446f2afcf87ef",
        "Get Individual Commit Details",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/repos/octocats/infra/commits/565958b65e14a5e06c1c467a66b446f2afcf87ef",
        "Get Individual Commit Details",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/_codeload/octocats/infra/legacy.tar.gz/565958b65e14a5e06c1c467a66b446f2afcf87ef",
        "Get Repository Tarball",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/codeload/octocats/infra/legacy.tar.gz/565958b65e14a5e06c1c467a66b446f2afcf87ef",
        "Get Repository Tarball",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/octocats/infra/legacy.tar.gz/565958b65e14a5e06c1c467a66b446f2afcf87ef",
        "Get Repository Tarball",
        Pass(Some("octocats/infra")),
    ),
    ("POST", "/api/graphql", "GraphQL Endpoint", Pass(None)),
    (
        "GET",
        "/api/v3/repos/octocats/infra/deployments",
        "List Deployments",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/repos/octocats/infra/deployments",
        "List Deployments",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/api/v3/repos/octocats/infra/pulls/123/files",
        "List Pull Request Files",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/repos/octocats/infra/pulls/123/files",
        "List Pull Request Files",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/api/v3/repos/octocats/infra/pulls/123",
        "Get Pull Request",
        Pass(Some("octocats/infra")),
    ),
    (
        "GET",
        "/repos/octocats/infra/pulls/123",
        "Get Pull Request",
        Pass(Some("octocats/infra")),
    ),
    (
        "POST",
        "/api/v3/app/installations/29/access_tokens",
        "Refresh Access Token",
        Pass(None),
    ),
    (
        "POST",
        "/app/installations/29/access_tokens",
        "Refresh Access Token",
        Pass(None),
    ),
    (
        "GET",
        "/api/v3/app/installations",
        "List Installations",
        Pass(None),
    ),
    (
        "GET",
        "/app/installations",
        "List Installations",
        Pass(None),
    ),
    ("GET", "/api/v3/app", "Get app details", Pass(None)),
    ("GET", "/app", "Get app details", Pass(None)),
    (
        "GET",
        "/api/v3/users/spacelift",
        "Get user details",
        Pass(None),
    ),
];

fn judge(list: &Allowlist, method: &str, target: &str, name: &str, verdict: Verdict) {
    match (verdict, list.check(method, target)) {
        (Pass(project), Ok(allowed)) => {
            assert_eq!(allowed.project.as_deref(), project, "{name}: {target}")
        }
        (Refused(why), Err(_)) => assert!(!why.is_empty()),
        (verdict, result) => panic!("{name}: {method} {target}: {result:?}, want {verdict:?}"),
    }
}

#[test]
fn the_original_agents_own_test_vectors() {
    let github = open(Vendor::GithubEnterprise);
    for &(method, target, name, verdict) in ORIGINAL_GITHUB {
        judge(&github, method, target, name, verdict);
    }
    // The original runs every Azure DevOps vector it allows again under `/tfs` (Azure
    // DevOps Server at the host's root); the project then starts at the collection.
    let azure = open(Vendor::AzureDevops);
    for &(method, target, name, verdict) in ORIGINAL_AZURE {
        judge(&azure, method, target, name, verdict);
        if let Pass(_) = verdict {
            judge(&azure, method, &format!("/tfs{target}"), name, verdict);
        }
    }
}

fn graphql_body(list: &Allowlist, headers: &[(&str, &str)], body: &str) -> Result<(), Denied> {
    let allowed = list.check("POST", "/api/graphql")?;
    let inspection = list
        .body_inspection("POST", &allowed, headers)?
        .ok_or_else(|| Denied::path("not inspected"))?;
    list.check_body(inspection, body.as_bytes()).map(|_| ())
}

#[test]
fn graphql_bodies_are_json_and_nothing_else() {
    let list = restricted(Vendor::GithubEnterprise, "acme/infra");
    let body = r#"{"query":"{ repository(owner: \"acme\", name: \"infra\") { id } }"}"#;
    for headers in [
        &[][..],
        &[("Content-Type", "application/json")][..],
        &[("content-type", "Application/JSON; charset=utf-8")][..],
    ] {
        assert!(graphql_body(&list, headers, body).is_ok(), "{headers:?}");
    }
    for headers in [
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
        &[("Content-Type", "text/plain")][..],
        &[("Content-Type", "multipart/form-data; boundary=x")][..],
        &[
            ("Content-Type", "application/json"),
            ("Content-Type", "text/plain"),
        ][..],
        &[("Content-Type", "application/json, text/plain")][..],
    ] {
        let d = graphql_body(&list, headers, body).unwrap_err();
        assert_eq!(d.class, DenialClass::Path, "{headers:?}");
    }
}

#[test]
fn graphql_documents_the_specification_calls_invalid_are_denied() {
    let repo = r#"repository(owner: \"acme\", name: \"infra\") { id }"#;
    for (document, why) in [
        (format!("query A {{ {repo} }} query A {{ {repo} }}"), "two operations with one name"),
        (format!("{{ {repo} }} query B {{ {repo} }}"), "an anonymous operation beside others"),
        (format!("query {{ ...F }} fragment F on Query {{ {repo} }} fragment F on Query {{ viewer {{ login }} }}"), "two fragments with one name"),
        (r#"{ repository(owner: \"acme\", name: \"infra\", name: \"secret\") { id } }"#.to_string(), "an argument given twice"),
        (format!("query Q($o: String, $o: String) {{ {repo} }}"), "a variable defined twice"),
    ] {
        let body = format!(r#"{{"query":"{document}"}}"#);
        for list in [open(Vendor::GithubEnterprise), restricted(Vendor::GithubEnterprise, "acme/infra")] {
            let d = graphql_body(&list, &[], &body).unwrap_err();
            assert_eq!(d.reason, format!("GraphQL document is invalid: {why}"), "{document}");
        }
    }
}

#[test]
fn look_alike_dots_and_slashes_are_denied_in_path_segments() {
    let list = open(Vendor::Gitlab);
    for alike in [
        "%E2%80%A4",       // ONE DOT LEADER
        "%EF%BC%8E",       // FULLWIDTH FULL STOP
        "%EF%B9%92",       // SMALL FULL STOP
        "%E2%80%A5",       // TWO DOT LEADER
        "%EF%BC%8F",       // FULLWIDTH SOLIDUS
        "%EF%BC%BC",       // FULLWIDTH REVERSE SOLIDUS
        "%E2%88%95",       // DIVISION SLASH
        "%E3%80%82",       // IDEOGRAPHIC FULL STOP
        "%25E2%2580%25A4", // ONE DOT LEADER, encoded twice
    ] {
        for target in [
            format!("/api/v4/projects/group%2F{alike}{alike}%2Frepo"),
            format!("/api/v4/projects/5/repository/files/a%2F{alike}{alike}%2Fb/raw"),
            format!("/api/v4/projects/5/repository/branches/x{alike}y"),
        ] {
            let d = list.check("GET", &target).unwrap_err();
            assert!(
                d.reason.starts_with("a look-alike of a dot or slash"),
                "{target}: {}",
                d.reason
            );
        }
    }
    // Other Unicode in a segment is left to the rules.
    assert!(list
        .check(
            "GET",
            "/api/v4/projects/5/repository/files/caf%C3%A9.md/raw"
        )
        .is_ok());
}
