//! `agora localnet`: parses flags into a `localnet` scenario and run options, runs, prints.

use anyhow::{Context, Result};
use clap::Args;
use localnet::{RunOptions, Scenario};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LocalnetArgs {
    /// Scenario file (TOML, `localnet::Scenario`); default: the built-in 8-peer scenario
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Number of peers: the scenario's first N, or all of them plus honest peers up to N
    #[arg(long)]
    peers: Option<usize>,
    /// Epochs to run [default: the scenario's, 50 for the built-in one: about 10 minutes]
    #[arg(long)]
    epochs: Option<u64>,
    /// Incentive mechanism of the chain (basic, connectivity, trust, nakamoto, yuma)
    #[arg(long)]
    mechanism: Option<String>,
    /// Run the scenario once per mechanism and write DIR/compare.md side by side
    #[arg(long, conflicts_with = "mechanism")]
    compare: bool,
    /// Output directory (metagraph.csv, report.md, plots, wallets, node and peer logs)
    #[arg(long, value_name = "DIR", default_value = "./agora-localnet")]
    out: PathBuf,
    /// Chain side only: no peer processes (nobody sets weights)
    #[arg(long)]
    no_peers: bool,
    /// Print the scenario as TOML (a starting point for --scenario) and exit
    #[arg(long)]
    print_scenario: bool,
}

pub fn run(args: LocalnetArgs) -> Result<()> {
    let mut scenario = match &args.scenario {
        Some(p) => Scenario::from_file(p)?,
        None => Scenario::default(),
    };
    if let Some(n) = args.peers {
        scenario = scenario.resized(n)?;
    }
    if let Some(e) = args.epochs {
        scenario.epochs = e;
    }
    if let Some(m) = args.mechanism {
        scenario.mechanism = m;
    }
    let scenario = scenario.validated()?;
    if args.print_scenario {
        print!("{}", scenario.to_toml());
        return Ok(());
    }
    let agora = std::env::current_exe().context("locating the agora binary")?;
    let mut opts = RunOptions::new(agora, args.out.clone(), scenario);
    opts.spawn_peers = !args.no_peers;
    if args.compare {
        let outcomes = localnet::compare(&opts, &mechanism::MECHANISM_NAMES)?;
        for o in &outcomes {
            print_outcome(o);
        }
        println!("side by side: {}", args.out.join("compare.md").display());
    } else {
        let o = localnet::run(&opts)?;
        print_outcome(&o);
        println!("report: {}", args.out.join("report.md").display());
    }
    Ok(())
}

fn print_outcome(o: &localnet::RunOutcome) {
    let s = &o.summary;
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!(
        "{}: blocks {}..={}, Spearman(I, value) {}, Spearman(R, value) {}, noise emission {} (incentive {}), cabal stake {} -> {}{}",
        s.mechanism,
        s.first_block,
        s.last_block,
        f(s.spearman_incentive),
        f(s.spearman_rank),
        f(s.noise_emission_share),
        f(s.noise_incentive_share),
        f(s.cabal_share_start),
        f(s.cabal_share_end),
        if o.interrupted { " (interrupted)" } else { "" }
    );
    for (name, code) in &o.peers_exited_early {
        println!("  peer {name} exited early (code {code:?}); see its peer.log");
    }
}
