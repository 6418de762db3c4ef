//! The stake-weighted kappa-quantile of one column's (weight, stake) pairs: Yuma's consensus
//! weight c_j. A radix selection on the weights' bits does the work; the definition, which
//! sums stake in ascending peer order as the rest of the epoch does, settles near-ties, so c_j
//! depends only on the input.

/// The consensus weight straight from its definition, on one column's (weight, stake) pairs
/// listed in ascending peer order: the largest weight x such that the stake at weights >= x,
/// summed in that order, reaches kappa; 0 if none does. Summing a superset of non-negative
/// terms in the same order never gives less, so the stake at x only grows as x falls and the
/// distinct weights can be bisected: O(m log m).
pub(super) fn quantile_by_definition(column: &[(f64, f64)], kappa: f64) -> f64 {
    let mut candidates: Vec<f64> = column.iter().map(|p| p.0).collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    let stake_at = |x: f64| column.iter().filter(|p| p.0 >= x).map(|p| p.1).sum::<f64>();
    let k = candidates.partition_point(|&x| stake_at(x) < kappa);
    candidates.get(k).copied().unwrap_or(0.0)
}

/// What [`weighted_quantile`] found: the weight and the stake sums that decided it, each
/// summed in the order the selection met the pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Selected {
    /// The weight x, or 0 when no weight gathers kappa.
    pub(super) value: f64,
    /// Stake of the pairs with weight > x (with x = 0: all of them).
    pub(super) above: f64,
    /// Stake of the pairs with weight >= x.
    pub(super) at_or_above: f64,
}

impl Selected {
    /// Whether the definition, which sums the same `m` stakes in ascending peer order, must
    /// give the same x.
    ///
    /// The selection compares kappa with stake summed in the order its rounds meet the pairs;
    /// the definition sums stake over peers in ascending index order, as every other sum of
    /// the epoch does. The two orders round differently, so when a sum lands within rounding
    /// of kappa they can disagree. Any two orders of summing m non-negative terms differ by
    /// at most `2 gamma_{m-1}` of their total (Higham, "Accuracy and Stability of Numerical
    /// Algorithms", §4.2), so where the selection's sums clear kappa by more than that, the
    /// ascending sums agree and x stands (x = 0 stands where the whole column's stake falls
    /// short); the other columns (near-ties) are settled by [`quantile_by_definition`]. Either
    /// way c_j depends only on the input, not on how it was selected.
    pub(super) fn confirms(&self, kappa: f64, m: usize) -> bool {
        // 2 gamma_{m-1} <= 2 m u / (1 - m u) < 4 m u = 2 m EPSILON for every m this can see;
        // the sums are at most 1 (shares of s_hat) up to the same rounding.
        let tolerance = 2.0 * (m as f64) * f64::EPSILON;
        if self.value == 0.0 {
            // Nothing reached kappa: right if all the stake falls short of it by more than
            // rounding.
            return self.above < kappa - tolerance;
        }
        self.above < kappa - tolerance && self.at_or_above >= kappa + tolerance
    }
}

/// Working space of [`weighted_quantile`], kept by the caller so that a run of columns
/// allocates it once.
#[derive(Default)]
pub(super) struct Workspace {
    /// The pairs kept by the last two rounds (each round reads one and fills the other).
    kept: [Vec<(f64, f64)>; 2],
    /// Per bucket: its stake, and the last pair put in it (`NONE` for none).
    stake: Vec<f64>,
    head: Vec<u32>,
    /// Per pair: the pair put in the same bucket before it.
    link: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// The largest weight x among `pairs` (weight > 0, stake > 0) such that the pairs with
/// weight >= x hold at least `kappa` of the stake, or 0 when none does. Leaves `pairs` as
/// they are.
///
/// A radix selection on the weights' bits (a positive f64 orders as its bit pattern does):
/// each round spreads the range's span of bit patterns over up to 2^11 buckets, sums the
/// stake per bucket while chaining each bucket's pairs into a list, walks the buckets from
/// the top to the one where the stake reaches kappa, and keeps only that bucket's pairs. A
/// round is one pass over the range, and no comparison can be defeated: each round divides
/// the span of bit patterns by the number of buckets (at least 16), so after at most 16
/// rounds the range holds one weight, whatever the weights. On ordinary columns one round
/// leaves a handful of pairs, which are sorted.
pub(super) fn weighted_quantile(pairs: &[(f64, f64)], ws: &mut Workspace, kappa: f64) -> Selected {
    let Workspace { kept, stake, head, link } = ws;
    let [mut src, mut dst] = std::mem::take(kept);
    // `above`: the stake of the pairs set aside for having larger weights than the range.
    let mut above = 0.0;
    let mut range = pairs;
    let selected = loop {
        if range.len() <= SORT_AT_MOST {
            dst.clear();
            dst.extend_from_slice(range);
            break quantile_by_sorting(&mut dst, above, kappa);
        }
        let (lo, hi) = bit_bounds(range);
        // Bucket b holds the bit patterns lo + [b << shift, (b + 1) << shift).
        let bits = range.len().ilog2().clamp(4, MAX_BUCKETS.ilog2());
        let shift = (u64::BITS - (hi - lo).leading_zeros()).saturating_sub(bits);
        let buckets = ((hi - lo) >> shift) as usize + 1;
        // Sized for the most buckets a round can have and masked to it (a no-op: b < 2^bits),
        // so the loop below carries no bounds checks; only the round's buckets are cleared.
        if stake.len() < MAX_BUCKETS {
            stake.resize(MAX_BUCKETS, 0.0);
            head.resize(MAX_BUCKETS, NONE);
        }
        let (stake, head) = (&mut stake[..MAX_BUCKETS], &mut head[..MAX_BUCKETS]);
        stake[..buckets].fill(0.0);
        head[..buckets].fill(NONE);
        if link.len() < range.len() {
            link.resize(range.len(), NONE);
        }
        let link = &mut link[..range.len()];
        for k in 0..range.len() {
            let (w, s) = range[k];
            let b = ((w.to_bits() - lo) >> shift) as usize & (MAX_BUCKETS - 1);
            stake[b] += s;
            link[k] = head[b];
            head[b] = k as u32;
        }
        // The highest bucket whose stake, with all above it, reaches kappa holds the answer.
        let Some(b) = (0..buckets).rev().find(|&b| {
            let reached = above + stake[b] >= kappa;
            if !reached {
                above += stake[b];
            }
            reached
        }) else {
            // Not even the whole range reaches kappa.
            break Selected { value: 0.0, above, at_or_above: above };
        };
        if shift == 0 {
            // A bucket per bit pattern: every pair in bucket b has the same weight.
            let at_or_above = above + stake[b];
            break Selected { value: f64::from_bits(lo + ((b as u64) << shift)), above, at_or_above };
        }
        dst.clear();
        let mut k = head[b];
        while k != NONE {
            dst.push(range[k as usize]);
            k = link[k as usize];
        }
        std::mem::swap(&mut src, &mut dst);
        range = &src;
    };
    *kept = [src, dst];
    selected
}

/// The most buckets a round spreads a range over (2^11).
const MAX_BUCKETS: usize = 1 << 11;

/// Ranges this short are sorted: cheaper than another round of buckets.
const SORT_AT_MOST: usize = 16;

/// The smallest and largest bit patterns of the weights in `range`.
fn bit_bounds(range: &[(f64, f64)]) -> (u64, u64) {
    // Four running minima and maxima, so that the comparisons do not wait on each other.
    let (mut lo, mut hi) = ([u64::MAX; 4], [0; 4]);
    let mut chunks = range.chunks_exact(4);
    for chunk in &mut chunks {
        for (lane, p) in chunk.iter().enumerate() {
            lo[lane] = lo[lane].min(p.0.to_bits());
            hi[lane] = hi[lane].max(p.0.to_bits());
        }
    }
    for p in chunks.remainder() {
        lo[0] = lo[0].min(p.0.to_bits());
        hi[0] = hi[0].max(p.0.to_bits());
    }
    (lo.into_iter().min().unwrap_or(u64::MAX), hi.into_iter().max().unwrap_or(0))
}

/// Walks the range in descending weight order (stable, so the order of equal weights and thus
/// of the stake sums is fixed), one group of equal weights at a time.
fn quantile_by_sorting(range: &mut [(f64, f64)], mut above: f64, kappa: f64) -> Selected {
    range.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut k = 0;
    while k < range.len() {
        let x = range[k].0;
        let before = above;
        while k < range.len() && range[k].0 == x {
            above += range[k].1;
            k += 1;
        }
        if above >= kappa {
            return Selected { value: x, above: before, at_or_above: above };
        }
    }
    Selected { value: 0.0, above, at_or_above: above }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn quantile(pairs: &mut [(f64, f64)], kappa: f64) -> f64 {
        weighted_quantile(pairs, &mut Workspace::default(), kappa).value
    }

    /// The answer by sorting, for comparison.
    fn sorted_quantile(pairs: &[(f64, f64)], kappa: f64) -> f64 {
        quantile_by_sorting(&mut pairs.to_vec(), 0.0, kappa).value
    }

    #[test]
    fn weighted_quantile_by_hand() {
        // Weights 0.1..0.4, a quarter of the stake each. Descending: 0.4 (0.25), 0.3 (0.5), 0.2
        // (0.75), 0.1 (1.0).
        let quarters = || vec![(0.2, 0.25), (0.4, 0.25), (0.1, 0.25), (0.3, 0.25)];
        for (kappa, want) in [(0.5, 0.3), (0.51, 0.2), (0.25, 0.4), (0.0, 0.4), (1.0, 0.1)] {
            assert_eq!(quantile(&mut quarters(), kappa), want, "kappa {kappa}");
        }
        // Ties count together: 0.5 held by 0.3 + 0.3, 0.9 by 0.1 -> at kappa 0.6 the answer is 0.5.
        let mut ties = [(0.5, 0.3), (0.9, 0.1), (0.5, 0.3)];
        assert_eq!(quantile(&mut ties, 0.6), 0.5);
        // Not enough stake behind any weight.
        assert_eq!(quantile(&mut [(0.5, 0.2), (0.7, 0.1)], 0.5), 0.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn weighted_quantile_survives_adversarial_orders() {
        // Ascending, descending, organ-pipe and sawtooth orders of n weights with equal stake
        // (2^-11 each for n = 2048, so every partial sum is exact); whatever the order and the
        // ties, the answer at kappa = 1/2 is the (n/2)th weight from the top.
        for n in [2048usize, 512, 64] {
            let stake = 1.0 / n as f64;
            let orders: Vec<Vec<f64>> = vec![
                (0..n).map(|k| k as f64 + 1.0).collect(),
                (0..n).rev().map(|k| k as f64 + 1.0).collect(),
                (0..n).map(|k| k.min(n - 1 - k) as f64 + 1.0).collect(),
                (0..n).map(|k| (k % 7) as f64 + 1.0).collect(),
            ];
            for weights in orders {
                let mut sorted = weights.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let pairs: Vec<(f64, f64)> = weights.iter().map(|&x| (x, stake)).collect();
                assert_eq!(quantile(&mut pairs.clone(), 0.5), sorted[n / 2 - 1]);
                assert_eq!(sorted_quantile(&pairs, 0.5), sorted[n / 2 - 1]);
            }
            let mut equal = vec![(0.25, stake); n];
            assert_eq!(quantile(&mut equal, 0.5), 0.25);
        }
    }

    #[test]
    fn weighted_quantile_survives_spread_and_clustered_bits() {
        // Bucketing is by bit pattern, so try what could make it slow or wrong: weights over
        // a thousand binades (2^-k), a cluster an ulp wide beside one far outlier (every round
        // but the last puts the cluster in one bucket), weights in adjacent bit patterns, and
        // the smallest subnormals. Each is checked against sorting at several kappa.
        let geometric: Vec<(f64, f64)> = (0..1000).map(|k| (libm::exp2(-(k as f64)), 1.0)).collect();
        let mut clustered: Vec<(f64, f64)> =
            (0..500).map(|k| (f64::from_bits(0.25f64.to_bits() + k % 3), 1.0 + (k % 5) as f64)).collect();
        clustered.push((1e300, 0.5));
        let adjacent: Vec<(f64, f64)> =
            (0..300).map(|k| (f64::from_bits(1.0f64.to_bits() + k), 1.0)).collect();
        let subnormal: Vec<(f64, f64)> =
            (1..100).map(|k| (f64::from_bits(k), (k % 4) as f64 + 1.0)).collect();
        for pairs in [geometric, clustered, adjacent, subnormal] {
            let total: f64 = pairs.iter().map(|p| p.1).sum();
            for share in [0.0, 0.001, 0.25, 0.5, 0.999, 1.0] {
                let kappa = share * total;
                assert_eq!(
                    quantile(&mut pairs.clone(), kappa),
                    sorted_quantile(&pairs, kappa),
                    "share {share}"
                );
            }
        }
    }

    #[test]
    fn weighted_quantile_finds_stake_hidden_at_the_top() {
        // Almost all the stake sits on the top 7 of 2048 weights: weights are k + 1 at
        // position k; positions 2041..2047 (weights 2042..2048) hold stake 1 each, the rest
        // 1e-6. At kappa 1/2 of the total (~7.002) the top 4 suffice: the answer is 2045.
        let n = 2048;
        let pairs: Vec<(f64, f64)> =
            (0..n).map(|k| (k as f64 + 1.0, if k > 2040 { 1.0 } else { 1e-6 })).collect();
        let total: f64 = pairs.iter().map(|p| p.1).sum();
        let want = sorted_quantile(&pairs, 0.5 * total);
        assert_eq!(want, 2045.0);
        assert_eq!(quantile(&mut pairs.clone(), 0.5 * total), want);
    }

    proptest! {
        #[test]
        fn weighted_quantile_matches_sorting(
            // Up to 3000 pairs: short ranges are sorted, longer ones take one or more rounds
            // of buckets. Weights from a few levels (ties, so a bucket can hold one weight
            // many times) or continuous; stake heavy-tailed. Drawn from a seed: proptest's own
            // vectors of this length are slow to generate.
            len in 0..3000usize,
            seed in any::<u64>(),
            levels in proptest::option::of(1..6u32),
            kappa in 0.0..=1.0f64,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let pairs: Vec<(f64, f64)> = (0..len)
                .map(|_| {
                    let w = match levels {
                        Some(l) => rng.gen_range(1..=l) as f64 / l as f64,
                        None => rng.gen_range(0.001..1.0),
                    };
                    (w, rng.gen_range(0.05..1.0f64).powi(8))
                })
                .collect();
            let total: f64 = pairs.iter().map(|p| p.1).sum();
            let a: Vec<(f64, f64)> = pairs.iter().map(|&(w, s)| (w, s / total)).collect();
            let mut b = a.clone();
            let selected = weighted_quantile(&a, &mut Workspace::default(), kappa);
            let x = selected.value;
            let y = quantile_by_sorting(&mut b, 0.0, kappa).value;
            // The sums it reports are those of the pairs above x and at or above it, up to
            // the rounding of the order it summed them in.
            let stake_where = |keep: &dyn Fn(f64) -> bool| b.iter().filter(|p| keep(p.0)).map(|p| p.1).sum::<f64>();
            let tolerance = 2.0 * len as f64 * f64::EPSILON;
            prop_assert!((selected.above - stake_where(&|w| w > x)).abs() <= tolerance);
            prop_assert!((selected.at_or_above - stake_where(&|w| w >= x)).abs() <= tolerance);
            // Equal unless the stake accumulated in the two orders rounds across kappa.
            if x != y {
                let stake_at = |v: f64| b.iter().filter(|p| p.0 >= v).map(|p| p.1).sum::<f64>();
                prop_assert!((stake_at(x) - kappa).abs() < 1e-12 || (stake_at(y) - kappa).abs() < 1e-12);
            }
        }
    }
}
