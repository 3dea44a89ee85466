//! Minimum transfer rates over a sliding window: how the gateway tells a caller that is slow
//! on purpose from one that is merely slow.
//!
//! A caller that holds an agent stream (uploading a large body, or downloading an answer)
//! must move at least [`MinRate::bytes_per_sec`] in **every** window of [`MinRate::window`]
//! once the grace is over. An average since the start would let a burst buy time: 90 KB sent
//! at once, then a byte every ten seconds, would hold a stream for six minutes at 240 bytes/s.
//! Here what arrived before the current window buys nothing: a window closes when it has seen
//! its share, the next one starts then, and one that ends short fails the transfer. Kestrel's
//! `MinRequestBodyDataRate` is the model (240 bytes/s after a 5 s grace).

use std::time::{Duration, Instant};

/// A minimum rate: `bytes_per_sec` over each `window`, after `grace`; 0 turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub(crate) bytes_per_sec: u64,
    pub(crate) grace: Duration,
    pub(crate) window: Duration,
}

/// The transfer fell below its minimum rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fewer than {bytes_per_sec} bytes/s in a {window:?} window (after a {grace:?} grace)")]
pub(crate) struct TooSlow {
    pub(crate) bytes_per_sec: u64,
    pub(crate) window: Duration,
    pub(crate) grace: Duration,
}

/// One transfer measured against a [`MinRate`].
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    rate: MinRate,
    /// When the current window started (at first, when the grace ends).
    window_start: Instant,
    /// Bytes moved since then.
    moved: u64,
}

impl Meter {
    /// A meter for a transfer starting `now`; `None` when the rate is off.
    pub(crate) fn start(rate: MinRate, now: Instant) -> Option<Meter> {
        (rate.bytes_per_sec > 0 && !rate.window.is_zero()).then(|| Meter {
            rate,
            window_start: now + rate.grace,
            moved: 0,
        })
    }

    fn share(&self) -> u64 {
        let per_window = self.rate.bytes_per_sec as f64 * self.rate.window.as_secs_f64();
        per_window.ceil() as u64
    }

    /// When the current window ends: the transfer must have moved its share by then.
    pub(crate) fn deadline(&self) -> Instant {
        self.window_start + self.rate.window
    }

    /// Counts `n` bytes moved at `now`: a window that got its share ends there and the next
    /// one starts; one that ended short of it fails the transfer.
    pub(crate) fn moved(&mut self, n: usize, now: Instant) -> Result<(), TooSlow> {
        if now < self.window_start {
            return Ok(()); // The grace: nothing is counted, nothing is owed.
        }
        self.moved += n as u64;
        if self.moved >= self.share() {
            self.window_start = now;
            self.moved = 0;
            return Ok(());
        }
        self.check(now)
    }

    /// Whether the transfer is still within its rate at `now`.
    pub fn check(&self, now: Instant) -> Result<(), TooSlow> {
        if now >= self.deadline() {
            return Err(TooSlow {
                bytes_per_sec: self.rate.bytes_per_sec,
                window: self.rate.window,
                grace: self.rate.grace,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: MinRate = MinRate {
        bytes_per_sec: 100,
        grace: Duration::from_secs(5),
        window: Duration::from_secs(2),
    };

    fn at(start: Instant, secs: f64) -> Instant {
        start + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_burst_buys_no_time() {
        let t = Instant::now();
        let mut meter = Meter::start(RATE, t).unwrap();
        // 300 KB during the grace, then a byte every 1.5 s: the first window fails.
        meter.moved(300_000, at(t, 0.1)).unwrap();
        meter.moved(1, at(t, 5.5)).unwrap();
        assert!(meter.moved(1, at(t, 7.0)).is_err());
        assert_eq!(meter.deadline(), at(t, 7.0));
    }

    #[test]
    fn a_steady_transfer_passes_every_window() {
        let t = Instant::now();
        let mut meter = Meter::start(RATE, t).unwrap();
        for i in 0..100 {
            meter.moved(60, at(t, 0.5 * i as f64)).unwrap();
        }
        assert!(meter.check(at(t, 50.0)).is_ok());
    }

    #[test]
    fn a_stall_past_the_window_fails_and_zero_turns_it_off() {
        let t = Instant::now();
        let meter = Meter::start(RATE, t).unwrap();
        assert!(meter.check(at(t, 6.9)).is_ok());
        assert!(meter.check(at(t, 7.0)).is_err());
        let off = MinRate {
            bytes_per_sec: 0,
            ..RATE
        };
        assert!(Meter::start(off, t).is_none());
    }
}
