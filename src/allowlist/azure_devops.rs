//! Azure DevOps (Services and Server) allowlist.
//!
//! Sources: the original agent's Azure DevOps table, completed from
//! the Azure DevOps REST API reference (Git: repositories, refs, stats, commits,
//! statuses, diffs, items, blobs, pull requests, pull request statuses and threads;
//! Policy: evaluations; Location: connection data and resource areas) and the
//! smart-HTTP clone URLs `/{org}/{project}/_git/{repo}`.
//!
//! The original lets every request that matches no rule through ("temporarily"); here an
//! unmatched request is denied like for every other vendor. `OPTIONS` is allowed in exactly
//! one place, `OPTIONS /{org}/_apis`: the official SDK's first request discovers resource
//! locations that way, and without it the SDK cannot make a single call. Everywhere else
//! `OPTIONS` matches no rule. (The SDK reads resource areas with `GET …/_apis/ResourceAreas`.)
//!
//! `GET /{org}/{project}/_apis/git/pullRequests/{id}` addresses a pull request by its
//! project-wide id, without naming the repository: it cannot be checked against the
//! project regex and is denied while projects are restricted.
//!
//! Project: `org/project/repo`, where `repo` is the repository name or id exactly as it
//! appears in the path; while projects are restricted a repository GUID (or a project GUID)
//! is always resolved by the agent to the repository's project and name
//! (`crate::agent::projects`), never matched as text. On Azure DevOps Server the collection
//! plays the part of `org`, under `/tfs/{collection}/…` or `/{collection}/…`, or named by the
//! base endpoint itself (see `Frame` in the parent module). Literals are matched and the
//! project regex applied without regard to case, as the servers do. The organisation- and
//! project-level reads (repository listings, resource areas, connection data) have no
//! repository and hence no project: they are allowed whatever the project regex, and the
//! repository listings are filtered by the agent (`crate::agent::listing`). Policy
//! evaluations are project-wide: while projects are restricted their `artifactId` must name
//! a pull request, which the agent resolves to its repository and holds to the regex and to
//! the path's project.
//!
//! Archives: `…/items?path=/&$format=zip&download=true` (a query on the items rule).
//!
//! Checked against the published REST descriptions (MicrosoftDocs/vsts-rest-api-specs at
//! commit `adb28786`, May 2026): Git 7.1 (`specification/git/7.1/git.json`), Policy 7.1 and
//! Azure DevOps Server 7.1 (`specification/git/azure-devops-server-7.1/git-onprem.json`);
//! every rule under a project appears there with its methods. The organisation-level forms (a
//! repository by GUID without its project, the organisation's repository listing) follow the
//! SDK's route templates, in which the project is optional; resource discovery and
//! `ConnectionData` follow the SDK. The original agent's own test vectors for this table (also
//! under `/tfs`) are in `field_tests.rs`: all pass but its catch-all.

use super::matcher::{Method, Rule};

const GET_POST: &[Method] = &[Method::Get, Method::Post];
const GET_PATCH: &[Method] = &[Method::Get, Method::Patch];

pub(super) const RULES: &[Rule] = &[
    Rule::get(
        "/{org}/_apis/connectionData",
        "Get connection data (authenticated user)",
        "/acme/_apis/connectionData",
    )
    .source("Azure DevOps Location service (connectionData), used by the official SDK: https://github.com/microsoft/azure-devops-python-api"),
    Rule::new(
        &[Method::Options],
        "/{org}/_apis",
        "Discover resource locations (SDK)",
        "/acme/_apis",
    )
    .source("Resource-location discovery of the official SDK (OPTIONS {org}/_apis): https://github.com/microsoft/azure-devops-python-api"),
    Rule::get("/{org}/_apis/ResourceAreas", "List resource areas", "/acme/_apis/ResourceAreas")
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/core/resource-areas/list"),
    Rule::get(
        "/{org}/_apis/git/repositories",
        "List repositories of the organisation",
        "/acme/_apis/git/repositories?api-version=7.1",
    )
    .listing()
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/repositories/list"),
    Rule::get(
        "/{org}/{proj}/_apis/git/repositories",
        "List repositories of a project",
        "/acme/platform/_apis/git/repositories?api-version=7.1",
    )
    .listing()
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/repositories"),
    Rule::get(
        "/{org}/{proj}/_apis/policy/evaluations",
        "List policy evaluations",
        "/acme/platform/_apis/policy/evaluations?artifactId=vstfs:///CodeReview/CodeReviewId/5e0c5b2a-9a53-4a8e-9e0d-0d7b2c1e6f00/21",
    )
    .project_params(&["artifactId"])
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/policy/evaluations/list"),
    Rule::get(
        "/{org}/{proj}/_apis/git/pullRequests/{n}",
        "Get pull request by id (project-wide)",
        "/acme/platform/_apis/git/pullRequests/21",
    )
    .unscoped()
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-requests"),
    Rule::get(
        "/{project}/_apis/git/repositories/{project}",
        "Get repository by GUID (without its project)",
        "/acme/_apis/git/repositories/3411ebc1-d5aa-464f-9615-0b527bc66719",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/repositories/get-repository (project is optional)"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}",
        "Get repository",
        "/acme/platform/_apis/git/repositories/infra?api-version=7.1",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/repositories"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/refs",
        "List refs",
        "/acme/platform/_apis/git/repositories/infra/refs?filter=heads/",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/refs/list"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/stats/branches",
        "Get branch statistics",
        "/acme/platform/_apis/git/repositories/infra/stats/branches?name=main",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/stats/list"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/commits",
        "List commits",
        "/acme/platform/_apis/git/repositories/infra/commits?searchCriteria.itemVersion.version=main",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/commits"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/commits/{commit}",
        "Get commit",
        "/acme/platform/_apis/git/repositories/infra/commits/0123456789abcdef0123456789abcdef01234567",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/commits"),
    Rule::new(
        GET_POST,
        "/{project}/{project}/_apis/git/repositories/{project}/commits/{commit}/statuses",
        "List or create commit statuses",
        "/acme/platform/_apis/git/repositories/infra/commits/0123456789abcdef0123456789abcdef01234567/statuses",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/statuses"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/diffs/commits",
        "Compare commits",
        "/acme/platform/_apis/git/repositories/infra/diffs/commits?baseVersion=main&targetVersion=feature",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/diffs/get"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/items",
        "Get item (file, folder or archive)",
        "/acme/platform/_apis/git/repositories/infra/items?path=/.spacelift/config.yml&versionDescriptor.version=main",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/items/get"),
    Rule::post(
        "/{project}/{project}/_apis/git/repositories/{project}/itemsBatch",
        "Get items in a batch",
        "/acme/platform/_apis/git/repositories/infra/itemsBatch?api-version=7.1",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/items/get-items-batch"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/blobs/{sha}",
        "Get blob",
        "/acme/platform/_apis/git/repositories/infra/blobs/0123456789abcdef0123456789abcdef01234567",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/blobs/get-blob"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests",
        "List pull requests",
        "/acme/platform/_apis/git/repositories/infra/pullRequests?searchCriteria.status=active",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-requests"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}",
        "Get pull request",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-requests"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/labels",
        "List pull request labels",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/labels",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-labels/list"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/iterations",
        "List pull request iterations",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/iterations",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-iterations"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/iterations/{n}",
        "Get pull request iteration",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/iterations/2",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-iterations"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/iterations/{n}/changes",
        "List pull request iteration changes",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/iterations/2/changes",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-iteration-changes/get"),
    Rule::get(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/commits",
        "List pull request commits",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/commits",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-commits/get-pull-request-commits"),
    Rule::new(
        GET_POST,
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/statuses",
        "List or create pull request statuses",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/statuses",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-statuses"),
    Rule::new(
        GET_POST,
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads",
        "List or create pull request threads",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-threads"),
    Rule::new(
        GET_PATCH,
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads/{n}",
        "Get or update (resolve) pull request thread",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads/3",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-threads"),
    Rule::post(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads/{n}/comments",
        "Reply to pull request thread",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads/3/comments",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-threads"),
    Rule::patch(
        "/{project}/{project}/_apis/git/repositories/{project}/pullRequests/{n}/threads/{n}/comments/{n}",
        "Update pull request comment",
        "/acme/platform/_apis/git/repositories/infra/pullRequests/21/threads/3/comments/1",
    )
    .source("https://learn.microsoft.com/en-us/rest/api/azure/devops/git/pull-request-threads"),
    Rule::get(
        "/{project}/{project}/_git/{project}/info/refs",
        "Git fetch: advertise refs",
        "/acme/platform/_git/infra/info/refs?service=git-upload-pack",
    )
    .with_query("service=git-upload-pack")
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
    Rule::post(
        "/{project}/{project}/_git/{project}/git-upload-pack",
        "Git fetch: upload pack",
        "/acme/platform/_git/infra/git-upload-pack",
    )
    .source("Git HTTP protocol, smart clients: https://git-scm.com/docs/http-protocol"),
];
