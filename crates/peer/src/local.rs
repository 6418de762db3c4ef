//! [`Chain`] over an in-process ledger: the real state machine on a `MemStore`, with blocks
//! produced on demand instead of on a clock, so tests run as fast as the ledger executes.

use crate::chain::{Chain, ChainError};
use client::{AccountInfo, MetagraphInfo};
use ledger::{
    ChainHead, GenesisConfig, Hash, Ledger, MemStore, Mempool, MempoolError, PublicKey, Receipt, SignedTx,
};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Most transactions waiting at once (the node's default `--mempool-size`).
const MEMPOOL_SIZE: usize = 10_000;

/// Milliseconds between the timestamps of consecutive local blocks (the ledger only needs
/// them not to decrease; a fixed step keeps runs reproducible).
const BLOCK_STEP_MS: u64 = 1000;

struct Inner {
    ledger: Ledger<MemStore>,
    /// Submitted, not yet in a block: the node's own mempool, so both admit by the same code.
    mempool: Mempool,
    /// Where included transactions went: id -> (height, receipt).
    included: HashMap<Hash, (u64, Receipt)>,
}

/// An in-process chain. `next_block` and `wait_for` produce a block when they need one (with
/// every queued transaction); [`LocalChain::produce_block`] produces one explicitly.
pub struct LocalChain {
    inner: Mutex<Inner>,
}

impl LocalChain {
    /// An in-process chain started from `genesis` (validated), with no blocks yet.
    pub fn new(genesis: GenesisConfig) -> Result<LocalChain, ChainError> {
        genesis.validate().map_err(ledger::LedgerError::from)?;
        let ledger = Ledger::init(MemStore::default(), genesis)?;
        let mempool = Mempool::new(MEMPOOL_SIZE);
        Ok(LocalChain { inner: Mutex::new(Inner { ledger, mempool, included: HashMap::new() }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the ledger between blocks (it only
        // changes in propose/commit, which complete or return an error).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Executes and commits one block with the mempool's selection (every waiting transaction
    /// up to the genesis' block limit); returns the new head.
    pub fn produce_block(&self) -> Result<ChainHead, ChainError> {
        let mut inner = self.lock();
        produce(&mut inner)
    }

    /// Runs `f` on the ledger (read-only), for tests that check state directly.
    pub fn with_ledger<T>(&self, f: impl FnOnce(&Ledger<MemStore>) -> T) -> T {
        f(&self.lock().ledger)
    }
}

fn produce(inner: &mut Inner) -> Result<ChainHead, ChainError> {
    let ts = inner.ledger.head().timestamp_ms + BLOCK_STEP_MS;
    let proposer = ledger::public_key(&ledger::dev_key("local-validator"));
    let Inner { ledger, mempool, .. } = inner;
    let (outcome, ids) = mempool.produce_block(ledger, ts, proposer)?;
    for (id, r) in ids.into_iter().zip(outcome.receipts) {
        inner.included.insert(id, (outcome.header.height, r));
    }
    Ok(inner.ledger.head())
}

impl Chain for LocalChain {
    async fn head(&self) -> Result<ChainHead, ChainError> {
        Ok(self.lock().ledger.head())
    }

    async fn difficulty(&self) -> Result<u64, ChainError> {
        Ok(self.lock().ledger.difficulty())
    }

    async fn next_block(&self, after: u64) -> Result<ChainHead, ChainError> {
        let mut inner = self.lock();
        while inner.ledger.head().height <= after {
            produce(&mut inner)?;
        }
        Ok(inner.ledger.head())
    }

    async fn genesis(&self) -> Result<GenesisConfig, ChainError> {
        Ok(self.lock().ledger.genesis().clone())
    }

    async fn metagraph(&self) -> Result<MetagraphInfo, ChainError> {
        Ok(MetagraphInfo::from(&self.lock().ledger.metagraph()))
    }

    async fn account(&self, key: &PublicKey) -> Result<AccountInfo, ChainError> {
        Ok(AccountInfo::new(*key, self.lock().ledger.account(key)))
    }

    async fn submit(&self, tx: &SignedTx) -> Result<Hash, ChainError> {
        let mut inner = self.lock();
        let Inner { ledger, mempool, .. } = &mut *inner;
        mempool.insert(ledger, &tx.encode()).map_err(|e| match e {
            MempoolError::Invalid(reason) => ChainError::Rejected(reason),
            other => ChainError::Mempool(other),
        })
    }

    async fn wait_for(&self, id: Hash) -> Result<(u64, Receipt), ChainError> {
        let mut inner = self.lock();
        if let Some(r) = inner.included.get(&id) {
            return Ok(r.clone());
        }
        // A block may hold fewer than the pool (the block limit): produce until it is in.
        while inner.mempool.contains(&id) {
            produce(&mut inner)?;
        }
        inner.included.get(&id).cloned().ok_or(ChainError::Timeout { id, waited: std::time::Duration::ZERO })
    }
}
