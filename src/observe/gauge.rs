//! Gauges that say how many of something exist right now (streams connected, streams busy),
//! raised and lowered by a guard.
//!
//! A gauge is raised by [`Gauge::raise`] and lowered when the returned [`Raised`] is dropped,
//! which also happens when a panic unwinds through its scope: a request that panics cannot
//! leave a stream counted as busy, and `/healthz` stays right after the slot is restarted.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A count of things in progress.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicUsize);

impl Gauge {
    /// Counts one more until the returned guard is dropped.
    pub(crate) fn raise(&self) -> Raised<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Raised(self)
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One count on a [`Gauge`], taken back on drop.
#[must_use = "the gauge is lowered as soon as the guard is dropped"]
#[derive(Debug)]
pub(crate) struct Raised<'a>(&'a Gauge);

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The agent's stream gauges, reported by `/healthz` and `/metrics`.
#[derive(Debug, Default)]
pub struct StreamGauges {
    /// Streams connected to the gateway right now.
    pub(crate) connected: Gauge,
    /// Streams serving a request right now.
    pub(crate) busy: Gauge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_lowers_its_gauge_on_drop() {
        let gauge = Gauge::default();
        let first = gauge.raise();
        let second = gauge.raise();
        assert_eq!(gauge.get(), 2);
        drop(first);
        assert_eq!(gauge.get(), 1);
        drop(second);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_panic_under_a_guard_lowers_its_gauge() {
        let gauge = Gauge::default();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _busy = gauge.raise();
            assert_eq!(gauge.get(), 1);
            panic!("a request panicked");
        }));
        assert!(outcome.is_err());
        assert_eq!(gauge.get(), 0, "the panic left the gauge raised");
    }
}
