//! A pool's idle agent streams: a first-in first-out queue that callers wait on.
//!
//! This was a crossbeam channel. Under load (16 callers sharing 4 streams) a waiting receiver
//! spins and calls `sched_yield` several times before it parks; with the caller threads, the
//! agent, the VCS and the load generator on two cores, those yields and the context switches
//! they caused were a fifth of the gateway's CPU (`perf`, see the README's performance
//! section). A mutex and a condvar park a waiting caller at once and wake exactly one waiter
//! per stream put back. First in, first out, so load spreads across agents by who has been
//! idle longest.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

pub struct IdleQueue<T> {
    items: Mutex<VecDeque<T>>,
    /// Signalled once per item put, so one waiter wakes for it.
    put: Condvar,
}

impl<T> Default for IdleQueue<T> {
    fn default() -> Self {
        IdleQueue {
            items: Mutex::new(VecDeque::new()),
            put: Condvar::new(),
        }
    }
}

impl<T> IdleQueue<T> {
    /// Adds an item at the back and wakes one waiter.
    pub fn put(&self, item: T) {
        self.lock().push_back(item);
        self.put.notify_one();
    }

    /// The oldest item, waiting for one until `deadline`; `None` when none came in time.
    pub fn take_until(&self, deadline: Instant) -> Option<T> {
        let mut items = self.lock();
        loop {
            if let Some(item) = items.pop_front() {
                return Some(item);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            items = self
                .put
                .wait_timeout(items, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The oldest item, without waiting.
    pub fn try_take(&self) -> Option<T> {
        self.lock().pop_front()
    }

    /// Every item, oldest first, leaving the queue empty.
    pub fn take_all(&self) -> Vec<T> {
        self.lock().drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// No critical section here can panic half-way, so a poisoned lock still holds a
    /// consistent queue.
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
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
            queue.put(n);
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.try_take(), Some(1));
        assert_eq!(queue.take_until(Instant::now()), Some(2));
        assert_eq!(queue.take_all(), vec![3]);
        assert!(queue.is_empty());
        assert_eq!(queue.try_take(), None);
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
            queue.put(n);
        }
        let mut got: Vec<i32> = waiters
            .into_iter()
            .map(|w| w.join().ok().flatten().unwrap_or(-1))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        assert!(queue.is_empty());
    }
}
