//! One validator's copy of the chain: its ledger, its mempool, and what it has seen of the
//! engine (the latest notarized height, equivocation evidence). Shared between the
//! application task and whoever serves the chain (RPC, tests).

use crate::app::Evidence;
use crate::payload::Payload;
use ledger::{BlockOutcome, ChainHead, Hash, Ledger, LedgerError, Mempool, MempoolError, SignedTx, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use thiserror::Error;

/// Why a finalized payload did not become a block.
#[derive(Debug, Error)]
pub enum ExecuteError {
    #[error("block {height}: {source}")]
    Block { height: u64, source: ledger::BlockError },
    #[error("block {height}: {source}")]
    Ledger { height: u64, source: LedgerError },
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
    pub(crate) fn execute(&self, p: &Payload) -> Result<BlockOutcome, ExecuteError> {
        let height = p.height;
        let mut ledger = self.ledger();
        let timestamp = p.timestamp_ms.max(ledger.head().timestamp_ms);
        let ids: Vec<Hash> = p.txs.iter().map(SignedTx::id).collect();
        ledger
            .propose(p.txs.clone(), timestamp, p.proposer)
            .map_err(|source| ExecuteError::Block { height, source })?;
        let outcome = ledger.commit().map_err(|source| ExecuteError::Ledger { height, source })?;
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
