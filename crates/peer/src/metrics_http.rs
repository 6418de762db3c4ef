//! A peer's `/metrics`: the axon's and the dendrite's per-peer counters and latency histograms
//! (OpenMetrics text, encoded by `prometheus-client` in [`wire::metrics`]) over HTTP/1.1, served
//! by hyper as the node's RPC port is, so a scraper needs nothing from us but an address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use wire::Metrics;

/// How long a client may take to send a request's headers, and how long an idle keep-alive
/// connection stays open.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves `GET /metrics` until the task is dropped; returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    sources: Vec<Arc<Metrics>>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let sources = Arc::new(sources);
    let task = tokio::spawn(async move {
        loop {
            // An accept error (out of descriptors) concerns one connection, not the server.
            let Ok((stream, _)) = listener.accept().await else { continue };
            let sources = sources.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let reply = answer(&req, &sources);
                    async move { Ok::<_, Infallible>(reply) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                // A client that hangs up or sends garbage only ends its own connection.
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((bound, task))
}

/// The exposition for `GET /metrics` (query ignored), 404 elsewhere, 405 for another method.
fn answer(req: &Request<Incoming>, sources: &[Arc<Metrics>]) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            wire::metrics::CONTENT_TYPE,
            wire::metrics::exposition(sources.iter().map(|m| m.as_ref())),
        ),
        (_, "/metrics") => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET /metrics is served here\n".into())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "only GET /metrics is served here\n".into()),
    };
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wire::{Call, ReturnCode};

    /// A raw HTTP/1.1 exchange: the status line, the headers and the body, as a scraper sees them.
    async fn get(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let (head, body) = out.split_once("\r\n\r\n").expect("a head and a body");
        (head.to_string(), body.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_parses_strictly_and_other_requests_are_refused() {
        let axon = Arc::new(Metrics::new("axon"));
        let peer = [7u8; 32];
        axon.record(
            wire::metrics::PeerLabel::Hotkey(&peer),
            Call::Forward,
            ReturnCode::Success,
            Duration::from_millis(3),
        );
        axon.connection_opened();
        let dendrite = Arc::new(Metrics::new("dendrite"));
        dendrite.record(
            wire::metrics::PeerLabel::Unverified,
            Call::Backward,
            ReturnCode::Timeout,
            Duration::ZERO,
        );
        let (addr, task) =
            serve_metrics("127.0.0.1:0".parse().unwrap(), vec![axon, dendrite]).await.expect("bind");

        let (head, body) = get(addr, "GET", "/metrics?x=1").await;
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains(wire::metrics::CONTENT_TYPE), "{head}");
        let samples = wire::metrics::parse::samples(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let value = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
        let hex = hex::encode(peer);
        let forward =
            format!("agora_wire_axon_requests_total{{peer=\"{hex}\",call=\"forward\",code=\"SUCCESS\"}}");
        assert_eq!(value(&forward), Some(1.0), "{body}");
        assert_eq!(
            value(&format!("agora_wire_axon_latency_seconds_bucket{{le=\"0.005\",peer=\"{hex}\"}}")),
            Some(1.0)
        );
        assert_eq!(value("agora_wire_axon_connections_total"), Some(1.0));
        let timeout =
            "agora_wire_dendrite_requests_total{peer=\"unverified\",call=\"backward\",code=\"TIMEOUT\"}";
        assert_eq!(value(timeout), Some(1.0), "{body}");
        assert_eq!(value("agora_wire_dendrite_body_bytes_total"), Some(0.0));

        assert!(get(addr, "GET", "/").await.0.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST", "/metrics").await.0.starts_with("HTTP/1.1 405"));
        task.abort();
    }
}
