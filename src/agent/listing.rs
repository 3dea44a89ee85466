//! Listings across projects, filtered to the allowed ones while projects are restricted.
//!
//! GitLab `GET /api/v4/projects`, GitHub `/user/repos`, `/orgs/{org}/repos` and
//! `/installation/repositories`, Bitbucket `/rest/api/1.0/repos` and
//! `/projects/{KEY}/repos`, Azure DevOps `/{org}/[{project}/]_apis/git/repositories` answer
//! every project the credentials can see, whatever `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS`
//! says. While that variable restricts projects, a successful answer of such a rule
//! (marked `listing` in the tables) is read whole, at most [`LIMIT`] bytes, and only the
//! entries whose project passes the regex are sent on; a larger answer is denied with a
//! reason (ask for smaller pages). Kept entries are copied byte for byte
//! ([`serde_json::value::RawValue`]); the count fields of the vendors that have one
//! (`total_count`, `size`, `count`) are lowered by the number of entries dropped; an entry
//! whose project cannot be told is dropped. `Content-Length` is recomputed by the caller;
//! GitLab's `X-Total` and `X-Total-Pages` are dropped (pagination links stay), and so is the
//! `Content-Length` of a `HEAD`, since they would tell how many projects there are in all.
//!
//! This is the one place an answer is held in memory rather than streamed: at most [`LIMIT`]
//! (plus its parsed entries) per stream that is serving a listing at that moment, and only
//! while projects are restricted.
//!
//! To read the answer at all it must not be compressed: the agent forwards these requests
//! with `Accept-Encoding: identity` (the one header it changes), and denies a listing that
//! comes back encoded anyway. Every entry's id is learned on the way (see
//! [`super::projects`]), so ids from a listing need no lookup later.

use crate::agent::projects;
use crate::allowlist::Vendor;
use crate::protocol::HeaderPairs;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// Largest listing answer read for filtering.
pub const LIMIT: usize = 8 << 20;
/// Where the entries sit in the vendors' wrapped answers (GitHub installation, Bitbucket,
/// Azure DevOps); GitLab and the other GitHub listings answer a bare array.
const ENTRY_FIELDS: [&str; 3] = ["repositories", "values", "value"];
/// Counts that would give away how many entries were dropped.
const COUNT_FIELDS: [&str; 3] = ["total_count", "size", "count"];

/// Answer headers that count the whole listing (GitLab's `X-Total`, `X-Total-Pages`), and its
/// unfiltered length (what a `HEAD` would give away).
const TOTAL_HEADERS: [&str; 3] = ["x-total", "x-total-pages", "content-length"];

/// Removes the headers that would tell how large the unfiltered listing is; the caller sets
/// the filtered `Content-Length`.
pub fn strip_totals(headers: &mut HeaderPairs) {
    headers.retain(|(name, _)| !TOTAL_HEADERS.iter().any(|t| name.eq_ignore_ascii_case(t)));
}

/// Why a listing could not be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfilterable(pub String);

/// A JSON object's fields in their order, values untouched.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(field);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Ordered)
    }
}

/// The entries of `body` whose project `keep` accepts, in the same shape. `org` is the Azure
/// DevOps organisation of the request; `learn(id, path)` is told every entry's id.
pub fn filter(
    vendor: Vendor,
    org: &str,
    body: &[u8],
    keep: &dyn Fn(&str) -> bool,
    learn: &mut dyn FnMut(&str, &str),
) -> Result<Vec<u8>, Unfilterable> {
    let unfit = |what: &str| Unfilterable(format!("the listing answer {what}"));
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let entries: Vec<Box<RawValue>> =
            serde_json::from_slice(body).map_err(|_| unfit("is not a JSON array"))?;
        let (kept, _) = keep_allowed(vendor, org, entries, keep, learn);
        return Ok(array(&kept).into_bytes());
    }
    let Fields(fields) =
        serde_json::from_slice(body).map_err(|_| unfit("is not a JSON array or object"))?;
    let at = fields
        .iter()
        .position(|(name, _)| ENTRY_FIELDS.contains(&name.as_str()))
        .ok_or_else(|| unfit("has no list of projects"))?;
    let entries: Vec<Box<RawValue>> = serde_json::from_str(fields[at].1.get())
        .map_err(|_| unfit("has a list of projects that is not an array"))?;
    let (kept, dropped) = keep_allowed(vendor, org, entries, keep, learn);
    let mut out = String::from("{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).unwrap_or_default());
        out.push(':');
        match serde_json::from_str::<u64>(value.get()) {
            _ if i == at => out.push_str(&array(&kept)),
            Ok(n) if COUNT_FIELDS.contains(&name.as_str()) => {
                out.push_str(&n.saturating_sub(dropped as u64).to_string())
            }
            _ => out.push_str(value.get()),
        }
    }
    out.push('}');
    Ok(out.into_bytes())
}

/// The entries whose project is allowed, and how many were dropped.
fn keep_allowed(
    vendor: Vendor,
    org: &str,
    entries: Vec<Box<RawValue>>,
    keep: &dyn Fn(&str) -> bool,
    learn: &mut dyn FnMut(&str, &str),
) -> (Vec<Box<RawValue>>, usize) {
    let total = entries.len();
    let kept: Vec<Box<RawValue>> = entries
        .into_iter()
        .filter(|raw| {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
                return false;
            };
            let Some(path) = projects::path_of(vendor, org, &entry) else {
                return false;
            };
            if let Some(id) = projects::id_of(&entry) {
                learn(&id, &path);
            }
            keep(&path)
        })
        .collect();
    let dropped = total - kept.len();
    (kept, dropped)
}

fn array(entries: &[Box<RawValue>]) -> String {
    let mut out = String::from("[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(entry.get());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vendor: Vendor, body: &str) -> (String, Vec<(String, String)>) {
        let mut learned = Vec::new();
        let out = filter(
            vendor,
            "acme",
            body.as_bytes(),
            &|p| p.starts_with("group/") || p.starts_with("PLAT/") || p.contains("/platform/"),
            &mut |id, path| learned.push((id.to_string(), path.to_string())),
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), learned)
    }

    #[test]
    fn a_bare_array_keeps_allowed_entries_byte_for_byte() {
        let body = r#"[ {"id": 5, "path_with_namespace": "group/repo",  "x": 1.50},
            {"id":6,"path_with_namespace":"other/secret"}, {"id":7}]"#;
        let (out, learned) = run(Vendor::Gitlab, body);
        assert_eq!(
            out,
            r#"[{"id": 5, "path_with_namespace": "group/repo",  "x": 1.50}]"#
        );
        assert_eq!(
            learned,
            [
                ("5".to_string(), "group/repo".to_string()),
                ("6".to_string(), "other/secret".to_string())
            ]
        );
    }

    #[test]
    fn wrapped_answers_keep_their_fields_and_lower_their_counts() {
        let body = r#"{"size":2,"limit":25,"isLastPage":true,"values":[{"slug":"infra","project":{"key":"PLAT"}},{"slug":"x","project":{"key":"HR"}}],"start":0}"#;
        let (out, _) = run(Vendor::BitbucketDatacenter, body);
        assert_eq!(
            out,
            r#"{"size":1,"limit":25,"isLastPage":true,"values":[{"slug":"infra","project":{"key":"PLAT"}}],"start":0}"#
        );
        let body = r#"{"value":[{"id":"AB","name":"infra","project":{"name":"platform"}},{"id":"CD","name":"x","project":{"name":"hr"}}],"count":2}"#;
        let (out, learned) = run(Vendor::AzureDevops, body);
        assert_eq!(
            out,
            r#"{"value":[{"id":"AB","name":"infra","project":{"name":"platform"}}],"count":1}"#
        );
        assert_eq!(learned[0], ("ab".into(), "acme/platform/infra".into()));
        let body = r#"{"total_count":2,"repositories":[{"id":1,"full_name":"group/a"},{"id":2,"full_name":"b/c"}]}"#;
        let (out, _) = run(Vendor::GithubEnterprise, body);
        assert_eq!(
            out,
            r#"{"total_count":1,"repositories":[{"id":1,"full_name":"group/a"}]}"#
        );
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        for body in ["", "not json", r#"{"message":"x"}"#, r#"{"values":3}"#] {
            let result = filter(
                Vendor::Gitlab,
                "",
                body.as_bytes(),
                &|_| true,
                &mut |_, _| {},
            );
            assert!(result.is_err(), "{body:?}");
        }
    }
}
