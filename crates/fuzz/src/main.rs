//! `cargo run -p fuzz -- [TARGET...] --seconds N --seed S`: fuzzes each target (all by default)
//! for N seconds. Coverage-guided when built by `scripts/fuzz.sh`, blind otherwise. A crash is
//! written to `crates/fuzz/regressions/<target>/` (commit it: `cargo test -p fuzz` replays it)
//! and the run exits 1.

use clap::Parser;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Fuzz Agora's decoders of untrusted bytes (transaction, block, tensor, rpc)")]
struct Args {
    /// Targets to run (default: all)
    targets: Vec<String>,
    /// Seconds per target
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seed of the mutations (a run replays with the same seed and build)
    #[arg(long, default_value_t = 13)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let all = fuzz::targets::all();
    for name in &args.targets {
        if !all.iter().any(|t| t.name == name) {
            let names: Vec<_> = all.iter().map(|t| t.name).collect();
            anyhow::bail!("no target {name}: the targets are {}", names.join(", "));
        }
    }
    for t in all.iter().filter(|t| args.targets.is_empty() || args.targets.iter().any(|n| n == t.name)) {
        match fuzz::fuzz(t, Duration::from_secs(args.seconds), args.seed, Some(&fuzz::regressions_dir())) {
            Ok(c) => println!(
                "{:<12} {:>9} execs in {:.0} s ({:.0}/s), corpus {:>5}, edges covered so far {} of {}{}  [{}]",
                t.name,
                c.execs,
                c.seconds,
                c.execs as f64 / c.seconds.max(1e-9),
                c.corpus,
                c.covered,
                c.edges,
                if c.edges == 0 { " (blind: build with scripts/fuzz.sh for coverage)" } else { "" },
                t.about
            ),
            Err(crash) => {
                eprintln!("{}: CRASH: {}", crash.target, crash.message);
                if let Some(p) = &crash.saved {
                    eprintln!("  input kept as {} (cargo test -p fuzz replays it)", p.display());
                }
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
