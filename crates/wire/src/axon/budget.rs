//! Bytes in flight: each admitted call reserves its MACed body length before the body is read,
//! against its caller's budget and the axon's, and holds it until its job is gone. Callers
//! without stake share half of the axon's budget, so staked callers always find room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::proto::ReturnCode;

#[derive(Debug, Default)]
struct Usage {
    total: u64,
    unstaked: u64,
    by_caller: HashMap<[u8; 32], u64>,
}

#[derive(Debug)]
pub(crate) struct Budget {
    per_caller: u64,
    total: u64,
    usage: Mutex<Usage>,
}

/// Bytes held for one call; released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    caller: [u8; 32],
    bytes: u64,
    staked: bool,
}

impl Budget {
    pub(crate) fn new(per_caller: u64, total: u64) -> Budget {
        Budget { per_caller, total, usage: Mutex::new(Usage::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        // Plain counters: consistent after any panic elsewhere.
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `bytes` for `caller`, or says why not (BACKOFF: retry when calls finish).
    pub(crate) fn reserve(
        self: &Arc<Self>,
        caller: [u8; 32],
        bytes: u64,
        staked: bool,
    ) -> Result<Reservation, (ReturnCode, String)> {
        let mut u = self.lock();
        let mine = u.by_caller.get(&caller).copied().unwrap_or(0);
        let backoff = |what: String| Err((ReturnCode::Backoff, what));
        if mine + bytes > self.per_caller {
            return backoff(format!(
                "{bytes} more bytes would put you over this axon's {} bytes in flight per caller ({mine} held); retry when your calls finish",
                self.per_caller
            ));
        }
        if u.total + bytes > self.total {
            return backoff(format!(
                "the axon holds {} of its {} bytes in flight; retry later",
                u.total, self.total
            ));
        }
        if !staked && u.unstaked + bytes > self.total / 2 {
            return backoff(format!(
                "callers without stake hold {} of the {} bytes in flight they may share; retry later",
                u.unstaked,
                self.total / 2
            ));
        }
        u.total += bytes;
        if !staked {
            u.unstaked += bytes;
        }
        *u.by_caller.entry(caller).or_default() += bytes;
        Ok(Reservation { budget: self.clone(), caller, bytes, staked })
    }

    #[cfg(test)]
    fn held(&self, caller: &[u8; 32]) -> u64 {
        self.lock().by_caller.get(caller).copied().unwrap_or(0)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut u = self.budget.lock();
        u.total -= self.bytes;
        if !self.staked {
            u.unstaked -= self.bytes;
        }
        if let Some(mine) = u.by_caller.get_mut(&self.caller) {
            *mine -= self.bytes;
            if *mine == 0 {
                u.by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_caller_total_and_unstaked_share_are_enforced_and_released() {
        let b = Arc::new(Budget::new(100, 300));
        let (a, c, d) = ([1; 32], [2; 32], [3; 32]);
        let r1 = b.reserve(a, 60, true).unwrap();
        assert_eq!(b.reserve(a, 41, true).unwrap_err().0, ReturnCode::Backoff);
        let r2 = b.reserve(a, 40, true).unwrap();
        assert_eq!(b.held(&a), 100);
        // Unstaked callers share at most half of the total (150).
        let u1 = b.reserve(c, 100, false).unwrap();
        let e = b.reserve(d, 60, false).unwrap_err();
        assert!(e.1.contains("without stake"), "{}", e.1);
        // A staked caller still fits: 100 + 100 + 100 = 300.
        let s = b.reserve(d, 100, true).unwrap();
        assert!(b.reserve([4; 32], 1, true).is_err());
        drop((r1, r2, u1, s));
        assert_eq!(b.held(&a), 0);
        assert!(b.lock().by_caller.is_empty());
        let u = b.lock();
        assert_eq!((u.total, u.unstaked), (0, 0));
        drop(u);
        assert!(b.reserve(d, 100, false).is_ok());
    }
}
