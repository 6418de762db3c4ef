//! The `basic` variant: ranks are stake-weighted column sums (intermodel paper §2.4).
//!
//! Eq. (5): `R = (1/n) (W^T o S) 1`, that is `r_j = (1/n) sum_i s_i w_ij`.
//! Eq. (6): `S <- S + tau R / ||R||_2`.
//!
//! Departure from the paper: eq. (6) divides by the L2 norm, which mints between `tau` and
//! `tau sqrt(n)` depending on how R is spread, so a chain could not keep an issuance schedule.
//! We divide by the L1 norm (as the market paper's eq. 2 does with `||R||`), so the epoch mints
//! exactly `input.emission`: incentive `I = R / ||R||_1` and emission `E = emission * I`.
//! This variant has no trust, consensus, dividends, validator trust or bonds: those vectors stay
//! zero. A peer that does not validate (`EpochInput::validators`) adds nothing to R.

use crate::{normalized, EpochInput, EpochOutput, Extras, MechanismError, MechanismState};
use serde::{Deserialize, Serialize};

/// The `basic` variant has no parameters: ranks follow from W and S alone. The struct keeps
/// its genesis entry (`{"kind": "basic"}`) in the same shape as the other variants'.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BasicParams {}

/// One epoch of the `basic` variant: ranks `r_j = (1/n) sum_i s_i w_ij` over the validating
/// peers' rows, incentive `I = R / ||R||_1`, and emission paid by incentive alone.
pub fn epoch(_p: &BasicParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let w = input.weights.row_normalized();
    let inv_n = 1.0 / n as f64;
    let ranks: Vec<f64> = w.transpose_mul(input.stake).into_iter().map(|r| r * inv_n).collect();
    let incentive = normalized(&ranks);
    let emission = incentive.iter().map(|i| i * input.emission).collect();
    Ok(EpochOutput {
        ranks,
        trust: vec![0.0; n],
        consensus: vec![0.0; n],
        incentive,
        dividends: vec![0.0; n],
        validator_trust: vec![0.0; n],
        emission,
        state: MechanismState::genesis(n),
        extras: Extras::None,
    })
}

/// Dense reference: `r_j = (1/n) sum_i s_i w_ij` with plain loops over an n x n matrix.
#[allow(clippy::needless_range_loop)] // index loops on purpose: the reference reads like the equation
pub fn epoch_dense(_p: &BasicParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let w = crate::dense_rows_normalized(input.weights, false);
    let mut ranks = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            ranks[j] += input.stake[i] * w[i][j];
        }
        ranks[j] /= n as f64;
    }
    let total: f64 = ranks.iter().sum();
    let incentive: Vec<f64> = ranks.iter().map(|r| if total > 0.0 { r / total } else { 0.0 }).collect();
    Ok(EpochOutput {
        emission: incentive.iter().map(|i| i * input.emission).collect(),
        ranks,
        trust: vec![0.0; n],
        consensus: vec![0.0; n],
        incentive,
        dividends: vec![0.0; n],
        validator_trust: vec![0.0; n],
        state: MechanismState::genesis(n),
        extras: Extras::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mechanism, SparseMatrix};

    #[test]
    fn three_peers_by_hand() {
        // W (already row-normalised):    S = [1, 2, 1], n = 3
        //   peer 0: [0,   1,   0  ]
        //   peer 1: [0.5, 0,   0.5]
        //   peer 2: [0,   1,   0  ]
        // r_0 = (1/3)(2*0.5)       = 1/3
        // r_1 = (1/3)(1*1 + 1*1)   = 2/3
        // r_2 = (1/3)(2*0.5)       = 1/3     ||R||_1 = 4/3
        // I = [1/4, 1/2, 1/4]; with emission 8: E = [2, 4, 2]
        let w =
            SparseMatrix::from_rows(3, [vec![(1, 1.0)], vec![(0, 0.5), (2, 0.5)], vec![(1, 1.0)]]).unwrap();
        let state = MechanismState::genesis(3);
        let input = EpochInput::new(&w, &[1.0, 2.0, 1.0], 8.0, &state);
        let out = Mechanism::Basic(BasicParams {}).epoch(&input).unwrap();
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&out.ranks, &[1.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0]), "{:?}", out.ranks);
        assert!(close(&out.incentive, &[0.25, 0.5, 0.25]));
        assert!(close(&out.emission, &[2.0, 4.0, 2.0]));
    }

    #[test]
    fn unnormalised_rows_are_normalised_first() {
        // Peer 0 gives [2, 2] and peer 1 gives [0, 5]: rows become [0.5, 0.5] and [0, 1].
        // S = [1, 1]: r = (1/2)[0.5, 1.5] = [0.25, 0.75]
        let w = SparseMatrix::from_rows(2, [vec![(0, 2.0), (1, 2.0)], vec![(1, 5.0)]]).unwrap();
        let state = MechanismState::genesis(2);
        let input = EpochInput::new(&w, &[1.0, 1.0], 1.0, &state);
        let out = epoch(&BasicParams {}, &input).unwrap();
        assert_eq!(out.ranks, vec![0.25, 0.75]);
    }
}
