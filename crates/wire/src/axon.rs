//! The axon: a peer's gRPC server (market paper §9 steps 2-4). It answers Forward and Backward
//! for a pluggable [`Handler`] (the peer's model), and stands between the network and that
//! handler with, in this order:
//!
//! 0. once per connection, a handshake ([`crate::auth::session`]): the caller's standing, the
//!    callee, freshness and the caller's signature, then a session with fresh keys, kept in a
//!    bounded table;
//! 1. from the call's metadata alone, before a byte of the body is read (`service`): the
//!    protocol version, the session (UNAUTHENTICATED when unknown or expired), the declared
//!    body size against the limits, the MAC and freshness, a blacklist and a stake check on
//!    the session's caller (or its place in [`AxonConfig::trusted`]), a per-caller budget of
//!    bytes in flight, and the replay cache ([`crate::auth`]);
//! 2. the body, read only for an admitted call and only up to its MACed length, within the
//!    axon's deadline;
//! 3. one pass over the body's bytes that computes its digest, compared with the MACed one,
//!    and scans the tensors for NaN/Inf block by block while the hash has them in cache; with
//!    the other tensor checks against the axon's [`Limits`] (shape, dtype, size), so garbage
//!    never reaches the queue, let alone the model;
//! 4. `concurrency` handler slots: a request that finds one free runs at once in its own task;
//!    the others wait in the bounded stake-priority queue (`queue`) and a finishing
//!    request hands its slot to the most important one. The handler runs inline when its recent
//!    calls were short ([`AxonConfig::inline_below`]), on a blocking thread otherwise;
//! 5. a deadline per request: a request still waiting or running when it expires is answered
//!    TIMEOUT.
//!
//! Every refusal is an in-band [`ReturnCode`] with a message saying what to fix, even for a body
//! longer than its MACed length or an undecodable protobuf. Nothing a caller sends stops the
//! axon from serving the others.
//!
//! The service is written against HTTP/2 directly (`service`), not tonic's generated server:
//! the body is read frame by frame as it arrives, the tensors are decoded as slices of the
//! received frames and the response's tensor is handed to the socket as the
//! handler returned it (`codec`); the messages on the wire are the published schema's.

mod budget;
mod service;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{SigningKey, VerifyingKey};
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

use crate::auth::response::ModelVersion;
use crate::auth::session::{self, Offer, SessionTable};
use crate::auth::{AuthError, BodyDigest, Credentials, Freshness, NonceCache, Session, Tier};
use crate::masking::{self, Competition, MaskingConfig};
use crate::metrics::{Call, Metrics, PeerLabel};
use crate::proto::{self, ReturnCode};
use crate::queue::{Entry, Permit, Scheduler, Turn};
use crate::tensor::{
    check_finite, decode_structure, DType, Direction, Limits, Modality, OwnedTensor, TensorError, TensorView,
};
use budget::{Budget, Reservation};
use service::{AxonService, CountingIncoming};

/// Who called: the verified hotkey, and the stake and queue priority the axon's
/// [`StakeLookup`] gave for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's hotkey, authenticated by its session's handshake.
    pub hotkey: [u8; 32],
    /// The caller's stake; 0 for an unregistered caller the axon admits anyway.
    pub stake: u64,
    /// Its place in the queue: w_ij * s_i, scaled ([`StakeLookup::priority`]); 0 for an
    /// unregistered or trusted-but-unknown caller.
    pub priority: u64,
}

/// Why a handler refused or failed a call; each maps to a [`ReturnCode`] the caller sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The handler does not serve this call or modality (NOT_IMPLEMENTED).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The inputs are valid tensors but not ones this model takes, e.g. a wrong sequence
    /// length or a token id out of vocabulary (REQUEST_SHAPE_ERROR).
    #[error("{0}")]
    BadRequest(String),
    /// The model failed (INTERNAL_ERROR).
    #[error("internal error: {0}")]
    Internal(String),
}

impl HandlerError {
    /// The return code the caller sees.
    pub fn code(&self) -> ReturnCode {
        match self {
            HandlerError::NotImplemented(_) => ReturnCode::NotImplemented,
            HandlerError::BadRequest(_) => ReturnCode::RequestShapeError,
            HandlerError::Internal(_) => ReturnCode::InternalError,
        }
    }
}

/// The peer's model behind the axon.
///
/// Both calls are CPU-bound and synchronous: the axon runs them at most
/// `AxonConfig::concurrency` at a time, on blocking threads, or inline on its async threads while
/// they return within `AxonConfig::inline_below`, and may run several at once (hold the model
/// behind a lock if it cannot be shared). Calls are independent and may arrive in any order: a Backward
/// is not guaranteed to follow its Forward. Inputs arrive validated ([`crate::tensor::decode`]
/// with the axon's limits, finite floats); outputs are validated before they are sent.
pub trait Handler: Send + Sync + 'static {
    /// Output: a `[batch, seq, dim]` TENSOR with the inputs' `batch` and `seq`.
    fn forward(&self, caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError>;

    /// `grads` is `[batch, seq, dim]`, the gradient of the caller's loss w.r.t. this axon's
    /// Forward output for `inputs`. `Ok(None)` is a bare acknowledgement; `Ok(Some(g))` returns a
    /// gradient w.r.t. the inputs, a `[batch, seq, dim]` TENSOR.
    fn backward(
        &self,
        caller: &Caller,
        inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError>;

    /// [`Handler::forward`] and the version of the model that computed the output, which the
    /// axon MACs into its response (protocol 5). The default says
    /// [`ModelVersion::UNVERSIONED`]; a handler whose model changes while it serves overrides
    /// this and reads the version under the same lock as the output, so the MAC never
    /// names a model that did not answer.
    fn forward_versioned(
        &self,
        caller: &Caller,
        inputs: &TensorView<'_>,
    ) -> Result<(OwnedTensor, ModelVersion), HandlerError> {
        Ok((self.forward(caller, inputs)?, ModelVersion::UNVERSIONED))
    }

    /// [`Handler::backward`] and the version of the model that received the gradient (as it
    /// was before applying it), like [`Handler::forward_versioned`].
    fn backward_versioned(
        &self,
        caller: &Caller,
        inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<(Option<OwnedTensor>, ModelVersion), HandlerError> {
        Ok((self.backward(caller, inputs, grads)?, ModelVersion::UNVERSIONED))
    }
}

/// The caller's stake and queue priority as the axon should weigh them, fed by the peer from
/// the metagraph. Called once per request, from async code: both must be fast and must not
/// block.
pub trait StakeLookup: Send + Sync + 'static {
    /// The hotkey's stake; `None` means it is not registered.
    fn stake(&self, hotkey: &[u8; 32]) -> Option<u64>;

    /// How urgently the axon `callee` serves `caller`: market paper §3, "messages from peer i to
    /// peer j are queued w.r.t. the stake weight between them", w_ij * s_i (any positive scale:
    /// only the order matters). The default is the stake alone, for lookups that know no
    /// weights.
    fn priority(&self, caller: &[u8; 32], _callee: &[u8; 32]) -> u64 {
        self.stake(caller).unwrap_or(0)
    }

    /// The caller's stake-weight to `callee` and the mean over all registered neurons, for
    /// competitive masking ([`crate::masking`]: x_ij and μ_j in units of a uniform network's
    /// stake-weight). `None`, the default, for a lookup that knows no weights or no stake: the
    /// axon then answers unmasked.
    fn competition(&self, _caller: &[u8; 32], _callee: &[u8; 32]) -> Option<Competition> {
        None
    }
}

/// One caller's row of W by callee hotkey: `(callee, w_ij)`.
pub type WeightRow = Vec<([u8; 32], f64)>;

/// One metagraph's stakes and weights, by hotkey.
#[derive(Debug, Default)]
struct Standings {
    stakes: HashMap<[u8; 32], u64>,
    /// Rows of W by caller, each by callee; a caller absent here has set no weights.
    weights: HashMap<[u8; 32], HashMap<[u8; 32], f64>>,
    /// Derived from the two above by [`Standings::derive`]: Σ_k s_k, and Σ_k s_k w_kj by
    /// callee j, for competitive masking's μ_j.
    total_stake: f64,
    columns: HashMap<[u8; 32], f64>,
}

impl Standings {
    fn new(stakes: HashMap<[u8; 32], u64>, weights: HashMap<[u8; 32], HashMap<[u8; 32], f64>>) -> Standings {
        let mut s = Standings { stakes, weights, total_stake: 0.0, columns: HashMap::new() };
        s.derive();
        s
    }

    /// Recomputes the sums (O(entries of W)), after any change of stake or weights.
    fn derive(&mut self) {
        self.total_stake = self.stakes.values().map(|&s| s as f64).sum();
        self.columns.clear();
        for (caller, row) in &self.weights {
            // A caller the metagraph does not know has no stake: it adds nothing.
            let Some(&stake) = self.stakes.get(caller) else { continue };
            for (callee, &w) in row {
                *self.columns.entry(*callee).or_insert(0.0) += stake as f64 * clamp_weight(w);
            }
        }
    }

    /// w_ij as the chain holds it; 0 for a caller that gives `callee` nothing or set no weights.
    fn weight(&self, caller: &[u8; 32], callee: &[u8; 32]) -> Option<f64> {
        self.weights.get(caller).map(|row| row.get(callee).copied().map_or(0.0, clamp_weight))
    }
}

/// Weights outside [0, 1] (or NaN) are the feeder's mistake: they neither overflow nor go
/// negative.
fn clamp_weight(w: f64) -> f64 {
    if w.is_finite() {
        w.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The ready [`StakeLookup`]: a table the peer replaces after each metagraph sync, with the
/// stake S and, when given, the weights W of every neuron.
///
/// Priority (market paper §3): w_ij * s_i for a caller i that has set weights (0 when it gives
/// the callee j none: weighting honestly is how one gets served), scaled by the number of
/// neurons n so it stays an integer of useful resolution: n * w_ij * s_i, in the stake's base
/// units, saturating at `u64::MAX`. A caller that has set no weights yet is ranked as if it
/// weighted all n neurons equally, which makes its priority its stake alone, s_i: it never
/// outranks a caller of the same stake that weights the callee above the average (ranking it
/// above every weight-setter would pay a caller for never setting weights).
#[derive(Clone, Debug, Default)]
pub struct StakeTable(Arc<RwLock<Standings>>);

impl StakeTable {
    /// An empty table: every caller has stake 0 until a metagraph is loaded.
    pub fn new() -> StakeTable {
        StakeTable::default()
    }

    /// Replaces every stake at once, so a lookup never sees half a metagraph; forgets the
    /// weights (every caller falls back to s_i / n).
    pub fn replace_all(&self, stakes: impl IntoIterator<Item = ([u8; 32], u64)>) {
        self.replace_all_with_weights(stakes, std::iter::empty());
    }

    /// Replaces every stake and weight at once. `weights` holds rows of W by caller hotkey, each
    /// `(callee hotkey, w_ij)` summing to at most 1; a row that is present, even empty, means
    /// its caller has set weights. A table that serves one axon may keep only the entries for
    /// that axon's hotkey in each row.
    pub fn replace_all_with_weights(
        &self,
        stakes: impl IntoIterator<Item = ([u8; 32], u64)>,
        weights: impl IntoIterator<Item = ([u8; 32], WeightRow)>,
    ) {
        let fresh = Standings::new(
            stakes.into_iter().collect(),
            weights.into_iter().map(|(caller, row)| (caller, row.into_iter().collect())).collect(),
        );
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// Sets one caller's stake S, keeping everyone else's.
    pub fn set(&self, hotkey: [u8; 32], stake: u64) {
        let mut s = self.0.write().unwrap_or_else(|e| e.into_inner());
        s.stakes.insert(hotkey, stake);
        s.derive();
    }

    /// Sets `caller`'s row of W (its weights by callee hotkey), replacing any earlier one.
    pub fn set_weights(&self, caller: [u8; 32], row: impl IntoIterator<Item = ([u8; 32], f64)>) {
        let row = row.into_iter().collect();
        let mut s = self.0.write().unwrap_or_else(|e| e.into_inner());
        s.weights.insert(caller, row);
        s.derive();
    }

    /// Callers with a known stake.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).stakes.len()
    }

    /// Whether no caller's stake is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StakeLookup for StakeTable {
    fn stake(&self, hotkey: &[u8; 32]) -> Option<u64> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).stakes.get(hotkey).copied()
    }

    fn priority(&self, caller: &[u8; 32], callee: &[u8; 32]) -> u64 {
        let s = self.0.read().unwrap_or_else(|e| e.into_inner());
        let Some(&stake) = s.stakes.get(caller) else { return 0 };
        let Some(w) = s.weight(caller, callee) else { return stake };
        let n = s.stakes.len().max(1) as f64;
        // The float-to-integer cast saturates.
        (n * w * stake as f64).round() as u64
    }

    /// Over every neuron of the last metagraph (all n, zeros included): x_ij = n² s_i w_ij / Σs
    /// and μ_j = n Σ_k s_k w_kj / Σs ([`crate::masking`]). A caller that has set no weights,
    /// or that the metagraph does not know, has x_ij = 0. `None` while the table holds no stake.
    fn competition(&self, caller: &[u8; 32], callee: &[u8; 32]) -> Option<Competition> {
        let s = self.0.read().unwrap_or_else(|e| e.into_inner());
        let n = s.stakes.len() as f64;
        if s.total_stake <= 0.0 {
            return None;
        }
        let stake = s.stakes.get(caller).copied().unwrap_or(0) as f64;
        let w = s.weight(caller, callee).unwrap_or(0.0);
        let column = s.columns.get(callee).copied().unwrap_or(0.0);
        Some(Competition {
            stake_weight: n * n * stake * w / s.total_stake,
            mean: n * column / s.total_stake,
        })
    }
}

/// How an axon listens and whom it serves.
#[derive(Clone, Debug)]
pub struct AxonConfig {
    /// Where to listen; port 0 picks a free port ([`AxonHandle::local_addr`] tells which).
    pub addr: SocketAddr,
    /// Caps on every tensor received; gRPC's message size limit is derived from them.
    pub limits: Limits,
    /// Requests that may wait for a worker; beyond it the lowest-stake one gets BACKOFF.
    pub queue_capacity: usize,
    /// Handler calls running at once (the worker count).
    pub concurrency: usize,
    /// Registered callers with less stake are refused (BLACKLISTED).
    pub min_stake: u64,
    /// Serve hotkeys the stake lookup does not know, at priority 0 (otherwise UNKNOWN_CALLER).
    pub allow_unregistered: bool,
    /// Hotkeys always refused (BLACKLISTED), even when trusted.
    pub blacklist: HashSet<[u8; 32]>,
    /// Hotkeys served even though the stake lookup does not know them (an outside judge that
    /// queries every peer), and even below `min_stake`. They queue at the lowest priority (0,
    /// with zero-stake callers, so they never crowd out staked ones) and share the zero-stake
    /// callers' half of the bytes-in-flight budget; their handshakes, MACs and replays are checked
    /// like anyone's, and each keeps its own protected record in the replay cache.
    pub trusted: HashSet<[u8; 32]>,
    /// Longest a request may spend in the axon, queue and handler together, before TIMEOUT.
    /// A caller's shorter `grpc-timeout` also applies (gRPC answers it with a status).
    pub deadline: Duration,
    /// Which request timestamps are fresh enough (the replay window).
    pub freshness: Freshness,
    /// Entries of the replay cache, all callers (see [`NonceCache`]: each caller has its own
    /// floor, so one caller's flood cannot lock out another).
    pub replay_cache: usize,
    /// Request bytes one caller may have in the axon at once (admitted, not yet answered);
    /// past it the caller gets BACKOFF before its body is read. At least the largest message
    /// ([`max_message_bytes`] of `limits`).
    pub max_inflight_bytes_per_caller: u64,
    /// Request bytes all callers together may have in the axon; callers without stake
    /// (zero-stake, unregistered, trusted) may hold at most half of it, so staked callers
    /// always find room. At least `max_inflight_bytes_per_caller`.
    pub max_inflight_bytes: u64,
    /// Handler calls run on the axon's own async thread, saving two thread hops (about 0.1 ms
    /// a call), while the recent calls of their kind took less than this; longer ones run on a
    /// blocking thread so they never hold up the network. The estimate is a decaying maximum:
    /// one slow call moves the next ones to blocking threads at once. Zero: always a blocking
    /// thread.
    pub inline_below: Duration,
    /// Competitive masking (the intermodel paper's §2.5, [`crate::masking`]): every Forward
    /// answer to a caller is scaled by σ((x_ij − μ_j) / T), its weight times stake against the
    /// mean over all registered neurons, and every Backward gradient from it by the same factor
    /// before the handler sees it. The response's MAC covers the scaled answer, the bytes
    /// actually sent. Trusted callers (an outside judge) are answered unmasked, as is everyone
    /// while the stake lookup knows no stake. `None` (the default): answers are the handler's,
    /// byte for byte.
    pub competitive_masking: Option<MaskingConfig>,
    /// Open sessions (protocol 5, [`crate::auth::session`]), all callers; past it the oldest
    /// unstaked caller's session is dropped first (its next call is answered UNAUTHENTICATED
    /// and its dendrite handshakes again).
    pub max_sessions: usize,
    /// How long a session lasts from its handshake; the dendrite then opens a new one.
    pub session_lifetime: Duration,
}

impl Default for AxonConfig {
    fn default() -> Self {
        AxonConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            queue_capacity: 256,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            min_stake: 0,
            allow_unregistered: false,
            blacklist: HashSet::new(),
            trusted: HashSet::new(),
            deadline: Duration::from_secs(12),
            freshness: Freshness::default(),
            replay_cache: 100_000,
            max_inflight_bytes_per_caller: 256 << 20,
            max_inflight_bytes: 1 << 30,
            inline_below: Duration::from_micros(100),
            competitive_masking: None,
            max_sessions: 1 << 16,
            session_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Why an axon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AxonError {
    /// The configuration cannot serve: no handler slot or queue, limits that admit no tensor, or
    /// in-flight budgets smaller than one request.
    #[error("invalid axon config: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("the server task panicked or was cancelled: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Protobuf framing around the tensors of one request: keys, nonce, MAC, shapes.
const ENVELOPE_BYTES: usize = 64 * 1024;

/// The largest gRPC message an axon accepts or a dendrite sends with these limits (a Backward
/// carries two tensors).
pub fn max_message_bytes(limits: &Limits) -> usize {
    limits.max_bytes.saturating_mul(2).saturating_add(ENVELOPE_BYTES)
}

/// HTTP/2 flow-control windows: large enough that a multi-megabyte tensor is not throttled by
/// round trips of WINDOW_UPDATE frames on loopback or a LAN.
pub(crate) const STREAM_WINDOW: u32 = 8 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame either side accepts: a tensor up to the stream window travels as one
/// DATA frame and is decoded as a slice of it (split across frames it costs a copy). What a
/// connection can make the other side buffer stays bounded by the connection window.
pub(crate) const MAX_FRAME: u32 = STREAM_WINDOW;

/// A running axon. Dropping the handle stops it, like [`AxonHandle::shutdown`] without waiting.
pub struct AxonHandle {
    local_addr: SocketAddr,
    hotkey: [u8; 32],
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl AxonHandle {
    /// Where the axon listens (the bound port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The axon's hotkey: callers address their handshakes to it.
    pub fn hotkey(&self) -> [u8; 32] {
        self.hotkey
    }

    /// Its request counts, latencies and bytes, for `/metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Requests waiting for a handler slot right now.
    pub fn queued(&self) -> usize {
        self.shared.scheduler.len()
    }

    /// Stops accepting, lets in-flight calls finish, answers still-queued ones UNAVAILABLE.
    pub async fn shutdown(mut self) -> Result<(), AxonError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => Ok(server.await??),
            None => Ok(()),
        }
    }
}

impl Drop for AxonHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts an axon for `handler`, signing as `key`'s hotkey, weighing callers by `stakes`.
/// Returns once the socket is bound; must be called inside a multi-threaded tokio runtime.
pub async fn serve(
    config: AxonConfig,
    key: SigningKey,
    handler: Arc<dyn Handler>,
    stakes: Arc<dyn StakeLookup>,
) -> Result<AxonHandle, AxonError> {
    if config.concurrency == 0 || config.queue_capacity == 0 {
        return Err(AxonError::Config(format!(
            "concurrency ({}) and queue_capacity ({}) must be at least 1",
            config.concurrency, config.queue_capacity
        )));
    }
    if config.limits.max_bytes == 0 || config.limits.max_batch == 0 {
        return Err(AxonError::Config(format!("limits must admit some tensor: {:?}", config.limits)));
    }
    let largest = max_message_bytes(&config.limits) as u64;
    if config.max_inflight_bytes_per_caller < largest
        || config.max_inflight_bytes < config.max_inflight_bytes_per_caller
    {
        return Err(AxonError::Config(format!(
            "need max_inflight_bytes ({}) >= max_inflight_bytes_per_caller ({}) >= the largest message the limits admit ({largest})",
            config.max_inflight_bytes, config.max_inflight_bytes_per_caller
        )));
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| AxonError::Bind { addr: config.addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| AxonError::Bind { addr: config.addr, source })?;
    let hotkey = key.verifying_key().to_bytes();
    let shared = Arc::new(Shared {
        me: hotkey,
        key,
        keys: crate::auth::KeyCache::new(MAX_KEPT_KEYS),
        scheduler: Scheduler::new(config.concurrency, config.queue_capacity),
        nonces: Mutex::new(NonceCache::new(config.replay_cache)),
        sessions: Mutex::new(SessionTable::new(
            config.max_sessions,
            config.session_lifetime.as_millis().min(u128::from(u64::MAX)) as u64,
        )),
        budget: Arc::new(Budget::new(config.max_inflight_bytes_per_caller, config.max_inflight_bytes)),
        metrics: Arc::new(Metrics::new("axon")),
        cost: [HandlerCost::new(), HandlerCost::new()],
        handler,
        stakes,
        config,
    });
    let incoming =
        CountingIncoming::new(TcpIncoming::from(listener).with_nodelay(Some(true)), shared.metrics.clone());
    let service = AxonService::new(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn({
        let shared = shared.clone();
        async move {
            let result = tonic::transport::Server::builder()
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            // Still-queued requests hear UNAVAILABLE.
            shared.scheduler.close();
            result
        }
    });
    Ok(AxonHandle { local_addr, hotkey, shared, stop: Some(stop), server: Some(server) })
}

/// Staked callers' keys kept decompressed; past this many (a metagraph this large is unusual)
/// the cache starts over.
const MAX_KEPT_KEYS: usize = 1 << 16;

struct Shared {
    me: [u8; 32],
    /// Signs every handshake answer (protocol 5).
    key: SigningKey,
    keys: crate::auth::KeyCache,
    config: AxonConfig,
    scheduler: Arc<Scheduler>,
    nonces: Mutex<NonceCache>,
    sessions: Mutex<SessionTable>,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
    /// Forward, Backward.
    cost: [HandlerCost; 2],
    handler: Arc<dyn Handler>,
    stakes: Arc<dyn StakeLookup>,
}

/// A decaying maximum of a handler's recent call durations, in nanoseconds: each call raises it
/// to its own duration, or lets it decay by 1/8. Starts high, so the first calls run on
/// blocking threads until the handler has shown it is quick.
struct HandlerCost(AtomicU64);

impl HandlerCost {
    fn new() -> HandlerCost {
        HandlerCost(AtomicU64::new(Duration::from_secs(1).as_nanos() as u64))
    }

    fn below(&self, limit: Duration) -> bool {
        self.0.load(Ordering::Relaxed) < limit.as_nanos() as u64
    }

    fn record(&self, took: Duration) {
        let took = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        // Races between concurrent calls lose an update at worst: it is an estimate.
        let old = self.0.load(Ordering::Relaxed);
        self.0.store(took.max(old - old / 8), Ordering::Relaxed);
    }
}

/// A tensor that passed every check of [`crate::tensor::decode`]: its parsed dtype and modality beside the
/// message's bytes, so the handler can be lent a view without validating again.
struct Checked {
    dtype: DType,
    modality: Modality,
    tensor: proto::Tensor,
}

/// What [`decode_structure`] said about a request's tensor, before its bytes are scanned.
type Structure = Result<(DType, Modality), TensorError>;

impl Checked {
    /// The structural checks of a request's tensor (a Backward's `grads` is an output:
    /// modality TENSOR), all of [`crate::tensor::decode`] but the NaN/Inf scan, which the service runs in its
    /// pass over the body's bytes.
    fn structure(tensor: &proto::Tensor, limits: &Limits, output: bool) -> Structure {
        let v = decode_structure(tensor, limits)?;
        if output && v.modality != Modality::Tensor {
            return Err(TensorError::WrongModality { expected: Modality::Tensor, got: v.modality });
        }
        Ok((v.dtype, v.modality))
    }

    /// `tensor`, given its structure and whether the scan found a suspect element (then the
    /// exact one is looked for, for the message).
    fn finish(tensor: proto::Tensor, structure: Structure, suspect: bool) -> Result<Checked, Refusal> {
        let refuse = |e: TensorError| (e.code(Direction::Request), e.to_string());
        let (dtype, modality) = structure.map_err(refuse)?;
        if suspect {
            check_finite(dtype, &tensor.data).map_err(refuse)?;
        }
        Ok(Checked { dtype, modality, tensor })
    }

    fn view(&self) -> TensorView<'_> {
        TensorView {
            dtype: self.dtype,
            modality: self.modality,
            shape: &self.tensor.shape,
            data: &self.tensor.data,
        }
    }
}

enum Work {
    Forward { inputs: Checked },
    Backward { inputs: Checked, grads: Checked },
}

impl Work {
    fn call(&self) -> Call {
        match self {
            Work::Forward { .. } => Call::Forward,
            Work::Backward { .. } => Call::Backward,
        }
    }
}

type Refusal = (ReturnCode, String);

/// The handler's output, structurally validated and in its wire form, and the model that
/// computed it. Its NaN/Inf scan is still to run: the service runs it in the pass that digests
/// the answer ([`service`]), and refuses the answer there if it finds one.
struct Served {
    tensor: Option<proto::Tensor>,
    /// The output's float dtype, to scan; `None` when there is nothing to scan.
    scan: Option<DType>,
    model: ModelVersion,
}

type Outcome = Result<Served, Refusal>;

/// Runs the handler and checks what it returns before it goes on the wire: a broken model must
/// not send a wrongly shaped tensor to its callers (nor NaN: that scan runs beside the answer's
/// digest, in the service).
///
/// With competitive masking (`mask`, the caller's factor), a Forward output is scaled before it
/// is checked and encoded, so what is MACed and sent is the masked answer; a Backward's
/// gradient is scaled before the handler sees it (chain rule, [`crate::masking`]), and what the
/// handler returns already carries the factor.
fn run(handler: &dyn Handler, caller: &Caller, work: &Work, limits: &Limits, mask: Option<f32>) -> Outcome {
    let (inputs, result) = match work {
        Work::Forward { inputs } => (
            inputs,
            handler.forward_versioned(caller, &inputs.view()).map(|(t, m)| {
                (
                    Some(match mask {
                        Some(f) => masking::scale(t, f),
                        None => t,
                    }),
                    m,
                )
            }),
        ),
        Work::Backward { inputs, grads } => match mask {
            Some(f) => {
                let scaled = masking::scale(grads.view().to_owned(), f);
                (inputs, handler.backward_versioned(caller, &inputs.view(), &scaled.view()))
            }
            None => (inputs, handler.backward_versioned(caller, &inputs.view(), &grads.view())),
        },
    };
    let (output, model) = result.map_err(|e| (e.code(), e.to_string()))?;
    let Some(output) = output else { return Ok(Served { tensor: None, scan: None, model }) };
    let refuse = |code, what: String| Err((code, format!("the axon's handler returned {what}")));
    let encoded = output.into_proto();
    // The handler's own output is measured against the same limits as any tensor.
    match Checked::structure(&encoded, limits, true) {
        Ok((dtype, _)) => {
            let want = &inputs.tensor.shape[..2];
            if encoded.shape[..2] != *want {
                return refuse(
                    ReturnCode::ResponseShapeError,
                    format!("shape {:?}, expected [{}, {}, dim]", encoded.shape, want[0], want[1]),
                );
            }
            let scan = dtype.is_float().then_some(dtype);
            Ok(Served { tensor: Some(encoded), scan, model })
        }
        Err(e) => refuse(e.code(Direction::Response), e.to_string()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A call that passed every check the metadata allows: who, and the bytes reserved for it.
pub(crate) struct Pass {
    caller: Caller,
    bytes: Reservation,
    /// The MACed length and digest the body must match.
    body: BodyDigest,
}

/// How the axon weighs an admitted caller.
struct Standing {
    /// The stake, 0 for unregistered or trusted-but-unknown callers.
    stake: u64,
    /// Queue priority, w_ij * s_i ([`StakeLookup::priority`]); 0 with the stake.
    priority: u64,
    /// Replay-cache tier: staked or trusted callers keep their own protected record.
    tier: Tier,
}

impl Shared {
    /// Blacklist, trust and stake checks on a caller: at a handshake before its signature
    /// (refusing a forged claim of a blacklisted or unknown key harms nobody, and spares the
    /// verification), and at every call after the MAC (standing may have changed since).
    fn screen(&self, hotkey: &[u8; 32]) -> Result<Standing, Refusal> {
        if self.config.blacklist.contains(hotkey) {
            return Err((ReturnCode::Blacklisted, "this hotkey is blacklisted by the axon".to_string()));
        }
        let trusted = self.config.trusted.contains(hotkey);
        let staked = |stake: u64| Standing {
            stake,
            priority: if stake > 0 { self.stakes.priority(hotkey, &self.me) } else { 0 },
            tier: if stake > 0 || trusted { Tier::Staked } else { Tier::Unstaked },
        };
        match self.stakes.stake(hotkey) {
            Some(stake) if stake < self.config.min_stake && !trusted => Err((
                ReturnCode::Blacklisted,
                format!("stake {stake} is below this axon's minimum of {}", self.config.min_stake),
            )),
            Some(stake) => Ok(staked(stake)),
            None if trusted => Ok(staked(0)),
            None if self.config.allow_unregistered => Ok(staked(0)),
            None => {
                Err((ReturnCode::UnknownCaller, "this hotkey is not registered on the metagraph".to_string()))
            }
        }
    }

    /// Everything decided from the call's metadata, before its body is read: version,
    /// declared size, caller standing, MAC, bytes in flight, replay. `session` is the one the
    /// credentials name (the service looked it up). On refusal, the caller's key once the MAC
    /// verified (for the metrics), else `None`.
    fn admit_headers(
        &self,
        call: Call,
        creds: &Credentials,
        session: &Session,
    ) -> Result<Pass, (Option<[u8; 32]>, Refusal)> {
        let refuse = |e: AuthError| (e.code(), e.to_string());
        let largest = max_message_bytes(&self.config.limits) as u64;
        if creds.body.len > largest {
            return Err((
                None,
                (
                    ReturnCode::RequestShapeError,
                    format!(
                        "the request declares a {} byte body; this axon reads at most {largest}",
                        creds.body.len
                    ),
                ),
            ));
        }
        let now = now_ms();
        let auth =
            session.authenticate(creds, call, now, &self.config.freshness).map_err(|e| (None, refuse(e)))?;
        let verified = Some(auth.caller);
        // Standing again at every call: a stake or blacklist that changed since the handshake
        // counts from the next call.
        let standing = self.screen(&auth.caller).map_err(|r| (verified, r))?;
        let bytes = self
            .budget
            .reserve(auth.caller, creds.body.len, standing.stake > 0)
            .map_err(|r| (verified, r))?;
        {
            let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
            nonces
                .admit(&auth, standing.tier, now, &self.config.freshness)
                .map_err(|e| (verified, refuse(e)))?;
        }
        let caller = Caller { hotkey: auth.caller, stake: standing.stake, priority: standing.priority };
        Ok(Pass { caller, bytes, body: creds.body })
    }

    /// The session a call names, if this axon holds it and it has not expired.
    fn session(&self, id: &[u8; 16]) -> Option<Session> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id, now_ms())
    }

    /// A handshake (protocol 5): the caller's standing, then its signature; a new session, or a
    /// signed refusal. The caller's key once its signature verified (for the metrics).
    fn handshake(
        &self,
        request: Result<proto::HandshakeRequest, Refusal>,
    ) -> (Option<[u8; 32]>, proto::HandshakeResponse) {
        let offer = request.and_then(|r| Offer::from_proto(&r).map_err(|e| (e.code(), e.to_string())));
        let offer = match offer {
            Ok(o) => o,
            Err((code, why)) => return (None, session::refuse(&self.key, None, code, &why)),
        };
        let refuse = |who, (code, why): Refusal| (who, session::refuse(&self.key, Some(&offer), code, &why));
        let standing = match self.screen(&offer.caller) {
            Ok(s) => s,
            Err(r) => return refuse(None, r),
        };
        let checked = self
            .verifying_key(&offer.caller, standing.tier)
            .and_then(|key| offer.verify(&key, &self.me, now_ms(), &self.config.freshness))
            .and_then(|()| offer.accept(&self.key));
        match checked {
            Ok((response, session)) => {
                let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                sessions.insert(session, standing.tier == Tier::Staked, now_ms());
                (Some(offer.caller), response)
            }
            Err(e @ AuthError::WeakEphemeral) => refuse(Some(offer.caller), (e.code(), e.to_string())),
            Err(e) => refuse(None, (e.code(), e.to_string())),
        }
    }

    /// The caller's decompressed key: kept for staked and trusted callers (their number is
    /// bounded by the metagraph and the config), decompressed anew for the others.
    fn verifying_key(&self, caller: &[u8; 32], tier: Tier) -> Result<VerifyingKey, AuthError> {
        self.keys.get(caller, tier == Tier::Staked).ok_or(AuthError::MalformedCaller(32))
    }

    /// The work of a verified request, its tensors checked in order (inputs, then grads): each
    /// present, well-formed (`structure`, computed before the scan) and finite (`suspect`, from
    /// the scan that ran beside the digest).
    fn work(
        &self,
        call: Call,
        tensors: [Option<proto::Tensor>; 2],
        structure: [Option<Structure>; 2],
        suspect: [bool; 2],
    ) -> Result<Work, Refusal> {
        let [inputs, grads] = tensors;
        let [s_inputs, s_grads] = structure;
        let missing = |what: &str| (ReturnCode::EmptyRequest, format!("no {what} tensor"));
        let inputs = inputs.ok_or_else(|| missing("inputs"))?;
        let checked = |t: proto::Tensor, s: Option<Structure>, suspect: bool| {
            Checked::finish(t, s.unwrap_or(Err(TensorError::Missing)), suspect)
        };
        if call == Call::Forward {
            return Ok(Work::Forward { inputs: checked(inputs, s_inputs, suspect[0])? });
        }
        let grads = grads.ok_or_else(|| missing("grads"))?;
        let inputs = checked(inputs, s_inputs, suspect[0])?;
        let grads = checked(grads, s_grads, suspect[1])?;
        if grads.tensor.shape[..2] != inputs.tensor.shape[..2] {
            return Err((
                ReturnCode::RequestShapeError,
                format!(
                    "grads shape {:?} does not match inputs [batch, seq] = {:?}",
                    grads.tensor.shape,
                    &inputs.tensor.shape[..2]
                ),
            ));
        }
        Ok(Work::Backward { inputs, grads })
    }

    /// Waits for a handler slot by the caller's priority, then runs the handler; the caller (the
    /// service) bounds all of it by the request's deadline. `bytes` stay reserved until the
    /// handler is done with the request, even if the caller has given up by then.
    async fn execute(self: &Arc<Self>, caller: Caller, work: Work, bytes: Reservation) -> Outcome {
        let permit = match self.scheduler.enter(caller.priority) {
            Entry::Run(p) => p,
            Entry::Wait(turn) => match turn.await {
                Ok(Turn::Run(p)) => p,
                Ok(Turn::Evicted) => {
                    return Err((
                        ReturnCode::Backoff,
                        format!(
                            "evicted from the full queue by a caller with more priority (weight to this axon times stake) than {}",
                            caller.priority
                        ),
                    ))
                }
                Err(_) => return Err((ReturnCode::Unavailable, "the axon is shutting down".to_string())),
            },
            Entry::Full { lowest } => {
                return Err((
                    ReturnCode::Backoff,
                    format!(
                        "queue full ({} waiting); it admits priority (weight to this axon times stake) above {lowest}, yours is {}",
                        self.config.queue_capacity, caller.priority
                    ),
                ))
            }
            Entry::Closed => return Err((ReturnCode::Unavailable, "the axon is shutting down".to_string())),
        };
        let cost = &self.cost[work.call() as usize];
        if cost.below(self.config.inline_below) {
            return self.run_timed(&caller, &work, permit, bytes);
        }
        let shared = self.clone();
        let outcome =
            tokio::task::spawn_blocking(move || shared.run_timed(&caller, &work, permit, bytes)).await;
        outcome.unwrap_or_else(|e| {
            Err((ReturnCode::InternalError, format!("the handler panicked or was cancelled: {e}")))
        })
    }

    /// Runs the handler holding its slot, records how long it took, then frees the slot and the
    /// request's bytes.
    fn run_timed(&self, caller: &Caller, work: &Work, permit: Permit, bytes: Reservation) -> Outcome {
        let started = Instant::now();
        let mask = self.mask(caller);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&*self.handler, caller, work, &self.config.limits, mask)
        }))
        .unwrap_or_else(|_| Err((ReturnCode::InternalError, "the handler panicked".to_string())));
        self.cost[work.call() as usize].record(started.elapsed());
        drop((permit, bytes));
        outcome
    }

    /// The caller's competitive-masking factor as the metagraph stands now; `None` when masking
    /// is off, the caller is trusted or the lookup cannot say.
    fn mask(&self, caller: &Caller) -> Option<f32> {
        let config = self.config.competitive_masking?;
        if self.config.trusted.contains(&caller.hotkey) {
            return None;
        }
        config.factor(&*self.stakes, &caller.hotkey, &self.me)
    }

    fn record(&self, who: Option<[u8; 32]>, call: Call, code: ReturnCode, start: Instant) {
        let label = match &who {
            Some(k) => PeerLabel::Hotkey(k),
            None => PeerLabel::Unverified,
        };
        self.metrics.record(label, call, code, start.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 001 §2.5 on a four-neuron metagraph computed by hand: stakes a 100, b 300, c 0, j 600
    /// (Σs = 1000, n = 4); a gives j 0.5, b 0.25, c (no stake) 1.0, j has set no weights.
    /// Σ_k s_k w_kj = 50 + 75 = 125, so μ_j = 4 · 125 / 1000 = 0.5, and x = n² s w / Σs:
    /// a 16 · 50 / 1000 = 0.8, b 16 · 75 / 1000 = 1.2, c and j 0 (their mean is μ_j).
    #[test]
    fn competition_is_weight_times_stake_against_the_mean_over_all_neurons() {
        let (a, b, c, j, other, stranger) = ([1; 32], [2; 32], [3; 32], [4; 32], [5; 32], [6; 32]);
        let table = StakeTable::new();
        table.replace_all_with_weights(
            [(a, 100), (b, 300), (c, 0), (j, 600)],
            [(a, vec![(j, 0.5), (other, 0.5)]), (b, vec![(j, 0.25), (other, 0.75)]), (c, vec![(j, 1.0)])],
        );
        let x = |caller: &[u8; 32]| table.competition(caller, &j).expect("the table holds stake");
        let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-12, "{got} != {want}");
        for (caller, want) in [(&a, 0.8), (&b, 1.2), (&c, 0.0), (&j, 0.0), (&stranger, 0.0)] {
            close(x(caller).stake_weight, want);
            close(x(caller).mean, 0.5);
        }
        let masking = MaskingConfig::new(0.5).unwrap();
        let sigma = |z: f64| 1.0 / (1.0 + (-z).exp());
        close(masking.mask(x(&a)), sigma(0.6)); // 0.6457
        close(masking.mask(x(&b)), sigma(1.4)); // 0.8022
        close(masking.mask(x(&c)), sigma(-1.0)); // 0.2689
        assert!(masking.mask(x(&b)) > 0.5 && masking.mask(x(&c)) < 0.5, "above the mean, below it");
        // The sums follow single updates too: b now gives j nothing, a's stake doubles.
        table.set_weights(b, [(other, 1.0)]);
        table.set(a, 200);
        // Σs = 1100, Σ s w_.j = 100: μ_j = 400 / 1100, x_a = 16 · 100 / 1100.
        close(x(&a).mean, 400.0 / 1100.0);
        close(x(&a).stake_weight, 1600.0 / 1100.0);
        assert_eq!(StakeTable::new().competition(&a, &j), None, "no stake known: nothing to compare with");
    }

    /// A handler runs inline only once its recent calls were all quick, and one slow call sends
    /// the next ones back to blocking threads at once.
    #[test]
    fn the_handler_runs_inline_only_while_its_calls_are_quick() {
        let limit = Duration::from_micros(100);
        let cost = HandlerCost::new();
        assert!(!cost.below(limit), "unknown handlers start on blocking threads");
        let mut calls = 0;
        while !cost.below(limit) {
            cost.record(Duration::from_micros(20));
            calls += 1;
            assert!(calls < 200, "the estimate never fell");
        }
        assert!(calls > 10, "one quick call is not enough evidence ({calls})");
        cost.record(Duration::from_millis(5));
        assert!(!cost.below(limit));
        cost.record(Duration::from_micros(20));
        assert!(!cost.below(limit), "a slow call is not forgotten after one quick one");
        // Zero disables inline calls.
        assert!(!cost.below(Duration::ZERO));
    }
}
