//! The agent's counters, and their rendering for a Prometheus scrape.
//!
//! Recording happens once per request, when its access line is written, and costs a few
//! relaxed atomic adds plus one short uncontended lock on a small map. Label values are
//! bounded on purpose: rule descriptions are `&'static str` from the allowlist tables, error
//! kinds are a fixed enum, and a denial is counted under its [`DenialClass`] (set by the
//! allowlist where the denial is made), never by its reason, which is free text naming paths
//! and projects.

use super::prometheus::{Exposition, LATENCY_BUCKETS};
use crate::allowlist::DenialClass;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A latency histogram over [`LATENCY_BUCKETS`] plus one overflow bucket.
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut Exposition, name: &str) {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        // The count is the sum of the buckets, so a scrape racing an observation is consistent.
        let count = buckets.iter().sum();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        out.histogram(name, &buckets, sum, count);
    }
}

/// What one finished request adds to the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation {
    pub(crate) rule: &'static str,
    pub(crate) status: Option<u16>,
    /// Error kind when the request failed.
    pub(crate) error: Option<&'static str>,
    /// What the refusal was about, when the allowlist refused the request.
    pub(crate) denial: Option<DenialClass>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Time until the VCS answered (or failed), when the request reached it.
    pub(crate) upstream: Option<Duration>,
}

/// Every counter of one agent process.
#[derive(Default)]
pub struct AgentMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    denials: Mutex<BTreeMap<&'static str, u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    upstream_latency: Histogram,
    reconnects: AtomicU64,
    dial_failures: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut map) = map.lock() {
        *map.entry(key).or_insert(0) += 1;
    }
}

fn snapshot<K: Ord + Clone>(map: &Mutex<BTreeMap<K, u64>>) -> Vec<(K, u64)> {
    map.lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

/// The `reason` label a denial class is counted under.
pub(crate) fn denial_label(class: DenialClass) -> &'static str {
    match class {
        DenialClass::Project => "project",
        DenialClass::NoRule => "no_rule",
        DenialClass::Method => "method",
        DenialClass::Path => "path",
        DenialClass::Blocked => "blocked",
    }
}

impl AgentMetrics {
    pub(crate) fn observe(&self, o: &Observation) {
        bump(&self.requests, (o.rule, o.status.unwrap_or(0)));
        if let Some(kind) = o.error {
            bump(&self.errors, kind);
        }
        if let Some(class) = o.denial {
            bump(&self.denials, denial_label(class));
        }
        self.bytes_in.fetch_add(o.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(o.bytes_out, Ordering::Relaxed);
        if let Some(elapsed) = o.upstream {
            self.upstream_latency.observe(elapsed);
        }
    }

    /// A stream connected again after it had been connected, or after a failed dial.
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dial_failed(&self) {
        self.dial_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The scrape text, with the live stream gauges passed in.
    pub(crate) fn render(&self, connected: usize, busy: usize, configured: usize) -> String {
        let mut out = Exposition::default();
        write_streams(&mut out, connected, busy, configured);
        self.write_outcomes(&mut out);
        self.write_totals(&mut out);
        out.finish()
    }

    /// Requests by rule and status, errors by kind, denials by class.
    fn write_outcomes(&self, out: &mut Exposition) {
        out.family(
            "vcs_agent_requests_total",
            "counter",
            "Requests finished, by allowlist rule (what they were for) and HTTP status.",
        );
        for ((rule, status), n) in snapshot(&self.requests) {
            let status = if status == 0 {
                "none".to_string()
            } else {
                status.to_string()
            };
            out.sample(
                "vcs_agent_requests_total",
                &[("rule", rule), ("status", &status)],
                n,
            );
        }
        out.family(
            "vcs_agent_request_errors_total",
            "counter",
            "Requests that failed, by error kind (denied, upstream_unreachable, upstream_timeout, ...).",
        );
        for (kind, n) in snapshot(&self.errors) {
            out.sample("vcs_agent_request_errors_total", &[("kind", kind)], n);
        }
        out.family(
            "vcs_agent_denials_total",
            "counter",
            "Requests the allowlist refused, by reason (no_rule, project, method, path).",
        );
        for (reason, n) in snapshot(&self.denials) {
            out.sample("vcs_agent_denials_total", &[("reason", reason)], n);
        }
    }

    /// The plain counters and the upstream latency histogram.
    fn write_totals(&self, out: &mut Exposition) {
        for (name, help, counter) in [
            (
                "vcs_agent_bytes_in_total",
                "Request body bytes received from the gateway and sent to the VCS.",
                &self.bytes_in,
            ),
            (
                "vcs_agent_bytes_out_total",
                "Response body bytes read from the VCS and sent to the gateway.",
                &self.bytes_out,
            ),
            (
                "vcs_agent_reconnects_total",
                "Times a stream connected to the gateway again after losing it or failing to dial.",
                &self.reconnects,
            ),
            (
                "vcs_agent_dial_failures_total",
                "Failed attempts to connect to the gateway.",
                &self.dial_failures,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], counter.load(Ordering::Relaxed));
        }
        out.family(
            "vcs_agent_upstream_latency_seconds",
            "histogram",
            "Time from forwarding a request to the VCS until its response head (or failure).",
        );
        self.upstream_latency
            .write(out, "vcs_agent_upstream_latency_seconds");
    }
}

/// The build and the stream gauges.
fn write_streams(out: &mut Exposition, connected: usize, busy: usize, configured: usize) {
    out.family(
        "vcs_agent_build_info",
        "gauge",
        "Version of this agent (always 1).",
    );
    out.sample(
        "vcs_agent_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    for (name, help, value) in [
        (
            "vcs_agent_streams_configured",
            "Streams the agent keeps to the gateway (SPACELIFT_VCS_AGENT_PARALLELISM).",
            configured,
        ),
        (
            "vcs_agent_streams_connected",
            "Streams connected to the gateway now.",
            connected,
        ),
        (
            "vcs_agent_streams_busy",
            "Streams serving a request now.",
            busy,
        ),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels are what dashboards and alerts select on: each class keeps its own.
    #[test]
    fn each_denial_class_is_counted_under_its_label() {
        let m = AgentMetrics::default();
        let classes = [
            (DenialClass::Project, "project", 1),
            (DenialClass::NoRule, "no_rule", 2),
            (DenialClass::Method, "method", 3),
            (DenialClass::Path, "path", 4),
        ];
        for (class, _, times) in classes {
            for _ in 0..times {
                m.observe(&Observation {
                    rule: "-",
                    status: Some(403),
                    error: Some("denied"),
                    denial: Some(class),
                    bytes_in: 0,
                    bytes_out: 0,
                    upstream: None,
                });
            }
        }
        let text = m.render(0, 0, 1);
        for (_, label, times) in classes {
            let line = format!("vcs_agent_denials_total{{reason=\"{label}\"}} {times}\n");
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn observations_show_up_in_the_scrape() {
        let m = AgentMetrics::default();
        m.observe(&Observation {
            rule: "Get project",
            status: Some(200),
            error: None,
            denial: None,
            bytes_in: 10,
            bytes_out: 1000,
            upstream: Some(Duration::from_millis(30)),
        });
        m.observe(&Observation {
            rule: "-",
            status: Some(403),
            error: Some("denied"),
            denial: Some(DenialClass::Project),
            bytes_in: 0,
            bytes_out: 0,
            upstream: None,
        });
        m.reconnected();
        let text = m.render(2, 1, 4);
        for line in [
            "vcs_agent_streams_connected 2\n",
            "vcs_agent_streams_busy 1\n",
            "vcs_agent_streams_configured 4\n",
            "vcs_agent_requests_total{rule=\"Get project\",status=\"200\"} 1\n",
            "vcs_agent_requests_total{rule=\"-\",status=\"403\"} 1\n",
            "vcs_agent_request_errors_total{kind=\"denied\"} 1\n",
            "vcs_agent_denials_total{reason=\"project\"} 1\n",
            "vcs_agent_bytes_in_total 10\n",
            "vcs_agent_bytes_out_total 1000\n",
            "vcs_agent_reconnects_total 1\n",
            "vcs_agent_upstream_latency_seconds_bucket{le=\"0.025\"} 0\n",
            "vcs_agent_upstream_latency_seconds_bucket{le=\"0.05\"} 1\n",
            "vcs_agent_upstream_latency_seconds_count 1\n",
            "vcs_agent_upstream_latency_seconds_sum 0.03\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
