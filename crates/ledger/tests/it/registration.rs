//! Registration: proof of work, difficulty adjustment, sponsored registration, and replacement
//! of the lowest-scoring neuron when the table is full.

use crate::common::*;
use ledger::*;

/// A signed `register` for `name`, solved over the current head block.
fn register(c: &mut Chain, name: &str, coldkey: PublicKey) -> SignedTx {
    let head = c.ledger.head();
    let nonce = pow::solve(&head.hash, &pk(name), c.ledger.difficulty(), 0, 1 << 24).expect("solvable");
    c.tx_fee(&key(name), 0, Call::Register { coldkey, pow_block: head.height, pow_nonce: nonce })
}

#[test]
fn proof_of_work_registration_and_difficulty() {
    let mut c = Chain::new(genesis(2, "yuma"));
    let t = register(&mut c, "new0", pk("alice"));
    let out = c.block(vec![t]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    let n = c.ledger.neuron_by_hotkey(&pk("new0")).unwrap();
    assert_eq!((n.uid, n.coldkey, n.stake, n.registered_at), (2, pk("alice"), 0, 1));
    assert_eq!(c.ledger.account(&pk("new0")), Account { balance: 0, nonce: 1 });
    // Work over an older block in the window still counts.
    let old = c.ledger.head();
    c.block(vec![]);
    let nonce = pow::solve(&old.hash, &pk("new1"), c.ledger.difficulty(), 0, 1 << 24).unwrap();
    let t = c.tx_fee(
        &key("new1"),
        0,
        Call::Register { coldkey: pk("bob"), pow_block: old.height, pow_nonce: nonce },
    );
    let t2 = register(&mut c, "new2", pk("bob"));
    let out = c.block(vec![t, t2]);
    assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
    assert_eq!(c.ledger.neurons().len(), 5);

    // Three registrations in the first interval of 10 blocks against a target of 1:
    // difficulty 64 * (3 + 1) / 2 = 128.
    assert_eq!(c.ledger.difficulty(), 64);
    c.advance_to(10);
    assert_eq!(c.ledger.difficulty(), 128);
    // None in the next: halved.
    c.advance_to(20);
    assert_eq!(c.ledger.difficulty(), 64);
    c.assert_conserved();
}

#[test]
fn registrations_per_block_are_limited() {
    let mut c = Chain::new(genesis(1, "yuma"));
    let txs: Vec<SignedTx> = (0..4).map(|i| register(&mut c, &format!("n{i}"), pk("alice"))).collect();
    let out = c.block(txs);
    let ok = out.receipts.iter().filter(|r| r.is_applied()).count();
    assert_eq!(ok, 3);
    assert_eq!(out.receipts[3].error(), Some(&TxError::RegistrationLimit { limit: 3 }));
}

#[test]
fn sponsored_registration_burns_and_stakes() {
    let mut c = Chain::new(genesis(2, "yuma"));
    let before = c.balance("cold0");
    let issuance = c.ledger.issuance();
    let t = c.tx(&key("cold0"), Call::Transfer { to: pk("hot0"), amount: 100 * TOKEN });
    c.block(vec![t]);
    let hot0 = c.balance("hot0");
    let t = c.tx(
        &key("hot0"),
        Call::RegisterBy { hotkey: pk("friend"), coldkey: pk("friendcold"), stake: 5 * TOKEN },
    );
    let out = c.block(vec![t]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    let burn = c.ledger.genesis().registration.burn;
    assert_eq!(c.balance("hot0"), hot0 - burn - 5 * TOKEN - FEE);
    assert_eq!(c.balance("cold0"), before - 100 * TOKEN - FEE);
    let f = c.ledger.neuron_by_hotkey(&pk("friend")).unwrap();
    assert_eq!((f.uid, f.coldkey, f.stake), (2, pk("friendcold"), 5 * TOKEN));
    assert_eq!(c.ledger.issuance().burned, issuance.burned + u128::from(burn + 2 * FEE));
    c.assert_conserved();
}

#[test]
fn full_table_replaces_the_lowest_scoring_non_immune_neuron() {
    // 4 slots, all taken. basic mechanism: uid 3 has no stake and weights uid 2 only, so uids 2 and
    // 3 both earn nothing; the tie goes to the lower uid, 2.
    let mut g = genesis(4, "basic");
    g.max_neurons = 4;
    g.tempo = 2;
    g.immunity_period = 4;
    g.weights.rate_limit = 1;
    g.neurons[3].stake = 0;
    let mut c = Chain::new(g);
    let txs = vec![
        c.tx(&key("hot0"), weights(&[(1, 1.0)])),
        c.tx(&key("hot1"), weights(&[(0, 1.0)])),
        c.tx(&key("hot2"), weights(&[(0, 1.0)])),
        c.tx(&key("hot3"), weights(&[(2, 1.0)])),
    ];
    c.block(txs);
    c.advance_to(2);
    assert_eq!(c.ledger.metagraph().emission()[2..], [0, 0]);

    // Everyone is immune until height 4: the table is full.
    let t = c.tx(&key("hot0"), Call::RegisterBy { hotkey: pk("late"), coldkey: pk("alice"), stake: 0 });
    let out = c.block(vec![t]);
    assert_eq!(
        out.receipts[0].error(),
        Some(&TxError::TableFullAllImmune { max_neurons: 4, immunity_period: 4 })
    );

    c.advance_to(4);
    let cold2 = c.balance("cold2");
    let old_stake = c.stake(2);
    let t = c.tx(&key("hot0"), Call::RegisterBy { hotkey: pk("late"), coldkey: pk("alice"), stake: 0 });
    let out = c.block(vec![t]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    let n = c.ledger.neuron(2).unwrap();
    assert_eq!((n.hotkey, n.registered_at, n.stake), (pk("late"), 5, 0));
    assert!(c.ledger.neuron_by_hotkey(&pk("hot2")).is_none());
    assert!(c.ledger.weights(2).unwrap().is_empty());
    // The replaced neuron's stake went back to its coldkey.
    assert_eq!(c.balance("cold2"), cold2 + old_stake);
    c.assert_conserved();

    // hot3's row still names uid 2, but it was set for the previous occupant: once hot3 has
    // stake, the next epoch must ignore that entry (the newcomer earns nothing from it).
    let t = c.tx(&key("cold3"), Call::AddStake { hotkey: pk("hot3"), amount: 50 * TOKEN });
    c.block(vec![t]);
    assert_eq!(c.ledger.head().height, 6);
    let g = c.ledger.metagraph();
    assert_eq!(g.weights[3].0, vec![(2, 65535)]);
    assert_eq!(g.emission()[2], 0, "outdated weight on a replaced uid was paid");
    // Once hot3 sets its weights again (after the registration), they count.
    let t = c.tx(&key("hot3"), weights(&[(2, 1.0)]));
    c.block(vec![t]);
    let out = c.advance_and_get(8);
    assert!(out.epoch.is_some());
    assert!(c.ledger.metagraph().emission()[2] > 0);
    c.assert_conserved();
}

#[test]
fn burned_registration_pays_a_burn_that_follows_demand() {
    let mut c = Chain::new(genesis(1, "yuma"));
    let burn = c.ledger.burn();
    assert_eq!(burn, TOKEN);
    let issuance = c.ledger.issuance();
    // The coldkey pays and owns; the hotkey signs nothing and needs no funds.
    let t = c.tx(&key("alice"), Call::BurnedRegister { hotkey: pk("b0") });
    let out = c.block(vec![t]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    let n = c.ledger.neuron_by_hotkey(&pk("b0")).unwrap();
    assert_eq!((n.uid, n.coldkey, n.stake), (1, pk("alice"), 0));
    assert_eq!(c.balance("alice"), 1_000 * TOKEN - burn - FEE);
    assert_eq!(c.ledger.issuance().burned, issuance.burned + u128::from(burn + FEE));

    // Refused with its reason: a registered hotkey, a burn the balance cannot pay.
    let t = c.tx(&key("bob"), Call::BurnedRegister { hotkey: pk("b0") });
    let out = c.block(vec![t]);
    assert_eq!(out.receipts[0].error(), Some(&TxError::AlreadyRegistered { hotkey: pk("b0"), uid: 1 }));
    let t = c.tx(&key("hot0"), Call::Transfer { to: pk("bob"), amount: 10 * TOKEN - FEE - TOKEN / 2 });
    c.block(vec![t]);
    let t = c.tx(&key("hot0"), Call::BurnedRegister { hotkey: pk("b1") });
    let out = c.block(vec![t]);
    assert!(
        matches!(out.receipts[0].error(), Some(TxError::InsufficientBalance { needed, .. }) if *needed == burn),
        "{:?}",
        out.receipts[0]
    );

    // Demand: two more registrations this interval (three against a target of one) raise the
    // burn at block 10 as they raise the difficulty, x(3 + 1)/2; none in the next halves it.
    let txs: Vec<SignedTx> =
        ["b2", "b3"].iter().map(|h| c.tx(&key("bob"), Call::BurnedRegister { hotkey: pk(h) })).collect();
    assert!(c.block(txs).receipts.iter().all(Receipt::is_applied));
    c.advance_to(10);
    assert_eq!((c.ledger.burn(), c.ledger.difficulty()), (2 * burn, 128));
    c.advance_to(20);
    assert_eq!(c.ledger.burn(), burn);
    // ...and never below min_burn, however long nobody registers.
    c.advance_to(200);
    assert_eq!(c.ledger.burn(), c.ledger.genesis().registration.min_burn);
    // register_by burns the same adjusted amount.
    let t = c.tx(&key("hot0"), Call::RegisterBy { hotkey: pk("b4"), coldkey: pk("bob"), stake: 0 });
    let before = c.ledger.issuance().burned;
    let out = c.block(vec![t]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    assert_eq!(
        c.ledger.issuance().burned,
        before + u128::from(c.ledger.genesis().registration.min_burn + FEE)
    );
    c.assert_conserved();
}
