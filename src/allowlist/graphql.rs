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
//!   body's `variables`, or the variable's default) and fragments resolved, and every field
//!   must be listed for the type it is asked of in the allow table ([`table`]): what a
//!   CI/CD platform reads of that one repository. Any other field is denied, naming it, and
//!   so is a fragment on a type the table does not narrow to: a field inside an allowed
//!   repository can reach objects of another one (timeline events, tracked issues, a
//!   commit's pull requests in forks…), and a list of such fields would never be complete.
//!   Without the variable, queries are not restricted.
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

use super::denied::Denied;
use graphql_parser::query::{
    parse_query, Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection,
    SelectionSet, TypeCondition, Value, VariableDefinition,
};
use regex::Regex;
use serde_json::Map;
use std::collections::HashMap;
use table::{Gives, Type};

pub(super) mod table;
mod valid;

/// Largest GraphQL body inspected; larger is denied.
pub(crate) const MAX_BODY: usize = 256 * 1024;
/// Deepest nesting of fragments in fragments.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most fields visited, fragments expanded (a bound on fragment fan-out).
pub(crate) const MAX_VISITS: usize = 20_000;

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

/// What the access line says, and the projects the document names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inspected {
    /// `query Name: repository, viewer` (one entry per operation, `; `-separated).
    pub(crate) summary: String,
    /// Every `owner/name` the document names, in order, without repeats.
    pub(crate) projects: Vec<String>,
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
pub(crate) fn inspect(body: &[u8], projects: Option<&Regex>) -> Result<Inspected, Denied> {
    let request: Body = serde_json::from_slice(body).map_err(|_| {
        Denied::path("GraphQL body is not a JSON object with a query string and unique keys")
    })?;
    let query = request.query.as_str();
    let variables = request.variables.map(|v| v.0).unwrap_or_default();
    let doc: Doc = parse_query::<String>(query)
        .map_err(|_| Denied::path("GraphQL document does not parse"))?
        .into_static();
    valid::check(&doc)?;
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

/// Where a field is asked: which table lists what may be asked there.
#[derive(Clone, Copy)]
enum Place<'d> {
    /// Fields of this type. For an owner named at the root (`organization(login:)`), the
    /// field whose `login` names it.
    Of(&'static Type, Option<&'d Field<'static, String>>),
    /// A connection of this type: `nodes`, `edges`, `pageInfo`, `totalCount`.
    Connection(&'static Type),
    /// An edge of a connection of this type: `node`, `cursor`.
    Edge(&'static Type),
    /// Not checked: introspection, and what lies outside the tables while unrestricted.
    Unchecked,
}

struct Walker<'d> {
    fragments: &'d HashMap<&'d str, &'d FragmentDefinition<'static, String>>,
    /// The current operation's variables: the body's values over the defaults.
    variables: HashMap<String, String>,
    projects: Option<&'d Regex>,
    named: Vec<String>,
    visits: usize,
}

type Fields<'d> = Vec<(&'d Field<'static, String>, Place<'d>)>;

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
        let top = if kind == "mutation" {
            let top = self.fields(set, Place::Unchecked, 0)?;
            self.mutation(&top)?;
            top
        } else {
            let top = self.fields(set, Place::Of(&table::QUERY, None), 0)?;
            for &(field, place) in &top {
                self.field(field, place, 0)?;
            }
            top
        };
        let names: Vec<&str> = top.iter().map(|(f, _)| f.name.as_str()).collect();
        Ok(match name {
            Some(name) => format!("{kind} {name}: {}", names.join(", ")),
            None => format!("{kind}: {}", names.join(", ")),
        })
    }

    fn mutation(&self, top: &Fields<'d>) -> Result<(), Denied> {
        for (field, _) in top {
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

    /// The fields of a selection set with fragments expanded (one level), each with the
    /// place a fragment's type condition narrowed it to.
    fn fields(
        &mut self,
        set: &'d SelectionSet<'static, String>,
        place: Place<'d>,
        depth: usize,
    ) -> Result<Fields<'d>, Denied> {
        if depth > MAX_DEPTH {
            return Err(Denied::path("GraphQL fragments nested too deep"));
        }
        let mut fields = Vec::new();
        for item in &set.items {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                return Err(Denied::path("GraphQL document expands to too many fields"));
            }
            let (condition, inner) = match item {
                Selection::Field(f) => {
                    fields.push((f, place));
                    continue;
                }
                Selection::InlineFragment(i) => (i.type_condition.as_ref(), &i.selection_set),
                Selection::FragmentSpread(s) => {
                    let fragment = self
                        .fragments
                        .get(s.fragment_name.as_str())
                        .ok_or_else(|| Denied::path("GraphQL fragment is not defined"))?;
                    (Some(&fragment.type_condition), &fragment.selection_set)
                }
            };
            let narrowed = self.narrow(place, condition)?;
            fields.extend(self.fields(inner, narrowed, depth + 1)?);
        }
        Ok(fields)
    }

    /// The place a fragment `on` a type makes of `place`.
    fn narrow(
        &self,
        place: Place<'d>,
        condition: Option<&TypeCondition<'static, String>>,
    ) -> Result<Place<'d>, Denied> {
        let Some(TypeCondition::On(name)) = condition else {
            return Ok(place);
        };
        let narrowed = match place {
            Place::Of(ty, owner) => ty.narrow(name).map(|t| Place::Of(t, owner)),
            Place::Unchecked => Some(Place::Unchecked),
            Place::Connection(_) | Place::Edge(_) => None,
        };
        match narrowed {
            Some(place) => Ok(place),
            None if self.projects.is_none() => Ok(Place::Unchecked),
            None => Err(Denied::path(format!(
                "GraphQL fragment on {name} cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"
            ))),
        }
    }

    /// What the field gives where it is asked; `None` when no table lists it there.
    fn gives(name: &str, place: Place<'d>) -> Option<Gives> {
        match (place, name) {
            (Place::Of(ty, _), _) => ty.field(name),
            (Place::Connection(ty), "nodes") | (Place::Edge(ty), "node") => Some(Gives::Object(ty)),
            (Place::Connection(ty), "edges") => Some(Gives::Edge(ty)),
            (Place::Connection(_), "pageInfo") => Some(Gives::Object(&table::PAGE_INFO)),
            (Place::Connection(_), _) if table::CONNECTION_LEAVES.contains(&name) => {
                Some(Gives::Leaf)
            }
            (Place::Edge(_), _) if table::EDGE_LEAVES.contains(&name) => Some(Gives::Leaf),
            (_, "__typename") => Some(Gives::Leaf),
            _ => None,
        }
    }

    fn field(
        &mut self,
        field: &'d Field<'static, String>,
        place: Place<'d>,
        depth: usize,
    ) -> Result<(), Denied> {
        let restricted = self.projects.is_some();
        let gives = match place {
            Place::Unchecked => None,
            _ => Walker::gives(&field.name, place),
        };
        let Some(gives) = gives else {
            if restricted && !matches!(place, Place::Unchecked) {
                return Err(self.unchecked(field));
            }
            return self.children(field, Place::Unchecked, depth);
        };
        match gives {
            Gives::Leaf if restricted && !field.selection_set.items.is_empty() => {
                Err(self.unchecked(field))
            }
            Gives::Leaf => Ok(()),
            Gives::Object(ty) => self.children(field, Place::Of(ty, None), depth),
            Gives::Connection(ty) => self.children(field, Place::Connection(ty), depth),
            Gives::Edge(ty) => self.children(field, Place::Edge(ty), depth),
            Gives::Owner(ty) => self.children(field, Place::Of(ty, Some(field)), depth),
            Gives::Repository => {
                if let Some(project) = self.repository(field, place)? {
                    if !self.named.contains(&project) {
                        self.named.push(project);
                    }
                }
                self.children(field, Place::Of(&table::REPOSITORY, None), depth)
            }
            Gives::Identity if restricted => {
                match self.identity_only(&field.selection_set, depth)? {
                    true => Ok(()),
                    false => Err(self.unchecked(field)),
                }
            }
            Gives::Identity | Gives::Introspection => self.children(field, Place::Unchecked, depth),
        }
    }

    /// Why a field no table lists here is denied. A `repository` with arguments below
    /// anything but the root or an owner named by `login` names a repository whose owner
    /// is not spelled out.
    fn unchecked(&self, field: &Field<'static, String>) -> Denied {
        if field.name == "repository" && !field.arguments.is_empty() {
            return Denied::path(NO_OWNER);
        }
        Denied::path(format!(
            "GraphQL field {} cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
            field.name
        ))
    }

    fn children(
        &mut self,
        field: &'d Field<'static, String>,
        place: Place<'d>,
        depth: usize,
    ) -> Result<(), Denied> {
        for (child, place) in self.fields(&field.selection_set, place, depth + 1)? {
            self.field(child, place, depth + 1)?;
        }
        Ok(())
    }

    /// The `owner/name` of a `repository` field, checked against the regex: the owner is
    /// the `owner:` argument at the root, the `login:` of `organization|user|repositoryOwner`
    /// below it. `None` when unrestricted and the name cannot be worked out (nothing to
    /// check then).
    fn repository(
        &self,
        field: &Field<'static, String>,
        place: Place<'d>,
    ) -> Result<Option<String>, Denied> {
        let login = match place {
            Place::Of(_, Some(owner)) => self.argument(owner, "login"),
            _ => self.argument(field, "owner"),
        };
        let project = match (login, self.argument(field, "name")) {
            (Some(login), Some(name)) => format!("{login}/{name}"),
            _ if self.projects.is_none() => return Ok(None),
            _ => return Err(Denied::path(NO_OWNER)),
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
        for (f, _) in self.fields(set, Place::Unchecked, depth + 1)? {
            if !table::IDENTITY.contains(&f.name.as_str())
                || !self.identity_only(&f.selection_set, depth + 1)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Why a `repository` whose owner is not spelled out is denied.
const NO_OWNER: &str = "GraphQL repository without a literal or variable owner and name cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS";

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
