//! `localnet` orchestration end to end as far as it goes without `agora peer run`: the real
//! node as a child process, wallets, funding, registration with the scenario's stakes, a
//! metagraph sample per block, a clean shutdown and the report.

use crate::TempDir;
use localnet::monitor::read_metagraph_csv;
use localnet::{Role, RunOptions, Scenario};
use std::path::PathBuf;

#[test]
fn the_chain_side_of_a_localnet_runs_end_to_end() {
    let dir = TempDir::new("localnet");
    let scenario =
        Scenario { epochs: 3, tempo: 5, block_time_ms: 150, cabal_stake_share: 0.3, ..Scenario::default() };
    let mut opts =
        RunOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_agora")), dir.0.clone(), scenario.clone());
    opts.spawn_peers = false;
    opts.quiet = true;
    let outcome = localnet::run(&opts).expect("localnet run");
    assert!(!outcome.interrupted);
    assert!(outcome.node_stopped_cleanly, "the node exits on SIGTERM");
    let mut uids: Vec<u16> = outcome.registered.iter().map(|r| r.uid).collect();
    uids.sort_unstable();
    let n = scenario.peers.len();
    assert_eq!(uids, (0..n as u16).collect::<Vec<u16>>());

    let rows = read_metagraph_csv(&dir.0.join("metagraph.csv")).unwrap();
    let first = rows[0].block;
    let last = rows.last().unwrap().block;
    assert!(last >= first + scenario.blocks(), "sampled {first}..={last}");
    // Every block sampled, every neuron in each sample.
    for b in first..=last {
        assert_eq!(rows.iter().filter(|r| r.block == b).count(), n, "block {b}");
    }
    // The cabal holds its share of stake at the start (before any emission: exact).
    let at_start: Vec<_> = rows.iter().filter(|r| r.block == first).collect();
    let total: u64 = at_start.iter().map(|r| r.stake).sum();
    let cabal: u64 = at_start.iter().filter(|r| r.role == Role::Cabal).map(|r| r.stake).sum();
    let share = cabal as f64 / total as f64;
    assert!((share - 0.3).abs() < 0.01, "cabal share {share}");
    let expected: u64 = scenario.stakes().iter().sum();
    assert!(total >= expected, "stake {total} < the scenario's {expected}");
    assert_eq!(at_start.iter().filter(|r| r.role == Role::Noise).count(), 1);

    for f in ["report.md", "genesis.json", "scenario.toml", "node.log", "stake_share.png", "cabal_share.csv"]
    {
        dir.has(f);
    }
    // The dashboard's localnet panel as last written: every peer with its scenario role.
    let panel: client::LocalnetStatus =
        serde_json::from_slice(&std::fs::read(dir.0.join("dashboard.json")).unwrap())
            .expect("dashboard.json");
    assert_eq!((panel.done, panel.blocks), (scenario.blocks(), scenario.blocks()));
    let last_rows: Vec<_> = rows.iter().filter(|r| r.block == last).collect();
    let roles: Vec<(u16, String, String)> =
        last_rows.iter().map(|r| (r.uid, r.name.clone(), r.role.name().to_string())).collect();
    let served: Vec<(u16, String, String)> =
        panel.peers.iter().map(|p| (p.uid, p.name.clone(), p.role.clone())).collect();
    assert_eq!(served, roles);
    assert_eq!(outcome.summary.reports, 0, "no peers ran");
    assert!(std::fs::read_to_string(dir.0.join("node.log")).unwrap().contains("stopped at height"));
}

/// `agora localnet` (chain side) stopped by SIGINT, as Ctrl-C at a terminal would: the node is
/// stopped cleanly and the report covers what was sampled.
#[test]
fn ctrl_c_stops_the_run_cleanly_and_still_reports() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = TempDir::new("localnet-sigint");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["localnet", "--no-peers", "--peers", "3", "--epochs", "100", "--out", dir.path()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agora localnet");
    let csv = dir.0.join("metagraph.csv");
    let start = Instant::now();
    // Wait for a few samples.
    while std::fs::read_to_string(&csv).map_or(0, |t| t.lines().count()) < 7 {
        assert!(start.elapsed() < Duration::from_secs(60), "no samples after 60 s");
        assert!(child.try_wait().unwrap().is_none(), "localnet exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The node serves the run's roles to the dashboard (the file localnet writes each block).
    let addr = std::fs::read_to_string(dir.0.join("node.addr")).expect("the node's address");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"agora_localnet","params":[]}"#;
    let answer: serde_json::Value =
        serde_json::from_str(&node::test_utils::post(&addr, body)).expect("agora_localnet answers JSON");
    let status: client::LocalnetStatus =
        serde_json::from_value(answer["result"].clone()).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(status.peers.len(), 3, "{status:?}");
    assert!(status.done <= status.blocks && status.judge_block.is_none(), "{status:?}");
    assert!(status.peers.iter().all(|p| p.role != "unknown" && p.judge.is_none()), "{status:?}");
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
    let out = child.wait_with_output().expect("localnet exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("dashboard: http://{addr}/ ")), "{stderr}");
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    assert!(std::fs::read_to_string(dir.0.join("node.log")).unwrap().contains("stopped at height"));
    dir.has("report.md");
}

/// Two honest peers on different topics and a noise peer, tiny models, a few epochs.
fn tiny_scenario() -> Scenario {
    use localnet::{ModelSize, PeerSpec};
    let peer = |name: &str, role, dataset: &str, seed| PeerSpec {
        name: name.into(),
        role,
        model_size: ModelSize::Tiny,
        dataset: dataset.into(),
        duplicate_of: None,
        seed: Some(seed),
        // A few steps alone first, so the pretraining path runs end to end too.
        pretrain_steps: 20,
    };
    Scenario {
        epochs: 8,
        tempo: 5,
        block_time_ms: 400,
        cabal_stake_share: 0.0,
        weights_interval: 5,
        peers: vec![
            peer("honest-computers", Role::Honest, "computers", 1),
            peer("honest-science", Role::Honest, "science", 2),
            peer("noise", Role::Noise, "computers", 3),
        ],
        ..Scenario::default()
    }
    .validated()
    .expect("scenario")
}

/// The CI localnet: a node and 3 real `agora peer run` processes (two honest peers on
/// different topics and a noise peer, tiny models) for a few epochs, end to end. Checks that
/// every peer trained and reported, that the independent judge measured every peer through
/// the real dendrite, and that the report's numbers are sane: Spearman in [-1, 1], shares in
/// [0, 1], held-out losses finite and below the uniform byte loss ln 256. (Whether the market
/// ranks by value is `localnet`'s in-process market test: this run is too short to.)
#[test]
fn a_tiny_localnet_with_real_peers_trains_pays_and_reports() {
    let dir = TempDir::new("localnet-peers");
    let scenario = tiny_scenario();
    let mut opts = RunOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_agora")), dir.0.clone(), scenario);
    opts.quiet = true;
    let outcome = localnet::run(&opts).expect("localnet run");
    assert!(!outcome.interrupted);
    assert!(outcome.peers_exited_early.is_empty(), "{:?}", outcome.peers_exited_early);
    let s = &outcome.summary;
    assert_eq!(s.reports, 3, "every peer wrote final.json");
    assert_eq!(s.truth, "judge", "the judge measured the run");
    let judged = localnet::judge::read_judge_csv(&dir.0.join("judge.csv")).expect("judge.csv");
    let (_, last) = judged.last().expect("a judgement at the end");
    assert_eq!(last.len(), 3, "every peer judged: {last:?}");
    assert!(last.iter().all(|r| r.quality.is_some()), "every peer answered the judge: {last:?}");
    for rho in [s.spearman_incentive, s.spearman_rank].into_iter().flatten() {
        assert!((-1.0..=1.0).contains(&rho), "spearman {rho}");
    }
    // Emission needs weights on chain before an epoch ends; a heavily loaded machine may not
    // get a peer that far in a run this short, so the share is checked when there is one.
    for noise in [s.noise_emission_share, s.noise_incentive_share].into_iter().flatten() {
        assert!((0.0..=1.0).contains(&noise), "noise share {noise}");
    }
    for name in ["honest-computers", "honest-science", "noise"] {
        let peer_dir = dir.0.join("peers").join(name);
        let status = peer::files::read_status(&peer_dir.join(peer::files::STATUS_FILE)).expect("status.csv");
        assert!(!status.is_empty(), "{name} logged no status");
        assert!(status.iter().any(|r| r.step >= 1 && r.peers_answering >= 1), "{name}: {status:?}");
        let fin =
            peer::files::FinalReport::read(&peer_dir.join(peer::files::FINAL_FILE)).expect("final.json");
        assert!(fin.heldout_loss.is_finite() && fin.heldout_loss < 256f64.ln(), "{name}: {fin:?}");
        assert!(!fin.ablation.is_empty(), "{name} ablated no neighbour: {fin:?}");
    }
    for f in ["report.md", "final.csv", "stake_share.png", "incentive.png", "loss.png"] {
        dir.has(f);
    }

    // A peer's model runs offline after export.
    let ckpt = dir.0.join("peers/honest-science/checkpoint");
    let model = dir.0.join("exported");
    let (ckpt, model) = (ckpt.to_str().expect("utf-8"), model.to_str().expect("utf-8"));
    let o = crate::agora(&["peer", "export", "--checkpoint", ckpt, "--out", model]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let o = crate::agora(&["infer", "--model", model, "--prompt", "The ", "--bytes", "40"]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(crate::stdout(&o).starts_with("The "), "{}", crate::stdout(&o));
    let text = dir.0.join("sample.txt");
    std::fs::write(&text, "Science is what we understand well enough to explain to a computer.\n")
        .expect("write");
    let o = crate::agora(&["infer", "--model", model, "--score", text.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let loss: f64 = crate::stdout(&o).split_whitespace().next().and_then(|w| w.parse().ok()).expect("a loss");
    assert!(loss.is_finite() && loss > 0.0 && loss < 256f64.ln(), "{loss}");
}

/// `agora localnet --chaos`: every axon behind a proxy that loses 20% of what it relays and
/// adds up to 200 ms of jitter. The market keeps making rounds (every peer keeps stepping and
/// sets weights, no run stalls), every peer still reports, and the report says what was
/// injected and what each proxy did.
#[test]
fn a_localnet_under_loss_and_jitter_keeps_going_and_says_what_it_injected() {
    let dir = TempDir::new("localnet-chaos");
    let mut opts =
        RunOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_agora")), dir.0.clone(), tiny_scenario());
    opts.quiet = true;
    opts.chaos = Some(localnet::FaultConfig::lossy(7, 0.2, std::time::Duration::from_millis(200)));
    let outcome = localnet::run(&opts).expect("localnet run under chaos");
    assert!(outcome.peers_exited_early.is_empty(), "{:?}", outcome.peers_exited_early);
    let logs = || {
        ["honest-computers", "honest-science", "noise"]
            .iter()
            .map(|n| {
                let log =
                    std::fs::read_to_string(dir.0.join("peers").join(n).join("peer.log")).unwrap_or_default();
                format!(
                    "--- {n}\n{}",
                    log.lines()
                        .rev()
                        .take(12)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(outcome.summary.reports, 3, "every peer wrote final.json:\n{}", logs());
    let rows = read_metagraph_csv(&dir.0.join("metagraph.csv")).unwrap();
    let last = rows.iter().map(|r| r.block).max().unwrap();
    let _ = (rows, last);
    for name in ["honest-computers", "honest-science"] {
        // Every scoring round ends in a line: weights set, or why not (in a run this short
        // no neighbour may yet be worth a weight).
        let log = std::fs::read_to_string(dir.0.join("peers").join(name).join("peer.log")).unwrap();
        let rounds = log
            .lines()
            .filter(|l| l.contains("weights set in block") || l.contains("weights not set"))
            .count();
        assert!(rounds >= 3, "{name} made {rounds} scoring rounds under chaos:\n{log}");
        let status =
            peer::files::read_status(&dir.0.join("peers").join(name).join(peer::files::STATUS_FILE)).unwrap();
        // A status row every 3 s: the step count keeps moving (a round that stalled past its
        // deadline would freeze it).
        assert!(status.len() >= 3, "{name}: {status:?}");
        assert!(status.windows(2).all(|w| w[1].step > w[0].step), "{name} stalled: {status:?}");
    }
    let chaos: localnet::report::ChaosReport =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("chaos.json")).unwrap()).unwrap();
    assert_eq!(chaos.peers.len(), 3);
    assert!(chaos.peers.iter().all(|p| p.3 > 0), "every proxy lost chunks: {:?}", chaos.peers);
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    assert!(md.contains("## Faults injected") && md.contains("lost 20%"), "{md}");
}
