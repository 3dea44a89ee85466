//! vcs-agent: VCS Agent Pools as a synchronous thread-pool proxy.
pub mod allowlist;
