//! The RPC server's connections: who may connect, for how long, and how many at once.
//!
//! jsonrpsee's own accept loop counts HTTP calls in flight and WebSocket connections under one
//! limit (100) and puts no time limit on reading a request body or on an idle WebSocket: 100
//! slow senders or 100 held subscriptions answered every other client 429. This loop accepts
//! the connections itself and hands each to jsonrpsee's service:
//! - at most [`RpcLimits::max_connections`] TCP connections, at most
//!   [`RpcLimits::max_connections_per_ip`] from one address; a refused connection gets a one-line
//!   HTTP answer saying which limit it met;
//! - WebSocket connections count apart, at most [`RpcLimits::max_ws`] and
//!   [`RpcLimits::max_ws_per_ip`] per address, so held subscriptions cannot starve plain calls;
//! - a request's headers, and then its body, must arrive within
//!   [`RpcLimits::request_timeout`] each (hyper's header timeout also closes an idle keep-alive
//!   connection); a late body is answered 408 and the connection closed;
//! - a WebSocket with no subscription and no call for [`RpcLimits::ws_idle_timeout`] is closed.
//!
//! Every connection is served by one tokio task; nothing a client sends is buffered beyond the
//! request size limit.

use crate::metrics::RpcCounters;
use http_body_util::{BodyExt, Limited};
use jsonrpsee::server::{ws, HttpBody, HttpRequest, HttpResponse, StopHandle, TowerServiceBuilder};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

/// The limits of the RPC server (each has an `agora node` flag).
#[derive(Clone, Debug)]
pub struct RpcLimits {
    /// TCP connections at once (HTTP and WebSocket).
    pub max_connections: usize,
    /// TCP connections at once from one IP address.
    pub max_connections_per_ip: usize,
    /// WebSocket connections at once.
    pub max_ws: usize,
    /// WebSocket connections at once from one IP address.
    pub max_ws_per_ip: usize,
    /// Time to receive a request's headers, and again its body.
    pub request_timeout: Duration,
    /// A WebSocket with no subscription and no call for this long is closed.
    pub ws_idle_timeout: Duration,
    /// Largest request body (and WebSocket message) in bytes.
    pub max_request_bytes: u32,
    /// Past-metagraph calls running at once.
    pub max_historical: usize,
}

impl RpcLimits {
    /// `agora node`'s default limits; the largest request holds one transaction of the
    /// genesis' maximum size as hex, plus room for the JSON around it.
    pub fn for_genesis(genesis: &ledger::GenesisConfig) -> RpcLimits {
        RpcLimits {
            max_connections: 1024,
            max_connections_per_ip: 128,
            max_ws: 256,
            max_ws_per_ip: 64,
            request_timeout: Duration::from_secs(10),
            ws_idle_timeout: Duration::from_secs(60),
            max_request_bytes: genesis.limits.max_tx_bytes.saturating_mul(2).saturating_add(64 * 1024),
            max_historical: 2,
        }
    }
}

/// How often a WebSocket's idleness is looked at.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Which transport a call came over: put in the request's extensions, so the JSON-RPC
/// middleware can say that subscriptions need a WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A plain HTTP request: one call, no subscriptions.
    Http,
    /// A WebSocket connection: calls and subscriptions.
    WebSocket,
}

/// What one connection did lately, shared by its socket, its calls and its subscriptions
/// (through the request extensions).
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last call.
    last_call_ms: AtomicU64,
    subscriptions: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_call_ms: AtomicU64::new(0),
            subscriptions: AtomicUsize::new(0),
        }
    }

    /// Records a call.
    pub fn touch(&self) {
        self.last_call_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Counts a subscription until the returned guard is dropped.
    pub fn subscribed(self: &Arc<Self>) -> SubscriptionGuard {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        SubscriptionGuard(self.clone())
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_call_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// See [`Activity::subscribed`].
pub struct SubscriptionGuard(Arc<Activity>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Full(usize),
    PerIp(usize),
}

/// Counted slots, in all and per address.
#[derive(Debug)]
pub struct Pool {
    max: usize,
    max_per_ip: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Pool {
    fn new(max: usize, max_per_ip: usize) -> Arc<Pool> {
        Arc::new(Pool { max, max_per_ip, counts: Mutex::new((0, HashMap::new())) })
    }

    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.0 >= self.max {
            return Err(Refusal::Full(self.max));
        }
        let mine = c.1.entry(ip).or_insert(0);
        if *mine >= self.max_per_ip {
            return Err(Refusal::PerIp(self.max_per_ip));
        }
        *mine += 1;
        c.0 += 1;
        Ok(Slot { pool: self.clone(), ip })
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// One taken slot of a [`Pool`], given back when dropped.
#[derive(Debug)]
struct Slot {
    pool: Arc<Pool>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.pool.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.0 = c.0.saturating_sub(1);
        if let Some(n) = c.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.1.remove(&self.ip);
            }
        }
    }
}

/// The server's pools and counters, shared with `/metrics`.
pub struct Connections {
    /// Open TCP connections (HTTP and WebSocket), in all and per address.
    pub tcp: Arc<Pool>,
    /// Open WebSockets, in all and per address.
    pub ws: Arc<Pool>,
    /// What the server refused or closed, by reason.
    pub counters: RpcCounters,
    /// The expensive calls' limit (past metagraphs).
    pub historical: Arc<crate::rpc::Expensive>,
}

impl Connections {
    /// Empty pools sized by `limits`.
    pub fn new(limits: &RpcLimits) -> Connections {
        Connections {
            tcp: Pool::new(limits.max_connections, limits.max_connections_per_ip),
            ws: Pool::new(limits.max_ws, limits.max_ws_per_ip),
            counters: RpcCounters::default(),
            historical: Arc::new(crate::rpc::Expensive::new(
                limits.max_historical,
                crate::rpc::HISTORICAL_WAIT,
            )),
        }
    }
}

/// One connection's state: its slots (held as long as the socket lives, also after an upgrade
/// to WebSocket) and its activity.
struct Conn {
    ip: IpAddr,
    _tcp: Slot,
    ws: Mutex<Option<Slot>>,
    activity: Arc<Activity>,
}

impl Conn {
    fn is_ws(&self) -> bool {
        self.ws.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Takes a WebSocket slot for this connection (once: it keeps it until it closes).
    fn take_ws(&self, pool: &Arc<Pool>) -> Result<(), Refusal> {
        let mut ws = self.ws.lock().unwrap_or_else(|p| p.into_inner());
        if ws.is_none() {
            *ws = Some(pool.take(self.ip)?);
        }
        Ok(())
    }
}

/// The socket, closing itself (reads fail) once a WebSocket has been idle too long. Checked in
/// `poll_read`, which a WebSocket connection always has pending.
struct Watched {
    io: TcpStream,
    conn: Arc<Conn>,
    idle_limit: Duration,
    check: Pin<Box<tokio::time::Sleep>>,
    shared: Arc<Connections>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.check.as_mut().poll(cx).is_ready() {
            let a = &this.conn.activity;
            if this.conn.is_ws()
                && a.subscriptions.load(Ordering::Relaxed) == 0
                && a.idle_for() > this.idle_limit
            {
                this.shared.counters.ws_idle_closed.inc();
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle WebSocket closed")));
            }
            this.check.as_mut().reset(tokio::time::Instant::now() + IDLE_CHECK);
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A plain-text HTTP response.
fn text(status: http::StatusCode, body: String) -> HttpResponse {
    let mut r = http::Response::new(HttpBody::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn refusal_text(r: Refusal, what: &str) -> (http::StatusCode, String) {
    match r {
        Refusal::Full(max) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("the node serves at most {max} {what} at once: retry later\n"),
        ),
        Refusal::PerIp(max) => (
            http::StatusCode::TOO_MANY_REQUESTS,
            format!("at most {max} {what} from one address: close some first\n"),
        ),
    }
}

/// Answers a refused connection in one write (best effort: a client that does not read gets
/// nothing) and closes it.
fn refuse(sock: TcpStream, r: Refusal) {
    let (status, body) = refusal_text(r, "connections");
    let reason = status.canonical_reason().unwrap_or("");
    let msg = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_u16(),
        body.len()
    );
    let _ = sock.try_write(msg.as_bytes());
}

/// Accepts connections on `listener` until `stop` fires, serving each with `svc_builder`.
pub async fn serve<RpcMiddleware, HttpMiddleware>(
    listener: TcpListener,
    svc_builder: TowerServiceBuilder<RpcMiddleware, HttpMiddleware>,
    methods: jsonrpsee::Methods,
    limits: RpcLimits,
    shared: Arc<Connections>,
    stop: StopHandle,
) where
    TowerServiceBuilder<RpcMiddleware, HttpMiddleware>: Clone + Send + 'static,
    jsonrpsee::server::TowerService<RpcMiddleware, HttpMiddleware>: Service<HttpRequest, Response = HttpResponse, Error = jsonrpsee::core::BoxError>
        + Clone
        + Send
        + 'static,
    <jsonrpsee::server::TowerService<RpcMiddleware, HttpMiddleware> as Service<HttpRequest>>::Future:
        Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.clone().shutdown() => break,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: keep serving.
                tracing::warn!(error = %e, "rpc: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        let tcp = match shared.tcp.take(ip) {
            Ok(slot) => slot,
            Err(r) => {
                let c = &shared.counters;
                match r {
                    Refusal::Full(_) => c.refused_full.inc(),
                    Refusal::PerIp(_) => c.refused_per_ip.inc(),
                };
                refuse(sock, r);
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let conn =
            Arc::new(Conn { ip, _tcp: tcp, ws: Mutex::new(None), activity: Arc::new(Activity::new()) });
        let rpc = svc_builder.clone().build(methods.clone(), stop.clone());
        tokio::spawn(connection(sock, conn, rpc, limits.clone(), shared.clone(), stop.clone()));
    }
}

/// Serves one connection until it closes, times out, or the server stops.
async fn connection<S>(
    sock: TcpStream,
    conn: Arc<Conn>,
    rpc: S,
    limits: RpcLimits,
    shared: Arc<Connections>,
    stop: StopHandle,
) where
    S: Service<HttpRequest, Response = HttpResponse, Error = jsonrpsee::core::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = Watched {
        io: sock,
        conn: conn.clone(),
        idle_limit: limits.ws_idle_timeout,
        check: Box::pin(tokio::time::sleep(IDLE_CHECK)),
        shared: shared.clone(),
    };
    let header_timeout = limits.request_timeout;
    let svc = {
        let conn = conn.clone();
        let shared = shared.clone();
        tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            handle(req, conn.clone(), rpc.clone(), limits.clone(), shared.clone())
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let served = builder
        .serve_connection(
            hyper_util::rt::TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(svc),
        )
        .with_upgrades();
    tokio::pin!(served);
    let stopped = stop.shutdown();
    tokio::pin!(stopped);
    tokio::select! {
        _ = &mut served => {}
        _ = &mut stopped => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}

/// One request: a WebSocket upgrade takes a WebSocket slot; an HTTP request has its body read
/// under the deadline, then both go to jsonrpsee with the transport and the connection's
/// activity in their extensions.
async fn handle<S>(
    req: http::Request<hyper::body::Incoming>,
    conn: Arc<Conn>,
    mut rpc: S,
    limits: RpcLimits,
    shared: Arc<Connections>,
) -> Result<HttpResponse, jsonrpsee::core::BoxError>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = jsonrpsee::core::BoxError>,
{
    conn.activity.touch();
    let upgrade = ws::is_upgrade_request(&req);
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(conn.activity.clone());
    if upgrade {
        if let Err(r) = conn.take_ws(&shared.ws) {
            shared.counters.refused_ws.inc();
            let (status, msg) = refusal_text(r, "WebSocket connections");
            return Ok(text(status, msg));
        }
        parts.extensions.insert(Transport::WebSocket);
        return rpc.call(http::Request::from_parts(parts, HttpBody::new(body))).await;
    }
    let max = limits.max_request_bytes as usize;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Ok(jsonrpsee::server::http::response::too_large(limits.max_request_bytes));
    }
    let bytes = match tokio::time::timeout(limits.request_timeout, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(jsonrpsee::server::http::response::too_large(limits.max_request_bytes));
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            shared.counters.body_timeouts.inc();
            let mut r = text(
                http::StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s\n",
                    limits.request_timeout.as_secs_f64()
                ),
            );
            r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            return Ok(r);
        }
    };
    parts.extensions.insert(Transport::Http);
    rpc.call(http::Request::from_parts(parts, HttpBody::new(http_body_util::Full::new(bytes)))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_count_in_all_and_per_address_and_give_slots_back() {
        let p = Pool::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = p.take(a).unwrap();
        let a2 = p.take(a).unwrap();
        assert_eq!(p.take(a).unwrap_err(), Refusal::PerIp(2));
        let b1 = p.take(b).unwrap();
        assert_eq!(p.take(b).unwrap_err(), Refusal::Full(3));
        drop(a1);
        assert_eq!(p.in_use(), 2);
        let _b2 = p.take(b).unwrap();
        drop((a2, b1));
        assert_eq!(p.in_use(), 1);
        assert!(!p.counts.lock().unwrap().1.contains_key(&a), "an address with no slot is forgotten");
    }
}
