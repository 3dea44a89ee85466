//! Azure DevOps (Services and Server) allowlist.
//!
//! Sources: the original agent's Azure DevOps table (REFERENCE.md §1), completed from
//! the Azure DevOps REST API reference (Git: repositories, refs, stats, commits,
//! statuses, diffs, items, blobs, pull requests, pull request statuses and threads;
//! Policy: evaluations; Location: connection data and resource areas) and the
//! smart-HTTP clone URLs `/{org}/{project}/_git/{repo}`.
//!
//! The original lets every request that matches no rule through ("temporarily"); here an
//! unmatched request is denied like for every other vendor, and its `OPTIONS /{org}/_apis`
//! exception is dropped (`OPTIONS` is never allowed; the REST clients work without it
//! when the API version is given).
//!
//! Project: `org/project/repo`, where `repo` is the repository name or id exactly as it
//! appears in the path (a GUID when the SaaS addresses repositories by id: the regex must
//! then allow it). On Azure DevOps Server the collection plays the part of `org`. The
//! organisation- and project-level listings (repositories, policy evaluations, resource
//! areas, connection data) have no repository and hence no project: they are allowed
//! whatever the project regex.
//!
//! Archives: `…/items?path=/&$format=zip&download=true` (a query on the items rule).

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];

pub(super) const RULES: &[Rule] = &[
    Rule::get(
        "/{org}/_apis/connectionData",
        "Get connection data (authenticated user)",
        "/acme/_apis/connectionData",
    ),
    Rule::get("/{org}/_apis/ResourceAreas", "List resource areas", "/acme/_apis/ResourceAreas"),
    Rule::get(
        "/{org}/_apis/git/repositories",
        "List repositories of the organisation",
        "/acme/_apis/git/repositories?api-version=7.1",
    ).listing(),
    Rule::get(
        "/{org}/{proj}/_apis/git/repositories",
        "List repositories of a project",
        "/acme/platform/_apis/git/repositories?api-version=7.1",
    ).listing(),
    Rule::get(
        "/{org}/{proj}/_apis/policy/evaluations",
        "List policy evaluations",
        "/acme/platform/_apis/policy/evaluations?artifactId=vstfs:///CodeReview/CodeReviewId/1/2",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}",
        "Get repository",
        "/acme/platform/_apis/git/repositories/infra?api-version=7.1",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/refs",
        "List refs",
        "/acme/platform/_apis/git/repositories/infra/refs?filter=heads/",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/stats/branches",
        "Get branch statistics",
        "/acme/platform/_apis/git/repositories/infra/stats/branches?name=main",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/commits",
        "List commits",
        "/acme/platform/_apis/git/repositories/infra/commits?searchCriteria.itemVersion.version=main",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/commits/{ref}",
        "Get commit",
        "/acme/platform/_apis/git/repositories/infra/commits/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::new(
        GET_POST,
        "/{project}/{project}/_apis/git/repositories/{project}/commits/{ref}/statuses",
        "List or create commit statuses",
        "/acme/platform/_apis/git/repositories/infra/commits/0123456789abcdef0123456789abcdef01234567/statuses",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/diffs/commits",
        "Compare commits",
        "/acme/platform/_apis/git/repositories/infra/diffs/commits?baseVersion=main&targetVersion=feature",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/items",
        "Get item (file, folder or archive)",
        "/acme/platform/_apis/git/repositories/infra/items?path=/.spacelift/config.yml&versionDescriptor.version=main",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/blobs/{sha}",
        "Get blob",
        "/acme/platform/_apis/git/repositories/infra/blobs/0123456789abcdef0123456789abcdef01234567",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests",
        "List pull requests",
        "/acme/platform/_apis/git/repositories/infra/pullRequests?searchCriteria.status=active",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}",
        "Get pull request",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/labels",
        "List pull request labels",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/labels",
    ),
    Rule::new(
        GET_POST,
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/statuses",
        "List or create pull request statuses",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/statuses",
    ),
    Rule::new(
        GET_POST,
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads",
        "List or create pull request threads",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads",
    ),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads/{n}",
        "Get pull request thread",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads/3",
    ),
    Rule::post(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads/{n}/comments",
        "Reply to pull request thread",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads/3/comments",
    ),
    Rule::patch(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads/{n}/comments/{n}",
        "Update pull request comment",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads/3/comments/1",
    ),
    Rule::get(
        "/{project}/{project}/_git/{project}/info/refs",
        "Git fetch: advertise refs",
        "/acme/platform/_git/infra/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack"),
    Rule::post(
        "/{project}/{project}/_git/{project}/git-upload-pack",
        "Git fetch: upload pack",
        "/acme/platform/_git/infra/git-upload-pack",
    ),
];
