//! Redirects that would leave the tunnel, turned into ones that stay in it.
//!
//! GitHub's `…/tarball/{ref}` answers `302` to `codeload.<host>/…` (or `/_codeload/…` on the
//! main host), a place the caller cannot reach. A 3xx whose `Location` points into the VCS
//! (the base endpoint, its `codeload.` host, or an absolute path under the base endpoint's
//! path) is rewritten so that a client which follows it comes back through the same pool
//! and passes the allowlist again; any other `Location` passes untouched.
//!
//! The agent does not know the URL the caller used (the gateway's front, maybe behind a load
//! balancer, and the pool's name), and needs not: the new `Location` is a *relative*
//! reference (RFC 3986 §5.2) that climbs from the request's own path back to the tunnel's
//! root with `../` and descends to the new target. The caller resolves it against the URL
//! it asked for, `…/private/<pool>/<request path>`, which gives `…/private/<pool>/<new path>`
//! whatever the host, scheme or prefix in front. For a request to `/api/v3/repos/o/r/tarball/main`
//! and `Location: https://codeload.ghe.corp/o/r/legacy.tar.gz/refs/heads/main`, the answer
//! says `Location: ../../../../../../o/r/legacy.tar.gz/refs/heads/main`.

use crate::config::BaseEndpoint;
use crate::protocol::HeaderPairs;

/// Rewrites the `Location` of a 3xx answer to `target` when it points into one of `bases`.
pub fn rewrite(status: u16, headers: &mut HeaderPairs, target: &str, bases: &[&BaseEndpoint]) {
    if !(300..400).contains(&status) {
        return;
    }
    for (name, value) in headers.iter_mut() {
        if name.eq_ignore_ascii_case("location") {
            if let Some(inside) = bases.iter().find_map(|base| inside(value, base)) {
                *value = relative(target, &inside).into();
            }
        }
    }
}

/// The target (`/path?query`) a `Location` names below `base`, if it names one.
pub(crate) fn inside(location: &str, base: &BaseEndpoint) -> Option<String> {
    let rest = if let Some(after) = location.strip_prefix("//") {
        same_origin(&format!("{}://{after}", base.scheme), base)?
    } else if location.starts_with('/') {
        location.to_string()
    } else {
        same_origin(location, base)?
    };
    let below = rest.strip_prefix(base.path.as_str())?;
    match below.chars().next() {
        None => Some("/".to_string()),
        Some('/') => Some(below.to_string()),
        Some('?') => Some(format!("/{below}")),
        _ => None,
    }
}

/// The path and query of an absolute URL on `base`'s scheme and authority.
fn same_origin(url: &str, base: &BaseEndpoint) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case(&base.scheme) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let default = if base.scheme == "https" {
        ":443"
    } else {
        ":80"
    };
    let plain = |a: &str| a.to_ascii_lowercase().trim_end_matches(default).to_string();
    (plain(authority) == plain(&base.authority)).then(|| path.to_string())
}

/// A relative reference that, resolved against `…/<target's path>`, gives `…/<inside>`.
fn relative(target: &str, inside: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let depth = path.matches('/').count().saturating_sub(1);
    let up = if depth == 0 {
        "./".to_string()
    } else {
        "../".repeat(depth)
    };
    format!("{up}{}", inside.strip_prefix('/').unwrap_or(inside))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> BaseEndpoint {
        BaseEndpoint::parse(url).unwrap()
    }

    fn location(status: u16, value: &str, target: &str, bases: &[&BaseEndpoint]) -> String {
        let mut headers = vec![("Location".into(), value.into())];
        rewrite(status, &mut headers, target, bases);
        headers[0].1.to_string()
    }

    #[test]
    fn locations_into_the_vcs_come_back_relative() {
        let main = base("https://ghe.corp");
        let codeload = base("https://codeload.ghe.corp");
        let bases = [&main, &codeload];
        let tarball = "/api/v3/repos/o/r/tarball/main";
        for (from, to) in [
            (
                "https://codeload.ghe.corp/o/r/legacy.tar.gz/refs/heads/main?token=t",
                "../../../../../../o/r/legacy.tar.gz/refs/heads/main?token=t",
            ),
            (
                "/_codeload/o/r/legacy.tar.gz/main",
                "../../../../../../_codeload/o/r/legacy.tar.gz/main",
            ),
            (
                "HTTPS://GHE.corp:443/api/v3/x",
                "../../../../../../api/v3/x",
            ),
            ("//ghe.corp/y", "../../../../../../y"),
        ] {
            assert_eq!(location(302, from, tarball, &bases), to, "{from}");
        }
        assert_eq!(location(301, "https://ghe.corp/a", "/x", &bases), "./a");
        assert_eq!(location(307, "/", "/a/b/", &bases), "../../");
    }

    #[test]
    fn other_locations_and_statuses_pass_untouched() {
        let main = base("http://git.corp:8080/gitlab");
        let bases = [&main];
        for other in [
            "https://elsewhere.example/x",
            "http://git.corp/gitlab/x",
            "https://git.corp:8080/gitlab/x",
            "/other/x",
            "/gitlabx/y",
            "relative/path",
            "ftp://git.corp:8080/gitlab/x",
        ] {
            assert_eq!(location(302, other, "/a/b", &bases), other);
        }
        assert_eq!(
            location(302, "http://git.corp:8080/gitlab/x?q", "/a/b", &bases),
            "../x?q"
        );
        assert_eq!(
            location(200, "http://git.corp:8080/gitlab/x", "/a/b", &bases),
            "http://git.corp:8080/gitlab/x"
        );
    }
}
