//! Helpers shared by the mechanisms' unit tests: tolerant comparisons, bit-exact fingerprints
//! and random inputs (seeded for unit tests, proptest strategies for property tests).

use crate::{EpochOutput, MechanismState, SparseMatrix};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Asserts `|a_k - b_k| <= tol * max(1, |a_k|, |b_k|)` for every k, with a readable message.
pub(crate) fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "lengths differ: {a:?} vs {b:?}");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let scale = 1f64.max(x.abs()).max(y.abs());
        assert!((x - y).abs() <= tol * scale, "entry {k}: {x} vs {y} (tol {tol})\n  {a:?}\n  {b:?}");
    }
}

/// Asserts two epoch outputs agree within `tol` on every vector, the bonds and the extras.
pub(crate) fn assert_outputs_close(a: &EpochOutput, b: &EpochOutput, tol: f64) {
    assert_close(&a.ranks, &b.ranks, tol);
    assert_close(&a.trust, &b.trust, tol);
    assert_close(&a.consensus, &b.consensus, tol);
    assert_close(&a.incentive, &b.incentive, tol);
    assert_close(&a.dividends, &b.dividends, tol);
    assert_close(&a.validator_trust, &b.validator_trust, tol);
    assert_close(&a.emission, &b.emission, tol);
    assert_eq!(a.state.bonds.n(), b.state.bonds.n());
    for (ra, rb) in a.state.bonds.to_dense().iter().zip(&b.state.bonds.to_dense()) {
        assert_close(ra, rb, tol);
    }
    assert_close(&a.state.stake_scaling, &b.state.stake_scaling, tol);
    assert_eq!(a.extras, b.extras);
}

/// Every number of an output as raw bits (bonds as (row, column, bits) triples), so two runs
/// can be compared for bit-identity; `==` on f64 would let 0.0 and -0.0 pass.
pub(crate) fn bits(out: &EpochOutput) -> Vec<u64> {
    let mut v: Vec<u64> = [
        &out.ranks,
        &out.trust,
        &out.consensus,
        &out.incentive,
        &out.dividends,
        &out.validator_trust,
        &out.emission,
    ]
    .into_iter()
    .flatten()
    .map(|x| x.to_bits())
    .collect();
    for (i, j, b) in out.state.bonds.iter() {
        v.extend([i as u64, j as u64, b.to_bits()]);
    }
    v.extend(out.state.stake_scaling.iter().map(|x| x.to_bits()));
    v
}

/// A seeded network of `n` peers where each row puts most of its weight on a shared set of
/// `k / 4` popular servers (so the median consensus has work to do) plus `k - k / 4` random
/// others, random stake (a tenth of the peers without any), and random previous bonds.
pub(crate) fn random_input(n: usize, k: usize, seed: u64) -> (SparseMatrix, Vec<f64>, MechanismState) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let popular = (k / 4).max(1);
    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|_| {
            let mut cols: Vec<usize> = (0..popular.min(n)).collect();
            while cols.len() < k.min(n) {
                let j = rng.gen_range(0..n);
                if !cols.contains(&j) {
                    cols.push(j);
                }
            }
            // Self-weights drawn among the random columns stay: `yuma` must mask them.
            let mut row = Vec::with_capacity(cols.len());
            for j in cols {
                let x: f64 = rng.gen();
                row.push((j, if j < popular { 1.0 + x } else { 0.1 * x }));
            }
            row
        })
        .collect();
    let stake = (0..n).map(|_| if rng.gen_bool(0.1) { 0.0 } else { rng.gen_range(0.0..100.0) }).collect();
    // Up to three previous bonds per row, in random columns.
    let bonds: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|_| {
            let mut cols: Vec<usize> = (0..3).map(|_| rng.gen_range(0..n)).collect();
            cols.sort_unstable();
            cols.dedup();
            cols.into_iter().map(|j| (j, rng.gen::<f64>())).collect()
        })
        .collect();
    let weights = SparseMatrix::from_rows(n, rows).expect("valid random weights");
    let bonds = SparseMatrix::from_rows(n, bonds).expect("valid random bonds");
    (weights, stake, MechanismState { bonds, stake_scaling: Vec::new() })
}

/// A matrix of `n x n` cells, each present with probability `density` and then uniform in
/// [0, 1) (a draw of exactly 0 stays absent).
fn arb_matrix(n: usize, density: f64) -> impl Strategy<Value = SparseMatrix> {
    let cell = (proptest::bool::weighted(density), 0.0..1.0f64).prop_map(|(on, v)| if on { v } else { 0.0 });
    proptest::collection::vec(cell, n * n).prop_map(move |cells| {
        let rows: Vec<Vec<f64>> = cells.chunks(n).map(|r| r.to_vec()).collect();
        SparseMatrix::from_dense(&rows).expect("cells are finite and >= 0")
    })
}

/// Random small inputs for the sparse-versus-dense property tests: 1..=max_n peers, a random
/// weight density, stake that is zero for about one peer in five, random previous bonds.
pub(crate) fn arb_input(max_n: usize) -> impl Strategy<Value = (SparseMatrix, Vec<f64>, MechanismState)> {
    (1..=max_n, 0.0..1.0f64, 0.0..0.5f64).prop_flat_map(|(n, density, bond_density)| {
        let stake = prop_oneof![1 => Just(0.0), 4 => 0.0..100.0f64];
        (arb_matrix(n, density), proptest::collection::vec(stake, n), arb_matrix(n, bond_density))
            .prop_map(|(w, stake, bonds)| (w, stake, MechanismState { bonds, stake_scaling: Vec::new() }))
    })
}
