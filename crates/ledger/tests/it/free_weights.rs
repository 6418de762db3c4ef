//! Weight setting costs no fee: a fresh hotkey with no funds registers by proof of work and
//! sets weights; the per-neuron rate limit, not a fee, bounds how often, and a free transaction
//! is admitted by a mempool only as its sender's next one.

use crate::common::*;
use ledger::*;

#[test]
fn an_unfunded_hotkey_registers_and_sets_weights_for_free() {
    let mut g = genesis(2, "yuma");
    g.fees = FeeSchedule::default();
    assert_eq!(g.fees.set_weights, 0, "free by default");
    let mut c = Chain::new(g);
    let issuance = c.ledger.issuance();
    let head = c.ledger.head();
    let nonce = pow::solve(&head.hash, &pk("fresh"), c.ledger.difficulty(), 0, 1 << 24).unwrap();
    let reg = c.tx_fee(
        &key("fresh"),
        0,
        Call::Register { coldkey: pk("alice"), pow_block: head.height, pow_nonce: nonce },
    );
    assert!(c.block(vec![reg]).receipts[0].is_applied());
    assert_eq!(c.ledger.account(&pk("fresh")).balance, 0);

    let set = c.tx_fee(&key("fresh"), 0, weights(&[(0, 0.5), (1, 0.5)]));
    c.ledger.check_tx(&set).expect("a free set_weights from an unfunded neuron is admitted");
    let out = c.block(vec![set]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    assert_eq!(out.receipts[0].fee_paid, 0);
    let n = c.ledger.neuron_by_hotkey(&pk("fresh")).unwrap();
    assert_eq!(n.last_weights_block, Some(2));
    assert_eq!(c.ledger.account(&pk("fresh")), Account { balance: 0, nonce: 2 });
    assert_eq!(c.ledger.issuance(), issuance, "nothing burned");

    // The rate limit (2 blocks here) refuses the next one at submission, typed.
    let again = c.tx_fee(&key("fresh"), 0, weights(&[(0, 1.0)]));
    assert_eq!(c.ledger.check_tx(&again), Err(TxError::WeightsRateLimited { last: 2, next_allowed: 4 }));
    c.block(vec![]);
    c.ledger.check_tx(&again).expect("allowed again after the limit");

    // Queued behind another transaction of the same sender it cannot be checked in full: the
    // mempool refuses it rather than let a block record it as failed for free.
    let behind = TxBody { sender: pk("fresh"), nonce: 3, fee: 0, call: weights(&[(1, 1.0)]) }
        .sign(&key("fresh"), "agora-test");
    assert_eq!(
        c.ledger.check_admission(&behind, &[&again.body]),
        Err(TxError::FreeBehindPending { sender: pk("fresh"), pending: 1 })
    );
    // A fee makes it admissible behind others (the fee pays for the unchecked queue).
    let first = c.tx_fee(&key("hot0"), FEE, Call::Transfer { to: pk("bob"), amount: 1 });
    let funded = c.tx_fee(&key("hot0"), FEE, weights(&[(1, 1.0)]));
    c.ledger.check_admission(&funded, &[&first.body]).expect("a paid set_weights queues");
    c.assert_conserved();
}
