//! Fuzzing, on stable Rust, of every decoder that reads untrusted bytes: transactions
//! (`SignedTx::decode`), blocks (`Block`/`StoredBlock` from borsh), the wire's tensor codec
//! (`proto::Tensor` then `wire::decode`), and JSON-RPC requests to the node's real API.
//!
//! Why this and not cargo-fuzz or AFL: cargo-fuzz needs nightly (`-Zsanitizer=fuzzer`), and
//! `cargo afl` needs its own tool and AFL++ built on each machine. What both read, LLVM's
//! SanitizerCoverage edge guards, is reachable on stable through `-C passes=sancov-module`;
//! [`coverage`] implements the two callbacks libFuzzer would, and [`fuzz`] is a small
//! corpus-growing loop over them: an input that runs a new edge joins the corpus, inputs are
//! mutated from the corpus ([`mutate`]), and a panic is a crash, written to
//! `crates/fuzz/regressions/<target>/` and replayed by `cargo test -p fuzz` from then on. The
//! instrumented build is `scripts/fuzz.sh` (CI runs it for a bounded time); without it the same
//! loop runs blind (random mutations of the seeds), which `cargo test` does briefly.
//!
//! Corners cut, said plainly: no timeout or memory limit per input (a hang shows as a stuck
//! run), no corpus minimisation, one thread.

pub mod coverage;
pub mod mutate;
pub mod targets;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
pub use targets::Target;

/// What a campaign did.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Inputs run, seeds included.
    pub execs: u64,
    /// Wall-clock time the campaign ran, in seconds.
    pub seconds: f64,
    /// Inputs kept for reaching new edges (seeds included).
    pub corpus: usize,
    /// Edges run at least once, of all instrumented (0 of 0 when blind).
    pub covered: usize,
    /// Edges the instrumented build has (0 when blind).
    pub edges: usize,
}

/// An input that broke a property.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The name of the target that crashed ([`Target::name`]).
    pub target: String,
    /// The panic message and its place in the source.
    pub message: String,
    /// The bytes that made the target panic, to replay.
    pub input: Vec<u8>,
    /// Where it was written, if a directory was given.
    pub saved: Option<PathBuf>,
}

/// Where crashes are kept, one directory per target.
pub fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions")
}

thread_local! {
    /// Whether this thread runs a campaign (its panics are findings, not test failures to print).
    static IN_CAMPAIGN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The message and place of this thread's last panic during a campaign.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs, once, a panic hook that records a campaign's panics instead of printing them, and
/// leaves every other panic to the previous hook.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CAMPAIGN.with(|c| c.get()) {
                return previous(info);
            }
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            LAST_PANIC.with(|l| *l.borrow_mut() = Some(format!("{msg}{at}")));
        }));
    });
}

/// Runs `input` through `target`: the panic message if it panicked.
pub fn replay(target: &Target, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|p| {
        LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or_else(|| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    })
}

/// Every kept regression input of `target` (empty if none).
pub fn regressions(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(regressions_dir().join(target.name)) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Vec<u8>)> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
        .collect();
    out.sort();
    out
}

/// Fuzzes `target` for `time`, from its seeds and kept regressions, with random choices from
/// `seed`. A crash is written under `crash_dir/<target>/` when a directory is given.
pub fn fuzz(target: &Target, time: Duration, seed: u64, crash_dir: Option<&Path>) -> Result<Campaign, Crash> {
    install_hook();
    IN_CAMPAIGN.with(|c| c.set(true));
    let result = campaign(target, time, seed, crash_dir);
    IN_CAMPAIGN.with(|c| c.set(false));
    result
}

fn campaign(target: &Target, time: Duration, seed: u64, crash_dir: Option<&Path>) -> Result<Campaign, Crash> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let crash = |input: Vec<u8>, message: String| {
        let saved = crash_dir.and_then(|d| {
            let dir = d.join(target.name);
            let name = format!("crash-{}", &hex::encode(Sha256::digest(&input))[..16]);
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::write(dir.join(&name), &input).ok()?;
            Some(dir.join(name))
        });
        Crash { target: target.name.into(), message, input, saved }
    };
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    corpus.extend(regressions(target).into_iter().map(|(_, b)| b));
    let start = Instant::now();
    let mut execs = 0u64;
    for input in &corpus {
        coverage::take_new();
        replay(target, input).map_err(|m| crash(input.clone(), m))?;
        execs += 1;
    }
    while start.elapsed() < time {
        let mut input = corpus[rng.gen_range(0..corpus.len())].clone();
        let other = &corpus[rng.gen_range(0..corpus.len())];
        mutate::mutate(&mut input, other, target.dict, &mut rng);
        coverage::take_new();
        replay(target, &input).map_err(|m| crash(input.clone(), m))?;
        execs += 1;
        if coverage::take_new() {
            corpus.push(input);
        }
    }
    Ok(Campaign {
        execs,
        seconds: start.elapsed().as_secs_f64(),
        corpus: corpus.len(),
        covered: coverage::covered(),
        edges: coverage::edges(),
    })
}
