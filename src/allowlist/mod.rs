//! Per-vendor allowlists that fail closed.
//!
//! Every request the SaaS sends through the agent names a method and a *request target*
//! (path plus optional `?query`, relative to the VCS base endpoint). The agent forwards it
//! only when [`Allowlist::check`] says so, and then forwards the target **byte for byte as
//! it was checked**: nothing here rewrites, normalises or re-encodes a target, so what is
//! matched is exactly what the VCS server receives. Anything this module cannot classify
//! with certainty is denied; an unknown request is a denial, never a pass.
//!
//! # Why a canonical form that is not a rewrite
//!
//! Path-traversal bugs in proxies (Snyk Broker's `normalize` on the raw URL, Semgrep's
//! broker without dot-segment checks) come from the proxy and the server disagreeing on
//! what a path means. Rather than normalise (and then forward something the server may
//! read differently), we *refuse* every target whose meaning could differ between a
//! reasonable server and our matcher. The canonical target is the target itself, or
//! nothing. [`canonicalize`] is therefore idempotent by construction.
//!
//! # Canonicalisation rules
//!
//! Applied in this order by [`canonicalize`]; the first failing rule gives the reason.
//!
//! 1. The target must start with `/` (origin-form). `http://…`, `https://…` and any
//!    other `scheme:` prefix are denied as `absolute-form target`; anything else not
//!    starting with `/` (`*`, `api/v4`) as `target does not start with /`.
//! 2. A `#` anywhere is denied (`fragment in target`): clients never send fragments.
//! 3. The target is split at the first `?` into path and query.
//! 4. Lengths: path over 8192 bytes, query over 8192 bytes are denied.
//! 5. Raw bytes of the path: non-ASCII bytes, control characters (0x00–0x1F, 0x7F),
//!    backslashes, `;` (Tomcat-style path parameters turn `..;` into `..`) and bytes
//!    outside RFC 3986 `pchar` (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`,
//!    `}`) are denied. A `%` must be followed by two hex digits.
//! 6. Raw bytes of the query: non-ASCII bytes, control characters, space, `"`, `<`, `>`,
//!    `\`, `^`, `` ` ``, `{`, `|`, `}` are denied; `%` must be followed by two hex
//!    digits and `%00` (NUL) is denied. Other encoded bytes are left alone (a commit
//!    status description may carry an encoded newline), but the decoded query must be
//!    valid UTF-8 (`percent-encoding in query is not UTF-8`).
//! 7. The path is split on `/` into segments. An empty segment (`//` anywhere, including
//!    a leading `//`) is denied; a single trailing `/` is kept as a final empty segment,
//!    which only a pattern that itself ends in `/` matches.
//! 8. Every segment is percent-decoded **explicitly**, and the decoding is repeated (up
//!    to 4 levels) while it still contains valid escapes, to see through double encoding
//!    (`%252e`). At every level: a segment (or, after an encoded slash, a piece) made
//!    only of dots (`.`, `..`, `...`) is denied (`dot segment in path`); a decoded
//!    backslash, control character or `;` is denied like its raw form. Every level must
//!    be valid UTF-8 (`percent-encoding in path is not UTF-8`): overlong forms (`%C0%AE`
//!    for `.`, `%C0%AF` for `/`), encoded surrogates (`%ED%A0%80`) and stray continuation
//!    bytes (`%80`) are refused, since a lenient server may read them as dots or slashes.
//!    Encoding nested deeper than 4 levels is denied. So is, at every level, a character
//!    that compatibility normalisation or URL processing turns into a dot or slash (one dot
//!    leader `%E2%80%A4`, fullwidth full stop `%EF%BC%8E`, fullwidth solidus, division
//!    slash, …: `a look-alike of a dot or slash in path`).
//! 9. An encoded slash (`%2F`/`%2f`) at the first decoding level is recorded on the
//!    segment, and the pieces between the slashes must themselves be non-empty and not
//!    dot segments. Only pattern parameters spelled `{encoded_project}`,
//!    `{encoded_path}` and the ref parameters (`{ref}`, `{branch}`, `{tag}`, `{*ref}`,
//!    `{*branch}`, `{*basehead}`) accept such a segment: GitLab's project ids
//!    (`group%2Fsub%2Frepo`), its files API, which takes the file path as one
//!    `%2F`-separated segment, and ref names with a slash (`feature%2Fx`) in GitLab and
//!    GitHub. Everywhere else an encoded slash is denied (`encoded slash outside a project
//!    or ref segment`). A slash encoded twice (`%252F`) is always denied.
//!
//! # Ref segments
//!
//! Most branches have a `/` in their name (`feature/x`, `release/1.2`). A rule declares
//! where a ref goes: `{ref}`, `{branch}` or `{tag}` take one segment in which an encoded
//! slash separates the ref's pieces (GitLab `…/repository/branches/feature%2Fx`, GitHub
//! `…/commits/feature%2Fx`); `{*ref}`, `{*branch}` and `{*basehead}` take the raw rest of
//! the path (GitHub `…/branches/feature/x`, `…/compare/main...feature/x`,
//! `…/git/ref/heads/feature/x`). Each piece of a ref passed the same dot-segment and
//! encoding checks as any segment, so `feature%2F..%2F..` or `branches/a/../b` are still
//! denied.
//!
//! # Matching
//!
//! Rule tables are data, one file per vendor; [`matcher`] holds the one matcher. A rule
//! has methods, a path pattern (syntax documented in [`matcher`]), an optional exact
//! query, a description and an example. Rules are tried in table order and the first
//! one whose method, path and query match decides: if it has a project and a project
//! regex is configured, the project must match the whole regex, otherwise the request
//! is denied (later rules are not consulted).
//!
//! * Methods are compared exactly (uppercase). `HEAD` is allowed wherever `GET` is.
//!   `CONNECT` and `TRACE` are denied before anything else, and so is `OPTIONS` for every
//!   vendor whose table does not list it (only Azure DevOps' resource-location discovery
//!   `OPTIONS /{org}/_apis` does).
//! * Literal segments are compared with the raw (undecoded) segment, so `%62ranches`
//!   is not `branches`. Parameters see decoded values; the project is built from the
//!   decoded project parameters joined by `/`.
//! * The query is ignored for matching unless the rule names one, in which case it
//!   must be equal byte for byte (`service=git-upload-pack` for the smart-HTTP ref
//!   advertisement; `service=git-receive-pack` therefore never matches). Queries are
//!   never echoed in denial reasons: they may carry `private_token=`.
//!
//! # Beyond the path
//!
//! A path can be harmless while the request is not. Also denied:
//!
//! * **Method overrides**: the headers [`METHOD_OVERRIDE_HEADERS`] and a `_method`
//!   parameter (query here, form bodies in [`body`]), which Rails and ASP.NET honour, so an
//!   allowed `POST` would run as a `DELETE`.
//! * **Path overrides**: the headers [`PATH_OVERRIDE_HEADERS`], which URL-rewriting front
//!   ends honour, so the VCS would serve another path than the one checked.
//! * **A body on `GET` or `HEAD`**, whose parameters GitLab would read unchecked.
//! * **Projects named by parameters** ([`Rule::project_params`], GitLab's
//!   `from_project_id`), held to the regex like the path's project; a numeric one is left
//!   for the agent to resolve ([`Allowed::param_ids`]).
//! * While projects are restricted: a ref in another repository (`owner:branch`), and
//!   rules marked [`Rule::unscoped`] (they reach a repository their path does not name).
//!
//! Bodies that must be seen before they are forwarded (GraphQL, forms) are read whole by
//! the agent and judged by [`Allowlist::check_body`] ([`body`], [`graphql`]).

mod azure_devops;
mod bitbucket_datacenter;
pub mod body;
mod github_enterprise;
mod gitlab;
pub mod graphql;
pub mod matcher;
pub mod print;
mod query;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use body::{BodyVerdict, Inspection};
pub use matcher::{canonicalize, BodyCheck, Canonical, Method, Query, Rule};

/// The VCS products the agent can front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Gitlab,
    BitbucketDatacenter,
    GithubEnterprise,
    AzureDevops,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [
        Vendor::Gitlab,
        Vendor::BitbucketDatacenter,
        Vendor::GithubEnterprise,
        Vendor::AzureDevops,
    ];

    /// The name used in `SPACELIFT_VCS_AGENT_VENDOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Gitlab => "gitlab",
            Vendor::BitbucketDatacenter => "bitbucket_datacenter",
            Vendor::GithubEnterprise => "github_enterprise",
            Vendor::AzureDevops => "azure_devops",
        }
    }

    /// The vendor's rule table, in matching order.
    pub fn rules(self) -> &'static [Rule] {
        match self {
            Vendor::Gitlab => gitlab::RULES,
            Vendor::BitbucketDatacenter => bitbucket_datacenter::RULES,
            Vendor::GithubEnterprise => github_enterprise::RULES,
            Vendor::AzureDevops => azure_devops::RULES,
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "expected one of gitlab, bitbucket_datacenter, github_enterprise, azure_devops, got {s:?}"
                )
            })
    }
}

/// Compile `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS`. The pattern must match the **whole**
/// project (it is wrapped as `^(?:…)$`): the original agent's unanchored regex let
/// `group/repo` allow `evilgroup/repo2`.
pub fn project_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

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
    pub other_projects: Vec<String>,
    /// Projects named by a query parameter as an id the regex does not match (GitLab
    /// `from_project_id=99`): allowed only once each resolves, like a path's id
    /// ([`Decision::ById`]), to a path the regex allows.
    pub param_ids: Vec<(&'static str, ProjectId)>,
    /// What the agent must do with the body before forwarding it.
    pub body: BodyCheck,
    /// The answer lists projects across the VCS, so the agent filters it while projects are
    /// restricted.
    pub listing: bool,
}

/// A project named by an id (GitLab's numeric project id, GitHub's repository id, an Azure
/// DevOps repository GUID), which the project regex cannot judge until the agent knows the
/// path the id stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectId {
    /// The id as the path spells it (`5`, a GUID in lower case; for an Azure DevOps project
    /// given by its GUID, `{project GUID}/{repository name}`).
    pub id: String,
    /// Where the id is unique: empty, or the Azure DevOps organisation (as the path spells
    /// it, compared without regard to case).
    pub scope: String,
    /// The `GET` target whose answer describes this project.
    pub lookup: String,
    /// What the id is of, and so how its lookup answer names the project.
    pub kind: IdKind,
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

/// What a denial is about: the class the agent counts it under. Set where the denial is
/// made, so a reason can be reworded without moving it to another class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialClass {
    /// A project (or a project id) the project regex refuses, or an id that could not be
    /// resolved to a project.
    Project,
    /// No rule of the vendor's table allows the method and path.
    NoRule,
    /// A method that is never allowed or not a valid token, or a header or parameter that
    /// would make the VCS run another method.
    Method,
    /// Anything else about the request: its target, a path-override header, its body, a
    /// GraphQL document, a listing answer that cannot be filtered.
    Path,
    /// A rule of the operator's blocklist ([`crate::blocklist`]) matched the allowed request.
    Blocked,
}

/// A request the allowlist refuses, with a short reason safe to log and to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub class: DenialClass,
    pub reason: String,
    /// The description of the rule that matched the method and path, when one did and the
    /// denial came after it (a project the regex refuses): the access line names it.
    pub rule: Option<&'static str>,
    /// The project that was judged, when there was one.
    pub project: Option<String>,
}

impl Denied {
    pub(crate) fn new(class: DenialClass, reason: impl Into<String>) -> Denied {
        Denied {
            class,
            reason: reason.into(),
            rule: None,
            project: None,
        }
    }

    /// The denial, naming the rule that matched and the project it judged.
    pub(crate) fn about(self, rule: &'static str, project: Option<String>) -> Denied {
        Denied {
            rule: Some(rule),
            project,
            ..self
        }
    }

    pub(crate) fn project(reason: impl Into<String>) -> Denied {
        Denied::new(DenialClass::Project, reason)
    }

    pub(crate) fn no_rule(reason: impl Into<String>) -> Denied {
        Denied::new(DenialClass::NoRule, reason)
    }

    pub(crate) fn method(reason: impl Into<String>) -> Denied {
        Denied::new(DenialClass::Method, reason)
    }

    pub(crate) fn path(reason: impl Into<String>) -> Denied {
        Denied::new(DenialClass::Path, reason)
    }

    /// Denied by the blocklist rule named `rule`.
    pub(crate) fn blocked(rule: &str) -> Denied {
        Denied::new(DenialClass::Blocked, format!("blocked by rule \"{rule}\""))
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Denied {}

/// The allowlist of one vendor plus the optional project regex. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Allowlist {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
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
    /// `projects: None` allows every project. For a VCS at the root of its host.
    pub fn new(vendor: Vendor, projects: Option<regex::Regex>) -> Allowlist {
        Allowlist::for_base(vendor, projects, "", "")
    }

    /// Like [`new`](Self::new), for the VCS at the base endpoint `host` + `base_path`
    /// (`""` or `/tfs/DefaultCollection`, no trailing slash). Only Azure DevOps looks at
    /// it: its organisation (collection) may be part of the base endpoint, and its paths and
    /// names are compared without regard to case, as its servers do.
    pub fn for_base(
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

    /// Decide on one request. `target` is path plus optional `?query`, relative to the
    /// VCS base endpoint, exactly as it will be forwarded. A project given by an id the
    /// regex does not match is denied here; [`decide`](Self::decide) says which id.
    pub fn check(&self, method: &str, target: &str) -> Result<Allowed, Denied> {
        settle(self.decide(method, target)?)
    }

    /// Like [`check`](Self::check), but a project given by an id that the project regex
    /// does not match is left for the caller to resolve ([`Decision::ById`]).
    pub fn decide(&self, method: &str, target: &str) -> Result<Decision, Denied> {
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

    /// [`check`](Self::check) plus what only the whole request shows: method-override
    /// headers, and a body on a `GET` or `HEAD` (where its parameters would reach the VCS
    /// unchecked: Rails and Grape read form and JSON bodies of any method).
    pub fn check_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(impl AsRef<str>, impl AsRef<str>)],
        has_body: bool,
    ) -> Result<Allowed, Denied> {
        settle(self.decide_request(method, target, headers, has_body)?)
    }

    /// [`check_request`](Self::check_request) with ids left to resolve, like
    /// [`decide`](Self::decide).
    pub fn decide_request(
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
        self.decide(method, target)
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
    pub fn organisation(&self, target: &str) -> String {
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
    pub fn allows_project(&self, project: &str) -> bool {
        self.project_allowed(project, None).is_ok()
    }

    /// Whether projects are restricted (`SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS` is set).
    pub fn restricted(&self) -> bool {
        self.inner.projects.is_some()
    }

    /// One project against the regex; `param` names the query parameter it came from.
    pub fn project_allowed(&self, project: &str, param: Option<&str>) -> Result<(), Denied> {
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

/// An allowed request, or the denial of a project id nobody resolved.
fn settle(decision: Decision) -> Result<Allowed, Denied> {
    match decision {
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

#[cfg(test)]
mod field_tests;
#[cfg(test)]
mod tests;
