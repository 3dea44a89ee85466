//! Placeholder with the allowlist's public interface; replaced by the per-vendor rules.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Gitlab,
    BitbucketDatacenter,
    GithubEnterprise,
    AzureDevops,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [
        Vendor::Gitlab,
        Vendor::BitbucketDatacenter,
        Vendor::GithubEnterprise,
        Vendor::AzureDevops,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Gitlab => "gitlab",
            Vendor::BitbucketDatacenter => "bitbucket_datacenter",
            Vendor::GithubEnterprise => "github_enterprise",
            Vendor::AzureDevops => "azure_devops",
        }
    }
}

impl std::str::FromStr for Vendor {
    type Err = String;
    fn from_str(s: &str) -> Result<Vendor, String> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("expected one of gitlab, bitbucket_datacenter, github_enterprise, azure_devops, got \"{s}\""))
    }
}

pub fn project_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

#[derive(Clone)]
pub struct Allowlist {}

impl Allowlist {
    pub fn new(_vendor: Vendor, _projects: Option<regex::Regex>) -> Allowlist {
        Allowlist {}
    }
    pub fn check(&self, _method: &str, _target: &str) -> Result<Allowed, Denied> {
        Ok(Allowed {
            description: "forwarded",
            project: None,
            codeload: false,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub description: &'static str,
    pub project: Option<String>,
    pub codeload: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub reason: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}
