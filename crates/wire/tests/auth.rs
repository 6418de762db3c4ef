//! Request authentication (protocol 5: a session opened by a signed handshake, then a keyed
//! BLAKE3 MAC per call, credentials in metadata, BLAKE3 body digest): a good call passes once;
//! a bad MAC, a tampered field, another session, a stale or future timestamp, a replayed nonce
//! and an old-format call are each refused with their code; a handshake for another axon or
//! signed by another key opens nothing; the replay cache cannot be exhausted by one caller for
//! another (issue 13).

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tonic::codegen::http::{HeaderMap, HeaderValue};
use wire::auth::keys;
use wire::auth::session::{Initiator, Offer};
use wire::metrics::Call;
use wire::proto::{ForwardRequest, ReturnCode};
use wire::{
    AuthError, Authenticated, BodyDigest, Credentials, Freshness, Modality, NonceCache, OwnedTensor, Session,
    Tier,
};

const NOW: u64 = 1_800_000_000_000;

struct Setup {
    caller: SigningKey,
    axon: SigningKey,
    /// The dendrite's and the axon's ends of one session.
    mine: Session,
    theirs: Session,
    fresh: Freshness,
    cache: NonceCache,
}

/// A session between `caller` and `axon`, through the real handshake messages.
fn open(caller: &SigningKey, axon: &SigningKey, fresh: &Freshness) -> (Session, Session) {
    let me = axon.verifying_key().to_bytes();
    let initiator = Initiator::new(caller, &me, NOW);
    let offer = Offer::from_proto(initiator.request()).unwrap();
    offer.verify(&caller.verifying_key(), &me, NOW, fresh).unwrap();
    let (answer, theirs) = offer.accept(axon).unwrap();
    (initiator.finish(&axon.verifying_key(), &answer).unwrap(), theirs)
}

fn setup() -> Setup {
    let mut rng = StdRng::seed_from_u64(7);
    let caller = SigningKey::generate(&mut rng);
    let axon = SigningKey::generate(&mut rng);
    let fresh = Freshness { window_ms: 10_000, max_future_ms: 2_000 };
    let (mine, theirs) = open(&caller, &axon, &fresh);
    Setup { caller, axon, mine, theirs, fresh, cache: NonceCache::new(1024) }
}

fn body() -> BodyDigest {
    let req = ForwardRequest {
        inputs: Some(OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 2], &[1.0, 2.0]).into_proto()),
        ..Default::default()
    };
    BodyDigest::of_message(&req)
}

fn creds(s: &Setup, nonce: u64, ts: u64) -> Credentials {
    s.mine.credentials(Call::Forward, nonce, ts, body())
}

/// Authenticates at `now` in the axon's end of the session, then admits into the cache as a
/// staked caller.
fn verify(s: &mut Setup, c: &Credentials, now: u64) -> Result<Authenticated, AuthError> {
    let auth = s.theirs.authenticate(c, Call::Forward, now, &s.fresh)?;
    s.cache.admit(&auth, Tier::Staked, now, &s.fresh)?;
    Ok(auth)
}

fn sign_and_verify(s: &mut Setup, nonce: u64, ts: u64, now: u64) -> Result<Authenticated, AuthError> {
    let c = creds(s, nonce, ts);
    verify(s, &c, now)
}

fn headers(c: &Credentials) -> HeaderMap {
    let mut h = HeaderMap::new();
    c.write_headers(&mut h);
    h
}

#[test]
fn a_maced_call_verifies_and_names_its_caller_after_a_round_trip_through_metadata() {
    let mut s = setup();
    let c = creds(&s, 1, NOW);
    let h = headers(&c);
    assert_eq!(h.get(keys::VERSION).unwrap(), "5");
    assert_eq!(h.get(keys::SESSION).unwrap().to_str().unwrap(), hex::encode(s.mine.id));
    assert!(h.get(keys::DIGEST).unwrap().to_str().unwrap().starts_with("blake3:"));
    let back = Credentials::from_headers(&h).unwrap();
    assert_eq!(back, c);
    let auth = verify(&mut s, &back, NOW + 500).unwrap();
    assert_eq!(auth.caller, s.caller.verifying_key().to_bytes());
}

#[test]
fn bad_mac_is_refused_and_does_not_burn_the_nonce() {
    let mut s = setup();
    let mut c = creds(&s, 1, NOW);
    c.mac[0] ^= 1;
    let e = verify(&mut s, &c, NOW).unwrap_err();
    assert_eq!((e.clone(), e.code()), (AuthError::BadMac, ReturnCode::InvalidSignature));
    assert!(sign_and_verify(&mut s, 1, NOW, NOW).is_ok());
}

#[test]
fn every_maced_field_is_covered_and_a_mac_holds_in_its_own_session_only() {
    let s = setup();
    let base = creds(&s, 1, NOW);
    type Tamper = fn(&mut Credentials);
    let tampered: [(&str, Tamper); 4] = [
        ("nonce", |c| c.nonce += 1),
        ("timestamp", |c| c.timestamp_ms += 1),
        ("body length", |c| c.body.len += 1),
        ("digest", |c| c.body.hash[0] ^= 1),
    ];
    for (what, change) in tampered {
        let mut c = base;
        change(&mut c);
        assert_eq!(s.theirs.authenticate(&c, Call::Forward, NOW, &s.fresh), Err(AuthError::BadMac), "{what}");
    }
    // A Forward MAC is not a Backward one.
    assert_eq!(s.theirs.authenticate(&base, Call::Backward, NOW, &s.fresh), Err(AuthError::BadMac));
    // The same call replayed into another session of the same two keys (another connection),
    // or into a session of another caller with this axon: other keys.
    let (_, again) = open(&s.caller, &s.axon, &s.fresh);
    assert_eq!(again.authenticate(&base, Call::Forward, NOW, &s.fresh), Err(AuthError::BadMac));
    let (_, stranger) = open(&SigningKey::from_bytes(&[9; 32]), &s.axon, &s.fresh);
    assert_eq!(stranger.authenticate(&base, Call::Forward, NOW, &s.fresh), Err(AuthError::BadMac));
}

#[test]
fn a_handshake_for_another_axon_or_under_another_key_opens_nothing() {
    let s = setup();
    let me = s.axon.verifying_key().to_bytes();
    let initiator = Initiator::new(&s.caller, &me, NOW);
    let offer = Offer::from_proto(initiator.request()).unwrap();
    let e = offer.verify(&s.caller.verifying_key(), &[9; 32], NOW, &s.fresh).unwrap_err();
    assert_eq!((e.clone(), e.code()), (AuthError::WrongCallee, ReturnCode::InvalidSignature));
    let other = SigningKey::from_bytes(&[8; 32]);
    let mut claimed = initiator.request().clone();
    claimed.caller = other.verifying_key().to_bytes().to_vec();
    let e =
        Offer::from_proto(&claimed).unwrap().verify(&other.verifying_key(), &me, NOW, &s.fresh).unwrap_err();
    assert_eq!(e, AuthError::BadSignature);
    let e = offer.verify(&s.caller.verifying_key(), &me, NOW + 10_001, &s.fresh).unwrap_err();
    assert!(matches!(e, AuthError::Stale { .. }), "{e}");
    let mut short = initiator.request().clone();
    short.ephemeral = vec![1; 31];
    let e = Offer::from_proto(&short).unwrap_err();
    assert_eq!(e, AuthError::MalformedHandshake { field: "ephemeral", expected: 32, got: 31 });
    short.caller = vec![1; 31];
    assert_eq!(Offer::from_proto(&short).unwrap_err(), AuthError::MalformedCaller(31));
}

#[test]
fn stale_or_future_timestamps_are_refused_and_the_future_window_is_short() {
    let mut s = setup();
    let e = sign_and_verify(&mut s, 1, NOW - 10_001, NOW).unwrap_err();
    assert_eq!(e, AuthError::Stale { timestamp_ms: NOW - 10_001, now_ms: NOW, window_ms: 10_000 });
    assert_eq!(e.code(), ReturnCode::InvalidSignature);
    let e = sign_and_verify(&mut s, 2, NOW + 2_001, NOW).unwrap_err();
    assert_eq!(e, AuthError::FromTheFuture { timestamp_ms: NOW + 2_001, now_ms: NOW, max_future_ms: 2_000 });
    // The edges are accepted.
    assert!(sign_and_verify(&mut s, 3, NOW - 10_000, NOW).is_ok());
    assert!(sign_and_verify(&mut s, 4, NOW + 2_000, NOW).is_ok());
    assert!(Freshness::default().max_future_ms < Freshness::default().window_ms / 10);
}

#[test]
fn replayed_nonce_is_refused() {
    let mut s = setup();
    let c = creds(&s, 42, NOW);
    assert!(verify(&mut s, &c, NOW).is_ok());
    let e = verify(&mut s, &c, NOW + 1).unwrap_err();
    assert_eq!((e.clone(), e.code()), (AuthError::Replayed { nonce: 42 }, ReturnCode::InvalidSignature));
    // Even MACed anew with a new timestamp, the same nonce is a replay inside the window.
    assert_eq!(sign_and_verify(&mut s, 42, NOW + 2, NOW + 2), Err(AuthError::Replayed { nonce: 42 }));
}

#[test]
fn malformed_or_old_format_metadata_is_refused_with_its_code() {
    let s = setup();
    let good = headers(&creds(&s, 1, NOW));
    let with = |key: &'static str, value: Option<&str>| {
        let mut h = good.clone();
        match value {
            Some(v) => h.insert(key, HeaderValue::from_str(v).unwrap()),
            None => h.remove(key),
        };
        Credentials::from_headers(&h).unwrap_err()
    };
    // Protocol 1 sent no version at all.
    let e = with(keys::VERSION, None);
    assert_eq!((e.clone(), e.code()), (AuthError::MissingVersion, ReturnCode::UnsupportedVersion));
    assert!(e.to_string().contains("protocol 5"), "{e}");
    // Protocol 2 (sha256 digests) is refused with a message that says what changed.
    let e = with(keys::VERSION, Some("2"));
    assert_eq!(
        (e.clone(), e.code()),
        (AuthError::UnsupportedVersion("2".into()), ReturnCode::UnsupportedVersion)
    );
    assert!(e.to_string().contains("sha256") && e.to_string().contains("blake3"), "{e}");
    // Protocols 3 (unsigned answers) and 4 (a signature per call) are refused too, and told why.
    let e = with(keys::VERSION, Some("3"));
    assert_eq!(e, AuthError::UnsupportedVersion("3".into()));
    assert!(e.to_string().contains("unsigned answers"), "{e}");
    let e = with(keys::VERSION, Some("4"));
    assert_eq!(e, AuthError::UnsupportedVersion("4".into()));
    assert!(e.to_string().contains("signs a handshake once per connection"), "{e}");
    let e = with(keys::VERSION, Some("6"));
    assert_eq!(e, AuthError::UnsupportedVersion("6".into()));
    let e = with(keys::DIGEST, Some(&format!("sha256:{}", "00".repeat(32))));
    assert_eq!(
        (e.clone(), e.code()),
        (AuthError::UnsupportedDigest("sha256".into()), ReturnCode::UnsupportedVersion)
    );
    assert!(matches!(
        with(keys::SESSION, Some(&"11".repeat(15))),
        AuthError::MalformedField { key: keys::SESSION, .. }
    ));
    assert!(matches!(
        with(keys::MAC, Some(&"11".repeat(31))),
        AuthError::MalformedField { key: keys::MAC, .. }
    ));
    assert_eq!(with(keys::MAC, None), AuthError::MissingField(keys::MAC));
    assert_eq!(with(keys::NONCE, None), AuthError::MissingField(keys::NONCE));
    assert!(matches!(with(keys::NONCE, Some("-1")), AuthError::MalformedField { key: keys::NONCE, .. }));
    assert!(matches!(
        with(keys::DIGEST, Some("blake3")),
        AuthError::MalformedField { key: keys::DIGEST, .. }
    ));
    assert!(matches!(with(keys::SESSION, Some("zz")), AuthError::MalformedField { key: keys::SESSION, .. }));
}

#[test]
fn a_full_nonce_cache_forgets_the_oldest_but_never_reopens_a_replay() {
    let mut s = setup();
    s.cache = NonceCache::new(2);
    let (a, b, c) = (creds(&s, 1, NOW), creds(&s, 2, NOW + 1), creds(&s, 3, NOW + 2));
    for x in [&a, &b, &c] {
        assert!(verify(&mut s, x, NOW + 2).is_ok());
    }
    assert_eq!(s.cache.len(), 2);
    // `a` was forgotten; replaying it hits this caller's floor instead of passing.
    let e = verify(&mut s, &a, NOW + 3).unwrap_err();
    assert_eq!(e, AuthError::BelowReplayFloor { timestamp_ms: NOW, floor_ms: NOW });
    assert_eq!(e.code(), ReturnCode::Backoff);
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

fn auth(caller: u8, nonce: u64, ts: u64) -> Authenticated {
    Authenticated { caller: [caller; 32], nonce, timestamp_ms: ts }
}

/// Issue 13, the exact attack on the cache: a registered zero-stake hotkey fills the replay
/// cache with future-dated requests (as far ahead as the axon accepts) and keeps flooding; a
/// staked caller's fresh requests must all pass. Before per-caller floors, the forgotten
/// future timestamps became one floor above the clock and every honest request got BACKOFF.
#[test]
fn a_future_dated_flood_from_a_zero_stake_key_locks_out_only_itself() {
    let fresh = Freshness::default();
    let mut cache = NonceCache::new(1_000);
    let (flooder, honest) = (1u8, 2u8);
    let mut backoffs = 0;
    for i in 0..5_000u64 {
        let now = NOW + i / 10; // 10 requests a millisecond
        let _ = cache.admit(&auth(flooder, i, now + fresh.max_future_ms), Tier::Unstaked, now, &fresh);
        if i % 50 == 0 {
            match cache.admit(&auth(honest, i, now), Tier::Staked, now, &fresh) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.code(), ReturnCode::Backoff, "{e}");
                    backoffs += 1;
                }
            }
        }
    }
    assert_eq!(backoffs, 0, "the staked caller was refused");
    assert!(cache.len() <= 1_000);
    // The flooder's own floor now sits in the future: its next request at the clock is refused.
    let now = NOW + 500;
    assert!(cache.floor_of(&[flooder; 32]).unwrap() > now);
    assert_eq!(
        cache.admit(&auth(flooder, 99_999, now), Tier::Unstaked, now, &fresh).unwrap_err().code(),
        ReturnCode::Backoff
    );
}

/// The same attack between two staked callers, and between two zero-stake ones: per-caller
/// floors protect each honest caller whatever its tier.
#[test]
fn a_flood_cannot_lock_out_a_caller_of_the_same_tier() {
    let fresh = Freshness::default();
    for tier in [Tier::Staked, Tier::Unstaked] {
        let mut cache = NonceCache::new(500);
        for i in 0..3_000u64 {
            let now = NOW + i / 10;
            let _ = cache.admit(&auth(1, i, now + fresh.max_future_ms), tier, now, &fresh);
            if i % 30 == 0 {
                assert_eq!(cache.admit(&auth(2, i, now), tier, now, &fresh), Ok(()), "{tier:?} at {i}");
            }
        }
    }
}

/// Many zero-stake keys (a sybil swarm) fill the records kept for callers without stake: new
/// zero-stake callers are told to back off until records expire; staked and trusted callers
/// never notice.
#[test]
fn a_swarm_of_zero_stake_keys_never_reaches_staked_callers() {
    let fresh = Freshness::default();
    let mut cache = NonceCache::with_unstaked_callers(400, 50);
    for i in 0..2_000u64 {
        let now = NOW + i;
        let key = (i % 200) as u8 + 10; // 200 keys, room for 50 records
        let _ = cache.admit(&auth(key, i, now + fresh.max_future_ms), Tier::Unstaked, now, &fresh);
        if i % 20 == 0 {
            assert_eq!(cache.admit(&auth(1, i, now), Tier::Staked, now, &fresh), Ok(()), "at {i}");
        }
    }
    let now = NOW + 2_000;
    let e = cache.admit(&auth(3, 1, now), Tier::Unstaked, now, &fresh).unwrap_err();
    assert!(matches!(e, AuthError::TooManyUnstakedCallers { callers: 50, .. }), "{e}");
    assert_eq!(e.code(), ReturnCode::Backoff);
    // Once the swarm's records leave the window, a zero-stake newcomer is served.
    let later = now + fresh.window_ms + fresh.max_future_ms + 1;
    assert_eq!(cache.admit(&auth(3, 2, later), Tier::Unstaked, later, &fresh), Ok(()));
}
