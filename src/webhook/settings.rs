//! The webhook listener's settings, read with the agent's other variables
//! ([`crate::config::SETTINGS`] lists them, `--help` and the README show them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const WEBHOOK_LISTEN: &str = "SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN";
pub const WEBHOOK_TLS_CERT: &str = "SPACELIFT_VCS_AGENT_WEBHOOK_TLS_CERT";
pub const WEBHOOK_TLS_KEY: &str = "SPACELIFT_VCS_AGENT_WEBHOOK_TLS_KEY";
pub const WEBHOOK_MAX_BODY: &str = "SPACELIFT_VCS_AGENT_WEBHOOK_MAX_BODY";
pub const WEBHOOK_CONCURRENCY: &str = "SPACELIFT_VCS_AGENT_WEBHOOK_CONCURRENCY";

/// The default body cap: GitHub's own payload cap, 25 MiB.
pub const DEFAULT_MAX_BODY: u64 = 25 * 1024 * 1024;
/// The default number of webhook deliveries handled at once.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Where the VCS posts its webhooks and what bounds the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    /// Certificate and key files (PEM) when the listener speaks HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest body accepted; a larger one is answered `413` without being read.
    pub max_body: u64,
    /// Deliveries handled at once; memory is bounded by `concurrency × max_body`.
    pub concurrency: usize,
}

/// A webhook setting the listener cannot run with: the variable and the problem (the agent's
/// configuration turns it into its one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub variable: &'static str,
    pub problem: String,
}

fn error(variable: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        variable,
        problem: problem.into(),
    }
}

/// The listener's settings; `None` when `SPACELIFT_VCS_AGENT_WEBHOOK_LISTEN` is unset (off).
pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Option<WebhookConfig>, SettingError> {
    let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(listen) = get(WEBHOOK_LISTEN) else {
        for name in [WEBHOOK_TLS_CERT, WEBHOOK_TLS_KEY] {
            if get(name).is_some() {
                return Err(error(name, format!("is set but {WEBHOOK_LISTEN} is not")));
            }
        }
        return Ok(None);
    };
    let listen = listen.parse().map_err(|_| {
        error(
            WEBHOOK_LISTEN,
            format!("expected an address such as 0.0.0.0:8080, got \"{listen}\""),
        )
    })?;
    let tls = match (get(WEBHOOK_TLS_CERT), get(WEBHOOK_TLS_KEY)) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (Some(_), None) => return Err(error(WEBHOOK_TLS_KEY, "is required with a certificate")),
        (None, Some(_)) => return Err(error(WEBHOOK_TLS_CERT, "is required with a key")),
    };
    // Read once here, so an unusable certificate or key is a misconfiguration at start.
    if let Some((cert, key)) = &tls {
        crate::net::tls::server_config(cert, key)
            .map_err(|e| error(WEBHOOK_TLS_CERT, e.to_string()))?;
    }
    let max_body = match get(WEBHOOK_MAX_BODY) {
        None => DEFAULT_MAX_BODY,
        Some(text) => size(text).ok_or_else(|| {
            error(
                WEBHOOK_MAX_BODY,
                format!("expected a size from 1 to 64MiB such as 25MiB or 1048576, got \"{text}\""),
            )
        })?,
    };
    let concurrency = match get(WEBHOOK_CONCURRENCY) {
        None => DEFAULT_CONCURRENCY,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| {
                error(
                    WEBHOOK_CONCURRENCY,
                    format!("expected an integer from 1 to 256, got \"{text}\""),
                )
            })?,
    };
    Ok(Some(WebhookConfig {
        listen,
        tls,
        max_body,
        concurrency,
    }))
}

/// Bytes, or a number with `KiB` or `MiB`; at most the gateway's own cap.
fn size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let scale = match unit.trim() {
        "" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return None,
    };
    let bytes = digits.parse::<u64>().ok()?.checked_mul(scale)?;
    (1..=super::frames::GATEWAY_MAX_BODY)
        .contains(&bytes)
        .then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn off_by_default_and_each_mistake_names_its_variable() {
        assert_eq!(from_vars(&vars(&[])).unwrap(), None);
        let on = from_vars(&vars(&[(WEBHOOK_LISTEN, "127.0.0.1:8080")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (on.max_body, on.concurrency, on.tls),
            (DEFAULT_MAX_BODY, 8, None)
        );
        let sized = from_vars(&vars(&[
            (WEBHOOK_LISTEN, "[::1]:1"),
            (WEBHOOK_MAX_BODY, "2MiB"),
        ]));
        assert_eq!(sized.unwrap().unwrap().max_body, 2 * 1024 * 1024);
        for (pairs, variable) in [
            (vec![(WEBHOOK_LISTEN, "8080")], WEBHOOK_LISTEN),
            (vec![(WEBHOOK_TLS_CERT, "c.pem")], WEBHOOK_TLS_CERT),
            (
                vec![(WEBHOOK_LISTEN, "0.0.0.0:1"), (WEBHOOK_TLS_CERT, "c")],
                WEBHOOK_TLS_KEY,
            ),
            (
                vec![(WEBHOOK_LISTEN, "0.0.0.0:1"), (WEBHOOK_MAX_BODY, "1GiB")],
                WEBHOOK_MAX_BODY,
            ),
            (
                vec![(WEBHOOK_LISTEN, "0.0.0.0:1"), (WEBHOOK_MAX_BODY, "0")],
                WEBHOOK_MAX_BODY,
            ),
            (
                vec![(WEBHOOK_LISTEN, "0.0.0.0:1"), (WEBHOOK_CONCURRENCY, "0")],
                WEBHOOK_CONCURRENCY,
            ),
        ] {
            let e = from_vars(&vars(&pairs)).unwrap_err();
            assert_eq!(e.variable, variable, "{pairs:?}: {e:?}");
        }
    }
}
