//! Subnets: creation and its refusals, calls that name a subnet, and two subnets with different
//! mechanisms side by side, neither leaking into the other.

use crate::common::*;
use ledger::*;

/// Subnet parameters: `mechanism` at `tempo`, 8 uids, difficulty 1 (any seal), no immunity.
fn params(mechanism: &str, tempo: u64) -> SubnetParams {
    SubnetParams {
        mechanism: mechanism.into(),
        tempo,
        max_neurons: 8,
        immunity_period: 0,
        difficulty: 1,
        weights_rate_limit: 1,
        commit_reveal: None,
    }
}

fn create(c: &mut Chain, who: &str, p: SubnetParams) -> Receipt {
    let t = c.tx(&key(who), Call::CreateSubnet { params: p });
    c.block(vec![t]).receipts.remove(0)
}

/// Alice registers `names` in subnet `netuid` by burn (owning them), funds each with a token
/// for fees and stakes `stake` on each.
fn populate(c: &mut Chain, netuid: u16, names: &[&str], stake: u64) {
    let mut regs: Vec<SignedTx> = names
        .iter()
        .map(|n| c.tx(&key("alice"), Call::BurnedRegister { hotkey: pk(n) }.on_subnet(netuid)))
        .collect();
    for n in names {
        regs.push(c.tx(&key("alice"), Call::Transfer { to: pk(n), amount: TOKEN }));
    }
    let out = c.block(regs);
    assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
    let stakes: Vec<SignedTx> = names
        .iter()
        .map(|n| c.tx(&key("alice"), Call::AddStake { hotkey: pk(n), amount: stake }.on_subnet(netuid)))
        .collect();
    let out = c.block(stakes);
    assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
}

#[test]
fn creating_a_subnet_burns_its_cost_and_opens_the_next_netuid() {
    let mut c = Chain::new(genesis(2, "yuma"));
    let before = c.balance("alice");
    let r = create(&mut c, "alice", params("basic", 3));
    assert!(r.is_applied(), "{r:?}");
    assert_eq!(c.balance("alice"), before - 50 * TOKEN - FEE);
    assert_eq!(c.ledger.issuance().burned, u128::from(50 * TOKEN + FEE));
    let ids: Vec<u16> = c.ledger.subnets().map(|s| s.netuid()).collect();
    assert_eq!(ids, vec![0, 1]);
    let s = c.ledger.subnet(1).unwrap();
    let info = s.info().unwrap();
    assert_eq!((info.owner, info.created_at, info.params.clone()), (pk("alice"), 1, params("basic", 3)));
    assert_eq!((s.n(), s.config().mechanism.name(), s.config().tempo), (0, "basic", 3));
    assert_eq!(s.net_globals().difficulty, 1);
    // The genesis network is as it was.
    assert_eq!(c.ledger.subnet(0).unwrap().n(), 2);
    assert!(c.ledger.subnet(0).unwrap().info().is_none());
    c.assert_conserved();
}

#[test]
fn refusals_name_their_reason() {
    let mut g = genesis(1, "yuma");
    g.accounts.push(GenesisAccount { key: pk("poor"), balance: 10 * TOKEN });
    let mut c = Chain::new(g);
    let fail = |r: Receipt| r.error().cloned().expect("refused");
    let e = fail(create(&mut c, "alice", params("nope", 3)));
    assert!(matches!(&e, TxError::BadSubnetParams(m) if m.contains("unknown")), "{e}");
    let e = fail(create(&mut c, "alice", params("basic", 0)));
    assert!(matches!(&e, TxError::BadSubnetParams(m) if m.contains("tempo")), "{e}");
    let e = fail(create(&mut c, "alice", SubnetParams { difficulty: 0, ..params("basic", 3) }));
    assert!(matches!(&e, TxError::BadSubnetParams(m) if m.contains("difficulty")), "{e}");
    let e = fail(create(&mut c, "poor", params("basic", 3)));
    assert_eq!(e, TxError::SubnetCostNotCovered { cost: 50 * TOKEN, available: 10 * TOKEN - FEE });
    // Nothing was created by a refusal.
    assert_eq!(c.ledger.subnets().count(), 1);

    // A call on a subnet that does not exist is rejected: no fee, no nonce.
    let nonce = c.ledger.account(&pk("alice")).nonce;
    let t = c.tx(&key("alice"), Call::BurnedRegister { hotkey: pk("x") }.on_subnet(4));
    let out = c.block(vec![t.clone()]);
    assert_eq!(out.receipts[0].status, TxStatus::Rejected(TxError::UnknownSubnet { netuid: 4, count: 0 }));
    assert_eq!(c.ledger.account(&pk("alice")).nonce, nonce);
    assert_eq!(c.ledger.check_tx(&t).unwrap_err(), TxError::UnknownSubnet { netuid: 4, count: 0 });
    // A transfer names no network.
    let wrapped = Call::Subnet {
        netuid: 0,
        call: tx::SubnetCall(Box::new(Call::Transfer { to: pk("bob"), amount: 1 })),
    };
    let t = c.tx(&key("alice"), wrapped);
    let out = c.block(vec![t]);
    assert_eq!(
        out.receipts[0].status,
        TxStatus::Rejected(TxError::NotASubnetCall { kind: CallKind::Transfer })
    );

    // The limit (3 in the test genesis).
    for _ in 0..3 {
        assert!(create(&mut c, "alice", params("basic", 3)).is_applied());
    }
    assert_eq!(fail(create(&mut c, "alice", params("basic", 3))), TxError::SubnetLimit { max: 3 });
    c.assert_conserved();

    // Lazy emission has no per-subnet epochs to pay through.
    let mut g = genesis(1, "yuma");
    g.emission_mode = EmissionMode::Lazy;
    let mut lazy = Chain::new(g);
    assert_eq!(fail(create(&mut lazy, "alice", params("basic", 3))), TxError::SubnetsNeedPerEpochEmission);
}

#[test]
fn a_subnet_call_cannot_nest_another() {
    let inner = Call::BurnedRegister { hotkey: pk("x") }.on_subnet(1);
    let nested = Call::Subnet { netuid: 2, call: tx::SubnetCall(Box::new(inner)) };
    let t =
        TxBody { sender: pk("alice"), nonce: 0, fee: FEE, call: nested }.sign(&key("alice"), "agora-test");
    let e = SignedTx::decode(&t.encode(), 1 << 16).unwrap_err();
    assert!(matches!(&e, TxError::Malformed(m) if m.contains("cannot wrap")), "{e}");
    // One level decodes, and a call on netuid 0 is the plain call's bytes.
    let plain = Call::BurnedRegister { hotkey: pk("x") };
    assert_eq!(plain.clone().on_subnet(0), plain);
    let t = TxBody { sender: pk("alice"), nonce: 0, fee: FEE, call: plain.on_subnet(1) }
        .sign(&key("alice"), "agora-test");
    assert_eq!(SignedTx::decode(&t.encode(), 1 << 16).unwrap(), t);
}

#[test]
fn neurons_weights_and_uids_are_per_subnet() {
    let mut c = Chain::new(genesis(2, "yuma"));
    assert!(create(&mut c, "alice", params("basic", 3)).is_applied());
    // hot0 is uid 0 of netuid 0; in subnet 1 it registers after two others, as uid 2.
    populate(&mut c, 1, &["s0", "s1", "hot0"], TOKEN);
    let s = c.ledger.subnet(1).unwrap();
    assert_eq!((s.n(), s.uid_of(&pk("hot0")), s.uid_of(&pk("s0"))), (3, Some(2), Some(0)));
    assert_eq!(c.ledger.subnet(0).unwrap().n(), 2);
    assert_eq!(c.ledger.neuron_by_hotkey(&pk("s0")), None);
    // Uid 2 exists in subnet 1 only: the same row is valid there and refused on netuid 0.
    let row = weights(&[(0, 0.5), (2, 0.5)]);
    let t1 = c.tx(&key("s0"), row.clone().on_subnet(1));
    let t0 = c.tx(&key("hot0"), row);
    // A mempool's check reads the subnet the call names.
    assert!(c.ledger.check_tx(&t1).is_ok());
    assert_eq!(c.ledger.check_tx(&t0).unwrap_err(), TxError::UnknownUid { uid: 2, n: 2 });
    let out = c.block(vec![t1, t0]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    assert_eq!(out.receipts[1].error(), Some(&TxError::UnknownUid { uid: 2, n: 2 }));
    // Stake in subnet 1 is subnet 1's: netuid 0's uid 0 keeps its genesis stake.
    assert_eq!(c.ledger.subnet(1).unwrap().neuron(2).unwrap().stake, TOKEN);
    assert_eq!(c.ledger.neuron(0).unwrap().stake, 100 * TOKEN);
    // A hotkey unknown to subnet 1 cannot set weights there.
    let t = c.tx(&key("hot1"), weights(&[(0, 1.0)]).on_subnet(1));
    assert_eq!(c.block(vec![t]).receipts[0].error(), Some(&TxError::NotRegistered(pk("hot1"))));
    c.assert_conserved();
}

#[test]
fn commit_reveal_and_rate_limits_are_the_subnets_own() {
    let mut c = Chain::new(genesis(2, "yuma"));
    let cr = CommitRevealConfig { reveal_delay: 2, reveal_window: 2 };
    let p = SubnetParams { commit_reveal: Some(cr), weights_rate_limit: 4, ..params("yuma", 3) };
    assert!(create(&mut c, "alice", p).is_applied());
    populate(&mut c, 1, &["s0", "s1"], TOKEN);
    // Netuid 0 takes plain rows; subnet 1 wants a commitment.
    let t0 = c.tx(&key("hot0"), weights(&[(1, 1.0)]));
    let t1 = c.tx(&key("s0"), weights(&[(1, 1.0)]).on_subnet(1));
    let out = c.block(vec![t0, t1]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    assert_eq!(out.receipts[1].error(), Some(&TxError::CommitRevealRequired));
    let salt = Salt([9; 32]);
    let row = Call::set_weights(vec![1], &[1.0]);
    let Call::SetWeights { uids, values } = row else { unreachable!() };
    let commitment = commitment(&pk("s0"), &uids, &values, &salt);
    let t = c.tx(&key("s0"), Call::CommitWeights { commitment }.on_subnet(1));
    let committed_at = c.block(vec![t]).header.height;
    c.advance_to(committed_at + 1);
    let reveal = Call::RevealWeights { uids, values, salt }.on_subnet(1);
    let t = c.tx(&key("s0"), reveal);
    let out = c.block(vec![t]);
    assert!(out.receipts[0].is_applied(), "{:?}", out.receipts[0]);
    assert_eq!(c.ledger.subnet(1).unwrap().row(0).unwrap().0, vec![(1, u16::MAX)]);
    // Its rate limit is 4 blocks: a second commitment right after is refused.
    let t = c.tx(&key("s0"), Call::CommitWeights { commitment: Hash([1; 32]) }.on_subnet(1));
    let e = c.block(vec![t]).receipts[0].error().cloned();
    assert!(matches!(e, Some(TxError::WeightsRateLimited { .. })), "{e:?}");
    c.assert_conserved();
}

/// The genesis network (yuma, tempo 5) beside subnet 1 (basic, tempo 3), in four chains from
/// one genesis: `a`; `b`, where subnet 1's neurons weigh differently and one more registers
/// there (without stake); `c`, where netuid 0's neurons weigh differently; `idle`, where
/// subnet 1 has no neurons. What happens in one subnet leaves the other's neurons (uids,
/// stake, ranks, trust, consensus, emission), weights and bonds exactly as they are, because
/// the only thing subnets share is the emission split by registered stake, which every epoch
/// here pays out in full. Netuid 0's epochs pay exactly its stake shares of the blocks'
/// emission; a subnet without stake gets nothing.
#[test]
fn two_subnets_side_by_side_do_not_leak() {
    let g = genesis(4, "yuma");
    let mut chains: Vec<Chain> = (0..4).map(|_| Chain::new(g.clone())).collect();
    for c in &mut chains {
        assert!(create(c, "alice", params("basic", 3)).is_applied());
    }
    for c in &mut chains[..3] {
        populate(c, 1, &["s0", "s1", "s2"], 40 * TOKEN);
    }
    chains[3].advance_to(3);

    for (k, c) in chains.iter_mut().enumerate() {
        let root_row = if k == 2 { [(2, 0.2), (3, 0.8)] } else { [(0, 0.6), (1, 0.4)] };
        let mut txs: Vec<SignedTx> = (0..4).map(|i| c.tx(&key(&hot(i)), weights(&root_row))).collect();
        if k < 3 {
            let sub_row = if k == 1 { [(0, 0.9), (2, 0.1)] } else { [(0, 0.3), (1, 0.7)] };
            for i in 0..3 {
                txs.push(c.tx(&key(&format!("s{i}")), weights(&sub_row).on_subnet(1)));
            }
        }
        if k == 1 {
            txs.push(c.tx(&key("alice"), Call::BurnedRegister { hotkey: pk("s3") }.on_subnet(1)));
        }
        let out = c.block(txs);
        assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
    }

    // Follow netuid 0's emission block by block, by the stated rule, in every chain.
    let tau = chains[0].ledger.tau();
    let mut expected = [0u64; 4];
    let mut root_epochs = 0;
    for h in 5..=30 {
        let mut outs = Vec::new();
        for (k, c) in chains.iter_mut().enumerate() {
            // Block h's split reads the stakes as block h-1 left them (the blocks are empty).
            let stakes: Vec<u128> = c.ledger.subnets().map(|s| s.registered_stake()).collect();
            expected[k] += subnet::split_block_emission(tau, &stakes)[0];
            let out = c.block(vec![]);
            assert_eq!(out.header.height, h);
            outs.push(out);
        }
        if outs[0].epoch.is_some() {
            root_epochs += 1;
            for (k, out) in outs.iter().enumerate() {
                let e = out.epoch.as_ref().unwrap();
                assert!(!e.withheld && e.error.is_none(), "{e:?}");
                // The first epoch also pays the blocks before the loop (with transactions).
                if h > 5 {
                    assert_eq!(
                        e.minted, expected[k],
                        "chain {k}: netuid 0's epoch at {h} pays its stake share"
                    );
                }
                expected[k] = 0;
            }
            // No stake in subnet 1 of `idle`: netuid 0 gets every block's emission.
            assert_eq!(outs[3].epoch.as_ref().unwrap().minted, 5 * tau);
        }
    }
    assert!(root_epochs >= 5);
    for c in &chains {
        c.assert_conserved();
    }
    let graph = |c: &Chain, netuid| c.ledger.subnet_metagraph(netuid).unwrap();

    // Netuid 0 in `a` and `b`: everything equal, whatever happened in subnet 1.
    let (a0, b0) = (graph(&chains[0], 0), graph(&chains[1], 0));
    assert_eq!(a0.neurons, b0.neurons);
    assert_eq!((a0.weights.clone(), a0.bonds.clone()), (b0.weights, b0.bonds));
    assert!(a0.emission().iter().sum::<u64>() > 0);
    // ... while subnet 1 did differ.
    let (a1, b1) = (graph(&chains[0], 1), graph(&chains[1], 1));
    assert_eq!((a1.n, b1.n), (3, 4));
    assert_ne!(a1.ranks(), b1.ranks()[..3].to_vec());

    // Subnet 1 in `a` and `c`: everything equal, whatever netuid 0's neurons weighed.
    let c1 = graph(&chains[2], 1);
    assert_ne!(a0.ranks(), graph(&chains[2], 0).ranks());
    assert_eq!(a1.neurons, c1.neurons);
    assert_eq!((a1.weights.clone(), a1.bonds.clone()), (c1.weights, c1.bonds));
    assert!(a1.emission().iter().sum::<u64>() > 0, "subnet 1's mechanism paid its share");

    // `idle`'s subnet 1 got nothing.
    assert_eq!(graph(&chains[3], 1).n, 0);
    assert_eq!(chains[3].ledger.subnet(1).unwrap().net_globals().emission_pending, 0);
}

#[test]
fn subnets_survive_a_reload_and_their_roots_replay() {
    let mut c = Chain::new(genesis(2, "yuma"));
    assert!(create(&mut c, "alice", params("nakamoto", 4)).is_applied());
    populate(&mut c, 1, &["s0", "s1"], 5 * TOKEN);
    let mut blocks = Vec::new();
    for h in 4..12 {
        let t = c.tx(&key("s0"), weights(&[(1, 1.0)]).on_subnet(1));
        let (b, _) = c.propose(if h % 2 == 0 { vec![t] } else { vec![] });
        c.ledger.commit().unwrap();
        blocks.push(b);
    }
    // The state loaded from the store has the same root and subnet.
    let before = c.ledger.subnet_metagraph(1).unwrap();
    let reloaded = State::load(c.ledger.store()).unwrap();
    assert_eq!(reloaded.subnet(1).unwrap().neurons(), &before.neurons[..]);
    assert_eq!(reloaded.globals().subnet_count, 1);
    assert_eq!(reloaded.circulating(), c.ledger.issuance().total());
    let store = c.ledger.into_store();
    let reopened = Ledger::open(store).unwrap();
    assert_eq!(reopened.subnet_metagraph(1).unwrap().neurons, before.neurons);
    assert_eq!(reopened.subnet_metagraph(1).unwrap().bonds, before.bonds);
}

mod properties {
    use super::*;
    use ledger::mechanism::MECHANISM_NAMES;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Hotkeys the operations register, in any subnet.
    const KEYS: u8 = 6;

    #[derive(Debug, Clone)]
    enum Op {
        Create { mech: usize, tempo: u64 },
        BurnedRegister { netuid: u16, key: u8 },
        Register { netuid: u16, key: u8 },
        AddStake { netuid: u16, key: u8, amount: u64 },
        RemoveStake { netuid: u16, key: u8, amount: u64 },
        SetWeights { netuid: u16, key: u8, to: Vec<u16> },
        Transfer { amount: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let netuid = 0u16..4; // 3 is never created (the limit is 3, rarely reached)
        let k = 0..KEYS;
        prop_oneof![
            (0..MECHANISM_NAMES.len(), 1u64..6).prop_map(|(mech, tempo)| Op::Create { mech, tempo }),
            (netuid.clone(), k.clone()).prop_map(|(netuid, key)| Op::BurnedRegister { netuid, key }),
            (netuid.clone(), k.clone()).prop_map(|(netuid, key)| Op::Register { netuid, key }),
            (netuid.clone(), k.clone(), 1..50 * TOKEN).prop_map(|(netuid, key, amount)| Op::AddStake {
                netuid,
                key,
                amount
            }),
            (netuid.clone(), k.clone(), 1..50 * TOKEN).prop_map(|(netuid, key, amount)| Op::RemoveStake {
                netuid,
                key,
                amount
            }),
            (netuid, k, proptest::collection::btree_set(0u16..6, 1..4))
                .prop_map(|(netuid, key, to)| Op::SetWeights { netuid, key, to: to.into_iter().collect() }),
            (1..20 * TOKEN).prop_map(|amount| Op::Transfer { amount }),
        ]
    }

    fn name(k: u8) -> String {
        format!("p{k}")
    }

    fn to_tx(c: &mut Chain, op: &Op) -> Option<SignedTx> {
        Some(match op {
            Op::Create { mech, tempo } => c.tx(
                &key("alice"),
                Call::CreateSubnet {
                    params: SubnetParams { tempo: *tempo, ..params(MECHANISM_NAMES[*mech], *tempo) },
                },
            ),
            Op::BurnedRegister { netuid, key: k } => {
                c.tx(&key("alice"), Call::BurnedRegister { hotkey: pk(&name(*k)) }.on_subnet(*netuid))
            }
            Op::Register { netuid, key: k } => {
                // Difficulty 1 everywhere: any seal is valid.
                let head = c.ledger.head();
                let call = Call::Register { coldkey: pk("alice"), pow_block: head.height, pow_nonce: 0 };
                c.tx_fee(&key(&name(*k)), 0, call.on_subnet(*netuid))
            }
            Op::AddStake { netuid, key: k, amount } => c.tx(
                &key("alice"),
                Call::AddStake { hotkey: pk(&name(*k)), amount: *amount }.on_subnet(*netuid),
            ),
            Op::RemoveStake { netuid, key: k, amount } => c.tx(
                &key("alice"),
                Call::RemoveStake { hotkey: pk(&name(*k)), amount: *amount }.on_subnet(*netuid),
            ),
            Op::SetWeights { netuid, key: k, to } => {
                let v = 1.0 / to.len() as f64;
                let pairs: Vec<(u16, f64)> = to.iter().map(|&u| (u, v)).collect();
                c.tx(&key(&name(*k)), weights(&pairs).on_subnet(*netuid))
            }
            Op::Transfer { amount } => c.tx(&key("alice"), Call::Transfer { to: pk("bob"), amount: *amount }),
        })
    }

    /// Per subnet: every neuron's hotkey maps to its uid, and no hotkey maps to a uid whose
    /// neuron has another hotkey (the maps of one subnet never hold another's entries).
    fn check_maps(c: &Chain) -> Result<(), TestCaseError> {
        for s in c.ledger.subnets() {
            let mut seen = BTreeSet::new();
            for x in s.neurons() {
                prop_assert_eq!(s.uid_of(&x.hotkey), Some(x.uid), "subnet {}", s.netuid());
                prop_assert!(seen.insert(x.hotkey), "hotkey twice in subnet {}", s.netuid());
            }
            for k in 0..KEYS {
                if let Some(u) = s.uid_of(&pk(&name(k))) {
                    prop_assert_eq!(s.neuron(u).map(|x| x.hotkey), Some(pk(&name(k))));
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// With subnets created, registered into and weighted at random: issuance = genesis +
        /// minted - burned = balances + stakes in every subnet after every block (creation
        /// costs burned); what was minted plus what the subnets hold for their next epochs never
        /// exceeds tau times the height; the hotkey maps are consistent per subnet; a replay
        /// reproduces every root.
        #[test]
        fn subnets_conserve_issuance_and_keep_their_tables_apart(
            // A first block that opens a subnet, so every case has two networks or more.
            first in (0..MECHANISM_NAMES.len(), 1u64..6).prop_map(|(mech, tempo)| Op::Create { mech, tempo }),
            blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..14),
        ) {
            let mut g = genesis(2, "yuma");
            g.registration.difficulty = 1;
            g.registration.max_difficulty = 1;
            for k in 0..KEYS {
                g.accounts.push(GenesisAccount { key: pk(&name(k)), balance: 10 * TOKEN });
            }
            let mut c = Chain::new(g.clone());
            let genesis_issuance = c.ledger.issuance().total();
            let mut produced = Vec::new();
            let opening = vec![first];
            for ops in std::iter::once(&opening).chain(&blocks) {
                let txs: Vec<SignedTx> = ops.iter().filter_map(|o| to_tx(&mut c, o)).collect();
                let (block, out) = c.propose(txs);
                c.ledger.commit().unwrap();
                let iss = c.ledger.issuance();
                prop_assert_eq!(iss.total(), genesis_issuance + iss.minted - iss.burned);
                prop_assert_eq!(c.ledger.state().circulating(), iss.total());
                let pending: u128 =
                    c.ledger.subnets().map(|s| u128::from(s.net_globals().emission_pending)).sum();
                let height = u128::from(c.ledger.head().height);
                prop_assert!(iss.minted + pending <= u128::from(c.ledger.tau()) * height);
                // Only a call on an unknown subnet is rejected (and the sender's later ones in
                // the block, whose nonces it did not use).
                for r in &out.receipts {
                    if let TxStatus::Rejected(e) = &r.status {
                        let ok = matches!(e, TxError::UnknownSubnet { .. } | TxError::NonceTooHigh { .. });
                        prop_assert!(ok, "{:?}", r);
                    }
                }
                check_maps(&c)?;
                produced.push(block);
            }
            check_replay(g, &produced)?;
        }
    }
}
