//! From a peer's scores of its neighbours to the row of W it writes on the chain.

use crate::chain::{Chain, ChainError};
use crate::metagraph::MetagraphView;
use crate::participant::{Participant, RateLimitPolicy, WeightsOutcome};
use thiserror::Error;

/// Why no row could be made from the scores.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WeightRowError {
    /// No score gives a weight: all are zero, non-finite or for uids past the metagraph.
    #[error("none of the {given} scores is a finite positive value for a uid below n = {n}")]
    NoPositiveScore {
        /// Scores given.
        given: usize,
        /// The metagraph's size.
        n: u16,
    },
    /// A cabal member's row would name none of its fellows: none of the uids is registered.
    #[error("none of the cabal uids {uids:?} exists (n = {n})")]
    EmptyCabal {
        /// The cabal's uids.
        uids: Vec<u16>,
        /// The metagraph's size.
        n: u16,
    },
}

/// Turns scores into a valid chain weight row and submits it every `interval` blocks.
///
/// The row (market paper: row i of W, `sum_j w_ij = 1`): unknown uids, NaN, infinite and
/// non-positive scores are dropped, scores of a repeated uid are added, the `max_len` largest
/// are kept (ties to the lower uid), and the rest is normalised to sum to 1. The chain's bounded
/// change (intermodel paper §2.3, `||dW_i||_2 < epsilon`) is met by moving from the current row
/// toward the target only as far as allowed, so the row converges over several submissions
/// instead of being refused.
///
/// The cabal override puts equal weight on a fixed set of uids whatever the scores (the
/// localnet's colluding role: peers that weight only each other).
#[derive(Clone, Debug)]
pub struct WeightSetter {
    /// Blocks between two submissions.
    pub interval: u64,
    cabal: Option<Vec<u16>>,
    last_submitted: Option<u64>,
}

/// How far inside the chain's bound a step goes: the chain checks the quantised row (units of
/// 1/65535), which may sit up to sqrt(len) units from the f64 row.
const CHANGE_MARGIN: f64 = 0.95;

impl WeightSetter {
    /// A setter that submits at most once every `interval` blocks (at least 1).
    pub fn new(interval: u64) -> WeightSetter {
        WeightSetter { interval: interval.max(1), cabal: None, last_submitted: None }
    }

    /// All weight on `uids`, equally, whatever the scores.
    pub fn with_cabal(mut self, uids: Vec<u16>) -> WeightSetter {
        self.cabal = Some(uids);
        self
    }

    /// Block of the last applied submission.
    pub fn last_submitted(&self) -> Option<u64> {
        self.last_submitted
    }

    /// Whether a submission is due at `head`.
    pub fn due(&self, head: u64) -> bool {
        self.last_submitted.is_none_or(|last| head >= last.saturating_add(self.interval))
    }

    /// The target row for `scores` on a table of `n` neurons with rows of at most `max_len`
    /// entries: `(uid, weight)` sorted by uid, weights > 0 summing to 1.
    pub fn row(
        &self,
        scores: &[(u16, f32)],
        n: u16,
        max_len: u32,
    ) -> Result<Vec<(u16, f64)>, WeightRowError> {
        if let Some(cabal) = &self.cabal {
            let mut uids: Vec<u16> = cabal.iter().copied().filter(|&u| u < n).collect();
            uids.sort_unstable();
            uids.dedup();
            uids.truncate(max_len as usize);
            if uids.is_empty() {
                return Err(WeightRowError::EmptyCabal { uids: cabal.clone(), n });
            }
            let w = 1.0 / uids.len() as f64;
            return Ok(uids.into_iter().map(|u| (u, w)).collect());
        }
        let mut by_uid = std::collections::BTreeMap::<u16, f64>::new();
        for &(u, s) in scores {
            let s = f64::from(s);
            if u < n && s.is_finite() && s > 0.0 {
                *by_uid.entry(u).or_default() += s;
            }
        }
        let mut entries: Vec<(u16, f64)> = by_uid.into_iter().filter(|(_, s)| s.is_finite()).collect();
        if entries.is_empty() {
            return Err(WeightRowError::NoPositiveScore { given: scores.len(), n });
        }
        Ok(top_normalised(&mut entries, max_len))
    }

    /// Moves from `current` toward `target` by at most `max_change` in L2 (both rows sorted by
    /// uid and summing to 1, `current` possibly empty: a first row is unbounded).
    pub fn bounded(
        target: &[(u16, f64)],
        current: &[(u16, f64)],
        max_change: Option<f64>,
        max_len: u32,
    ) -> Vec<(u16, f64)> {
        let Some(eps) = max_change else { return target.to_vec() };
        if current.is_empty() {
            return target.to_vec();
        }
        let mut all = std::collections::BTreeMap::<u16, (f64, f64)>::new();
        for &(u, w) in current {
            all.entry(u).or_default().0 = w;
        }
        for &(u, w) in target {
            all.entry(u).or_default().1 = w;
        }
        let d = all.values().map(|(c, t)| (t - c) * (t - c)).sum::<f64>().sqrt();
        if d <= eps * CHANGE_MARGIN {
            return target.to_vec();
        }
        // A convex combination of two rows summing to 1 sums to 1.
        let t = eps * CHANGE_MARGIN / d;
        let mut entries: Vec<(u16, f64)> =
            all.into_iter().map(|(u, (c, w))| (u, c + t * (w - c))).filter(|&(_, w)| w > 0.0).collect();
        // Truncation (more entries than a row may hold) can move the row a little further than
        // the bound; the next submission corrects it.
        top_normalised(&mut entries, max_len)
    }

    /// The row this neuron (`uid`, on the chain `view` shows) should hold for `scores`: the
    /// target row moved from its current row within the chain's bounded change (`rules`
    /// from the genesis).
    pub fn next_row(
        &self,
        view: &MetagraphView,
        uid: u16,
        rules: &ledger::WeightsConfig,
        scores: &[(u16, f32)],
    ) -> Result<Vec<(u16, f64)>, WeightRowError> {
        let target = self.row(scores, view.n(), rules.max_len)?;
        Ok(Self::bounded(&target, view.weights_of(uid), rules.max_change, rules.max_len))
    }

    /// Records that a row was applied (or queued for) block `height`: the next is due
    /// `interval` blocks later.
    pub fn submitted(&mut self, height: u64) {
        self.last_submitted = Some(height);
    }

    /// Submits a row for `scores` if one is due at the head and the rate limit allows it, and
    /// waits for its block. `Ok(None)`: not due. The bounded change and the row length come
    /// from the chain's genesis.
    pub async fn step<C: Chain>(
        &mut self,
        participant: &Participant<C>,
        scores: &[(u16, f32)],
    ) -> Result<Option<WeightsOutcome>, StepError> {
        let head = participant.chain().head().await?.height;
        if !self.due(head) {
            return Ok(None);
        }
        let view = participant.sync().await?;
        let me = participant.hotkey();
        let uid = view.uid_of(&me).ok_or(ChainError::NotRegistered(me))?;
        let row = self.next_row(&view, uid, &participant.genesis().weights, scores)?;
        let (uids, values): (Vec<u16>, Vec<f64>) = row.into_iter().unzip();
        let outcome = participant.set_weights(uids, &values, RateLimitPolicy::Skip).await?;
        if let WeightsOutcome::Applied { height } = outcome {
            self.submitted(height);
        }
        Ok(Some(outcome))
    }
}

/// Why [`WeightSetter::step`] failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// No row could be made from the scores.
    #[error(transparent)]
    Row(#[from] WeightRowError),
    /// The chain refused the weights or could not be reached.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Keeps the `max_len` largest entries (ties to the lower uid), sorted by uid, summing to 1.
fn top_normalised(entries: &mut Vec<(u16, f64)>, max_len: u32) -> Vec<(u16, f64)> {
    if entries.len() > max_len as usize {
        entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        entries.truncate(max_len as usize);
    }
    entries.sort_by_key(|e| e.0);
    let sum: f64 = entries.iter().map(|e| e.1).sum();
    entries.iter().map(|&(u, w)| (u, w / sum)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l2(a: &[(u16, f64)], b: &[(u16, f64)]) -> f64 {
        let mut m = std::collections::BTreeMap::<u16, f64>::new();
        a.iter().for_each(|&(u, w)| *m.entry(u).or_default() += w);
        b.iter().for_each(|&(u, w)| *m.entry(u).or_default() -= w);
        m.values().map(|d| d * d).sum::<f64>().sqrt()
    }

    #[test]
    fn bad_scores_are_dropped_and_the_rest_normalised() {
        let s = WeightSetter::new(10);
        let row = s
            .row(
                &[(0, 1.0), (1, f32::NAN), (2, -3.0), (3, 3.0), (9, 5.0), (3, 1.0), (4, f32::INFINITY)],
                5,
                8,
            )
            .unwrap();
        assert_eq!(row, vec![(0, 0.2), (3, 0.8)]);
        assert_eq!(
            s.row(&[(0, 0.0), (7, 1.0)], 5, 8),
            Err(WeightRowError::NoPositiveScore { given: 2, n: 5 })
        );
    }

    #[test]
    fn the_largest_are_kept_up_to_max_len() {
        let s = WeightSetter::new(1);
        let row = s.row(&[(0, 1.0), (1, 4.0), (2, 2.0), (3, 2.0)], 4, 2).unwrap();
        // 2.0 ties between uids 2 and 3: the lower uid stays.
        assert_eq!(row, vec![(1, 4.0 / 6.0), (2, 2.0 / 6.0)]);
    }

    #[test]
    fn the_cabal_weights_only_its_members() {
        let s = WeightSetter::new(1).with_cabal(vec![6, 5, 5, 40]);
        assert_eq!(s.row(&[(0, 100.0)], 8, 16).unwrap(), vec![(5, 0.5), (6, 0.5)]);
        assert!(matches!(s.row(&[], 4, 16), Err(WeightRowError::EmptyCabal { .. })));
    }

    #[test]
    fn submissions_are_due_every_interval() {
        let mut s = WeightSetter::new(5);
        assert!(s.due(0));
        s.last_submitted = Some(10);
        assert!(!s.due(14));
        assert!(s.due(15));
    }

    proptest! {
        #[test]
        fn rows_are_valid_for_the_chain(
            scores in proptest::collection::vec((0u16..20, prop_oneof![any::<f32>(), 0.0f32..10.0]), 0..40),
            n in 1u16..16,
            max_len in 1u32..8,
        ) {
            match WeightSetter::new(1).row(&scores, n, max_len) {
                Err(WeightRowError::NoPositiveScore { .. }) => {
                    let any_valid = scores.iter().any(|&(u, s)| u < n && s.is_finite() && s > 0.0);
                    prop_assert!(!any_valid);
                }
                Err(e) => prop_assert!(false, "{e}"),
                Ok(row) => {
                    prop_assert!(!row.is_empty() && row.len() <= max_len as usize);
                    prop_assert!(row.windows(2).all(|w| w[0].0 < w[1].0));
                    prop_assert!(row.iter().all(|&(u, w)| u < n && w.is_finite() && w > 0.0));
                    let sum: f64 = row.iter().map(|e| e.1).sum();
                    prop_assert!((sum - 1.0).abs() < 1e-9, "sum {}", sum);
                }
            }
        }

        #[test]
        fn bounded_rows_move_at_most_epsilon_and_stay_normalised(
            a in proptest::collection::vec((0u16..10, 0.01f32..1.0), 1..10),
            b in proptest::collection::vec((0u16..10, 0.01f32..1.0), 1..10),
            eps in 0.01f64..1.5,
        ) {
            let s = WeightSetter::new(1);
            let current = s.row(&a, 10, 10).unwrap();
            let target = s.row(&b, 10, 10).unwrap();
            let row = WeightSetter::bounded(&target, &current, Some(eps), 10);
            prop_assert!(l2(&row, &current) <= eps + 1e-9);
            let sum: f64 = row.iter().map(|e| e.1).sum();
            prop_assert!((sum - 1.0).abs() < 1e-9);
            prop_assert!(row.iter().all(|&(_, w)| w > 0.0));
            // Repeated steps reach the target.
            let mut r = row;
            for _ in 0..200 {
                r = WeightSetter::bounded(&target, &r, Some(eps), 10);
            }
            prop_assert!(l2(&r, &target) < 1e-9);
        }
    }
}
