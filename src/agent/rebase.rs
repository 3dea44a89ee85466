//! Answers that name the VCS, pointed back through the gateway.
//!
//! A VCS answers with its own absolute URLs: GitHub Enterprise's `url` and `*_url` fields
//! and pagination `Link` headers name `https://ghe.internal/api/v3/…`, GitLab's `Link` and
//! `_links` name `https://gitlab.internal/api/v4/…`, Azure DevOps's `url` and
//! `_links.*.href` name its own host. The SaaS cannot reach those hosts; a client library
//! that follows them (PyGithub's completed objects, every paginated listing) breaks. The
//! gateway tells the agent, with each request, the base URL the caller used
//! (`https://<gateway>/private/<pool>`, the `front` of the request frame), and the agent
//! rewrites every *API* URL on the VCS base endpoint (or its `codeload.` host) to the same
//! URL under that base:
//!
//! - headers `Link` (each `<…>`), `Content-Location`, and `Location` (a 3xx's `Location`
//!   into the VCS whatever its path, as [`super::redirect`] does without a front; any
//!   other status's only when it names an API URL);
//! - in a JSON body (`application/json` or `…+json`, not compressed), every string value
//!   that is such a URL. The body is rewritten as it passes ([`BodyRewriter`]): only a
//!   string that starts like a URL on the VCS is held, at most [`HELD_MAX`] bytes (a longer
//!   one passes as it is), so memory stays constant whatever the body's size and a URL
//!   split across two pieces is still found. An answer of known length up to
//!   [`WHOLE_MAX`] is read whole and leaves with its new `Content-Length`; a larger one, or
//!   one of unknown length, streams through the rewrite and the gateway sends it chunked.
//!
//! API URLs are the paths under the vendor's API prefixes and git's smart-HTTP paths
//! ([`api_path`]). Web-UI URLs (`html_url`, `web_url`, `_links.web.href`, pages a person
//! opens from inside the network) are left as the VCS sent them. Follow-up requests are
//! requests like any other: the allowlist judges each one.
//!
//! A compressed answer (`Content-Encoding` other than `identity`) cannot be read: it passes
//! untouched and the access line says so. While rewriting, the agent asks the VCS for
//! uncompressed answers ([`asks_identity`]), so this happens only with a VCS that
//! compresses anyway. `SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE` turns all of it off;
//! without a front (an older gateway) answers are as the VCS wrote them.
//!
//! The cost is per URL: a 130 KiB GitLab listing of 100 projects with 1 200 URLs on the VCS
//! costs the agent about 0.9 ms of CPU to rewrite (about 0.5 µs per URL; the same bytes with
//! no URL on the VCS are scanned in about 0.12 ms), and memory does not move. A SaaS that
//! pages through listings pays it once per page; an operator who would rather not turns the
//! rewrite off, and the SaaS then cannot follow the VCS's URLs.

use crate::allowlist::Vendor;
use crate::config::BaseEndpoint;
use crate::protocol::HeaderPairs;
use std::borrow::Cow;

/// The longest string value held to see whether it is a URL to rewrite; a longer one passes
/// as it is (no API URL is this long).
pub(crate) const HELD_MAX: usize = 8 * 1024;

/// The largest JSON answer of known length read whole, so that it leaves with its new
/// `Content-Length`; a larger one, or one of unknown length, is rewritten as it streams and
/// sent chunked.
pub(crate) const WHOLE_MAX: usize = 1024 * 1024;

/// Where answers point back to: the front, the VCS's bases and the vendor.
pub(crate) struct Rebase<'a> {
    /// The caller's base URL for the pool, without a trailing `/`.
    front: &'a str,
    main: &'a BaseEndpoint,
    codeload: &'a BaseEndpoint,
    vendor: Vendor,
    /// `scheme://authority/path` of the base endpoint and of its codeload host.
    origins: (String, String),
}

/// Whether a path may hold a dot segment (plain or `%2E`): such a URL takes the slow path,
/// which resolves it before it is compared with the base endpoint.
fn has_dots(rest: &str) -> bool {
    let path = rest.split(['?', '#']).next().unwrap_or(rest);
    path.split('/')
        .any(|s| s.starts_with('.') || s.to_ascii_lowercase().starts_with("%2e"))
}

impl<'a> Rebase<'a> {
    pub(crate) fn new(
        front: &'a str,
        main: &'a BaseEndpoint,
        codeload: &'a BaseEndpoint,
        vendor: Vendor,
    ) -> Rebase<'a> {
        let origin = |b: &BaseEndpoint| format!("{}://{}{}", b.scheme, b.authority, b.path);
        Rebase {
            origins: (origin(main), origin(codeload)),
            front: front.trim_end_matches('/'),
            main,
            codeload,
            vendor,
        }
    }

    /// The front URL for `url` when it is an absolute API URL on the VCS.
    pub(crate) fn url(&self, url: &str) -> Option<String> {
        let target = self.target(url)?;
        Some(format!("{}{target}", self.front))
    }

    /// The target (path and query) below the front of `url`, when it is an absolute API
    /// URL on the VCS.
    fn target<'u>(&self, url: &'u str) -> Option<Cow<'u, str>> {
        if !url.contains("://") {
            return None;
        }
        // The usual case, the base endpoint as configured, without copies.
        for (origin, codeload) in [(&self.origins.0, false), (&self.origins.1, true)] {
            let Some(head) = url.get(..origin.len()) else {
                continue;
            };
            let rest = &url[origin.len()..];
            if head.eq_ignore_ascii_case(origin) && rest.starts_with('/') && !has_dots(rest) {
                let api = codeload || api_path(self.vendor, rest);
                return api.then_some(Cow::Borrowed(rest));
            }
        }
        self.inside(url, false).map(Cow::Owned)
    }

    /// The front URL for a reference into the VCS (an absolute URL, or an absolute path);
    /// `any_path` takes every path, not only API ones.
    fn below(&self, reference: &str, any_path: bool) -> Option<String> {
        let target = self.inside(reference, any_path)?;
        Some(format!("{}{target}", self.front))
    }

    /// The target a reference into the VCS names ([`super::redirect::inside`]), when it is
    /// one to rewrite.
    fn inside(&self, reference: &str, any_path: bool) -> Option<String> {
        if let Some(t) = super::redirect::inside(reference, self.main) {
            (any_path || api_path(self.vendor, &t)).then_some(t)
        } else if self.codeload.host != self.main.host {
            super::redirect::inside(reference, self.codeload)
        } else {
            None
        }
    }

    /// Rewrites `Link`, `Location` and `Content-Location`; the number of URLs rewritten.
    pub(crate) fn headers(&self, status: u16, headers: &mut HeaderPairs) -> u64 {
        let mut count = 0;
        for (name, value) in headers.iter_mut() {
            let new = if name.eq_ignore_ascii_case("link") {
                self.link(value, &mut count)
            } else if name.eq_ignore_ascii_case("location") {
                self.below(value.trim(), (300..400).contains(&status))
            } else if name.eq_ignore_ascii_case("content-location") {
                self.below(value.trim(), false)
            } else {
                None
            };
            if let Some(new) = new {
                count += u64::from(!name.eq_ignore_ascii_case("link"));
                *value = Cow::Owned(new);
            }
        }
        count
    }

    /// A `Link` value (RFC 8288: `<url>; rel="next", <url>; rel="last"`) with each URL on
    /// the VCS rewritten, `None` when none is.
    fn link(&self, value: &str, count: &mut u64) -> Option<String> {
        let mut out = String::with_capacity(value.len() + 64);
        let mut rest = value;
        let before = *count;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let url = &rest[open + 1..open + close];
            out.push_str(&rest[..=open]);
            match self.url(url) {
                Some(new) => {
                    out.push_str(&new);
                    *count += 1;
                }
                None => out.push_str(url),
            }
            rest = &rest[open + close..];
        }
        out.push_str(rest);
        (*count > before).then_some(out)
    }

    /// The prefixes (`scheme://host`, lower case) a string must start with to be held.
    fn prefixes(&self) -> Vec<Vec<u8>> {
        let mut prefixes: Vec<Vec<u8>> = [self.main, self.codeload]
            .iter()
            .map(|b| {
                format!("{}://{}", b.scheme, b.host)
                    .to_ascii_lowercase()
                    .into_bytes()
            })
            .collect();
        prefixes.dedup();
        prefixes
    }
}

/// Whether `target` (a path below the base endpoint, with its query) is one of the
/// vendor's API or git paths rather than a page of its web UI.
pub(crate) fn api_path(vendor: Vendor, target: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let git = path.ends_with(".git")
        || path.contains(".git/")
        || path.ends_with("/info/refs")
        || path.ends_with("/git-upload-pack")
        || path.ends_with("/git-receive-pack");
    git || match vendor {
        Vendor::GithubEnterprise => {
            under("/api/v3")
                || under("/api/graphql")
                || under("/api/uploads")
                || under("/_codeload")
        }
        Vendor::Gitlab => under("/api/v4") || under("/api/graphql"),
        Vendor::BitbucketDatacenter => under("/rest") || under("/scm"),
        Vendor::AzureDevops => path.split('/').any(|segment| segment == "_apis"),
    }
}

/// Whether the body of an answer with these headers is JSON to rewrite: its type JSON,
/// its encoding none. `Err` names why a JSON body is left as it is.
pub(crate) fn json_body(headers: &HeaderPairs) -> Result<bool, &'static str> {
    let value = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.trim().to_ascii_lowercase())
    };
    let json = value("content-type").is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or("").trim().to_string();
        essence == "application/json" || essence.ends_with("+json")
    });
    let encoded = value("content-encoding").is_some_and(|e| !e.is_empty() && e != "identity");
    match (json, encoded) {
        (true, true) => Err("compressed"),
        (json, _) => Ok(json),
    }
}

/// Whether the agent asks the VCS for an uncompressed answer to `target` while rewriting:
/// every request but git's smart-HTTP ones, whose answers are never JSON.
pub(crate) fn asks_identity(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or(target);
    !(path.ends_with("/info/refs")
        || path.ends_with("/git-upload-pack")
        || path.ends_with("/git-receive-pack"))
}

/// Where the scan of a JSON body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between strings.
    Outside,
    /// In a string that may be a URL on the VCS: its bytes are held.
    Held { escaped: bool, matched: bool },
    /// In a string that is not: it passes.
    Passing { escaped: bool },
}

/// Rewrites the string values of a JSON body that are API URLs on the VCS, piece by piece.
/// A body that is not valid JSON is scanned all the same: only whole strings that decode to
/// such a URL change.
pub(crate) struct BodyRewriter<'a> {
    rebase: &'a Rebase<'a>,
    prefixes: Vec<Vec<u8>>,
    state: State,
    held: Vec<u8>,
    /// URLs rewritten so far.
    pub(crate) rewritten: u64,
}

impl<'a> BodyRewriter<'a> {
    pub(crate) fn new(rebase: &'a Rebase<'a>) -> BodyRewriter<'a> {
        BodyRewriter {
            prefixes: rebase.prefixes(),
            rebase,
            state: State::Outside,
            held: Vec::new(),
            rewritten: 0,
        }
    }

    /// Rewrites one piece into `out` (cleared first); what may be a URL split across the
    /// end of the piece is held for the next.
    pub(crate) fn piece(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(input.len() + input.len() / 8);
        while !input.is_empty() {
            input = match self.state {
                State::Outside => self.outside(input, out),
                State::Passing { escaped } => self.passing(input, escaped, out),
                State::Held { escaped, matched } => self.holding(input, escaped, matched, out),
            };
        }
    }

    /// A whole body, rewritten.
    pub(crate) fn whole(&mut self, body: &[u8]) -> Vec<u8> {
        let (mut all, mut rest) = (Vec::new(), Vec::new());
        self.piece(body, &mut all);
        self.finish(&mut rest);
        all.append(&mut rest);
        all
    }

    /// What is left held at the end of the body (a string never closed), as it came.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.append(&mut self.held);
        self.state = State::Outside;
    }

    fn outside<'i>(&mut self, input: &'i [u8], out: &mut Vec<u8>) -> &'i [u8] {
        match input.iter().position(|&b| b == b'"') {
            None => {
                out.extend_from_slice(input);
                &[]
            }
            Some(at) => {
                out.extend_from_slice(&input[..=at]);
                self.held.clear();
                let rest = &input[at + 1..];
                // Most strings are told apart by their first byte: they pass at once.
                let first = rest.first().map(u8::to_ascii_lowercase);
                let may_be = |first: u8| self.prefixes.iter().any(|p| p.first() == Some(&first));
                self.state = match (first, starts_like(rest, &self.prefixes)) {
                    (Some(first), _) if !may_be(first) => State::Passing { escaped: false },
                    (_, Some(false)) => State::Passing { escaped: false },
                    (_, matched) => State::Held {
                        escaped: false,
                        matched: matched == Some(true),
                    },
                };
                rest
            }
        }
    }

    fn passing<'i>(&mut self, input: &'i [u8], escaped: bool, out: &mut Vec<u8>) -> &'i [u8] {
        let (mut at, mut escaped) = (0, escaped);
        while at < input.len() {
            if escaped {
                (at, escaped) = (at + 1, false);
                continue;
            }
            match input[at..].iter().position(|&b| b == b'"' || b == b'\\') {
                None => at = input.len(),
                Some(p) if input[at + p] == b'"' => {
                    out.extend_from_slice(&input[..=at + p]);
                    self.state = State::Outside;
                    return &input[at + p + 1..];
                }
                Some(p) => (at, escaped) = (at + p + 1, true),
            }
        }
        out.extend_from_slice(input);
        self.state = State::Passing { escaped };
        &[]
    }

    fn holding<'i>(
        &mut self,
        input: &'i [u8],
        mut escaped: bool,
        mut matched: bool,
        out: &mut Vec<u8>,
    ) -> &'i [u8] {
        let mut at = 0;
        while at < input.len() {
            if matched && !escaped {
                // A URL on the VCS so far: up to the next quote or escape at once.
                let rest = &input[at..];
                let run = rest.iter().position(|&b| b == b'"' || b == b'\\');
                let run = run.unwrap_or(rest.len());
                self.held.extend_from_slice(&rest[..run]);
                at += run;
            }
            if self.held.len() > HELD_MAX {
                self.state = State::Passing { escaped };
                out.append(&mut self.held);
                return &input[at..];
            }
            let Some(&b) = input.get(at) else { break };
            at += 1;
            if !escaped && b == b'"' {
                self.close(out);
                return &input[at..];
            }
            self.held.push(b);
            escaped = !escaped && b == b'\\';
            if !matched && !escaped {
                match self.candidate() {
                    Some(whole) => matched = whole,
                    None => return self.release(&input[at..], out),
                }
            }
        }
        self.state = State::Held { escaped, matched };
        &[]
    }

    /// The held string is not a URL on the VCS: it passes, and so does the rest of it.
    fn release<'i>(&mut self, rest: &'i [u8], out: &mut Vec<u8>) -> &'i [u8] {
        out.append(&mut self.held);
        self.state = State::Passing { escaped: false };
        rest
    }

    /// Whether the held start may still be a URL on the VCS: `Some(true)` once a whole
    /// prefix is there, `Some(false)` while it is the start of one, `None` when it is not.
    /// JSON's `\/` counts as `/`; any other escape before the host ends the match.
    fn candidate(&self) -> Option<bool> {
        if !self.held.contains(&b'\\') {
            return prefix_state(&self.held, &self.prefixes);
        }
        let mut seen = Vec::with_capacity(self.held.len());
        let mut bytes = self.held.iter();
        while let Some(&b) = bytes.next() {
            if b == b'\\' {
                match bytes.next() {
                    Some(b'/') => seen.push(b'/'),
                    Some(_) => return None,
                    None => break,
                }
            } else {
                seen.push(b);
            }
        }
        prefix_state(&seen, &self.prefixes)
    }

    /// The held string ended: written back rewritten when it is an API URL on the VCS. One
    /// without escapes is its own text (the usual case, no decoding or encoding needed).
    fn close(&mut self, out: &mut Vec<u8>) {
        let plain = !self.held.contains(&b'\\');
        let url: Option<Cow<str>> = if plain {
            std::str::from_utf8(&self.held).ok().map(Cow::Borrowed)
        } else {
            let mut quoted = Vec::with_capacity(self.held.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(&self.held);
            quoted.push(b'"');
            serde_json::from_slice::<String>(&quoted)
                .ok()
                .map(Cow::Owned)
        };
        let escape = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        let front = self.rebase.front;
        let written = match url.as_deref().and_then(|url| self.rebase.target(url)) {
            Some(target) if plain && !front.bytes().any(escape) => {
                out.extend_from_slice(front.as_bytes());
                out.extend_from_slice(target.as_bytes());
                out.push(b'"');
                true
            }
            // The opening quote is out already.
            Some(target) => match serde_json::to_vec(&format!("{front}{target}")) {
                Ok(encoded) => {
                    out.extend_from_slice(&encoded[1..]);
                    true
                }
                Err(_) => false,
            },
            None => false,
        };
        if written {
            self.rewritten += 1;
        } else {
            out.extend_from_slice(&self.held);
            out.push(b'"');
        }
        self.held.clear();
        self.state = State::Outside;
    }
}

/// Whether a string whose text starts with `rest` is a URL on the VCS, told from the piece
/// at hand: `Some(true)` when a whole prefix is there, `Some(false)` when none can be, `None`
/// when the piece ends (or an escape comes) before that is clear.
fn starts_like(rest: &[u8], prefixes: &[Vec<u8>]) -> Option<bool> {
    let mut undecided = false;
    for prefix in prefixes {
        match rest.get(..prefix.len()) {
            Some(head) if !head.contains(&b'\\') => {
                if head.eq_ignore_ascii_case(prefix) {
                    return Some(true);
                }
            }
            _ => undecided = true,
        }
    }
    (!undecided).then_some(false)
}

/// Whether `seen` (a string's start, decoded) may still be one of `prefixes` (lower case):
/// `Some(true)` once it holds a whole one, `Some(false)` while it is the start of one.
fn prefix_state(seen: &[u8], prefixes: &[Vec<u8>]) -> Option<bool> {
    let mut partial = false;
    for prefix in prefixes {
        let n = seen.len().min(prefix.len());
        if seen[..n].eq_ignore_ascii_case(&prefix[..n]) {
            if seen.len() >= prefix.len() {
                return Some(true);
            }
            partial = true;
        }
    }
    partial.then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> BaseEndpoint {
        BaseEndpoint::parse(url).unwrap()
    }

    const FRONT: &str = "https://gw.example/private/ghe";

    fn rewrite_in_pieces(rebase: &Rebase, body: &str, size: usize) -> (String, u64) {
        let mut rewriter = BodyRewriter::new(rebase);
        let (mut all, mut out) = (Vec::new(), Vec::new());
        for piece in body.as_bytes().chunks(size) {
            rewriter.piece(piece, &mut out);
            all.extend_from_slice(&out);
        }
        rewriter.finish(&mut out);
        all.extend_from_slice(&out);
        (String::from_utf8(all).unwrap(), rewriter.rewritten)
    }

    #[test]
    fn api_urls_in_json_point_at_the_front_web_urls_stay() {
        let (main, codeload) = (
            base("https://ghe.internal"),
            base("https://codeload.ghe.internal"),
        );
        let rebase = Rebase::new(FRONT, &main, &codeload, Vendor::GithubEnterprise);
        let body = r#"{"url":"https://ghe.internal/api/v3/repos/o/r/pulls/1","html_url":"https://ghe.internal/o/r/pull/1","comments_url":"https:\/\/GHE.internal\/api\/v3\/repos\/o\/r\/issues\/1\/comments","clone_url":"https://ghe.internal/o/r.git","other":"https://elsewhere/api/v3/x","n":1,"q":"say \"https://ghe.internal/api/v3\"","tar":"https://codeload.ghe.internal/o/r/legacy.tar.gz/main"}"#;
        let expected = r#"{"url":"https://gw.example/private/ghe/api/v3/repos/o/r/pulls/1","html_url":"https://ghe.internal/o/r/pull/1","comments_url":"https://gw.example/private/ghe/api/v3/repos/o/r/issues/1/comments","clone_url":"https://gw.example/private/ghe/o/r.git","other":"https://elsewhere/api/v3/x","n":1,"q":"say \"https://ghe.internal/api/v3\"","tar":"https://gw.example/private/ghe/o/r/legacy.tar.gz/main"}"#;
        // Whole, and in every piece size down to one byte: a URL split across pieces is found.
        for size in [body.len(), 64, 7, 3, 1] {
            assert_eq!(
                rewrite_in_pieces(&rebase, body, size),
                (expected.into(), 4),
                "{size}"
            );
        }
    }

    #[test]
    fn a_string_too_long_to_be_a_url_passes_as_it_is() {
        let (main, codeload) = (
            base("https://ghe.internal"),
            base("https://codeload.ghe.internal"),
        );
        let rebase = Rebase::new(FRONT, &main, &codeload, Vendor::GithubEnterprise);
        let long = format!("https://ghe.internal/api/v3/{}", "a".repeat(HELD_MAX));
        let body = format!(r#"["{long}","https://ghe.internal/api/v3/x"]"#);
        let expected = format!(r#"["{long}","{FRONT}/api/v3/x"]"#);
        assert_eq!(rewrite_in_pieces(&rebase, &body, 1000), (expected, 1));
        // A body cut short inside a held string gives back what it held.
        let cut = r#"{"a":"https://ghe.inter"#;
        assert_eq!(rewrite_in_pieces(&rebase, cut, 5), (cut.into(), 0));
    }

    #[test]
    fn api_paths_of_each_vendor() {
        use Vendor::*;
        for (vendor, api, web) in [
            (GithubEnterprise, "/api/v3/repos/o/r", "/o/r/pull/1"),
            (GithubEnterprise, "/api/graphql", "/api/v3x"),
            (
                Gitlab,
                "/api/v4/projects/1?page=2",
                "/group/project/-/merge_requests/1",
            ),
            (
                BitbucketDatacenter,
                "/rest/api/1.0/projects",
                "/projects/P/repos/r/browse",
            ),
            (
                AzureDevops,
                "/org/proj/_apis/git/repositories/r",
                "/org/proj/_git/r",
            ),
            (
                AzureDevops,
                "/org/_apis/projects",
                "/org/proj/_git/r/pullrequest/1",
            ),
        ] {
            assert!(api_path(vendor, api), "{vendor:?} {api}");
            assert!(!api_path(vendor, web), "{vendor:?} {web}");
        }
        assert!(api_path(AzureDevops, "/org/proj/_git/r/info/refs"));
        assert!(api_path(Gitlab, "/group/project.git"));
    }

    #[test]
    fn headers_point_at_the_front() {
        let (main, codeload) = (
            base("http://git.corp:8080/gitlab"),
            base("http://codeload.git.corp:8080/gitlab"),
        );
        let rebase = Rebase::new("http://gw/private/p/", &main, &codeload, Vendor::Gitlab);
        let mut headers: HeaderPairs = vec![
            ("Link".into(), r#"<http://git.corp:8080/gitlab/api/v4/projects?page=2>; rel="next", <http://other/api/v4/x>; rel="last""#.into()),
            ("Location".into(), "http://git.corp:8080/gitlab/group/project".into()),
            ("Content-Location".into(), "http://git.corp:8080/gitlab/api/v4/projects/1".into()),
            ("X-Next-Page".into(), "2".into()),
        ];
        assert_eq!(rebase.headers(201, &mut headers), 2);
        assert_eq!(
            headers[0].1,
            r#"<http://gw/private/p/api/v4/projects?page=2>; rel="next", <http://other/api/v4/x>; rel="last""#
        );
        assert_eq!(
            headers[1].1, "http://git.corp:8080/gitlab/group/project",
            "a web page, not a redirect"
        );
        assert_eq!(headers[2].1, "http://gw/private/p/api/v4/projects/1");
        assert_eq!(headers[3].1, "2");
        // A redirect into the VCS comes back absolute, whatever its path.
        let mut headers: HeaderPairs = vec![("Location".into(), "/gitlab/group/project".into())];
        assert_eq!(rebase.headers(302, &mut headers), 1);
        assert_eq!(headers[0].1, "http://gw/private/p/group/project");
    }

    #[test]
    fn only_plain_json_is_rewritten() {
        let h = |pairs: &[(&'static str, &'static str)]| -> HeaderPairs<'static> {
            pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect()
        };
        assert_eq!(
            json_body(&h(&[("Content-Type", "application/json; charset=utf-8")])),
            Ok(true)
        );
        assert_eq!(
            json_body(&h(&[("content-type", "application/vnd.api+json")])),
            Ok(true)
        );
        assert_eq!(json_body(&h(&[("Content-Type", "text/html")])), Ok(false));
        assert_eq!(json_body(&h(&[])), Ok(false));
        assert_eq!(
            json_body(&h(&[
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip")
            ])),
            Err("compressed")
        );
        assert!(asks_identity("/api/v4/projects"));
        assert!(!asks_identity("/g/p.git/info/refs?service=git-upload-pack"));
    }
}
