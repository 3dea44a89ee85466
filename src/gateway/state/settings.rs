//! The gateway's settings: timings, limits and what the panel and its API need, set once at
//! start by `vcs-gateway serve` (each from a flag, see the README) and read by every part.

use crate::net::rate::MinRate;
use crate::token;
use std::time::Duration;

/// Gateway timings, and what the panel and its API need.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// How long a request waits for an idle stream.
    pub queue_timeout: Duration,
    /// Ping idle agent streams this often; drop them after three silent intervals.
    pub keepalive: Duration,
    /// Longest silence from an agent in the middle of an exchange.
    pub exchange_timeout: Duration,
    /// Bearer token for the panel, `/api/…`, `/metrics` and `/healthz`'s figures; `None`
    /// lets nobody in (the `serve` command always sets one).
    pub admin_token: Option<token::Secret>,
    /// Agent URL written into tokens the API creates; `None` means `ws://<agent port>`.
    pub public_url: Option<String>,
    /// `--front-url`: the URL callers reach the api port at (a gateway behind a reverse
    /// proxy), without a trailing `/`; `None` takes the api port's scheme and the caller's
    /// `Host`.
    pub front_url: Option<String>,
    /// Tunnel requests served at once (a connection and thread each).
    pub max_callers: usize,
    /// This replica's name, when pools and callers are in Redis (`serve --redis`).
    pub replica_id: Option<String>,
    /// Changes reach this replica by the polled version alone (tests).
    pub poll_only: bool,
    /// Connections one peer address may hold on the api port.
    pub max_per_address: usize,
    /// Bytes per second a request body must deliver in every [`RATE_WINDOW`] while it holds
    /// an agent stream, after [`GatewaySettings::upload_grace`]; 0 turns the check off.
    pub min_upload_rate: u64,
    pub upload_grace: Duration,
    /// Bytes per second a caller must take of an answer in every [`RATE_WINDOW`] while it
    /// holds an agent stream, after [`GatewaySettings::download_grace`]; 0 turns the check off.
    pub min_download_rate: u64,
    pub download_grace: Duration,
    /// Longest one write to a caller may make no progress (the caller reads nothing), with
    /// or without a minimum download rate.
    pub download_stall: Duration,
    /// `serve --allow-http-webhooks`: webhooks are also delivered to `http://` URLs (tests).
    pub allow_http_webhooks: bool,
}

/// The window both minimum rates are measured over ([`crate::net::rate`]).
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

impl GatewaySettings {
    pub fn upload_rate(&self) -> MinRate {
        MinRate {
            bytes_per_sec: self.min_upload_rate,
            grace: self.upload_grace,
            window: RATE_WINDOW,
        }
    }

    pub fn download_rate(&self) -> MinRate {
        MinRate {
            bytes_per_sec: self.min_download_rate,
            grace: self.download_grace,
            window: RATE_WINDOW,
        }
    }

    /// The write timeout of a caller's socket: a write that makes no progress for this long
    /// fails. With a minimum download rate, no longer than one rate window.
    pub fn caller_write_timeout(&self) -> Duration {
        match self.min_download_rate {
            0 => self.download_stall,
            _ => self.download_stall.min(RATE_WINDOW),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> GatewaySettings {
        GatewaySettings {
            queue_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(20),
            exchange_timeout: Duration::from_secs(120),
            admin_token: None,
            public_url: None,
            front_url: None,
            max_callers: 1024,
            replica_id: None,
            poll_only: false,
            max_per_address: 256,
            min_upload_rate: 240,
            upload_grace: Duration::from_secs(5),
            min_download_rate: 1024,
            download_grace: Duration::from_secs(10),
            download_stall: Duration::from_secs(30),
            allow_http_webhooks: false,
        }
    }
}
