//! `agora localnet --validators 4`: the market on a chain of four validator processes, each
//! peer talking to its own validator's RPC.

use crate::TempDir;
use localnet::monitor::read_metagraph_csv;
use localnet::{ModelSize, PeerSpec, Role, RunOptions, Scenario};
use std::path::PathBuf;

/// An expert (200 steps alone on science), a learner on the same topic (10 steps: the
/// expert's answers help it) and a noise peer, tiny models, 10 epochs of 5 blocks of 500 ms.
fn expert_market() -> Scenario {
    let peer = |name: &str, role, pretrain_steps, seed| PeerSpec {
        name: name.into(),
        role,
        model_size: ModelSize::Tiny,
        dataset: "science".into(),
        duplicate_of: None,
        seed: Some(seed),
        pretrain_steps,
    };
    Scenario {
        epochs: 10,
        tempo: 5,
        block_time_ms: 500,
        cabal_stake_share: 0.0,
        weights_interval: 5,
        peers: vec![
            peer("expert", Role::Honest, 200, 1),
            peer("learner", Role::Honest, 10, 2),
            peer("noise", Role::Noise, 0, 3),
        ],
        ..Scenario::default()
    }
    .validated()
    .expect("scenario")
}

/// A small market on four validators as real processes, peer k on validator k mod 4 (the
/// expert on 0, the learner on 1, the noise peer on 2): every validator finalized the whole
/// run and holds the same block and state root at the end; the `set_weights` of at least two
/// peers, each sent to its own validator, reached the one chain; and the incentive is not
/// degenerate: someone is paid at the end, the noise peer less than the top, and the noise
/// peer's share of the serving emission over the run is below the control, an equal split
/// (1/3: what weights carrying no information would pay it). About 2 minutes.
#[test]
fn a_market_on_four_validator_processes_agrees_and_pays_by_value() {
    let dir = TempDir::new("localnet-validators");
    let mut opts =
        RunOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_agora")), dir.0.clone(), expert_market());
    opts.quiet = true;
    opts.validators = 4;
    opts.judge_every = 0;
    let outcome = localnet::run(&opts).expect("localnet run on 4 validators");
    assert!(!outcome.interrupted);
    assert!(outcome.node_stopped_cleanly, "every validator exits on SIGTERM");
    assert!(outcome.peers_exited_early.is_empty(), "{:?}", outcome.peers_exited_early);

    let rows = read_metagraph_csv(&dir.0.join("metagraph.csv")).expect("metagraph.csv");
    let last = rows.iter().map(|r| r.block).max().expect("samples");
    // The dashboard's localnet panel (served by every validator): each peer's loss curve, read
    // from the status.csv it wrote while it trained.
    let panel: client::LocalnetStatus =
        serde_json::from_slice(&std::fs::read(dir.0.join("dashboard.json")).expect("dashboard.json"))
            .expect("the panel's JSON");
    assert!(!panel.peers.is_empty());
    for p in &panel.peers {
        assert!(!p.loss.is_empty(), "{} reported no loss", p.name);
        assert!(p.loss.iter().all(|&(_, l)| l.is_finite() && l > 0.0), "{}: {:?}", p.name, p.loss);
        assert!(p.loss.windows(2).all(|w| w[0].0 <= w[1].0), "{}: blocks ascend", p.name);
    }
    let a = outcome.agreement.expect("several validators: their agreement");
    assert_eq!(a.finalized.len(), 4);
    assert!(a.height >= last, "every validator finalized the run's last sampled block {last}: {a:?}");
    let file: localnet::validators::Agreement = serde_json::from_str(
        &std::fs::read_to_string(dir.0.join(localnet::validators::AGREEMENT_FILE)).expect("validators.json"),
    )
    .expect("agreement json");
    assert_eq!(file, a);
    let genesis: ledger::GenesisConfig = ledger::GenesisConfig::from_json(
        &std::fs::read_to_string(dir.0.join("genesis.json")).expect("genesis"),
    )
    .expect("genesis json");
    assert_eq!(genesis.validators.len(), 4);
    for i in 0..4 {
        let log = std::fs::read_to_string(dir.0.join(format!("validator-{i}.log"))).expect("validator log");
        assert!(log.contains("of 4: a block every 500 ms"), "validator {i}:\n{log}");
        assert!(log.contains("stopped at height"), "validator {i} did not stop cleanly:\n{log}");
    }

    let at_end: Vec<_> = rows.iter().filter(|r| r.block == last).collect();
    assert_eq!(at_end.len(), 3);
    // Which honest peer sets weights first depends on the machine's load (a tiny model scores
    // zero until it learns something from its neighbours); two of the three always have.
    let weighting = at_end.iter().filter(|r| r.last_update.is_some()).count();
    assert!(weighting >= 2, "weights of fewer than two peers reached the chain: {at_end:?}");
    let s = &outcome.summary;
    eprintln!("{a:?}\n{s:#?}");
    assert_eq!(s.reports, 3, "every peer wrote final.json");
    let top = at_end.iter().map(|r| r.incentive).fold(0.0, f64::max);
    let noise_now = at_end.iter().find(|r| r.name == "noise").expect("the noise peer").incentive;
    assert!(top > 0.0 && noise_now < top, "incentive at the end: {at_end:?}");
    let noise = s.noise_serving_share.expect("emission paid");
    assert!(
        noise < 1.0 / 3.0,
        "the noise peer got {noise:.3} of the serving emission, an equal split 0.333: {s:#?}"
    );
}
