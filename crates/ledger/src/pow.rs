//! Proof-of-work registration (market paper v2, "Transactions and Token Inflation": peers with no
//! stake join "by solving a proof-of-work to make a subscription").
//!
//! The seal is `SHA-256("agora/pow/v1" || block_hash || hotkey || nonce_le)`: binding the hotkey
//! means work done for one key cannot register another, binding a recent block hash means it
//! cannot be done long in advance. A seal meets difficulty `d` when `seal * d < 2^256` (the seal
//! read as a big-endian 256-bit number, the production chain's rule), so a random seal meets it
//! with probability about `1/d`.
//!
//! Difficulty follows registrations: at the end of every interval,
//! `d' = d * (registered + target) / (2 * target)`, clamped to `[min, max]`: unchanged on target,
//! halved with no registrations, up to ~x(n+1)/2 when n times the target came.

use crate::merkle::sha256;
use crate::types::{Hash, PublicKey};

/// The seal of `nonce` for `hotkey` over the block `block_hash` (see the module doc): what
/// must meet the difficulty.
pub fn seal(block_hash: &Hash, hotkey: &PublicKey, nonce: u64) -> Hash {
    sha256(&[b"agora/pow/v1", &block_hash.0, &hotkey.0, &nonce.to_le_bytes()])
}

/// Whether `seal * difficulty` fits in 256 bits.
pub fn meets(seal: &Hash, difficulty: u64) -> bool {
    // Multiply the big-endian 256-bit number limb by limb from the least significant end; the
    // product fits iff no carry leaves the top limb.
    let mut carry: u128 = 0;
    for k in (0..4).rev() {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(&seal.0[8 * k..8 * k + 8]);
        let prod = u128::from(u64::from_be_bytes(limb)) * u128::from(difficulty) + carry;
        carry = prod >> 64;
    }
    carry == 0
}

/// Searches nonces `start..start + tries` for a seal meeting `difficulty` (for wallets and
/// tests; a registration at difficulty d takes about d hashes).
pub fn solve(block_hash: &Hash, hotkey: &PublicKey, difficulty: u64, start: u64, tries: u64) -> Option<u64> {
    (start..start.saturating_add(tries)).find(|&n| meets(&seal(block_hash, hotkey, n), difficulty))
}

/// The difficulty for the next interval.
pub fn next_difficulty(current: u64, registered: u64, target: u64, min: u64, max: u64) -> u64 {
    let target = u128::from(target.max(1));
    let next = u128::from(current) * (u128::from(registered) + target) / (2 * target);
    next.clamp(u128::from(min), u128::from(max)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meets_is_the_overflow_rule() {
        let mut s = Hash([0; 32]);
        assert!(meets(&s, u64::MAX));
        s.0[0] = 0x80; // 2^255
        assert!(meets(&s, 1));
        assert!(!meets(&s, 2));
        s.0 = [0; 32];
        s.0[7] = 1; // 2^192: times 2^63 fits, 2^64 - 1 fits too (2^256 - 2^192)
        assert!(meets(&s, u64::MAX));
        s.0[7] = 2; // 2^193 * (2^64 - 1) overflows
        assert!(!meets(&s, u64::MAX));
        assert!(meets(&Hash([0xff; 32]), 1));
        assert!(!meets(&Hash([0xff; 32]), 2));
    }

    #[test]
    fn solving_finds_a_valid_seal() {
        let b = Hash([3; 32]);
        let k = PublicKey([4; 32]);
        let n = solve(&b, &k, 1000, 0, 100_000).unwrap();
        assert!(meets(&seal(&b, &k, n), 1000));
        // The same nonce for another key is (almost surely) not a seal.
        assert_ne!(seal(&b, &k, n), seal(&b, &PublicKey([5; 32]), n));
    }

    /// The work a registration costs is what the difficulty says: over many block hashes the
    /// mean number of hashes to a seal at difficulty d is about d (geometric, mean d).
    #[test]
    fn a_seal_costs_about_difficulty_hashes() {
        let d = 1000;
        let k = PublicKey([9; 32]);
        let trials = 300u64;
        let mut total = 0u64;
        for t in 0..trials {
            let mut b = Hash([0; 32]);
            b.0[..8].copy_from_slice(&t.to_le_bytes());
            total += solve(&b, &k, d, 0, 100 * d).expect("found") + 1;
        }
        let mean = total as f64 / trials as f64;
        // Standard error of the mean is about d / sqrt(300) ~ 58: allow five of them.
        assert!((mean - d as f64).abs() < 300.0, "mean hashes per seal {mean}, difficulty {d}");
    }

    #[test]
    fn difficulty_moves_toward_the_target() {
        assert_eq!(next_difficulty(1000, 2, 2, 1, u64::MAX), 1000);
        assert_eq!(next_difficulty(1000, 0, 2, 1, u64::MAX), 500);
        assert_eq!(next_difficulty(1000, 6, 2, 1, u64::MAX), 2000);
        assert_eq!(next_difficulty(1, 0, 2, 1, u64::MAX), 1);
        assert_eq!(next_difficulty(u64::MAX, 100, 1, 1, u64::MAX), u64::MAX);
    }
}
