//! A pool's last relayed webhooks, for the panel and the API: failures first.

use crate::webhook::frames::{Event, Outcome};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Webhooks each pool keeps.
pub const KEPT: usize = 50;

/// One relayed webhook as the panel shows it (no header, no body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookRecord {
    /// Unix time in milliseconds when the relay arrived.
    pub time_ms: u64,
    pub event: String,
    pub project: String,
    /// What the VCS is answered.
    pub status: u16,
    pub saas_status: Option<u16>,
    pub elapsed_ms: f64,
    pub reason: Option<String>,
}

impl WebhookRecord {
    pub fn new(time_ms: u64, event: &Event, outcome: &Outcome) -> WebhookRecord {
        WebhookRecord {
            time_ms,
            event: event.event.chars().take(64).collect(),
            project: event.project.chars().take(256).collect(),
            status: outcome.status,
            saas_status: outcome.saas_status,
            elapsed_ms: outcome.elapsed_ms,
            reason: outcome.reason.clone(),
        }
    }

    fn failed(&self) -> bool {
        !(200..300).contains(&self.status)
    }
}

/// The last [`KEPT`] webhooks of a pool.
#[derive(Default)]
pub struct Recent(Mutex<VecDeque<WebhookRecord>>);

impl Recent {
    pub fn remember(&self, record: WebhookRecord) {
        let mut recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// Failures first, then the delivered ones, each newest first.
    pub fn failures_first(&self) -> Vec<WebhookRecord> {
        let recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = || recent.iter().rev();
        newest()
            .filter(|r| r.failed())
            .chain(newest().filter(|r| !r.failed()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time_ms: u64, status: u16) -> WebhookRecord {
        WebhookRecord {
            time_ms,
            event: "push".into(),
            project: "octo/hello".into(),
            status,
            saas_status: None,
            elapsed_ms: 1.0,
            reason: None,
        }
    }

    #[test]
    fn failures_come_first_newest_first_and_the_ring_is_bounded() {
        let recent = Recent::default();
        for (t, status) in [(1, 200), (2, 502), (3, 200), (4, 504)] {
            recent.remember(record(t, status));
        }
        let order: Vec<u64> = recent.failures_first().iter().map(|r| r.time_ms).collect();
        assert_eq!(order, [4, 2, 3, 1]);
        for t in 10..10 + KEPT as u64 {
            recent.remember(record(t, 200));
        }
        let all = recent.failures_first();
        assert_eq!(all.len(), KEPT);
        assert!(all.iter().all(|r| r.time_ms >= 10), "the oldest left");
    }
}
