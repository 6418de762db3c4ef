//! One epoch of each mechanism at the shapes of `shared/notes/subtensor-epoch.md`, sparse and,
//! where an n x n matrix fits, the dense reference measured in the same run.
//!
//! Run everything with `cargo bench -p mechanism`, or pick cases with criterion's name filter
//! (a regex over `n<size>_k<weights per row>/<variant>/<sparse|dense>`):
//!
//! ```text
//! cargo bench -p mechanism -- 'nakamoto|yuma|basic'
//! RAYON_NUM_THREADS=1 cargo bench -p mechanism -- 'n65536.*(yuma|nakamoto)'
//! ```
//!
//! Inputs are generated from a fixed ChaCha seed and look like a working network: most peers
//! agree on a shared set of good servers (each honest row puts most of its weight there, with
//! per-row noise, plus small weights on random others), a tenth of the peers weight at random,
//! and stake is heavy-tailed. With uniformly random weights and k << n no column would reach
//! the kappa majority and the median consensus would have nothing to do. The previous state
//! is the one a warm-up epoch on the same input returns, so bonds are populated.
//!
//! Besides criterion's report, a table at the end gives per case the median wall time of an
//! epoch, its mean process CPU time (on a shared machine the two differ by the time other
//! processes took), weights per second (stored entries of W over the wall time) and the
//! dense/sparse ratio of wall times.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion, SamplingMode, Throughput};
use mechanism::{EpochInput, Mechanism, MechanismState, SparseMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One benchmark case.
struct Case {
    variant: &'static str,
    /// Peers.
    n: usize,
    /// Non-zero weights per row.
    k: usize,
    /// Also time the dense reference (needs a few n x n f64 matrices: 0.5 MB each at n = 256,
    /// 134 MB at n = 4096, 34 GB at n = 65,536, so never there).
    dense: bool,
}

const fn case(variant: &'static str, n: usize, k: usize, dense: bool) -> Case {
    Case { variant, n, k, dense }
}

/// The cases, grouped by size (inputs are generated once per size, in this order).
/// `connectivity` and `trust` run at 256 and 4096 only: their random-walk reachability costs
/// O(n k^depth) (about 65,536 * 256^3 steps at the largest size), far beyond one epoch's
/// budget, so that size measures only the variants whose cost grows with nnz.
const CASES: &[Case] = &[
    // n = 256, dense rows: every peer weights every other one.
    case("basic", 256, 255, true),
    case("connectivity", 256, 255, true),
    case("trust", 256, 255, true),
    case("nakamoto", 256, 255, true),
    case("yuma", 256, 255, true),
    // n = 4096, 256 weights per row (1 M weights).
    case("basic", 4096, 256, true),
    // Their dense references raise an n x n matrix to the power `depth` (O(n^3 depth), minutes
    // at this size), so only the sparse path runs here.
    case("connectivity", 4096, 256, false),
    case("trust", 4096, 256, false),
    case("nakamoto", 4096, 256, true),
    case("yuma", 4096, 256, true),
    // n = 65,536, 256 weights per row (16.8 M weights).
    case("basic", 65_536, 256, false),
    case("nakamoto", 65_536, 256, false),
    case("yuma", 65_536, 256, false),
];

/// Servers every honest peer weights, and the share of honest peers.
const POPULAR: usize = 64;
const HONEST: f64 = 0.9;

struct Network {
    weights: SparseMatrix,
    stake: Vec<f64>,
}

/// A deterministic network of `n` peers with `k` weights per row (see the module doc).
fn network(n: usize, k: usize, seed: u64) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // The popular servers and how good each one is.
    let mut popular = Vec::with_capacity(POPULAR);
    while popular.len() < POPULAR.min(n) {
        let j = rng.gen_range(0..n);
        if !popular.contains(&j) {
            popular.push(j);
        }
    }
    let quality: Vec<f64> = popular.iter().map(|_| rng.gen_range(0.5..1.5)).collect();
    // stamp[j] == i + 1 marks column j as already in row i, so picking k distinct columns
    // costs O(k) per row, not O(n).
    let mut stamp = vec![0usize; n];
    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|i| {
            let mark = i + 1;
            stamp[i] = mark; // no self-weights
            let mut row = Vec::with_capacity(k);
            if rng.gen_bool(HONEST) {
                for (&j, &q) in popular.iter().zip(&quality) {
                    if stamp[j] != mark {
                        stamp[j] = mark;
                        // Each peer measures the server's quality with ~20% noise.
                        row.push((j, q * rng.gen_range(0.8..1.2)));
                    }
                }
            }
            // The rest at random, small enough that the popular set keeps ~70% of an honest
            // row (64 * 1 against 192 * 0.14 on average).
            let small = if row.is_empty() { 1.0 } else { 0.28 };
            if k + 1 >= n {
                // Dense rows: everyone not already weighted.
                for (j, seen) in stamp.iter_mut().enumerate() {
                    if *seen != mark {
                        *seen = mark;
                        row.push((j, small * rng.gen::<f64>()));
                    }
                }
            } else {
                while row.len() < k {
                    let j = rng.gen_range(0..n);
                    if stamp[j] != mark {
                        stamp[j] = mark;
                        row.push((j, small * rng.gen::<f64>()));
                    }
                }
            }
            row
        })
        .collect();
    // Heavy-tailed stake: most peers hold little, a few hold a lot.
    let stake = (0..n).map(|_| 1.0 + 1e4 * rng.gen::<f64>().powi(4)).collect();
    let weights = SparseMatrix::from_rows(n, rows).expect("generated weights are valid");
    Network { weights, stake }
}

/// What the summary needs of one case id, over every sample criterion took (warm-up
/// included).
#[derive(Default)]
struct Record {
    /// Wall time of one epoch, per sample.
    per_epoch: Vec<f64>,
    /// Process CPU time (all threads) and epochs run, summed over the samples; `None` where
    /// the platform does not report it.
    cpu: Option<f64>,
    epochs: u64,
}

type Samples = RefCell<BTreeMap<String, Record>>;

/// CPU time used so far by the whole process (every thread), in seconds, from
/// `/proc/self/stat` (Linux; `None` elsewhere). It ticks in 1/100 s (USER_HZ), so it is only
/// meaningful summed over many epochs, which is how the summary uses it: on a shared machine
/// it tells the mechanism's own cost apart from time lost to other processes.
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start with the state, field 3;
    // utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |k: usize| fields.get(k).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn bench_epochs(c: &mut Criterion, samples: &Samples) {
    let mut net: Option<((usize, usize), Network)> = None;
    for case in CASES {
        let Some(mechanism) = Mechanism::from_name(case.variant) else {
            panic!("unknown variant {} in CASES", case.variant);
        };
        let group_name = format!("n{}_k{}", case.n, case.k);
        let mut group = c.benchmark_group(&group_name);
        if case.n >= 4096 {
            group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(if case.n > 4096 { 4 } else { 3 }));
        } else {
            group
                .sample_size(20)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
        }

        // Every row holds exactly k weights, so criterion's elements/s is weights/s.
        group.throughput(Throughput::Elements((case.n * case.k) as u64));

        // Input and warm-up state are built on first use, so a filtered-out case costs nothing.
        let mut state: Option<MechanismState> = None;
        let setup = |net: &mut Option<((usize, usize), Network)>, state: &mut Option<MechanismState>| {
            if net.as_ref().map(|(shape, _)| *shape) != Some((case.n, case.k)) {
                *net = None; // free the previous size first
                *net = Some(((case.n, case.k), network(case.n, case.k, 0x5eed ^ case.n as u64)));
            }
            let network = &net.as_ref().expect("just built").1;
            if state.is_none() {
                let genesis = MechanismState::genesis(case.n);
                let input = EpochInput::new(&network.weights, &network.stake, 1.0, &genesis);
                *state = Some(mechanism.epoch(&input).expect("warm-up epoch").state);
            }
        };

        let runs: &[(&str, bool)] = &[("sparse", true), ("dense", case.dense)];
        for &(kind, enabled) in runs {
            if !enabled {
                continue;
            }
            let id = format!("{}/{kind}", case.variant);
            let full_id = format!("{group_name}/{id}");
            group.bench_function(&id, |b| {
                setup(&mut net, &mut state);
                let network = &net.as_ref().expect("set up").1;
                let input =
                    EpochInput::new(&network.weights, &network.stake, 1.0, state.as_ref().expect("set up"));
                b.iter_custom(|iters| {
                    let cpu_before = process_cpu();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let out = if kind == "sparse" {
                            mechanism.epoch(&input)
                        } else {
                            mechanism.epoch_dense(&input)
                        };
                        black_box(out.expect("epoch"));
                    }
                    let elapsed = start.elapsed();
                    let cpu = cpu_before.zip(process_cpu()).map(|(a, b)| b - a);
                    let mut samples = samples.borrow_mut();
                    let record = samples.entry(full_id.clone()).or_default();
                    record.per_epoch.push(elapsed.as_secs_f64() / iters as f64);
                    record.cpu =
                        if record.epochs == 0 { cpu } else { record.cpu.zip(cpu).map(|(a, b)| a + b) };
                    record.epochs += iters;
                    elapsed
                });
            });
        }
        group.finish();
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn human_time(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} us", secs * 1e6)
    }
}

fn print_summary(samples: &Samples) {
    let samples = samples.borrow();
    if samples.is_empty() {
        return;
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    println!("\nper epoch: median wall time, mean process CPU time (rayon threads: {threads})");
    println!(
        "{:<26} {:>11} {:>11} {:>12} {:>11} {:>13}",
        "case", "sparse", "sparse cpu", "weights/s", "dense", "dense/sparse"
    );
    for case in CASES {
        let key = |kind: &str| format!("n{}_k{}/{}/{kind}", case.n, case.k, case.variant);
        let Some(sparse) = samples.get(&key("sparse")) else { continue };
        let wall = median(&sparse.per_epoch);
        let cpu = sparse.cpu.map(|c| c / sparse.epochs as f64);
        // Every row holds k weights (the generator never drops one), so nnz = n k.
        let nnz = (case.n * case.k) as f64;
        let dense = samples.get(&key("dense")).map(|d| median(&d.per_epoch));
        println!(
            "{:<26} {:>11} {:>11} {:>12.3e} {:>11} {:>13}",
            format!("{} n={} k={}", case.variant, case.n, case.k),
            human_time(wall),
            cpu.map_or("-".into(), human_time),
            nnz / wall,
            dense.map_or("-".into(), human_time),
            dense.map_or("-".into(), |d| format!("{:.1}x", d / wall)),
        );
    }
}

fn main() {
    let samples = Samples::default();
    let mut c = Criterion::default().configure_from_args();
    bench_epochs(&mut c, &samples);
    c.final_summary();
    print_summary(&samples);
}
