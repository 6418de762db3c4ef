//! One epoch of each mechanism at the shapes of `shared/notes/subtensor-epoch.md`, sparse and,
//! where an n x n matrix fits, the dense reference measured in the same run.
//!
//! Run everything with `cargo bench -p mechanism`, or pick cases with criterion's name filter
//! (a regex over `n<size>_k<weights per row>[_v<validators>]/<variant>/<sparse|dense>`):
//!
//! ```text
//! cargo bench -p mechanism -- 'nakamoto|yuma|basic'
//! RAYON_NUM_THREADS=1 cargo bench -p mechanism -- '_v'           # the production chain's shapes
//! RAYON_NUM_THREADS=1 cargo bench -p mechanism -- 'n65536_k256/yuma'
//! ```
//!
//! Two kinds of shape:
//! - everyone weights: every peer sets a row of k weights (`n<n>_k<k>`);
//! - v validators weight (`n<n>_k<k>_v<v>`): the v peers with the most stake set rows of k
//!   weights and are the epoch's validators (`EpochInput::validators`), the other peers set
//!   none. This is how the production chain runs, and the shapes of its table in the notes.
//!
//! Inputs are generated from a fixed ChaCha seed and look like a working network: most
//! weighting peers agree on a shared set of good servers (each honest row puts most of its
//! weight there, with per-row noise, plus small weights on random others), a tenth weight at
//! random, and stake is heavy-tailed. With uniformly random weights and k << n no column would
//! reach the kappa majority and the median consensus would have nothing to do. Rows are kept
//! as a ledger keeps them, integers sorted by column, and every timed epoch starts from them:
//! the conversion into the mechanism's input (`SparseMatrix::builder`, as the ledger does it)
//! is counted in the figure. The previous state is the one a warm-up epoch on the same input
//! returns, so bonds are populated.
//!
//! Besides criterion's report, a table at the end gives per case the median wall time of a
//! converted epoch, its median CPU time (all threads; on a shared machine the two differ by the
//! time other processes took), the conversion's share of the wall time (timed inside the same
//! samples), weights per second, the dense/sparse
//! ratio (same run) and, for the notes' shapes, the ratio to subtensor's time recorded there
//! (a different run on a quiet machine: a proxy, not a same-run comparison).

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
    /// Non-zero weights per weighting row.
    k: usize,
    /// The peers that weight and validate, or `None` for everyone.
    validators: Option<usize>,
    /// Also time the dense reference (needs a few n x n f64 matrices: 0.5 MB each at n = 256,
    /// 134 MB at n = 4096, 34 GB at n = 65,536, so never there).
    dense: bool,
}

const fn case(variant: &'static str, n: usize, k: usize, dense: bool) -> Case {
    Case { variant, n, k, validators: None, dense }
}

const fn validators(n: usize, v: usize, dense: bool) -> Case {
    Case { variant: "yuma", n, k: 256, validators: Some(v), dense }
}

/// The cases, grouped by input (inputs are generated once per shape, in this order).
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
    // The production chain's shapes (the notes' table): v validators with permits weight 256
    // peers each (all the others at n = 256), the rest weight nobody. 65,535 is the largest n
    // its u16 uids allow.
    validators(256, 64, true),
    validators(1024, 64, true),
    validators(4096, 256, false),
    validators(16_384, 256, false),
    validators(65_535, 256, false),
];

/// Subtensor's epoch (its `math.rs`, sparse path, one thread, quiet machine) at the notes'
/// shapes `(n, v, seconds)`: from `shared/notes/subtensor-epoch.md`, not measured here.
const SUBTENSOR_NOTES: &[(usize, usize, f64)] =
    &[(256, 64, 1.46e-3), (1024, 64, 1.9e-3), (4096, 256, 11.4e-3), (16_384, 256, 115e-3)];

/// Servers every honest peer weights, and the share of honest peers.
const POPULAR: usize = 64;
const HONEST: f64 = 0.9;

/// A network as a ledger holds it: integer weight rows sorted by column (empty for peers that
/// do not weight), stake, and which peers validate (empty: all).
struct Network {
    rows: Vec<Vec<(u32, u16)>>,
    stake: Vec<f64>,
    validators: Vec<bool>,
}

impl Network {
    fn nnz(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    /// W from the integer rows, as the ledger converts them (`ledger::State::epoch_inputs`).
    fn weights(&self) -> SparseMatrix {
        let mut w = SparseMatrix::builder(self.rows.len(), self.nnz());
        for row in &self.rows {
            w.push_row(row.iter().map(|&(j, v)| (j, f64::from(v)))).expect("generated rows are valid");
        }
        w.finish().expect("one row per peer")
    }
}

/// A deterministic network of `n` peers (see the module doc): every peer weights `k` others,
/// or only the `v` with the most stake when `validators` is `Some(v)`.
fn network(n: usize, k: usize, validators: Option<usize>, seed: u64) -> Network {
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
    // Heavy-tailed stake: most peers hold little, a few hold a lot.
    let stake: Vec<f64> = (0..n).map(|_| 1.0 + 1e4 * rng.gen::<f64>().powi(4)).collect();
    let weighting: Vec<bool> = match validators {
        None => vec![true; n],
        Some(v) => {
            // The v largest stakes, ties to the lower index (as a ledger hands out permits).
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| stake[b].total_cmp(&stake[a]).then(a.cmp(&b)));
            let mut mask = vec![false; n];
            for &i in &order[..v.min(n)] {
                mask[i] = true;
            }
            mask
        }
    };
    // stamp[j] == i + 1 marks column j as already in row i, so picking k distinct columns
    // costs O(k) per row, not O(n).
    let mut stamp = vec![0usize; n];
    let rows = (0..n)
        .map(|i| {
            if !weighting[i] {
                return Vec::new();
            }
            let mark = i + 1;
            stamp[i] = mark; // no self-weights
            let mut row: Vec<(u32, f64)> = Vec::with_capacity(k);
            if rng.gen_bool(HONEST) {
                for (&j, &q) in popular.iter().zip(&quality) {
                    if stamp[j] != mark {
                        stamp[j] = mark;
                        // Each peer measures the server's quality with ~20% noise.
                        row.push((j as u32, q * rng.gen_range(0.8..1.2)));
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
                        row.push((j as u32, small * rng.gen::<f64>()));
                    }
                }
            } else {
                while row.len() < k {
                    let j = rng.gen_range(0..n);
                    if stamp[j] != mark {
                        stamp[j] = mark;
                        row.push((j as u32, small * rng.gen::<f64>()));
                    }
                }
            }
            // As a ledger stores it: integers (units of 1/65,535 of the row's largest weight
            // here; the mechanism normalises rows itself), sorted by column, no zeros.
            let top = row.iter().map(|e| e.1).fold(0.0, f64::max);
            let mut row: Vec<(u32, u16)> =
                row.into_iter().map(|(j, x)| (j, ((x / top * 65_535.0) as u16).max(1))).collect();
            row.sort_unstable();
            row
        })
        .collect();
    let validators = if validators.is_some() { weighting } else { Vec::new() };
    Network { rows, stake, validators }
}

/// What the summary needs of one case id, over every sample criterion took (warm-up
/// included).
#[derive(Default)]
struct Record {
    /// Wall time and CPU time (all threads; `None` off Linux) of one epoch, and the wall time
    /// of its conversion from integer rows, per sample.
    wall: Vec<f64>,
    cpu: Vec<f64>,
    conversion: Vec<f64>,
}

type Samples = RefCell<BTreeMap<String, Record>>;

/// CPU time used so far by every thread of the process (rayon's workers included), in
/// seconds, from `/proc/self/task/*/schedstat` (Linux, nanoseconds; `None` elsewhere). On a
/// shared machine it tells the mechanism's own cost apart from time lost to other processes.
fn process_cpu() -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9;
    }
    Some(total)
}

/// The weights a case's network holds: min(k, n - 1) per weighting row.
fn weights_of(case: &Case) -> usize {
    case.validators.unwrap_or(case.n) * case.k.min(case.n - 1)
}

/// Group name of a case: `n<n>_k<k>` or `n<n>_k<k>_v<v>`.
fn group_name(case: &Case) -> String {
    match case.validators {
        None => format!("n{}_k{}", case.n, case.k),
        Some(v) => format!("n{}_k{}_v{v}", case.n, case.k),
    }
}

fn bench_epochs(c: &mut Criterion, samples: &Samples) {
    let mut net: Option<(String, Network)> = None;
    for case in CASES {
        let Some(mechanism) = Mechanism::from_name(case.variant) else {
            panic!("unknown variant {} in CASES", case.variant);
        };
        let group_name = group_name(case);
        let mut group = c.benchmark_group(&group_name);
        if case.n * case.validators.unwrap_or(case.n) >= 4096 * 4096 {
            group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(if case.n > 4096 { 4 } else { 3 }));
        } else {
            group
                .sample_size(20)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
        }

        // Inputs and warm-up state are built on first use, so a filtered-out case costs nothing.
        let mut state: Option<MechanismState> = None;
        let setup = |net: &mut Option<(String, Network)>, state: &mut Option<MechanismState>| {
            if net.as_ref().map(|(name, _)| name) != Some(&group_name) {
                *net = None; // free the previous size first
                *net = Some((
                    group_name.clone(),
                    network(case.n, case.k, case.validators, 0x5eed ^ case.n as u64),
                ));
            }
            let network = &net.as_ref().expect("just built").1;
            if state.is_none() {
                let (w, genesis) = (network.weights(), MechanismState::genesis(case.n));
                let input =
                    EpochInput::new(&w, &network.stake, 1.0, &genesis).with_validators(&network.validators);
                *state = Some(mechanism.epoch(&input).expect("warm-up epoch").state);
            }
        };
        // Every weighting row holds min(k, n - 1) weights, so criterion's elements/s is
        // weights/s.
        group.throughput(Throughput::Elements(weights_of(case) as u64));
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
                let state = state.as_ref().expect("set up");
                b.iter_custom(|iters| {
                    let cpu_before = process_cpu();
                    let start = Instant::now();
                    let mut conversion = Duration::ZERO;
                    // As in a ledger, last epoch's W and output (the state the chain holds)
                    // are let go once this epoch's exist.
                    let mut last = None;
                    for _ in 0..iters {
                        // From the integer rows, every time: the conversion is part of it.
                        let converting = Instant::now();
                        let w = network.weights();
                        conversion += converting.elapsed();
                        let input = EpochInput::new(&w, &network.stake, 1.0, state)
                            .with_validators(&network.validators);
                        let out = if kind == "sparse" {
                            mechanism.epoch(&input)
                        } else {
                            mechanism.epoch_dense(&input)
                        };
                        last = Some((w, black_box(out.expect("epoch"))));
                    }
                    let elapsed = start.elapsed();
                    drop(last);
                    let cpu = cpu_before.zip(process_cpu()).map(|(a, b)| b - a);
                    let mut samples = samples.borrow_mut();
                    let record = samples.entry(full_id.clone()).or_default();
                    record.wall.push(elapsed.as_secs_f64() / iters as f64);
                    record.conversion.push(conversion.as_secs_f64() / elapsed.as_secs_f64());
                    if let Some(cpu) = cpu {
                        record.cpu.push(cpu / iters as f64);
                    }
                    elapsed
                });
            });
        }
        group.finish();
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
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
    println!("\nper epoch from integer rows (conversion included): median wall and CPU time (rayon threads: {threads})");
    println!(
        "{:<30} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>16}",
        "case", "sparse", "cpu", "conv", "weights/s", "dense", "dense/", "subtensor/sparse"
    );
    for case in CASES {
        let group = group_name(case);
        let key = |kind: &str| format!("{group}/{}/{kind}", case.variant);
        let Some(sparse) = samples.get(&key("sparse")) else { continue };
        let wall = median(&mut sparse.wall.clone());
        let cpu = (!sparse.cpu.is_empty()).then(|| median(&mut sparse.cpu.clone()));
        let conversion = median(&mut sparse.conversion.clone());
        let dense = samples.get(&key("dense")).map(|d| median(&mut d.wall.clone()));
        // Against subtensor's time in the notes: CPU time where known (closest to a quiet
        // machine's wall time), wall time otherwise.
        let notes = SUBTENSOR_NOTES.iter().find(|&&(n, v, _)| Some(v) == case.validators && n == case.n);
        let label = match case.validators {
            None => format!("{} n={} k={}", case.variant, case.n, case.k),
            Some(v) => format!("{} n={} v={v} k={}", case.variant, case.n, case.k),
        };
        println!(
            "{:<30} {:>10} {:>10} {:>6} {:>10.3e} {:>10} {:>8} {:>16}",
            label,
            human_time(wall),
            cpu.map_or("-".into(), human_time),
            format!("{:.0}%", 100.0 * conversion),
            weights_of(case) as f64 / wall,
            dense.map_or("-".into(), human_time),
            dense.map_or("-".into(), |d| format!("{:.1}x", d / wall)),
            notes.map_or("-".into(), |&(_, _, t)| format!("{:.1}x (notes)", t / cpu.unwrap_or(wall))),
        );
    }
    println!(
        "dense/: the dense reference over the sparse path, both from the same integer rows in this run. \
         subtensor/sparse: subtensor's time at that shape from shared/notes/subtensor-epoch.md \
         (its math.rs, one thread, a quiet machine, not this run) over this run's CPU time: a proxy."
    );
}

/// Keeps glibc from handing the top of its heap back to the system after an epoch frees its
/// transient memory (~400 KB at n = 256), which it then faults in again, page by page, on the
/// next epoch. Whether that happens depends on where the heap's top lies, which moved with the
/// size of the environment: the same binary measured 160 us run by `cargo bench` and 190 us
/// run directly. This measures the epoch, not that accident; a long-running node can set the
/// same (`GLIBC_TUNABLES=glibc.malloc.trim_threshold=...`) if its epochs ever matter at this
/// scale.
fn keep_heap_top() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tuning parameter; called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

fn main() {
    keep_heap_top();
    let samples = Samples::default();
    let mut c = Criterion::default().configure_from_args();
    bench_epochs(&mut c, &samples);
    c.final_summary();
    print_summary(&samples);
}
