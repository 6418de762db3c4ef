//! Adaptive inflation: the intermodel paper's adaptive tau (§3.3, Figure 5) as a chain rule.
//!
//! The paper's market trades loss against inflation: with a high inflation rate tau, peers gain
//! more by weighting themselves (rank) than by weighting useful peers (loss), and W drifts to
//! the identity, where ranking says nothing; with a low one they connect. Its Figure 5 lets the
//! network steer tau toward a target *sparsity* of W, `sum(diag W) / sum(W)`: "as sparsity
//! increases we push the market equilibrium by decreasing tau". `agora sim empirical` runs that
//! controller in the paper's game; here the chain runs it on the real W.
//!
//! Rule, at every epoch, after the mechanism ran on W (the rows the epoch read: validators'
//! rows, outdated entries dropped, in integer units):
//! `tau <- clamp(tau + round(gain * (target - sparsity) * emission_per_block), min, max)`,
//! the paper's integral controller `tau <- max(0, tau + gain (target - sparsity))` with tau in
//! base units per block, the gain scaled by the nominal `emission_per_block` (so `gain` is the
//! fraction of the nominal rate added per epoch per unit of sparsity error) and bounds instead
//! of the paper's floor at 0. An epoch whose W is empty leaves tau as it is (sparsity is
//! undefined). The new tau sets the emission of the following epochs (`tempo * tau` per epoch;
//! in lazy mode the per-block accrual). It starts at `emission_per_block`.
//!
//! Determinism: the sums are of integers below 2^53, exact in f64; the update is one IEEE
//! multiply-add and a round, the same on every machine.

use mechanism::SparseMatrix;
use serde::{Deserialize, Serialize};

/// Genesis parameters of adaptive inflation (`adaptive_inflation`; off when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveInflation {
    /// Target of `sum(diag W) / sum(W)`, in (0, 1]. The paper's Figure 5 uses 1 in its game;
    /// a chain where validators also weight others wants less.
    pub target_sparsity: f64,
    /// Integral gain: fraction of `emission_per_block` added to tau per epoch per unit of
    /// sparsity below the target (removed above it). Finite, >= 0.
    pub gain: f64,
    /// Bounds on tau, in base units per block: `min_per_block <= emission_per_block <=
    /// max_per_block < 2^48`.
    pub min_per_block: u64,
    /// Upper bound on tau, in base units per block (see `min_per_block`).
    pub max_per_block: u64,
}

impl Default for AdaptiveInflation {
    fn default() -> Self {
        // The sim's defaults (target 0.5, gain 0.01 per step), with tau free to move between
        // nothing and twice the nominal schedule.
        AdaptiveInflation {
            target_sparsity: 0.5,
            gain: 0.01,
            min_per_block: 0,
            max_per_block: 2 * crate::UNITS_PER_TOKEN,
        }
    }
}

/// `sum(diag W) / sum(W)` (intermodel paper §3.3), `None` when W is empty.
pub fn sparsity(w: &SparseMatrix) -> Option<f64> {
    let (mut diag, mut total) = (0.0, 0.0);
    for i in 0..w.n() {
        let (cols, vals) = w.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            total += v;
            if j as usize == i {
                diag += v;
            }
        }
    }
    (total > 0.0).then(|| diag / total)
}

impl AdaptiveInflation {
    /// tau after an epoch that measured `sparsity` (see the module doc).
    pub fn next_tau(&self, tau: u64, sparsity: Option<f64>, emission_per_block: u64) -> u64 {
        let Some(s) = sparsity.filter(|s| s.is_finite()) else { return tau };
        let step = self.gain * (self.target_sparsity - s) * emission_per_block as f64;
        // `as` saturates at the i128 range and maps NaN to 0; |step| < 2^48 by validation.
        let moved = i128::from(tau) + step.round() as i128;
        moved.clamp(i128::from(self.min_per_block), i128::from(self.max_per_block)) as u64
    }

    /// Why the parameters cannot run, as `(field, reason)`.
    pub(crate) fn invalid(&self, emission_per_block: u64) -> Option<(&'static str, String, &'static str)> {
        let t = self.target_sparsity;
        if !(t > 0.0 && t <= 1.0) {
            return Some(("adaptive_inflation.target_sparsity", t.to_string(), "must lie in (0, 1]"));
        }
        if !(self.gain.is_finite() && self.gain >= 0.0 && self.gain <= 1e6) {
            return Some(("adaptive_inflation.gain", self.gain.to_string(), "must be finite, in [0, 1e6]"));
        }
        if self.max_per_block >= 1u64 << (64 - crate::genesis::LAZY_FRACTION_BITS) {
            return Some((
                "adaptive_inflation.max_per_block",
                self.max_per_block.to_string(),
                "must be below 2^48 base units",
            ));
        }
        if !(self.min_per_block <= emission_per_block && emission_per_block <= self.max_per_block) {
            return Some((
                "emission_per_block",
                emission_per_block.to_string(),
                "must lie in [adaptive_inflation.min_per_block, adaptive_inflation.max_per_block]",
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(rows: Vec<Vec<(usize, f64)>>) -> SparseMatrix {
        SparseMatrix::from_rows(rows.len(), rows).unwrap()
    }

    #[test]
    fn sparsity_is_the_diagonal_share() {
        assert_eq!(sparsity(&w(vec![vec![(0, 1.0)], vec![(1, 3.0)]])), Some(1.0));
        assert_eq!(sparsity(&w(vec![vec![(1, 1.0)], vec![(0, 1.0)]])), Some(0.0));
        assert_eq!(sparsity(&w(vec![vec![(0, 1.0), (1, 1.0)], vec![(0, 2.0)]])), Some(0.25));
        assert_eq!(sparsity(&w(vec![vec![], vec![]])), None);
    }

    #[test]
    fn tau_rises_below_the_target_falls_above_and_stays_in_bounds() {
        let a = AdaptiveInflation { target_sparsity: 0.5, gain: 0.1, min_per_block: 10, max_per_block: 200 };
        assert_eq!(a.next_tau(100, Some(0.0), 100), 105);
        assert_eq!(a.next_tau(100, Some(1.0), 100), 95);
        assert_eq!(a.next_tau(100, Some(0.5), 100), 100);
        assert_eq!(a.next_tau(100, None, 100), 100);
        assert_eq!(a.next_tau(199, Some(0.0), 100), 200);
        assert_eq!(a.next_tau(12, Some(1.0), 100), 10);
    }

    proptest! {
        /// tau stays within its bounds and moves toward the target: never up when W is sparser
        /// than the target, never down when it is denser.
        #[test]
        fn tau_stays_bounded_and_moves_the_right_way(
            tau in 0u64..1_000_000, s in 0.0f64..=1.0, target in 0.01f64..=1.0, gain in 0.0f64..10.0,
            lo in 0u64..1000, span in 0u64..1_000_000,
        ) {
            let a = AdaptiveInflation { target_sparsity: target, gain, min_per_block: lo, max_per_block: lo + span };
            let tau = tau.clamp(lo, lo + span);
            let next = a.next_tau(tau, Some(s), 1000);
            prop_assert!((lo..=lo + span).contains(&next));
            if s > target { prop_assert!(next <= tau); }
            if s < target { prop_assert!(next >= tau); }
        }
    }
}
