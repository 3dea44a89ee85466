//! The operator's blocklist (`SPACELIFT_VCS_AGENT_BLOCKLIST_PATH`): rules that deny requests
//! the vendor allowlist would let through, so an operator can forbid, say, every write.
//!
//! The file is the original agent's format, so an existing one works unchanged:
//!
//! ```yaml
//! version: "1.0"
//! rules:
//!   - name: No writes
//!     method: ^(POST|PUT|PATCH|DELETE)$
//!     path: .*
//! ```
//!
//! Every rule needs a name no other rule has; `method` and `path` are regular expressions
//! (Rust's `regex` syntax, which is RE2's, as the original's Go ones) matched **unanchored**,
//! as the original matches them: `GET` also matches a method that contains it, `/statuses/`
//! a path anywhere it occurs; write `^…$` to match a whole value. A missing `method` or
//! `path` is the empty regex and matches everything. `method` is matched against the
//! request's method, `path` against the **decoded** path of the URL the request is sent to
//! (the base endpoint's sub-path included, the query left out; `group%2Frepo` is matched as
//! `group/repo`). The rules are checked in order after the allowlist allowed the request: the
//! first that matches denies it with `blocked by rule "<name>"`. A file that cannot be read
//! or parsed, an empty or repeated name or an invalid regex stops the agent at start.

use regex::Regex;
use serde::Deserialize;
use std::fmt;

/// The rules of a blocklist file; empty when no file is configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Blocklist {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    method: Regex,
    path: Regex,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Read and not checked, as in the original (`"1.0"`).
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<yaml_serde::Value>,
    #[serde(default)]
    rules: Vec<FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(default)]
    name: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
}

/// Why a blocklist file was refused; one line, naming the rule where there is one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlocklistError {
    #[error("cannot read \"{path}\": {error}")]
    Read { path: String, error: std::io::Error },
    #[error("\"{path}\" is not a blocklist file: {problem}")]
    Parse { path: String, problem: String },
    #[error("\"{path}\": rule {number} has no name")]
    NoName { path: String, number: usize },
    #[error("\"{path}\": rule \"{name}\" is named twice")]
    Duplicate { path: String, name: String },
    #[error("\"{path}\": rule \"{name}\": invalid {field} regex: {problem}")]
    Regex {
        path: String,
        name: String,
        field: &'static str,
        problem: String,
    },
}

impl Blocklist {
    /// Reads and checks the file at `path`.
    pub(crate) fn load(path: &str) -> Result<Blocklist, BlocklistError> {
        let text = std::fs::read_to_string(path).map_err(|error| BlocklistError::Read {
            path: path.to_string(),
            error,
        })?;
        Blocklist::parse(path, &text)
    }

    /// Checks the text of a file; `path` is only for the messages.
    pub(crate) fn parse(path: &str, text: &str) -> Result<Blocklist, BlocklistError> {
        let one_line = |e: &dyn fmt::Display| e.to_string().replace('\n', " ");
        let file: File = yaml_serde::from_str(text).map_err(|e| BlocklistError::Parse {
            path: path.to_string(),
            problem: one_line(&e),
        })?;
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
        for (i, rule) in file.rules.into_iter().enumerate() {
            if rule.name.trim().is_empty() {
                let number = i + 1;
                let path = path.to_string();
                return Err(BlocklistError::NoName { path, number });
            }
            if rules.iter().any(|r| r.name == rule.name) {
                let (path, name) = (path.to_string(), rule.name);
                return Err(BlocklistError::Duplicate { path, name });
            }
            let compile = |field: &'static str, pattern: &str| {
                Regex::new(pattern).map_err(|e| BlocklistError::Regex {
                    path: path.to_string(),
                    name: rule.name.clone(),
                    field,
                    problem: one_line(&e),
                })
            };
            let method = compile("method", &rule.method)?;
            let path = compile("path", &rule.path)?;
            rules.push(Rule {
                name: rule.name,
                method,
                path,
            });
        }
        Ok(Blocklist { rules })
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name of the first rule that blocks `method` on `decoded_path`.
    pub(crate) fn blocking(&self, method: &str, decoded_path: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.method.is_match(method) && r.path.is_match(decoded_path))
            .map(|r| r.name.as_str())
    }
}

/// The path of a request target (`/a%2Fb/c?x=1`) below `base_path`, percent-decoded, without
/// its query: what the rules' `path` is matched against.
pub(crate) fn decoded_path(base_path: &str, target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    format!("{base_path}{decoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITES: &str = r#"
version: "1.0"
rules:
  - name: "No commit statuses"
    method: "POST"
    path: "/statuses/"
  - name: No deletes
    method: ^DELETE$
"#;

    #[test]
    fn the_first_matching_rule_blocks_unanchored_on_the_decoded_path() {
        let list = Blocklist::parse("b.yaml", WRITES).unwrap();
        assert_eq!(list.len(), 2);
        let path = decoded_path("", "/api/v4/projects/g%2Fr/statuses/abc?x=1");
        assert_eq!(path, "/api/v4/projects/g/r/statuses/abc");
        assert_eq!(list.blocking("POST", &path), Some("No commit statuses"));
        assert_eq!(list.blocking("GET", &path), None);
        assert_eq!(list.blocking("DELETE", "/x"), Some("No deletes"));
        let sub = decoded_path("/gitlab", "/api/v4/projects/g%2Fr");
        assert_eq!(sub, "/gitlab/api/v4/projects/g/r");
        let slash = Blocklist::parse("b", "rules: [{name: g, path: 'projects/g/r$'}]").unwrap();
        assert_eq!(slash.blocking("GET", &sub), Some("g"), "%2F decoded");
        assert!(Blocklist::default().blocking("POST", "/").is_none());
    }

    #[test]
    fn the_original_agents_fixture_parses() {
        let text = "version: \"1.0\"\n\nrules:\n  - name: \"GET /.*\"\n    method: \"GET\"\n    path: \".*\"\n\n  - name: \"POST /.*\"\n    method: \"POST\"\n    path: \".*\"\n";
        let list = Blocklist::parse("valid.yaml", text).unwrap();
        assert_eq!(list.blocking("POST", "/a"), Some("POST /.*"));
        assert!(Blocklist::parse("v", "version: 1.0\nrules: []\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn every_invalid_file_is_refused_naming_the_rule() {
        let cases = [
            (
                "rules: [{name: a}, {name: a}]",
                "\"f\": rule \"a\" is named twice",
            ),
            ("rules: [{method: GET}]", "\"f\": rule 1 has no name"),
            (
                "rules: [{name: bad, path: '['}]",
                "\"f\": rule \"bad\": invalid path regex",
            ),
            (
                "rules: [{name: m, method: '(('}]",
                "\"f\": rule \"m\": invalid method regex",
            ),
            (
                "rules: [{name: t, paht: x}]",
                "\"f\" is not a blocklist file",
            ),
            ("rules: {", "\"f\" is not a blocklist file"),
        ];
        for (text, expected) in cases {
            let e = Blocklist::parse("f", text).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let missing = Blocklist::load("/nonexistent/blocklist.yaml").unwrap_err();
        assert!(missing.to_string().starts_with("cannot read"));
    }
}
