//! `vcs-agent rules`: the rule tables as the agent holds them, printed for operators.
//!
//! Everything printed is read from the tables the matcher uses ([`Vendor::rules`], the GitHub
//! GraphQL mutations and field tables), so what an operator reads cannot differ from what the
//! agent enforces. Text is one aligned table per vendor (method, path pattern, what the rule
//! is for as the access line's `for=` says it, the vendor reference it follows); JSON carries
//! the same rows with the rule's other properties.

use super::graphql::table::{self, Gives, Type};
use super::graphql::MUTATIONS;
use super::{Query, Rule, Vendor};
use serde_json::{json, Value};
use std::str::FromStr;

/// How `vcs-agent rules` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// `--format` was neither `text` nor `json`.
#[derive(Debug, thiserror::Error)]
#[error("--format: expected text or json, got {0:?}")]
pub struct FormatError(String);

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(FormatError(s.to_string())),
        }
    }
}

/// `--vendor` named no vendor.
#[derive(Debug, thiserror::Error)]
#[error(
    "--vendor: expected one of gitlab, github-enterprise, bitbucket-datacenter, azure-devops, got {0:?}"
)]
pub struct VendorError(String);

/// A vendor by the name `SPACELIFT_VCS_AGENT_VENDOR` takes (`github_enterprise`) or the same
/// with dashes (`github-enterprise`).
pub fn vendor_named(name: &str) -> Result<Vendor, VendorError> {
    Vendor::from_str(&name.replace('-', "_")).map_err(|_| VendorError(name.to_string()))
}

/// The tables of `vendors` (all of them when empty) in `format`.
pub fn render(vendors: &[Vendor], format: Format) -> String {
    let vendors = match vendors {
        [] => &Vendor::ALL[..],
        some => some,
    };
    match format {
        Format::Text => text(vendors),
        Format::Json => {
            let mut out = json(vendors).to_string();
            out.push('\n');
            out
        }
    }
}

fn methods(rule: &Rule) -> String {
    let names: Vec<&str> = rule.methods.iter().map(|m| m.as_str()).collect();
    names.join(",")
}

/// The path pattern, with the exact query a rule requires (`?service=git-upload-pack`).
fn target(rule: &Rule) -> String {
    match required_query(rule) {
        Some(query) => format!("{}?{query}", rule.pattern),
        None => rule.pattern.to_string(),
    }
}

fn required_query(rule: &Rule) -> Option<&'static str> {
    match rule.query {
        Query::Exactly(query) => Some(query),
        Query::Any | Query::Absent => None,
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&head).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn text(vendors: &[Vendor]) -> String {
    let mut out = String::from(
        "Rules are tried in order; the first whose method, path and query match decides.\n\
         HEAD is allowed wherever GET is; CONNECT and TRACE never; what no rule allows is denied.\n",
    );
    for &vendor in vendors {
        let rows: Vec<Vec<String>> = vendor
            .rules()
            .iter()
            .map(|r| {
                let source = if r.source.is_empty() { "-" } else { r.source };
                vec![methods(r), target(r), r.description.into(), source.into()]
            })
            .collect();
        out.push_str(&format!("\n{vendor} ({} rules)\n", rows.len()));
        out.push_str(&table(&["METHOD", "PATH", "FOR", "SOURCE"], &rows));
        if vendor == Vendor::GithubEnterprise {
            out.push_str(&graphql_text());
        }
    }
    out
}

fn graphql_text() -> String {
    let mutations: Vec<Vec<String>> = MUTATIONS
        .iter()
        .map(|(name, why)| vec![name.to_string(), why.to_string()])
        .collect();
    let fields: Vec<Vec<String>> = graphql_fields()
        .into_iter()
        .map(|(ty, field, gives)| vec![ty, field, gives])
        .collect();
    format!(
        "\ngithub_enterprise GraphQL mutations (POST /api/graphql; all of them denied while \
         SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS is set)\n{}\
         \ngithub_enterprise GraphQL fields a query may ask while SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS \
         is set (connections also give nodes, edges {{ node cursor }}, pageInfo, totalCount)\n{}",
        table(&["MUTATION", "FOR"], &mutations),
        table(&["TYPE", "FIELD", "GIVES"], &fields),
    )
}

fn gives(g: Gives) -> (String, Option<&'static Type>) {
    match g {
        Gives::Leaf => ("value".into(), None),
        Gives::Object(t) => (t.name.into(), Some(t)),
        Gives::Connection(t) => (format!("connection of {}", t.name), Some(t)),
        Gives::Edge(t) => (format!("edges of {}", t.name), Some(t)),
        Gives::Owner(t) => (format!("{}{OWNER}", t.name), Some(t)),
        Gives::Repository => (
            "Repository, checked against the project regex".into(),
            Some(&table::REPOSITORY),
        ),
        Gives::Identity => (
            format!("Repository identity only: {}", table::IDENTITY.join(", ")),
            None,
        ),
        Gives::Introspection => ("the schema (introspection)".into(), None),
    }
}

/// Every (type, field, what it gives) reachable from the query root, each table once, in the
/// order a walk from the root meets them. A table reached as an owner named by `login` is
/// labelled so (`User named by login`): it is not the table of a user met elsewhere.
fn graphql_fields() -> Vec<(String, String, String)> {
    let mut seen: Vec<&'static Type> = Vec::new();
    let mut queue: Vec<(&'static Type, &'static str)> = vec![(&table::QUERY, "")];
    let mut rows = Vec::new();
    while !queue.is_empty() {
        let (ty, suffix) = queue.remove(0);
        if seen.iter().any(|s| std::ptr::eq(*s, ty)) {
            continue;
        }
        seen.push(ty);
        let label = format!("{}{suffix}", ty.name);
        for leaf in ty.leaves {
            rows.push((label.clone(), leaf.to_string(), "value".into()));
        }
        for (name, g) in ty.objects {
            let (what, next) = gives(*g);
            rows.push((label.clone(), name.to_string(), what));
            let suffix = match g {
                Gives::Owner(_) => OWNER,
                _ => "",
            };
            queue.extend(next.map(|t| (t, suffix)));
        }
        for narrow in ty.narrows {
            let what = format!("... on {}{suffix}", narrow.name);
            rows.push((label.clone(), what, "fragment".into()));
            queue.push((narrow, suffix));
        }
    }
    rows
}

const OWNER: &str = " named by login";

fn json(vendors: &[Vendor]) -> Value {
    let tables: Vec<Value> = vendors
        .iter()
        .map(|&vendor| {
            let rules: Vec<Value> = vendor.rules().iter().map(rule_json).collect();
            json!({"vendor": vendor.as_str(), "rules": rules})
        })
        .collect();
    let mut out = json!({ "vendors": tables });
    if vendors.contains(&Vendor::GithubEnterprise) {
        let mutations: Vec<Value> = MUTATIONS
            .iter()
            .map(|(name, why)| json!({"name": name, "for": why}))
            .collect();
        let fields: Vec<Value> = graphql_fields()
            .into_iter()
            .map(|(ty, field, gives)| json!({"type": ty, "field": field, "gives": gives}))
            .collect();
        out["graphql"] = json!({"mutations": mutations, "fields": fields});
    }
    out
}

fn rule_json(rule: &Rule) -> Value {
    let methods: Vec<&str> = rule.methods.iter().map(|m| m.as_str()).collect();
    json!({
        "methods": methods,
        "path": rule.pattern,
        "query": required_query(rule),
        "no_query": rule.query == Query::Absent,
        "for": rule.description,
        "source": rule.source,
        "example": rule.example,
        "listing": rule.listing,
        "unscoped": rule.unscoped,
        "project_params": rule.project_params,
        "graphql": rule.body == super::BodyCheck::Graphql,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["GET".to_string(), "/a".to_string(), "x".to_string()],
            vec!["DELETE".to_string(), "/longer".to_string(), "y".to_string()],
        ];
        let out = table(&["M", "P", "F"], &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "M       P        F");
        assert_eq!(lines[1], "GET     /a       x");
        assert_eq!(lines[2], "DELETE  /longer  y");
    }

    #[test]
    fn every_graphql_table_is_walked() {
        let fields = graphql_fields();
        assert!(fields
            .iter()
            .any(|(t, f, _)| t == "Query" && f == "repository"));
        assert!(fields
            .iter()
            .any(|(t, f, _)| t == "Repository" && f == "nameWithOwner"));
    }

    #[test]
    fn vendors_by_either_spelling() {
        assert_eq!(
            vendor_named("github-enterprise").unwrap(),
            Vendor::GithubEnterprise
        );
        assert_eq!(vendor_named("azure_devops").unwrap(), Vendor::AzureDevops);
        assert!(vendor_named("gitea").is_err());
    }
}
