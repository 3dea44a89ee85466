//! Request bodies the allowlist must see before they are forwarded.
//!
//! Bodies normally stream from the gateway to the VCS without being looked at. Two kinds
//! are read whole first (at most [`MAX_BODY`] bytes; larger is denied), inspected, and then
//! forwarded byte for byte as they arrived:
//!
//! * GitHub GraphQL documents, on the rules marked [`BodyCheck::Graphql`] ([`graphql`]),
//!   labelled `application/json` or not labelled at all; any other `Content-Type` (a form,
//!   which the server would read as parameters) is denied.
//! * `application/x-www-form-urlencoded` bodies, on every rule: Rails' `Rack::MethodOverride`
//!   (GitLab) runs a `POST` whose form carries `_method=DELETE` as a `DELETE`, so such a
//!   field is denied like the query parameter and the override headers. Rack also reads a
//!   `POST` body *without* a `Content-Type` as a form, so those are inspected the same way
//!   (real clients label their bodies: `application/json`, `application/x-git-upload-pack-request`).
//!
//! `multipart/*` bodies are denied outright: no allowed endpoint takes an upload,
//! and their fields (a `_method` among them) could only be seen by parsing parts of any size.
//! An inspected body with a `Content-Encoding` is denied: its bytes are not what the
//! server would parse.

use super::denied::Denied;
use super::graphql;
use super::list::Allowlist;
use super::matcher::BodyCheck;
use super::query::{Params, METHOD_PARAM};
use super::verdict::Allowed;

/// Largest body read whole for inspection.
pub(crate) const MAX_BODY: usize = graphql::MAX_BODY;

impl Inspection {
    /// The denial for a body over [`MAX_BODY`].
    pub(crate) fn too_large(self) -> Denied {
        Denied::path(match self {
            Inspection::Graphql => format!(
                "GraphQL body over {} KiB cannot be inspected",
                MAX_BODY / 1024
            ),
            Inspection::Form => format!(
                "form body over {} KiB cannot be inspected (a POST body without Content-Type is read as a form)",
                MAX_BODY / 1024
            ),
        })
    }
}

/// How a body is inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inspection {
    Graphql,
    Form,
}

/// What an inspected body adds to the request's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyVerdict {
    /// What the request was for, in more words than the rule (`GraphQL query Name: repository`).
    pub(crate) description: Option<String>,
    /// Projects the body names.
    pub(crate) projects: Vec<String>,
}

impl Allowlist {
    /// Whether the agent must read the body whole and call [`check_body`](Self::check_body)
    /// before forwarding; a multipart body is denied here.
    pub(crate) fn body_inspection(
        &self,
        method: &str,
        allowed: &Allowed,
        headers: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> Result<Option<Inspection>, Denied> {
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |(n, _)| n.as_ref().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_ref().trim())
        };
        let inspection = if allowed.body == BodyCheck::Graphql {
            // GitHub reads a form-encoded or multipart body as parameters too: only a JSON
            // body is what the inspection parses.
            let mut types = named("content-type");
            let json = |v: &str| {
                let media = v.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("application/json")
            };
            match (types.next(), types.next()) {
                (None, _) => {}
                (Some(v), None) if json(v) => {}
                _ => {
                    return Err(Denied::path(
                        "a GraphQL body must be application/json (or carry no Content-Type)",
                    ))
                }
            }
            Some(Inspection::Graphql)
        } else {
            // Rack's media type ends at `;` or `,`; an empty one is no type at all, and
            // every `multipart/*` type is one it parses.
            let (mut form, mut labelled) = (false, false);
            for value in named("content-type") {
                let media = value.split([';', ',']).next().unwrap_or_default().trim();
                if media.is_empty() {
                    continue;
                }
                labelled = true;
                if media
                    .get(..10)
                    .is_some_and(|p| p.eq_ignore_ascii_case("multipart/"))
                {
                    return Err(Denied::path("multipart bodies are not allowed"));
                }
                form |= media.eq_ignore_ascii_case("application/x-www-form-urlencoded");
            }
            (form || (method == "POST" && !labelled)).then_some(Inspection::Form)
        };
        let encoded = named("content-encoding").any(|v| !v.eq_ignore_ascii_case("identity"));
        if inspection.is_some() && encoded {
            return Err(Denied::path(
                "a body the agent must inspect may not carry a Content-Encoding",
            ));
        }
        Ok(inspection)
    }

    /// Decides on a body read whole (at most [`MAX_BODY`] bytes).
    pub(crate) fn check_body(
        &self,
        inspection: Inspection,
        body: &[u8],
    ) -> Result<BodyVerdict, Denied> {
        match inspection {
            Inspection::Form => {
                let text = String::from_utf8_lossy(body);
                if Params::parse(Some(&text)).any_named(METHOD_PARAM) {
                    return Err(Denied::method(
                        "method override parameter _method is not allowed",
                    ));
                }
                Ok(BodyVerdict::default())
            }
            Inspection::Graphql => {
                let inspected = graphql::inspect(body, self.projects())?;
                Ok(BodyVerdict {
                    description: Some(format!("GraphQL {}", inspected.summary)),
                    projects: inspected.projects,
                })
            }
        }
    }
}
