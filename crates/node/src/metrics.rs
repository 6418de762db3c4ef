//! `/metrics` in Prometheus text format, served on the RPC port.
//!
//! A handful of gauges and counters, hand-formatted: a metrics framework would add a registry
//! and a second listener for six numbers. The HTTP route is a tower layer in front of the
//! JSON-RPC service, so `GET /metrics` and JSON-RPC share one port and one address to print.

use crate::Shared;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

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
    /// The Prometheus text exposition of the counters and the current mempool size.
    pub fn render(&self, mempool: usize) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let secs = |a: &AtomicU64| format!("{}", get(a) as f64 / 1e6);
        metric("agora_height", "gauge", "Height of the last committed block.", get(&self.height).to_string());
        metric(
            "agora_blocks_total",
            "counter",
            "Blocks produced by this process.",
            get(&self.blocks).to_string(),
        );
        out.push_str("# HELP agora_transactions_total Transactions in blocks produced by this process, by receipt status.\n# TYPE agora_transactions_total counter\n");
        for (status, v) in
            [("applied", &self.txs_applied), ("failed", &self.txs_failed), ("rejected", &self.txs_rejected)]
        {
            let _ = writeln!(out, "agora_transactions_total{{status=\"{status}\"}} {}", get(v));
        }
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
        out
    }
}

/// Answers `GET /metrics`; passes everything else to the JSON-RPC service.
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
            let text = self.shared.metrics.render(self.shared.mempool_len());
            let resp = http::Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(HttpBody::from(text));
            return Box::pin(async move { resp.map_err(Into::into) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
