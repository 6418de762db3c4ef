//! Commit-reveal weights: a neuron first publishes a hash of its weight row and a secret salt
//! (`commit_weights`), and only later the row itself (`reveal_weights`), within a window. Until
//! the reveal nobody can read the row, so a validator that copies others' weights copies rows
//! that are at least `reveal_delay` blocks old (the production chain's defence against weight
//! copying). Only revealed rows enter W, so only they reach the epoch.
//!
//! On when the genesis sets `weights.commit_reveal` ([`CommitRevealConfig`]). There are no
//! subnets yet, so it is a chain-wide parameter; with subnets it becomes one of theirs. While
//! it is on, a plain `set_weights` is refused (it would bypass the hiding).
//!
//! Commitment: `SHA-256("agora/weights-commit/v1" || hotkey || borsh(uids) || borsh(values) ||
//! salt)`, values by their f64 bits. The hotkey is inside so that a copier cannot republish
//! someone else's commitment and reveal their row after them as its own.
//!
//! Timing: a commitment made in block `c` may be revealed in blocks `c + reveal_delay ..=
//! c + reveal_delay + reveal_window - 1`; earlier or later, or with a row or salt that does not
//! hash to it, the reveal is refused with the reason ([`TxError::RevealTooEarly`],
//! [`TxError::RevealTooLate`], [`TxError::RevealMismatch`]). A neuron holds one commitment at a
//! time: a new one replaces the old. Commitments are rate-limited like `set_weights`
//! (`weights.rate_limit` blocks after the later of the last commitment and the last row).

use crate::error::TxError;
use crate::merkle::sha256;
use crate::types::{Float, Hash, Neuron, PublicKey, Salt};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

const COMMIT_TAG: &[u8] = b"agora/weights-commit/v1";

/// Genesis parameters of commit-reveal (`weights.commit_reveal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommitRevealConfig {
    /// Blocks after the commitment before its reveal is accepted (at least 1). The weights stay
    /// hidden this long: set it to an epoch (`tempo`) or more so copied rows are stale.
    pub reveal_delay: u64,
    /// Blocks the reveal stays open after the delay (at least 1).
    pub reveal_window: u64,
}

impl Default for CommitRevealConfig {
    fn default() -> Self {
        // One default epoch hidden, one to reveal in.
        CommitRevealConfig { reveal_delay: 100, reveal_window: 100 }
    }
}

impl CommitRevealConfig {
    /// First and last block in which a commitment of block `committed_at` may be revealed.
    pub fn reveal_range(&self, committed_at: u64) -> (u64, u64) {
        let earliest = committed_at.saturating_add(self.reveal_delay);
        (earliest, earliest.saturating_add(self.reveal_window.saturating_sub(1)))
    }
}

/// A neuron's pending commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WeightsCommit {
    pub commitment: Hash,
    /// The block that included the `commit_weights`.
    pub block: u64,
}

/// The commitment to the row `(uids, values)` with `salt`, for `hotkey` (see the module doc).
pub fn commitment(hotkey: &PublicKey, uids: &[u16], values: &[Float], salt: &Salt) -> Hash {
    // Borsh of a Vec<u16> / Vec<Float>: u32 length, then each element little-endian.
    let mut row = Vec::with_capacity(8 + uids.len() * 2 + values.len() * 8);
    row.extend_from_slice(&(uids.len() as u32).to_le_bytes());
    for u in uids {
        row.extend_from_slice(&u.to_le_bytes());
    }
    row.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        row.extend_from_slice(&v.0.to_bits().to_le_bytes());
    }
    sha256(&[COMMIT_TAG, &hotkey.0, &row, &salt.0])
}

/// The configuration, or why a commit or reveal is not accepted on this chain.
pub(crate) fn enabled(cfg: &Option<CommitRevealConfig>) -> Result<&CommitRevealConfig, TxError> {
    cfg.as_ref().ok_or(TxError::CommitRevealDisabled)
}

/// Checks a `commit_weights` of `neuron` at `height`.
pub(crate) fn check_commit(rate_limit: u64, neuron: &Neuron, height: u64) -> Result<(), TxError> {
    let last = match (neuron.last_weights_block, neuron.weights_commit.map(|c| c.block)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(last) = last {
        let next_allowed = last.saturating_add(rate_limit);
        if height < next_allowed {
            return Err(TxError::WeightsRateLimited { last, next_allowed });
        }
    }
    Ok(())
}

/// Checks that a reveal of `(uids, values, salt)` by `neuron` at `height` opens its pending
/// commitment, in time. The row itself is then checked as a `set_weights` row.
pub(crate) fn check_reveal(
    cfg: &CommitRevealConfig,
    neuron: &Neuron,
    height: u64,
    uids: &[u16],
    values: &[Float],
    salt: &Salt,
) -> Result<(), TxError> {
    let commit = neuron.weights_commit.ok_or(TxError::NoWeightsCommit(neuron.hotkey))?;
    let (earliest, deadline) = cfg.reveal_range(commit.block);
    if height < earliest {
        return Err(TxError::RevealTooEarly { committed_at: commit.block, earliest });
    }
    if height > deadline {
        return Err(TxError::RevealTooLate { committed_at: commit.block, deadline });
    }
    let revealed = commitment(&neuron.hotkey, uids, values, salt);
    if revealed != commit.commitment {
        return Err(TxError::RevealMismatch { committed: commit.commitment, revealed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commitment_binds_hotkey_row_and_salt() {
        let (k, salt) = (PublicKey([1; 32]), Salt([2; 32]));
        let v = |x: &[f64]| x.iter().copied().map(Float).collect::<Vec<_>>();
        let base = commitment(&k, &[0, 1], &v(&[0.25, 0.75]), &salt);
        assert_eq!(base, commitment(&k, &[0, 1], &v(&[0.25, 0.75]), &salt));
        for other in [
            commitment(&PublicKey([3; 32]), &[0, 1], &v(&[0.25, 0.75]), &salt),
            commitment(&k, &[0, 2], &v(&[0.25, 0.75]), &salt),
            commitment(&k, &[0, 1], &v(&[0.75, 0.25]), &salt),
            commitment(&k, &[0, 1], &v(&[0.25, 0.75]), &Salt([4; 32])),
            // The length prefixes keep a uid from sliding into the values.
            commitment(&k, &[0], &v(&[0.25, 0.75]), &salt),
        ] {
            assert_ne!(base, other);
        }
        // The row part is borsh of the two vectors, as the doc says.
        let mut row = borsh::to_vec(&vec![0u16, 1]).unwrap();
        row.extend(borsh::to_vec(&v(&[0.25, 0.75])).unwrap());
        assert_eq!(base, sha256(&[COMMIT_TAG, &k.0, &row, &salt.0]));
    }

    #[test]
    fn the_reveal_range_is_inclusive() {
        let c = CommitRevealConfig { reveal_delay: 3, reveal_window: 2 };
        assert_eq!(c.reveal_range(10), (13, 14));
        let c = CommitRevealConfig { reveal_delay: 1, reveal_window: 1 };
        assert_eq!(c.reveal_range(10), (11, 11));
    }
}
