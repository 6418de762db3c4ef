//! Request authentication, protocol version 5: a dendrite opens a session with an axon once per
//! connection ([`session`]: both sign the exchange with their hotkeys and agree on fresh X25519
//! keys), then every Forward and Backward carries, in the call's gRPC metadata, a keyed-BLAKE3
//! MAC under the session's request key, so an axon checks who is calling (the session's
//! caller), their stake, the MAC, freshness and replays before it reads a byte of the body.
//!
//! The metadata keys of a call (ASCII values; bytes in lowercase hex):
//!
//! | key | value |
//! |---|---|
//! | `agora-version` | `5` ([`PROTOCOL_VERSION`]) |
//! | `agora-session` | the session's 16-byte id, from the handshake |
//! | `agora-nonce` | decimal u64, unique per caller within the freshness window |
//! | `agora-timestamp-ms` | decimal u64, milliseconds since the Unix epoch |
//! | `agora-body-len` | decimal u64: length of the request message (the gRPC message bytes) |
//! | `agora-digest` | `blake3:<hex>`: algorithm and 32-byte digest of exactly those message bytes |
//! | `agora-mac` | 32 bytes: keyed BLAKE3 under the session's request key over [`request_message`] |
//!
//! The digest covers the bytes as sent, not a re-encoding, so a sender in any language hashes
//! whatever its protobuf library emitted. Protocol 3 made the digest BLAKE3 (SHA-256 cost a
//! third of each side's CPU at 1 MB, issue 15); protocol 4 signed every request and answer with
//! ed25519, one signature and one verification per call on each side (issue 16), the whole
//! cost of a 4 KB call's extra 0.08 ms. Protocol 5 signs once per connection and MACs each
//! call: a keyed BLAKE3 of 150 bytes costs well under a microsecond. What that gives up, and why
//! it is enough here, is in [`session`]. A request without `agora-version` is protocol 1 (auth
//! fields inside the body); it, protocols 2 to 4 and any digest algorithm but `blake3` are
//! refused with UNSUPPORTED_VERSION and a message naming what this axon speaks. A call naming a
//! session the axon does not hold (expired, evicted, or the axon restarted) is answered with the
//! gRPC status UNAUTHENTICATED: the dendrite opens a new session and sends the call again.
//!
//! Replays: [`NonceCache`] remembers `(caller, nonce)` per caller, with a floor per caller, so a
//! caller that floods it only ever pushes its own floor up (issue 13). A call replayed under
//! another session fails its MAC (another key).
//!
//! Clocks are arguments (`now_ms`), never read here, so the same code runs in tests and nodes.

use std::collections::{BTreeSet, HashMap, HashSet};

use ed25519_dalek::VerifyingKey;
use prost::Message;
use tonic::codegen::http::{HeaderMap, HeaderValue};

use crate::metrics::Call;
use crate::proto::ReturnCode;

pub mod response;
pub mod session;

pub use session::Session;

/// Public keys kept decompressed: decompressing an ed25519 point costs about a fifth of a
/// verification, and an axon sees the same callers, a dendrite the same axons, handshake after
/// handshake. Only keys the owner chooses to keep are kept (a bounded set: the metagraph's), and
/// past `capacity` the cache starts over, so a flood of new keys costs memory for none of them.
pub struct KeyCache {
    keys: std::sync::Mutex<HashMap<[u8; 32], VerifyingKey>>,
    capacity: usize,
}

impl KeyCache {
    /// An empty cache that keeps at most `capacity` keys before starting over.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache { keys: std::sync::Mutex::new(HashMap::new()), capacity }
    }

    /// The decompressed key, kept for next time when `keep`; `None` when the bytes are not a
    /// point on the curve.
    pub fn get(&self, key: &[u8; 32], keep: bool) -> Option<VerifyingKey> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = keys.get(key) {
            return Some(*k);
        }
        let decompressed = VerifyingKey::from_bytes(key).ok()?;
        if keep {
            if keys.len() >= self.capacity {
                keys.clear();
            }
            keys.insert(*key, decompressed);
        }
        Some(decompressed)
    }
}

/// The protocol version this crate speaks, sent as `agora-version`.
pub const PROTOCOL_VERSION: u32 = 5;

/// The metadata keys of an authenticated call, in the order they are documented.
pub mod keys {
    /// The protocol version the caller speaks (`5`).
    pub const VERSION: &str = "agora-version";
    /// The session id from the handshake, in hex.
    pub const SESSION: &str = "agora-session";
    /// The call's nonce: unique per caller within the freshness window.
    pub const NONCE: &str = "agora-nonce";
    /// The caller's clock when it made the call, in milliseconds since the Unix epoch.
    pub const TIMESTAMP_MS: &str = "agora-timestamp-ms";
    /// The body's length in bytes.
    pub const BODY_LEN: &str = "agora-body-len";
    /// The body's digest, `blake3:<hex>`.
    pub const DIGEST: &str = "agora-digest";
    /// The keyed BLAKE3 of the call under the session's request key, in hex.
    pub const MAC: &str = "agora-mac";
}

/// Why a request's (or a handshake's) authentication failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The call has no `agora-version`: a client of protocol 1.
    #[error("no agora-version in the call's metadata: this axon speaks agora protocol {PROTOCOL_VERSION}, where a session opened by a signed handshake and each call's nonce, timestamp, body digest and MAC travel as gRPC metadata (agora-session, ...), not inside the message (protocol 1); upgrade the client")]
    MissingVersion,
    /// The call speaks another protocol version (the value sent).
    #[error("agora-version {0:?} is not spoken here: this axon speaks agora protocol {PROTOCOL_VERSION} (protocol 2 with its sha256 body digests where later ones use blake3, 3 with its unsigned answers and 4 with an ed25519 signature on every call and answer are no longer spoken; protocol 5 signs a handshake once per connection and MACs each call); upgrade the client")]
    UnsupportedVersion(String),
    /// The body digest names an algorithm other than BLAKE3 (the name sent).
    #[error("body digest algorithm {0:?} is not supported by protocol {PROTOCOL_VERSION} (use blake3)")]
    UnsupportedDigest(String),
    /// A metadata key the call must carry is absent.
    #[error("metadata {0} is missing")]
    MissingField(&'static str),
    /// A metadata value does not parse.
    #[error("metadata {key} is malformed: {reason}")]
    MalformedField {
        /// The key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The caller is not an ed25519 public key (the length it had).
    #[error("caller must be a 32-byte ed25519 public key, got {0} bytes or an invalid point")]
    MalformedCaller(usize),
    /// A handshake field of the wrong length.
    #[error("the handshake's {field} must be {expected} bytes, got {got}")]
    MalformedHandshake {
        /// The field.
        field: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it had.
        got: usize,
    },
    /// The handshake names another hotkey as the axon called: it was meant for someone else.
    #[error("the handshake is addressed to another axon")]
    WrongCallee,
    /// The call is older than the freshness window (a delayed or replayed call).
    #[error("timestamp {timestamp_ms} ms is more than {window_ms} ms before now ({now_ms} ms)")]
    Stale {
        /// The call's timestamp.
        timestamp_ms: u64,
        /// The axon's clock.
        now_ms: u64,
        /// The oldest age accepted.
        window_ms: u64,
    },
    /// The call is dated further ahead than clock skew explains.
    #[error("timestamp {timestamp_ms} ms is more than {max_future_ms} ms ahead of now ({now_ms} ms); check the caller's clock")]
    FromTheFuture {
        /// The call's timestamp.
        timestamp_ms: u64,
        /// The axon's clock.
        now_ms: u64,
        /// The furthest ahead accepted.
        max_future_ms: u64,
    },
    /// The handshake's ed25519 signature is not its caller's.
    #[error("the handshake's signature does not verify for its caller")]
    BadSignature,
    /// The ephemeral X25519 key is a low-order point, which would make the session key predictable.
    #[error("the ephemeral key is a low-order point: no secret can be agreed with it")]
    WeakEphemeral,
    /// The call's MAC is not the one its session's request key gives.
    #[error("the call's MAC does not verify under its session's key")]
    BadMac,
    /// The body's length is not the authenticated one.
    #[error("the body is {got} bytes, the authenticated agora-body-len says {declared}")]
    BodyLength {
        /// The length in `agora-body-len`.
        declared: u64,
        /// The body's length.
        got: u64,
    },
    /// The body's digest is not the authenticated one: the body was changed on the way.
    #[error("the body's digest does not match the authenticated agora-digest")]
    DigestMismatch,
    /// The caller already used this nonce within the window: a replay.
    #[error("nonce {nonce} from this caller was already used")]
    Replayed {
        /// The nonce.
        nonce: u64,
    },
    /// The replay cache dropped this caller's entries under load, so it cannot tell this call from a replay.
    #[error("timestamp {timestamp_ms} ms is not after {floor_ms} ms, the newest request of yours the replay cache had to forget; retry with a fresh timestamp")]
    BelowReplayFloor {
        /// The call's timestamp.
        timestamp_ms: u64,
        /// The newest timestamp forgotten.
        floor_ms: u64,
    },
    /// The replay cache's share for callers without stake is full: stake buys room, a flood of new keys does
    /// not.
    #[error("the replay cache already tracks {callers} callers without stake; retry in {wait_ms} ms")]
    TooManyUnstakedCallers {
        /// Unstaked callers tracked.
        callers: usize,
        /// Milliseconds until the oldest entry expires and frees room.
        wait_ms: u64,
    },
}

impl AuthError {
    /// The return code a refused call reports: BACKOFF when a retry can succeed, UNSUPPORTED_VERSION for a
    /// protocol mismatch, INVALID_SIGNATURE otherwise.
    pub fn code(&self) -> ReturnCode {
        match self {
            // The cache forgot entries under load; a retry with a new timestamp succeeds.
            AuthError::BelowReplayFloor { .. } | AuthError::TooManyUnstakedCallers { .. } => {
                ReturnCode::Backoff
            }
            AuthError::MissingVersion
            | AuthError::UnsupportedVersion(_)
            | AuthError::UnsupportedDigest(_) => ReturnCode::UnsupportedVersion,
            _ => ReturnCode::InvalidSignature,
        }
    }
}

/// How a request or response body is digested. Protocols 3 to 5 know one; the name travels in `agora-digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// BLAKE3 with its default 32-byte output, unkeyed.
    Blake3,
}

impl DigestAlgorithm {
    /// The name sent in `agora-digest`.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Blake3 => "blake3",
        }
    }

    /// The algorithm of an `agora-digest` name; `None` for one this protocol does not know.
    pub fn from_name(name: &str) -> Option<DigestAlgorithm> {
        match name {
            "blake3" => Some(DigestAlgorithm::Blake3),
            _ => None,
        }
    }
}

/// What the MAC says about the body: its length and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodyDigest {
    /// The hash function.
    pub algorithm: DigestAlgorithm,
    /// The body's length in bytes.
    pub len: u64,
    /// The body's 32-byte digest.
    pub hash: [u8; 32],
}

impl BodyDigest {
    /// The digest of `message`'s protobuf encoding, the bytes tonic sends, hashed as prost
    /// encodes them: a multi-megabyte tensor costs no copy.
    pub fn of_message<M: Message>(message: &M) -> BodyDigest {
        let mut buf = HashingBuf::new();
        message.encode_raw(&mut buf);
        BodyDigest {
            algorithm: DigestAlgorithm::Blake3,
            len: message.encoded_len() as u64,
            hash: buf.finish(),
        }
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> BodyDigest {
        BodyDigest::of_chunks([bytes])
    }

    /// The digest of the concatenation of `chunks`: a message encoded in pieces, hashed in
    /// place.
    pub fn of_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> BodyDigest {
        let mut h = BodyHasher::new(DigestAlgorithm::Blake3);
        for c in chunks {
            h.update(c);
        }
        h.finish()
    }

    /// `blake3:<hex>`, the value of `agora-digest`.
    pub fn header_value(&self) -> String {
        format!("{}:{}", self.algorithm.name(), hex::encode(self.hash))
    }
}

/// Digests a body as its bytes arrive, so an axon never holds a copy to hash.
pub struct BodyHasher {
    algorithm: DigestAlgorithm,
    blake3: blake3::Hasher,
    len: u64,
}

impl BodyHasher {
    /// A hasher with nothing digested yet.
    pub fn new(algorithm: DigestAlgorithm) -> BodyHasher {
        BodyHasher { algorithm, blake3: blake3::Hasher::new(), len: 0 }
    }

    /// Digests the next bytes of the body.
    pub fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes digested so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been digested yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything given to [`BodyHasher::update`].
    pub fn finish(self) -> BodyDigest {
        BodyDigest { algorithm: self.algorithm, len: self.len, hash: self.blake3.finalize().into() }
    }
}

/// A `BufMut` that hashes what prost encodes into it instead of storing it.
struct HashingBuf {
    hasher: blake3::Hasher,
    scratch: [u8; 64],
}

impl HashingBuf {
    fn new() -> HashingBuf {
        HashingBuf { hasher: blake3::Hasher::new(), scratch: [0; 64] }
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

/// Everything an authenticated call carries in its metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `agora-version`: the protocol the caller speaks.
    pub version: u32,
    /// `agora-session`: the session the call belongs to.
    pub session: [u8; 16],
    /// `agora-nonce`: unique per caller within the freshness window.
    pub nonce: u64,
    /// `agora-timestamp-ms`: the caller's clock at the call.
    pub timestamp_ms: u64,
    /// `agora-body-len` and `agora-digest`: what the body must be.
    pub body: BodyDigest,
    /// `agora-mac`: the keyed BLAKE3 of all of it under the session's request key.
    pub mac: [u8; 32],
}

pub(crate) fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The exact bytes a call's MAC covers (keyed BLAKE3 under the session's request key):
///
/// ```text
/// field("agora/5/request") || field(path) || u64le(nonce) || u64le(timestamp_ms)
///   || field(digest algorithm name) || u64le(body_len) || field(digest)
/// field(x) = u64le(len(x)) || x;  path = "/agora.v1.Axon/Forward" or "/agora.v1.Axon/Backward"
/// ```
///
/// Caller and callee are not in it: the session's key stands for both (only they hold it). The
/// path separates the calls, so a Forward's MAC is never a valid Backward one.
pub fn request_message(call: Call, nonce: u64, timestamp_ms: u64, body: &BodyDigest) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    field(&mut out, format!("agora/{PROTOCOL_VERSION}/request").as_bytes());
    field(&mut out, call.path().as_bytes());
    out.extend_from_slice(&nonce.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    field(&mut out, body.algorithm.name().as_bytes());
    out.extend_from_slice(&body.len.to_le_bytes());
    field(&mut out, &body.hash);
    out
}

impl Credentials {
    /// Writes the seven `agora-*` keys (replacing any already there).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let mut put = |key: &'static str, value: String| {
            // Hex and decimal digits are always valid header values.
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(key, v);
            }
        };
        put(keys::VERSION, self.version.to_string());
        put(keys::SESSION, hex::encode(self.session));
        put(keys::NONCE, self.nonce.to_string());
        put(keys::TIMESTAMP_MS, self.timestamp_ms.to_string());
        put(keys::BODY_LEN, self.body.len.to_string());
        put(keys::DIGEST, self.body.header_value());
        put(keys::MAC, hex::encode(self.mac));
    }

    /// Whether `agora-version` is this crate's: an old client hears why it is not.
    pub fn check_version(headers: &HeaderMap) -> Result<(), AuthError> {
        let v = headers.get(keys::VERSION).ok_or(AuthError::MissingVersion)?;
        let s = v.to_str().unwrap_or("<not ASCII>");
        match s.trim().parse::<u32>() {
            Ok(PROTOCOL_VERSION) => Ok(()),
            _ => Err(AuthError::UnsupportedVersion(s.chars().take(32).collect())),
        }
    }

    /// Reads the keys back; the version is checked first so an old client hears why.
    pub fn from_headers(headers: &HeaderMap) -> Result<Credentials, AuthError> {
        Credentials::check_version(headers)?;
        // The digest's algorithm before the rest: a protocol-2 style `sha256:` hears why.
        let body = header_body(headers)?;
        Ok(Credentials {
            version: PROTOCOL_VERSION,
            session: header_bytes(headers, keys::SESSION)?,
            nonce: header_number(headers, keys::NONCE)?,
            timestamp_ms: header_number(headers, keys::TIMESTAMP_MS)?,
            body,
            mac: header_bytes(headers, keys::MAC)?,
        })
    }

    /// The request's identity for its answer: BLAKE3 of the exact bytes its MAC covers
    /// ([`request_message`]: the call, nonce, timestamp and body). The answer's MAC covers it,
    /// so an answer belongs to one request of one session.
    pub fn request_hash(&self, call: Call) -> [u8; 32] {
        blake3::hash(&request_message(call, self.nonce, self.timestamp_ms, &self.body)).into()
    }
}

pub(crate) fn header_text<'a>(headers: &'a HeaderMap, key: &'static str) -> Result<&'a str, AuthError> {
    let v = headers.get(key).ok_or(AuthError::MissingField(key))?;
    v.to_str().map_err(|_| AuthError::MalformedField { key, reason: "not ASCII".into() })
}

/// A decimal u64 metadata value.
pub(crate) fn header_number(headers: &HeaderMap, key: &'static str) -> Result<u64, AuthError> {
    header_text(headers, key)?
        .parse::<u64>()
        .map_err(|e| AuthError::MalformedField { key, reason: e.to_string() })
}

/// An N-byte metadata value in hex.
pub(crate) fn header_bytes<const N: usize>(
    headers: &HeaderMap,
    key: &'static str,
) -> Result<[u8; N], AuthError> {
    let v = hex::decode(header_text(headers, key)?)
        .map_err(|e| AuthError::MalformedField { key, reason: e.to_string() })?;
    let n = v.len();
    v.try_into().map_err(|_| AuthError::MalformedField { key, reason: format!("{n} bytes, expected {N}") })
}

/// `agora-body-len` and `agora-digest` together.
pub(crate) fn header_body(headers: &HeaderMap) -> Result<BodyDigest, AuthError> {
    let digest = header_text(headers, keys::DIGEST)?;
    let (name, hash) = digest.split_once(':').ok_or_else(|| AuthError::MalformedField {
        key: keys::DIGEST,
        reason: "expected <algorithm>:<hex>".into(),
    })?;
    let algorithm = DigestAlgorithm::from_name(name)
        .ok_or_else(|| AuthError::UnsupportedDigest(name.chars().take(32).collect()))?;
    let hash = hex::decode(hash)
        .map_err(|e| AuthError::MalformedField { key: keys::DIGEST, reason: e.to_string() })?;
    let n = hash.len();
    let hash = hash.try_into().map_err(|_| AuthError::MalformedField {
        key: keys::DIGEST,
        reason: format!("{n} bytes, expected 32"),
    })?;
    Ok(BodyDigest { algorithm, len: header_number(headers, keys::BODY_LEN)?, hash })
}

/// A request whose session, freshness and MAC checked out; not yet checked against replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The caller's hotkey, as the session's handshake authenticated it.
    pub caller: [u8; 32],
    /// The call's nonce, for the replay check.
    pub nonce: u64,
    /// The call's timestamp, for the replay check.
    pub timestamp_ms: u64,
}

/// Which timestamps an axon accepts.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    /// Oldest accepted age of a request (network delay, queueing at the caller).
    pub window_ms: u64,
    /// Furthest ahead of the axon's clock a timestamp may be (clock skew only). Kept short: a
    /// future-dated request stays in the replay cache until it is `window_ms` old.
    pub max_future_ms: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness { window_ms: 30_000, max_future_ms: 2_000 }
    }
}

impl Freshness {
    /// Refuses a timestamp older than the window or further ahead than the skew allowed.
    pub fn check(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), AuthError> {
        if timestamp_ms < now_ms.saturating_sub(self.window_ms) {
            return Err(AuthError::Stale { timestamp_ms, now_ms, window_ms: self.window_ms });
        }
        if timestamp_ms > now_ms.saturating_add(self.max_future_ms) {
            return Err(AuthError::FromTheFuture { timestamp_ms, now_ms, max_future_ms: self.max_future_ms });
        }
        Ok(())
    }
}

/// How much of the replay cache a caller may rely on, decided by the axon from its stake
/// before the cache is touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Positive stake, or a key the axon trusts: its own record, dropped only when it expires.
    /// Their number is bounded by the metagraph (and the axon's config).
    Staked,
    /// Zero stake or unregistered: its own record too, but these records are bounded in number
    /// and entries of this tier are forgotten first when the cache is full.
    Unstaked,
}

/// One caller's remembered nonces and its floor.
#[derive(Debug)]
struct Record {
    /// Fixed when the record is made: a caller whose stake changes keeps its record's tier
    /// until the record expires, so a tier change never opens a gap in what is remembered.
    tier: Tier,
    nonces: HashSet<u64>,
    // (timestamp, nonce), oldest first.
    by_time: BTreeSet<(u64, u64)>,
    /// Every timestamp at or below it is refused: the cache forgot some entry that old.
    floor: Option<u64>,
    /// Newest timestamp admitted; once it leaves the window the whole record is moot.
    newest: u64,
}

/// Remembers recently seen `(caller, nonce)` pairs so a captured request cannot be replayed
/// within the freshness window.
///
/// Per caller: each caller has its own record and its own floor. When the cache is full it
/// forgets the oldest entry of the caller holding the most entries (unstaked callers first) and
/// raises only that caller's floor to the forgotten timestamp, so forgetting never reopens a
/// replay, and a flood, future-dated or not, only ever locks out the flooder: an honest
/// caller's forgotten entries are in its past, below any fresh timestamp of its own.
///
/// Records are dropped only when their newest timestamp leaves the window, never to make
/// room. Staked records are bounded by the metagraph; unstaked ones by `max_unstaked_callers`:
/// past it a new unstaked caller is told to back off until some record expires. So a swarm of
/// zero-stake keys can delay other zero-stake newcomers, and never a staked or trusted caller.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    max_unstaked_callers: usize,
    len: usize,
    records: HashMap<[u8; 32], Record>,
    /// Every entry, oldest first, for expiry: (timestamp, caller, nonce).
    expiry: BTreeSet<(u64, [u8; 32], u64)>,
    /// Every record by its newest timestamp, for dropping moot records.
    by_newest: BTreeSet<(u64, [u8; 32])>,
    /// Records by entry count, per tier: the largest holder is the last.
    staked: BTreeSet<(usize, [u8; 32])>,
    unstaked: BTreeSet<(usize, [u8; 32])>,
}

impl NonceCache {
    /// At most `capacity` entries in all; unstaked records at most a quarter of that.
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache::with_unstaked_callers(capacity, (capacity / 4).max(1))
    }

    /// At most `capacity` entries in all, and at most `max_unstaked_callers` callers without stake.
    pub fn with_unstaked_callers(capacity: usize, max_unstaked_callers: usize) -> NonceCache {
        NonceCache {
            capacity: capacity.max(1),
            max_unstaked_callers: max_unstaked_callers.max(1),
            len: 0,
            records: HashMap::new(),
            expiry: BTreeSet::new(),
            by_newest: BTreeSet::new(),
            staked: BTreeSet::new(),
            unstaked: BTreeSet::new(),
        }
    }

    /// Entries remembered, all callers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries remembered for one caller.
    pub fn entries_of(&self, caller: &[u8; 32]) -> usize {
        self.records.get(caller).map_or(0, |r| r.nonces.len())
    }

    /// The caller's floor, if the cache forgot any of its entries still inside the window.
    pub fn floor_of(&self, caller: &[u8; 32]) -> Option<u64> {
        self.records.get(caller).and_then(|r| r.floor)
    }

    fn index(&mut self, tier: Tier) -> &mut BTreeSet<(usize, [u8; 32])> {
        match tier {
            Tier::Staked => &mut self.staked,
            Tier::Unstaked => &mut self.unstaked,
        }
    }

    /// Records an authenticated request's nonce, refusing replays. Call it only after the
    /// signature verified, so forged requests cannot fill the cache, and with the tier the
    /// caller's stake earns.
    pub fn admit(
        &mut self,
        auth: &Authenticated,
        tier: Tier,
        now_ms: u64,
        freshness: &Freshness,
    ) -> Result<(), AuthError> {
        self.expire(now_ms.saturating_sub(freshness.window_ms));
        let (caller, nonce, ts) = (auth.caller, auth.nonce, auth.timestamp_ms);
        match self.records.get(&caller) {
            Some(r) => {
                if let Some(floor_ms) = r.floor.filter(|&f| ts <= f) {
                    return Err(AuthError::BelowReplayFloor { timestamp_ms: ts, floor_ms });
                }
                if r.nonces.contains(&nonce) {
                    return Err(AuthError::Replayed { nonce });
                }
            }
            None if tier == Tier::Unstaked && self.unstaked.len() >= self.max_unstaked_callers => {
                let wait_ms = self.by_newest.first().map_or(0, |&(t, _)| {
                    t.saturating_add(freshness.window_ms).saturating_sub(now_ms).saturating_add(1)
                });
                return Err(AuthError::TooManyUnstakedCallers { callers: self.unstaked.len(), wait_ms });
            }
            None => {
                let record = Record {
                    tier,
                    nonces: HashSet::new(),
                    by_time: BTreeSet::new(),
                    floor: None,
                    newest: ts,
                };
                self.records.insert(caller, record);
                self.index(tier).insert((0, caller));
                self.by_newest.insert((ts, caller));
            }
        }
        if self.len >= self.capacity {
            self.evict_one();
        }
        let Some(r) = self.records.get_mut(&caller) else { return Ok(()) };
        let (old_count, old_newest, tier) = (r.nonces.len(), r.newest, r.tier);
        r.nonces.insert(nonce);
        r.by_time.insert((ts, nonce));
        r.newest = r.newest.max(ts);
        let newest = r.newest;
        self.index(tier).remove(&(old_count, caller));
        self.index(tier).insert((old_count + 1, caller));
        self.by_newest.remove(&(old_newest, caller));
        self.by_newest.insert((newest, caller));
        self.expiry.insert((ts, caller, nonce));
        self.len += 1;
        Ok(())
    }

    /// Removes one entry from a record, keeping the indexes; `forgotten` raises its floor.
    fn remove_entry(&mut self, caller: &[u8; 32], ts: u64, nonce: u64, forgotten: bool) {
        let Some(r) = self.records.get_mut(caller) else { return };
        if !r.nonces.remove(&nonce) {
            return;
        }
        r.by_time.remove(&(ts, nonce));
        if forgotten {
            r.floor = Some(r.floor.map_or(ts, |f| f.max(ts)));
        }
        let (n, tier) = (r.nonces.len(), r.tier);
        self.index(tier).remove(&(n + 1, *caller));
        self.index(tier).insert((n, *caller));
        self.expiry.remove(&(ts, *caller, nonce));
        self.len -= 1;
    }

    /// Drops entries older than the window, and whole records whose newest timestamp is: the
    /// freshness check refuses all of it, floors included (a floor never exceeds `newest`).
    fn expire(&mut self, expire_before: u64) {
        while let Some(&(ts, caller, nonce)) = self.expiry.first() {
            if ts >= expire_before {
                break;
            }
            self.remove_entry(&caller, ts, nonce, false);
        }
        while let Some(&(newest, caller)) = self.by_newest.first() {
            if newest >= expire_before {
                break;
            }
            self.by_newest.remove(&(newest, caller));
            if let Some(r) = self.records.remove(&caller) {
                // Its entries are older than `newest`, so already expired above.
                debug_assert!(r.nonces.is_empty());
                let tier = r.tier;
                self.index(tier).remove(&(r.nonces.len(), caller));
            }
        }
    }

    /// Forgets the oldest entry of the largest holder, unstaked callers first.
    fn evict_one(&mut self) {
        let victim = self
            .unstaked
            .last()
            .filter(|(n, _)| *n > 0)
            .or_else(|| self.staked.last().filter(|(n, _)| *n > 0))
            .map(|&(_, c)| c);
        let Some(caller) = victim else { return };
        let oldest = self.records.get(&caller).and_then(|r| r.by_time.first().copied());
        if let Some((ts, nonce)) = oldest {
            self.remove_entry(&caller, ts, nonce, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digest_of_message_matches_the_encoded_bytes() {
        use crate::proto::{BackwardRequest, ForwardRequest};
        use crate::tensor::{encode, DType, Modality};
        let t = |n: usize| Some(encode(DType::F32, &[1, 1, n as u64], Modality::Tensor, vec![3; 4 * n]));
        let f = ForwardRequest { inputs: t(1000), ..Default::default() };
        let b = BackwardRequest { inputs: t(10), grads: t(20), ..Default::default() };
        assert_eq!(BodyDigest::of_message(&f), BodyDigest::of_bytes(&f.encode_to_vec()));
        assert_eq!(BodyDigest::of_message(&b), BodyDigest::of_bytes(&b.encode_to_vec()));
        let empty = ForwardRequest::default();
        assert_eq!(BodyDigest::of_message(&empty), BodyDigest::of_bytes(&[]));
    }

    fn auth(caller: u8, nonce: u64, ts: u64) -> Authenticated {
        Authenticated { caller: [caller; 32], nonce, timestamp_ms: ts }
    }

    proptest! {
        /// Whatever the arrivals, tiers and capacity: an admitted (caller, nonce) is never
        /// admitted again while its timestamp is inside the window, and the cache never holds
        /// more than its capacity.
        #[test]
        fn a_replay_inside_the_window_never_passes(
            capacity in 1usize..12,
            unstaked_callers in 1usize..4,
            ops in proptest::collection::vec((0u8..5, 0u64..8, 0u64..40, any::<bool>(), 0u64..3), 1..200),
        ) {
            let fresh = Freshness { window_ms: 20, max_future_ms: 5 };
            let mut cache = NonceCache::with_unstaked_callers(capacity, unstaked_callers);
            let mut admitted: HashMap<([u8; 32], u64), u64> = HashMap::new();
            let mut now = 100u64;
            for (caller, nonce, offset, staked, tick) in ops {
                now += tick;
                let ts = now + offset % (fresh.max_future_ms + 1) - (offset % 7).min(now);
                let a = auth(caller, nonce, ts);
                let tier = if staked { Tier::Staked } else { Tier::Unstaked };
                let ok = cache.admit(&a, tier, now, &fresh).is_ok();
                if let Some(&first_ts) = admitted.get(&(a.caller, nonce)) {
                    if first_ts >= now.saturating_sub(fresh.window_ms) && ts == first_ts {
                        prop_assert!(!ok, "replay of {:?} passed", (caller, nonce, ts));
                    }
                }
                if ok {
                    admitted.insert((a.caller, nonce), ts);
                }
                prop_assert!(cache.len() <= capacity);
                prop_assert_eq!(cache.len(), cache.expiry.len());
                prop_assert!(cache.unstaked.len() <= unstaked_callers);
            }
        }
    }
}
