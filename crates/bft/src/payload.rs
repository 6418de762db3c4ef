//! What the validators agree on: a [`Payload`], the transactions of the next block in order,
//! named by the SHA-256 digest of its encoding.
//!
//! The engine orders payloads; the ledger executes a payload only once it is final, so the
//! payload carries no state root (every validator computes the same one from the same
//! transactions: `Ledger::propose` is deterministic). Its `parent` is the digest of the
//! previous payload (for height 1, [`genesis_digest`]), which is how a validator that missed
//! payloads walks back from a finalized one to its own head.

use commonware_codec::DecodeExt;
use commonware_cryptography::sha256::Digest;
use commonware_cryptography::{Hasher, Sha256};
use ledger::{Hash, PublicKey, SignedTx, TxError};
use thiserror::Error;

/// Largest encoded payload a validator proposes or accepts: the proposer stops adding
/// transactions before it (besides the genesis' `max_block_txs`), and the network refuses
/// larger messages.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// Bytes before the transactions: parent, height, timestamp, proposer, count.
const HEADER_BYTES: usize = 32 + 8 + 8 + 32 + 4;

/// The transactions of block `height`, proposed by `proposer` on top of `parent`.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    /// Digest of the previous payload; [`genesis_digest`] for height 1.
    pub parent: Digest,
    /// The block's height (1 for the first block after genesis).
    pub height: u64,
    /// The proposer's clock, in milliseconds since the Unix epoch. The ledger executes the
    /// block at `max(timestamp_ms, parent's timestamp)`, so a clock behind the others' cannot
    /// make a final payload unexecutable.
    pub timestamp_ms: u64,
    /// The proposing validator (the engine's leader of the round).
    pub proposer: PublicKey,
    /// The block's transactions, in execution order.
    pub txs: Vec<SignedTx>,
}

/// Why bytes are not a payload.
#[derive(Debug, Error, PartialEq)]
pub enum PayloadError {
    /// More bytes than a payload may have.
    #[error("payload of {got} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its length.
        got: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The bytes end inside a field.
    #[error("payload truncated: {need} bytes needed at offset {at}, {len} in all")]
    Truncated {
        /// The offset of the field.
        at: usize,
        /// The bytes it needs.
        need: usize,
        /// The payload's length.
        len: usize,
    },
    /// More transactions than a block may hold.
    #[error("payload holds {got} transactions, more than the genesis' max_block_txs {max}")]
    TooManyTxs {
        /// Its count.
        got: usize,
        /// The genesis' `max_block_txs`.
        max: usize,
    },
    /// A transaction did not decode.
    #[error("transaction {index} of the payload: {reason}")]
    Tx {
        /// Its position in the payload.
        index: usize,
        /// Why it did not decode.
        reason: TxError,
    },
    /// Bytes left over after the last transaction (this many).
    #[error("{0} bytes after the last transaction")]
    Trailing(usize),
}

/// The parent digest of the first block: derived from the chain's genesis hash, so two chains
/// never share a payload.
pub fn genesis_digest(genesis_hash: &Hash) -> Digest {
    Sha256::hash(&[b"agora/bft/genesis/v1", &genesis_hash.0])
}

/// The digest naming `bytes` (an encoded payload).
pub fn digest(bytes: &[u8]) -> Digest {
    Sha256::hash(&[bytes])
}

impl Payload {
    /// Encoded size of a payload without transactions.
    pub const fn header_bytes() -> usize {
        HEADER_BYTES
    }

    /// `parent | height | timestamp | proposer | count | (length | tx)*`, integers little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let txs: Vec<Vec<u8>> = self.txs.iter().map(SignedTx::encode).collect();
        let mut out = Vec::with_capacity(HEADER_BYTES + txs.iter().map(|t| t.len() + 4).sum::<usize>());
        out.extend_from_slice(self.parent.as_ref());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.proposer.0);
        out.extend_from_slice(&(txs.len() as u32).to_le_bytes());
        for t in &txs {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t);
        }
        out
    }

    /// Decodes a payload, each transaction bounded by `max_tx_bytes` and their number by
    /// `max_txs`; sizes are checked before anything is allocated.
    pub fn decode(bytes: &[u8], max_tx_bytes: usize, max_txs: usize) -> Result<Payload, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge { got: bytes.len(), max: MAX_PAYLOAD_BYTES });
        }
        let mut at = 0;
        let mut take = |n: usize| -> Result<&[u8], PayloadError> {
            let end = at + n;
            let s = bytes.get(at..end).ok_or(PayloadError::Truncated { at, need: n, len: bytes.len() })?;
            at = end;
            Ok(s)
        };
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let parent = Digest::decode(bytes::Bytes::copy_from_slice(take(32)?))
            .map_err(|_| PayloadError::Truncated { at: 0, need: 32, len: bytes.len() })?;
        let height = word(take(8)?);
        let timestamp_ms = word(take(8)?);
        let proposer = PublicKey(take(32)?.try_into().expect("32 bytes"));
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        if count > max_txs {
            return Err(PayloadError::TooManyTxs { got: count, max: max_txs });
        }
        let mut txs = Vec::with_capacity(count);
        for index in 0..count {
            let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let tx = SignedTx::decode(take(len)?, max_tx_bytes)
                .map_err(|reason| PayloadError::Tx { index, reason })?;
            txs.push(tx);
        }
        let rest = bytes.len() - at;
        if rest != 0 {
            return Err(PayloadError::Trailing(rest));
        }
        Ok(Payload { parent, height, timestamp_ms, proposer, txs })
    }
}

/// Dev alice's transfer to bob with `nonce`, valid on the dev chain (the crate's tests).
#[cfg(test)]
pub(crate) fn dev_transfer(nonce: u64) -> SignedTx {
    use ledger::{dev_key, public_key, Call, TxBody};
    let k = dev_key("alice");
    TxBody {
        sender: public_key(&k),
        nonce,
        fee: 10_000,
        call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 1 },
    }
    .sign(&k, "agora-dev")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u64) -> Payload {
        let txs = (0..n).map(dev_transfer).collect();
        Payload {
            parent: genesis_digest(&Hash([7; 32])),
            height: 1,
            timestamp_ms: 42,
            proposer: PublicKey([9; 32]),
            txs,
        }
    }

    #[test]
    fn a_payload_round_trips_and_its_digest_names_its_bytes() {
        let p = payload(3);
        let bytes = p.encode();
        assert_eq!(Payload::decode(&bytes, 4096, 10).unwrap(), p);
        assert_eq!(digest(&bytes), digest(&p.encode()), "one encoding");
        assert_ne!(digest(&bytes), digest(&payload(2).encode()));
        assert_ne!(genesis_digest(&Hash([7; 32])), genesis_digest(&Hash([8; 32])));
    }

    #[test]
    fn bad_bytes_are_refused_with_what_is_wrong() {
        let bytes = payload(3).encode();
        assert!(matches!(Payload::decode(&bytes, 4096, 2), Err(PayloadError::TooManyTxs { got: 3, max: 2 })));
        assert!(matches!(
            Payload::decode(&bytes[..bytes.len() - 1], 4096, 10),
            Err(PayloadError::Truncated { .. })
        ));
        assert!(matches!(
            Payload::decode(&bytes[..10], 4096, 10),
            Err(PayloadError::Truncated { at: 0, need: 32, .. })
        ));
        assert!(matches!(Payload::decode(&bytes, 10, 10), Err(PayloadError::Tx { index: 0, .. })));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Payload::decode(&long, 4096, 10), Err(PayloadError::Trailing(1)));
        let huge = vec![0u8; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(Payload::decode(&huge, 4096, 10), Err(PayloadError::TooLarge { .. })));
        // A count that promises more than the bytes hold allocates nothing and is truncated.
        let mut lying = payload(0).encode();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(Payload::decode(&lying, 4096, 10), Err(PayloadError::Truncated { .. })));
    }
}
