//! Delegation and burn registration through the CLI against a real node: a nominator stakes on
//! someone else's hotkey named by its SS58 address, the owner's take (refused above the
//! maximum, lowered at once, raised after notice), the nominator's share of an epoch's
//! emission, `stake list` both ways, and `tx register --burn` / `tx register-for`.

use crate::chain_features::{start, two_neurons};
use crate::tx::{agora_at, applied, fails};
use crate::wallet::ok;
use crate::{stdout, TempDir};
use ledger::{GenesisAccount, UNITS_PER_TOKEN};

fn key(name: &str) -> ledger::PublicKey {
    ledger::public_key(&ledger::dev_key(name))
}

#[test]
fn a_nominator_earns_its_share_after_the_owners_take() {
    let dir = TempDir::new("delegation");
    // alice and bob are neurons 0 and 1 (their own coldkeys); carol nominates. An epoch every
    // 4 blocks; a take increase applies 2 blocks after its announcement.
    let mut g = two_neurons();
    g.accounts.push(GenesisAccount { key: key("carol"), balance: 100 * UNITS_PER_TOKEN });
    g.tempo = 4;
    g.delegation.take_notice = 2;
    let node = start(&dir, &g);
    let url = node.http();
    let run = |args: &[&str]| agora_at(&url, &dir, None, args);
    let alice58 = key("alice").to_ss58();
    let alice = key("alice").to_hex();

    // carol nominates 10 tokens on alice's hotkey, named by its SS58 address (block 1).
    assert_eq!(
        applied(&run(&["stake", "add", "--dev-account", "carol", "--hotkey", &alice58, "--amount", "10"])),
        1
    );
    let list = ok(&run(&["stake", "list", "--hotkey", &alice]));
    assert!(list.contains("stake 11 (owner 1), take 18%"), "{list}");
    assert!(list.contains(&format!("{:<66} {:>20}", key("carol").to_hex(), "10")), "{list}");
    let mine = ok(&run(&["stake", "list", "--dev-account", "carol"]));
    assert!(mine.contains(&format!("{:<66} {:>20} {:>9} {:>7}", alice, "10", "nominator", "18%")), "{mine}");
    // Refused with the reason: more than the nomination; a take above the maximum; someone
    // else's take.
    fails(
        &run(&["stake", "remove", "--dev-account", "carol", "--hotkey", &alice, "--amount", "11"]),
        "less than the",
    );
    fails(
        &run(&["stake", "set-take", "--dev-account", "alice", "--hotkey", &alice, "--take", "0.5"]),
        "above the chain's maximum",
    );
    fails(
        &run(&["stake", "set-take", "--dev-account", "carol", "--hotkey", &alice, "--take", "0"]),
        "is not the coldkey",
    );
    fails(
        &run(&[
            "stake",
            "add",
            "--dev-account",
            "carol",
            "--hotkey",
            &key("nobody").to_hex(),
            "--amount",
            "1",
        ]),
        "is not registered",
    );

    // alice lowers her take to 0 at once (block 2), then announces 10% (block 3, in force at 5).
    let o = run(&["stake", "set-take", "--dev-account", "alice", "--hotkey", &alice, "--take", "0"]);
    assert_eq!(applied(&o), 2);
    assert!(stdout(&o).contains("take in force: 0%"), "{}", stdout(&o));
    let o = run(&["stake", "set-take", "--dev-account", "alice", "--hotkey", &alice, "--take", "0.1"]);
    assert_eq!(applied(&o), 3);
    assert!(stdout(&o).contains("take 10% announced: in force from block 5"), "{}", stdout(&o));

    // alice weights bob (block 4, an epoch): her dividends are her emission, and carol's 10 of
    // her 11 staked earn 10/11 of it, the take being still 0.
    applied(&run(&["tx", "weights", "--dev-account", "alice", "--uids", "1", "--values", "1"]));
    let m: serde_json::Value = serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).unwrap();
    assert_eq!(m["block"], 4);
    let e = m["E"][0].as_u64().unwrap();
    assert!(e > 0, "{m}");
    assert_eq!(m["nominated"][0].as_u64().unwrap(), 10 * UNITS_PER_TOKEN + e * 10 / 11);
    assert_eq!(m["take"][0], 0.0);
    let table = ok(&run(&["metagraph"]));
    assert!(table.lines().any(|l| l.trim_start().starts_with("0 ") && l.contains("  0%  ")), "{table}");

    // Everything back to carol's balance (block 5).
    applied(&run(&["stake", "remove", "--dev-account", "carol", "--hotkey", &alice58, "--all"]));
    let mine = ok(&run(&["stake", "list", "--dev-account", "carol"]));
    assert!(mine.contains("total staked 0"), "{mine}");
    let list = ok(&run(&["stake", "list", "--hotkey", &alice]));
    assert!(list.contains("), take 10%\n"), "the announced take is in force at block 5: {list}");
    assert!(list.trim_end().ends_with("STAKE"), "no nominator left: {list}");
}

#[test]
fn burn_registration_and_register_for_through_the_cli() {
    let dir = TempDir::new("burn-register");
    let mut g = two_neurons();
    g.accounts.push(GenesisAccount { key: key("carol"), balance: 100 * UNITS_PER_TOKEN });
    g.accounts.push(GenesisAccount { key: key("erin"), balance: UNITS_PER_TOKEN / 2 });
    let node = start(&dir, &g);
    let url = node.http();
    let run = |args: &[&str]| agora_at(&url, &dir, None, args);

    // carol's coldkey burns 1 token (the dev chain's burn) to register its hotkey (the dev
    // account is both).
    let m: serde_json::Value = serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).unwrap();
    assert_eq!(m["burn"], UNITS_PER_TOKEN);
    let o = run(&["tx", "register", "--burn", "--dev-account", "carol"]);
    applied(&o);
    assert!(stdout(&o).contains(&format!("registered as uid 2 (hotkey {})", key("carol"))), "{}", stdout(&o));
    assert!(stdout(&o).contains("submitting burned_register"), "{}", stdout(&o));
    // erin cannot pay the burn: refused at submission with the reason.
    fails(&run(&["tx", "register", "--burn", "--dev-account", "erin"]), "needed for the registration burn");
    fails(&run(&["tx", "register", "--burn", "--dev-account", "carol"]), "already registered as uid 2");

    // alice's registered hotkey subscribes frank, owned by bob, with 2 tokens of stake.
    let frank = key("frank").to_ss58();
    let bob = key("bob").to_hex();
    let o = run(&[
        "tx",
        "register-for",
        "--dev-account",
        "alice",
        "--new-hotkey",
        &frank,
        "--new-coldkey",
        &bob,
        "--stake",
        "2",
    ]);
    applied(&o);
    assert!(stdout(&o).contains(&format!("registered as uid 3 (hotkey {})", key("frank"))), "{}", stdout(&o));
    let m: serde_json::Value = serde_json::from_str(&ok(&run(&["metagraph", "--json"]))).unwrap();
    assert_eq!(
        (m["coldkeys"][3].as_str(), m["S"][3].as_u64()),
        (Some(bob.as_str()), Some(2 * UNITS_PER_TOKEN))
    );
    // A hotkey that is not registered cannot sponsor.
    fails(
        &run(&["tx", "register-for", "--dev-account", "erin", "--new-hotkey", &key("gina").to_hex()]),
        &format!("hotkey {} is not registered", key("erin")),
    );
}
