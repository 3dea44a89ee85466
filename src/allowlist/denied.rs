//! Why the allowlist denies a request: the reason the caller reads, and its class.

use std::fmt;

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
    pub(crate) class: DenialClass,
    pub reason: String,
    /// The description of the rule that matched the method and path, when one did and the
    /// denial came after it (a project the regex refuses): the access line names it.
    pub(crate) rule: Option<&'static str>,
    /// The project that was judged, when there was one.
    pub(crate) project: Option<String>,
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
