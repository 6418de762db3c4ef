//! Ledger throughput: signed `set_weights` transactions applied and committed per second on one
//! core (signature checks included) with 4,096 neurons, and one epoch of 4,096 neurons.
//!
//! It also times the epoch at the production chain's shape (n = 256, 64 validators weighting
//! the 255 others, `shared/notes/subtensor-epoch.md`) the way subtensor's figure counts it:
//! the conversion from the ledger's integer rows into the mechanism's input
//! ([`State::epoch_inputs`]) plus the mechanism, without the commit.
//!
//! `cargo bench -p ledger --bench ledger` (add `-- --quick` for a short run, or a filter such
//! as `-- epoch_inputs`). Everything measured runs on a one-thread rayon pool, so the figures
//! are per core. The times criterion
//! reports are that thread's CPU time (Linux `/proc/thread-self/schedstat`; wall-clock
//! elsewhere), so other processes on a shared machine do not distort them. The run ends with a
//! summary: transactions per CPU-second and per wall-clock second, and ratios against two
//! references measured in the same process: single ed25519 verification (the rate a ledger
//! without batching could not beat) and batch verification alone (the ceiling set by signature
//! checks).

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use ledger::verify::{verify_all, verify_with, SigJob};
use ledger::*;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::cell::RefCell;
use std::time::{Duration, Instant};

const N: usize = 4096;
const ROW: usize = 256;

fn hotkey(i: usize) -> SigningKey {
    dev_key(&format!("bench-hot-{i}"))
}

fn genesis(tempo: u64) -> GenesisConfig {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut g =
        GenesisConfig { chain_id: "agora-bench".into(), tempo, max_neurons: N as u32, ..Default::default() };
    for i in 0..N {
        let hot = public_key(&hotkey(i));
        g.accounts.push(GenesisAccount { key: hot, balance: 1_000 * UNITS_PER_TOKEN });
        g.neurons.push(GenesisNeuron {
            hotkey: hot,
            coldkey: public_key(&dev_key(&format!("bench-cold-{i}"))),
            stake: rng.gen_range(1..1_000) * UNITS_PER_TOKEN,
            endpoint: None,
        });
    }
    g.weights.rate_limit = 1;
    g
}

/// One block's worth of transactions: every neuron sets a row of 256 random weights.
fn weight_block(
    keys: &[SigningKey],
    nonce: u64,
    chain_id: &str,
    fee: u64,
    rng: &mut ChaCha8Rng,
) -> Vec<SignedTx> {
    keys.iter()
        .map(|k| {
            let uids: Vec<u16> = sample(rng, N, ROW).into_iter().map(|u| u as u16).collect();
            let raw: Vec<f64> = (0..ROW).map(|_| rng.gen_range(0.01..1.0)).collect();
            let sum: f64 = raw.iter().sum();
            let values: Vec<f64> = raw.iter().map(|v| v / sum).collect();
            TxBody { sender: public_key(k), nonce, fee, call: Call::set_weights(uids, &values) }
                .sign(k, chain_id)
        })
        .collect()
}

struct Bench {
    ledger: Ledger<MemStore>,
    keys: Vec<SigningKey>,
    time: u64,
    rng: ChaCha8Rng,
}

impl Bench {
    fn new(tempo: u64) -> Bench {
        let keys: Vec<SigningKey> = (0..N).map(hotkey).collect();
        let ledger = Ledger::init(MemStore::new(), genesis(tempo)).expect("genesis");
        Bench { ledger, keys, time: 0, rng: ChaCha8Rng::seed_from_u64(7) }
    }

    fn next_txs(&mut self) -> Vec<SignedTx> {
        let nonce = self.ledger.account(&public_key(&self.keys[0])).nonce;
        let chain_id = self.ledger.chain_id().to_string();
        let fee = self.ledger.genesis().fees.set_weights;
        weight_block(&self.keys, nonce, &chain_id, fee, &mut self.rng)
    }

    /// Proposes and commits one block on the one-thread pool; returns its timing.
    fn block(&mut self, pool: &ThreadPool, txs: Vec<SignedTx>) -> Timing {
        self.time += 1000;
        let (time, ledger) = (self.time, &mut self.ledger);
        let (out, timing) = timed(pool, || {
            let (_, out) = ledger.propose(txs, time, PublicKey([0; 32])).expect("propose");
            ledger.commit().expect("commit");
            out
        });
        assert!(
            out.receipts.iter().all(Receipt::is_applied),
            "{:?}",
            out.receipts.iter().find(|r| !r.is_applied())
        );
        timing
    }
}

/// Wall-clock and CPU time of one measured run.
#[derive(Clone, Copy)]
struct Timing {
    wall: Duration,
    /// CPU time of the thread that did all the work (`None` off Linux).
    cpu: Option<Duration>,
}

impl Timing {
    /// What criterion is given: CPU time where available, so other processes on a shared
    /// machine do not inflate the figures; wall-clock otherwise.
    fn reported(&self) -> Duration {
        self.cpu.unwrap_or(self.wall)
    }
}

/// CPU time consumed so far by the calling thread (Linux `/proc/thread-self/schedstat`).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Runs `f` on the one-thread pool (so every rayon task it spawns runs on that same thread) and
/// times it.
fn timed<T: Send>(pool: &ThreadPool, f: impl FnOnce() -> T + Send) -> (T, Timing) {
    pool.install(|| {
        let (c0, w0) = (thread_cpu(), Instant::now());
        let out = f();
        let wall = w0.elapsed();
        let cpu = thread_cpu().zip(c0).map(|(b, a)| b.saturating_sub(a));
        (out, Timing { wall, cpu })
    })
}

/// A chain at the production chain's shape: `n` neurons, the `v` with the most stake are the
/// validators (`max_validators = v`) and each sets a row on every other neuron, agreeing on
/// their quality up to ~20% noise; two epochs have run, so bonds are populated.
fn production_shape(n: usize, v: usize) -> Ledger<MemStore> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let keys: Vec<SigningKey> = (0..n).map(hotkey).collect();
    let mut g = GenesisConfig {
        chain_id: "agora-bench".into(),
        tempo: 2,
        max_neurons: n as u32,
        max_validators: v as u32,
        ..Default::default()
    };
    for (i, k) in keys.iter().enumerate() {
        let hot = public_key(k);
        g.accounts.push(GenesisAccount { key: hot, balance: 1_000 * UNITS_PER_TOKEN });
        let stake =
            if i < v { rng.gen_range(1_000..100_000) } else { rng.gen_range(1..100) } * UNITS_PER_TOKEN;
        g.neurons.push(GenesisNeuron {
            hotkey: hot,
            coldkey: public_key(&dev_key(&format!("bench-cold-{i}"))),
            stake,
            endpoint: None,
        });
    }
    g.weights.rate_limit = 1;
    let mut ledger = Ledger::init(MemStore::new(), g).expect("genesis");
    let quality: Vec<f64> = (0..n).map(|_| rng.gen_range(0.1..1.0)).collect();
    let fee = ledger.genesis().fees.set_weights;
    let chain_id = ledger.chain_id().to_string();
    let txs: Vec<SignedTx> = keys[..v]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let uids: Vec<u16> = (0..n as u16).filter(|&j| usize::from(j) != i).collect();
            let raw: Vec<f64> =
                uids.iter().map(|&j| quality[usize::from(j)] * rng.gen_range(0.8..1.2)).collect();
            let sum: f64 = raw.iter().sum();
            let values: Vec<f64> = raw.iter().map(|x| x / sum).collect();
            TxBody { sender: public_key(k), nonce: 0, fee, call: Call::set_weights(uids, &values) }
                .sign(k, &chain_id)
        })
        .collect();
    for (time, txs) in [(1_000, txs), (2_000, vec![]), (3_000, vec![]), (4_000, vec![])] {
        let (_, out) = ledger.propose(txs, time, PublicKey([0; 32])).expect("propose");
        assert!(out.receipts.iter().all(Receipt::is_applied));
        ledger.commit().expect("commit");
    }
    ledger
}

fn signature_jobs(count: usize) -> Vec<SigJob> {
    let mut b = Bench::new(1_000_000);
    let txs = b.next_txs();
    let chain_id = b.ledger.chain_id().to_string();
    txs.iter()
        .take(count)
        .map(|t| SigJob {
            key: ledger::verify::verifying_key(&t.body.sender),
            msg: ledger::tx::signing_message(&chain_id, &t.prepare().body_hash),
            sig: t.signature,
        })
        .collect()
}

/// Medians of the wall-clock and CPU times of a list of runs.
fn medians(runs: &[Timing]) -> Option<(f64, Option<f64>)> {
    let mut wall: Vec<f64> = runs.iter().map(|t| t.wall.as_secs_f64()).collect();
    let mut cpu: Vec<f64> = runs.iter().filter_map(|t| t.cpu.map(|c| c.as_secs_f64())).collect();
    let cpu = if cpu.len() == runs.len() { median(&mut cpu) } else { None };
    median(&mut wall).map(|w| (w, cpu))
}

fn median(x: &mut [f64]) -> Option<f64> {
    x.sort_by(f64::total_cmp);
    x.get(x.len() / 2).copied()
}

/// "wall X/s, CPU Y/s" for `count` items per run.
fn rates(count: usize, m: (f64, Option<f64>)) -> String {
    let n = count as f64;
    match m.1 {
        Some(cpu) => format!("{:>7.0}/s per CPU-second ({:.0}/s wall-clock)", n / cpu, n / m.0),
        None => format!("{:>7.0}/s wall-clock", n / m.0),
    }
}

fn benches(c: &mut Criterion) {
    // Per-core figures: everything measured runs on this one-thread pool, including the
    // ledger's parallel parts (signature batches, hashing, the mechanism).
    let pool = ThreadPoolBuilder::new().num_threads(1).build().expect("one-thread pool");

    // References: signature checks alone.
    let jobs = signature_jobs(N);
    let single = || jobs.iter().all(|j| verify_with(j.key.as_ref().unwrap(), &j.msg, &j.sig));
    let batch = || verify_all(&jobs).iter().all(|&v| v);
    let mut group = c.benchmark_group("signatures");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    let (mut single_runs, mut batch_runs) = (Vec::new(), Vec::new());
    group.bench_function(BenchmarkId::new("single", N), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (ok, t) = timed(&pool, single);
                    assert!(ok);
                    single_runs.push(t);
                    t.reported()
                })
                .sum()
        })
    });
    group.bench_function(BenchmarkId::new("batch", N), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (ok, t) = timed(&pool, batch);
                    assert!(ok);
                    batch_runs.push(t);
                    t.reported()
                })
                .sum()
        })
    });
    group.finish();

    // Signed set_weights, 4,096 per block (one per neuron, the rate limit), applied + committed.
    let bench = RefCell::new(Bench::new(1_000_000));
    // The first block sets every row from empty; steady state is replacing rows.
    let first = bench.borrow_mut().next_txs();
    bench.borrow_mut().block(&pool, first);
    let mut group = c.benchmark_group("set_weights");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(N as u64));
    let mut block_runs = Vec::new();
    group.bench_function(BenchmarkId::new("block_of_4096x256", N), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let txs = bench.borrow_mut().next_txs();
                    let t = bench.borrow_mut().block(&pool, txs);
                    block_runs.push(t);
                    t.reported()
                })
                .sum()
        })
    });
    group.finish();

    // One epoch of 4,096 neurons with 256 weights each (yuma, the default), as the chain runs it:
    // an empty block at an epoch height (mechanism, integer emission, bonds rehashed, commit).
    let epoch_bench = RefCell::new(Bench::new(2));
    for _ in 0..2 {
        let txs = epoch_bench.borrow_mut().next_txs();
        epoch_bench.borrow_mut().block(&pool, txs);
    }
    let mut group = c.benchmark_group("epoch");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut epoch_runs = Vec::new();
    group.bench_function(BenchmarkId::new("yuma", N), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    // Odd heights: a block of weights (not timed); even heights: the epoch (timed).
                    let txs = epoch_bench.borrow_mut().next_txs();
                    epoch_bench.borrow_mut().block(&pool, txs);
                    let t = epoch_bench.borrow_mut().block(&pool, vec![]);
                    epoch_runs.push(t);
                    t.reported()
                })
                .sum()
        })
    });
    group.finish();

    // The epoch at the production chain's shape, as subtensor's figure counts it: the ledger's
    // integer rows converted into the mechanism's input, then the mechanism (no commit). The
    // mechanism alone on the converted input is timed beside it, for the conversion's share.
    let (n, v) = (256, 64);
    let shape = RefCell::new(None::<Ledger<MemStore>>);
    let mut group = c.benchmark_group("epoch_inputs");
    group.sample_size(30);
    let (mut converted_runs, mut mechanism_runs) = (Vec::new(), Vec::new());
    let epoch_once = |converted: bool, runs: &mut Vec<Timing>, iters: u64| -> Duration {
        let mut shape = shape.borrow_mut();
        let ledger = shape.get_or_insert_with(|| production_shape(n, v));
        let (state, mechanism) = (ledger.state(), &ledger.genesis().mechanism);
        let height = ledger.head().height + 2 - ledger.head().height % 2;
        let emission = (ledger.genesis().tempo * ledger.genesis().emission_per_block) as f64;
        let prepared = state.epoch_inputs(height).expect("inputs");
        assert!(
            prepared.weights.nnz() == v * (n - 1) && prepared.validators.iter().filter(|&&x| x).count() == v
        );
        // Timed as one batch: the thread's CPU clock advances in steps too coarse for one epoch.
        let (paid, t) = timed(&pool, || {
            (0..iters)
                .map(|_| {
                    let out = if converted {
                        let inputs = state.epoch_inputs(height).expect("inputs");
                        mechanism.epoch(&inputs.input(emission)).expect("epoch")
                    } else {
                        mechanism.epoch(&prepared.input(emission)).expect("epoch")
                    };
                    out.emission.iter().filter(|&&e| e > 0.0).count()
                })
                .min()
        });
        assert!(paid.is_some_and(|p| p > v), "the epoch pays validators and servers");
        let per = |d: Duration| d / iters as u32;
        runs.push(Timing { wall: per(t.wall), cpu: t.cpu.map(per) });
        t.reported()
    };
    group.bench_function(BenchmarkId::new("convert_and_yuma", format!("n{n}_v{v}")), |b| {
        b.iter_custom(|iters| epoch_once(true, &mut converted_runs, iters))
    });
    group.bench_function(BenchmarkId::new("yuma_alone", format!("n{n}_v{v}")), |b| {
        b.iter_custom(|iters| epoch_once(false, &mut mechanism_runs, iters))
    });
    group.finish();

    // Criterion filters may skip a group; report only what ran.
    println!("\n== ledger benchmark summary: one thread, {N} neurons, {ROW} weights a row, medians ==");
    let single = medians(&single_runs);
    let batch = medians(&batch_runs);
    if let Some(m) = single {
        println!("single ed25519 verification:       {} signatures", rates(N, m));
    }
    if let Some(m) = batch {
        println!("batch verification ({} a batch):   {} signatures", ledger::verify::BATCH, rates(N, m));
    }
    if std::env::var("LEDGER_BENCH_SERIES").is_ok() {
        let series: Vec<String> =
            block_runs.iter().map(|t| format!("{:.0}", t.reported().as_secs_f64() * 1e3)).collect();
        println!("block times (ms, in order): {}", series.join(" "));
    }
    if let Some(m) = medians(&block_runs) {
        println!("set_weights applied + committed:   {} transactions (target 20,000)", rates(N, m));
        let cpu_or_wall = |x: (f64, Option<f64>)| x.1.unwrap_or(x.0);
        if let Some(s) = single {
            println!("  = {:.2}x the single-verification rate", cpu_or_wall(s) / cpu_or_wall(m));
        }
        if let Some(b) = batch {
            println!("  = {:.0}% of the batch-verification rate", 100.0 * cpu_or_wall(b) / cpu_or_wall(m));
        }
    }
    if let Some((wall, cpu)) = medians(&converted_runs) {
        let per = |x: (f64, Option<f64>)| x.1.unwrap_or(x.0);
        println!(
            "epoch at n = {n}, {v} validators x {} weights, integer rows converted + yuma: {:.1} us CPU ({:.1} us wall-clock)",
            n - 1,
            per((wall, cpu)) * 1e6,
            wall * 1e6
        );
        if let Some(alone) = medians(&mechanism_runs) {
            println!("  of which the conversion: {:.1} us", (per((wall, cpu)) - per(alone)) * 1e6);
        }
        // subtensor's math.rs at this shape, one thread, a quiet machine: 1.46 ms
        // (shared/notes/subtensor-epoch.md). Not measured here: a proxy.
        println!(
            "  = {:.1}x subtensor's 1.46 ms from the notes (another run, a quiet machine)",
            1.46e-3 / per((wall, cpu))
        );
    }
    if let Some((wall, cpu)) = medians(&epoch_runs) {
        match cpu {
            Some(cpu) => println!(
                "one epoch, {N} neurons (yuma):     {:.1} ms CPU ({:.1} ms wall-clock)",
                cpu * 1e3,
                wall * 1e3
            ),
            None => println!("one epoch, {N} neurons (yuma):     {:.1} ms wall-clock", wall * 1e3),
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
