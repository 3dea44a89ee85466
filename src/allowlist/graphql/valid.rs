//! The uniqueness rules of the GraphQL specification (§5.2.1.1 operation names, §5.2.2.1
//! lone anonymous operation, §5.4.2 argument uniqueness, §5.5.1.1 fragment names, §5.8.1
//! variable uniqueness). A document that breaks one is invalid, and servers that run it
//! anyway pick one of the copies their own way: the checked copy and the run one could
//! differ, so such a document is denied before anything is walked.

use super::super::denied::Denied;
use graphql_parser::query::{
    Definition, Directive, Document, OperationDefinition, Selection, SelectionSet, Value,
};
use std::collections::HashSet;

/// Nothing of `doc` is named twice where the specification wants one.
pub(super) fn check(doc: &Document<'static, String>) -> Result<(), Denied> {
    let (mut operations, mut fragments, mut anonymous, mut count) =
        (HashSet::new(), HashSet::new(), false, 0);
    for definition in &doc.definitions {
        match definition {
            Definition::Operation(op) => {
                count += 1;
                let (name, variables, directives, set) = parts(op);
                match name {
                    Some(name) if !operations.insert(name.as_str()) => {
                        return Err(invalid("two operations with one name"))
                    }
                    Some(_) => {}
                    None => anonymous = true,
                }
                unique(
                    variables.iter().map(String::as_str),
                    "a variable defined twice",
                )?;
                directives_ok(directives)?;
                selections(set)?;
            }
            Definition::Fragment(f) => {
                if !fragments.insert(f.name.as_str()) {
                    return Err(invalid("two fragments with one name"));
                }
                directives_ok(&f.directives)?;
                selections(&f.selection_set)?;
            }
        }
    }
    if anonymous && count > 1 {
        return Err(invalid("an anonymous operation beside others"));
    }
    Ok(())
}

type Parts<'a> = (
    Option<&'a String>,
    Vec<String>,
    &'a [Directive<'static, String>],
    &'a SelectionSet<'static, String>,
);

fn parts<'a>(op: &'a OperationDefinition<'static, String>) -> Parts<'a> {
    let names = |defs: &[graphql_parser::query::VariableDefinition<'static, String>]| {
        defs.iter().map(|d| d.name.clone()).collect::<Vec<_>>()
    };
    match op {
        OperationDefinition::SelectionSet(set) => (None, Vec::new(), &[], set),
        OperationDefinition::Query(q) => (
            q.name.as_ref(),
            names(&q.variable_definitions),
            &q.directives,
            &q.selection_set,
        ),
        OperationDefinition::Mutation(m) => (
            m.name.as_ref(),
            names(&m.variable_definitions),
            &m.directives,
            &m.selection_set,
        ),
        OperationDefinition::Subscription(s) => (
            s.name.as_ref(),
            names(&s.variable_definitions),
            &s.directives,
            &s.selection_set,
        ),
    }
}

fn selections(set: &SelectionSet<'static, String>) -> Result<(), Denied> {
    for selection in &set.items {
        match selection {
            Selection::Field(field) => {
                arguments(&field.arguments)?;
                directives_ok(&field.directives)?;
                selections(&field.selection_set)?;
            }
            Selection::FragmentSpread(spread) => directives_ok(&spread.directives)?,
            Selection::InlineFragment(inline) => {
                directives_ok(&inline.directives)?;
                selections(&inline.selection_set)?;
            }
        }
    }
    Ok(())
}

fn directives_ok(directives: &[Directive<'static, String>]) -> Result<(), Denied> {
    directives.iter().try_for_each(|d| arguments(&d.arguments))
}

/// Arguments named once each, and so are the fields of every input object among them.
fn arguments(args: &[(String, Value<'static, String>)]) -> Result<(), Denied> {
    unique(
        args.iter().map(|(n, _)| n.as_str()),
        "an argument given twice",
    )?;
    args.iter().try_for_each(|(_, value)| input(value))
}

fn input(value: &Value<'static, String>) -> Result<(), Denied> {
    match value {
        Value::List(items) => items.iter().try_for_each(input),
        // The parser keeps an object's fields in a map, so a repeated one is already gone;
        // input objects only feed mutations, which are denied while projects are
        // restricted, and decide nothing the inspection checks.
        Value::Object(fields) => fields.values().try_for_each(input),
        _ => Ok(()),
    }
}

fn unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), Denied> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(invalid(what));
        }
    }
    Ok(())
}

fn invalid(what: &str) -> Denied {
    Denied::path(format!("GraphQL document is invalid: {what}"))
}
