//! Signature verification, one at a time or a block's worth at once.
//!
//! One ed25519 verification costs ~50 us; a block of set_weights would spend most of its time
//! there. `ed25519_dalek::verify_batch` checks many signatures with one multi-scalar
//! multiplication at well under half the cost each. A block's signatures are split into fixed
//! chunks of [`BATCH`] (fixed, so the split never depends on the thread count), each chunk is
//! batch-verified (chunks in parallel on rayon's pool), and a chunk that fails is split in
//! halves, each batch-verified again, down to single verification of a few signatures: finding
//! one bad signature costs about two batches instead of [`BATCH`] single checks.
//!
//! Agreement between nodes: dalek's batch check derives its random coefficients from the batch
//! contents (a merlin transcript, no system randomness), so the same chunk gives the same answer
//! on every node. Batch and single verification can disagree only on signatures deliberately
//! built with small-order components by the key's own holder (batch checks are probabilistic
//! in the torsion part); they cannot make a forgery pass, and since every node forms the same
//! chunks, every node reaches the same verdict.

use crate::types::{PublicKey, SignatureBytes};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rayon::prelude::*;

/// Signatures per batch. Measured on one core: 64 a batch verify ~2x faster than one by one,
/// 128 ~2.5x, 512 ~2.7x (dalek switches to Pippenger's method above ~190 points).
pub const BATCH: usize = 512;
/// Below this many signatures a failed batch is checked one by one.
const SINGLE_BELOW: usize = 8;

/// Decompresses a public key; `None` if the bytes are not a curve point.
pub fn verifying_key(pk: &PublicKey) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&pk.0).ok()
}

/// Single verification (cofactorless, as `VerifyingKey::verify`).
pub fn verify_with(key: &VerifyingKey, msg: &[u8], sig: &SignatureBytes) -> bool {
    key.verify(msg, &Signature::from_bytes(&sig.0)).is_ok()
}

pub(crate) fn verify_one(sender: &PublicKey, msg: &[u8], sig: &SignatureBytes) -> Result<(), crate::TxError> {
    let key = verifying_key(sender).ok_or(crate::TxError::BadPublicKey(*sender))?;
    if verify_with(&key, msg, sig) {
        Ok(())
    } else {
        // The caller knows the chain id; `SignedTx::verify` fills it in.
        Err(crate::TxError::BadSignature { sender: *sender, chain_id: chain_id_of(msg) })
    }
}

/// Recovers the chain id from a signing message, for the error text.
fn chain_id_of(msg: &[u8]) -> String {
    let tag = b"agora/tx/v1".len();
    let len = msg.get(tag).copied().unwrap_or(0) as usize;
    msg.get(tag + 1..tag + 1 + len).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

/// One signature to check: the decompressed key (`None` if the sender is not a point), the
/// signed message and the signature.
pub struct SigJob {
    /// The sender's key, `None` when its bytes are not a curve point.
    pub key: Option<VerifyingKey>,
    /// The message signed: [`crate::tx::signing_message`] for a transaction.
    pub msg: Vec<u8>,
    /// The signature.
    pub sig: SignatureBytes,
}

/// Verifies every job, returning one verdict per job in order. Deterministic for any thread
/// count: chunk boundaries depend only on the job count.
pub fn verify_all(jobs: &[SigJob]) -> Vec<bool> {
    let verdicts: Vec<Vec<bool>> = jobs.par_chunks(BATCH).map(verify_chunk).collect();
    verdicts.into_iter().flatten().collect()
}

fn verify_chunk(jobs: &[SigJob]) -> Vec<bool> {
    // Jobs without a valid key fail outright; the rest go to the batch.
    let mut out: Vec<bool> = jobs.iter().map(|j| j.key.is_some()).collect();
    let idx: Vec<usize> = (0..jobs.len()).filter(|&i| out[i]).collect();
    bisect(jobs, &idx, &mut out);
    out
}

/// Batch-verifies `jobs[idx]`; on failure, each half in turn, down to single checks.
fn bisect(jobs: &[SigJob], idx: &[usize], out: &mut [bool]) {
    if idx.is_empty() {
        return;
    }
    if idx.len() < SINGLE_BELOW {
        for &i in idx {
            out[i] = jobs[i].key.as_ref().is_some_and(|k| verify_with(k, &jobs[i].msg, &jobs[i].sig));
        }
        return;
    }
    let msgs: Vec<&[u8]> = idx.iter().map(|&i| jobs[i].msg.as_slice()).collect();
    let sigs: Vec<Signature> = idx.iter().map(|&i| Signature::from_bytes(&jobs[i].sig.0)).collect();
    let keys: Vec<VerifyingKey> = idx.iter().filter_map(|&i| jobs[i].key).collect();
    if keys.len() == idx.len() && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        return;
    }
    let (a, b) = idx.split_at(idx.len() / 2);
    bisect(jobs, a, out);
    bisect(jobs, b, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::dev_key;
    use ed25519_dalek::Signer;

    fn job(name: &str, msg: &[u8], tamper: bool) -> SigJob {
        let k = dev_key(name);
        let mut sig = SignatureBytes(k.sign(msg).to_bytes());
        if tamper {
            sig.0[0] ^= 1;
        }
        SigJob { key: Some(k.verifying_key()), msg: msg.to_vec(), sig }
    }

    #[test]
    fn batch_finds_the_bad_signatures() {
        let n = BATCH + 20;
        let mut jobs: Vec<SigJob> = (0..n).map(|i| job(&format!("k{i}"), &[i as u8; 40], false)).collect();
        assert!(verify_all(&jobs).iter().all(|&v| v));
        let bad_ones = [3, 77, 140, BATCH - 1, BATCH, n - 1];
        jobs[3] = job("k3", b"x", true);
        jobs[140].msg.push(1);
        jobs[77].key = None;
        jobs[BATCH - 1].sig.0[63] ^= 0x80; // non-canonical s
        jobs[BATCH] = job("other", b"y", true);
        jobs[n - 1].sig = jobs[0].sig;
        let v = verify_all(&jobs);
        let bad: Vec<usize> = (0..v.len()).filter(|&i| !v[i]).collect();
        assert_eq!(bad, bad_ones);
        // Each verdict equals single verification.
        for (j, ok) in jobs.iter().zip(&v) {
            assert_eq!(*ok, j.key.as_ref().is_some_and(|k| verify_with(k, &j.msg, &j.sig)));
        }
        assert!(verify_all(&[]).is_empty());
    }
}
