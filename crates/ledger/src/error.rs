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
    /// The encoded transaction exceeds the chain's `limits.max_tx_bytes`.
    #[error("transaction is {size} bytes, more than the limit of {max}: send fewer weights or split it")]
    Oversized {
        /// Encoded size of the transaction, in bytes.
        size: u64,
        /// The chain's limit, in bytes.
        max: u64,
    },
    /// The bytes are not a borsh-encoded [`crate::SignedTx`]; carries the decoder's message.
    #[error("transaction bytes do not decode: {0}")]
    Malformed(String),
    /// The sender's 32 bytes are not a point on the ed25519 curve, so nothing it signs verifies.
    #[error("sender {0} is not a valid ed25519 public key")]
    BadPublicKey(PublicKey),
    /// The signature is not the sender's over the body hash and this chain's id (a transaction
    /// signed for another chain lands here, which is what stops cross-chain replay).
    #[error("signature does not verify for sender {sender} on chain {chain_id}: sign the body hash with the sender's key and this chain id")]
    BadSignature {
        /// The account that claims to have signed.
        sender: PublicKey,
        /// The chain id a valid signature must cover.
        chain_id: String,
    },
    /// The nonce was already consumed by an earlier transaction of the sender.
    #[error("nonce {got} was already used by {sender} (its next nonce is {expected}): replayed or duplicate transaction")]
    NonceReused {
        /// The account whose nonce it is.
        sender: PublicKey,
        /// The account's next unused nonce.
        expected: u64,
        /// The nonce the transaction carries.
        got: u64,
    },
    /// The nonce skips ahead of the sender's next one: transactions execute in nonce order.
    #[error("nonce {got} is ahead of {sender}'s next nonce {expected}: send the missing transactions first")]
    NonceTooHigh {
        /// The account whose nonce it is.
        sender: PublicKey,
        /// The account's next unused nonce.
        expected: u64,
        /// The nonce the transaction carries.
        got: u64,
    },
    /// The offered fee is below the genesis fee schedule's minimum for this kind of call.
    #[error("fee {} is below the minimum {} for {kind}", Tokens::from(*.got), Tokens::from(*.min))]
    FeeTooLow {
        /// The kind of call, which sets the minimum.
        kind: CallKind,
        /// The minimum fee, in base units.
        min: u64,
        /// The offered fee, in base units.
        got: u64,
    },
    /// The sender's free balance does not cover the fee it offers.
    #[error("sender {sender} cannot pay the fee: {} needed, balance {}", Tokens::from(*.fee), Tokens::from(*.balance))]
    CannotPayFee {
        /// The paying account.
        sender: PublicKey,
        /// The offered fee, in base units.
        fee: u64,
        /// The account's free balance, in base units.
        balance: u64,
    },

    // --- the call itself: the fee is charged and the nonce used, nothing else changes.
    /// A transfer, stake or unstake of zero.
    #[error("{what} must be greater than zero")]
    ZeroAmount {
        /// Which amount, in words ("transfer amount").
        what: String,
    },
    /// The balance left after the fee does not cover what the call spends.
    #[error("insufficient balance: {} needed for {what} after the fee, {} available", Tokens::from(*.needed), Tokens::from(*.available))]
    InsufficientBalance {
        /// What the tokens were for, in words ("the stake", "the registration burn").
        what: String,
        /// Base units the call needs.
        needed: u64,
        /// Base units left after the fee.
        available: u64,
    },
    /// An owner's unstake asks for more than its own stake on the hotkey (its nominators'
    /// stake is theirs to remove).
    #[error("insufficient stake on {hotkey}: {} requested, {} staked", Tokens::from(*.needed), Tokens::from(*.available))]
    InsufficientStake {
        /// The neuron's hotkey.
        hotkey: PublicKey,
        /// Base units requested.
        needed: u64,
        /// Base units staked.
        available: u64,
    },
    /// The call needs a neuron, and this hotkey holds no uid on the network.
    #[error("hotkey {0} is not registered: register it first")]
    NotRegistered(PublicKey),
    /// A `register` for a hotkey that already holds a uid on this network.
    #[error("hotkey {hotkey} is already registered as uid {uid}")]
    AlreadyRegistered {
        /// The hotkey sent.
        hotkey: PublicKey,
        /// The uid it already holds.
        uid: u16,
    },
    /// A call only a hotkey's coldkey (its owner) may make, such as setting its take.
    #[error("{sender} is not the coldkey of hotkey {hotkey} (its coldkey is {coldkey})")]
    NotOwner {
        /// The account that signed.
        sender: PublicKey,
        /// The neuron's hotkey.
        hotkey: PublicKey,
        /// The coldkey that owns the hotkey.
        coldkey: PublicKey,
    },
    /// A weights row's uid and value lists differ in length.
    #[error("weights name {uids} uids but carry {values} values: give one value per uid")]
    WeightLengthMismatch {
        /// Number of uids.
        uids: u64,
        /// Number of values.
        values: u64,
    },
    /// A weights row with no entry: a row of W must sum to 1.
    #[error("weights are empty: give at least one uid")]
    EmptyWeights,
    /// A weights row with more entries than the genesis `weights.max_len`.
    #[error("{len} weights in one row, more than the limit of {max}")]
    TooManyWeights {
        /// Entries in the row.
        len: u64,
        /// The most a row may have.
        max: u64,
    },
    /// A weight names a uid outside the network's neuron table.
    #[error("uid {uid} is unknown: {}", known_uids(*.n))]
    UnknownUid {
        /// The uid named.
        uid: u16,
        /// Number of neurons on the network (valid uids are `0..n`).
        n: u64,
    },
    /// A weights row names the same uid twice.
    #[error("uid {uid} appears twice in the weights: give each uid once")]
    DuplicateUid {
        /// The repeated uid.
        uid: u16,
    },
    /// A weight is negative, NaN or infinite.
    #[error("weight on uid {uid} is {value}: weights must be finite and >= 0")]
    BadWeight {
        /// The uid the weight is on.
        uid: u16,
        /// The value sent.
        value: Float,
    },
    /// A weights row does not sum to 1 (within 1e-6), as a row of W must.
    #[error("weights row sums to {sum}, expected 1 +/- 1e-6: normalise it before sending")]
    NotNormalized {
        /// The row's sum.
        sum: Float,
    },
    /// A neuron sets or commits weights again before the network's weights rate limit has
    /// passed since its last row (or commitment).
    #[error("weights set at block {last}: the next set_weights is allowed at block {next_allowed}")]
    WeightsRateLimited {
        /// Height of the neuron's last accepted row or commitment.
        last: u64,
        /// First height at which new weights are accepted.
        next_allowed: u64,
    },
    /// The new row moves too far from the neuron's current one in one step (the genesis
    /// `weights.max_change`: the intermodel paper's bounded change, `||dW_i||_2 < epsilon`).
    #[error("weights change by {distance} (L2 norm of the normalised rows), more than the limit of {max}: move toward the new row in smaller steps")]
    WeightChangeTooLarge {
        /// L2 distance between the old and new normalised rows.
        distance: Float,
        /// The largest distance allowed.
        max: Float,
    },
    /// A registration's proof of work is over a block outside the accepted recent window, so
    /// work cannot be done long in advance.
    #[error("proof of work names block {block}, but only blocks {oldest}..={newest} are accepted: solve again over a recent block")]
    PowBlockOutOfWindow {
        /// Height the work names.
        block: u64,
        /// Oldest height accepted.
        oldest: u64,
        /// Newest height accepted.
        newest: u64,
    },
    /// A registration's seal does not meet the network's current difficulty
    /// (`seal * difficulty < 2^256`, see [`crate::pow`]).
    #[error("proof of work does not meet difficulty {difficulty}: seal {seal} is too large")]
    PowTooWeak {
        /// The network's registration difficulty.
        difficulty: u64,
        /// The seal the work produced.
        seal: Hash,
    },
    /// A registration on a full table finds no neuron to replace: every one is still immune.
    #[error("the neuron table is full ({max_neurons}) and every neuron is within its immunity period of {immunity_period} blocks: try later")]
    TableFullAllImmune {
        /// The network's table size.
        max_neurons: u64,
        /// Blocks a new neuron is protected from replacement.
        immunity_period: u64,
    },
    /// The block already holds the genesis `registration.max_per_block` registrations
    /// (counted over every subnet).
    #[error("{limit} registrations per block already accepted in this block: try the next block")]
    RegistrationLimit {
        /// Registrations allowed per block.
        limit: u64,
    },
    /// An endpoint (axon address) the chain refuses; carries the reason.
    #[error("endpoint rejected: {0}")]
    BadEndpoint(String),
    /// An amount would overflow 64 bits; carries which one.
    #[error("amount overflow in {0}")]
    Overflow(String),

    // --- refused by a mempool only (never in a block): appended last to keep borsh indices.
    /// The sender's queued transactions plus this one could spend more than its balance, so
    /// the mempool cannot promise each will pay its fee.
    #[error("{sender} has {pending} transactions pending that may spend {} of its balance {}; this one needs {} (fee and amount): wait until they are included", Tokens::from(*.pending_spend), Tokens::from(*.balance), Tokens::from(*.needed))]
    PendingSpendExceedsBalance {
        /// The account.
        sender: PublicKey,
        /// Its transactions already in the mempool.
        pending: u64,
        /// The most those may spend (fees and amounts), in base units.
        pending_spend: u64,
        /// What this one may spend, in base units.
        needed: u64,
        /// The account's balance, in base units.
        balance: u64,
    },
    /// A fee-free transaction queued behind others of its sender, where it cannot be checked.
    #[error("{sender} has {pending} transactions pending and this one pays no fee: a free transaction (set_weights) is admitted only as its sender's next one, so it can be checked in full; wait until they are included")]
    FreeBehindPending {
        /// The account.
        sender: PublicKey,
        /// Its transactions already in the mempool.
        pending: u64,
    },

    // --- commit-reveal weights (appended after the mempool's to keep borsh indices).
    /// A commit or reveal on a network that takes weights directly.
    #[error(
        "commit-reveal is off on this chain (genesis weights.commit_reveal): set weights with set_weights"
    )]
    CommitRevealDisabled,
    /// A `set_weights` on a network where weights must be committed, then revealed, so that
    /// validators cannot copy each other's weights.
    #[error("commit-reveal is on on this chain: commit a hash of the weights with commit_weights, then reveal them with reveal_weights")]
    CommitRevealRequired,
    /// A reveal from a hotkey with no pending commitment.
    #[error("hotkey {0} has no weights commitment to reveal: commit first")]
    NoWeightsCommit(PublicKey),
    /// A reveal before the commitment's reveal window opens.
    #[error("the commitment of block {committed_at} may be revealed from block {earliest}: wait")]
    RevealTooEarly {
        /// Height of the commitment.
        committed_at: u64,
        /// First height a reveal is accepted.
        earliest: u64,
    },
    /// A reveal after the commitment's window closed.
    #[error("the commitment of block {committed_at} had to be revealed by block {deadline}: commit again")]
    RevealTooLate {
        /// Height of the commitment.
        committed_at: u64,
        /// Last height a reveal was accepted.
        deadline: u64,
    },
    /// The revealed weights and salt are not what was committed to.
    #[error("the revealed weights and salt hash to {revealed}, not to the commitment {committed}: reveal exactly the uids, values and salt committed to")]
    RevealMismatch {
        /// The stored commitment.
        committed: Hash,
        /// The hash of what was revealed.
        revealed: Hash,
    },

    // --- the call itself again (issue 16), appended after the mempool's to keep borsh indices.
    /// A published model version of all zeros, which names no model.
    #[error(
        "model version 0x00..00 names no model: publish the hash of the parameters your axon answers with"
    )]
    UnversionedModel,
    /// The model published is the one already on chain.
    #[error("model version {version} (step {step}) is already the one published, at block {published_at}: publish again when the model changes")]
    ModelVersionUnchanged {
        /// Hash of the model's parameters.
        version: Hash,
        /// Training step it names.
        step: u64,
        /// Height it was published at.
        published_at: u64,
    },

    // --- delegation and burn registration (issue 20), appended to keep borsh indices.
    /// An undelegation asks for more than the nominator has on the hotkey.
    #[error("{coldkey} has {} nominated on hotkey {hotkey}, less than the {} requested", Tokens::from(*.available), Tokens::from(*.needed))]
    InsufficientNomination {
        /// The delegate's hotkey.
        hotkey: PublicKey,
        /// The nominator.
        coldkey: PublicKey,
        /// Base units requested.
        needed: u64,
        /// Base units nominated.
        available: u64,
    },
    /// A nomination would be left below the chain's minimum (dust nominations are refused).
    #[error("a nomination on {hotkey} would hold {}, below the minimum {}: nominate at least the minimum, or remove it all", Tokens::from(*.stake), Tokens::from(*.min))]
    NominationTooSmall {
        /// The delegate's hotkey.
        hotkey: PublicKey,
        /// What the nomination would hold, in base units.
        stake: u64,
        /// The minimum, in base units.
        min: u64,
    },
    /// The hotkey already has the chain's maximum number of nominators.
    #[error("hotkey {hotkey} already has the most nominators the chain allows ({max})")]
    TooManyNominators {
        /// The delegate's hotkey.
        hotkey: PublicKey,
        /// The limit.
        max: u64,
    },
    /// A take (the share of what is paid to a hotkey's stake that its owner keeps before the
    /// rest is split pro rata) above the genesis `delegation.max_take`.
    #[error("take {take}/65535 is above the chain's maximum {max}/65535")]
    TakeOutOfBounds {
        /// The take asked, in 65,535ths.
        take: u16,
        /// The maximum, in 65,535ths.
        max: u16,
    },

    // --- subnets (issue 20), appended to keep borsh indices.
    /// A call names a netuid the chain does not have.
    #[error("subnet {netuid} does not exist: {}", known_subnets(*.count))]
    UnknownSubnet {
        /// The netuid named.
        netuid: u16,
        /// Subnets besides netuid 0 (valid netuids are `0..=count`).
        count: u16,
    },
    /// A call wrapped for a subnet that acts on accounts, not on a network (a transfer).
    #[error("{kind} does not name a network, so it cannot be sent to a subnet: send it without a netuid")]
    NotASubnetCall {
        /// The wrapped call's kind.
        kind: CallKind,
    },
    /// The balance after the fee does not cover the subnet creation burn.
    #[error("creating a subnet burns {}, but {} is available after the fee", Tokens::from(*.cost), Tokens::from(*.available))]
    SubnetCostNotCovered {
        /// The burn, in base units.
        cost: u64,
        /// Balance after the fee, in base units.
        available: u64,
    },
    /// The chain already has the most subnets its genesis allows.
    #[error("the chain already has the most subnets it allows ({max} besides netuid 0)")]
    SubnetLimit {
        /// Subnets allowed besides netuid 0.
        max: u16,
    },
    /// A new subnet's parameters fail the checks a genesis's do; carries the reason.
    #[error("subnet parameters refused: {0}")]
    BadSubnetParams(String),
    /// `create_subnet` on a chain with lazy emission: subnets split emission per epoch.
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
    /// The block is not at the height after the head.
    #[error("block height {got}, expected {expected}")]
    WrongHeight {
        /// The head's height plus one.
        expected: u64,
        /// The header's height.
        got: u64,
    },
    /// The block does not extend the head.
    #[error("block parent {got} is not the head {expected}")]
    WrongParent {
        /// The head's hash.
        expected: Hash,
        /// The header's parent hash.
        got: Hash,
    },
    /// The block's timestamp is before its parent's: chain time never goes back.
    #[error("block timestamp {got} ms is before its parent's {parent} ms")]
    TimestampDecreasing {
        /// The parent's timestamp, in Unix milliseconds.
        parent: u64,
        /// The header's timestamp, in Unix milliseconds.
        got: u64,
    },
    /// The block carries more transactions than the chain's `limits.max_block_txs`.
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTransactions {
        /// Transactions in the block.
        count: u64,
        /// The chain's limit.
        max: u64,
    },
    /// The header's transactions root is not the Merkle root of the block's transactions.
    #[error("transactions root {got} does not match the transactions, which give {computed}")]
    TxRootMismatch {
        /// The root of the transactions as carried.
        computed: Hash,
        /// The root in the header.
        got: Hash,
    },
    /// Executing the block gives another state than the proposer claims: the two disagree on
    /// the chain's rules or on its history.
    #[error("state root {got} in the header differs from the executed state's {computed}")]
    StateRootMismatch {
        /// The root this ledger computed.
        computed: Hash,
        /// The root in the header.
        got: Hash,
    },
    /// A block (at this height) is already executed and awaits commit or discard.
    #[error("block {0} is executed but neither committed nor discarded: call commit or discard first")]
    Pending(u64),
    /// The ledger itself failed (storage, corrupt records).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Errors of the ledger as a whole: storage, corrupt records, misuse of the execute/commit cycle.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The store failed to read or write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The genesis configuration is invalid.
    #[error(transparent)]
    Genesis(#[from] crate::genesis::GenesisError),
    /// Opening a store that holds no chain.
    #[error("the store holds no chain: initialise it from a genesis configuration")]
    NotInitialised,
    /// Initialising a store that already holds a chain (the hash of its genesis).
    #[error("the store already holds a chain (genesis {0}); open it instead")]
    AlreadyInitialised(Hash),
    /// Opening a store with a genesis other than the one it was initialised from.
    #[error("the store holds the chain of genesis {stored}, not the given genesis {given}: use another data directory or the same genesis file")]
    GenesisMismatch {
        /// Hash of the genesis the store holds.
        stored: Hash,
        /// Hash of the genesis given.
        given: Hash,
    },
    /// A commit or discard with no executed block waiting.
    #[error("no executed block is waiting to be committed")]
    NothingPending,
    /// A caller's extra record (hex key) that would land among the ledger's own tables.
    #[error("record key {0} is not under the ledger's external prefix 'x': it would write into the ledger's own tables")]
    NotExternal(String),
    /// A query names a netuid the chain does not have.
    #[error("subnet {netuid} does not exist: {}", known_subnets(*.count))]
    UnknownSubnet {
        /// The netuid named.
        netuid: u16,
        /// Subnets besides netuid 0 (valid netuids are `0..=count`).
        count: u16,
    },
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
