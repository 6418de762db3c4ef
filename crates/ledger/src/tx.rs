//! Transactions: what a key may ask the chain to do, how it is encoded, signed and identified.
//!
//! Encoding: borsh (deterministic by construction: one encoding per value, and decoding refuses
//! trailing bytes), so the bytes a wallet signs are the bytes every node hashes.
//!
//! Signing: the sender signs, with ed25519, the message
//! `"agora/tx/v1" || len(chain_id) as u8 || chain_id || body_hash`, where
//! `body_hash = SHA-256("agora/tx-body/v1" || borsh(body))`. The chain id separates chains
//! (a transaction signed for a test network is invalid on another); the fixed tag separates
//! transactions from anything else a key might sign (peer-protocol messages). Signing the
//! 32-byte body hash instead of the body keeps verification cost independent of the body size
//! (a `set_weights` of 256 entries is 2.5 KiB).
//!
//! Identity: `id = SHA-256("agora/tx-id/v1" || body_hash || signature)`.

use crate::error::TxError;
use crate::merkle::sha256;
use crate::subnet::SubnetParams;
use crate::types::{Endpoint, Float, Hash, PublicKey, Salt, SignatureBytes};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a transaction does. The sender is [`TxBody::sender`]; each variant says which key must
/// send it.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Call {
    /// Move free balance from the sender to `to`.
    Transfer { to: PublicKey, amount: u64 },
    /// Register the sender as a hotkey owned by `coldkey`, paying with proof of work over the
    /// hash of block `pow_block` (one of the last `pow_window` blocks): see [`crate::pow`].
    Register { coldkey: PublicKey, pow_block: u64, pow_nonce: u64 },
    /// Sent by a registered neuron's hotkey: subscribe `hotkey` (owned by `coldkey`) without
    /// proof of work, burning the registration cost and giving it `stake` from the sender's
    /// balance (market paper §5: peers online subscribe newcomers).
    RegisterBy { hotkey: PublicKey, coldkey: PublicKey, stake: u64 },
    /// Sent by a registered hotkey: publish its axon endpoint.
    Serve { endpoint: Endpoint },
    /// Sent by a neuron's coldkey: move `amount` of free balance into the neuron's stake.
    AddStake { hotkey: PublicKey, amount: u64 },
    /// Sent by a neuron's coldkey: move `amount` of the neuron's stake back to free balance.
    RemoveStake { hotkey: PublicKey, amount: u64 },
    /// Sent by a registered hotkey: replace its row of W. `values[k]` is the weight on
    /// `uids[k]`; values must be finite, >= 0, and sum to 1 (within 1e-6).
    SetWeights { uids: Vec<u16>, values: Vec<Float> },
    /// Sent by a registered hotkey on a chain with commit-reveal on: commit to a row of W
    /// without showing it; `commitment` is [`crate::commit_reveal::commitment`] of the row and a
    /// secret salt.
    CommitWeights { commitment: Hash },
    /// Sent by a registered hotkey: reveal the row committed to, with its salt, within the
    /// reveal window; it then replaces the hotkey's row of W as a `set_weights` would.
    RevealWeights { uids: Vec<u16>, values: Vec<Float>, salt: Salt },
    /// Sent by a registered hotkey: the model its axon now answers with (issue 16), as its
    /// signed responses name it: `version` a hash of the parameters (never all zero: that
    /// names no model) and `step` its training step. The chain records it with the block it
    /// was published in, so a validator can tell which model answered and whose version
    /// appeared first.
    ///
    /// A call of its own rather than an optional field of `Serve`: borsh has no optional
    /// trailing fields, so a field added to `Serve` would change the bytes of every `serve`
    /// ever signed (and the shared vectors), while a new variant, appended last, leaves every
    /// existing encoding as it was. It is also lighter: a peer's model changes with training,
    /// its endpoint almost never, and publishing a version re-checks no endpoint. It pays the
    /// `serve` fee (both announce what a neuron serves), so the fee schedule and every genesis
    /// hash stay as they were.
    PublishVersion { version: Hash, step: u64 },
    /// Sent by a neuron's coldkey: the take it keeps of what is paid to the hotkey's stake
    /// ([`crate::delegation`]), in parts of 65,535, at most the genesis `max_take`. A decrease
    /// applies at once; an increase `delegation.take_notice` blocks later.
    SetTake { hotkey: PublicKey, take: u16 },
    /// Sent by a coldkey: register `hotkey` as a neuron it owns, burning the current
    /// registration burn from its balance instead of doing proof of work. The burn adjusts with
    /// demand as the difficulty does ([`crate::pow::next_difficulty`]).
    BurnedRegister { hotkey: PublicKey },
    /// Sent by a coldkey: open the next subnet ([`crate::subnet`]) with these parameters,
    /// burning the genesis `subnets.creation_cost` from its balance; the sender owns it.
    CreateSubnet { params: SubnetParams },
    /// `call` on subnet `netuid` instead of netuid 0: any call that names a network
    /// (registrations, serve, stake, take, weights, commit, reveal, publish). A wrapper
    /// appended last rather than a field on each call, so that no transaction signed before
    /// subnets (and no shared vector) changes its bytes: a plain call acts on netuid 0.
    Subnet { netuid: u16, call: SubnetCall },
}

/// The call inside a [`Call::Subnet`]. Decoding refuses another `Subnet` inside it, so a
/// transaction cannot nest wrappers (and make decoding recurse) however many bytes it has.
#[derive(Clone, Debug, PartialEq, BorshSerialize, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubnetCall(pub Box<Call>);

/// Index of [`Call::Subnet`] in the encoding.
const SUBNET_CALL_TAG: u8 = 13;

impl BorshDeserialize for SubnetCall {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        use borsh::de::EnumExt;
        let tag = u8::deserialize_reader(reader)?;
        if tag == SUBNET_CALL_TAG {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a subnet call cannot wrap another subnet call",
            ));
        }
        Ok(SubnetCall(Box::new(Call::deserialize_variant(reader, tag)?)))
    }
}

/// The kind of a [`Call`], for fees and error messages.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Transfer,
    Register,
    RegisterBy,
    Serve,
    AddStake,
    RemoveStake,
    SetWeights,
    CommitWeights,
    RevealWeights,
    PublishVersion,
    SetTake,
    BurnedRegister,
    CreateSubnet,
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallKind::Transfer => "transfer",
            CallKind::Register => "register",
            CallKind::RegisterBy => "register_by",
            CallKind::Serve => "serve",
            CallKind::AddStake => "add_stake",
            CallKind::RemoveStake => "remove_stake",
            CallKind::SetWeights => "set_weights",
            CallKind::CommitWeights => "commit_weights",
            CallKind::RevealWeights => "reveal_weights",
            CallKind::PublishVersion => "publish_version",
            CallKind::SetTake => "set_take",
            CallKind::BurnedRegister => "burned_register",
            CallKind::CreateSubnet => "create_subnet",
        })
    }
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Transfer { .. } => CallKind::Transfer,
            Call::Register { .. } => CallKind::Register,
            Call::RegisterBy { .. } => CallKind::RegisterBy,
            Call::Serve { .. } => CallKind::Serve,
            Call::AddStake { .. } => CallKind::AddStake,
            Call::RemoveStake { .. } => CallKind::RemoveStake,
            Call::SetWeights { .. } => CallKind::SetWeights,
            Call::CommitWeights { .. } => CallKind::CommitWeights,
            Call::RevealWeights { .. } => CallKind::RevealWeights,
            Call::PublishVersion { .. } => CallKind::PublishVersion,
            Call::SetTake { .. } => CallKind::SetTake,
            Call::BurnedRegister { .. } => CallKind::BurnedRegister,
            Call::CreateSubnet { .. } => CallKind::CreateSubnet,
            // A call on a subnet is the call it wraps (fees, errors, the mempool's rules).
            Call::Subnet { call, .. } => call.0.kind(),
        }
    }

    /// The subnet the call acts on: `netuid` of a [`Call::Subnet`], 0 otherwise.
    pub fn netuid(&self) -> u16 {
        match self {
            Call::Subnet { netuid, .. } => *netuid,
            _ => crate::subnet::ROOT_NETUID,
        }
    }

    /// The call without its subnet wrapper.
    pub fn inner(&self) -> &Call {
        match self {
            Call::Subnet { call, .. } => &call.0,
            c => c,
        }
    }

    /// `self` on subnet `netuid` (unwrapped for netuid 0, so its bytes are those of the
    /// plain call).
    pub fn on_subnet(self, netuid: u16) -> Call {
        if netuid == crate::subnet::ROOT_NETUID {
            return self;
        }
        Call::Subnet { netuid, call: SubnetCall(Box::new(self)) }
    }

    /// Whether the call names a network, so it may be wrapped in a [`Call::Subnet`].
    pub fn names_a_network(&self) -> bool {
        !matches!(self, Call::Transfer { .. } | Call::CreateSubnet { .. } | Call::Subnet { .. })
    }

    /// A `set_weights` call from `f64` values.
    pub fn set_weights(uids: Vec<u16>, values: &[f64]) -> Call {
        Call::SetWeights { uids, values: values.iter().copied().map(Float).collect() }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody {
    pub sender: PublicKey,
    /// Must equal the sender account's nonce; it then increases by one. A transaction can
    /// therefore be applied at most once.
    pub nonce: u64,
    /// Paid from the sender's free balance and burned; at least the genesis minimum for the kind.
    pub fee: u64,
    pub call: Call,
}

const BODY_TAG: &[u8] = b"agora/tx-body/v1";
const SIGN_TAG: &[u8] = b"agora/tx/v1";
const ID_TAG: &[u8] = b"agora/tx-id/v1";

impl TxBody {
    pub fn encode(&self) -> Vec<u8> {
        // Sized up front: a set_weights body is 10 bytes an entry, and growing a 2.5 KiB buffer
        // by doubling showed up in the block benchmark.
        let entries = match self.call.inner() {
            Call::SetWeights { uids, values } | Call::RevealWeights { uids, values, .. } => {
                uids.len() * 2 + values.len() * 8
            }
            _ => 0,
        };
        let mut out = Vec::with_capacity(128 + entries);
        // Borsh serialisation into a Vec fails only on I/O errors, which a Vec never raises;
        // every field type here is infallible (floats go through `Float`).
        if borsh::to_writer(&mut out, self).is_err() {
            out.clear();
        }
        out
    }

    pub fn hash(&self) -> Hash {
        body_hash_of(&self.encode())
    }

    /// Signs the body for `chain_id`.
    pub fn sign(self, key: &SigningKey, chain_id: &str) -> SignedTx {
        let msg = signing_message(chain_id, &self.hash());
        let signature = SignatureBytes(key.sign(&msg).to_bytes());
        SignedTx { body: self, signature }
    }
}

pub(crate) fn body_hash_of(encoded_body: &[u8]) -> Hash {
    sha256(&[BODY_TAG, encoded_body])
}

/// The exact bytes the sender signs (see the module doc). At most 11 + 1 + 64 + 32 bytes.
pub fn signing_message(chain_id: &str, body_hash: &Hash) -> Vec<u8> {
    let id = chain_id.as_bytes();
    // Chain ids are at most 64 bytes (genesis validation); clamp so the length byte is honest.
    let id = &id[..id.len().min(255)];
    let mut m = Vec::with_capacity(SIGN_TAG.len() + 1 + id.len() + 32);
    m.extend_from_slice(SIGN_TAG);
    m.push(id.len() as u8);
    m.extend_from_slice(id);
    m.extend_from_slice(&body_hash.0);
    m
}

/// A transaction as it travels and is stored.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: SignatureBytes,
}

impl SignedTx {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// Decodes a transaction received as bytes, refusing anything longer than `max_bytes`
    /// before reading it (the genesis `limits.max_tx_bytes`).
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<SignedTx, TxError> {
        if bytes.len() > max_bytes {
            return Err(TxError::Oversized { size: bytes.len() as u64, max: max_bytes as u64 });
        }
        borsh::from_slice(bytes).map_err(|e| TxError::Malformed(e.to_string()))
    }

    /// Hashes computed once per transaction.
    pub fn prepare(&self) -> PreparedTx {
        self.prepare_encoded().0
    }

    /// [`SignedTx::prepare`], also returning the encoded body (a block stores it as is).
    pub(crate) fn prepare_encoded(&self) -> (PreparedTx, Vec<u8>) {
        let body = self.body.encode();
        let body_hash = body_hash_of(&body);
        let id = sha256(&[ID_TAG, &body_hash.0, &self.signature.0]);
        (PreparedTx { body_hash, id, size: body.len() + SignatureBytes::LEN }, body)
    }

    pub fn id(&self) -> Hash {
        self.prepare().id
    }

    /// Checks the signature alone (single verification), for a wallet or a mempool.
    pub fn verify(&self, chain_id: &str) -> Result<(), TxError> {
        let p = self.prepare();
        crate::verify::verify_one(
            &self.body.sender,
            &signing_message(chain_id, &p.body_hash),
            &self.signature,
        )
    }
}

/// What [`SignedTx::prepare`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreparedTx {
    pub body_hash: Hash,
    pub id: Hash,
    /// Encoded size of the signed transaction in bytes.
    pub size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{dev_key, public_key};

    fn tx() -> SignedTx {
        let k = dev_key("alice");
        TxBody {
            sender: public_key(&k),
            nonce: 3,
            fee: 10,
            call: Call::set_weights(vec![0, 2], &[0.25, f64::NAN]),
        }
        .sign(&k, "test")
    }

    #[test]
    fn encoding_round_trips_and_is_canonical() {
        let t = tx();
        let bytes = t.encode();
        assert_eq!(t.prepare().size, bytes.len());
        let back = SignedTx::decode(&bytes, 1 << 16).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.id(), t.id());
        // Trailing garbage is not another encoding of the same transaction.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(SignedTx::decode(&longer, 1 << 16), Err(TxError::Malformed(_))));
        assert!(matches!(SignedTx::decode(&bytes, 10), Err(TxError::Oversized { max: 10, .. })));
        assert!(matches!(SignedTx::decode(&bytes[..20], 1 << 16), Err(TxError::Malformed(_))));
    }

    #[test]
    fn signatures_bind_chain_and_body() {
        let t = tx();
        t.verify("test").unwrap();
        assert!(matches!(t.verify("other"), Err(TxError::BadSignature { .. })));
        let mut changed = t.clone();
        changed.body.fee = 11;
        assert!(matches!(changed.verify("test"), Err(TxError::BadSignature { .. })));
        let mut bad_key = t.clone();
        bad_key.body.sender = PublicKey([0xff; 32]);
        assert!(t.verify("test").is_ok());
        assert!(bad_key.verify("test").is_err());
    }
}
