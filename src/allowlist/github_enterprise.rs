//! GitHub Enterprise Server allowlist.
//!
//! Sources: the original agent's GitHub Enterprise table (REFERENCE.md §1), completed
//! from the GitHub REST API reference (apps, repositories, branches, commits, commit
//! statuses, checks, pulls, issue comments, deployments, environments, contents) and
//! GitHub's smart-HTTP clone URLs.
//!
//! REST paths are accepted with or without the `/api/v3` prefix (the base endpoint may be
//! the host or the API root). GraphQL is `POST /api/graphql` (or `/graphql`); its body is
//! not inspected, so it has no project and the project regex cannot restrict it — the
//! original agent allows it too, and GitHub Apps authenticate through it.
//!
//! Archives come two ways: through the API (`/repos/{o}/{r}/tarball|zipball/{ref}`, which
//! redirects to codeload) and from codeload itself. A codeload path (`/{o}/{r}/legacy.tar.gz/{ref}`,
//! `legacy.zip`, `tar.gz`, `zip`) is marked `codeload`, so the agent can send it to the
//! `codeload.<host>` subdomain when the instance uses subdomain isolation; the same paths
//! under `/_codeload/` or `/codeload/` are the path-based form of instances without
//! subdomain isolation, served from the main host, and are not marked.
//!
//! Project: `owner/repo`.

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];
const GET_PATCH: &[Method] = &[Method::Get, Method::Patch];

pub(super) const RULES: &[Rule] = &[
    Rule::get("/[api/v3]/user", "Get authenticated user", "/api/v3/user"),
    Rule::get(
        "/[api/v3]/users/{user}",
        "Get user",
        "/api/v3/users/octocat",
    ),
    Rule::get("/[api/v3]/app", "Get app", "/api/v3/app"),
    Rule::get(
        "/[api/v3]/app/installations",
        "List app installations",
        "/app/installations",
    ),
    Rule::post(
        "/[api/v3]/app/installations/{n}/access_tokens",
        "Create installation access token",
        "/api/v3/app/installations/12/access_tokens",
    ),
    Rule::get(
        "/[api/v3]/user/repos",
        "List repositories of the authenticated user",
        "/api/v3/user/repos?per_page=100",
    )
    .listing(),
    Rule::get(
        "/[api/v3]/orgs/{org}/repos",
        "List repositories of an organisation",
        "/api/v3/orgs/acme/repos?per_page=100",
    )
    .listing(),
    Rule::get(
        "/[api/v3]/installation/repositories",
        "List repositories of the app installation",
        "/api/v3/installation/repositories?per_page=100",
    )
    .listing(),
    Rule::get(
        "/[api/v3]/repositories/{project}",
        "Get repository by id",
        "/api/v3/repositories/1296269",
    ),
    Rule::post("/api/graphql", "GraphQL query", "/api/graphql"),
    Rule::post("/graphql", "GraphQL query (API base endpoint)", "/graphql"),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}",
        "Get repository",
        "/api/v3/repos/acme/infra",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/installation",
        "Get repository installation",
        "/api/v3/repos/acme/infra/installation",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/branches",
        "List branches",
        "/api/v3/repos/acme/infra/branches?per_page=100",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/branches/{branch}",
        "Get branch",
        "/api/v3/repos/acme/infra/branches/main",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits",
        "List commits",
        "/repos/acme/infra/commits?sha=main",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}",
        "Get commit",
        "/api/v3/repos/acme/infra/commits/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/pulls",
        "List pull requests of a commit",
        "/api/v3/repos/acme/infra/commits/0123abc/pulls",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/status",
        "Get combined commit status",
        "/api/v3/repos/acme/infra/commits/0123abc/status",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/statuses",
        "List commit statuses",
        "/api/v3/repos/acme/infra/commits/0123abc/statuses",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/commits/{ref}/check-runs",
        "List check runs of a commit",
        "/api/v3/repos/acme/infra/commits/0123abc/check-runs",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/compare/{basehead}",
        "Compare commits",
        "/api/v3/repos/acme/infra/compare/main...feature",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/tarball|zipball/{*ref}",
        "Download repository archive",
        "/api/v3/repos/acme/infra/tarball/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/contents/{*path}",
        "Get file contents",
        "/api/v3/repos/acme/infra/contents/stacks/prod/main.tf?ref=main",
    ),
    Rule::post(
        "/[api/v3]/repos/{project}/{project}/statuses/{sha}",
        "Create commit status",
        "/api/v3/repos/acme/infra/statuses/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::post(
        "/[api/v3]/repos/{project}/{project}/check-runs",
        "Create check run",
        "/api/v3/repos/acme/infra/check-runs",
    ),
    Rule::new(
        GET_PATCH,
        "/[api/v3]/repos/{project}/{project}/check-runs/{n}",
        "Get or update check run",
        "/api/v3/repos/acme/infra/check-runs/4",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls",
        "List pull requests",
        "/api/v3/repos/acme/infra/pulls?state=open&head=acme:feature",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}",
        "Get pull request",
        "/api/v3/repos/acme/infra/pulls/8",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/files",
        "List pull request files",
        "/api/v3/repos/acme/infra/pulls/8/files",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/pulls/{n}/commits",
        "List pull request commits",
        "/api/v3/repos/acme/infra/pulls/8/commits",
    ),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/issues/{n}/comments",
        "List or add pull request comments",
        "/api/v3/repos/acme/infra/issues/8/comments",
    ),
    Rule::new(
        GET_PATCH,
        "/[api/v3]/repos/{project}/{project}/issues/comments/{n}",
        "Get or update pull request comment",
        "/api/v3/repos/acme/infra/issues/comments/1234",
    ),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/deployments",
        "List or create deployments",
        "/api/v3/repos/acme/infra/deployments",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/deployments/{n}",
        "Get deployment",
        "/api/v3/repos/acme/infra/deployments/55",
    ),
    Rule::delete(
        "/[api/v3]/repos/{project}/{project}/deployments/{n}",
        "Delete deployment",
        "/api/v3/repos/acme/infra/deployments/55",
    ),
    Rule::new(
        GET_POST,
        "/[api/v3]/repos/{project}/{project}/deployments/{n}/statuses",
        "List or create deployment statuses",
        "/api/v3/repos/acme/infra/deployments/55/statuses",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/environments",
        "List environments",
        "/api/v3/repos/acme/infra/environments",
    ),
    Rule::get(
        "/[api/v3]/repos/{project}/{project}/environments/{name}",
        "Get environment",
        "/api/v3/repos/acme/infra/environments/production",
    ),
    Rule::get(
        "/{project}/{project}.git/info/refs",
        "Git fetch: advertise refs",
        "/acme/infra.git/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack"),
    Rule::post(
        "/{project}/{project}.git/git-upload-pack",
        "Git fetch: upload pack",
        "/acme/infra.git/git-upload-pack",
    ),
    Rule::get(
        "/_codeload|codeload/{project}/{project}/legacy.tar.gz|legacy.zip|tar.gz|zip/{*ref}",
        "Download repository archive (path-based codeload)",
        "/_codeload/acme/infra/legacy.tar.gz/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/{project}/{project}/legacy.tar.gz|legacy.zip|tar.gz|zip/{*ref}",
        "Download repository archive (codeload)",
        "/acme/infra/legacy.zip/refs/heads/main",
    )
    .codeload(),
];
