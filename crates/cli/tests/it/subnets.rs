//! Subnets through the CLI against `agora node --dev --instant`: `agora subnet create|list|show`
//! with its refusals, and `--netuid` on register (proof of work and burn), stake, weights,
//! `stake list` and `metagraph`, each staying in its subnet.

use crate::node::NodeProc;
use crate::tx::{agora_at, applied, fails};
use crate::wallet::ok;
use crate::{stdout, TempDir};

fn key(name: &str) -> ledger::PublicKey {
    ledger::public_key(&ledger::dev_key(name))
}

#[test]
fn subnets_through_the_cli() {
    let dir = TempDir::new("subnets");
    let data = dir.0.join("data");
    let node = NodeProc::start(data.to_str().unwrap(), &["--instant"]);
    let url = node.http();
    let run = |args: &[&str]| agora_at(&url, &dir, None, args);

    let list = ok(&run(&["subnet", "list"]));
    assert!(list.contains("1 subnets on chain agora-dev"), "{list}");
    assert!(list.contains("genesis"), "{list}");

    // Refused before anything is signed, with the chain's reason.
    fails(&run(&["subnet", "create", "--dev-account", "bob", "--mechanism", "nope"]), "unknown");
    fails(&run(&["subnet", "create", "--dev-account", "bob", "--tempo", "0"]), "tempo");
    fails(&run(&["subnet", "create", "--dev-account", "bob", "--max-neurons", "0"]), "max_neurons");
    fails(&run(&["subnet", "show", "3"]), "subnet 3 does not exist");

    // bob opens subnet 1: basic, every 7 blocks, 16 uids, difficulty 1 (any seal), burning 100.
    let o = run(&[
        "subnet",
        "create",
        "--dev-account",
        "bob",
        "--mechanism",
        "basic",
        "--tempo",
        "7",
        "--max-neurons",
        "16",
        "--difficulty",
        "1",
    ]);
    applied(&o);
    assert!(stdout(&o).contains("burns 100"), "{}", stdout(&o));
    assert!(stdout(&o).contains("created subnet 1"), "{}", stdout(&o));
    let list = ok(&run(&["subnet", "list"]));
    assert!(list.contains("2 subnets"), "{list}");
    assert!(list.lines().any(|l| l.contains(" basic ") && l.contains(&key("bob").to_hex())), "{list}");
    let show = ok(&run(&["subnet", "show", "1"]));
    assert!(show.contains("mechanism basic, tempo 7"), "{show}");
    assert!(show.contains("neurons 0 of 16"), "{show}");
    assert!(show.contains("difficulty 1,") && show.contains("commit-reveal off"), "{show}");

    // charlie registers in subnet 1 by burn, dave by proof of work: uids 0 and 1 there.
    let o = run(&["tx", "register", "--dev-account", "charlie", "--burn", "--netuid", "1"]);
    applied(&o);
    assert!(stdout(&o).contains("registered as uid 0 in subnet 1"), "{}", stdout(&o));
    let o = run(&["tx", "register", "--dev-account", "dave", "--netuid", "1"]);
    applied(&o);
    assert!(stdout(&o).contains("registered as uid 1 in subnet 1"), "{}", stdout(&o));
    let charlie = key("charlie").to_hex();
    applied(&run(&[
        "stake",
        "add",
        "--dev-account",
        "charlie",
        "--hotkey",
        &charlie,
        "--amount",
        "5",
        "--netuid",
        "1",
    ]));
    let stakes = ok(&run(&["stake", "list", "--dev-account", "charlie", "--netuid", "1"]));
    assert!(stakes.contains("in subnet 1") && stakes.contains("total staked 5"), "{stakes}");
    applied(&run(&[
        "tx",
        "weights",
        "--dev-account",
        "charlie",
        "--uids",
        "0,1",
        "--values",
        "1,3",
        "--netuid",
        "1",
    ]));

    // Subnet 1 holds them; the genesis network does not know them.
    let m: serde_json::Value =
        serde_json::from_str(&ok(&run(&["metagraph", "--netuid", "1", "--json"]))).expect("JSON");
    assert_eq!(
        (m["n"].clone(), m["netuid"].clone(), m["mechanism"].clone()),
        (2.into(), 1.into(), "basic".into())
    );
    assert_eq!(m["hotkeys"][0], charlie);
    assert_eq!(m["S"][0], 5_000_000_000u64);
    let row: Vec<(u64, f64)> = serde_json::from_value(m["weights"][0].clone()).expect("a row");
    assert_eq!(row.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1]);
    assert!((row[0].1 - 0.25).abs() < 1e-4 && (row[1].1 - 0.75).abs() < 1e-4, "{row:?}");
    let table = ok(&run(&["metagraph", "--netuid", "1"]));
    assert!(table.starts_with("subnet 1 "), "{table}");
    let m0: serde_json::Value = serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).expect("JSON");
    assert_eq!(m0["n"], 0);
    fails(
        &run(&["tx", "weights", "--dev-account", "charlie", "--uids", "0", "--values", "1"]),
        "is not registered",
    );
    let show = ok(&run(&["subnet", "show", "1"]));
    assert!(show.contains("neurons 2 of 16") && show.contains("registered stake 5"), "{show}");

    // Bad --netuid: a subnet that does not exist, a transfer (chain-wide), a past block.
    fails(
        &run(&["tx", "register", "--dev-account", "eve", "--burn", "--netuid", "9"]),
        "subnet 9 does not exist",
    );
    fails(
        &run(&["tx", "transfer", "--dev-account", "eve", "--to", &charlie, "--amount", "1", "--netuid", "1"]),
        "chain-wide",
    );
    fails(&run(&["metagraph", "--netuid", "1", "--block", "1"]), "netuid 0 only");
    fails(&run(&["metagraph", "--netuid", "4"]), "subnet 4 does not exist");
}
