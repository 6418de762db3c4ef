//! Property tests over random transaction sequences: conservation and issuance hold after every
//! block, in both emission modes, for every mechanism and for random activity cutoffs and
//! validator permit counts, with nominators staking on others' hotkeys, owners changing their
//! take and burned registrations replacing neurons; every hotkey's stake breaks down into its
//! nominations and its owner's part; an epoch pays no dividends to a neuron that did not
//! validate; and a replay reproduces the roots.

use crate::common::*;
use ledger::mechanism::MECHANISM_NAMES;
use ledger::*;
use proptest::prelude::*;
use std::collections::HashMap;

const NEURONS: usize = 4;
/// Keys the operations pick from: the genesis users, hotkeys and coldkeys.
const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    AddStake {
        i: usize,
        amount: u64,
    },
    RemoveStake {
        i: usize,
        amount: u64,
    },
    SetWeights {
        i: usize,
        row: Vec<(u16, u16)>,
    },
    Serve {
        i: usize,
        port: u16,
    },
    RegisterBy {
        i: usize,
        new: u8,
        stake: u64,
    },
    Register {
        new: u8,
    },
    /// A user nominates on (or takes back from) neuron i's hotkey.
    Nominate {
        who: usize,
        i: usize,
        amount: u64,
    },
    Unnominate {
        who: usize,
        i: usize,
        amount: u64,
    },
    SetTake {
        i: usize,
        take: u16,
    },
    BurnedRegister {
        who: usize,
        new: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..NEURONS + 4; // some indices name neurons that do not exist yet (or any more)
    prop_oneof![
        (0..USERS.len(), 0..USERS.len() + 1, 1..200 * TOKEN).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (i.clone(), 1..300 * TOKEN).prop_map(|(i, amount)| Op::AddStake { i, amount }),
        (i.clone(), 1..300 * TOKEN).prop_map(|(i, amount)| Op::RemoveStake { i, amount }),
        (i.clone(), proptest::collection::vec((0u16..10, 0u16..1000), 1..6))
            .prop_map(|(i, row)| Op::SetWeights { i, row }),
        (i.clone(), 1u16..).prop_map(|(i, port)| Op::Serve { i, port }),
        (i.clone(), 0u8..6, 0..5 * TOKEN).prop_map(|(i, new, stake)| Op::RegisterBy { i, new, stake }),
        (0u8..6).prop_map(|new| Op::Register { new }),
        (0..USERS.len(), i.clone(), 1..300 * TOKEN).prop_map(|(who, i, amount)| Op::Nominate {
            who,
            i,
            amount
        }),
        (0..USERS.len(), i.clone(), 1..300 * TOKEN).prop_map(|(who, i, amount)| Op::Unnominate {
            who,
            i,
            amount
        }),
        (i, any::<u16>()).prop_map(|(i, take)| Op::SetTake { i, take }),
        (0..USERS.len(), 0u8..6).prop_map(|(who, new)| Op::BurnedRegister { who, new }),
    ]
}

fn user(k: usize) -> String {
    USERS.get(k).map_or("dave".to_string(), |s| s.to_string())
}

/// Turns an operation into a signed transaction that should be valid against the current state
/// where that is easy to arrange (amounts clamped, rows normalised); `None` when it makes no
/// sense (an empty row).
fn to_tx(c: &mut Chain, spent: &mut HashMap<PublicKey, u64>, op: &Op) -> Option<SignedTx> {
    let n = c.ledger.neurons().len();
    // What a sender may still move in this block, keeping enough for the fees of every
    // transaction a block can hold (so nothing is refused for an unpayable fee).
    let mut budget = |c: &Chain, name: &str, want: u64| {
        let who = pk(name);
        let used = spent.entry(who).or_insert(0);
        let free = c.ledger.account(&who).balance.saturating_sub(*used + 20 * FEE);
        let amount = want.min(free);
        *used += amount + FEE;
        (amount > 0).then_some(amount)
    };
    Some(match op {
        Op::Transfer { from, to, amount } => {
            let amount = budget(c, &user(*from), *amount)?;
            c.tx(&key(&user(*from)), Call::Transfer { to: pk(&user(*to)), amount })
        }
        Op::AddStake { i, amount } => {
            let amount = budget(c, &cold(*i), *amount)?;
            c.tx(&key(&cold(*i)), Call::AddStake { hotkey: pk(&hot(*i)), amount })
        }
        Op::RemoveStake { i, amount } => {
            let staked = c.ledger.neuron_by_hotkey(&pk(&hot(*i))).map_or(1, |x| x.stake.max(1));
            c.tx(&key(&cold(*i)), Call::RemoveStake { hotkey: pk(&hot(*i)), amount: (*amount).min(staked) })
        }
        Op::SetWeights { i, row } => {
            let mut row: Vec<(u16, u16)> = row.iter().map(|&(u, v)| (u % n as u16, v)).collect();
            row.sort_by_key(|p| p.0);
            row.dedup_by_key(|p| p.0);
            let sum: f64 = row.iter().map(|p| f64::from(p.1)).sum();
            if sum == 0.0 {
                return None;
            }
            let pairs: Vec<(u16, f64)> = row.iter().map(|&(u, v)| (u, f64::from(v) / sum)).collect();
            c.tx(&key(&hot(*i)), weights(&pairs))
        }
        Op::Serve { i, port } => c.tx(
            &key(&hot(*i)),
            Call::Serve {
                endpoint: Endpoint {
                    ip: Ip::V4([10, 0, 0, 1]),
                    port: *port,
                    protocol: Protocol::Grpc,
                    modality: Modality::Text,
                },
            },
        ),
        Op::RegisterBy { i, new, stake } => c.tx(
            &key(&hot(*i)),
            Call::RegisterBy { hotkey: pk(&format!("p{new}")), coldkey: pk(&cold(*i)), stake: *stake },
        ),
        Op::Nominate { who, i, amount } => {
            let amount = budget(c, &user(*who), *amount)?;
            c.tx(&key(&user(*who)), Call::AddStake { hotkey: pk(&hot(*i)), amount })
        }
        Op::Unnominate { who, i, amount } => {
            // Half the time exactly what is nominated (all of it), else the amount drawn (which
            // may exceed it, or leave dust: refused, fee paid).
            let held = c.ledger.neuron_by_hotkey(&pk(&hot(*i))).map_or(0, |x| x.nomination(&pk(&user(*who))));
            let amount = if amount % 2 == 0 && held > 0 { held } else { *amount };
            c.tx(&key(&user(*who)), Call::RemoveStake { hotkey: pk(&hot(*i)), amount })
        }
        Op::SetTake { i, take } => {
            // Mostly within the bound, sometimes above it (refused).
            let take = take % (delegation::DEFAULT_TAKE + 2_000);
            c.tx(&key(&cold(*i)), Call::SetTake { hotkey: pk(&hot(*i)), take })
        }
        Op::BurnedRegister { who, new } => {
            budget(c, &user(*who), TOKEN)?;
            c.tx(&key(&user(*who)), Call::BurnedRegister { hotkey: pk(&format!("b{new}")) })
        }
        Op::Register { new } => {
            // Difficulty 1: every seal is valid, the test is about accounting, not work.
            let head = c.ledger.head();
            c.tx_fee(
                &key(&format!("w{new}")),
                0,
                Call::Register { coldkey: pk("alice"), pow_block: head.height, pow_nonce: 0 },
            )
        }
    })
}

fn chain_genesis(mech: &str, lazy: bool, activity_cutoff: u64, max_validators: u32) -> GenesisConfig {
    let mut g = genesis(NEURONS, mech);
    g.accounts.push(GenesisAccount { key: pk("carol"), balance: 500 * TOKEN });
    // Keys of neurons that registration may create later, funded like the genesis ones.
    for i in NEURONS..NEURONS + 4 {
        g.accounts.push(GenesisAccount { key: pk(&hot(i)), balance: 10 * TOKEN });
        g.accounts.push(GenesisAccount { key: pk(&cold(i)), balance: 1_000 * TOKEN });
    }
    g.tempo = 3;
    g.emission_per_block = 777_777_777;
    g.max_neurons = 6;
    g.immunity_period = 2;
    g.weights.rate_limit = 1;
    g.weights.max_change = Some(1.2);
    g.registration.difficulty = 1;
    g.registration.min_difficulty = 1;
    g.registration.max_difficulty = 1;
    g.emission_mode = if lazy { EmissionMode::Lazy } else { EmissionMode::PerEpoch };
    g.activity_cutoff = activity_cutoff;
    g.max_validators = max_validators;
    g.delegation.take_notice = 2;
    g.delegation.max_nominators = 2;
    g
}

/// Every hotkey's stake is its nominations plus its owner's part: nominations sorted by
/// coldkey, none by the owner, each at least the minimum, together no more than the stake.
fn check_nominations(c: &Chain, g: &GenesisConfig) -> Result<(), TestCaseError> {
    for x in c.ledger.neurons() {
        prop_assert!(x.nominations.windows(2).all(|w| w[0].coldkey < w[1].coldkey), "{:?}", x);
        prop_assert!(x.nominations.len() <= g.delegation.max_nominators as usize);
        for n in &x.nominations {
            prop_assert!(n.coldkey != x.coldkey && n.stake >= g.delegation.min_nomination, "{:?}", x);
        }
        let nominated: u128 = x.nominations.iter().map(|n| u128::from(n.stake)).sum();
        prop_assert!(nominated <= u128::from(x.stake), "{:?}", x);
        prop_assert!(x.take_at(c.ledger.head().height) <= g.delegation.max_take);
    }
    Ok(())
}

/// After a block that ran an epoch at `height`: the flags are the rules (active within the
/// cutoff, `min(k, n)` permits), and a neuron that did not validate has no dividends and no
/// validator trust.
fn check_validators(c: &Chain, g: &GenesisConfig, height: u64) -> Result<(), TestCaseError> {
    let neurons = c.ledger.neurons();
    for x in neurons {
        let last_update = x.last_weights_block.unwrap_or(0).max(x.registered_at);
        prop_assert_eq!(x.scores.active, height - last_update <= g.activity_cutoff, "{:?}", x);
        if !(x.scores.active && x.scores.validator_permit) {
            prop_assert_eq!((x.scores.dividends, x.scores.validator_trust), (0.0, 0.0), "{:?}", x);
        }
    }
    let permits = neurons.iter().filter(|x| x.scores.validator_permit).count();
    prop_assert_eq!(permits, neurons.len().min(g.max_validators as usize));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn conservation_and_issuance_hold_at_every_block(
        mech in 0..MECHANISM_NAMES.len(),
        lazy in any::<bool>(),
        // Cutoffs from one block (only who set weights in the epoch's block validates) to
        // longer than the run; permits from one to more than the table holds.
        activity_cutoff in 1u64..12,
        max_validators in 1u32..8,
        // Whether the genesis neurons first agree on a row, so that yuma reaches consensus and
        // the variants with bonds have dividends to withhold from neurons that do not validate.
        agree in any::<bool>(),
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..8), 1..10),
    ) {
        let g = chain_genesis(MECHANISM_NAMES[mech], lazy, activity_cutoff, max_validators);
        let mut c = Chain::new(g.clone());
        let genesis_issuance = c.ledger.issuance().total();
        let (mut minted, mut burned) = (0u128, 0u128);
        let mut produced = Vec::new();
        let agreement: Vec<Op> = (0..NEURONS).map(|i| Op::SetWeights { i, row: vec![(0, 500), (1, 300), (2, 200)] }).collect();
        let first = agree.then_some(&agreement);
        for ops in first.into_iter().chain(&blocks) {
            let mut spent = HashMap::new();
            let txs: Vec<SignedTx> = ops.iter().filter_map(|o| to_tx(&mut c, &mut spent, o)).collect();
            let (block, out) = c.propose(txs);
            c.ledger.commit().unwrap();
            // The harness signs correctly with the right nonces: nothing is rejected.
            for r in &out.receipts {
                prop_assert!(!matches!(r.status, TxStatus::Rejected(_)), "{:?}", r);
            }
            minted += u128::from(out.minted);
            burned += u128::from(out.burned);
            let fees: u64 = out.receipts.iter().map(|r| r.fee_paid).sum();
            prop_assert!(out.burned >= fees);
            let lazy_paid: u64 = out.receipts.iter().map(|r| r.emission_paid).sum();
            // Issuance: genesis + minted - burned, equal to all balances and stakes.
            let iss = c.ledger.issuance();
            prop_assert_eq!(iss.minted, minted);
            prop_assert_eq!(iss.burned, burned);
            prop_assert_eq!(iss.total(), genesis_issuance + minted - burned);
            prop_assert_eq!(c.ledger.state().circulating(), iss.total());
            check_nominations(&c, &g)?;
            // An epoch mints exactly the schedule (or nothing when the mechanism pays nothing);
            // lazy epochs mint nothing, lazy payouts are all the block mints.
            match (&out.epoch, lazy) {
                (Some(e), false) => {
                    let expected = if e.withheld { 0 } else { g.tempo * g.emission_per_block };
                    prop_assert_eq!(e.minted, expected, "{:?}", e);
                    prop_assert_eq!(out.minted, e.minted);
                }
                (Some(e), true) => {
                    prop_assert_eq!(e.minted, 0);
                    prop_assert_eq!(out.minted, lazy_paid);
                }
                (None, false) => prop_assert_eq!(out.minted, 0),
                (None, true) => prop_assert_eq!(out.minted, lazy_paid),
            }
            if let Some(e) = out.epoch.as_ref().filter(|e| e.error.is_none() && e.n > 0) {
                check_validators(&c, &g, e.height)?;
            }
            produced.push(block);
        }
        // A fresh ledger executing the same blocks reaches the same roots.
        check_replay(g, &produced)?;
    }
}
