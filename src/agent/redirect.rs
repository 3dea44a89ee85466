//! Redirects that would leave the tunnel, turned into ones that stay in it.
//!
//! GitHub's `…/tarball/{ref}` answers `302` to `codeload.<host>/…` (or `/_codeload/…` on the
//! main host), a place the caller cannot reach. A 3xx whose `Location` points into the VCS
//! (the base endpoint, its `codeload.` host, or a path under the base endpoint's path) is
//! rewritten so that a client which follows it comes back through the same pool and passes
//! the allowlist again.
//!
//! The agent does not know the URL the caller used (the gateway's front, maybe behind a load
//! balancer, and the pool's name), and needs not: the new `Location` is a *relative*
//! reference (RFC 3986 §5.2) that climbs from the request's own path back to the tunnel's
//! root with `../` and descends to the new target. The caller resolves it against the URL
//! it asked for, `…/private/<pool>/<request path>`, which gives `…/private/<pool>/<new path>`
//! whatever the host, scheme or prefix in front. For a request to `/api/v3/repos/o/r/tarball/main`
//! and `Location: https://codeload.ghe.corp/o/r/legacy.tar.gz/refs/heads/main`, the answer
//! says `Location: ../../../../../../o/r/legacy.tar.gz/refs/heads/main`.
//!
//! # Canonical first
//!
//! The `Location` is resolved the way the caller would resolve it, but against the VCS's own
//! URL of the request (RFC 3986 §5.2, with `%2E` read as the `.` it is equivalent to), and
//! only then compared with the base endpoints: `/gitlab/../gl2/x` is not under `/gitlab`,
//! and the reference that is sent never holds a dot segment, so the caller's own resolution
//! cannot climb out of the pool. A `Location` that names a place outside the base endpoints
//! is passed as the VCS meant it: an absolute URL untouched, and a reference (a path, or one
//! relative to the request) made absolute on the VCS's own origin, so the caller can never
//! read it against the gateway and land in another pool. One the agent cannot read for sure
//! (a dot segment hidden behind an encoded slash or a backslash, `..%2F..`) is removed: the
//! answer reaches the caller without anywhere to follow.

use crate::config::BaseEndpoint;
use crate::protocol::HeaderPairs;

/// Rewrites the `Location` of a 3xx answer to `target` (relative to `bases[0]`) when it
/// points into one of `bases`; see the module documentation for the others.
pub(crate) fn rewrite(
    status: u16,
    headers: &mut HeaderPairs,
    target: &str,
    bases: &[&BaseEndpoint],
) {
    let Some(main) = bases.first() else {
        return;
    };
    if !(300..400).contains(&status) {
        return;
    }
    headers.retain_mut(|(name, value)| {
        if !name.eq_ignore_ascii_case("location") {
            return true;
        }
        let Some(url) = resolve(value, main, target) else {
            // Another scheme (or none that reads as a URL): not a place in the VCS.
            return !unreadable(value);
        };
        if let Some(inside) = bases.iter().find_map(|base| url.below(base)) {
            *value = relative(target, &inside).into();
        } else if !has_scheme(value) {
            *value = url.to_string().into();
        }
        true
    });
}

/// The target (`/path?query`) that an absolute URL or an absolute path names below `base`,
/// its dot segments resolved first, if it names one: what [`super::rebase`] points back
/// through the front.
pub(crate) fn inside(reference: &str, base: &BaseEndpoint) -> Option<String> {
    if !(has_scheme(reference) || reference.starts_with('/')) {
        return None;
    }
    resolve(reference, base, "/")?.below(base)
}

/// A `Location` resolved to an absolute URL, its path without dot segments.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
    authority: String,
    path: String,
    /// `?query#fragment`, as sent.
    rest: String,
}

impl Url {
    /// The target (`/path?query`) this URL names below `base`, if it names one.
    fn below(&self, base: &BaseEndpoint) -> Option<String> {
        if !self.scheme.eq_ignore_ascii_case(&base.scheme)
            || plain(&self.authority, &base.scheme) != plain(&base.authority, &base.scheme)
        {
            return None;
        }
        let below = self.path.strip_prefix(base.path.as_str())?;
        let path = match below.chars().next() {
            None => "/",
            Some('/') => below,
            _ => return None,
        };
        Some(format!("{path}{}", self.rest))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}{}",
            self.scheme, self.authority, self.path, self.rest
        )
    }
}

/// An authority in lower case without the scheme's default port.
fn plain(authority: &str, scheme: &str) -> String {
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let lower = authority.to_ascii_lowercase();
    lower.strip_suffix(default).unwrap_or(&lower).to_string()
}

/// `scheme:` as in RFC 3986.
fn has_scheme(reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(scheme, _)| {
        let mut bytes = scheme.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    })
}

/// `location` resolved against the VCS's URL of `target` (on `base`), or `None` for a scheme
/// other than HTTP(S) or a reference that cannot be read.
fn resolve(location: &str, base: &BaseEndpoint, target: &str) -> Option<Url> {
    if unreadable(location) {
        return None;
    }
    let (reference, rest) = match location.find(['?', '#']) {
        Some(at) => location.split_at(at),
        None => (location, ""),
    };
    let (scheme, authority, path) = if has_scheme(reference) {
        let (scheme, after) = reference.split_once(':')?;
        let after = after.strip_prefix("//")?;
        let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
        let web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        web.then_some((scheme.to_string(), authority.to_string(), path.to_string()))?
    } else if let Some(after) = reference.strip_prefix("//") {
        let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
        (base.scheme.clone(), authority.to_string(), path.to_string())
    } else if reference.starts_with('/') {
        (
            base.scheme.clone(),
            base.authority.clone(),
            reference.to_string(),
        )
    } else {
        let own = target.split(['?', '#']).next().unwrap_or(target);
        let own = format!("{}{own}", base.path);
        let directory = &own[..own.rfind('/').map_or(0, |i| i + 1)];
        let path = if reference.is_empty() {
            own.clone()
        } else {
            format!("{directory}{reference}")
        };
        (base.scheme.clone(), base.authority.clone(), path)
    };
    Some(Url {
        scheme,
        authority,
        path: without_dots(&path),
        rest: rest.to_string(),
    })
}

/// Whether a segment is `.` or `..`, spelled plainly or with `%2E`.
fn dots(segment: &str) -> Option<usize> {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    match decoded.as_str() {
        "." => Some(1),
        ".." => Some(2),
        _ => None,
    }
}

/// A dot segment the agent cannot read for sure: behind an encoded slash or a backslash.
fn unreadable(location: &str) -> bool {
    let path = location.split(['?', '#']).next().unwrap_or(location);
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        let pieces = lower
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace('\\', "/");
        pieces != lower && pieces.split('/').any(|piece| dots(piece).is_some())
    })
}

/// RFC 3986 §5.2.4 on an absolute path (`%2E` counts as `.`).
fn without_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match dots(segment) {
            Some(n) => {
                if n == 2 {
                    out.pop();
                }
                // A dot segment at the end leaves the directory it names.
                if i == last {
                    out.push("");
                }
            }
            None => out.push(segment),
        }
    }
    format!("/{}", out.join("/"))
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
            "ftp://git.corp:8080/gitlab/x",
            "mailto:a@b",
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

    #[test]
    fn references_outside_the_base_are_made_absolute_on_the_vcs() {
        let main = base("http://git.corp:8080/gitlab");
        let bases = [&main];
        for (other, meant) in [
            ("/other/x", "http://git.corp:8080/other/x"),
            ("/gitlabx/y", "http://git.corp:8080/gitlabx/y"),
            (
                "//git.corp:8080/private/p2/x",
                "http://git.corp:8080/private/p2/x",
            ),
        ] {
            assert_eq!(location(302, other, "/a/b", &bases), meant);
        }
        // A reference relative to the request is read against the request's own path.
        assert_eq!(
            location(302, "relative/path", "/a/b", &bases),
            "../a/relative/path"
        );
    }

    #[test]
    fn dot_segments_are_resolved_before_anything_is_compared() {
        let main = base("https://git.corp/gl1");
        let bases = [&main];
        let target = "/api/v4/projects/5/repository/archive";
        for (from, to) in [
            // Out of the base by dot segments: the VCS's own URL, never a reference that
            // climbs out of the pool.
            ("/gl1/../gl2/x", "https://git.corp/gl2/x"),
            ("/gl1/%2e%2e/gl2/x", "https://git.corp/gl2/x"),
            // An absolute URL that leaves the base goes to the VCS's host as it was sent.
            (
                "https://git.corp/gl1/%2E%2E/%2e%2e/x",
                "https://git.corp/gl1/%2E%2E/%2e%2e/x",
            ),
            (
                "../../../../../../../private/other/x",
                "https://git.corp/private/other/x",
            ),
            // Back into the base: rewritten, with no dot segment left.
            ("/gl1/a/../api/v4/x", "../../../../../api/v4/x"),
            (
                "./blob/%2e/./raw",
                "../../../../../api/v4/projects/5/repository/blob/raw",
            ),
            ("..", "../../../../../api/v4/projects/5/"),
        ] {
            let got = location(302, from, target, &bases);
            assert_eq!(got, to, "{from}");
            assert!(!got.starts_with('/'), "{got}");
        }
        // Dots behind an encoded slash or a backslash: no Location at all.
        for hidden in ["/gl1/..%2F..%2Fgl2/x", "/gl1/a%5C..%5Cb", "x/%2e%2e%2fy"] {
            let mut headers = vec![("Location".into(), hidden.into())];
            rewrite(302, &mut headers, target, &bases);
            assert!(headers.is_empty(), "{hidden}: {headers:?}");
        }
        // An encoded slash without dots is a GitLab project id, kept.
        assert_eq!(
            location(302, "/gl1/api/v4/projects/g%2Fr", "/x", &bases),
            "./api/v4/projects/g%2Fr"
        );
    }
}
