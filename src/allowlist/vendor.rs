//! The VCS products the agent can front, and the operator's project pattern.

use super::matcher::Rule;
use super::{azure_devops, bitbucket_datacenter, github_enterprise, gitlab};
use std::fmt;
use std::str::FromStr;

/// The VCS products the agent can front.
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

    /// The name used in `SPACELIFT_VCS_AGENT_VENDOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Gitlab => "gitlab",
            Vendor::BitbucketDatacenter => "bitbucket_datacenter",
            Vendor::GithubEnterprise => "github_enterprise",
            Vendor::AzureDevops => "azure_devops",
        }
    }

    /// The vendor's rule table, in matching order.
    pub fn rules(self) -> &'static [Rule] {
        match self {
            Vendor::Gitlab => gitlab::RULES,
            Vendor::BitbucketDatacenter => bitbucket_datacenter::RULES,
            Vendor::GithubEnterprise => github_enterprise::RULES,
            Vendor::AzureDevops => azure_devops::RULES,
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "expected one of gitlab, bitbucket_datacenter, github_enterprise, azure_devops, got {s:?}"
                )
            })
    }
}

/// Compile `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS`. The pattern must match the **whole**
/// project (it is wrapped as `^(?:…)$`): the original agent's unanchored regex let
/// `group/repo` allow `evilgroup/repo2`.
pub fn project_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}
