//! The axon's bounded stake-priority queue. Market paper §3: "messages from peer i to peer j are
//! queued w.r.t. the stake weight between them". The priority is whatever the axon's
//! [`crate::StakeLookup`] returns for the caller (its stake, or a stake-weight the peer computes
//! from the metagraph); ties are served first come, first served.
//!
//! Bounded: when full, a newcomer with strictly more priority than the lowest queued request
//! evicts it (the evicted caller is told to back off); otherwise the newcomer is refused. So a
//! flood from low-stake callers can delay, but never lock out, a high-stake one.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Semaphore;

/// What happened to a pushed item.
#[derive(Debug)]
pub(crate) enum Admission<T> {
    Queued,
    /// Queued in place of this lower-priority item, which the caller must answer.
    QueuedEvicting(T),
    /// The queue is full of items at least as important: the item comes back.
    Refused(T),
}

/// The ordering alone, synchronous and deterministic.
#[derive(Debug)]
pub(crate) struct PriorityQueue<T> {
    capacity: usize,
    next_seq: u64,
    // (priority, Reverse(arrival)): the last key is the most important and, among equals, the
    // oldest; the first key is the least important and, among equals, the newest.
    items: BTreeMap<(u64, Reverse<u64>), T>,
}

impl<T> PriorityQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        PriorityQueue { capacity: capacity.max(1), next_seq: 0, items: BTreeMap::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The lowest priority waiting, if any.
    pub(crate) fn lowest(&self) -> Option<u64> {
        self.items.first_key_value().map(|(k, _)| k.0)
    }

    pub(crate) fn push(&mut self, priority: u64, item: T) -> Admission<T> {
        let key = (priority, Reverse(self.next_seq));
        if self.items.len() < self.capacity {
            self.next_seq += 1;
            self.items.insert(key, item);
            return Admission::Queued;
        }
        match self.items.first_key_value() {
            Some((lowest, _)) if lowest.0 < priority => {
                let evicted = self.items.pop_first().map(|(_, v)| v);
                self.next_seq += 1;
                self.items.insert(key, item);
                match evicted {
                    Some(e) => Admission::QueuedEvicting(e),
                    None => Admission::Queued,
                }
            }
            _ => Admission::Refused(item),
        }
    }

    /// The most important item, oldest first among equals.
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        self.items.pop_last().map(|((p, _), v)| (p, v))
    }

    fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.items).into_values().collect()
    }
}

/// The queue shared by the RPC handlers (which push) and the axon's workers (which pop).
/// `ready` holds one permit per queued item, so a worker that got a permit always finds an
/// item, and waiting costs nothing.
pub(crate) struct JobQueue<T> {
    inner: Mutex<PriorityQueue<T>>,
    ready: Semaphore,
}

impl<T> JobQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        JobQueue { inner: Mutex::new(PriorityQueue::new(capacity)), ready: Semaphore::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PriorityQueue<T>> {
        // A panic while holding this lock cannot leave the map half-updated (BTreeMap
        // operations are atomic from the outside), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn lowest(&self) -> Option<u64> {
        self.lock().lowest()
    }

    pub(crate) fn push(&self, priority: u64, item: T) -> Admission<T> {
        if self.ready.is_closed() {
            return Admission::Refused(item);
        }
        let admission = self.lock().push(priority, item);
        // An eviction swaps one item for another: the count of ready items is unchanged.
        if let Admission::Queued = admission {
            self.ready.add_permits(1);
        }
        admission
    }

    /// Waits for the most important item; `None` once the queue is closed.
    pub(crate) async fn pop(&self) -> Option<T> {
        let permit = self.ready.acquire().await.ok()?;
        permit.forget();
        self.lock().pop().map(|(_, item)| item)
    }

    /// Stops the workers and hands back what was still waiting.
    pub(crate) fn close(&self) -> Vec<T> {
        self.ready.close();
        self.lock().drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn highest_priority_first_then_arrival_order() {
        let mut q = PriorityQueue::new(8);
        for (p, name) in [(1, "a"), (5, "b"), (1, "c"), (9, "d"), (5, "e")] {
            assert!(matches!(q.push(p, name), Admission::Queued));
        }
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, n)| n)).collect();
        assert_eq!(order, ["d", "b", "e", "a", "c"]);
    }

    #[test]
    fn full_queue_evicts_only_for_strictly_more_priority() {
        let mut q = PriorityQueue::new(2);
        q.push(3, "low-old");
        q.push(3, "low-new");
        assert!(matches!(q.push(3, "equal"), Admission::Refused("equal")));
        assert!(matches!(q.push(2, "less"), Admission::Refused("less")));
        // Among equals the newest is evicted: the oldest has waited longest.
        assert!(matches!(q.push(4, "more"), Admission::QueuedEvicting("low-new")));
        assert_eq!(q.pop(), Some((4, "more")));
        assert_eq!(q.pop(), Some((3, "low-old")));
        assert_eq!(q.pop(), None);
    }

    proptest! {
        /// Whatever the arrivals: the queue never exceeds its capacity, nothing is lost or
        /// duplicated (every item is queued-then-popped, evicted or refused exactly once),
        /// and pops come out in non-increasing priority.
        #[test]
        fn bounded_lossless_and_ordered(
            capacity in 1usize..6,
            ops in proptest::collection::vec(prop_oneof![(0u64..4).prop_map(Some), Just(None)], 0..60),
        ) {
            let mut q = PriorityQueue::new(capacity);
            let (mut pushed, mut out) = (0usize, Vec::new());
            let mut last_pop: Option<u64> = None;
            for op in ops {
                match op {
                    Some(p) => {
                        let id = pushed;
                        pushed += 1;
                        match q.push(p, id) {
                            Admission::Queued => {}
                            Admission::QueuedEvicting(e) => out.push(e),
                            Admission::Refused(r) => { prop_assert_eq!(r, id); out.push(r) }
                        }
                        last_pop = None;
                    }
                    None => {
                        if let Some((p, id)) = q.pop() {
                            if let Some(prev) = last_pop { prop_assert!(p <= prev) }
                            last_pop = Some(p);
                            out.push(id);
                        }
                    }
                }
                prop_assert!(q.len() <= capacity);
            }
            out.extend(q.drain());
            out.sort_unstable();
            prop_assert_eq!(out, (0..pushed).collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn job_queue_pop_waits_for_push_and_close_releases_workers() {
        let q = std::sync::Arc::new(JobQueue::new(4));
        let worker = tokio::spawn({
            let q = q.clone();
            async move { (q.pop().await, q.pop().await) }
        });
        tokio::task::yield_now().await;
        assert!(matches!(q.push(1, 7), Admission::Queued));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(q.close(), Vec::<i32>::new());
        assert_eq!(worker.await.unwrap(), (Some(7), None));
        assert!(matches!(q.push(1, 8), Admission::Refused(8)));
    }
}
