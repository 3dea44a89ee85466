//! What the allowlist answers when it allows a request: what the agent still has to do, and
//! project ids it must resolve first.

use super::denied::Denied;
use super::matcher::BodyCheck;
use std::fmt;

/// A request the allowlist lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Human words for the rule that matched, e.g. "Download repository archive".
    pub description: &'static str,
    /// The project the request is about, if the rule has one (decoded, `/`-joined).
    pub project: Option<String>,
    /// GitHub Enterprise archive that is served from the `codeload.<host>` subdomain
    /// when the instance uses subdomain isolation.
    pub codeload: bool,
    /// Projects named by query parameters (`from_project_id=99` → `99`), each already
    /// checked against the project regex like [`project`](Self::project).
    pub(crate) other_projects: Vec<String>,
    /// Projects named by a query parameter as an id the regex does not match (GitLab
    /// `from_project_id=99`): allowed only once each resolves, like a path's id
    /// ([`Decision::ById`]), to a path the regex allows.
    pub(crate) param_ids: Vec<(&'static str, ProjectId)>,
    /// What the agent must do with the body before forwarding it.
    pub(crate) body: BodyCheck,
    /// The answer lists projects across the VCS, so the agent filters it while projects are
    /// restricted.
    pub(crate) listing: bool,
}

/// A project named by an id (GitLab's numeric project id, GitHub's repository id, an Azure
/// DevOps repository GUID), which the project regex cannot judge until the agent knows the
/// path the id stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectId {
    /// The id as the path spells it (`5`, a GUID in lower case; for an Azure DevOps project
    /// given by its GUID, `{project GUID}/{repository name}`).
    pub(crate) id: String,
    /// Where the id is unique: empty, or the Azure DevOps organisation (as the path spells
    /// it, compared without regard to case).
    pub(crate) scope: String,
    /// The `GET` target whose answer describes this project.
    pub(crate) lookup: String,
    /// What the id is of, and so how its lookup answer names the project.
    pub(crate) kind: IdKind,
}

/// What a [`ProjectId`] names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A project (a repository) itself.
    Project,
    /// An Azure DevOps pull request, `{project GUID}/{pull request id}`, named by a policy
    /// evaluation's `artifactId`: its project is the repository the pull request belongs to,
    /// which must sit in the project `within` (the path's project, as the path spells it).
    PullRequest { within: String },
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            IdKind::Project => f.write_str(&self.id),
            IdKind::PullRequest { .. } => write!(f, "pull-request:{}", self.id),
        }
    }
}

/// What [`Allowlist::decide`] concludes about an allowed route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed as it stands.
    Allowed(Allowed),
    /// Allowed only if the project `ProjectId` names passes [`Allowlist::allows_project`].
    ById(Allowed, ProjectId),
}

impl Decision {
    /// An allowed request, or the denial of a project id nobody resolved.
    pub fn settle(self) -> Result<Allowed, Denied> {
        match self {
            Decision::Allowed(allowed) if !allowed.param_ids.is_empty() => {
                let (param, id) = &allowed.param_ids[0];
                Err(Denied::project(format!(
                    "project {id} (from {param}) is not allowed"
                )))
            }
            Decision::Allowed(allowed) => Ok(allowed),
            Decision::ById(_, id) => Err(Denied::project(format!("project {id} is not allowed"))),
        }
    }
}
