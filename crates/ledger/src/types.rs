//! The records the chain stores: accounts, neurons, endpoints, weight rows, and the fixed-size
//! byte strings (hashes, keys, signatures) they are keyed by.
//!
//! Every record has one canonical encoding (borsh: fixed-width little-endian integers,
//! length-prefixed sequences, no optional fields out of order), which is what the store holds and
//! what the state root hashes. Serde is for humans and JSON-RPC: byte strings appear as hex.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Base units per token (nine decimals): balances and stake are integers in base units.
pub const UNITS_PER_TOKEN: u64 = 1_000_000_000;

/// A stored weight row sums to exactly this many units (its entries are `u16`): the chain keeps
/// rows normalised as integers, so every node holds bit-identical rows whatever the sender sent.
pub const WEIGHT_SCALE: u16 = u16::MAX;

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $n:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $n;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }

            /// Lowercase hex without `0x`, the form JSON and logs use.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Eight hex digits identify a key or hash in logs and test failures.
                write!(f, "{}({}..)", stringify!($name), &hex::encode(&self.0[..4]))
            }
        }

        impl $name {
            /// Parses `2 * LEN` hex digits, with or without `0x`.
            pub fn from_hex(s: &str) -> Result<Self, String> {
                let s = s.strip_prefix("0x").unwrap_or(s);
                let mut out = [0u8; $n];
                hex::decode_to_slice(s, &mut out).map_err(|e| {
                    format!("expected {} hex digits for a {}: {e}", 2 * $n, stringify!($name))
                })?;
                Ok($name(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A SHA-256 digest: block hashes, transaction ids, the state root.
    Hash,
    32
);
hex_bytes!(
    /// An ed25519 public key (32 bytes, compressed Edwards point). Accounts, hotkeys and
    /// coldkeys are all public keys; whether the bytes are a valid point is checked only when a
    /// signature must be verified against them.
    PublicKey,
    32
);
hex_bytes!(
    /// An ed25519 signature (R || s).
    SignatureBytes,
    64
);

hex_bytes!(
    /// The secret of a weights commitment ([`crate::commit_reveal`]): 32 random bytes the
    /// committer keeps until it reveals.
    Salt,
    32
);

impl FromStr for Salt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Salt::from_hex(s)
    }
}

impl Hash {
    /// All zeros: the parent of the first block, and a model version that names no model.
    pub const ZERO: Hash = Hash([0; 32]);
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Hash::from_hex(s)
    }
}

impl FromStr for SignatureBytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SignatureBytes::from_hex(s)
    }
}

/// A key parses from 64 hex digits (the ledger's form, `0x` optional) or from an SS58 address
/// with prefix 42 (the "5..." form Bittensor users paste): see [`crate::ss58`].
impl FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let looks_hex = t.strip_prefix("0x").unwrap_or(t).bytes().all(|b| b.is_ascii_hexdigit());
        if looks_hex {
            return PublicKey::from_hex(t);
        }
        crate::ss58::decode(t)
            .map_err(|e| format!("{t:?} is neither 64 hex digits nor an SS58 address of a PublicKey: {e}"))
    }
}

/// An `f64` carried by its bit pattern, so every value (NaN and infinities included) has exactly
/// one encoding and decoding never fails. Transactions carry weights this way: a NaN must reach
/// validation and be rejected with a reason, not fail to decode (borsh refuses NaN floats).
/// Equality is on the bits, like the encoding: a NaN equals the same NaN.
#[derive(Clone, Copy, Default)]
pub struct Float(pub f64);

impl PartialEq for Float {
    fn eq(&self, other: &Float) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Float {}

impl BorshSerialize for Float {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(&self.0.to_bits().to_le_bytes())
    }
}

impl BorshDeserialize for Float {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut b = [0u8; 8];
        reader.read_exact(&mut b)?;
        Ok(Float(f64::from_bits(u64::from_le_bytes(b))))
    }
}

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <f64 as Deserialize>::deserialize(d).map(Float)
    }
}

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A key's account: free balance in base units and the nonce its next transaction must carry.
///
/// An account exists in the state once it has received tokens or sent a transaction; it is never
/// removed, because its nonce is what stops an old transaction from being replayed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Account {
    /// Free balance in base units (stake is held on neurons, not here).
    pub balance: u64,
    /// The nonce the next transaction must carry: the number sent so far.
    pub nonce: u64,
}

/// An IP address in a fixed canonical form (std's `IpAddr` has no borsh encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Ip {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 address.
    V6([u8; 16]),
}

impl From<IpAddr> for Ip {
    fn from(ip: IpAddr) -> Ip {
        match ip {
            IpAddr::V4(a) => Ip::V4(a.octets()),
            IpAddr::V6(a) => Ip::V6(a.octets()),
        }
    }
}

impl From<Ip> for IpAddr {
    fn from(ip: Ip) -> IpAddr {
        match ip {
            Ip::V4(o) => IpAddr::V4(Ipv4Addr::from(o)),
            Ip::V6(o) => IpAddr::V6(Ipv6Addr::from(o)),
        }
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        IpAddr::from(*self).fmt(f)
    }
}

impl Serialize for Ip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse::<IpAddr>().map(Ip::from).map_err(serde::de::Error::custom)
    }
}

/// The wire protocol an axon speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// gRPC over HTTP/2 with the published `.proto` (the `wire` crate).
    Grpc = 0,
}

/// What an axon serves (the tensor modalities of the peer protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Token ids or UTF-8 bytes (`wire`'s `[batch, seq]` text).
    Text = 0,
    /// Images (`wire`'s `[batch, seq, channels, rows, cols]`).
    Image = 1,
    /// Plain tensors (`wire`'s `[batch, seq, dim]`).
    Tensor = 2,
}

/// Where a neuron's axon listens, as published by a `serve` transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Endpoint {
    /// The axon's IP address (a unicast address peers can reach).
    pub ip: Ip,
    /// The axon's port.
    pub port: u16,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// What it serves.
    pub modality: Modality,
}

/// What the last epoch computed for one neuron (the metagraph vectors R, T, C, I, D, E, VT and
/// who validated). The floats come from the mechanism; `emission` is in base units: what was
/// minted to the neuron in per-epoch mode, and what the mechanism assigned to it (not minted) in
/// lazy mode.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct NeuronScores {
    /// R, as the mechanism's rank equation defines it (market paper: `R = W^T S`, the
    /// stake-weighted weight the neuron received).
    pub rank: f64,
    /// T: how far the network's stake backs it, in [0, 1] (each variant defines it: see
    /// `mechanism::EpochOutput`).
    pub trust: f64,
    /// C: the network's consensus on it (yuma: the consensus weight of its column).
    pub consensus: f64,
    /// I: its share of what the epoch pays for being weighted (sums to 1 when anything is paid).
    pub incentive: f64,
    /// D: its share of what the epoch pays validators through their bonds (variants with bonds).
    pub dividends: f64,
    /// E, in base units (see above for what it means in each emission mode).
    pub emission: u64,
    /// VT: how much of its weight row survived the mechanism's consensus (yuma: row sum of the
    /// clipped weights; 0 when it did not validate, and for variants without the notion).
    #[serde(default)]
    pub validator_trust: f64,
    /// Whether it set weights (or registered) within `activity_cutoff` blocks of the epoch.
    #[serde(default)]
    pub active: bool,
    /// Whether it was among the `max_validators` neurons with the most stake at the epoch.
    #[serde(default)]
    pub validator_permit: bool,
}

/// One slot of the neuron table. `uid` is the slot index: uids are dense, `0..n`, and a
/// registration into a full table reuses the uid of the neuron it replaces.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Neuron {
    /// Its slot in the table.
    pub uid: u16,
    /// The key the neuron signs its own transactions (weights, serve) with.
    pub hotkey: PublicKey,
    /// The key that owns the neuron: only it adds or removes the owner's stake, sets the take,
    /// and that stake returns to its balance when the neuron is replaced.
    pub coldkey: PublicKey,
    /// S, in base units.
    pub stake: u64,
    /// Its axon, once it has sent a `serve`.
    pub endpoint: Option<Endpoint>,
    /// Height of the block that registered it (immunity counts from here).
    pub registered_at: u64,
    /// Height of its last accepted `set_weights`, `None` before the first.
    pub last_weights_block: Option<u64>,
    /// Lazy emission: height up to which its pending emission has been accounted
    /// (its last payout, or the last epoch, whichever is later).
    pub last_emission_block: u64,
    /// Lazy emission: accrued and not yet paid, in 2^-16 base units (see `epoch.rs`).
    pub pending_emission: u128,
    /// Lazy emission: what it accrues per block until the next epoch, in 2^-16 base units.
    pub emission_rate: u64,
    /// What the last epoch computed for it.
    pub scores: NeuronScores,
    /// Commit-reveal: the commitment awaiting its reveal, if any.
    #[serde(default)]
    pub weights_commit: Option<crate::commit_reveal::WeightsCommit>,
    /// The model its axon last said it answers with (`publish_version`, issue 16); `None`
    /// before the first publication (and for a neuron registered into a replaced slot).
    #[serde(default)]
    pub model: Option<PublishedModel>,
    /// Delegation ([`crate::delegation`]): stake other coldkeys put on this hotkey, sorted by
    /// coldkey, each > 0. They are part of `stake`; the owner's own stake is the rest.
    #[serde(default)]
    pub nominations: Vec<Nomination>,
    /// The share of what is paid to this hotkey's stake that goes to its owner before the rest
    /// is split pro rata, in parts of [`crate::delegation::TAKE_SCALE`].
    #[serde(default)]
    pub take: u16,
    /// A take increase announced by the owner, in force from block `effective_at`.
    #[serde(default)]
    pub pending_take: Option<PendingTake>,
}

impl Neuron {
    /// A neuron registered at `height` with `stake` of its owner's, no endpoint, no weights,
    /// no nominators and the given take.
    pub fn new(
        uid: u16,
        hotkey: PublicKey,
        coldkey: PublicKey,
        stake: u64,
        height: u64,
        take: u16,
    ) -> Neuron {
        Neuron {
            uid,
            hotkey,
            coldkey,
            stake,
            endpoint: None,
            registered_at: height,
            last_weights_block: None,
            last_emission_block: height,
            pending_emission: 0,
            emission_rate: 0,
            scores: NeuronScores::default(),
            weights_commit: None,
            model: None,
            nominations: Vec::new(),
            take,
            pending_take: None,
        }
    }
}

/// Stake a coldkey other than the owner put on a hotkey (a nominator's delegation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Nomination {
    /// The nominator.
    pub coldkey: PublicKey,
    /// In base units.
    pub stake: u64,
}

/// A take increase waiting out its notice ([`crate::delegation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PendingTake {
    /// The new take, in parts of [`crate::delegation::TAKE_SCALE`].
    pub take: u16,
    /// First block whose payouts use it.
    pub effective_at: u64,
}

/// A model version as a neuron published it on chain: what its signed responses name
/// (`wire`'s `ModelVersion`) and the block that recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PublishedModel {
    /// A hash of the parameters (never all zero).
    pub version: Hash,
    /// The model's training step when it was published.
    pub step: u64,
    /// Height of the block the `publish_version` was executed in.
    pub published_at: u64,
}

/// Row i of W as the chain stores it: `(uid, weight)` sorted by uid, unique, every weight > 0,
/// weights summing to exactly [`WEIGHT_SCALE`] (or empty before the first `set_weights`).
///
/// Why integers and not the f64 the sender sent: the row is normalised once, at the chain, into a
/// form that is exact on every machine, compact (4 bytes an entry, so 4,096 rows of 256 weights
/// are 4 MiB), cheap to hash, and whose L2 change bound can be checked in exact integer
/// arithmetic. The resolution, 1/65535 of a row, is the one the production chain uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WeightRow(pub Vec<(u16, u16)>);

impl WeightRow {
    /// True for a neuron that has not set weights.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of uids the row weights.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The weight on `uid`, in units of 1/[`WEIGHT_SCALE`].
    pub fn get(&self, uid: u16) -> u16 {
        match self.0.binary_search_by_key(&uid, |&(u, _)| u) {
            Ok(k) => self.0[k].1,
            Err(_) => 0,
        }
    }

    /// The borsh encoding (u32 length, then each `(uid, weight)` little-endian), written
    /// directly: the state commits up to 4,096 rows a block, and the derived encoder's call per
    /// field showed up in the benchmark. A test checks it equals `borsh::to_vec`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 * self.0.len());
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for &(u, w) in &self.0 {
            out.extend_from_slice(&u.to_le_bytes());
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Squared L2 distance to `other` in units^2, exact: both rows are sorted by uid, so one
    /// merge pass visits every uid named by either.
    pub fn distance_sq(&self, other: &WeightRow) -> u64 {
        let (a, b) = (&self.0, &other.0);
        let (mut p, mut q, mut acc) = (0, 0, 0u64);
        let sq = |x: u16, y: u16| {
            let d = u64::from(x.abs_diff(y));
            d * d
        };
        while p < a.len() || q < b.len() {
            match (a.get(p), b.get(q)) {
                (Some(&(ua, va)), Some(&(ub, vb))) => {
                    if ua == ub {
                        acc = acc.saturating_add(sq(va, vb));
                        p += 1;
                        q += 1;
                    } else if ua < ub {
                        acc = acc.saturating_add(sq(va, 0));
                        p += 1;
                    } else {
                        acc = acc.saturating_add(sq(0, vb));
                        q += 1;
                    }
                }
                (Some(&(_, va)), None) => {
                    acc = acc.saturating_add(sq(va, 0));
                    p += 1;
                }
                (None, Some(&(_, vb))) => {
                    acc = acc.saturating_add(sq(0, vb));
                    q += 1;
                }
                (None, None) => break,
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_lengths() {
        let h = Hash([7; 32]);
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert_eq!(format!("0x{h}").parse::<Hash>().unwrap(), h);
        assert!("abcd".parse::<PublicKey>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
    }

    #[test]
    fn float_encodes_every_bit_pattern() {
        for x in [f64::NAN, -0.0, f64::INFINITY, 1.5] {
            let bytes = borsh::to_vec(&Float(x)).unwrap();
            let back: Float = borsh::from_slice(&bytes).unwrap();
            assert_eq!(back.0.to_bits(), x.to_bits());
        }
    }

    #[test]
    fn row_distance_is_exact() {
        let a = WeightRow(vec![(0, 100), (2, 50)]);
        let b = WeightRow(vec![(1, 30), (2, 60)]);
        // uid 0: 100^2, uid 1: 30^2, uid 2: 10^2
        assert_eq!(a.distance_sq(&b), 10_000 + 900 + 100);
        assert_eq!(b.distance_sq(&a), a.distance_sq(&b));
        assert_eq!(a.distance_sq(&WeightRow::default()), 10_000 + 2_500);
        assert_eq!(a.get(2), 50);
        assert_eq!(a.encode(), borsh::to_vec(&a).unwrap());
        assert_eq!(WeightRow::default().encode(), borsh::to_vec(&WeightRow::default()).unwrap());
        assert_eq!(a.get(1), 0);
    }

    #[test]
    fn endpoint_json_is_readable() {
        let e = Endpoint {
            ip: Ip::from("10.0.0.1".parse::<IpAddr>().unwrap()),
            port: 8091,
            protocol: Protocol::Grpc,
            modality: Modality::Text,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"ip":"10.0.0.1","port":8091,"protocol":"grpc","modality":"text"}"#);
        assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), e);
    }
}
