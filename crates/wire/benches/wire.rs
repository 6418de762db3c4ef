//! Round trips on loopback: a Rust dendrite calling a Rust axon whose handler echoes its input,
//! payloads of 4 KB, 256 KB and 4 MB at concurrency 1 and 16, with throughput (request plus
//! response payload bytes per second) and p50/p99 latency per call. The reference in the same
//! run is a raw TCP echo of the same payloads (length-prefixed frames, no gRPC, no signature,
//! no validation): the ratio says what the protocol costs over the loopback itself.
//!
//! `cargo bench -p wire` (about 15 s); `-- --secs S` per cell; `-- --json` for one JSON object
//! per cell (used by bench/wire_vs_bittensor.py); `-- --skip-tcp` to leave out the reference.
//! Axon and dendrite share this process and its 2-thread runtime, as two peers on one machine
//! share its cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{
    serve, AxonConfig, Caller, Dendrite, Handler, HandlerError, Modality, OwnedTensor, StakeTable, Target,
    TensorView,
};

struct Echo;

impl Handler for Echo {
    fn forward(&self, _c: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        Ok(inputs.to_owned())
    }
    fn backward(
        &self,
        _c: &Caller,
        _i: &TensorView<'_>,
        _g: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        Ok(None)
    }
}

const SIZES: [usize; 3] = [4 << 10, 256 << 10, 4 << 20];
const CONCURRENCY: [usize; 2] = [1, 16];

struct Cell {
    calls: usize,
    failures: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Cell {
    fn mb_per_s(&self, payload: usize) -> f64 {
        (2 * payload * self.calls) as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1e3
    }
}

/// Runs `concurrency` loops of `one_call` for `secs`, at least 5 calls each.
async fn measure<F, Fut>(concurrency: usize, secs: f64, one_call: F) -> Cell
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    // Warm-up: connections, allocator, caches.
    for _ in 0..3 {
        one_call().await;
    }
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let one_call = one_call.clone();
            tokio::spawn(async move {
                let (mut lat, mut failures) = (Vec::new(), 0);
                while Instant::now() < stop || lat.len() < 5 {
                    let t = Instant::now();
                    if !one_call().await {
                        failures += 1;
                    }
                    lat.push(t.elapsed());
                }
                (lat, failures)
            })
        })
        .collect();
    let mut cell = Cell { calls: 0, failures: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for t in tasks {
        let (lat, failures) = t.await.expect("bench task");
        cell.calls += lat.len();
        cell.failures += failures;
        cell.latencies.extend(lat);
    }
    cell.elapsed = start.elapsed();
    cell
}

/// The reference: a TCP echo server of length-prefixed frames, one connection per client task.
async fn tcp_echo() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Ok(n) = s.read_u64_le().await else { return };
                    buf.resize(n as usize, 0);
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    if s.write_u64_le(n).await.is_err() || s.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let skip_tcp = args.iter().any(|a| a == "--skip-tcp");
    let secs = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let caller = SigningKey::from_bytes(&[1; 32]);
        let stakes = StakeTable::new();
        stakes.set(caller.verifying_key().to_bytes(), 1_000);
        let config = AxonConfig { queue_capacity: 1024, ..Default::default() };
        let axon = serve(config, SigningKey::from_bytes(&[2; 32]), Arc::new(Echo), Arc::new(stakes))
            .await
            .expect("axon");
        let target = [Target { hotkey: axon.hotkey(), addr: axon.local_addr() }];
        let dendrite = Dendrite::new(caller);
        let tcp = tcp_echo().await;
        if !json {
            println!("wire round trips on loopback, {secs} s per cell (MB/s = request + response payload)");
            println!(
                "{:>8} {:>5} {:>7} {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} {:>7}",
                "payload",
                "conc",
                "calls",
                "MB/s",
                "p50 ms",
                "p99 ms",
                "TCP MB/s",
                "p50 ms",
                "p99 ms",
                "of TCP"
            );
        }
        for size in SIZES {
            let n = size / 4;
            let values: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.001).collect();
            let inputs = Arc::new(OwnedTensor::from_f32(Modality::Tensor, &[1, 1, n as u64], &values));
            for conc in CONCURRENCY {
                let (d, x) = (dendrite.clone(), inputs.clone());
                let cell = measure(conc, secs, move || {
                    let (d, x) = (d.clone(), x.clone());
                    async move {
                        let r = d.forward(&target, &x, Duration::from_secs(30)).await;
                        r[0].is_success() && r[0].tensor.as_ref().is_some_and(|t| t.data.len() == size)
                    }
                })
                .await;
                let reference = if skip_tcp { None } else { Some(tcp_cell(tcp, size, conc, secs).await) };
                report(json, size, conc, &cell, reference.as_ref());
            }
        }
        axon.shutdown().await.expect("shutdown");
    });
}

/// One TCP connection per concurrent client, as the reference for one cell.
async fn tcp_cell(addr: std::net::SocketAddr, size: usize, conc: usize, secs: f64) -> Cell {
    let payload = Arc::new(vec![7u8; size]);
    let mut streams = Vec::new();
    for _ in 0..conc {
        let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).ok();
        streams.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    measure(conc, secs, move || {
        let s = streams[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % streams.len()].clone();
        let payload = payload.clone();
        async move {
            let mut s = s.lock().await;
            let mut back = vec![0u8; payload.len()];
            s.write_u64_le(payload.len() as u64).await.is_ok()
                && s.write_all(&payload).await.is_ok()
                && s.read_u64_le().await.is_ok()
                && s.read_exact(&mut back).await.is_ok()
        }
    })
    .await
}

fn report(json: bool, size: usize, conc: usize, cell: &Cell, tcp: Option<&Cell>) {
    let (mbs, p50, p99) = (cell.mb_per_s(size), cell.percentile_ms(0.5), cell.percentile_ms(0.99));
    if cell.failures > 0 {
        eprintln!("warning: {} of {} calls failed at {size} B x {conc}", cell.failures, cell.calls);
    }
    if json {
        println!(
            "{{\"impl\":\"agora\",\"payload\":{size},\"concurrency\":{conc},\"calls\":{},\"failures\":{},\"mb_per_s\":{mbs:.2},\"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3}}}",
            cell.calls, cell.failures
        );
        return;
    }
    let label = match size {
        s if s >= 1 << 20 => format!("{} MB", s >> 20),
        s => format!("{} KB", s >> 10),
    };
    match tcp {
        Some(t) => {
            let tm = t.mb_per_s(size);
            println!(
                "{label:>8} {conc:>5} {:>7} {mbs:>9.1} {p50:>8.3} {p99:>8.3} | {tm:>9.1} {:>8.3} {:>8.3} {:>6.0}%",
                cell.calls,
                t.percentile_ms(0.5),
                t.percentile_ms(0.99),
                100.0 * mbs / tm
            );
        }
        None => println!("{label:>8} {conc:>5} {:>7} {mbs:>9.1} {p50:>8.3} {p99:>8.3}", cell.calls),
    }
}
