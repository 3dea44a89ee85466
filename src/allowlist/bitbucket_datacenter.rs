//! Bitbucket Data Center (formerly Server) allowlist.
//!
//! Sources: the original agent's Bitbucket table (REFERENCE.md §1), completed from the
//! Bitbucket Data Center REST API reference (core `rest/api`, `rest/insights` for code
//! insights reports, commit-level builds and deployments) and Bitbucket's smart-HTTP
//! clone URLs (`/scm/{KEY}/{slug}.git`). Both `1.0` and `latest` API versions are
//! accepted: they are aliases on the server.
//!
//! Project: `KEY/slug`, the project key and the repository slug. Personal repositories
//! live under the key `~username` (`/projects/~jdoe/repos/tools`, `/scm/~jdoe/tools.git`)
//! and their project is `~jdoe/tools`: the regex must name them explicitly (an anchored
//! `PLATFORM/.*` does not let any personal repository through). The other spelling of
//! personal repositories, `/users/{user}/repos/{slug}`, is not allowed.
//!
//! Not allowed on purpose: the global `POST /rest/build-status/1.0/commits/{sha}`, which
//! is not scoped to a repository and so cannot be checked against the project regex;
//! Bitbucket 7.4+ has the repository-scoped `…/commits/{sha}/builds` used here.

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];
const GET_PUT: &[Method] = &[Method::Get, Method::Put];

pub(super) const RULES: &[Rule] = &[
    Rule::get(
        "/rest/api/1.0|latest/application-properties",
        "Get server version",
        "/rest/api/1.0/application-properties",
    ),
    Rule::get("/rest/api/1.0|latest/users/{user}", "Get user", "/rest/api/1.0/users/spacelift"),
    Rule::get("/rest/api/1.0|latest/repos", "List repositories", "/rest/api/1.0/repos?limit=100")
        .listing(),
    Rule::get(
        "/rest/api/1.0|latest/projects/{key}/repos",
        "List repositories of a project",
        "/rest/api/1.0/projects/PLAT/repos?limit=100",
    )
    .listing(),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}",
        "Get repository",
        "/rest/api/1.0/projects/PLAT/repos/infra",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/branches",
        "List branches",
        "/rest/api/1.0/projects/PLAT/repos/infra/branches?filterText=main",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/branches/default",
        "Get default branch (legacy)",
        "/rest/api/1.0/projects/PLAT/repos/infra/branches/default",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/default-branch",
        "Get default branch",
        "/rest/api/latest/projects/PLAT/repos/infra/default-branch",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/commits",
        "List commits",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits?until=main",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/commits/{ref}",
        "Get commit",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/commits/{ref}/pull-requests",
        "List pull requests of a commit",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits/0123abc/pull-requests",
    ),
    Rule::new(
        GET_POST,
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/commits/{sha}/builds",
        "Get or set build status",
        "/rest/api/latest/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/builds",
    ),
    Rule::new(
        GET_POST,
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/commits/{sha}/deployments",
        "Get or create deployment",
        "/rest/api/latest/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/deployments",
    ),
    Rule::new(
        GET_PUT,
        "/rest/insights/1.0|latest/projects/{project}/repos/{project}/commits/{sha}/reports/{key}",
        "Get or create code insights report",
        "/rest/insights/1.0/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/reports/spacelift",
    ),
    Rule::post(
        "/rest/insights/1.0|latest/projects/{project}/repos/{project}/commits/{sha}/reports/{key}/annotations",
        "Add code insights annotations",
        "/rest/insights/1.0/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/reports/spacelift/annotations",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/compare/changes",
        "Compare changes",
        "/rest/api/1.0/projects/PLAT/repos/infra/compare/changes?from=a1b2c3d&to=d4e5f6a",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/compare/commits",
        "Compare commits",
        "/rest/api/1.0/projects/PLAT/repos/infra/compare/commits?from=a1b2c3d&to=d4e5f6a",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/archive",
        "Download repository archive",
        "/rest/api/1.0/projects/PLAT/repos/infra/archive?at=main&format=tar.gz",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/raw/{*path}",
        "Get raw file (REST)",
        "/rest/api/1.0/projects/PLAT/repos/infra/raw/.spacelift/config.yml?at=main",
    ),
    Rule::get(
        "/projects/{project}/repos/{project}/raw/{*path}",
        "Get raw file",
        "/projects/PLAT/repos/infra/raw/.spacelift/config.yml?at=main",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests",
        "List pull requests",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests?state=OPEN&at=refs/heads/feature",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}",
        "Get pull request",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}/diff",
        "Get pull request diff",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/diff",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}/changes",
        "Get pull request changes",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/changes",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}/merge",
        "Check pull request mergeability",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/merge",
    ),
    Rule::get(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}/activities",
        "List pull request activities",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/activities",
    ),
    Rule::post(
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}/comments",
        "Comment on pull request",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/comments",
    ),
    Rule::new(
        GET_PUT,
        "/rest/api/1.0|latest/projects/{project}/repos/{project}/pull-requests/{n}/comments/{n}",
        "Get or update pull request comment",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/comments/17",
    ),
    Rule::get(
        "/scm/{project}/{project}.git/info/refs",
        "Git fetch: advertise refs",
        "/scm/PLAT/infra.git/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack"),
    Rule::post(
        "/scm/{project}/{project}.git/git-upload-pack",
        "Git fetch: upload pack",
        "/scm/~jdoe/tools.git/git-upload-pack",
    ),
];
