//! Bitbucket Data Center (formerly Server) allowlist.
//!
//! Sources: the original agent's Bitbucket table, completed from the
//! Bitbucket Data Center REST API reference (core `rest/api`, `rest/insights` for code
//! insights reports, commit-level builds and deployments) and Bitbucket's smart-HTTP
//! clone URLs (`/scm/{KEY}/{slug}.git`). Both `1.0` and `latest` API versions are
//! accepted: they are aliases on the server.
//!
//! Project: `KEY/slug`, the project key and the repository slug. Personal repositories
//! live under the key `~username` (`/projects/~jdoe/repos/tools`, `/scm/~jdoe/tools.git`)
//! and their project is `~jdoe/tools`: the regex must name them explicitly (an anchored
//! `PLATFORM/.*` does not let any personal repository through). The other spelling of
//! personal repositories, `/users/{user}/repos/{slug}` (atlassian-python-api's), names
//! the same project `~jdoe/tools`: every repository rule takes both (`{project_key}`).
//!
//! The project-level reads `GET /projects/{KEY}` and `GET /projects/{KEY}/repos` name no
//! repository and have no project; the listing is filtered to the allowed repositories
//! while projects are restricted (`crate::agent::listing`).
//!
//! `compare/changes` and `compare/commits` take `fromRepo`, another repository (a fork) to
//! compare from: its value is checked like the path's project, so only a `KEY/slug` the
//! regex allows passes while projects are restricted.
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
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-system-maintenance/#api-api-latest-application-properties-get"),
    Rule::get("/rest/api/1.0|latest/users/{user}", "Get user", "/rest/api/1.0/users/spacelift")
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-security/#api-api-latest-users-userslug-get"),
    Rule::get("/rest/api/1.0|latest/repos", "List repositories", "/rest/api/1.0/repos?limit=100")
    .listing()
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get("/rest/api/1.0|latest/projects/{key}", "Get project", "/rest/api/1.0/projects/PLAT")
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-project/"),
    Rule::get(
        "/rest/api/1.0|latest/projects/{key}/repos",
        "List repositories of a project",
        "/rest/api/1.0/projects/PLAT/repos?limit=100",
    )
    .listing()
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-project/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}",
        "Get repository",
        "/rest/api/1.0/projects/PLAT/repos/infra",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/branches",
        "List branches",
        "/rest/api/1.0/projects/PLAT/repos/infra/branches?filterText=main",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/tags",
        "List tags",
        "/rest/api/1.0/users/jdoe/repos/tools/tags?filterText=v1",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/files",
        "List files",
        "/rest/api/1.0/projects/PLAT/repos/infra/files?at=main&limit=1000",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/files/{*path}",
        "List files in a directory",
        "/rest/api/1.0/projects/PLAT/repos/infra/files/stacks/prod?at=main",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/branches/default",
        "Get default branch (legacy)",
        "/rest/api/1.0/projects/PLAT/repos/infra/branches/default",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/default-branch",
        "Get default branch",
        "/rest/api/latest/projects/PLAT/repos/infra/default-branch",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/commits",
        "List commits",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits?until=main",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/commits/{ref}",
        "Get commit",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits/refs%2Fheads%2Fmain",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/ (commitId may be a ref, refs%2Fheads%2Fmain)"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/commits/{ref}/changes",
        "List changes of a commit",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/changes",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/#api-api-latest-projects-projectkey-repos-repositoryslug-commits-commitid-changes-get"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/commits/{commit}/pull-requests",
        "List pull requests of a commit",
        "/rest/api/1.0/projects/PLAT/repos/infra/commits/0123abc/pull-requests",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::new(
        GET_POST,
        "/rest/api/1.0|latest/{project_key}/repos/{project}/commits/{sha}/builds",
        "Get or set build status",
        "/rest/api/latest/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/builds",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-builds-and-deployments/"),
    Rule::new(
        GET_POST,
        "/rest/api/1.0|latest/{project_key}/repos/{project}/commits/{sha}/deployments",
        "Get or create deployment",
        "/rest/api/latest/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/deployments",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-builds-and-deployments/"),
    Rule::new(
        GET_PUT,
        "/rest/insights/1.0|latest/{project_key}/repos/{project}/commits/{sha}/reports/{key}",
        "Get or create code insights report",
        "/rest/insights/1.0/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/reports/spacelift",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-code-insights/"),
    Rule::post(
        "/rest/insights/1.0|latest/{project_key}/repos/{project}/commits/{sha}/reports/{key}/annotations",
        "Add code insights annotations",
        "/rest/insights/1.0/projects/PLAT/repos/infra/commits/0123456789abcdef0123456789abcdef01234567/reports/spacelift/annotations",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-code-insights/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/compare/changes",
        "Compare changes",
        "/rest/api/1.0/projects/PLAT/repos/infra/compare/changes?from=a1b2c3d&to=d4e5f6a",
    )
    .project_params(&["fromRepo"])
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/#api-api-latest-projects-projectkey-repos-repositoryslug-compare-changes-get"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/compare/commits",
        "Compare commits",
        "/rest/api/1.0/projects/PLAT/repos/infra/compare/commits?from=a1b2c3d&to=d4e5f6a",
    )
    .project_params(&["fromRepo"])
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/#api-api-latest-projects-projectkey-repos-repositoryslug-compare-changes-get"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/compare/diff/{*path}",
        "Compare a file",
        "/rest/api/1.0/projects/PLAT/repos/infra/compare/diff/stacks/main.tf?from=a1b2c3d&to=d4e5f6a",
    )
    .project_params(&["fromRepo"])
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/#api-api-latest-projects-projectkey-repos-repositoryslug-compare-diff-path-get"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/archive",
        "Download repository archive",
        "/rest/api/1.0/projects/PLAT/repos/infra/archive?at=main&format=tar.gz",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/#api-api-latest-projects-projectkey-repos-repositoryslug-archive-get"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/raw/{*path}",
        "Get raw file (REST)",
        "/rest/api/1.0/projects/PLAT/repos/infra/raw/.spacelift/config.yml?at=main",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/{project_key}/repos/{project}/raw/{*path}",
        "Get raw file",
        "/projects/PLAT/repos/infra/raw/.spacelift/config.yml?at=main",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-repository/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests",
        "List pull requests",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests?state=OPEN&at=refs/heads/feature",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}",
        "Get pull request",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/diff",
        "Get pull request diff",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/diff",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/changes",
        "Get pull request changes",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/changes",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/commits",
        "List pull request commits",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/commits",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/merge",
        "Check pull request mergeability",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/merge",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::get(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/activities",
        "List pull request activities",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/activities",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/"),
    Rule::post(
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/comments",
        "Comment on pull request",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/comments",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/#api-api-latest-projects-projectkey-repos-repositoryslug-pull-requests-pullrequestid-comments-post"),
    Rule::new(
        GET_PUT,
        "/rest/api/1.0|latest/{project_key}/repos/{project}/pull-requests/{n}/comments/{n}",
        "Get or update pull request comment",
        "/rest/api/1.0/projects/PLAT/repos/infra/pull-requests/3/comments/17",
    )
    .source("https://developer.atlassian.com/server/bitbucket/rest/v905/api-group-pull-requests/#api-api-latest-projects-projectkey-repos-repositoryslug-pull-requests-pullrequestid-comments-post"),
    Rule::get(
        "/scm/{project}/{project}.git/info/refs",
        "Git fetch: advertise refs",
        "/scm/PLAT/infra.git/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post(
        "/scm/{project}/{project}.git/git-upload-pack",
        "Git fetch: upload pack",
        "/scm/~jdoe/tools.git/git-upload-pack",
    )
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::get(
        "/scm/{project}/{project}/info/refs",
        "Git fetch: advertise refs (URL without .git)",
        "/scm/PLAT/infra/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post(
        "/scm/{project}/{project}/git-upload-pack",
        "Git fetch: upload pack (URL without .git)",
        "/scm/PLAT/infra/git-upload-pack",
    )
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
];
