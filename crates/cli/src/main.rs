//! `agora`: the one binary of the Agora workspace. It parses arguments, calls the library
//! crates and prints; all logic lives in those crates.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sim::cabal::{Cabal000Options, Cabal002Options};
use sim::compare::CompareOptions;
use sim::descent::TrustDescentOptions;
use sim::empirical::{EmpiricalOptions, LossReference};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod localnet_cmd;
mod metagraph_cmd;
mod node_cmd;
mod peer_cmd;
mod stake_cmd;
mod subnet_cmd;
mod tx_cmd;
mod wallet_cmd;
mod weights_commit;

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
    /// Run a chain node (`--dev`: a development chain with funded, insecure dev accounts; or
    /// `--genesis FILE`), the single validator or, with `--validator-key`, one of the genesis'
    /// validators; JSON-RPC (HTTP and WebSocket) and /metrics on --rpc-addr
    Node(node_cmd::NodeArgs),
    /// Create, list, show and regenerate wallets (an encrypted coldkey and its hotkeys); ask a
    /// node for their balance
    Wallet(wallet_cmd::WalletArgs),
    /// Sign and submit a transaction (transfer, register, register-for, serve, stake, unstake,
    /// weights, commit-weights, reveal-weights) and wait for the block that includes it
    Tx(tx_cmd::TxArgs),
    /// Stake on any hotkey by public key (your own, or someone else's as a nominator), take it
    /// back, list stakes and nominators, set an owned hotkey's take
    Stake(stake_cmd::StakeArgs),
    /// Print the network's neurons: uid, hotkey, stake, rank, trust, consensus, incentive,
    /// dividends, validator trust, emission, validator permit, active, endpoint
    Metagraph(metagraph_cmd::MetagraphArgs),
    /// List, show and create subnets: independent networks on the chain, each with its own
    /// neurons, mechanism and parameters (netuid 0 is the genesis network)
    Subnet(subnet_cmd::SubnetArgs),
    /// Run a whole market on this machine: a node and one `agora peer run` process per peer
    /// with roles (honest, duplicate, noise, offline, cabal), a live metagraph, and
    /// DIR/report.md checking that the chain pays peers by their true value
    Localnet(localnet_cmd::LocalnetArgs),
    /// Run a peer (train, serve, score, set weights) or export its model for offline use
    Peer(peer_cmd::PeerArgs),
    /// Generate or score text with an exported model, without any network
    Infer(peer_cmd::InferArgs),
    /// Measure this machine: training throughput of the model presets
    Bench(peer_cmd::BenchArgs),
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
        /// Source of the printed lines: the paper's code (closed form, which prints its table digit
        /// for digit), or the real connectivity mechanism (equal to 1e-14; the table's 15th digit
        /// is rounding noise); the CSV and the summary have both
        #[arg(long, value_enum, default_value_t = Print::ClosedForm)]
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
    /// The competitive-equilibrium model of the intermodel paper (001 §3.2-3.3): how well
    /// peers' selfish weight updates recover the ideal ranking, for several alpha/tau and sizes
    #[command(allow_negative_numbers = true)]
    Empirical(EmpiricalArgs),
    /// Run every experiment with its defaults and write DIR/summary.md
    All {
        /// Run trust-descent, compare and empirical at reduced sizes (a smoke test)
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
    #[arg(long, default_value_t = TrustDescentOptions::default().split_cabal_share.unwrap_or(0.49))]
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

#[derive(Debug, Args)]
struct EmpiricalArgs {
    /// Values of alpha/tau to play, comma-separated, each > 0
    #[arg(long, value_delimiter = ',', default_value = "1,10,25,50")]
    ratios: Vec<f64>,
    /// Numbers of peers n, comma-separated, each >= 2
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    sizes: Vec<usize>,
    /// Random instances per (ratio, n), >= 1
    #[arg(long, default_value_t = EmpiricalOptions::default().seeds)]
    seeds: u64,
    /// Step budget per peer (steps_per_peer x n, the paper's is 1000 n), >= 1
    #[arg(long, default_value_t = EmpiricalOptions::default().steps_per_peer)]
    steps_per_peer: usize,
    /// Hard cap on steps per game, >= 1
    #[arg(long, default_value_t = EmpiricalOptions::default().max_steps)]
    max_steps: usize,
    /// lambda, the step size of the peers' gradient ascent (eq. 13), > 0
    #[arg(long, default_value_t = EmpiricalOptions::default().learning_rate)]
    learning_rate: f64,
    /// Stop a game once every peer's projected gradient is below this, >= 0
    #[arg(long, default_value_t = EmpiricalOptions::default().tolerance)]
    tolerance: f64,
    /// Reading of eq. 16 the loss is measured from
    #[arg(long, value_enum, default_value_t = Reference::Connected)]
    reference: Reference,
    /// Also play the grid under the other reading of eq. 16 on this many seeds (0: off)
    #[arg(long, default_value_t = EmpiricalOptions::default().compare_seeds)]
    compare_seeds: u64,
    /// Skip the adaptive-inflation run
    #[arg(long)]
    no_adaptive: bool,
    /// Seed of the first random instance
    #[arg(long, default_value_t = EmpiricalOptions::default().base_seed)]
    seed: u64,
}

/// `--reference` values, mapped to [`LossReference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Reference {
    // F_W0 = 1: the loss is measured from the fully connected network.
    Connected,
    // F_W0 = the mask at the initial weights (the literal reading of §3.2).
    Initial,
}

fn main() -> ExitCode {
    nucleus::configure_threads();
    nucleus::keep_freed_memory();
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Sim(args) => sim_command(args),
        Command::Node(args) => node_cmd::run(args),
        Command::Wallet(args) => wallet_cmd::run(args),
        Command::Tx(args) => tx_cmd::run(args),
        Command::Stake(args) => stake_cmd::run(args),
        Command::Metagraph(args) => metagraph_cmd::run(args),
        Command::Subnet(args) => subnet_cmd::run(args),
        Command::Localnet(args) => localnet_cmd::run(args),
        Command::Peer(args) => peer_cmd::run(args),
        Command::Infer(args) => peer_cmd::infer(args),
        Command::Bench(args) => peer_cmd::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace even under RUST_BACKTRACE,
            // since these are user errors (bad flags, unwritable directory), not bugs.
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// How the run compares with the lines the paper printed: a count of lines equal at 15
/// significant digits alone reads as a failure when it is short of all (the 15th digit of the
/// paper's table is rounding noise), so the largest difference is said beside it.
fn print_paper_matches(r: &sim::cabal::CabalReport) {
    let Some((hit, of)) = r.paper_matches else { return };
    if hit == of {
        eprintln!("the paper's {of} printed lines: all {of} reproduced to the 15 digits printed");
        return;
    }
    let worst =
        r.rows.iter().filter_map(|row| row.paper.map(|p| (row.mechanism - p).abs())).fold(0.0, f64::max);
    eprintln!(
        "the paper's {of} printed lines: {hit} reproduced to the 15 digits printed, the other {} within \
         {worst:.1e} (the 15th digit of the paper's table is rounding noise)",
        of - hit
    );
}

/// Logs to stderr (`agora node` logs each block, epoch and refused transaction), filtered by
/// `RUST_LOG` (`RUST_LOG=node=debug` adds the refusals with their reasons); by default our
/// crates at info and every dependency at warn. A malformed `RUST_LOG` falls back to that
/// default with a warning rather than stopping the command.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    const DEFAULT: &str = "warn,node=info,bft=info,peer=info,localnet=info,ledger=info,wire=info";
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(DEFAULT), Some(format!("RUST_LOG={v:?} ignored: {e}"))),
        },
        _ => (EnvFilter::new(DEFAULT), None),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    if let Some(warning) = bad {
        eprintln!("warning: {warning}");
    }
}

/// An error and its causes on one line, `outer: cause: root`, each said once: many library
/// errors already include their source's text in their own message (`storage backend: {0}`),
/// which anyhow's `{:#}` would print a second time. Only a cause that ends the line so far is
/// dropped, so a short cause that merely occurs inside an outer message is still said.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line += ": ";
        }
        line += &text;
    }
    line
}

/// Runs an experiment; a parameter the experiment refuses is named as the flag that set it.
fn sim_command(args: SimArgs) -> Result<()> {
    experiment_command(args).map_err(|e| match e.downcast::<sim::SimError>() {
        Ok(sim::SimError::BadParameter { name, value, expected }) => {
            anyhow::anyhow!("--{name} is {value}, expected {expected}")
        }
        Ok(other) => other.into(),
        Err(e) => e,
    })
}

fn experiment_command(args: SimArgs) -> Result<()> {
    let out = args.out.as_path();
    match args.experiment {
        Experiment::Cabal000 { prcnt_c, inf_rate, rho, steps, peers, print } => {
            let opts = Cabal000Options { prcnt_c, inf_rate, rho, steps, peers };
            let r = sim::cabal::run_000(&opts, out)?;
            print_lines(&r.rows, print);
            let last = r.rows.last().expect("steps >= 1");
            eprintln!("mechanism vs closed form: max |difference| = {:.1e}", r.max_abs_diff);
            print_paper_matches(&r);
            if let Some(clipped) = last.clipped {
                eprintln!(
                    "with stake clipping (eq. 8): cabal share {} at step {} (without: {})",
                    figures::format_sig(clipped, 6),
                    last.step,
                    figures::format_sig(last.mechanism, 6)
                );
            }
            wrote(&r.files);
        }
        Experiment::Cabal002 { tau, temp, stake_a, blocks, peers, print } => {
            let opts = Cabal002Options { tau, temp, stake_a, blocks, peers };
            let r = sim::cabal::run_002(&opts, out)?;
            print_lines(&r.rows, print);
            eprintln!("mechanism vs closed form: max |difference| = {:.1e}", r.max_abs_diff);
            print_paper_matches(&r);
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
        Experiment::Empirical(a) => {
            let defaults = EmpiricalOptions::default();
            let opts = EmpiricalOptions {
                ratios: a.ratios,
                sizes: a.sizes,
                seeds: a.seeds,
                steps_per_peer: a.steps_per_peer,
                max_steps: a.max_steps,
                learning_rate: a.learning_rate,
                tolerance: a.tolerance,
                reference: match a.reference {
                    Reference::Connected => LossReference::Connected,
                    Reference::Initial => LossReference::Initial,
                },
                compare_seeds: a.compare_seeds,
                adaptive: sim::empirical::AdaptiveOptions {
                    enabled: !a.no_adaptive,
                    ..defaults.adaptive.clone()
                },
                base_seed: a.seed,
                ..defaults
            };
            let r = sim::empirical::run(&opts, out)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        // A library error that says its source's text and also returns it as its source.
        #[derive(Debug)]
        struct Backend(std::io::Error);
        impl std::fmt::Display for Backend {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "storage backend: {}", self.0)
            }
        }
        impl std::error::Error for Backend {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let root = std::io::Error::other("Database already open");
        let e = anyhow::Error::new(Backend(root)).context("opening /tmp/chain");
        assert_eq!(one_line(&e), "opening /tmp/chain: storage backend: Database already open");
        let plain = anyhow::anyhow!("no such file").context("reading genesis.json");
        assert_eq!(one_line(&plain), "reading genesis.json: no such file");
    }

    /// The list defaults are spelled out as strings for the help text; they must stay the
    /// library's defaults.
    #[test]
    fn list_defaults_match_the_library() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).expect("parses").command {
            Command::Sim(SimArgs { experiment, .. }) => experiment,
            other => panic!("{other:?}"),
        };
        match parse(&["agora", "sim", "empirical"]) {
            Experiment::Empirical(a) => {
                assert_eq!(a.ratios, EmpiricalOptions::default().ratios);
                assert_eq!(a.sizes, EmpiricalOptions::default().sizes);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["agora", "sim", "trust-descent"]) {
            Experiment::TrustDescent(a) => {
                assert_eq!(a.honest_shares, TrustDescentOptions::default().honest_shares);
                assert_eq!(Some(a.split_cabal), TrustDescentOptions::default().split_cabal_share);
            }
            other => panic!("{other:?}"),
        }
    }
}
