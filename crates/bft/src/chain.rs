//! One validator's copy of the chain: its ledger, its mempool, and what it has seen of the
//! engine (the latest notarized height, equivocation evidence). Shared between the
//! application task and whoever serves the chain (RPC, tests).

use crate::app::Evidence;
use crate::payload::{digest, Payload};
use crate::Digest;
use bytes::Bytes;
use commonware_codec::DecodeExt;
use ledger::{
    BlockOutcome, ChainHead, Hash, Ledger, LedgerError, Mempool, MempoolError, SignedTx, Store, StoreError,
    WriteBatch,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use thiserror::Error;

/// Why a finalized payload did not become a block.
#[derive(Debug, Error)]
pub enum ExecuteError {
    /// The ledger refused to execute the finalized payload as a block.
    #[error("block {height}: {source}")]
    Block {
        /// The block's height.
        height: u64,
        /// The ledger's reason.
        source: ledger::BlockError,
    },
    /// The ledger executed the block but could not commit it to its store.
    #[error("block {height}: {source}")]
    Ledger {
        /// The block's height.
        height: u64,
        /// The ledger's (store's) reason.
        source: LedgerError,
    },
}

/// Why a payload could not be rebuilt from the store (the store is damaged or failing: the
/// payload is not served, and a lagging validator asks another).
#[derive(Debug, Error)]
pub enum StoredPayloadError {
    /// The block store failed to read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger failed to read a stored block.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A payload index record of the wrong length (this many bytes).
    #[error("payload index record of {0} bytes, not 48")]
    Corrupt(usize),
    /// The index names a block height the store does not hold.
    #[error("the payload index names block {0}, which is not in the store")]
    MissingBlock(u64),
    /// The stored block at this height does not rebuild the payload the index names.
    #[error("block {0} rebuilds a payload of another digest than the index names")]
    Mismatch(u64),
}

/// The store's index of executed payloads: `x` (the ledger's external prefix) + `p` + payload
/// digest -> height (u64 BE), parent digest, proposer's timestamp (u64 BE). The block at that
/// height holds the rest (proposer, transactions); the timestamp is kept because the block's
/// may have been raised to its parent's (see [`Chain::execute`]).
const PAYLOAD_INDEX: [u8; 2] = [ledger::store::EXTERNAL_PREFIX, b'p'];

fn index_key(d: &Digest) -> Vec<u8> {
    let mut k = PAYLOAD_INDEX.to_vec();
    k.extend_from_slice(d.as_ref());
    k
}

/// One index record: `(height, parent, timestamp_ms)`.
fn index_record(v: &[u8]) -> Result<(u64, Digest, u64), StoredPayloadError> {
    let corrupt = || StoredPayloadError::Corrupt(v.len());
    if v.len() != 48 {
        return Err(corrupt());
    }
    let word = |s: &[u8]| u64::from_be_bytes(s.try_into().expect("8 bytes"));
    let parent = Digest::decode(Bytes::copy_from_slice(&v[8..40])).map_err(|_| corrupt())?;
    Ok((word(&v[..8]), parent, word(&v[40..])))
}

/// A ledger, its mempool and the engine's view of them. Lock order: ledger before mempool.
pub struct Chain<St: Store> {
    ledger: Mutex<Ledger<St>>,
    mempool: Mutex<Mempool>,
    /// The highest payload height the engine notarized (the latest block; final or not).
    notarized: AtomicU64,
    evidence: Mutex<Vec<Evidence>>,
    heads: commonware_utils::channel::watch::Sender<ChainHead>,
    on_commit: std::sync::OnceLock<OnCommit<St>>,
}

/// Called after each block this chain commits, with the ledger still locked (see
/// [`Chain::on_commit`]).
pub type OnCommit<St> = Box<dyn Fn(&BlockOutcome, &Ledger<St>) + Send + Sync>;

impl<St: Store> Chain<St> {
    /// The chain of `ledger` with a mempool of at most `mempool_size` transactions.
    pub fn new(ledger: Ledger<St>, mempool_size: usize) -> Chain<St> {
        let head = ledger.head();
        Chain {
            notarized: AtomicU64::new(head.height),
            ledger: Mutex::new(ledger),
            mempool: Mutex::new(Mempool::new(mempool_size)),
            evidence: Mutex::new(Vec::new()),
            heads: commonware_utils::channel::watch::channel(head).0,
            on_commit: std::sync::OnceLock::new(),
        }
    }

    /// Sets what runs after every committed block (once; later calls are ignored): a node
    /// announces the head, keeps its checkpoints and counts its metrics there.
    pub fn on_commit(&self, f: OnCommit<St>) {
        let _ = self.on_commit.set(f);
    }

    /// The ledger, even if a thread panicked while holding it (it is only changed by
    /// `propose`/`commit`, which leave it consistent or return an error).
    pub fn ledger(&self) -> MutexGuard<'_, Ledger<St>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mempool, even if a thread panicked while holding it.
    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last finalized (executed and committed) block.
    pub fn head(&self) -> ChainHead {
        self.ledger().head()
    }

    /// The latest block the engine notarized: at or above [`Chain::head`], and final only once
    /// the head reaches it.
    pub fn latest_height(&self) -> u64 {
        self.notarized.load(Ordering::Relaxed).max(self.head().height)
    }

    /// Every finalized head from now on (a slow reader sees the newest).
    pub fn subscribe(&self) -> commonware_utils::channel::watch::Receiver<ChainHead> {
        self.heads.subscribe()
    }

    /// Equivocations the engine reported, oldest first.
    pub fn evidence(&self) -> Vec<Evidence> {
        self.evidence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn record_evidence(&self, e: Evidence) {
        self.evidence.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    pub(crate) fn notarized(&self, height: u64) {
        self.notarized.fetch_max(height, Ordering::Relaxed);
    }

    pub(crate) fn genesis_hash(&self) -> Hash {
        self.ledger().genesis().hash()
    }

    /// The height of payload `d` if this chain executed it (from the store's index).
    pub(crate) fn executed_height(&self, d: &Digest) -> Result<Option<u64>, StoredPayloadError> {
        let ledger = self.ledger();
        let Some(v) = ledger.store().get(&index_key(d))? else { return Ok(None) };
        Ok(Some(index_record(&v)?.0))
    }

    /// Executed payload `d` rebuilt from its block in the store, with its encoding (checked to
    /// have digest `d`), or `None` if this chain never executed it.
    pub fn stored_payload(&self, d: &Digest) -> Result<Option<(Payload, Bytes)>, StoredPayloadError> {
        let ledger = self.ledger();
        let Some(v) = ledger.store().get(&index_key(d))? else { return Ok(None) };
        let (height, parent, timestamp_ms) = index_record(&v)?;
        let block = ledger.block(height)?.ok_or(StoredPayloadError::MissingBlock(height))?.block;
        drop(ledger);
        let p = Payload { parent, height, timestamp_ms, proposer: block.header.proposer, txs: block.txs };
        let bytes: Bytes = p.encode().into();
        if digest(&bytes) != *d {
            return Err(StoredPayloadError::Mismatch(height));
        }
        Ok(Some((p, bytes)))
    }

    /// `(max_tx_bytes, max_block_txs)` of the genesis.
    pub(crate) fn limits(&self) -> (usize, usize) {
        let ledger = self.ledger();
        let l = &ledger.genesis().limits;
        (l.max_tx_bytes as usize, l.max_block_txs as usize)
    }

    /// Admits an encoded transaction to the mempool by the ledger's rules: its id, and whether
    /// it is new here (a transaction already pending is admitted again, and not new).
    pub fn admit(&self, tx: &[u8]) -> Result<(Hash, bool), MempoolError> {
        let ledger = self.ledger();
        let mut mempool = self.mempool();
        let before = mempool.len();
        let id = mempool.insert(&ledger, tx)?;
        Ok((id, mempool.len() > before))
    }

    /// Up to `limit` pending transactions, in the mempool's block order.
    pub(crate) fn select(&self, limit: usize) -> Vec<SignedTx> {
        self.mempool().select(limit)
    }

    /// Executes a finalized payload as the next block and commits it. Its timestamp is raised
    /// to the parent's if the proposer's clock was behind (the ledger refuses time going
    /// back), so every final payload executes, the same way on every validator.
    /// The payload's digest `d` is indexed with the block (one atomic write), so the payload
    /// can be served from the store once it is dropped from memory.
    pub(crate) fn execute(&self, d: &Digest, p: &Payload) -> Result<BlockOutcome, ExecuteError> {
        let height = p.height;
        let mut ledger = self.ledger();
        let timestamp = p.timestamp_ms.max(ledger.head().timestamp_ms);
        let ids: Vec<Hash> = p.txs.iter().map(SignedTx::id).collect();
        ledger
            .propose(p.txs.clone(), timestamp, p.proposer)
            .map_err(|source| ExecuteError::Block { height, source })?;
        let mut index = WriteBatch::new();
        let mut record = Vec::with_capacity(48);
        record.extend_from_slice(&height.to_be_bytes());
        record.extend_from_slice(p.parent.as_ref());
        record.extend_from_slice(&p.timestamp_ms.to_be_bytes());
        index.put(index_key(d), record);
        let outcome = ledger.commit_with(index).map_err(|source| ExecuteError::Ledger { height, source })?;
        self.mempool().after_block(&ledger, &ids);
        if let Some(f) = self.on_commit.get() {
            f(&outcome, &ledger);
        }
        let head = ledger.head();
        drop(ledger);
        self.heads.send_replace(head);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::dev_transfer;
    use crate::payload::genesis_digest;
    use ledger::{dev_key, public_key, GenesisConfig, MemStore};

    /// Executes three payloads (the last with a timestamp behind its parent's, which the block
    /// raises); returns their digests and encodings.
    fn executed<St: Store>(chain: &Chain<St>) -> Vec<(Digest, Bytes)> {
        let mut parent = genesis_digest(&chain.genesis_hash());
        let mut out = Vec::new();
        for (height, timestamp_ms) in [(1, 1_000), (2, 2_000), (3, 1_500)] {
            let p = Payload {
                parent,
                height,
                timestamp_ms,
                proposer: public_key(&dev_key("validator-0")),
                txs: vec![dev_transfer(height - 1)],
            };
            let bytes: Bytes = p.encode().into();
            let d = digest(&bytes);
            chain.execute(&d, &p).expect("executes");
            out.push((d, bytes));
            parent = d;
        }
        out
    }

    #[test]
    fn executed_payloads_are_rebuilt_from_the_store_to_the_byte() {
        let chain = Chain::new(
            Ledger::init(MemStore::new(), GenesisConfig::dev(&["alice", "bob"], 1_000_000_000)).unwrap(),
            100,
        );
        let payloads = executed(&chain);
        assert_eq!(chain.ledger().block(3).unwrap().unwrap().block.header.timestamp_ms, 2_000, "raised");
        for (i, (d, bytes)) in payloads.iter().enumerate() {
            let (p, rebuilt) = chain.stored_payload(d).unwrap().expect("indexed");
            assert_eq!(&rebuilt, bytes);
            assert_eq!(p.height, i as u64 + 1);
            assert_eq!(chain.executed_height(d).unwrap(), Some(i as u64 + 1));
        }
        let unknown = digest(b"never proposed");
        assert!(chain.stored_payload(&unknown).unwrap().is_none());
        assert_eq!(chain.executed_height(&unknown).unwrap(), None);
    }

    #[test]
    fn a_damaged_index_is_an_error_not_a_wrong_payload() {
        let mut store = MemStore::new();
        let payloads = {
            let chain = Chain::new(
                Ledger::init(&mut store, GenesisConfig::dev(&["alice", "bob"], 1_000_000_000)).unwrap(),
                100,
            );
            executed(&chain)
        };
        let damage = |store: &mut MemStore, d: &Digest, record: Vec<u8>| {
            let mut b = WriteBatch::new();
            b.put(index_key(d), record);
            store.commit(b).unwrap();
        };
        let record = store.get(&index_key(&payloads[0].0)).unwrap().unwrap();
        damage(&mut store, &payloads[0].0, record[..47].to_vec());
        let mut other_height = record.clone();
        other_height[..8].copy_from_slice(&2u64.to_be_bytes());
        damage(&mut store, &payloads[1].0, other_height);
        let mut far = record;
        far[..8].copy_from_slice(&99u64.to_be_bytes());
        damage(&mut store, &payloads[2].0, far);
        let chain = Chain::new(Ledger::open(&mut store).unwrap(), 100);
        assert!(matches!(chain.stored_payload(&payloads[0].0), Err(StoredPayloadError::Corrupt(47))));
        assert!(matches!(chain.executed_height(&payloads[0].0), Err(StoredPayloadError::Corrupt(47))));
        assert!(matches!(chain.stored_payload(&payloads[1].0), Err(StoredPayloadError::Mismatch(2))));
        assert!(matches!(chain.stored_payload(&payloads[2].0), Err(StoredPayloadError::MissingBlock(99))));
    }
}
