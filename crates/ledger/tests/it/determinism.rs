//! The state root depends only on genesis and the blocks: replaying blocks into fresh stores,
//! restarting from a store, and changing the thread count all give the same root at every height.
//! Also the block-level checks of `execute_block` and the execute/commit contract.

use crate::common::*;
use ledger::*;

/// A scripted chain of `blocks` blocks exercising every transaction kind, registrations into a
/// full table and yuma epochs with bonds.
fn scenario(blocks: u64) -> (GenesisConfig, Vec<Block>) {
    let mut g = genesis(6, "yuma");
    g.tempo = 4;
    g.max_neurons = 8;
    g.immunity_period = 6;
    g.weights.rate_limit = 1;
    g.weights.max_change = None;
    let mut c = Chain::new(g.clone());
    let mut out = Vec::new();
    for h in 1..=blocks {
        let mut txs = Vec::new();
        let n = c.ledger.neurons().len() as u16;
        for i in 0..6usize {
            if (h as usize + i).is_multiple_of(2) {
                let a = (i as u16 + h as u16) % n;
                let b = (i as u16 * 3 + 1) % n;
                let row = if a == b { vec![(a, 1.0)] } else { vec![(a, 0.25), (b, 0.75)] };
                txs.push(c.tx(&key(&hot(i)), weights(&row)));
            }
        }
        match h % 5 {
            0 => txs
                .push(c.tx(&key("alice"), Call::Transfer { to: pk(&format!("user{h}")), amount: h * 1000 })),
            1 => txs.push(c.tx(
                &key(&cold(h as usize % 6)),
                Call::AddStake { hotkey: pk(&hot(h as usize % 6)), amount: TOKEN },
            )),
            2 => txs.push(c.tx(
                &key(&cold(h as usize % 6)),
                Call::RemoveStake { hotkey: pk(&hot(h as usize % 6)), amount: TOKEN / 2 },
            )),
            3 => {
                let name = format!("reg{h}");
                let head = c.ledger.head();
                let nonce = pow::solve(&head.hash, &pk(&name), c.ledger.difficulty(), 0, 1 << 24).unwrap();
                txs.push(c.tx_fee(
                    &key(&name),
                    0,
                    Call::Register { coldkey: pk("bob"), pow_block: head.height, pow_nonce: nonce },
                ));
            }
            _ => txs.push(c.tx(
                &key("hot0"),
                Call::RegisterBy { hotkey: pk(&format!("spon{h}")), coldkey: pk("bob"), stake: 1000 },
            )),
        }
        // A bad transaction now and then, recorded as rejected.
        if h % 7 == 0 {
            let mut t = c.tx(&key("bob"), Call::Transfer { to: pk("alice"), amount: 1 });
            t.signature.0[0] ^= 1;
            txs.push(t);
        }
        let (block, _) = c.propose(txs);
        c.ledger.commit().unwrap();
        c.assert_conserved();
        out.push(block);
    }
    (g, out)
}

#[test]
fn replaying_blocks_into_fresh_stores_gives_the_same_roots() {
    let (g, blocks) = scenario(24);
    assert!(blocks.iter().any(|b| b.header.height % 4 == 0));
    for _ in 0..2 {
        let mut l = Ledger::init(MemStore::new(), g.clone()).unwrap();
        for b in &blocks {
            let out = l.execute_block(b).unwrap_or_else(|e| panic!("block {}: {e}", b.header.height));
            assert_eq!(out.header.state_root, b.header.state_root);
            assert_eq!(l.commit().unwrap().hash, b.header.hash());
            assert_eq!(l.head().state_root, b.header.state_root);
        }
        // The stored blocks are the blocks.
        assert_eq!(l.block(5).unwrap().unwrap().block, blocks[4]);
        assert_eq!(l.block_by_hash(&blocks[9].header.hash()).unwrap().unwrap().block, blocks[9]);
        assert!(l.block(99).unwrap().is_none());
        // Transactions are found by id; a rejected one is not indexed.
        let b = &blocks[6];
        let stored = l.block(7).unwrap().unwrap();
        for (k, (tx, r)) in b.txs.iter().zip(&stored.receipts).enumerate() {
            match &r.status {
                TxStatus::Rejected(_) => assert_eq!(l.tx_location(&tx.id()).unwrap(), None),
                _ => {
                    assert_eq!(l.tx_location(&tx.id()).unwrap(), Some((7, k as u32)));
                    let (h, t, rr) = l.transaction(&tx.id()).unwrap().unwrap();
                    assert_eq!((h, &t, &rr), (7, tx, r));
                }
            }
        }
        assert!(stored.receipts.iter().any(|r| matches!(r.status, TxStatus::Rejected(_))));
        // What the node serves as JSON reads back as the same values.
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<StoredBlock>(&json).unwrap(), stored);
        let graph = l.metagraph();
        let json = serde_json::to_string(&graph).unwrap();
        assert_eq!(serde_json::from_str::<Metagraph>(&json).unwrap(), graph);
    }
}

#[test]
fn a_restarted_ledger_continues_with_the_same_roots() {
    let (g, blocks) = scenario(20);
    let mut store = MemStore::new();
    {
        let mut l = Ledger::init(&mut store, g.clone()).unwrap();
        for b in &blocks[..11] {
            l.execute_block(b).unwrap();
            l.commit().unwrap();
        }
        // A block executed but never committed is lost with the process, as it should be.
        l.execute_block(&blocks[11]).unwrap();
    }
    let mut l = Ledger::open(&mut store).unwrap();
    assert_eq!(l.head().height, 11);
    assert_eq!(l.head().state_root, blocks[10].header.state_root);
    for b in &blocks[11..] {
        l.execute_block(b).unwrap();
        l.commit().unwrap();
    }
    assert_eq!(l.head().state_root, blocks.last().unwrap().header.state_root);
    drop(l);
    assert!(matches!(Ledger::init(&mut store, g.clone()), Err(LedgerError::AlreadyInitialised(_))));
    assert_eq!(Ledger::open_or_init(&mut store, g.clone()).unwrap().head().height, 20);
    let other = GenesisConfig { chain_id: "another".into(), ..g };
    assert!(matches!(Ledger::open_or_init(&mut store, other), Err(LedgerError::GenesisMismatch { .. })));
}

/// `commit_with` writes the caller's records in the block's own batch, under the external
/// prefix only, and they change no root (the ledger never reads them).
#[test]
fn external_records_are_committed_with_the_block_and_change_no_root() {
    let (g, blocks) = scenario(4);
    let mut plain = Ledger::init(MemStore::new(), g.clone()).unwrap();
    let mut l = Ledger::init(MemStore::new(), g).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        plain.execute_block(b).unwrap();
        plain.commit().unwrap();
        l.execute_block(b).unwrap();
        // A key in the ledger's own tables is refused, writes nothing, and leaves the block
        // pending for a correct commit.
        let mut foreign = WriteBatch::new();
        foreign.put(b"xok".to_vec(), vec![1]);
        foreign.put(b"a-not-mine".to_vec(), vec![1]);
        assert!(
            matches!(l.commit_with(foreign), Err(LedgerError::NotExternal(k)) if k == hex::encode("a-not-mine"))
        );
        assert_eq!(l.store().get(b"xok").unwrap(), None);
        assert!(l.pending().is_some());
        let mut extra = WriteBatch::new();
        extra.put(format!("xindex{i}").into_bytes(), b.header.hash().0.to_vec());
        let out = l.commit_with(extra).unwrap();
        assert_eq!(out.hash, b.header.hash());
        assert_eq!(l.head(), plain.head());
        assert_eq!(l.store().get(format!("xindex{i}").as_bytes()).unwrap(), Some(b.header.hash().0.to_vec()));
    }
    assert!(matches!(l.commit_with(WriteBatch::new()), Err(LedgerError::NothingPending)));
    let reopened = Ledger::open(l.into_store()).unwrap();
    assert_eq!(reopened.head(), plain.head());
}

#[test]
fn the_thread_count_does_not_change_any_root() {
    let roots = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| scenario(16)).1.into_iter().map(|b| b.header.state_root).collect::<Vec<_>>()
    };
    let one = roots(1);
    for t in [2, 3, 4] {
        assert_eq!(roots(t), one, "{t} threads");
    }
}

#[test]
fn blocks_that_do_not_extend_the_head_are_refused() {
    let (g, blocks) = scenario(6);
    let mut l = Ledger::init(MemStore::new(), g).unwrap();
    for b in &blocks[..3] {
        l.execute_block(b).unwrap();
        l.commit().unwrap();
    }
    let head = l.head();
    let next = &blocks[3];

    let mut b = next.clone();
    b.header.height = 7;
    assert!(matches!(l.execute_block(&b), Err(BlockError::WrongHeight { expected: 4, got: 7 })));
    let mut b = next.clone();
    b.header.parent_hash = Hash([9; 32]);
    assert!(matches!(l.execute_block(&b), Err(BlockError::WrongParent { .. })));
    let mut b = next.clone();
    b.header.timestamp_ms = head.timestamp_ms - 1;
    assert!(matches!(l.execute_block(&b), Err(BlockError::TimestampDecreasing { .. })));
    let mut b = next.clone();
    b.txs.swap(0, 1);
    assert!(matches!(l.execute_block(&b), Err(BlockError::TxRootMismatch { .. })));
    let mut b = next.clone();
    b.txs.pop();
    assert!(matches!(l.execute_block(&b), Err(BlockError::TxRootMismatch { .. })));
    // A lying state root is caught after execution, and the execution is undone.
    let mut b = next.clone();
    b.header.state_root = Hash([1; 32]);
    assert!(matches!(l.execute_block(&b), Err(BlockError::StateRootMismatch { .. })));
    assert_eq!(l.head(), head);
    assert!(l.pending().is_none());

    // The honest block still executes; a second one cannot start until it is committed.
    l.execute_block(next).unwrap();
    assert!(matches!(l.execute_block(&blocks[4]), Err(BlockError::Pending(4))));
    assert!(matches!(l.propose(vec![], u64::MAX, pk("x")), Err(BlockError::Pending(4))));
    // Discarding returns to the head; executing again gives the same block.
    l.discard().unwrap();
    assert_eq!(l.head(), head);
    assert!(matches!(l.discard(), Err(LedgerError::NothingPending)));
    assert!(matches!(l.commit(), Err(LedgerError::NothingPending)));
    let out = l.execute_block(next).unwrap();
    assert_eq!(out.hash, next.header.hash());
    l.commit().unwrap();
    assert_eq!(l.head().state_root, next.header.state_root);
}

#[test]
fn too_many_transactions_are_refused() {
    let mut g = genesis(2, "yuma");
    g.limits.max_block_txs = 2;
    let mut c = Chain::new(g);
    let txs: Vec<SignedTx> =
        (0..3).map(|_| c.tx(&key("alice"), Call::Transfer { to: pk("bob"), amount: 1 })).collect();
    let r = c.ledger.propose(txs, c.time + 1000, pk("p"));
    assert!(matches!(r, Err(BlockError::TooManyTransactions { count: 3, max: 2 })));
}

/// A store whose commits can be made to fail, to check the ledger falls back to the last
/// committed block.
struct FlakyStore {
    inner: MemStore,
    fail_next: bool,
}

impl Store for FlakyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan_prefix(&self, prefix: &[u8], f: &mut store::Visitor<'_>) -> Result<(), StoreError> {
        self.inner.scan_prefix(prefix, f)
    }
    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(StoreError::Backend("disk full".into()));
        }
        self.inner.commit(batch)
    }
}

#[test]
fn a_failed_commit_leaves_the_last_committed_block() {
    let (g, blocks) = scenario(5);
    let mut l = Ledger::init(FlakyStore { inner: MemStore::new(), fail_next: false }, g).unwrap();
    for b in &blocks[..3] {
        l.execute_block(b).unwrap();
        l.commit().unwrap();
    }
    let head = l.head();
    let balances: Vec<Account> = l.state().accounts().map(|(_, a)| *a).collect();
    l.execute_block(&blocks[3]).unwrap();
    // `Ledger` owns the store; reach it through a fresh open of the same data.
    let mut store = l.into_store();
    store.fail_next = true;
    let mut l = Ledger::open(store).unwrap();
    l.execute_block(&blocks[3]).unwrap();
    assert!(matches!(l.commit(), Err(LedgerError::Store(StoreError::Backend(_)))));
    assert_eq!(l.head(), head);
    assert_eq!(l.state().accounts().map(|(_, a)| *a).collect::<Vec<_>>(), balances);
    l.execute_block(&blocks[3]).unwrap();
    l.commit().unwrap();
    assert_eq!(l.head().state_root, blocks[3].header.state_root);
}
