//! What operators read and scrape: logs, access lines, health and metrics.
//!
//! Logs go to stdout (supervisord and container runtimes collect it) as text or JSON lines
//! ([`logging`]); each request leaves one access line ([`access`]). Counters for Prometheus
//! live in [`metrics`] (agent) and [`gateway_metrics`] (gateway), written in the text format
//! by [`prometheus`]; the agent serves them with `/healthz` on an optional local port
//! ([`endpoint`]). Nothing secret is ever formatted into a line: query values of token-like
//! parameters are replaced by `***` ([`redact_target`]), and header values are only printed
//! through [`redact_header`]. This file holds that redaction, which every line relies on.

pub mod access;
pub mod endpoint;
pub mod gateway_metrics;
pub mod logging;
pub mod metrics;
pub mod prometheus;

pub use logging::LogFormat;

/// Starts text logging on stdout with `default_filter` unless `RUST_LOG` says otherwise.
pub fn init_logging(default_filter: &str) {
    logging::init(LogFormat::Text, None, default_filter);
}

/// Query parameters whose values are secrets, compared case-insensitively; any name that
/// contains `token`, `secret`, `password` or `signature` counts too.
const SECRET_PARAMETERS: &[&str] = &["key", "sig", "code", "client_secret", "auth"];

fn is_secret_parameter(name: &str) -> bool {
    // Servers decode parameter names (`private%5Ftoken` is `private_token`): so do we, twice
    // over, so no spelling of a secret's name slips past.
    let once = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let twice = percent_encoding::percent_decode_str(&once).decode_utf8_lossy();
    let name = twice.replace('+', " ").to_ascii_lowercase();
    SECRET_PARAMETERS.contains(&name.as_str())
        || ["token", "secret", "password", "passwd", "signature"]
            .iter()
            .any(|word| name.contains(word))
}

/// A request target fit for a log: values of token-like query parameters become `***`.
pub fn redact_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Headers whose values are always secret.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "private-token",
    "job-token",
    "cookie",
    "set-cookie",
    "x-api-key",
    "vcs-agent-key",
];

/// A header value fit for a log.
pub fn redact_header<'a>(name: &str, value: &'a str) -> &'a str {
    let lower = name.to_ascii_lowercase();
    if SECRET_HEADERS.contains(&lower.as_str()) || is_secret_parameter(&lower) {
        "***"
    } else {
        value
    }
}

/// Formats a header list for a debug dump, secrets masked.
pub fn redact_headers(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .map(|(n, v)| format!("{n}: {}", redact_header(n, v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_like_query_values_are_masked() {
        assert_eq!(
            redact_target("/api/v4/user?private_token=glpat-x&per_page=5&access_token=y&Token=z"),
            "/api/v4/user?private_token=***&per_page=5&access_token=***&Token=***"
        );
        assert_eq!(
            redact_target("/a?client_secret=s&sig=abc"),
            "/a?client_secret=***&sig=***"
        );
        assert_eq!(redact_target("/plain/path"), "/plain/path");
        assert_eq!(
            redact_target("/a?private%5Ftoken=glpat-x&%2570rivate_token=y&PRIVATE%5fTOKEN=z"),
            "/a?private%5Ftoken=***&%2570rivate_token=***&PRIVATE%5fTOKEN=***"
        );
        assert_eq!(redact_target("/x?flag"), "/x?flag");
    }

    #[test]
    fn secret_headers_are_masked() {
        for name in [
            "Authorization",
            "PRIVATE-TOKEN",
            "Cookie",
            "X-Gitlab-Token",
            "Proxy-Authorization",
        ] {
            assert_eq!(redact_header(name, "s3cr3t"), "***", "{name}");
        }
        assert_eq!(
            redact_header("Accept", "application/json"),
            "application/json"
        );
        let dump = redact_headers(&[("Authorization".into(), "Bearer s3cr3t".into())]);
        assert!(!dump.contains("s3cr3t"));
    }
}
