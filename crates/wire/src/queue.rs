//! The axon's bounded priority queue. Market paper §3: "messages from peer i to peer j are
//! queued w.r.t. the stake weight between them". The priority is what the axon's
//! [`crate::StakeLookup::priority`] returns for the caller: w_ij * s_i, the weight the caller
//! gives this axon's neuron on chain times its stake ([`crate::StakeTable`]); ties are served
//! first come, first served.
//!
//! Bounded: when full, a newcomer with strictly more priority than the lowest queued request
//! evicts it (the evicted caller is told to back off); otherwise the newcomer is refused. So a
//! flood from low-stake callers can delay, but never lock out, a high-stake one.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

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

/// Handler slots, `concurrency` of them, and the requests waiting for one. A request that finds
/// a free slot runs at once in its own task, with no queue and no hand-over between tasks; the
/// others wait here by priority, and a finishing request hands its slot straight to the most
/// important waiter still waiting.
pub(crate) struct Scheduler {
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: PriorityQueue<Waiter>,
    closed: bool,
}

/// A queued request: its priority is the queue's key, this is how it is told its turn.
pub(crate) struct Waiter {
    turn: oneshot::Sender<Turn>,
}

/// What a waiting request is told.
pub(crate) enum Turn {
    /// Its slot: run now; dropping it hands the slot on.
    Run(Permit),
    /// A request with more priority took its place in the full queue.
    Evicted,
}

/// What [`Scheduler::enter`] decided.
pub(crate) enum Entry {
    Run(Permit),
    /// Queued: wait for the turn (a closed channel means the axon shut down).
    Wait(oneshot::Receiver<Turn>),
    /// The queue is full of requests with at least this priority.
    Full {
        lowest: u64,
    },
    Closed,
}

/// One handler slot, held while the handler runs; released (to the next waiter) on drop.
pub(crate) struct Permit {
    scheduler: Option<Arc<Scheduler>>,
}

impl Scheduler {
    pub(crate) fn new(slots: usize, capacity: usize) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            state: Mutex::new(State { free: slots, waiting: PriorityQueue::new(capacity), closed: false }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map half-updated (BTreeMap
        // operations are atomic from the outside), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests waiting for a slot (some may have given up and not been skipped yet).
    pub(crate) fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// A slot now, or a place in the queue (evicting a lower priority, which is told so).
    pub(crate) fn enter(self: &Arc<Self>, priority: u64) -> Entry {
        let (entry, evicted) = {
            let mut s = self.lock();
            if s.closed {
                return Entry::Closed;
            }
            if s.free > 0 {
                s.free -= 1;
                return Entry::Run(Permit { scheduler: Some(self.clone()) });
            }
            let (turn, rx) = oneshot::channel();
            match s.waiting.push(priority, Waiter { turn }) {
                Admission::Queued => (Entry::Wait(rx), None),
                Admission::QueuedEvicting(evicted) => (Entry::Wait(rx), Some(evicted)),
                Admission::Refused(_) => (Entry::Full { lowest: s.waiting.lowest().unwrap_or(0) }, None),
            }
        };
        if let Some(e) = evicted {
            let _ = e.turn.send(Turn::Evicted);
        }
        entry
    }

    /// Gives a freed slot to the most important request still waiting, or frees it.
    fn hand_over(self: &Arc<Self>) {
        loop {
            let next = {
                let mut s = self.lock();
                match s.waiting.pop() {
                    Some((_, w)) if !s.closed => w,
                    _ => {
                        s.free += 1;
                        return;
                    }
                }
            };
            // Outside the lock: a refused permit is disarmed, not dropped, so it cannot recurse.
            match next.turn.send(Turn::Run(Permit { scheduler: Some(self.clone()) })) {
                Ok(()) => return,
                Err(Turn::Run(mut p)) => p.scheduler = None,
                Err(Turn::Evicted) => {}
            }
        }
    }

    /// Refuses new requests and tells every waiting one (their channels close).
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        drop(s.waiting.drain());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(s) = self.scheduler.take() {
            s.hand_over();
        }
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
    async fn a_free_slot_runs_at_once_and_a_finished_one_goes_to_the_highest_waiter() {
        let s = Scheduler::new(1, 2);
        let Entry::Run(first) = s.enter(1) else { panic!("a free slot") };
        let (Entry::Wait(low), Entry::Wait(high)) = (s.enter(1), s.enter(5)) else { panic!("queued") };
        assert!(matches!(s.enter(1), Entry::Full { lowest: 1 }));
        // A richer newcomer evicts the poorest waiter, which is told so.
        let Entry::Wait(richest) = s.enter(9) else { panic!("queued by eviction") };
        assert!(matches!(low.await, Ok(Turn::Evicted)));
        // A waiter that gave up is skipped: its turn goes to the next.
        drop(richest);
        drop(first);
        let Ok(Turn::Run(p)) = high.await else { panic!("the slot") };
        assert_eq!(s.len(), 0);
        drop(p);
        let Entry::Run(p) = s.enter(0) else { panic!("the slot is free again") };
        let Entry::Wait(w) = s.enter(0) else { panic!("queued") };
        s.close();
        assert!(w.await.is_err(), "closing tells the waiters");
        drop(p);
        assert!(matches!(s.enter(0), Entry::Closed));
    }
}
