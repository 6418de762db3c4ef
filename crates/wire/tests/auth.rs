//! Request signatures: a good request passes once; a bad signature, a tampered body, the wrong
//! callee, a stale timestamp and a replayed nonce are each refused with their code.

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::SeedableRng;
use wire::proto::{BackwardRequest, ForwardRequest, ReturnCode};
use wire::{
    sign_backward, sign_forward, verify_backward, verify_forward, AuthError, Freshness, Modality, NonceCache,
    OwnedTensor,
};

const NOW: u64 = 1_800_000_000_000;

struct Setup {
    caller: SigningKey,
    axon: [u8; 32],
    fresh: Freshness,
    cache: NonceCache,
}

fn setup() -> Setup {
    let mut rng = StdRng::seed_from_u64(7);
    let caller = SigningKey::generate(&mut rng);
    let axon = SigningKey::generate(&mut rng).verifying_key().to_bytes();
    Setup { caller, axon, fresh: Freshness { window_ms: 10_000 }, cache: NonceCache::new(1024) }
}

fn forward(s: &Setup, nonce: u64, ts: u64) -> ForwardRequest {
    let mut req = ForwardRequest {
        inputs: Some(OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 2], &[1.0, 2.0]).into_proto()),
        ..Default::default()
    };
    sign_forward(&mut req, &s.caller, &s.axon, nonce, ts);
    req
}

fn verify(s: &mut Setup, req: &ForwardRequest, now: u64) -> Result<(), AuthError> {
    verify_forward(req, &s.axon, now, &s.fresh, &mut s.cache).map(|_| ())
}

/// Signs a fresh request and verifies it at `now`.
fn sign_and_verify(s: &mut Setup, nonce: u64, ts: u64, now: u64) -> Result<(), AuthError> {
    let req = forward(s, nonce, ts);
    verify(s, &req, now)
}

#[test]
fn a_signed_request_verifies_and_names_its_caller() {
    let mut s = setup();
    let req = forward(&s, 1, NOW);
    let key = verify_forward(&req, &s.axon, NOW + 500, &s.fresh, &mut s.cache).unwrap();
    assert_eq!(key, s.caller.verifying_key());
}

#[test]
fn bad_signature_is_refused() {
    let mut s = setup();
    let mut req = forward(&s, 1, NOW);
    req.signature[0] ^= 1;
    let e = verify(&mut s, &req, NOW).unwrap_err();
    assert_eq!((e.clone(), e.code()), (AuthError::BadSignature, ReturnCode::InvalidSignature));
    // Refused requests do not burn the nonce: the genuine one still passes.
    assert!(sign_and_verify(&mut s, 1, NOW, NOW).is_ok());
}

#[test]
fn tampered_body_or_header_is_refused() {
    let mut s = setup();
    let mut req = forward(&s, 1, NOW);
    flip(&mut req.inputs.as_mut().unwrap().data, 0, 1);
    assert_eq!(verify(&mut s, &req, NOW), Err(AuthError::BadSignature));
    let mut req = forward(&s, 2, NOW);
    req.nonce = 3;
    assert_eq!(verify(&mut s, &req, NOW), Err(AuthError::BadSignature));
    let mut req = forward(&s, 4, NOW);
    req.timestamp_ms += 1;
    assert_eq!(verify(&mut s, &req, NOW), Err(AuthError::BadSignature));
}

#[test]
fn someone_elses_key_as_caller_is_refused() {
    let mut s = setup();
    let mut req = forward(&s, 1, NOW);
    req.caller = s.axon.to_vec();
    assert_eq!(verify(&mut s, &req, NOW), Err(AuthError::BadSignature));
}

#[test]
fn wrong_callee_is_refused() {
    let mut s = setup();
    let req = forward(&s, 1, NOW);
    let other = [9u8; 32];
    let e = verify_forward(&req, &other, NOW, &s.fresh, &mut s.cache).unwrap_err();
    assert_eq!((e.clone(), e.code()), (AuthError::WrongCallee, ReturnCode::InvalidSignature));
}

#[test]
fn stale_or_future_timestamp_is_refused() {
    let mut s = setup();
    let old = forward(&s, 1, NOW - 10_001);
    let e = verify(&mut s, &old, NOW).unwrap_err();
    assert_eq!(e, AuthError::Stale { timestamp_ms: NOW - 10_001, now_ms: NOW, window_ms: 10_000 });
    assert_eq!(e.code(), ReturnCode::InvalidSignature);
    let future = forward(&s, 2, NOW + 10_001);
    assert!(matches!(verify(&mut s, &future, NOW), Err(AuthError::Stale { .. })));
    // The edges of the window are accepted.
    assert!(sign_and_verify(&mut s, 3, NOW - 10_000, NOW).is_ok());
    assert!(sign_and_verify(&mut s, 4, NOW + 10_000, NOW).is_ok());
}

#[test]
fn replayed_nonce_is_refused() {
    let mut s = setup();
    let req = forward(&s, 42, NOW);
    assert!(verify(&mut s, &req, NOW).is_ok());
    let e = verify(&mut s, &req, NOW + 1).unwrap_err();
    assert_eq!((e.clone(), e.code()), (AuthError::Replayed { nonce: 42 }, ReturnCode::InvalidSignature));
    // Even re-signed with a new timestamp, the same nonce is a replay inside the window.
    assert_eq!(sign_and_verify(&mut s, 42, NOW + 2, NOW + 2), Err(AuthError::Replayed { nonce: 42 }));
}

#[test]
fn malformed_auth_fields_are_refused() {
    let mut s = setup();
    let mut req = forward(&s, 1, NOW);
    req.signature.pop();
    assert_eq!(verify(&mut s, &req, NOW), Err(AuthError::MalformedSignature(63)));
    let mut req = forward(&s, 2, NOW);
    req.caller = vec![1; 31];
    assert_eq!(verify(&mut s, &req, NOW), Err(AuthError::MalformedCaller(31)));
}

#[test]
fn forward_signature_is_not_a_backward_signature() {
    let mut s = setup();
    let fwd = forward(&s, 1, NOW);
    let bwd = BackwardRequest {
        inputs: fwd.inputs.clone(),
        caller: fwd.caller.clone(),
        callee: fwd.callee.clone(),
        nonce: fwd.nonce,
        timestamp_ms: fwd.timestamp_ms,
        signature: fwd.signature.clone(),
        ..Default::default()
    };
    let e = verify_backward(&bwd, &s.axon, NOW, &s.fresh, &mut s.cache).unwrap_err();
    assert_eq!(e, AuthError::BadSignature);
}

#[test]
fn backward_requests_sign_and_verify_with_the_same_checks() {
    let mut s = setup();
    let grads = OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 2], &[0.1, -0.1]).into_proto();
    let mut req = BackwardRequest { grads: Some(grads), ..Default::default() };
    sign_backward(&mut req, &s.caller, &s.axon, 5, NOW);
    assert!(verify_backward(&req, &s.axon, NOW, &s.fresh, &mut s.cache).is_ok());
    assert_eq!(
        verify_backward(&req, &s.axon, NOW, &s.fresh, &mut s.cache),
        Err(AuthError::Replayed { nonce: 5 })
    );
    let mut tampered = req.clone();
    flip(&mut tampered.grads.as_mut().unwrap().data, 3, 0x40);
    tampered.nonce = 6;
    assert_eq!(
        verify_backward(&tampered, &s.axon, NOW, &s.fresh, &mut s.cache),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn a_full_nonce_cache_forgets_the_oldest_but_never_reopens_a_replay() {
    let mut s = setup();
    s.cache = NonceCache::new(2);
    let a = forward(&s, 1, NOW);
    let b = forward(&s, 2, NOW + 1);
    let c = forward(&s, 3, NOW + 2);
    for req in [&a, &b, &c] {
        assert!(verify(&mut s, req, NOW + 2).is_ok());
    }
    assert_eq!(s.cache.len(), 2);
    // `a` was forgotten; replaying it hits the floor instead of passing.
    let e = verify(&mut s, &a, NOW + 3).unwrap_err();
    assert_eq!(e, AuthError::BelowReplayFloor { timestamp_ms: NOW, floor_ms: NOW });
    assert_eq!(e.code(), ReturnCode::Backoff);
    // A fresh request is still served.
    assert!(sign_and_verify(&mut s, 4, NOW + 3, NOW + 3).is_ok());
}

#[test]
fn expired_entries_leave_the_cache() {
    let mut s = setup();
    assert!(sign_and_verify(&mut s, 1, NOW, NOW).is_ok());
    assert_eq!(s.cache.len(), 1);
    assert!(sign_and_verify(&mut s, 2, NOW + 20_000, NOW + 20_000).is_ok());
    assert_eq!(s.cache.len(), 1);
}

/// Flips bits of one byte of a tensor's (shared, immutable) bytes.
fn flip(data: &mut prost::bytes::Bytes, index: usize, mask: u8) {
    let mut v = data.to_vec();
    v[index] ^= mask;
    *data = v.into();
}
