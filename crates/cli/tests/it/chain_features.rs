//! What a Bittensor user expects of the chain, through the CLI against a real node: keys as
//! SS58 addresses, weight setting without a fee (so an unfunded hotkey registers and sets
//! weights), and commit-reveal weights with every refusal's reason.

use crate::node::NodeProc;
use crate::tx::{agora_at, applied, fails};
use crate::wallet::{field, fields, ok, wallet, CHEAP_KDF};
use crate::{stdout, TempDir};
use ledger::{GenesisConfig, GenesisNeuron, PublicKey, UNITS_PER_TOKEN};

#[test]
fn an_unfunded_hotkey_registers_and_sets_weights_and_keys_read_as_ss58() {
    let dir = TempDir::new("features-free");
    let data = dir.0.join("data");
    let node = NodeProc::start(data.to_str().unwrap(), &["--instant"]);
    let url = node.http();
    let run = |pw: Option<&str>, args: &[&str]| agora_at(&url, &dir, pw, args);

    let mut args = vec!["new", "--name", "w", "--hotkey", "miner"];
    args.extend(CHEAP_KDF);
    let out = ok(&wallet(&dir, Some("pw"), &args));
    let (cold, cold58) = (field(&out, "coldkey "), fields(&out, "coldkey ")[1].clone());
    let hot = field(&out, "hotkey miner ");
    assert!(cold58.starts_with('5') && cold58.len() == 48, "{out}");
    assert_eq!(cold58.parse::<PublicKey>().unwrap().to_hex(), cold);

    // Paste the SS58 address as a Bittensor user would; a mistyped one is caught by its checksum.
    let typo = format!("{}{}", &cold58[..47], if cold58.ends_with('a') { 'b' } else { 'a' });
    fails(
        &run(None, &["tx", "transfer", "--dev-account", "alice", "--to", &typo, "--amount", "1"]),
        "checksum",
    );
    applied(&run(None, &["tx", "transfer", "--dev-account", "alice", "--to", &cold58, "--amount", "3"]));
    let out = ok(&run(None, &["wallet", "balance", "--name", "w"]));
    assert!(out.contains(&format!("coldkey {cold}  {cold58}\n  free balance  3\n")), "{out}");

    // The hotkey is never funded: proof of work registers it, and weights cost nothing.
    applied(&run(None, &["tx", "register", "--wallet", "w", "--hotkey", "miner"]));
    let o =
        run(None, &["tx", "weights", "--wallet", "w", "--hotkey", "miner", "--uids", "0", "--values", "1"]);
    applied(&o);
    assert!(stdout(&o).contains("fee 0)"), "{}", stdout(&o));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(None, &["metagraph", "--json"]))).expect("metagraph --json is JSON");
    assert_eq!(json["hotkeys"][0], hot);
    let hot58 = hot.parse::<PublicKey>().unwrap().to_ss58();
    assert_eq!(json["hotkeys_ss58"][0], hot58);
    assert_eq!(json["coldkeys_ss58"][0], cold58);
    assert_eq!(json["weights"][0], serde_json::json!([[0, 1.0]]));
    let table = ok(&run(None, &["metagraph"]));
    assert!(table.contains(&format!("{}..", &hot58[..10])), "{table}");
    // Its account holds nothing and paid nothing.
    let acct = ok(&run(None, &["wallet", "balance", "--name", "w"]));
    assert!(acct.contains(&format!("hotkey miner {hot}  {hot58}  uid 0  stake 0")), "{acct}");
}

/// The dev chain's id (so --dev-account signs) with the dev accounts alice and bob funded and
/// registered as genesis neurons (uids 0 and 1, each its own coldkey).
pub(crate) fn two_neurons() -> GenesisConfig {
    let mut g = GenesisConfig::dev(&["alice", "bob"], 1_000 * UNITS_PER_TOKEN);
    for name in ["alice", "bob"] {
        let k = ledger::public_key(&ledger::dev_key(name));
        g.neurons.push(GenesisNeuron { hotkey: k, coldkey: k, stake: UNITS_PER_TOKEN, endpoint: None });
    }
    g
}

/// `agora node --genesis FILE --instant` for `g`, its data in `dir`.
pub(crate) fn start(dir: &TempDir, g: &GenesisConfig) -> NodeProc {
    let file = dir.0.join("genesis.json");
    std::fs::write(&file, g.to_json_pretty()).expect("write genesis");
    let data = dir.0.join("data");
    NodeProc::start_with(&[
        "--genesis",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--instant",
    ])
}

#[test]
fn commit_reveal_weights_through_the_cli() {
    let dir = TempDir::new("features-commit-reveal");
    // Commit-reveal on: a reveal opens 2 blocks after its commitment, for 3 blocks.
    let mut g = two_neurons();
    g.weights.commit_reveal = Some(ledger::CommitRevealConfig { reveal_delay: 2, reveal_window: 3 });
    let node = start(&dir, &g);
    let url = node.http();
    let run = |args: &[&str]| agora_at(&url, &dir, None, args);
    let as_alice = |verb: &str, more: &[&str]| {
        let mut a = vec!["tx", verb, "--dev-account", "alice"];
        a.extend(more);
        run(&a)
    };
    let bob = ledger::public_key(&ledger::dev_key("bob")).to_hex();
    // One block: a transfer from bob (the instant node makes a block per transaction).
    let tick = || applied(&run(&["tx", "transfer", "--dev-account", "bob", "--to", &bob, "--amount", "0.1"]));
    let row = ["--uids", "0", "--values", "1"];

    fails(&as_alice("weights", &row), "commit-reveal is on");
    fails(&as_alice("reveal-weights", &[]), "no saved commitment");
    let o = as_alice("commit-weights", &row);
    let h = applied(&o);
    assert!(
        stdout(&o).contains(&format!("reveal from block {} to block {}", h + 2, h + 4)),
        "{}",
        stdout(&o)
    );
    let saved = dir.0.join("dev-commits/alice.json");
    assert!(saved.exists());
    // Block h + 1: too early (refused at submission, so no block is made).
    fails(&as_alice("reveal-weights", &[]), &format!("may be revealed from block {}", h + 2));
    assert_eq!(tick(), h + 1);
    assert_eq!(applied(&as_alice("reveal-weights", &[])), h + 2);
    assert!(!saved.exists(), "a spent commitment is removed");
    let json: serde_json::Value = serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).unwrap();
    assert_eq!(json["weights"][0], serde_json::json!([[0, 1.0]]));

    // Too late: committed at h + 3, open h + 5 ..= h + 7, revealed at h + 8.
    assert_eq!(applied(&as_alice("commit-weights", &["--uids", "0,1", "--values", "1,0"])), h + 3);
    for k in 4..=7 {
        assert_eq!(tick(), h + k);
    }
    fails(&as_alice("reveal-weights", &[]), &format!("had to be revealed by block {}", h + 7));

    // A mismatch: commit A, then B (another row) replaces it; revealing A in B's window does not open B.
    let a = dir.0.join("a.json");
    let b = dir.0.join("b.json");
    let with = |f: &std::path::Path| ["--commit-file".to_string(), f.to_str().unwrap().to_string()];
    let fa = with(&a);
    let fb = with(&b);
    let fa: Vec<&str> = fa.iter().map(String::as_str).collect();
    let fb: Vec<&str> = fb.iter().map(String::as_str).collect();
    let k = applied(&as_alice("commit-weights", &[&row[..], &fa].concat()));
    assert_eq!(
        applied(&as_alice("commit-weights", &[&["--uids", "0,1", "--values", "1,1"][..], &fb].concat())),
        k + 1
    );
    assert_eq!(tick(), k + 2);
    fails(&as_alice("reveal-weights", &fa), "not to the commitment");
    assert_eq!(applied(&as_alice("reveal-weights", &fb)), k + 3);
    let json: serde_json::Value = serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).unwrap();
    // B's row (uids 0 and 1, half each), not A's.
    let w = json["weights"][0].as_array().unwrap();
    assert_eq!((w.len(), &w[1][0]), (2, &serde_json::json!(1)), "{w:?}");
}

#[test]
fn the_metagraph_shows_tau_moving_under_adaptive_inflation() {
    let dir = TempDir::new("features-tau");
    // An epoch every 2 blocks; tau gains 0.5 * (0.5 - sparsity) tokens per epoch.
    let mut g = two_neurons();
    g.tempo = 2;
    g.adaptive_inflation = Some(ledger::AdaptiveInflation {
        target_sparsity: 0.5,
        gain: 0.5,
        min_per_block: 0,
        max_per_block: 2 * UNITS_PER_TOKEN,
    });
    let node = start(&dir, &g);
    let url = node.http();
    let run = |args: &[&str]| agora_at(&url, &dir, None, args);
    let json = || -> serde_json::Value { serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).unwrap() };
    assert_eq!(json()["tau"], UNITS_PER_TOKEN);
    assert!(ok(&run(&["metagraph"])).contains("  tau 1/block  sparsity -\n"));

    // Each weights the other only (sparsity 0, below the target): tau rises a quarter token
    // at each epoch (blocks 2 and 4).
    let weights = |who: &str, uid: &str| {
        applied(&run(&["tx", "weights", "--dev-account", who, "--uids", uid, "--values", "1"]))
    };
    assert_eq!(weights("alice", "1"), 1);
    assert_eq!(weights("bob", "0"), 2);
    assert_eq!(json()["tau"], 1_250_000_000u64);
    let bob = ledger::public_key(&ledger::dev_key("bob")).to_hex();
    for _ in 0..2 {
        applied(&run(&["tx", "transfer", "--dev-account", "alice", "--to", &bob, "--amount", "1"]));
    }
    let m = json();
    assert_eq!(
        (m["block"].as_u64(), m["tau"].as_u64(), m["sparsity"].as_f64()),
        (Some(4), Some(1_500_000_000), Some(0.0))
    );
    let table = ok(&run(&["metagraph"]));
    assert!(table.contains("  tau 1.5/block  sparsity 0.0000\n"), "{table}");
}
