//! Lazy emission (market paper §5): pending emission accrues per neuron and is paid along its
//! weight row when it transacts.

use crate::common::*;
use ledger::*;

#[test]
fn pending_emission_is_paid_along_the_row_when_the_neuron_transacts() {
    // basic, stakes [3, 1, 2] units, 6 units per block, tempo 2. At each epoch the per-block
    // schedule is split by stake: rates [3, 1, 2] units per block.
    let mut g = genesis(3, "basic");
    for (x, s) in g.neurons.iter_mut().zip([3, 1, 2]) {
        x.stake = s;
    }
    g.emission_mode = EmissionMode::Lazy;
    g.tempo = 2;
    g.emission_per_block = 6;
    g.weights.rate_limit = 1;
    let mut c = Chain::new(g);
    let txs = vec![
        c.tx(&key("hot0"), weights(&[(1, 1.0)])),
        c.tx(&key("hot1"), weights(&[(0, 1.0)])),
        c.tx(&key("hot2"), weights(&[(0, 0.5), (1, 0.5)])),
    ];
    let out = c.block(txs);
    // Before the first epoch nothing accrues (no rates yet), so nothing is paid.
    assert!(out.receipts.iter().all(|r| r.is_applied() && r.emission_paid == 0));

    let out = c.block(vec![]);
    let e = out.epoch.unwrap();
    assert_eq!(e.minted, 0, "lazy epochs mint nothing");
    let rates: Vec<u64> = c.ledger.neurons().iter().map(|n| n.emission_rate >> 16).collect();
    assert_eq!(rates, vec![3, 1, 2]);

    // Epochs at 4 and 6 settle the accrual (same rates: stakes have not changed).
    c.advance_to(6);
    assert_eq!(c.ledger.issuance().minted, 0);
    let endpoint = Endpoint {
        ip: Ip::V4([10, 0, 0, 1]),
        port: 8091,
        protocol: Protocol::Grpc,
        modality: Modality::Tensor,
    };
    // Block 7: hot0 has accrued 3 * (7 - 2) = 15 units, paid along its row {1: 1} to uid 1;
    // hot2 has accrued 2 * 5 = 10, paid along {0: 32768, 1: 32767}: quotas 5.00008 and 4.99992,
    // floors 5 and 4, the last unit to the larger remainder (uid 1): [5, 5].
    let txs =
        vec![c.tx(&key("hot0"), Call::Serve { endpoint }), c.tx(&key("hot2"), Call::Serve { endpoint })];
    let out = c.block(txs);
    assert_eq!(out.receipts.iter().map(|r| r.emission_paid).collect::<Vec<_>>(), vec![15, 10]);
    assert_eq!(out.minted, 25);
    assert_eq!([c.stake(0), c.stake(1), c.stake(2)], [3 + 5, 1 + 15 + 5, 2]);
    assert_eq!(c.ledger.neuron(0).unwrap().last_emission_block, 7);
    // hot1 has not transacted: its 1 * 5 units are still pending (counted at the epochs as
    // 1 * (6 - 2) = 4, plus 1 for block 7 not yet accounted).
    let n1 = c.ledger.neuron(1).unwrap();
    assert_eq!(n1.pending_emission >> 16, 4);
    assert_eq!(c.ledger.issuance().minted, 25);
    c.assert_conserved();

    // A failed transaction pays no emission; an applied one by hot1 at block 9 pays
    // 1 * (8 - 2) at the old rate... rates changed at the epoch of block 8 (stakes moved):
    // whatever they are, everything paid is minted and conservation holds.
    c.advance_to(8);
    let t = c.tx(&key("hot1"), Call::Serve { endpoint });
    let out = c.block(vec![t]);
    assert!(out.receipts[0].emission_paid >= 6, "{:?}", out.receipts[0]);
    assert_eq!(out.receipts[0].emission_paid, out.minted);
    c.assert_conserved();
}

#[test]
fn lazy_total_never_exceeds_the_schedule() {
    let mut g = genesis(4, "yuma");
    g.emission_mode = EmissionMode::Lazy;
    g.tempo = 3;
    g.emission_per_block = 1_000_003;
    g.weights.rate_limit = 1;
    g.weights.max_change = None;
    let mut c = Chain::new(g);
    for h in 1..=40u64 {
        let txs = (0..4)
            .filter(|i| (h + i) % 3 == 0)
            // A row the stake majority agrees on, so yuma reaches consensus and pays.
            .map(|i| c.tx(&key(&hot(i as usize)), weights(&[(0, 0.5), (1, 0.3), (2, 0.2)])))
            .collect();
        c.block(txs);
        c.assert_conserved();
        // Minted so far never exceeds what the schedule allowed since the first epoch.
        assert!(c.ledger.issuance().minted <= u128::from(h.saturating_sub(3)) * 1_000_003);
    }
    assert!(c.ledger.issuance().minted > 0);
}
