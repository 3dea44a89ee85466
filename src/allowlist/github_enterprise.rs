//! GitHub Enterprise Server allowlist.
//!
//! Sources: the original agent's GitHub Enterprise table, completed
//! from the GitHub REST API reference (apps, repositories, branches, commits, commit
//! statuses, checks, pulls, issue comments, deployments, environments, contents) and
//! GitHub's smart-HTTP clone URLs.
//!
//! REST paths are accepted with or without the `/api/v3` prefix (the base endpoint may be
//! the host or the API root). GraphQL is `POST /api/graphql` (or `/graphql`); its body is
//! read whole and inspected before it is forwarded ([`super::graphql`]).
//!
//! Refs: `branches/{branch…}`, `compare/{base}...{head}`, `git/ref/{ref…}` and
//! `git/matching-refs/{ref…}` take the raw rest of the path (GitHub reads a slash there as
//! part of the ref); `commits/{ref}`, `git/trees/{ref}` and `tarball/{ref}` take one
//! segment in which `%2F` separates the ref's pieces. A head in another repository
//! (`compare/main...other:feature`, a fork) cannot be checked against the project regex
//! and is denied while projects are restricted.
//!
//! Archives come two ways: through the API (`/repos/{o}/{r}/tarball|zipball/{ref}`, which
//! redirects to codeload) and from codeload itself. A codeload path (`/{o}/{r}/legacy.tar.gz/{ref}`,
//! `legacy.zip`, `tar.gz`, `zip`) is marked `codeload`, so the agent can send it to the
//! `codeload.<host>` subdomain when the instance uses subdomain isolation; the same paths
//! under `/_codeload/` or `/codeload/` are the path-based form of instances without
//! subdomain isolation, served from the main host, and are not marked.
//!
//! Project: `owner/repo`.
//!
//! Each rule links the GHES REST reference (`docs.github.com/en/enterprise-server@latest/rest`)
//! it follows; the OpenAPI description (github/rest-api-description `ghes-3.22`) was not
//! checked entry by entry. The original agent's own test vectors for this table are in
//! `field_tests.rs`, and pass.

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];
const GET_PATCH: &[Method] = &[Method::Get, Method::Patch];
const GET_PUT: &[Method] = &[Method::Get, Method::Put];

pub(super) const RULES: &[Rule] = &[
    Rule::get("/[api/v3]/user", "Get authenticated user", "/api/v3/user")
    .source("https://docs.github.com/en/enterprise-server@latest/rest/users/users"),
    Rule::get(
        "/[api/v3]/users/{user}",
        "Get user",
        "/api/v3/users/octocat",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/users/users"),
    Rule::get("/[api/v3]/app", "Get app", "/api/v3/app")
    .source("https://docs.github.com/en/enterprise-server@latest/rest/apps/apps"),
    Rule::get(
        "/[api/v3]/app/installations",
        "List app installations",
        "/app/installations",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/apps/apps"),
    Rule::post(
        "/[api/v3]/app/installations/{n}/access_tokens",
        "Create installation access token",
        "/api/v3/app/installations/12/access_tokens",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/apps/apps#create-an-installation-access-token-for-an-app"),
    Rule::get(
        "/[api/v3]/user/repos",
        "List repositories of the authenticated user",
        "/api/v3/user/repos?per_page=100",
    )
    .listing()
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/repos#list-repositories-for-the-authenticated-user"),
    Rule::get(
        "/[api/v3]/orgs/{org}/repos",
        "List repositories of an organisation",
        "/api/v3/orgs/acme/repos?per_page=100",
    )
    .listing()
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/repos#list-organization-repositories"),
    Rule::get(
        "/[api/v3]/installation/repositories",
        "List repositories of the app installation",
        "/api/v3/installation/repositories?per_page=100",
    )
    .listing()
    .source("https://docs.github.com/en/enterprise-server@latest/rest/apps/installations#list-repositories-accessible-to-the-app-installation"),
    Rule::get(
        "/[api/v3]/repositories/{project}",
        "Get repository by id",
        "/api/v3/repositories/1296269",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/repos#get-a-repository (PyGithub get_repo(id) uses /repositories/{id})"),
    Rule::post("/api/graphql", "GraphQL", "/api/graphql").graphql()
    .source("https://docs.github.com/en/enterprise-server@latest/graphql"),
    Rule::post("/graphql", "GraphQL (API base endpoint)", "/graphql").graphql()
    .source("https://docs.github.com/en/enterprise-server@latest/graphql"),
    Rule::get("/[api/v3]/orgs/{org}", "Get organisation", "/api/v3/orgs/acme")
    .source("https://docs.github.com/en/enterprise-server@latest/rest/orgs/orgs#get-an-organization (PyGithub get_organization)"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}",
        "Get repository",
        "/api/v3/repos/acme/infra",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/repos#get-a-repository"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/installation",
        "Get repository installation",
        "/api/v3/repos/acme/infra/installation",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/branches",
        "List branches",
        "/api/v3/repos/acme/infra/branches?per_page=100",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/branches/branches"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/branches/{*branch}",
        "Get branch",
        "/api/v3/repos/acme/infra/branches/feature/x",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/branches/branches"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/tags",
        "List tags",
        "/api/v3/repos/acme/infra/tags?per_page=100",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/repos#list-repository-tags"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/git/trees/{ref}",
        "Get tree",
        "/api/v3/repos/acme/infra/git/trees/0123456789abcdef0123456789abcdef01234567?recursive=1",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/git/trees"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/git/ref/{*ref}",
        "Get reference",
        "/api/v3/repos/acme/infra/git/ref/heads/feature/x",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/git/refs"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/git/matching-refs/{*ref}",
        "List matching references",
        "/api/v3/repos/acme/infra/git/matching-refs/heads/feature",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/git/refs"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/git/matching-refs/{*ref}/",
        "List matching references (prefix ending in /)",
        "/api/v3/repos/acme/infra/git/matching-refs/heads/",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/git/refs#list-matching-references"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits",
        "List commits",
        "/repos/acme/infra/commits?sha=main",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/commits"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/pulls",
        "List pull requests of a commit",
        "/api/v3/repos/acme/infra/commits/0123abc/pulls",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/commits#list-pull-requests-associated-with-a-commit"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/status",
        "Get combined commit status",
        "/api/v3/repos/acme/infra/commits/0123abc/status",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/statuses"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/statuses",
        "List commit statuses",
        "/api/v3/repos/acme/infra/commits/0123abc/statuses",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/statuses"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/check-runs",
        "List check runs of a commit",
        "/api/v3/repos/acme/infra/commits/0123abc/check-runs",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/checks/runs"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/check-suites",
        "List check suites of a commit",
        "/api/v3/repos/acme/infra/commits/0123abc/check-suites",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/checks/suites#list-check-suites-for-a-git-reference"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{*ref}",
        "Get commit (or a read below it)",
        "/api/v3/repos/acme/infra/commits/feature/x",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/commits#get-a-commit (the ref may hold raw slashes, as go-github sends it; every route below commits/ that answers GET is a read of the repository)"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/check-suites/{n}",
        "Get check suite",
        "/api/v3/repos/acme/infra/check-suites/5",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/checks/suites#get-a-check-suite"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/compare/{*basehead}",
        "Compare commits",
        "/api/v3/repos/acme/infra/compare/main...feature/x",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/commits#compare-two-commits"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/tarball|zipball/{*ref}",
        "Download repository archive",
        "/api/v3/repos/acme/infra/tarball/feature%2Fx",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/contents#download-a-repository-archive-tar"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/contents/{*path}",
        "Get file contents",
        "/api/v3/repos/acme/infra/contents/stacks/prod/main.tf?ref=main",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/contents#get-repository-content"),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/statuses/{commit}",
        "List or create commit statuses",
        "/api/v3/repos/acme/infra/statuses/0123456789abcdef0123456789abcdef01234567",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/commits/statuses"),
    Rule::post(
        "/[api/v3]/repos/{project}/{project}/check-runs",
        "Create check run",
        "/api/v3/repos/acme/infra/check-runs",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/checks/runs"),
    Rule::new(
        GET_PATCH,
        "/[api/v3]/repos/{project}/{project}/check-runs/{n}",
        "Get or update check run",
        "/api/v3/repos/acme/infra/check-runs/4",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/checks/runs"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls",
        "List pull requests",
        "/api/v3/repos/acme/infra/pulls?state=open&head=acme:feature",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/pulls"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}",
        "Get pull request",
        "/api/v3/repos/acme/infra/pulls/8",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/pulls"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/files",
        "List pull request files",
        "/api/v3/repos/acme/infra/pulls/8/files",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/pulls"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/commits",
        "List pull request commits",
        "/api/v3/repos/acme/infra/pulls/8/commits",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/pulls"),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/comments",
        "List or create pull request review comments",
        "/api/v3/repos/acme/infra/pulls/8/comments",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/comments"),
    Rule::post(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/comments/{n}/replies",
        "Reply to pull request review comment",
        "/api/v3/repos/acme/infra/pulls/8/comments/77/replies",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/comments#create-a-reply-for-a-review-comment"),
    Rule::new(
        GET_PATCH,
        "/[api/v3]/repos/{project}/{project}/pulls/comments/{n}",
        "Get or update pull request review comment",
        "/api/v3/repos/acme/infra/pulls/comments/77",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/comments"),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/reviews",
        "List or create pull request reviews",
        "/api/v3/repos/acme/infra/pulls/8/reviews",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/pulls/reviews"),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/issues/{n}/comments",
        "List or add pull request comments",
        "/api/v3/repos/acme/infra/issues/8/comments",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/issues/comments"),
    Rule::new(
        GET_PATCH,
        "/[api/v3]/repos/{project}/{project}/issues/comments/{n}",
        "Get or update pull request comment",
        "/api/v3/repos/acme/infra/issues/comments/1234",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/issues/comments"),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/deployments",
        "List or create deployments",
        "/api/v3/repos/acme/infra/deployments",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/deployments/deployments"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/deployments/{n}",
        "Get deployment",
        "/api/v3/repos/acme/infra/deployments/55",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/deployments/deployments"),
    Rule::delete(
        "/[api/v3]/repos/{project}/{project}/deployments/{n}",
        "Delete deployment",
        "/api/v3/repos/acme/infra/deployments/55",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/deployments/deployments"),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/deployments/{n}/statuses",
        "List or create deployment statuses",
        "/api/v3/repos/acme/infra/deployments/55/statuses",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/deployments/statuses"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/environments",
        "List environments",
        "/api/v3/repos/acme/infra/environments",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/deployments/environments"),
    Rule::new(
        GET_PUT,
        "/[api/v3]/repos/{project}/{project}/environments/{name}",
        "Get, create or update environment",
        "/api/v3/repos/acme/infra/environments/production",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/deployments/environments"),
    Rule::get(
        "/{project}/{project}.git/info/refs",
        "Git fetch: advertise refs",
        "/acme/infra.git/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post(
        "/{project}/{project}.git/git-upload-pack",
        "Git fetch: upload pack",
        "/acme/infra.git/git-upload-pack",
    )
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::get(
        "/{project}/{project}/info/refs",
        "Git fetch: advertise refs (URL without .git)",
        "/acme/infra/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post(
        "/{project}/{project}/git-upload-pack",
        "Git fetch: upload pack (URL without .git)",
        "/acme/infra/git-upload-pack",
    )
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::get(
        "/_codeload|codeload/{project}/{project}/legacy.tar.gz|legacy.zip|tar.gz|zip/{*ref}",
        "Download repository archive (path-based codeload)",
        "/_codeload/acme/infra/legacy.tar.gz/0123456789abcdef0123456789abcdef01234567",
    )
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/contents#download-a-repository-archive-tar (redirect target on codeload)"),
    Rule::get(
        "/{project}/{project}/legacy.tar.gz|legacy.zip|tar.gz|zip/{*ref}",
        "Download repository archive (codeload)",
        "/acme/infra/legacy.zip/refs/heads/main",
    )
    .codeload()
    .source("https://docs.github.com/en/enterprise-server@latest/rest/repos/contents#download-a-repository-archive-tar (redirect target on codeload)"),
];
