//! The axon: a peer's gRPC server (market paper §9 steps 2-4). It answers Forward and Backward
//! for a pluggable [`Handler`] (the peer's model), and stands between the network and that
//! handler with, in this order:
//!
//! 1. from the call's metadata alone, before a byte of the body is read ([`gate`]): the
//!    protocol version, a blacklist and a stake check on the claimed caller (or its place in
//!    [`AxonConfig::trusted`]), the declared body size against the limits, the signature and
//!    freshness, a per-caller budget of bytes in flight, and the replay cache
//!    ([`crate::auth`]);
//! 2. the body, read only for an admitted call and only up to its signed length, digested as
//!    it arrives and compared with the signed digest;
//! 3. tensor validation with the axon's [`Limits`] (shape, dtype, size, NaN/Inf), so garbage
//!    never reaches the queue, let alone the model;
//! 4. the bounded stake-priority queue ([`crate::queue`]) served by `concurrency` workers, each
//!    running the handler on a blocking thread;
//! 5. a deadline per request: a request still waiting or running when it expires is answered
//!    TIMEOUT.
//!
//! Every refusal is an in-band [`ReturnCode`] with a message saying what to fix; only a body
//! longer than its signed length or an undecodable protobuf comes back as a gRPC status.
//! Nothing a caller sends stops the axon from serving the others.

mod budget;
mod gate;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use tokio::sync::oneshot;
use tonic::codegen::http::HeaderMap;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::auth::{BodyDigest, Credentials, Freshness, NonceCache, Tier};
use crate::metrics::{Call, Metrics, PeerLabel};
use crate::proto::axon_server::{Axon, AxonServer};
use crate::proto::{self, BackwardRequest, BackwardResponse, ForwardRequest, ForwardResponse, ReturnCode};
use crate::queue::{Admission, JobQueue};
use crate::tensor::{decode, decode_output, DType, Direction, Limits, Modality, OwnedTensor, TensorView};
use budget::{Budget, Reservation};
use gate::{CountingIncoming, Gate, Ticket};

/// Who called: the verified hotkey and the stake the axon's [`StakeLookup`] gave for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub hotkey: [u8; 32],
    /// The queue priority; 0 for an unregistered caller the axon admits anyway.
    pub stake: u64,
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
/// Both calls are CPU-bound and synchronous: the axon runs them on blocking threads, at most
/// `AxonConfig::concurrency` at a time, and may run several at once (hold the model behind a
/// lock if it cannot be shared). Calls are independent and may arrive in any order: a Backward
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
}

/// The caller's stake as the axon should weigh it, fed by the peer from the metagraph.
/// `None` means the hotkey is not registered. Called once per request, from async code: it must
/// be fast and must not block.
pub trait StakeLookup: Send + Sync + 'static {
    fn stake(&self, hotkey: &[u8; 32]) -> Option<u64>;
}

/// The ready [`StakeLookup`]: a table the peer replaces after each metagraph sync.
#[derive(Clone, Debug, Default)]
pub struct StakeTable(Arc<RwLock<std::collections::HashMap<[u8; 32], u64>>>);

impl StakeTable {
    pub fn new() -> StakeTable {
        StakeTable::default()
    }

    /// Replaces every entry at once, so a lookup never sees half a metagraph.
    pub fn replace_all(&self, stakes: impl IntoIterator<Item = ([u8; 32], u64)>) {
        let fresh = stakes.into_iter().collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    pub fn set(&self, hotkey: [u8; 32], stake: u64) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(hotkey, stake);
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StakeLookup for StakeTable {
    fn stake(&self, hotkey: &[u8; 32]) -> Option<u64> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(hotkey).copied()
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
    /// callers' half of the bytes-in-flight budget; their signatures and replays are checked
    /// like anyone's, and each keeps its own protected record in the replay cache.
    pub trusted: HashSet<[u8; 32]>,
    /// Longest a request may spend in the axon, queue and handler together, before TIMEOUT.
    /// A caller's shorter `grpc-timeout` also applies (gRPC answers it with a status).
    pub deadline: Duration,
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
        }
    }
}

/// Why an axon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AxonError {
    #[error("invalid axon config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the server task panicked or was cancelled: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Protobuf framing around the tensors of one request: keys, nonce, signature, shapes.
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
/// Largest HTTP/2 frame either side accepts: fewer, larger frames per tensor.
pub(crate) const MAX_FRAME: u32 = 1 << 20;

/// A running axon. Dropping the handle stops it, like [`AxonHandle::shutdown`] without waiting.
pub struct AxonHandle {
    local_addr: SocketAddr,
    hotkey: [u8; 32],
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl AxonHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The axon's hotkey: callers address their signatures to it.
    pub fn hotkey(&self) -> [u8; 32] {
        self.hotkey
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Requests waiting for a worker right now.
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
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
    let max_message = max_message_bytes(&config.limits);
    let shared = Arc::new(Shared {
        me: hotkey,
        queue: JobQueue::new(config.queue_capacity),
        nonces: Mutex::new(NonceCache::new(config.replay_cache)),
        budget: Arc::new(Budget::new(config.max_inflight_bytes_per_caller, config.max_inflight_bytes)),
        metrics: Arc::new(Metrics::new("axon")),
        handler,
        stakes,
        config,
    });
    for _ in 0..shared.config.concurrency {
        tokio::spawn(worker(shared.clone()));
    }
    let incoming =
        CountingIncoming::new(TcpIncoming::from(listener).with_nodelay(Some(true)), shared.metrics.clone());
    let service = AxonServer::new(AxonService { shared: shared.clone() })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let service = Gate::new(service, shared.clone());
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
            // Still-queued jobs drop here: their callers hear UNAVAILABLE, workers exit.
            drop(shared.queue.close());
            result
        }
    });
    Ok(AxonHandle { local_addr, hotkey, shared, stop: Some(stop), server: Some(server) })
}

struct Shared {
    me: [u8; 32],
    config: AxonConfig,
    queue: JobQueue<Job>,
    nonces: Mutex<NonceCache>,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
    handler: Arc<dyn Handler>,
    stakes: Arc<dyn StakeLookup>,
}

/// A tensor that passed [`decode`]: its parsed dtype and modality beside the message's bytes,
/// so the worker can lend a view without validating again.
struct Checked {
    dtype: DType,
    modality: Modality,
    tensor: proto::Tensor,
}

impl Checked {
    fn new(tensor: proto::Tensor, limits: &Limits, output: bool) -> Result<Checked, Refusal> {
        let parsed = if output { decode_output(&tensor, limits) } else { decode(&tensor, limits) };
        let (dtype, modality) = match parsed {
            Ok(v) => (v.dtype, v.modality),
            Err(e) => return Err((e.code(Direction::Request), e.to_string())),
        };
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

type Refusal = (ReturnCode, String);
/// The handler's output, already validated and in its wire form.
type Outcome = Result<Option<proto::Tensor>, Refusal>;

struct Job {
    caller: Caller,
    work: Work,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
    /// The request's bytes stay counted against its caller until the job is gone, run or not.
    _bytes: Reservation,
}

async fn worker(shared: Arc<Shared>) {
    while let Some(job) = shared.queue.pop().await {
        let Job { caller, work, deadline, reply, _bytes } = job;
        // The caller gave up (its own deadline or a dropped connection): skip the work.
        if reply.is_closed() {
            continue;
        }
        let waited = Instant::now();
        if waited >= deadline {
            let _ = reply.send(Err((ReturnCode::Timeout, "deadline passed while queued".to_string())));
            continue;
        }
        let handler = shared.handler.clone();
        let limits = shared.config.limits;
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = run(&*handler, &caller, &work, &limits);
            drop((work, _bytes));
            outcome
        })
        .await;
        let outcome = outcome.unwrap_or_else(|e| {
            Err((ReturnCode::InternalError, format!("the handler panicked or was cancelled: {e}")))
        });
        let _ = reply.send(outcome);
    }
}

/// Runs the handler and checks what it returns before it goes on the wire: a broken model must
/// not send NaN or a wrongly shaped tensor to its callers.
fn run(handler: &dyn Handler, caller: &Caller, work: &Work, limits: &Limits) -> Outcome {
    let (inputs, result) = match work {
        Work::Forward { inputs } => (inputs, handler.forward(caller, &inputs.view()).map(Some)),
        Work::Backward { inputs, grads } => (inputs, handler.backward(caller, &inputs.view(), &grads.view())),
    };
    let output = result.map_err(|e| (e.code(), e.to_string()))?;
    let Some(output) = output else { return Ok(None) };
    let refuse = |code, what: String| Err((code, format!("the axon's handler returned {what}")));
    let encoded = output.into_proto();
    // The handler's own output is measured against the same limits as any tensor.
    match decode_output(&encoded, limits) {
        Ok(v) => {
            let want = &inputs.tensor.shape[..2];
            if v.shape[..2] != *want {
                return refuse(
                    ReturnCode::ResponseShapeError,
                    format!("shape {:?}, expected [{}, {}, dim]", v.shape, want[0], want[1]),
                );
            }
        }
        Err(e) => return refuse(e.code(Direction::Response), e.to_string()),
    }
    Ok(Some(encoded))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A call that passed every check the metadata allows: who, and the bytes reserved for it.
pub(crate) struct Pass {
    caller: Caller,
    bytes: Reservation,
    /// The signed length and digest the body must match.
    body: BodyDigest,
}

/// How the axon weighs an admitted caller.
struct Standing {
    /// Queue priority: the stake, 0 for unregistered or trusted-but-unknown callers.
    stake: u64,
    /// Replay-cache tier: staked or trusted callers keep their own protected record.
    tier: Tier,
}

impl Shared {
    /// Blacklist, trust and stake checks on the claimed (not yet verified) caller. Refusing a
    /// forged claim of a blacklisted or unknown key harms nobody, and spares the signature.
    fn screen(&self, hotkey: &[u8; 32]) -> Result<Standing, Refusal> {
        if self.config.blacklist.contains(hotkey) {
            return Err((ReturnCode::Blacklisted, "this hotkey is blacklisted by the axon".to_string()));
        }
        let trusted = self.config.trusted.contains(hotkey);
        let staked = |stake: u64| Standing {
            stake,
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
    /// declared size, caller standing, signature, bytes in flight, replay. On refusal, the
    /// caller's key once its signature verified (for the metrics), else `None`.
    fn admit_headers(&self, call: Call, headers: &HeaderMap) -> Result<Pass, (Option<[u8; 32]>, Refusal)> {
        let refuse = |e: crate::auth::AuthError| (e.code(), e.to_string());
        let creds = Credentials::from_headers(headers).map_err(|e| (None, refuse(e)))?;
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
        let standing = self.screen(&creds.caller).map_err(|r| (None, r))?;
        let now = now_ms();
        let auth =
            creds.authenticate(call, &self.me, now, &self.config.freshness).map_err(|e| (None, refuse(e)))?;
        let verified = Some(auth.caller);
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
        Ok(Pass { caller: Caller { hotkey: auth.caller, stake: standing.stake }, bytes, body: creds.body })
    }

    fn work_forward(&self, req: ForwardRequest) -> Result<Work, Refusal> {
        let inputs = req.inputs.ok_or((ReturnCode::EmptyRequest, "no inputs tensor".to_string()))?;
        Ok(Work::Forward { inputs: Checked::new(inputs, &self.config.limits, false)? })
    }

    fn work_backward(&self, req: BackwardRequest) -> Result<Work, Refusal> {
        let limits = &self.config.limits;
        let inputs = req.inputs.ok_or((ReturnCode::EmptyRequest, "no inputs tensor".to_string()))?;
        let grads = req.grads.ok_or((ReturnCode::EmptyRequest, "no grads tensor".to_string()))?;
        let inputs = Checked::new(inputs, limits, false)?;
        let grads = Checked::new(grads, limits, true)?;
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

    /// Queues admitted work and waits for its outcome until the deadline.
    async fn execute(&self, caller: Caller, work: Work, bytes: Reservation, deadline: Instant) -> Outcome {
        let (reply, answer) = oneshot::channel();
        match self.queue.push(caller.stake, Job { caller, work, deadline, reply, _bytes: bytes }) {
            Admission::Queued => {}
            Admission::QueuedEvicting(evicted) => {
                let _ = evicted.reply.send(Err((
                    ReturnCode::Backoff,
                    format!(
                        "evicted from the full queue by a caller with more stake than {}",
                        evicted.caller.stake
                    ),
                )));
            }
            Admission::Refused(_) => {
                let lowest = self.queue.lowest().unwrap_or(0);
                return Err((
                    ReturnCode::Backoff,
                    format!(
                        "queue full ({} waiting); it admits stake above {lowest}, yours is {}",
                        self.config.queue_capacity, caller.stake
                    ),
                ));
            }
        }
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err((ReturnCode::Unavailable, "the axon is shutting down".to_string())),
            Err(_) => Err((
                ReturnCode::Timeout,
                format!("no result within the axon's deadline of {:?}", self.config.deadline),
            )),
        }
    }

    /// Runs one call whose request went through the [`Gate`]: the refusal it was given, or the
    /// body's digest check, tensor validation and the queue.
    /// Records the outcome under the caller's key (once verified) from the moment the gate
    /// saw the call.
    async fn answer<R>(
        &self,
        call: Call,
        request: Request<R>,
        work: impl FnOnce(&Self, R) -> Result<Work, Refusal>,
        require_output: bool,
    ) -> Outcome {
        let Some(ticket) = request.extensions().get::<Ticket>().cloned() else {
            return Err((ReturnCode::InternalError, "the call bypassed the axon's gate".to_string()));
        };
        let start = ticket.start();
        let (who, outcome) = match ticket.take() {
            Err((who, refusal)) => (who, Err(refusal)),
            Ok(pass) => {
                let who = Some(pass.caller.hotkey);
                let outcome = match ticket.body_verdict() {
                    Err(e) => Err((e.code(), e.to_string())),
                    Ok(()) => match work(self, request.into_inner()) {
                        Ok(work) => {
                            self.execute(pass.caller, work, pass.bytes, start + self.config.deadline).await
                        }
                        Err(refusal) => Err(refusal),
                    },
                };
                (who, outcome)
            }
        };
        let outcome = match outcome {
            Ok(None) if require_output => {
                Err((ReturnCode::InternalError, "the handler returned no output".to_string()))
            }
            other => other,
        };
        let code = match &outcome {
            Ok(_) => ReturnCode::Success,
            Err((code, _)) => *code,
        };
        self.record(who, call, code, start);
        outcome
    }

    fn record(&self, who: Option<[u8; 32]>, call: Call, code: ReturnCode, start: Instant) {
        let label = match &who {
            Some(k) => PeerLabel::Hotkey(k),
            None => PeerLabel::Unverified,
        };
        self.metrics.record(label, call, code, start.elapsed());
    }
}

struct AxonService {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Axon for AxonService {
    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardResponse>, Status> {
        let outcome = self.shared.answer(Call::Forward, request, Shared::work_forward, true).await;
        let response = match outcome {
            Ok(t) => ForwardResponse { outputs: t, code: ReturnCode::Success as i32, message: String::new() },
            Err((code, message)) => ForwardResponse { outputs: None, code: code as i32, message },
        };
        Ok(Response::new(response))
    }

    async fn backward(
        &self,
        request: Request<BackwardRequest>,
    ) -> Result<Response<BackwardResponse>, Status> {
        let outcome = self.shared.answer(Call::Backward, request, Shared::work_backward, false).await;
        let response = match outcome {
            Ok(grads) => BackwardResponse { grads, code: ReturnCode::Success as i32, message: String::new() },
            Err((code, message)) => BackwardResponse { grads: None, code: code as i32, message },
        };
        Ok(Response::new(response))
    }
}
