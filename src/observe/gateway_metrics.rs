//! The gateway's `/metrics`: per-pool figures for a Prometheus scrape.
//!
//! Live gauges (streams, busy streams, agents) are read from the hub at scrape time; the
//! counters (requests by status, errors by kind, bytes each way) are kept per pool in
//! [`PoolStats`], fed by the one place every finished request passes: `Pool::remember`.

use super::prometheus::Exposition;
use crate::gateway::hub::{Hub, Pool, RequestRecord};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of one pool.
#[derive(Default)]
pub struct PoolStats {
    by_status: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl PoolStats {
    pub fn observe(&self, record: &RequestRecord) {
        if let Ok(mut map) = self.by_status.lock() {
            *map.entry(record.status).or_insert(0) += 1;
        }
        if let Some(kind) = record.error {
            if let Ok(mut map) = self.errors.lock() {
                *map.entry(kind.as_str()).or_insert(0) += 1;
            }
        }
        self.bytes_in.fetch_add(record.bytes_in, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(record.bytes_out, Ordering::Relaxed);
    }
}

/// Reads one live figure of a pool.
type Gauge = fn(&Pool) -> u64;

/// The scrape text for every pool of `hub`.
pub fn render(hub: &Hub) -> String {
    let pools = hub.pools();
    let mut out = Exposition::default();
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
        if let Some(peers) = hub.peers.get() {
            peers.render(&mut out);
        }
    }
    out.family("vcs_gateway_pools", "gauge", "Pools known to the gateway.");
    out.sample("vcs_gateway_pools", &[], pools.len());
    let names: Vec<String> = pools.iter().map(|p| p.name()).collect();

    let gauges: [(&str, &str, Gauge); 4] = [
        (
            "vcs_gateway_pool_streams",
            "Agent streams connected to the pool.",
            |p| p.streams.load(Ordering::SeqCst) as u64,
        ),
        (
            "vcs_gateway_pool_busy_streams",
            "Agent streams of the pool serving a request.",
            |p| p.busy.load(Ordering::SeqCst) as u64,
        ),
        (
            "vcs_gateway_pool_queued_requests",
            "Requests waiting for an idle stream of the pool (more agents or parallelism help).",
            |p| p.queued.load(Ordering::SeqCst) as u64,
        ),
        (
            "vcs_gateway_pool_agents",
            "Agent processes with at least one stream in the pool.",
            |p| p.agents().len() as u64,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        for (pool, label) in pools.iter().zip(&names) {
            out.sample(name, &[("pool", label)], value(pool));
        }
    }

    out.family(
        "vcs_gateway_requests_total",
        "counter",
        "Tunnel requests finished, by pool and HTTP status.",
    );
    for (pool, label) in pools.iter().zip(&names) {
        let counts: Vec<(u16, u64)> = pool
            .stats
            .by_status
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        for (status, n) in counts {
            out.sample(
                "vcs_gateway_requests_total",
                &[("pool", label), ("status", &status.to_string())],
                n,
            );
        }
    }
    out.family(
        "vcs_gateway_request_errors_total",
        "counter",
        "Tunnel requests that failed, by pool and error kind.",
    );
    for (pool, label) in pools.iter().zip(&names) {
        let counts: Vec<(&str, u64)> = pool
            .stats
            .errors
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        for (kind, n) in counts {
            out.sample(
                "vcs_gateway_request_errors_total",
                &[("pool", label), ("kind", kind)],
                n,
            );
        }
    }
    for (name, help, direction) in [
        (
            "vcs_gateway_bytes_in_total",
            "Request body bytes received from callers, by pool.",
            true,
        ),
        (
            "vcs_gateway_bytes_out_total",
            "Response body bytes sent to callers, by pool.",
            false,
        ),
    ] {
        out.family(name, "counter", help);
        for (pool, label) in pools.iter().zip(&names) {
            let counter = if direction {
                &pool.stats.bytes_in
            } else {
                &pool.stats.bytes_out
            };
            out.sample(name, &[("pool", label)], counter.load(Ordering::Relaxed));
        }
    }
    out.finish()
}
