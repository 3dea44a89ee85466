//! The set-up most tunnel tests share: a recording upstream, a gateway, and one agent serving a
//! pool against that upstream with all its streams connected. Tests that need more (several
//! pools, agents started by hand, two gateways) build it from [`Gateway`] and [`Upstream`].

use super::upstream::Upstream;
use super::{Gateway, Proc};

/// The variable that sets how many streams an agent opens ([`super::agent_env`] sets 2).
const PARALLELISM: &str = "SPACELIFT_VCS_AGENT_PARALLELISM";

/// A gateway, an upstream and an agent serving one pool; all stopped on drop.
pub struct Tunnel {
    // Fields drop in this order: the agent stops before the gateway it dials.
    pub agent: Proc,
    pub gateway: Gateway,
    pub upstream: Upstream,
}

impl Tunnel {
    /// Pool `pool` on a plain gateway, its agent (gitlab unless `agent_env` says otherwise,
    /// on top of [`super::agent_env`]) against a recording upstream.
    pub fn start(pool: &str, agent_env: &[(&str, &str)]) -> Tunnel {
        Tunnel::options(pool).agent_env(agent_env).start()
    }

    /// A tunnel with more than [`Tunnel::start`] sets: gateway flags, upstream routes, a path
    /// below the upstream's root.
    pub fn options(pool: &str) -> TunnelOptions<'_> {
        TunnelOptions {
            pool,
            gateway_args: &[],
            agent_env: &[],
            upstream: None,
            base_path: "",
        }
    }
}

/// What [`Tunnel::options`] starts; [`TunnelOptions::start`] starts it.
#[must_use]
pub struct TunnelOptions<'a> {
    pool: &'a str,
    gateway_args: &'a [&'a str],
    agent_env: &'a [(&'a str, &'a str)],
    upstream: Option<Upstream>,
    base_path: &'a str,
}

impl<'a> TunnelOptions<'a> {
    /// Flags for `vcs-gateway serve`.
    pub fn gateway_args(mut self, args: &'a [&'a str]) -> Self {
        self.gateway_args = args;
        self
    }

    /// Agent variables on top of [`super::agent_env`]; the pool waits for as many streams as
    /// `SPACELIFT_VCS_AGENT_PARALLELISM` says (2 unless set here).
    pub fn agent_env(mut self, env: &'a [(&'a str, &'a str)]) -> Self {
        self.agent_env = env;
        self
    }

    /// The upstream, instead of [`Upstream::start`] (e.g. one with routes).
    pub fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// A path below the upstream's root for the agent's target endpoint (e.g. `/gitlab`).
    pub fn base_path(mut self, path: &'a str) -> Self {
        self.base_path = path;
        self
    }

    pub fn start(self) -> Tunnel {
        let upstream = self.upstream.unwrap_or_else(Upstream::start);
        let gateway = Gateway::start(self.gateway_args);
        let target = format!("{}{}", upstream.base(), self.base_path);
        let streams = self
            .agent_env
            .iter()
            .find(|(name, _)| *name == PARALLELISM)
            .map_or(2, |(_, n)| n.parse().expect("a number of streams"));
        let agent = gateway.agent_for(self.pool, &target, self.agent_env, streams);
        Tunnel {
            agent,
            gateway,
            upstream,
        }
    }
}
