//! Every kind of bad transaction is refused with its typed reason, at submission (`check_tx`)
//! and inside a block, and changes nothing it should not: an authentication failure leaves the
//! state root exactly as an empty block would; a call failure changes only the fee and nonce.

use crate::common::*;
use ledger::*;
use std::collections::BTreeMap;

fn accounts(c: &Chain) -> BTreeMap<PublicKey, Account> {
    c.ledger.state().accounts().map(|(k, a)| (*k, *a)).collect()
}

/// Refusal at submission and in a block, checked against an empty block at the same height and
/// time. `want` recognises the expected reason.
fn refused(c: &mut Chain, tx: SignedTx, want: impl Fn(&TxError) -> bool) -> TxError {
    let head = c.ledger.head();
    let err = c.ledger.check_tx(&tx).expect_err("check_tx accepted a bad transaction");
    assert!(want(&err), "unexpected reason at submission: {err:?}");
    assert!(!err.to_string().is_empty());
    assert_eq!(c.ledger.head(), head);

    // Reference: an empty block at the same height and timestamp.
    let (_, empty) = c.propose(vec![]);
    let empty_accounts = accounts(c);
    let empty_graph = c.ledger.metagraph();
    c.ledger.discard().unwrap();
    c.time -= 1000;

    let sender = tx.body.sender;
    let (_, out) = c.propose(vec![tx.clone()]);
    let receipt = &out.receipts[0];
    match &receipt.status {
        TxStatus::Rejected(e) => {
            assert!(err.is_rejection(), "{err:?} should fail the call, not the authentication");
            assert_eq!(e, &err);
            assert_eq!(receipt.fee_paid, 0);
            assert_eq!(out.header.state_root, empty.header.state_root, "rejected tx changed the state root");
        }
        TxStatus::Failed(e) => {
            assert!(!err.is_rejection(), "{err:?} should be a rejection");
            assert_eq!(e, &err);
            assert_eq!(receipt.fee_paid, tx.body.fee);
            assert_eq!(out.burned, tx.body.fee);
            // Only the sender's fee and nonce changed.
            let mut expected = empty_accounts.clone();
            let a = expected.entry(sender).or_default();
            a.balance -= tx.body.fee;
            a.nonce += 1;
            assert_eq!(accounts(c), expected);
            let mut graph = empty_graph.clone();
            graph.issuance.burned += u128::from(tx.body.fee);
            assert_eq!(c.ledger.metagraph(), graph);
            assert_ne!(out.header.state_root, empty.header.state_root);
        }
        TxStatus::Applied => panic!("bad transaction applied: {tx:?}"),
    }
    c.ledger.discard().unwrap();
    c.time -= 1000;
    assert_eq!(c.ledger.head(), head);
    err
}

fn signed(c: &Chain, key: &SigningKey, nonce: u64, fee: u64, call: Call) -> SignedTx {
    TxBody { sender: public_key(key), nonce, fee, call }.sign(key, &c.ledger.genesis().chain_id)
}

/// A chain at height 2 where hot0 set its weights in block 1 and alice sent a transfer in block 1.
fn setup() -> (Chain, SignedTx) {
    let mut c = Chain::new(genesis(4, "yuma"));
    let w = c.tx(&key("hot0"), weights(&[(1, 1.0)]));
    let t = c.tx(&key("alice"), Call::Transfer { to: pk("bob"), amount: TOKEN });
    let out = c.block(vec![w, t.clone()]);
    assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
    (c, t)
}

#[test]
fn authentication_failures_change_nothing() {
    let (mut c, used) = setup();
    let root = c.root();
    let alice = key("alice");
    let n = c.ledger.account(&pk("alice")).nonce;
    let transfer = || Call::Transfer { to: pk("bob"), amount: 1 };

    // Bad signature: a flipped bit.
    let mut t = signed(&c, &alice, n, FEE, transfer());
    t.signature.0[10] ^= 1;
    refused(&mut c, t, |e| matches!(e, TxError::BadSignature { .. }));
    // Signed for another chain.
    let t = TxBody { sender: pk("alice"), nonce: n, fee: FEE, call: transfer() }.sign(&alice, "other-chain");
    refused(&mut c, t, |e| matches!(e, TxError::BadSignature { chain_id, .. } if chain_id == "agora-test"));
    // Tampered body under a valid signature.
    let mut t = signed(&c, &alice, n, FEE, transfer());
    t.body.call = Call::Transfer { to: pk("bob"), amount: 500 * TOKEN };
    refused(&mut c, t, |e| matches!(e, TxError::BadSignature { .. }));
    // Sender bytes that are not a curve point.
    let not_a_point = (0u8..=255)
        .map(|b| PublicKey([b; 32]))
        .find(|k| ledger::verify::verifying_key(k).is_none())
        .expect("some byte pattern is off the curve");
    let mut t = signed(&c, &alice, 0, FEE, transfer());
    t.body.sender = not_a_point;
    refused(&mut c, t, |e| matches!(e, TxError::BadPublicKey(k) if *k == not_a_point));
    // Replay of a transaction already in block 1.
    refused(&mut c, used.clone(), |e| matches!(e, TxError::NonceReused { expected: 1, got: 0, .. }));
    // A nonce from the future.
    let t = signed(&c, &alice, n + 5, FEE, transfer());
    refused(
        &mut c,
        t,
        |e| matches!(e, TxError::NonceTooHigh { expected, got, .. } if *expected == n && *got == n + 5),
    );
    // Fee below the minimum.
    let t = signed(&c, &alice, n, FEE - 1, transfer());
    refused(
        &mut c,
        t,
        |e| matches!(e, TxError::FeeTooLow { kind: CallKind::Transfer, min: FEE, got } if *got == FEE - 1),
    );
    // A key with no balance cannot pay any fee.
    let t = signed(&c, &key("nobody"), 0, FEE, transfer());
    refused(&mut c, t, |e| matches!(e, TxError::CannotPayFee { balance: 0, .. }));
    // Oversized: 500 weights encode to more than the 4,096-byte limit.
    let uids: Vec<u16> = (0..500).collect();
    let t = signed(&c, &key("hot1"), 0, FEE, Call::set_weights(uids, &[0.002; 500]));
    refused(&mut c, t, |e| matches!(e, TxError::Oversized { max: 4096, .. }));

    assert_eq!(c.root(), root);
}

#[test]
fn malformed_bytes_are_refused_before_decoding() {
    let (c, used) = setup();
    let mut bytes = used.encode();
    bytes.truncate(bytes.len() - 3);
    assert!(matches!(c.ledger.check_tx_bytes(&bytes), Err(TxError::Malformed(_))));
    assert!(matches!(
        c.ledger.check_tx_bytes(&vec![0u8; 5000]),
        Err(TxError::Oversized { size: 5000, max: 4096 })
    ));
    // An unknown call discriminant.
    let mut bytes = used.encode();
    bytes[32 + 8 + 8] = 0x7f;
    assert!(matches!(c.ledger.check_tx_bytes(&bytes), Err(TxError::Malformed(_))));
}

#[test]
fn call_failures_charge_only_the_fee() {
    let (mut c, _) = setup();
    let (alice, hot0, hot1, cold0) = (key("alice"), key("hot0"), key("hot1"), key("cold0"));
    let na = c.ledger.account(&pk("alice")).nonce;
    let n0 = c.ledger.account(&pk("hot0")).nonce;
    let n1 = c.ledger.account(&pk("hot1")).nonce;
    let nc = c.ledger.account(&pk("cold0")).nonce;

    // Balance.
    let t = signed(&c, &alice, na, FEE, Call::Transfer { to: pk("bob"), amount: 5_000 * TOKEN });
    refused(
        &mut c,
        t,
        |e| matches!(e, TxError::InsufficientBalance { needed, .. } if *needed == 5_000 * TOKEN),
    );
    let t = signed(&c, &alice, na, FEE, Call::Transfer { to: pk("bob"), amount: 0 });
    refused(&mut c, t, |e| matches!(e, TxError::ZeroAmount { .. }));

    // Weights: every malformed row, one reason each.
    type Want = Box<dyn Fn(&TxError) -> bool>;
    let bad_rows: Vec<(Call, Want)> = vec![
        (weights(&[(9, 1.0)]), Box::new(|e| matches!(e, TxError::UnknownUid { uid: 9, n: 4 }))),
        (
            weights(&[(0, f64::NAN), (2, 1.0)]),
            Box::new(|e| matches!(e, TxError::BadWeight { uid: 0, value } if value.0.is_nan())),
        ),
        (
            weights(&[(0, -0.5), (2, 1.5)]),
            Box::new(|e| matches!(e, TxError::BadWeight { uid: 0, value } if value.0 == -0.5)),
        ),
        (weights(&[(2, f64::INFINITY)]), Box::new(|e| matches!(e, TxError::BadWeight { uid: 2, .. }))),
        (weights(&[(2, 0.5), (2, 0.5)]), Box::new(|e| matches!(e, TxError::DuplicateUid { uid: 2 }))),
        (
            weights(&[(0, 0.3), (2, 0.4)]),
            Box::new(|e| matches!(e, TxError::NotNormalized { sum } if (sum.0 - 0.7).abs() < 1e-12)),
        ),
        (
            Call::set_weights(vec![0, 2], &[1.0]),
            Box::new(|e| matches!(e, TxError::WeightLengthMismatch { uids: 2, values: 1 })),
        ),
        (Call::set_weights(vec![], &[]), Box::new(|e| matches!(e, TxError::EmptyWeights))),
        (
            Call::set_weights((0..65).collect(), &[1.0 / 65.0; 65]),
            Box::new(|e| matches!(e, TxError::TooManyWeights { len: 65, max: 64 })),
        ),
    ];
    for (call, want) in bad_rows {
        let t = signed(&c, &hot1, n1, FEE, call);
        refused(&mut c, t, want);
    }
    // Weights from a key that is not a registered hotkey.
    let t = signed(&c, &alice, na, FEE, weights(&[(0, 1.0)]));
    refused(&mut c, t, |e| matches!(e, TxError::NotRegistered(k) if *k == pk("alice")));
    // Rate limit: hot0 set weights at block 1 and the limit is 2 blocks; the next block is 2.
    let t = signed(&c, &hot0, n0, FEE, weights(&[(2, 1.0)]));
    refused(&mut c, t, |e| matches!(e, TxError::WeightsRateLimited { last: 1, next_allowed: 3 }));
    // Bounded change: from [0, 1, 0, 0] to [0, 0, 1, 0] is sqrt(2) > 1.
    c.advance_to(2);
    let t = signed(&c, &hot0, n0, FEE, weights(&[(2, 1.0)]));
    refused(
        &mut c,
        t,
        |e| matches!(e, TxError::WeightChangeTooLarge { distance, max } if (distance.0 - 2f64.sqrt()).abs() < 1e-4 && max.0 == 1.0),
    );
    // ...while a step of 0.707 toward it is accepted.
    let t = signed(&c, &hot0, n0, FEE, weights(&[(1, 0.5), (2, 0.5)]));
    c.ledger.check_tx(&t).unwrap();

    // Stake ownership and amounts: alice may nominate on hot0 but not unstake what she did not
    // nominate, nor set its take.
    let t = signed(&c, &alice, na, FEE, Call::RemoveStake { hotkey: pk("hot0"), amount: TOKEN });
    refused(&mut c, t, |e| matches!(e, TxError::InsufficientNomination { available: 0, .. }));
    let t = signed(&c, &alice, na, FEE, Call::SetTake { hotkey: pk("hot0"), take: 0 });
    refused(&mut c, t, |e| matches!(e, TxError::NotOwner { coldkey, .. } if *coldkey == pk("cold0")));
    let t = signed(&c, &cold0, nc, FEE, Call::RemoveStake { hotkey: pk("hot0"), amount: 101 * TOKEN });
    refused(
        &mut c,
        t,
        |e| matches!(e, TxError::InsufficientStake { available, .. } if *available == 100 * TOKEN),
    );
    let t = signed(&c, &cold0, nc, FEE, Call::AddStake { hotkey: pk("alice"), amount: TOKEN });
    refused(&mut c, t, |e| matches!(e, TxError::NotRegistered(_)));

    // Endpoints.
    let ep = |ip: &str, port| Endpoint {
        ip: Ip::from(ip.parse::<std::net::IpAddr>().unwrap()),
        port,
        protocol: Protocol::Grpc,
        modality: Modality::Text,
    };
    let t = signed(&c, &hot1, n1, FEE, Call::Serve { endpoint: ep("0.0.0.0", 8091) });
    refused(&mut c, t, |e| matches!(e, TxError::BadEndpoint(_)));
    let t = signed(&c, &hot1, n1, FEE, Call::Serve { endpoint: ep("10.0.0.1", 0) });
    refused(&mut c, t, |e| matches!(e, TxError::BadEndpoint(_)));
}

#[test]
fn registration_failures() {
    let (mut c, _) = setup();
    let head = c.ledger.head();
    let difficulty = c.ledger.difficulty();
    let newbie = key("newbie");
    // A nonce whose seal misses the difficulty.
    let weak = (0u64..).find(|&n| !pow::meets(&pow::seal(&head.hash, &pk("newbie"), n), difficulty)).unwrap();
    let call = Call::Register { coldkey: pk("alice"), pow_block: head.height, pow_nonce: weak };
    let t = signed(&c, &newbie, 0, 0, call);
    refused(&mut c, t, |e| matches!(e, TxError::PowTooWeak { difficulty: 64, .. }));
    // Work over a block outside the window (the future, or too old).
    let good = pow::solve(&head.hash, &pk("newbie"), difficulty, 0, 1 << 20).unwrap();
    let t =
        signed(&c, &newbie, 0, 0, Call::Register { coldkey: pk("alice"), pow_block: 50, pow_nonce: good });
    refused(&mut c, t, |e| matches!(e, TxError::PowBlockOutOfWindow { block: 50, oldest: 0, newest: 1 }));
    // Valid work for one key does not register another.
    let t = signed(
        &c,
        &key("other"),
        0,
        0,
        Call::Register { coldkey: pk("alice"), pow_block: head.height, pow_nonce: good },
    );
    if !pow::meets(&pow::seal(&head.hash, &pk("other"), good), difficulty) {
        refused(&mut c, t, |e| matches!(e, TxError::PowTooWeak { .. }));
    }
    // An already registered hotkey.
    let hot1 = key("hot1");
    let n1 = c.ledger.account(&pk("hot1")).nonce;
    let g1 = pow::solve(&head.hash, &pk("hot1"), difficulty, 0, 1 << 20).unwrap();
    let t = signed(
        &c,
        &hot1,
        n1,
        0,
        Call::Register { coldkey: pk("cold1"), pow_block: head.height, pow_nonce: g1 },
    );
    refused(&mut c, t, |e| matches!(e, TxError::AlreadyRegistered { uid: 1, .. }));
    // register_by from a key that is not a neuron, and beyond the sponsor's means.
    let na = c.ledger.account(&pk("alice")).nonce;
    let t =
        signed(&c, &key("alice"), na, FEE, Call::RegisterBy { hotkey: pk("x"), coldkey: pk("y"), stake: 0 });
    refused(&mut c, t, |e| matches!(e, TxError::NotRegistered(k) if *k == pk("alice")));
    let t =
        signed(&c, &hot1, n1, FEE, Call::RegisterBy { hotkey: pk("x"), coldkey: pk("y"), stake: 10 * TOKEN });
    refused(&mut c, t, |e| matches!(e, TxError::InsufficientBalance { .. }));
    // The valid registration is accepted.
    let t = signed(
        &c,
        &newbie,
        0,
        0,
        Call::Register { coldkey: pk("alice"), pow_block: head.height, pow_nonce: good },
    );
    c.ledger.check_tx(&t).unwrap();
}

/// Issue 16: `publish_version` records the model a neuron's axon answers with and the block,
/// and refuses, each with its reason, a version that names no model, the same version again,
/// a sender that is no registered hotkey, a body signed by another hotkey, a fee below
/// `serve`'s, and bytes that do not decode.
#[test]
fn publish_version_records_the_model_and_refuses_bad_ones() {
    let (mut c, _) = setup();
    let v1 = Hash([0xa1; 32]);
    let t = c.tx(&key("hot0"), Call::PublishVersion { version: v1, step: 40 });
    assert_eq!(t.body.fee, c.ledger.genesis().fees.serve, "it pays serve's fee");
    let out = c.block(vec![t]);
    assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
    let h = c.ledger.head().height;
    let recorded = PublishedModel { version: v1, step: 40, published_at: h };
    assert_eq!(c.ledger.state().neuron(0).unwrap().model, Some(recorded));
    assert_eq!(c.ledger.metagraph().neurons[0].model, Some(recorded));
    assert_eq!(c.ledger.state().neuron(1).unwrap().model, None, "only the sender's");

    let (hot0, hot1) = (key("hot0"), key("hot1"));
    let n0 = c.ledger.account(&pk("hot0")).nonce;
    // The same version again (at any step): nothing new to say.
    let t = signed(&c, &hot0, n0, FEE, Call::PublishVersion { version: v1, step: 41 });
    refused(
        &mut c,
        t,
        |e| matches!(e, TxError::ModelVersionUnchanged { version, step: 40, published_at } if *version == v1 && *published_at == h),
    );
    // All zero names no model.
    let t = signed(&c, &hot0, n0, FEE, Call::PublishVersion { version: Hash::ZERO, step: 1 });
    refused(&mut c, t, |e| matches!(e, TxError::UnversionedModel));
    // A coldkey (or any unregistered key) has no model to publish.
    let cold = key("alice");
    let na = c.ledger.account(&pk("alice")).nonce;
    let t = signed(&c, &cold, na, FEE, Call::PublishVersion { version: v1, step: 1 });
    refused(&mut c, t, |e| matches!(e, TxError::NotRegistered(k) if *k == pk("alice")));
    // hot0 cannot publish for hot1: a body naming hot1 as sender signed by hot0 is rejected.
    let n1 = c.ledger.account(&pk("hot1")).nonce;
    let mut t = signed(&c, &hot0, n1, FEE, Call::PublishVersion { version: v1, step: 1 });
    t.body.sender = public_key(&hot1);
    refused(&mut c, t, |e| matches!(e, TxError::BadSignature { .. }));
    // Below the serve fee.
    let t = signed(&c, &hot0, n0, 1, Call::PublishVersion { version: Hash([3; 32]), step: 1 });
    refused(&mut c, t, |e| matches!(e, TxError::FeeTooLow { kind: CallKind::PublishVersion, .. }));
    // Malformed bytes: cut inside the version, or an unknown call index after it.
    let good = signed(&c, &hot0, n0, FEE, Call::PublishVersion { version: Hash([3; 32]), step: 1 }).encode();
    let call_at = 32 + 8 + 8; // sender, nonce, fee
    assert_eq!(good[call_at], 9, "publish_version is the tenth call: existing indices unchanged");
    let max = c.ledger.genesis().limits.max_tx_bytes as usize;
    assert!(matches!(SignedTx::decode(&good[..call_at + 10], max), Err(TxError::Malformed(_))));
    let mut unknown = good.clone();
    unknown[call_at] = 10;
    assert!(matches!(SignedTx::decode(&unknown, max), Err(TxError::Malformed(_))));

    // A new version replaces the record, with its block.
    let v2 = Hash([0xb2; 32]);
    let t = c.tx(&hot0, Call::PublishVersion { version: v2, step: 90 });
    c.block(vec![t]);
    let h2 = c.ledger.head().height;
    assert_eq!(
        c.ledger.state().neuron(0).unwrap().model,
        Some(PublishedModel { version: v2, step: 90, published_at: h2 })
    );
    c.assert_conserved();
}

proptest::proptest! {
    /// Whatever versions a registered hotkey publishes, block after block, the chain holds the
    /// last one applied with its block; exactly the all-zero and the repeated ones are refused.
    #[test]
    fn the_chain_holds_the_last_version_applied(versions in proptest::collection::vec((0u8..4, 0u64..100), 1..8)) {
        let mut c = Chain::new(genesis(2, "yuma"));
        let mut last: Option<PublishedModel> = None;
        for (v, step) in versions {
            let version = Hash([v; 32]);
            let t = c.tx(&key("hot1"), Call::PublishVersion { version, step });
            let out = c.block(vec![t]);
            let h = c.ledger.head().height;
            let expect_ok = v != 0 && last.is_none_or(|m| m.version != version);
            match &out.receipts[0].status {
                TxStatus::Applied => {
                    proptest::prop_assert!(expect_ok);
                    last = Some(PublishedModel { version, step, published_at: h });
                }
                TxStatus::Failed(TxError::UnversionedModel) => proptest::prop_assert_eq!(v, 0),
                TxStatus::Failed(TxError::ModelVersionUnchanged { .. }) => proptest::prop_assert!(!expect_ok && v != 0),
                other => proptest::prop_assert!(false, "{:?}", other),
            }
            proptest::prop_assert_eq!(c.ledger.state().neuron(1).unwrap().model, last);
        }
    }
}
