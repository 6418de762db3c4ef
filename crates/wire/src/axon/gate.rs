//! The gate in front of the generated gRPC service: every check that the call's metadata allows
//! runs here, before a byte of the body is read (issue 13). A refused call's body is dropped
//! unread (HTTP/2 then tells the sender to stop with RST_STREAM NO_ERROR once the answer is
//! out) and tonic is handed one empty message instead, so the refusal is still answered in-band
//! by the service with its code. An admitted call's body is read up to its signed length only,
//! and digested as it streams through; the service checks the verdict before using the message.
//!
//! Also here: the accepted connections, counted, with the bytes read from them.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http_body::{Body as _, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{Bytes, Service};
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tonic::Status;

use super::{Pass, Refusal, Shared};
use crate::auth::{AuthError, BodyDigest, BodyHasher};
use crate::metrics::{Call, Metrics};

type Decided = Result<Pass, (Option<[u8; 32]>, Refusal)>;

/// What the gate decided about one call, handed to the service in the request's extensions.
#[derive(Clone)]
pub(crate) struct Ticket(Arc<TicketInner>);

struct TicketInner {
    start: Instant,
    decided: Mutex<Option<Decided>>,
    /// Set by the body once it has seen the signed number of bytes.
    verdict: Mutex<Option<Result<(), AuthError>>>,
}

impl Ticket {
    fn new(start: Instant, decided: Decided) -> Ticket {
        Ticket(Arc::new(TicketInner { start, decided: Mutex::new(Some(decided)), verdict: Mutex::new(None) }))
    }

    pub(crate) fn start(&self) -> Instant {
        self.0.start
    }

    /// The gate's decision; a ticket is taken once.
    pub(crate) fn take(&self) -> Decided {
        let taken = self.0.decided.lock().unwrap_or_else(|e| e.into_inner()).take();
        taken.unwrap_or_else(|| Err((None, (crate::ReturnCode::InternalError, "ticket used twice".into()))))
    }

    /// Whether the body matched its signed length and digest.
    pub(crate) fn body_verdict(&self) -> Result<(), AuthError> {
        let verdict = self.0.verdict.lock().unwrap_or_else(|e| e.into_inner()).clone();
        verdict.unwrap_or(Err(AuthError::DigestMismatch))
    }

    fn set_verdict(&self, verdict: Result<(), AuthError>) {
        *self.0.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
    }
}

/// The generated `AxonServer` behind its gate.
#[derive(Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Gate<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Gate<S> {
        Gate { inner, shared }
    }
}

impl<S> NamedService for Gate<S> {
    const NAME: &'static str = "agora.v1.Axon";
}

impl<S> Service<http::Request<Body>> for Gate<S>
where
    S: Service<http::Request<GuardedBody>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let start = Instant::now();
        let (mut parts, body) = request.into_parts();
        let body = match Call::from_path(parts.uri.path()) {
            // Not one of ours: tonic answers UNIMPLEMENTED without reading it.
            None => GuardedBody::Passthrough(body),
            Some(call) => match self.shared.admit_headers(call, &parts.headers) {
                Ok(pass) => {
                    let expected = pass.body;
                    let ticket = Ticket::new(start, Ok(pass));
                    parts.extensions.insert(ticket.clone());
                    GuardedBody::Digested(Box::new(Digested {
                        inner: body,
                        expected,
                        prefix: [0; 5],
                        prefix_len: 0,
                        hasher: Some(BodyHasher::new(expected.algorithm)),
                        ticket,
                        metrics: self.shared.metrics.clone(),
                    }))
                }
                Err(refused) => {
                    drop(body);
                    parts.extensions.insert(Ticket::new(start, Err(refused)));
                    // An empty, uncompressed gRPC message: decodes as a default request.
                    GuardedBody::StandIn(Some(Bytes::from_static(&[0, 0, 0, 0, 0])))
                }
            },
        };
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// The request body as the service sees it.
pub(crate) enum GuardedBody {
    Passthrough(Body),
    /// A refused call's stand-in for the body it will never read.
    StandIn(Option<Bytes>),
    Digested(Box<Digested>),
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.get_mut() {
            GuardedBody::Passthrough(b) => Pin::new(b).poll_frame(cx),
            GuardedBody::StandIn(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GuardedBody::Digested(d) => d.poll_frame(cx),
        }
    }
}

/// An admitted call's body: passed through as it arrives, never past the signed length, its
/// gRPC message bytes digested on the way.
pub(crate) struct Digested {
    inner: Body,
    expected: BodyDigest,
    /// The gRPC message prefix: compression flag and big-endian length.
    prefix: [u8; 5],
    prefix_len: usize,
    /// `None` once the signed length was reached and the verdict set.
    hasher: Option<BodyHasher>,
    ticket: Ticket,
    metrics: Arc<Metrics>,
}

impl Digested {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            None => {
                if let Some(h) = &self.hasher {
                    let got = h.len();
                    self.ticket.set_verdict(Err(AuthError::BodyLength { declared: self.expected.len, got }));
                }
                Poll::Ready(None)
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.metrics.add_body_bytes(data.len() as u64);
                    Poll::Ready(Some(self.consume(&data).map(|()| Frame::data(data))))
                }
                Err(trailers) => Poll::Ready(Some(Ok(trailers))),
            },
        }
    }

    fn refuse(&self, e: AuthError) -> Status {
        let status = Status::invalid_argument(e.to_string());
        self.ticket.set_verdict(Err(e));
        status
    }

    fn consume(&mut self, mut data: &[u8]) -> Result<(), Status> {
        if self.prefix_len < 5 {
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                if self.prefix[0] != 0 {
                    return Err(Status::unimplemented("compressed requests are not accepted"));
                }
                let len =
                    u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                if u64::from(len) != self.expected.len {
                    return Err(
                        self.refuse(AuthError::BodyLength { declared: self.expected.len, got: len.into() })
                    );
                }
            }
        }
        if self.prefix_len < 5 {
            return Ok(());
        }
        let declared = self.expected.len;
        let Some(hasher) = self.hasher.as_mut() else {
            if data.is_empty() {
                return Ok(());
            }
            let got = declared + data.len() as u64;
            return Err(self.refuse(AuthError::BodyLength { declared, got }));
        };
        if hasher.len() + data.len() as u64 > declared {
            let got = hasher.len() + data.len() as u64;
            return Err(self.refuse(AuthError::BodyLength { declared, got }));
        }
        hasher.update(data);
        if hasher.len() == declared {
            let digest = self.hasher.take().map(BodyHasher::finish);
            let verdict =
                if digest.as_ref() == Some(&self.expected) { Ok(()) } else { Err(AuthError::DigestMismatch) };
            self.ticket.set_verdict(verdict);
        }
        Ok(())
    }
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

    fn digested(expected: BodyDigest) -> Digested {
        let ticket =
            Ticket::new(Instant::now(), Err((None, (crate::ReturnCode::Unspecified, String::new()))));
        Digested {
            inner: Body::empty(),
            expected,
            prefix: [0; 5],
            prefix_len: 0,
            hasher: Some(BodyHasher::new(expected.algorithm)),
            ticket,
            metrics: Arc::new(Metrics::new("axon")),
        }
    }

    /// Feeds `framed` in chunks cut at `cuts`; the verdict, or the first error.
    fn feed(d: &mut Digested, framed: &[u8], cuts: &[usize]) -> Result<Result<(), AuthError>, Status> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (framed.len() + 1)).collect();
        points.extend([0, framed.len()]);
        points.sort_unstable();
        for w in points.windows(2) {
            d.consume(&framed[w[0]..w[1]])?;
        }
        Ok(d.ticket.body_verdict())
    }

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    proptest! {
        /// However the transport splits a body into chunks, a body that matches its signed
        /// length and digest passes, one changed byte fails the digest, and a body that runs
        /// past its signed length is cut off.
        #[test]
        fn the_verdict_does_not_depend_on_chunking(
            message in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            flip in any::<usize>(),
        ) {
            let expected = BodyDigest::of_bytes(&message);
            let framed = frame(&message);
            prop_assert_eq!(feed(&mut digested(expected), &framed, &cuts).unwrap(), Ok(()));
            if !message.is_empty() {
                let mut bad = framed.clone();
                bad[5 + flip % message.len()] ^= 1;
                prop_assert_eq!(feed(&mut digested(expected), &bad, &cuts).unwrap(), Err(AuthError::DigestMismatch));
            }
            let mut longer = framed.clone();
            longer.push(0);
            prop_assert!(feed(&mut digested(expected), &longer, &cuts).is_err());
            // A frame whose own length differs from the signed one is refused at its prefix.
            let mut other = frame(&[message.as_slice(), &[1]].concat());
            other.truncate(5);
            prop_assert!(feed(&mut digested(expected), &other, &cuts).is_err());
        }
    }
}
