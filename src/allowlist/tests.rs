use super::matcher::CompiledRule;
use super::*;

/// The ways the tests ask: the path alone, or a whole request, with ids settled or left.
pub(super) trait Entry {
    fn check(&self, method: &str, target: &str) -> Result<Allowed, Denied>;
    fn decide_target(&self, method: &str, target: &str) -> Result<Decision, Denied>;
    fn check_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(impl AsRef<str>, impl AsRef<str>)],
        has_body: bool,
    ) -> Result<Allowed, Denied>;
}

impl Entry for Allowlist {
    fn check(&self, method: &str, target: &str) -> Result<Allowed, Denied> {
        self.decide_target(method, target)
            .and_then(Decision::settle)
    }

    fn decide_target(&self, method: &str, target: &str) -> Result<Decision, Denied> {
        self.decide(method, target, &[] as &[(&str, &str)], false)
    }

    fn check_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(impl AsRef<str>, impl AsRef<str>)],
        has_body: bool,
    ) -> Result<Allowed, Denied> {
        self.decide(method, target, headers, has_body)
            .and_then(Decision::settle)
    }
}
use std::fmt;
use std::sync::Arc;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const NO_HEADERS: &[(&str, &str)] = &[];

fn open(vendor: Vendor) -> Allowlist {
    Allowlist::new(vendor, None)
}

fn reason(vendor: Vendor, method: &str, target: &str) -> String {
    match open(vendor).check(method, target) {
        Ok(a) => panic!("{vendor} {method} {target} allowed as {a:?}"),
        Err(d) => d.reason,
    }
}

fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(p, _)| p)
}

#[test]
fn every_rule_compiles_and_descriptions_are_unique() {
    for vendor in Vendor::ALL {
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in vendor.rules().iter().enumerate() {
            if let Err(e) = CompiledRule::compile(i, rule) {
                panic!("{vendor} rule {i} ({}): {e}", rule.description);
            }
            assert!(
                seen.insert(rule.description),
                "{vendor}: duplicate description {:?}",
                rule.description
            );
        }
    }
}

#[test]
fn only_gitlab_uses_encoded_slash_parameters() {
    for vendor in Vendor::ALL {
        let uses = vendor
            .rules()
            .iter()
            .any(|r| r.pattern.contains("{encoded_"));
        assert_eq!(uses, vendor == Vendor::Gitlab, "{vendor}");
    }
}

/// Every rule's example is allowed by that very rule (so it is also the first match), for
/// each of its methods, and `HEAD` wherever `GET` is.
#[test]
fn every_rule_allows_its_example() {
    for vendor in Vendor::ALL {
        let list = open(vendor);
        for (i, rule) in vendor.rules().iter().enumerate() {
            let mut methods: Vec<&str> = rule.methods.iter().map(|m| m.as_str()).collect();
            if rule.methods.contains(&Method::Get) {
                methods.push("HEAD");
            }
            for method in methods {
                let allowed = list
                    .check(method, rule.example)
                    .unwrap_or_else(|d| panic!("{vendor} rule {i} {method} {}: {d}", rule.example));
                assert_eq!(
                    allowed.description, rule.description,
                    "{vendor} {method} {}",
                    rule.example
                );
                assert_eq!(allowed.codeload, rule.codeload);
                let first = list
                    .matching_rules(method, rule.example)
                    .ok()
                    .and_then(|v| v.first().copied());
                assert_eq!(first, Some(i), "{vendor} {}", rule.example);
            }
        }
    }
}

/// Every rule refuses its example under a method it does not list (unless another rule
/// of the table exists for that method), and at least one such method is denied.
#[test]
fn every_rule_denies_other_methods() {
    for vendor in Vendor::ALL {
        let list = open(vendor);
        for rule in vendor.rules() {
            let mut denied = 0;
            for method in METHODS {
                if rule.methods.iter().any(|m| m.allows(method)) {
                    continue;
                }
                match list.check(method, rule.example) {
                    Ok(a) => assert_ne!(
                        a.description, rule.description,
                        "{vendor} {method} {}",
                        rule.example
                    ),
                    Err(d) => {
                        assert_eq!(
                            d.reason,
                            format!("no rule allows {method} {}", path_of(rule.example))
                        );
                        denied += 1;
                    }
                }
            }
            assert!(
                denied > 0,
                "{vendor} {}: no wrong method denied",
                rule.example
            );
            let d = list
                .check("get", rule.example)
                .expect_err("lowercase method");
            assert!(d.reason.starts_with("no rule allows get "), "{}", d.reason);
        }
    }
}

/// Adding a segment to an allowed path never keeps it on the same rule, and a trailing
/// slash or a dot segment is never accepted.
#[test]
fn every_rule_denies_its_example_extended() {
    for vendor in Vendor::ALL {
        let list = open(vendor);
        for rule in vendor.rules() {
            let method = rule.methods[0].as_str();
            let (path, query) = match rule.example.split_once('?') {
                Some((p, q)) => (p, format!("?{q}")),
                None => (rule.example, String::new()),
            };
            for extended in [
                format!("{path}/extra{query}"),
                format!("{path}/..{query}"),
                format!("{path}/.{query}"),
            ] {
                if let Ok(a) = list.check(method, &extended) {
                    assert!(
                        a.description != rule.description || rule.pattern.contains("{*"),
                        "{vendor} {method} {extended} still allowed by {:?}",
                        rule.description
                    );
                    assert!(!extended.contains("/.."), "{extended}");
                }
            }
            if !path.ends_with('/') {
                let slash = format!("{path}/{query}");
                if let Ok(a) = list.check(method, &slash) {
                    assert_ne!(a.description, rule.description, "{vendor} {slash}");
                }
            }
        }
    }
}

/// With a project regex that matches nothing, every rule with a project is denied with
/// `project … is not allowed`, and every rule without one still passes.
#[test]
fn project_regex_applies_to_rules_with_a_project() {
    for vendor in Vendor::ALL {
        let open_list = open(vendor);
        let closed = Allowlist::new(
            vendor,
            Some(project_pattern("nothing/matches/this").unwrap()),
        );
        for rule in vendor.rules() {
            let method = rule.methods[0].as_str();
            let allowed = open_list.check(method, rule.example).unwrap();
            match (&allowed.project, closed.check(method, rule.example)) {
                (Some(p), Err(d)) if d.class == DenialClass::Project => {
                    // A project named by an id is denied as that id.
                    let id = p.rsplit('/').next().unwrap_or_default();
                    let shown = [
                        format!("project {p} is not allowed"),
                        format!("project {id} is not allowed"),
                    ];
                    assert!(
                        shown.contains(&d.reason),
                        "{vendor} {}: {}",
                        rule.example,
                        d.reason
                    )
                }
                (None, Ok(a)) => assert_eq!(a, allowed),
                (None, Err(d)) if !rule.project_params.is_empty() => {
                    assert_eq!(d.class, DenialClass::Project, "{}", d.reason);
                }
                (None, Err(d)) if rule.unscoped => {
                    assert!(
                        d.reason.ends_with(
                            "cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"
                        ),
                        "{}",
                        d.reason
                    )
                }
                (p, r) => panic!("{vendor} {}: project {p:?} gave {r:?}", rule.example),
            }
        }
    }
}

#[test]
fn projects_are_extracted_per_vendor() {
    let cases = [
        (
            Vendor::Gitlab,
            "GET",
            "/api/v4/projects/group%2Fsub%2Frepo/repository/branches",
            Some("group/sub/repo"),
        ),
        (
            Vendor::Gitlab,
            "GET",
            "/api/v4/projects/group%2fsub%2frepo",
            Some("group/sub/repo"),
        ),
        (
            Vendor::Gitlab,
            "GET",
            "/api/v4/projects/42/repository/commits/abcdef0",
            Some("42"),
        ),
        (
            Vendor::Gitlab,
            "GET",
            "/group/sub/repo.git/info/refs?service=git-upload-pack",
            Some("group/sub/repo"),
        ),
        (
            Vendor::Gitlab,
            "POST",
            "/group/repo.git/git-upload-pack",
            Some("group/repo"),
        ),
        (Vendor::Gitlab, "GET", "/api/v4/user", None),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/1.0/projects/PLAT/repos/infra/branches",
            Some("PLAT/infra"),
        ),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/scm/~jdoe/tools.git/info/refs?service=git-upload-pack",
            Some("~jdoe/tools"),
        ),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/1.0/projects/~jdoe/repos/tools",
            Some("~jdoe/tools"),
        ),
        (
            Vendor::GithubEnterprise,
            "GET",
            "/api/v3/repos/acme/infra/pulls/3",
            Some("acme/infra"),
        ),
        (
            Vendor::GithubEnterprise,
            "GET",
            "/repos/acme/infra/pulls/3",
            Some("acme/infra"),
        ),
        (
            Vendor::GithubEnterprise,
            "GET",
            "/acme/infra/legacy.tar.gz/main",
            Some("acme/infra"),
        ),
        (Vendor::GithubEnterprise, "POST", "/api/graphql", None),
        (
            Vendor::AzureDevops,
            "GET",
            "/acme/My%20Project/_apis/git/repositories/infra/items?path=/x",
            Some("acme/My Project/infra"),
        ),
        (
            Vendor::AzureDevops,
            "GET",
            "/acme/platform/_git/infra/info/refs?service=git-upload-pack",
            Some("acme/platform/infra"),
        ),
    ];
    for (vendor, method, target, project) in cases {
        let allowed = open(vendor)
            .check(method, target)
            .unwrap_or_else(|d| panic!("{target}: {d}"));
        assert_eq!(allowed.project.as_deref(), project, "{target}");
    }
}

#[test]
fn project_regex_is_anchored() {
    let list = Allowlist::new(Vendor::Gitlab, Some(project_pattern("group/repo").unwrap()));
    assert!(list.check("GET", "/api/v4/projects/group%2Frepo").is_ok());
    for evil in [
        "evilgroup%2Frepo2",
        "group%2Frepo2",
        "evilgroup%2Frepo",
        "group%2Frepo%2Fx",
        "a%2Fgroup%2Frepo",
    ] {
        let target = format!("/api/v4/projects/{evil}");
        let d = list.check("GET", &target).unwrap_err();
        assert!(
            d.reason.starts_with("project ") && d.reason.ends_with(" is not allowed"),
            "{}",
            d.reason
        );
    }
    assert_eq!(
        list.check("GET", "/api/v4/projects/group%2Fsecret")
            .unwrap_err()
            .reason,
        "project group/secret is not allowed"
    );
    // Alternation is wrapped too: `a|b` must not become `^a|b$`.
    let alt = project_pattern("group/a|group/b").unwrap();
    assert!(alt.is_match("group/a") && alt.is_match("group/b"));
    assert!(!alt.is_match("group/abc") && !alt.is_match("xgroup/b"));
    assert!(project_pattern("(").is_err());
}

#[test]
fn git_smart_http_is_fetch_only() {
    let cases = [
        (
            Vendor::Gitlab,
            "/g/r.git/info/refs",
            "/g/r.git/git-upload-pack",
            "/g/r.git/git-receive-pack",
        ),
        (
            Vendor::BitbucketDatacenter,
            "/scm/K/r.git/info/refs",
            "/scm/K/r.git/git-upload-pack",
            "/scm/K/r.git/git-receive-pack",
        ),
        (
            Vendor::GithubEnterprise,
            "/o/r.git/info/refs",
            "/o/r.git/git-upload-pack",
            "/o/r.git/git-receive-pack",
        ),
        (
            Vendor::AzureDevops,
            "/o/p/_git/r/info/refs",
            "/o/p/_git/r/git-upload-pack",
            "/o/p/_git/r/git-receive-pack",
        ),
    ];
    for (vendor, refs, upload, receive) in cases {
        let list = open(vendor);
        assert!(
            list.check("GET", &format!("{refs}?service=git-upload-pack"))
                .is_ok(),
            "{refs}"
        );
        assert!(
            list.check("HEAD", &format!("{refs}?service=git-upload-pack"))
                .is_ok(),
            "{refs}"
        );
        assert!(list.check("POST", upload).is_ok(), "{upload}");
        for query in [
            "?service=git-receive-pack",
            "",
            "?",
            "?service=git-upload-pack&x=1",
            "?SERVICE=git-upload-pack",
        ] {
            let target = format!("{refs}{query}");
            assert_eq!(
                reason(vendor, "GET", &target),
                format!("no rule allows GET {refs}"),
                "{target}"
            );
        }
        assert_eq!(
            reason(vendor, "POST", receive),
            format!("no rule allows POST {receive}")
        );
        assert!(list.check("GET", upload).is_err());
        assert!(list
            .check("POST", &format!("{refs}?service=git-upload-pack"))
            .is_err());
    }
}

#[test]
fn denial_reasons() {
    let g = Vendor::Gitlab;
    let long = format!("/api/v4/{}", "a".repeat(8200));
    let long_query = format!("/api/v4/user?{}", "a".repeat(8193));
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "POST",
            "/api/v4/projects/1/repository/commits",
            "no rule allows POST /api/v4/projects/1/repository/commits",
        ),
        (
            "GET",
            "/api/v4/nope?private_token=secret",
            "no rule allows GET /api/v4/nope",
        ),
        (
            "GET",
            "/api/v4/projects/1/repository/../../user",
            "dot segment in path",
        ),
        (
            "GET",
            "/api/v4/projects/1/repository/%2e%2E/x",
            "dot segment in path",
        ),
        (
            "GET",
            "/api/v4/projects/1/repository/%252e%252e/x",
            "dot segment in path",
        ),
        ("GET", "/api/v4/projects/1/./user", "dot segment in path"),
        (
            "GET",
            "/api/v4/projects/g%2F..%2Fsecret",
            "dot segment in path",
        ),
        ("GET", "/api/v4//user", "empty segment in path"),
        ("GET", "//api/v4/user", "empty segment in path"),
        ("GET", "/api/v4/projects/g%2F%2Fr", "empty segment in path"),
        ("GET", "/api\\v4/user", "backslash in path"),
        ("GET", "/api/v4/projects/1%5c..", "backslash in path"),
        ("GET", "/api/v4/us\ter", "control character in path"),
        ("GET", "/api/v4/user%00", "control character in path"),
        ("GET", "/api/v4/user%0d%0aX:1", "control character in path"),
        (
            "GET",
            "/api/v4/projects/1/repository/tree%2Fx",
            "encoded slash outside a project or ref segment",
        ),
        (
            "GET",
            "/api/v4/projects/g%252Fr",
            "double-encoded slash in path",
        ),
        ("GET", "/api/v4/us\u{e9}r", "non-ASCII byte in path"),
        ("GET", "http://internal/api/v4/user", "absolute-form target"),
        (
            "GET",
            "HTTPS://internal/api/v4/user",
            "absolute-form target",
        ),
        ("GET", "api/v4/user", "target does not start with /"),
        ("GET", "*", "target does not start with /"),
        ("GET", "", "target does not start with /"),
        ("GET", "/api/v4/user#frag", "fragment in target"),
        ("GET", &long, "path longer than 8192 bytes"),
        ("GET", &long_query, "query longer than 8192 bytes"),
        ("GET", "/api/v4/user?a=\n", "control character in query"),
        ("GET", "/api/v4/user?a=%00", "control character in query"),
        ("GET", "/api/v4/user?a=\u{e9}", "non-ASCII byte in query"),
        ("GET", "/api/v4/user?a=b c", "invalid character in query"),
        (
            "GET",
            "/api/v4/user?a=%zz",
            "malformed percent-encoding in query",
        ),
        ("GET", "/api/v4/us%er", "malformed percent-encoding in path"),
        ("GET", "/api/v4/user;x", "semicolon in path"),
        ("GET", "/api/v4/..;/user", "semicolon in path"),
        ("GET", "/api/v4/us er", "invalid character in path"),
        (
            "GET",
            "/api/v4/us%252525252e",
            "percent-encoding nested too deep in path",
        ),
        ("OPTIONS", "/api/v4/user", "method OPTIONS is never allowed"),
        ("TRACE", "/api/v4/user", "method TRACE is never allowed"),
        ("CONNECT", "/api/v4/user", "method CONNECT is never allowed"),
        ("GE T", "/api/v4/user", "invalid method"),
        ("", "/api/v4/user", "invalid method"),
        (
            "PROPFIND",
            "/api/v4/user",
            "no rule allows PROPFIND /api/v4/user",
        ),
    ];
    for (method, target, want) in cases {
        assert_eq!(reason(g, method, target), want, "{method} {target:?}");
    }
    for vendor in [
        Vendor::BitbucketDatacenter,
        Vendor::GithubEnterprise,
        Vendor::AzureDevops,
    ] {
        assert_eq!(
            reason(vendor, "GET", "/repos/acme%2Finfra/x"),
            "encoded slash outside a project or ref segment"
        );
    }
    assert_eq!(
        reason(
            Vendor::GithubEnterprise,
            "GET",
            "/api/v3/repos/acme/infra%2F..%2F..%2Fuser"
        ),
        "dot segment in path"
    );
}

#[test]
fn secrets_in_query_are_never_echoed() {
    for target in [
        "/nope?private_token=SECRET",
        "/api/v4/projects/x%2Fy?private_token=SECRET",
    ] {
        let list = Allowlist::new(Vendor::Gitlab, Some(project_pattern("a/b").unwrap()));
        let d = list.check("GET", target).unwrap_err();
        assert!(!d.reason.contains("SECRET"), "{}", d.reason);
    }
}

#[test]
fn gitlab_file_paths_anywhere_in_the_tree() {
    let list = open(Vendor::Gitlab);
    for ok in [
        "/api/v4/projects/g%2Fr/repository/files/README.md/raw?ref=main",
        "/api/v4/projects/g%2Fr/repository/files/a%2Fb%2Fc%2Fmain.tf/raw",
        "/api/v4/projects/g%2Fr/repository/files/dir%20with%20space%2Fx.yml/raw",
        "/api/v4/projects/g%2Fr/repository/files/%C3%A9t%C3%A9.txt/raw",
    ] {
        assert_eq!(
            list.check("GET", ok).unwrap().description,
            "Get raw file",
            "{ok}"
        );
    }
    for bad in [
        "/api/v4/projects/g%2Fr/repository/files/a%2F..%2F..%2Fsecret/raw",
        "/api/v4/projects/g%2Fr/repository/files/%2Fetc%2Fpasswd/raw",
        "/api/v4/projects/g%2Fr/repository/files/a%2F%2Fb/raw",
        "/api/v4/projects/g%2Fr/repository/files/a%2F%2e/raw",
    ] {
        assert!(list.check("GET", bad).is_err(), "{bad}");
    }
}

#[test]
fn github_codeload_and_archives() {
    let list = open(Vendor::GithubEnterprise);
    for (target, codeload) in [
        ("/acme/infra/legacy.tar.gz/main", true),
        ("/acme/infra/legacy.zip/refs/heads/main", true),
        ("/acme/infra/tar.gz/v1.0", true),
        ("/acme/infra/zip/0123abc", true),
        ("/_codeload/acme/infra/legacy.tar.gz/main", false),
        ("/codeload/acme/infra/zip/main", false),
        ("/api/v3/repos/acme/infra/zipball/main", false),
        ("/repos/acme/infra/tarball/main", false),
    ] {
        let a = list
            .check("GET", target)
            .unwrap_or_else(|d| panic!("{target}: {d}"));
        assert_eq!(a.codeload, codeload, "{target}");
        assert_eq!(a.project.as_deref(), Some("acme/infra"), "{target}");
    }
    assert!(list.check("GET", "/acme/infra/legacy.tar.gz").is_err());
    assert!(list
        .check("GET", "/api/v3/api/v3/repos/acme/infra")
        .is_err());
    assert!(list.check("GET", "/api/repos/acme/infra").is_err());
}

#[test]
fn canonicalize_returns_the_target_unchanged() {
    for target in ["/a/b%2Fc?x=1", "/", "/api/v4/", "/x?", "/a%252Fb"] {
        match canonicalize(target) {
            Ok(c) => {
                assert_eq!(c.as_str(), target);
                assert_eq!(canonicalize(c.as_str()), Ok(c.clone()));
            }
            Err(d) => assert_eq!(target, "/a%252Fb", "{target}: {d}"),
        }
    }
    let c = canonicalize("/a/b?x=1?y").unwrap();
    assert_eq!((c.path(), c.query()), ("/a/b", Some("x=1?y")));
    assert_eq!(canonicalize("/a").unwrap().query(), None);
}

#[test]
fn vendor_names_round_trip() {
    for vendor in Vendor::ALL {
        assert_eq!(vendor.as_str().parse::<Vendor>(), Ok(vendor));
    }
    assert_eq!(
        "x".parse::<Vendor>(),
        Err("expected one of gitlab, bitbucket_datacenter, github_enterprise, azure_devops, got \"x\"".to_owned())
    );
    assert!("GitLab".parse::<Vendor>().is_err());
}

#[test]
fn allowlist_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Allowlist>();
    let a = open(Vendor::Gitlab);
    let b = a.clone();
    assert!(Arc::ptr_eq(&a.inner, &b.inner));
}

fn restricted(vendor: Vendor, re: &str) -> Allowlist {
    Allowlist::new(vendor, Some(project_pattern(re).unwrap()))
}

fn description(vendor: Vendor, method: &str, target: &str) -> &'static str {
    match open(vendor).check(method, target) {
        Ok(a) => a.description,
        Err(d) => panic!("{vendor} {method} {target}: {d}"),
    }
}

#[test]
fn every_rule_names_its_source() {
    for vendor in Vendor::ALL {
        for rule in vendor.rules() {
            assert!(
                rule.source.contains("https://"),
                "{vendor} {:?} has no source",
                rule.description
            );
        }
    }
}

#[test]
fn refs_with_slashes_pass_where_a_rule_declares_a_ref() {
    let cases = [
        (
            Vendor::Gitlab,
            "/api/v4/projects/5/repository/branches/feature%2Fx",
            "Get branch",
        ),
        (
            Vendor::Gitlab,
            "/api/v4/projects/5/repository/commits/feature%2Fx",
            "Get commit",
        ),
        (
            Vendor::Gitlab,
            "/api/v4/projects/5/repository/commits/release%2F1.2/statuses",
            "List commit statuses",
        ),
        (
            Vendor::Gitlab,
            "/api/v4/projects/5/repository/tags/release%2F1.2",
            "Get tag",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/branches/feature/x",
            "Get branch",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/branches/a/b/c",
            "Get branch",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/compare/main...feature/x",
            "Compare commits",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/commits/feature%2Fx",
            "Get commit (or a read below it)",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/commits/feature/x",
            "Get commit (or a read below it)",
        ),
        (
            Vendor::BitbucketDatacenter,
            "/rest/api/1.0/projects/K/repos/r/commits/refs%2Fheads%2Fmain",
            "Get commit",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/tarball/feature%2Fx",
            "Download repository archive",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/git/ref/heads/feature/x",
            "Get reference",
        ),
        (
            Vendor::GithubEnterprise,
            "/api/v3/repos/o/r/git/matching-refs/heads/feature/",
            "List matching references (prefix ending in /)",
        ),
    ];
    for (vendor, target, want) in cases {
        assert_eq!(description(vendor, "GET", target), want, "{target}");
    }
}

#[test]
fn every_piece_of_a_ref_is_still_checked() {
    for target in [
        "/api/v4/projects/5/repository/branches/feature%2F..",
        "/api/v4/projects/5/repository/branches/..%2Fx",
        "/api/v4/projects/5/repository/branches/a%2F%2Fb",
        "/api/v4/projects/5/repository/branches/a%2F.",
        "/api/v4/projects/5/repository/branches/%2e%2e%2Fx",
        "/api/v4/projects/5/repository/branches/a%252F..",
    ] {
        assert!(
            open(Vendor::Gitlab).check("GET", target).is_err(),
            "{target}"
        );
    }
    for target in [
        "/api/v3/repos/o/r/branches/feature/../../../user",
        "/api/v3/repos/o/r/branches/feature/%2e%2e",
        "/api/v3/repos/o/r/compare/main...feature/..",
        "/api/v3/repos/o/r/compare/main...feature//x",
        "/api/v3/repos/o/r/commits/feature%2F..%2F..",
        "/api/v3/repos/o/r/git/ref/heads/x%252F..",
        // A ref spelled across segments never reaches branch protection.
        "/api/v3/repos/o/r/branches/main/protection",
        "/api/v3/repos/o/r/branches/main/protection/restrictions",
    ] {
        assert!(
            open(Vendor::GithubEnterprise).check("GET", target).is_err(),
            "{target}"
        );
    }
    // Refs stay where the rule declares them: not in literals, projects or other values.
    assert_eq!(
        reason(
            Vendor::GithubEnterprise,
            "GET",
            "/api/v3/repos/o/r/pulls/8%2Ffiles"
        ),
        "encoded slash outside a project or ref segment"
    );
    assert!(open(Vendor::BitbucketDatacenter)
        .check(
            "GET",
            "/rest/api/1.0/projects/K/repos/r/commits/refs%2F..%2Fx"
        )
        .is_err());
    assert!(open(Vendor::BitbucketDatacenter)
        .check("GET", "/rest/api/1.0/projects/K/repos/r/branches%2Fx")
        .is_err());
}

#[test]
fn a_ref_in_another_repository_is_denied_while_projects_are_restricted() {
    let target = "/api/v3/repos/acme/infra/compare/main...other:feature";
    assert_eq!(
        description(Vendor::GithubEnterprise, "GET", target),
        "Compare commits"
    );
    let list = restricted(Vendor::GithubEnterprise, "acme/.*");
    assert!(list
        .check("GET", "/api/v3/repos/acme/infra/compare/main...feature/x")
        .is_ok());
    for target in [
        target,
        "/api/v3/repos/acme/infra/compare/main...other%3Afeature",
        "/api/v3/repos/acme/infra/compare/other:infra:main...feature",
    ] {
        let d = list.check("GET", target).unwrap_err();
        assert!(
            d.reason.starts_with("a ref in another repository"),
            "{target}: {d}"
        );
    }
}

#[test]
fn rules_the_issue_names_are_allowed() {
    let cases = [
        (
            Vendor::Gitlab,
            "GET",
            "/api/v4/projects/5/merge_requests/1/changes",
        ),
        (
            Vendor::Gitlab,
            "GET",
            "/api/v4/projects/5/merge_requests/1/versions",
        ),
        (
            Vendor::Gitlab,
            "GET",
            "/api/v4/projects/5/merge_requests/1/diffs?page=2",
        ),
        (Vendor::Gitlab, "GET", "/api/v4/projects/5/repository/tags"),
        (
            Vendor::Gitlab,
            "GET",
            "/group/repo/info/refs?service=git-upload-pack",
        ),
        (Vendor::Gitlab, "POST", "/group/sub/repo/git-upload-pack"),
        (
            Vendor::GithubEnterprise,
            "GET",
            "/api/v3/repos/o/r/git/trees/main?recursive=1",
        ),
        (Vendor::GithubEnterprise, "GET", "/repos/o/r/tags"),
        (
            Vendor::GithubEnterprise,
            "POST",
            "/api/v3/repos/o/r/pulls/3/reviews",
        ),
        (
            Vendor::GithubEnterprise,
            "GET",
            "/o/r/info/refs?service=git-upload-pack",
        ),
        (Vendor::GithubEnterprise, "POST", "/o/r/git-upload-pack"),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/1.0/projects/K/repos/r/pull-requests/2/commits",
        ),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/1.0/projects/K",
        ),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/latest/projects/K/repos",
        ),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/1.0/projects/K/repos/r/tags",
        ),
        (
            Vendor::BitbucketDatacenter,
            "GET",
            "/rest/api/1.0/projects/K/repos/r/files?at=main",
        ),
        (Vendor::AzureDevops, "OPTIONS", "/acme/_apis"),
        (
            Vendor::AzureDevops,
            "POST",
            "/acme/p/_apis/git/repositories/r/itemsBatch?api-version=7.1",
        ),
        (
            Vendor::AzureDevops,
            "GET",
            "/acme/p/_apis/git/repositories/r/pullRequests/4/iterations/1/changes",
        ),
        (
            Vendor::AzureDevops,
            "GET",
            "/acme/p/_apis/git/pullRequests/4",
        ),
    ];
    for (vendor, method, target) in cases {
        if let Err(d) = open(vendor).check(method, target) {
            panic!("{vendor} {method} {target}: {d}");
        }
    }
    // Without `.git`, the project is still every segment before the git suffix.
    let a = open(Vendor::Gitlab)
        .check("POST", "/group/sub/repo/git-upload-pack")
        .unwrap();
    assert_eq!(a.project.as_deref(), Some("group/sub/repo"));
    // Push stays denied in every spelling.
    for (vendor, target) in [
        (Vendor::Gitlab, "/group/repo/git-receive-pack"),
        (Vendor::GithubEnterprise, "/o/r/git-receive-pack"),
        (Vendor::BitbucketDatacenter, "/scm/K/r/git-receive-pack"),
    ] {
        assert!(open(vendor).check("POST", target).is_err(), "{target}");
        assert!(open(vendor)
            .check(
                "GET",
                &format!(
                    "{}/info/refs?service=git-receive-pack",
                    target.trim_end_matches("/git-receive-pack")
                )
            )
            .is_err());
    }
}

#[test]
fn bitbucket_personal_repositories_in_both_spellings_are_one_project() {
    let list = restricted(Vendor::BitbucketDatacenter, "~jdoe/tools");
    for target in [
        "/rest/api/1.0/users/jdoe/repos/tools/commits?until=main",
        "/rest/api/1.0/projects/~jdoe/repos/tools/commits?until=main",
        "/rest/api/latest/users/jdoe/repos/tools/pull-requests/1/commits",
    ] {
        let a = list
            .check("GET", target)
            .unwrap_or_else(|d| panic!("{target}: {d}"));
        assert_eq!(a.project.as_deref(), Some("~jdoe/tools"));
    }
    assert_eq!(
        list.check("GET", "/rest/api/1.0/users/eve/repos/tools")
            .unwrap_err()
            .reason,
        "project ~eve/tools is not allowed"
    );
    // atlassian-python-api's spelling, `users/~jdoe`, is the same owner.
    for target in [
        "/rest/api/1.0/users/~jdoe/repos/tools",
        "/rest/api/1.0/users/~jdoe/repos/tools/commits?until=main",
    ] {
        let a = list
            .check("GET", target)
            .unwrap_or_else(|d| panic!("{target}: {d}"));
        assert_eq!(a.project.as_deref(), Some("~jdoe/tools"));
    }
}

#[test]
fn options_only_for_azure_resource_location_discovery() {
    assert!(open(Vendor::AzureDevops)
        .check("OPTIONS", "/acme/_apis")
        .is_ok());
    for target in [
        "/acme/_apis/connectionData",
        "/acme/p/_apis/git/repositories",
        "/acme/_apis/",
        "/acme/p/_apis",
    ] {
        assert_eq!(
            reason(Vendor::AzureDevops, "OPTIONS", target),
            format!("no rule allows OPTIONS {target}")
        );
    }
    for vendor in [
        Vendor::Gitlab,
        Vendor::GithubEnterprise,
        Vendor::BitbucketDatacenter,
    ] {
        assert_eq!(
            reason(vendor, "OPTIONS", "/acme/_apis"),
            "method OPTIONS is never allowed"
        );
    }
    let with_options: Vec<_> = Vendor::ALL
        .iter()
        .flat_map(|v| v.rules())
        .filter(|r| r.methods.contains(&Method::Options))
        .collect();
    assert_eq!(with_options.len(), 1);
    assert_eq!(with_options[0].methods, &[Method::Options]);
}

#[test]
fn percent_encoding_must_be_utf8() {
    for target in [
        "/api/v4/projects/%C0%AE%C0%AE",
        "/api/v4/projects/a%C0%AFb",
        "/api/v4/projects/%ED%A0%80",
        "/api/v4/projects/a%80b",
        "/api/v4/projects/%E2%82",
        "/api/v4/projects/%25C0%25AE",
    ] {
        assert_eq!(
            reason(Vendor::Gitlab, "GET", target),
            "percent-encoding in path is not UTF-8",
            "{target}"
        );
    }
    assert_eq!(
        reason(Vendor::Gitlab, "GET", "/api/v4/projects?search=%C0%AE"),
        "percent-encoding in query is not UTF-8"
    );
    // Valid multi-byte UTF-8 is fine.
    assert!(open(Vendor::AzureDevops)
        .check("GET", "/acme/Pr%C3%B6jekt/_apis/git/repositories/r")
        .is_ok());
    assert!(open(Vendor::Gitlab)
        .check("GET", "/api/v4/projects?search=caf%C3%A9")
        .is_ok());
}

#[test]
fn path_overrides_are_denied() {
    let list = open(Vendor::AzureDevops);
    let target = "/org/proj/_apis/git/repositories/repo/commits/abc";
    for name in ["X-Original-URL", "x-rewrite-url"] {
        let headers = [(name.to_string(), "/org/_apis/projects".to_string())];
        assert_eq!(
            list.check_request("GET", target, &headers, false)
                .unwrap_err()
                .reason,
            format!(
                "path override header {} is not allowed",
                name.to_ascii_lowercase()
            )
        );
    }
    assert!(list.check_request("GET", target, NO_HEADERS, false).is_ok());
}

#[test]
fn method_overrides_are_denied() {
    let list = open(Vendor::Gitlab);
    let target = "/api/v4/projects/5/statuses/0123456789abcdef0123456789abcdef01234567";
    let header = |name: &str| vec![(name.to_string(), "DELETE".to_string())];
    assert!(list.check_request("POST", target, NO_HEADERS, true).is_ok());
    for name in [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
    ] {
        assert_eq!(
            list.check_request("POST", target, &header(name), true)
                .unwrap_err()
                .reason,
            format!(
                "method override header {} is not allowed",
                name.to_ascii_lowercase()
            )
        );
    }
    for query in [
        "_method=DELETE",
        "a=1&_method=PUT",
        "%5Fmethod=DELETE",
        "_method[]=x",
        "_method",
    ] {
        assert_eq!(
            reason(Vendor::Gitlab, "POST", &format!("{target}?{query}")),
            "method override parameter _method is not allowed",
            "{query}"
        );
    }
    // A GET carries no body: its parameters would reach the VCS unchecked.
    assert_eq!(
        list.check_request("GET", "/api/v4/user", NO_HEADERS, true)
            .unwrap_err()
            .reason,
        "a GET request may not carry a body"
    );
}

#[test]
fn projects_named_in_parameters_are_checked_like_the_path() {
    let list = restricted(Vendor::Gitlab, "group/.*|5");
    let compare = "/api/v4/projects/group%2Frepo/repository/compare?from=a&to=b";
    assert!(list.check("GET", compare).is_ok());
    let a = list
        .check("GET", &format!("{compare}&from_project_id=group%2Fother"))
        .unwrap();
    assert_eq!(a.other_projects, vec!["group/other"]);
    for (extra, project) in [
        ("from_project_id=99", "99"),
        ("from%5Fproject%5Fid=99", "99"),
        ("from_project_id=5&from_project_id=99", "99"),
        ("from_project_id[]=other%2Frepo", "other/repo"),
        ("x=1;from_project_id=99", "99"),
        ("from_project_id]=99", "99"),
        ("[from_project_id]=99", "99"),
    ] {
        assert_eq!(
            list.check("GET", &format!("{compare}&{extra}"))
                .unwrap_err()
                .reason,
            format!("project {project} (from from_project_id) is not allowed"),
            "{extra}"
        );
    }
    let bb = restricted(Vendor::BitbucketDatacenter, "PLAT/.*");
    let changes = "/rest/api/1.0/projects/PLAT/repos/infra/compare/changes?from=a&to=b";
    assert!(bb.check("GET", changes).is_ok());
    assert_eq!(
        bb.check("GET", &format!("{changes}&fromRepo=SECRET%2Fx"))
            .unwrap_err()
            .reason,
        "project SECRET/x (from fromRepo) is not allowed"
    );
}

fn graphql(
    list: &Allowlist,
    query: &str,
    variables: serde_json::Value,
) -> Result<BodyVerdict, Denied> {
    let allowed = list.check("POST", "/api/graphql").unwrap();
    let inspection = list
        .body_inspection("POST", &allowed, NO_HEADERS)
        .unwrap()
        .unwrap();
    let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
    list.check_body(inspection, body.as_bytes())
}

#[test]
fn graphql_queries_name_allowed_repositories_only() {
    let list = restricted(Vendor::GithubEnterprise, "acme/.*");
    let none = serde_json::Value::Null;
    let ok = [
        (
            r#"query Repo { repository(owner: "acme", name: "infra") { defaultBranchRef { name } } viewer { login } }"#,
            none.clone(),
        ),
        (
            r#"query($o: String!, $n: String!) { repository(owner: $o, name: $n) { id } }"#,
            serde_json::json!({"o": "acme", "n": "infra"}),
        ),
        (
            r#"query($n: String = "infra") { organization(login: "acme") { repository(name: $n) { id } } }"#,
            none.clone(),
        ),
        (
            r#"query { ...F } fragment F on Query { repository(owner: "acme", name: "infra") { ...G } } fragment G on Repository { pullRequests(first: 5) { nodes { number headRepository { nameWithOwner owner { login } } } } }"#,
            none.clone(),
        ),
        (r#"{ rateLimit { remaining } }"#, none.clone()),
        (
            r#"{ repository(owner: "acme", name: "infra") { owner { login } object(expression: "main") { ... on Commit { author { name email date user { login } } } } assignableUsers(first: 5) { totalCount pageInfo { hasNextPage endCursor } nodes { login name } } } }"#,
            none.clone(),
        ),
    ];
    for (query, variables) in ok.clone() {
        if let Err(d) = graphql(&list, query, variables) {
            panic!("{query}: {d}");
        }
    }
    let verdict = graphql(&list, ok[0].0, none.clone()).unwrap();
    assert_eq!(
        verdict.description.as_deref(),
        Some("GraphQL query Repo: repository, viewer")
    );
    assert_eq!(verdict.projects, vec!["acme/infra"]);

    let denied = [
        (r#"{ repository(owner: "other", name: "secret") { id } }"#, none.clone(), "project other/secret is not allowed"),
        (r#"query($o: String!) { repository(owner: $o, name: "secret") { id } }"#, serde_json::json!({"o": "other"}), "project other/secret is not allowed"),
        (r#"{ organization(login: "other") { repository(name: "secret") { id } } }"#, none.clone(), "project other/secret is not allowed"),
        (r#"{ ...F } fragment F on Query { user(login: "other") { repository(name: "x") { id } } }"#, none.clone(), "project other/x is not allowed"),
        (r#"{ node(id: "MDEwOlJlcG9zaXRvcnkx") { id } }"#, none.clone(), "GraphQL field node cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ nodes(ids: ["x"]) { id } }"#, none.clone(), "GraphQL field nodes cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ search(query: "x", type: REPOSITORY, first: 5) { repositoryCount } }"#, none.clone(), "GraphQL field search cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ viewer { repositories(first: 100) { nodes { name } } } }"#, none.clone(), "GraphQL field repositories cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ viewer { issues(first: 5) { nodes { title body } } } }"#, none.clone(), "GraphQL field issues cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ organization(login: "acme") { projectsV2(first: 1) { nodes { title } } } }"#, none.clone(), "GraphQL field projectsV2 cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ enterprise(slug: "x") { name } }"#, none.clone(), "GraphQL field enterprise cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ resource(url: "https://ghe/other/secret") { __typename } }"#, none.clone(), "GraphQL field resource cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme", name: "infra") { owner { ... on Organization { repository(name: "secret") { id } } } } }"#, none.clone(), "GraphQL repository without a literal or variable owner and name cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme", name: "infra") { pullRequest(number: 1) { headRepository { object(expression: "HEAD:x") { id } } } } }"#, none.clone(), "GraphQL field headRepository cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme", name: "fork") { parent { object(expression: "HEAD:secret") { id } } } }"#, none.clone(), "GraphQL field parent cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"query($o: String!) { repository(owner: $o, name: "x") { id } }"#, none.clone(), "GraphQL repository without a literal or variable owner and name cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ viewer { repository(name: "x") { id } } }"#, none.clone(), "GraphQL repository without a literal or variable owner and name cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"mutation { addComment(input: {subjectId: "x", body: "hi"}) { clientMutationId } }"#, none.clone(), "GraphQL mutation addComment addresses its object by global id, which cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"query Ok { viewer { login } } mutation Bad { deleteRef(input: {refId: "x"}) { clientMutationId } }"#, none.clone(), "GraphQL mutation deleteRef is not allowed"),
        (r#"subscription { x }"#, none.clone(), "GraphQL subscriptions are not allowed"),
        // Users and organizations reached from an allowed repository span other repositories.
        (r#"{ repository(owner: "acme", name: "infra") { mentionableUsers(first: 100) { nodes { pullRequests(first: 100) { nodes { title body } } } } } }"#, none.clone(), "GraphQL field pullRequests cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme", name: "infra") { owner { ... on User { issues(first: 5) { nodes { title body } } } } } }"#, none.clone(), "GraphQL field issues cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme", name: "infra") { collaborators { edges { node { organizations(first: 5) { nodes { projectsV2(first: 1) { nodes { title } } } } } } } } }"#, none.clone(), "GraphQL field organizations cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme", name: "infra") { pullRequest(number: 1) { author { ... on User { contributionsCollection { totalCommitContributions } } } } } }"#, none.clone(), "GraphQL field contributionsCollection cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
        (r#"{ repository(owner: "acme" name: "x") { "#, none.clone(), "GraphQL document does not parse"),
        (r#"{ ...Missing }"#, none.clone(), "GraphQL fragment is not defined"),
    ];
    for (query, variables, want) in denied {
        assert_eq!(
            graphql(&list, query, variables).unwrap_err().reason,
            want,
            "{query}"
        );
    }
}

#[test]
fn graphql_targets_carry_no_query() {
    let list = open(Vendor::GithubEnterprise);
    assert!(list.check("POST", "/api/graphql").is_ok());
    assert!(list.check("POST", "/graphql?").is_ok());
    for target in [
        "/api/graphql?variables=%7B%7D",
        "/graphql?query=x",
        "/api/graphql?x",
    ] {
        assert!(list.check("POST", target).is_err(), "{target}");
    }
}

#[test]
fn graphql_mutations_are_a_short_named_list() {
    let list = open(Vendor::GithubEnterprise);
    let none = serde_json::Value::Null;
    for (name, why) in graphql::MUTATIONS {
        assert!(!why.is_empty());
        let query = format!(r#"mutation {{ {name}(input: {{}}) {{ clientMutationId }} }}"#);
        assert!(graphql(&list, &query, none.clone()).is_ok(), "{name}");
    }
    // Writes to code, refs, settings and permissions: never.
    for name in [
        "createCommitOnBranch",
        "createRef",
        "updateRef",
        "updateRefs",
        "deleteRef",
        "mergePullRequest",
        "updateBranchProtectionRule",
        "deleteRepository",
        "updateRepository",
        "addCollaborator",
        "createDeployKey",
    ] {
        let query = format!(r#"mutation {{ {name}(input: {{}}) {{ clientMutationId }} }}"#);
        assert_eq!(
            graphql(&list, &query, none.clone()).unwrap_err().reason,
            format!("GraphQL mutation {name} is not allowed")
        );
    }
    // Unrestricted, queries pass whatever they name.
    assert!(graphql(
        &list,
        r#"{ node(id: "x") { id } search(query: "x", type: REPOSITORY) { repositoryCount } }"#,
        none
    )
    .is_ok());
}

#[test]
fn graphql_bodies_are_bounded() {
    let list = open(Vendor::GithubEnterprise);
    // The parser's own recursion limit refuses deep nesting before it can exhaust a stack.
    let deep = format!("{}{}", "{ a ".repeat(5000), "}".repeat(5000));
    assert_eq!(
        graphql(&list, &deep, serde_json::Value::Null)
            .unwrap_err()
            .reason,
        "GraphQL document does not parse"
    );
    let deep_enough = format!("{}{}", "{ a ".repeat(40), "}".repeat(40));
    if let Err(d) = graphql(&list, &deep_enough, serde_json::Value::Null) {
        panic!("{d}");
    }
    // Fragments that expand exponentially are cut off.
    let mut doc = String::from("{ ...F0 }");
    for i in 0..30 {
        doc.push_str(&format!(
            " fragment F{i} on Query {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    doc.push_str(" fragment F30 on Query { a }");
    assert_eq!(
        graphql(&list, &doc, serde_json::Value::Null)
            .unwrap_err()
            .reason,
        "GraphQL document expands to too many fields"
    );
    for body in [
        &br#"[{"query":"{a}"}]"#[..],
        br#"{"query":"{ viewer { login } }","query":"mutation { deleteRef(input: {}) { x } }"}"#,
        br#"{"query":"{a}","variables":{"o":"acme","o":"other"}}"#,
        br#"{"variables":{}}"#,
        br#"{"query":{"a":1}}"#,
    ] {
        assert_eq!(
            list.check_body(Inspection::Graphql, body)
                .unwrap_err()
                .reason,
            "GraphQL body is not a JSON object with a query string and unique keys",
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(list
        .check_body(
            Inspection::Graphql,
            br#"{"query":"{a}","variables":null,"operationName":null}"#
        )
        .is_ok());
}

#[test]
fn form_bodies_are_inspected_for_method_overrides() {
    let list = open(Vendor::Gitlab);
    let allowed = list
        .check(
            "POST",
            "/api/v4/projects/5/statuses/0123456789abcdef0123456789abcdef01234567",
        )
        .unwrap();
    let form = |ct: &str| vec![("Content-Type".to_string(), ct.to_string())];
    // Rack reads a body without a Content-Type as a form too.
    assert_eq!(
        list.body_inspection("POST", &allowed, NO_HEADERS).unwrap(),
        Some(Inspection::Form)
    );
    // Only for POST (`Rack::MethodOverride` looks at nothing else).
    let put = list
        .check("PUT", "/api/v4/projects/5/deployments/12")
        .unwrap();
    assert_eq!(list.body_inspection("PUT", &put, NO_HEADERS).unwrap(), None);
    assert_eq!(
        list.body_inspection("POST", &allowed, &form("application/json"))
            .unwrap(),
        None
    );
    assert_eq!(
        list.body_inspection(
            "POST",
            &allowed,
            &form("Application/X-WWW-Form-Urlencoded; charset=utf-8")
        )
        .unwrap(),
        Some(Inspection::Form)
    );
    assert_eq!(
        list.body_inspection("POST", &allowed, &form("multipart/form-data; boundary=x"))
            .unwrap_err()
            .reason,
        "multipart bodies are not allowed"
    );
    // Rack's media type ends at `,` too, an empty type is none, every multipart/* is parsed.
    for label in ["application/x-www-form-urlencoded,x", "", "  "] {
        assert_eq!(
            list.body_inspection("POST", &allowed, &form(label))
                .unwrap(),
            Some(Inspection::Form),
            "{label:?}"
        );
    }
    for label in ["multipart/mixed; boundary=x", "Multipart/Related"] {
        assert!(
            list.body_inspection("POST", &allowed, &form(label))
                .is_err(),
            "{label}"
        );
    }
    let gzipped = [
        (
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("Content-Encoding".to_string(), "gzip".to_string()),
    ];
    assert_eq!(
        list.body_inspection("POST", &allowed, &gzipped)
            .unwrap_err()
            .reason,
        "a body the agent must inspect may not carry a Content-Encoding"
    );
    assert!(list
        .check_body(Inspection::Form, b"state=success&name=ci")
        .is_ok());
    for body in [
        &b"state=success&_method=DELETE"[..],
        b"%5Fmethod=DELETE",
        b"_method[]=PUT",
    ] {
        assert_eq!(
            list.check_body(Inspection::Form, body).unwrap_err().reason,
            "method override parameter _method is not allowed"
        );
    }
}

#[test]
fn ids_the_regex_cannot_judge_are_left_to_resolve() {
    let gitlab = restricted(Vendor::Gitlab, "group/.*");
    let target = "/api/v4/projects/5/repository/branches";
    match gitlab.decide_target("GET", target).unwrap() {
        Decision::ById(allowed, id) => {
            assert_eq!(allowed.description, "List branches");
            assert_eq!((id.id.as_str(), id.scope.as_str()), ("5", ""));
            assert_eq!(id.lookup, "/api/v4/projects/5");
        }
        other => panic!("{other:?}"),
    }
    // `check` alone never lets an unresolved id through.
    assert_eq!(
        gitlab.check("GET", target).unwrap_err().reason,
        "project 5 is not allowed"
    );
    // An id the regex lists needs no lookup; a path is judged by the regex alone.
    let listed = restricted(Vendor::Gitlab, "group/.*|5");
    assert!(matches!(
        listed.decide_target("GET", target),
        Ok(Decision::Allowed(_))
    ));
    assert!(gitlab
        .decide_target("GET", "/api/v4/projects/other%2Fx")
        .is_err());
    // A digit-only project outside the API is a path, not an id.
    assert!(gitlab
        .decide_target("GET", "/5.git/info/refs?service=git-upload-pack")
        .is_err());

    let github = restricted(Vendor::GithubEnterprise, "acme/.*");
    for (target, lookup) in [
        (
            "/api/v3/repositories/1296269",
            "/api/v3/repositories/1296269",
        ),
        ("/repositories/1296269", "/repositories/1296269"),
    ] {
        match github.decide_target("GET", target).unwrap() {
            Decision::ById(_, id) => assert_eq!(id.lookup, lookup),
            other => panic!("{other:?}"),
        }
    }

    let azure = restricted(Vendor::AzureDevops, "acme/platform/.*");
    let guid = "3411ebc1-d5aa-464f-9615-0b527bc66719";
    let target = format!(
        "/Acme/platform/_apis/git/repositories/{}/commits",
        guid.to_uppercase()
    );
    match azure.decide_target("GET", &target).unwrap() {
        Decision::ById(_, id) => {
            assert_eq!((id.id.as_str(), id.scope.as_str()), (guid, "acme"));
            assert_eq!(
                id.lookup,
                format!(
                    "/Acme/platform/_apis/git/repositories/{}?api-version=5.0",
                    guid.to_uppercase()
                )
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(azure
        .decide_target("GET", "/acme/hr/_apis/git/repositories/infra")
        .is_err());
    // A project given by its GUID: the repository is resolved by name within it.
    let project_guid = "5E0C5B2A-9A53-4A8E-9E0D-0D7B2C1E6F00";
    for (target, lookup_repo) in [
        (
            format!("/acme/{project_guid}/_apis/git/repositories/My%20Repo/commits"),
            "My%20Repo",
        ),
        (
            format!("/acme/{project_guid}/_git/infra/info/refs?service=git-upload-pack"),
            "infra",
        ),
    ] {
        match azure.decide_target("GET", &target).unwrap() {
            Decision::ById(_, id) => {
                let repo = if lookup_repo == "infra" {
                    "infra"
                } else {
                    "My Repo"
                };
                assert_eq!(id.id, format!("{}/{repo}", project_guid.to_lowercase()));
                assert_eq!(
                    id.lookup,
                    format!(
                        "/acme/{project_guid}/_apis/git/repositories/{lookup_repo}?api-version=5.0"
                    )
                );
            }
            other => panic!("{target}: {other:?}"),
        }
    }

    let bitbucket = restricted(Vendor::BitbucketDatacenter, "PLAT/.*");
    assert!(bitbucket
        .decide_target("GET", "/rest/api/1.0/projects/5/repos/5")
        .is_err());
}

#[test]
fn listings_are_marked() {
    for (vendor, target) in [
        (Vendor::Gitlab, "/api/v4/projects?search=x"),
        (Vendor::GithubEnterprise, "/api/v3/user/repos"),
        (Vendor::GithubEnterprise, "/orgs/acme/repos"),
        (
            Vendor::GithubEnterprise,
            "/api/v3/installation/repositories",
        ),
        (Vendor::BitbucketDatacenter, "/rest/api/1.0/repos"),
        (
            Vendor::BitbucketDatacenter,
            "/rest/api/latest/projects/PLAT/repos",
        ),
        (Vendor::AzureDevops, "/acme/_apis/git/repositories"),
        (Vendor::AzureDevops, "/acme/platform/_apis/git/repositories"),
    ] {
        let allowed = open(vendor).check("GET", target).unwrap();
        assert!(allowed.listing, "{vendor} {target}");
    }
    let allowed = open(Vendor::Gitlab)
        .check("GET", "/api/v4/projects/5")
        .unwrap();
    assert!(!allowed.listing);
}

/// Each class, with the denials that belong to it: the reason, and the class set where
/// the denial is made. A denial moved to another class fails here.
fn assert_classes(class: DenialClass, denials: Vec<(Result<impl fmt::Debug, Denied>, &str)>) {
    for (result, reason) in denials {
        let denied = result.expect_err(reason);
        assert_eq!(denied.reason, reason);
        assert_eq!(denied.class, class, "{reason}");
    }
}

fn form_check(list: &Allowlist, body: &[u8]) -> Result<BodyVerdict, Denied> {
    list.check_body(Inspection::Form, body)
}

#[test]
fn project_denials_are_classed_project() {
    let github = restricted(Vendor::GithubEnterprise, "acme/.*");
    let gitlab = restricted(Vendor::Gitlab, "group/.*");
    let compare = "/api/v4/projects/group%2Frepo/repository/compare?from=a&to=b&from_project_id=";
    assert_classes(
        DenialClass::Project,
        vec![
            (
                github.check("GET", "/api/v3/repos/other/secret"),
                "project other/secret is not allowed",
            ),
            (
                gitlab.check("GET", "/api/v4/projects/5"),
                "project 5 is not allowed",
            ),
            (
                gitlab.check("GET", &format!("{compare}other%2Fx")),
                "project other/x (from from_project_id) is not allowed",
            ),
            (
                gitlab.check("GET", &format!("{compare}6")),
                "project 6 (from from_project_id) is not allowed",
            ),
        ],
    );
    let gql = graphql(
        &github,
        r#"{ repository(owner: "other", name: "secret") { id } }"#,
        serde_json::Value::Null,
    );
    assert_classes(
        DenialClass::Project,
        vec![(gql, "project other/secret is not allowed")],
    );
}

#[test]
fn unmatched_requests_are_classed_no_rule() {
    let list = open(Vendor::Gitlab);
    assert_classes(
        DenialClass::NoRule,
        vec![
            (
                list.check("GET", "/admin/secrets"),
                "no rule allows GET /admin/secrets",
            ),
            (
                list.check("DELETE", "/api/v4/projects/group%2Frepo"),
                "no rule allows DELETE /api/v4/projects/group%2Frepo",
            ),
        ],
    );
}

#[test]
fn method_denials_and_overrides_are_classed_method() {
    let list = open(Vendor::Gitlab);
    let status = "/api/v4/projects/5/statuses/0123456789abcdef0123456789abcdef01234567";
    let header = [("X-HTTP-Method-Override".to_string(), "DELETE".to_string())];
    assert_classes(
        DenialClass::Method,
        vec![
            (
                list.check("TRACE", "/api/v4/projects"),
                "method TRACE is never allowed",
            ),
            (list.check("GE T", "/api/v4/projects"), "invalid method"),
            (
                list.check("POST", &format!("{status}?_method=DELETE")),
                "method override parameter _method is not allowed",
            ),
            (
                list.check_request("POST", status, &header, false),
                "method override header x-http-method-override is not allowed",
            ),
        ],
    );
    assert_classes(
        DenialClass::Method,
        vec![(
            form_check(&list, b"state=success&_method=DELETE"),
            "method override parameter _method is not allowed",
        )],
    );
}

#[test]
fn target_header_and_body_denials_are_classed_path() {
    let gitlab = open(Vendor::Gitlab);
    let github = restricted(Vendor::GithubEnterprise, "acme/.*");
    let azure = restricted(Vendor::AzureDevops, "acme/.*");
    let rewrite = [("X-Original-URL".to_string(), "/admin".to_string())];
    assert_classes(
        DenialClass::Path,
        vec![
            (gitlab.check("GET", "/api/v4/projects/a/../b"), "dot segment in path"),
            (gitlab.check("GET", "http://x/api"), "absolute-form target"),
            (
                gitlab.check("GET", "/api/v4/projects/group%2Frepo/x%2Fy/z"),
                "encoded slash outside a project or ref segment",
            ),
            (
                gitlab.check_request("GET", "/api/v4/projects", &rewrite, false),
                "path override header x-original-url is not allowed",
            ),
            (
                gitlab.check_request("GET", "/api/v4/projects", NO_HEADERS, true),
                "a GET request may not carry a body",
            ),
            (
                github.check("GET", "/api/v3/repos/acme/infra/compare/main...other:main"),
                "a ref in another repository (owner:branch) cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
            ),
            (
                azure.check("GET", "/acme/platform/_apis/git/pullRequests/21"),
                "Get pull request by id (project-wide) names no repository, so it cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
            ),
        ],
    );
    assert_classes(
        DenialClass::Path,
        vec![
            (
                graphql(&github, "{ viewer { issues { totalCount } } }", serde_json::Value::Null),
                "GraphQL field issues cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS",
            ),
            (
                graphql(&github, "subscription { x }", serde_json::Value::Null),
                "GraphQL subscriptions are not allowed",
            ),
        ],
    );
    let status = "/api/v4/projects/5/statuses/0123456789abcdef0123456789abcdef01234567";
    let allowed = gitlab.check("POST", status).unwrap();
    let multipart = [(
        "Content-Type".to_string(),
        "multipart/form-data; boundary=x".to_string(),
    )];
    assert_classes(
        DenialClass::Path,
        vec![
            (
                gitlab.body_inspection("POST", &allowed, &multipart),
                "multipart bodies are not allowed",
            ),
            (
                Err(Inspection::Graphql.too_large()),
                "GraphQL body over 256 KiB cannot be inspected",
            ),
        ],
    );
}

/// What a CI/CD platform reads of one repository passes while projects are restricted.
#[test]
fn graphql_reads_of_one_repository_pass_while_restricted() {
    let list = restricted(Vendor::GithubEnterprise, "acme/.*");
    let query = r#"
        query PR($n: Int!) { repository(owner: "acme", name: "infra") {
            nameWithOwner isPrivate defaultBranchRef { name target { oid } }
            refs(refPrefix: "refs/heads/", first: 10) { edges { cursor node { name } } pageInfo { hasNextPage } }
            object(expression: "main:infra/main.tf") { ... on Blob { text byteSize isBinary } }
            tree: object(expression: "main:") { ... on Tree { entries { name path type object { oid } } } }
            pullRequest(number: $n) { ...PR }
            issues(first: 5) { nodes { number title labels(first: 5) { nodes { name } } comments(first: 5) { nodes { body author { login } } } } }
        } }
        fragment PR on PullRequest {
            number title body state isCrossRepository headRefName headRefOid baseRefName
            author { login ... on User { name } }
            headRepository { nameWithOwner owner { login } }
            labels(first: 10) { nodes { name color } }
            files(first: 100) { nodes { path additions deletions changeType } }
            comments(last: 20) { totalCount nodes { id body isMinimized viewerDidAuthor author { login } } }
            reviews(first: 10) { nodes { state body author { login } comments(first: 5) { nodes { path line body } } } }
            reviewRequests(first: 5) { nodes { requestedReviewer { ... on User { login } ... on Team { slug } } } }
            commits(last: 1) { nodes { commit {
                oid message committedDate author { name email user { login } }
                statusCheckRollup { state contexts(first: 50) { nodes {
                    __typename
                    ... on CheckRun { name status conclusion detailsUrl checkSuite { app { slug } } }
                    ... on StatusContext { context state targetUrl creator { login } }
                } } }
                checkSuites(first: 10) { nodes { status conclusion app { name } checkRuns(first: 10) { nodes { name conclusion annotations(first: 5) { nodes { path message location { start { line } } } } } } } }
                status { state contexts { context state description } }
            } } }
        }"#;
    let verdict = graphql(&list, query, serde_json::json!({"n": 7})).unwrap();
    assert_eq!(verdict.projects, vec!["acme/infra"]);
}

/// Fields inside an allowed repository that reach objects of another repository: denied
/// while restricted (the field no table lists is named), passed while unrestricted.
#[test]
fn graphql_fields_crossing_to_other_repositories_are_denied_while_restricted() {
    let list = restricted(Vendor::GithubEnterprise, "acme/.*");
    let open_list = open(Vendor::GithubEnterprise);
    let repo =
        |inner: &str| format!(r#"{{ repository(owner: "acme", name: "infra") {{ {inner} }} }}"#);
    let leaks = [
        (
            repo(
                r#"pullRequest(number: 1) { timelineItems(first: 50) { nodes { ... on CrossReferencedEvent { source { ... on Issue { title body } } target { ... on PullRequest { title } } } } } }"#,
            ),
            "timelineItems",
        ),
        (
            repo(
                r#"issue(number: 1) { timelineItems(first: 50) { nodes { ... on ConnectedEvent { subject { ... on Issue { body } } } } } }"#,
            ),
            "timelineItems",
        ),
        (
            repo(
                r#"issue(number: 1) { timelineItems(first: 50) { nodes { ... on MarkedAsDuplicateEvent { canonical { ... on Issue { body } } } } } }"#,
            ),
            "timelineItems",
        ),
        (
            repo(r#"issue(number: 1) { trackedIssues(first: 5) { nodes { title body } } }"#),
            "trackedIssues",
        ),
        (
            repo(r#"issue(number: 1) { trackedInIssues(first: 5) { nodes { title } } }"#),
            "trackedInIssues",
        ),
        (
            repo(
                r#"pullRequest(number: 1) { closingIssuesReferences(first: 5) { nodes { title body } } }"#,
            ),
            "closingIssuesReferences",
        ),
        (
            repo(
                r#"object(expression: "main") { ... on Commit { associatedPullRequests(first: 5) { nodes { title body } } } }"#,
            ),
            "associatedPullRequests",
        ),
        (
            repo(r#"defaultBranchRef { associatedPullRequests(first: 5) { nodes { body } } }"#),
            "associatedPullRequests",
        ),
        (
            repo(r#"forks(first: 5) { nodes { nameWithOwner } }"#),
            "forks",
        ),
        (repo(r#"parent { nameWithOwner }"#), "parent"),
        (
            repo(r#"templateRepository { object(expression: "HEAD:x") { id } }"#),
            "templateRepository",
        ),
        (
            repo(
                r#"pullRequest(number: 1) { headRef { repository { object(expression: "HEAD:x") { id } } } }"#,
            ),
            "repository",
        ),
        (
            repo(
                r#"object(expression: "main") { ... on Commit { checkSuites(first: 1) { nodes { matchingPullRequests(first: 5) { nodes { body } } } } } }"#,
            ),
            "matchingPullRequests",
        ),
        (
            repo(r#"pullRequest(number: 1) { projectItems(first: 5) { nodes { id } } }"#),
            "projectItems",
        ),
        (
            repo(r#"owner { ... on User { repositories(first: 5) { nodes { name } } } }"#),
            "repositories",
        ),
        (
            r#"{ organization(login: "acme") { repositories(first: 5) { nodes { name } } } }"#
                .to_string(),
            "repositories",
        ),
        (
            r#"{ user(login: "acme") { repositories(first: 5) { nodes { name } } } }"#.to_string(),
            "repositories",
        ),
        // A field no table lists, and a scalar asked to open up, are denied alike.
        (repo(r#"someFutureField { id }"#), "someFutureField"),
        (repo(r#"name { id }"#), "name"),
    ];
    for (query, field) in leaks {
        let denied = graphql(&list, &query, serde_json::Value::Null).unwrap_err();
        assert_eq!(
            denied.reason,
            format!("GraphQL field {field} cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"),
            "{query}"
        );
        assert_eq!(denied.class, DenialClass::Path);
        if let Err(d) = graphql(&open_list, &query, serde_json::Value::Null) {
            panic!("unrestricted {query}: {d}");
        }
    }
    // A fragment on a type no table narrows to cannot be checked either.
    let query = repo("... on PinnableItem { __typename }");
    assert_eq!(
        graphql(&list, &query, serde_json::Value::Null).unwrap_err().reason,
        "GraphQL fragment on PinnableItem cannot be checked against SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS"
    );
    assert!(graphql(&open_list, &query, serde_json::Value::Null).is_ok());
}
