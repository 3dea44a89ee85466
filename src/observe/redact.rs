//! Every redaction in one place: what a log line, an error message or the panel may show of
//! a request target, a header, or a URL an operator configured.
//!
//! Secrets are recognised by name, never by value: a query parameter or a header whose name
//! says token, secret, auth, key, password, session or signature (and a few exact names such
//! as `code` and `sig`) has its value replaced by `***`. Query parameters are split on `&`
//! and on `;` (Rack and some older servers take both), so no separator hides one. Names are
//! percent-decoded twice before the comparison, because servers decode them
//! (`private%5Ftoken` is `private_token`). Header values that carry URLs (`Referer`,
//! `Location`, `Link`) have the queries inside them redacted the same way. A URL's
//! `user:password@` becomes `***@`.

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

/// Exact names (lower case) of query parameters whose values are secrets, besides those
/// matched by [`SECRET_WORDS`].
const SECRET_PARAMETERS: &[&str] = &["sig", "code", "pwd"];

/// A name containing one of these (lower case) names a secret.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "session",
    "key",
    "auth",
];

/// Headers whose values are secrets whatever [`SECRET_WORDS`] say.
const SECRET_HEADERS: &[&str] = &["cookie", "set-cookie"];

/// Whether a query parameter or header called `name` holds a secret.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let once = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let twice = percent_encoding::percent_decode_str(&once).decode_utf8_lossy();
    let name = twice.replace('+', " ").trim().to_ascii_lowercase();
    if SECRET_PARAMETERS.contains(&name.as_str()) || SECRET_HEADERS.contains(&name.as_str()) {
        return true;
    }
    // `author`, `author_id`, `authored_date` name people and dates, not credentials.
    let without_author = name.replace("authoriz", "auth").replace("author", "");
    SECRET_WORDS
        .iter()
        .any(|word| without_author.contains(word))
}

/// A query (what follows `?`, without it) with the values of secret parameters masked;
/// separators (`&`, `;`) and everything else stay as they were.
pub(crate) fn query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for piece in query.split_inclusive(['&', ';']) {
        let (pair, separator) = match piece.strip_suffix(['&', ';']) {
            Some(pair) => (pair, &piece[pair.len()..]),
            None => (piece, ""),
        };
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        out.push_str(separator);
    }
    out
}

/// A request target (`/path?query#fragment`) fit for a log: the path as it is, secret query
/// and fragment parameters masked, cut to [`super::escape::MAX_VALUE`] bytes with a marker.
pub(crate) fn target(target: &str) -> String {
    let masked = match target.split_once('?') {
        Some((path, rest)) => format!("{path}?{}", query_and_fragment(rest)),
        None => match target.split_once('#') {
            Some((path, fragment)) => format!("{path}#{}", query(fragment)),
            None => target.to_string(),
        },
    };
    match super::escape::value(&masked) {
        std::borrow::Cow::Owned(cut) => cut,
        std::borrow::Cow::Borrowed(_) => masked,
    }
}

fn query_and_fragment(rest: &str) -> String {
    match rest.split_once('#') {
        Some((q, fragment)) => format!("{}#{}", query(q), query(fragment)),
        None => query(rest),
    }
}

/// A header value fit for a log: `***` for a secret header, else the value with the query
/// of any URL in it redacted (`Referer`, `Location`, `Link`).
pub(crate) fn header(name: &str, value: &str) -> String {
    if is_secret_name(name) {
        return MASK.to_string();
    }
    if !value.contains(['?', '#']) {
        return value.to_string();
    }
    // A URL in a header value ends at white space, `>` (Link) or a quote.
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(['?', '#']) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '>' | '"' | '\''))
            .unwrap_or(tail.len());
        out.push_str(&target(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A header list for a debug dump, secrets masked.
pub(crate) fn headers(headers: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    headers
        .iter()
        .map(|(n, v)| (n.as_ref(), v.as_ref()))
        .map(|(n, v)| format!("{n}: {}", header(n, v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A URL an operator configured, fit for an error message or a log: `user:password@`
/// becomes `***@` and secret query parameters are masked. Any `@` before the query counts
/// as the end of credentials, so a password with a stray `@` or `/` is masked whole.
pub(crate) fn url(text: &str) -> String {
    let query_at = text.find(['?', '#']).unwrap_or(text.len());
    let (before, after) = text.split_at(query_at);
    let before = match before.rfind('@') {
        Some(at) => {
            let start = before.find("://").map_or(0, |i| i + 3);
            if at >= start {
                format!("{}{MASK}{}", &before[..start], &before[at..])
            } else {
                before.to_string()
            }
        }
        None => before.to_string(),
    };
    format!("{before}{}", target(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_like_query_values_are_masked_whatever_the_separator() {
        assert_eq!(
            target("/api/v4/user?private_token=glpat-x&per_page=5&access_token=y&Token=z"),
            "/api/v4/user?private_token=***&per_page=5&access_token=***&Token=***"
        );
        assert_eq!(
            target("/a?client_secret=s&sig=abc&api_key=k&session_id=s"),
            "/a?client_secret=***&sig=***&api_key=***&session_id=***"
        );
        assert_eq!(
            target("/a?x=1;private_token=glpat-x;y=2&auth=z"),
            "/a?x=1;private_token=***;y=2&auth=***"
        );
        assert_eq!(target("/plain/path"), "/plain/path");
        assert_eq!(
            target("/a?private%5Ftoken=glpat-x&%2570rivate_token=y&PRIVATE%5fTOKEN=z"),
            "/a?private%5Ftoken=***&%2570rivate_token=***&PRIVATE%5fTOKEN=***"
        );
        assert_eq!(target("/x?flag"), "/x?flag");
        assert_eq!(target("/x?a=1#access_token=t"), "/x?a=1#access_token=***");
        assert_eq!(
            target("/commits?author=alice&author_email=a@b"),
            "/commits?author=alice&author_email=a@b"
        );
    }

    #[test]
    fn secret_headers_are_masked_by_name() {
        for name in [
            "Authorization",
            "PRIVATE-TOKEN",
            "Cookie",
            "Set-Cookie",
            "X-Gitlab-Token",
            "Proxy-Authorization",
            "X-Auth",
            "X-Api-Key",
            "X-Session-Id",
            "X-Secret",
            "X-Password",
            "vcs-agent-key",
        ] {
            assert_eq!(header(name, "s3cr3t"), "***", "{name}");
        }
        assert_eq!(header("Accept", "application/json"), "application/json");
        let dump = headers(&[("Authorization", "Bearer s3cr3t")]);
        assert!(!dump.contains("s3cr3t"));
    }

    #[test]
    fn urls_inside_header_values_lose_their_secrets() {
        assert_eq!(
            header("Referer", "https://gl/a?x=1;private_token=t"),
            "https://gl/a?x=1;private_token=***"
        );
        assert_eq!(
            header(
                "Link",
                "<https://gl/api?page=2&private_token=t>; rel=\"next\", <https://gl/api?page=1&private_token=t>; rel=\"first\""
            ),
            "<https://gl/api?page=2&private_token=***>; rel=\"next\", <https://gl/api?page=1&private_token=***>; rel=\"first\""
        );
    }

    #[test]
    fn url_credentials_and_query_secrets_are_masked() {
        assert_eq!(url("http://u:pw@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(url("http://u:p@ss@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(url("u:pw@proxy:3128"), "***@proxy:3128");
        assert_eq!(url("http://u:p/w@host/x"), "http://***@host/x");
        assert_eq!(
            url("https://u:pw@gl/x?private_token=t#f"),
            "https://***@gl/x?private_token=***#f"
        );
        assert_eq!(url("http://host:80/a?b=c"), "http://host:80/a?b=c");
    }
}
