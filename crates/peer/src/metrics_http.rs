//! A peer's `/metrics`: the axon's and the dendrite's per-peer counters and latency histograms
//! (Prometheus text) over plain HTTP/1.1, so a scraper needs nothing from us but an address.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wire::Metrics;

/// Binds `addr` and serves `GET /metrics` until the task is dropped; returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    sources: Vec<Arc<Metrics>>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let sources = sources.clone();
            tokio::spawn(async move {
                // A request line and headers fit in 4 KB; anything longer is not a scrape.
                let mut buf = vec![0u8; 4096];
                let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let head = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?")
                {
                    ("200 OK", sources.iter().map(|m| m.render_prometheus()).collect::<String>())
                } else {
                    ("404 Not Found", "only GET /metrics is served here\n".to_string())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wire::{Call, ReturnCode};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_scraped_and_other_paths_are_refused() {
        let axon = Arc::new(Metrics::new("axon"));
        axon.record(
            wire::metrics::PeerLabel::Hotkey(&[7; 32]),
            Call::Forward,
            ReturnCode::Success,
            Duration::from_millis(3),
        );
        let dendrite = Arc::new(Metrics::new("dendrite"));
        let (addr, task) =
            serve_metrics("127.0.0.1:0".parse().unwrap(), vec![axon, dendrite]).await.expect("bind");
        let page = get(addr, "/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        assert!(page.contains("agora_wire_axon_requests_total"), "{page}");
        assert!(page.contains("agora_wire_dendrite_requests_total"), "{page}");
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
