//! Which project an id names: GitLab's numeric project ids, GitHub's repository ids and
//! Azure DevOps repository GUIDs, so that `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS='group/.*'`
//! also allows `/api/v4/projects/5/…` when project 5 is `group/repo`.
//!
//! Client libraries switch to ids on their own (python-gitlab uses the numeric id after
//! `projects.get('group/repo')`), so a regex over paths alone would push operators to `.*`.
//! When the allowlist cannot judge a project because the path gives an id
//! ([`Decision::ById`](crate::allowlist::Decision)), the agent looks the id up in a bounded
//! cache and, on a miss, asks the VCS **once**, before anything of the request is forwarded:
//! `GET` of the project's own endpoint (GitLab `/api/v4/projects/{id}`, GitHub
//! `/repositories/{id}`, Azure DevOps `/{org}/{project}/_apis/git/repositories/{repo}`, where
//! the repository or its project is a GUID) with
//! the caller's own credential headers, so the lookup sees exactly what the caller may see.
//! The answer's path (`path_with_namespace`, `full_name`, or organisation + `project.name` +
//! `name`) is then held to the project regex like any path. A lookup that fails (an error
//! status, an unreachable VCS, an answer without the fields or for another id) denies the
//! request with the reason.
//!
//! # What is learned, and from where
//!
//! Only from answers the agent reads whole anyway: its own lookups, and the project listings
//! it filters while projects are restricted (see [`super::listing`]). Ordinary answers are
//! never parsed: they stream through in bounded pieces, and real servers compress them for
//! clients that accept gzip (every Python client does), so learning from them would mean
//! buffering and decompressing answers the agent otherwise never looks at. One lookup per
//! id per [`TTL`](super::ids::TTL) costs less.
//!
//! The cache ([`super::ids`]) holds at most [`CAPACITY`](super::ids::CAPACITY) ids; an entry
//! lives [`TTL`](super::ids::TTL), so a project renamed or
//! transferred to another group is judged by its new path at most that long afterwards.
//! When the cache is full, expired entries go first, then the oldest.

use crate::agent::forward;
use crate::agent::shared::Shared;
use crate::allowlist::{IdKind, ProjectId, Vendor};
use serde_json::Value;
use std::io::Read;

/// Largest lookup answer read (a project's JSON is a few KiB).
const LOOKUP_LIMIT: u64 = 1 << 20;
/// Request headers that carry the caller's credentials, sent along with a lookup.
const CREDENTIALS: [&str; 4] = ["authorization", "private-token", "job-token", "cookie"];

/// Why an id could not be held to the project pattern: the reason the request is denied with.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    /// A pull request whose repository is outside the project its path names.
    #[error("{id} is in {path}, not in the project {within} the path names")]
    Outside {
        /// The id as the request gave it.
        id: String,
        path: String,
        within: String,
    },
    #[error("project id {id} could not be resolved: {why}")]
    Unresolved { id: String, why: Lookup },
}

/// What went wrong with the lookup of an id.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Lookup {
    /// The upstream failure's message.
    #[error("{0}")]
    Upstream(String),
    #[error("the VCS answered {0} to the lookup")]
    Status(u16),
    #[error("the lookup answer is over 1 MiB")]
    TooLarge,
    #[error("the lookup answer is not JSON")]
    NotJson,
    #[error("the lookup answer names no project")]
    NoProject,
    #[error("the lookup answer is about another id")]
    OtherId,
}

/// The path a project's JSON (a lookup answer or a listing entry) describes, for `vendor`;
/// `org` is the Azure DevOps organisation the answer came from.
pub(crate) fn path_of(vendor: Vendor, org: &str, entry: &Value) -> Option<String> {
    let text = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match vendor {
        Vendor::Gitlab => text(entry, "path_with_namespace"),
        Vendor::GithubEnterprise => text(entry, "full_name"),
        Vendor::BitbucketDatacenter => {
            let key = text(entry.get("project")?, "key")?;
            Some(format!("{key}/{}", text(entry, "slug")?))
        }
        Vendor::AzureDevops => {
            let project = text(entry.get("project")?, "name")?;
            let org = org.to_ascii_lowercase();
            Some(format!("{org}/{project}/{}", text(entry, "name")?))
        }
    }
}

/// The id of a project's JSON as a path would spell it (a number, or a GUID in lower case).
pub(crate) fn id_of(entry: &Value) -> Option<String> {
    match entry.get("id")? {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.to_ascii_lowercase()),
        _ => None,
    }
}

/// Whether a lookup answer describes `id`: its own id, or for `{project GUID}/{name}` (Azure
/// DevOps) its project's id; for a pull request, its id and its repository's project's id.
fn is_about(entry: &Value, id: &ProjectId) -> bool {
    if let IdKind::PullRequest { .. } = id.kind {
        let Some((project, number)) = id.id.split_once('/') else {
            return false;
        };
        let same_number = entry
            .get("pullRequestId")
            .and_then(Value::as_u64)
            .is_some_and(|n| n.to_string() == number);
        return same_number && is_about_project(entry.get("repository"), project);
    }
    let id = id.id.as_str();
    match id.split_once('/') {
        Some((project, _)) => is_about_project(Some(entry), project),
        None => id_of(entry).as_deref() == Some(id),
    }
}

/// Whether a repository's JSON is in the project with the GUID `project`.
fn is_about_project(repository: Option<&Value>, project: &str) -> bool {
    repository
        .and_then(|r| r.get("project"))
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .is_some_and(|p| p.eq_ignore_ascii_case(project))
}

/// The path a lookup answer for `id` describes: a project's JSON, or a pull request's
/// repository.
fn path_for(vendor: Vendor, id: &ProjectId, entry: &Value) -> Option<String> {
    match id.kind {
        IdKind::Project => path_of(vendor, &id.scope, entry),
        IdKind::PullRequest { .. } => path_of(vendor, &id.scope, entry.get("repository")?),
    }
}

/// A pull request's repository must sit in the project the path names (by name, or by the
/// GUID the `artifactId` gives): a policy evaluation under one project must not read
/// another's.
fn within(id: &ProjectId, path: &str) -> Result<(), ResolveError> {
    let IdKind::PullRequest { within } = &id.kind else {
        return Ok(());
    };
    let project = path.split('/').nth(1).unwrap_or_default();
    let guid = id.id.split('/').next().unwrap_or_default();
    if project.eq_ignore_ascii_case(within) || guid.eq_ignore_ascii_case(within) {
        return Ok(());
    }
    Err(ResolveError::Outside {
        id: id.to_string(),
        path: path.to_string(),
        within: within.clone(),
    })
}

/// The path `id` names: from the cache, or else from one lookup to the VCS with the caller's
/// credential headers. `Err` is the reason to deny with.
pub(crate) fn resolve(
    shared: &Shared,
    id: &ProjectId,
    caller: &[(impl AsRef<str>, impl AsRef<str>)],
) -> Result<String, ResolveError> {
    if let Some(path) = shared.ids.get(&id.scope, &cache_key(id)) {
        within(id, &path)?;
        return Ok(path);
    }
    let failed = |why: Lookup| ResolveError::Unresolved {
        id: id.to_string(),
        why,
    };
    let mut headers: Vec<(&str, &str)> = caller
        .iter()
        .map(|(name, value)| (name.as_ref(), value.as_ref()))
        .filter(|(name, _)| CREDENTIALS.iter().any(|c| name.eq_ignore_ascii_case(c)))
        .collect();
    headers.push(("Accept", "application/json"));
    let url = shared.config.target.url_for(&id.lookup);
    let authority = &shared.config.target.authority;
    let none = forward::Payload::None;
    let response = forward::send(&shared.http, "GET", url, &headers, none, authority)
        .map_err(|e| failed(Lookup::Upstream(e.message)))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(failed(Lookup::Status(status)));
    }
    let mut text = Vec::new();
    response
        .into_body()
        .take(LOOKUP_LIMIT + 1)
        .read_to_end(&mut text)
        .map_err(|e| {
            failed(Lookup::Upstream(
                forward::classify_read(&e, authority).message,
            ))
        })?;
    if text.len() as u64 > LOOKUP_LIMIT {
        return Err(failed(Lookup::TooLarge));
    }
    let entry: Value = serde_json::from_slice(&text).map_err(|_| failed(Lookup::NotJson))?;
    let path =
        path_for(shared.allowlist.vendor(), id, &entry).ok_or_else(|| failed(Lookup::NoProject))?;
    if !is_about(&entry, id) {
        return Err(failed(Lookup::OtherId));
    }
    log::debug!("project id {id} is {path} (looked up)");
    shared.ids.learn(&id.scope, &cache_key(id), &path);
    within(id, &path)?;
    Ok(path)
}

/// The cache key of an id: pull requests apart from repositories.
fn cache_key(id: &ProjectId) -> String {
    match id.kind {
        IdKind::Project => id.id.clone(),
        IdKind::PullRequest { .. } => format!("pull request {}", id.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_per_vendor() {
        let gitlab = json!({"id": 5, "path_with_namespace": "group/repo"});
        assert_eq!(
            path_of(Vendor::Gitlab, "", &gitlab).as_deref(),
            Some("group/repo")
        );
        assert_eq!(id_of(&gitlab).as_deref(), Some("5"));
        let github = json!({"id": 7, "full_name": "acme/infra"});
        assert_eq!(
            path_of(Vendor::GithubEnterprise, "", &github).as_deref(),
            Some("acme/infra")
        );
        let bitbucket = json!({"slug": "infra", "project": {"key": "PLAT"}});
        assert_eq!(
            path_of(Vendor::BitbucketDatacenter, "", &bitbucket).as_deref(),
            Some("PLAT/infra")
        );
        let azure = json!({"id": "AB-CD", "name": "infra", "project": {"name": "platform"}});
        assert_eq!(
            path_of(Vendor::AzureDevops, "acme", &azure).as_deref(),
            Some("acme/platform/infra")
        );
        assert_eq!(id_of(&azure).as_deref(), Some("ab-cd"));
        assert_eq!(path_of(Vendor::Gitlab, "", &json!({"id": 5})), None);
        assert_eq!(
            path_of(Vendor::AzureDevops, "a", &json!({"name": "x"})),
            None
        );
    }

    fn pull_request(within: &str) -> ProjectId {
        ProjectId {
            id: "5e0c-guid/21".into(),
            scope: "acme".into(),
            lookup: "/acme/5e0c-guid/_apis/git/pullRequests/21?api-version=5.0".into(),
            kind: IdKind::PullRequest {
                within: within.into(),
            },
        }
    }

    #[test]
    fn a_pull_request_resolves_to_its_repository_within_the_path_project() {
        let answer = json!({"pullRequestId": 21, "repository": {
            "id": "AB", "name": "infra", "project": {"id": "5E0C-GUID", "name": "platform"}}});
        let id = pull_request("Platform");
        assert!(is_about(&answer, &id));
        let path = path_for(Vendor::AzureDevops, &id, &answer).unwrap();
        assert_eq!(path, "acme/platform/infra");
        assert_eq!(within(&id, &path), Ok(()));
        assert_eq!(within(&pull_request("5e0c-GUID"), &path), Ok(()));
        // Under another project's path, the evaluation is refused.
        assert!(within(&pull_request("other"), &path).is_err());
        // An answer about another pull request, or another project's, is no answer.
        let other = json!({"pullRequestId": 22, "repository": answer["repository"]});
        assert!(!is_about(&other, &id));
        let moved = json!({"pullRequestId": 21, "repository": {
            "name": "infra", "project": {"id": "FFFF", "name": "platform"}}});
        assert!(!is_about(&moved, &id));
        // Pull requests and repositories never share a cache entry.
        assert_ne!(cache_key(&id), id.id);
    }

    #[test]
    fn azure_paths_are_stored_with_the_organisation_in_lower_case() {
        let azure = json!({"id": "AB", "name": "infra", "project": {"name": "platform"}});
        assert_eq!(
            path_of(Vendor::AzureDevops, "ACME", &azure).as_deref(),
            Some("acme/platform/infra")
        );
    }
}
