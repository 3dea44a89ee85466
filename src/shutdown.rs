//! SIGTERM/SIGINT/SIGHUP for both programs: the first signal starts a graceful drain, a
//! second one exits at once.
//!
//! supervisord, systemd and Kubernetes stop a process with SIGTERM and, after their own grace
//! period, SIGKILL; an operator at a terminal presses Ctrl-C, or closes it (SIGHUP, on which
//! the original agent stops too). Either way the requests in flight should finish while
//! nothing new is taken, so the first signal only starts a drain and the program waits for it (bounded by its drain timeout). An operator who does not want to wait
//! sends the signal again: the process then exits with 130 without waiting for anything.
//!
//! The handlers are installed before the program starts serving, so a signal that arrives
//! while it starts is not lost; a dedicated thread reads them (`signal-hook`'s iterator, no
//! code of ours runs inside a signal handler).

use crossbeam_channel::Receiver;
use std::time::{Duration, Instant};

/// The signal handlers could not be installed (or their thread not started).
#[derive(Debug, thiserror::Error)]
#[error("cannot install signal handlers: {0}")]
pub struct SignalError(#[from] std::io::Error);

/// Installed SIGTERM/SIGINT/SIGHUP handlers; [`Shutdown::wait`] waits for the first signal.
pub struct Shutdown {
    first: Receiver<i32>,
}

impl Shutdown {
    /// Installs the handlers; from now on a second signal exits the process with 130.
    pub fn install() -> Result<Shutdown, SignalError> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])?;
        let (first, first_signal) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for (seen, signal) in signals.forever().enumerate() {
                    if seen == 0 {
                        let _ = first.send(signal);
                    } else {
                        log::warn!("second signal {signal}: exiting now");
                        std::process::exit(130);
                    }
                }
            })?;
        Ok(Shutdown {
            first: first_signal,
        })
    }

    /// Blocks until the first signal, then calls `start`, which stops taking new work and
    /// returns at once; the program then waits for the work in flight (bounded) and reports
    /// how that ended to [`Drain::finished`].
    pub fn wait(self, start: impl FnOnce()) -> Drain {
        let signal = self.first.recv().unwrap_or(signal_hook::consts::SIGTERM);
        start();
        log::info!("signal {signal} received: draining (a second signal exits at once)");
        Drain {
            started: Instant::now(),
        }
    }
}

/// A drain under way.
pub struct Drain {
    started: Instant,
}

impl Drain {
    /// Whether the work in flight all ended: how long the drain took, or `None` (logged as a
    /// warning) when it gave up with requests still running.
    pub fn finished(self, all_ended: bool) -> Option<Duration> {
        if all_ended {
            Some(self.started.elapsed())
        } else {
            log::warn!("drain timeout reached with requests still running; exiting");
            None
        }
    }
}
