//! Ledger throughput: signed `set_weights` transactions applied and committed per second on one
//! core (signature checks included) with 4,096 neurons, and one epoch of 4,096 neurons.
//!
//! `cargo bench -p ledger` (add `-- --quick` for a short run). Everything runs on a one-thread
//! rayon pool, so the figures are per core. Besides criterion's own report, the run ends with a
//! summary of transactions per second and ratios against two references measured in the same
//! process: single ed25519 verification (the rate a ledger without batching could not beat) and
//! batch verification alone (the ceiling set by signature checks).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use ledger::verify::{verify_all, verify_with, SigJob};
use ledger::*;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

    /// Proposes and commits one block; returns the time it took.
    fn block(&mut self, txs: Vec<SignedTx>) -> Duration {
        self.time += 1000;
        let start = Instant::now();
        let (_, out) = self.ledger.propose(txs, self.time, PublicKey([0; 32])).expect("propose");
        self.ledger.commit().expect("commit");
        let took = start.elapsed();
        assert!(
            out.receipts.iter().all(Receipt::is_applied),
            "{:?}",
            out.receipts.iter().find(|r| !r.is_applied())
        );
        took
    }
}

/// Everything runs on rayon's global pool, set to one thread before the first benchmark.
fn one_thread<T>(f: impl FnOnce() -> T) -> T {
    f()
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

fn benches(c: &mut Criterion) {
    // Per-core figures: the ledger's parallel parts (signature batches, hashing, the mechanism)
    // run on rayon's global pool, limited to one thread here.
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().expect("one-thread pool");
    let mut summary = Vec::new();

    // References: signature checks alone.
    let jobs = signature_jobs(N);
    let mut group = c.benchmark_group("signatures");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("single", N), |b| {
        b.iter(|| one_thread(|| jobs.iter().all(|j| verify_with(j.key.as_ref().unwrap(), &j.msg, &j.sig))))
    });
    group.bench_function(BenchmarkId::new("batch", N), |b| b.iter(|| one_thread(|| verify_all(&jobs))));
    group.finish();
    // The references for the summary: median of 7 runs each.
    let time = |f: &dyn Fn()| {
        let mut runs: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect();
        median(&mut runs).unwrap_or(f64::NAN)
    };
    let single = time(&|| {
        one_thread(|| jobs.iter().all(|j| verify_with(j.key.as_ref().unwrap(), &j.msg, &j.sig)));
    });
    let batch = time(&|| {
        one_thread(|| verify_all(&jobs));
    });

    // Signed set_weights, 4,096 per block (one per neuron, the rate limit), applied + committed.
    let bench = RefCell::new(Bench::new(1_000_000));
    // The first block sets every row from empty; steady state is replacing rows.
    let first = bench.borrow_mut().next_txs();
    one_thread(|| bench.borrow_mut().block(first));
    let mut group = c.benchmark_group("set_weights");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(N as u64));
    let mut block_times = Vec::new();
    group.bench_function(BenchmarkId::new("block_of_4096x256", N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let txs = bench.borrow_mut().next_txs();
                let t = one_thread(|| bench.borrow_mut().block(txs));
                block_times.push(t.as_secs_f64());
                total += t;
            }
            total
        })
    });
    group.finish();
    let block = median(&mut block_times);

    // One epoch of 4,096 neurons with 256 weights each (yuma, the default), as the chain runs it:
    // an empty block at an epoch height (mechanism, integer emission, bonds rehashed, commit).
    let epoch_bench = RefCell::new(Bench::new(2));
    for _ in 0..2 {
        let txs = epoch_bench.borrow_mut().next_txs();
        one_thread(|| epoch_bench.borrow_mut().block(txs));
    }
    let mut group = c.benchmark_group("epoch");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut epoch_times = Vec::new();
    group.bench_function(BenchmarkId::new("yuma", N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Odd heights: a block of weights (not timed); even heights: the epoch (timed).
                let txs = epoch_bench.borrow_mut().next_txs();
                one_thread(|| epoch_bench.borrow_mut().block(txs));
                let t = one_thread(|| epoch_bench.borrow_mut().block(vec![]));
                epoch_times.push(t.as_secs_f64());
                total += t;
            }
            total
        })
    });
    group.finish();
    let epoch = median(&mut epoch_times);

    summary.push(format!("single ed25519 verification:     {:>7.0} signatures/s", N as f64 / single));
    summary.push(format!(
        "batch verification ({} a batch):  {:>7.0} signatures/s  ({:.2}x single)",
        ledger::verify::BATCH,
        N as f64 / batch,
        single / batch
    ));
    // Criterion filters may skip a group; report only what ran.
    if let Some(block) = block {
        summary.push(format!(
            "set_weights applied + committed: {:>7.0} tx/s  ({:.2}x the single-verification rate, {:.0}% of the batch-verification rate; target 20,000)",
            N as f64 / block,
            single / block,
            100.0 * batch / block
        ));
    }
    if let Some(epoch) = epoch {
        summary.push(format!("one epoch of {N} neurons (yuma, {ROW} weights each): {:.1} ms", epoch * 1e3));
    }
    println!("\n== ledger benchmark summary (1 thread, {N} neurons, {ROW} weights per row, median block) ==");
    for line in summary {
        println!("{line}");
    }
}

fn median(x: &mut [f64]) -> Option<f64> {
    x.sort_by(f64::total_cmp);
    x.get(x.len() / 2).copied()
}

criterion_group!(ledger_benches, benches);
criterion_main!(ledger_benches);
