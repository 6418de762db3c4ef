//! The dendrite: a peer's client (market paper §9 step 2: "each peer sends a batch to its
//! neighbours"). One call fans a batch out to k axons in parallel under one deadline and returns
//! one [`PeerResult`] per target, in the targets' order: a slow, dead or lying axon costs its
//! own entry (TIMEOUT, UNAVAILABLE, RESPONSE_SHAPE_ERROR, NON_FINITE), never the others'.
//!
//! Connections are reused: one HTTP/2 channel per axon address, opened lazily on first use and
//! multiplexing every later call (tonic reconnects it if the axon restarts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use tonic::transport::{Channel, Endpoint};

use crate::auth::{BodyDigest, Credentials};
use crate::axon::{max_message_bytes, CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::metrics::{Call, Metrics, PeerLabel};
use crate::proto::axon_client::AxonClient;
use crate::proto::{self, BackwardRequest, ForwardRequest, ReturnCode};
use crate::tensor::{decode_output, Direction, Limits, OwnedTensor};

/// An axon to call: its hotkey (the signature is addressed to it) and where it listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub hotkey: [u8; 32],
    pub addr: SocketAddr,
}

/// One axon's answer to one call.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerResult {
    pub code: ReturnCode,
    /// Why, when `code` is not SUCCESS (the axon's words, or the dendrite's).
    pub message: String,
    /// Forward: the output, always on SUCCESS. Backward: the returned gradient, if any.
    pub tensor: Option<OwnedTensor>,
    /// From the start of the fan-out to this answer (signing included).
    pub latency: Duration,
}

impl PeerResult {
    pub fn is_success(&self) -> bool {
        self.code == ReturnCode::Success
    }
}

/// A client that signs as one hotkey. Cheap to clone: clones share the channels and metrics.
#[derive(Clone)]
pub struct Dendrite {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    limits: Limits,
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    // Unique per request within the axons' freshness window, across restarts too: it starts
    // from the clock in nanoseconds, which a restarted process has moved past.
    nonce: AtomicU64,
    metrics: Arc<Metrics>,
}

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
                channels: Mutex::new(HashMap::new()),
                nonce: AtomicU64::new(start),
                metrics: Arc::new(Metrics::new("dendrite")),
            }),
        }
    }

    pub fn hotkey(&self) -> [u8; 32] {
        self.inner.key.verifying_key().to_bytes()
    }

    /// Per-axon counts by code and latency; `connections_total` counts channels opened.
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
        // The body no longer names its callee: one message and one digest serve every target.
        let req = ForwardRequest { inputs: Some(inputs.clone().into_proto()), ..Default::default() };
        let digest = BodyDigest::of_message(&req);
        let calls = targets.iter().map(|&target| {
            let inner = self.inner.clone();
            let req = req.clone();
            tokio::spawn(async move {
                let request = inner.signed(Call::Forward, &target, req, digest, deadline);
                let mut client = inner.client(target.addr);
                let call = async {
                    let reply = client.forward(request).await?.into_inner();
                    Ok::<_, tonic::Status>((reply.code, reply.message, reply.outputs, true))
                };
                inner.finish(target, Call::Forward, start, deadline, expect, call).await
            })
        });
        let handles: Vec<_> = calls.collect();
        join_in_order(handles, start).await
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
        let calls = targets.iter().enumerate().map(|(i, &target)| {
            let inner = self.inner.clone();
            let grads = grads.get(i).cloned();
            let inputs = inputs.clone();
            tokio::spawn(async move {
                let Some(grads) = grads else {
                    return PeerResult {
                        code: ReturnCode::EmptyRequest,
                        message: format!("no gradient was given for target {i}"),
                        tensor: None,
                        latency: start.elapsed(),
                    };
                };
                let req = BackwardRequest {
                    inputs: Some(inputs),
                    grads: Some(grads.into_proto()),
                    ..Default::default()
                };
                let digest = BodyDigest::of_message(&req);
                let request = inner.signed(Call::Backward, &target, req, digest, deadline);
                let mut client = inner.client(target.addr);
                let call = async {
                    let reply = client.backward(request).await?.into_inner();
                    Ok::<_, tonic::Status>((reply.code, reply.message, reply.grads, false))
                };
                inner.finish(target, Call::Backward, start, deadline, expect, call).await
            })
        });
        let handles: Vec<_> = calls.collect();
        join_in_order(handles, start).await
    }
}

/// `[batch, seq]` of the inputs: every output and returned gradient must start with it.
fn expected_prefix(inputs: &OwnedTensor) -> Option<[u64; 2]> {
    match inputs.shape.as_slice() {
        [b, s, ..] => Some([*b, *s]),
        _ => None,
    }
}

async fn join_in_order(handles: Vec<tokio::task::JoinHandle<PeerResult>>, start: Instant) -> Vec<PeerResult> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap_or_else(|e| PeerResult {
            code: ReturnCode::InternalError,
            message: format!("the dendrite's call task failed: {e}"),
            tensor: None,
            latency: start.elapsed(),
        }));
    }
    results
}

impl Inner {
    /// The call with its credentials in the metadata, addressed to `target`.
    fn signed<T>(
        &self,
        call: Call,
        target: &Target,
        message: T,
        digest: BodyDigest,
        deadline: Duration,
    ) -> tonic::Request<T> {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let credentials = Credentials::sign(&self.key, call, &target.hotkey, nonce, now, digest);
        let mut request = tonic::Request::new(message);
        credentials.write_headers(request.metadata_mut().as_mut());
        // Tells the axon when to stop caring (gRPC's `grpc-timeout`).
        request.set_timeout(deadline);
        request
    }

    fn client(&self, addr: SocketAddr) -> AxonClient<Channel> {
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels
                .entry(addr)
                .or_insert_with(|| {
                    self.metrics.connection_opened();
                    // A SocketAddr always forms a valid URI, so this cannot fail.
                    Endpoint::from_shared(format!("http://{addr}"))
                        .expect("a socket address is a valid authority")
                        .tcp_nodelay(true)
                        .initial_stream_window_size(STREAM_WINDOW)
                        .initial_connection_window_size(CONNECTION_WINDOW)
                        .max_frame_size(MAX_FRAME)
                        .connect_lazy()
                })
                .clone()
        };
        let max = max_message_bytes(&self.limits);
        AxonClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Awaits one call under the deadline, validates the answer and records it.
    async fn finish(
        &self,
        target: Target,
        call: Call,
        start: Instant,
        deadline: Duration,
        expect: Option<[u64; 2]>,
        rpc: impl std::future::Future<Output = Result<(i32, String, Option<proto::Tensor>, bool), tonic::Status>>,
    ) -> PeerResult {
        let outcome = tokio::time::timeout_at((start + deadline).into(), rpc).await;
        let (code, message, tensor) = match outcome {
            Err(_) => (ReturnCode::Timeout, format!("no answer within {deadline:?}"), None),
            Ok(Err(status)) => {
                (status_code(&status), format!("gRPC {:?}: {}", status.code(), status.message()), None)
            }
            Ok(Ok((code, message, tensor, required))) => self.check(code, message, tensor, required, expect),
        };
        let latency = start.elapsed();
        self.metrics.record(PeerLabel::Hotkey(&target.hotkey), call, code, latency);
        PeerResult { code, message, tensor, latency }
    }

    /// An axon's answer is input like any other: its code must be known, and its tensor must
    /// be a finite `[batch, seq, dim]` TENSOR within limits matching the inputs' batch and seq.
    fn check(
        &self,
        code: i32,
        message: String,
        tensor: Option<proto::Tensor>,
        required: bool,
        expect: Option<[u64; 2]>,
    ) -> (ReturnCode, String, Option<OwnedTensor>) {
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
                let owned = OwnedTensor { dtype, modality, shape: tensor.shape, data: tensor.data.into() };
                (code, message, Some(owned))
            }
        }
    }
}

/// gRPC failures as return codes, so a caller handles one kind of answer.
fn status_code(status: &tonic::Status) -> ReturnCode {
    use tonic::Code;
    match status.code() {
        // The axon answers its own deadline with TIMEOUT in the reply; a cancelled gRPC stream
        // is the connection going away under the call (an axon shutting down), not slowness.
        // The call's own grpc-timeout fired in tonic a moment before ours did.
        Code::Cancelled if caused_by::<tonic::TimeoutExpired>(status) => ReturnCode::Timeout,
        Code::Unavailable | Code::Cancelled => ReturnCode::Unavailable,
        // A connection cut mid-call (tonic reports the transport's error as UNKNOWN): the
        // link failed, not the axon's model.
        Code::Unknown
            if caused_by::<tonic::transport::Error>(status) || caused_by::<std::io::Error>(status) =>
        {
            ReturnCode::Unavailable
        }
        Code::DeadlineExceeded => ReturnCode::Timeout,
        Code::Unimplemented => ReturnCode::NotImplemented,
        // A message over a size limit, on either side.
        Code::OutOfRange | Code::ResourceExhausted => ReturnCode::RequestShapeError,
        _ => ReturnCode::InternalError,
    }
}

fn caused_by<E: std::error::Error + 'static>(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}
