//! A pool's idle agent streams: a first-in first-out queue that callers wait on.
//!
//! Not a channel: under load (16 callers sharing 4 streams) a waiting crossbeam receiver
//! spins and calls `sched_yield` several times before it parks; with the caller threads, the
//! agent, the VCS and the load generator on two cores, those yields and the context switches
//! they cause cost a fifth of the gateway's CPU (`perf`). A mutex and a condvar park a waiting
//! caller at once and wake exactly one waiter per stream put back. First in, first out, so
//! load spreads across agents by who has been idle longest.
//!
//! A stream put back while callers wait is theirs: a caller that arrives later takes a stream
//! at once only when there are more idle streams than waiters, else it queues behind them.
//! Without that, a running caller took the stream before the woken one was scheduled, and the
//! woken one went back to sleep: 1.75 `futex` waits and as many wakes per request at 16
//! callers on 4 streams where one of each is the least (`strace -c`). A put wakes nobody when
//! nobody waits (the condvar's notify is a system call even then).
//!
//! A queue is shut when its pool is deleted or the gateway drains: every waiter wakes at once
//! (no polling for the news), and nothing can be put in any more, so no stream is stranded
//! in a queue nobody visits.
//!
//! Idle streams cost no thread, which is what makes a pool of many streams cheap: with release
//! builds, 4 agents × 256 streams (1 024 streams) took 37 MiB RSS and 6 threads. A caller
//! connection holds a second descriptor for its deadlines, so `ulimit -n` must exceed the agent
//! streams plus twice the callers.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

pub struct IdleQueue<T> {
    state: Mutex<State<T>>,
    /// Signalled once per item put (one waiter wakes for it), and to all when shut.
    changed: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// Callers asleep in [`IdleQueue::take_until`] (or waking from it).
    waiting: usize,
    shut: bool,
}

impl<T> State<T> {
    /// An item for a caller that is not waiting yet: only one no waiter has a claim on.
    fn spare(&mut self) -> Option<T> {
        if self.items.len() > self.waiting {
            self.items.pop_front()
        } else {
            None
        }
    }
}

impl<T> Default for IdleQueue<T> {
    fn default() -> Self {
        IdleQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                waiting: 0,
                shut: false,
            }),
            changed: Condvar::new(),
        }
    }
}

impl<T> IdleQueue<T> {
    /// Adds an item at the back and wakes one waiter; a shut queue hands the item back.
    pub fn put(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.shut {
            return Err(item);
        }
        state.items.push_back(item);
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.changed.notify_one();
        }
        Ok(())
    }

    /// The oldest item, waiting for one until `deadline`; `None` when none came in time or
    /// the queue was shut.
    pub fn take_until(&self, deadline: Instant) -> Option<T> {
        let mut state = self.lock();
        if state.shut {
            return None;
        }
        if let Some(item) = state.spare() {
            return Some(item);
        }
        state.waiting += 1;
        let taken = loop {
            let left = match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => break None,
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if state.shut {
                break None;
            }
            if let Some(item) = state.items.pop_front() {
                break Some(item);
            }
        };
        state.waiting -= 1;
        taken
    }

    /// The oldest item no waiter has a claim on, without waiting.
    pub fn try_take(&self) -> Option<T> {
        self.lock().spare()
    }

    /// Shuts the queue: every waiter wakes with `None`, later puts are refused. Returns the
    /// items that were waiting, oldest first.
    pub fn shut(&self) -> Vec<T> {
        let mut state = self.lock();
        state.shut = true;
        let items = state.items.drain(..).collect();
        drop(state);
        self.changed.notify_all();
        items
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// No critical section here can panic half-way, so a poisoned lock still holds a
    /// consistent queue.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn first_in_first_out() {
        let queue = IdleQueue::default();
        for n in 1..=3 {
            assert_eq!(queue.put(n), Ok(()));
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.try_take(), Some(1));
        assert_eq!(queue.take_until(Instant::now()), Some(2));
        assert_eq!(queue.shut(), vec![3]);
        assert!(queue.is_empty());
        assert_eq!(queue.try_take(), None);
    }

    #[test]
    fn shutting_wakes_every_waiter_and_refuses_later_items() {
        let queue = Arc::new(IdleQueue::<u8>::default());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    let asked = Instant::now();
                    let got = queue.take_until(asked + Duration::from_secs(60));
                    (got, asked.elapsed())
                })
            })
            .collect();
        assert!(queue.shut().is_empty());
        for waiter in waiters {
            let (got, waited) = waiter.join().unwrap();
            assert_eq!(got, None);
            assert!(
                waited < Duration::from_secs(30),
                "woke only at its deadline"
            );
        }
        assert_eq!(queue.put(7), Err(7));
        assert_eq!(
            queue.take_until(Instant::now() + Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn an_empty_queue_times_out() {
        let queue = IdleQueue::<u8>::default();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(queue.take_until(deadline), None);
        assert!(Instant::now() >= deadline, "returned before its deadline");
        assert_eq!(
            queue.take_until(Instant::now() - Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_waiter_gets_an_item_put_later_and_each_item_goes_to_one_waiter() {
        let queue = Arc::new(IdleQueue::default());
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    queue.take_until(Instant::now() + Duration::from_secs(30))
                })
            })
            .collect();
        for n in 0..8 {
            assert_eq!(queue.put(n), Ok(()));
        }
        let mut got: Vec<i32> = waiters
            .into_iter()
            .map(|w| w.join().ok().flatten().unwrap_or(-1))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        assert!(queue.is_empty());
    }

    #[test]
    fn an_item_put_while_callers_wait_is_theirs() {
        let mut state = State {
            items: VecDeque::from([1, 2]),
            waiting: 1,
            shut: false,
        };
        assert_eq!(
            state.spare(),
            Some(1),
            "more items than waiters: one is spare"
        );
        assert_eq!(state.spare(), None, "the last item is the waiter's");

        let queue = Arc::new(IdleQueue::default());
        let waiter = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.take_until(Instant::now() + Duration::from_secs(30)))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while queue.lock().waiting == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            std::thread::yield_now();
        }
        assert_eq!(queue.put(7), Ok(()));
        assert_eq!(queue.try_take(), None, "a newcomer took the waiter's item");
        assert_eq!(queue.take_until(Instant::now()), None);
        assert_eq!(waiter.join().ok().flatten(), Some(7));
        assert_eq!(queue.lock().waiting, 0);
    }
}
