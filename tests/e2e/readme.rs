//! The README's settings tables hold what the programs hold: the agent's table names exactly
//! the settings of `config::SETTINGS` with their flags and defaults, and the `serve` table
//! exactly the flags and defaults `vcs-gateway serve --help` prints.

use crate::support::GATEWAY;
use std::collections::BTreeMap;
use std::process::Command;
use vcs_agent::config::SETTINGS;

const README: &str = include_str!("../../README.md");

/// The cells of each row of the table whose header line is `header`.
fn table(header: &str) -> Vec<Vec<String>> {
    let start = README
        .find(header)
        .unwrap_or_else(|| panic!("the README has no table {header}"));
    README[start..]
        .lines()
        .skip(2)
        .map_while(|row| row.strip_prefix('|'))
        .map(|row| {
            let row = row.strip_suffix('|').unwrap_or(row);
            row.split('|').map(|c| c.trim().to_string()).collect()
        })
        .collect()
}

/// The `code spans` of a cell.
fn quoted(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_agent_settings_table_is_config_settings_both_ways() {
    let mut seen: Vec<&str> = Vec::new();
    for cells in table("| variable | flags | default | meaning |") {
        for name in quoted(&cells[0]) {
            let setting = SETTINGS.iter().find(|s| s.env == name);
            let setting =
                setting.unwrap_or_else(|| panic!("README lists {name}; no setting has it"));
            assert_eq!(quoted(&cells[1]), setting.flags, "flags of {name}");
            assert_eq!(
                cells[2].trim_matches('`'),
                setting.default,
                "default of {name}"
            );
            assert!(!seen.contains(&setting.env), "README lists {name} twice");
            seen.push(setting.env);
        }
    }
    for setting in SETTINGS {
        assert!(
            seen.contains(&setting.env),
            "README's agent table lacks {}",
            setting.env
        );
    }
}

/// `serve --help`'s options: each entry's flags with their placeholders
/// (`--tls-cert PEM --tls-key PEM`) and its default, the last `[…]` of the entry up to a `;`.
fn serve_help() -> BTreeMap<String, Option<String>> {
    let out = Command::new(GATEWAY)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let entry = regex::Regex::new(
        r"^ {8}((?:--[a-z][a-z-]*(?: [A-Z]+)?)(?: --[a-z][a-z-]*(?: [A-Z]+)?)*)(?: +(.*))?$",
    )
    .unwrap();
    let default = regex::Regex::new(r"\[([^\[\]]*)\]").unwrap();
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(m) = entry.captures(line) {
            let rest = m.get(2).map_or("", |r| r.as_str());
            entries.push((m[1].to_string(), rest.to_string()));
        } else if line.starts_with(&" ".repeat(9)) {
            if let Some((_, text)) = entries.last_mut() {
                text.push(' ');
                text.push_str(line.trim());
            }
        } else {
            entries.push((String::new(), String::new()));
        }
    }
    let mut flags = BTreeMap::new();
    for (head, text) in entries.into_iter().filter(|(h, _)| !h.is_empty()) {
        let first = head.split(' ').next().unwrap().to_string();
        if flags
            .keys()
            .any(|h: &String| h.split(' ').next() == Some(first.as_str()))
        {
            continue; // a later mention of a flag already described (`--admin-token (or …)`)
        }
        let value = default
            .captures_iter(&text)
            .last()
            .map(|c| c[1].split(';').next().unwrap().trim().to_string());
        flags.insert(head, value);
    }
    flags
}

#[test]
fn the_serve_table_is_serve_help_both_ways() {
    let help = serve_help();
    assert!(help.len() > 20, "{help:?}");
    let mut readme = BTreeMap::new();
    for cells in table("| serve flag | default | meaning |") {
        let flag = cells[0].trim_matches('`').to_string();
        let value = match cells[1].as_str() {
            "—" => None,
            cell => Some(cell.trim_matches('`').to_string()),
        };
        assert!(readme.insert(flag.clone(), value).is_none(), "{flag} twice");
    }
    for (flag, value) in &help {
        assert_eq!(
            readme.get(flag),
            Some(value),
            "serve --help has {flag} [{value:?}]"
        );
    }
    for flag in readme.keys() {
        assert!(
            help.contains_key(flag),
            "README's serve table has {flag}, serve --help does not"
        );
    }
}
