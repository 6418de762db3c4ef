//! The mempool: transactions accepted by a node (or the in-process `LocalChain`) and waiting
//! for a block. It lives beside the ledger because it needs nothing but the ledger's rules, so
//! every chain admits transactions by the same code.
//!
//! Entry is validated against the ledger (`check_tx`), so a bad transaction is refused at
//! submission with its typed reason instead of wasting a block slot. A sender may queue several
//! transactions with consecutive nonces; only the first can be checked in full against the
//! current state, the others against the balance the earlier ones would leave at worst
//! (`Ledger::check_admission`), so each can still pay its fee when its block comes. Blocks take transactions by fee, highest first, then by arrival, while keeping
//! each sender's nonces in order. The pool is bounded: when full it refuses new transactions.

use crate::{BlockError, BlockOutcome, Hash, Ledger, PublicKey, SignedTx, Store, TxBody, TxError};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use thiserror::Error;

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MempoolError {
    /// The ledger's rules refuse it (or, queued behind the sender's pending transactions,
    /// it might not be able to pay).
    #[error("{0}")]
    Invalid(TxError),
    /// The pool holds its maximum.
    #[error("the mempool is full ({max} transactions): retry after the next block")]
    Full {
        /// The pool's capacity, in transactions.
        max: usize,
    },
    /// Another transaction with this nonce is already queued: the pool keeps the first.
    #[error(
        "a transaction from {sender} with nonce {nonce} is already pending: wait for it, or use nonce {next}"
    )]
    NoncePending {
        /// The sender.
        sender: PublicKey,
        /// The nonce sent again.
        nonce: u64,
        /// The first nonce free after the sender's queue.
        next: u64,
    },
}

struct Entry {
    tx: SignedTx,
    id: Hash,
    seq: u64,
}

/// Pending transactions, per sender in nonce order.
pub struct Mempool {
    max: usize,
    by_sender: HashMap<PublicKey, BTreeMap<u64, Entry>>,
    ids: HashMap<Hash, (PublicKey, u64)>,
    next_seq: u64,
}

impl Mempool {
    /// A pool holding at most `max` transactions.
    pub fn new(max: usize) -> Self {
        Mempool { max, by_sender: HashMap::new(), ids: HashMap::new(), next_seq: 0 }
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no transaction waits.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the transaction with this id waits.
    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains_key(id)
    }

    /// Validates `bytes` against the ledger's current state and queues the transaction.
    /// Submitting a transaction that is already pending returns its id again.
    pub fn insert<S: Store>(&mut self, ledger: &Ledger<S>, bytes: &[u8]) -> Result<Hash, MempoolError> {
        let max_bytes = ledger.genesis().limits.max_tx_bytes as usize;
        let tx = SignedTx::decode(bytes, max_bytes).map_err(MempoolError::Invalid)?;
        let id = tx.id();
        if self.ids.contains_key(&id) {
            return Ok(id);
        }
        let sender = tx.body.sender;
        let account_nonce = ledger.account(&sender).nonce;
        let queue = self.by_sender.get(&sender);
        let queued = queue.map_or(0, BTreeMap::len) as u64;
        // Queues are contiguous from the account's nonce (restored after every block).
        let next = account_nonce + queued;
        let nonce = tx.body.nonce;
        if queued > 0 && (account_nonce..next).contains(&nonce) {
            return Err(MempoolError::NoncePending { sender, nonce, next });
        }
        // Behind pending transactions, checked against the balance they would leave at worst.
        let pending: Vec<&TxBody> =
            queue.map(|q| q.values().map(|e| &e.tx.body).collect()).unwrap_or_default();
        ledger.check_admission(&tx, &pending).map_err(MempoolError::Invalid)?;
        if self.ids.len() >= self.max {
            return Err(MempoolError::Full { max: self.max });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ids.insert(id, (sender, nonce));
        self.by_sender.entry(sender).or_default().insert(nonce, Entry { tx, id, seq });
        Ok(id)
    }

    /// Up to `limit` transactions for the next block: highest fee first, then earliest
    /// arrival, each sender's in nonce order. They stay in the pool until [`Mempool::after_block`].
    pub fn select(&self, limit: usize) -> Vec<SignedTx> {
        // (fee, earliest arrival) of each sender's next transaction; a sender's later ones
        // become candidates only after its earlier ones are taken.
        let mut heap = BinaryHeap::new();
        let mut queues = HashMap::new();
        for (sender, q) in &self.by_sender {
            let mut it = q.values().peekable();
            if let Some(e) = it.peek() {
                heap.push((e.tx.body.fee, Reverse(e.seq), *sender));
            }
            queues.insert(*sender, it);
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((_, _, sender)) = heap.pop() else { break };
            let Some(it) = queues.get_mut(&sender) else { break };
            if let Some(e) = it.next() {
                out.push(e.tx.clone());
            }
            if let Some(next) = it.peek() {
                heap.push((next.tx.body.fee, Reverse(next.seq), sender));
            }
        }
        out
    }

    /// Makes one block of what waits here: the transactions a block may hold (by fee, then
    /// arrival, each sender's nonces in order), proposed at `timestamp_ms` by `proposer` and
    /// committed, then this pool told what the block included. How the single-validator node
    /// and the in-process `LocalChain` both make their blocks. Returns the block's outcome and
    /// the ids of its transactions, in block order.
    pub fn produce_block<S: Store>(
        &mut self,
        ledger: &mut Ledger<S>,
        timestamp_ms: u64,
        proposer: PublicKey,
    ) -> Result<(BlockOutcome, Vec<Hash>), BlockError> {
        let limit = ledger.genesis().limits.max_block_txs as usize;
        let txs = self.select(limit);
        let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
        ledger.propose(txs, timestamp_ms, proposer)?;
        let outcome = ledger.commit()?;
        self.after_block(ledger, &ids);
        Ok((outcome, ids))
    }

    /// After a block: drops the included transactions, then re-checks what is left against
    /// the new state. Each sender's queue must again start at its account nonce, and its first
    /// transaction must pass the ledger's full check; otherwise that sender's queue is dropped
    /// (the later ones would only fail on a nonce gap). Returns how many were dropped.
    pub fn after_block<S: Store>(&mut self, ledger: &Ledger<S>, included: &[Hash]) -> usize {
        for id in included {
            if let Some((sender, nonce)) = self.ids.remove(id) {
                if let Some(q) = self.by_sender.get_mut(&sender) {
                    q.remove(&nonce);
                }
            }
        }
        let mut dropped = 0;
        let senders: Vec<PublicKey> = self.by_sender.keys().copied().collect();
        for sender in senders {
            let Some(mut q) = self.by_sender.remove(&sender) else { continue };
            let account_nonce = ledger.account(&sender).nonce;
            // Nonces already used (by a block that included another transaction with the nonce).
            let mut keep = q.split_off(&account_nonce);
            let stale = q;
            let contiguous = keep.keys().copied().eq(account_nonce..account_nonce + keep.len() as u64);
            let first_ok = keep.values().next().is_some_and(|e| ledger.check_tx(&e.tx).is_ok());
            if !(contiguous && first_ok) {
                for e in std::mem::take(&mut keep).into_values() {
                    self.ids.remove(&e.id);
                    dropped += 1;
                }
            }
            for e in stale.into_values() {
                self.ids.remove(&e.id);
                dropped += 1;
            }
            if !keep.is_empty() {
                self.by_sender.insert(sender, keep);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dev_key, public_key, Call, GenesisConfig, MemStore, TxBody, UNITS_PER_TOKEN};

    fn ledger() -> Ledger<MemStore> {
        Ledger::init(MemStore::new(), GenesisConfig::dev(&["alice", "bob", "carol"], 10 * UNITS_PER_TOKEN))
            .unwrap()
    }

    fn transfer(from: &str, nonce: u64, fee: u64, amount: u64) -> SignedTx {
        let k = dev_key(from);
        let to = public_key(&dev_key("dave"));
        TxBody { sender: public_key(&k), nonce, fee, call: Call::Transfer { to, amount } }
            .sign(&k, "agora-dev")
    }

    #[test]
    fn orders_by_fee_then_arrival_keeping_nonces_in_order() {
        let l = ledger();
        let mut m = Mempool::new(10);
        let a0 = transfer("alice", 0, 10_000, 1);
        let a1 = transfer("alice", 1, 90_000, 1);
        let b0 = transfer("bob", 0, 50_000, 1);
        let c0 = transfer("carol", 0, 10_000, 1);
        for t in [&a0, &a1, &b0, &c0] {
            m.insert(&l, &t.encode()).unwrap();
        }
        let ids: Vec<Hash> = m.select(10).iter().map(SignedTx::id).collect();
        // bob pays most among the heads; alice's high-fee nonce 1 must wait for her nonce 0,
        // which arrived before carol's equal fee.
        assert_eq!(ids, vec![b0.id(), a0.id(), a1.id(), c0.id()]);
        assert_eq!(m.select(2).len(), 2);
    }

    #[test]
    fn refuses_bad_transactions_with_their_reason() {
        let l = ledger();
        let mut m = Mempool::new(2);
        let mut bad_sig = transfer("alice", 0, 10_000, 1);
        bad_sig.body.fee += 1;
        assert!(matches!(
            m.insert(&l, &bad_sig.encode()),
            Err(MempoolError::Invalid(TxError::BadSignature { .. }))
        ));
        let too_high = transfer("alice", 5, 10_000, 1);
        assert!(matches!(
            m.insert(&l, &too_high.encode()),
            Err(MempoolError::Invalid(TxError::NonceTooHigh { .. }))
        ));
        let broke = transfer("alice", 0, 10_000, 1_000 * UNITS_PER_TOKEN);
        assert!(matches!(
            m.insert(&l, &broke.encode()),
            Err(MempoolError::Invalid(TxError::InsufficientBalance { .. }))
        ));
        assert!(matches!(m.insert(&l, b"\x01\x02"), Err(MempoolError::Invalid(TxError::Malformed(_)))));
        let a0 = transfer("alice", 0, 10_000, 1);
        let id = m.insert(&l, &a0.encode()).unwrap();
        assert_eq!(m.insert(&l, &a0.encode()).unwrap(), id, "resubmission is idempotent");
        let other0 = transfer("alice", 0, 20_000, 1);
        assert!(matches!(
            m.insert(&l, &other0.encode()),
            Err(MempoolError::NoncePending { nonce: 0, next: 1, .. })
        ));
        m.insert(&l, &transfer("alice", 1, 10_000, 1).encode()).unwrap();
        assert_eq!(m.insert(&l, &transfer("bob", 0, 10_000, 1).encode()), Err(MempoolError::Full { max: 2 }));
    }

    /// Issue 13: an account holding two fees queued a thousand transactions, which blocks then
    /// stored as rejected without payment. Now it queues what its balance pays for.
    #[test]
    fn a_sender_queues_only_what_its_balance_pays_for() {
        let mut l = Ledger::init(MemStore::new(), {
            let mut g = GenesisConfig::dev(&["alice"], 10 * UNITS_PER_TOKEN);
            g.accounts.push(crate::GenesisAccount {
                key: public_key(&dev_key("mallory")),
                balance: 2 * 10_000 + 2,
            });
            g
        })
        .unwrap();
        let mut m = Mempool::new(10_000);
        let accepted =
            (0..1_000).filter(|&n| m.insert(&l, &transfer("mallory", n, 10_000, 1).encode()).is_ok()).count();
        assert_eq!(accepted, 2);
        assert!(matches!(
            m.insert(&l, &transfer("mallory", 2, 10_000, 1).encode()),
            Err(MempoolError::Invalid(TxError::PendingSpendExceedsBalance { pending: 2, .. }))
        ));
        let txs = m.select(10_000);
        let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
        l.propose(txs, 1, public_key(&dev_key("v"))).unwrap();
        let out = l.commit().unwrap();
        assert!(out.receipts.iter().all(|r| r.is_applied()), "{:?}", out.receipts);
        m.after_block(&l, &ids);
        assert!(m.is_empty());
    }

    #[test]
    fn after_a_block_included_and_stale_transactions_leave() {
        let mut l = ledger();
        let mut m = Mempool::new(10);
        let a0 = transfer("alice", 0, 10_000, 1);
        let a1 = transfer("alice", 1, 10_000, 1);
        let b0 = transfer("bob", 0, 10_000, 1);
        for t in [&a0, &a1, &b0] {
            m.insert(&l, &t.encode()).unwrap();
        }
        // A block (from elsewhere) includes a0 and another bob transaction with nonce 0.
        let b0_other = transfer("bob", 0, 30_000, 2);
        l.propose(vec![a0.clone(), b0_other], 1, public_key(&dev_key("v"))).unwrap();
        l.commit().unwrap();
        assert_eq!(m.after_block(&l, &[a0.id()]), 1, "bob's nonce 0 is used");
        assert_eq!(m.len(), 1);
        assert!(m.contains(&a1.id()));
        assert_eq!(m.select(10), vec![a1]);
    }
}
