//! The axon's gRPC service, written against HTTP/2 requests rather than tonic's generated
//! server (issue 15): every check that the call's metadata allows runs before a byte of the
//! body is read (issue 13); a refused call's body is dropped unread (HTTP/2 then tells the
//! sender to stop with RST_STREAM NO_ERROR once the answer is out). An admitted call's body is
//! read frame by frame, never past its MACed length, decoded as slices of the frames, and
//! digested in one pass with the tensors' NaN/Inf scan; the answer's tensor goes to the socket
//! as the handler returned it.
//!
//! Also here: the accepted connections, counted, with the bytes read from them.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http_body_util::BodyExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use super::{Checked, Outcome, Refusal, Served, Shared, Work};
use crate::auth::response::{ModelVersion, ResponseSeal};
use crate::auth::session::HANDSHAKE_PATH;
use crate::auth::{keys, AuthError, BodyDigest, Credentials, Session, PROTOCOL_VERSION};
use crate::codec::{self, ChunkBody, Chunks, FrameError, MessageReader};
use crate::digest::digest_and_scan;
use crate::metrics::{Call, Metrics};
use crate::proto::{self, ReturnCode};
use crate::tensor::{check_finite, Direction};
use tonic::codegen::Bytes;

/// The service tonic's server routes `/agora.v1.Axon/*` to.
#[derive(Clone)]
pub(crate) struct AxonService {
    shared: Arc<Shared>,
}

impl AxonService {
    pub(crate) fn new(shared: Arc<Shared>) -> AxonService {
        AxonService { shared }
    }
}

impl NamedService for AxonService {
    const NAME: &'static str = "agora.v1.Axon";
}

impl Service<http::Request<Body>> for AxonService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.serve(request).await) })
    }
}

impl Shared {
    /// One call, start to answer; records its outcome under the caller's key once verified.
    async fn serve(self: Arc<Self>, request: http::Request<Body>) -> http::Response<Body> {
        let start = Instant::now();
        let (parts, body) = request.into_parts();
        if parts.uri.path() == HANDSHAKE_PATH {
            return self.open_session(&parts.headers, body, start).await;
        }
        let Some(call) = Call::from_path(parts.uri.path()) else {
            let status = tonic::Status::unimplemented(format!("no method {}", parts.uri.path()));
            return status.into_http();
        };
        // The call's credentials and the session they name; a session this axon does not hold
        // is UNAUTHENTICATED, so the dendrite opens a new one and sends the call again.
        let authed = match Credentials::from_headers(&parts.headers) {
            Ok(c) => match self.session(&c.session) {
                Some(s) => Ok((c, s)),
                None => {
                    self.record(None, call, ReturnCode::InvalidSignature, start);
                    let why = "unknown or expired agora-session: open a new session (protocol 5 handshake)";
                    return tonic::Status::unauthenticated(why).into_http();
                }
            },
            Err(e) => Err(e),
        };
        // What the response's MAC names as its request.
        let request_hash = authed.as_ref().map_or([0; 32], |(c, _)| c.request_hash(call));
        let admitted = match &authed {
            Ok((c, s)) => self.admit_headers(call, c, s),
            Err(e) => Err((None, (e.code(), e.to_string()))),
        };
        let (who, outcome) = match admitted {
            Err((who, refusal)) => {
                drop(body);
                (who, Err(refusal))
            }
            Ok(pass) => {
                let who = Some(pass.caller.hotkey);
                let deadline = start + self.config.deadline;
                let admitted = async {
                    let frames = read_body(body, &pass.body, &self.metrics).await?;
                    let work = verify_and_decode(&self, call, frames, &pass.body)?;
                    self.execute(pass.caller, work, pass.bytes).await
                };
                let outcome = match tokio::time::timeout_at(deadline.into(), admitted).await {
                    // A handler that ran inline past the deadline is late all the same.
                    Ok(Ok(_)) if Instant::now() > deadline => Err(late(&self)),
                    Ok(outcome) => outcome,
                    Err(_) => Err(late(&self)),
                };
                (who, outcome)
            }
        };
        let outcome = match outcome {
            Ok(Served { tensor: None, .. }) if call == Call::Forward => {
                Err((ReturnCode::InternalError, "the handler returned no output".to_string()))
            }
            other => other,
        };
        let answer = Answer::new(call, outcome);
        self.record(who, call, answer.code, start);
        respond(answer, call, authed.as_ref().ok().map(|(_, s)| s), &request_hash)
    }

    /// A handshake call: its message (a few hundred bytes, read up to a bound), then the signed
    /// answer. A refusal is counted in the metrics as a Forward of its caller with its code.
    async fn open_session(&self, headers: &HeaderMap, body: Body, start: Instant) -> http::Response<Body> {
        let version = match Credentials::check_version(headers) {
            Ok(()) => read_handshake(body).await,
            Err(e) => Err((e.code(), e.to_string())),
        };
        let (who, answer) = self.handshake(version);
        let code = ReturnCode::try_from(answer.code).unwrap_or(ReturnCode::InternalError);
        // A refusal is what the caller's call reports; an opened session is no call.
        if code != ReturnCode::Success {
            self.record(who, Call::Forward, code, start);
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let encoded = codec::whole(&answer);
        let mut response = http::Response::new(Body::new(ChunkBody::new(encoded, Some(trailers))));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        response.headers_mut().insert(keys::VERSION, HeaderValue::from(PROTOCOL_VERSION));
        response
    }
}

/// Longest handshake message read: its fields take under 200 bytes.
const MAX_HANDSHAKE: u64 = 1 << 10;

async fn read_handshake(mut body: Body) -> Result<proto::HandshakeRequest, Refusal> {
    let mut reader = MessageReader::new(MAX_HANDSHAKE);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| (ReturnCode::Unavailable, format!("the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            reader.push(data).map_err(|e| (ReturnCode::RequestShapeError, format!("the handshake: {e}")))?;
        }
    }
    let chunks =
        reader.finish().map_err(|e| (ReturnCode::RequestShapeError, format!("the handshake: {e}")))?;
    proto::HandshakeRequest::decode(chunks)
        .map_err(|e| (ReturnCode::RequestShapeError, format!("the handshake is not a valid message: {e}")))
}

fn late(shared: &Shared) -> Refusal {
    (ReturnCode::Timeout, format!("no result within the axon's deadline of {:?}", shared.config.deadline))
}

/// Reads an admitted call's body as it arrives: one uncompressed gRPC message of exactly the
/// signed length, refused at the first byte that shows otherwise. The message's frames, as
/// they arrived.
async fn read_body(mut body: Body, expected: &BodyDigest, metrics: &Metrics) -> Result<Vec<Bytes>, Refusal> {
    let mut message = MacedMessage::new(expected.len);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| (ReturnCode::Unavailable, format!("the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            metrics.add_body_bytes(data.len() as u64);
            message.push(data).map_err(refusal)?;
        }
    }
    message.finish().map_err(refusal)
}

fn refusal(e: BodyError) -> Refusal {
    match e {
        BodyError::Frame(FrameError::Compressed) => {
            (ReturnCode::NotImplemented, "compressed requests are not accepted".to_string())
        }
        BodyError::Frame(e) => {
            (ReturnCode::InvalidSignature, format!("the body does not match its MAC: {e}"))
        }
        BodyError::Auth(e) => (e.code(), e.to_string()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    Frame(FrameError),
    Auth(AuthError),
}

/// A body checked against its MACed length as its frames arrive.
struct MacedMessage {
    declared: u64,
    reader: MessageReader,
    frames: Vec<Bytes>,
}

impl MacedMessage {
    fn new(declared: u64) -> MacedMessage {
        MacedMessage { declared, reader: MessageReader::new(declared), frames: Vec::new() }
    }

    fn push(&mut self, data: Bytes) -> Result<(), BodyError> {
        let declared = self.declared;
        let part = self.reader.push(data).map_err(|e| match e {
            FrameError::TooLong { got, .. } => BodyError::Auth(AuthError::BodyLength { declared, got }),
            other => BodyError::Frame(other),
        })?;
        if let Some(got) = self.reader.declared().filter(|&d| d != declared) {
            return Err(BodyError::Auth(AuthError::BodyLength { declared, got }));
        }
        if !part.is_empty() {
            self.frames.push(part);
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<Bytes>, BodyError> {
        self.reader.finish().map_err(BodyError::Frame)?;
        Ok(self.frames)
    }
}

/// The verified message's work. The digest and the tensors' NaN/Inf scan share one pass over
/// the body's bytes (each block scanned while the hash has it in cache); the digest is judged
/// first, so a body that does not match its MAC is refused as such whatever it holds.
fn verify_and_decode(
    shared: &Shared,
    call: Call,
    frames: Vec<Bytes>,
    expected: &BodyDigest,
) -> Result<Work, Refusal> {
    let mut chunks = Chunks::default();
    for f in &frames {
        chunks.push(f.clone());
    }
    let decoded = match call {
        Call::Forward => proto::ForwardRequest::decode(chunks).map(|r| [r.inputs, None]),
        Call::Backward => proto::BackwardRequest::decode(chunks).map(|r| [r.inputs, r.grads]),
    };
    let limits = &shared.config.limits;
    let none: [Option<proto::Tensor>; 2] = [None, None];
    let tensors = decoded.as_ref().unwrap_or(&none);
    let structure = [0, 1].map(|i| tensors[i].as_ref().map(|t| Checked::structure(t, limits, i == 1)));
    let scans = [0, 1].map(|i| match (&tensors[i], &structure[i]) {
        (Some(t), Some(Ok((dtype, _)))) if dtype.is_float() => Some((&t.data[..], *dtype)),
        _ => None,
    });
    let (digest, suspect) = digest_and_scan(&frames, scans);
    if digest != *expected {
        return Err(refusal(BodyError::Auth(AuthError::DigestMismatch)));
    }
    let malformed = |e: prost::DecodeError| {
        (ReturnCode::RequestShapeError, format!("the request is not a valid message: {e}"))
    };
    shared.work(call, decoded.map_err(malformed)?, structure, suspect)
}

/// An answer in its wire form with its digest, its handler output scanned for NaN/Inf in the
/// same pass (one pass over the output's bytes, where protocol 4 scanned and then hashed).
struct Answer {
    code: ReturnCode,
    encoded: codec::Encoded,
    digest: BodyDigest,
    model: ModelVersion,
}

impl Answer {
    /// `outcome` encoded and digested. An output that holds NaN or Inf is refused here: the
    /// answer becomes a refusal that names the element (its digest is then of the refusal).
    fn new(call: Call, outcome: Outcome) -> Answer {
        let answer = |tensor: Option<proto::Tensor>, code: ReturnCode, message: String| {
            let code = code as i32;
            match call {
                Call::Forward => {
                    codec::forward_response(&proto::ForwardResponse { outputs: tensor, code, message })
                }
                Call::Backward => {
                    codec::backward_response(&proto::BackwardResponse { grads: tensor, code, message })
                }
            }
        };
        let refused = |(code, message): Refusal| {
            let encoded = answer(None, code, message);
            let digest = BodyDigest::of_chunks(encoded.message_chunks());
            Answer { code, encoded, digest, model: ModelVersion::UNVERSIONED }
        };
        let Served { tensor, scan, model } = match outcome {
            Ok(served) => served,
            Err(refusal) => return refused(refusal),
        };
        let data = tensor.as_ref().map(|t| t.data.clone());
        let encoded = answer(tensor, ReturnCode::Success, String::new());
        let scans = [data.as_deref().zip(scan), None];
        let (digest, [suspect, _]) = digest_and_scan(&encoded.message_parts(), scans);
        if let (true, Some(data), Some(dtype)) = (suspect, &data, scan) {
            if let Err(e) = check_finite(dtype, data) {
                let why = format!("the axon's handler returned {e}");
                return refused((e.code(Direction::Response), why));
            }
        }
        Answer { code: ReturnCode::Success, encoded, digest, model }
    }
}

/// The answer as a gRPC response: the message (tensor data as its own chunk), then `grpc-status:
/// 0`; refusals travel in-band in the message's code. MACed in the response's headers under
/// the session's response key over `request_hash`, the message's digest and the model that
/// answered (protocol 5; a refusal names no model); with `agora-version` alone when the call
/// named no session the axon could read.
fn respond(
    answer: Answer,
    call: Call,
    session: Option<&Session>,
    request_hash: &[u8; 32],
) -> http::Response<Body> {
    let Answer { encoded, digest, model, .. } = answer;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = http::Response::new(Body::new(ChunkBody::new(encoded, Some(trailers))));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    match session {
        Some(s) => {
            ResponseSeal::seal(s, call, request_hash, digest, model).write_headers(response.headers_mut())
        }
        None => {
            response.headers_mut().insert(keys::VERSION, HeaderValue::from(PROTOCOL_VERSION));
        }
    }
    response
}

/// Accepted connections, counted, each counting the bytes read from it.
pub(crate) struct CountingIncoming {
    inner: TcpIncoming,
    metrics: Arc<Metrics>,
}

impl CountingIncoming {
    pub(crate) fn new(inner: TcpIncoming, metrics: Arc<Metrics>) -> CountingIncoming {
        CountingIncoming { inner, metrics }
    }
}

impl tokio_stream::Stream for CountingIncoming {
    type Item = io::Result<CountingIo>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = ready!(Pin::new(&mut self.inner).poll_next(cx));
        Poll::Ready(item.map(|r| {
            r.map(|stream| {
                self.metrics.connection_opened();
                CountingIo { inner: stream, metrics: self.metrics.clone() }
            })
        }))
    }
}

pub(crate) struct CountingIo {
    inner: TcpStream,
    metrics: Arc<Metrics>,
}

impl Connected for CountingIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.metrics.add_received_bytes((buf.filled().len() - before) as u64);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;
    use proptest::prelude::*;
    use tonic::codegen::Bytes;

    /// Feeds `framed` in chunks cut at `cuts`, then judges the digest as the service does; the
    /// first error, or the message's length.
    fn feed(expected: BodyDigest, framed: &[u8], cuts: &[usize]) -> Result<usize, BodyError> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (framed.len() + 1)).collect();
        points.extend([0, framed.len()]);
        points.sort_unstable();
        let mut m = MacedMessage::new(expected.len);
        for w in points.windows(2) {
            m.push(Bytes::copy_from_slice(&framed[w[0]..w[1]]))?;
        }
        let frames = m.finish()?;
        if digest_and_scan(&frames, [None, None]).0 != expected {
            return Err(BodyError::Auth(AuthError::DigestMismatch));
        }
        Ok(frames.iter().map(Bytes::len).sum())
    }

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    proptest! {
        /// However the transport splits a body into frames, a body that matches its MACed
        /// length and digest passes, one changed byte fails the digest, and a body that runs
        /// past its MACed length, or declares another, is refused.
        #[test]
        fn the_verdict_does_not_depend_on_chunking(
            message in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            flip in any::<usize>(),
        ) {
            let expected = BodyDigest::of_bytes(&message);
            let framed = frame(&message);
            prop_assert_eq!(feed(expected, &framed, &cuts), Ok(message.len()));
            if !message.is_empty() {
                let mut bad = framed.clone();
                bad[5 + flip % message.len()] ^= 1;
                prop_assert_eq!(feed(expected, &bad, &cuts), Err(BodyError::Auth(AuthError::DigestMismatch)));
            }
            let mut longer = framed.clone();
            longer.push(0);
            prop_assert_eq!(feed(expected, &longer, &cuts), Err(BodyError::Frame(FrameError::Trailing)));
            // A message whose own length differs from the MACed one is refused at its prefix.
            let other = frame(&[message.as_slice(), &[1]].concat());
            let declared = message.len() as u64;
            let got = declared + 1;
            prop_assert_eq!(feed(expected, &other, &cuts), Err(BodyError::Auth(AuthError::BodyLength { declared, got })));
            let shorter = frame(&message[..message.len().saturating_sub(1)]);
            prop_assert!(feed(expected, &shorter, &cuts).is_err() || message.is_empty());
            // A body that ends early.
            prop_assert!(feed(expected, &framed[..framed.len() - 1], &cuts).is_err());
        }
    }

    proptest! {
        /// An answer's one pass digests exactly the bytes sent and refuses a handler output
        /// holding NaN or Inf wherever it sits, for outputs sent as their own chunk (large) or
        /// inside the envelope (small), as NON_FINITE with a digest of the refusal sent instead.
        #[test]
        fn an_answer_is_digested_and_scanned_in_one_pass(
            n in prop_oneof![1usize..40, 4_000usize..9_000],
            bad in proptest::option::of((any::<prop::sample::Index>(), 0usize..3)),
            backward in any::<bool>(),
        ) {
            let mut values: Vec<f32> = (0..n).map(|k| k as f32 * 0.5 - 1.0).collect();
            if let Some((at, kind)) = bad {
                values[at.index(n)] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][kind];
            }
            let data = crate::tensor::f32s_to_le_bytes(&values);
            let tensor = crate::tensor::encode(DType::F32, &[1, 1, n as u64], crate::Modality::Tensor, data);
            let model = ModelVersion { id: [9; 32], step: 3 };
            let call = if backward { Call::Backward } else { Call::Forward };
            let served = Served { tensor: Some(tensor), scan: Some(DType::F32), model };
            let answer = Answer::new(call, Ok(served));
            let sent: Vec<u8> = answer.encoded.message_chunks().flat_map(|c| c.iter().copied()).collect();
            prop_assert_eq!(answer.digest, BodyDigest::of_bytes(&sent));
            if bad.is_some() {
                prop_assert_eq!(answer.code, ReturnCode::NonFinite);
                prop_assert_eq!(answer.model, ModelVersion::UNVERSIONED);
                let code = match call {
                    Call::Forward => proto::ForwardResponse::decode(&sent[..]).map(|r| (r.code, r.outputs.is_none())),
                    Call::Backward => proto::BackwardResponse::decode(&sent[..]).map(|r| (r.code, r.grads.is_none())),
                };
                prop_assert_eq!(code, Ok((ReturnCode::NonFinite as i32, true)));
            } else {
                prop_assert_eq!(answer.code, ReturnCode::Success);
                prop_assert_eq!(answer.model, model);
            }
        }
    }

    proptest! {
        /// The one pass over a Backward's bytes gives the digest of the whole message and finds
        /// a NaN or Inf wherever it sits, in either tensor and any float dtype, both when the
        /// tensors arrived as frames of their own (scanned as they are hashed) and when the
        /// frames were cut elsewhere (tensors decoded into copies, scanned on their own).
        #[test]
        fn one_pass_digests_the_message_and_finds_every_non_finite(
            n in prop_oneof![1usize..40, 5_000usize..9_000],
            bad in proptest::option::of((any::<bool>(), any::<prop::sample::Index>(), 0usize..3)),
            dtype_i in 0usize..3,
            cuts in proptest::option::of(proptest::collection::vec(any::<usize>(), 1..6)),
        ) {
            let dtype = [DType::F32, DType::F16, DType::BF16][dtype_i];
            let tensor = |which: bool| {
                let mut data = Vec::new();
                for k in 0..n {
                    let v = match bad {
                        Some((w, at, kind)) if w == which && at.index(n) == k => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][kind],
                        _ => k as f32 * 0.25 - 3.0,
                    };
                    match dtype {
                        DType::F32 => data.extend_from_slice(&v.to_le_bytes()),
                        DType::F16 => data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                        _ => data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    }
                }
                crate::tensor::encode(dtype, &[1, 1, n as u64], crate::Modality::Tensor, data)
            };
            let req = proto::BackwardRequest { inputs: Some(tensor(false)), grads: Some(tensor(true)), ..Default::default() };
            let whole = req.encode_to_vec();
            let encoded = codec::backward_request(&req);
            let frames: Vec<Bytes> = match &cuts {
                None => encoded.message_chunks().map(Bytes::copy_from_slice).collect(),
                Some(cuts) => {
                    let mut points: Vec<usize> = cuts.iter().map(|c| c % (whole.len() + 1)).collect();
                    points.extend([0, whole.len()]);
                    points.sort_unstable();
                    points.windows(2).map(|w| Bytes::copy_from_slice(&whole[w[0]..w[1]])).collect()
                }
            };
            let mut chunks = Chunks::default();
            for f in &frames {
                chunks.push(f.clone());
            }
            let back = proto::BackwardRequest::decode(chunks).unwrap();
            let scans = [back.inputs.as_ref(), back.grads.as_ref()].map(|t| t.map(|t| (&t.data[..], dtype)));
            let (digest, suspect) = digest_and_scan(&frames, scans);
            prop_assert_eq!(digest, BodyDigest::of_bytes(&whole));
            let want = [bad.is_some_and(|b| !b.0), bad.is_some_and(|b| b.0)];
            prop_assert_eq!(suspect, want);
        }
    }
}
