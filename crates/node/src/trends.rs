//! The dashboard's history: each neuron's stake share, incentive and emission over blocks, for
//! `agora_history`, kept in memory by the node as blocks are committed.
//!
//! Bounded twice: samples older than [`WINDOW`] blocks before the head are dropped, and at most
//! [`MAX_SAMPLES`] are kept: a sample is taken every `stride` blocks, and when the buffer is
//! full every other sample is dropped and the stride doubles. So the history always spans from
//! (about) the node's start or the window's edge to the head at an even spacing, and costs at
//! most `MAX_SAMPLES * n * 12` bytes (30 MB at 10,000 neurons). Past metagraphs stay exact
//! through [`crate::history`]'s checkpoints; this is the cheap trend line for charts, and it
//! starts anew when the node restarts.

use client::types::{HistoryQuery, HistorySeries, NeuronHistory};
use ledger::Neuron;
use std::collections::VecDeque;

/// Blocks of history kept behind the head.
pub const WINDOW: u64 = 100_000;
/// Samples kept (the points of a chart).
pub const MAX_SAMPLES: usize = 256;
/// Neurons one call may ask for.
pub const MAX_UIDS: usize = 64;
/// Neurons returned when a call names none: those with the most stake now.
pub const DEFAULT_UIDS: usize = 10;

/// The neurons' values after one block.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    height: u64,
    /// Per uid: stake / total stake (0 when no stake).
    stake_share: Vec<f32>,
    incentive: Vec<f32>,
    /// Last epoch's emission, base units.
    emission: Vec<u64>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Trends {
    samples: VecDeque<Sample>,
    stride: u64,
    max: usize,
}

impl Default for Trends {
    fn default() -> Self {
        Trends::with_capacity(MAX_SAMPLES)
    }
}

/// Why an `agora_history` call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrendError {
    #[error("no neuron with uid {uid}: the network has {n} neurons")]
    /// A uid asked for is not registered.
    UnknownUid {
        /// The uid asked for.
        uid: u16,
        /// Registered neurons (uids are `0..n`).
        n: usize,
    },
    #[error("{asked} uids asked for: at most {MAX_UIDS} per call")]
    /// More than [`MAX_UIDS`] uids in one call.
    TooManyUids {
        /// How many were asked for.
        asked: usize,
    },
    #[error("from block {from} is after to block {to}")]
    /// The range's start is after its end.
    Reversed {
        /// The first height asked for.
        from: u64,
        /// The last height asked for.
        to: u64,
    },
    #[error(
        "blocks {from}..={to} span {span} blocks: the node keeps the last {WINDOW}, ask for at most that"
    )]
    /// The range spans more than the [`WINDOW`] blocks the node samples.
    TooLong {
        /// The first height asked for.
        from: u64,
        /// The last height asked for.
        to: u64,
        /// Blocks in the range.
        span: u64,
    },
    #[error("block {to} does not exist yet: the head is block {head}")]
    /// The range ends past the head.
    Future {
        /// The last height asked for.
        to: u64,
        /// The head's height.
        head: u64,
    },
}

impl Trends {
    /// A history of at most `max` samples (at least 2).
    pub fn with_capacity(max: usize) -> Trends {
        Trends { samples: VecDeque::new(), stride: 1, max: max.max(2) }
    }

    /// Records the neurons after block `height` if it falls on the stride.
    pub fn record(&mut self, height: u64, neurons: &[Neuron]) {
        while self.samples.front().is_some_and(|s| s.height + WINDOW < height) {
            self.samples.pop_front();
        }
        if !height.is_multiple_of(self.stride) || self.samples.back().is_some_and(|s| s.height >= height) {
            return;
        }
        if self.samples.len() >= self.max {
            // Keep the samples on the doubled stride: the spacing stays even.
            self.stride *= 2;
            let stride = self.stride;
            self.samples.retain(|s| s.height.is_multiple_of(stride));
            if !height.is_multiple_of(stride) {
                return;
            }
        }
        let total: u128 = neurons.iter().map(|n| u128::from(n.stake)).sum();
        let share = |s: u64| if total == 0 { 0.0 } else { (s as f64 / total as f64) as f32 };
        self.samples.push_back(Sample {
            height,
            stake_share: neurons.iter().map(|n| share(n.stake)).collect(),
            incentive: neurons.iter().map(|n| n.scores.incentive as f32).collect(),
            emission: neurons.iter().map(|n| n.scores.emission).collect(),
        });
    }

    /// The series of `q.uids` (default: the [`DEFAULT_UIDS`] with the most stake in `neurons`,
    /// the table now) over `q.from..=q.to` (default: all kept up to `head`).
    pub fn query(
        &self,
        q: &HistoryQuery,
        neurons: &[Neuron],
        head: u64,
    ) -> Result<HistorySeries, TrendError> {
        let to = q.to.unwrap_or(head);
        let from = q.from.unwrap_or(to.saturating_sub(WINDOW));
        if to > head {
            return Err(TrendError::Future { to, head });
        }
        if from > to {
            return Err(TrendError::Reversed { from, to });
        }
        if to - from > WINDOW {
            return Err(TrendError::TooLong { from, to, span: to - from });
        }
        let uids: Vec<u16> = match &q.uids {
            Some(uids) if uids.len() > MAX_UIDS => return Err(TrendError::TooManyUids { asked: uids.len() }),
            Some(uids) => uids.clone(),
            None => {
                let mut by_stake: Vec<&Neuron> = neurons.iter().collect();
                by_stake.sort_by(|a, b| b.stake.cmp(&a.stake).then(a.uid.cmp(&b.uid)));
                by_stake.iter().take(DEFAULT_UIDS).map(|n| n.uid).collect()
            }
        };
        if let Some(&uid) = uids.iter().find(|&&u| usize::from(u) >= neurons.len()) {
            return Err(TrendError::UnknownUid { uid, n: neurons.len() });
        }
        let kept: Vec<&Sample> = self.samples.iter().filter(|s| (from..=to).contains(&s.height)).collect();
        // A uid registered after a sample has no value in it (`get` is `None`).
        Ok(HistorySeries {
            from,
            to,
            stride: self.stride,
            heights: kept.iter().map(|s| s.height).collect(),
            neurons: uids
                .iter()
                .map(|&uid| {
                    let u = usize::from(uid);
                    NeuronHistory {
                        uid,
                        hotkey: neurons[u].hotkey,
                        stake_share: kept.iter().map(|s| s.stake_share.get(u).copied()).collect(),
                        incentive: kept.iter().map(|s| s.incentive.get(u).copied()).collect(),
                        emission: kept.iter().map(|s| s.emission.get(u).copied()).collect(),
                    }
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{NeuronScores, PublicKey};
    use proptest::prelude::*;

    fn neurons(stakes: &[u64]) -> Vec<Neuron> {
        (0u16..)
            .zip(stakes)
            .map(|(uid, &stake)| {
                let mut n = Neuron::new(uid, PublicKey([uid as u8; 32]), PublicKey([0; 32]), stake, 0, 0);
                n.scores = NeuronScores { incentive: 0.25, emission: stake / 10, ..Default::default() };
                n
            })
            .collect()
    }

    #[test]
    fn series_follow_the_blocks_and_default_to_the_largest_stakes() {
        let mut t = Trends::default();
        let mut stakes = vec![10, 30];
        for h in 1..=5 {
            stakes[0] += 10; // 20, 30, 40, 50, 60
            t.record(h, &neurons(&stakes));
        }
        // A neuron registered at block 6 has no value before it.
        stakes.push(100);
        t.record(6, &neurons(&stakes));
        let now = neurons(&stakes);
        let s = t.query(&HistoryQuery::default(), &now, 6).unwrap();
        assert_eq!(s.heights, [1, 2, 3, 4, 5, 6]);
        assert_eq!(s.neurons.iter().map(|n| n.uid).collect::<Vec<_>>(), [2, 0, 1], "by stake now");
        assert_eq!(s.neurons[1].stake_share[0], Some(0.4)); // 20 / 50
        assert_eq!(s.neurons[1].emission[4], Some(6));
        assert_eq!(s.neurons[0].stake_share[..5], [None; 5]);
        assert_eq!(s.neurons[0].incentive[5], Some(0.25));
        let part =
            t.query(&HistoryQuery { uids: Some(vec![1]), from: Some(2), to: Some(3) }, &now, 6).unwrap();
        assert_eq!((part.heights.clone(), part.neurons.len()), (vec![2, 3], 1));
        assert_eq!(part.neurons[0].stake_share, [Some(0.5), Some(30.0 / 70.0)]);
    }

    #[test]
    fn bad_queries_are_refused_with_what_is_allowed() {
        let t = Trends::default();
        let n = neurons(&[1, 2]);
        let q = |uids: Option<Vec<u16>>, from, to| HistoryQuery { uids, from, to };
        assert_eq!(
            t.query(&q(Some(vec![0, 7]), None, None), &n, 9),
            Err(TrendError::UnknownUid { uid: 7, n: 2 })
        );
        assert_eq!(
            t.query(&q(Some(vec![0; 65]), None, None), &n, 9),
            Err(TrendError::TooManyUids { asked: 65 })
        );
        assert_eq!(t.query(&q(None, Some(5), Some(4)), &n, 9), Err(TrendError::Reversed { from: 5, to: 4 }));
        assert_eq!(t.query(&q(None, None, Some(10)), &n, 9), Err(TrendError::Future { to: 10, head: 9 }));
        let head = 10 * WINDOW;
        assert_eq!(
            t.query(&q(None, Some(0), None), &n, head),
            Err(TrendError::TooLong { from: 0, to: head, span: head })
        );
        assert!(TrendError::TooLong { from: 0, to: head, span: head }.to_string().contains("100000"));
        assert!(t.query(&q(None, Some(head - WINDOW), None), &n, head).is_ok());
    }

    proptest! {
        /// However long the chain, the samples stay within the bound, evenly spaced, inside the
        /// window, and the latest is near the head.
        #[test]
        fn samples_stay_bounded_evenly_spaced_and_recent(max in 2usize..20, blocks in 1u64..3_000) {
            let mut t = Trends::with_capacity(max);
            let n = neurons(&[5, 5]);
            for h in 1..=blocks {
                t.record(h, &n);
            }
            let heights: Vec<u64> = t.samples.iter().map(|s| s.height).collect();
            prop_assert!(heights.len() <= max && !heights.is_empty());
            prop_assert!(heights.iter().all(|h| h % t.stride == 0));
            prop_assert!(heights.windows(2).all(|w| w[1] - w[0] == t.stride), "{heights:?}");
            prop_assert!(blocks - heights[heights.len() - 1] < t.stride);
            prop_assert!(heights[0] + WINDOW >= blocks);
        }
    }
}
