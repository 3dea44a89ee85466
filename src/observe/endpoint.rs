//! The agent's local HTTP endpoint (`SPACELIFT_VCS_AGENT_METRICS_ADDR`): `/healthz` for
//! supervisors and load balancers, `/metrics` for Prometheus.
//!
//! Off by default: it is a listening port on a host whose point is to listen on none. When on,
//! it is one accept thread plus a short-lived thread per scrape, each with tight timeouts,
//! using the crate's own HTTP/1.1 head parser; it answers `GET` only and never reads a body.
//! What it reports comes through [`Health`], which the agent implements, so this module does
//! not depend on the agent.

use crate::http1::{self, HeadError};
use crate::observe::gauge::StreamGauges;
use crate::observe::metrics::AgentMetrics;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a scraper may take to send its request head, or to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Scrapers and health checks served at once; more wait their turn.
const MAX_OPEN: usize = 16;

/// What the endpoint reports about a running agent.
pub trait Health: Send + Sync + 'static {
    fn gauges(&self) -> &StreamGauges;
    /// Streams the agent is configured to keep.
    fn configured(&self) -> usize;
    fn draining(&self) -> bool;
    fn metrics(&self) -> &AgentMetrics;
}

/// Binds `addr` and serves the endpoint on background threads; returns the bound address.
pub fn start(addr: SocketAddr, shared: Arc<dyn Health>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    crate::net::listen::spawn(listener, "metrics", "metrics-conn", MAX_OPEN, move |tcp| {
        answer(tcp, &*shared)
    })?;
    Ok(bound)
}

/// What the endpoint answers for `method` and `path`: status, content type, body.
pub(crate) fn reply(shared: &dyn Health, method: &str, path: &str) -> (u16, &'static str, String) {
    if method != "GET" {
        return (405, "text/plain", "only GET is served here\n".into());
    }
    let connected = shared.gauges().connected.get();
    let busy = shared.gauges().busy.get();
    match path {
        "/healthz" => {
            let body = serde_json::json!({
                "status": if connected > 0 { "ok" } else { "disconnected" },
                "streams": connected,
                "busy": busy,
                "configured": shared.configured(),
                "draining": shared.draining(),
            })
            .to_string();
            let status = if connected > 0 { 200 } else { 503 };
            (status, "application/json", body)
        }
        "/metrics" => (
            200,
            super::prometheus::CONTENT_TYPE,
            shared
                .metrics()
                .render(connected, busy, shared.configured()),
        ),
        _ => (
            404,
            "text/plain",
            "not found: try /healthz or /metrics\n".into(),
        ),
    }
}

fn answer(tcp: TcpStream, shared: &dyn Health) {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let mut conn = BufReader::new(tcp);
    let (status, content_type, body) = match http1::read_request_head(&mut conn) {
        Ok(head) => {
            let path = head.target.split('?').next().unwrap_or("");
            reply(shared, &head.method, path)
        }
        Err(HeadError::Closed) | Err(HeadError::Io(_)) => return,
        Err(e) => (400, "text/plain", format!("bad request: {e}\n")),
    };
    let _ = http1::write_simple(conn.get_mut(), status, content_type, body.as_bytes(), false);
}
