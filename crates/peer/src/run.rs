//! `agora peer run`: one participant of the market, end to end (market paper §9).
//!
//! Each step: sample a batch of D_i, let the gate choose k peers (noisy top-k), query them with
//! the dendrite, train f_i, the gate and the student on their answers, send each queried peer
//! the gradient of our loss w.r.t. its answer, and every few blocks write the smoothed scores
//! to the chain as weights. Meanwhile the axon serves f_i to the others, its queue ordered by
//! the weight each caller gives us on chain times its stake (w_ij * s_i), and signs every
//! answer with the version of f_i that computed it.

use crate::chain::{Chain, ChainError};
use crate::files::{FileError, FinalReport, StatusRow, StatusWriter};
use crate::learner::{read, Learner, StepOutcome, HELD_OUT_BATCHES, PRETRAIN_DATA_SEED};
use crate::serve::{ModelHandler, RelayHandler, Serving};
use crate::{
    MetagraphView, Participant, RpcChain, StepError, VersionPublisher, WeightSetter, WeightsOutcome,
};
use ed25519_dalek::SigningKey;
use ledger::{Endpoint, Modality as EndpointModality, Protocol, PublicKey};
use nucleus::{Corpus, Nucleus, NucleusConfig, NucleusError, Split};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{AxonConfig, Dendrite, HandlerError, StakeTable, Target};

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
    /// Serves its model as initialised, never trains it (not even from the gradients others
    /// send), and scores its neighbours as usual: a free rider with nothing to offer.
    Lazy,
    /// Answers every Forward with what the peer of this hotkey answers to the same inputs,
    /// asked through the dendrite when the call comes, signed as its own; trains and scores as
    /// usual (issue 16: what copy detection must catch).
    Copycat(PublicKey),
}

impl Role {
    /// What its axon answers.
    pub fn serving(&self) -> Serving {
        match self {
            Role::Noise | Role::Cabal(_) => Serving::Noise,
            // A copycat's own model is what it would serve if it stopped relaying.
            Role::Honest | Role::OfflineAt(_) | Role::Copycat(_) => Serving::Model,
            Role::Lazy => Serving::Frozen,
        }
    }

    /// How it turns its scores into weights: the cabal weights only its members.
    pub fn weight_setter(&self, interval: u64) -> WeightSetter {
        match self {
            Role::Cabal(uids) => WeightSetter::new(interval).with_cabal(uids.clone()),
            _ => WeightSetter::new(interval),
        }
    }
}

/// Everything `agora peer run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// WebSocket (or HTTP) URL of a node's JSON-RPC.
    pub chain: String,
    /// The subnet the peer joins (0: the genesis network).
    pub netuid: u16,
    /// The hotkey it registers and signs with.
    pub hotkey: SigningKey,
    /// The coldkey that owns the hotkey (its public half is all registration needs).
    pub coldkey: PublicKey,
    /// Its dataset D_i (train, held-out and test parts).
    pub corpus: Corpus,
    /// Status log, checkpoints and the final report go here.
    pub out: PathBuf,
    /// How it behaves in the market.
    pub role: Role,
    /// Where its axon listens.
    pub axon_addr: SocketAddr,
    /// Its model and training hyperparameters.
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
    /// Hotkeys the axon serves though no chain knows them (the localnet's independent judge).
    pub trusted_callers: Vec<PublicKey>,
    /// The address to publish on chain instead of the one the axon is bound to (a proxy or
    /// NAT in front of it; the localnet's fault-injecting proxy).
    pub announce_addr: Option<SocketAddr>,
    /// The axon's competitive masking (the intermodel paper's §2.5, [`wire::masking`]): answers
    /// to each caller scaled by σ((its weight to us times its stake − the mean) / T). `None`:
    /// off, answers as the model computed them.
    pub competitive_masking: Option<wire::MaskingConfig>,
    /// Blocks between two publications of a changed model version on chain
    /// ([`crate::version`]; [`crate::DEFAULT_VERSION_INTERVAL`]).
    pub version_interval: u64,
    /// Look for neighbours copying others' answers and score them 0 ([`crate::copies`]); off
    /// only to measure what it does.
    pub copy_detection: bool,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The node's RPC could not be reached.
    #[error("cannot reach the chain at {url}: {source}")]
    Connect {
        /// The node's URL.
        url: String,
        /// Why.
        source: Box<ChainError>,
    },
    /// Boxed: a ledger refusal is large, and this error travels through every phase.
    #[error("chain: {0}")]
    Chain(Box<ChainError>),
    /// The model could not be built, trained, checkpointed or asked.
    #[error("model: {0}")]
    Nucleus(#[from] NucleusError),
    /// The axon could not start serving.
    #[error("axon: {0}")]
    Axon(#[from] wire::AxonError),
    /// The metrics endpoint could not bind.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file or directory of the run could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory that could not be used.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The status log or the final report could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The training thread panicked (with its message).
    #[error("the training thread stopped: {0}")]
    Join(String),
}

impl From<ChainError> for RunError {
    fn from(e: ChainError) -> Self {
        RunError::Chain(Box::new(e))
    }
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
    WentOffline {
        /// The block at which it left.
        block: u64,
    },
    /// Shut down while still pretraining: the checkpoint holds the pretraining so far.
    Interrupted,
}

/// How long the axon keeps serving after the final report is written.
const FINAL_LINGER: Duration = Duration::from_secs(8);

/// Runs the peer until `shutdown` resolves, `max_steps` is reached or its role takes it
/// offline. Logs one status line per `status_every` on stdout.
///
/// The phases: join (register, load or pretrain the model, serve it on an axon and publish the
/// endpoint), then the loop of [`Learner`] steps with a scoring round and a `set_weights` every
/// `weights_interval` blocks, then the final report.
pub async fn run(cfg: RunConfig, shutdown: impl Future<Output = ()>) -> Result<Ending, RunError> {
    std::fs::create_dir_all(&cfg.out).map_err(io_err(&cfg.out))?;
    let mut chain = RpcChain::connect(&cfg.chain)
        .await
        .map_err(|source| RunError::Connect { url: cfg.chain.clone(), source: Box::new(source) })?;
    chain.netuid = cfg.netuid;
    let participant = Participant::new(chain, cfg.hotkey.clone(), cfg.coldkey).await?;
    let participant = match cfg.netuid {
        0 => participant,
        k => {
            let subnet = participant.chain().client().subnet(k).await.map_err(ChainError::from)?;
            participant.on_subnet(k, &subnet.params)?
        }
    };
    let uid = participant.register().await?;
    tracing::info!("registered as uid {uid} ({})", participant.hotkey());

    let checkpoint = cfg.out.join("checkpoint");
    let nucleus = if cfg.resume && checkpoint.join("state.json").is_file() {
        let n = Nucleus::load_checkpoint(&checkpoint)?;
        tracing::info!("resumed from {} at step {}", checkpoint.display(), n.steps());
        n
    } else {
        Nucleus::new(cfg.nucleus.clone())?
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.nucleus.seed);
    tokio::pin!(shutdown);
    // A lazy peer never trains: what it serves is its model as initialised.
    let pretrain_steps = if cfg.role == Role::Lazy { 0 } else { cfg.pretrain_steps };
    let pretrained = pretrain(
        nucleus,
        &cfg.corpus,
        pretrain_steps,
        &checkpoint,
        cfg.status_every,
        &mut rng,
        &mut shutdown,
    )
    .await?;
    let Some(nucleus) = pretrained else {
        tracing::info!("stopped while pretraining: nothing served, no report");
        return Ok(Ending::Interrupted);
    };
    let mut learner = Learner::new(nucleus, uid, cfg.corpus.clone(), rng, cfg.timeout)?
        .with_copy_detection(cfg.copy_detection);
    if !checkpoint.join("state.json").is_file() {
        // Someone may read the model before the first periodic save (the localnet's judge runs
        // every peer from its checkpoint): keep one from the start.
        read(learner.nucleus()).save_checkpoint(&checkpoint)?;
    }

    let mut view = participant.sync().await?;
    let stakes = StakeTable::new();
    let total_stake = Arc::new(AtomicU64::new(0));
    refresh_stakes(&view, uid, &stakes, &total_stake);
    let dendrite = Dendrite::new(cfg.hotkey.clone());
    // The copycat's original, as the last metagraph sync publishes it.
    let original = Arc::new(std::sync::RwLock::new(None::<Target>));
    let handler: Arc<dyn wire::Handler> = match &cfg.role {
        Role::Copycat(of) => {
            set_original(&view, of, &original);
            Arc::new(relay(dendrite.clone(), original.clone(), cfg.timeout))
        }
        _ => Arc::new(ModelHandler::new(
            learner.nucleus().clone(),
            cfg.role.serving(),
            total_stake.clone(),
            cfg.nucleus.seed ^ 0x6e6f6973,
        )),
    };
    let axon_config = AxonConfig {
        addr: cfg.axon_addr,
        // Long enough to wait out one training step of ours, which holds the model.
        deadline: cfg.timeout.max(Duration::from_secs(5)),
        trusted: cfg.trusted_callers.iter().map(|k| k.0).collect(),
        competitive_masking: cfg.competitive_masking,
        // A relay waits on the network: never on the axon's async threads.
        inline_below: if matches!(cfg.role, Role::Copycat(_)) {
            Duration::ZERO
        } else {
            AxonConfig::default().inline_below
        },
        ..AxonConfig::default()
    };
    let axon = wire::axon::serve(axon_config, cfg.hotkey.clone(), handler, Arc::new(stakes.clone())).await?;
    let bound = axon.local_addr();
    let addr = cfg.announce_addr.unwrap_or(bound);
    let endpoint = Endpoint {
        ip: addr.ip().into(),
        port: addr.port(),
        protocol: Protocol::Grpc,
        modality: EndpointModality::Text,
    };
    participant.serve(endpoint).await?;
    // The model it joins with, on chain before anyone scores it.
    let publisher = VersionPublisher::new(cfg.version_interval);
    let head = participant.chain().head().await?.height;
    publish_version(&participant, &learner, &cfg.role, &publisher, &view, head).await?;
    if addr == bound {
        tracing::info!("axon serving on {addr}");
    } else {
        tracing::info!("axon serving on {bound}, announced as {addr}");
    }

    let _metrics = match cfg.metrics_addr {
        Some(addr) => {
            let (bound, task) =
                crate::metrics_http::serve_metrics(addr, vec![axon.metrics(), dendrite.metrics()])
                    .await
                    .map_err(|source| RunError::Metrics { addr, source })?;
            tracing::info!("metrics on http://{bound}/metrics");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let mut setter = cfg.role.weight_setter(cfg.weights_interval);
    let mut status = StatusWriter::create(&cfg.out)?;
    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut last = StepOutcome { loss: f32::NAN, answering: 0 };

    let ending = loop {
        if cfg.max_steps.is_some_and(|m| learner.steps() >= m) {
            break None;
        }
        let head = participant.chain().head().await?.height;
        if head > view.block() {
            view = participant.sync().await?;
            refresh_stakes(&view, uid, &stakes, &total_stake);
            if let Role::Copycat(of) = &cfg.role {
                set_original(&view, of, &original);
            }
        }
        if let Role::OfflineAt(block) = cfg.role {
            if head >= block {
                break Some(head);
            }
        }
        if cfg.role == Role::Lazy {
            // Nothing to train: wait for the next block (or the end) before scoring again.
            tokio::select! {
                _ = &mut shutdown => break None,
                next = participant.chain().next_block(head) => { next?; }
            }
        } else {
            last = tokio::select! {
                _ = &mut shutdown => break None,
                step = learner.train_step(&dendrite, &view) => step?,
            };
        }

        if setter.due(head) {
            let scores = learner.scoring_round(&dendrite, &view).await?;
            match setter.step(&participant, &scores).await {
                Ok(Some(WeightsOutcome::Applied { height })) => {
                    tracing::info!("weights set in block {height}: {} peers", scores.len())
                }
                Ok(_) => {}
                // No score above zero yet (nobody answered) is normal at the start.
                Err(StepError::Row(e)) => tracing::warn!("weights not set: {e}"),
                Err(StepError::Chain(e)) => tracing::warn!("weights not set: {e}"),
            }
        }
        publish_version(&participant, &learner, &cfg.role, &publisher, &view, head).await?;
        if learner.steps() > 0 && learner.steps().is_multiple_of(cfg.checkpoint_every.max(1)) {
            read(learner.nucleus()).save_checkpoint(&checkpoint)?;
        }
        if last_status.elapsed() >= cfg.status_every {
            last_status = Instant::now();
            let heldout = learner.held_out_loss(&dendrite, &view).await?;
            let stake = view.stake(uid);
            let incentive = view.info().I.get(usize::from(uid)).copied().unwrap_or(0.0);
            tracing::info!(
                "step {:>6}  block {head:>5}  loss {:.3}  held-out {heldout:.3}  peers answering {}  stake {:.3}  incentive {incentive:.4}",
                learner.steps(),
                last.loss,
                last.answering,
                stake as f64 / ledger::UNITS_PER_TOKEN as f64,
            );
            status.append(&StatusRow {
                time_s: started.elapsed().as_secs_f64(),
                step: learner.steps(),
                block: head,
                loss: f64::from(last.loss),
                heldout_loss: f64::from(heldout),
                peers_answering: last.answering as u32,
                stake,
                incentive,
            })?;
        }
    };
    if let Some(block) = ending {
        // Leave as a crashed peer would: no report, no goodbye; the axon just stops answering.
        tracing::info!("going offline at block {block}");
        axon.shutdown().await?;
        return Ok(Ending::WentOffline { block });
    }

    tracing::info!("shutting down: final evaluation on {HELD_OUT_BATCHES} held-out batches");
    let report = learner.final_report(&dendrite, &view).await?;
    read(learner.nucleus()).save_checkpoint(&checkpoint)?;
    let path = report.write(&cfg.out)?;
    // The other peers are usually shutting down at the same moment and querying us for their
    // own final evaluation: keep answering a little longer, or we would look worthless to them.
    tracing::info!("serving {} s more for the other peers' final evaluations", FINAL_LINGER.as_secs());
    tokio::time::sleep(FINAL_LINGER).await;
    axon.shutdown().await?;
    tracing::info!(
        "final held-out loss {:.4} (student alone {:.4}); wrote {}",
        report.heldout_loss,
        report.student_loss.unwrap_or(f64::NAN),
        path.display()
    );
    Ok(Ending::Finished(report))
}

/// Publishes the model version the axon answers with if `publisher` says it is due (see
/// [`crate::version`]). Noise names no model in its answers: nothing of it to publish. A
/// refusal is reported and the run goes on.
async fn publish_version(
    participant: &Participant<impl Chain>,
    learner: &Learner,
    role: &Role,
    publisher: &VersionPublisher,
    view: &MetagraphView,
    head: u64,
) -> Result<(), RunError> {
    if role.serving() == Serving::Noise {
        return Ok(());
    }
    let published = view.model(learner.uid());
    if publisher.resting(head, published) {
        return Ok(());
    }
    let (id, step) = read(learner.nucleus()).model_version()?;
    if let Some(call) = publisher.due(head, id, step, published) {
        match participant.transact(call).await {
            Ok(h) => tracing::info!(
                "model version {} (step {step}) published in block {h}",
                ledger::Hash(id).to_hex().get(..12).unwrap_or_default()
            ),
            Err(e) => tracing::warn!("model version not published: {e}"),
        }
    }
    Ok(())
}

/// Stops the metrics server when the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the copycat's original serves, per `view`.
fn set_original(view: &MetagraphView, of: &PublicKey, original: &std::sync::RwLock<Option<Target>>) {
    let target = view
        .serving()
        .into_iter()
        .find(|(_, hk, _)| hk == of)
        .map(|(_, hk, e)| Target { hotkey: hk.0, addr: SocketAddr::new(e.ip.into(), e.port) });
    *original.write().unwrap_or_else(|e| e.into_inner()) = target;
}

/// The copycat's axon handler: each Forward asks the original through the real dendrite and
/// answers what it answered. Runs on the axon's blocking threads (`inline_below` zero), where
/// waiting on the runtime is allowed.
fn relay(
    dendrite: Dendrite,
    original: Arc<std::sync::RwLock<Option<Target>>>,
    timeout: Duration,
) -> RelayHandler {
    let runtime = tokio::runtime::Handle::current();
    RelayHandler::new(Box::new(move |_caller, inputs| {
        let target = *original.read().unwrap_or_else(|e| e.into_inner());
        let target = target.ok_or_else(|| HandlerError::Internal("the peer copied is not serving".into()))?;
        let inputs = wire::OwnedTensor {
            dtype: inputs.dtype,
            modality: inputs.modality,
            shape: inputs.shape.to_vec(),
            data: wire::Bytes::copy_from_slice(inputs.data),
        };
        let answer = runtime.block_on(dendrite.forward(&[target], &inputs, timeout));
        match answer.into_iter().next() {
            Some(r) if r.is_success() => r.tensor.ok_or_else(|| HandlerError::Internal("no output".into())),
            Some(r) => {
                Err(HandlerError::Internal(format!("the peer copied answered {:?}: {}", r.code, r.message)))
            }
            None => Err(HandlerError::Internal("no answer".into())),
        }
    }))
}

/// Feeds the axon this block's stakes and the weights the others give this neuron: its queue
/// orders callers by w_ij * s_i (market paper §3), and competitive masking compares each
/// caller's s_i w_ij with the mean of this column over every neuron.
fn refresh_stakes(view: &MetagraphView, me: u16, stakes: &StakeTable, total: &AtomicU64) {
    let by_hotkey = view.stake_by_hotkey();
    total.store(by_hotkey.values().sum(), Ordering::Relaxed);
    stakes.replace_all_with_weights(by_hotkey, view.weights_by_hotkey(Some(me)));
}

/// What `agora peer pretrain` needs: a model, its data and where to keep it.
#[derive(Clone, Debug)]
pub struct PretrainConfig {
    /// The model to pretrain.
    pub nucleus: NucleusConfig,
    /// The dataset to pretrain on (its training part).
    pub corpus: Corpus,
    /// The checkpoint directory (`OUT/checkpoint` of `agora peer run --out OUT`).
    pub checkpoint: PathBuf,
    /// Total steps the model should have when done; a checkpoint already there counts.
    pub steps: u64,
    /// Time between two progress lines (each costs a held-out evaluation).
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
        tracing::info!("resuming {} at step {}", cfg.checkpoint.display(), n.steps());
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
    tracing::info!("pretraining alone for {todo} steps before joining the network");
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
            tracing::info!(
                "pretrain {done:>6}/{todo}  loss {:.3}  ({:.0} s)",
                report.loss,
                started.elapsed().as_secs_f64()
            );
        }
    }
    nucleus.save_checkpoint(checkpoint)?;
    Ok(Some(nucleus))
}
