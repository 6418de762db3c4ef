//! The `trust` variant: sigmoid trust, chain loss and the stake-scaling vector A (market
//! paper, second version: "Defining Consensus", "Reaching Consensus", eq. 4-6, appendix 12.7).
//!
//! Per epoch, with the scaled stake `sa = A o S` and its shares `s_hat = sa / ||sa||_1`:
//! - C: `c_ij = tanh(sharpness (v_ij - cutoff))`, v_ij the expected visits of a walk of at
//!   most `depth` steps ([`crate::walk`]): about +1 where i reaches j, -1 where it does not.
//! - `u = C^T s_hat`: `u_j = (share of stake reaching j) - (share not reaching j)`, in [-1, 1].
//! - Trust, eq. (4): `T = sigmoid(temperature * u / 2)`.
//! - Ranks `R = W^T s_hat`, incentive `I = R o T / ||R o T||_1` (eq. 4-5).
//! - Chain loss `L = -R . (T - 1/2)`.
//! - If `L < 0` the epoch mints `emission * I`. Otherwise it mints nothing and takes one
//!   descent step on A instead, `a_i <- clamp(a_i - learning_rate * g_i, 0, 1)` (appendix 12.7:
//!   emission only while the loss is negative, the scaling terms move while it is not).
//!
//! Where we depart from the printed text, and why:
//! - The factor 1/2 in T. The "Collusion" code computes trust as
//!   `sigmoid((stake_A / total - 0.5) * temp)`, while Figure 6 writes `sigmoid((C^T S) * 10)`
//!   with c in {-1, +1}, which is `sigmoid((2 p - 1) * 10)`: twice as steep. We follow the code
//!   (`temperature * u / 2 = temperature * (p - 1/2)`), so the paper's collusion table is what
//!   this mechanism produces at its printed `temp = 10`.
//! - The gradient, eq. (6). The printed formula uses `exp(t_k) sigma(t_k)^2` for the sigmoid's
//!   derivative; the derivative is `exp(-t) sigma(t)^2 = sigma(t) (1 - sigma(t))`. It also
//!   drops the factor s_i that every term carries ("stake values are assumed scaled") and the
//!   terms that come from normalising the scaled stake. We use the exact derivative of L with
//!   respect to a_i, divided by s_i / ||sa||_1 (a positive per-peer factor, so still a descent
//!   direction, and the one eq. (6) implies by leaving s_i out; without it peers with tiny
//!   stake would never move):
//!
//!   `g_i = -sum_k [ (w_ik - R_k)(T_k - 1/2) + R_k T_k (1 - T_k) (temperature / 2) (c_ik - u_k) ]`.
//!
//!   A test checks `g_i s_i / ||sa||_1` against finite differences of L.
//! - Appendix 12.7 uses the exact fundamental matrix and `C > 0`; we use the depth cut-off the
//!   main text prescribes, and a steep tanh as the text says ("tanh threshold function and
//!   cutoff kappa to force each expectation onto -1 and 1"). With the default sharpness, c is
//!   exactly +-1 in f64 unless v is within 2e-5 of the cut-off.
//!
//! Outputs: `trust` is T, `consensus` is `u` (the net trusting stake), no dividends, validator
//! trust or bonds. A peer that does not validate (`EpochInput::validators`) has no row and no
//! stake here, so it neither trusts nor distrusts anyone.

use crate::connectivity::check_depth;
use crate::error::check_parameter;
use crate::walk::{for_each_source, visits_dense};
use crate::{normalized, sigmoid, EpochInput, EpochOutput, Extras, MechanismError, MechanismState};
use serde::{Deserialize, Serialize};

/// Parameters of the `trust` variant, from the genesis file; missing fields take the
/// defaults (the collusion experiment's `temp = 10`, depth 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustParams {
    /// Temperature of the trust sigmoid.
    pub temperature: f64,
    /// Longest random walk counted in C.
    /// The cost is O(k^depth) per peer for k weights per row: the default, 2 (neighbours of
    /// neighbours), keeps an epoch of 4,096 peers x 256 weights near a second on one core,
    /// where 3 takes over ten.
    pub depth: usize,
    /// kappa: expected visits at which the tanh cut-off crosses 0.
    pub cutoff: f64,
    /// Steepness of the tanh cut-off (large: c_ij is +1 or -1).
    pub sharpness: f64,
    /// Learning rate of the descent on the stake-scaling vector A.
    pub learning_rate: f64,
}

impl Default for TrustParams {
    fn default() -> Self {
        TrustParams { temperature: 10.0, depth: 2, cutoff: 1e-3, sharpness: 1e6, learning_rate: 0.05 }
    }
}

impl TrustParams {
    fn validate(&self) -> Result<(), MechanismError> {
        check_parameter("temperature", self.temperature, self.temperature >= 0.0, "must be >= 0")?;
        check_parameter("cutoff", self.cutoff, self.cutoff >= 0.0, "must be >= 0")?;
        check_parameter("sharpness", self.sharpness, self.sharpness > 0.0, "must be > 0")?;
        check_parameter("learning_rate", self.learning_rate, self.learning_rate >= 0.0, "must be >= 0")?;
        check_depth(self.depth)
    }

    fn c(&self, visits: f64) -> f64 {
        libm::tanh(self.sharpness * (visits - self.cutoff))
    }
}

/// The scaled stake shares `s_hat = A o S / ||A o S||_1` and the scaling A itself.
fn scaled_shares(input: &EpochInput<'_>) -> (Vec<f64>, Vec<f64>) {
    let n = input.n();
    let a =
        if input.state.stake_scaling.is_empty() { vec![1.0; n] } else { input.state.stake_scaling.clone() };
    let sa: Vec<f64> = a.iter().zip(input.stake).map(|(a, s)| a * s).collect();
    (normalized(&sa), a)
}

/// Everything after `u = C^T s_hat` is known, shared by the sparse and dense paths.
/// `w_times(x)` returns `W x` and `c_times(x)` returns `C x`; the gradient needs them.
fn finish(
    p: &TrustParams,
    input: &EpochInput<'_>,
    ranks: Vec<f64>,
    u: Vec<f64>,
    a: Vec<f64>,
    w_times: impl Fn(&[f64]) -> Vec<f64>,
    c_times: impl FnOnce(&[f64]) -> Vec<f64>,
) -> EpochOutput {
    let n = input.n();
    let trust: Vec<f64> = u.iter().map(|&x| sigmoid(p.temperature * x / 2.0)).collect();
    let incentive = normalized(&ranks.iter().zip(&trust).map(|(r, t)| r * t).collect::<Vec<_>>());
    let chain_loss = -ranks.iter().zip(&trust).map(|(r, t)| r * (t - 0.5)).sum::<f64>();
    let paying = chain_loss < 0.0;
    let (emission, stake_scaling) = if paying {
        (incentive.iter().map(|i| i * input.emission).collect(), input.state.stake_scaling.clone())
    } else {
        // g_i = -[ sum_k w_ik (T_k - 1/2) + L  +  sum_k dt_k c_ik - sum_k dt_k u_k ]
        // where sum_k R_k (T_k - 1/2) = -L and dt_k = R_k T_k (1 - T_k) temperature / 2.
        let centred: Vec<f64> = trust.iter().map(|t| t - 0.5).collect();
        let dt: Vec<f64> =
            ranks.iter().zip(&trust).map(|(r, t)| r * t * (1.0 - t) * p.temperature / 2.0).collect();
        let dt_u: f64 = dt.iter().zip(&u).map(|(d, u)| d * u).sum();
        let w_part = w_times(&centred);
        let c_part = c_times(&dt);
        let next: Vec<f64> = (0..n)
            .map(|i| {
                let g = -(w_part[i] + chain_loss + c_part[i] - dt_u);
                (a[i] - p.learning_rate * g).clamp(0.0, 1.0)
            })
            .collect();
        (vec![0.0; n], next)
    };
    EpochOutput {
        ranks,
        trust,
        consensus: u,
        incentive,
        dividends: vec![0.0; n],
        validator_trust: vec![0.0; n],
        emission,
        state: MechanismState { bonds: crate::SparseMatrix::zeros(n), stake_scaling },
        extras: Extras::Trust { chain_loss, emission_withheld: !paying },
    }
}

/// One epoch of the `trust` variant, sparse: trust T from the net share of scaled stake that
/// reaches each peer, incentive `I ∝ R o T`, and then either emission `emission * I` (chain
/// loss L < 0) or no emission and a descent step on the stake scaling A (L >= 0).
pub fn epoch(p: &TrustParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let q = input.weights.row_normalized();
    let (s_hat, a) = scaled_shares(input);
    let c_unreached = libm::tanh(-p.sharpness * p.cutoff);
    // u_j = c0 * sum_i s_hat_i + sum_{i reaching j} s_hat_i (c_ij - c0): C is dense (every
    // unreached pair holds c0), but only reached pairs differ from the constant.
    let total: f64 = s_hat.iter().sum();
    let mut excess = vec![0.0; n];
    for_each_source(&q, p.depth, |i, visits| {
        let s = s_hat[i];
        if s == 0.0 {
            return;
        }
        for &(j, v) in visits {
            excess[j as usize] += s * (p.c(v) - c_unreached);
        }
    });
    let u: Vec<f64> = excess.iter().map(|e| c_unreached * total + e).collect();
    let ranks = q.transpose_mul(&s_hat);
    let c_times = |dt: &[f64]| {
        // sum_k dt_k c_ik = c0 sum_k dt_k + sum_{k reached from i} dt_k (c_ik - c0)
        let dt_total: f64 = dt.iter().sum();
        let mut out = vec![c_unreached * dt_total; n];
        for_each_source(&q, p.depth, |i, visits| {
            out[i] += visits.iter().map(|&(k, v)| dt[k as usize] * (p.c(v) - c_unreached)).sum::<f64>();
        });
        out
    };
    Ok(finish(p, input, ranks, u, a, |x| q.mul(x), c_times))
}

/// Dense reference: V from dense matrix powers, C as an n x n matrix of tanh values, every
/// product by plain loops.
pub fn epoch_dense(p: &TrustParams, input: &EpochInput<'_>) -> Result<EpochOutput, MechanismError> {
    p.validate()?;
    let masked = input.masked();
    let input = &masked.apply(input);
    let n = input.n();
    let w = input.weights.row_normalized().to_dense();
    let v = visits_dense(&w, p.depth);
    let c: Vec<Vec<f64>> = v.iter().map(|row| row.iter().map(|&x| p.c(x)).collect()).collect();
    let (s_hat, a) = scaled_shares(input);
    let mut u = vec![0.0; n];
    let mut ranks = vec![0.0; n];
    for j in 0..n {
        for i in 0..n {
            u[j] += c[i][j] * s_hat[i];
            ranks[j] += w[i][j] * s_hat[i];
        }
    }
    let times = |m: &Vec<Vec<f64>>, x: &[f64]| -> Vec<f64> {
        (0..n).map(|i| (0..n).map(|k| m[i][k] * x[k]).sum()).collect()
    };
    Ok(finish(p, input, ranks, u, a, |x| times(&w, x), |x| times(&c, x)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mechanism, SparseMatrix};

    fn both(p: &TrustParams, input: &EpochInput<'_>) -> EpochOutput {
        let sparse = Mechanism::Trust(p.clone()).epoch(input).unwrap();
        let dense = Mechanism::Trust(p.clone()).epoch_dense(input).unwrap();
        let pairs = [
            (&sparse.ranks, &dense.ranks),
            (&sparse.trust, &dense.trust),
            (&sparse.consensus, &dense.consensus),
            (&sparse.emission, &dense.emission),
            (&sparse.state.stake_scaling, &dense.state.stake_scaling),
        ];
        for (a, b) in pairs {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() < 1e-12, "sparse {x} dense {y}");
            }
        }
        sparse
    }

    /// Honest pair {0, 1} and cabal pair {2, 3}, disjoint, each weighting its partner.
    fn pairs() -> SparseMatrix {
        SparseMatrix::from_rows(4, [vec![(1, 1.0)], vec![(0, 1.0)], vec![(3, 1.0)], vec![(2, 1.0)]]).unwrap()
    }

    #[test]
    fn majority_pair_is_trusted_by_hand() {
        // Stake 0.3, 0.3 | 0.2, 0.2: shares p = 0.6 and 0.4.
        // Peers 0,1 are reached by 0.6 of the stake and not by 0.4: u = 0.6 - 0.4 = 0.2.
        // T = sigmoid(10 * 0.2 / 2) = sigmoid(1) = 0.7310585786300049; cabal: sigmoid(-1).
        // R = W^T s_hat = [0.3, 0.3, 0.2, 0.2].
        // L = -(0.6 (sigmoid(1) - 0.5) + 0.4 (sigmoid(-1) - 0.5)) = -0.2 * 0.2310585786 < 0: pay.
        // I ~ [0.3 * 0.731, 0.3 * 0.731, 0.2 * 0.269, 0.2 * 0.269] normalised.
        let w = pairs();
        let state = MechanismState::genesis(4);
        let input = EpochInput::new(&w, &[0.3, 0.3, 0.2, 0.2], 2.0, &state);
        let out = both(&TrustParams::default(), &input);
        let s1 = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((out.trust[0] - s1).abs() < 1e-15 && (out.trust[3] - (1.0 - s1)).abs() < 1e-15);
        assert!((out.consensus[0] - 0.2).abs() < 1e-15);
        let total = 0.6 * s1 + 0.4 * (1.0 - s1);
        assert!((out.incentive[0] - 0.3 * s1 / total).abs() < 1e-15);
        assert!((out.emission.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        match out.extras {
            Extras::Trust { chain_loss, emission_withheld } => {
                assert!((chain_loss + 0.2 * (s1 - 0.5)).abs() < 1e-15);
                assert!(!emission_withheld);
            }
            other => panic!("unexpected extras {other:?}"),
        }
        assert!(out.state.stake_scaling.is_empty(), "A untouched while paying");
    }

    /// Three disjoint groups 0.3 / 0.3 / 0.4: nobody is majority-trusted, L > 0.
    fn split_network() -> (SparseMatrix, Vec<f64>) {
        let w = SparseMatrix::from_rows(
            6,
            [vec![(1, 1.0)], vec![(0, 1.0)], vec![(3, 1.0)], vec![(2, 1.0)], vec![(5, 1.0)], vec![(4, 1.0)]],
        )
        .unwrap();
        (w, vec![0.15, 0.15, 0.15, 0.15, 0.3, 0.1])
    }

    #[test]
    fn loss_nonnegative_withholds_emission_and_moves_a() {
        let (w, stake) = split_network();
        let state = MechanismState::genesis(6);
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        let out = both(&TrustParams::default(), &input);
        assert!(out.emission.iter().all(|&e| e == 0.0));
        assert!(
            matches!(out.extras, Extras::Trust { emission_withheld: true, chain_loss } if chain_loss > 0.0)
        );
        assert_eq!(out.state.stake_scaling.len(), 6);
        assert!(out.state.stake_scaling.iter().all(|a| (0.0..=1.0).contains(a)));
        assert!(out.state.stake_scaling != vec![1.0; 6], "A moved");
    }

    /// L as a function of A, for finite differences.
    fn loss_at(p: &TrustParams, w: &SparseMatrix, stake: &[f64], a: &[f64]) -> f64 {
        let state = MechanismState { bonds: SparseMatrix::zeros(w.n()), stake_scaling: a.to_vec() };
        let input = EpochInput::new(w, stake, 1.0, &state);
        match epoch(p, &input).unwrap().extras {
            Extras::Trust { chain_loss, .. } => chain_loss,
            _ => unreachable!(),
        }
    }

    #[test]
    fn descent_step_is_the_analytic_gradient() {
        // Off-diagonal cross links so that the connectivity is not trivial.
        // Peer 5 holds the most stake but only weights itself, so no group is majority-trusted.
        let w = SparseMatrix::from_rows(
            6,
            [
                vec![(1, 0.6), (2, 0.4)],
                vec![(0, 0.5), (2, 0.5)],
                vec![(0, 0.3), (1, 0.2), (2, 0.5)],
                vec![(4, 1.0)],
                vec![(3, 0.7), (4, 0.3)],
                vec![(5, 1.0)],
            ],
        )
        .unwrap();
        let stake = [0.1, 0.1, 0.1, 0.15, 0.15, 0.4];
        let a = [0.9, 0.8, 0.7, 0.95, 0.6, 0.9];
        // A soft cut-off so that C is smooth; a small learning rate so the step
        // -lr * g never reaches the clamp.
        let p = TrustParams { sharpness: 2.0, cutoff: 0.5, learning_rate: 1e-3, ..Default::default() };
        let state = MechanismState { bonds: SparseMatrix::zeros(6), stake_scaling: a.to_vec() };
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        let out = both(&p, &input);
        assert!(matches!(out.extras, Extras::Trust { emission_withheld: true, .. }), "needs L >= 0");
        let sa_total: f64 = a.iter().zip(&stake).map(|(a, s)| a * s).sum();
        for i in 0..6 {
            let g = (a[i] - out.state.stake_scaling[i]) / p.learning_rate;
            let h = 1e-6;
            let (mut up, mut down) = (a, a);
            up[i] += h;
            down[i] -= h;
            let numeric = (loss_at(&p, &w, &stake, &up) - loss_at(&p, &w, &stake, &down)) / (2.0 * h);
            let analytic = g * stake[i] / sa_total;
            assert!((numeric - analytic).abs() < 1e-7, "peer {i}: numeric {numeric} analytic {analytic}");
        }
    }

    #[test]
    fn bad_parameters_and_scaling_are_typed_errors() {
        let (w, stake) = split_network();
        let state = MechanismState::genesis(6);
        let input = EpochInput::new(&w, &stake, 1.0, &state);
        for p in [
            TrustParams { temperature: f64::INFINITY, ..Default::default() },
            TrustParams { sharpness: 0.0, ..Default::default() },
            TrustParams { learning_rate: -0.1, ..Default::default() },
            TrustParams { depth: 99, ..Default::default() },
        ] {
            assert!(matches!(epoch(&p, &input), Err(MechanismError::BadParameter { .. })), "{p:?}");
        }
        let bad_a = MechanismState { bonds: SparseMatrix::zeros(6), stake_scaling: vec![1.5; 6] };
        let input = EpochInput { state: &bad_a, ..input };
        assert!(matches!(
            Mechanism::Trust(TrustParams::default()).epoch(&input),
            Err(MechanismError::BadScaling { peer: 0, .. })
        ));
    }
}
