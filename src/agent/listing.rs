//! Listings across projects, filtered to the allowed ones while projects are restricted.
//!
//! GitLab `GET /api/v4/projects`, GitHub `/user/repos`, `/orgs/{org}/repos` and
//! `/installation/repositories`, Bitbucket `/rest/api/1.0/repos` and
//! `/projects/{KEY}/repos`, Azure DevOps `/{org}/[{project}/]_apis/git/repositories` answer
//! every project the credentials can see, whatever `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS`
//! says. While that variable restricts projects, an answer of such a rule (marked `listing`
//! in the tables), **whatever its status**, is read whole, at most [`LIMIT`] bytes, and only
//! the entries whose project passes the regex are sent on; a larger answer, or one that is
//! not a listing, is denied with a reason (ask for smaller pages). Kept entries are copied
//! byte for byte ([`serde_json::value::RawValue`]); an entry whose project cannot be told is
//! dropped. An answer with a key repeated in any object is denied: clients differ on which
//! copy they keep, so what was filtered might not be what they read.
//!
//! Nothing may tell how large the unfiltered listing is: the per-page counts (`size`,
//! `count`) are set to the number of entries kept, GitHub's `total_count` (across every page)
//! is dropped, and so are the `X-Total…` headers (GitLab's `X-Total`, `X-Total-Pages`), the
//! `rel="last"` entry of `Link` (its page number; `next`, `prev` and `first` stay) and the
//! `Content-Length` of a `HEAD`. `Content-Length` is recomputed by the caller.
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
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// Largest listing answer read for filtering.
pub(crate) const LIMIT: usize = 8 << 20;
/// Where the entries sit in the vendors' wrapped answers (GitHub installation, Bitbucket,
/// Azure DevOps); GitLab and the other GitHub listings answer a bare array.
const ENTRY_FIELDS: [&str; 3] = ["repositories", "values", "value"];
/// Per-page counts, set to the number of entries kept.
const COUNT_FIELDS: [&str; 2] = ["size", "count"];
/// Counts across every page, which no filtered page can recompute: dropped.
const TOTAL_FIELDS: [&str; 1] = ["total_count"];

/// Removes the headers that would tell how large the unfiltered listing is (`X-Total…`, the
/// unfiltered `Content-Length`), and the `rel="last"` entry of `Link`; the caller sets the
/// filtered `Content-Length`.
pub(crate) fn strip_totals(headers: &mut HeaderPairs) {
    headers.retain(|(name, _)| {
        let name = name.to_ascii_lowercase();
        !name.starts_with("x-total") && name != "content-length"
    });
    headers.retain_mut(|(name, value)| {
        if !name.eq_ignore_ascii_case("link") {
            return true;
        }
        let kept = without_last(value);
        *value = kept.clone().into();
        !kept.is_empty()
    });
}

/// A `Link` value without its entries whose `rel` includes `last`.
fn without_last(link: &str) -> String {
    let mut entries: Vec<String> = Vec::new();
    for piece in link.split(',') {
        match entries.last_mut() {
            // A comma inside an entry's URL or parameters: part of the entry before.
            Some(last) if !piece.trim_start().starts_with('<') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => entries.push(piece.to_string()),
        }
    }
    entries
        .into_iter()
        .filter(|entry| !rels(entry).any(|rel| rel.eq_ignore_ascii_case("last")))
        .map(|entry| entry.trim().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The relation types of one `Link` entry (`rel="next last"` gives `next`, `last`).
fn rels(entry: &str) -> impl Iterator<Item = &str> {
    let params = entry.rsplit_once('>').map_or("", |(_, p)| p);
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("rel"))
        .flat_map(|(_, v)| v.trim().trim_matches('"').split_ascii_whitespace())
}

/// Why a listing could not be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unfilterable(pub String);

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
pub(crate) fn filter(
    vendor: Vendor,
    org: &str,
    body: &[u8],
    keep: &dyn Fn(&str) -> bool,
    learn: &mut dyn FnMut(&str, &str),
) -> Result<Vec<u8>, Unfilterable> {
    let unfit = |what: &str| Unfilterable(format!("the listing answer {what}"));
    if serde_json::from_slice::<Unique>(body).is_err() {
        return Err(unfit("is not JSON without repeated keys"));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let entries: Vec<Box<RawValue>> =
            serde_json::from_slice(body).map_err(|_| unfit("is not a JSON array"))?;
        let kept = keep_allowed(vendor, org, entries, keep, learn);
        return Ok(array(&kept).into_bytes());
    }
    let Fields(fields) =
        serde_json::from_slice(body).map_err(|_| unfit("is not a JSON array or object"))?;
    let lists =
        |(_, (name, _)): &(usize, &(String, Box<RawValue>))| ENTRY_FIELDS.contains(&name.as_str());
    let mut at = fields.iter().enumerate().filter(lists).map(|(i, _)| i);
    let (Some(at), None) = (at.next(), at.next()) else {
        return Err(unfit("has no list of projects, or more than one"));
    };
    let entries: Vec<Box<RawValue>> = serde_json::from_str(fields[at].1.get())
        .map_err(|_| unfit("has a list of projects that is not an array"))?;
    let kept = keep_allowed(vendor, org, entries, keep, learn);
    let mut out = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        let value = match serde_json::from_str::<u64>(value.get()) {
            _ if i == at => array(&kept),
            Ok(_) if TOTAL_FIELDS.contains(&name.as_str()) => continue,
            Ok(_) if COUNT_FIELDS.contains(&name.as_str()) => kept.len().to_string(),
            _ => value.get().to_string(),
        };
        let name = serde_json::to_string(name).unwrap_or_default();
        out.push(format!("{name}:{value}"));
    }
    Ok(format!("{{{}}}", out.join(",")).into_bytes())
}

/// Any JSON value in which no object repeats a key.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Unique, D::Error> {
        deserializer.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON without repeated keys")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("repeated key"));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
}

/// The entries whose project is allowed.
fn keep_allowed(
    vendor: Vendor,
    org: &str,
    entries: Vec<Box<RawValue>>,
    keep: &dyn Fn(&str) -> bool,
    learn: &mut dyn FnMut(&str, &str),
) -> Vec<Box<RawValue>> {
    entries
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
        .collect()
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
            out, r#"{"repositories":[{"id":1,"full_name":"group/a"}]}"#,
            "a total across every page cannot be recomputed from one: it is dropped"
        );
        let body = r#"{"count":100,"value":[{"id":"AB","name":"x","project":{"name":"hr"}}]}"#;
        let (out, _) = run(Vendor::AzureDevops, body);
        assert_eq!(
            out, r#"{"count":0,"value":[]}"#,
            "a count is the entries kept"
        );
    }

    #[test]
    fn repeated_keys_and_second_lists_are_refused() {
        for body in [
            r#"{"values":[{"slug":"infra","project":{"key":"PLAT"}}],"values":[{"slug":"x","project":{"key":"HR"}}]}"#,
            r#"{"values":[{"slug":"infra","project":{"key":"PLAT"}}],"value":[{"slug":"x","project":{"key":"HR"}}]}"#,
            r#"[{"id":5,"path_with_namespace":"group/repo","path_with_namespace":"other/x"}]"#,
            r#"[{"id":5,"path_with_namespace":"group/repo","namespace":{"a":1,"a":2}}]"#,
        ] {
            let result = filter(
                Vendor::BitbucketDatacenter,
                "",
                body.as_bytes(),
                &|_| true,
                &mut |_, _| {},
            );
            assert!(result.is_err(), "{body}");
        }
    }

    #[test]
    fn headers_that_count_the_whole_listing_are_dropped() {
        let mut headers: HeaderPairs = [
            ("X-Total", "40"),
            ("x-total-pages", "2"),
            ("X-Total-Count", "40"),
            ("Content-Length", "999"),
            ("X-Next-Page", "2"),
            (
                "Link",
                r#"<https://git.corp/api/v4/projects?page=2>; rel="next", <https://git.corp/api/v4/projects?page=1>; rel="first", <https://git.corp/api/v4/projects?page=2,3>; rel="last""#,
            ),
            ("link", r#"<https://ghe.corp/x?page=9>; rel="prev last""#),
        ]
        .into_iter()
        .map(|(n, v)| (n.into(), v.into()))
        .collect();
        strip_totals(&mut headers);
        let left: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            left,
            [
                ("X-Next-Page", "2"),
                (
                    "Link",
                    r#"<https://git.corp/api/v4/projects?page=2>; rel="next", <https://git.corp/api/v4/projects?page=1>; rel="first""#
                ),
            ]
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
