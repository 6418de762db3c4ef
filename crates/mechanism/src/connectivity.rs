//! The `connectivity` variant: ranks regularised by reachability (market paper §3-4).
//!
//! Eq. (4): `R = (W + C)^T S`, where `c_ij = s_j` if and only if a walk from i visits j with
//! more than a threshold likelihood, and zero otherwise. The market paper fixes the size of S
//! to rho (eq. 6) so that a tightly connected group holding a share p of stake earns ranks
//! `rho p + rho^2 p^2`, quadratic in its size: the larger connected component outgrows a
//! disjoint cabal. We compute with stake shares `s_hat = S / ||S||_1` and divide R by rho,
//! which changes no proportion and gives exactly the ranks of the paper's §10 code:
//!
//! `R = W^T s_hat + rho C^T s_hat`, with `c_ij = s_hat_j [v_ij > threshold]`,
//!
//! so a group's ranks sum to `p + rho p^2` (the printed `R_c = prcnt_c + rho*prcnt_c^2`).
//! `v_ij` are the expected visits of a walk of at most `depth` steps ([`crate::walk`]); the
//! zero-step visit counts, so `c_ii = s_hat_i` and a tight graph has `c_ij = s_hat_j` for all
//! pairs, the case of eq. (5).
//!
//! Stake clipping, eq. (8): `s*_i = s_i min(sum_j c_ij / (1/2 ||S||_1), 1)`. A peer that reaches
//! less than half the stake counts for less. The paper leaves open whether C is then rebuilt
//! from the clipped stake; we rebuild it (`c_ij = s*_j [...]`) so a clipped peer also brings
//! less connectivity to those it reaches, and we do not renormalise s*: the clipped-away stake
//! is simply lost to the mechanism, which is what "the peer loses weight in the inflation
//! mechanism" asks for.
//!
//! Incentive `I = R / ||R||_1`, emission `E = emission * I` (eq. 2 with the L1 norm). The
//! `trust` output is the share of (clipped) stake that reaches each peer; consensus, dividends,
//! validator trust and bonds are not part of this variant and stay zero.
//!
//! A peer that does not validate (`EpochInput::validators`) has no row and no stake here: walks
//! end at it, and reaching it counts nothing, since S is both what weighs an opinion and what
//! a walk reaches in this variant.

use crate::error::check_parameter;
use crate::walk::{for_each_source, visits_dense};
use crate::{normalized, EpochInput, EpochOutput, Extras, MechanismError, MechanismState};
use serde::{Deserialize, Serialize};

/// Parameters of the `connectivity` variant, from the genesis file; missing fields take the
/// defaults (rho = 10, walks of depth 2, stake clipping on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectivityParams {
    /// rho: the fixed stake size of eq. (6); the connectivity term is weighted by it.
    pub rho: f64,
    /// Expected visits from i to j (walks of at most `depth` steps) above which c_ij = s_j.
    pub threshold: f64,
    /// Longest walk considered when computing reachability.
    /// The cost is O(k^depth) per peer for k weights per row: the default, 2 (neighbours of
    /// neighbours), keeps an epoch of 4,096 peers x 256 weights near a second on one core,
    /// where 3 takes over ten.
    pub depth: usize,
    /// Apply the stake clipping of eq. (8).
    pub stake_clipping: bool,
}

impl Default for ConnectivityParams {
    fn default() -> Self {
        ConnectivityParams { rho: 10.0, threshold: 1e-3, depth: 2, stake_clipping: true }
    }
}

/// Deepest walk accepted: beyond this the cost O(k^depth) per source is never sensible.
pub const MAX_DEPTH: usize = 16;

impl ConnectivityParams {
    fn validate(&self) -> Result<(), MechanismError> {
        check_parameter("rho", self.rho, self.rho >= 0.0, "must be >= 0")?;
        check_parameter("threshold", self.threshold, self.threshold >= 0.0, "must be >= 0")?;
        check_depth(self.depth)
    }
}

/// Walk depths above [`MAX_DEPTH`] are refused.
pub(crate) fn check_depth(depth: usize) -> Result<(), MechanismError> {
    if depth > MAX_DEPTH {
        return Err(MechanismError::BadParameter {
            name: "depth",
            value: depth as f64,
            reason: "must be at most 16",
        });
    }
    Ok(())
}

/// The common tail of the sparse and dense paths, once reach-in and reach-out are known.
struct Reach {
    /// `sum_{j reached from i} s_hat_j`: the share of stake peer i reaches.
    out_share: Vec<f64>,
}

fn clipped_stake(p: &ConnectivityParams, s_hat: &[f64], reach: &Reach) -> Vec<f64> {
    s_hat
        .iter()
        .zip(&reach.out_share)
        .map(|(&s, &out)| if p.stake_clipping { s * (out / 0.5).min(1.0) } else { s })
        .collect()
}

fn output(
    input: &EpochInput<'_>,
    ranks: Vec<f64>,
    reach_in: Vec<f64>,
    clipped: Vec<f64>,
    reach: Reach,
) -> EpochOutput {
    let n = input.n();
    let incentive = normalized(&ranks);
    EpochOutput {
        emission: incentive.iter().map(|i| i * input.emission).collect(),
        ranks,
        trust: reach_in,
        consensus: vec![0.0; n],
        incentive,
        dividends: vec![0.0; n],
        validator_trust: vec![0.0; n],
        state: MechanismState::genesis(n),
        extras: Extras::Connectivity { clipped_stake: clipped, reach: reach.out_share },
    }
}

/// One epoch of the `connectivity` variant, sparse: walks from every validating peer, then
/// ranks `R = W^T s_hat + rho C^T s_hat` (with stake clipping if asked), incentive
/// `I = R / ||R||_1`, and the reach of each peer as its trust.
pub fn epoch(p: &ConnectivityParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let q = input.weights.row_normalized();
    let s_hat = normalized(input.stake);
    // One pass of walks for reach-out (needs only s_hat); the reached sets are kept so the
    // second sum (reach-in, which needs the clipped stake) does not walk again.
    let mut reached: Vec<Vec<u32>> = Vec::with_capacity(n);
    let mut out_share = vec![0.0; n];
    for_each_source(&q, p.depth, |i, visits| {
        let list: Vec<u32> = visits.iter().filter(|(_, v)| *v > p.threshold).map(|(j, _)| *j).collect();
        out_share[i] = list.iter().map(|&j| s_hat[j as usize]).sum();
        reached.push(list);
    });
    let reach = Reach { out_share };
    let clipped = clipped_stake(p, &s_hat, &reach);
    // reach_in[j] = sum_{i reaching j} s*_i, summed over i ascending.
    let mut reach_in = vec![0.0; n];
    for (i, list) in reached.iter().enumerate() {
        let s = clipped[i];
        if s == 0.0 {
            continue;
        }
        for &j in list {
            reach_in[j as usize] += s;
        }
    }
    // (C^T s*)_j = sum_i s*_j [i reaches j] s*_i = s*_j reach_in_j.
    let ranks = q
        .transpose_mul(&clipped)
        .iter()
        .zip(&clipped)
        .zip(&reach_in)
        .map(|((base, s), r_in)| base + p.rho * s * r_in)
        .collect();
    Ok(output(input, ranks, reach_in, clipped, reach))
}

/// Dense reference: V from dense matrix powers, C as an n x n matrix, `R = (W + rho C)^T s*`
/// by plain loops.
pub fn epoch_dense(p: &ConnectivityParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let w = input.weights.row_normalized().to_dense();
    let v = visits_dense(&w, p.depth);
    let total: f64 = input.stake.iter().sum();
    let s_hat: Vec<f64> = input.stake.iter().map(|s| if total > 0.0 { s / total } else { 0.0 }).collect();
    let reachable = |i: usize, j: usize| v[i][j] > p.threshold;
    let mut out_share = vec![0.0; n];
    for i in 0..n {
        for j in 0..n {
            if reachable(i, j) {
                out_share[i] += s_hat[j];
            }
        }
    }
    let reach = Reach { out_share };
    let clipped = clipped_stake(p, &s_hat, &reach);
    let mut c = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            if reachable(i, j) {
                c[i][j] = clipped[j];
            }
        }
    }
    let mut ranks = vec![0.0; n];
    let mut reach_in = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            ranks[j] += (w[i][j] + p.rho * c[i][j]) * clipped[i];
            if reachable(i, j) {
                reach_in[j] += clipped[i];
            }
        }
    }
    Ok(output(input, ranks, reach_in, clipped, reach))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mechanism, SparseMatrix};

    fn run(p: ConnectivityParams, w: &SparseMatrix, stake: &[f64]) -> EpochOutput {
        let state = MechanismState::genesis(w.n());
        let input = EpochInput::new(w, stake, 1.0, &state);
        let sparse = Mechanism::Connectivity(p.clone()).epoch(&input).unwrap();
        let dense = Mechanism::Connectivity(p).epoch_dense(&input).unwrap();
        for (a, b) in sparse.ranks.iter().zip(&dense.ranks) {
            assert!((a - b).abs() < 1e-12, "sparse {a} dense {b}");
        }
        sparse
    }

    /// Two disjoint pairs: {0, 1} with stake 3 and {2, 3} with stake 1 (shares 3/4 and 1/4).
    fn two_pairs() -> SparseMatrix {
        SparseMatrix::from_rows(4, [vec![(1, 1.0)], vec![(0, 1.0)], vec![(3, 1.0)], vec![(2, 1.0)]]).unwrap()
    }

    #[test]
    fn disjoint_pairs_by_hand_without_clipping() {
        // s_hat = [3/8, 3/8, 1/8, 1/8]. Each peer reaches itself and its partner.
        // W^T s_hat: peer 0 is weighted 1 by peer 1 -> 3/8, and so on: [3/8, 3/8, 1/8, 1/8].
        // reach_in for peers 0,1 = 3/4, for 2,3 = 1/4.
        // rho = 10: R_0 = 3/8 + 10 * 3/8 * 3/4 = 3/8 + 45/16 = 51/16
        //           R_2 = 1/8 + 10 * 1/8 * 1/4 = 1/8 + 5/16 = 7/16
        // Group sums: 51/8 = p + rho p^2 with p = 3/4 (0.75 + 5.625); 7/8 = 0.25 + 0.625.
        let p = ConnectivityParams { rho: 10.0, threshold: 0.5, depth: 2, stake_clipping: false };
        let out = run(p, &two_pairs(), &[3.0, 3.0, 1.0, 1.0]);
        assert_eq!(out.ranks, vec![51.0 / 16.0, 51.0 / 16.0, 7.0 / 16.0, 7.0 / 16.0]);
        // I = R / (2 * 51/16 + 2 * 7/16) = R / (116/16)
        assert!((out.incentive[0] - 51.0 / 116.0).abs() < 1e-15);
        assert!((out.incentive.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn clipping_by_hand() {
        // Same graph with clipping: the minority pair reaches 1/4 of the stake, so its stake is
        // scaled by (1/4) / (1/2) = 1/2: s* = [3/8, 3/8, 1/16, 1/16]. The majority keeps all.
        // R_2 = 1/16 (from partner) + 10 * 1/16 * (1/16 + 1/16) = 1/16 + 10/128 = 18/128
        let p = ConnectivityParams { rho: 10.0, threshold: 0.5, depth: 2, stake_clipping: true };
        let out = run(p, &two_pairs(), &[3.0, 3.0, 1.0, 1.0]);
        assert_eq!(out.ranks[2], 18.0 / 128.0);
        assert_eq!(out.ranks[0], 51.0 / 16.0);
        match out.extras {
            Extras::Connectivity { clipped_stake, reach } => {
                assert_eq!(clipped_stake, vec![0.375, 0.375, 0.0625, 0.0625]);
                assert_eq!(reach, vec![0.75, 0.75, 0.25, 0.25]);
            }
            other => panic!("unexpected extras {other:?}"),
        }
    }

    #[test]
    fn threshold_decides_reachability() {
        // 0 -> 1 with 0.1 (0.9 on itself): v_01 = 0.1. Threshold 0.05 reaches, 0.2 does not.
        let w = SparseMatrix::from_rows(2, [vec![(0, 0.9), (1, 0.1)], vec![(1, 1.0)]]).unwrap();
        let low = run(
            ConnectivityParams { threshold: 0.05, stake_clipping: false, ..Default::default() },
            &w,
            &[1.0, 1.0],
        );
        let high = run(
            ConnectivityParams { threshold: 0.2, stake_clipping: false, ..Default::default() },
            &w,
            &[1.0, 1.0],
        );
        // reach_in of peer 1: both peers (1.0) vs only itself (0.5).
        assert_eq!(low.trust, vec![0.5, 1.0]);
        assert_eq!(high.trust, vec![0.5, 0.5]);
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let w = two_pairs();
        let state = MechanismState::genesis(4);
        let input = EpochInput::new(&w, &[1.0; 4], 1.0, &state);
        for p in [
            ConnectivityParams { rho: f64::NAN, ..Default::default() },
            ConnectivityParams { threshold: -1.0, ..Default::default() },
            ConnectivityParams { depth: 17, ..Default::default() },
        ] {
            assert!(matches!(epoch(&p, &input), Err(MechanismError::BadParameter { .. })));
        }
    }
}
