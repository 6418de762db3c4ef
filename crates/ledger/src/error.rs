//! Why the ledger refused something, with what the caller needs to fix it.

use crate::store::StoreError;
use crate::tokens::Tokens;
use crate::tx::CallKind;
use crate::types::{Float, Hash, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a transaction was refused. Each variant says what was wrong and what would be accepted.
///
/// These cross the network (mempool answers, receipts over JSON-RPC) and are stored in receipts,
/// hence serde and borsh.
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(tag = "error", content = "details", rename_all = "snake_case")]
pub enum TxError {
    // --- authentication: a block containing such a transaction records it as rejected, no fee.
    #[error("transaction is {size} bytes, more than the limit of {max}: send fewer weights or split it")]
    Oversized { size: u64, max: u64 },
    #[error("transaction bytes do not decode: {0}")]
    Malformed(String),
    #[error("sender {0} is not a valid ed25519 public key")]
    BadPublicKey(PublicKey),
    #[error("signature does not verify for sender {sender} on chain {chain_id}: sign the body hash with the sender's key and this chain id")]
    BadSignature { sender: PublicKey, chain_id: String },
    #[error("nonce {got} was already used by {sender} (its next nonce is {expected}): replayed or duplicate transaction")]
    NonceReused { sender: PublicKey, expected: u64, got: u64 },
    #[error("nonce {got} is ahead of {sender}'s next nonce {expected}: send the missing transactions first")]
    NonceTooHigh { sender: PublicKey, expected: u64, got: u64 },
    #[error("fee {} is below the minimum {} for {kind}", Tokens::from(*.got), Tokens::from(*.min))]
    FeeTooLow { kind: CallKind, min: u64, got: u64 },
    #[error("sender {sender} cannot pay the fee: {} needed, balance {}", Tokens::from(*.fee), Tokens::from(*.balance))]
    CannotPayFee { sender: PublicKey, fee: u64, balance: u64 },

    // --- the call itself: the fee is charged and the nonce used, nothing else changes.
    #[error("{what} must be greater than zero")]
    ZeroAmount { what: String },
    #[error("insufficient balance: {} needed for {what} after the fee, {} available", Tokens::from(*.needed), Tokens::from(*.available))]
    InsufficientBalance { what: String, needed: u64, available: u64 },
    #[error("insufficient stake on {hotkey}: {} requested, {} staked", Tokens::from(*.needed), Tokens::from(*.available))]
    InsufficientStake { hotkey: PublicKey, needed: u64, available: u64 },
    #[error("hotkey {0} is not registered: register it first")]
    NotRegistered(PublicKey),
    #[error("hotkey {hotkey} is already registered as uid {uid}")]
    AlreadyRegistered { hotkey: PublicKey, uid: u16 },
    #[error("{sender} is not the coldkey of hotkey {hotkey} (its coldkey is {coldkey})")]
    NotOwner { sender: PublicKey, hotkey: PublicKey, coldkey: PublicKey },
    #[error("weights name {uids} uids but carry {values} values: give one value per uid")]
    WeightLengthMismatch { uids: u64, values: u64 },
    #[error("weights are empty: give at least one uid")]
    EmptyWeights,
    #[error("{len} weights in one row, more than the limit of {max}")]
    TooManyWeights { len: u64, max: u64 },
    #[error("uid {uid} is unknown: {}", known_uids(*.n))]
    UnknownUid { uid: u16, n: u64 },
    #[error("uid {uid} appears twice in the weights: give each uid once")]
    DuplicateUid { uid: u16 },
    #[error("weight on uid {uid} is {value}: weights must be finite and >= 0")]
    BadWeight { uid: u16, value: Float },
    #[error("weights row sums to {sum}, expected 1 +/- 1e-6: normalise it before sending")]
    NotNormalized { sum: Float },
    #[error("weights set at block {last}: the next set_weights is allowed at block {next_allowed}")]
    WeightsRateLimited { last: u64, next_allowed: u64 },
    #[error("weights change by {distance} (L2 norm of the normalised rows), more than the limit of {max}: move toward the new row in smaller steps")]
    WeightChangeTooLarge { distance: Float, max: Float },
    #[error("proof of work names block {block}, but only blocks {oldest}..={newest} are accepted: solve again over a recent block")]
    PowBlockOutOfWindow { block: u64, oldest: u64, newest: u64 },
    #[error("proof of work does not meet difficulty {difficulty}: seal {seal} is too large")]
    PowTooWeak { difficulty: u64, seal: Hash },
    #[error("the neuron table is full ({max_neurons}) and every neuron is within its immunity period of {immunity_period} blocks: try later")]
    TableFullAllImmune { max_neurons: u64, immunity_period: u64 },
    #[error("{limit} registrations per block already accepted in this block: try the next block")]
    RegistrationLimit { limit: u64 },
    #[error("endpoint rejected: {0}")]
    BadEndpoint(String),
    #[error("amount overflow in {0}")]
    Overflow(String),

    // --- refused by a mempool only (never in a block): appended last to keep borsh indices.
    #[error("{sender} has {pending} transactions pending that may spend {} of its balance {}; this one needs {} (fee and amount): wait until they are included", Tokens::from(*.pending_spend), Tokens::from(*.balance), Tokens::from(*.needed))]
    PendingSpendExceedsBalance {
        sender: PublicKey,
        pending: u64,
        pending_spend: u64,
        needed: u64,
        balance: u64,
    },
    #[error("{sender} has {pending} transactions pending and this one pays no fee: a free transaction (set_weights) is admitted only as its sender's next one, so it can be checked in full; wait until they are included")]
    FreeBehindPending { sender: PublicKey, pending: u64 },

    // --- commit-reveal weights (appended after the mempool's to keep borsh indices).
    #[error(
        "commit-reveal is off on this chain (genesis weights.commit_reveal): set weights with set_weights"
    )]
    CommitRevealDisabled,
    #[error("commit-reveal is on on this chain: commit a hash of the weights with commit_weights, then reveal them with reveal_weights")]
    CommitRevealRequired,
    #[error("hotkey {0} has no weights commitment to reveal: commit first")]
    NoWeightsCommit(PublicKey),
    #[error("the commitment of block {committed_at} may be revealed from block {earliest}: wait")]
    RevealTooEarly { committed_at: u64, earliest: u64 },
    #[error("the commitment of block {committed_at} had to be revealed by block {deadline}: commit again")]
    RevealTooLate { committed_at: u64, deadline: u64 },
    #[error("the revealed weights and salt hash to {revealed}, not to the commitment {committed}: reveal exactly the uids, values and salt committed to")]
    RevealMismatch { committed: Hash, revealed: Hash },

    // --- the call itself again (issue 16), appended after the mempool's to keep borsh indices.
    #[error(
        "model version 0x00..00 names no model: publish the hash of the parameters your axon answers with"
    )]
    UnversionedModel,
    #[error("model version {version} (step {step}) is already the one published, at block {published_at}: publish again when the model changes")]
    ModelVersionUnchanged { version: Hash, step: u64, published_at: u64 },

    // --- delegation and burn registration (issue 20), appended to keep borsh indices.
    #[error("{coldkey} has {} nominated on hotkey {hotkey}, less than the {} requested", Tokens::from(*.available), Tokens::from(*.needed))]
    InsufficientNomination { hotkey: PublicKey, coldkey: PublicKey, needed: u64, available: u64 },
    #[error("a nomination on {hotkey} would hold {}, below the minimum {}: nominate at least the minimum, or remove it all", Tokens::from(*.stake), Tokens::from(*.min))]
    NominationTooSmall { hotkey: PublicKey, stake: u64, min: u64 },
    #[error("hotkey {hotkey} already has the most nominators the chain allows ({max})")]
    TooManyNominators { hotkey: PublicKey, max: u64 },
    #[error("take {take}/65535 is above the chain's maximum {max}/65535")]
    TakeOutOfBounds { take: u16, max: u16 },

    // --- subnets (issue 20), appended to keep borsh indices.
    #[error("subnet {netuid} does not exist: {}", known_subnets(*.count))]
    UnknownSubnet { netuid: u16, count: u16 },
    #[error("{kind} does not name a network, so it cannot be sent to a subnet: send it without a netuid")]
    NotASubnetCall { kind: CallKind },
    #[error("creating a subnet burns {}, but {} is available after the fee", Tokens::from(*.cost), Tokens::from(*.available))]
    SubnetCostNotCovered { cost: u64, available: u64 },
    #[error("the chain already has the most subnets it allows ({max} besides netuid 0)")]
    SubnetLimit { max: u16 },
    #[error("subnet parameters refused: {0}")]
    BadSubnetParams(String),
    #[error("this chain pays emission lazily (genesis emission_mode), and subnets need per-epoch emission")]
    SubnetsNeedPerEpochEmission,
}

/// The netuids a chain with `count` subnets besides netuid 0 has, in words.
fn known_subnets(count: u16) -> String {
    match count {
        0 => "the chain has only netuid 0".into(),
        c => format!("the chain has netuids 0 to {c}"),
    }
}

/// The uids a network of `n` neurons has, in words.
fn known_uids(n: u64) -> String {
    match n {
        0 => "the network has no neurons yet".into(),
        1 => "the network has one neuron, uid 0".into(),
        n => format!("the network has {n} neurons, uids 0 to {}", n - 1),
    }
}

impl TxError {
    /// True for authentication failures: a transaction refused this way does not pay its fee and
    /// does not use its nonce (the sender may not have signed it, or cannot pay, or, for a
    /// `register`, did not do the work that stands for its payment).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            TxError::Oversized { .. }
                | TxError::Malformed(_)
                | TxError::BadPublicKey(_)
                | TxError::BadSignature { .. }
                | TxError::NonceReused { .. }
                | TxError::NonceTooHigh { .. }
                | TxError::FeeTooLow { .. }
                | TxError::CannotPayFee { .. }
                | TxError::PowBlockOutOfWindow { .. }
                | TxError::PowTooWeak { .. }
                | TxError::PendingSpendExceedsBalance { .. }
                | TxError::FreeBehindPending { .. }
                | TxError::UnknownSubnet { .. }
                | TxError::NotASubnetCall { .. }
        )
    }
}

/// Why a block cannot be executed. A block refused this way leaves the ledger unchanged.
#[derive(Debug, Error)]
pub enum BlockError {
    #[error("block height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("block parent {got} is not the head {expected}")]
    WrongParent { expected: Hash, got: Hash },
    #[error("block timestamp {got} ms is before its parent's {parent} ms")]
    TimestampDecreasing { parent: u64, got: u64 },
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTransactions { count: u64, max: u64 },
    #[error("transactions root {got} does not match the transactions, which give {computed}")]
    TxRootMismatch { computed: Hash, got: Hash },
    #[error("state root {got} in the header differs from the executed state's {computed}")]
    StateRootMismatch { computed: Hash, got: Hash },
    #[error("block {0} is executed but neither committed nor discarded: call commit or discard first")]
    Pending(u64),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Errors of the ledger as a whole: storage, corrupt records, misuse of the execute/commit cycle.
#[derive(Debug, Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Genesis(#[from] crate::genesis::GenesisError),
    #[error("the store holds no chain: initialise it from a genesis configuration")]
    NotInitialised,
    #[error("the store already holds a chain (genesis {0}); open it instead")]
    AlreadyInitialised(Hash),
    #[error("the store holds the chain of genesis {stored}, not the given genesis {given}: use another data directory or the same genesis file")]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("no executed block is waiting to be committed")]
    NothingPending,
    #[error("a block is executed but not committed: commit or discard it first")]
    BlockPending,
    #[error("record key {0} is not under the ledger's external prefix 'x': it would write into the ledger's own tables")]
    NotExternal(String),
    #[error("subnet {netuid} does not exist: {}", known_subnets(*.count))]
    UnknownSubnet { netuid: u16, count: u16 },
}

impl TxError {
    /// One refusal of every kind, with `k` wherever a variant names a key: what the tests
    /// round-trip and what the shared vectors (`docs/vectors/transactions.json`) list, so a
    /// new variant is added once and reaches both.
    pub fn one_of_each(k: PublicKey) -> Vec<TxError> {
        vec![
            TxError::Oversized { size: 70_000, max: 65_536 },
            TxError::Malformed("unexpected end of input".into()),
            TxError::BadPublicKey(k),
            TxError::BadSignature { sender: k, chain_id: "agora-dev".into() },
            TxError::NonceReused { sender: k, expected: 2, got: 1 },
            TxError::NonceTooHigh { sender: k, expected: 2, got: 3 },
            TxError::FeeTooLow { kind: CallKind::SetWeights, min: 10_000, got: 1 },
            TxError::CannotPayFee { sender: k, fee: 10_000, balance: 5 },
            TxError::ZeroAmount { what: "transfer".into() },
            TxError::InsufficientBalance { what: "stake".into(), needed: 2, available: 1 },
            TxError::InsufficientStake { hotkey: k, needed: 2, available: 1 },
            TxError::NotRegistered(k),
            TxError::AlreadyRegistered { hotkey: k, uid: 3 },
            TxError::NotOwner { sender: k, hotkey: k, coldkey: k },
            TxError::WeightLengthMismatch { uids: 1, values: 2 },
            TxError::EmptyWeights,
            TxError::TooManyWeights { len: 300, max: 256 },
            TxError::UnknownUid { uid: 9, n: 4 },
            TxError::DuplicateUid { uid: 1 },
            TxError::BadWeight { uid: 1, value: Float(-1.0) },
            TxError::NotNormalized { sum: Float(0.5) },
            TxError::WeightsRateLimited { last: 10, next_allowed: 15 },
            TxError::WeightChangeTooLarge { distance: Float(1.5), max: Float(1.0) },
            TxError::PowBlockOutOfWindow { block: 1, oldest: 2, newest: 3 },
            TxError::PowTooWeak { difficulty: 5, seal: Hash([1; 32]) },
            TxError::TableFullAllImmune { max_neurons: 4, immunity_period: 10 },
            TxError::RegistrationLimit { limit: 3 },
            TxError::BadEndpoint("port 0".into()),
            TxError::Overflow("stake".into()),
            TxError::PendingSpendExceedsBalance {
                sender: k,
                pending: 2,
                pending_spend: 20,
                needed: 10,
                balance: 25,
            },
            TxError::FreeBehindPending { sender: k, pending: 1 },
            TxError::CommitRevealDisabled,
            TxError::CommitRevealRequired,
            TxError::NoWeightsCommit(k),
            TxError::RevealTooEarly { committed_at: 10, earliest: 13 },
            TxError::RevealTooLate { committed_at: 10, deadline: 14 },
            TxError::RevealMismatch { committed: Hash([1; 32]), revealed: Hash([2; 32]) },
            TxError::UnversionedModel,
            TxError::ModelVersionUnchanged { version: Hash([2; 32]), step: 40, published_at: 17 },
            TxError::InsufficientNomination { hotkey: k, coldkey: k, needed: 5, available: 4 },
            TxError::NominationTooSmall { hotkey: k, stake: 3, min: 100 },
            TxError::TooManyNominators { hotkey: k, max: 64 },
            TxError::TakeOutOfBounds { take: 20_000, max: 11_796 },
            TxError::UnknownSubnet { netuid: 7, count: 2 },
            TxError::NotASubnetCall { kind: CallKind::Transfer },
            TxError::SubnetCostNotCovered { cost: 100, available: 5 },
            TxError::SubnetLimit { max: 32 },
            TxError::BadSubnetParams("genesis field tempo = 0: must be at least 1 block".into()),
            TxError::SubnetsNeedPerEpochEmission,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_json_and_borsh() {
        for e in TxError::one_of_each(PublicKey([7; 32])) {
            let json = serde_json::to_string(&e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
            assert_eq!(serde_json::from_str::<TxError>(&json).unwrap(), e, "{json}");
            let bytes = borsh::to_vec(&e).unwrap();
            assert_eq!(borsh::from_slice::<TxError>(&bytes).unwrap(), e);
            assert!(!e.to_string().is_empty());
        }
        let json = serde_json::to_string(&TxError::UnknownUid { uid: 9, n: 4 }).unwrap();
        assert_eq!(json, r#"{"error":"unknown_uid","details":{"uid":9,"n":4}}"#);
    }
}
