//! GitLab (self-managed) allowlist.
//!
//! Sources: the original agent's GitLab table (REFERENCE.md §1), completed from the
//! GitLab REST API v4 documentation (projects, branches, commits, repositories,
//! repository files, commit statuses, environments, deployments, merge requests,
//! notes) and GitLab's smart-HTTP git endpoints.
//!
//! Project: in the API, GitLab's `:id` segment, either the URL-encoded full path
//! (`group%2Fsub%2Frepo`, decoded to `group/sub/repo`) or a numeric id, which the
//! project regex sees as the number string (`42`): operators who restrict projects and
//! whose SaaS addresses projects by id must list the ids too. In git paths the project is
//! every segment before `.git` (`/group/sub/repo.git/…` → `group/sub/repo`).
//!
//! GitLab is the one vendor that needs encoded slashes: in the project id and in the
//! files API, which takes the file path as one segment (`dir%2Ffile.yml`); without the
//! latter a file outside the repository root could not be read. Branch names with a
//! slash (`feature%2Fx`) are not accepted in `branches/{branch}` or `commits/{ref}`:
//! use the commit sha there.

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];

pub(super) const RULES: &[Rule] = &[
    Rule::get("/api/v4/", "Get API root (rate limit headers)", "/api/v4/"),
    Rule::get("/api/v4", "Get API root", "/api/v4"),
    Rule::get("/api/v4/version", "Get GitLab version", "/api/v4/version"),
    Rule::get("/api/v4/user", "Get current user", "/api/v4/user"),
    Rule::get("/api/v4/projects", "List projects", "/api/v4/projects?membership=true&per_page=100")
        .listing(),
    Rule::get("/api/v4/projects/{encoded_project}", "Get project", "/api/v4/projects/group%2Fsub%2Frepo"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/branches",
        "List branches",
        "/api/v4/projects/group%2Frepo/repository/branches?per_page=100",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/branches/{branch}",
        "Get branch",
        "/api/v4/projects/group%2Frepo/repository/branches/main",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits",
        "List commits",
        "/api/v4/projects/group%2Frepo/repository/commits?ref_name=main",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}",
        "Get commit",
        "/api/v4/projects/42/repository/commits/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/merge_requests",
        "List merge requests of a commit",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/merge_requests",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/statuses",
        "List commit statuses",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/statuses",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/diff",
        "Get commit diff",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/diff",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/compare",
        "Compare branches, tags or commits",
        "/api/v4/projects/group%2Frepo/repository/compare?from=a1b2c3d&to=d4e5f6a",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/tree",
        "List repository tree",
        "/api/v4/projects/group%2Frepo/repository/tree?path=modules&ref=main",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/archive|archive.zip|archive.tar|archive.tar.gz|archive.tar.bz2|archive.tbz|archive.tbz2|archive.tb2|archive.bz2",
        "Download repository archive",
        "/api/v4/projects/group%2Frepo/repository/archive.tar.gz?sha=0123abc",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/files/{encoded_path}/raw",
        "Get raw file",
        "/api/v4/projects/group%2Frepo/repository/files/.spacelift%2Fconfig.yml/raw?ref=main",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/files/{encoded_path}",
        "Get file metadata and content",
        "/api/v4/projects/group%2Frepo/repository/files/main.tf?ref=main",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/blobs/{sha}/raw",
        "Get raw blob",
        "/api/v4/projects/group%2Frepo/repository/blobs/0123456789abcdef0123456789abcdef01234567/raw",
    ),
    Rule::post(
        "/api/v4/projects/{encoded_project}/statuses/{sha}",
        "Set commit status",
        "/api/v4/projects/group%2Frepo/statuses/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/environments",
        "List environments",
        "/api/v4/projects/group%2Frepo/environments?name=production",
    ),
    Rule::post(
        "/api/v4/projects/{encoded_project}/environments",
        "Create environment",
        "/api/v4/projects/group%2Frepo/environments",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/environments/{n}",
        "Get environment",
        "/api/v4/projects/group%2Frepo/environments/7",
    ),
    Rule::delete(
        "/api/v4/projects/{encoded_project}/environments/{n}",
        "Delete environment",
        "/api/v4/projects/group%2Frepo/environments/7",
    ),
    Rule::post(
        "/api/v4/projects/{encoded_project}/environments/{n}/stop",
        "Stop environment",
        "/api/v4/projects/group%2Frepo/environments/7/stop",
    ),
    Rule::new(
        GET_POST,
        "/api/v4/projects/{encoded_project}/deployments",
        "List or create deployments",
        "/api/v4/projects/group%2Frepo/deployments",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/deployments/{n}",
        "Get deployment",
        "/api/v4/projects/group%2Frepo/deployments/12",
    ),
    Rule::put(
        "/api/v4/projects/{encoded_project}/deployments/{n}",
        "Update deployment",
        "/api/v4/projects/group%2Frepo/deployments/12",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests",
        "List merge requests",
        "/api/v4/projects/group%2Frepo/merge_requests?state=opened&source_branch=feature",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}",
        "Get merge request",
        "/api/v4/projects/group%2Frepo/merge_requests/5",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/approvals",
        "Get merge request approvals",
        "/api/v4/projects/group%2Frepo/merge_requests/5/approvals",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/diffs",
        "List merge request diffs",
        "/api/v4/projects/group%2Frepo/merge_requests/5/diffs",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/commits",
        "List merge request commits",
        "/api/v4/projects/group%2Frepo/merge_requests/5/commits",
    ),
    Rule::new(
        GET_POST,
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/notes",
        "List or add merge request comments",
        "/api/v4/projects/group%2Frepo/merge_requests/5/notes",
    ),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/notes/{n}",
        "Get merge request comment",
        "/api/v4/projects/group%2Frepo/merge_requests/5/notes/99",
    ),
    Rule::put(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/notes/{n}",
        "Update merge request comment",
        "/api/v4/projects/group%2Frepo/merge_requests/5/notes/99",
    ),
    Rule::get(
        "/{*project}.git/info/refs",
        "Git fetch: advertise refs",
        "/group/sub/repo.git/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack"),
    Rule::post("/{*project}.git/git-upload-pack", "Git fetch: upload pack", "/group/sub/repo.git/git-upload-pack"),
];
