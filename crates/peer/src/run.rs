//! `agora peer run`: one participant of the market, end to end (market paper §9).
//!
//! Each step: sample a batch of D_i, let the gate choose k peers (noisy top-k), query them with
//! the dendrite, train f_i, the gate and the student on their answers, send each queried peer
//! the gradient of our loss w.r.t. its answer, and every few blocks write the smoothed scores
//! to the chain as weights. Meanwhile the axon serves f_i to the others, its queue ordered by
//! the stake the metagraph gives each caller.

use crate::chain::{Chain, ChainError};
use crate::files::{FileError, FinalReport, StatusRow, StatusWriter};
use crate::serve::{ModelHandler, Serving};
use crate::{MetagraphView, Participant, RpcChain, StepError, WeightSetter, WeightsOutcome};
use ed25519_dalek::SigningKey;
use ledger::{Endpoint, Modality as EndpointModality, Protocol, PublicKey};
use nucleus::{Batch, Corpus, Nucleus, NucleusConfig, NucleusError, Split};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use wire::{AxonConfig, Dendrite, Modality, OwnedTensor, StakeTable, Target};

/// How a peer behaves in the market (the localnet's roles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves its model and weights its neighbours by their value to it.
    Honest,
    /// Serves noise (and trains and scores as usual): a worthless peer.
    Noise,
    /// Serves noise and puts all its weight on these uids (its fellow colluders), whatever
    /// their value: the papers' dishonest minority that tries to pay itself.
    Cabal(Vec<u16>),
    /// Honest until the chain reaches this block, then leaves without a word.
    OfflineAt(u64),
}

/// Everything `agora peer run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// WebSocket (or HTTP) URL of a node's JSON-RPC.
    pub chain: String,
    pub hotkey: SigningKey,
    /// The coldkey that owns the hotkey (its public half is all registration needs).
    pub coldkey: PublicKey,
    pub corpus: Corpus,
    /// Status log, checkpoints and the final report go here.
    pub out: PathBuf,
    pub role: Role,
    pub axon_addr: SocketAddr,
    pub nucleus: NucleusConfig,
    /// Blocks between two `set_weights`.
    pub weights_interval: u64,
    /// Time between two status lines (each costs a held-out evaluation).
    pub status_every: Duration,
    /// Steps between two checkpoints.
    pub checkpoint_every: u64,
    /// How long a Forward to the peers may take before they count as failed.
    pub timeout: Duration,
    /// Stop after this many steps (otherwise at shutdown).
    pub max_steps: Option<u64>,
    /// Train alone on the own dataset for this many steps before joining the network (no
    /// queries, no axon yet): a peer arrives with a model that has something to offer, as a
    /// miner would, rather than with random weights. Skipped as far as a resumed checkpoint
    /// already went.
    pub pretrain_steps: u64,
    /// Resume from `out/checkpoint` when it exists.
    pub resume: bool,
    /// Serve the axon's and the dendrite's metrics at `http://ADDR/metrics`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the chain at {url}: {source}")]
    Connect { url: String, source: ChainError },
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error("model: {0}")]
    Nucleus(#[from] NucleusError),
    #[error("axon: {0}")]
    Axon(#[from] wire::AxonError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: SocketAddr, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the training thread stopped: {0}")]
    Join(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.to_path_buf(), source }
}

/// How the run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// Shutdown or `max_steps`: `final.json` and a checkpoint were written.
    Finished(FinalReport),
    /// The `OfflineAt` block came: the peer left without a report.
    WentOffline { block: u64 },
    /// Shut down while still pretraining: the checkpoint holds the pretraining so far.
    Interrupted,
}

const HELD_OUT_BATCHES: usize = 8;
/// Held-out batches per scoring round (taken in turn from the `HELD_OUT_BATCHES`).
const SCORE_BATCHES: usize = 4;
/// How long the axon keeps serving after the final report is written.
const FINAL_LINGER: Duration = Duration::from_secs(8);
/// Weight of a scoring round's measurement in the smoothed score of a neighbour.
const SCORE_SMOOTHING: f32 = 0.3;

/// Runs the peer until `shutdown` resolves, `max_steps` is reached or its role takes it
/// offline. Logs one status line per `status_every` on stdout.
pub async fn run(cfg: RunConfig, shutdown: impl Future<Output = ()>) -> Result<Ending, RunError> {
    std::fs::create_dir_all(&cfg.out).map_err(io_err(&cfg.out))?;
    let chain = RpcChain::connect(&cfg.chain)
        .await
        .map_err(|source| RunError::Connect { url: cfg.chain.clone(), source })?;
    let participant = Participant::new(chain, cfg.hotkey.clone(), cfg.coldkey).await?;
    let uid = participant.register().await?;
    println!("registered as uid {uid} ({})", participant.hotkey());

    let checkpoint = cfg.out.join("checkpoint");
    let nucleus = if cfg.resume && checkpoint.join("state.json").is_file() {
        let n = Nucleus::load_checkpoint(&checkpoint)?;
        println!("resumed from {} at step {}", checkpoint.display(), n.steps());
        n
    } else {
        Nucleus::new(cfg.nucleus.clone())?
    };
    let (batch_size, context) = (cfg.nucleus.batch, nucleus.config().model.context);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.nucleus.seed);
    tokio::pin!(shutdown);
    let pretrained = pretrain(
        nucleus,
        &cfg.corpus,
        cfg.pretrain_steps,
        &checkpoint,
        cfg.status_every,
        &mut rng,
        &mut shutdown,
    )
    .await?;
    let nucleus = match pretrained {
        Some(n) => Arc::new(RwLock::new(n)),
        None => {
            println!("stopped while pretraining: nothing served, no report");
            return Ok(Ending::Interrupted);
        }
    };

    let mut view = participant.sync().await?;
    let stakes = StakeTable::new();
    let total_stake = Arc::new(AtomicU64::new(0));
    refresh_stakes(&view, &stakes, &total_stake);
    let serving = match cfg.role {
        Role::Noise | Role::Cabal(_) => Serving::Noise,
        Role::Honest | Role::OfflineAt(_) => Serving::Model,
    };
    let handler =
        ModelHandler::new(nucleus.clone(), serving, total_stake.clone(), cfg.nucleus.seed ^ 0x6e6f6973);
    let axon_config = AxonConfig {
        addr: cfg.axon_addr,
        // Long enough to wait out one training step of ours, which holds the model.
        deadline: cfg.timeout.max(Duration::from_secs(5)),
        ..AxonConfig::default()
    };
    let axon =
        wire::axon::serve(axon_config, cfg.hotkey.clone(), Arc::new(handler), Arc::new(stakes.clone()))
            .await?;
    let addr = axon.local_addr();
    let endpoint = Endpoint {
        ip: addr.ip().into(),
        port: addr.port(),
        protocol: Protocol::Grpc,
        modality: EndpointModality::Text,
    };
    participant.serve(endpoint).await?;
    println!("axon serving on {addr}");

    let dendrite = Dendrite::new(cfg.hotkey.clone());
    let _metrics = match cfg.metrics_addr {
        Some(addr) => {
            let (bound, task) =
                crate::metrics_http::serve_metrics(addr, vec![axon.metrics(), dendrite.metrics()])
                    .await
                    .map_err(|source| RunError::Metrics { addr, source })?;
            println!("metrics on http://{bound}/metrics");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let mut setter = match &cfg.role {
        Role::Cabal(uids) => WeightSetter::new(cfg.weights_interval).with_cabal(uids.clone()),
        _ => WeightSetter::new(cfg.weights_interval),
    };
    let held_out = cfg.corpus.batches(
        Split::HeldOut,
        batch_size,
        context,
        HELD_OUT_BATCHES,
        cfg.nucleus.seed ^ 0x68656c64,
    )?;
    let mut status = StatusWriter::create(&cfg.out)?;
    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut steps = 0u64;
    let mut rounds = 0u64;
    let mut scores = BTreeMap::<u16, f32>::new();

    let ending = loop {
        if cfg.max_steps.is_some_and(|m| steps >= m) {
            break None;
        }
        let head = participant.chain().head().await?.height;
        if head > view.block() {
            view = participant.sync().await?;
            refresh_stakes(&view, &stakes, &total_stake);
        }
        if let Role::OfflineAt(block) = cfg.role {
            if head >= block {
                break Some(head);
            }
        }
        let batch = cfg.corpus.sample(Split::Train, batch_size, context, &mut rng)?;
        let step = tokio::select! {
            _ = &mut shutdown => break None,
            step = train_step(&nucleus, &dendrite, &view, uid, batch, cfg.timeout) => step?,
        };
        steps += 1;
        let answering = step.answering;

        if setter.due(head) {
            // A scoring round over every serving neighbour, not only the k the gate routes to,
            // so every honest peer has an opinion of every peer and the stake majority can agree.
            // Several batches per round: a weaker neighbour's contribution is a few thousandths
            // of a nat, below one batch's noise, and only a consistent sign across the honest
            // peers gives it a stake majority (consensus) on chain.
            let from = (rounds as usize * SCORE_BATCHES) % held_out.len();
            let batches: Vec<Batch> =
                (0..SCORE_BATCHES).map(|k| held_out[(from + k) % held_out.len()].clone()).collect();
            rounds += 1;
            let (_, ablation) =
                evaluate(&nucleus, &dendrite, &view, uid, &batches, cfg.timeout, Routing::All).await?;
            for (u, delta) in ablation {
                let s = scores.entry(u).or_insert(delta);
                *s = (1.0 - SCORE_SMOOTHING) * *s + SCORE_SMOOTHING * delta;
            }
            let scores: Vec<(u16, f32)> = scores.iter().map(|(&u, &s)| (u, s)).collect();
            match setter.step(&participant, &scores).await {
                Ok(Some(WeightsOutcome::Applied { height })) => {
                    println!("weights set in block {height}: {} peers", scores.len())
                }
                Ok(_) => {}
                // No score above zero yet (nobody answered) is normal at the start.
                Err(StepError::Row(e)) => eprintln!("weights not set: {e}"),
                Err(StepError::Chain(e)) => eprintln!("weights not set: {e}"),
            }
        }
        if steps.is_multiple_of(cfg.checkpoint_every.max(1)) {
            read(&nucleus).save_checkpoint(&checkpoint)?;
        }
        if last_status.elapsed() >= cfg.status_every {
            last_status = Instant::now();
            let (heldout, _) =
                evaluate(&nucleus, &dendrite, &view, uid, &held_out[..1], cfg.timeout, Routing::Gate).await?;
            let stake = view.stake(uid);
            let incentive = view.info().I.get(usize::from(uid)).copied().unwrap_or(0.0);
            println!(
                "step {steps:>6}  block {head:>5}  loss {:.3}  held-out {heldout:.3}  peers answering {answering}  stake {:.3}  incentive {incentive:.4}",
                step.loss,
                stake as f64 / ledger::UNITS_PER_TOKEN as f64,
            );
            status.append(&StatusRow {
                time_s: started.elapsed().as_secs_f64(),
                step: steps,
                block: head,
                loss: f64::from(step.loss),
                heldout_loss: f64::from(heldout),
                peers_answering: answering as u32,
                stake,
                incentive,
            })?;
        }
    };
    if let Some(block) = ending {
        // Leave as a crashed peer would: no report, no goodbye; the axon just stops answering.
        println!("going offline at block {block}");
        axon.shutdown().await?;
        return Ok(Ending::WentOffline { block });
    }

    println!("shutting down: final evaluation on {} held-out batches", held_out.len());
    let (heldout_loss, ablation) =
        evaluate(&nucleus, &dendrite, &view, uid, &held_out, cfg.timeout, Routing::Gate).await?;
    let student_loss = {
        let n = read(&nucleus);
        let mut sum = 0.0;
        for b in &held_out {
            sum += n.student_loss(b)?;
        }
        sum / held_out.len() as f32
    };
    let report = FinalReport {
        uid,
        steps,
        heldout_loss: f64::from(heldout_loss),
        student_loss: Some(f64::from(student_loss)),
        ablation: ablation.into_iter().map(|(u, d)| (u.to_string(), f64::from(d))).collect(),
    };
    read(&nucleus).save_checkpoint(&checkpoint)?;
    let path = report.write(&cfg.out)?;
    // The other peers are usually shutting down at the same moment and querying us for their
    // own final evaluation: keep answering a little longer, or we would look worthless to them.
    println!("serving {} s more for the other peers' final evaluations", FINAL_LINGER.as_secs());
    tokio::time::sleep(FINAL_LINGER).await;
    axon.shutdown().await?;
    println!(
        "final held-out loss {heldout_loss:.4} (student alone {student_loss:.4}); wrote {}",
        path.display()
    );
    Ok(Ending::Finished(report))
}

/// Stops the metrics server when the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn read(nucleus: &RwLock<Nucleus>) -> std::sync::RwLockReadGuard<'_, Nucleus> {
    nucleus.read().unwrap_or_else(|e| e.into_inner())
}

fn refresh_stakes(view: &MetagraphView, stakes: &StakeTable, total: &AtomicU64) {
    let by_hotkey = view.stake_by_hotkey();
    total.store(by_hotkey.values().sum(), Ordering::Relaxed);
    stakes.replace_all(by_hotkey);
}

/// The peers that can be queried: serving, not us, and inside the gate.
fn candidates(view: &MetagraphView, me: u16, slots: usize) -> BTreeMap<u16, Target> {
    view.serving()
        .into_iter()
        .filter(|(uid, _, _)| *uid != me && usize::from(*uid) < slots)
        .map(|(uid, hotkey, e)| {
            (uid, Target { hotkey: hotkey.0, addr: SocketAddr::new(e.ip.into(), e.port) })
        })
        .collect()
}

struct StepOutcome {
    loss: f32,
    answering: usize,
}

/// A batch's bytes as the wire's text tensor `[batch, seq]` of u8: what a Forward carries.
pub fn text_tensor(batch: &Batch) -> OwnedTensor {
    OwnedTensor {
        dtype: wire::DType::U8,
        modality: Modality::Text,
        shape: vec![batch.batch as u64, batch.seq as u64],
        data: batch.tokens.clone(),
    }
}

/// Which neighbours a batch goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Routing {
    /// The k the gate picks (noisy top-k): training and the status line.
    Gate,
    /// Every serving neighbour: scoring rounds.
    All,
}

/// Sends `batch` to the neighbours `routing` picks and returns what each answered (`None` for
/// a failure).
async fn query(
    nucleus: &RwLock<Nucleus>,
    dendrite: &Dendrite,
    targets: &BTreeMap<u16, Target>,
    batch: &Batch,
    timeout: Duration,
    routing: Routing,
) -> (Vec<(u16, Option<Vec<f32>>)>, Vec<Target>, OwnedTensor) {
    let uids: Vec<u16> = targets.keys().copied().collect();
    let chosen = match routing {
        Routing::Gate => nucleus.write().unwrap_or_else(|e| e.into_inner()).route(batch, &uids),
        Routing::All => uids,
    };
    let chosen_targets: Vec<Target> = chosen.iter().filter_map(|u| targets.get(u).copied()).collect();
    let inputs = text_tensor(batch);
    let results = dendrite.forward(&chosen_targets, &inputs, timeout).await;
    let responses = chosen
        .iter()
        .zip(results)
        .map(|(&uid, r)| {
            (uid, r.tensor.filter(|_| r.code == wire::ReturnCode::Success).and_then(|t| as_f32(&t)))
        })
        .collect();
    (responses, chosen_targets, inputs)
}

/// A response's values as f32 (other peers, in Python say, may answer in f16 or bf16).
fn as_f32(t: &OwnedTensor) -> Option<Vec<f32>> {
    wire::TensorView { dtype: t.dtype, modality: t.modality, shape: &t.shape, data: &t.data }.to_f32_vec()
}

/// What `agora peer pretrain` needs: a model, its data and where to keep it.
#[derive(Clone, Debug)]
pub struct PretrainConfig {
    pub nucleus: NucleusConfig,
    pub corpus: Corpus,
    /// The checkpoint directory (`OUT/checkpoint` of `agora peer run --out OUT`).
    pub checkpoint: PathBuf,
    /// Total steps the model should have when done; a checkpoint already there counts.
    pub steps: u64,
    pub status_every: Duration,
}

/// Trains a model alone up to `cfg.steps` steps, resuming `cfg.checkpoint` if it holds one, and
/// saves it there: what `agora peer run --resume --out` then starts from. Returns the model's
/// step count, or `None` when `shutdown` came first (the checkpoint keeps the steps done).
pub async fn pretrain_only(
    cfg: PretrainConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<u64>, RunError> {
    let nucleus = if cfg.checkpoint.join("state.json").is_file() {
        let n = Nucleus::load_checkpoint(&cfg.checkpoint)?;
        println!("resuming {} at step {}", cfg.checkpoint.display(), n.steps());
        n
    } else {
        Nucleus::new(cfg.nucleus.clone())?
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.nucleus.seed ^ PRETRAIN_DATA_SEED);
    tokio::pin!(shutdown);
    let done =
        pretrain(nucleus, &cfg.corpus, cfg.steps, &cfg.checkpoint, cfg.status_every, &mut rng, &mut shutdown)
            .await?;
    Ok(done.map(|n| n.steps()))
}

/// Data order of pretraining, apart from the run's.
const PRETRAIN_DATA_SEED: u64 = 0x7072_6574_7261_696e;

/// f_i alone on the own dataset (the student stands in for the network) until it has `steps`
/// steps, with a progress line every `status_every`, then a checkpoint. `None` when `shutdown`
/// came first; the checkpoint then holds the steps done.
async fn pretrain(
    mut nucleus: Nucleus,
    corpus: &Corpus,
    steps: u64,
    checkpoint: &Path,
    status_every: Duration,
    rng: &mut ChaCha8Rng,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<Nucleus>, RunError> {
    let todo = steps.saturating_sub(nucleus.steps());
    if todo == 0 {
        return Ok(Some(nucleus));
    }
    println!("pretraining alone for {todo} steps before joining the network");
    let (batch_size, context) = (nucleus.config().batch, nucleus.config().model.context);
    let started = Instant::now();
    let mut last_status = Instant::now();
    for done in 1..=todo {
        let batch = corpus.sample(Split::Train, batch_size, context, rng)?;
        let mut step = tokio::task::spawn_blocking(move || {
            let report = nucleus.pretrain_step(&batch);
            (nucleus, report)
        });
        let mut stop = false;
        let joined = tokio::select! {
            r = &mut step => r,
            _ = &mut *shutdown => {
                stop = true;
                step.await
            }
        };
        let (n, report) = joined.map_err(|e| RunError::Join(e.to_string()))?;
        nucleus = n;
        let report = report?;
        if stop {
            nucleus.save_checkpoint(checkpoint)?;
            return Ok(None);
        }
        if last_status.elapsed() >= status_every || done == todo {
            last_status = Instant::now();
            println!(
                "pretrain {done:>6}/{todo}  loss {:.3}  ({:.0} s)",
                report.loss,
                started.elapsed().as_secs_f64()
            );
        }
    }
    nucleus.save_checkpoint(checkpoint)?;
    Ok(Some(nucleus))
}

async fn train_step(
    nucleus: &Arc<RwLock<Nucleus>>,
    dendrite: &Dendrite,
    view: &MetagraphView,
    me: u16,
    batch: Batch,
    timeout: Duration,
) -> Result<StepOutcome, RunError> {
    let slots = read(nucleus).config().slots;
    let targets = candidates(view, me, slots);
    let (responses, _, inputs) = query(nucleus, dendrite, &targets, &batch, timeout, Routing::Gate).await;
    let answering = responses.iter().filter(|(_, r)| r.is_some()).count();
    let model = nucleus.clone();
    let report = tokio::task::spawn_blocking(move || {
        model.write().unwrap_or_else(|e| e.into_inner()).train_step(&batch, &responses)
    })
    .await
    .map_err(|e| RunError::Join(e.to_string()))??;

    // The loss gradient w.r.t. each answer goes back to its peer (step 4: "out to the
    // network"); it is not waited for, so a slow peer does not slow our training.
    let (grad_targets, grads): (Vec<Target>, Vec<OwnedTensor>) = report
        .grads
        .iter()
        .filter_map(|(uid, g)| {
            let t = targets.get(uid)?;
            let shape = [
                inputs.shape[0],
                inputs.shape[1],
                (g.len() as u64) / (inputs.shape[0] * inputs.shape[1]).max(1),
            ];
            Some((*t, OwnedTensor::from_f32(Modality::Tensor, &shape, g)))
        })
        .unzip();
    if !grad_targets.is_empty() {
        let dendrite = dendrite.clone();
        tokio::spawn(async move { dendrite.backward(&grad_targets, &inputs, &grads, timeout).await });
    }
    Ok(StepOutcome { loss: report.loss, answering })
}

/// Mean held-out loss over `batches` with the peers `routing` picks, and the mean increase of
/// that loss when each peer is removed (eq. 2 made empirical).
async fn evaluate(
    nucleus: &Arc<RwLock<Nucleus>>,
    dendrite: &Dendrite,
    view: &MetagraphView,
    me: u16,
    batches: &[Batch],
    timeout: Duration,
    routing: Routing,
) -> Result<(f32, BTreeMap<u16, f32>), RunError> {
    let slots = read(nucleus).config().slots;
    let targets = candidates(view, me, slots);
    let mut loss = 0.0;
    let mut ablation = BTreeMap::<u16, f32>::new();
    for batch in batches {
        let (responses, _, _) = query(nucleus, dendrite, &targets, batch, timeout, routing).await;
        let n = read(nucleus);
        loss += n.held_out_loss(batch, &responses)?;
        for (uid, delta) in n.ablation(batch, &responses)? {
            *ablation.entry(uid).or_default() += delta / batches.len() as f32;
        }
    }
    Ok((loss / batches.len().max(1) as f32, ablation))
}
