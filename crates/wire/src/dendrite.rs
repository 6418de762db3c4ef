//! The dendrite: a peer's client (market paper §9 step 2: "each peer sends a batch to its
//! neighbours"). One call fans a batch out to k axons in parallel under one deadline and returns
//! one [`PeerResult`] per target, in the targets' order: a slow, dead or lying axon costs its
//! own entry (TIMEOUT, UNAVAILABLE, RESPONSE_SHAPE_ERROR, NON_FINITE), never the others'.
//!
//! Connections are reused: one HTTP/2 connection per axon (address and hotkey), opened on
//! first use and multiplexing every later call, reopened by the next call once it has closed
//! (an axon that restarted). Each connection opens a session with its axon before its first
//! call (protocol 5, [`crate::auth::session`]: a handshake the axon signs with the hotkey
//! called), and opens another when the axon answers UNAUTHENTICATED (it expired or dropped the
//! session), resending the call once.
//!
//! Every answer must carry the session's MAC ([`crate::auth::response`]) over this request, the
//! body received and the model version it names. One that does not is
//! INVALID_RESPONSE_SIGNATURE (UNSUPPORTED_VERSION from an axon too old to speak protocol 5),
//! whatever it holds; the verified version comes back in [`PeerResult::model`]. The request's
//! tensor goes to the socket from the caller's own buffer and the answer's tensor is a slice of
//! the frame it arrived in (`codec`); the answer is digested once it is in, on two cores when
//! large (`digest`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use h2::client::SendRequest;
use prost::Message;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};

use crate::auth::response::{ModelVersion, ResponseSeal};
use crate::auth::session::{HandshakeError, Initiator, HANDSHAKE_PATH};
use crate::auth::{keys, BodyDigest, KeyCache, Session, PROTOCOL_VERSION};
use crate::axon::{max_message_bytes, CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::codec::{self, Chunks, Encoded, MessageReader};
use crate::digest;
use crate::metrics::{Call, Metrics, PeerLabel};
use crate::proto::{self, BackwardRequest, ForwardRequest, ReturnCode};
use crate::tensor::{decode_output, Direction, Limits, OwnedTensor};

/// An axon to call: its hotkey (the session's handshake is addressed to it) and where it listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The axon's hotkey.
    pub hotkey: [u8; 32],
    /// The axon's address (its endpoint on the metagraph).
    pub addr: SocketAddr,
}

/// One axon's answer to one call.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerResult {
    /// SUCCESS, or why not (the axon's code, or the dendrite's: timeout, unreachable, bad response).
    pub code: ReturnCode,
    /// Why, when `code` is not SUCCESS (the axon's words, or the dendrite's).
    pub message: String,
    /// Forward: the output, always on SUCCESS. Backward: the returned gradient, if any. Its
    /// data is a slice of the frame it arrived in.
    pub tensor: Option<OwnedTensor>,
    /// From the start of the fan-out to this answer (a handshake included, when one ran).
    pub latency: Duration,
    /// The model the axon's answer names: set whenever the answer's MAC (or the handshake's
    /// signed refusal) verified, to [`ModelVersion::UNVERSIONED`] for a refusal; `None` when no
    /// authenticated answer came back.
    pub model: Option<ModelVersion>,
}

impl PeerResult {
    /// Whether the axon answered with SUCCESS.
    pub fn is_success(&self) -> bool {
        self.code == ReturnCode::Success
    }
}

/// A client that calls as one hotkey. Cheap to clone: clones share the connections and metrics.
#[derive(Clone)]
pub struct Dendrite {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    limits: Limits,
    /// One connection per axon, address and hotkey: a session is with one hotkey.
    peers: Mutex<HashMap<Target, Arc<Connection>>>,
    /// The called axons' keys, decompressed once (each handshake's answer is signed).
    axon_keys: KeyCache,
    // Unique per request within the axons' freshness window, across restarts too: it starts
    // from the clock in nanoseconds, which a restarted process has moved past.
    nonce: AtomicU64,
    metrics: Arc<Metrics>,
}

/// One axon's HTTP/2 connection: opened on first use (concurrent first calls wait for the same
/// one), replaced on the next call once it has closed. Calls drive their own streams (h2, not
/// hyper's client, which spawns a task per request): the connection's task only moves frames.
#[derive(Default)]
struct Connection(tokio::sync::Mutex<Option<Open>>);

struct Open {
    sender: SendRequest<Bytes>,
    /// Set by the connection's task when the connection ends.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// The connection's session with the axon (protocol 5), once opened.
    session: Option<Session>,
}

/// What an axon answered, its MAC verified, before the dendrite's other checks.
struct Reply {
    code: i32,
    message: String,
    tensor: Option<proto::Tensor>,
    model: ModelVersion,
}

type Failure = (ReturnCode, String);

impl Dendrite {
    /// A dendrite with the default [`Limits`] on responses.
    pub fn new(key: SigningKey) -> Dendrite {
        Dendrite::with_limits(key, Limits::default())
    }

    /// `limits` caps what the dendrite accepts back from an axon.
    pub fn with_limits(key: SigningKey, limits: Limits) -> Dendrite {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Dendrite {
            inner: Arc::new(Inner {
                key,
                limits,
                peers: Mutex::new(HashMap::new()),
                axon_keys: KeyCache::new(1 << 16),
                nonce: AtomicU64::new(start),
                metrics: Arc::new(Metrics::new("dendrite")),
            }),
        }
    }

    /// The dendrite's hotkey: the caller its handshakes name.
    pub fn hotkey(&self) -> [u8; 32] {
        self.inner.key.verifying_key().to_bytes()
    }

    /// Per-axon counts by code and latency; `connections_total` counts connections opened.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Sends `inputs` to every target at once; each result arrives within about `deadline`.
    pub async fn forward(
        &self,
        targets: &[Target],
        inputs: &OwnedTensor,
        deadline: Duration,
    ) -> Vec<PeerResult> {
        let start = Instant::now();
        let expect = expected_prefix(inputs);
        // The body no longer names its callee: one message and one digest serve every target,
        // and its tensor is the caller's buffer, shared, not copied.
        let req = ForwardRequest { inputs: Some(inputs.clone().into_proto()), ..Default::default() };
        let encoded = codec::forward_request(&req);
        let digest = digest::digest(&encoded.message_parts());
        let inner = &self.inner;
        fan_out(targets, start, |_, target| {
            let (inner, encoded) = (inner.clone(), encoded.clone());
            async move { inner.call(target, Call::Forward, encoded, digest, start, deadline, expect).await }
        })
        .await
    }

    /// Sends each target the gradient of the caller's loss w.r.t. that target's Forward output
    /// (`grads[i]` for `targets[i]`) along with the `inputs` of that Forward.
    pub async fn backward(
        &self,
        targets: &[Target],
        inputs: &OwnedTensor,
        grads: &[OwnedTensor],
        deadline: Duration,
    ) -> Vec<PeerResult> {
        let start = Instant::now();
        let expect = expected_prefix(inputs);
        let inputs = inputs.clone().into_proto();
        let inner = &self.inner;
        fan_out(targets, start, |i, target| {
            let (inner, inputs, grads) = (inner.clone(), inputs.clone(), grads.get(i).cloned());
            async move {
                let Some(grads) = grads else {
                    return PeerResult {
                        code: ReturnCode::EmptyRequest,
                        message: format!("no gradient was given for target {i}"),
                        tensor: None,
                        latency: start.elapsed(),
                        model: None,
                    };
                };
                let req = BackwardRequest {
                    inputs: Some(inputs),
                    grads: Some(grads.into_proto()),
                    ..Default::default()
                };
                let encoded = codec::backward_request(&req);
                let digest = digest::digest(&encoded.message_parts());
                inner.call(target, Call::Backward, encoded, digest, start, deadline, expect).await
            }
        })
        .await
    }
}

/// Runs one call per target, in parallel tasks, and returns the results in the targets' order.
/// A single target is called in the caller's own task: no spawn, no hand-over.
async fn fan_out<F, Fut>(targets: &[Target], start: Instant, call: F) -> Vec<PeerResult>
where
    F: Fn(usize, Target) -> Fut,
    Fut: std::future::Future<Output = PeerResult> + Send + 'static,
{
    if let [target] = targets {
        return vec![call(0, *target).await];
    }
    let handles: Vec<_> = targets.iter().enumerate().map(|(i, &t)| tokio::spawn(call(i, t))).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap_or_else(|e| PeerResult {
            code: ReturnCode::InternalError,
            message: format!("the dendrite's call task failed: {e}"),
            tensor: None,
            latency: start.elapsed(),
            model: None,
        }));
    }
    results
}

/// `[batch, seq]` of the inputs: every output and returned gradient must start with it.
fn expected_prefix(inputs: &OwnedTensor) -> Option<[u64; 2]> {
    match inputs.shape.as_slice() {
        [b, s, ..] => Some([*b, *s]),
        _ => None,
    }
}

impl Inner {
    /// One authenticated call under the deadline, its answer checked and recorded.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        target: Target,
        call: Call,
        encoded: Encoded,
        digest: BodyDigest,
        start: Instant,
        deadline: Duration,
        expect: Option<[u64; 2]>,
    ) -> PeerResult {
        let at = start + deadline;
        let rpc = self.exchange(target, call, encoded, digest, deadline);
        let (code, message, tensor, model) = match tokio::time::timeout_at(at.into(), rpc).await {
            Err(_) => (ReturnCode::Timeout, format!("no answer within {deadline:?}"), None, None),
            // A failure at the deadline is the deadline's doing (the axon gave up on the call).
            Ok(Err((_, why))) if Instant::now() >= at => {
                (ReturnCode::Timeout, format!("no answer within {deadline:?} ({why})"), None, None)
            }
            Ok(Err((code, message))) => (code, message, None, None),
            Ok(Ok(reply)) => {
                let model = reply.model;
                let (code, message, tensor) = self.check(reply, call == Call::Forward, expect);
                (code, message, tensor, Some(model))
            }
        };
        let latency = start.elapsed();
        self.metrics.record(PeerLabel::Hotkey(&target.hotkey), call, code, latency);
        PeerResult { code, message, tensor, latency, model }
    }

    /// Sends and reads back one call over the target's connection, in its session: opened
    /// first if the connection has none, and once more if the axon no longer holds it.
    async fn exchange(
        &self,
        target: Target,
        call: Call,
        encoded: Encoded,
        digest: BodyDigest,
        deadline: Duration,
    ) -> Result<Reply, Failure> {
        let mut stale = None;
        loop {
            let (sender, session) = match self.session(target, stale, deadline).await {
                Ok(open) => open,
                Err(Rejected::Refused(reply)) => return Ok(reply),
                Err(Rejected::Failed(failure)) => return Err(failure),
            };
            match self.send(target, sender, &session, call, encoded.clone(), digest, deadline).await {
                // The axon restarted, or dropped or expired the session: once more in a new one.
                Err(CallError::Unauthenticated(_)) if stale.is_none() => stale = Some(session.id),
                Err(CallError::Unauthenticated(why)) => {
                    return Err((
                        ReturnCode::InvalidSignature,
                        format!("the axon refused a fresh session: {why}"),
                    ))
                }
                Err(CallError::Failed(f)) => return Err(f),
                Ok(reply) => return Ok(reply),
            }
        }
    }

    /// One call in `session`: MACed request out, answer in, its MAC checked.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        target: Target,
        sender: SendRequest<Bytes>,
        session: &Session,
        call: Call,
        encoded: Encoded,
        digest: BodyDigest,
        deadline: Duration,
    ) -> Result<Reply, CallError> {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let credentials = session.credentials(call, nonce, now_ms(), digest);
        let request_hash = credentials.request_hash(call);
        let mut headers = HeaderMap::new();
        credentials.write_headers(&mut headers);
        let max = max_message_bytes(&self.limits) as u64;
        let mut parts = Vec::new();
        let (headers, chunks) =
            roundtrip(target, sender, call.path(), headers, encoded, deadline, max, |part| {
                parts.push(part.clone())
            })
            .await?;
        // Judged once the body is in: an unauthenticated answer from an older axon still says why.
        let seal = ResponseSeal::from_headers(&headers);
        let undecodable = |e: prost::DecodeError| {
            (ReturnCode::ResponseShapeError, format!("the axon's response does not decode: {e}"))
        };
        let received = digest::digest(&parts);
        let model = match seal.and_then(|s| s.verify(session, call, &request_hash, &received)) {
            Ok(model) => model,
            Err(e) => {
                // What an unauthenticated answer said, for the operator; it is not acted on.
                let said = match call {
                    Call::Forward => proto::ForwardResponse::decode(chunks).ok().map(|r| (r.code, r.message)),
                    Call::Backward => {
                        proto::BackwardResponse::decode(chunks).ok().map(|r| (r.code, r.message))
                    }
                };
                let said = said.map_or(String::new(), |(code, message)| {
                    let name = ReturnCode::try_from(code)
                        .map_or("an unknown code".into(), |c| c.as_str_name().to_string());
                    format!(" (it answered {name}: {message})")
                });
                return Err(CallError::Failed((e.code(), format!("{e}{said}"))));
            }
        };
        Ok(match call {
            Call::Forward => {
                let r = proto::ForwardResponse::decode(chunks).map_err(undecodable)?;
                Reply { code: r.code, message: r.message, tensor: r.outputs, model }
            }
            Call::Backward => {
                let r = proto::BackwardResponse::decode(chunks).map_err(undecodable)?;
                Reply { code: r.code, message: r.message, tensor: r.grads, model }
            }
        })
    }

    /// The connection to `target` and its session: the open ones, or new ones. `stale`: a
    /// session the axon no longer holds, replaced unless another call has already done so.
    async fn session(
        &self,
        target: Target,
        stale: Option<[u8; 16]>,
        deadline: Duration,
    ) -> Result<(SendRequest<Bytes>, Session), Rejected> {
        let connection = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            peers.entry(target).or_default().clone()
        };
        // Held through the handshake: concurrent first calls wait for the same session.
        let mut open = connection.0.lock().await;
        if open.as_ref().is_none_or(|o| o.closed.load(Ordering::Acquire)) {
            *open = Some(self.connect(target.addr).await.map_err(Rejected::Failed)?);
        }
        let Some(o) = open.as_mut() else {
            return Err(Rejected::Failed((ReturnCode::InternalError, "no connection".to_string())));
        };
        if o.session.as_ref().is_some_and(|s| Some(s.id) == stale) {
            o.session = None;
        }
        if let Some(s) = &o.session {
            return Ok((o.sender.clone(), s.clone()));
        }
        let session = self.handshake(target, o.sender.clone(), deadline).await?;
        o.session = Some(session.clone());
        Ok((o.sender.clone(), session))
    }

    /// Opens a session with the axon `target` (protocol 5, [`crate::auth::session`]).
    async fn handshake(
        &self,
        target: Target,
        sender: SendRequest<Bytes>,
        deadline: Duration,
    ) -> Result<Session, Rejected> {
        let initiator = Initiator::new(&self.key, &target.hotkey, now_ms());
        let mut headers = HeaderMap::new();
        headers.insert(keys::VERSION, HeaderValue::from(PROTOCOL_VERSION));
        let encoded = codec::whole(initiator.request());
        let answer =
            roundtrip(target, sender, HANDSHAKE_PATH, headers, encoded, deadline, MAX_HANDSHAKE, |_| ())
                .await;
        let chunks = match answer {
            Ok((_, chunks)) => chunks,
            Err(CallError::Failed((ReturnCode::NotImplemented, why))) => {
                return Err(Rejected::Failed((
                    ReturnCode::UnsupportedVersion,
                    format!("the axon has no Handshake method ({why}): it speaks an agora protocol older than {PROTOCOL_VERSION}"),
                )))
            }
            Err(CallError::Failed(f)) => return Err(Rejected::Failed(f)),
            Err(CallError::Unauthenticated(why)) => {
                return Err(Rejected::Failed((ReturnCode::InvalidSignature, why)))
            }
        };
        let response = proto::HandshakeResponse::decode(chunks).map_err(|e| {
            Rejected::Failed((
                ReturnCode::ResponseShapeError,
                format!("the axon's handshake does not decode: {e}"),
            ))
        })?;
        let Some(key) = self.axon_keys.get(&target.hotkey, true) else {
            let why = "the axon's hotkey is not an ed25519 public key".to_string();
            return Err(Rejected::Failed((ReturnCode::InvalidResponseSignature, why)));
        };
        initiator.finish(&key, &response).map_err(|e| match e {
            HandshakeError::Refused { code, message } => Rejected::Refused(Reply {
                code: code as i32,
                message,
                tensor: None,
                model: ModelVersion::UNVERSIONED,
            }),
            other => Rejected::Failed((other.code(), other.to_string())),
        })
    }

    /// A new HTTP/2 connection to `addr`, its task running.
    async fn connect(&self, addr: SocketAddr) -> Result<Open, Failure> {
        let cannot =
            |e: &dyn std::fmt::Display| (ReturnCode::Unavailable, format!("cannot connect to {addr}: {e}"));
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| cannot(&e))?;
        stream.set_nodelay(true).map_err(|e| cannot(&e))?;
        let (sender, driver) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .handshake(stream)
            .await
            .map_err(|e| cannot(&e))?;
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The connection runs in its own task until either side closes it.
        tokio::spawn({
            let closed = closed.clone();
            async move {
                let _ = driver.await;
                closed.store(true, Ordering::Release);
            }
        });
        self.metrics.connection_opened();
        Ok(Open { sender, closed, session: None })
    }

    /// An axon's answer is input like any other: its code must be known, and its tensor must
    /// be a finite `[batch, seq, dim]` TENSOR within limits matching the inputs' batch and seq.
    fn check(
        &self,
        reply: Reply,
        required: bool,
        expect: Option<[u64; 2]>,
    ) -> (ReturnCode, String, Option<OwnedTensor>) {
        let Reply { code, message, tensor, .. } = reply;
        let code = match ReturnCode::try_from(code) {
            Ok(ReturnCode::Unspecified) | Err(_) => {
                return (
                    ReturnCode::ResponseShapeError,
                    format!("the axon answered an unknown code {code}"),
                    None,
                )
            }
            Ok(c) => c,
        };
        if code != ReturnCode::Success {
            return (code, message, None);
        }
        let Some(tensor) = tensor else {
            if required {
                return (
                    ReturnCode::ResponseShapeError,
                    "SUCCESS without an output tensor".to_string(),
                    None,
                );
            }
            return (code, message, None);
        };
        let parsed = decode_output(&tensor, &self.limits).map(|v| (v.dtype, v.modality));
        match parsed {
            Err(e) => (e.code(Direction::Response), format!("the axon's response: {e}"), None),
            Ok(_) if expect.is_some_and(|p| tensor.shape[..2] != p[..]) => (
                ReturnCode::ResponseShapeError,
                format!(
                    "the axon's response has shape {:?}, expected [batch, seq] = {:?}",
                    tensor.shape, expect
                ),
                None,
            ),
            Ok((dtype, modality)) => {
                let owned = OwnedTensor { dtype, modality, shape: tensor.shape, data: tensor.data };
                (code, message, Some(owned))
            }
        }
    }
}

/// Longest handshake answer read: its fields take under 200 bytes.
const MAX_HANDSHAKE: u64 = 1 << 10;

/// Why a call over a session failed.
enum CallError {
    Failed(Failure),
    /// The axon does not hold the session (gRPC UNAUTHENTICATED): open another.
    Unauthenticated(String),
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> CallError {
        CallError::Failed(f)
    }
}

/// Why a session could not be had.
enum Rejected {
    /// The axon's signed refusal (its code and words, naming no model).
    Refused(Reply),
    Failed(Failure),
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One unary gRPC call over `sender`: `encoded` out (its chunks as they are), the answer's
/// headers and message in, each part of the message handed to `on_part` as it arrives.
#[allow(clippy::too_many_arguments)]
async fn roundtrip(
    target: Target,
    sender: SendRequest<Bytes>,
    path: &str,
    headers: HeaderMap,
    encoded: Encoded,
    deadline: Duration,
    max: u64,
    mut on_part: impl FnMut(&Bytes),
) -> Result<(HeaderMap, Chunks), CallError> {
    let uri = format!("http://{}{}", target.addr, path);
    let mut request = http::Request::post(uri)
        .body(())
        .map_err(|e| (ReturnCode::InternalError, format!("cannot build the request: {e}")))?;
    *request.headers_mut() = headers;
    let headers = request.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    // Tells the axon when to stop caring (gRPC's `grpc-timeout`, at most 8 digits).
    let ms = deadline.as_millis().clamp(1, 99_999_999);
    if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
        headers.insert("grpc-timeout", v);
    }
    let gone =
        |e: h2::Error| (ReturnCode::Unavailable, format!("the connection to {} failed: {e}", target.addr));
    let mut sender = sender.ready().await.map_err(gone)?;
    let (response, mut body) = sender.send_request(request, false).map_err(gone)?;
    // The chunks are queued as they are (h2 sends them as flow control allows): the
    // tensor's own buffer, no copy. An axon may answer from the headers alone and reset the
    // stream before the body is queued (another thread runs the connection): the answer,
    // read below, says why; a broken connection fails there too.
    let mut chunks = encoded.into_chunks().into_iter().peekable();
    while let Some(chunk) = chunks.next() {
        if body.send_data(chunk, chunks.peek().is_none()).is_err() {
            break;
        }
    }
    let (parts, mut body) = response.await.map_err(gone)?.into_parts();
    if parts.status != http::StatusCode::OK {
        let failure = (http_status_code(parts.status), format!("the axon answered HTTP {}", parts.status));
        return Err(failure.into());
    }
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        // Trailers-only: an error from the axon's gRPC server, not its service.
        if status.code() == tonic::Code::Unauthenticated {
            return Err(CallError::Unauthenticated(status.message().to_string()));
        }
        return Err(grpc_failure(&status).into());
    }
    let mut reader = MessageReader::new(max);
    while let Some(data) = body.data().await {
        let data = data.map_err(gone)?;
        let _ = body.flow_control().release_capacity(data.len());
        let part = reader
            .push(data)
            .map_err(|e| (ReturnCode::ResponseShapeError, format!("the axon's response: {e}")))?;
        on_part(&part);
    }
    match body.trailers().await.map_err(gone)?.as_ref().and_then(tonic::Status::from_header_map) {
        Some(status) if status.code() == tonic::Code::Ok => {}
        Some(status) => return Err(grpc_failure(&status).into()),
        None => {
            let failure =
                (ReturnCode::Unavailable, "the axon's response ended without grpc-status".to_string());
            return Err(failure.into());
        }
    }
    let chunks =
        reader.finish().map_err(|e| (ReturnCode::ResponseShapeError, format!("the axon's response: {e}")))?;
    Ok((parts.headers, chunks))
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    (status_code(status), format!("gRPC {:?}: {}", status.code(), status.message()))
}

/// gRPC's mapping of HTTP statuses from something that is not a gRPC server.
fn http_status_code(status: http::StatusCode) -> ReturnCode {
    match status.as_u16() {
        404 => ReturnCode::NotImplemented,
        429 | 502 | 503 | 504 => ReturnCode::Unavailable,
        _ => ReturnCode::InternalError,
    }
}

/// gRPC failures (a status from the axon's gRPC server, not its service) as return codes, so a
/// caller handles one kind of answer. The call's own deadline is handled before this.
fn status_code(status: &tonic::Status) -> ReturnCode {
    use tonic::Code;
    match status.code() {
        // A cancelled stream is the connection going away under the call (an axon shutting
        // down), not slowness.
        Code::Unavailable | Code::Cancelled => ReturnCode::Unavailable,
        Code::DeadlineExceeded => ReturnCode::Timeout,
        Code::Unimplemented => ReturnCode::NotImplemented,
        // A message over a size limit, on either side.
        Code::OutOfRange | Code::ResourceExhausted => ReturnCode::RequestShapeError,
        _ => ReturnCode::InternalError,
    }
}
