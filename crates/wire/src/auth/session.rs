//! Sessions (protocol 5, issue 15): a dendrite and an axon authenticate each other once per
//! connection, with their hotkeys, and each call and answer on it with a MAC.
//!
//! The handshake is one unary call, `/agora.v1.Axon/Handshake` ([`HANDSHAKE_PATH`]), before the
//! first Forward or Backward of a connection:
//!
//! ```text
//! request  = field("agora/5/handshake") || field(caller) || field(callee)
//!              || field(ephemeral_d) || u64le(timestamp_ms)            signed by the caller
//! response = field("agora/5/handshake/axon") || field(BLAKE3(request)) || field(responder)
//!              || u64le(code) || field(message) || field(ephemeral_a) || field(session_id)
//!                                                                      signed by the axon
//! shared   = X25519(ephemeral secret, the other side's ephemeral public key)   (not all zero)
//! ikm      = shared || BLAKE3(response)
//! request_key  = BLAKE3-derive_key("agora protocol 5 request mac", ikm)
//! response_key = BLAKE3-derive_key("agora protocol 5 response mac", ikm)
//! field(x) = u64le(len(x)) || x
//! ```
//!
//! Both ephemeral keys are fresh per handshake and both are under both signatures (the
//! response's covers the request through its hash), so only the two hotkeys that signed can
//! hold the keys: a man in the middle who swaps an ephemeral key breaks a signature, and an
//! eavesdropper sees only public values. Each later call carries `agora-session` and a keyed
//! BLAKE3 under `request_key` (crate::auth::request_message), each answer one under
//! `response_key` (crate::auth::response); a keyed BLAKE3 of a call's 150 bytes costs well under
//! a microsecond where protocol 4's ed25519 signature and verification cost about 60 us per
//! call and side.
//!
//! What a MAC gives up against a signature:
//! - Non-repudiation. Both ends hold the keys, so the dendrite could compute an answer "from"
//!   the axon: a MAC convinces only the dendrite that asked, never a third party. Nothing in
//!   Agora shows an axon's answer to a third party: copy detection (`peer::copies`) compares
//!   the answers a validator received itself and the model versions they named, checked by
//!   that validator, against versions published on chain by the axons' own transactions; no
//!   answer or its signature is forwarded, stored on chain or used as evidence. A future
//!   feature that must prove to others what an axon answered needs a signature on that answer
//!   (protocol 4's, `agora/4/response`, is the design to restore for it).
//! - Replay across connections: a session's keys are its own, so a call or answer replayed
//!   under another session fails its MAC; inside a session the axon's replay cache refuses a
//!   `(caller, nonce)` seen within the freshness window, as in protocol 4, and an answer is
//!   bound to its request's hash (nonce and timestamp included). A replayed handshake request
//!   makes the axon open a session whose keys the replayer cannot compute (it lacks the
//!   ephemeral secret): it costs the axon one bounded table entry, no more; the timestamp must be
//!   fresh all the same.
//! - Compromise: a session's keys sit in both processes' memory for the session's life; sessions
//!   expire ([`SessionTable`]) and a new connection opens a new one.
//!
//! The axon's table is bounded: at most [`SESSIONS_PER_CALLER`] per caller (a caller's oldest is
//! dropped for its newest), and overall `capacity`, unstaked callers' sessions dropped first. A
//! dropped session's next call is answered UNAUTHENTICATED and the dendrite handshakes again.

use std::collections::{HashMap, VecDeque};

use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::{
    field, request_message, AuthError, Authenticated, BodyDigest, Credentials, Freshness, PROTOCOL_VERSION,
};
use crate::metrics::Call;
use crate::proto::{self, ReturnCode};

/// The handshake's gRPC method.
pub const HANDSHAKE_PATH: &str = "/agora.v1.Axon/Handshake";

/// Sessions one caller may hold at an axon at once: a dendrite opens one per connection, and
/// rarely keeps more than one connection to an axon.
pub const SESSIONS_PER_CALLER: usize = 4;

const REQUEST_KEY_CONTEXT: &str = "agora protocol 5 request mac";
const RESPONSE_KEY_CONTEXT: &str = "agora protocol 5 response mac";

/// The bytes the caller signs to open a session.
pub fn handshake_request_message(
    caller: &[u8; 32],
    callee: &[u8; 32],
    ephemeral: &[u8; 32],
    timestamp_ms: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    field(&mut out, format!("agora/{PROTOCOL_VERSION}/handshake").as_bytes());
    field(&mut out, caller);
    field(&mut out, callee);
    field(&mut out, ephemeral);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out
}

/// The bytes the axon signs to accept (or refuse) a session: the request's hash binds the
/// answer to the caller's ephemeral key; a refusal has empty `ephemeral` and `session`.
pub fn handshake_response_message(
    request_hash: &[u8; 32],
    responder: &[u8; 32],
    code: i32,
    message: &str,
    ephemeral: &[u8],
    session: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(200 + message.len());
    field(&mut out, format!("agora/{PROTOCOL_VERSION}/handshake/axon").as_bytes());
    field(&mut out, request_hash);
    field(&mut out, responder);
    out.extend_from_slice(&(code as i64 as u64).to_le_bytes());
    field(&mut out, message.as_bytes());
    field(&mut out, ephemeral);
    field(&mut out, session);
    out
}

/// One side's view of an open session: who is on each end and the two MAC keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The session id the axon chose.
    pub id: [u8; 16],
    /// The dendrite's hotkey.
    pub caller: [u8; 32],
    /// The axon's hotkey.
    pub axon: [u8; 32],
    request_key: [u8; 32],
    response_key: [u8; 32],
}

impl std::fmt::Debug for Session {
    // The keys are secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &hex::encode(self.id))
            .field("caller", &hex::encode(self.caller))
            .field("axon", &hex::encode(self.axon))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The keys of a session from its agreed secret and the signed response's bytes.
    fn derive(id: [u8; 16], caller: [u8; 32], axon: [u8; 32], shared: &[u8; 32], response: &[u8]) -> Session {
        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(shared);
        ikm[32..].copy_from_slice(blake3::hash(response).as_bytes());
        Session {
            id,
            caller,
            axon,
            request_key: blake3::derive_key(REQUEST_KEY_CONTEXT, &ikm),
            response_key: blake3::derive_key(RESPONSE_KEY_CONTEXT, &ikm),
        }
    }

    /// The credentials of a call of `body` in this session.
    pub fn credentials(&self, call: Call, nonce: u64, timestamp_ms: u64, body: BodyDigest) -> Credentials {
        let mac = blake3::keyed_hash(&self.request_key, &request_message(call, nonce, timestamp_ms, &body));
        Credentials {
            version: PROTOCOL_VERSION,
            session: self.id,
            nonce,
            timestamp_ms,
            body,
            mac: mac.into(),
        }
    }

    /// Checks a call's freshness and MAC, without reading the body (its digest is checked when
    /// it arrives) and without touching any replay cache ([`super::NonceCache::admit`]).
    pub fn authenticate(
        &self,
        creds: &Credentials,
        call: Call,
        now_ms: u64,
        freshness: &Freshness,
    ) -> Result<Authenticated, AuthError> {
        freshness.check(creds.timestamp_ms, now_ms)?;
        let message = request_message(call, creds.nonce, creds.timestamp_ms, &creds.body);
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(&self.request_key, &message) != blake3::Hash::from(creds.mac) {
            return Err(AuthError::BadMac);
        }
        Ok(Authenticated { caller: self.caller, nonce: creds.nonce, timestamp_ms: creds.timestamp_ms })
    }

    pub(crate) fn response_mac(&self, message: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.response_key, message)
    }
}

fn sized<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], AuthError> {
    bytes.try_into().map_err(|_| AuthError::MalformedHandshake { field, expected: N, got: bytes.len() })
}

/// X25519 of `secret` with `public`, refused when the result is all zero (a low-order point).
fn agree(secret: &[u8; 32], public: &[u8; 32]) -> Result<[u8; 32], AuthError> {
    let shared = MontgomeryPoint(*public).mul_clamped(*secret).to_bytes();
    if shared == [0; 32] {
        return Err(AuthError::WeakEphemeral);
    }
    Ok(shared)
}

/// The dendrite's side of a handshake in progress: its ephemeral secret and what it sent.
pub struct Initiator {
    secret: [u8; 32],
    request: proto::HandshakeRequest,
    request_hash: [u8; 32],
    caller: [u8; 32],
    callee: [u8; 32],
}

/// Why a dendrite could not open a session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The axon answered the handshake with a refusal it signed.
    #[error("the axon refused the session: {message}")]
    Refused {
        /// Its return code.
        code: ReturnCode,
        /// Its reason.
        message: String,
    },
    /// A field of the axon's answer has the wrong size or a weak key.
    #[error("the axon's handshake answer is malformed: {0}")]
    Malformed(AuthError),
    /// The answer's signature is not the called axon's: someone else answered.
    #[error("the axon's handshake answer is not signed by the axon called")]
    BadSignature,
}

impl HandshakeError {
    /// The code a call reports when its session could not be opened: the axon's own refusal
    /// (signed, so known to be its word), else INVALID_RESPONSE_SIGNATURE.
    pub fn code(&self) -> ReturnCode {
        match self {
            HandshakeError::Refused { code, .. } => *code,
            _ => ReturnCode::InvalidResponseSignature,
        }
    }
}

impl Initiator {
    /// A handshake from `key`'s hotkey to the axon `callee`, with a fresh ephemeral key.
    pub fn new(key: &SigningKey, callee: &[u8; 32], timestamp_ms: u64) -> Initiator {
        let secret: [u8; 32] = rand::random();
        let ephemeral = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        let caller = key.verifying_key().to_bytes();
        let message = handshake_request_message(&caller, callee, &ephemeral, timestamp_ms);
        let request = proto::HandshakeRequest {
            caller: caller.to_vec(),
            callee: callee.to_vec(),
            ephemeral: ephemeral.to_vec(),
            timestamp_ms,
            signature: key.sign(&message).to_bytes().to_vec(),
        };
        Initiator { secret, request, request_hash: blake3::hash(&message).into(), caller, callee: *callee }
    }

    /// The signed handshake request to send.
    pub fn request(&self) -> &proto::HandshakeRequest {
        &self.request
    }

    /// The session, once the axon's answer verifies under `axon` (the hotkey called).
    pub fn finish(
        self,
        axon: &VerifyingKey,
        response: &proto::HandshakeResponse,
    ) -> Result<Session, HandshakeError> {
        debug_assert_eq!(axon.as_bytes(), &self.callee);
        let message = handshake_response_message(
            &self.request_hash,
            &self.callee,
            response.code,
            &response.message,
            &response.ephemeral,
            &response.session,
        );
        let signature: [u8; 64] =
            sized(&response.signature, "signature").map_err(HandshakeError::Malformed)?;
        axon.verify(&message, &Signature::from_bytes(&signature))
            .map_err(|_| HandshakeError::BadSignature)?;
        if response.code != ReturnCode::Success as i32 {
            let code = ReturnCode::try_from(response.code).unwrap_or(ReturnCode::InternalError);
            return Err(HandshakeError::Refused { code, message: response.message.clone() });
        }
        let ephemeral: [u8; 32] =
            sized(&response.ephemeral, "ephemeral").map_err(HandshakeError::Malformed)?;
        let id: [u8; 16] = sized(&response.session, "session").map_err(HandshakeError::Malformed)?;
        let shared = agree(&self.secret, &ephemeral).map_err(HandshakeError::Malformed)?;
        Ok(Session::derive(id, self.caller, self.callee, &shared, &message))
    }
}

/// A handshake request as the axon reads it, its fields checked for size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The dendrite's hotkey.
    pub caller: [u8; 32],
    /// The axon it is addressed to.
    pub callee: [u8; 32],
    /// The dendrite's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
    /// The dendrite's clock at the handshake.
    pub timestamp_ms: u64,
    signature: [u8; 64],
}

impl Offer {
    /// Reads a handshake request, checking each field's size (the signature is checked later).
    pub fn from_proto(request: &proto::HandshakeRequest) -> Result<Offer, AuthError> {
        let caller: [u8; 32] =
            request.caller[..].try_into().map_err(|_| AuthError::MalformedCaller(request.caller.len()))?;
        Ok(Offer {
            caller,
            callee: sized(&request.callee, "callee")?,
            ephemeral: sized(&request.ephemeral, "ephemeral")?,
            timestamp_ms: request.timestamp_ms,
            signature: sized(&request.signature, "signature")?,
        })
    }

    fn message(&self) -> Vec<u8> {
        handshake_request_message(&self.caller, &self.callee, &self.ephemeral, self.timestamp_ms)
    }

    /// Checks the callee, freshness and the caller's signature (`key`: the caller's hotkey,
    /// decompressed).
    pub fn verify(
        &self,
        key: &VerifyingKey,
        me: &[u8; 32],
        now_ms: u64,
        freshness: &Freshness,
    ) -> Result<(), AuthError> {
        debug_assert_eq!(key.as_bytes(), &self.caller);
        if &self.callee != me {
            return Err(AuthError::WrongCallee);
        }
        freshness.check(self.timestamp_ms, now_ms)?;
        key.verify(&self.message(), &Signature::from_bytes(&self.signature))
            .map_err(|_| AuthError::BadSignature)
    }

    /// Opens the session (the offer verified): the signed answer and the axon's side of it.
    pub fn accept(&self, key: &SigningKey) -> Result<(proto::HandshakeResponse, Session), AuthError> {
        let secret: [u8; 32] = rand::random();
        let ephemeral = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        let shared = agree(&secret, &self.ephemeral)?;
        let id: [u8; 16] = rand::random();
        let me = key.verifying_key().to_bytes();
        let request_hash: [u8; 32] = blake3::hash(&self.message()).into();
        let code = ReturnCode::Success as i32;
        let message = handshake_response_message(&request_hash, &me, code, "", &ephemeral, &id);
        let response = proto::HandshakeResponse {
            code,
            message: String::new(),
            ephemeral: ephemeral.to_vec(),
            session: id.to_vec(),
            signature: key.sign(&message).to_bytes().to_vec(),
        };
        Ok((response, Session::derive(id, self.caller, me, &shared, &message)))
    }
}

/// A signed refusal of a handshake (`offer`: the request as read, `None` when it could not be
/// read: the answer is then bound to no request and a dendrite cannot take it as its own).
pub fn refuse(
    key: &SigningKey,
    offer: Option<&Offer>,
    code: ReturnCode,
    why: &str,
) -> proto::HandshakeResponse {
    let request_hash: [u8; 32] = offer.map_or([0; 32], |o| blake3::hash(&o.message()).into());
    let me = key.verifying_key().to_bytes();
    let message = handshake_response_message(&request_hash, &me, code as i32, why, &[], &[]);
    proto::HandshakeResponse {
        code: code as i32,
        message: why.to_string(),
        signature: key.sign(&message).to_bytes().to_vec(),
        ..Default::default()
    }
}

/// An axon's open sessions, bounded (see the module's doc).
pub struct SessionTable {
    capacity: usize,
    lifetime_ms: u64,
    sessions: HashMap<[u8; 16], Entry>,
    by_caller: HashMap<[u8; 32], VecDeque<[u8; 16]>>,
    /// Ids in opening order, per tier (unstaked first to go); may hold ids already dropped.
    staked: VecDeque<[u8; 16]>,
    unstaked: VecDeque<[u8; 16]>,
}

struct Entry {
    session: Session,
    opened_ms: u64,
}

impl SessionTable {
    /// At most `capacity` sessions, each for at most `lifetime_ms`.
    pub fn new(capacity: usize, lifetime_ms: u64) -> SessionTable {
        SessionTable {
            capacity: capacity.max(1),
            lifetime_ms,
            sessions: HashMap::new(),
            by_caller: HashMap::new(),
            staked: VecDeque::new(),
            unstaked: VecDeque::new(),
        }
    }

    /// Sessions open.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Keeps `session`, opened now by a caller with (`staked`) or without stake.
    pub fn insert(&mut self, session: Session, staked: bool, now_ms: u64) {
        let caller = session.caller;
        let mine = self.by_caller.entry(caller).or_default();
        mine.retain(|id| self.sessions.contains_key(id));
        if mine.len() >= SESSIONS_PER_CALLER {
            if let Some(oldest) = mine.pop_front() {
                self.sessions.remove(&oldest);
            }
        }
        while self.sessions.len() >= self.capacity {
            let Some(victim) = self.unstaked.pop_front().or_else(|| self.staked.pop_front()) else { break };
            self.remove(&victim);
        }
        let id = session.id;
        self.by_caller.entry(caller).or_default().push_back(id);
        if staked { &mut self.staked } else { &mut self.unstaked }.push_back(id);
        self.sessions.insert(id, Entry { session, opened_ms: now_ms });
        // The order queues only grow by what was inserted; trim ids dropped meanwhile.
        if self.staked.len() + self.unstaked.len() > 2 * self.capacity {
            let live = &self.sessions;
            self.staked.retain(|id| live.contains_key(id));
            self.unstaked.retain(|id| live.contains_key(id));
        }
    }

    fn remove(&mut self, id: &[u8; 16]) {
        if let Some(e) = self.sessions.remove(id) {
            if let Some(mine) = self.by_caller.get_mut(&e.session.caller) {
                mine.retain(|i| i != id);
                if mine.is_empty() {
                    self.by_caller.remove(&e.session.caller);
                }
            }
        }
    }

    /// The session `id`, unless unknown or expired (an expired one is dropped).
    pub fn get(&mut self, id: &[u8; 16], now_ms: u64) -> Option<Session> {
        let e = self.sessions.get(id)?;
        if now_ms >= e.opened_ms.saturating_add(self.lifetime_ms) {
            self.remove(id);
            return None;
        }
        Some(e.session.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    const FRESH: Freshness = Freshness { window_ms: 30_000, max_future_ms: 2_000 };

    /// Both ends of a session of hotkey `caller` with axon `axon` (seeds).
    pub(crate) fn open(caller: u8, axon: u8) -> (Session, Session) {
        let i = Initiator::new(&key(caller), &key(axon).verifying_key().to_bytes(), 1_000);
        let offer = Offer::from_proto(i.request()).unwrap();
        offer
            .verify(&key(caller).verifying_key(), &key(axon).verifying_key().to_bytes(), 1_000, &FRESH)
            .unwrap();
        let (response, theirs) = offer.accept(&key(axon)).unwrap();
        (i.finish(&key(axon).verifying_key(), &response).unwrap(), theirs)
    }

    #[test]
    fn both_sides_agree_on_the_session_and_a_fresh_handshake_gives_fresh_keys() {
        let (mine, theirs) = open(1, 2);
        assert_eq!(mine, theirs);
        assert_eq!(mine.caller, key(1).verifying_key().to_bytes());
        assert_eq!(mine.axon, key(2).verifying_key().to_bytes());
        let (again, _) = open(1, 2);
        assert_ne!(again.request_key, mine.request_key);
        assert_ne!(again.id, mine.id);
        assert!(!format!("{mine:?}").contains(&hex::encode(mine.request_key)), "keys stay out of logs");
    }

    #[test]
    fn a_handshake_signed_by_another_key_or_for_another_axon_is_refused() {
        let axon = key(2).verifying_key().to_bytes();
        let i = Initiator::new(&key(1), &axon, 1_000);
        let mut forged = i.request().clone();
        forged.caller = key(3).verifying_key().to_bytes().to_vec();
        let offer = Offer::from_proto(&forged).unwrap();
        assert_eq!(offer.verify(&key(3).verifying_key(), &axon, 1_000, &FRESH), Err(AuthError::BadSignature));
        let offer = Offer::from_proto(i.request()).unwrap();
        let other = key(4).verifying_key().to_bytes();
        assert_eq!(offer.verify(&key(1).verifying_key(), &other, 1_000, &FRESH), Err(AuthError::WrongCallee));
        assert!(matches!(
            offer.verify(&key(1).verifying_key(), &axon, 60_000, &FRESH),
            Err(AuthError::Stale { .. })
        ));
        // The answer of another axon key (a man in the middle, or a copier's own) does not verify.
        let (response, _) = offer.accept(&key(5)).unwrap();
        assert_eq!(i.finish(&key(2).verifying_key(), &response).unwrap_err(), HandshakeError::BadSignature);
    }

    #[test]
    fn a_swapped_ephemeral_key_or_a_low_order_point_never_opens_a_session() {
        let axon = key(2).verifying_key().to_bytes();
        let i = Initiator::new(&key(1), &axon, 1_000);
        let offer = Offer::from_proto(i.request()).unwrap();
        let (mut response, _) = offer.accept(&key(2)).unwrap();
        response.ephemeral = MontgomeryPoint::mul_base_clamped([9; 32]).to_bytes().to_vec();
        assert_eq!(i.finish(&key(2).verifying_key(), &response).unwrap_err(), HandshakeError::BadSignature);
        let weak = Offer { ephemeral: [0; 32], ..offer };
        assert_eq!(weak.accept(&key(2)).unwrap_err(), AuthError::WeakEphemeral);
        // A refusal is signed and reported with the axon's code.
        let i = Initiator::new(&key(1), &axon, 1_000);
        let offer = Offer::from_proto(i.request()).unwrap();
        let no = refuse(&key(2), Some(&offer), ReturnCode::UnknownCaller, "not registered");
        let err = i.finish(&key(2).verifying_key(), &no).unwrap_err();
        assert_eq!(err.code(), ReturnCode::UnknownCaller);
    }

    proptest! {
        /// A call's MAC verifies under its session and fails with any field changed, under
        /// another session of the same two keys, or as the other call.
        #[test]
        fn any_change_to_a_call_fails_its_mac(
            nonce in any::<u64>(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            what in 0usize..7,
            bit in 0u8..8,
            at in any::<prop::sample::Index>(),
        ) {
            let (mine, theirs) = open(1, 2);
            let creds = mine.credentials(Call::Forward, nonce, 1_000, BodyDigest::of_bytes(&body));
            prop_assert!(theirs.authenticate(&creds, Call::Forward, 1_000, &FRESH).is_ok());
            let mut c = creds;
            let (_, other) = open(1, 2);
            let verdict = match what {
                0 => { c.nonce ^= 1 << bit; theirs.authenticate(&c, Call::Forward, 1_000, &FRESH) }
                1 => { c.timestamp_ms ^= 1 << bit; theirs.authenticate(&c, Call::Forward, 1_000, &FRESH) }
                2 => { c.body.len += 1; theirs.authenticate(&c, Call::Forward, 1_000, &FRESH) }
                3 => { c.body.hash[at.index(32)] ^= 1 << bit; theirs.authenticate(&c, Call::Forward, 1_000, &FRESH) }
                4 => { c.mac[at.index(32)] ^= 1 << bit; theirs.authenticate(&c, Call::Forward, 1_000, &FRESH) }
                5 => other.authenticate(&c, Call::Forward, 1_000, &FRESH),
                _ => theirs.authenticate(&c, Call::Backward, 1_000, &FRESH),
            };
            prop_assert!(verdict.is_err(), "change {} passed", what);
        }
    }

    #[test]
    fn the_table_bounds_sessions_per_caller_overall_and_in_time() {
        let session = |caller: u8, n: u8| Session::derive([n; 16], [caller; 32], [0; 32], &[n; 32], &[]);
        let mut t = SessionTable::new(8, 100);
        for n in 0..6 {
            t.insert(session(1, n), true, 0);
        }
        assert_eq!(t.len(), SESSIONS_PER_CALLER, "a caller keeps its newest {SESSIONS_PER_CALLER}");
        assert!(t.get(&[0; 16], 0).is_none() && t.get(&[5; 16], 0).is_some());
        for n in 10..20 {
            t.insert(session(n, n), false, 0);
        }
        assert_eq!(t.len(), 8);
        assert!((2..6).all(|n| t.get(&[n; 16], 0).is_some()), "unstaked sessions go first");
        assert!(t.get(&[5; 16], 100).is_none(), "expired");
        assert!(t.get(&[5; 16], 0).is_none(), "and dropped");
    }
}
