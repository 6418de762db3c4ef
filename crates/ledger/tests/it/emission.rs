//! Epoch emission, checked by hand on tiny networks, and the issuance schedule.

use crate::common::*;
use ledger::*;

fn small(n: usize, mechanism: &str, stakes: &[u64], tempo: u64, per_block: u64) -> GenesisConfig {
    let mut g = genesis(n, mechanism);
    for (x, &s) in g.neurons.iter_mut().zip(stakes) {
        x.stake = s;
    }
    g.tempo = tempo;
    g.emission_per_block = per_block;
    g.weights.rate_limit = 1;
    g
}

#[test]
fn hand_checked_epoch_with_three_neurons() {
    // basic: r_j = (1/n) sum_i s_i w_ij, I = R / ||R||_1, E = M I.
    // S = [3, 1, 2] tokens; W: 0 -> {1}, 1 -> {0}, 2 -> {0: 1/2, 1: 1/2}; M = tempo 2 x 5 = 10 units.
    let t = TOKEN;
    let mut c = Chain::new(small(3, "basic", &[3 * t, t, 2 * t], 2, 5));
    let txs = vec![
        c.tx(&key("hot0"), weights(&[(1, 1.0)])),
        c.tx(&key("hot1"), weights(&[(0, 1.0)])),
        c.tx(&key("hot2"), weights(&[(0, 0.5), (1, 0.5)])),
    ];
    let out = c.block(txs);
    assert!(out.receipts.iter().all(Receipt::is_applied));
    // 1/2 of 65535 is 32767.5 for both entries: the leftover unit goes to the lower uid.
    assert_eq!(c.ledger.weights(2).unwrap().0, vec![(0, 32768), (1, 32767)]);
    assert!(out.epoch.is_none());

    let out = c.block(vec![]);
    let epoch = out.epoch.expect("epoch at height 2");
    // R is proportional to [s1 + s2 * 32768/65535, s0 + s2 * 32767/65535, 0] = [2.0000153, 3.9999847, 0]
    // tokens: I = [0.33333588, 0.66666412, 0], quotas of 10 = [3.33, 6.67, 0]: floors [3, 6] and the
    // one unit left goes to the larger remainder (uid 1).
    assert_eq!(epoch.minted, 10);
    assert!(!epoch.withheld);
    assert_eq!(out.minted, 10);
    assert_eq!([c.stake(0), c.stake(1), c.stake(2)], [3 * t + 3, t + 7, 2 * t]);
    let g = c.ledger.metagraph();
    assert_eq!(g.emission(), vec![3, 7, 0]);
    let i = g.incentive();
    assert!(
        (i[0] - 2.0000153 / 6.0).abs() < 1e-6 && (i[1] - 3.9999847 / 6.0).abs() < 1e-6 && i[2] == 0.0,
        "{i:?}"
    );
    let r = g.ranks();
    assert!((r[0] - 2.0000153 * t as f64 / 3.0).abs() < 1e3, "{r:?}");
    assert_eq!(c.ledger.issuance().minted, 10);
    c.assert_conserved();

    // The next epoch mints the same 10 units, split by the new stakes.
    let out = c.advance_and_get(4);
    assert_eq!(out.epoch.unwrap().minted, 10);
    assert_eq!(c.ledger.issuance().minted, 20);
    c.assert_conserved();
}

#[test]
fn ties_go_to_the_lower_uid() {
    // Two neurons weighting each other with equal stake: I = [1/2, 1/2] and one unit to mint.
    let mut c = Chain::new(small(2, "basic", &[TOKEN, TOKEN], 1, 1));
    let txs = vec![c.tx(&key("hot0"), weights(&[(1, 1.0)])), c.tx(&key("hot1"), weights(&[(0, 1.0)]))];
    let out = c.block(txs);
    // tempo 1: the epoch runs at the end of block 1, after the weights.
    assert_eq!(out.epoch.unwrap().minted, 1);
    assert_eq!((c.stake(0), c.stake(1)), (TOKEN + 1, TOKEN));
    // Now uid 0 has more stake, so uid 1 (weighted by it) ranks higher and gets the unit.
    c.block(vec![]);
    assert_eq!((c.stake(0), c.stake(1)), (TOKEN + 1, TOKEN + 1));
}

#[test]
fn every_epoch_mints_exactly_the_schedule() {
    for mech in ledger::mechanism::MECHANISM_NAMES {
        let mut c =
            Chain::new(small(5, mech, &[7 * TOKEN, 3 * TOKEN, 5 * TOKEN, TOKEN, 2 * TOKEN], 3, 333_333_337));
        // No weights yet: the mechanism pays nothing and nothing is minted.
        let out = c.advance_and_get(3);
        let e = out.epoch.unwrap();
        assert!(e.withheld && e.minted == 0 && e.error.is_none(), "{mech}: {e:?}");
        let rows: [&[(u16, f64)]; 5] = [
            &[(1, 0.6), (2, 0.4)],
            &[(0, 0.5), (2, 0.5)],
            &[(0, 0.2), (1, 0.3), (3, 0.5)],
            &[(4, 1.0)],
            &[(0, 1.0 / 3.0), (1, 1.0 / 3.0), (2, 1.0 / 3.0)],
        ];
        let txs = (0..5).map(|i| c.tx(&key(&hot(i)), weights(rows[i]))).collect();
        c.block(txs);
        for epoch in 2..6 {
            let out = c.advance_and_get(3 * epoch);
            let e = out.epoch.unwrap();
            assert!(e.error.is_none(), "{mech}: {e:?}");
            if !e.withheld {
                assert_eq!(e.minted, 3 * 333_333_337, "{mech} epoch {epoch}");
                assert_eq!(c.ledger.metagraph().emission().iter().sum::<u64>(), e.minted);
            }
            c.assert_conserved();
        }
        assert!(c.ledger.issuance().minted > 0, "{mech} never minted");
    }
}

#[test]
fn max_issuance_caps_emission() {
    let mut g = small(2, "basic", &[TOKEN, TOKEN], 1, 10);
    g.max_issuance = g.issuance().unwrap() + 15;
    g.fees.set_weights = 0;
    let mut c = Chain::new(g);
    let txs = vec![
        c.tx_fee(&key("hot0"), 0, weights(&[(1, 1.0)])),
        c.tx_fee(&key("hot1"), 0, weights(&[(0, 1.0)])),
    ];
    // 10 of the 15 units left, then the remaining 5, then nothing.
    let out = c.block(txs);
    assert_eq!(out.epoch.unwrap().minted, 10);
    let out = c.block(vec![]);
    assert_eq!(out.epoch.unwrap().minted, 5);
    let out = c.block(vec![]);
    assert_eq!(out.epoch.unwrap().minted, 0);
    let total = c.ledger.issuance().total();
    assert!(total <= u128::from(c.ledger.genesis().max_issuance));
    c.assert_conserved();
}
