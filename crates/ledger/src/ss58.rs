//! SS58 addresses: the form Substrate chains, and so Bittensor users, print and paste keys in.
//!
//! Format (Substrate's `ss58-registry` spec), for the 32-byte account keys we have:
//! `base58(prefix || key || checksum[..2])`, where `checksum = blake2b-512("SS58PRE" || prefix
//! || key)` and `prefix` is the network identifier in one byte when it is below 64 (two bytes
//! from 64 to 16,383, with the top bits `01` marking the two-byte form). Agora uses 42, the
//! generic Substrate prefix that Bittensor also uses, so our keys read as the familiar
//! "5..." addresses and an address copied from a Bittensor tool names the same 32 bytes.
//!
//! The hex form stays the ledger's canonical one (JSON, errors, logs); SS58 is accepted
//! wherever a key is parsed ([`PublicKey`]'s `FromStr`) and printed beside hex by the CLI.

use crate::types::PublicKey;
use blake2::{Blake2b512, Digest};
use thiserror::Error;

/// The network prefix of Agora's addresses (Substrate's generic 42, as Bittensor's).
pub const PREFIX: u16 = 42;
/// Bytes of the checksum kept in a 32-byte key's address.
const CHECKSUM_LEN: usize = 2;
const CHECKSUM_TAG: &[u8] = b"SS58PRE";

/// Why a string is not an SS58 address of a key on this network.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ss58Error {
    /// The text has characters outside the base58 alphabet (the decoder's message).
    #[error("not base58: {0}")]
    NotBase58(String),
    /// The decoded bytes are not the 35 of prefix (one byte), key and checksum.
    #[error("decodes to {len} bytes; an address of a 32-byte key with prefix {PREFIX} has 35")]
    BadLength {
        /// Bytes decoded.
        len: usize,
    },
    /// The checksum bytes do not match the prefix and key.
    #[error("checksum does not match: the address is mistyped or truncated")]
    BadChecksum,
    /// An address for another network.
    #[error("network prefix {found}, expected {PREFIX} (Substrate's generic prefix, as Bittensor uses)")]
    WrongPrefix {
        /// The address's network prefix.
        found: u16,
    },
}

/// blake2b-512 over `"SS58PRE" || payload`, the first two bytes.
fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = Blake2b512::new();
    h.update(CHECKSUM_TAG);
    h.update(payload);
    let d = h.finalize();
    [d[0], d[1]]
}

/// The SS58 address of `key` with prefix [`PREFIX`].
pub fn encode(key: &PublicKey) -> String {
    // PREFIX < 64: the one-byte form.
    let mut bytes = Vec::with_capacity(1 + 32 + CHECKSUM_LEN);
    bytes.push(PREFIX as u8);
    bytes.extend_from_slice(&key.0);
    let c = checksum(&bytes);
    bytes.extend_from_slice(&c);
    bs58::encode(bytes).into_string()
}

/// The key of an SS58 address with prefix [`PREFIX`]: checks the base58 alphabet, the length,
/// the checksum, then the prefix (so a valid address of another network says so).
pub fn decode(address: &str) -> Result<PublicKey, Ss58Error> {
    let bytes = bs58::decode(address.trim()).into_vec().map_err(|e| Ss58Error::NotBase58(e.to_string()))?;
    let first = *bytes.first().ok_or(Ss58Error::BadLength { len: 0 })?;
    // Two-byte prefixes have 0b01 in the top bits of the first byte (spec: ident 64..16383).
    let prefix_len = if first & 0b1100_0000 == 0b0100_0000 { 2 } else { 1 };
    if first >= 128 || bytes.len() != prefix_len + 32 + CHECKSUM_LEN {
        return Err(Ss58Error::BadLength { len: bytes.len() });
    }
    let (payload, check) = bytes.split_at(prefix_len + 32);
    if checksum(payload) != check {
        return Err(Ss58Error::BadChecksum);
    }
    let prefix = if prefix_len == 1 {
        u16::from(first)
    } else {
        // The spec's bit layout for two-byte idents.
        let (b0, b1) = (u16::from(first), u16::from(bytes[1]));
        ((b0 & 0b0011_1111) << 2) | (b1 >> 6) | ((b1 & 0b0011_1111) << 8)
    };
    if prefix != PREFIX {
        return Err(Ss58Error::WrongPrefix { found: prefix });
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&payload[prefix_len..]);
    Ok(PublicKey(key))
}

impl PublicKey {
    /// This key as an SS58 address (prefix 42): see [`crate::ss58`].
    pub fn to_ss58(&self) -> String {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(hex: &str) -> PublicKey {
        hex.parse().unwrap()
    }

    /// Published vectors: Substrate's `//Alice` sr25519 key as `subkey inspect` prints it, and an
    /// ed25519 key with its address from the same tool (the format does not depend on the
    /// signature scheme: it encodes 32 bytes).
    #[test]
    fn known_addresses() {
        let cases = [
            (
                "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d",
                "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            ),
            (
                "e7988839e659db69ae9ad08c3ef2ccabba44236024a039ebad83bd8fc75dccfb",
                "5HJNEJ6KCG8PDzXC7ZeNDJetktYzpyPXi8GLVagP8fvC8tdH",
            ),
        ];
        for (hex, address) in cases {
            assert_eq!(encode(&key(hex)), address);
            assert_eq!(decode(address), Ok(key(hex)));
            // And through the key's parser, as the CLI reads it.
            assert_eq!(address.parse::<PublicKey>(), Ok(key(hex)));
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        let good = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        // One character changed: the checksum catches it.
        let typo = good.replace('G', "H");
        assert_eq!(decode(&typo), Err(Ss58Error::BadChecksum));
        assert!(matches!(decode(&good[..40]), Err(Ss58Error::BadLength { .. })));
        assert!(matches!(decode("0OIl"), Err(Ss58Error::NotBase58(_))));
        assert!(matches!(decode(""), Err(Ss58Error::BadLength { len: 0 })));
        // The same key on Polkadot (prefix 0) is a valid address of another network.
        let k = key("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d");
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&k.0);
        let c = checksum(&bytes);
        bytes.extend_from_slice(&c);
        let polkadot = bs58::encode(bytes).into_string();
        assert_eq!(polkadot, "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5");
        assert_eq!(decode(&polkadot), Err(Ss58Error::WrongPrefix { found: 0 }));
        let err = "5Grw".parse::<PublicKey>().unwrap_err();
        assert!(err.contains("SS58") && err.contains("hex"), "{err}");
    }

    proptest! {
        #[test]
        fn every_key_round_trips(bytes in any::<[u8; 32]>()) {
            let k = PublicKey(bytes);
            let a = k.to_ss58();
            prop_assert!(a.starts_with('5'), "{}", a);
            prop_assert_eq!(decode(&a), Ok(k));
            prop_assert_eq!(a.parse::<PublicKey>(), Ok(k));
        }
    }
}
