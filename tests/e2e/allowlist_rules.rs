//! The allowlist through its public API only: the hostile table, and properties of the
//! canonical form and of first-match-wins.

use crate::support::hostile_paths;

use crate::support::CheckTarget;
use hostile_paths::HOSTILE_PATHS;
use proptest::prelude::*;
use vcs_agent::allowlist::{canonicalize, project_pattern, Allowlist, Vendor};

#[test]
fn hostile_table_is_big_enough() {
    assert!(HOSTILE_PATHS.len() >= 60, "{}", HOSTILE_PATHS.len());
}

#[test]
fn every_hostile_path_is_denied_for_gitlab() {
    let lists = [
        Allowlist::new(Vendor::Gitlab, None),
        Allowlist::new(Vendor::Gitlab, Some(project_pattern(".*").unwrap())),
    ];
    for list in &lists {
        for &(method, target) in HOSTILE_PATHS {
            match list.check(method, target) {
                Ok(allowed) => panic!("{method} {target:?} was allowed: {allowed:?}"),
                Err(denied) => {
                    assert!(!denied.reason.is_empty());
                    assert!(denied.reason.len() < 9000, "reason echoes too much");
                    // Queries are never echoed (they may carry a private_token).
                    if let Some((_, query)) = target.split_once('?') {
                        if query.len() > 3 {
                            assert!(!denied.reason.contains(query), "{}", denied.reason);
                        }
                    }
                }
            }
        }
    }
}

/// The table is written for GitLab; none of it is a legitimate request elsewhere either.
#[test]
fn every_hostile_path_is_denied_for_every_vendor() {
    for vendor in Vendor::ALL {
        let list = Allowlist::new(vendor, None);
        for &(method, target) in HOSTILE_PATHS {
            assert!(
                list.check(method, target).is_err(),
                "{vendor:?} {method} {target:?}"
            );
        }
    }
}

#[test]
fn exact_reasons_on_the_public_api() {
    let list = Allowlist::new(Vendor::Gitlab, Some(project_pattern("group/repo").unwrap()));
    let cases = [
        (
            "POST",
            "/api/v4/projects/1/repository/commits",
            "no rule allows POST /api/v4/projects/1/repository/commits",
        ),
        (
            "GET",
            "/api/v4/projects/group%2Fsecret",
            "project group/secret is not allowed",
        ),
        (
            "GET",
            "/api/v4/projects/evilgroup%2Frepo2",
            "project evilgroup/repo2 is not allowed",
        ),
        (
            "GET",
            "/api/v4/projects/1/repository/%2e%2e/x",
            "dot segment in path",
        ),
        ("OPTIONS", "/api/v4/user", "method OPTIONS is never allowed"),
    ];
    for (method, target, reason) in cases {
        let denied = list.check(method, target).unwrap_err();
        assert_eq!(denied.reason, reason);
        assert_eq!(denied.to_string(), reason);
    }
    let ok = list
        .check(
            "GET",
            "/api/v4/projects/group%2Frepo/repository/archive.zip?sha=main",
        )
        .unwrap();
    assert_eq!(ok.description, "Download repository archive");
    assert_eq!(ok.project.as_deref(), Some("group/repo"));
    assert!(!ok.codeload);
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "get",
        "PROPFIND",
    ])
}

/// Building blocks that matter to the canonical rules and to the tables.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "/", "//", ".", "..", "%2e", "%2E", "%252e", "%2F", "%2f", "%252F", "%5c", "\\", "%00",
            "\u{1}", ";", "?", "#", "%", "%zz", "~", "é", " ", ":", "@", "+", "-",
            "api", "v4", "v3", "projects", "repos", "repository", "branches", "commits", "raw",
            "files", "archive.zip", "info", "refs", "git-upload-pack", "git-receive-pack", ".git",
            "_git", "_apis", "scm", "service=git-upload-pack", "service=git-receive-pack", "42",
            "0123abc", "group", "repo", "group%2Frepo", "legacy.tar.gz", "http://", "private_token=s",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9._~%/-]{0,12}",
    ]
}

/// A rule's example, mutated by inserting, replacing or appending pieces — so that most
/// targets are near misses of real rules rather than noise.
fn target() -> impl Strategy<Value = String> {
    let examples: Vec<&'static str> = Vendor::ALL
        .iter()
        .flat_map(|v| v.rules().iter().map(|r| r.example))
        .collect();
    (prop::sample::select(examples), edits()).prop_map(|(example, edits)| mutate(example, edits))
}

type Edit = (prop::sample::Index, String, u8);

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec((any::<prop::sample::Index>(), piece(), 0u8..3), 0..4)
}

fn mutate(example: &str, edits: Vec<Edit>) -> String {
    let mut t = example.to_owned();
    for (at, p, op) in edits {
        let mut i = at.index(t.len() + 1);
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        match op {
            0 => t.insert_str(i, &p),
            1 => {
                let end = t[i..].find('/').map_or(t.len(), |e| i + e);
                t.replace_range(i..end, &p);
            }
            _ => t.push_str(&p),
        }
    }
    t
}

/// A vendor, a method and a target around one of the vendor's own rules: usually the
/// rule's method, and zero to three edits of its example.
fn request() -> impl Strategy<Value = (Vendor, &'static str, String)> {
    let rows: Vec<(Vendor, &'static str, &'static str)> = Vendor::ALL
        .iter()
        .flat_map(|&v| {
            v.rules()
                .iter()
                .map(move |r| (v, r.methods[0].as_str(), r.example))
        })
        .collect();
    (
        prop::sample::select(rows),
        prop::bool::weighted(0.75),
        method(),
        edits(),
    )
        .prop_map(|((v, rule_method, example), keep, other, edits)| {
            (
                v,
                if keep { rule_method } else { other },
                mutate(example, edits),
            )
        })
}

/// An oracle independent of the crate: decode everything (repeatedly) and look for what
/// must never reach the server.
fn obviously_safe(target: &str) -> bool {
    if !target.starts_with('/') || target.contains('#') || !target.is_ascii() {
        return false;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path.contains("//") || path.contains('\\') || path.contains(';') {
        return false;
    }
    let mut level = path.to_owned();
    for _ in 0..6 {
        let segments_ok = level
            .split('/')
            .skip(1)
            .all(|s| !s.bytes().all(|b| b == b'.') || s.is_empty());
        if !segments_ok || level.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
            return false;
        }
        let next = percent_decode(&level);
        if next == level {
            break;
        }
        level = next;
    }
    true
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// The canonical form is the target itself: canonicalising twice changes nothing.
    #[test]
    fn canonicalize_is_idempotent(t in target()) {
        match canonicalize(&t) {
            Ok(c) => {
                prop_assert_eq!(c.as_str(), t.as_str());
                prop_assert_eq!(canonicalize(c.as_str()), Ok(c.clone()));
            }
            Err(d) => prop_assert_eq!(canonicalize(&t), Err(d)),
        }
    }

    /// Accepted only when some rule matches, and then the first rule in table order is the
    /// one reported; the same question always gets the same answer.
    #[test]
    fn first_matching_rule_decides((v, m, t) in request()) {
        let list = Allowlist::new(v, None);
        let rules = v.rules();
        let result = list.check(m, &t);
        prop_assert_eq!(&result, &list.clone().check(m, &t));
        match (&result, list.matching_rules(m, &t)) {
            (Ok(allowed), Ok(matching)) => {
                prop_assert!(!matching.is_empty());
                prop_assert_eq!(allowed.description, rules[matching[0]].description);
                prop_assert_eq!(allowed.codeload, rules[matching[0]].codeload);
                prop_assert!(obviously_safe(&t), "allowed but unsafe: {} {:?}", m, t);
                prop_assert!(canonicalize(&t).is_ok());
            }
            (Ok(_), Err(d)) => prop_assert!(false, "allowed yet not canonical: {}", d),
            (Err(denied), Ok(matching)) => {
                prop_assert!(matching.is_empty(), "{} {:?} matched {:?} but denied: {}", m, t, matching, denied);
                prop_assert!(
                    denied.reason.starts_with("no rule allows ")
                        || denied.reason == "encoded slash outside a project or ref segment",
                    "{}", denied.reason
                );
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, &b),
        }
    }

    /// With a project regex, an allowed request either has no project or a project that
    /// matches the whole regex; a denial for the project names it.
    #[test]
    fn project_regex_is_whole_match((v, m, t) in request()) {
        let re = project_pattern("group/repo|PLAT/infra|acme/infra|acme/platform/infra|42").unwrap();
        let list = Allowlist::new(v, Some(re.clone()));
        match list.check(m, &t) {
            Ok(a) => if let Some(p) = a.project {
                prop_assert!(["group/repo", "PLAT/infra", "acme/infra", "acme/platform/infra", "42"].contains(&p.as_str()), "{}", p);
            },
            Err(d) => if let Some(p) = d.reason.strip_prefix("project ") {
                let p = p.strip_suffix(" is not allowed").unwrap_or_default();
                prop_assert!(!re.is_match(p), "{}", p);
            },
        }
    }
}
