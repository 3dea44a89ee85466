//! The allowlist itself: one vendor's rules compiled for one base path and project pattern,
//! and the checks every request goes through.

use super::denied::{DenialClass, Denied};
use super::matcher::{self, canonicalize, Canonical, Method, Rule};
use super::query;
use super::vendor::Vendor;
use super::verdict::{Allowed, Decision, IdKind, ProjectId};
use std::sync::Arc;

/// The allowlist of one vendor plus the optional project regex. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Allowlist {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    vendor: Vendor,
    rules: Vec<matcher::CompiledRule>,
    projects: Option<regex::Regex>,
    frame: Frame,
}

/// Where an Azure DevOps target names its organisation (on Azure DevOps Server, the
/// collection), given the base endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Frame {
    /// The base endpoint already names it (`https://host/tfs/DefaultCollection`,
    /// `https://dev.azure.com/acme`, `https://acme.visualstudio.com`): targets start at the
    /// project, and the rules read them as if it stood in front.
    org: Option<String>,
    /// A leading `tfs` segment is Azure DevOps Server's virtual directory
    /// (`/tfs/{collection}/…`), not an organisation: a server at the host's root.
    tfs: bool,
}

impl Frame {
    fn of(vendor: Vendor, host: &str, base_path: &str) -> Frame {
        if vendor != Vendor::AzureDevops {
            return Frame::default();
        }
        let host = host.to_ascii_lowercase();
        let last = base_path.rsplit('/').next().filter(|s| !s.is_empty());
        let org = match last {
            Some(last) if last.eq_ignore_ascii_case("tfs") => None,
            Some(last) => Some(last.to_string()),
            None => host
                .strip_suffix(".visualstudio.com")
                .filter(|org| !org.is_empty() && !org.contains('.'))
                .map(str::to_string),
        };
        let cloud = host == "dev.azure.com" || host.ends_with(".visualstudio.com");
        let tfs = org.is_none() && base_path.is_empty() && !cloud;
        Frame { org, tfs }
    }

    /// The target as the rules read it, and the target's own beginning up to and including
    /// the organisation segment the rules see (see [`Place`]).
    fn view(&self, target: &Canonical) -> (Canonical, String) {
        let segments = target.segments();
        let skip = usize::from(
            self.tfs && segments.len() > 2 && segments[0].raw.eq_ignore_ascii_case("tfs"),
        );
        let base = match &self.org {
            Some(_) => String::new(),
            None => segments[..(skip + 1).min(segments.len())]
                .iter()
                .map(|s| format!("/{}", s.raw))
                .collect(),
        };
        (target.reframed(skip, self.org.as_deref()), base)
    }
}

/// Methods denied whatever the table says.
const NEVER_ALLOWED: [&str; 2] = ["CONNECT", "TRACE"];

/// Headers that make Rails, ASP.NET (Azure DevOps) and other frameworks run the request as
/// another method: an allowed `POST` could become a `DELETE`.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers that make IIS URL Rewrite (Azure DevOps Server), Symfony and others route the
/// request to another path than the one the allowlist checked.
pub const PATH_OVERRIDE_HEADERS: [&str; 2] = ["x-original-url", "x-rewrite-url"];

impl Allowlist {
    /// The project pattern, when projects are restricted.
    pub(super) fn projects(&self) -> Option<&regex::Regex> {
        self.inner.projects.as_ref()
    }

    /// `projects: None` allows every project. For a VCS at the root of its host.
    pub fn new(vendor: Vendor, projects: Option<regex::Regex>) -> Allowlist {
        Allowlist::for_base(vendor, projects, "", "")
    }

    /// Like [`new`](Self::new), for the VCS at the base endpoint `host` + `base_path`
    /// (`""` or `/tfs/DefaultCollection`, no trailing slash). Only Azure DevOps looks at
    /// it: its organisation (collection) may be part of the base endpoint, and its paths and
    /// names are compared without regard to case, as its servers do.
    pub(crate) fn for_base(
        vendor: Vendor,
        projects: Option<regex::Regex>,
        host: &str,
        base_path: &str,
    ) -> Allowlist {
        let fold = vendor == Vendor::AzureDevops;
        let projects = projects.map(|re| match fold {
            true => regex::RegexBuilder::new(re.as_str())
                .case_insensitive(true)
                .build()
                .unwrap_or(re),
            false => re,
        });
        let mut rules = Vec::with_capacity(vendor.rules().len());
        for (index, rule) in vendor.rules().iter().enumerate() {
            match matcher::CompiledRule::compile(index, rule) {
                Ok(compiled) if fold => rules.push(compiled.folding_case()),
                Ok(compiled) => rules.push(compiled),
                // A broken row in a static table is a bug caught by the unit tests; if
                // one ever slips through, that rule simply allows nothing.
                Err(e) => log::error!(
                    target: "allowlist",
                    "allowlist rule {index} of {vendor} ({}) is invalid and disabled: {e}",
                    rule.description
                ),
            }
        }
        Allowlist {
            inner: Arc::new(Inner {
                vendor,
                rules,
                projects,
                frame: Frame::of(vendor, host, base_path),
            }),
        }
    }

    pub fn vendor(&self) -> Vendor {
        self.inner.vendor
    }

    /// The path and query part of [`decide`](Self::decide): a project given by an id that
    /// the project regex does not match is left for the caller to resolve
    /// ([`Decision::ById`]).
    fn decide_target(&self, method: &str, target: &str) -> Result<Decision, Denied> {
        let (canonical, base) = self.inner.frame.view(&self.precheck(method, target)?);
        let params = query::Params::parse(canonical.query());
        if params.any_named(query::METHOD_PARAM) {
            return Err(Denied::method(
                "method override parameter _method is not allowed",
            ));
        }
        for rule in &self.inner.rules {
            if let Some(m) = rule.matches(method, &canonical) {
                if m.foreign_ref && self.restricted() {
                    return Err(Denied::path(
                        "a ref in another repository (owner:branch) cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
                    ));
                }
                let project = m.project.clone();
                let place = Place {
                    target: &canonical,
                    base: &base,
                };
                return self
                    .verdict(rule.rule, m.project, &params, place)
                    .map_err(|denied| denied.about(rule.rule.description, project));
            }
        }
        Err(self.no_match_reason(method, &canonical))
    }

    /// Decides on one request, the allowlist's one entry point. `target` is path plus
    /// optional `?query`, relative to the VCS base endpoint, exactly as it will be forwarded;
    /// `headers` and `has_body` show what only the whole request shows: method-override
    /// headers, and a body on a `GET` or `HEAD` (where its parameters would reach the VCS
    /// unchecked: Rails and Grape read form and JSON bodies of any method). A project given
    /// by an id the project regex does not match is left for the caller to resolve
    /// ([`Decision::ById`]); [`Decision::settle`] denies it instead.
    pub fn decide(
        &self,
        method: &str,
        target: &str,
        headers: &[(impl AsRef<str>, impl AsRef<str>)],
        has_body: bool,
    ) -> Result<Decision, Denied> {
        let overrides = [
            ("method", DenialClass::Method, &METHOD_OVERRIDE_HEADERS[..]),
            ("path", DenialClass::Path, &PATH_OVERRIDE_HEADERS[..]),
        ];
        for (what, class, names) in overrides {
            if let Some(name) = headers.iter().find_map(|(name, _)| {
                let name = name.as_ref();
                names.iter().find(|h| name.eq_ignore_ascii_case(h))
            }) {
                return Err(Denied::new(
                    class,
                    format!("{what} override header {name} is not allowed"),
                ));
            }
        }
        if has_body && (method == "GET" || method == "HEAD") {
            return Err(Denied::path(format!(
                "a {method} request may not carry a body"
            )));
        }
        self.decide_target(method, target)
    }

    /// The matching rule's verdict: the path's project and every project a parameter
    /// names must match the regex.
    /// A path project the regex refuses may still be an id to resolve.
    fn verdict(
        &self,
        rule: &'static Rule,
        project: Option<String>,
        params: &query::Params,
        place: Place,
    ) -> Result<Decision, Denied> {
        let id = match &project {
            Some(project) => self.path_project(project, place)?,
            None => None,
        };
        if rule.unscoped && self.inner.projects.is_some() {
            return Err(Denied::path(format!(
                "{} names no repository, so it cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
                rule.description
            )));
        }
        let (other_projects, param_ids) = self.param_projects(rule, params, place)?;
        let allowed = Allowed {
            description: rule.description,
            project,
            codeload: rule.codeload,
            other_projects,
            param_ids,
            body: rule.body,
            listing: rule.listing,
        };
        Ok(match id {
            Some(id) => Decision::ById(allowed, id),
            None => Decision::Allowed(allowed),
        })
    }

    /// A path's project: allowed by the regex as it stands, or an id to resolve. While
    /// projects are restricted an Azure DevOps GUID is always resolved, never matched as
    /// text (`acme/platform/.*` says nothing of which repository a GUID is).
    fn path_project(&self, project: &str, place: Place) -> Result<Option<ProjectId>, Denied> {
        let id = project_id(self.inner.vendor, project, place);
        if self.inner.vendor != Vendor::AzureDevops {
            return match self.project_allowed(project, None) {
                Ok(()) => Ok(None),
                Err(denied) => id.map(Some).ok_or(denied),
            };
        }
        if !self.restricted() {
            return Ok(None);
        }
        if id.is_none() && project.split('/').count() == 2 {
            return Err(Denied::project(format!(
                "repository {project} is named without its project: only a repository GUID can be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS there"
            )));
        }
        match id {
            Some(id) => Ok(Some(id)),
            None => self.project_allowed(project, None).map(|()| None),
        }
    }

    /// The projects a rule's parameters name: allowed by the regex, or ids to resolve. For
    /// Azure DevOps the parameter is a policy evaluation's `artifactId`, always resolved (to
    /// the pull request's repository) while projects are restricted, and then required.
    #[allow(clippy::type_complexity)]
    fn param_projects(
        &self,
        rule: &'static Rule,
        params: &query::Params,
        place: Place,
    ) -> Result<(Vec<String>, Vec<(&'static str, ProjectId)>), Denied> {
        let (mut other_projects, mut param_ids) = (Vec::new(), Vec::new());
        let azure = self.inner.vendor == Vendor::AzureDevops && self.restricted();
        for &name in rule.project_params {
            let values = params.values(name);
            if azure && values.is_empty() {
                return Err(Denied::project(format!(
                    "{} without {name} is project-wide, so it cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
                    rule.description
                )));
            }
            for value in values {
                if azure {
                    let id = azure_artifact(&value, place).ok_or_else(|| {
                        Denied::project(format!(
                            "{name} names no pull request (vstfs:///CodeReview/CodeReviewId/{{project GUID}}/{{id}}), so it cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"
                        ))
                    })?;
                    param_ids.push((name, id));
                    continue;
                }
                match self.project_allowed(&value, Some(name)) {
                    Ok(()) => other_projects.push(value),
                    Err(denied) => {
                        param_ids.push((name, param_id(self.inner.vendor, &value).ok_or(denied)?))
                    }
                }
            }
        }
        Ok((other_projects, param_ids))
    }

    /// The organisation (collection) an Azure DevOps target is in, in lower case, wherever
    /// the base endpoint and the target put it; empty for other vendors or a target that
    /// does not canonicalise.
    pub(crate) fn organisation(&self, target: &str) -> String {
        if self.inner.vendor != Vendor::AzureDevops {
            return String::new();
        }
        let Ok(canonical) = canonicalize(target) else {
            return String::new();
        };
        let (view, _) = self.inner.frame.view(&canonical);
        view.segments()
            .first()
            .and_then(|s| String::from_utf8(s.decoded.clone()).ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// Whether `project` (a path, `group/repo`) matches the project regex.
    pub(crate) fn allows_project(&self, project: &str) -> bool {
        self.project_allowed(project, None).is_ok()
    }

    /// Whether projects are restricted (`SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS` is set).
    pub(crate) fn restricted(&self) -> bool {
        self.inner.projects.is_some()
    }

    /// One project against the regex; `param` names the query parameter it came from.
    pub(crate) fn project_allowed(&self, project: &str, param: Option<&str>) -> Result<(), Denied> {
        match &self.inner.projects {
            Some(re) if !re.is_match(project) => Err(Denied::project(match param {
                Some(param) => format!("project {project} (from {param}) is not allowed"),
                None => format!("project {project} is not allowed"),
            })),
            _ => Ok(()),
        }
    }

    /// Indices (into [`Vendor::rules`]) of **every** rule whose method, path and query
    /// match, ignoring the project regex. [`check`](Self::check) uses the first of them;
    /// this exists so tests and operators can see why a request matched.
    pub fn matching_rules(&self, method: &str, target: &str) -> Result<Vec<usize>, Denied> {
        let (canonical, _) = self.inner.frame.view(&self.precheck(method, target)?);
        Ok(self
            .inner
            .rules
            .iter()
            .filter(|r| r.matches(method, &canonical).is_some())
            .map(|r| r.index)
            .collect())
    }

    fn precheck(&self, method: &str, target: &str) -> Result<Canonical, Denied> {
        let options_somewhere = || {
            self.inner
                .rules
                .iter()
                .any(|r| r.rule.methods.contains(&Method::Options))
        };
        if NEVER_ALLOWED.contains(&method) || (method == "OPTIONS" && !options_somewhere()) {
            return Err(Denied::method(format!("method {method} is never allowed")));
        }
        if !is_token(method) {
            return Err(Denied::method("invalid method"));
        }
        canonicalize(target)
    }

    fn no_match_reason(&self, method: &str, canonical: &Canonical) -> Denied {
        let stray_slash = canonical.segments().iter().enumerate().any(|(i, s)| {
            s.encoded_slash && !matcher::encoded_position(&self.inner.rules, canonical, i)
        });
        if stray_slash {
            return Denied::path("encoded slash outside a project or ref segment");
        }
        Denied::no_rule(format!("no rule allows {method} {}", canonical.path()))
    }
}

/// The id a query parameter names a project by: GitLab's numeric `from_project_id`.
fn param_id(vendor: Vendor, value: &str) -> Option<ProjectId> {
    let numeric =
        !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
    (vendor == Vendor::Gitlab && numeric).then(|| ProjectId {
        id: value.to_string(),
        scope: String::new(),
        lookup: format!("/api/v4/projects/{value}"),
        kind: IdKind::Project,
    })
}

/// Where a matched target sits: as the rules read it, and the target's own beginning up to
/// and including the organisation segment the rules see (`/tfs/coll`, `/acme`, or empty when
/// the base endpoint names it), from which lookups are built.
#[derive(Clone, Copy)]
struct Place<'a> {
    target: &'a Canonical,
    base: &'a str,
}

/// The id a matched route names its project by, when it is one: GitLab `/api/v4/projects/5/…`,
/// GitHub `/repositories/5`, Azure DevOps `/{org}/{project}/_apis/git/repositories/{GUID}/…`
/// (and `_git/{GUID}`, and `/{org}/_apis/git/repositories/{GUID}`).
fn project_id(vendor: Vendor, project: &str, place: Place) -> Option<ProjectId> {
    let raw: Vec<&str> = place
        .target
        .segments()
        .iter()
        .map(|s| s.raw.as_str())
        .collect();
    let numeric =
        !project.is_empty() && project.len() <= 20 && project.bytes().all(|b| b.is_ascii_digit());
    let id = |lookup: String| ProjectId {
        id: project.to_string(),
        scope: String::new(),
        lookup,
        kind: IdKind::Project,
    };
    match vendor {
        Vendor::Gitlab if numeric && raw.starts_with(&["api", "v4", "projects"]) => {
            Some(id(format!("/api/v4/projects/{project}")))
        }
        Vendor::GithubEnterprise if numeric && raw.starts_with(&["api", "v3", "repositories"]) => {
            Some(id(format!("/api/v3/repositories/{project}")))
        }
        Vendor::GithubEnterprise if numeric && raw.starts_with(&["repositories"]) => {
            Some(id(format!("/repositories/{project}")))
        }
        Vendor::AzureDevops => azure_id(project, &raw, place.base),
        _ => None,
    }
}

/// An Azure DevOps repository named by its GUID (with or without its project), or by its
/// name in a project named by its GUID (`{org}/{project GUID}/…/repositories/{name}`, id
/// `{project GUID}/{name}`); the lookup asks for the repository as the path spells it. The
/// scope is the organisation in lower case: the server does not tell `ACME` from `acme`.
fn azure_id<'a>(project: &str, raw: &[&'a str], base: &str) -> Option<ProjectId> {
    let pieces: Vec<&str> = project.splitn(3, '/').collect();
    // The repository segment after `_apis/git/repositories/` or `_git/`, whatever its case.
    let repository = |rest: &[&'a str]| -> Option<&'a str> {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match rest {
            [apis, git, repos, repo, ..]
                if same(apis, "_apis") && same(git, "git") && same(repos, "repositories") =>
            {
                Some(repo)
            }
            [git, repo, ..] if same(git, "_git") => Some(repo),
            _ => None,
        }
    };
    let (id, lookup) = match (pieces.as_slice(), raw.get(1..)) {
        ([_, repo], Some(rest)) if is_guid(repo) => (
            repo.to_ascii_lowercase(),
            format!(
                "{base}/_apis/git/repositories/{}?api-version=5.0",
                repository(rest)?
            ),
        ),
        ([_, proj, repo], Some([proj_raw, rest @ ..])) => {
            let repo_raw = repository(rest)?;
            let id = match (is_guid(proj), is_guid(repo)) {
                (_, true) => repo.to_ascii_lowercase(),
                (true, false) => format!("{}/{repo}", proj.to_ascii_lowercase()),
                (false, false) => return None,
            };
            let lookup =
                format!("{base}/{proj_raw}/_apis/git/repositories/{repo_raw}?api-version=5.0");
            (id, lookup)
        }
        _ => return None,
    };
    Some(ProjectId {
        id,
        scope: pieces[0].to_ascii_lowercase(),
        lookup,
        kind: IdKind::Project,
    })
}

/// The pull request a policy evaluation's `artifactId` names
/// (`vstfs:///CodeReview/CodeReviewId/{project GUID}/{pull request id}`), to be resolved to
/// its repository within the path's project.
fn azure_artifact(value: &str, place: Place) -> Option<ProjectId> {
    const ARTIFACT: &str = "vstfs:///CodeReview/CodeReviewId/";
    let head = value.get(..ARTIFACT.len())?;
    let rest = value.get(ARTIFACT.len()..)?;
    let (project, pr) = rest.split_once('/')?;
    let digits = !pr.is_empty() && pr.len() <= 10 && pr.bytes().all(|b| b.is_ascii_digit());
    if !head.eq_ignore_ascii_case(ARTIFACT) || !is_guid(project) || !digits {
        return None;
    }
    let text = |i: usize| String::from_utf8(place.target.segments().get(i)?.decoded.clone()).ok();
    let project = project.to_ascii_lowercase();
    Some(ProjectId {
        id: format!("{project}/{pr}"),
        scope: text(0)?.to_ascii_lowercase(),
        lookup: format!(
            "{}/{project}/_apis/git/pullRequests/{pr}?api-version=5.0",
            place.base
        ),
        kind: IdKind::PullRequest { within: text(1)? },
    })
}

/// `8-4-4-4-12` hex digits.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An HTTP method token (RFC 9110 `tchar`s), short enough to echo in a reason.
fn is_token(method: &str) -> bool {
    !method.is_empty()
        && method.len() <= 20
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
