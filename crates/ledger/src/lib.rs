//! Agora's chain state and its transition function.
//!
//! This crate owns the digital ledger of the papers as a pure state machine: accounts (ed25519
//! public key -> balance in integer base units, nonce), the neuron table (hotkey, coldkey,
//! stake, endpoint, registration block, last weights block, lazy-emission bookkeeping, the
//! nominations on its hotkey and its owner's take), the
//! weight matrix W as normalised integer rows, the mechanism's bonds and scaling vector, the
//! signed transactions and their validation, fees, emission (per epoch or lazy), blocks,
//! receipts, and the state root. It runs the incentive mechanism from the `mechanism` crate
//! and never re-implements its maths.
//!
//! It assumes nothing about networking, consensus or storage technology: blocks come in through
//! [`Ledger::propose`] / [`Ledger::execute_block`] and leave through [`Ledger::commit`], which
//! writes one atomic batch to a [`Store`] (an in-memory [`MemStore`] here; the node supplies
//! one over an embedded database). Time enters only as block timestamps and the ledger draws no
//! randomness, so the state root is a function of genesis and the blocks alone, on every
//! machine and for every thread count.
//!
//! Guarantees, each tested: total issuance = genesis + minted - burned = sum of balances and
//! stakes after every block, a hotkey's nominations never exceeding its stake; an epoch mints exactly what the schedule allows (largest
//! remainder, ties to the lower uid); a transaction that fails authentication changes nothing,
//! one that fails its call rules changes only its fee and nonce; replaying the same blocks into
//! a fresh store reproduces every root; a sender's queue admitted by
//! [`Ledger::check_admission`] pays every fee when its block comes; a store whose records do not
//! give the head's root, issuance or block links fails [`Ledger::check_integrity`].
//!
//! Where to start: [`GenesisConfig`] (what a chain is), [`Call`] / [`TxBody::sign`] (what a
//! wallet sends), [`Ledger`] (what a node runs), [`TxError`] (why something was refused).

pub mod apportion;
pub mod block;
pub mod commit_reveal;
pub mod delegation;
mod epoch;
pub mod error;
mod exec;
pub mod genesis;
pub mod inflation;
pub mod integrity;
mod ledger;
pub mod mempool;
pub mod merkle;
pub mod pow;
pub mod ss58;
pub mod state;
pub mod store;
pub mod subnet;
pub mod tokens;
pub mod tx;
pub mod types;
pub mod verify;

pub use apportion::apportion;
pub use block::{Block, BlockHeader, BlockOutcome, EpochReport, Receipt, StoredBlock, TxStatus};
pub use commit_reveal::{commitment, CommitRevealConfig, WeightsCommit};
pub use delegation::{DelegationConfig, TAKE_SCALE};
pub use epoch::EpochInputs;
pub use error::{BlockError, LedgerError, TxError};
pub use exec::{check_weight_row, WEIGHT_SUM_TOLERANCE};
pub use genesis::{
    dev_key, public_key, EmissionMode, FeeSchedule, GenesisAccount, GenesisConfig, GenesisError,
    GenesisNeuron, GenesisValidator, Limits, RegistrationConfig, WeightsConfig,
};
pub use inflation::AdaptiveInflation;
pub use integrity::{state_records, stored_block, IntegrityError};
pub use ledger::{ChainHead, Ledger, Metagraph};
pub use mempool::{Mempool, MempoolError};
pub use state::{Globals, Issuance, NetGlobals, State, SubnetState};
pub use store::{MemStore, Store, StoreError, WriteBatch};
pub use subnet::{SubnetInfo, SubnetParams, SubnetsConfig, ROOT_NETUID};
pub use tokens::{Tokens, TokensError};
pub use tx::{Call, CallKind, PreparedTx, SignedTx, TxBody};
pub use types::{
    Account, Endpoint, Float, Hash, Ip, Modality, Neuron, NeuronScores, Nomination, PendingTake, Protocol,
    PublicKey, PublishedModel, Salt, SignatureBytes, WeightRow, UNITS_PER_TOKEN, WEIGHT_SCALE,
};

/// Re-exported so wallets and the node sign with the same key type.
pub use ed25519_dalek::SigningKey;
pub use mechanism;
