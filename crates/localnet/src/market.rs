//! A whole market in one process, in lockstep, from a seed: the scenario's peers run the real
//! peer loop ([`peer::Learner`], the axon's [`ModelHandler`], the [`WeightSetter`]) over the
//! real ledger ([`LocalChain`], blocks produced on demand) and reach each other through a
//! [`Switchboard`] instead of sockets. No child process, no clock: the same seed replays the
//! same run, block for block.
//!
//! Each block, every peer that is online takes one training step (the lazy peer none), a
//! peer whose weights are due runs a scoring round and queues its `set_weights`, then one
//! block is produced. The judge measures every `judge_every` epochs and at the end. The run
//! leaves the same files as a process localnet (`metagraph.csv`, `judge.csv`, the peers'
//! `final.json` and `status.csv`), and [`crate::write_report`] reads them the same way.
//!
//! What it leaves out, on purpose: the wire (gRPC, signatures, deadlines: the wire crate's
//! tests cover them), concurrency between peers, and time (a step per block, where a process
//! peer takes as many as its CPU share allows).

use crate::error::LocalnetError;
use crate::judge::{Answers, Judge, JudgeConfig, JudgeLog, Judgement, Subject};
use crate::monitor::{rows_of, table, Sampler};
use crate::report::{peer_dir, write_report, RunInfo, Summary};
use crate::scenario::{peer_role, Role, Scenario};
use crate::setup::{fund_register_stake, PeerKeys};
use ledger::{Call, Endpoint, Modality, Protocol};
use nucleus::{Corpus, Nucleus};
use peer::files::{StatusRow, StatusWriter};
use peer::learner::{as_f32, pretrain_steps, read, text_tensor, PRETRAIN_DATA_SEED};
use peer::nucleus_preset;
use peer::serve::Serving;
use peer::serve::{ModelHandler, RelayHandler};
use peer::{
    Chain, Learner, LocalChain, MetagraphView, Neighbours, Participant, Switchboard, VersionPublisher,
    WeightSetter,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{Handler, HandlerError, Target};

/// How the peers turn their scores into weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsPolicy {
    /// As a peer does: its smoothed scores of the neighbours (the cabal its override).
    Scored,
    /// Every peer outside the cabal sets a random row each time: the negative control, a market
    /// whose weights carry no information about value.
    Random,
}

/// An in-process market run.
#[derive(Clone, Debug)]
pub struct MarketOptions {
    /// The peers and the chain parameters.
    pub scenario: Scenario,
    /// Where the run's files go (created).
    pub out: PathBuf,
    /// Keys, the noise peers' noise and the random weights derive from it.
    pub seed: u64,
    /// How the peers turn their scores into weights (scored, or random as a control).
    pub weights: WeightsPolicy,
    /// How many batches the judge reads per peer.
    pub judge: JudgeConfig,
    /// Epochs between two judgements while it runs (0: only at the end).
    pub judge_every: u64,
    /// Training steps each peer takes per block (a process peer takes as many as its share
    /// of the CPU allows, usually several).
    pub steps_per_block: u32,
    /// A directory keeping pretrained models between runs, by model size, dataset, seed and
    /// steps: a second run of the same peers (a negative control, another mechanism) loads
    /// them instead of pretraining again. Pretraining is deterministic, so a loaded model is
    /// the one that would have been trained.
    pub pretrain_cache: Option<PathBuf>,
    /// Print a line per epoch on stderr.
    pub verbose: bool,
    /// Competitive masking in every peer's answers, as `agora peer run --competitive-masking`
    /// does in its axon (the judge, trusted, is answered unmasked). `None`: off.
    pub competitive_masking: Option<wire::MaskingConfig>,
}

impl MarketOptions {
    /// A run of `scenario` into `out` with seed 0, scored weights, the default judge and one step per block.
    pub fn new(scenario: Scenario, out: PathBuf) -> MarketOptions {
        MarketOptions {
            scenario,
            out,
            seed: 0,
            weights: WeightsPolicy::Scored,
            judge: JudgeConfig::default(),
            judge_every: 0,
            steps_per_block: 1,
            pretrain_cache: None,
            verbose: false,
            competitive_masking: None,
        }
    }
}

/// What a market run measured.
#[derive(Clone, Debug)]
pub struct MarketOutcome {
    /// The figures of the report's head.
    pub summary: Summary,
    /// The judge's last measurement.
    pub judgement: Judgement,
    /// The chain's state root at the end: equal roots, equal runs.
    pub state_root: ledger::Hash,
}

/// One participant of the market.
struct MarketPeer {
    name: String,
    role: Role,
    uid: u16,
    hotkey: [u8; 32],
    learner: Learner,
    participant: Participant<Arc<LocalChain>>,
    setter: WeightSetter,
    leaves_at: Option<u64>,
    online: bool,
    status: StatusWriter,
}

/// Runs the market to the end on its own single-threaded runtime.
pub fn run_market(opts: &MarketOptions) -> Result<MarketOutcome, LocalnetError> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LocalnetError::Runtime)?;
    rt.block_on(market(opts))
}

/// The keys of a market's peers: derived from the seed and the names (throwaway, like the dev
/// accounts).
fn market_keys(scenario: &Scenario, seed: u64) -> Vec<PeerKeys> {
    scenario
        .peers
        .iter()
        .map(|p| PeerKeys {
            name: p.name.clone(),
            coldkey: ledger::dev_key(&format!("market/{seed}/{}/coldkey", p.name)),
            hotkey: ledger::dev_key(&format!("market/{seed}/{}/hotkey", p.name)),
        })
        .collect()
}

/// A peer's dataset, as its process loads it.
pub fn load_corpus(spec: &str) -> Result<Corpus, LocalnetError> {
    Corpus::resolve(spec).map_err(|e| LocalnetError::Dataset { topic: spec.into(), reason: e.to_string() })
}

async fn market(opts: &MarketOptions) -> Result<MarketOutcome, LocalnetError> {
    let scenario = opts.scenario.clone().validated()?;
    if let Some(p) = scenario.peers.iter().find(|p| p.role == Role::Python) {
        return Err(LocalnetError::Scenario(format!(
            "{:?} is a Python peer: it runs as its own process, so only a process localnet (`agora localnet`) can start it",
            p.name
        )));
    }
    let out = &opts.out;
    let g = crate::run::prepare_out(out, &scenario)?;
    let say = |m: &str| {
        if opts.verbose {
            eprintln!("{m}");
        }
    };
    let started = Instant::now();

    let chain = Arc::new(LocalChain::new(g.clone())?);
    let keys = market_keys(&scenario, opts.seed);
    let registered = fund_register_stake(&chain, &g, &scenario, &keys, |m| say(m)).await?;
    let cabal_uids: Vec<u16> = registered
        .iter()
        .zip(&scenario.peers)
        .filter(|(_, p)| p.role == Role::Cabal)
        .map(|(r, _)| r.uid)
        .collect();

    let board = match opts.competitive_masking {
        Some(m) => Switchboard::with_masking(m, [market_judge()]),
        None => Switchboard::new(),
    };
    let total_stake = Arc::new(AtomicU64::new(0));
    let mut peers = Vec::with_capacity(scenario.peers.len());
    let publisher = VersionPublisher::default();
    let mut subjects = Vec::with_capacity(scenario.peers.len());
    for ((spec, k), r) in scenario.peers.iter().zip(&keys).zip(&registered) {
        // When the offline peer leaves is set below, once the run's start is known; its role
        // here only decides what it serves and how it weights.
        let role = peer_role(spec.role, &cabal_uids, u64::MAX);
        let seed = spec.seed.unwrap_or(0);
        let corpus = load_corpus(&spec.dataset)?;
        // A duplicate is pretrained exactly like its original (same seed, data and steps), so it
        // joins with an identical model, as the process localnet's copied checkpoint does.
        let steps = if spec.role == Role::Lazy { 0 } else { spec.pretrain_steps };
        let cached = opts.pretrain_cache.as_ref().filter(|_| steps > 0).map(|dir| {
            let key = format!("{}-{}-{seed}-{steps}", spec.model_size.name(), spec.dataset);
            dir.join(key.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"))
        });
        let nucleus = match &cached {
            Some(dir) if dir.join("state.json").is_file() => Nucleus::load_checkpoint(dir)?,
            _ => {
                let mut nucleus = Nucleus::new(nucleus_preset(spec.model_size, seed))?;
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ PRETRAIN_DATA_SEED);
                if let Some(loss) = pretrain_steps(&mut nucleus, &corpus, steps, &mut rng)? {
                    say(&format!("{} pretrained {steps} steps: loss {loss:.3}", spec.name));
                }
                if let Some(dir) = &cached {
                    nucleus.save_checkpoint(dir)?;
                }
                nucleus
            }
        };
        subjects.push(Subject { uid: r.uid, corpus: corpus.clone() });
        let learner =
            Learner::new(nucleus, r.uid, corpus, ChaCha8Rng::seed_from_u64(seed), Duration::from_secs(10))?
                .with_copy_detection(scenario.copy_detection);
        let hotkey = k.hotkey_public().0;
        let original = spec.duplicate_of.as_ref().and_then(|of| keys.iter().find(|o| &o.name == of));
        let handler: Arc<dyn Handler> = match original.filter(|_| spec.role == Role::Copycat) {
            // The copycat answers what its original answers to the same inputs, asked as itself
            // through the switchboard when the call comes (the process localnet: the dendrite).
            Some(original) => {
                let (board, original) = (board.clone(), original.hotkey_public().0);
                Arc::new(RelayHandler::new(Box::new(move |_caller, inputs| {
                    board
                        .forward_now(hotkey, &original, inputs)
                        .ok_or_else(|| HandlerError::Internal("the peer copied did not answer".into()))
                })))
            }
            None => Arc::new(ModelHandler::new(
                learner.nucleus().clone(),
                role.serving(),
                total_stake.clone(),
                seed ^ opts.seed ^ 0x6e6f6973,
            )),
        };
        board.connect(hotkey, handler);
        let participant = Participant::new(chain.clone(), k.hotkey.clone(), k.coldkey_public()).await?;
        // An endpoint nobody dials: in process, the switchboard routes by hotkey.
        let endpoint = Endpoint {
            ip: std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST).into(),
            port: 20_000 + r.uid,
            protocol: Protocol::Grpc,
            modality: Modality::Text,
        };
        participant.serve(endpoint).await?;
        peers.push(MarketPeer {
            name: spec.name.clone(),
            role: spec.role,
            uid: r.uid,
            hotkey,
            setter: role.weight_setter(scenario.weights_interval),
            learner,
            participant,
            leaves_at: None,
            online: true,
            status: StatusWriter::create(&peer_dir(out, &spec.name))?,
        });
    }
    peers.sort_by_key(|p| p.uid);
    let names: Vec<(String, Role)> = peers.iter().map(|p| (p.name.clone(), p.role)).collect();
    let judge = Judge::plan(&subjects, opts.judge)?;
    let mut judge_log = JudgeLog::create(out)?;
    say(&format!(
        "{} peers registered, staked and serving at block {} ({:.0} s)",
        peers.len(),
        chain.head().await?.height,
        started.elapsed().as_secs_f64()
    ));

    // The run proper starts once every peer serves; the offline peer leaves half way.
    let start = chain.head().await?.height;
    let end = start + scenario.blocks();
    let leaves_at = start + scenario.blocks() / 2;
    for p in peers.iter_mut().filter(|p| p.role == Role::Offline) {
        p.leaves_at = Some(leaves_at);
    }
    run_info(&scenario, &g, "in-process", start, end, leaves_at).write(out)?;
    let mut sampler = Sampler::create(&out.join("metagraph.csv"))?;
    let mut weights_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7765_6967_6874);
    let mut head = chain.head().await?.height;
    while head < end {
        let view = MetagraphView::sync(&chain).await?;
        total_stake.store(view.stake_by_hotkey().values().sum(), Ordering::Relaxed);
        board.stakes().replace_all_with_weights(view.stake_by_hotkey(), view.weights_by_hotkey(None));
        for p in peers.iter_mut() {
            if p.leaves_at.is_some_and(|b| head >= b) {
                if p.online {
                    board.disconnect(&p.hotkey);
                    p.online = false;
                    say(&format!("{} went offline at block {head}", p.name));
                }
                continue;
            }
            let net = board.caller(p.hotkey);
            if p.role != Role::Lazy {
                for _ in 0..opts.steps_per_block.max(1) {
                    p.learner.train_step(&net, &view).await?;
                }
            }
            if p.setter.due(head) {
                let scores = p.learner.scoring_round(&net, &view).await?;
                submit_weights(p, &view, &g, &scores, opts.weights, &mut weights_rng).await?;
            }
            // One transaction per peer and block (the nonce is read from the chain): the
            // version waits for a block without weights, so the first goes out in the run's
            // first such block (in `agora peer run`, as the peer starts serving). Publishing
            // moves no stake: the market plays out as it would without it.
            if p.setter.last_submitted() != Some(head + 1) {
                publish_version(p, &view, &g, &publisher).await?;
            }
        }
        chain.produce_block()?;
        let m = chain.metagraph().await?;
        head = m.block;
        let rows = rows_of(&m, &names, started.elapsed().as_secs_f64());
        sampler.write(&rows)?;
        if head.is_multiple_of(scenario.tempo) {
            let epoch = (head - start) / scenario.tempo;
            for p in peers.iter_mut().filter(|p| p.online) {
                let loss = p.learner.held_out_loss(&board.caller(p.hotkey), &view).await?;
                let r = &rows[usize::from(p.uid)];
                p.status.append(&StatusRow {
                    time_s: started.elapsed().as_secs_f64(),
                    step: p.learner.steps(),
                    block: head,
                    loss: f64::from(loss),
                    heldout_loss: f64::from(loss),
                    peers_answering: 0,
                    stake: r.stake,
                    incentive: r.incentive,
                })?;
            }
            if opts.judge_every > 0 && epoch.is_multiple_of(opts.judge_every) && head < end {
                let j = judge_now(&judge, &peers, &board, head).await?;
                judge_log.write(&j)?;
            }
            if tracing::enabled!(tracing::Level::DEBUG) {
                for (u, w) in m.weights.iter().enumerate() {
                    let row: Vec<String> = w.iter().map(|(j, v)| format!("{j}:{v:.3}")).collect();
                    tracing::debug!("epoch {epoch}: W[{u}] = {row:?}");
                }
            }
            if opts.verbose {
                eprintln!(
                    "epoch {epoch} (block {head}, {:.0} s)\n{}",
                    started.elapsed().as_secs_f64(),
                    table(&rows)
                );
            }
        }
    }

    let judgement = judge_now(&judge, &peers, &board, head).await?;
    judge_log.write(&judgement)?;
    judge_log.write_matrix(&judgement, &names)?;
    let view = MetagraphView::sync(&chain).await?;
    for p in peers.iter().filter(|p| p.online) {
        let report = p.learner.final_report(&board.caller(p.hotkey), &view).await?;
        report.write(&peer_dir(out, &p.name))?;
    }
    // A copycat's handler holds the switchboard: unplug every handler so none outlives the run.
    for p in &peers {
        board.disconnect(&p.hotkey);
    }
    let summary = write_report(out, &scenario)?;
    let state_root = chain.with_ledger(|l| l.head().state_root);
    say(&format!(
        "market done in {:.0} s; report in {}",
        started.elapsed().as_secs_f64(),
        out.join("report.md").display()
    ));
    Ok(MarketOutcome { summary, judgement, state_root })
}

/// Queues the peer's `set_weights` for the next block: its scored row, or a random one for the
/// negative control; nothing if the chain's rate limit would refuse it.
async fn submit_weights(
    p: &mut MarketPeer,
    view: &MetagraphView,
    g: &ledger::GenesisConfig,
    scores: &[(u16, f32)],
    policy: WeightsPolicy,
    rng: &mut ChaCha8Rng,
) -> Result<(), LocalnetError> {
    let head = view.block();
    if head + 1 < p.participant.next_weights_block(view, p.uid) {
        return Ok(());
    }
    let row = match policy {
        WeightsPolicy::Random if p.role != Role::Cabal => {
            let raw: Vec<(u16, f32)> =
                (0..view.n()).filter(|&u| u != p.uid).map(|u| (u, rng.gen_range(0.01f32..1.0))).collect();
            p.setter.next_row(view, p.uid, &g.weights, &raw)
        }
        _ => p.setter.next_row(view, p.uid, &g.weights, scores),
    };
    // No positive score yet (nobody useful answered) is normal at the start.
    let Ok(row) = row else { return Ok(()) };
    let (uids, values): (Vec<u16>, Vec<f64>) = row.into_iter().unzip();
    let chain = p.participant.chain();
    let tx = peer::sign(chain, g, p.participant.signing_key(), Call::set_weights(uids, &values)).await?;
    chain.submit(&tx).await?;
    p.setter.submitted(head + 1);
    Ok(())
}

/// The in-process judge's hotkey: registered nowhere, trusted by every peer.
fn market_judge() -> [u8; 32] {
    ledger::public_key(&ledger::dev_key("market/judge")).0
}

/// Queues the peer's `publish_version` for the next block when its model changed and the
/// publisher's interval allows (as `agora peer run` does; noise names no model).
async fn publish_version(
    p: &MarketPeer,
    view: &MetagraphView,
    g: &ledger::GenesisConfig,
    publisher: &VersionPublisher,
) -> Result<(), LocalnetError> {
    let role = peer_role(p.role, &[], u64::MAX);
    if role.serving() == Serving::Noise {
        return Ok(());
    }
    let published = view.model(p.uid);
    if publisher.resting(view.block(), published) {
        return Ok(());
    }
    let (id, step) = read(p.learner.nucleus()).model_version()?;
    if let Some(call) = publisher.due(view.block(), id, step, published) {
        let chain = p.participant.chain();
        let tx = peer::sign(chain, g, p.participant.signing_key(), call).await?;
        chain.submit(&tx).await?;
    }
    Ok(())
}

/// Every online peer answers every test batch through the switchboard (as the judge, a caller
/// with no stake), and the online peers' live models are the consumers.
async fn judge_now(
    judge: &Judge,
    peers: &[MarketPeer],
    board: &Switchboard,
    block: u64,
) -> Result<Judgement, LocalnetError> {
    let judge_net = board.caller(market_judge());
    let online: Vec<&MarketPeer> = peers.iter().filter(|p| p.online).collect();
    let targets: Vec<Target> = online
        .iter()
        .map(|p| Target {
            hotkey: p.hotkey,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 20_000 + p.uid)),
        })
        .collect();
    let mut answers: Vec<Answers> = Vec::new();
    for (_, batch) in judge.requests() {
        let got = judge_net.forward(&targets, &text_tensor(batch), Duration::from_secs(10)).await;
        answers.push(online.iter().zip(got).map(|(p, t)| (p.uid, t.as_ref().and_then(as_f32))).collect());
    }
    let guards: Vec<_> = online.iter().map(|p| (p.uid, read(p.learner.nucleus()))).collect();
    let consumers: Vec<(u16, &Nucleus)> = guards.iter().map(|(u, g)| (*u, &**g)).collect();
    judge.measure(block, &answers, &consumers)
}

/// What the report needs to know about a run beside its samples.
pub(crate) fn run_info(
    scenario: &Scenario,
    g: &ledger::GenesisConfig,
    driver: &str,
    start: u64,
    end: u64,
    leaves_at: u64,
) -> RunInfo {
    RunInfo {
        driver: driver.into(),
        mechanism: scenario.mechanism.clone(),
        tempo: scenario.tempo,
        start_block: start,
        end_block: end,
        leaves_at: scenario.peers.iter().any(|p| p.role == Role::Offline).then_some(leaves_at),
        activity_cutoff: Some(g.activity_cutoff),
        server_share: g.mechanism.server_share(),
        copied: scenario
            .peers
            .iter()
            .filter(|p| p.role == Role::Copycat)
            .filter_map(|p| p.duplicate_of.clone())
            .collect(),
    }
}
