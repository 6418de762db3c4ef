//! Blocks, their headers and what executing them produced (receipts, the epoch report).

use crate::error::TxError;
use crate::merkle::{sha256, MerkleTree};
use crate::tx::SignedTx;
use crate::types::{Hash, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// What a block commits to: its place in the chain, its time, its transactions and the state
/// they lead to. Its hash is the block's identity.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Position in the chain: genesis is height 0, the first block 1.
    pub height: u64,
    /// Hash of block `height - 1`; for block 1, the genesis hash.
    pub parent_hash: Hash,
    /// Milliseconds since the Unix epoch, chosen by the proposer; never before the parent's.
    /// The ledger reads no clock: this is its only notion of time.
    pub timestamp_ms: u64,
    /// The key of the node that proposed the block (a consensus validator on a chain with
    /// validators). Informational: the ledger pays it nothing.
    pub proposer: PublicKey,
    /// Merkle root of the transaction ids in order.
    pub tx_root: Hash,
    /// The state root after executing this block.
    pub state_root: Hash,
}

impl BlockHeader {
    /// The block hash: SHA-256 over a domain tag and the header's borsh bytes, which covers the
    /// transactions through `tx_root`.
    pub fn hash(&self) -> Hash {
        sha256(&[b"agora/block/v1", &borsh::to_vec(self).unwrap_or_default()])
    }
}

/// A block: a header and the transactions it orders.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, executed in this order.
    pub txs: Vec<SignedTx>,
}

/// Merkle root over transaction ids.
pub fn tx_root(ids: &[Hash]) -> Hash {
    MerkleTree::root_of(ids)
}

/// What happened to one transaction of a block.
///
/// The rule (chosen so that failing is never free once the sender is proven):
/// - `Rejected`: authentication failed (oversized, bad signature or key, wrong nonce, fee below
///   the minimum or unpayable, or for `register` a proof of work that is weak or names a block
///   outside the window: the work is its payment). Nothing changes: no fee, the nonce is not
///   used. The sender may not even have signed it, so charging it would let anyone drain anyone.
/// - `Failed`: authentication passed but the call is invalid (unknown uid, NaN weight, rate
///   limit, insufficient balance for the amount, ...). The fee is charged and burned and the nonce is used; nothing
///   else changes. This keeps a valid signer from spamming blocks with failing calls for free.
/// - `Applied`: the call took effect.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum TxStatus {
    /// The call took effect.
    Applied,
    /// Authenticated but invalid: the fee was charged and the nonce used.
    Failed(TxError),
    /// Not authenticated: nothing changed.
    Rejected(TxError),
}

/// What executing one transaction did, kept with its block.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction's id.
    pub tx_id: Hash,
    /// Applied, failed or rejected, with the reason.
    pub status: TxStatus,
    /// Fee charged and burned (0 when rejected).
    pub fee_paid: u64,
    /// Lazy emission minted because the sender transacted (0 in per-epoch mode).
    pub emission_paid: u64,
}

impl Receipt {
    /// Whether the call took effect.
    pub fn is_applied(&self) -> bool {
        self.status == TxStatus::Applied
    }

    /// Why the transaction failed or was rejected, if it did not apply.
    pub fn error(&self) -> Option<&TxError> {
        match &self.status {
            TxStatus::Applied => None,
            TxStatus::Failed(e) | TxStatus::Rejected(e) => Some(e),
        }
    }
}

/// What an epoch did.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EpochReport {
    /// Height of the block the epoch ran in.
    pub height: u64,
    /// The mechanism that ran, by name (such as `yuma`).
    pub mechanism: String,
    /// Neurons in the epoch.
    pub n: u32,
    /// Base units minted by this epoch (always 0 in lazy mode, where minting happens at payouts).
    pub minted: u64,
    /// The mechanism paid nothing this epoch (no weights, or the `trust` variant withholding).
    pub withheld: bool,
    /// Set when the mechanism refused its input: nothing was minted and the state was left as it
    /// was (no panic, no half-applied epoch).
    pub error: Option<String>,
}

/// The result of executing a block.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockOutcome {
    /// The header as executed (its state root filled in when the ledger proposed it).
    pub header: BlockHeader,
    /// The header's hash.
    pub hash: Hash,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Netuid 0's epoch, when the block's height is a multiple of its tempo.
    pub epoch: Option<EpochReport>,
    /// Base units minted in this block (epoch and lazy payouts).
    pub minted: u64,
    /// Base units burned in this block (fees and registration costs).
    pub burned: u64,
}

/// The borsh encoding of a [`StoredBlock`], built from transaction bodies already encoded for
/// hashing (`bodies[k]` is `borsh(block.txs[k].body)`) instead of encoding them again: a block of
/// 4,096 weight rows is 10 MiB, and this halves the cost of storing it.
pub(crate) fn encode_stored_block(
    block: &Block,
    bodies: &[Vec<u8>],
    receipts: &[Receipt],
    epoch: &Option<EpochReport>,
) -> Vec<u8> {
    let tx_bytes: usize = bodies.iter().map(|b| b.len() + 64).sum();
    let mut out = Vec::with_capacity(tx_bytes + 128 * receipts.len() + 1024);
    // Writes into a Vec cannot fail; an encoding error would only leave a short record, which
    // decoding reports as corrupt rather than a panic here.
    let _ = borsh::to_writer(&mut out, &block.header);
    out.extend_from_slice(&(block.txs.len() as u32).to_le_bytes());
    for (tx, body) in block.txs.iter().zip(bodies) {
        out.extend_from_slice(body);
        out.extend_from_slice(&tx.signature.0);
    }
    let _ = borsh::to_writer(&mut out, receipts);
    let _ = borsh::to_writer(&mut out, epoch);
    out
}

/// A block as the ledger stores it, with what executing it produced.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct StoredBlock {
    /// The block.
    pub block: Block,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Netuid 0's epoch report, if one ran in the block.
    pub epoch: Option<EpochReport>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{dev_key, public_key};
    use crate::tx::{Call, TxBody};

    #[test]
    fn stored_block_encoding_is_borsh() {
        let k = dev_key("a");
        let txs: Vec<SignedTx> = (0..3)
            .map(|n| {
                TxBody {
                    sender: public_key(&k),
                    nonce: n,
                    fee: 1,
                    call: Call::set_weights(vec![1, 2], &[0.5, 0.5]),
                }
                .sign(&k, "c")
            })
            .collect();
        let bodies: Vec<Vec<u8>> = txs.iter().map(|t| t.body.encode()).collect();
        let header = BlockHeader {
            height: 3,
            parent_hash: Hash([1; 32]),
            timestamp_ms: 9,
            proposer: public_key(&k),
            tx_root: Hash([2; 32]),
            state_root: Hash([3; 32]),
        };
        let receipts =
            vec![Receipt { tx_id: Hash([4; 32]), status: TxStatus::Applied, fee_paid: 1, emission_paid: 0 }];
        let epoch = Some(EpochReport {
            height: 3,
            mechanism: "yuma".into(),
            n: 2,
            minted: 5,
            withheld: false,
            error: None,
        });
        let stored = StoredBlock { block: Block { header, txs }, receipts, epoch };
        let fast = encode_stored_block(&stored.block, &bodies, &stored.receipts, &stored.epoch);
        assert_eq!(fast, borsh::to_vec(&stored).unwrap());
        assert_eq!(borsh::from_slice::<StoredBlock>(&fast).unwrap(), stored);
    }
}
