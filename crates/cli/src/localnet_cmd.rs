//! `agora localnet`: parses flags into a `localnet` scenario and run options, runs, prints.

use anyhow::{Context, Result};
use clap::Args;
use localnet::{RunOptions, Scenario};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DividendArg {
    Bonds,
    ValidatorTrust,
}

#[derive(Debug, Args)]
pub(crate) struct LocalnetArgs {
    /// Scenario file (TOML, `localnet::Scenario`); default: the built-in 16-peer scenario (`--print-scenario` shows it)
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
    /// yuma's dividend rule: bonds (subtensor's) or validator-trust (bond payouts scaled by how
    /// much of each validator's row survived clipping)
    #[arg(long, value_enum)]
    dividend_rule: Option<DividendArg>,
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
    /// Run the market in this process, in lockstep, from --seed: the real peer loop and ledger,
    /// no node or peer processes, no sockets; one training step per peer per block
    #[arg(long, conflicts_with = "no_peers")]
    in_process: bool,
    /// Seed of an --in-process run (keys, noise, random weights): the same seed replays the run
    #[arg(long, default_value_t = 0, requires = "in_process")]
    seed: u64,
    /// --in-process negative control: every peer outside the cabal sets random weights
    #[arg(long, requires = "in_process")]
    random_weights: bool,
    /// --in-process: training steps each peer takes per block
    #[arg(long, default_value_t = 1, requires = "in_process")]
    steps_per_block: u32,
    /// Inject faults between the peers: every axon is published behind a proxy that loses
    /// --chaos-loss of the chunks it relays and adds up to --chaos-jitter-ms of jitter
    #[arg(long, conflicts_with = "in_process")]
    chaos: bool,
    /// With --chaos: share of relayed chunks lost (each delivered after 200 ms)
    #[arg(long, default_value_t = 0.2, value_name = "P")]
    chaos_loss: f64,
    /// With --chaos: jitter added to each relayed chunk, up to this many milliseconds
    #[arg(long, default_value_t = 200, value_name = "MS")]
    chaos_jitter_ms: u64,
    /// Epochs between two measurements of the independent judge while the run goes (it always
    /// measures at the end)
    #[arg(long, value_name = "EPOCHS", default_value_t = 10)]
    judge_every: u64,
    /// Run the chain as this many validator processes (`agora node --validator-key`) finalizing
    /// one chain by consensus, the peers spread over them; 1: a single node
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64), conflicts_with = "in_process")]
    validators: u64,
    /// Test batches per peer topic the judge reads (each: 8 sequences of 64 bytes)
    #[arg(long, value_name = "N", default_value_t = 2)]
    judge_batches: usize,
    /// Competitive masking at temperature T in every Rust peer's axon (`agora peer run
    /// --competitive-masking T`; in process, in every answer; the Python peer does not mask):
    /// each answer to a caller scaled by sigmoid((s_i w_ij - mean over all neurons) / T); the
    /// judge is answered unmasked [default: off]
    #[arg(long, value_name = "T")]
    competitive_masking: Option<f64>,
}

pub(crate) fn run(args: LocalnetArgs) -> Result<()> {
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
    if let Some(m) = args.mechanism.clone() {
        scenario.mechanism = m;
    }
    if let Some(rule) = args.dividend_rule {
        scenario.dividend_rule = Some(match rule {
            DividendArg::Bonds => mechanism::yuma::DividendRule::Bonds,
            DividendArg::ValidatorTrust => mechanism::yuma::DividendRule::ValidatorTrust,
        });
    }
    let scenario = scenario.validated()?;
    if args.print_scenario {
        print!("{}", scenario.to_toml());
        return Ok(());
    }
    let judge = localnet::JudgeConfig { batches: args.judge_batches.max(1), ..Default::default() };
    let masking = args.competitive_masking.map(peer::MaskingConfig::new).transpose()?;
    if args.in_process {
        return run_in_process(&args, scenario, judge, masking);
    }
    let agora = std::env::current_exe().context("locating the agora binary")?;
    let mut opts = RunOptions::new(agora, args.out.clone(), scenario);
    opts.spawn_peers = !args.no_peers;
    opts.competitive_masking = masking;
    opts.judge = judge;
    opts.judge_every = args.judge_every;
    opts.validators = args.validators as usize;
    if args.chaos {
        if !(0.0..1.0).contains(&args.chaos_loss) {
            anyhow::bail!("--chaos-loss {} must be in [0, 1)", args.chaos_loss);
        }
        opts.chaos = Some(localnet::FaultConfig::lossy(
            0x0063_6861_6f73,
            args.chaos_loss,
            std::time::Duration::from_millis(args.chaos_jitter_ms),
        ));
    }
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

fn run_in_process(
    args: &LocalnetArgs,
    scenario: Scenario,
    judge: localnet::JudgeConfig,
    masking: Option<peer::MaskingConfig>,
) -> Result<()> {
    let mechanisms: Vec<String> = if args.compare {
        mechanism::MECHANISM_NAMES.iter().map(|m| m.to_string()).collect()
    } else {
        vec![scenario.mechanism.clone()]
    };
    let mut summaries = Vec::new();
    for m in &mechanisms {
        let dividend_rule = if m == "yuma" { scenario.dividend_rule } else { None };
        let mut opts = localnet::MarketOptions::new(
            Scenario { mechanism: m.clone(), dividend_rule, ..scenario.clone() },
            if args.compare { args.out.join(m) } else { args.out.clone() },
        );
        opts.seed = args.seed;
        opts.judge = judge;
        opts.judge_every = args.judge_every;
        opts.steps_per_block = args.steps_per_block;
        opts.competitive_masking = masking;
        opts.verbose = true;
        if args.random_weights {
            opts.weights = localnet::WeightsPolicy::Random;
        }
        let outcome = localnet::run_market(&opts)?;
        print_summary(&outcome.summary, false);
        println!("report: {}", opts.out.join("report.md").display());
        summaries.push(outcome.summary);
    }
    if args.compare {
        localnet::write_compare(&args.out, &summaries)?;
        println!("side by side: {}", args.out.join("compare.md").display());
    }
    Ok(())
}

fn print_outcome(o: &localnet::RunOutcome) {
    print_summary(&o.summary, o.interrupted);
    for (name, code) in &o.peers_exited_early {
        println!("  peer {name} exited early (code {code:?}); see its peer.log");
    }
    if let Some(a) = &o.agreement {
        println!(
            "  {} validators (finalized heights {:?}) hold the same block {} at height {} (state root {})",
            a.finalized.len(),
            a.finalized,
            a.hash,
            a.height,
            a.state_root
        );
    }
}

fn print_summary(s: &localnet::Summary, interrupted: bool) {
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!(
        "{}: blocks {}..={}, against the {} value: Spearman(I) {}, Spearman(emission) {}; noise share of serving emission {}, of all emission {}; cabal stake {} -> {}{}",
        s.mechanism,
        s.first_block,
        s.last_block,
        s.truth,
        f(s.spearman_incentive),
        f(s.spearman_emission),
        f(s.noise_serving_share),
        f(s.noise_emission_share),
        f(s.cabal_share_start),
        f(s.cabal_share_end),
        if interrupted { " (interrupted)" } else { "" }
    );
}
