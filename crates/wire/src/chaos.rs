//! Faults on purpose (issue 13): a loopback TCP proxy that sits in front of an axon and delays,
//! "loses", cuts or garbles what passes through it, from a seed.
//!
//! Why a proxy rather than a fault-injecting layer in the dendrite: it faults the real transport
//! (TCP, HTTP/2 framing, tonic's reconnects), in both directions, for any peer in any language
//! (the Python axon too), without a line of fault code in the peer. A localnet (`--chaos`)
//! starts one proxy per axon and announces the proxy's address instead of the axon's; a test
//! points its dendrite at [`FaultProxy::local_addr`].
//!
//! What each fault means above TCP, where peers live:
//! - `delay` + `jitter`: every chunk read from one side is written to the other after
//!   `delay + U[0, jitter]`, never before the previous chunk of that direction: TCP keeps a
//!   connection's bytes in order, so reordering shows as calls to different axons (and over
//!   different connections) finishing in an order unrelated to when they were sent;
//! - `loss`: a chunk is lost with this probability and TCP retransmits it after `rto`,
//!   doubling for each consecutive loss, which is what packet loss looks like to an
//!   application: late bytes, and past the caller's deadline a TIMEOUT;
//! - `disconnect`: with this probability per chunk the connection is cut in both directions;
//! - `slow_response`: added to every chunk coming back from the axon (a peer that answers
//!   slowly);
//! - `garbage`: with this probability per connection, everything the axon sends back on it is
//!   replaced by random bytes of the same length (a peer that answers garbage).
//!
//! Decisions are drawn from a ChaCha stream seeded by `(seed, connection number, direction)`,
//! so a connection's fault sequence replays chunk by chunk; how the kernel splits bytes into
//! chunks depends on timing, so whole runs are reproducible in distribution, not byte for byte.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Which faults a [`FaultProxy`] injects; [`FaultConfig::none`] passes everything through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultConfig {
    /// Seeds every fault decision: the same seed injects the same faults.
    pub seed: u64,
    /// Fixed delay added to every chunk, both directions.
    pub delay: Duration,
    /// Uniform random extra delay per chunk, up to this.
    pub jitter: Duration,
    /// Probability in [0, 1] that a chunk is lost (and retransmitted after `rto`).
    pub loss: f64,
    /// How late a lost chunk is retransmitted (TCP's retransmission timeout).
    pub rto: Duration,
    /// Probability in [0, 1] per chunk that the connection is cut.
    pub disconnect: f64,
    /// Added to every chunk coming back from the axon: a peer that answers slowly.
    pub slow_response: Duration,
    /// Probability in [0, 1] per connection that the axon's replies are garbled.
    pub garbage: f64,
}

impl FaultConfig {
    /// No faults: a plain relay (the control in a chaos test).
    pub fn none(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rto: Duration::from_millis(200),
            disconnect: 0.0,
            slow_response: Duration::ZERO,
            garbage: 0.0,
        }
    }

    /// A lossy, jittery link: `loss` per chunk, `U[0, jitter]` per chunk, TCP's 200 ms RTO.
    pub fn lossy(seed: u64, loss: f64, jitter: Duration) -> FaultConfig {
        FaultConfig { loss, jitter, ..FaultConfig::none(seed) }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("disconnect", self.disconnect), ("garbage", self.garbage)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability in [0, 1], got {p}"));
            }
        }
        if self.loss >= 1.0 {
            return Err("loss 1 would retransmit forever; use disconnect to cut links".into());
        }
        Ok(())
    }
}

/// What a proxy did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Connections accepted.
    pub connections: u64,
    /// Chunks relayed, both directions.
    pub chunks: u64,
    /// Chunks "lost" and retransmitted late.
    pub lost: u64,
    /// Connections cut on purpose.
    pub disconnects: u64,
    /// Connections whose replies were garbled.
    pub garbled_connections: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    chunks: AtomicU64,
    lost: AtomicU64,
    disconnects: AtomicU64,
    garbled: AtomicU64,
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The fault probabilities or durations are out of range.
    #[error("invalid fault config: {0}")]
    Config(String),
    /// The proxy's socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// A running proxy; dropping it (or [`FaultProxy::shutdown`]) closes every connection.
pub struct FaultProxy {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Listens on a free loopback port and relays to `upstream` with `config`'s faults.
    pub async fn start(upstream: SocketAddr, config: FaultConfig) -> Result<FaultProxy, ChaosError> {
        FaultProxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream, config).await
    }

    /// Listens on `listen` and relays to `upstream` with `config`'s faults.
    pub async fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: FaultConfig,
    ) -> Result<FaultProxy, ChaosError> {
        config.validate().map_err(ChaosError::Config)?;
        let listener =
            TcpListener::bind(listen).await.map_err(|source| ChaosError::Bind { addr: listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ChaosError::Bind { addr: listen, source })?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept(listener, upstream, config, counters.clone(), stopped));
        Ok(FaultProxy { local_addr, upstream, counters, stop })
    }

    /// Where callers connect instead of the axon.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The axon it relays to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// What it did so far.
    pub fn stats(&self) -> FaultStats {
        let c = &self.counters;
        FaultStats {
            connections: c.connections.load(Ordering::Relaxed),
            chunks: c.chunks.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            garbled_connections: c.garbled.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and cuts every open connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    config: FaultConfig,
    counters: Arc<Counters>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut n = 0u64;
    loop {
        let inbound = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A failed accept (out of descriptors, a reset) ends that connection only.
                Err(_) => continue,
            },
        };
        n += 1;
        counters.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(inbound, upstream, config, n, counters.clone(), stopped.clone()));
    }
}

/// The ChaCha stream of one connection and direction.
fn rng_for(seed: u64, connection: u64, direction: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&connection.to_le_bytes());
    key[16..24].copy_from_slice(&direction.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

async fn relay(
    inbound: TcpStream,
    upstream: SocketAddr,
    config: FaultConfig,
    n: u64,
    counters: Arc<Counters>,
    stopped: watch::Receiver<bool>,
) {
    // Dropping both streams on an early return closes the caller's side: a refused connection.
    let Ok(outbound) = TcpStream::connect(upstream).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let garbled = rng_for(config.seed, n, 0).gen_bool(config.garbage);
    if garbled {
        counters.garbled.fetch_add(1, Ordering::Relaxed);
    }
    let (cut, _) = watch::channel(false);
    let cut = Arc::new(cut);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = Pump { config, rng: rng_for(config.seed, n, 1), response: false, garble: false };
    let down = Pump { config, rng: rng_for(config.seed, n, 2), response: true, garble: garbled };
    let a = tokio::spawn(up.run(in_read, out_write, counters.clone(), cut.clone(), stopped.clone()));
    let b = tokio::spawn(down.run(out_read, in_write, counters, cut, stopped));
    let _ = tokio::join!(a, b);
}

/// One direction of one connection.
struct Pump {
    config: FaultConfig,
    rng: ChaCha8Rng,
    /// From the axon back to the caller.
    response: bool,
    garble: bool,
}

impl Pump {
    /// How long a chunk read now waits before it is written, and whether it was "lost".
    fn hold(&mut self) -> (Duration, bool) {
        let c = &self.config;
        let mut wait = c.delay;
        if !c.jitter.is_zero() {
            wait += c.jitter.mul_f64(self.rng.gen::<f64>());
        }
        if self.response {
            wait += c.slow_response;
        }
        let mut lost = false;
        let mut rto = c.rto;
        while c.loss > 0.0 && self.rng.gen_bool(c.loss) {
            lost = true;
            wait += rto;
            rto = (rto * 2).min(Duration::from_secs(60));
        }
        (wait, lost)
    }

    async fn run(
        mut self,
        mut from: OwnedReadHalf,
        to: OwnedWriteHalf,
        counters: Arc<Counters>,
        cut: Arc<watch::Sender<bool>>,
        mut stopped: watch::Receiver<bool>,
    ) {
        // Bounded: a slow link pushes back on the sender as TCP would.
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
        let writer = tokio::spawn(write_out(rx, to, cut.subscribe(), stopped.clone()));
        let mut cut_seen = cut.subscribe();
        let mut release = Instant::now();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let read = tokio::select! {
                _ = stopped.changed() => break,
                _ = cut_seen.changed() => break,
                read = from.read(&mut buf) => read,
            };
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            counters.chunks.fetch_add(1, Ordering::Relaxed);
            if self.config.disconnect > 0.0 && self.rng.gen_bool(self.config.disconnect) {
                counters.disconnects.fetch_add(1, Ordering::Relaxed);
                let _ = cut.send(true);
                break;
            }
            let (wait, lost) = self.hold();
            if lost {
                counters.lost.fetch_add(1, Ordering::Relaxed);
            }
            release = release.max(Instant::now() + wait);
            let mut chunk = buf[..n].to_vec();
            if self.garble {
                self.rng.fill_bytes(&mut chunk);
            }
            if tx.send((release, chunk)).await.is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.await;
    }
}

async fn write_out(
    mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
    mut to: OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            _ = cut.changed() => return,
            _ = stopped.changed() => return,
            next = rx.recv() => next,
        };
        let Some((at, chunk)) = next else { break };
        tokio::select! {
            _ = cut.changed() => return,
            _ = stopped.changed() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    // The reading side closed: pass the half-close on once everything queued is out.
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults_and_loss_is_near_its_rate() {
        let config = FaultConfig {
            slow_response: Duration::from_millis(5),
            ..FaultConfig::lossy(3, 0.2, Duration::from_millis(200))
        };
        let draw = |seed| {
            let mut p = Pump {
                config: FaultConfig { seed, ..config },
                rng: rng_for(seed, 1, 2),
                response: true,
                garble: false,
            };
            (0..10_000).map(|_| p.hold()).collect::<Vec<_>>()
        };
        let (a, b, c) = (draw(3), draw(3), draw(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let lost = a.iter().filter(|(_, l)| *l).count() as f64 / a.len() as f64;
        assert!((0.18..0.22).contains(&lost), "{lost}");
        // Every chunk waits at least the slow response, at most jitter + slow + a few RTOs.
        assert!(a.iter().all(|(w, _)| *w >= Duration::from_millis(5)));
        let unlost: Vec<_> = a.iter().filter(|(_, l)| !*l).map(|(w, _)| *w).collect();
        assert!(unlost.iter().all(|w| *w <= Duration::from_millis(205)));
        assert!(FaultConfig { loss: 1.0, ..config }.validate().is_err());
        assert!(FaultConfig { garbage: -0.1, ..config }.validate().is_err());
    }
}
