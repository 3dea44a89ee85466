//! `vcs-agent rules`: the rule tables printed from the code the agent enforces.

use crate::support::AGENT;
use std::process::{Command, Output};
use vcs_agent::allowlist::Vendor;

fn rules(args: &[&str]) -> Output {
    Command::new(AGENT)
        .arg("rules")
        .args(args)
        .output()
        .expect("vcs-agent rules")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The rows of one vendor's table: from its title line to the next blank line.
fn section(text: &str, vendor: Vendor) -> Vec<&str> {
    let title = format!("{vendor} (");
    let start = text
        .lines()
        .position(|l| l.starts_with(&title))
        .unwrap_or_else(|| panic!("no table for {vendor}"));
    text.lines()
        .skip(start + 2)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_rule_of_every_vendor_is_printed_in_order() {
    let text = stdout(&rules(&[]));
    for vendor in Vendor::ALL {
        let rows = section(&text, vendor);
        assert_eq!(rows.len(), vendor.rules().len(), "{vendor}");
        for (row, rule) in rows.iter().zip(vendor.rules()) {
            let methods: Vec<&str> = rule.methods.iter().map(|m| m.as_str()).collect();
            let cells: Vec<&str> = row.split("  ").filter(|c| !c.is_empty()).collect();
            assert_eq!(cells[0].trim(), methods.join(","), "{row}");
            assert!(cells[1].trim().starts_with(rule.pattern), "{row}");
            assert_eq!(cells[2].trim(), rule.description, "{row}");
            assert!(
                !rule.source.is_empty(),
                "{vendor} {} has no source",
                rule.pattern
            );
            assert!(row.trim_end().ends_with(rule.source), "{row}");
        }
    }
    for (mutation, _) in vcs_agent::allowlist::graphql::MUTATIONS {
        assert!(text.lines().any(|l| l.starts_with(mutation)), "{mutation}");
    }
    assert!(text.contains("GraphQL fields a query may ask"));
}

#[test]
fn vendor_filters_and_either_spelling_works() {
    for (name, vendor) in [
        ("gitlab", Vendor::Gitlab),
        ("github-enterprise", Vendor::GithubEnterprise),
        ("bitbucket_datacenter", Vendor::BitbucketDatacenter),
        ("azure-devops", Vendor::AzureDevops),
    ] {
        let text = stdout(&rules(&["--vendor", name]));
        assert_eq!(section(&text, vendor).len(), vendor.rules().len());
        for other in Vendor::ALL.into_iter().filter(|v| *v != vendor) {
            let title = format!("{other} (");
            assert!(
                !text.lines().any(|l| l.starts_with(&title)),
                "{name}: {other}"
            );
        }
        let graphql = text.contains("GraphQL mutations");
        assert_eq!(graphql, vendor == Vendor::GithubEnterprise, "{name}");
    }
}

#[test]
fn json_holds_the_same_rules() {
    let text = stdout(&rules(&["--format", "json", "--vendor", "gitlab"]));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tables = doc["vendors"].as_array().unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0]["vendor"], "gitlab");
    let printed = tables[0]["rules"].as_array().unwrap();
    assert_eq!(printed.len(), Vendor::Gitlab.rules().len());
    for (row, rule) in printed.iter().zip(Vendor::Gitlab.rules()) {
        assert_eq!(row["path"], rule.pattern);
        assert_eq!(row["for"], rule.description);
        assert_eq!(row["source"], rule.source);
    }
    assert!(doc.get("graphql").is_none());
}

#[test]
fn a_bad_vendor_or_format_exits_2_naming_the_flag() {
    for (args, flag) in [
        (&["--vendor", "gitea"][..], "--vendor"),
        (&["--format", "yaml"][..], "--format"),
    ] {
        let out = rules(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(flag), "{err}");
    }
}
