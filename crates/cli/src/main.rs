//! `agora`: the one binary of the Agora workspace. It parses arguments, calls the library
//! crates and prints; all logic lives in those crates.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sim::cabal::{Cabal000Options, Cabal002Options};
use sim::compare::CompareOptions;
use sim::descent::TrustDescentOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    about = "Agora: the peer-to-peer intelligence market of the Bittensor papers",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the papers' experiments on the real mechanism code (CSV, PNG and markdown into --out)
    Sim(SimArgs),
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Directory for the CSV, PNG and markdown results; created if missing
    #[arg(long, global = true, value_name = "DIR", default_value = sim::report::DEFAULT_OUT_DIR)]
    out: PathBuf,
    #[command(subcommand)]
    experiment: Experiment,
}

#[derive(Debug, Subcommand)]
enum Experiment {
    /// Cabal decay under the connectivity mechanism: reproduces the table of the market paper
    /// 000 §10 (prints `step share`), with and without stake clipping
    #[command(name = "cabal-000", allow_negative_numbers = true)]
    Cabal000 {
        /// The cabal's initial share of stake, in (0, 1)
        #[arg(long, default_value_t = Cabal000Options::default().prcnt_c)]
        prcnt_c: f64,
        /// New stake per step as a share of total stake (tau of eq. 2), >= 0
        #[arg(long, default_value_t = Cabal000Options::default().inf_rate)]
        inf_rate: f64,
        /// rho: weight of the connectivity term (eq. 6), >= 0
        #[arg(long, default_value_t = Cabal000Options::default().rho)]
        rho: f64,
        /// Number of steps, >= 1
        #[arg(long, default_value_t = Cabal000Options::default().steps)]
        steps: usize,
        /// Peers in each group (honest, cabal) of the mechanism run, >= 1
        #[arg(long, default_value_t = Cabal000Options::default().peers)]
        peers: usize,
        /// Source of the printed lines: the real mechanism, or the paper's code (closed form); the CSV has both
        #[arg(long, value_enum, default_value_t = Print::Mechanism)]
        print: Print,
    },
    /// Cabal decay under the trust mechanism: reproduces the table of the market paper 002
    /// "Collusion" (prints `block share`)
    #[command(name = "cabal-002", allow_negative_numbers = true)]
    Cabal002 {
        /// Inflation per block as a share of total stake, >= 0
        #[arg(long, default_value_t = Cabal002Options::default().tau)]
        tau: f64,
        /// Temperature of the trust sigmoid, >= 0
        #[arg(long, default_value_t = Cabal002Options::default().temp)]
        temp: f64,
        /// The honest graph's initial share of stake, in (0, 1); the cabal holds the rest
        #[arg(long, default_value_t = Cabal002Options::default().stake_a)]
        stake_a: f64,
        /// Number of blocks, >= 1
        #[arg(long, default_value_t = Cabal002Options::default().blocks)]
        blocks: usize,
        /// Peers in each group (honest, cabal) of the mechanism run, >= 1
        #[arg(long, default_value_t = Cabal002Options::default().peers)]
        peers: usize,
        /// Source of the printed lines: the real mechanism, or the paper's code (closed form); the CSV has both
        #[arg(long, value_enum, default_value_t = Print::Mechanism)]
        print: Print,
    },
    /// The chain-loss descent of 002 appendix 12.7 (repaired) on the trust mechanism: honest
    /// majorities of several sizes, and an honest stake split into two disconnected halves
    #[command(name = "trust-descent", allow_negative_numbers = true)]
    TrustDescent(TrustDescentArgs),
    /// One 49% disjoint cabal against a connected honest graph through every mechanism
    /// variant, side by side
    #[command(allow_negative_numbers = true)]
    Compare(CompareArgs),
    /// Run every experiment with its defaults and write DIR/summary.md
    All {
        /// Run trust-descent and compare at reduced sizes (a smoke test of a few seconds)
        #[arg(long)]
        quick: bool,
    },
}

/// The source of the `step share` lines of the cabal experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Print {
    // The real mechanism run over concrete peers.
    Mechanism,
    // The transcription of the paper's printed code.
    ClosedForm,
}

#[derive(Debug, Args)]
struct TrustDescentArgs {
    /// Peers in the honest graph (nA); in the split run, in each honest half
    #[arg(long, default_value_t = TrustDescentOptions::default().n_honest)]
    n_honest: usize,
    /// Peers in the cabal (nB)
    #[arg(long, default_value_t = TrustDescentOptions::default().n_cabal)]
    n_cabal: usize,
    /// Blocks per run, >= 1
    #[arg(long, default_value_t = TrustDescentOptions::default().blocks)]
    blocks: usize,
    /// Stake minted per block as a share of the genesis total, >= 0
    #[arg(long, default_value_t = TrustDescentOptions::default().tau)]
    tau: f64,
    /// Learning rate of the descent on the stake-scaling vector A, >= 0
    #[arg(long, default_value_t = TrustDescentOptions::default().learning_rate)]
    learning_rate: f64,
    /// Temperature of the trust sigmoid, >= 0
    #[arg(long, default_value_t = TrustDescentOptions::default().temperature)]
    temperature: f64,
    /// Share of its own group each peer weights, in (0, 1]
    #[arg(long, default_value_t = TrustDescentOptions::default().density)]
    density: f64,
    /// Honest shares of stake to run, comma-separated, each in (0, 1)
    #[arg(long, value_delimiter = ',', default_value = "0.51,0.55,0.6,0.7")]
    honest_shares: Vec<f64>,
    /// The cabal's share in the run with the honest stake split into two disconnected halves
    #[arg(long, default_value_t = 0.49)]
    split_cabal: f64,
    /// Skip the split-honest run
    #[arg(long)]
    no_split: bool,
    /// Seed of the random weights and stakes
    #[arg(long, default_value_t = TrustDescentOptions::default().seed)]
    seed: u64,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Peers in the honest graph
    #[arg(long, default_value_t = CompareOptions::default().n_honest)]
    n_honest: usize,
    /// Peers in the cabal
    #[arg(long, default_value_t = CompareOptions::default().n_cabal)]
    n_cabal: usize,
    /// The cabal's initial share of stake, in (0, 1)
    #[arg(long, default_value_t = CompareOptions::default().cabal_share)]
    cabal_share: f64,
    /// Epochs per mechanism, >= 1
    #[arg(long, default_value_t = CompareOptions::default().epochs)]
    epochs: usize,
    /// Stake minted per epoch as a share of total stake, >= 0
    #[arg(long, default_value_t = CompareOptions::default().tau)]
    tau: f64,
    /// Share of the honest group each honest peer weights, in (0, 1]
    #[arg(long, default_value_t = CompareOptions::default().density)]
    density: f64,
    /// Seed of the random weights and stakes
    #[arg(long, default_value_t = CompareOptions::default().seed)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim_command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace even under RUST_BACKTRACE,
            // since these are user errors (bad flags, unwritable directory), not bugs.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn sim_command(args: SimArgs) -> Result<()> {
    let out = args.out.as_path();
    match args.experiment {
        Experiment::Cabal000 { prcnt_c, inf_rate, rho, steps, peers, print } => {
            let opts = Cabal000Options { prcnt_c, inf_rate, rho, steps, peers };
            let r = sim::cabal::run_000(&opts, out)?;
            print_lines(&r.rows, print);
            let last = r.rows.last().expect("steps >= 1");
            eprintln!("mechanism vs closed form: max |difference| = {:.1e}", r.max_abs_diff);
            if let Some((hit, of)) = r.paper_matches {
                eprintln!("paper's printed lines reproduced: {hit}/{of}");
            }
            if let Some(clipped) = last.clipped {
                eprintln!(
                    "with stake clipping (eq. 8): cabal share {} at step {} (without: {})",
                    sim::report::format_sig(clipped, 6),
                    last.step,
                    sim::report::format_sig(last.mechanism, 6)
                );
            }
            wrote(&r.files);
        }
        Experiment::Cabal002 { tau, temp, stake_a, blocks, peers, print } => {
            let opts = Cabal002Options { tau, temp, stake_a, blocks, peers };
            let r = sim::cabal::run_002(&opts, out)?;
            print_lines(&r.rows, print);
            eprintln!("mechanism vs closed form: max |difference| = {:.1e}", r.max_abs_diff);
            if let Some((hit, of)) = r.paper_matches {
                eprintln!("paper's printed lines reproduced: {hit}/{of}");
            }
            wrote(&r.files);
        }
        Experiment::TrustDescent(a) => {
            let opts = TrustDescentOptions {
                n_honest: a.n_honest,
                n_cabal: a.n_cabal,
                blocks: a.blocks,
                tau: a.tau,
                learning_rate: a.learning_rate,
                temperature: a.temperature,
                density: a.density,
                honest_shares: a.honest_shares,
                split_cabal_share: (!a.no_split).then_some(a.split_cabal),
                seed: a.seed,
            };
            let r = sim::descent::run(&opts, out)?;
            println!("{}", r.summary_markdown.trim_end());
            wrote(&r.files);
        }
        Experiment::Compare(a) => {
            let opts = CompareOptions {
                n_honest: a.n_honest,
                n_cabal: a.n_cabal,
                cabal_share: a.cabal_share,
                epochs: a.epochs,
                tau: a.tau,
                density: a.density,
                seed: a.seed,
            };
            let r = sim::compare::run(&opts, out)?;
            println!("{}", r.summary_markdown.trim_end());
            wrote(&r.files);
        }
        Experiment::All { quick } => {
            let r = sim::all::run(&sim::all::AllOptions { quick }, out)?;
            for (name, _) in &r.sections {
                println!("ran {name}");
            }
            println!("summary: {}", out.join("summary.md").display());
            wrote(&r.files);
        }
    }
    Ok(())
}

/// Prints `step share` lines as the papers do.
fn print_lines(rows: &[sim::cabal::CabalRow], print: Print) {
    for row in rows {
        match print {
            Print::Mechanism => println!("{}", row.line()),
            Print::ClosedForm => println!("{}", row.closed_form_line()),
        }
    }
}

/// Lists the files an experiment wrote, on stderr so stdout stays the experiment's output.
fn wrote(files: &[PathBuf]) {
    for f in files {
        eprintln!("wrote {}", display(f));
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
