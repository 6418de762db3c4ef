//! The axon's gRPC service, written against HTTP/2 requests rather than tonic's generated
//! server (issue 15): every check that the call's metadata allows runs before a byte of the
//! body is read (issue 13); a refused call's body is dropped unread (HTTP/2 then tells the
//! sender to stop with RST_STREAM NO_ERROR once the answer is out). An admitted call's body is
//! read frame by frame, never past its signed length, digested as the frames arrive, and decoded
//! as slices of them; the answer's tensor goes to the socket as the handler returned it.
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

use super::{Outcome, Refusal, Shared, Work};
use crate::auth::{AuthError, BodyDigest, BodyHasher};
use crate::codec::{self, ChunkBody, Chunks, FrameError, MessageReader};
use crate::metrics::{Call, Metrics};
use crate::proto::{self, ReturnCode};

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
        let Some(call) = Call::from_path(parts.uri.path()) else {
            let status = tonic::Status::unimplemented(format!("no method {}", parts.uri.path()));
            return status.into_http();
        };
        let (who, outcome) = match self.admit_headers(call, &parts.headers) {
            Err((who, refusal)) => {
                drop(body);
                (who, Err(refusal))
            }
            Ok(pass) => {
                let who = Some(pass.caller.hotkey);
                let deadline = start + self.config.deadline;
                let admitted = async {
                    let chunks = read_body(body, &pass.body, &self.metrics).await?;
                    let work = decode_work(&self, call, chunks)?;
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
            Ok(None) if call == Call::Forward => {
                Err((ReturnCode::InternalError, "the handler returned no output".to_string()))
            }
            other => other,
        };
        let code = match &outcome {
            Ok(_) => ReturnCode::Success,
            Err((code, _)) => *code,
        };
        self.record(who, call, code, start);
        respond(call, outcome)
    }
}

fn late(shared: &Shared) -> Refusal {
    (ReturnCode::Timeout, format!("no result within the axon's deadline of {:?}", shared.config.deadline))
}

/// Reads an admitted call's body as it arrives: one uncompressed gRPC message of exactly the
/// signed length, digested frame by frame; refused at the first byte past that length.
async fn read_body(mut body: Body, expected: &BodyDigest, metrics: &Metrics) -> Result<Chunks, Refusal> {
    let mut message = SignedMessage::new(*expected);
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
            (ReturnCode::InvalidSignature, format!("the body does not match its signature: {e}"))
        }
        BodyError::Auth(e) => (e.code(), e.to_string()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    Frame(FrameError),
    Auth(AuthError),
}

/// A body checked against its signed length and digest as its frames arrive.
struct SignedMessage {
    expected: BodyDigest,
    reader: MessageReader,
    hasher: BodyHasher,
}

impl SignedMessage {
    fn new(expected: BodyDigest) -> SignedMessage {
        SignedMessage {
            expected,
            reader: MessageReader::new(expected.len),
            hasher: BodyHasher::new(expected.algorithm),
        }
    }

    fn push(&mut self, data: tonic::codegen::Bytes) -> Result<(), BodyError> {
        let declared = self.expected.len;
        let part = self.reader.push(data).map_err(|e| match e {
            FrameError::TooLong { got, .. } => BodyError::Auth(AuthError::BodyLength { declared, got }),
            other => BodyError::Frame(other),
        })?;
        if let Some(got) = self.reader.declared().filter(|&d| d != declared) {
            return Err(BodyError::Auth(AuthError::BodyLength { declared, got }));
        }
        self.hasher.update(&part);
        Ok(())
    }

    fn finish(self) -> Result<Chunks, BodyError> {
        let chunks = self.reader.finish().map_err(BodyError::Frame)?;
        if self.hasher.finish() != self.expected {
            return Err(BodyError::Auth(AuthError::DigestMismatch));
        }
        Ok(chunks)
    }
}

/// The verified message's tensors, validated (shape, dtype, limits, NaN/Inf).
fn decode_work(shared: &Shared, call: Call, chunks: Chunks) -> Result<Work, Refusal> {
    let malformed = |e: prost::DecodeError| {
        (ReturnCode::RequestShapeError, format!("the request is not a valid message: {e}"))
    };
    match call {
        Call::Forward => shared.work_forward(proto::ForwardRequest::decode(chunks).map_err(malformed)?),
        Call::Backward => shared.work_backward(proto::BackwardRequest::decode(chunks).map_err(malformed)?),
    }
}

/// The answer as a gRPC response: the message (tensor data as its own chunk), then `grpc-status:
/// 0`; refusals travel in-band in the message's code.
fn respond(call: Call, outcome: Outcome) -> http::Response<Body> {
    let (tensor, code, message) = match outcome {
        Ok(t) => (t, ReturnCode::Success as i32, String::new()),
        Err((code, message)) => (None, code as i32, message),
    };
    let encoded = match call {
        Call::Forward => codec::forward_response(&proto::ForwardResponse { outputs: tensor, code, message }),
        Call::Backward => codec::backward_response(&proto::BackwardResponse { grads: tensor, code, message }),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = http::Response::new(Body::new(ChunkBody::new(encoded, Some(trailers))));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
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
    use proptest::prelude::*;
    use tonic::codegen::Bytes;

    /// Feeds `framed` in chunks cut at `cuts`; the first error, or the message's length.
    fn feed(expected: BodyDigest, framed: &[u8], cuts: &[usize]) -> Result<usize, BodyError> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (framed.len() + 1)).collect();
        points.extend([0, framed.len()]);
        points.sort_unstable();
        let mut m = SignedMessage::new(expected);
        for w in points.windows(2) {
            m.push(Bytes::copy_from_slice(&framed[w[0]..w[1]]))?;
        }
        m.finish().map(|c| bytes::Buf::remaining(&c))
    }

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    proptest! {
        /// However the transport splits a body into frames, a body that matches its signed
        /// length and digest passes, one changed byte fails the digest, and a body that runs
        /// past its signed length, or declares another, is refused.
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
            // A message whose own length differs from the signed one is refused at its prefix.
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
}
