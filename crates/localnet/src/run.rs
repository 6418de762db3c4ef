//! A whole run: node, wallets, registration, peers, sampling, shutdown, report.

use crate::error::LocalnetError;
use crate::genesis::genesis;
use crate::judge::{Judge, JudgeConfig, JudgeLog, Judgement, Subject};
use crate::judging::LiveJudge;
use crate::monitor::{rows_of, LiveView, Sampler};
use crate::process::{NodeProcess, PeerLaunch, PeerProcess};
use crate::report::{peer_dir, write_compare, write_report, Summary};
use crate::scenario::{Role, Scenario};
use crate::setup::{create_wallets, fund_register_stake, Registered};
use peer::{Chain, RpcChain};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::chaos::{FaultConfig, FaultProxy};

/// Longest run of missed blocks the sampler fills in from the node's history.
const MAX_GAP: u64 = 20;

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `agora` binary that runs the node and the peers (the CLI passes its own path).
    pub agora: PathBuf,
    /// Output directory (created; a previous run's files are overwritten).
    pub out: PathBuf,
    /// The peers and the chain parameters.
    pub scenario: Scenario,
    /// Start the peer processes. Off: the chain side only (node, wallets, registration,
    /// stakes, sampling) — what can run before `agora peer run` exists.
    pub spawn_peers: bool,
    /// How long peers get after SIGTERM to write final.json.
    pub peer_grace: Duration,
    /// Never draw the live view (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
    /// What the independent judge reads.
    pub judge: JudgeConfig,
    /// Epochs between two judgements while the run goes (0: only at the end).
    pub judge_every: u64,
    /// Faults injected between the peers: each axon is published behind a proxy with these
    /// faults (`wire::chaos`); the judge and the node are not behind them.
    pub chaos: Option<FaultConfig>,
    /// Validator processes running the chain: 1 is a single node producing every block; more
    /// are that many `agora node --validator-key` processes finalizing one chain by consensus,
    /// peer `k` talking to validator `k mod N`.
    pub validators: usize,
    /// Competitive masking in every Rust peer's axon (`agora peer run --competitive-masking`;
    /// the Python peer's axon does not mask). `None`: off.
    pub competitive_masking: Option<wire::MaskingConfig>,
}

impl RunOptions {
    /// A run of `scenario` by `agora` into `out`, with peers, one validator, the default judge every 10
    /// epochs, no faults.
    pub fn new(agora: PathBuf, out: PathBuf, scenario: Scenario) -> RunOptions {
        RunOptions {
            agora,
            out,
            scenario,
            spawn_peers: true,
            peer_grace: Duration::from_secs(60),
            quiet: false,
            judge: JudgeConfig::default(),
            judge_every: 10,
            chaos: None,
            validators: 1,
            competitive_masking: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The figures of the report's head.
    pub summary: Summary,
    /// The peers registered, with their uids and stakes.
    pub registered: Vec<Registered>,
    /// Ctrl-C ended it early (the report covers what was sampled).
    pub interrupted: bool,
    /// The node exited on SIGTERM by itself.
    pub node_stopped_cleanly: bool,
    /// Peers that exited by themselves after SIGTERM, out of those still running then.
    pub peers_stopped_cleanly: (usize, usize),
    /// Peers that exited before the end of the run, with their exit codes.
    pub peers_exited_early: Vec<(String, Option<i32>)>,
    /// With several validators: the block every one of them had finalized at the end, the
    /// same on all (a disagreement fails the run). Also in `DIR/validators.json`.
    pub agreement: Option<crate::validators::Agreement>,
}

/// Runs one scenario to the end (or Ctrl-C) on its own runtime.
pub fn run(opts: &RunOptions) -> Result<RunOutcome, LocalnetError> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LocalnetError::Runtime)?;
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        watch_ctrl_c(stop.clone());
        run_async(opts, &stop).await
    })
}

/// Runs the scenario once per mechanism into `OUT/<mechanism>/`, then writes
/// `OUT/compare.md` with the summaries side by side. Stops at Ctrl-C.
pub fn compare(opts: &RunOptions, mechanisms: &[&str]) -> Result<Vec<RunOutcome>, LocalnetError> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LocalnetError::Runtime)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut outcomes = Vec::new();
    rt.block_on(async {
        watch_ctrl_c(stop.clone());
        for m in mechanisms {
            let mut o = opts.clone();
            o.scenario.mechanism = m.to_string();
            if *m != "yuma" {
                // A yuma parameter: the other mechanisms run without it.
                o.scenario.dividend_rule = None;
            }
            o.scenario = o.scenario.validated()?;
            o.out = opts.out.join(m);
            let outcome = run_async(&o, &stop).await?;
            let interrupted = outcome.interrupted;
            outcomes.push(outcome);
            if interrupted {
                break;
            }
        }
        Ok::<(), LocalnetError>(())
    })?;
    let summaries: Vec<Summary> = outcomes.iter().map(|o| o.summary.clone()).collect();
    write_compare(&opts.out, &summaries)?;
    Ok(outcomes)
}

/// The pretraining phase, before the chain starts: every peer with `pretrain_steps` trains
/// alone (`agora peer pretrain`, as many at once as there are cores) into its checkpoint; a
/// duplicate gets a copy of its original's, as an exact copy would.
async fn pretrain_all(
    opts: &RunOptions,
    scenario: &Scenario,
    stop: &AtomicBool,
    view: &LiveView,
) -> Result<(), LocalnetError> {
    let mut queue: std::collections::VecDeque<&crate::PeerSpec> = scenario
        .peers
        .iter()
        .filter(|p| p.pretrain_steps > 0 && !matches!(p.role, Role::Duplicate | Role::Lazy))
        .collect();
    if queue.is_empty() {
        return Ok(());
    }
    let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
    view.note(&format!("pretraining {} peers alone, {slots} at a time", queue.len()));
    let started = Instant::now();
    let mut running: Vec<(&crate::PeerSpec, std::process::Child)> = Vec::new();
    let kill_all = |running: &mut Vec<(&crate::PeerSpec, std::process::Child)>| {
        for (_, c) in running.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    while !queue.is_empty() || !running.is_empty() {
        if stop.load(Ordering::SeqCst) {
            kill_all(&mut running);
            return Err(LocalnetError::Interrupted);
        }
        while running.len() < slots {
            let Some(spec) = queue.pop_front() else { break };
            let child = crate::process::spawn_pretrain(&opts.agora, spec, &peer_dir(&opts.out, &spec.name))?;
            running.push((spec, child));
        }
        let mut k = 0;
        while k < running.len() {
            let status = running[k].1.try_wait().map_err(|e| LocalnetError::Peer {
                name: running[k].0.name.clone(),
                reason: format!("pretraining: {e}"),
            })?;
            match status {
                None => k += 1,
                Some(status) => {
                    let (spec, _) = running.remove(k);
                    if !status.success() {
                        kill_all(&mut running);
                        let log = peer_dir(&opts.out, &spec.name).join("pretrain.log");
                        return Err(LocalnetError::Peer {
                            name: spec.name.clone(),
                            reason: format!("pretraining failed ({status}); see {}", log.display()),
                        });
                    }
                    view.note(&format!(
                        "{} pretrained: {} steps ({:.0} s in)",
                        spec.name,
                        spec.pretrain_steps,
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for dup in scenario.peers.iter().filter(|p| p.role == Role::Duplicate && p.pretrain_steps > 0) {
        let Some(of) = &dup.duplicate_of else { continue };
        let from = peer_dir(&opts.out, of).join("checkpoint");
        let to = peer_dir(&opts.out, &dup.name).join("checkpoint");
        copy_dir(&from, &to)?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), LocalnetError> {
    std::fs::create_dir_all(to).map_err(|e| LocalnetError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| LocalnetError::io(from, e))? {
        let entry = entry.map_err(|e| LocalnetError::io(from, e))?;
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).map_err(|e| LocalnetError::io(&target, e))?;
    }
    Ok(())
}

fn watch_ctrl_c(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::SeqCst);
        }
    });
}

fn check(stop: &AtomicBool) -> Result<(), LocalnetError> {
    if stop.load(Ordering::SeqCst) {
        return Err(LocalnetError::Interrupted);
    }
    Ok(())
}

/// Readies a run's output directory: created, a previous run's chain and peers' files removed
/// (`agora peer run --resume` must not pick up an old checkpoint, and the chain had other
/// wallets), the scenario and its genesis written. Returns the genesis.
pub(crate) fn prepare_out(out: &Path, scenario: &Scenario) -> Result<ledger::GenesisConfig, LocalnetError> {
    std::fs::create_dir_all(out).map_err(|e| LocalnetError::io(out, e))?;
    for old in [out.join("chain"), out.join("peers")] {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| LocalnetError::io(&old, e))?;
        }
    }
    write(out, "scenario.toml", &scenario.to_toml())?;
    let g = genesis(scenario);
    write(out, "genesis.json", &g.to_json_pretty())?;
    Ok(g)
}

async fn run_async(opts: &RunOptions, stop: &AtomicBool) -> Result<RunOutcome, LocalnetError> {
    let scenario = opts.scenario.clone().validated()?;
    let out = &opts.out;
    let mut g = prepare_out(out, &scenario)?;
    let validator_specs = match opts.validators {
        0 | 1 => Vec::new(),
        n => {
            let specs = crate::validators::create(&out.join("validators"), n)?;
            g = crate::validators::with_validators(g, &specs);
            write(out, "genesis.json", &g.to_json_pretty())?;
            specs
        }
    };

    let view = LiveView::new(scenario.blocks(), opts.quiet);
    if opts.spawn_peers {
        pretrain_all(opts, &scenario, stop, &view).await?;
    }
    let genesis_file = out.join("genesis.json");
    let (mut nodes, logs) = if validator_specs.is_empty() {
        let log = out.join("node.log");
        let node =
            NodeProcess::spawn(&opts.agora, &genesis_file, &out.join("chain"), scenario.block_time_ms, &log)?;
        view.note(&format!("node up at {} (log {})", node.http(), log.display()));
        view.note(&format!("dashboard: {}/ (open it in a browser: it follows the run live)", node.http()));
        (vec![node], vec![log])
    } else {
        let nodes = crate::validators::spawn(
            &opts.agora,
            &genesis_file,
            out,
            &validator_specs,
            scenario.block_time_ms,
        )?;
        let logs: Vec<PathBuf> = (0..nodes.len()).map(|i| crate::validators::log_path(out, i)).collect();
        for (i, n) in nodes.iter().enumerate() {
            view.note(&format!("validator {i} up at {} (log {})", n.http(), logs[i].display()));
        }
        view.note(&format!(
            "dashboard: {}/ (open it in a browser: it follows the run live)",
            nodes[0].http()
        ));
        (nodes, logs)
    };
    // The orchestrator's own calls (setup, sampling) go to the first; the peers spread out.
    let chain = Arc::new(RpcChain::connect(&nodes[0].ws()).await?);

    check(stop)?;
    let keys = create_wallets(&out.join("wallets"), &scenario)?;
    let registered = fund_register_stake(&chain, &g, &scenario, &keys, |m| view.note(m)).await?;
    check(stop)?;

    let names: Vec<(String, Role)> = {
        let mut v: Vec<(u16, String, Role)> =
            registered.iter().zip(&scenario.peers).map(|(r, p)| (r.uid, p.name.clone(), p.role)).collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|(_, n, r)| (n, r)).collect()
    };
    let start = chain.head().await?.height;
    let end = start + scenario.blocks();
    crate::market::run_info(&scenario, &g, "processes", start, end, start + scenario.blocks() / 2)
        .write(out)?;
    let cabal_uids: Vec<u16> = registered
        .iter()
        .zip(&scenario.peers)
        .filter(|(_, p)| p.role == Role::Cabal)
        .map(|(r, _)| r.uid)
        .collect();

    let mut peers = Vec::new();
    let mut proxies: Vec<(String, FaultProxy)> = Vec::new();
    let mut real_axons = std::collections::BTreeMap::new();
    if opts.spawn_peers {
        for (k, (r, spec)) in registered.iter().zip(&scenario.peers).enumerate() {
            let axon = match &opts.chaos {
                Some(faults) => {
                    let listen = crate::validators::free_port()?;
                    let mut faults = *faults;
                    faults.seed ^= u64::from(r.uid);
                    let proxy = FaultProxy::start(listen, faults)
                        .await
                        .map_err(|source| LocalnetError::FaultProxy { peer: spec.name.clone(), source })?;
                    let announce = proxy.local_addr();
                    proxies.push((spec.name.clone(), proxy));
                    real_axons.insert(r.uid, listen);
                    Some((listen, announce))
                }
                None => None,
            };
            let launch = PeerLaunch {
                spec: spec.clone(),
                uid: r.uid,
                wallet_dir: out.join("wallets"),
                chain: nodes[k % nodes.len()].ws(),
                out: peer_dir(out, &spec.name),
                cabal_uids: cabal_uids.clone(),
                offline_at_block: start + scenario.blocks() / 2,
                copy_of: spec
                    .duplicate_of
                    .as_ref()
                    .filter(|_| spec.role == Role::Copycat)
                    .and_then(|of| registered.iter().find(|o| &o.name == of))
                    .map(|o| o.hotkey),
                weights_interval: scenario.weights_interval,
                copy_detection: scenario.copy_detection,
                axon,
                competitive_masking: opts.competitive_masking,
            };
            peers.push(PeerProcess::spawn(&opts.agora, &launch)?);
        }
        view.note(&format!("{} peers started", peers.len()));
    }

    // The run proper: a sample per block until the end or Ctrl-C.
    // The independent judge: the peers' topics' test splits, the consumers' checkpoints.
    let mut subjects = Vec::new();
    let mut checkpoints = std::collections::BTreeMap::new();
    for (r, spec) in registered.iter().zip(&scenario.peers) {
        subjects.push(Subject { uid: r.uid, corpus: crate::market::load_corpus(&spec.dataset)? });
        checkpoints.insert(r.uid, peer_dir(out, &spec.name).join("checkpoint"));
    }
    // Behind the fault proxies the judge would measure the faults; it asks the axons directly.
    let judge =
        LiveJudge::new(Judge::plan(&subjects, opts.judge)?, checkpoints).with_addresses(real_axons.clone());
    let mut judge_log = JudgeLog::create(out)?;
    let mut judging: Option<tokio::task::JoinHandle<JudgeResult>> = None;

    let mut sampler = Sampler::create(&out.join("metagraph.csv"))?;
    // The dashboard's loss curves by peer name (crate::monitor::write_dashboard).
    let mut losses: std::collections::HashMap<String, Vec<(u64, f64)>> = Default::default();
    let t0 = Instant::now();
    let mut head = start.saturating_sub(1);
    let mut exited_early = Vec::new();
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let next = tokio::select! {
            h = chain.next_block(head) => h,
            _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
        };
        match next {
            Ok(_) => {}
            // Interrupted while waiting: stop cleanly below, whatever the node said.
            Err(_) if stop.load(Ordering::SeqCst) => {
                interrupted = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
        // The newest metagraph, which may already be past the block waited for on a loaded machine. Blocks
        // produced while this loop was busy are fetched at their own height, so every epoch's
        // emission is seen; the node rebuilds a past metagraph by replay, so only short gaps
        // are filled.
        let m = chain.metagraph().await?;
        if m.block <= head {
            continue;
        }
        if m.block - head <= MAX_GAP {
            for h in head + 1..m.block {
                let past = chain.client().metagraph(Some(h)).await.map_err(peer::ChainError::from)?;
                sampler.write(&rows_of(&past, &names, t0.elapsed().as_secs_f64()))?;
            }
        }
        head = m.block;
        let rows = rows_of(&m, &names, t0.elapsed().as_secs_f64());
        sampler.write(&rows)?;
        let progress = (
            head.saturating_sub(start).min(scenario.blocks()),
            scenario.blocks(),
            head.saturating_sub(start) / scenario.tempo,
        );
        view.update(progress.0, progress.2, &rows);
        // The peers' loss curves, re-read once an epoch (their files grow every step).
        if head.is_multiple_of(scenario.tempo) || losses.is_empty() {
            for r in &rows {
                let status = peer_dir(out, &r.name).join(peer::files::STATUS_FILE);
                if let Some(curve) = crate::monitor::loss_curve(&status) {
                    losses.insert(r.name.clone(), curve);
                }
            }
        }
        crate::monitor::write_dashboard(
            &out.join(crate::monitor::DASHBOARD_FILE),
            &rows,
            view.judge().as_ref(),
            &losses,
            progress,
        )?;
        if judging.as_ref().is_some_and(|t| t.is_finished()) {
            if let Some(task) = judging.take() {
                record(task.await, &mut judge_log, &view, &rows)?;
            }
        }
        let epoch = head.saturating_sub(start) / scenario.tempo;
        if opts.spawn_peers
            && judging.is_none()
            && opts.judge_every > 0
            && head.is_multiple_of(scenario.tempo)
            && epoch > 0
            && epoch.is_multiple_of(opts.judge_every)
            && head < end
        {
            let (j, m) = (judge.clone(), m.clone());
            judging = Some(tokio::spawn(async move { j.measure(&m).await }));
        }
        for p in peers.iter_mut() {
            if let Some(code) = p.exited() {
                if !exited_early.iter().any(|(n, _)| n == &p.name) {
                    view.note(&format!("peer {} exited (code {code:?}) at block {head}", p.name));
                    exited_early.push((p.name.clone(), code));
                }
            }
        }
        if !peers.is_empty() && exited_early.len() == peers.len() {
            view.note("every peer has exited: ending the run early");
            break;
        }
        if let Some(i) = nodes.iter_mut().position(|n| !n.running()) {
            return Err(LocalnetError::NodeExited { log: logs[i].clone() });
        }
        if head >= end {
            break;
        }
    }
    // The judge's last word, while every peer still runs: a measurement under way finishes,
    // then one at the end.
    if opts.spawn_peers && !interrupted {
        let m = chain.metagraph().await?;
        let rows = rows_of(&m, &names, t0.elapsed().as_secs_f64());
        if let Some(task) = judging.take() {
            record(task.await, &mut judge_log, &view, &rows)?;
        }
        view.note(&format!("the judge measures every peer at block {}", m.block));
        if let Some(j) = record(Ok(judge.measure(&m).await), &mut judge_log, &view, &rows)? {
            judge_log.write_matrix(&j, &names)?;
        }
    }
    view.finish();

    // Shutdown: peers first (they need the chain to the end), then the node.
    let mut still = 0;
    for p in peers.iter_mut() {
        if p.exited().is_none() {
            still += 1;
            p.terminate();
        }
    }
    let deadline = Instant::now() + opts.peer_grace;
    let mut clean = 0;
    for p in peers.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if p.exited().is_none() && p.wait_or_kill(left) {
            clean += 1;
        }
    }
    let agreement = match nodes.len() {
        1 => None,
        _ => {
            let urls: Vec<String> = nodes.iter().map(NodeProcess::http).collect();
            let a = crate::validators::agreement(&urls).await?;
            let json = serde_json::to_string_pretty(&a).map_err(|e| LocalnetError::Report(e.to_string()))?;
            write(out, crate::validators::AGREEMENT_FILE, &json)?;
            Some(a)
        }
    };
    let mut node_clean = true;
    for n in nodes.iter_mut() {
        node_clean &= n.stop(Duration::from_secs(20));
    }
    if let Some(faults) = &opts.chaos {
        let chaos = crate::report::ChaosReport {
            loss: faults.loss,
            jitter_ms: faults.jitter.as_millis() as u64,
            delay_ms: faults.delay.as_millis() as u64,
            disconnect: faults.disconnect,
            garbage: faults.garbage,
            peers: proxies
                .iter()
                .map(|(name, p)| {
                    let s = p.stats();
                    (name.clone(), s.connections, s.chunks, s.lost, s.disconnects, s.garbled_connections)
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&chaos).map_err(|e| LocalnetError::Report(e.to_string()))?;
        write(out, crate::report::CHAOS_FILE, &json)?;
    }
    let summary = write_report(out, &scenario)?;
    Ok(RunOutcome {
        summary,
        registered,
        interrupted,
        node_stopped_cleanly: node_clean,
        peers_stopped_cleanly: (clean, still),
        peers_exited_early: exited_early,
        agreement,
    })
}

/// A judgement with the notes it left (consumers it could not load).
type JudgeResult = Result<(Judgement, Vec<String>), LocalnetError>;

/// Writes a finished judgement to `judge.csv` and tells the live view how the chain's
/// incentive ranks against it. A failed judgement is reported and the run goes on.
fn record(
    done: Result<JudgeResult, tokio::task::JoinError>,
    log: &mut JudgeLog,
    view: &LiveView,
    rows: &[crate::monitor::MetagraphRow],
) -> Result<Option<Judgement>, LocalnetError> {
    let (j, notes) = match done {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            view.note(&format!("judge: {e}"));
            return Ok(None);
        }
        Err(e) => {
            view.note(&format!("judge: the measuring task failed: {e}"));
            return Ok(None);
        }
    };
    log.write(&j)?;
    for n in &notes {
        view.note(&format!("judge: {n}"));
    }
    let incentive: Vec<f64> = rows.iter().map(|r| r.incentive).collect();
    let rho = crate::report::spearman(&incentive, &j.values(rows.len()));
    view.set_judge(j.values(rows.len()), j.block);
    view.note(&format!(
        "judge at block {}: {} consumers; Spearman(incentive, value) = {}",
        j.block,
        j.consumers.len(),
        rho.map_or("n/a".into(), |r| format!("{r:.3}"))
    ));
    Ok(Some(j))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), LocalnetError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| LocalnetError::io(&p, e))
}
