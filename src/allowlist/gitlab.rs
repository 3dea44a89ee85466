//! GitLab (self-managed) allowlist.
//!
//! Sources: the original agent's GitLab table, completed from the
//! GitLab REST API v4 documentation (projects, branches, commits, repositories,
//! repository files, commit statuses, environments, deployments, merge requests,
//! notes) and GitLab's smart-HTTP git endpoints.
//!
//! Project: in the API, GitLab's `:id` segment, either the URL-encoded full path
//! (`group%2Fsub%2Frepo`, decoded to `group/sub/repo`) or a numeric id (`42`), which the
//! agent resolves to the project's path when the regex does not match the number itself
//! (`crate::agent::projects`). In git paths the project is
//! every segment before `.git` (`/group/sub/repo.git/…` → `group/sub/repo`).
//!
//! GitLab needs encoded slashes: in the project id, in the files API, which takes the file
//! path as one segment (`dir%2Ffile.yml`; without it a file outside the repository root
//! could not be read), and in refs (`branches/feature%2Fx`, `commits/release%2F1.2`), the
//! way python-gitlab sends them.
//!
//! Parameters that name another project: `repository/compare?from_project_id=` (GitLab
//! compares against that project) is checked like the path's project.

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];
const GET_PUT: &[Method] = &[Method::Get, Method::Put];

pub(super) const RULES: &[Rule] = &[
    Rule::get("/api/v4/", "Get API root (rate limit headers)", "/api/v4/")
    .source("https://docs.gitlab.com/api/rest/"),
    Rule::get("/api/v4", "Get API root", "/api/v4")
    .source("https://docs.gitlab.com/api/rest/"),
    Rule::get("/api/v4/version", "Get GitLab version", "/api/v4/version")
    .source("https://docs.gitlab.com/api/version/"),
    Rule::get("/api/v4/user", "Get current user", "/api/v4/user")
    .source("https://docs.gitlab.com/api/users/#get-the-current-user"),
    Rule::get("/api/v4/projects", "List projects", "/api/v4/projects?membership=true&per_page=100")
    .listing()
    .source("https://docs.gitlab.com/api/projects/#list-all-projects"),
    Rule::get("/api/v4/projects/{encoded_project}", "Get project", "/api/v4/projects/group%2Fsub%2Frepo")
    .source("https://docs.gitlab.com/api/projects/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/branches",
        "List branches",
        "/api/v4/projects/group%2Frepo/repository/branches?per_page=100",
    )
    .source("https://docs.gitlab.com/api/branches/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/branches/{branch}",
        "Get branch",
        "/api/v4/projects/group%2Frepo/repository/branches/feature%2Fx",
    )
    .source("https://docs.gitlab.com/api/branches/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits",
        "List commits",
        "/api/v4/projects/group%2Frepo/repository/commits?ref_name=main",
    )
    .source("https://docs.gitlab.com/api/commits/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}",
        "Get commit",
        "/api/v4/projects/42/repository/commits/release%2F1.2",
    )
    .source("https://docs.gitlab.com/api/commits/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/merge_requests",
        "List merge requests of a commit",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/merge_requests",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/statuses",
        "List commit statuses",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/statuses",
    )
    .source("https://docs.gitlab.com/api/commits/#commit-status"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/refs",
        "List refs a commit is pushed to",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/refs?type=all",
    )
    .source("https://docs.gitlab.com/api/commits/#get-references-a-commit-is-pushed-to"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/commits/{ref}/diff",
        "Get commit diff",
        "/api/v4/projects/group%2Frepo/repository/commits/0123abc/diff",
    )
    .source("https://docs.gitlab.com/api/commits/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/compare",
        "Compare branches, tags or commits",
        "/api/v4/projects/group%2Frepo/repository/compare?from=a1b2c3d&to=d4e5f6a",
    )
    .project_params(&["from_project_id"])
    .source("https://docs.gitlab.com/api/repositories/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/tags",
        "List tags",
        "/api/v4/projects/group%2Frepo/repository/tags?search=v1",
    )
    .source("https://docs.gitlab.com/api/tags/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/tags/{tag}",
        "Get tag",
        "/api/v4/projects/group%2Frepo/repository/tags/release%2F1.2",
    )
    .source("https://docs.gitlab.com/api/tags/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/tree",
        "List repository tree",
        "/api/v4/projects/group%2Frepo/repository/tree?path=modules&ref=main",
    )
    .source("https://docs.gitlab.com/api/repositories/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/archive|archive.zip|archive.tar|archive.tar.gz|archive.tar.bz2|archive.tbz|archive.tbz2|archive.tb2|archive.bz2",
        "Download repository archive",
        "/api/v4/projects/group%2Frepo/repository/archive.tar.gz?sha=0123abc",
    )
    .source("https://docs.gitlab.com/api/repositories/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/files/{encoded_path}/raw",
        "Get raw file",
        "/api/v4/projects/group%2Frepo/repository/files/.spacelift%2Fconfig.yml/raw?ref=main",
    )
    .source("https://docs.gitlab.com/api/repository_files/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/files/{encoded_path}",
        "Get file metadata and content",
        "/api/v4/projects/group%2Frepo/repository/files/main.tf?ref=main",
    )
    .source("https://docs.gitlab.com/api/repository_files/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/blobs/{sha}/raw",
        "Get raw blob",
        "/api/v4/projects/group%2Frepo/repository/blobs/0123456789abcdef0123456789abcdef01234567/raw",
    )
    .source("https://docs.gitlab.com/api/repositories/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/repository/blobs/{sha}",
        "Get blob",
        "/api/v4/projects/group%2Frepo/repository/blobs/0123456789abcdef0123456789abcdef01234567",
    )
    .source("https://docs.gitlab.com/api/repositories/#get-a-blob-from-repository"),
    Rule::post(
        "/api/v4/projects/{encoded_project}/statuses/{sha}",
        "Set commit status",
        "/api/v4/projects/group%2Frepo/statuses/0123456789abcdef0123456789abcdef01234567",
    )
    .source("https://docs.gitlab.com/api/commits/#commit-status"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/environments",
        "List environments",
        "/api/v4/projects/group%2Frepo/environments?name=production",
    )
    .source("https://docs.gitlab.com/api/environments/"),
    Rule::post(
        "/api/v4/projects/{encoded_project}/environments",
        "Create environment",
        "/api/v4/projects/group%2Frepo/environments",
    )
    .source("https://docs.gitlab.com/api/environments/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/environments/{n}",
        "Get environment",
        "/api/v4/projects/group%2Frepo/environments/7",
    )
    .source("https://docs.gitlab.com/api/environments/"),
    Rule::put(
        "/api/v4/projects/{encoded_project}/environments/{n}",
        "Update environment",
        "/api/v4/projects/5/environments/8",
    )
    .source("https://docs.gitlab.com/api/environments/#update-an-existing-environment"),
    Rule::delete(
        "/api/v4/projects/{encoded_project}/environments/{n}",
        "Delete environment",
        "/api/v4/projects/group%2Frepo/environments/7",
    )
    .source("https://docs.gitlab.com/api/environments/"),
    Rule::post(
        "/api/v4/projects/{encoded_project}/environments/{n}/stop",
        "Stop environment",
        "/api/v4/projects/group%2Frepo/environments/7/stop",
    )
    .source("https://docs.gitlab.com/api/environments/"),
    Rule::new(
        GET_POST,
        "/api/v4/projects/{encoded_project}/deployments",
        "List or create deployments",
        "/api/v4/projects/group%2Frepo/deployments",
    )
    .source("https://docs.gitlab.com/api/deployments/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/deployments/{n}",
        "Get deployment",
        "/api/v4/projects/group%2Frepo/deployments/12",
    )
    .source("https://docs.gitlab.com/api/deployments/"),
    Rule::put(
        "/api/v4/projects/{encoded_project}/deployments/{n}",
        "Update deployment",
        "/api/v4/projects/group%2Frepo/deployments/12",
    )
    .source("https://docs.gitlab.com/api/deployments/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests",
        "List merge requests",
        "/api/v4/projects/group%2Frepo/merge_requests?state=opened&source_branch=feature",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}",
        "Get merge request",
        "/api/v4/projects/group%2Frepo/merge_requests/5",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/approvals",
        "Get merge request approvals",
        "/api/v4/projects/group%2Frepo/merge_requests/5/approvals",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/approval_state",
        "Get merge request approval state",
        "/api/v4/projects/group%2Frepo/merge_requests/5/approval_state",
    )
    .source("https://docs.gitlab.com/api/merge_request_approvals/#get-the-approval-state-of-merge-requests"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/diffs",
        "List merge request diffs",
        "/api/v4/projects/group%2Frepo/merge_requests/5/diffs",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/changes",
        "Get merge request changes",
        "/api/v4/projects/group%2Frepo/merge_requests/5/changes",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/versions",
        "List merge request diff versions",
        "/api/v4/projects/group%2Frepo/merge_requests/5/versions",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/versions/{n}",
        "Get merge request diff version",
        "/api/v4/projects/group%2Frepo/merge_requests/5/versions/3",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/commits",
        "List merge request commits",
        "/api/v4/projects/group%2Frepo/merge_requests/5/commits",
    )
    .source("https://docs.gitlab.com/api/merge_requests/"),
    Rule::new(
        GET_POST,
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/notes",
        "List or add merge request comments",
        "/api/v4/projects/group%2Frepo/merge_requests/5/notes",
    )
    .source("https://docs.gitlab.com/api/notes/#merge-requests"),
    Rule::get(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/notes/{n}",
        "Get merge request comment",
        "/api/v4/projects/group%2Frepo/merge_requests/5/notes/99",
    )
    .source("https://docs.gitlab.com/api/notes/#merge-requests"),
    Rule::put(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/notes/{n}",
        "Update merge request comment",
        "/api/v4/projects/group%2Frepo/merge_requests/5/notes/99",
    )
    .source("https://docs.gitlab.com/api/notes/#merge-requests"),
    Rule::new(
        GET_POST,
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/discussions",
        "List or start merge request discussions (line comments)",
        "/api/v4/projects/group%2Frepo/merge_requests/5/discussions",
    )
    .source("https://docs.gitlab.com/api/discussions/#merge-requests"),
    Rule::new(
        GET_PUT,
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/discussions/{discussion}",
        "Get or resolve merge request discussion",
        "/api/v4/projects/group%2Frepo/merge_requests/5/discussions/6a9c1750b37d513a43987b574953fceb50b03ce7",
    )
    .source("https://docs.gitlab.com/api/discussions/#merge-requests"),
    Rule::post(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/discussions/{discussion}/notes",
        "Reply to merge request discussion",
        "/api/v4/projects/group%2Frepo/merge_requests/5/discussions/6a9c1750b37d513a43987b574953fceb50b03ce7/notes",
    )
    .source("https://docs.gitlab.com/api/discussions/#add-note-to-existing-merge-request-thread"),
    Rule::put(
        "/api/v4/projects/{encoded_project}/merge_requests/{n}/discussions/{discussion}/notes/{n}",
        "Update merge request discussion note",
        "/api/v4/projects/group%2Frepo/merge_requests/5/discussions/6a9c1750b37d513a43987b574953fceb50b03ce7/notes/99",
    )
    .source("https://docs.gitlab.com/api/discussions/#modify-an-existing-merge-request-thread-note"),
    Rule::get(
        "/{*project}.git/info/refs",
        "Git fetch: advertise refs",
        "/group/sub/repo.git/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post("/{*project}.git/git-upload-pack", "Git fetch: upload pack", "/group/sub/repo.git/git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::get(
        "/{*project}/info/refs",
        "Git fetch: advertise refs (URL without .git)",
        "/group/sub/repo/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post(
        "/{*project}/git-upload-pack",
        "Git fetch: upload pack (URL without .git)",
        "/group/repo/git-upload-pack",
    )
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
];
