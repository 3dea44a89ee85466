//! `/healthz` and `/metrics` in full, for the operator: on the api port behind the admin
//! token, and without authentication on the metrics port (`--metrics-listen`).
//!
//! Imports point down, to the state, the metrics text ([`super::metrics`]) and the replicas'
//! counters; the front routes here.

use crate::gateway::replicas::Peers;
use crate::gateway::state::hub::Hub;
use crate::http1;
use crate::net::deadline::Watchable;
use std::io::{BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

/// Scrapers served at once on the metrics port.
const MAX_SCRAPERS: usize = 16;

/// Serves `/healthz` and `/metrics` in full, without authentication, on `listener`: a port
/// meant for a private scrape network (`--metrics-listen`), never for the SaaS side.
pub(crate) fn serve_metrics(
    listener: std::net::TcpListener,
    hub: Arc<Hub>,
    peers: Option<Arc<Peers>>,
) -> std::io::Result<()> {
    crate::net::listen::spawn(
        listener,
        "metrics-port",
        "scraper",
        MAX_SCRAPERS,
        move |tcp| {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
            let watch = Watchable::of(&tcp).watch(Duration::from_secs(10));
            let Ok(writer) = tcp.try_clone() else { return };
            let mut writer = writer;
            let head = http1::read_request_head(&mut BufReader::new(tcp));
            let path = head
                .as_ref()
                .map(|h| h.target.split('?').next().unwrap_or(""));
            let _ = match (head.as_ref().map(|h| h.method.as_str()), path) {
                (Ok("GET"), Ok(path @ ("/healthz" | "/metrics"))) => {
                    write_monitoring(&mut writer, path, &hub, peers.as_deref(), false)
                }
                _ => http1::write_simple(
                    &mut writer,
                    404,
                    "application/json",
                    br#"{"error":"only GET /healthz and GET /metrics are served here"}"#,
                    false,
                ),
            };
            drop(watch);
        },
    )
}

/// The full `/healthz` or `/metrics`, for the operator (admin token, or the metrics port).
pub(crate) fn write_monitoring(
    out: &mut impl Write,
    path: &str,
    hub: &Hub,
    peers: Option<&Peers>,
    keep_alive: bool,
) -> std::io::Result<()> {
    if path == "/metrics" {
        let text = super::metrics::render(hub, peers);
        let kind = crate::observe::prometheus::CONTENT_TYPE;
        return http1::write_simple(out, 200, kind, text.as_bytes(), keep_alive);
    }
    let body = health(hub, peers);
    http1::write_simple(out, 200, "application/json", body.as_bytes(), keep_alive)
}

fn health(hub: &Hub, peers: Option<&Peers>) -> String {
    let pools: serde_json::Map<String, serde_json::Value> = hub
        .pools()
        .iter()
        .map(|pool| {
            (
                pool.name(),
                serde_json::json!({
                    "agents": pool.agents().len(),
                    "streams": pool.streams(),
                    "busy": pool.busy(),
                    "queued": pool.queued(),
                    "requests": pool.requests(),
                }),
            )
        })
        .collect();
    let mut body = serde_json::json!({ "status": "ok", "pools": pools });
    if let Some(id) = &hub.settings.replica_id {
        // A replica: whether it can reach Redis (changes answer 503 while it cannot).
        body["replica"] = serde_json::json!({
            "id": id,
            "redis_reachable": hub.store.reachable(),
        });
        if let Some(peers) = peers {
            if let (Some(replica), serde_json::Value::Object(figures)) =
                (body["replica"].as_object_mut(), peers.health())
            {
                replica.extend(figures);
            }
        }
    }
    body.to_string()
}
