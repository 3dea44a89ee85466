//! Which webhook events the agent relays, per vendor, and which project a payload names.
//!
//! The tables hold the events a CI/CD platform starts work on: pushes and tags, merge and
//! pull requests with their reviews and comments, checks, and the vendor's ping. Every other
//! event is refused. Each entry carries the description the access line prints, like the
//! request allowlist's rules.
//!
//! Projects are spelled as the request allowlist spells them, so one
//! `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS` regex governs both: GitLab
//! `project.path_with_namespace`, GitHub `repository.full_name`, Bitbucket `KEY/slug` from
//! `repository` (or a pull request's `toRef.repository`), Azure DevOps `org/project/repo`
//! from `resource.repository` (or `resource.pullRequest.repository`), the organisation read
//! from the repository's `remoteUrl` the way the request allowlist reads it from a path.

use crate::allowlist::{Allowlist, Vendor};
use serde_json::Value;

/// One event the agent relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRule {
    /// The event's name as the vendor sends it (header value, or Azure's `eventType`).
    pub name: &'static str,
    pub description: &'static str,
    /// A ping names no repository: relayed without a project (it carries no repository data).
    pub ping: bool,
}

const fn event(name: &'static str, description: &'static str) -> EventRule {
    EventRule {
        name,
        description,
        ping: false,
    }
}

const fn ping(name: &'static str, description: &'static str) -> EventRule {
    EventRule {
        name,
        description,
        ping: true,
    }
}

const GITLAB: &[EventRule] = &[
    event("Push Hook", "push to a branch"),
    event("Tag Push Hook", "tag pushed or deleted"),
    event(
        "Merge Request Hook",
        "merge request opened, updated, merged or closed",
    ),
    event("Note Hook", "comment on a commit or merge request"),
    event("Pipeline Hook", "pipeline status changed"),
];

const GITHUB: &[EventRule] = &[
    ping("ping", "webhook ping"),
    event("push", "push to a branch or tag"),
    event("create", "branch or tag created"),
    event("delete", "branch or tag deleted"),
    event(
        "pull_request",
        "pull request opened, updated, merged or closed",
    ),
    event("pull_request_review", "pull request review"),
    event("pull_request_review_comment", "pull request review comment"),
    event(
        "pull_request_review_thread",
        "pull request review thread resolved or reopened",
    ),
    event("issue_comment", "comment on a pull request or issue"),
    event("check_run", "check run"),
    event("check_suite", "check suite"),
];

const BITBUCKET: &[EventRule] = &[
    ping("diagnostics:ping", "webhook test connection"),
    event("repo:refs_changed", "push of branches or tags"),
    event("pr:opened", "pull request opened"),
    event("pr:from_ref_updated", "pull request source branch updated"),
    event("pr:to_ref_updated", "pull request target branch updated"),
    event("pr:modified", "pull request modified"),
    event("pr:merged", "pull request merged"),
    event("pr:declined", "pull request declined"),
    event("pr:deleted", "pull request deleted"),
    event("pr:reviewer:approved", "pull request approved"),
    event("pr:reviewer:unapproved", "pull request approval withdrawn"),
    event("pr:reviewer:needs_work", "pull request needs work"),
    event("pr:comment:added", "pull request comment added"),
    event("pr:comment:edited", "pull request comment edited"),
];

const AZURE: &[EventRule] = &[
    event("git.push", "push to a branch or tag"),
    event("git.pullrequest.created", "pull request created"),
    event("git.pullrequest.updated", "pull request updated"),
    event("git.pullrequest.merged", "pull request merge attempted"),
    event(
        "ms.vss-code.git-pullrequest-comment-event",
        "comment on a pull request",
    ),
];

/// The events `vendor`'s webhooks may relay.
pub fn rules(vendor: Vendor) -> &'static [EventRule] {
    match vendor {
        Vendor::Gitlab => GITLAB,
        Vendor::GithubEnterprise => GITHUB,
        Vendor::BitbucketDatacenter => BITBUCKET,
        Vendor::AzureDevops => AZURE,
    }
}

/// The header naming the event; `None` for Azure DevOps, whose service hooks name it in the
/// body's `eventType`.
pub fn event_header(vendor: Vendor) -> Option<&'static str> {
    match vendor {
        Vendor::Gitlab => Some("X-Gitlab-Event"),
        Vendor::GithubEnterprise => Some("X-GitHub-Event"),
        Vendor::BitbucketDatacenter => Some("X-Event-Key"),
        Vendor::AzureDevops => None,
    }
}

/// The rule for `name`, exactly as the vendor spells it.
pub fn rule(vendor: Vendor, name: &str) -> Option<&'static EventRule> {
    rules(vendor).iter().find(|r| r.name == name)
}

/// The project the payload names, spelled like the request allowlist's projects;
/// `base_path` is the path of the agent's base endpoint (Azure DevOps Server's `/tfs`).
pub fn project_of(
    vendor: Vendor,
    body: &Value,
    allowlist: &Allowlist,
    base_path: &str,
) -> Option<String> {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match vendor {
        Vendor::Gitlab => text(body, "/project/path_with_namespace"),
        Vendor::GithubEnterprise => text(body, "/repository/full_name"),
        Vendor::BitbucketDatacenter => {
            let repository = body
                .get("repository")
                .or_else(|| body.pointer("/pullRequest/toRef/repository"))?;
            let key = text(repository, "/project/key")?;
            let slug = text(repository, "/slug")?;
            Some(format!("{key}/{slug}"))
        }
        Vendor::AzureDevops => {
            let repository = body
                .pointer("/resource/repository")
                .or_else(|| body.pointer("/resource/pullRequest/repository"))?;
            let project = text(repository, "/project/name")?;
            let name = text(repository, "/name")?;
            let remote = text(repository, "/remoteUrl")?;
            let path = remote.parse::<ureq::http::Uri>().ok()?.path().to_string();
            let base = base_path.trim_end_matches('/');
            let relative = match path.get(..base.len()) {
                Some(head) if !base.is_empty() && head.eq_ignore_ascii_case(base) => {
                    &path[base.len()..]
                }
                _ => path.as_str(),
            };
            let org = allowlist.organisation(relative);
            (!org.is_empty()).then(|| format!("{org}/{project}/{name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(vendor: Vendor, base_path: &str) -> Allowlist {
        Allowlist::for_base(vendor, None, "vcs.internal", base_path)
    }

    #[test]
    fn every_vendor_names_its_event_and_its_table_has_no_duplicates() {
        for vendor in Vendor::ALL {
            let table = rules(vendor);
            assert!(!table.is_empty());
            for (i, r) in table.iter().enumerate() {
                assert!(table[..i].iter().all(|o| o.name != r.name), "{}", r.name);
                assert!(!r.description.is_empty());
            }
            assert_eq!(
                event_header(vendor).is_none(),
                vendor == Vendor::AzureDevops
            );
        }
        assert!(rule(Vendor::Gitlab, "Push Hook").is_some());
        assert!(
            rule(Vendor::Gitlab, "push hook").is_none(),
            "exact spelling"
        );
        assert!(rule(Vendor::Gitlab, "Wiki Page Hook").is_none());
        assert!(rule(Vendor::GithubEnterprise, "repository").is_none());
        assert!(rule(Vendor::GithubEnterprise, "ping").is_some_and(|r| r.ping));
        assert!(rule(Vendor::BitbucketDatacenter, "repo:refs_changed").is_some());
        assert!(rule(Vendor::AzureDevops, "git.push").is_some());
        assert!(rule(Vendor::AzureDevops, "build.complete").is_none());
    }

    #[test]
    fn projects_are_read_where_each_vendor_puts_them() {
        let gitlab = json!({"project": {"path_with_namespace": "group/sub/repo"}});
        let project = |v, body: &Value| project_of(v, body, &open(v, "/"), "/");
        assert_eq!(
            project(Vendor::Gitlab, &gitlab).as_deref(),
            Some("group/sub/repo")
        );
        let github = json!({"repository": {"full_name": "octo/hello"}});
        assert_eq!(
            project(Vendor::GithubEnterprise, &github).as_deref(),
            Some("octo/hello")
        );
        let push = json!({"repository": {"slug": "web", "project": {"key": "PLAT"}}});
        let pr = json!({"pullRequest": {"toRef": {"repository": {"slug": "web", "project": {"key": "~jdoe"}}}}});
        assert_eq!(
            project(Vendor::BitbucketDatacenter, &push).as_deref(),
            Some("PLAT/web")
        );
        assert_eq!(
            project(Vendor::BitbucketDatacenter, &pr).as_deref(),
            Some("~jdoe/web")
        );
        let azure = json!({"resource": {"repository": {"name": "api", "project": {"name": "Fiber"},
            "remoteUrl": "https://dev.azure.com/fabrikam/Fiber/_git/api"}}});
        assert_eq!(
            project(Vendor::AzureDevops, &azure).as_deref(),
            Some("fabrikam/Fiber/api")
        );
        let server = json!({"resource": {"pullRequest": {"repository": {"name": "api", "project": {"name": "Fiber"},
            "remoteUrl": "https://tfs.corp/tfs/DefaultCollection/Fiber/_git/api"}}}});
        let tfs = project_of(
            Vendor::AzureDevops,
            &server,
            &open(Vendor::AzureDevops, "/tfs"),
            "/tfs",
        );
        assert_eq!(tfs.as_deref(), Some("defaultcollection/Fiber/api"));
        for (vendor, body) in [
            (
                Vendor::Gitlab,
                json!({"project": {"path_with_namespace": 7}}),
            ),
            (
                Vendor::GithubEnterprise,
                json!({"organization": {"login": "octo"}}),
            ),
            (
                Vendor::BitbucketDatacenter,
                json!({"repository": {"slug": "web"}}),
            ),
            (Vendor::AzureDevops, json!({"resource": {}})),
            (Vendor::Gitlab, json!([1, 2])),
        ] {
            assert_eq!(project(vendor, &body), None, "{body}");
        }
    }
}
