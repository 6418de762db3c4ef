//! The one boundary between a peer and the ledger.

use client::{AccountInfo, ClientError, MetagraphInfo};
use ledger::{CallKind, ChainHead, GenesisConfig, Hash, PublicKey, Receipt, SignedTx, TxError};
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// Why a chain operation failed.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The chain refused the transaction before including it (bad nonce, unpayable fee, ...).
    #[error("transaction refused at submission: {0}")]
    Rejected(TxError),
    /// A block included the transaction but its call failed (fee paid) or it was rejected there.
    #[error("{kind} included in block {height} but not applied: {reason}")]
    NotApplied {
        /// Which call it was (register, set_weights, serve_axon, ...).
        kind: CallKind,
        /// The block that included it.
        height: u64,
        /// Why its call failed.
        reason: TxError,
    },
    /// The node could not be reached or answered with an error.
    #[error("node: {0}")]
    Client(ClientError),
    /// The in-process chain's mempool refused a valid transaction (full, or another one with
    /// its nonce is pending); a node says the same with RPC codes `MEMPOOL_FULL` and
    /// `NONCE_PENDING`, which arrive as [`ChainError::Client`].
    #[error("mempool: {0}")]
    Mempool(ledger::MempoolError),
    /// The in-process ledger failed (store or block error).
    #[error("in-process ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    /// The in-process chain could not make a block of what its mempool held.
    #[error("in-process block: {0}")]
    Block(#[from] ledger::BlockError),
    /// A transaction submitted here was neither pending nor included after the wait.
    #[error("transaction {id} not included after {waited:?}")]
    Timeout {
        /// The transaction's hash.
        id: Hash,
        /// How long the peer waited for a block to include it.
        waited: Duration,
    },
    /// An operation that needs a registered hotkey, for a hotkey that is not.
    #[error("hotkey {0} is not registered")]
    NotRegistered(PublicKey),
    /// The proof-of-work search gave up (the head kept moving past the window, or a limit).
    #[error("proof of work not found after {tries} hashes")]
    PowExhausted {
        /// Hashes tried before giving up.
        tries: u64,
    },
    /// The subnet a peer was asked to join cannot be joined (its parameters do not give a
    /// configuration under this chain's genesis).
    #[error("subnet {netuid}: {reason}")]
    BadSubnet {
        /// The subnet asked for.
        netuid: u16,
        /// Why its configuration is refused.
        reason: String,
    },
}

impl From<ClientError> for ChainError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Rejected(reason) => ChainError::Rejected(reason),
            ClientError::Timeout { id, waited } => ChainError::Timeout { id, waited },
            other => ChainError::Client(other),
        }
    }
}

/// A ledger as a peer sees it.
///
/// Contract:
/// - Queries (`head`, `genesis`, `metagraph`, `account`) read the last committed block; they are
///   stateless and may run concurrently and out of order. Two calls may see different blocks.
/// - `next_block(after)` resolves once the committed head is above `after` and returns that
///   head; it never returns a head at or below `after`. A chain that produces blocks on a clock
///   waits for one; an on-demand chain ([`crate::LocalChain`]) produces one.
/// - `submit` checks the transaction against the current state and queues it; a refusal is
///   [`ChainError::Rejected`] with the ledger's reason (or the mempool's refusal: full, nonce
///   already pending) and nothing is queued. Transactions of
///   one sender must be submitted in nonce order (the ledger's rule).
/// - `wait_for(id)` resolves with the height and receipt of the block that included `id`
///   (whatever its status), or [`ChainError::Timeout`].
pub trait Chain: Send + Sync {
    /// The last committed block.
    fn head(&self) -> impl Future<Output = Result<ChainHead, ChainError>> + Send;

    /// Waits for (or, on demand, produces) a block above `after`.
    fn next_block(&self, after: u64) -> impl Future<Output = Result<ChainHead, ChainError>> + Send;

    /// The chain's genesis configuration (chain id, fees, rate limits, mechanism).
    fn genesis(&self) -> impl Future<Output = Result<GenesisConfig, ChainError>> + Send;

    /// The metagraph at the head.
    fn metagraph(&self) -> impl Future<Output = Result<MetagraphInfo, ChainError>> + Send;

    /// The proof-of-work difficulty a `register` must meet now.
    fn difficulty(&self) -> impl Future<Output = Result<u64, ChainError>> + Send;

    /// Balance and next nonce of `key` (zero for a key never seen).
    fn account(&self, key: &PublicKey) -> impl Future<Output = Result<AccountInfo, ChainError>> + Send;

    /// Queues a signed transaction; returns its id.
    fn submit(&self, tx: &SignedTx) -> impl Future<Output = Result<Hash, ChainError>> + Send;

    /// Waits for the block that includes `id`.
    fn wait_for(&self, id: Hash) -> impl Future<Output = Result<(u64, Receipt), ChainError>> + Send;

    /// `submit` then `wait_for`.
    fn submit_and_wait(
        &self,
        tx: &SignedTx,
    ) -> impl Future<Output = Result<(u64, Receipt), ChainError>> + Send {
        async move {
            let id = self.submit(tx).await?;
            self.wait_for(id).await
        }
    }
}
