//! Commit-reveal weights: a row is committed as a hash, revealed within its window, and only
//! revealed rows reach the epoch; every refusal says why (disabled, required, nothing to
//! reveal, too early, too late, mismatch).

use crate::common::*;
use ledger::*;
use proptest::prelude::*;

fn chain(delay: u64, window: u64) -> Chain {
    let mut g = genesis(3, "yuma");
    g.weights.commit_reveal = Some(CommitRevealConfig { reveal_delay: delay, reveal_window: window });
    Chain::new(g)
}

fn floats(v: &[f64]) -> Vec<Float> {
    v.iter().copied().map(Float).collect()
}

fn commit(hotkey: &str, uids: &[u16], values: &[f64], salt: Salt) -> Call {
    Call::CommitWeights { commitment: commitment(&pk(hotkey), uids, &floats(values), &salt) }
}

fn reveal(uids: &[u16], values: &[f64], salt: Salt) -> Call {
    Call::RevealWeights { uids: uids.to_vec(), values: floats(values), salt }
}

/// Checks `call` from `hotkey` at submission and in a block: refused with `want`, or applied.
fn send(c: &mut Chain, hotkey: &str, call: Call) -> Result<(), TxError> {
    let t = c.tx(&key(hotkey), call);
    let checked = c.ledger.check_tx(&t).map(|_| ());
    let out = c.block(vec![t]);
    let in_block = match out.receipts[0].error() {
        None => Ok(()),
        Some(e) => Err(e.clone()),
    };
    assert_eq!(checked, in_block, "the mempool and the block disagree");
    in_block
}

#[test]
fn a_row_is_committed_revealed_in_its_window_and_only_then_counts() {
    let mut c = chain(3, 4);
    let salt = Salt([7; 32]);
    let (uids, values) = ([0u16, 1], [0.25, 0.75]);
    assert_eq!(send(&mut c, "hot0", weights(&[(0, 1.0)])), Err(TxError::CommitRevealRequired));
    assert_eq!(send(&mut c, "hot0", reveal(&uids, &values, salt)), Err(TxError::NoWeightsCommit(pk("hot0"))));
    // Block 3: hot0 commits; hot1 commits too but will never reveal.
    assert_eq!(send(&mut c, "hot0", commit("hot0", &uids, &values, salt)), Ok(()));
    let committed_at = c.ledger.head().height;
    assert_eq!(send(&mut c, "hot1", commit("hot1", &[2], &[1.0], salt)), Ok(()));
    let n = c.ledger.neuron_by_hotkey(&pk("hot0")).unwrap();
    assert_eq!(n.weights_commit.map(|w| w.block), Some(committed_at));
    assert!(c.ledger.metagraph().weights[0].is_empty(), "a commitment shows no row");
    // Block 5 < 3 + 3: too early.
    assert_eq!(
        send(&mut c, "hot0", reveal(&uids, &values, salt)),
        Err(TxError::RevealTooEarly { committed_at, earliest: committed_at + 3 })
    );
    // Blocks 6 and 7: in the window, but another salt, or another row.
    let mismatch = |r: Result<(), TxError>| matches!(r, Err(TxError::RevealMismatch { .. }));
    assert!(mismatch(send(&mut c, "hot0", reveal(&uids, &values, Salt([8; 32])))));
    assert!(mismatch(send(&mut c, "hot0", reveal(&uids, &[0.75, 0.25], salt))));
    assert_eq!(c.ledger.head().height, committed_at + 4);
    // Block 8, the third of the window's four: the right row and salt.
    assert_eq!(send(&mut c, "hot0", reveal(&uids, &values, salt)), Ok(()));
    let n = c.ledger.neuron_by_hotkey(&pk("hot0")).unwrap();
    assert_eq!((n.weights_commit, n.last_weights_block), (None, Some(c.ledger.head().height)));
    assert_eq!(c.ledger.metagraph().weights[0], WeightRow(vec![(0, 16384), (1, 49151)]));
    // The commitment is spent: revealing again finds nothing.
    assert_eq!(send(&mut c, "hot0", reveal(&uids, &values, salt)), Err(TxError::NoWeightsCommit(pk("hot0"))));

    // The epoch reads the revealed row and not the unrevealed commitment.
    let h = c.ledger.head().height + 1;
    let inputs = c.ledger.state().epoch_inputs(h).unwrap();
    assert_eq!(inputs.weights.row(0).0, &[0, 1]);
    assert!(inputs.weights.row(1).0.is_empty(), "hot1 never revealed");

    // hot1's reveal comes too late: refused, the row stays empty.
    let late = committed_at + 1 + 3 + 4;
    c.advance_to(late - 1);
    assert_eq!(
        send(&mut c, "hot1", reveal(&[2], &[1.0], salt)),
        Err(TxError::RevealTooLate { committed_at: committed_at + 1, deadline: late - 1 })
    );
    assert!(c.ledger.metagraph().weights[1].is_empty());
    c.assert_conserved();
}

#[test]
fn commitments_are_rate_limited_and_refused_when_off() {
    let mut c = chain(1, 5);
    let salt = Salt([1; 32]);
    assert_eq!(send(&mut c, "hot0", commit("hot0", &[0], &[1.0], salt)), Ok(()));
    let last = c.ledger.head().height;
    // rate_limit is 2 blocks in the test genesis: a new commitment in the next block is refused.
    assert_eq!(
        send(&mut c, "hot0", commit("hot0", &[1], &[1.0], salt)),
        Err(TxError::WeightsRateLimited { last, next_allowed: last + 2 })
    );
    // Later a new commitment replaces the old one: the old row no longer opens it.
    assert_eq!(send(&mut c, "hot0", commit("hot0", &[1], &[1.0], salt)), Ok(()));
    c.block(vec![]);
    assert!(matches!(send(&mut c, "hot0", reveal(&[0], &[1.0], salt)), Err(TxError::RevealMismatch { .. })));
    assert_eq!(send(&mut c, "hot0", reveal(&[1], &[1.0], salt)), Ok(()));

    let mut off = Chain::new(genesis(2, "yuma"));
    assert_eq!(
        send(&mut off, "hot0", commit("hot0", &[0], &[1.0], salt)),
        Err(TxError::CommitRevealDisabled)
    );
    assert_eq!(send(&mut off, "hot0", reveal(&[0], &[1.0], salt)), Err(TxError::CommitRevealDisabled));
    // Genesis refuses a window that could never hide or never land.
    for (d, w) in [(0, 1), (1, 0)] {
        let mut g = genesis(1, "yuma");
        g.weights.commit_reveal = Some(CommitRevealConfig { reveal_delay: d, reveal_window: w });
        assert!(matches!(g.validate(), Err(GenesisError::Invalid { .. })), "{d} {w}");
    }
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    None,
    Salt,
    Value,
    Uid,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A reveal is applied exactly when it opens the commitment and lands in its window; then
    /// the row is what `set_weights` of the same values stores on a chain without
    /// commit-reveal. Otherwise the row is untouched and the reason names the rule broken
    /// (timing is checked before the hash).
    #[test]
    fn only_a_matching_reveal_in_its_window_sets_the_row(
        delay in 1u64..4,
        window in 1u64..4,
        offset in 0u64..9,
        a in 1u32..100,
        b in 1u32..100,
        tamper in prop_oneof![Just(Tamper::None), Just(Tamper::Salt), Just(Tamper::Value), Just(Tamper::Uid)],
        salt in any::<[u8; 32]>(),
    ) {
        let mut c = chain(delay, window);
        let total = f64::from(a + b);
        let (uids, values) = ([0u16, 2], [f64::from(a) / total, f64::from(b) / total]);
        let salt = Salt(salt);
        prop_assert_eq!(send(&mut c, "hot0", commit("hot0", &uids, &values, salt)), Ok(()));
        let committed_at = c.ledger.head().height;
        // The reveal lands in block committed_at + offset (at least the next block).
        c.advance_to(committed_at + offset.max(1) - 1);
        let (mut ru, mut rv, mut rs) = (uids, values, salt);
        match tamper {
            Tamper::None => {}
            Tamper::Salt => rs.0[0] ^= 1,
            Tamper::Value => rv.swap(0, 1),
            Tamper::Uid => ru[1] = 1,
        }
        let at = committed_at + offset.max(1);
        let result = send(&mut c, "hot0", reveal(&ru, &rv, rs));
        let row = c.ledger.metagraph().weights[0].clone();
        let (earliest, deadline) = (committed_at + delay, committed_at + delay + window - 1);
        // A swap of equal values changes nothing: that reveal still matches.
        let changed = ru != uids || rv != values || rs != salt;
        if at < earliest {
            prop_assert_eq!(&result, &Err(TxError::RevealTooEarly { committed_at, earliest }));
        } else if at > deadline {
            prop_assert_eq!(&result, &Err(TxError::RevealTooLate { committed_at, deadline }));
        } else if changed {
            prop_assert!(matches!(result, Err(TxError::RevealMismatch { .. })), "{:?}", result);
        } else {
            prop_assert_eq!(&result, &Ok(()));
            let mut open = Chain::new(genesis(3, "yuma"));
            prop_assert_eq!(send(&mut open, "hot0", Call::set_weights(uids.to_vec(), &values)), Ok(()));
            prop_assert_eq!(&row, &open.ledger.metagraph().weights[0]);
            prop_assert_eq!(c.ledger.neuron(0).unwrap().last_weights_block, Some(at));
        }
        if result.is_err() {
            prop_assert!(row.is_empty());
            prop_assert!(c.ledger.neuron(0).unwrap().weights_commit.is_some());
        }
        c.assert_conserved();
    }
}
