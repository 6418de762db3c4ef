//! `/metrics` in the OpenMetrics text format (which Prometheus scrapes), served on the RPC port.
//!
//! The counters and gauges are `prometheus-client` metrics in one registry, and that crate
//! writes the text. The HTTP route is a tower layer in front of the JSON-RPC service, so
//! `GET /metrics` and JSON-RPC share one port and one address to print.

use crate::server::Connections;
use crate::Shared;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The HTTP `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A gauge of a count (heights, sizes).
type Count = Gauge<u64, AtomicU64>;
/// A gauge of seconds.
type Seconds = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: &'static str,
}

/// What the RPC server refused or closed, by reason (updated by `server` and `rpc`): each field
/// is the one series of `agora_rpc_refused_total` with its reason.
pub struct RpcCounters {
    /// Connections refused because the node serves its maximum.
    pub refused_full: Counter,
    /// Connections refused because their address holds its maximum.
    pub refused_per_ip: Counter,
    /// WebSocket upgrades refused (in all or per address).
    pub refused_ws: Counter,
    /// Requests whose body did not arrive in time.
    pub body_timeouts: Counter,
    /// WebSockets closed for idleness.
    pub ws_idle_closed: Counter,
    /// Past-metagraph calls refused because as many were running.
    pub busy: Counter,
    by_reason: Family<Reason, Counter>,
}

impl Default for RpcCounters {
    fn default() -> RpcCounters {
        let by_reason = Family::<Reason, Counter>::default();
        // Every reason is a series from the start, at 0 until it happens.
        let reason = |reason| by_reason.get_or_create_owned(&Reason { reason });
        RpcCounters {
            refused_full: reason("connections_full"),
            refused_per_ip: reason("connections_per_ip"),
            refused_ws: reason("websockets"),
            body_timeouts: reason("body_timeout"),
            ws_idle_closed: reason("websocket_idle"),
            busy: reason("busy"),
            by_reason,
        }
    }
}

/// The producer's counters, updated after each block, and the registry `/metrics` encodes.
pub struct Metrics {
    /// Height of the last committed block.
    pub height: Count,
    /// Blocks this process produced (`agora_blocks`).
    pub blocks: Counter,
    /// Transactions applied in those blocks (`agora_transactions{status="applied"}`).
    pub txs_applied: Counter,
    /// Transactions that failed in those blocks, their fee paid (`status="failed"`).
    pub txs_failed: Counter,
    /// Transactions those blocks recorded as rejected, changing nothing (`status="rejected"`).
    pub txs_rejected: Counter,
    /// Epochs (the mechanism's runs: ranks, incentive, emission) those blocks ran.
    pub epochs: Counter,
    /// Time to execute and commit the last block that ran an epoch.
    pub last_epoch_block: Seconds,
    /// Time to execute and commit the last block.
    pub last_block: Seconds,
    // Read from the mempool and the RPC server at each scrape.
    mempool: Count,
    rpc_connections: Count,
    rpc_websockets: Count,
    rpc_historical_peak: Count,
    registry: Registry,
}

impl Metrics {
    /// The node's metrics, the RPC server's `rpc` counters among them.
    pub fn new(rpc: &RpcCounters) -> Metrics {
        let statuses = Family::<Status, Counter>::default();
        let status = |status| statuses.get_or_create_owned(&Status { status });
        let mut m = Metrics {
            height: Count::default(),
            blocks: Counter::default(),
            txs_applied: status("applied"),
            txs_failed: status("failed"),
            txs_rejected: status("rejected"),
            epochs: Counter::default(),
            last_epoch_block: Seconds::default(),
            last_block: Seconds::default(),
            mempool: Count::default(),
            rpc_connections: Count::default(),
            rpc_websockets: Count::default(),
            rpc_historical_peak: Count::default(),
            registry: Registry::default(),
        };
        let r = &mut m.registry;
        r.register("agora_height", "Height of the last committed block", m.height.clone());
        r.register("agora_blocks", "Blocks produced by this process", m.blocks.clone());
        r.register(
            "agora_transactions",
            "Transactions in blocks produced by this process, by receipt status",
            statuses,
        );
        r.register("agora_mempool_size", "Transactions waiting in the mempool", m.mempool.clone());
        r.register("agora_epochs", "Epochs run by blocks produced by this process", m.epochs.clone());
        r.register_with_unit(
            "agora_epoch_duration",
            "Time to execute and commit the last block that ran an epoch (the epoch dominates it)",
            Unit::Seconds,
            m.last_epoch_block.clone(),
        );
        r.register_with_unit(
            "agora_block_duration",
            "Time to execute and commit the last block",
            Unit::Seconds,
            m.last_block.clone(),
        );
        r.register(
            "agora_rpc_connections",
            "Open RPC connections (HTTP and WebSocket)",
            m.rpc_connections.clone(),
        );
        r.register("agora_rpc_websockets", "Open WebSocket connections", m.rpc_websockets.clone());
        r.register(
            "agora_rpc_historical_peak",
            "Most past-metagraph rebuilds that ran at once since the node started",
            m.rpc_historical_peak.clone(),
        );
        r.register(
            "agora_rpc_refused",
            "RPC connections, upgrades and calls refused or closed by the node's limits, by reason",
            rpc.by_reason.clone(),
        );
        m
    }

    /// The exposition of the counters, the current mempool size and the RPC server's
    /// connections.
    pub fn render(&self, mempool: usize, rpc: &Connections) -> String {
        self.mempool.set(mempool as u64);
        self.rpc_connections.set(rpc.tcp.in_use() as u64);
        self.rpc_websockets.set(rpc.ws.in_use() as u64);
        self.rpc_historical_peak.set(rpc.historical.peak.load(Ordering::Relaxed) as u64);
        let mut out = String::new();
        // Writing to a String cannot fail; the encoder's only errors are the writer's.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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

/// The service [`MetricsLayer`] wraps around the JSON-RPC service `S`: answers `GET /metrics`
/// and the dashboard itself, hands every other request to `S`.
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
                .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::RpcLimits;

    /// Every name the docs list (docs/rpc.md, "GET /metrics"), each line of the text in the
    /// shape a scraper expects, the values where they were set.
    #[test]
    fn the_exposition_keeps_the_documented_names_and_values() {
        let rpc = Connections::new(&RpcLimits::for_genesis(&ledger::GenesisConfig::default()));
        let m = Metrics::new(&rpc.counters);
        m.height.set(12);
        m.blocks.inc_by(3);
        m.txs_applied.inc_by(6);
        m.txs_rejected.inc();
        m.epochs.inc();
        m.last_epoch_block.set(0.25);
        m.last_block.set(0.0015);
        rpc.counters.busy.inc();
        rpc.counters.body_timeouts.inc_by(2);
        let text = m.render(4, &rpc);

        assert!(text.ends_with("\n# EOF\n"), "{text}");
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
            assert!(samples.insert(series.to_string(), value).is_none(), "twice: {line:?}");
        }
        let expected = [
            ("agora_height", 12.0),
            ("agora_blocks_total", 3.0),
            ("agora_transactions_total{status=\"applied\"}", 6.0),
            ("agora_transactions_total{status=\"failed\"}", 0.0),
            ("agora_transactions_total{status=\"rejected\"}", 1.0),
            ("agora_mempool_size", 4.0),
            ("agora_epochs_total", 1.0),
            ("agora_epoch_duration_seconds", 0.25),
            ("agora_block_duration_seconds", 0.0015),
            ("agora_rpc_connections", 0.0),
            ("agora_rpc_websockets", 0.0),
            ("agora_rpc_historical_peak", 0.0),
            ("agora_rpc_refused_total{reason=\"connections_full\"}", 0.0),
            ("agora_rpc_refused_total{reason=\"connections_per_ip\"}", 0.0),
            ("agora_rpc_refused_total{reason=\"websockets\"}", 0.0),
            ("agora_rpc_refused_total{reason=\"body_timeout\"}", 2.0),
            ("agora_rpc_refused_total{reason=\"websocket_idle\"}", 0.0),
            ("agora_rpc_refused_total{reason=\"busy\"}", 1.0),
        ];
        let expected: std::collections::BTreeMap<String, f64> =
            expected.iter().map(|(s, v)| (s.to_string(), *v)).collect();
        assert_eq!(samples, expected, "{text}");
        // Each family once, with its type, before its samples.
        for (family, kind) in [
            ("agora_height", "gauge"),
            ("agora_blocks", "counter"),
            ("agora_transactions", "counter"),
            ("agora_epoch_duration_seconds", "gauge"),
            ("agora_rpc_refused", "counter"),
        ] {
            let declaration = format!("# TYPE {family} {kind}\n");
            assert_eq!(text.matches(&declaration).count(), 1, "{declaration}{text}");
        }
    }
}
