//! The `nakamoto` variant: the 2021-22 production chain (notes 003).
//!
//! Ranks are stake-weighted column sums, `R = W^T S`. Consensus is a sigmoid of the share of
//! stake that weights a peer at all, `C = sigmoid(rho (T^T S - kappa))`, and scales the ranks
//! into incentive, `I = R . C`: a peer that only a minority of stake points at earns little,
//! so a cabal below half the stake cannot pay itself (notes 003, "Incentive Mechanism").
//! Bonds `B <- B + W . S` record who backed whom; half the emission follows the incentive and
//! half is paid to the bond holders of the peers that earned it: `Delta S = 1/2 B^T I + 1/2 I`
//! (notes 003, "Bonds").
//!
//! The full computation and its choices are written on [`epoch`].

use crate::error::{check_parameter, KAPPA_RANGE, MOVING_AVERAGE_RANGE};
use crate::{
    normalized, sigmoid, split_emission, EpochInput, EpochOutput, Extras, MechanismError, MechanismState,
    SparseMatrix,
};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// Share of the emission paid by incentive; the other half goes to dividends (notes 003:
/// `Delta S = 1/2 B^T I + 1/2 I`).
pub const SERVER_SHARE: f64 = 0.5;

/// Parameters of the `nakamoto` variant, from the genesis file; missing fields take the 2021-22
/// chain's values (rho = 10, kappa = 1/2, bonds that accumulate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NakamotoParams {
    /// rho: steepness of the consensus sigmoid.
    pub rho: f64,
    /// kappa: the share of stake at which consensus is 1/2.
    pub kappa: f64,
    /// `None`: bonds accumulate, B <- B + W.S (notes 003). `Some(m)`: moving average
    /// B <- (1 - m) (W.S) + m B with m in [0, 1).
    pub bonds_moving_average: Option<f64>,
}

impl Default for NakamotoParams {
    fn default() -> Self {
        NakamotoParams { rho: 10.0, kappa: 0.5, bonds_moving_average: None }
    }
}

impl NakamotoParams {
    /// rho finite, kappa in [0, 1], the moving-average factor (if any) in [0, 1).
    pub fn validate(&self) -> Result<(), MechanismError> {
        check_parameter("rho", self.rho, true, "must be finite")?;
        check_parameter("kappa", self.kappa, (0.0..=1.0).contains(&self.kappa), KAPPA_RANGE)?;
        if let Some(m) = self.bonds_moving_average {
            check_parameter("bonds_moving_average", m, (0.0..1.0).contains(&m), MOVING_AVERAGE_RANGE)?;
        }
        Ok(())
    }

    /// The bond update for one entry: `b_new = prev + delta`, or the moving average
    /// `(1 - m) delta + m prev`. Both forms read a missing entry as 0, so the sparse merge and
    /// the dense loop evaluate the very same expression.
    fn bond_update(&self) -> impl Fn(f64, f64) -> f64 {
        let m = self.bonds_moving_average;
        move |delta, prev| match m {
            None => prev + delta,
            Some(m) => (1.0 - m) * delta + m * prev,
        }
    }
}

/// One epoch of the 2021-22 chain (notes 003), sparse: O(nnz(W) + nnz(B) + n) time.
///
/// With `s_hat = S / ||S||_1` (all zeros when nobody has stake) and W row-normalised (every
/// non-empty row sums to 1; self-weights are kept, as on that chain):
/// - ranks `R = W^T s_hat`, `r_j = sum_i w_ij s_hat_i`. Reported as is: it sums to the share
///   of stake held by peers that set weights, not to 1.
/// - trust `t_j = sum_i s_hat_i [w_ij > 0]` (the `T^T S` of notes 003 with `t_ij = [w_ij > 0]`).
/// - consensus `c_j = sigmoid(rho (t_j - kappa))` (notes 003, `C = sigmoid(rho (T^T S - kappa))`).
/// - incentive `I = normalized(R . c)` (notes 003, `I = R . C`, then normalised so it sums to
///   1 and can split a fixed emission).
/// - bonds: the increment is W row-scaled by stake, `db_ij = w_ij s_hat_i` (notes 003,
///   `Delta B = W . S`). Without a moving average the bonds accumulate, `B = B_prev + dB`;
///   with `bonds_moving_average = Some(m)`, `B = (1 - m) dB + m B_prev`. The new B is returned
///   unnormalised in `state.bonds`.
/// - dividends: with B column-normalised, `bn_ij = b_ij / sum_k b_kj`,
///   `D_i = sum_j bn_ij I_j`, then normalised. Notes 003 write this term `B^T I`; since
///   `b_ij` is peer i's bond in peer j, what peer i is owed is `(B I)_i`, a sum over its own
///   row, and that is what we compute (`B^T I` with this orientation would pay j for the bonds
///   others hold in it).
///   A peer that does not validate (`input.validators`) has no row and no stake here, so it
///   gains no bonds, and its dividend is 0 before normalising.
/// - emission `E = split_emission(emission, I, D, 1/2)`, notes 003's `Delta S = 1/2 B^T I +
///   1/2 I` scaled to the epoch's emission.
/// - validator trust `VT_i = sum_j w_ij c_j`: the share of i's row that lands on peers the
///   stake majority also weights (this chain clips nothing, so consensus is what confirms a
///   weight). Not in notes 003; reported so the metagraph can set it beside D.
///
/// Outputs: `ranks = R`, `trust = t`, `consensus = c`, no extras; `stake_scaling` stays empty.
///
/// Every sum runs in ascending index order (columns for row sums, rows for column sums), so
/// the result is bit-identical for every thread count. It matches [`epoch_dense`] up to
/// rounding: W is normalised by multiplying with `1 / row sum`, and dividends use
/// `b_ij (I_j / Q_j)` for `(b_ij / Q_j) I_j`, with `Q_j = sum_k b_kj`.
///
/// Cost: one pass over W and B_prev that also writes the new B, one pass over B for the
/// dividends and one over W for VT. At n = 65,536 with 256 weights a row, B alone is 200 MB, and writing it into
/// fresh memory is a large part of the epoch (see `benches/epoch.rs`).
pub fn epoch(p: &NakamotoParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    // Callable directly, not only through `Mechanism::epoch`: check the shared input too.
    input.validate()?;
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let s = normalized(input.stake);

    // One pass over W and B_prev: R and t, and B from B_prev and dB = W . s_hat, the increment
    // generated row by row while merging, and the column sums Q of B. The three sums of a
    // column share one cache line, since every entry of W touches a random column: a row's
    // lines are still in cache when its merged bonds add to Q. (Cells, because the generator
    // and the merge callback both add to them.) A peer without stake adds exact zeros to R
    // and t and no bonds, so its row generates nothing.
    let sums = vec![Cell::new(ColumnSums::default()); n];
    let bonds = input.state.bonds.merge_generated_rows(
        input.weights.nnz(),
        |i, cols, vals| {
            let si = s[i];
            if si == 0.0 {
                return;
            }
            for (j, wij) in input.weights.normalized_row(i, false) {
                let db = wij * si;
                let mut c = sums[j].get();
                c.rank += db;
                c.trust += si;
                sums[j].set(c);
                cols.push(j as u32);
                vals.push(db);
            }
        },
        p.bond_update(),
        |j, b| {
            let mut c = sums[j].get();
            c.bonds += b;
            sums[j].set(c);
        },
    );
    let ranks: Vec<f64> = sums.iter().map(|c| c.get().rank).collect();
    let trust: Vec<f64> = sums.iter().map(|c| c.get().trust).collect();
    let bond_totals: Vec<f64> = sums.iter().map(|c| c.get().bonds).collect();
    let consensus: Vec<f64> = trust.iter().map(|&t| sigmoid(p.rho * (t - p.kappa))).collect();
    let scaled: Vec<f64> = ranks.iter().zip(&consensus).map(|(r, c)| r * c).collect();
    let incentive = normalized(&scaled);

    // D_i = sum_j (b_ij / Q_j) I_j, evaluated as sum_j b_ij (I_j / Q_j): one division per
    // column instead of one per bond (the dense reference divides per entry; the two agree to
    // rounding).
    let payout: Vec<f64> =
        incentive.iter().zip(&bond_totals).map(|(&i, &q)| if q > 0.0 { i / q } else { 0.0 }).collect();
    let mut dividends = bonds.mul(&payout);
    input.keep_validators(&mut dividends);
    let dividends = normalized(&dividends);
    // VT_i = sum_j w_ij c_j: one more pass over W, in row order.
    let validator_trust: Vec<f64> = (0..n)
        .map(|i| input.weights.normalized_row(i, false).map(|(j, wij)| wij * consensus[j]).sum())
        .collect();

    let emission = split_emission(input.emission, &incentive, &dividends, SERVER_SHARE);
    Ok(EpochOutput {
        ranks,
        trust,
        consensus,
        incentive,
        dividends,
        validator_trust,
        emission,
        state: MechanismState { bonds, stake_scaling: Vec::new() },
        extras: Extras::None,
    })
}

/// Per column j: `r_j`, `t_j` and the column sum of the new bonds, aligned so that one
/// column never straddles two cache lines.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(32))]
struct ColumnSums {
    rank: f64,
    trust: f64,
    bonds: f64,
}

/// Dense reference of [`epoch`]: the same equations as textbook loops over n x n matrices,
/// written apart from the sparse code so the tests can compare the two. O(n^2) time and
/// memory; for tests and benchmarks only.
pub fn epoch_dense(p: &NakamotoParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    // Callable directly, not only through `Mechanism::epoch`: check the shared input too.
    input.validate()?;
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let s = normalized(input.stake);
    let w = crate::dense_rows_normalized(input.weights, false);

    let mut ranks = vec![0.0; n];
    let mut trust = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            ranks[j] += w[i][j] * s[i];
            if w[i][j] > 0.0 {
                trust[j] += s[i];
            }
        }
    }
    let consensus: Vec<f64> = trust.iter().map(|&t| sigmoid(p.rho * (t - p.kappa))).collect();
    let mut incentive: Vec<f64> = (0..n).map(|j| ranks[j] * consensus[j]).collect();
    let total: f64 = incentive.iter().sum();
    for x in &mut incentive {
        *x = if total > 0.0 { *x / total } else { 0.0 };
    }

    let prev = input.state.bonds.to_dense();
    let update = p.bond_update();
    let mut bonds = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            bonds[i][j] = update(w[i][j] * s[i], prev[i][j]);
        }
    }
    let mut col_totals = vec![0.0; n];
    for j in 0..n {
        for row in &bonds {
            col_totals[j] += row[j];
        }
    }
    let mut dividends = vec![0.0; n];
    for i in 0..n {
        if !input.validates(i) {
            continue;
        }
        for j in 0..n {
            if col_totals[j] > 0.0 {
                dividends[i] += bonds[i][j] / col_totals[j] * incentive[j];
            }
        }
    }
    let total: f64 = dividends.iter().sum();
    for d in &mut dividends {
        *d = if total > 0.0 { *d / total } else { 0.0 };
    }
    let validator_trust: Vec<f64> = (0..n).map(|i| (0..n).map(|j| w[i][j] * consensus[j]).sum()).collect();

    let emission = split_emission(input.emission, &incentive, &dividends, SERVER_SHARE);
    Ok(EpochOutput {
        ranks,
        trust,
        consensus,
        incentive,
        dividends,
        validator_trust,
        emission,
        state: MechanismState { bonds: SparseMatrix::from_dense(&bonds)?, stake_scaling: Vec::new() },
        extras: Extras::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_close, assert_outputs_close, bits, random_input};
    use crate::Mechanism;
    use proptest::prelude::*;

    fn run(
        p: &NakamotoParams,
        w: &SparseMatrix,
        stake: &[f64],
        emission: f64,
        state: &MechanismState,
    ) -> EpochOutput {
        let input = EpochInput::new(w, stake, emission, state);
        let out = Mechanism::Nakamoto(p.clone()).epoch(&input).unwrap();
        let dense = Mechanism::Nakamoto(p.clone()).epoch_dense(&input).unwrap();
        assert_outputs_close(&out, &dense, 1e-12);
        out
    }

    /// Three peers: 0 and 2 back peer 1, peer 1 backs 0 and 2 equally.
    fn three_peers() -> SparseMatrix {
        // Peer 0's raw row [0, 3, 0] normalises to [0, 1, 0].
        SparseMatrix::from_rows(3, [vec![(1, 3.0)], vec![(0, 0.5), (2, 0.5)], vec![(1, 1.0)]]).unwrap()
    }

    #[test]
    fn three_peers_by_hand() {
        // S = [2, 1, 1] -> s_hat = [0.5, 0.25, 0.25]
        // W = [[0, 1, 0], [0.5, 0, 0.5], [0, 1, 0]]
        // R = W^T s_hat: r_0 = 0.25*0.5 = 0.125, r_1 = 0.5*1 + 0.25*1 = 0.75, r_2 = 0.125
        // t: only peer 1 weights 0 and 2 -> t = [0.25, 0.75, 0.25]
        // c = sigmoid(10 (t - 0.5)) = [sigmoid(-2.5), sigmoid(2.5), sigmoid(-2.5)] = [a, 1 - a, a],
        //   a = 1 / (1 + e^2.5) ~ 0.0758582
        // R.c = [0.125 a, 0.75 (1 - a), 0.125 a] ~ [0.0094823, 0.6931064, 0.0094823], sum ~ 0.7120709
        // I ~ [0.0133165, 0.9733670, 0.0133165]
        // dB = W . s_hat: peer 0 {1: 0.5}, peer 1 {0: 0.125, 2: 0.125}, peer 2 {1: 0.25}; B = dB
        // column-normalised: col 0 -> peer 1: 1; col 1 -> peer 0: 2/3, peer 2: 1/3; col 2 -> peer 1: 1
        // D = B_norm I = [2/3 I_1, I_0 + I_2, 1/3 I_1] (sums to 1 already)
        // VT = W c: peers 0 and 2 put their whole row on peer 1 (1 - a), peer 1 on 0 and 2 (a)
        // E = 10 * (I + D) / 2
        let w = three_peers();
        let p = NakamotoParams::default();
        let out = run(&p, &w, &[2.0, 1.0, 1.0], 10.0, &MechanismState::genesis(3));
        let a = sigmoid(-2.5);
        assert_close(&out.ranks, &[0.125, 0.75, 0.125], 1e-15);
        assert_close(&out.trust, &[0.25, 0.75, 0.25], 1e-15);
        assert_close(&out.consensus, &[a, 1.0 - a, a], 1e-15);
        let z = 0.25 * a + 0.75 * (1.0 - a);
        let inc = [0.125 * a / z, 0.75 * (1.0 - a) / z, 0.125 * a / z];
        assert_close(&out.incentive, &inc, 1e-12);
        assert!((inc[1] - 0.973367).abs() < 1e-6);
        let div = [2.0 / 3.0 * inc[1], inc[0] + inc[2], inc[1] / 3.0];
        assert_close(&out.dividends, &div, 1e-12);
        assert_close(&out.validator_trust, &[1.0 - a, a, 1.0 - a], 1e-15);
        let e: Vec<f64> = (0..3).map(|i| 5.0 * (inc[i] + div[i])).collect();
        assert_close(&out.emission, &e, 1e-12);
        assert!((out.emission.iter().sum::<f64>() - 10.0).abs() < 1e-12);
        assert_eq!(
            out.state.bonds.to_dense(),
            vec![vec![0.0, 0.5, 0.0], vec![0.125, 0.0, 0.125], vec![0.0, 0.25, 0.0]]
        );
        assert_eq!(out.extras, Extras::None);
        assert!(out.state.stake_scaling.is_empty());

        // A second epoch accumulates: B doubles, its column-normalised form and D do not change.
        let again = run(&p, &w, &[2.0, 1.0, 1.0], 10.0, &out.state);
        assert_eq!(again.state.bonds.get(0, 1), 1.0);
        assert_close(&again.dividends, &div, 1e-12);
    }

    #[test]
    fn a_masked_peer_gains_no_bonds_and_earns_no_dividends() {
        // three_peers after one epoch, B_prev = [[0, 0.5, 0], [0.125, 0, 0.125], [0, 0.25, 0]],
        // now with peer 0 masked: no row, no stake, so s_hat = [0, 0.5, 0.5].
        // R = [0.25, 0.5, 0.25]; t = [0.5, 0.5, 0.5] -> c = 1/2 each; I = [0.25, 0.5, 0.25]
        // dB: peer 1 {0: 0.25, 2: 0.25}, peer 2 {1: 0.5}; B = B_prev + dB:
        //   [[0, 0.5, 0], [0.375, 0, 0.375], [0, 0.75, 0]] (peer 0's row unchanged)
        // column 1 is 1.25: B I = [0.4 I_1, I_0 + I_2, 0.6 I_1] = [0.2, 0.5, 0.3]; peer 0 masked
        // -> D = [0, 0.5, 0.3] / 0.8; VT = W c = [0 (masked), 1/2, 1/2]
        let w = three_peers();
        let p = NakamotoParams::default();
        let first = run(&p, &w, &[2.0, 1.0, 1.0], 10.0, &MechanismState::genesis(3));
        let mask = [false, true, true];
        let input = EpochInput::new(&w, &[2.0, 1.0, 1.0], 10.0, &first.state).with_validators(&mask);
        let out = epoch(&p, &input).unwrap();
        assert_outputs_close(&out, &epoch_dense(&p, &input).unwrap(), 1e-12);
        assert_close(&out.incentive, &[0.25, 0.5, 0.25], 1e-15);
        assert_close(&out.dividends, &[0.0, 0.625, 0.375], 1e-15);
        assert_close(&out.validator_trust, &[0.0, 0.5, 0.5], 1e-15);
        assert_eq!(
            out.state.bonds.to_dense(),
            vec![vec![0.0, 0.5, 0.0], vec![0.375, 0.0, 0.375], vec![0.0, 0.75, 0.0]]
        );
    }

    #[test]
    fn bonds_moving_average_by_hand() {
        // As above, with m = 0.5 and a previous bond of peer 2 in peer 0 of 0.375:
        // B = 0.5 dB + 0.5 B_prev = peer 0 {1: 0.25}, peer 1 {0: 0.0625, 2: 0.0625},
        //                           peer 2 {0: 0.1875, 1: 0.125}
        // col 0 sums to 0.25: peer 1 holds 0.25 of it, peer 2 0.75; cols 1, 2 as before.
        // D = [2/3 I_1, 0.25 I_0 + I_2, 0.75 I_0 + 1/3 I_1]
        let w = three_peers();
        let prev = MechanismState {
            bonds: SparseMatrix::from_rows(3, [vec![], vec![], vec![(0, 0.375)]]).unwrap(),
            stake_scaling: Vec::new(),
        };
        let p = NakamotoParams { bonds_moving_average: Some(0.5), ..Default::default() };
        let out = run(&p, &w, &[2.0, 1.0, 1.0], 1.0, &prev);
        assert_eq!(
            out.state.bonds.to_dense(),
            vec![vec![0.0, 0.25, 0.0], vec![0.0625, 0.0, 0.0625], vec![0.1875, 0.125, 0.0]]
        );
        let i = &out.incentive;
        assert_close(
            &out.dividends,
            &[2.0 / 3.0 * i[1], 0.25 * i[0] + i[2], 0.75 * i[0] + i[1] / 3.0],
            1e-12,
        );
    }

    #[test]
    fn a_minority_cabal_earns_little() {
        // Peers 0..3 (stake 1 each) weight server 4; peers 5, 6 (stake 1 each) form a cabal and
        // weight only each other. Stake behind 4: 4/6 -> c_4 = sigmoid(10 (2/3 - 1/2)) ~ 0.84;
        // behind 5 and 6: 1/6 each -> c = sigmoid(-10/3) ~ 0.034.
        // r_4 = 4/6, r_5 = r_6 = 1/6 -> I_4 = (4/6 * 0.84) / (4/6 * 0.84 + 2/6 * 0.034) ~ 0.98.
        let mut rows: Vec<Vec<(usize, f64)>> = (0..4).map(|_| vec![(4, 1.0)]).collect();
        rows.push(vec![]);
        rows.push(vec![(6, 1.0)]);
        rows.push(vec![(5, 1.0)]);
        let w = SparseMatrix::from_rows(7, rows).unwrap();
        let stake = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        let out = run(&NakamotoParams::default(), &w, &stake, 1.0, &MechanismState::genesis(7));
        let (hi, lo) = (sigmoid(10.0 * (4.0 / 6.0 - 0.5)), sigmoid(10.0 * (1.0 / 6.0 - 0.5)));
        let i4 = 4.0 / 6.0 * hi / (4.0 / 6.0 * hi + 2.0 / 6.0 * lo);
        assert!((out.incentive[4] - i4).abs() < 1e-12 && i4 > 0.97, "{:?}", out.incentive);
    }

    #[test]
    fn one_peer_that_weights_itself_gets_everything() {
        // n = 1, w_00 = 1 (kept: this variant does not mask self-weights), S = [5]:
        // R = [1], t = [1], c = [sigmoid(5)], I = [1], B = [[1]], D = [1], E = [emission].
        let w = SparseMatrix::from_rows(1, [vec![(0, 2.0)]]).unwrap();
        let out = run(&NakamotoParams::default(), &w, &[5.0], 3.0, &MechanismState::genesis(1));
        assert_eq!((out.ranks[0], out.incentive[0], out.dividends[0]), (1.0, 1.0, 1.0));
        assert_eq!(out.consensus, vec![sigmoid(5.0)]);
        assert_eq!(out.emission, vec![3.0]);
    }

    #[test]
    fn nobody_weights_or_nobody_has_stake_pays_nothing() {
        let prev = MechanismState {
            bonds: SparseMatrix::from_rows(3, [vec![(1, 1.0)], vec![], vec![]]).unwrap(),
            stake_scaling: Vec::new(),
        };
        // No weights: R = 0, I = 0, so D = B I = 0 and nothing is minted; old bonds are kept.
        let empty = SparseMatrix::zeros(3);
        let out = run(&NakamotoParams::default(), &empty, &[1.0, 2.0, 3.0], 7.0, &prev);
        assert_eq!((out.incentive.clone(), out.emission.clone()), (vec![0.0; 3], vec![0.0; 3]));
        assert_eq!(out.dividends, vec![0.0; 3]);
        assert_eq!(out.state.bonds, prev.bonds);
        // No stake: s_hat = 0, so again R = 0 and nothing is minted, and no bond grows.
        let out = run(&NakamotoParams::default(), &three_peers(), &[0.0; 3], 7.0, &prev);
        assert_eq!((out.incentive, out.emission), (vec![0.0; 3], vec![0.0; 3]));
        assert_eq!(out.state.bonds, prev.bonds);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let w = three_peers();
        let state = MechanismState::genesis(3);
        let input = EpochInput::new(&w, &[1.0; 3], 1.0, &state);
        let bad = [
            (NakamotoParams { rho: f64::NAN, ..Default::default() }, "rho"),
            (NakamotoParams { rho: f64::INFINITY, ..Default::default() }, "rho"),
            (NakamotoParams { kappa: 1.5, ..Default::default() }, "kappa"),
            (NakamotoParams { kappa: f64::NAN, ..Default::default() }, "kappa"),
            (
                NakamotoParams { bonds_moving_average: Some(1.0), ..Default::default() },
                "bonds_moving_average",
            ),
            (
                NakamotoParams { bonds_moving_average: Some(-0.1), ..Default::default() },
                "bonds_moving_average",
            ),
        ];
        for (p, which) in bad {
            for result in [epoch(&p, &input), epoch_dense(&p, &input)] {
                match result {
                    Err(MechanismError::BadParameter { name, .. }) => assert_eq!(name, which),
                    other => panic!("{p:?}: expected BadParameter({which}), got {other:?}"),
                }
            }
        }
        // Called directly rather than through `Mechanism::epoch`, bad input is still an error.
        let short = EpochInput { stake: &[1.0], ..input };
        for result in
            [epoch(&NakamotoParams::default(), &short), epoch_dense(&NakamotoParams::default(), &short)]
        {
            assert!(matches!(result, Err(MechanismError::StakeLength { stake: 1, .. })), "{result:?}");
        }
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let (w, stake, state) = random_input(300, 40, 7);
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        let p = NakamotoParams { bonds_moving_average: Some(0.3), ..Default::default() };
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| epoch(&p, &input).unwrap())
        };
        assert_eq!(bits(&on(1)), bits(&on(2)));
    }

    proptest! {
        #[test]
        fn sparse_matches_dense(
            (w, stake, state) in crate::test_support::arb_input(12),
            emission in 0.0..1e3f64,
            rho in -20.0..20.0f64,
            kappa in 0.0..=1.0f64,
            m in proptest::option::of(0.0..1.0f64),
        ) {
            let p = NakamotoParams { rho, kappa, bonds_moving_average: m };
            let input = EpochInput::new(&w, &stake, emission, &state);
            let sparse = epoch(&p, &input).unwrap();
            let dense = epoch_dense(&p, &input).unwrap();
            assert_outputs_close(&sparse, &dense, 1e-9);
        }
    }
}
