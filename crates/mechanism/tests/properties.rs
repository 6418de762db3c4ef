//! Invariants every mechanism must keep, checked on random networks.

use mechanism::yuma::{DividendRule, YumaParams};
use mechanism::{EpochInput, EpochOutput, Extras, Mechanism, MechanismError, MechanismState, SparseMatrix};
use proptest::prelude::*;

/// A random network: weights (some rows empty, some self-weights), stake (some zeros),
/// previous bonds, a previous stake-scaling vector, and which peers validate (empty: all; else
/// about one in four does not).
#[derive(Debug, Clone)]
struct Network {
    weights: Vec<Vec<(usize, f64)>>,
    stake: Vec<f64>,
    bonds: Vec<Vec<(usize, f64)>>,
    scaling: Vec<f64>,
    validators: Vec<bool>,
}

fn sparse_rows(n: usize) -> impl Strategy<Value = Vec<Vec<(usize, f64)>>> {
    prop::collection::vec(prop::collection::btree_map(0..n, 0.0f64..10.0, 0..=n), n)
        .prop_map(|rows| rows.into_iter().map(|r| r.into_iter().collect()).collect())
}

fn network(max_n: usize) -> impl Strategy<Value = Network> {
    (1..=max_n).prop_flat_map(|n| {
        (
            sparse_rows(n),
            prop::collection::vec(prop_oneof![1 => Just(0.0), 4 => 0.0f64..100.0], n),
            sparse_rows(n),
            prop::collection::vec(0.0f64..=1.0, n),
            prop_oneof![Just(Vec::new()), prop::collection::vec(prop::bool::weighted(0.75), n)],
        )
            .prop_map(|(weights, stake, bonds, scaling, validators)| Network {
                weights,
                stake,
                bonds,
                scaling,
                validators,
            })
    })
}

impl Network {
    fn n(&self) -> usize {
        self.stake.len()
    }
    fn w(&self) -> SparseMatrix {
        SparseMatrix::from_rows(self.n(), &self.weights).unwrap()
    }
    fn state(&self) -> MechanismState {
        MechanismState {
            bonds: SparseMatrix::from_rows(self.n(), &self.bonds).unwrap(),
            stake_scaling: self.scaling.clone(),
        }
    }
    fn run(&self, m: &Mechanism, emission: f64) -> EpochOutput {
        let (w, state) = (self.w(), self.state());
        m.epoch(&EpochInput::new(&w, &self.stake, emission, &state).with_validators(&self.validators))
            .unwrap()
    }
    fn validates(&self, i: usize) -> bool {
        self.validators.get(i).copied().unwrap_or(true)
    }
    /// The same network with the peers that do not validate stripped by hand: no row, no
    /// stake, and no mask.
    fn stripped(&self) -> Network {
        let mut out = self.clone();
        for i in 0..self.n() {
            if !self.validates(i) {
                out.weights[i].clear();
                out.stake[i] = 0.0;
            }
        }
        out.validators.clear();
        out
    }
    /// The same network with peer i renamed `perm[i]`.
    fn relabel(&self, perm: &[usize]) -> Network {
        let n = self.n();
        let move_rows = |rows: &Vec<Vec<(usize, f64)>>| {
            let mut out = vec![Vec::new(); n];
            for (i, row) in rows.iter().enumerate() {
                out[perm[i]] = row.iter().map(|&(j, v)| (perm[j], v)).collect();
            }
            out
        };
        let move_vec = |v: &Vec<f64>| {
            let mut out = vec![0.0; n];
            for (i, x) in v.iter().enumerate() {
                out[perm[i]] = *x;
            }
            out
        };
        let mut validators = vec![true; if self.validators.is_empty() { 0 } else { n }];
        for (i, &v) in self.validators.iter().enumerate() {
            validators[perm[i]] = v;
        }
        Network {
            weights: move_rows(&self.weights),
            stake: move_vec(&self.stake),
            bonds: move_rows(&self.bonds),
            scaling: move_vec(&self.scaling),
            validators,
        }
    }
    fn staked_peer_weights_anyone(&self) -> bool {
        self.weights
            .iter()
            .enumerate()
            .any(|(i, row)| self.validates(i) && self.stake[i] > 0.0 && row.iter().any(|&(_, v)| v > 0.0))
    }
}

/// Every variant with default parameters, and `yuma` with its other dividend rule.
fn mechanisms() -> Vec<Mechanism> {
    let mut all = Mechanism::all();
    all.push(Mechanism::Yuma(YumaParams {
        dividend_rule: DividendRule::ValidatorTrust,
        ..Default::default()
    }));
    all
}

fn vectors(o: &EpochOutput) -> [(&'static str, &Vec<f64>); 8] {
    [
        ("ranks", &o.ranks),
        ("trust", &o.trust),
        ("consensus", &o.consensus),
        ("incentive", &o.incentive),
        ("dividends", &o.dividends),
        ("validator_trust", &o.validator_trust),
        ("emission", &o.emission),
        ("stake_scaling", &o.state.stake_scaling),
    ]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn withheld(o: &EpochOutput) -> bool {
    matches!(o.extras, Extras::Trust { emission_withheld: true, .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn incentive_sums_to_one_or_zero_and_emission_is_conserved(net in network(10), emission in 0.0f64..1e6) {
        for m in mechanisms() {
            let out = net.run(&m, emission);
            let sum_i: f64 = out.incentive.iter().sum();
            prop_assert!(close(sum_i, 1.0, 1e-9) || sum_i == 0.0, "{}: incentive sums to {}", m.name(), sum_i);
            prop_assert!(out.incentive.iter().chain(&out.emission).chain(&out.dividends).all(|&x| x >= 0.0));
            let should_pay = match m {
                Mechanism::Yuma(_) => out.ranks.iter().any(|&r| r > 0.0),
                _ => net.staked_peer_weights_anyone(),
            };
            prop_assert_eq!(sum_i > 0.0, should_pay, "{}: weights set but incentive {}", m.name(), sum_i);
            let minted: f64 = out.emission.iter().sum();
            if sum_i > 0.0 && !withheld(&out) {
                prop_assert!(close(minted, emission, 1e-9), "{}: minted {} of {}", m.name(), minted, emission);
            } else {
                prop_assert_eq!(minted, 0.0);
            }
            let sum_d: f64 = out.dividends.iter().sum();
            prop_assert!(close(sum_d, 1.0, 1e-9) || sum_d == 0.0, "{}: dividends sum to {}", m.name(), sum_d);
        }
    }

    #[test]
    fn stake_is_conserved_over_epochs(net in network(8)) {
        for m in mechanisms() {
            let mut stake = net.stake.clone();
            let mut state = net.state();
            let w = net.w();
            let mut minted_total = 0.0;
            let genesis: f64 = stake.iter().sum();
            for _ in 0..5 {
                let emission = 0.1 * stake.iter().sum::<f64>();
                let input = EpochInput::new(&w, &stake, emission, &state).with_validators(&net.validators);
                let out = m.epoch(&input).unwrap();
                minted_total += out.emission.iter().sum::<f64>();
                for (s, e) in stake.iter_mut().zip(&out.emission) {
                    *s += e;
                }
                state = out.state;
            }
            let now: f64 = stake.iter().sum();
            prop_assert!(close(now, genesis + minted_total, 1e-12), "{}: {} != {} + {}", m.name(), now, genesis, minted_total);
        }
    }

    #[test]
    fn relabelling_peers_permutes_the_outputs(net in network(9), seed in any::<u64>()) {
        let n = net.n();
        // A permutation from the seed (Fisher-Yates with a small LCG: proptest shrinks the seed).
        let mut perm: Vec<usize> = (0..n).collect();
        let mut x = seed | 1;
        for i in (1..n).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (x >> 33) as usize % (i + 1));
        }
        let moved = net.relabel(&perm);
        for m in mechanisms() {
            let a = net.run(&m, 1.0);
            let b = moved.run(&m, 1.0);
            for ((name, va), (_, vb)) in vectors(&a).into_iter().zip(vectors(&b)) {
                for i in 0..va.len() {
                    prop_assert!(close(va[i], vb[perm[i]], 1e-9), "{} {}[{}]: {} vs {}", m.name(), name, i, va[i], vb[perm[i]]);
                }
            }
            for (i, j, v) in a.state.bonds.iter() {
                prop_assert!(close(v, b.state.bonds.get(perm[i], perm[j]), 1e-9), "{} bonds", m.name());
            }
        }
    }

    #[test]
    fn rows_are_normalised_and_their_scale_does_not_matter(net in network(9), scale in 0.001f64..1000.0) {
        let w = net.w();
        let normalised = w.row_normalized();
        for i in 0..net.n() {
            let sum = normalised.row_sum(i);
            prop_assert!(sum == 0.0 || close(sum, 1.0, 1e-12), "row {} sums to {}", i, sum);
        }
        let scaled = Network {
            weights: net.weights.iter().map(|r| r.iter().map(|&(j, v)| (j, v * scale)).collect()).collect(),
            ..net.clone()
        };
        for m in mechanisms() {
            let a = net.run(&m, 1.0);
            let b = scaled.run(&m, 1.0);
            for ((name, va), (_, vb)) in vectors(&a).into_iter().zip(vectors(&b)) {
                for i in 0..va.len() {
                    prop_assert!(close(va[i], vb[i], 1e-9), "{} {}[{}]", m.name(), name, i);
                }
            }
        }
    }

    #[test]
    fn peers_that_do_not_validate_earn_no_dividends_and_have_no_validator_trust(net in network(10), emission in 0.0f64..1e6) {
        for m in mechanisms() {
            let out = net.run(&m, emission);
            for i in (0..net.n()).filter(|&i| !net.validates(i)) {
                prop_assert_eq!(out.dividends[i], 0.0, "{} D[{}]", m.name(), i);
                prop_assert_eq!(out.validator_trust[i], 0.0, "{} VT[{}]", m.name(), i);
            }
        }
    }

    #[test]
    fn masking_a_peer_is_dropping_its_row_and_stake_and_its_dividends(net in network(10), emission in 0.0f64..1e3) {
        // The mask against the same network stripped by hand: every output but D (and E,
        // which follows D) bit for bit the same, and D the stripped network's D without the
        // masked peers' part, renormalised.
        let stripped = net.stripped();
        for m in mechanisms() {
            let a = net.run(&m, emission);
            let b = stripped.run(&m, emission);
            for ((name, va), (_, vb)) in vectors(&a).into_iter().zip(vectors(&b)) {
                if name != "dividends" && name != "emission" {
                    let same = va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits());
                    prop_assert!(same, "{} {}: {:?} vs {:?}", m.name(), name, va, vb);
                }
            }
            prop_assert_eq!(&a.state.bonds, &b.state.bonds, "{} bonds", m.name());
            prop_assert_eq!(&a.extras, &b.extras, "{} extras", m.name());
            let kept: Vec<f64> =
                (0..net.n()).map(|i| if net.validates(i) { b.dividends[i] } else { 0.0 }).collect();
            let total: f64 = kept.iter().sum();
            for (i, (&got, &k)) in a.dividends.iter().zip(&kept).enumerate() {
                let want = if total > 0.0 { k / total } else { 0.0 };
                prop_assert!(close(got, want, 1e-9), "{} D[{}]: {} vs {}", m.name(), i, got, want);
            }
            let minted: f64 = a.emission.iter().sum();
            prop_assert!(minted == 0.0 || close(minted, emission, 1e-9), "{}: minted {} of {}", m.name(), minted, emission);
        }
    }

    #[test]
    fn masking_a_peer_without_weights_changes_no_incentive(net in network(10), peer in 0usize..10) {
        let n = net.n();
        let peer = peer % n;
        let mut quiet = net.clone();
        quiet.weights[peer].clear();
        quiet.validators.clear();
        let only_peer_masked: Vec<bool> = (0..n).map(|i| i != peer).collect();
        let masked = |x: &Network| Network { validators: only_peer_masked.clone(), ..x.clone() };
        // Without stake too, no variant can tell the mask: every output but D and E is the same.
        let broke = Network { stake: { let mut s = quiet.stake.clone(); s[peer] = 0.0; s }, ..quiet.clone() };
        for m in mechanisms() {
            let (a, b) = (broke.run(&m, 1.0), masked(&broke).run(&m, 1.0));
            for ((name, va), (_, vb)) in vectors(&a).into_iter().zip(vectors(&b)) {
                if name != "dividends" && name != "emission" {
                    prop_assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "{} {}", m.name(), name);
                }
            }
            prop_assert_eq!(b.dividends[peer], 0.0);
            // With its stake, the incentive of `basic` (W^T S) still cannot tell; the others
            // compute shares of the validating stake, so there it may move (on purpose: see
            // `yuma`'s absent_whale test).
            if matches!(m, Mechanism::Basic(_)) {
                prop_assert_eq!(quiet.run(&m, 1.0).incentive, masked(&quiet).run(&m, 1.0).incentive);
            }
        }
    }

    #[test]
    fn sparse_path_equals_dense_reference(net in network(10), emission in 0.0f64..100.0) {
        let (w, state) = (net.w(), net.state());
        let input = EpochInput::new(&w, &net.stake, emission, &state).with_validators(&net.validators);
        for m in mechanisms() {
            let sparse = m.epoch(&input).unwrap();
            let dense = m.epoch_dense(&input).unwrap();
            for ((name, va), (_, vb)) in vectors(&sparse).into_iter().zip(vectors(&dense)) {
                prop_assert_eq!(va.len(), vb.len());
                for i in 0..va.len() {
                    prop_assert!(close(va[i], vb[i], 1e-9), "{} {}[{}]: sparse {} dense {}", m.name(), name, i, va[i], vb[i]);
                }
            }
            let (bs, bd) = (sparse.state.bonds.to_dense(), dense.state.bonds.to_dense());
            for i in 0..net.n() {
                for j in 0..net.n() {
                    prop_assert!(close(bs[i][j], bd[i][j], 1e-9), "{} bonds[{}][{}]", m.name(), i, j);
                }
            }
        }
    }

    #[test]
    fn bad_input_is_a_typed_error(net in network(6), which in 0usize..7, peer in 0usize..6, value in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0)]) {
        let n = net.n();
        let peer = peer % n;
        let (w, state) = (net.w(), net.state());
        let mut stake = net.stake.clone();
        let short_stake = &net.stake[..n - 1];
        let wrong_bonds = MechanismState { bonds: SparseMatrix::zeros(n + 1), stake_scaling: vec![] };
        let wrong_scaling = MechanismState { bonds: SparseMatrix::zeros(n), stake_scaling: vec![1.0; n + 1] };
        let bad_scaling = MechanismState { bonds: SparseMatrix::zeros(n), stake_scaling: { let mut a = vec![1.0; n]; a[peer] = value; a } };
        let long_mask = vec![true; n + 1];
        let input = EpochInput::new(&w, &net.stake, 1.0, &state);
        let (input, expected): (EpochInput<'_>, fn(&MechanismError) -> bool) = match which {
            0 => {
                stake[peer] = value;
                (EpochInput { stake: &stake, ..input }, |e| matches!(e, MechanismError::BadStake { .. }))
            }
            1 => (EpochInput { stake: short_stake, ..input }, |e| matches!(e, MechanismError::StakeLength { .. })),
            2 => (EpochInput { emission: value, ..input }, |e| matches!(e, MechanismError::BadEmission(_))),
            3 => (EpochInput { state: &wrong_bonds, ..input }, |e| matches!(e, MechanismError::MatrixShape { .. })),
            4 => (EpochInput { state: &wrong_scaling, ..input }, |e| matches!(e, MechanismError::VectorLength { .. })),
            5 => (input.with_validators(&long_mask), |e| matches!(e, MechanismError::VectorLength { what: "validators", .. })),
            _ => (EpochInput { state: &bad_scaling, ..input }, |e| matches!(e, MechanismError::BadScaling { .. })),
        };
        for m in mechanisms() {
            let err = m.epoch(&input).unwrap_err();
            prop_assert!(expected(&err), "{}: case {} gave {:?}", m.name(), which, err);
            prop_assert!(!err.to_string().is_empty());
            prop_assert!(expected(&m.epoch_dense(&input).unwrap_err()));
        }
        // Bad weights are refused where a matrix is built.
        let mut rows = net.weights.clone();
        rows[peer].retain(|&(j, _)| j != peer);
        rows[peer].push((peer, value));
        let refused = matches!(SparseMatrix::from_rows(n, &rows), Err(MechanismError::BadWeight { .. }));
        prop_assert!(refused, "bad weight accepted");
        rows[peer].pop();
        rows[peer].push((n, 1.0));
        let out_of_range = matches!(SparseMatrix::from_rows(n, &rows), Err(MechanismError::ColumnOutOfRange { .. }));
        prop_assert!(out_of_range, "column out of range accepted");
    }
}

#[test]
fn empty_network_is_an_error() {
    let w = SparseMatrix::zeros(0);
    let state = MechanismState::genesis(0);
    for m in mechanisms() {
        let err = m.epoch(&EpochInput::new(&w, &[], 1.0, &state)).unwrap_err();
        assert_eq!(err, MechanismError::EmptyNetwork);
    }
}

#[test]
fn duplicate_weights_are_an_error() {
    let err = SparseMatrix::from_rows(3, [vec![(1, 0.5), (1, 0.5)], vec![], vec![]]).unwrap_err();
    assert_eq!(err, MechanismError::DuplicateColumn { row: 0, col: 1 });
}

#[test]
fn damaged_deserialised_matrices_are_refused() {
    // A matrix can also arrive from a store or the network, bypassing `from_rows`: it is
    // checked as it is deserialised, so no mechanism ever sees a damaged one. Each refusal
    // names what is wrong.
    for (json, why) in [
        (r#"{"n":2,"row_ptr":[0,1,1],"cols":[5],"vals":[1.0]}"#, "names peer 5"),
        (r#"{"n":2,"row_ptr":[0,2,2],"cols":[1,0],"vals":[1.0,1.0]}"#, "names peer 0 twice"),
        (r#"{"n":2,"row_ptr":[0,1,1],"cols":[1],"vals":[-3.0]}"#, "is -3"),
        (r#"{"n":2,"row_ptr":[0,1],"cols":[1],"vals":[1.0]}"#, "matrix has 1 rows, expected 2"),
        (r#"{"n":2,"row_ptr":[0,2,1],"cols":[1],"vals":[1.0]}"#, "matrix has 2 rows, expected 2"),
    ] {
        let err = serde_json::from_str::<SparseMatrix>(json).unwrap_err().to_string();
        assert!(err.contains(why), "{json}: {err}");
        let state = format!(r#"{{"bonds":{json},"stake_scaling":[]}}"#);
        assert!(serde_json::from_str::<MechanismState>(&state).is_err(), "{state}");
    }
    // The same text undamaged is accepted (the check is not refusing everything).
    let good = r#"{"n":2,"row_ptr":[0,1,1],"cols":[1],"vals":[1.0]}"#;
    let w: SparseMatrix = serde_json::from_str(good).unwrap();
    assert_eq!(w, SparseMatrix::from_rows(2, [vec![(1, 1.0)], vec![]]).unwrap());
}

/// Same input, different thread counts, bit-identical output.
#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    let n = 300;
    let mut x: u64 = 7;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let rows: Vec<Vec<(usize, f64)>> =
        (0..n).map(|i| (0..n).filter(|j| (i * 31 + j * 17) % 7 < 2).map(|j| (j, next())).collect()).collect();
    let stake: Vec<f64> = (0..n).map(|_| next()).collect();
    let w = SparseMatrix::from_rows(n, rows).unwrap();
    let state = MechanismState::genesis(n);
    let input = EpochInput::new(&w, &stake, 1.0, &state);
    for m in mechanisms() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| m.epoch(&input).unwrap())
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            let other = run(threads);
            for ((name, a), (_, b)) in vectors(&one).into_iter().zip(vectors(&other)) {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{} {} differs with {} threads", m.name(), name, threads);
            }
            assert_eq!(one.state.bonds, other.state.bonds, "{} bonds", m.name());
        }
    }
}
