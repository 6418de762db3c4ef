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

/// What every generalist here reads: all three experts' topics, science most.
const MIXTURE: &str = "science+science+science+startrek+startrek+computers";

/// Six tiny honest peers: three topic experts (science, startrek, computers; 800 steps alone
/// each) and three generalists that trained 100 steps on a mixture of the three topics and
/// have little to offer; a noise peer; and a two-peer cabal with 10% of the stake that serves
/// noise and weights only itself. Every generalist values every expert, so a stake majority
/// can agree on each; the experts' values are graded by what the mixture needs of them.
fn graded_market() -> Scenario {
    Scenario {
        mechanism: "yuma".into(),
        epochs: 12,
        tempo: 5,
        weights_interval: 5,
        cabal_stake_share: 0.1,
        peers: vec![
            peer("science-expert", Role::Honest, "science", 1, 800),
            peer("startrek-expert", Role::Honest, "startrek", 2, 800),
            peer("computers-expert", Role::Honest, "computers", 3, 800),
            peer("generalist-a", Role::Honest, MIXTURE, 4, 100),
            peer("generalist-b", Role::Honest, MIXTURE, 5, 100),
            peer("generalist-c", Role::Honest, MIXTURE, 6, 100),
            peer("noise", Role::Noise, MIXTURE, 7, 0),
            peer("cabal-a", Role::Cabal, MIXTURE, 8, 0),
            peer("cabal-b", Role::Cabal, MIXTURE, 9, 0),
        ],
        ..Scenario::default()
    }
}

fn options(dir: &TempDir, cache: &TempDir, weights: WeightsPolicy) -> MarketOptions {
    let mut opts = MarketOptions::new(graded_market(), dir.0.clone());
    opts.seed = 7;
    opts.weights = weights;
    opts.judge.batches = 4;
    opts.steps_per_block = 2;
    opts.pretrain_cache = Some(cache.0.clone());
    opts
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
    let cache = TempDir::new("pretrained");
    let dir = TempDir::new("scored");
    let honest = run_market(&options(&dir, &cache, WeightsPolicy::Scored)).expect("market");
    let s = &honest.summary;
    eprintln!("scored: {s:#?}");
    assert!(failures(s).is_empty(), "the market did not pay for value: {:?}", failures(s));

    // The same peers (their pretrained models loaded from the cache), the same seed, but the
    // honest peers' weights are random.
    let dir = TempDir::new("random");
    let random = run_market(&options(&dir, &cache, WeightsPolicy::Random)).expect("control market");
    let c = &random.summary;
    eprintln!("random weights: {c:#?}");
    assert!(!failures(c).is_empty(), "random weights passed the assertions meant for value: {c:#?}");
}

/// Three tiny peers for three epochs, twice from the same seed: the same chain, block for
/// block (the state root covers every balance, stake, weight and bond), and the same judge.
#[test]
fn a_seeded_market_replays_exactly() {
    let scenario = Scenario {
        epochs: 3,
        tempo: 4,
        weights_interval: 4,
        cabal_stake_share: 0.0,
        peers: vec![
            peer("a", Role::Honest, "science", 1, 20),
            peer("b", Role::Honest, "computers", 2, 10),
            peer("n", Role::Noise, "food", 3, 0),
        ],
        ..Scenario::default()
    };
    let run = |name: &str| {
        let dir = TempDir::new(name);
        let mut opts = MarketOptions::new(scenario.clone(), dir.0.clone());
        opts.seed = 3;
        opts.judge.batches = 1;
        run_market(&opts).expect("market")
    };
    let (x, y) = (run("replay-1"), run("replay-2"));
    assert_eq!(x.state_root, y.state_root);
    assert_eq!(x.judgement, y.judgement);
    assert_eq!(x.summary, y.summary);
}

/// A peer's mean share of the incentive over the epochs of a run that paid any, from the run's
/// `metagraph.csv`.
fn incentive_share(dir: &TempDir, name: &str, tempo: u64) -> f64 {
    let data = localnet::report::load(&dir.0).expect("the run's files");
    let shares: Vec<f64> = localnet::report::by_block(&data.rows)
        .iter()
        .filter(|(b, _)| **b % tempo == 0)
        .filter_map(|(_, rows)| {
            let total: f64 = rows.iter().map(|r| r.incentive).sum();
            let mine: f64 = rows.iter().filter(|r| r.name == name).map(|r| r.incentive).sum();
            (total > 0.0).then(|| mine / total)
        })
        .collect();
    shares.iter().sum::<f64>() / shares.len().max(1) as f64
}

/// Issue 16's market: two topic experts, three generalists reading science+science+startrek,
/// and (with `copycat`) a copycat of the science expert that answers every query with what the
/// expert answers to it, signed as its own; the peers' copy detection on or off. Seed 11, 10
/// epochs of 5 blocks, two training steps a block; the pretrained models are cached in `cache`.
fn copycat_market(dir: &TempDir, cache: &TempDir, copycat: bool, detection: bool) -> Summary {
    const MIX: &str = "science+science+startrek";
    let mut peers = vec![
        peer("science-expert", Role::Honest, "science", 1, 800),
        peer("startrek-expert", Role::Honest, "startrek", 2, 800),
        peer("generalist-a", Role::Honest, MIX, 4, 100),
        peer("generalist-b", Role::Honest, MIX, 5, 100),
        peer("generalist-c", Role::Honest, MIX, 6, 100),
    ];
    if copycat {
        let mut c = peer("copycat", Role::Copycat, MIX, 10, 0);
        c.duplicate_of = Some("science-expert".into());
        peers.push(c);
    }
    let scenario = Scenario {
        mechanism: "yuma".into(),
        epochs: 10,
        tempo: 5,
        weights_interval: 5,
        cabal_stake_share: 0.0,
        copy_detection: detection,
        peers,
        ..Scenario::default()
    };
    let mut opts = MarketOptions::new(scenario, dir.0.clone());
    opts.seed = 11;
    opts.judge.batches = 2;
    opts.steps_per_block = 2;
    opts.pretrain_cache = Some(cache.0.clone());
    run_market(&opts).expect("market").summary
}

/// Issue 16: the validators' copy detection finds the copycat's answers equal to the expert's
/// (the copycat signs no model though it published one, so it is the copier) and weights it
/// zero: under 1% of the incentive, while the expert keeps at least 80% of the share it earns
/// in the same market without the copycat.
#[test]
fn a_copycat_is_not_paid_and_its_original_keeps_its_share() {
    let cache = TempDir::new("copycat-pretrained");
    let alone = TempDir::new("copycat-baseline");
    copycat_market(&alone, &cache, false, true);
    let baseline = incentive_share(&alone, "science-expert", 5);
    let dir = TempDir::new("copycat");
    let s = copycat_market(&dir, &cache, true, true);
    eprintln!("with a copycat: {s:#?}\nthe expert's share without it: {baseline:.4}");
    let copycat = s.copycat_incentive_share.expect("a copycat ran");
    let original = s.copied_incentive_share.expect("the copied peer ran");
    assert_eq!(original, incentive_share(&dir, "science-expert", 5));
    assert!(copycat < 0.01, "the copycat earned {copycat:.4} of the incentive");
    assert!(baseline > 0.05, "the expert earns something on its own: {baseline:.4}");
    assert!(original >= 0.8 * baseline, "the expert's share fell from {baseline:.4} to {original:.4}");
}

/// Issue 16, the intermodel paper's competitive masking (001 §2.5): the graded market of
/// [`the_market_pays_for_value_and_random_weights_do_not`], same seed, without masking and with
/// it at two temperatures; prints each peer's mean share of the incentive and the report's
/// figures side by side. An experiment, not a check (about 15 minutes on a busy 2-core machine):
/// `cargo test -p localnet --test market competitive_masking -- --ignored --nocapture`;
/// `MASKING_SEED=N` runs the markets from another seed than the test's 7.
#[test]
#[ignore = "an experiment: about 15 minutes"]
fn competitive_masking_in_the_graded_market() {
    let cache = TempDir::new("masking-pretrained");
    let seed: Option<u64> =
        std::env::var("MASKING_SEED").ok().map(|s| s.parse().expect("MASKING_SEED: a number"));
    let temperatures = [None, Some(1.0), Some(0.25)];
    let mut runs = Vec::new();
    for t in temperatures {
        let dir = TempDir::new(&format!("masking-{t:?}"));
        let mut opts = options(&dir, &cache, WeightsPolicy::Scored);
        opts.seed = seed.unwrap_or(opts.seed);
        opts.competitive_masking = t.map(|t| wire::MaskingConfig::new(t).expect("a positive temperature"));
        let s = run_market(&opts).expect("market").summary;
        let shares: Vec<f64> = graded_market()
            .peers
            .iter()
            .map(|p| incentive_share(&dir, &p.name, opts.scenario.tempo))
            .collect();
        runs.push((s, shares));
    }
    let name = |t: Option<f64>| t.map_or("off".to_string(), |t| format!("T = {t}"));
    let mut table = format!(
        "| mean share of the incentive | {} |\n|---|{}\n",
        temperatures.map(name).join(" | "),
        "---|".repeat(temperatures.len())
    );
    for (i, p) in graded_market().peers.iter().enumerate() {
        let cells: Vec<String> =
            runs.iter().map(|(_, shares)| format!("{:.1}%", 100.0 * shares[i])).collect();
        table += &format!("| {} | {} |\n", p.name, cells.join(" | "));
    }
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    type Figure = fn(&Summary) -> Option<f64>;
    let rows: [(&str, Figure); 6] = [
        ("Spearman(incentive, judge's value)", |s| s.spearman_incentive),
        ("Spearman(mean incentive 2nd half, value)", |s| s.spearman_mean_incentive),
        ("Spearman(emission over the run, value)", |s| s.spearman_emission),
        ("noise share of incentive", |s| s.noise_incentive_share),
        ("cabal stake share, start", |s| s.cabal_share_start),
        ("cabal stake share, end", |s| s.cabal_share_end),
    ];
    for (what, get) in rows {
        let cells: Vec<String> = runs.iter().map(|(s, _)| f(get(s))).collect();
        table += &format!("| {what} | {} |\n", cells.join(" | "));
    }
    eprintln!("seed {}\n{table}", seed.unwrap_or(7));
    for ((s, _), t) in runs.iter().zip(temperatures) {
        eprintln!("{}: failures of the market's goals: {:?}", name(t), failures(s));
    }
    // From the test's seed, the off run is the market of the test above: it meets its goals.
    if seed.is_none() {
        assert!(failures(&runs[0].0).is_empty(), "{:?}", failures(&runs[0].0));
    }
}

/// The negative control: the same market, same seed, with copy detection switched off
/// (`Scenario::copy_detection = false`, what `agora peer run --no-copy-detection` does). The
/// copycat is then paid for the expert's answers: the `< 1%` assertion above must fail.
#[test]
fn without_copy_detection_the_copycat_is_paid() {
    let cache = TempDir::new("copycat-off-pretrained");
    let dir = TempDir::new("copycat-off");
    let s = copycat_market(&dir, &cache, true, false);
    let copycat = s.copycat_incentive_share.expect("a copycat ran");
    let original = s.copied_incentive_share.expect("the copied peer ran");
    eprintln!(
        "copy detection off: the copycat earned {copycat:.4} of the incentive, the expert {original:.4}"
    );
    assert!(
        copycat >= 0.01,
        "without detection the copycat earned only {copycat:.4}: the test above proves nothing"
    );
}
