//! The activity cutoff and validator permits: who validates at an epoch, and what it costs a
//! neuron to stop.

use crate::common::*;
use ledger::*;

/// `n` neurons of `mechanism` with the given stakes, tempo 5, weights every block allowed.
fn chain(n: usize, mechanism: &str, stakes: &[u64], activity_cutoff: u64, max_validators: u32) -> Chain {
    let mut g = genesis(n, mechanism);
    for (x, &s) in g.neurons.iter_mut().zip(stakes) {
        x.stake = s;
    }
    g.tempo = 5;
    g.weights.rate_limit = 1;
    g.activity_cutoff = activity_cutoff;
    g.max_validators = max_validators;
    Chain::new(g)
}

/// What one epoch left on neuron `uid`.
fn scores(c: &Chain, uid: u16) -> NeuronScores {
    c.ledger.neuron(uid).expect("neuron").scores
}

/// Bond of `i` in `j` as of the last epoch.
fn bond(c: &Chain, i: u16, j: u16) -> f64 {
    c.ledger.bonds(i).iter().find(|b| b.0 == j).map_or(0.0, |b| b.1)
}

/// Yuma, validators 0, 1 and 2 (equal stake) weighting server 3 from block 1; validators 0 and
/// 1 set their row again every 5 blocks, validator 2 never again. Runs to block 30 (epochs at
/// 5, 10, ..., 30) and returns, per epoch, (height, validator 2's scores, its bond in server 3,
/// its stake).
fn validator_2_stops(activity_cutoff: u64) -> (Chain, Vec<(u64, NeuronScores, f64, u64)>) {
    let mut c = chain(4, "yuma", &[100 * TOKEN; 4], activity_cutoff, 128);
    let txs = (0..3).map(|i| c.tx(&key(&hot(i)), weights(&[(3, 1.0)]))).collect();
    c.block(txs);
    let mut epochs = Vec::new();
    for h in 2..=30u64 {
        let txs = if h % 5 == 3 {
            (0..2).map(|i| c.tx(&key(&hot(i)), weights(&[(3, 1.0)]))).collect()
        } else {
            vec![]
        };
        let out = c.block(txs);
        assert!(out.receipts.iter().all(Receipt::is_applied));
        if let Some(e) = out.epoch {
            assert!(e.error.is_none() && !e.withheld, "{e:?}");
            epochs.push((h, scores(&c, 2), bond(&c, 2, 3), c.stake(2)));
        }
        c.assert_conserved();
    }
    (c, epochs)
}

#[test]
fn a_validator_that_stops_setting_weights_stops_earning_and_its_bonds_decay() {
    // Validator 2 last updated at block 1; with a cutoff of 12 it is active at the epochs of
    // blocks 5 and 10 (10 - 1 <= 12) and inactive from 15 (15 - 1 > 12). Its bond share in
    // server 3 is 1/3 while the three back it equally; then dB gives it nothing and
    // B = 0.1 dB + 0.9 B_prev (column sums stay 1): 1/3 * 0.9^k after k inactive epochs.
    let (c, epochs) = validator_2_stops(12);
    let mut last_stake = 0;
    for &(h, s, b, stake) in &epochs {
        if h <= 10 {
            assert!(s.active && s.validator_permit, "block {h}: {s:?}");
            assert!((s.dividends - 1.0 / 3.0).abs() < 1e-9, "block {h}: {s:?}");
            assert!((s.validator_trust - 1.0).abs() < 1e-9, "block {h}: {s:?}");
            assert!((b - 1.0 / 3.0).abs() < 1e-9, "block {h}: bond {b}");
        } else {
            let k = ((h - 10) / 5) as i32;
            assert!(!s.active && s.validator_permit, "block {h}: {s:?}");
            assert_eq!((s.dividends, s.validator_trust, s.emission), (0.0, 0.0, 0), "block {h}: {s:?}");
            assert!((b - 0.9f64.powi(k) / 3.0).abs() < 1e-9, "block {h}: bond {b}, want 0.9^{k} / 3");
            // Its stake is untouched: no longer paid, not taken either.
            assert_eq!(stake, last_stake, "block {h}");
        }
        last_stake = stake;
    }
    // Its bond share shrank epoch over epoch after the cutoff.
    let after: Vec<f64> = epochs.iter().filter(|e| e.0 > 10).map(|e| e.2).collect();
    assert_eq!(after.len(), 4);
    assert!(after.windows(2).all(|w| w[1] < w[0]), "{after:?}");
    // Server 3 never set weights, so it has been inactive since block 15 too; others' weights
    // on it still count: it keeps all the incentive. The two active validators split D.
    let m = c.ledger.metagraph();
    assert_eq!(m.active(), vec![true, true, false, false]);
    assert_eq!(m.incentive(), vec![0.0, 0.0, 0.0, 1.0]);
    assert!((m.dividends()[0] - 0.5).abs() < 1e-9 && (m.dividends()[1] - 0.5).abs() < 1e-9);
    assert_eq!(m.validator_permit(), vec![true; 4]);
}

#[test]
fn without_the_cutoff_an_absent_validator_keeps_earning() {
    // Negative control: the same chain with the default cutoff of 5,000 blocks still pays
    // validator 2 a third of the dividends at block 30, from the row it set at block 1.
    let (_, epochs) = validator_2_stops(5000);
    let &(h, s, b, _) = epochs.last().unwrap();
    assert_eq!(h, 30);
    assert!(s.active && (s.dividends - 1.0 / 3.0).abs() < 1e-9, "{s:?}");
    assert!((b - 1.0 / 3.0).abs() < 1e-9);
}

/// Neurons with stakes 300, 200, 150, 50, 50 (so uid 2 is the third staker); validators 0 and 1
/// weight server 3 from block 1, uid 2 sets `row` (or nothing) at block 1. The metagraph after
/// the epochs of blocks 5, 10 and 15.
fn third_staker(mechanism: &str, max_validators: u32, row: Option<&[(u16, f64)]>) -> Metagraph {
    let t = TOKEN;
    let mut c = chain(5, mechanism, &[300 * t, 200 * t, 150 * t, 50 * t, 50 * t], 5000, max_validators);
    let mut txs: Vec<SignedTx> = (0..2).map(|i| c.tx(&key(&hot(i)), weights(&[(3, 1.0)]))).collect();
    if let Some(row) = row {
        txs.push(c.tx(&key(&hot(2)), weights(row)));
    }
    c.block(txs);
    c.advance_to(15);
    c.assert_conserved();
    c.ledger.metagraph()
}

/// Rows of bonds, `(uid, value)` each.
type Bonds = [Vec<(u16, f64)>];

/// Everything the epochs computed and the stakes they paid (as f64: exact below 2^53 units),
/// then the bonds.
fn epoch_view(m: &Metagraph) -> (Vec<Vec<f64>>, &Bonds) {
    let units = |v: Vec<u64>| v.into_iter().map(|x| x as f64).collect();
    let vectors = vec![
        units(m.stake()),
        m.ranks(),
        m.trust(),
        m.consensus(),
        m.incentive(),
        m.dividends(),
        m.validator_trust(),
        units(m.emission()),
    ];
    (vectors, &m.bonds)
}

#[test]
fn the_staker_past_max_validators_changes_nothing() {
    // With two permits, uid 2's weights are ignored: the chain where it set them and the chain
    // where it set nothing compute the same epochs, bit for bit. `basic` shows it on incentive
    // (uid 2 gives server 4 a rank of its own), `yuma` on dividends and bonds (uid 2 backs
    // server 3 like the permitted validators).
    for (mechanism, row) in [("basic", [(4u16, 1.0)]), ("yuma", [(3u16, 1.0)])] {
        let with = third_staker(mechanism, 2, Some(&row));
        let without = third_staker(mechanism, 2, None);
        assert_eq!(with.validator_permit(), vec![true, true, false, false, false], "{mechanism}");
        assert_eq!(epoch_view(&with), epoch_view(&without), "{mechanism}");
        assert_eq!(with.dividends()[2], 0.0);
        assert!(with.bonds[2].is_empty(), "{mechanism}: {:?}", with.bonds[2]);
        // Negative control: with three permits the same weights count.
        let with = third_staker(mechanism, 3, Some(&row));
        let without = third_staker(mechanism, 3, None);
        assert_eq!(with.validator_permit(), vec![true, true, true, false, false]);
        assert_ne!(epoch_view(&with), epoch_view(&without), "{mechanism}");
        match mechanism {
            "basic" => assert!(with.incentive()[4] > 0.1, "{:?}", with.incentive()),
            _ => assert!(with.dividends()[2] > 0.1 && !with.bonds[2].is_empty(), "{:?}", with.dividends()),
        }
    }
}

#[test]
fn losing_the_permit_clears_the_bonds() {
    // Yuma with two permits: validators 0 (300) and 2 (150) hold them and back server 3; uid 1
    // (100) has none. Then uid 1's coldkey stakes 100 more: at the next epoch uid 1 (200)
    // outranks uid 2, which loses its permit, its bonds and its dividends.
    let t = TOKEN;
    let mut c = chain(4, "yuma", &[300 * t, 100 * t, 150 * t, 0], 5000, 2);
    let txs = [0, 1, 2].iter().map(|&i| c.tx(&key(&hot(i)), weights(&[(3, 1.0)]))).collect();
    c.block(txs);
    c.advance_to(10);
    let m = c.ledger.metagraph();
    assert_eq!(m.validator_permit(), vec![true, false, true, false]);
    assert!(m.dividends()[2] > 0.0 && !m.bonds[2].is_empty() && m.bonds[1].is_empty());
    let tx = c.tx(&key("cold1"), Call::AddStake { hotkey: pk("hot1"), amount: 100 * t });
    c.block(vec![tx]);
    c.advance_to(15);
    let m = c.ledger.metagraph();
    assert_eq!(m.validator_permit(), vec![true, true, false, false]);
    assert_eq!(m.dividends()[2], 0.0);
    assert!(m.bonds[2].is_empty(), "{:?}", m.bonds[2]);
    // Its stake stays where it was; uid 1 now validates and is paid.
    assert!(m.dividends()[1] > 0.0 && !m.bonds[1].is_empty());
    c.assert_conserved();
}
