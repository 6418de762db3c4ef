//! `agora tx ...`, `agora wallet balance` and `agora metagraph` against `agora node --dev
//! --instant` as a child process: a wallet made with the CLI is funded from a dev account,
//! registers its hotkey, serves, stakes, unstakes and sets weights, and the balance and the
//! metagraph show the result; bad input fails with a clear error and a non-zero exit.

use crate::node::NodeProc;
use crate::wallet::{field, ok, wallet, CHEAP_KDF};
use crate::{stderr, stdout, TempDir};
use std::process::{Command, Output};

/// `agora ARGS... --chain URL --wallet-dir DIR` with `password` in AGORA_PASSWORD.
pub(crate) fn agora_at(url: &str, dir: &TempDir, password: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args(args).args(["--chain", url]);
    cmd.env_remove("AGORA_PASSWORD").env_remove("AGORA_CHAIN").env_remove("AGORA_CHAIN_ID");
    cmd.env("AGORA_WALLET_DIR", dir.path());
    if let Some(pw) = password {
        cmd.env("AGORA_PASSWORD", pw);
    }
    cmd.output().expect("run the agora binary")
}

/// Asserts failure and that stderr says `expected`.
pub(crate) fn fails(o: &Output, expected: &str) {
    assert!(!o.status.success(), "succeeded:\n{}", stdout(o));
    assert!(stderr(o).contains(expected), "expected {expected:?} in:\n{}", stderr(o));
}

/// The block height of "included in block N: applied".
pub(crate) fn applied(o: &Output) -> u64 {
    let out = ok(o);
    let line = out.lines().find(|l| l.starts_with("included in block")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.ends_with(": applied"), "{out}");
    line["included in block ".len()..].split(':').next().unwrap().parse().expect("height")
}

#[test]
fn the_cli_drives_a_dev_chain() {
    let dir = TempDir::new("tx");
    let data = dir.0.join("data");
    let node = NodeProc::start(data.to_str().unwrap(), &["--instant"]);
    let url = node.http();
    let run = |pw: Option<&str>, args: &[&str]| agora_at(&url, &dir, pw, args);

    let mut args = vec!["new", "--name", "w", "--hotkey", "miner"];
    args.extend(CHEAP_KDF);
    let out = ok(&wallet(&dir, Some("pw"), &args));
    let cold = field(&out, "coldkey ");
    let hot = field(&out, "hotkey miner ");

    // Fund the coldkey from a dev account, and the hotkey (it pays the fees of what it signs).
    let h1 =
        applied(&run(None, &["tx", "transfer", "--dev-account", "alice", "--to", &cold, "--amount", "100"]));
    let h2 = applied(&run(Some("pw"), &["tx", "transfer", "--wallet", "w", "--to", &hot, "--amount", "0.5"]));
    assert!(h2 > h1);
    let out = ok(&run(None, &["wallet", "balance", "--name", "w"]));
    assert!(out.contains("free balance  99.49999\n"), "{out}");
    let hot58 = hot.parse::<ledger::PublicKey>().unwrap().to_ss58();
    assert!(out.contains(&format!("hotkey miner {hot}  {hot58}  not registered")), "{out}");

    // Register (proof of work, progress on stderr), then the neuron's own transactions.
    let o = run(None, &["tx", "register", "--wallet", "w", "--hotkey", "miner"]);
    applied(&o);
    assert!(stdout(&o).contains("registered as uid 0"), "{}", stdout(&o));
    assert!(stderr(&o).contains("solving proof of work: difficulty"), "{}", stderr(&o));
    let serve = ["tx", "serve", "--wallet", "w", "--hotkey", "miner", "--ip", "10.0.0.1", "--port", "8091"];
    applied(&run(None, &serve));
    applied(&run(Some("pw"), &["tx", "stake", "--wallet", "w", "--hotkey", "miner", "--amount", "10"]));
    applied(&run(Some("pw"), &["tx", "unstake", "--wallet", "w", "--hotkey", "miner", "--amount", "2.5"]));
    // Any scale: the CLI normalises before signing.
    applied(&run(
        None,
        &["tx", "weights", "--wallet", "w", "--hotkey", "miner", "--uids", "0", "--values", "3"],
    ));

    let out = ok(&run(None, &["wallet", "balance", "--name", "w"]));
    // 100 - 0.5 - 10 + 2.5, less three coldkey fees of 0.00001.
    assert!(out.contains("free balance  91.99997\n"), "{out}");
    assert!(out.contains(&format!("hotkey miner {hot}  {hot58}  uid 0  stake 7.5")), "{out}");

    let out = ok(&run(None, &["metagraph"]));
    assert!(out.starts_with("chain agora-dev  block "), "{out}");
    assert!(out.contains("  n 1  mechanism yuma"), "{out}");
    let epoch = out.lines().nth(1).unwrap_or_default();
    assert!(epoch.starts_with("no epoch yet") && epoch.contains("at block 100 (every 100 blocks)"), "{out}");
    let row = out.lines().find(|l| l.trim_start().starts_with("0 ")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&hot58[..10]) && row.contains(" 7.5 ") && row.contains("10.0.0.1:8091"), "{row}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(None, &["metagraph", "--json"]))).expect("metagraph --json is JSON");
    assert_eq!(json["chain_id"], "agora-dev");
    assert_eq!(json["S"][0], 7_500_000_000u64);
    assert_eq!(json["hotkeys"][0], hot);
    assert_eq!(json["hotkeys_ss58"][0], hot58);
    assert_eq!(json["endpoints"][0]["port"], 8091);
    assert_eq!(json["weights"][0], serde_json::json!([[0, 1.0]]));
    // Validator trust, permits and activity are there too (all as of the last epoch).
    assert!(out.contains("  DIVIDENDS        VT  "), "{out}");
    for field in ["VT", "active", "validator_permit"] {
        assert_eq!(json[field].as_array().map(Vec::len), Some(1), "{field}: {json}");
    }
    // The model version each neuron published (issue 16): none yet, `-` in the table.
    assert!(out.contains("  MODEL (VERSION/STEP @ BLOCK)  "), "{out}");
    assert_eq!(json["models"], serde_json::json!([null]));

    // Bad input: refused locally or by the node, with the reason, and nothing submitted.
    let weights = |uids: &str, values: &str| {
        run(
            None,
            &["tx", "weights", "--wallet", "w", "--hotkey", "miner", "--uids", uids, "--values", values],
        )
    };
    fails(&weights("0,7", "1,1"), "uid 7 is unknown");
    fails(&weights("0", "NaN"), "finite");
    fails(&weights("0", "-1"), ">= 0");
    fails(&weights("0,0", "1,1"), "twice");
    let stake = |pw: &str, amount: &str| {
        run(Some(pw), &["tx", "stake", "--wallet", "w", "--hotkey", "miner", "--amount", amount])
    };
    fails(&stake("pw", "1.0000000001"), "10 decimals");
    fails(&stake("pw", "-1"), "no sign");
    fails(&stake("wrong", "1"), "wrong password");
    fails(&stake("pw", "1000"), "insufficient balance");
    fails(&run(Some("pw"), &["tx", "transfer", "--wallet", "w", "--to", "abcd", "--amount", "1"]), "--to");
    fails(&run(None, &["tx", "register", "--wallet", "w", "--hotkey", "miner"]), "already registered");
    fails(&run(None, &["tx", "serve", "--wallet", "w", "--ip", "10.0.0.1", "--port", "1"]), "--hotkey");
    fails(
        &run(
            None,
            &["tx", "serve", "--wallet", "nobody", "--hotkey", "h", "--ip", "10.0.0.1", "--port", "1"],
        ),
        "no wallet",
    );
    // A past height is rebuilt by the node (replay); a future one is refused.
    let out = ok(&run(None, &["metagraph", "--block", "1"]));
    assert!(out.contains("block 1  n 0"), "{out}");
    fails(&run(None, &["metagraph", "--block", "1000000"]), "does not exist yet");
    // Nothing above reached a block: the stake is unchanged.
    let out = ok(&run(None, &["wallet", "balance", "--name", "w"]));
    assert!(out.contains("stake 7.5\n") && out.contains("free balance  91.99997\n"), "{out}");
}

#[test]
fn an_unreachable_node_is_named_with_what_to_start() {
    let dir = TempDir::new("tx-unreachable");
    // Port 1 on loopback: nothing listens there.
    let url = "http://127.0.0.1:1";
    let o = agora_at(url, &dir, None, &["metagraph"]);
    fails(&o, "is `agora node --dev` running at http://127.0.0.1:1?");
    let to = "00".repeat(32);
    let o = agora_at(
        url,
        &dir,
        None,
        &["tx", "transfer", "--dev-account", "alice", "--to", &to, "--amount", "1"],
    );
    fails(&o, "agora node --dev");
    let o = agora_at("ftp://x", &dir, None, &["metagraph"]);
    fails(&o, "neither http");
}

/// A client told which chain to expect refuses a node that runs another, before it signs
/// anything; without `--chain-id` the same commands go through.
#[test]
fn a_node_on_another_chain_than_chain_id_names_is_refused() {
    let dir = TempDir::new("tx-chain-id");
    let node = NodeProc::start(dir.0.join("data").to_str().unwrap(), &["--instant"]);
    let url = node.http();
    let dev = ledger::GenesisConfig::default().chain_id;
    let to = "00".repeat(32);
    let transfer = ["tx", "transfer", "--dev-account", "alice", "--to", to.as_str(), "--amount", "1"];
    for args in [&["metagraph"][..], &transfer[..]] {
        let mut wrong = args.to_vec();
        wrong.extend(["--chain-id", "agora-main"]);
        let o = agora_at(&url, &dir, None, &wrong);
        fails(&o, &format!("runs chain {dev:?}, not \"agora-main\""));
        let mut right = args.to_vec();
        right.extend(["--chain-id", dev.as_str()]);
        ok(&agora_at(&url, &dir, None, &right));
    }
}

#[test]
fn wallet_balance_names_an_unreachable_node_too() {
    let dir = TempDir::new("tx-balance-unreachable");
    let mut args = vec!["new", "--name", "w"];
    args.extend(CHEAP_KDF);
    ok(&wallet(&dir, Some("pw"), &args));
    let o = agora_at("http://127.0.0.1:1", &dir, None, &["wallet", "balance", "--name", "w"]);
    fails(&o, "is `agora node --dev` running at http://127.0.0.1:1?");
}

/// Dev keys are public knowledge: signing with one is refused on a chain that is not the dev
/// chain, even when the key is funded there.
#[test]
fn dev_accounts_sign_only_on_the_dev_chain() {
    let dir = TempDir::new("tx-not-dev");
    let mut g = ledger::GenesisConfig::dev(&["alice"], 1_000 * ledger::UNITS_PER_TOKEN);
    g.chain_id = "agora-it".into();
    let file = dir.0.join("genesis.json");
    std::fs::write(&file, g.to_json_pretty()).expect("write genesis");
    let data = dir.0.join("data");
    let node = NodeProc::start_with(&[
        "--genesis",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--instant",
    ]);
    let to = "11".repeat(32);
    let o = agora_at(
        &node.http(),
        &dir,
        None,
        &["tx", "transfer", "--dev-account", "alice", "--to", &to, "--amount", "1"],
    );
    fails(&o, "is not a dev chain");
}
