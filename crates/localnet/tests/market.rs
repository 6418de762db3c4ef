//! The market pays for value, checked so that it can fail: a seeded in-process market of tiny
//! peers of graded value, a noise peer and a cabal runs the real peer loop over the real ledger
//! to a fixed number of epochs, and the independent judge (test split, orchestrator's code)
//! says what each peer was worth. Beside it, the same market whose honest peers set random
//! weights, which must fail the same assertions.

use localnet::{run_market, MarketOptions, PeerSpec, Role, Scenario, Summary, WeightsPolicy};
use std::path::PathBuf;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("agora-market-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn peer(name: &str, role: Role, dataset: &str, seed: u64, pretrain_steps: u64) -> PeerSpec {
    PeerSpec {
        name: name.into(),
        role,
        model_size: localnet::ModelSize::Tiny,
        dataset: dataset.into(),
        duplicate_of: None,
        seed: Some(seed),
        pretrain_steps,
    }
}

/// Six tiny honest peers: on each of three topics an expert, whose value to the others is
/// graded by how long it trained alone (1,200, 500 and 200 steps), and a newcomer that trained
/// 30 steps and has little to offer; a noise peer; and a two-peer cabal with 30% of the stake
/// that serves noise and weights only itself.
fn graded_market() -> Scenario {
    Scenario {
        mechanism: "yuma".into(),
        epochs: 12,
        tempo: 5,
        weights_interval: 5,
        cabal_stake_share: 0.3,
        peers: vec![
            peer("science-expert", Role::Honest, "science", 1, 1200),
            peer("computers-expert", Role::Honest, "computers", 2, 500),
            peer("startrek-expert", Role::Honest, "startrek", 3, 200),
            peer("science-newcomer", Role::Honest, "science", 4, 30),
            peer("computers-newcomer", Role::Honest, "computers", 5, 30),
            peer("startrek-newcomer", Role::Honest, "startrek", 6, 30),
            peer("noise", Role::Noise, "food", 7, 0),
            peer("cabal-a", Role::Cabal, "food", 8, 0),
            peer("cabal-b", Role::Cabal, "food", 9, 0),
        ],
        ..Scenario::default()
    }
}

/// The assertions of issue 12, as a list of what failed.
fn failures(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    if s.truth != "judge" {
        out.push(format!("the yardstick is {:?}, not the judge", s.truth));
    }
    match s.spearman_incentive {
        Some(r) if r >= 0.8 => {}
        other => out.push(format!("Spearman(incentive, judge's value) {other:?} < 0.8")),
    }
    match s.noise_incentive_share {
        Some(x) if x < 0.01 => {}
        other => out.push(format!("noise share of incentive {other:?} >= 1%")),
    }
    match (s.cabal_share_start, s.cabal_share_end) {
        (Some(a), Some(b)) if b < a => {}
        other => out.push(format!("cabal share {other:?} did not fall")),
    }
    out
}

#[test]
fn the_market_pays_for_value_and_random_weights_do_not() {
    let dir = TempDir::new("scored");
    let mut opts = MarketOptions::new(graded_market(), dir.0.clone());
    opts.seed = 7;
    opts.judge.batches = 4;
    let honest = run_market(&opts).expect("market");
    let s = &honest.summary;
    eprintln!("scored: {s:#?}");
    assert!(failures(s).is_empty(), "the market did not pay for value: {:?}", failures(s));

    let dir = TempDir::new("random");
    let mut control = MarketOptions::new(graded_market(), dir.0.clone());
    control.seed = 7;
    control.judge.batches = 4;
    control.weights = WeightsPolicy::Random;
    let random = run_market(&control).expect("control market");
    let c = &random.summary;
    eprintln!("random weights: {c:#?}");
    assert!(!failures(c).is_empty(), "random weights passed the assertions meant for value: {c:#?}");
}
