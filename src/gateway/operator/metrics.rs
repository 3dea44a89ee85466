//! The gateway's `/metrics`: per-pool figures for a Prometheus scrape.
//!
//! Live gauges (streams, busy streams, queued requests, agents) are read from the hub at
//! scrape time; the counters (requests by status, errors by kind, bytes each way) are kept
//! per pool in [`PoolStats`](crate::gateway::state::pool::PoolStats), fed by the one place every
//! finished request passes: [`LivePool::remember`]. The text format itself is
//! [`crate::observe::prometheus`]'s, shared with the agent.

use crate::gateway::replicas::Peers;
use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::LivePool;
use crate::observe::prometheus::Exposition;
use std::sync::Arc;

/// Reads one live figure of a pool.
type Gauge = fn(&LivePool) -> u64;

/// The live gauges, one family each, one sample per pool.
const GAUGES: [(&str, &str, Gauge); 4] = [
    (
        "vcs_gateway_pool_streams",
        "Agent streams connected to the pool.",
        |p| p.streams() as u64,
    ),
    (
        "vcs_gateway_pool_busy_streams",
        "Agent streams of the pool serving a request.",
        |p| p.busy() as u64,
    ),
    (
        "vcs_gateway_pool_queued_requests",
        "Requests waiting for an idle stream of the pool (more agents or parallelism help).",
        |p| p.queued() as u64,
    ),
    (
        "vcs_gateway_pool_agents",
        "Agent processes with at least one stream in the pool.",
        |p| p.agents().len() as u64,
    ),
];

/// The byte counters, one family each, one sample per pool.
const BYTES: [(&str, &str, Gauge); 2] = [
    (
        "vcs_gateway_bytes_in_total",
        "Request body bytes received from callers, by pool.",
        |p| p.stats.bytes_in(),
    ),
    (
        "vcs_gateway_bytes_out_total",
        "Response body bytes sent to callers, by pool.",
        |p| p.stats.bytes_out(),
    ),
];

/// The scrape text for every pool of `hub`.
pub fn render(hub: &Hub, peers: Option<&Peers>) -> String {
    let pools = hub.pools();
    let mut out = Exposition::default();
    process(&mut out, hub, peers, pools.len());
    let named: Vec<(&Arc<LivePool>, String)> = pools.iter().map(|p| (p, p.name())).collect();
    per_pool(&mut out, &named, "gauge", &GAUGES);
    requests(&mut out, &named);
    per_pool(&mut out, &named, "counter", &BYTES);
    crate::gateway::webhook::metrics(&mut out);
    out.finish()
}

/// Figures of the process itself: its version, Redis (a replica), how many pools.
fn process(out: &mut Exposition, hub: &Hub, peers: Option<&Peers>, pools: usize) {
    out.family(
        "vcs_gateway_build_info",
        "gauge",
        "Version of this gateway (always 1).",
    );
    out.sample(
        "vcs_gateway_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    if let Some(replica) = &hub.settings.replica_id {
        out.family(
            "vcs_gateway_redis_reachable",
            "gauge",
            "1 while this replica reaches Redis, 0 while it serves from the state it last read.",
        );
        out.sample(
            "vcs_gateway_redis_reachable",
            &[("replica", replica)],
            u64::from(hub.store.reachable()),
        );
        if let Some(peers) = peers {
            peers.render(out);
        }
    }
    out.family("vcs_gateway_pools", "gauge", "Pools known to the gateway.");
    out.sample("vcs_gateway_pools", &[], pools);
}

/// One family per entry of `figures`, each with one sample per pool.
fn per_pool(
    out: &mut Exposition,
    pools: &[(&Arc<LivePool>, String)],
    kind: &str,
    figures: &[(&str, &str, Gauge)],
) {
    for (name, help, value) in figures {
        out.family(name, kind, help);
        for (pool, label) in pools {
            out.sample(name, &[("pool", label)], value(pool));
        }
    }
}

/// Reads one labelled counter of a pool: label value and count.
type Counts = fn(&LivePool) -> Vec<(String, u64)>;

/// The labelled counters: family, help, the label, how to read it.
const COUNTERS: [(&str, &str, &str, Counts); 2] = [
    (
        "vcs_gateway_requests_total",
        "Tunnel requests finished, by pool and HTTP status.",
        "status",
        |p| labelled(p.stats.by_status()),
    ),
    (
        "vcs_gateway_request_errors_total",
        "Tunnel requests that failed, by pool and error kind.",
        "kind",
        |p| labelled(p.stats.errors()),
    ),
];

fn labelled<K: ToString>(counts: Vec<(K, u64)>) -> Vec<(String, u64)> {
    counts
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect()
}

/// Finished requests by status, and failed ones by error kind.
fn requests(out: &mut Exposition, pools: &[(&Arc<LivePool>, String)]) {
    for (name, help, label, counts) in COUNTERS {
        out.family(name, "counter", help);
        for (pool, pool_label) in pools {
            for (key, n) in counts(pool) {
                out.sample(name, &[("pool", pool_label), (label, &key)], n);
            }
        }
    }
}
