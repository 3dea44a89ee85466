//! GitHub GraphQL bodies (`POST /api/graphql`, `/graphql`), inspected before they are
//! forwarded.
//!
//! One endpoint carries every read and write of GitHub's GraphQL API, so the path says
//! nothing: the document does. The agent reads the whole body (at most
//! [`MAX_BODY`]; larger is denied), [`inspect`] decides, and the body is then forwarded
//! byte for byte as it arrived.
//!
//! What passes:
//!
//! * **Queries.** While `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS` is set, every
//!   `repository(owner:, name:)` and `organization|user|repositoryOwner(login:) {
//!   repository(name:) }` must name an allowed project, with literals, variables (the JSON
//!   body's `variables`, or the variable's default) and fragments resolved. What cannot be
//!   checked is denied: at the root only [`ROOT_FIELDS`] pass (so not `node`/`nodes` by
//!   global id, `search`, `resource` by URL), of a user or organization only its identity
//!   and `repository(name:)` ([`OWNER_FIELDS`]; not `issues` or `pullRequests` across
//!   repositories); a `repository` whose owner is not spelled out (under `viewer`, `owner`,
//!   a connection) is denied, and so are fields that list other repositories
//!   ([`CROSSING`]); the ones that follow to one repository (`parent`, `headRepository`…)
//!   pass when they only ask for its identity (`nameWithOwner`, `id`…). Without the
//!   variable, queries are not restricted.
//! * **Mutations** on the short list [`MUTATIONS`], which is what a CI/CD platform writes:
//!   comments, reviews and check runs. Never mutations that write code, refs, settings or
//!   permissions. They address their object by global id (`subjectId`, `pullRequestId`,
//!   `repositoryId`), which cannot be checked against the project regex: while projects are
//!   restricted every mutation is denied, and the SaaS uses the REST endpoints (whose paths
//!   name the repository) for comments, reviews and check runs.
//! * **Subscriptions** never.
//!
//! The target may not carry a query string: GitHub (Rails) merges URL parameters with the
//! body's, so `?variables=…` could replace what was checked. Every operation in the
//! document is checked, not only the one `operationName` picks, so
//! nothing in the document escapes the check. The parser refuses documents nested deeper
//! than 50 brackets (its own recursion limit), so a hostile document cannot exhaust the
//! stack; fragment expansion is bounded here ([`MAX_DEPTH`], [`MAX_VISITS`]).

use super::Denied;
use graphql_parser::query::{
    parse_query, Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection,
    SelectionSet, Value, VariableDefinition,
};
use regex::Regex;
use serde_json::Map;
use std::collections::HashMap;

/// Largest GraphQL body inspected; larger is denied.
pub const MAX_BODY: usize = 256 * 1024;
/// Deepest nesting of fragments in fragments.
pub const MAX_DEPTH: usize = 64;
/// Most fields visited, fragments expanded (a bound on fragment fan-out).
pub const MAX_VISITS: usize = 20_000;

/// The mutations a CI/CD platform needs, and why. Nothing here writes code, refs,
/// settings or permissions.
pub const MUTATIONS: &[(&str, &str)] = &[
    (
        "addComment",
        "comment on a pull request or issue (plan and apply summaries)",
    ),
    (
        "updateIssueComment",
        "update that comment in place on the next run",
    ),
    ("minimizeComment", "fold outdated run comments"),
    (
        "addPullRequestReview",
        "report a run as a pull request review",
    ),
    ("submitPullRequestReview", "submit that pending review"),
    (
        "addPullRequestReviewThread",
        "comment on a line of the pull request diff",
    ),
    ("createCheckRun", "report a run as a check run on a commit"),
    (
        "updateCheckRun",
        "update that check run's status and conclusion",
    ),
];

/// Fields that list other repositories or reach one by something other than its name:
/// denied while projects are restricted.
pub const CROSSING: &[&str] = &[
    "repositories",
    "repositoriesContributedTo",
    "topRepositories",
    "starredRepositories",
    "watching",
    "pinnedItems",
    "pinnableItems",
    "itemShowcase",
    "forks",
    "search",
    "resource",
];

/// Fields that follow to exactly one other repository: allowed while restricted only when
/// they ask for nothing but its identity ([`IDENTITY`]).
const FOLLOWS_ONE: &[&str] = &[
    "parent",
    "templateRepository",
    "headRepository",
    "baseRepository",
    "repository",
];

/// What may be asked of a repository reached by [`FOLLOWS_ONE`].
const IDENTITY: &[&str] = &[
    "__typename",
    "id",
    "databaseId",
    "name",
    "nameWithOwner",
    "url",
    "isFork",
    "isPrivate",
    "owner",
    "login",
];

/// Fields below a repository that reach users or organizations (or connections of them):
/// while projects are restricted, what lies below them is held to [`OWNER_FIELDS`] and
/// [`ACTOR_EXTRAS`], since a user's or an organization's other fields (`pullRequests`,
/// `issues`, `projectsV2`…) span repositories.
const ACTOR_FIELDS: &[&str] = &[
    "owner",
    "author",
    "editor",
    "actor",
    "committer",
    "mergedBy",
    "assignees",
    "mentionableUsers",
    "assignableUsers",
    "collaborators",
    "watchers",
    "stargazers",
    "participants",
    "requestedReviewer",
    "user",
    "users",
    "organization",
    "organizations",
    "members",
    "membersWithRole",
    "followers",
    "following",
    "sponsors",
];

/// Besides [`OWNER_FIELDS`], what may be asked below an [`ACTOR_FIELDS`] field: the
/// connection's shape and a commit author's own fields.
const ACTOR_EXTRAS: &[&str] = &[
    "nodes",
    "edges",
    "node",
    "cursor",
    "totalCount",
    "pageInfo",
    "hasNextPage",
    "hasPreviousPage",
    "startCursor",
    "endCursor",
    "user",
    "date",
];

/// Fields whose `login` argument names the owner of the `repository(name:)` below them.
const OWNERS: &[&str] = &["organization", "user", "repositoryOwner"];

/// While projects are restricted, the only fields of the query root: the others (`viewer`'s
/// issues aside, `search`, `node`, `enterprise`, `topic`…) reach data of any repository.
pub const ROOT_FIELDS: &[&str] = &[
    "repository",
    "organization",
    "user",
    "repositoryOwner",
    "viewer",
    "rateLimit",
    "meta",
    "__typename",
    "__schema",
    "__type",
];

/// While projects are restricted, the only fields of a user or organization (`viewer`,
/// `organization(login:)`…): its identity and its repositories by name. The rest
/// (`issues`, `pullRequests`, `contributionsCollection`, `projectsV2`…) spans repositories.
pub const OWNER_FIELDS: &[&str] = &[
    "repository",
    "__typename",
    "id",
    "databaseId",
    "login",
    "name",
    "email",
    "url",
    "avatarUrl",
    "isViewer",
];

/// What the access line says, and the projects the document names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `query Name: repository, viewer` (one entry per operation, `; `-separated).
    pub summary: String,
    /// Every `owner/name` the document names, in order, without repeats.
    pub projects: Vec<String>,
}

type Doc = Document<'static, String>;

/// The JSON body. A repeated `query` or `variables` key is an error (serde's derive refuses
/// duplicate fields), and so is a repeated variable: a server that kept the other copy
/// would run something other than what was checked.
#[derive(serde::Deserialize)]
struct Body {
    query: String,
    #[serde(default)]
    variables: Option<UniqueMap>,
}

/// A JSON object whose keys are all different.
struct UniqueMap(Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UniqueMap, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object without repeated keys")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<UniqueMap, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = a.next_entry::<String, serde_json::Value>()? {
                    if map.insert(key, value).is_some() {
                        return Err(serde::de::Error::custom("repeated key"));
                    }
                }
                Ok(UniqueMap(map))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Decides on one GraphQL body. `projects` is the project regex, `None` when unrestricted.
pub fn inspect(body: &[u8], projects: Option<&Regex>) -> Result<Inspected, Denied> {
    let request: Body = serde_json::from_slice(body).map_err(|_| {
        Denied::path("GraphQL body is not a JSON object with a query string and unique keys")
    })?;
    let query = request.query.as_str();
    let variables = request.variables.map(|v| v.0).unwrap_or_default();
    let doc: Doc = parse_query::<String>(query)
        .map_err(|_| Denied::path("GraphQL document does not parse"))?
        .into_static();
    let fragments: HashMap<&str, &FragmentDefinition<'static, String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name.as_str(), f)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut summaries = Vec::new();
    let mut walker = Walker {
        fragments: &fragments,
        variables: HashMap::new(),
        projects,
        named: Vec::new(),
        visits: 0,
    };
    for definition in &doc.definitions {
        if let Definition::Operation(op) = definition {
            summaries.push(walker.operation(op, &variables)?);
        }
    }
    Ok(Inspected {
        summary: summaries.join("; "),
        projects: walker.named,
    })
}

/// Where a field sits, and so where a `repository(name:)` finds its owner.
#[derive(Clone, Copy)]
enum Owner<'a> {
    /// At the root: `repository` must spell `owner:`.
    Root,
    /// Fields of a user or organization (`organization(login:)`, `viewer`), whose login is
    /// known or not.
    Object(Option<&'a str>),
    /// Users or organizations reached below a repository ([`ACTOR_FIELDS`]).
    Actors,
    /// Anywhere else: the owner is not spelled out.
    Unknown,
}

struct Walker<'d> {
    fragments: &'d HashMap<&'d str, &'d FragmentDefinition<'static, String>>,
    /// The current operation's variables: the body's values over the defaults.
    variables: HashMap<String, String>,
    projects: Option<&'d Regex>,
    named: Vec<String>,
    visits: usize,
}

impl<'d> Walker<'d> {
    fn operation(
        &mut self,
        op: &'d OperationDefinition<'static, String>,
        given: &Map<String, serde_json::Value>,
    ) -> Result<String, Denied> {
        let (kind, name, definitions, set) = match op {
            OperationDefinition::SelectionSet(set) => ("query", None, &[][..], set),
            OperationDefinition::Query(q) => (
                "query",
                q.name.as_deref(),
                &q.variable_definitions[..],
                &q.selection_set,
            ),
            OperationDefinition::Mutation(m) => (
                "mutation",
                m.name.as_deref(),
                &m.variable_definitions[..],
                &m.selection_set,
            ),
            OperationDefinition::Subscription(_) => {
                return Err(Denied::path("GraphQL subscriptions are not allowed"))
            }
        };
        self.variables = variables(definitions, given);
        let top = self.top_fields(set, 0)?;
        if kind == "mutation" {
            self.mutation(&top)?;
        } else {
            for field in &top {
                self.root_field(field)?;
            }
        }
        let names: Vec<&str> = top.iter().map(|f| f.name.as_str()).collect();
        Ok(match name {
            Some(name) => format!("{kind} {name}: {}", names.join(", ")),
            None => format!("{kind}: {}", names.join(", ")),
        })
    }

    fn mutation(&self, top: &[&Field<'static, String>]) -> Result<(), Denied> {
        for field in top {
            if !MUTATIONS.iter().any(|(name, _)| *name == field.name) {
                return Err(Denied::path(format!(
                    "GraphQL mutation {} is not allowed",
                    field.name
                )));
            }
            if self.projects.is_some() {
                return Err(Denied::path(format!(
                    "GraphQL mutation {} addresses its object by global id, which cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
                    field.name
                )));
            }
        }
        Ok(())
    }

    /// The fields of a selection set with fragments expanded (one level).
    fn top_fields(
        &mut self,
        set: &'d SelectionSet<'static, String>,
        depth: usize,
    ) -> Result<Vec<&'d Field<'static, String>>, Denied> {
        if depth > MAX_DEPTH {
            return Err(Denied::path("GraphQL fragments nested too deep"));
        }
        let mut fields = Vec::new();
        for item in &set.items {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                return Err(Denied::path("GraphQL document expands to too many fields"));
            }
            match item {
                Selection::Field(f) => fields.push(f),
                Selection::InlineFragment(i) => {
                    fields.extend(self.top_fields(&i.selection_set, depth + 1)?)
                }
                Selection::FragmentSpread(s) => {
                    let fragment = self
                        .fragments
                        .get(s.fragment_name.as_str())
                        .ok_or_else(|| Denied::path("GraphQL fragment is not defined"))?;
                    fields.extend(self.top_fields(&fragment.selection_set, depth + 1)?);
                }
            }
        }
        Ok(fields)
    }

    /// A field of the query root: `node`, `nodes`, `search` and `resource` cannot be
    /// checked; the rest is walked.
    fn root_field(&mut self, field: &'d Field<'static, String>) -> Result<(), Denied> {
        self.field(field, Owner::Root, 0)
    }

    fn unchecked(&self, field: &Field<'static, String>) -> Denied {
        Denied::path(format!(
            "GraphQL field {} cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
            field.name
        ))
    }

    fn field(
        &mut self,
        field: &'d Field<'static, String>,
        owner: Owner<'_>,
        depth: usize,
    ) -> Result<(), Denied> {
        let name = field.name.as_str();
        let allowed_here = match owner {
            Owner::Root => ROOT_FIELDS.contains(&name),
            Owner::Object(_) => OWNER_FIELDS.contains(&name),
            Owner::Actors => OWNER_FIELDS.contains(&name) || ACTOR_EXTRAS.contains(&name),
            Owner::Unknown => true,
        };
        if self.projects.is_some() && !allowed_here {
            return Err(self.unchecked(field));
        }
        // A `repository` without arguments below some object (`pullRequest { repository }`)
        // follows to one repository like `headRepository`; with arguments it names one.
        let names_one = !(matches!(owner, Owner::Unknown) && field.arguments.is_empty());
        if name == "repository" && names_one {
            if let Some(project) = self.repository(field, owner)? {
                if !self.named.contains(&project) {
                    self.named.push(project);
                }
                return self.children(field, Owner::Unknown, depth);
            }
        }
        if self.projects.is_some() {
            if CROSSING.contains(&name) {
                return Err(self.unchecked(field));
            }
            if FOLLOWS_ONE.contains(&name) && !self.identity_only(&field.selection_set, depth)? {
                return Err(self.unchecked(field));
            }
        }
        if self.projects.is_some()
            && (matches!(owner, Owner::Actors)
                || (matches!(owner, Owner::Unknown) && ACTOR_FIELDS.contains(&name)))
        {
            return self.children(field, Owner::Actors, depth);
        }
        if name == "viewer" && matches!(owner, Owner::Root) {
            return self.children(field, Owner::Object(None), depth);
        }
        if !OWNERS.contains(&name) {
            return self.children(field, Owner::Unknown, depth);
        }
        let login = self.argument(field, "login").map(str::to_owned);
        self.children(field, Owner::Object(login.as_deref()), depth)
    }

    fn children(
        &mut self,
        field: &'d Field<'static, String>,
        owner: Owner<'_>,
        depth: usize,
    ) -> Result<(), Denied> {
        for child in self.top_fields(&field.selection_set, depth + 1)? {
            self.field(child, owner, depth + 1)?;
        }
        Ok(())
    }

    /// The `owner/name` of a `repository` field, checked against the regex. `None` when
    /// unrestricted and the name cannot be worked out (nothing to check then).
    fn repository(
        &self,
        field: &Field<'static, String>,
        owner: Owner<'_>,
    ) -> Result<Option<String>, Denied> {
        let login = match owner {
            Owner::Root => self.argument(field, "owner"),
            Owner::Object(login) => login,
            Owner::Actors | Owner::Unknown => None,
        };
        let project = match (login, self.argument(field, "name")) {
            (Some(login), Some(name)) => format!("{login}/{name}"),
            _ if self.projects.is_none() => return Ok(None),
            _ => {
                return Err(Denied::path(
                    "GraphQL repository without a literal or variable owner and name cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
                ))
            }
        };
        match self.projects {
            Some(re) if !re.is_match(&project) => {
                Err(Denied::project(format!("project {project} is not allowed")))
            }
            _ => Ok(Some(project)),
        }
    }

    /// A string argument, literal or variable.
    fn argument<'s>(&'s self, field: &'s Field<'static, String>, name: &str) -> Option<&'s str> {
        let (_, value) = field.arguments.iter().find(|(n, _)| n == name)?;
        match value {
            Value::String(s) => Some(s.as_str()),
            Value::Variable(v) => self.variables.get(v).map(String::as_str),
            _ => None,
        }
    }

    /// Whether a selection asks only for a repository's identity.
    fn identity_only(
        &mut self,
        set: &'d SelectionSet<'static, String>,
        depth: usize,
    ) -> Result<bool, Denied> {
        for f in self.top_fields(set, depth + 1)? {
            if !IDENTITY.contains(&f.name.as_str())
                || !self.identity_only(&f.selection_set, depth + 1)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// String variables of one operation: the body's value, else the declared default.
fn variables(
    definitions: &[VariableDefinition<'static, String>],
    given: &Map<String, serde_json::Value>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for definition in definitions {
        let value = match given.get(&definition.name) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => None,
            None => match &definition.default_value {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            },
        };
        if let Some(value) = value {
            out.insert(definition.name.clone(), value);
        }
    }
    out
}
