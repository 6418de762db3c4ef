//! `/metrics` in Prometheus text format, served on the RPC port.
//!
//! A handful of gauges and counters, hand-formatted: a metrics framework would add a registry
//! and a second listener for six numbers. The HTTP route is a tower layer in front of the
//! JSON-RPC service, so `GET /metrics` and JSON-RPC share one port and one address to print.

use crate::server::Connections;
use crate::Shared;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// What the RPC server refused or closed, by reason (updated by `server` and `rpc`).
#[derive(Default)]
pub struct RpcCounters {
    /// Connections refused because the node serves its maximum.
    pub refused_full: AtomicU64,
    /// Connections refused because their address holds its maximum.
    pub refused_per_ip: AtomicU64,
    /// WebSocket upgrades refused (in all or per address).
    pub refused_ws: AtomicU64,
    /// Requests whose body did not arrive in time.
    pub body_timeouts: AtomicU64,
    /// WebSockets closed for idleness.
    pub ws_idle_closed: AtomicU64,
    /// Past-metagraph calls refused because as many were running.
    pub busy: AtomicU64,
}

/// Counters the producer updates after each block.
#[derive(Default)]
pub struct Metrics {
    pub height: AtomicU64,
    pub blocks: AtomicU64,
    pub txs_applied: AtomicU64,
    pub txs_failed: AtomicU64,
    pub txs_rejected: AtomicU64,
    pub epochs: AtomicU64,
    /// Microseconds to execute and commit the last block that ran an epoch.
    pub last_epoch_block_us: AtomicU64,
    /// Microseconds to execute and commit the last block.
    pub last_block_us: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition of the counters, the current mempool size and the RPC
    /// server's connections.
    pub fn render(&self, mempool: usize, rpc: &Connections) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let secs = |a: &AtomicU64| format!("{}", get(a) as f64 / 1e6);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        metric("agora_height", "gauge", "Height of the last committed block.", get(&self.height).to_string());
        metric(
            "agora_blocks_total",
            "counter",
            "Blocks produced by this process.",
            get(&self.blocks).to_string(),
        );
        let statuses =
            [("applied", &self.txs_applied), ("failed", &self.txs_failed), ("rejected", &self.txs_rejected)];
        labelled(
            &mut out,
            "agora_transactions_total",
            "Transactions in blocks produced by this process, by receipt status.",
            "status",
            &statuses.map(|(l, v)| (l, get(v))),
        );
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        metric("agora_mempool_size", "gauge", "Transactions waiting in the mempool.", mempool.to_string());
        metric(
            "agora_epochs_total",
            "counter",
            "Epochs run by blocks produced by this process.",
            get(&self.epochs).to_string(),
        );
        metric(
            "agora_epoch_duration_seconds",
            "gauge",
            "Time to execute and commit the last block that ran an epoch (the epoch dominates it).",
            secs(&self.last_epoch_block_us),
        );
        metric(
            "agora_block_duration_seconds",
            "gauge",
            "Time to execute and commit the last block.",
            secs(&self.last_block_us),
        );
        metric(
            "agora_rpc_connections",
            "gauge",
            "Open RPC connections (HTTP and WebSocket).",
            rpc.tcp.in_use().to_string(),
        );
        metric("agora_rpc_websockets", "gauge", "Open WebSocket connections.", rpc.ws.in_use().to_string());
        metric(
            "agora_rpc_historical_peak",
            "gauge",
            "Most past-metagraph rebuilds that ran at once since the node started.",
            rpc.historical.peak.load(Ordering::Relaxed).to_string(),
        );
        let c = &rpc.counters;
        labelled(
            &mut out,
            "agora_rpc_refused_total",
            "RPC connections, upgrades and calls refused or closed by the node's limits, by reason.",
            "reason",
            &[
                ("connections_full", get(&c.refused_full)),
                ("connections_per_ip", get(&c.refused_per_ip)),
                ("websockets", get(&c.refused_ws)),
                ("body_timeout", get(&c.body_timeouts)),
                ("websocket_idle", get(&c.ws_idle_closed)),
                ("busy", get(&c.busy)),
            ],
        );
        out
    }
}

/// A counter with one label.
fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
    for (l, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
    }
}

/// Answers `GET /metrics` and the dashboard's files ([`crate::dashboard`]); passes everything
/// else to the JSON-RPC service.
#[derive(Clone)]
pub struct MetricsLayer(pub Arc<Shared>);

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner, shared: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<HttpRequest> for MetricsService<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
    S::Error: Into<jsonrpsee::core::BoxError> + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = jsonrpsee::core::BoxError;
    type Future = BoxFuture<Result<HttpResponse, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        if req.method() == http::Method::GET && req.uri().path() == "/metrics" {
            let text = self.shared.metrics.render(self.shared.mempool_len(), &self.shared.rpc);
            let resp = http::Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(HttpBody::from(text));
            return Box::pin(async move { resp.map_err(Into::into) });
        }
        // `GET /` is also how a WebSocket opens: that goes to jsonrpsee.
        if req.method() == http::Method::GET && !jsonrpsee::server::ws::is_upgrade_request(&req) {
            if let Some(resp) = crate::dashboard::response(req.uri().path()) {
                return Box::pin(async move { Ok(resp) });
            }
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
