//! Signature verification, one at a time or a block's worth at once.
//!
//! One ed25519 verification costs ~50 us; a block of set_weights would spend most of its time
//! there. `ed25519_dalek::verify_batch` checks many signatures with one multi-scalar
//! multiplication at well under half the cost each. A block's signatures are split into fixed
//! chunks of [`BATCH`] (fixed, so the split never depends on the thread count), each chunk is
//! batch-verified (chunks in parallel on rayon's pool), and only a chunk that fails is checked
//! signature by signature to find the bad ones.
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

/// Signatures per batch: large enough to get most of the batch speed-up, small enough that one
/// bad signature costs a bounded number of single re-checks.
pub const BATCH: usize = 128;

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
    pub key: Option<VerifyingKey>,
    pub msg: Vec<u8>,
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
    if idx.is_empty() {
        return out;
    }
    let msgs: Vec<&[u8]> = idx.iter().map(|&i| jobs[i].msg.as_slice()).collect();
    let sigs: Vec<Signature> = idx.iter().map(|&i| Signature::from_bytes(&jobs[i].sig.0)).collect();
    let keys: Vec<VerifyingKey> = idx.iter().filter_map(|&i| jobs[i].key).collect();
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        return out;
    }
    for &i in &idx {
        out[i] = jobs[i].key.as_ref().is_some_and(|k| verify_with(k, &jobs[i].msg, &jobs[i].sig));
    }
    out
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
        let mut jobs: Vec<SigJob> = (0..150).map(|i| job(&format!("k{i}"), &[i as u8; 40], false)).collect();
        assert!(verify_all(&jobs).iter().all(|&v| v));
        jobs[3] = job("k3", b"x", true);
        jobs[140].msg.push(1);
        jobs[77].key = None;
        let v = verify_all(&jobs);
        let bad: Vec<usize> = (0..v.len()).filter(|&i| !v[i]).collect();
        assert_eq!(bad, vec![3, 77, 140]);
        assert!(verify_all(&[]).is_empty());
    }
}
