//! Request signatures: every Forward and Backward is signed by the caller's hotkey, and an axon
//! refuses bad signatures, requests meant for another axon, stale requests and replays.
//!
//! The signed message is
//! `sha256(domain || callee || nonce_le || timestamp_ms_le || sha256(body))`, where `domain`
//! names the call (so a Forward signature is never a valid Backward one), `callee` is the
//! axon's 32-byte hotkey, and `body` is the protobuf encoding of the request with `signature`
//! left empty. The body hash covers the tensors and the caller; the fields around it are
//! repeated outside the hash so a verifier can read what it checks without trusting the body.
//!
//! The verifier re-encodes the decoded request, so a signer in another language must emit the
//! usual proto3 encoding (fields in number order, default values omitted, no unknown fields),
//! which every mainstream protobuf library does for these flat messages; anything else fails
//! closed, as a bad signature.
//!
//! Clocks are arguments (`now_ms`), never read here, so the same code runs in tests and nodes.

use std::collections::{BTreeSet, HashSet};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto::{BackwardRequest, ForwardRequest, ReturnCode};

const DOMAIN_FORWARD: &[u8] = b"agora.v1.Axon/Forward";
const DOMAIN_BACKWARD: &[u8] = b"agora.v1.Axon/Backward";

/// Why a request's authentication failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("caller must be a 32-byte ed25519 public key, got {0} bytes or an invalid point")]
    MalformedCaller(usize),
    #[error("signature must be 64 bytes, got {0}")]
    MalformedSignature(usize),
    #[error("request is addressed to another axon")]
    WrongCallee,
    #[error("timestamp {timestamp_ms} ms is outside {window_ms} ms of now ({now_ms} ms)")]
    Stale { timestamp_ms: u64, now_ms: u64, window_ms: u64 },
    #[error("signature does not verify for this caller and request")]
    BadSignature,
    #[error("nonce {nonce} from this caller was already used")]
    Replayed { nonce: u64 },
    #[error("timestamp {timestamp_ms} ms is not after {floor_ms} ms, the oldest request the replay cache still remembers; retry with a fresh timestamp")]
    BelowReplayFloor { timestamp_ms: u64, floor_ms: u64 },
}

impl AuthError {
    pub fn code(&self) -> ReturnCode {
        match self {
            // The cache forgot entries under load; a retry with a new timestamp succeeds.
            AuthError::BelowReplayFloor { .. } => ReturnCode::Backoff,
            _ => ReturnCode::InvalidSignature,
        }
    }
}

/// Remembers recently seen `(caller, nonce)` pairs so a captured request cannot be replayed
/// within the freshness window. Bounded: when full it forgets the oldest entry and raises a
/// floor below which every timestamp is refused, so forgetting never reopens a replay.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    seen: HashSet<([u8; 32], u64)>,
    // Same entries ordered by timestamp, to find the oldest.
    by_time: BTreeSet<(u64, [u8; 32], u64)>,
    floor_ms: Option<u64>,
}

impl NonceCache {
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
            floor_ms: None,
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records the pair, or refuses it if seen or if it is at or below the floor. Entries older
    /// than `expire_before_ms` are dropped first: the freshness check already refuses them.
    fn check_and_insert(
        &mut self,
        caller: [u8; 32],
        nonce: u64,
        timestamp_ms: u64,
        expire_before_ms: u64,
    ) -> Result<(), AuthError> {
        while let Some(&oldest) = self.by_time.first() {
            if oldest.0 >= expire_before_ms {
                break;
            }
            self.forget(oldest);
        }
        if let Some(floor_ms) = self.floor_ms {
            if timestamp_ms <= floor_ms {
                return Err(AuthError::BelowReplayFloor { timestamp_ms, floor_ms });
            }
        }
        if self.seen.contains(&(caller, nonce)) {
            return Err(AuthError::Replayed { nonce });
        }
        if self.seen.len() >= self.capacity {
            if let Some(&oldest) = self.by_time.first() {
                self.forget(oldest);
            }
        }
        self.seen.insert((caller, nonce));
        self.by_time.insert((timestamp_ms, caller, nonce));
        Ok(())
    }

    fn forget(&mut self, entry: (u64, [u8; 32], u64)) {
        self.by_time.remove(&entry);
        self.seen.remove(&(entry.1, entry.2));
        self.floor_ms = Some(self.floor_ms.map_or(entry.0, |f| f.max(entry.0)));
    }
}

/// What an axon checks beyond the signature itself.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    /// Largest accepted |now - timestamp|, both ways, to tolerate clock skew.
    pub window_ms: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness { window_ms: 30_000 }
    }
}

fn signing_message(
    domain: &[u8],
    callee: &[u8],
    nonce: u64,
    timestamp_ms: u64,
    body_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((domain.len() as u64).to_le_bytes());
    h.update(domain);
    h.update((callee.len() as u64).to_le_bytes());
    h.update(callee);
    h.update(nonce.to_le_bytes());
    h.update(timestamp_ms.to_le_bytes());
    h.update(body_hash);
    h.finalize().into()
}

/// A `BufMut` that hashes what prost encodes into it instead of storing it: the body hash of a
/// multi-megabyte request then costs no copy of its tensors.
struct HashingBuf {
    hasher: Sha256,
    scratch: [u8; 64],
}

impl HashingBuf {
    fn new() -> HashingBuf {
        HashingBuf { hasher: Sha256::new(), scratch: [0; 64] }
    }

    fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

// SAFETY: `chunk_mut` hands out an initialised scratch buffer; `advance_mut` consumes at most
// its length (prost never advances past what `chunk_mut` returned) and immediately hashes it,
// so every byte written is hashed exactly once and in order.
unsafe impl prost::bytes::BufMut for HashingBuf {
    fn remaining_mut(&self) -> usize {
        usize::MAX
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let cnt = cnt.min(self.scratch.len());
        self.hasher.update(&self.scratch[..cnt]);
    }

    fn chunk_mut(&mut self) -> &mut prost::bytes::buf::UninitSlice {
        prost::bytes::buf::UninitSlice::new(&mut self.scratch)
    }

    fn put_slice(&mut self, src: &[u8]) {
        self.hasher.update(src);
    }

    fn put<T: prost::bytes::Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        while src.has_remaining() {
            let chunk = src.chunk();
            let n = chunk.len();
            self.hasher.update(chunk);
            src.advance(n);
        }
    }
}

/// The two signed request kinds share their auth fields; this is the one place that knows
/// where those fields live and which domain tag separates the kinds.
trait SignedRequest: Message + Clone {
    const DOMAIN: &'static [u8];
    fn parts(&self) -> AuthParts<'_>;
    fn set_auth(&mut self, caller: Vec<u8>, callee: Vec<u8>, nonce: u64, timestamp_ms: u64);
    fn set_signature(&mut self, signature: Vec<u8>);
    /// Hashes the tensor fields (the lowest field numbers) the way prost encodes them, then
    /// returns the rest of the request without tensors and with an empty signature.
    fn hash_tensors_split(&self, buf: &mut HashingBuf) -> Self;

    /// sha256 of the request's protobuf encoding with an empty signature. prost encodes fields
    /// in field-number order and the tensors have the lowest numbers, so that encoding is the
    /// tensor fields' encoding followed by the encoding of the rest: hashed here without
    /// materialising either (`body_hash_matches_the_plain_encoding` checks the equivalence).
    fn body_hash(&self) -> [u8; 32] {
        let mut buf = HashingBuf::new();
        let rest = self.hash_tensors_split(&mut buf);
        rest.encode_raw(&mut buf);
        buf.finish()
    }

    /// The message the signature covers.
    fn signing_message(&self) -> [u8; 32] {
        let p = self.parts();
        signing_message(Self::DOMAIN, p.callee, p.nonce, p.timestamp_ms, &self.body_hash())
    }
}

macro_rules! signed_request {
    ($ty:ty, $domain:expr, $($field:ident = $tag:expr),+) => {
        impl SignedRequest for $ty {
            const DOMAIN: &'static [u8] = $domain;
            fn parts(&self) -> AuthParts<'_> {
                AuthParts {
                    caller: &self.caller,
                    callee: &self.callee,
                    nonce: self.nonce,
                    timestamp_ms: self.timestamp_ms,
                    signature: &self.signature,
                }
            }
            fn set_auth(&mut self, caller: Vec<u8>, callee: Vec<u8>, nonce: u64, timestamp_ms: u64) {
                (self.caller, self.callee, self.nonce, self.timestamp_ms) =
                    (caller, callee, nonce, timestamp_ms);
            }
            fn set_signature(&mut self, signature: Vec<u8>) {
                self.signature = signature;
            }
            fn hash_tensors_split(&self, buf: &mut HashingBuf) -> Self {
                $(
                    if let Some(t) = &self.$field {
                        prost::encoding::message::encode($tag, t, buf);
                    }
                )+
                Self {
                    $($field: None,)+
                    caller: self.caller.clone(),
                    callee: self.callee.clone(),
                    nonce: self.nonce,
                    timestamp_ms: self.timestamp_ms,
                    signature: Vec::new(),
                }
            }
        }
    };
}

signed_request!(ForwardRequest, DOMAIN_FORWARD, inputs = 1);
signed_request!(BackwardRequest, DOMAIN_BACKWARD, inputs = 1, grads = 2);

fn sign<R: SignedRequest>(req: &mut R, key: &SigningKey, callee: &[u8; 32], nonce: u64, timestamp_ms: u64) {
    req.set_auth(key.verifying_key().to_bytes().to_vec(), callee.to_vec(), nonce, timestamp_ms);
    let signature = key.sign(&req.signing_message()).to_bytes().to_vec();
    req.set_signature(signature);
}

/// The message a Forward request's signature covers.
pub fn forward_signing_message(req: &ForwardRequest) -> [u8; 32] {
    req.signing_message()
}

/// The message a Backward request's signature covers.
pub fn backward_signing_message(req: &BackwardRequest) -> [u8; 32] {
    req.signing_message()
}

/// Fills in the auth fields of `req` and signs it with the caller's hotkey.
pub fn sign_forward(
    req: &mut ForwardRequest,
    key: &SigningKey,
    callee: &[u8; 32],
    nonce: u64,
    timestamp_ms: u64,
) {
    sign(req, key, callee, nonce, timestamp_ms)
}

/// Fills in the auth fields of `req` and signs it with the caller's hotkey.
pub fn sign_backward(
    req: &mut BackwardRequest,
    key: &SigningKey,
    callee: &[u8; 32],
    nonce: u64,
    timestamp_ms: u64,
) {
    sign(req, key, callee, nonce, timestamp_ms)
}

/// A request whose caller, callee, freshness and signature checked out; not yet checked
/// against replays (see [`NonceCache::admit`]). Splitting the two lets a server verify many
/// signatures in parallel and hold its replay cache only for the brief insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub caller: [u8; 32],
    pub nonce: u64,
    pub timestamp_ms: u64,
}

/// Checks a Forward request addressed to `me` without touching any replay cache.
pub fn authenticate_forward(
    req: &ForwardRequest,
    me: &[u8; 32],
    now_ms: u64,
    freshness: &Freshness,
) -> Result<Authenticated, AuthError> {
    authenticate(req.parts(), || req.signing_message(), me, now_ms, freshness)
}

/// Checks a Backward request addressed to `me`; see [`authenticate_forward`].
pub fn authenticate_backward(
    req: &BackwardRequest,
    me: &[u8; 32],
    now_ms: u64,
    freshness: &Freshness,
) -> Result<Authenticated, AuthError> {
    authenticate(req.parts(), || req.signing_message(), me, now_ms, freshness)
}

impl NonceCache {
    /// Records an authenticated request's nonce, refusing replays. Call it only after the
    /// signature verified, so forged requests cannot fill the cache.
    pub fn admit(
        &mut self,
        auth: &Authenticated,
        now_ms: u64,
        freshness: &Freshness,
    ) -> Result<(), AuthError> {
        let expire_before_ms = now_ms.saturating_sub(freshness.window_ms);
        self.check_and_insert(auth.caller, auth.nonce, auth.timestamp_ms, expire_before_ms)
    }
}

/// Authenticates a Forward request addressed to `me` and records its nonce; returns the
/// caller's key.
pub fn verify_forward(
    req: &ForwardRequest,
    me: &[u8; 32],
    now_ms: u64,
    freshness: &Freshness,
    cache: &mut NonceCache,
) -> Result<VerifyingKey, AuthError> {
    let auth = authenticate_forward(req, me, now_ms, freshness)?;
    cache.admit(&auth, now_ms, freshness)?;
    VerifyingKey::from_bytes(&auth.caller).map_err(|_| AuthError::MalformedCaller(32))
}

/// Authenticates a Backward request addressed to `me`; see [`verify_forward`].
pub fn verify_backward(
    req: &BackwardRequest,
    me: &[u8; 32],
    now_ms: u64,
    freshness: &Freshness,
    cache: &mut NonceCache,
) -> Result<VerifyingKey, AuthError> {
    let auth = authenticate_backward(req, me, now_ms, freshness)?;
    cache.admit(&auth, now_ms, freshness)?;
    VerifyingKey::from_bytes(&auth.caller).map_err(|_| AuthError::MalformedCaller(32))
}

struct AuthParts<'a> {
    caller: &'a [u8],
    callee: &'a [u8],
    nonce: u64,
    timestamp_ms: u64,
    signature: &'a [u8],
}

fn authenticate(
    parts: AuthParts<'_>,
    message: impl FnOnce() -> [u8; 32],
    me: &[u8; 32],
    now_ms: u64,
    freshness: &Freshness,
) -> Result<Authenticated, AuthError> {
    // Cheap checks first; hashing the body and verifying cost far more.
    let caller: [u8; 32] =
        parts.caller.try_into().map_err(|_| AuthError::MalformedCaller(parts.caller.len()))?;
    let key = VerifyingKey::from_bytes(&caller).map_err(|_| AuthError::MalformedCaller(32))?;
    let signature: [u8; 64] =
        parts.signature.try_into().map_err(|_| AuthError::MalformedSignature(parts.signature.len()))?;
    if parts.callee != me {
        return Err(AuthError::WrongCallee);
    }
    if now_ms.abs_diff(parts.timestamp_ms) > freshness.window_ms {
        return Err(AuthError::Stale {
            timestamp_ms: parts.timestamp_ms,
            now_ms,
            window_ms: freshness.window_ms,
        });
    }
    key.verify(&message(), &Signature::from_bytes(&signature)).map_err(|_| AuthError::BadSignature)?;
    Ok(Authenticated { caller, nonce: parts.nonce, timestamp_ms: parts.timestamp_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{encode, DType, Modality};

    fn plain_body_hash<R: SignedRequest>(req: &R) -> [u8; 32] {
        let mut unsigned = req.clone();
        unsigned.set_signature(Vec::new());
        Sha256::digest(unsigned.encode_to_vec()).into()
    }

    #[test]
    fn body_hash_matches_the_plain_encoding() {
        let t = |n: usize| Some(encode(DType::F32, &[1, 1, n as u64], Modality::Tensor, vec![3; 4 * n]));
        let forwards = [
            ForwardRequest::default(),
            ForwardRequest {
                inputs: t(1000),
                caller: vec![1; 32],
                callee: vec![2; 32],
                nonce: 7,
                timestamp_ms: 9,
                signature: vec![5; 64],
            },
            ForwardRequest { inputs: t(3), nonce: u64::MAX, ..Default::default() },
        ];
        for f in &forwards {
            assert_eq!(f.body_hash(), plain_body_hash(f));
        }
        let backwards = [
            BackwardRequest::default(),
            BackwardRequest {
                inputs: t(10),
                grads: t(20),
                caller: vec![1; 32],
                signature: vec![1; 64],
                ..Default::default()
            },
            BackwardRequest { grads: t(5), timestamp_ms: 1, ..Default::default() },
        ];
        for b in &backwards {
            assert_eq!(b.body_hash(), plain_body_hash(b));
        }
    }
}
