//! `agora peer run|export`, `agora infer` and `agora bench train`: flags into the `peer` and
//! `nucleus` crates.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use nucleus::{Corpus, Inference, Nucleus, NucleusConfig};
use peer::run::{Ending, PretrainConfig, Role, RunConfig};
use peer::ModelSize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(subcommand)]
    command: PeerCommand,
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Join a chain as a peer: register (proof of work) if needed, serve the model on an axon,
    /// train on the dataset with the neighbours the gate picks, score them and set weights
    Run(Box<RunArgs>),
    /// Train a peer's model alone on its dataset, no chain needed, into OUT/checkpoint: then
    /// `agora peer run --out OUT --resume` joins the network with it
    Pretrain(PretrainArgs),
    /// Write a peer's student and local model (safetensors + config) for `agora infer`
    Export {
        /// The peer's checkpoint directory (`OUT/checkpoint` of `agora peer run --out OUT`)
        #[arg(long, value_name = "DIR")]
        checkpoint: PathBuf,
        /// Where to write the exported model
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    /// Serve the model, weight neighbours by their value
    Honest,
    /// Serve Gaussian noise instead of the model
    Noise,
    /// Put all weight on --cabal-uids
    Cabal,
    /// Honest until --offline-at-block, then leave without a word
    Offline,
    /// Serve the model as initialised, never train it; score neighbours as usual
    Lazy,
    /// Answer with what the peer --copy-of answers (through the dendrite), signed as our own;
    /// train and score as usual (a dishonest role, for copy detection to catch)
    Copycat,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Wallet root directory [default: ~/.agora/wallets]
    #[arg(long, value_name = "DIR", env = "AGORA_WALLET_DIR")]
    wallet_dir: Option<PathBuf>,
    /// Wallet name (its coldkey owns the hotkey)
    #[arg(long)]
    wallet: String,
    /// Hotkey name inside the wallet: the peer's identity and signing key
    #[arg(long, default_value = "default")]
    hotkey: String,
    #[command(flatten)]
    chain: crate::tx_cmd::ChainArgs,
    /// The subnet to join (`agora subnet list`): the peer registers, serves, scores and sets
    /// weights there; 0 is the genesis network
    #[arg(long, value_name = "NETUID", default_value_t = 0)]
    netuid: u16,
    /// Training text: a fortunes file, a text file or a directory of them, or the name of a
    /// fortunes topic (`science`, `computers`, ...: $AGORA_FORTUNES_DIR, the installed package,
    /// else the built-in sample); `+` joins several into one mixture (`science+computers`)
    #[arg(long, value_name = "PATH|TOPIC[+...]")]
    dataset: String,
    /// Directory for status.csv, checkpoints and final.json
    #[arg(long, value_name = "DIR", default_value = "./agora-peer")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = RoleArg::Honest)]
    role: RoleArg,
    /// Cabal members (uids, comma-separated) for --role cabal
    #[arg(long, value_delimiter = ',')]
    cabal_uids: Vec<u16>,
    /// Block at which --role offline leaves
    #[arg(long)]
    offline_at_block: Option<u64>,
    /// The hotkey (hex) whose answers --role copycat relays
    #[arg(long, value_name = "HOTKEY")]
    copy_of: Option<ledger::PublicKey>,
    /// Model preset
    #[arg(long, value_enum, default_value_t = SizeArg::Small)]
    model_size: SizeArg,
    /// Seed of the model's initialisation and the data order
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Blocks between two set_weights
    #[arg(long, default_value_t = 10)]
    weights_interval: u64,
    /// Address of the axon (port 0: any free port; the chosen one is published on chain)
    #[arg(long, default_value = "127.0.0.1:0")]
    axon_addr: SocketAddr,
    /// Seconds between two status lines
    #[arg(long, default_value_t = 10.0)]
    status_every: f64,
    /// Steps between two checkpoints
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
    /// A hotkey (hex) the axon serves though it is not registered, e.g. an independent judge
    /// measuring every peer (repeatable; still signature- and replay-checked, lowest priority)
    #[arg(long, value_name = "HOTKEY")]
    trust_caller: Vec<ledger::PublicKey>,
    /// Publish this address on chain instead of the axon's own (a proxy or NAT in front of it)
    #[arg(long, value_name = "ADDR")]
    announce_addr: Option<SocketAddr>,
    /// Seconds a neighbour may take to answer a Forward
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Stop after this many training steps (default: run until Ctrl-C or SIGTERM)
    #[arg(long)]
    max_steps: Option<u64>,
    /// Train alone on the dataset for this many steps before joining the network, so the model
    /// served has something to offer (with --resume: only the steps the checkpoint lacks)
    #[arg(long, default_value_t = 0)]
    pretrain_steps: u64,
    /// Resume from OUT/checkpoint if it exists
    #[arg(long)]
    resume: bool,
    /// Competitive masking (the intermodel paper's §2.5) at temperature T: the axon scales its
    /// answer to each caller by sigmoid((s_i w_ij - mean over all neurons) / T), stake times
    /// weight in units of a uniform network's (1 = mean stake, uniform weight); trusted callers
    /// are answered unmasked [default: off]
    #[arg(long, value_name = "T")]
    competitive_masking: Option<f64>,
    /// Serve Prometheus metrics (requests, return codes and latency per neighbour, both as axon
    /// and as dendrite) at http://ADDR/metrics
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Blocks between two publications of the model version on chain (a publish_version
    /// transaction when the model changed; the first at once)
    #[arg(long, value_name = "BLOCKS", default_value_t = peer::DEFAULT_VERSION_INTERVAL)]
    version_interval: u64,
    /// Do not look for neighbours that copy others' answers (they are then scored like
    /// anyone else: a control that shows what copy detection does)
    #[arg(long)]
    no_copy_detection: bool,
}

#[derive(Debug, Args)]
struct PretrainArgs {
    /// Training text, as for `agora peer run --dataset`
    #[arg(long, value_name = "PATH|TOPIC")]
    dataset: String,
    /// Steps the model should have when done (a checkpoint already in OUT counts)
    #[arg(long)]
    steps: u64,
    /// The peer's directory: the model goes to OUT/checkpoint
    #[arg(long, value_name = "DIR", default_value = "./agora-peer")]
    out: PathBuf,
    /// Model preset
    #[arg(long, value_enum, default_value_t = SizeArg::Small)]
    model_size: SizeArg,
    /// Seed of the model's initialisation and the data order
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seconds between two progress lines
    #[arg(long, default_value_t = 10.0)]
    status_every: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SizeArg {
    Tiny,
    Small,
    Medium,
}

impl From<SizeArg> for ModelSize {
    fn from(s: SizeArg) -> ModelSize {
        match s {
            SizeArg::Tiny => ModelSize::Tiny,
            SizeArg::Small => ModelSize::Small,
            SizeArg::Medium => ModelSize::Medium,
        }
    }
}

pub fn run(args: PeerArgs) -> Result<()> {
    match args.command {
        PeerCommand::Run(a) => run_peer(*a),
        PeerCommand::Pretrain(a) => pretrain(a),
        PeerCommand::Export { checkpoint, out } => {
            let n = Nucleus::load_checkpoint(&checkpoint)
                .with_context(|| format!("loading the checkpoint in {}", checkpoint.display()))?;
            n.export(&out).with_context(|| format!("exporting to {}", out.display()))?;
            println!("exported the student and the local model (step {}) to {}", n.steps(), out.display());
            Ok(())
        }
    }
}

fn pretrain(a: PretrainArgs) -> Result<()> {
    if a.status_every <= 0.0 || !a.status_every.is_finite() {
        bail!("--status-every must be positive seconds");
    }
    let cfg = PretrainConfig {
        nucleus: peer::nucleus_preset(a.model_size.into(), a.seed),
        corpus: load_corpus(&a.dataset)?,
        checkpoint: a.out.join("checkpoint"),
        steps: a.steps,
        status_every: Duration::from_secs_f64(a.status_every),
    };
    let checkpoint = cfg.checkpoint.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match runtime.block_on(peer::run::pretrain_only(cfg, shutdown_signal()))? {
        Some(steps) => println!("model at step {steps} in {}", checkpoint.display()),
        None => println!("interrupted: the steps done so far are in {}", checkpoint.display()),
    }
    Ok(())
}

/// A dataset flag: `+`-separated paths or fortunes topics (`nucleus::Corpus::resolve`).
pub fn load_corpus(dataset: &str) -> Result<Corpus> {
    Ok(Corpus::resolve(dataset)?)
}

fn run_peer(a: RunArgs) -> Result<()> {
    let root = match a.wallet_dir {
        Some(d) => d,
        None => wallet::default_root().context("no home directory: pass --wallet-dir")?,
    };
    let w = wallet::Wallet::open(&root, &a.wallet)?;
    let hotkey = w.hotkey(&a.hotkey)?;
    let role = match a.role {
        RoleArg::Honest => Role::Honest,
        RoleArg::Noise => Role::Noise,
        RoleArg::Cabal if a.cabal_uids.is_empty() => bail!("--role cabal needs --cabal-uids"),
        RoleArg::Cabal => Role::Cabal(a.cabal_uids.clone()),
        RoleArg::Offline => {
            Role::OfflineAt(a.offline_at_block.context("--role offline needs --offline-at-block")?)
        }
        RoleArg::Lazy => Role::Lazy,
        RoleArg::Copycat => Role::Copycat(a.copy_of.context("--role copycat needs --copy-of HOTKEY")?),
    };
    if a.timeout <= 0.0 || !a.timeout.is_finite() || a.status_every <= 0.0 || !a.status_every.is_finite() {
        bail!("--timeout and --status-every must be positive seconds");
    }
    if a.chain.chain_id.is_some() {
        // The peer itself waits for a node that is not up yet; a wrong chain is refused now.
        crate::tx_cmd::block_on(crate::tx_cmd::Chain::connect(&a.chain))?;
    }
    let cfg = RunConfig {
        chain: a.chain.url,
        netuid: a.netuid,
        hotkey,
        coldkey: w.coldkey_public(),
        corpus: load_corpus(&a.dataset)?,
        out: a.out,
        role,
        axon_addr: a.axon_addr,
        nucleus: peer::nucleus_preset(a.model_size.into(), a.seed),
        weights_interval: a.weights_interval,
        status_every: Duration::from_secs_f64(a.status_every),
        checkpoint_every: a.checkpoint_every,
        trusted_callers: a.trust_caller.clone(),
        announce_addr: a.announce_addr,
        timeout: Duration::from_secs_f64(a.timeout),
        max_steps: a.max_steps,
        pretrain_steps: a.pretrain_steps,
        resume: a.resume,
        metrics_addr: a.metrics_addr,
        competitive_masking: a.competitive_masking.map(peer::MaskingConfig::new).transpose()?,
        version_interval: a.version_interval,
        copy_detection: !a.no_copy_detection,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ending = runtime.block_on(peer::run::run(cfg, shutdown_signal()))?;
    match ending {
        Ending::Finished(r) => println!("done after {} steps: held-out loss {:.4}", r.steps, r.heldout_loss),
        Ending::WentOffline { block } => println!("offline since block {block}"),
        Ending::Interrupted => println!("stopped before joining the network"),
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (what the localnet sends at the end).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// A model written by `agora peer export`
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Text to continue
    #[arg(long, conflicts_with = "score")]
    prompt: Option<String>,
    /// Bytes to generate after the prompt
    #[arg(long, default_value_t = 200)]
    bytes: usize,
    /// Sampling temperature (0: greedy)
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Seed of the sampling
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Instead of generating: print the model's mean next-byte loss (nats) on this file
    #[arg(long, value_name = "FILE")]
    score: Option<PathBuf>,
}

pub fn infer(a: InferArgs) -> Result<()> {
    let model =
        Inference::load(&a.model).with_context(|| format!("loading the model in {}", a.model.display()))?;
    if let Some(file) = a.score {
        let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let loss = model.score(&text)?;
        println!(
            "{loss:.4} nats/byte ({:.3} bits/byte) on {} bytes of {}",
            loss / std::f32::consts::LN_2,
            text.len(),
            file.display()
        );
        return Ok(());
    }
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be a number >= 0");
    }
    let prompt = a.prompt.unwrap_or_default();
    let out = model.generate(prompt.as_bytes(), a.bytes, a.temperature, a.seed)?;
    println!("{}{}", prompt, String::from_utf8_lossy(&out));
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Training tokens per second of a model preset on this machine's CPU
    /// (bench/train_vs_torch.py runs the same architecture in PyTorch and prints the ratio)
    Train {
        #[arg(long, value_enum, default_value_t = SizeArg::Small)]
        model_size: SizeArg,
        /// Timed steps (after warm-up)
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

pub fn bench(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Train { model_size, steps, json } => {
            let cfg: NucleusConfig = peer::nucleus_preset(model_size.into(), 0);
            let r = nucleus::bench::train_tokens_per_s(&cfg, steps.max(1))?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{:.0} training tokens/s: {} steps of {}x{} bytes in {:.2} s; model dim {} depth {} heads {} ({} parameters); loss {:.3} -> {:.3}",
                    r.tokens_per_s, r.steps, r.batch, r.context, r.seconds, r.dim, r.depth, r.heads, r.parameters, r.first_loss, r.last_loss
                );
            }
            Ok(())
        }
    }
}
