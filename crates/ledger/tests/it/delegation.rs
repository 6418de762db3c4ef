//! Delegation: nominators stake on someone else's hotkey, the owner's take, the split of
//! emission, take changes with notice, and nominations returned when a neuron is replaced.

use crate::common::*;
use ledger::*;

fn applied(out: &BlockOutcome) {
    for r in &out.receipts {
        assert!(r.is_applied(), "{r:?}");
    }
}

fn failed(out: &BlockOutcome) -> &TxError {
    out.receipts[0].error().unwrap_or_else(|| panic!("expected a failure: {:?}", out.receipts[0]))
}

/// Three neurons that agree on a row (so yuma pays every epoch), alice nominating 100 tokens
/// on hot0 (which owns 100 itself).
fn nominated_chain() -> Chain {
    let mut c = Chain::new(genesis(3, "yuma"));
    let row = [(0u16, 0.5), (1, 0.3), (2, 0.2)];
    let txs: Vec<SignedTx> = (0..3).map(|i| c.tx(&key(&hot(i)), weights(&row))).collect();
    let t = c.tx(&key("alice"), Call::AddStake { hotkey: pk("hot0"), amount: 100 * TOKEN });
    let out = c.block([txs, vec![t]].concat());
    applied(&out);
    c
}

#[test]
fn a_nominator_stakes_and_unstakes_on_someone_elses_hotkey() {
    let mut c = nominated_chain();
    let n = c.ledger.neuron_by_hotkey(&pk("hot0")).unwrap().clone();
    assert_eq!(n.stake, 200 * TOKEN);
    assert_eq!(n.nominations, vec![Nomination { coldkey: pk("alice"), stake: 100 * TOKEN }]);
    assert_eq!((n.own_stake(), n.take), (100 * TOKEN, delegation::DEFAULT_TAKE));
    assert_eq!(c.balance("alice"), 900 * TOKEN - FEE);
    let stakes = c.ledger.stakes_of(&pk("alice"));
    assert_eq!(stakes, vec![(0, pk("hot0"), 100 * TOKEN)]);

    // The owner cannot take its nominators' stake out; the nominator no more than its own.
    let t = c.tx(&key("cold0"), Call::RemoveStake { hotkey: pk("hot0"), amount: 101 * TOKEN });
    let out = c.block(vec![t]);
    assert!(
        matches!(failed(&out), TxError::InsufficientStake { available, .. } if *available == 100 * TOKEN)
    );
    let nominated = c.ledger.neuron(0).unwrap().nomination(&pk("alice"));
    let t = c.tx(&key("alice"), Call::RemoveStake { hotkey: pk("hot0"), amount: nominated + 1 });
    let out = c.block(vec![t]);
    assert!(
        matches!(failed(&out), TxError::InsufficientNomination { available, .. } if *available == nominated)
    );
    // Dust is refused both ways; nominating an unregistered hotkey too.
    let t = c.tx(&key("alice"), Call::RemoveStake { hotkey: pk("hot0"), amount: nominated - 1 });
    let out = c.block(vec![t]);
    assert!(matches!(failed(&out), TxError::NominationTooSmall { stake: 1, .. }), "{:?}", failed(&out));
    let t = c.tx(&key("bob"), Call::AddStake { hotkey: pk("hot1"), amount: 1 });
    let out = c.block(vec![t]);
    assert!(matches!(failed(&out), TxError::NominationTooSmall { stake: 1, .. }));
    let t = c.tx(&key("bob"), Call::AddStake { hotkey: pk("nobody"), amount: TOKEN });
    let out = c.block(vec![t]);
    assert!(matches!(failed(&out), TxError::NotRegistered(k) if *k == pk("nobody")));
    // At most max_nominators (3) per hotkey.
    let txs: Vec<SignedTx> = ["bob", "cold0", "cold2"]
        .iter()
        .map(|w| c.tx(&key(w), Call::AddStake { hotkey: pk("hot1"), amount: TOKEN }))
        .collect();
    applied(&c.block(txs));
    let t = c.tx(&key("alice"), Call::AddStake { hotkey: pk("hot1"), amount: TOKEN });
    let out = c.block(vec![t]);
    assert_eq!(failed(&out), &TxError::TooManyNominators { hotkey: pk("hot1"), max: 3 });

    // All of it back to alice's balance (epochs have paid her meanwhile).
    let nominated = c.ledger.neuron(0).unwrap().nomination(&pk("alice"));
    assert!(nominated > 100 * TOKEN);
    let before = c.balance("alice");
    let t = c.tx(&key("alice"), Call::RemoveStake { hotkey: pk("hot0"), amount: nominated });
    applied(&c.block(vec![t]));
    assert_eq!(c.balance("alice"), before + nominated - FEE);
    let n = c.ledger.neuron(0).unwrap();
    assert!(n.nominations.is_empty());
    assert_eq!(n.stake, n.own_stake());
    assert!(c.ledger.stakes_of(&pk("alice")).is_empty());
    c.assert_conserved();
}

#[test]
fn emission_is_split_take_first_then_pro_rata() {
    let mut c = nominated_chain();
    let before = c.ledger.neuron(0).unwrap().clone();
    // Epoch at block 5 (tempo 5).
    let out = c.advance_and_get(5);
    let e = out.epoch.as_ref().expect("epoch");
    assert!(!e.withheld, "{e:?}");
    let after = c.ledger.neuron(0).unwrap();
    let paid = after.scores.emission;
    assert!(paid > 0);
    assert_eq!(after.stake, before.stake + paid);
    let take = u128::from(paid) * u128::from(delegation::DEFAULT_TAKE) / u128::from(TAKE_SCALE);
    let expected = ((u128::from(paid) - take) * u128::from(before.nomination(&pk("alice")))
        / u128::from(before.stake)) as u64;
    let alice_gain = after.nomination(&pk("alice")) - before.nomination(&pk("alice"));
    assert_eq!(alice_gain, expected);
    assert_eq!(after.own_stake() - before.own_stake(), paid - alice_gain);
    // Half the stake, so about 41% of the emission: (1 - 0.18) / 2.
    let share = alice_gain as f64 / paid as f64;
    assert!((share - 0.41).abs() < 0.001, "{share}");
    c.assert_conserved();
}

#[test]
fn take_decreases_apply_at_once_and_increases_after_notice() {
    let mut c = nominated_chain();
    let max = c.ledger.genesis().delegation.max_take;
    let t = c.tx(&key("cold0"), Call::SetTake { hotkey: pk("hot0"), take: max + 1 });
    let out = c.block(vec![t]);
    assert_eq!(failed(&out), &TxError::TakeOutOfBounds { take: max + 1, max });

    // Down to zero: in force in the same block.
    let t = c.tx(&key("cold0"), Call::SetTake { hotkey: pk("hot0"), take: 0 });
    applied(&c.block(vec![t]));
    let n = c.ledger.neuron(0).unwrap();
    assert_eq!((n.take, n.pending_take), (0, None));

    // Back up: announced, in force take_notice (3) blocks later.
    let t = c.tx(&key("cold0"), Call::SetTake { hotkey: pk("hot0"), take: max });
    let out = c.block(vec![t]);
    applied(&out);
    let h = out.header.height;
    let n = c.ledger.neuron(0).unwrap().clone();
    assert_eq!((n.take, n.pending_take), (0, Some(PendingTake { take: max, effective_at: h + 3 })));
    assert_eq!((n.take_at(h + 2), n.take_at(h + 3)), (0, max));

    // An epoch before the notice ends pays the nominator its full pro-rata share (take 0).
    assert!(h < 5 && 5 < h + 3, "the epoch at 5 falls in the notice (h = {h})");
    let before = c.ledger.neuron(0).unwrap().clone();
    c.advance_to(5);
    let after = c.ledger.neuron(0).unwrap();
    let paid = after.scores.emission;
    let expected =
        (u128::from(paid) * u128::from(before.nomination(&pk("alice"))) / u128::from(before.stake)) as u64;
    assert_eq!(after.nomination(&pk("alice")) - before.nomination(&pk("alice")), expected);
    c.assert_conserved();
}

#[test]
fn a_replaced_neuron_returns_every_nomination() {
    let mut g = genesis(2, "yuma");
    g.max_neurons = 2;
    let mut c = Chain::new(g);
    let t = c.tx(&key("alice"), Call::AddStake { hotkey: pk("hot1"), amount: 7 * TOKEN });
    let t2 = c.tx(&key("bob"), Call::AddStake { hotkey: pk("hot1"), amount: 3 * TOKEN });
    applied(&c.block(vec![t, t2]));
    let (alice, bob, cold1) = (c.balance("alice"), c.balance("bob"), c.balance("cold1"));
    // Past immunity (4 blocks), a registration into the full table replaces the neuron with
    // the least emission (nobody set weights: all 0), then the earliest registration, then the
    // lower uid: uid 0 first, then hot1 (registered before x).
    c.advance_to(5);
    let t = c.tx(&key("cold0"), Call::BurnedRegister { hotkey: pk("x") });
    applied(&c.block(vec![t]));
    assert!(c.ledger.neuron_by_hotkey(&pk("hot0")).is_none(), "uid 0 (lower) went first");
    c.advance_to(10);
    let t = c.tx(&key("cold0"), Call::BurnedRegister { hotkey: pk("y") });
    applied(&c.block(vec![t]));
    assert!(c.ledger.neuron_by_hotkey(&pk("hot1")).is_none());
    assert_eq!(c.balance("alice"), alice + 7 * TOKEN);
    assert_eq!(c.balance("bob"), bob + 3 * TOKEN);
    assert_eq!(c.balance("cold1"), cold1 + 100 * TOKEN);
    c.assert_conserved();
}
